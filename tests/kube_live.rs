//! The live Kubernetes source against a real kube-apiserver (v1.20, built from Debian's source
//! package by `scripts/build-kube-apiserver.sh`) and etcd: objects created through the API show up
//! in Astrolabe's HTTP API with their edges, updates move edges, deletes remove nodes, Secret and
//! ConfigMap data appear nowhere, kinds v1.20 lacks are reported as skipped; a restart with
//! persistence is served warm and then reconciled exactly; an API-server kill -9 is survived by
//! relisting after the 410. Every process is started on loopback and stopped by its own PID.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::kube::KubeApiServer;
use support::process::{Proc, get, get_text, signal, start, wait_exit, wait_ready};
use support::redis::RedisServer;
use support::{eventually, wait_for};

/// Data no response, log or Redis value may ever contain.
const SECRET_MARKER: &str = "s3cr3t-marker-7f3a";
const CONFIG_MARKER: &str = "config-marker-91c2";

/// What the v1.20 server serves of the watched kinds: (kind as Astrolabe names it, list path).
const SERVED: &[(&str, &str)] = &[
    ("Namespace", "/api/v1/namespaces"),
    ("Node", "/api/v1/nodes"),
    ("PersistentVolume", "/api/v1/persistentvolumes"),
    ("Pod", "/api/v1/pods"),
    ("Service", "/api/v1/services"),
    ("ConfigMap", "/api/v1/configmaps"),
    ("Secret", "/api/v1/secrets"),
    ("ServiceAccount", "/api/v1/serviceaccounts"),
    ("PersistentVolumeClaim", "/api/v1/persistentvolumeclaims"),
    ("StorageClass", "/apis/storage.k8s.io/v1/storageclasses"),
    ("IngressClass", "/apis/networking.k8s.io/v1/ingressclasses"),
    ("Ingress", "/apis/networking.k8s.io/v1/ingresses"),
    (
        "NetworkPolicy",
        "/apis/networking.k8s.io/v1/networkpolicies",
    ),
    ("Deployment", "/apis/apps/v1/deployments"),
    ("ReplicaSet", "/apis/apps/v1/replicasets"),
    ("StatefulSet", "/apis/apps/v1/statefulsets"),
    ("DaemonSet", "/apis/apps/v1/daemonsets"),
    ("Job", "/apis/batch/v1/jobs"),
];

fn serve(api: &KubeApiServer, extra: &[&str]) -> Proc {
    let kubeconfig = api.kubeconfig_path();
    let mut args = vec![
        "serve",
        "--source",
        "kube",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    start(&args, &[])
}

/// Every object of the served kinds, as `Kind ns/name uid`.
fn cluster_objects(api: &KubeApiServer) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (kind, path) in SERVED {
        for o in api.get(path)["items"].as_array().unwrap() {
            let m = &o["metadata"];
            out.insert(format!(
                "{kind} {}/{} {}",
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap(),
                m["uid"].as_str().unwrap()
            ));
        }
    }
    out
}

/// Every node of the graph Astrolabe serves (Helm releases aside), in the same form.
fn served_objects(addr: &str) -> BTreeSet<String> {
    let (status, g) = get(addr, "/api/v2/graph");
    assert_eq!(status, 200, "{g}");
    g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] != "HelmRelease")
        .map(|n| {
            format!(
                "{} {}/{} {}",
                n["kind"].as_str().unwrap(),
                n["namespace"].as_str().unwrap_or(""),
                n["name"].as_str().unwrap(),
                n["uid"].as_str().unwrap()
            )
        })
        .collect()
}

/// The graph's edges as `Kind/ns/name type Kind/ns/name`.
fn edges(addr: &str) -> BTreeSet<String> {
    let (status, g) = get(addr, "/api/v2/graph");
    assert_eq!(status, 200, "{g}");
    let nodes: std::collections::HashMap<&str, String> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["uid"].as_str().unwrap(),
                format!(
                    "{}/{}/{}",
                    n["kind"].as_str().unwrap(),
                    n["namespace"].as_str().unwrap_or(""),
                    n["name"].as_str().unwrap()
                ),
            )
        })
        .collect();
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                nodes[e["from"].as_str().unwrap()],
                e["type"].as_str().unwrap(),
                nodes[e["to"].as_str().unwrap()]
            )
        })
        .collect()
}

fn assert_converges(api: &KubeApiServer, addr: &str, what: &str) {
    eventually(what, Duration::from_secs(20), || {
        let (cluster, served) = (cluster_objects(api), served_objects(addr));
        if cluster == served {
            return Ok(());
        }
        Err(format!(
            "ghosts {:?}, missing {:?}",
            served.difference(&cluster).collect::<Vec<_>>(),
            cluster.difference(&served).collect::<Vec<_>>()
        ))
    });
}

fn ns(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A small application in namespace `shop` and the cluster-scoped objects it uses.
fn create_app(api: &KubeApiServer) {
    api.create("/api/v1/namespaces", ns("shop"));
    api.create(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}),
    );
    api.create(
        "/apis/storage.k8s.io/v1/storageclasses",
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "fast"}, "provisioner": "example.com/fast"}),
    );
    api.create(
        "/api/v1/persistentvolumes",
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-a"},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "fast", "hostPath": {"path": "/tmp/pv-a"}}}),
    );
    api.create(
        "/api/v1/namespaces/shop/persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                        "volumeName": "pv-a", "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    api.create(
        "/api/v1/namespaces/shop/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}}),
    );
    api.create(
        "/api/v1/namespaces/shop/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"setting": CONFIG_MARKER}}),
    );
    api.create(
        "/api/v1/namespaces/shop/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds",
               "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                   format!("{{\"stringData\":{{\"token\":\"{SECRET_MARKER}\"}}}}")}},
               "type": "Opaque", "stringData": {"token": SECRET_MARKER}}),
    );
    api.create(
        "/api/v1/namespaces/shop/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    );
    let rs = api.create(
        "/apis/apps/v1/namespaces/shop/replicasets",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-rs"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
    );
    api.create(
        "/api/v1/namespaces/shop/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web-1", "labels": {"app": "web"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": "web-rs", "uid": rs["metadata"]["uid"],
                                                 "controller": true}]},
               "spec": {"nodeName": "node-a", "serviceAccountName": "runner",
                        "containers": [{"name": "c", "image": "nginx",
                                        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]}],
                        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}},
                                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}),
    );
    api.create(
        "/apis/networking.k8s.io/v1/namespaces/shop/ingresses",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
               "spec": {"tls": [{"secretName": "creds"}],
                        "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    );
}

const APP_EDGES: &[&str] = &[
    "ReplicaSet/shop/web-rs owns Pod/shop/web-1",
    "Service/shop/web selects Pod/shop/web-1",
    "Pod/shop/web-1 runs-on Node//node-a",
    "Pod/shop/web-1 uses-sa ServiceAccount/shop/runner",
    "Pod/shop/web-1 uses-configmap ConfigMap/shop/cfg",
    "Pod/shop/web-1 uses-secret Secret/shop/creds",
    "Pod/shop/web-1 mounts PersistentVolumeClaim/shop/data",
    "PersistentVolumeClaim/shop/data binds PersistentVolume//pv-a",
    "PersistentVolumeClaim/shop/data uses-class StorageClass//fast",
    "PersistentVolume//pv-a uses-class StorageClass//fast",
    "Ingress/shop/web routes-to Service/shop/web",
    "Ingress/shop/web uses-secret Secret/shop/creds",
];

fn assert_no_secret(text: &str, what: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET_MARKER);
    for needle in [SECRET_MARKER, b64.as_str(), CONFIG_MARKER] {
        assert!(!text.contains(needle), "{what} contains {needle:?}");
    }
}

#[test]
fn the_graph_follows_a_real_api_server() {
    let api = KubeApiServer::start();
    let p = serve(&api, &[]);
    wait_ready(&p.addr);
    create_app(&api);
    wait_for("the application's edges", Duration::from_secs(20), || {
        let e = edges(&p.addr);
        APP_EDGES.iter().all(|want| e.contains(*want))
    });
    assert_converges(&api, &p.addr, "after creating");

    // Kinds v1.20 lacks are skipped, reported, and do not degrade the service.
    let (status, health) = get(&p.addr, "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy", "{health:#}");
    let check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kubernetes")
        .expect("a kubernetes check");
    let skipped: BTreeSet<&str> = check["observedValue"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        BTreeSet::from([
            "autoscaling/HorizontalPodAutoscaler",
            "batch/CronJob",
            "discovery.k8s.io/EndpointSlice",
            "policy/PodDisruptionBudget",
        ]),
        "{check:#}"
    );
    assert_eq!(check["observedValue"]["forbidden"], json!([]));
    assert_eq!(check["observedValue"]["failing"], json!([]));

    // Secret and ConfigMap data appear in no answer (taken while both objects exist, as text)
    // and, below, in no log line.
    for path in [
        "/api/v2/graph",
        "/api/v2/objects/Secret/shop/creds",
        "/api/v2/objects/ConfigMap/shop/cfg",
        "/api/v1/graph?namespace=shop",
        "/api/v1/resources?namespace=shop",
        "/metrics",
        "/health",
    ] {
        let (status, body) = get_text(&p.addr, path);
        assert_eq!(status, 200, "{path}: {body}");
        assert_no_secret(&body, path);
    }

    // An update moves edges: the Pod's new labels leave the Service's selector.
    let (_, mut pod) = api.request("GET", "/api/v1/namespaces/shop/pods/web-1", None);
    pod["metadata"]["labels"] = json!({"app": "other"});
    let (code, body) = api.request(
        "PUT",
        "/api/v1/namespaces/shop/pods/web-1",
        Some(pod.clone()),
    );
    assert_eq!(code, 200, "{body}");
    wait_for("the selects edge to go", Duration::from_secs(10), || {
        !edges(&p.addr).contains("Service/shop/web selects Pod/shop/web-1")
    });
    // A delete removes the node, and the edges to it.
    let (code, body) = api.request("DELETE", "/api/v1/namespaces/shop/configmaps/cfg", None);
    assert_eq!(code, 200, "{body}");
    wait_for("the ConfigMap to go", Duration::from_secs(10), || {
        !edges(&p.addr).contains("Pod/shop/web-1 uses-configmap ConfigMap/shop/cfg")
    });
    assert_converges(&api, &p.addr, "after updating and deleting");

    signal(&p, "-TERM");
    let (code, log) = wait_exit(p);
    assert_eq!(code, Some(0), "{log}");
    assert_no_secret(&log, "the server's log");
}

#[test]
fn a_restart_with_persistence_is_served_warm_then_reconciled_exactly() {
    let api = KubeApiServer::start();
    let redis = RedisServer::start();
    let persist = ["--enable-persistence", "--redis-addr", &redis.addr()];
    let p = serve(&api, &persist);
    wait_ready(&p.addr);
    create_app(&api);
    assert_converges(&api, &p.addr, "before the restart");
    signal(&p, "-TERM");
    let (code, log) = wait_exit(p);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("final snapshot written"), "{log}");

    // While Astrolabe is down: objects deleted, created, and changed.
    for path in [
        "/api/v1/namespaces/shop/pods/web-1",
        "/api/v1/namespaces/shop/services/web",
        "/api/v1/nodes/node-a",
    ] {
        let (code, body) = api.request("DELETE", path, None);
        assert_eq!(code, 200, "DELETE {path}: {body}");
    }
    api.create("/api/v1/namespaces", ns("shop-2"));
    api.create(
        "/api/v1/namespaces/shop-2/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
               "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}),
    );

    let p = serve(&api, &persist);
    // Served warm at once: `restored` is set only when the graph was rebuilt from what Redis
    // holds before the server listened, and the first answer has the application in it. (Its
    // lists may be done by then too, so what the first answer lacks proves nothing either way.)
    let first = served_objects(&p.addr);
    assert!(
        first
            .iter()
            .any(|o| o.starts_with("ReplicaSet shop/web-rs ")),
        "{first:?}"
    );
    let (_, health) = get(&p.addr, "/health");
    assert_eq!(health["restored"], true, "{health:#}");
    wait_ready(&p.addr);
    // Then exactly the cluster's state: zero ghosts, zero missing.
    assert_converges(&api, &p.addr, "after the restart");
    wait_for(
        "the source's first full load",
        Duration::from_secs(20),
        || get(&p.addr, "/health").1["synced"] == true,
    );
    signal(&p, "-TERM");
    let (code, log) = wait_exit(p);
    assert_eq!(code, Some(0), "{log}");
    assert_no_secret(&log, "the server's log");

    // Nothing secret in Redis either: neither in its raw values nor in what they decode to.
    assert_no_secret(&String::from_utf8_lossy(&redis_bytes(&redis)), "Redis");
    let recovered = astrolabe::persistence::recover(&astrolabe::persistence::RedisConfig {
        addr: redis.addr(),
        prefix: "astrolabe:{default}".into(),
        ..Default::default()
    })
    .expect("Redis holds a readable graph");
    assert!(!recovered.objects.is_empty());
    assert_no_secret(&format!("{:?}", recovered.objects), "the objects in Redis");
}

/// Every value Redis holds, concatenated.
fn redis_bytes(redis: &RedisServer) -> Vec<u8> {
    let mut c = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert!(!keys.is_empty(), "Redis holds something");
    let mut out = Vec::new();
    for k in keys {
        let t: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
        let v: redis::Value = match t.as_str() {
            "string" => redis::cmd("GET").arg(&k).query(&mut c).unwrap(),
            "stream" => redis::cmd("XRANGE")
                .arg(&k)
                .arg("-")
                .arg("+")
                .query(&mut c)
                .unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap(),
            "list" => redis::cmd("LRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&k)
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap(),
            other => panic!("unexpected Redis type {other} of {k}"),
        };
        flatten(&v, &mut out);
    }
    out
}

fn flatten(v: &redis::Value, out: &mut Vec<u8>) {
    match v {
        redis::Value::BulkString(b) => out.extend_from_slice(b),
        redis::Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|i| flatten(i, out));
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(a, b)| {
            flatten(a, out);
            flatten(b, out);
        }),
        _ => {}
    }
}

#[test]
fn an_api_server_killed_and_restarted_is_relisted_and_converged() {
    let mut api = KubeApiServer::start();
    let p = serve(&api, &[]);
    wait_ready(&p.addr);
    create_app(&api);
    assert_converges(&api, &p.addr, "before the kill");

    api.kill_apiserver();
    // Astrolabe keeps serving what it has while the API server is away: failing watches do not
    // empty the graph.
    let served = served_objects(&p.addr);
    assert!(
        served.iter().any(|o| o.starts_with("Service shop/web ")),
        "{served:?}"
    );
    api.start_apiserver_again();
    // Changes right after the restart, while the watches reconnect and relist.
    let (code, body) = api.request("DELETE", "/api/v1/namespaces/shop/services/web", None);
    assert_eq!(code, 200, "{body}");
    api.create("/api/v1/namespaces", ns("after-restart"));
    assert_converges(&api, &p.addr, "after the API server's restart");

    wait_for("relists after the 410", Duration::from_secs(30), || {
        metric_sum(&p.addr, "astrolabe_kube_relists_total") > 0.0
    });
    signal(&p, "-TERM");
    assert_eq!(wait_exit(p).0, Some(0));
}

/// The sum of a metric's samples in `/metrics` (every label set).
fn metric_sum(addr: &str, name: &str) -> f64 {
    let (_, text) = get_text(addr, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The harness itself: objects written through the API survive a SIGKILL of the API server,
/// because they live in etcd; authentication is on.
#[test]
fn objects_survive_an_apiserver_kill() {
    let mut api = KubeApiServer::start();
    assert!(
        std::fs::read_to_string(api.kubeconfig_path())
            .unwrap()
            .contains(&api.url())
    );

    api.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "smoke"}}),
    );
    api.create(
        "/api/v1/namespaces/smoke/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "type": "Opaque", "stringData": {"password": "hunter2"}}),
    );
    let (status, v) = api.request(
        "PATCH",
        "/api/v1/namespaces/smoke",
        Some(json!({"metadata": {"labels": {"team": "astrolabe"}}})),
    );
    assert_eq!(status, 200, "PATCH: {v}");
    // A wrong token is refused: authentication is on.
    let (status, _) = api.request_with_token("wrong", "GET", "/api/v1/namespaces", None);
    assert_eq!(status, 401);

    let check = |api: &KubeApiServer| {
        let names: Vec<String> = api.get("/api/v1/namespaces")["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert!(
            names.contains(&"smoke".to_string()),
            "namespaces: {names:?}"
        );
        let ns = api.get("/api/v1/namespaces/smoke");
        assert_eq!(ns["metadata"]["labels"]["team"], "astrolabe", "{ns}");
        let secrets = api.get("/api/v1/namespaces/smoke/secrets");
        let secret = secrets["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["metadata"]["name"] == "creds")
            .unwrap_or_else(|| panic!("secret creds listed: {secrets}"));
        // base64 of "hunter2"
        assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    };
    check(&api);

    let pid = api.pid();
    api.kill_apiserver();
    assert_eq!(api.pid(), 0);
    api.start_apiserver_again();
    assert_ne!(api.pid(), pid);
    check(&api);
}

/// The responses the fake API server (`support::fake_kube`) imitates, recorded from the real one
/// into `tests/fixtures/kube-golden` and compared by shape (see `support::golden`): metadata-only
/// and paginated lists, the 410 ERROR event of a watch from a too-old resourceVersion, a
/// BOOKMARK, a metadata-only watch event, discovery. `ASTROLABE_RECORD_GOLDEN=1` records them
/// again; `tests/kube_fake.rs` checks the fake against the same files.
#[test]
fn golden_files_match_the_real_api_server() {
    use support::golden::{self, ACCEPT_JSON, ACCEPT_METADATA, ACCEPT_METADATA_LIST, NAMESPACE};
    let mut api = KubeApiServer::start();
    api.create("/api/v1/namespaces", golden::namespace());
    let secrets = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    for name in ["config-a", "config-b"] {
        api.create(&secrets, golden::secret(name));
    }
    for name in ["pod-a", "pod-b"] {
        api.create(&pods, golden::pod(name));
    }
    // The watch cache of a server started on a fresh etcd begins at revision 1, so it would
    // replay everything from resourceVersion 1; once restarted, it begins at the current
    // revision and resourceVersion 1 is too old.
    api.start_apiserver_again();

    // A metadata-only list of Secrets, one per page: items typed PartialObjectMetadata, no data.
    let (code, list) =
        api.request_accept("GET", &format!("{secrets}?limit=1"), ACCEPT_METADATA_LIST);
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "PartialObjectMetadataList", "{list}");
    assert!(list["metadata"]["continue"].is_string(), "{list}");
    for item in list["items"].as_array().unwrap() {
        let keys: BTreeSet<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["apiVersion", "kind", "metadata"]),
            "{item}"
        );
    }
    assert!(
        !list.to_string().contains("aGVsbG8="),
        "no Secret data: {list}"
    );
    let secrets_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    golden::record_or_check("list-secrets-metadata.json", &[list]);

    // A whole list of Pods, one per page: a continue token, remainingItemCount, items without
    // apiVersion/kind.
    let (code, list) = api.request_accept("GET", &format!("{pods}?limit=1"), ACCEPT_JSON);
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["metadata"]["remainingItemCount"], 1, "{list}");
    assert!(list["items"][0].get("kind").is_none(), "{list}");
    let pods_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    golden::record_or_check("list-pods.json", &[list]);

    // A watch from a resourceVersion older than the watch cache: 200, then the 410 as the
    // stream's only event, and the end of the stream.
    let (code, events) = api.watch(
        "/api/v1/pods?watch=1&resourceVersion=1",
        ACCEPT_JSON,
        Duration::from_secs(10),
        5,
    );
    assert_eq!(code, 200, "{events:?}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR", "{events:?}");
    assert_eq!(events[0]["object"]["code"], 410, "{events:?}");
    golden::record_or_check("watch-expired.jsonl", &events);

    // A metadata-only watch of Secrets from the list's version: a Secret created since is ADDED.
    api.create(&secrets, golden::secret("config-c"));
    let (code, events) = api.watch(
        &format!("{secrets}?watch=1&resourceVersion={secrets_rv}"),
        ACCEPT_METADATA,
        Duration::from_secs(10),
        1,
    );
    assert_eq!(code, 200, "{events:?}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ADDED", "{events:?}");
    assert!(!events[0].to_string().contains("aGVsbG8="), "{events:?}");
    golden::record_or_check("watch-metadata.jsonl", &events);

    // A watch with bookmarks from the Pod list's version, and a Pod changed a second later: the
    // change, then a BOOKMARK at its version. v1.20 sends BOOKMARKs 2 s before the watch's
    // deadline (its timeoutSeconds), and only at a version of the kind newer than the watch's
    // start: a watch opened after the kind's last change gets none, however long it waits
    // (a minute, tried).
    let (code, events) = std::thread::scope(|s| {
        let watch = s.spawn(|| {
            api.watch(
                &format!(
                    "{pods}?watch=1&allowWatchBookmarks=true&timeoutSeconds=4&resourceVersion={pods_rv}"
                ),
                ACCEPT_JSON,
                Duration::from_secs(10),
                2,
            )
        });
        std::thread::sleep(Duration::from_millis(1000));
        let (code, body) = api.request(
            "PATCH",
            &format!("{pods}/pod-b"),
            Some(json!({"metadata": {"labels": {"tier": "web"}}})),
        );
        assert_eq!(code, 200, "{body}");
        watch.join().unwrap()
    });
    assert_eq!(code, 200, "{events:?}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "BOOKMARK"], "{events:?}");
    assert_eq!(
        events[1]["object"]["metadata"]["resourceVersion"],
        events[0]["object"]["metadata"]["resourceVersion"],
        "{events:?}"
    );
    golden::record_or_check("watch-bookmark.jsonl", &events);

    // Discovery.
    for (path, file) in [
        ("/apis/apps/v1", "discovery-apps-v1.json"),
        ("/api/v1", "discovery-core-v1.json"),
    ] {
        let (code, body) = api.request_accept("GET", path, ACCEPT_JSON);
        assert_eq!(code, 200, "{body}");
        golden::record_or_check(file, &[body]);
    }
}
