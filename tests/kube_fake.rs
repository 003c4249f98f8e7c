//! The real `astrolabe serve --source kube` process against a fake Kubernetes API server
//! (`support::fake_kube`): every watched kind and its edges, Secret and ConfigMap data never
//! leaving the API server, old API servers, dropped watches, compaction and relists, list errors,
//! forbidden kinds, slow streams, and the namespace and label filters. Every wait polls with a
//! deadline.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::eventually;
use support::fake_kube::{self, FakeKube, Served};
use support::process::{Proc, get, get_text, start, wait_ready};

const SECRET_MARKER: &str = "s3cr3t-MARKER-Zq7xW";
const CONFIG_MARKER: &str = "c0nf1g-MARKER-Vb2kP";

/// A server process and the directory holding its kubeconfig. Declared after the fake in tests,
/// so it stops first.
struct Server {
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl Server {
    fn addr(&self) -> &str {
        &self.proc.addr
    }

    /// Everything the server logged so far (drained from its stderr).
    fn drain_log(&self, into: &mut String) {
        while let Ok(l) = self.proc.lines.try_recv() {
            into.push_str(&l);
            into.push('\n');
        }
    }
}

fn serve(fake: &FakeKube, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let kc = kubeconfig.to_str().unwrap().to_string();
    let mut args = vec![
        "serve",
        "--source",
        "kube",
        "--kubeconfig",
        &kc,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let proc = start(&args, &[]);
    Server { proc, _dir: dir }
}

/// Waits until `/health` says healthy (every kind watched or skipped).
fn eventually_healthy(what: &str, addr: &str) {
    eventually(what, Duration::from_secs(10), || {
        let (status, _, kube) = kube_health(addr);
        if status == "healthy" {
            Ok(())
        } else {
            Err(format!("{status}: {kube}"))
        }
    });
}

// ----- reading the graph ----------------------------------------------------------------------

fn path_of(kind: &str, ns: &str, name: &str) -> String {
    if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{ns}/{name}")
    }
}

type Edges = BTreeSet<(String, String, String)>;

/// The graph's nodes ("Kind/ns/name uid=.. rv=..", HelmRelease nodes left out) and edges as
/// ("Kind/ns/name", type, "Kind/ns/name").
fn graph(addr: &str) -> (BTreeSet<String>, Edges) {
    let (status, g) = get(addr, "/api/v2/graph");
    assert_eq!(status, 200, "{g}");
    let mut names = BTreeMap::new();
    let mut nodes = BTreeSet::new();
    for n in g["nodes"].as_array().unwrap() {
        let path = path_of(
            n["kind"].as_str().unwrap(),
            n["namespace"].as_str().unwrap(),
            n["name"].as_str().unwrap(),
        );
        names.insert(n["uid"].as_str().unwrap().to_string(), path.clone());
        if n["kind"] != "HelmRelease" {
            nodes.insert(format!(
                "{path} uid={} rv={}",
                n["uid"].as_str().unwrap(),
                n["resourceVersion"].as_str().unwrap()
            ));
        }
    }
    let edges = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                names[e["from"].as_str().unwrap()].clone(),
                e["type"].as_str().unwrap().to_string(),
                names[e["to"].as_str().unwrap()].clone(),
            )
        })
        .collect();
    (nodes, edges)
}

fn node_line(o: &Value) -> String {
    format!(
        "{} uid={} rv={}",
        path_of(
            o["kind"].as_str().unwrap(),
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap()
        ),
        o["metadata"]["uid"].as_str().unwrap(),
        o["metadata"]["resourceVersion"].as_str().unwrap()
    )
}

/// The fake's objects as graph node lines, those that `keep` accepts.
fn store(fake: &FakeKube, keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    fake.objects()
        .iter()
        .filter(|o| keep(o))
        .map(node_line)
        .collect()
}

fn diff<T: Ord + std::fmt::Debug + Clone>(want: &BTreeSet<T>, got: &BTreeSet<T>) -> String {
    let missing: Vec<&T> = want.difference(got).collect();
    let extra: Vec<&T> = got.difference(want).collect();
    format!("missing: {missing:#?}\nunexpected: {extra:#?}")
}

/// Waits until the graph's nodes are exactly the fake's (uid and resourceVersion included): no
/// ghost, nothing missing, nothing stale.
fn converges(fake: &FakeKube, addr: &str, within: Duration, keep: impl Fn(&Value) -> bool) {
    eventually("the graph equals the API server's state", within, || {
        let want = store(fake, &keep);
        let (got, _) = graph(addr);
        if want == got {
            Ok(())
        } else {
            Err(diff(&want, &got))
        }
    });
}

fn all(_: &Value) -> bool {
    true
}

/// The `kubernetes` check of `/health`: (overall status, check status, observedValue).
/// The overall health status and the `kubernetes` check.
fn kube_check(addr: &str) -> (String, Value) {
    let (_, h) = get(addr, "/health");
    let check = h["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kubernetes")
        .unwrap_or_else(|| panic!("a kubernetes check in {h}"))
        .clone();
    (h["status"].as_str().unwrap().to_string(), check)
}

/// The `kubernetes` check's details.
fn kube_details(addr: &str) -> String {
    kube_check(addr).1["details"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The overall status, the `kubernetes` check's status, and its observed value.
fn kube_health(addr: &str) -> (String, String, Value) {
    let (status, check) = kube_check(addr);
    (
        status,
        check["status"].as_str().unwrap().to_string(),
        check["observedValue"].clone(),
    )
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// A counter of `/metrics` for one kind (0 when absent).
fn metric(addr: &str, name: &str, kind: &str) -> f64 {
    let (_, text) = get_text(addr, "/metrics");
    let label = format!("kind=\"{kind}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ----- objects --------------------------------------------------------------------------------

fn obj(api_version: &str, kind: &str, ns: &str, name: &str) -> Value {
    let mut m = json!({"name": name});
    if !ns.is_empty() {
        m["namespace"] = json!(ns);
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": m})
}

fn with(mut o: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        if k == "metadata" {
            for (mk, mv) in v.as_object().unwrap() {
                o["metadata"][mk] = mv.clone();
            }
        } else {
            o[k] = v.clone();
        }
    }
    o
}

fn owned_by(owner: &Value) -> Value {
    json!({"ownerReferences": [{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true}]})
}

fn namespace(name: &str) -> Value {
    with(
        obj("v1", "Namespace", "", name),
        json!({"status": {"phase": "Active"}}),
    )
}

/// The pod spec of the `web` workload: a PVC, a ConfigMap, a Secret, a ServiceAccount.
fn web_pod_spec() -> Value {
    json!({
        "serviceAccountName": "web-sa",
        "containers": [{"name": "app", "image": "registry.example/web:1",
                        "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "web-secret", "key": "password"}}}]}],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "config", "configMap": {"name": "web-config"}},
        ],
    })
}

fn running_pod(ns: &str, name: &str, labels: Value, spec: Value) -> Value {
    with(
        obj("v1", "Pod", ns, name),
        json!({"metadata": {"labels": labels}, "spec": spec,
               "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0}]}}),
    )
}

/// A workload with the web template.
fn workload(api_version: &str, kind: &str, name: &str, extra_meta: Value) -> Value {
    with(
        obj(api_version, kind, "shop", name),
        json!({"metadata": extra_meta,
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": web_pod_spec()}},
               "status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}),
    )
}

/// Every watched kind in namespace `shop`, with the edges they make.
fn shop(fake: &FakeKube) -> Edges {
    fake.apply(namespace("shop"));
    fake.apply(namespace("other"));
    fake.apply(with(
        obj("v1", "Node", "", "node-1"),
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    ));
    fake.apply(with(
        obj("storage.k8s.io/v1", "StorageClass", "", "fast"),
        json!({"provisioner": "example.com/fast"}),
    ));
    fake.apply(with(
        obj("v1", "PersistentVolume", "", "pv-1"),
        json!({"spec": {"storageClassName": "fast", "capacity": {"storage": "1Gi"}},
               "status": {"phase": "Bound"}}),
    ));
    fake.apply(with(
        obj("v1", "PersistentVolumeClaim", "shop", "data"),
        json!({"spec": {"volumeName": "pv-1", "storageClassName": "fast"}, "status": {"phase": "Bound"}}),
    ));
    fake.apply(obj("v1", "ServiceAccount", "shop", "web-sa"));
    fake.apply(with(
        obj("v1", "ConfigMap", "shop", "web-config"),
        json!({"data": {"settings.ini": CONFIG_MARKER}}),
    ));
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET_MARKER);
    let last_applied = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "web-secret", "namespace": "shop"},
        "stringData": {"password": SECRET_MARKER}})
    .to_string();
    fake.apply(with(
        obj("v1", "Secret", "shop", "web-secret"),
        json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
               "type": "Opaque", "data": {"password": b64}}),
    ));
    fake.apply(with(
        obj("v1", "Secret", "shop", "web-tls"),
        json!({"type": "kubernetes.io/tls", "stringData": {"tls.key": SECRET_MARKER, "tls.crt": "x"}}),
    ));
    // A Helm release: its record Secret (metadata only: the labels tell what it is) and a member.
    fake.apply(with(
        obj("v1", "Secret", "shop", "sh.helm.release.v1.shop.v1"),
        json!({"metadata": {"labels": {"owner": "helm", "name": "shop", "status": "deployed", "version": "1"}},
               "type": "helm.sh/release.v1", "data": {"release": b64}}),
    ));
    let deploy = fake.apply(workload(
        "apps/v1",
        "Deployment",
        "web",
        json!({"labels": {"app.kubernetes.io/managed-by": "Helm"},
               "annotations": {"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "shop"}}),
    ));
    let rs = fake.apply(workload(
        "apps/v1",
        "ReplicaSet",
        "web-7d9",
        owned_by(&deploy),
    ));
    let mut pods = Vec::new();
    for name in ["web-7d9-a", "web-7d9-b"] {
        let mut p = running_pod("shop", name, json!({"app": "web"}), web_pod_spec());
        p["spec"]["nodeName"] = json!("node-1");
        p["metadata"]["ownerReferences"] = owned_by(&rs)["ownerReferences"].clone();
        pods.push(fake.apply(p));
    }
    let svc = fake.apply(with(
        obj("v1", "Service", "shop", "web"),
        json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], "clusterIP": "10.0.0.10"}}),
    ));
    let mut slice = with(
        obj("discovery.k8s.io/v1", "EndpointSlice", "shop", "web-abcde"),
        json!({"metadata": {"labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": pods.iter().map(|p| json!({"addresses": ["10.1.0.1"], "conditions": {"ready": true},
                   "targetRef": {"kind": "Pod", "namespace": "shop", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}})).collect::<Vec<_>>(),
               "ports": [{"port": 80}]}),
    );
    slice["metadata"]["ownerReferences"] = owned_by(&svc)["ownerReferences"].clone();
    fake.apply(slice);
    fake.apply(with(
        obj("networking.k8s.io/v1", "IngressClass", "", "nginx"),
        json!({"spec": {"controller": "k8s.io/ingress-nginx"}}),
    ));
    fake.apply(with(
        obj("networking.k8s.io/v1", "Ingress", "shop", "web"),
        json!({"spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["shop.example"], "secretName": "web-tls"}],
                        "rules": [{"host": "shop.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    ));
    fake.apply(with(
        obj("networking.k8s.io/v1", "NetworkPolicy", "shop", "web-allow"),
        json!({"spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}),
    ));
    fake.apply(with(
        obj("autoscaling/v2", "HorizontalPodAutoscaler", "shop", "web"),
        json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 2, "maxReplicas": 5},
               "status": {"currentReplicas": 2, "desiredReplicas": 2}}),
    ));
    fake.apply(with(
        obj("policy/v1", "PodDisruptionBudget", "shop", "web"),
        json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
               "status": {"currentHealthy": 2, "desiredHealthy": 1}}),
    ));
    let sts = fake.apply(with(
        obj("apps/v1", "StatefulSet", "shop", "db"),
        json!({"spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                        "template": {"metadata": {"labels": {"app": "db"}},
                                     "spec": {"serviceAccountName": "web-sa", "containers": [{"name": "db", "image": "db:1",
                                              "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"storageClassName": "fast"}}]},
               "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}),
    ));
    fake.apply(with(
        obj("v1", "PersistentVolumeClaim", "shop", "data-db-0"),
        json!({"spec": {"storageClassName": "fast"}, "status": {"phase": "Pending"}}),
    ));
    let mut db0 = running_pod(
        "shop",
        "db-0",
        json!({"app": "db"}),
        json!({"serviceAccountName": "web-sa", "nodeName": "node-1",
               "containers": [{"name": "db", "image": "db:1"}],
               "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]}),
    );
    db0["metadata"]["ownerReferences"] = owned_by(&sts)["ownerReferences"].clone();
    fake.apply(db0);
    let ds = fake.apply(with(
        obj("apps/v1", "DaemonSet", "shop", "agent"),
        json!({"spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "template": {"metadata": {"labels": {"app": "agent"}},
                                     "spec": {"serviceAccountName": "web-sa", "containers": [{"name": "a", "image": "agent:1"}]}}},
               "status": {"desiredNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1}}),
    ));
    let mut agent = running_pod(
        "shop",
        "agent-x",
        json!({"app": "agent"}),
        json!({"serviceAccountName": "web-sa", "nodeName": "node-1", "containers": [{"name": "a", "image": "agent:1"}]}),
    );
    agent["metadata"]["ownerReferences"] = owned_by(&ds)["ownerReferences"].clone();
    fake.apply(agent);
    let job_template = json!({"spec": {"template": {"spec": {"serviceAccountName": "web-sa", "restartPolicy": "Never",
        "containers": [{"name": "m", "image": "migrate:1", "envFrom": [{"secretRef": {"name": "web-secret"}}]}]}}}});
    let cron = fake.apply(with(
        obj("batch/v1", "CronJob", "shop", "nightly"),
        json!({"spec": {"schedule": "0 3 * * *", "jobTemplate": job_template}}),
    ));
    let mut job = with(
        obj("batch/v1", "Job", "shop", "nightly-28000"),
        json!({"spec": job_template["spec"].clone(),
               "status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
    );
    job["metadata"]["ownerReferences"] = owned_by(&cron)["ownerReferences"].clone();
    fake.apply(job);

    let e = |a: &str, t: &str, b: &str| (a.to_string(), t.to_string(), b.to_string());
    let mut edges: Edges = [
        e("Deployment/shop/web", "owns", "ReplicaSet/shop/web-7d9"),
        e("ReplicaSet/shop/web-7d9", "owns", "Pod/shop/web-7d9-a"),
        e("ReplicaSet/shop/web-7d9", "owns", "Pod/shop/web-7d9-b"),
        e("Service/shop/web", "owns", "EndpointSlice/shop/web-abcde"),
        e("StatefulSet/shop/db", "owns", "Pod/shop/db-0"),
        e("DaemonSet/shop/agent", "owns", "Pod/shop/agent-x"),
        e("CronJob/shop/nightly", "owns", "Job/shop/nightly-28000"),
        e(
            "Service/shop/web",
            "endpoints",
            "EndpointSlice/shop/web-abcde",
        ),
        e("Ingress/shop/web", "routes-to", "Service/shop/web"),
        e("Ingress/shop/web", "uses-secret", "Secret/shop/web-tls"),
        e("Ingress/shop/web", "uses-class", "IngressClass/nginx"),
        e(
            "PersistentVolumeClaim/shop/data",
            "binds",
            "PersistentVolume/pv-1",
        ),
        e(
            "PersistentVolumeClaim/shop/data",
            "uses-class",
            "StorageClass/fast",
        ),
        e(
            "PersistentVolumeClaim/shop/data-db-0",
            "uses-class",
            "StorageClass/fast",
        ),
        e("PersistentVolume/pv-1", "uses-class", "StorageClass/fast"),
        e(
            "StatefulSet/shop/db",
            "claims",
            "PersistentVolumeClaim/shop/data-db-0",
        ),
        e(
            "Pod/shop/db-0",
            "mounts",
            "PersistentVolumeClaim/shop/data-db-0",
        ),
        e(
            "HorizontalPodAutoscaler/shop/web",
            "scales",
            "Deployment/shop/web",
        ),
        e(
            "CronJob/shop/nightly",
            "uses-secret",
            "Secret/shop/web-secret",
        ),
        e(
            "Job/shop/nightly-28000",
            "uses-secret",
            "Secret/shop/web-secret",
        ),
        e("Deployment/shop/web", "member-of", "HelmRelease/shop/shop"),
    ]
    .into_iter()
    .collect();
    for p in ["web-7d9-a", "web-7d9-b"] {
        let pod = format!("Pod/shop/{p}");
        for from in [
            "Service/shop/web",
            "NetworkPolicy/shop/web-allow",
            "PodDisruptionBudget/shop/web",
        ] {
            edges.insert(e(from, "selects", &pod));
        }
        edges.insert(e("EndpointSlice/shop/web-abcde", "targets", &pod));
    }
    for p in ["web-7d9-a", "web-7d9-b", "db-0", "agent-x"] {
        edges.insert(e(&format!("Pod/shop/{p}"), "runs-on", "Node/node-1"));
    }
    let templated = [
        "Deployment/shop/web",
        "ReplicaSet/shop/web-7d9",
        "Pod/shop/web-7d9-a",
        "Pod/shop/web-7d9-b",
    ];
    for from in templated {
        edges.insert(e(from, "mounts", "PersistentVolumeClaim/shop/data"));
        edges.insert(e(from, "uses-configmap", "ConfigMap/shop/web-config"));
        edges.insert(e(from, "uses-secret", "Secret/shop/web-secret"));
    }
    for from in templated.iter().copied().chain([
        "StatefulSet/shop/db",
        "Pod/shop/db-0",
        "DaemonSet/shop/agent",
        "Pod/shop/agent-x",
        "CronJob/shop/nightly",
        "Job/shop/nightly-28000",
    ]) {
        edges.insert(e(from, "uses-sa", "ServiceAccount/shop/web-sa"));
    }
    edges
}

fn edges_converge(addr: &str, want: &Edges, within: Duration) {
    eventually("the graph's edges", within, || {
        let (_, got) = graph(addr);
        if &got == want {
            Ok(())
        } else {
            Err(diff(want, &got))
        }
    });
}

/// Every response of the service's read API that could show an object.
fn every_response(addr: &str) -> Vec<(String, String)> {
    let mut paths: Vec<String> = [
        "/health",
        "/readyz",
        "/metrics",
        "/api/v2/graph",
        "/api/v2/resources",
        "/api/v2/kinds",
        "/api/v2/namespaces",
        "/api/v2/problems",
        "/api/v2/releases",
        "/api/v2/objects/Secret/shop/web-secret",
        "/api/v2/objects/Secret/shop/sh.helm.release.v1.shop.v1",
        "/api/v2/objects/ConfigMap/shop/web-config",
        "/api/v1/graph",
        "/api/v1/resources",
        "/api/v1/namespaces",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    let (_, g) = get(addr, "/api/v2/graph");
    for n in g["nodes"].as_array().unwrap() {
        let uid = n["uid"].as_str().unwrap();
        paths.push(format!("/api/v2/resources/{uid}"));
        if matches!(n["kind"].as_str(), Some("Secret" | "ConfigMap")) {
            paths.push(format!("/api/v2/resources/{uid}/neighbors"));
            paths.push(format!("/api/v2/resources/{uid}/impact"));
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let (status, body) = get_text(addr, &p);
            assert_eq!(status, 200, "{p}: {body}");
            (p, body)
        })
        .collect()
}

fn assert_no_marker(what: &str, text: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET_MARKER);
    for m in [SECRET_MARKER, b64.as_str(), CONFIG_MARKER] {
        assert!(!text.contains(m), "{what} contains {m:?}:\n{text}");
    }
}

// ----- tests ----------------------------------------------------------------------------------

#[test]
fn the_fake_evaluates_label_selectors_like_the_api_server() {
    let labels = json!({"app": "web", "tier": "front"});
    for (s, want) in [
        ("app=web", true),
        ("app==web", true),
        ("app!=web", false),
        ("missing!=x", true),
        ("app in (web, api)", true),
        ("app notin (web)", false),
        ("missing notin (x)", true),
        ("tier", true),
        ("!tier", false),
        ("app=web,tier in (front,back)", true),
        ("", true),
    ] {
        assert_eq!(
            fake_kube::label_selector_matches(s, &labels),
            Ok(want),
            "{s}"
        );
    }
    assert!(fake_kube::label_selector_matches("a in x", &labels).is_err());
}

#[test]
fn every_kind_and_edge_arrives_updates_move_edges_and_secret_data_never_leaves() {
    let fake = FakeKube::start();
    let mut want = shop(&fake);
    // Small pages: every list takes several requests.
    let server = serve(&fake, &["--list-page-size", "2"]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    converges(&fake, &addr, Duration::from_secs(10), all);
    edges_converge(&addr, &want, Duration::from_secs(10));

    let (status, check, kube) = kube_health(&addr);
    assert_eq!(
        (status.as_str(), check.as_str()),
        ("healthy", "pass"),
        "{kube}"
    );
    for kind in [
        "autoscaling/HorizontalPodAutoscaler",
        "policy/PodDisruptionBudget",
        "discovery.k8s.io/EndpointSlice",
        "batch/CronJob",
        "Pod",
        "Secret",
    ] {
        assert_eq!(kube["kinds"][kind]["state"], "watching", "{kind}: {kube}");
        assert_eq!(kube["kinds"][kind]["listed"], true, "{kind}: {kube}");
    }
    assert_eq!(kube["kinds"].as_object().unwrap().len(), 22, "{kube}");
    // The release record was recognised from its labels alone.
    let (_, g) = get(&addr, "/api/v2/graph");
    let release = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "HelmRelease")
        .unwrap_or_else(|| panic!("a HelmRelease node in {g}"));
    assert_eq!(
        (&release["namespace"], &release["name"], &release["status"]),
        (&json!("shop"), &json!("shop"), &json!("Ready")),
        "{release}"
    );
    assert_eq!(
        kube["kinds"]["autoscaling/HorizontalPodAutoscaler"]["apiVersion"],
        "autoscaling/v2"
    );
    // Lists were paginated.
    assert!(
        fake.request_log()
            .iter()
            .any(|r| r.kind == "Pod" && r.verb == "list" && r.query.contains("continue=")),
        "Pods were listed in pages"
    );

    // The source's metrics.
    let (_, text) = get_text(&addr, "/metrics");
    assert_eq!(
        metric(&addr, "astrolabe_kube_events_total", "Pod"),
        4.0,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("astrolabe_apply_lag_seconds_count") && !l.ends_with(" 0")),
        "{text}"
    );
    // Every batch the graph's writer applied held the write lock once.
    assert!(
        text.lines().any(
            |l| l.starts_with("astrolabe_ingest_write_lock_hold_seconds_count")
                && !l.ends_with(" 0")
        ),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("astrolabe_objects{")
            && l.contains("\"Pod\"")
            && l.ends_with(" 4")),
        "{text}"
    );

    // Secrets and ConfigMaps are only ever asked for metadata only.
    assert_eq!(fake.full_object_responses("Secret"), 0);
    assert_eq!(fake.full_object_responses("ConfigMap"), 0);
    for r in fake.request_log() {
        if matches!(r.kind, "Secret" | "ConfigMap") {
            let wanted = if r.verb == "list" {
                "as=PartialObjectMetadataList"
            } else {
                "as=PartialObjectMetadata"
            };
            assert!(r.accept.contains(wanted), "{r:?}");
        }
    }

    // Updates move edges.
    fake.apply(running_pod(
        "shop",
        "api-1",
        json!({"app": "api"}),
        json!({"serviceAccountName": "web-sa", "containers": [{"name": "api", "image": "api:1"}]}),
    ));
    let mut svc = fake.get("Service", "shop", "web").unwrap();
    svc["spec"]["selector"] = json!({"app": "api"});
    fake.apply(svc);
    let mut hpa = fake.get("HorizontalPodAutoscaler", "shop", "web").unwrap();
    hpa["spec"]["scaleTargetRef"] =
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"});
    fake.apply(hpa);
    fake.apply(with(
        obj("v1", "PersistentVolume", "", "pv-2"),
        json!({"spec": {"storageClassName": "fast"}, "status": {"phase": "Bound"}}),
    ));
    let mut pvc = fake.get("PersistentVolumeClaim", "shop", "data").unwrap();
    pvc["spec"]["volumeName"] = json!("pv-2");
    fake.apply(pvc);
    let e = |a: &str, t: &str, b: &str| (a.to_string(), t.to_string(), b.to_string());
    for p in ["web-7d9-a", "web-7d9-b"] {
        want.remove(&e("Service/shop/web", "selects", &format!("Pod/shop/{p}")));
    }
    want.insert(e("Service/shop/web", "selects", "Pod/shop/api-1"));
    want.insert(e("Pod/shop/api-1", "uses-sa", "ServiceAccount/shop/web-sa"));
    want.remove(&e(
        "HorizontalPodAutoscaler/shop/web",
        "scales",
        "Deployment/shop/web",
    ));
    want.insert(e(
        "HorizontalPodAutoscaler/shop/web",
        "scales",
        "StatefulSet/shop/db",
    ));
    want.remove(&e(
        "PersistentVolumeClaim/shop/data",
        "binds",
        "PersistentVolume/pv-1",
    ));
    want.insert(e(
        "PersistentVolumeClaim/shop/data",
        "binds",
        "PersistentVolume/pv-2",
    ));
    want.insert(e(
        "PersistentVolume/pv-2",
        "uses-class",
        "StorageClass/fast",
    ));
    edges_converge(&addr, &want, Duration::from_secs(10));

    // Deletes remove nodes and their edges.
    assert!(fake.delete("Pod", "shop", "web-7d9-b"));
    assert!(fake.delete("Deployment", "shop", "web"));
    assert!(fake.delete("Secret", "shop", "web-tls"));
    want.retain(|(a, _, b)| {
        let gone = [
            "Pod/shop/web-7d9-b",
            "Deployment/shop/web",
            "Secret/shop/web-tls",
        ];
        !gone.contains(&a.as_str()) && !gone.contains(&b.as_str())
    });
    edges_converge(&addr, &want, Duration::from_secs(10));
    converges(&fake, &addr, Duration::from_secs(10), all);

    // No Secret or ConfigMap data anywhere: not in any response, not in the log.
    for (path, body) in every_response(&addr) {
        assert_no_marker(&path, &body);
    }
    let mut log = String::new();
    server.drain_log(&mut log);
    assert_no_marker("the server's log", &log);
    assert_eq!(fake.full_object_responses("Secret"), 0);
    assert_eq!(fake.full_object_responses("ConfigMap"), 0);
}

#[test]
fn an_old_api_server_skips_the_kinds_it_does_not_serve_and_is_healthy() {
    let fake = FakeKube::start_with(Served::v1_20());
    fake.apply(namespace("shop"));
    fake.apply(running_pod(
        "shop",
        "web-1",
        json!({"app": "web"}),
        json!({"containers": [{"name": "c", "image": "x"}]}),
    ));
    fake.apply(workload("apps/v1", "Deployment", "web", json!({})));
    fake.apply(obj("batch/v1", "Job", "shop", "once"));
    // Served only at versions Astrolabe does not watch.
    fake.apply(with(
        obj("autoscaling/v1", "HorizontalPodAutoscaler", "shop", "web"),
        json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}}),
    ));
    fake.apply(obj("policy/v1beta1", "PodDisruptionBudget", "shop", "web"));
    fake.apply(obj(
        "discovery.k8s.io/v1beta1",
        "EndpointSlice",
        "shop",
        "web-x",
    ));
    fake.apply(with(
        obj("batch/v1beta1", "CronJob", "shop", "nightly"),
        json!({"spec": {"schedule": "@daily"}}),
    ));
    let server = serve(&fake, &[]);
    let addr = server.addr().to_string();
    wait_ready(&addr);

    let (status, check, kube) = kube_health(&addr);
    assert_eq!(
        (status.as_str(), check.as_str()),
        ("healthy", "pass"),
        "{kube}"
    );
    assert_eq!(
        names(&kube["skipped"]),
        [
            "autoscaling/HorizontalPodAutoscaler",
            "batch/CronJob",
            "discovery.k8s.io/EndpointSlice",
            "policy/PodDisruptionBudget"
        ],
        "{kube}"
    );
    assert!(
        names(&kube["forbidden"]).is_empty() && names(&kube["failing"]).is_empty(),
        "{kube}"
    );
    for k in names(&kube["skipped"]) {
        assert_eq!(kube["kinds"][&k]["state"], "skipped", "{kube}");
        // The reason names the version that was wanted.
        let wanted = kube["kinds"][&k]["apiVersion"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            kube["kinds"][&k]["reason"]
                .as_str()
                .unwrap()
                .contains(&wanted),
            "{kube}"
        );
    }
    assert_eq!(kube["kinds"]["Pod"]["state"], "watching");
    assert_eq!(kube["kinds"]["batch/Job"]["state"], "watching");
    // The unserved versions were never asked for: no request names their resources (a request
    // for a version the fake does not serve is logged as a 404 with its path).
    let asked: Vec<_> = fake
        .request_log()
        .into_iter()
        .filter(|r| {
            [
                "horizontalpodautoscalers",
                "poddisruptionbudgets",
                "endpointslices",
                "cronjobs",
            ]
            .iter()
            .any(|plural| r.query.contains(plural))
                || [
                    "HorizontalPodAutoscaler",
                    "PodDisruptionBudget",
                    "EndpointSlice",
                    "CronJob",
                ]
                .contains(&r.kind)
        })
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    let served = ["Namespace", "Pod", "Deployment", "Job"];
    converges(&fake, &addr, Duration::from_secs(10), |o| {
        served.contains(&o["kind"].as_str().unwrap())
    });
}

#[test]
fn dropped_watches_and_compaction_relist_to_exactly_the_servers_state() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    let rs = fake.apply(workload("apps/v1", "ReplicaSet", "web-1", json!({})));
    for i in 0..10 {
        let mut p = running_pod(
            "shop",
            &format!("web-1-{i}"),
            json!({"app": "web"}),
            json!({"containers": [{"name": "c", "image": "x"}]}),
        );
        p["metadata"]["ownerReferences"] = owned_by(&rs)["ownerReferences"].clone();
        fake.apply(p);
        fake.apply(obj("v1", "ConfigMap", "shop", &format!("cm-{i}")));
        fake.apply(obj("v1", "Secret", "shop", &format!("secret-{i}")));
    }
    fake.apply(with(
        obj("v1", "Service", "shop", "web"),
        json!({"spec": {"selector": {"app": "web"}}}),
    ));
    let server = serve(&fake, &["--list-page-size", "3"]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    converges(&fake, &addr, Duration::from_secs(10), all);
    let pod_lists = fake.requests("Pod", "list");

    // 1. Every watch ends while the store changes: resuming from their resourceVersions replays
    //    the changes; nothing needs listing again.
    fake.outage(false, |t| {
        t.delete("Pod", "shop", "web-1-0");
        t.delete("ConfigMap", "shop", "cm-0");
        t.delete("Secret", "shop", "secret-0");
        // Deleted and created again under the same name: a new uid.
        let again = t.delete("Pod", "shop", "web-1-9") && t.delete("Secret", "shop", "secret-9");
        assert!(again);
        t.apply(running_pod(
            "shop",
            "web-1-9",
            json!({"app": "web"}),
            json!({"containers": [{"name": "c", "image": "x"}]}),
        ));
        t.apply(obj("v1", "Secret", "shop", "secret-9"));
        t.apply(running_pod(
            "shop",
            "late-1",
            json!({"app": "web"}),
            json!({"containers": [{"name": "c", "image": "x"}]}),
        ));
    });
    converges(&fake, &addr, Duration::from_secs(10), all);
    assert_eq!(metric(&addr, "astrolabe_kube_relists_total", "Pod"), 0.0);
    assert_eq!(
        fake.requests("Pod", "list"),
        pod_lists,
        "no relist after a plain reconnect"
    );

    // 2. Watches fail (500) for a while; meanwhile objects go and the history is compacted: the
    //    resumed watches get 410 Expired and list again.
    let pod_watches = fake.requests("Pod", "watch");
    fake.fail_watches(Some(500));
    fake.drop_watches();
    eventually("the Pod watch fails", Duration::from_secs(10), || {
        let failed = fake
            .request_log()
            .iter()
            .filter(|r| r.kind == "Pod" && r.verb == "watch" && r.status == 500)
            .count();
        if failed > 0 {
            Ok(())
        } else {
            Err(format!(
                "{} watches",
                fake.requests("Pod", "watch") - pod_watches
            ))
        }
    });
    fake.delete("Pod", "shop", "web-1-1");
    fake.delete("Pod", "shop", "late-1");
    fake.delete("ConfigMap", "shop", "cm-1");
    let mut p = fake.get("Pod", "shop", "web-1-2").unwrap();
    p["metadata"]["labels"]["app"] = json!("moved");
    fake.apply(p);
    fake.compact();
    fake.fail_watches(None);
    converges(&fake, &addr, Duration::from_secs(15), all);
    eventually("Pods relisted", Duration::from_secs(5), || {
        let relists = metric(&addr, "astrolabe_kube_relists_total", "Pod");
        if relists >= 1.0 {
            Ok(())
        } else {
            Err(format!("relists {relists}"))
        }
    });
    assert!(fake.requests("Pod", "list") > pod_lists);
    assert!(metric(&addr, "astrolabe_kube_watch_errors_total", "Pod") >= 1.0);

    // 3. An outage with compaction: every kind's watch resumes into 410 and relists; deletions
    //    of every kind made meanwhile leave no ghost.
    let before: BTreeMap<&str, f64> = [
        "Pod",
        "ConfigMap",
        "Secret",
        "Service",
        "apps/ReplicaSet",
        "Namespace",
    ]
    .into_iter()
    .map(|k| (k, metric(&addr, "astrolabe_kube_relists_total", k)))
    .collect();
    fake.outage(true, |t| {
        for i in 3..7 {
            t.delete("Pod", "shop", &format!("web-1-{i}"));
            t.delete("ConfigMap", "shop", &format!("cm-{i}"));
            t.delete("Secret", "shop", &format!("secret-{i}"));
        }
        t.delete("Service", "shop", "web");
        t.delete("ReplicaSet", "shop", "web-1");
        t.apply(namespace("fresh"));
        // Re-created under the same names again, unseen by any watch: only the uid tells.
        t.delete("Pod", "shop", "web-1-9");
        t.delete("ConfigMap", "shop", "cm-9");
        t.apply(running_pod(
            "shop",
            "web-1-9",
            json!({"app": "web"}),
            json!({"containers": [{"name": "c", "image": "x"}]}),
        ));
        t.apply(obj("v1", "ConfigMap", "shop", "cm-9"));
        t.apply(obj("v1", "ConfigMap", "fresh", "new"));
    });
    converges(&fake, &addr, Duration::from_secs(15), all);
    eventually("every kind relisted", Duration::from_secs(10), || {
        let lagging: Vec<String> = before
            .iter()
            .filter(|(k, n)| metric(&addr, "astrolabe_kube_relists_total", k) <= **n)
            .map(|(k, _)| k.to_string())
            .collect();
        if lagging.is_empty() {
            Ok(())
        } else {
            Err(format!("not relisted: {lagging:?}"))
        }
    });
    let (_, edges) = graph(&addr);
    assert!(
        edges
            .iter()
            .all(|(a, _, b)| !a.contains("web-1-3") && !b.contains("web-1-3")),
        "{edges:?}"
    );
    eventually_healthy("healthy again", &addr);
}

#[test]
fn list_errors_are_retried_counted_and_reported_until_they_stop() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    fake.apply(running_pod(
        "shop",
        "p",
        json!({}),
        json!({"containers": [{"name": "c", "image": "x"}]}),
    ));
    fake.apply(workload("apps/v1", "Deployment", "web", json!({})));
    fake.fail_lists("Pod", 500, 1000);
    fake.fail_lists("Deployment", 429, 2);
    let server = serve(&fake, &[]);
    let addr = server.addr().to_string();

    eventually("Pods reported failing", Duration::from_secs(15), || {
        let (status, _, kube) = kube_health(&addr);
        if status == "degraded" && names(&kube["failing"]) == ["Pod"] {
            Ok(())
        } else {
            Err(format!("{status}: {kube}"))
        }
    });
    assert_eq!(
        get(&addr, "/readyz").0,
        503,
        "not ready while Pods cannot be listed"
    );
    assert!(metric(&addr, "astrolabe_kube_watch_errors_total", "Pod") >= 1.0);
    let (_, _, kube) = kube_health(&addr);
    assert!(
        kube["kinds"]["Pod"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("injected fault"),
        "{kube}"
    );

    fake.fail_lists("Pod", 500, 0);
    wait_ready(&addr);
    converges(&fake, &addr, Duration::from_secs(10), all);
    eventually_healthy("healthy", &addr);
    assert!(fake.requests("Pod", "list") >= 2);
    // 429s were retried (the client honours Retry-After) until the list went through.
    assert!(fake.requests("Deployment", "list") >= 3);
    let (_, _, kube) = kube_health(&addr);
    assert_eq!(kube["kinds"]["apps/Deployment"]["state"], "watching");
}

#[test]
fn failing_discovery_degrades_health_until_it_answers_again() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    let server = serve(&fake, &["--rediscovery-interval", "1"]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    eventually_healthy("healthy at first", &addr);
    fake.fail_discovery(Some(500));
    eventually(
        "discovery failing, reported",
        Duration::from_secs(10),
        || {
            let (status, check, _) = kube_health(&addr);
            let details = kube_details(&addr);
            if status == "degraded" && check == "warn" && details.contains("discovery failing") {
                Ok(())
            } else {
                Err(format!("{status} / {check}: {details}"))
            }
        },
    );
    // The watches already running go on meanwhile.
    fake.apply(namespace("shop-2"));
    eventually(
        "a change seen while discovery fails",
        Duration::from_secs(10),
        || {
            if get_text(&addr, "/api/v2/resources?kind=Namespace")
                .1
                .contains("shop-2")
            {
                Ok(())
            } else {
                Err(String::new())
            }
        },
    );
    fake.fail_discovery(None);
    eventually_healthy("healthy once discovery answers", &addr);
    assert!(!kube_details(&addr).contains("discovery failing"));
}

#[test]
fn a_forbidden_kind_is_reported_without_an_error_loop_and_recovers_at_rediscovery() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    fake.apply(running_pod(
        "shop",
        "p",
        json!({}),
        json!({"containers": [{"name": "c", "image": "x"}]}),
    ));
    fake.apply(obj("v1", "Secret", "shop", "s"));
    fake.forbid("Secret", true);

    // Default rediscovery (5 minutes): after the 403 nothing asks for Secrets again.
    {
        let server = serve(&fake, &[]);
        let addr = server.addr().to_string();
        wait_ready(&addr);
        let (status, check, kube) = kube_health(&addr);
        assert_eq!(
            (status.as_str(), check.as_str()),
            ("degraded", "warn"),
            "{kube}"
        );
        assert_eq!(names(&kube["forbidden"]), ["Secret"], "{kube}");
        assert_eq!(kube["kinds"]["Secret"]["state"], "forbidden");
        assert!(
            kube["kinds"]["Secret"]["reason"]
                .as_str()
                .unwrap()
                .contains("forbidden"),
            "{kube}"
        );
        for (k, s) in kube["kinds"].as_object().unwrap() {
            if k != "Secret" {
                assert_eq!(s["state"], "watching", "{k}: {kube}");
            }
        }
        converges(&fake, &server.proc.addr, Duration::from_secs(10), |o| {
            o["kind"] != "Secret"
        });
        let asked = fake.requests("Secret", "list") + fake.requests("Secret", "watch");
        // A window in which an error loop (backoff from 0.8 s) would ask again at least twice.
        std::thread::sleep(Duration::from_secs(3));
        let again = fake.requests("Secret", "list") + fake.requests("Secret", "watch");
        assert_eq!(again, asked, "Secrets were asked for again while forbidden");
        assert!(asked <= 2, "{asked} requests for a forbidden kind");
    }

    // Rediscovery every second: once permitted, Secrets are watched and the service is healthy.
    let server = serve(&fake, &["--rediscovery-interval", "1"]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    eventually("Secret forbidden", Duration::from_secs(10), || {
        let (_, _, kube) = kube_health(&addr);
        if names(&kube["forbidden"]) == ["Secret"] {
            Ok(())
        } else {
            Err(kube.to_string())
        }
    });
    fake.forbid("Secret", false);
    eventually(
        "Secrets watched after a rediscovery",
        Duration::from_secs(10),
        || {
            let (status, _, kube) = kube_health(&addr);
            if status == "healthy" && kube["kinds"]["Secret"]["state"] == "watching" {
                Ok(())
            } else {
                Err(format!("{status}: {kube}"))
            }
        },
    );
    converges(&fake, &addr, Duration::from_secs(10), all);
}

#[test]
fn slow_watch_streams_still_converge() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    let server = serve(&fake, &[]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    fake.set_event_delay(Duration::from_millis(100));
    fake.set_bookmark_interval(Duration::from_millis(300));
    for i in 0..12 {
        fake.apply(running_pod(
            "shop",
            &format!("p-{i}"),
            json!({"n": i.to_string()}),
            json!({"containers": [{"name": "c", "image": "x"}]}),
        ));
        fake.apply(obj("v1", "ConfigMap", "shop", &format!("cm-{i}")));
    }
    for i in 0..4 {
        fake.delete("Pod", "shop", &format!("p-{i}"));
        let mut p = fake.get("Pod", "shop", &format!("p-{}", i + 4)).unwrap();
        p["metadata"]["labels"]["changed"] = json!("yes");
        fake.apply(p);
    }
    // A reconnect in the middle of the slow stream resumes where it stopped.
    eventually("some Pods arrived", Duration::from_secs(10), || {
        let (nodes, _) = graph(&addr);
        if nodes.iter().any(|n| n.starts_with("Pod/")) {
            Ok(())
        } else {
            Err("none".into())
        }
    });
    fake.drop_watches();
    converges(&fake, &addr, Duration::from_secs(20), all);
    assert_eq!(metric(&addr, "astrolabe_kube_relists_total", "Pod"), 0.0);
}

#[test]
fn namespace_and_label_filters_keep_what_the_documentation_says() {
    let fake = FakeKube::start();
    for ns in ["shop", "other", "ignored"] {
        fake.apply(namespace(ns));
    }
    fake.apply(obj("v1", "Node", "", "node-1"));
    fake.apply(obj("v1", "PersistentVolume", "", "pv-1"));
    let spec = json!({"containers": [{"name": "c", "image": "x"}]});
    fake.apply(running_pod(
        "shop",
        "web-1",
        json!({"tier": "web"}),
        spec.clone(),
    ));
    fake.apply(running_pod(
        "shop",
        "batch-1",
        json!({"tier": "batch"}),
        spec.clone(),
    ));
    fake.apply(running_pod(
        "other",
        "web-2",
        json!({"tier": "web"}),
        spec.clone(),
    ));
    fake.apply(running_pod(
        "ignored",
        "web-3",
        json!({"tier": "web"}),
        spec.clone(),
    ));
    for (kind, ns) in [
        ("ConfigMap", "shop"),
        ("Secret", "shop"),
        ("ServiceAccount", "shop"),
        ("PersistentVolumeClaim", "other"),
        ("ConfigMap", "ignored"),
        ("Service", "shop"),
    ] {
        fake.apply(obj("v1", kind, ns, "unlabelled"));
    }
    fake.apply(with(
        obj("v1", "Service", "shop", "web"),
        json!({"metadata": {"labels": {"tier": "web"}}, "spec": {"selector": {"tier": "web"}}}),
    ));
    let server = serve(
        &fake,
        &[
            "--namespace",
            "shop",
            "--namespace",
            "other",
            "--label-selector",
            "tier in (web)",
        ],
    );
    let addr = server.addr().to_string();
    wait_ready(&addr);
    let keep = |o: &Value| {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
        let kind = o["kind"].as_str().unwrap();
        if ns.is_empty() {
            return true;
        }
        if !["shop", "other"].contains(&ns) {
            return false;
        }
        matches!(
            kind,
            "ConfigMap" | "Secret" | "ServiceAccount" | "PersistentVolumeClaim"
        ) || o["metadata"]["labels"]["tier"] == "web"
    };
    converges(&fake, &addr, Duration::from_secs(10), keep);
    let (nodes, edges) = graph(&addr);
    assert!(
        nodes.iter().any(|n| n.starts_with("Namespace/ignored ")),
        "{nodes:?}"
    );
    assert!(
        nodes.iter().any(|n| n.starts_with("Pod/other/web-2 ")),
        "{nodes:?}"
    );
    assert!(
        edges.contains(&(
            "Service/shop/web".into(),
            "selects".into(),
            "Pod/shop/web-1".into()
        )),
        "{edges:?}"
    );

    // Label changes move objects in and out of the selection.
    let mut p = fake.get("Pod", "shop", "web-1").unwrap();
    p["metadata"]["labels"]["tier"] = json!("batch");
    fake.apply(p);
    let mut p = fake.get("Pod", "shop", "batch-1").unwrap();
    p["metadata"]["labels"]["tier"] = json!("web");
    fake.apply(p);
    fake.apply(obj("v1", "ConfigMap", "ignored", "another"));
    fake.apply(obj("v1", "ConfigMap", "other", "another"));
    converges(&fake, &addr, Duration::from_secs(10), keep);

    // A relist (after an outage with compaction) reconciles each namespace's scope alone, with
    // the same filters.
    fake.outage(true, |t| {
        t.delete("Pod", "other", "web-2");
        t.delete("ConfigMap", "shop", "unlabelled");
        t.delete("Pod", "ignored", "web-3");
        t.apply(running_pod(
            "other",
            "web-4",
            json!({"tier": "web"}),
            spec.clone(),
        ));
        t.apply(running_pod(
            "other",
            "batch-4",
            json!({"tier": "batch"}),
            spec.clone(),
        ));
        t.apply(running_pod(
            "ignored",
            "web-5",
            json!({"tier": "web"}),
            spec.clone(),
        ));
    });
    converges(&fake, &addr, Duration::from_secs(15), keep);

    // Every watch is back after its relist (each waits out its backoff after the 410 first).
    eventually_healthy("every kind watching again", &addr);
    let (_, _, kube) = kube_health(&addr);
    for k in [
        "Pod in shop",
        "Pod in other",
        "ConfigMap in shop",
        "Node",
        "Namespace",
    ] {
        assert_eq!(kube["kinds"][k]["state"], "watching", "{k}: {kube}");
    }
    // What the API server was asked: namespaced lists in the two namespaces only, the selector
    // on Pods and Services but not on ConfigMaps, Secrets, ServiceAccounts and PVCs.
    for r in fake.request_log() {
        if r.kind.is_empty() {
            continue;
        }
        let def = fake_kube::resource(r.kind);
        if def.namespaced {
            let ns = r.namespace.as_deref().unwrap_or("<all>");
            assert!(["shop", "other"].contains(&ns), "{r:?}");
            let selected = r.query.contains("labelSelector=");
            let exempt = matches!(
                r.kind,
                "ConfigMap" | "Secret" | "ServiceAccount" | "PersistentVolumeClaim"
            );
            assert_eq!(selected, !exempt, "{r:?}");
        } else {
            assert!(
                r.namespace.is_none() && !r.query.contains("labelSelector="),
                "{r:?}"
            );
        }
    }
}

#[test]
fn an_expired_continue_token_restarts_the_list_without_ghosts() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    let spec = json!({"containers": [{"name": "c", "image": "x"}]});
    for i in 0..12 {
        fake.apply(running_pod(
            "shop",
            &format!("p-{i:02}"),
            json!({}),
            spec.clone(),
        ));
    }
    // The first list's second page is refused: the whole list starts over.
    fake.expire_continues("Pod", 1);
    let server = serve(&fake, &["--list-page-size", "2"]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    converges(&fake, &addr, Duration::from_secs(10), all);
    assert!(metric(&addr, "astrolabe_kube_watch_errors_total", "Pod") >= 1.0);
    assert!(
        fake.request_log()
            .iter()
            .any(|r| r.kind == "Pod" && r.verb == "list" && r.status == 410)
    );

    // A relist (after an outage with compaction) that is itself cut after its first page: the
    // objects deleted meanwhile still go, and those of the cut first page stay.
    fake.expire_continues("Pod", 1);
    fake.outage(true, |t| {
        for i in [0, 5, 11] {
            t.delete("Pod", "shop", &format!("p-{i:02}"));
        }
        t.apply(running_pod("shop", "p-new", json!({}), spec.clone()));
    });
    converges(&fake, &addr, Duration::from_secs(15), all);
    let cut = fake
        .request_log()
        .iter()
        .filter(|r| r.kind == "Pod" && r.verb == "list" && r.status == 410)
        .count();
    assert_eq!(cut, 2, "both cuts happened");
}

#[test]
fn watch_failures_alone_recover_to_healthy() {
    // Watches fail and come back without any relist (no compaction) and without any change of
    // the objects: the kinds must not stay "failing" once their watches are open again.
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    fake.apply(running_pod(
        "shop",
        "p",
        json!({}),
        json!({"containers": [{"name": "c", "image": "x"}]}),
    ));
    let server = serve(&fake, &[]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    fake.fail_watches(Some(500));
    fake.drop_watches();
    eventually("watches reported failing", Duration::from_secs(10), || {
        let (status, _, kube) = kube_health(&addr);
        if status == "degraded" && names(&kube["failing"]).contains(&"Pod".to_string()) {
            Ok(())
        } else {
            Err(format!("{status}: {kube}"))
        }
    });
    fake.fail_watches(None);
    eventually("every watch open again", Duration::from_secs(10), || {
        if fake.open_watches() == 22 {
            Ok(())
        } else {
            Err(format!("{} open", fake.open_watches()))
        }
    });
    eventually(
        "healthy again once the watches are back",
        Duration::from_secs(10),
        || {
            let (status, _, kube) = kube_health(&addr);
            if status == "healthy" && names(&kube["failing"]).is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{status}: failing {:?} (open watches: {})",
                    kube["failing"],
                    fake.open_watches()
                ))
            }
        },
    );
}

#[test]
fn a_revoked_permission_degrades_and_a_restored_one_reconciles() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    for i in 0..3 {
        fake.apply(obj("v1", "ServiceAccount", "shop", &format!("sa-{i}")));
    }
    let server = serve(&fake, &["--rediscovery-interval", "1"]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    converges(&fake, &addr, Duration::from_secs(10), all);

    // RBAC takes ServiceAccounts away; the open watch ends, the next one is refused.
    fake.forbid("ServiceAccount", true);
    fake.drop_watches();
    eventually("ServiceAccount forbidden", Duration::from_secs(10), || {
        let (status, _, kube) = kube_health(&addr);
        if status == "degraded" && names(&kube["forbidden"]) == ["ServiceAccount"] {
            Ok(())
        } else {
            Err(format!("{status}: {kube}"))
        }
    });
    assert_eq!(
        get(&addr, "/readyz").0,
        200,
        "still ready: the other kinds are served"
    );
    // Meanwhile, with the history compacted so nothing can be replayed.
    fake.delete("ServiceAccount", "shop", "sa-0");
    fake.apply(obj("v1", "ServiceAccount", "shop", "sa-new"));
    fake.compact();
    fake.forbid("ServiceAccount", false);
    converges(&fake, &addr, Duration::from_secs(10), all);
    eventually_healthy("healthy again", &addr);
}

#[test]
fn kinds_an_upgraded_api_server_starts_serving_are_watched_after_rediscovery() {
    let fake = FakeKube::start_with(Served::v1_20());
    fake.apply(namespace("shop"));
    fake.apply(workload("apps/v1", "Deployment", "web", json!({})));
    fake.apply(with(
        obj("autoscaling/v2", "HorizontalPodAutoscaler", "shop", "web"),
        json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}}),
    ));
    fake.apply(with(
        obj("policy/v1", "PodDisruptionBudget", "shop", "web"),
        json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}}),
    ));
    let server = serve(&fake, &["--rediscovery-interval", "1"]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    let (_, _, kube) = kube_health(&addr);
    assert_eq!(names(&kube["skipped"]).len(), 4, "{kube}");

    fake.set_served(Served::latest());
    converges(&fake, &addr, Duration::from_secs(10), all);
    let (status, _, kube) = kube_health(&addr);
    assert_eq!(status, "healthy", "{kube}");
    assert!(names(&kube["skipped"]).is_empty(), "{kube}");
    let (_, edges) = graph(&addr);
    assert!(
        edges.contains(&(
            "HorizontalPodAutoscaler/shop/web".into(),
            "scales".into(),
            "Deployment/shop/web".into()
        )),
        "{edges:?}"
    );
}

/// One request to the fake with the test token; returns the status and the body text.
fn fake_request(fake: &FakeKube, path: &str, accept: Option<&str>, token: bool) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}{path}", fake.url()));
        if token {
            req = req.bearer_auth(fake_kube::TOKEN);
        }
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let r = req.send().await.expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

/// Reads a watch on the fake until `max_events` events have arrived, the stream ends, or `within`
/// has passed; returns the status and the events.
fn fake_watch(
    fake: &FakeKube,
    path: &str,
    accept: &str,
    within: Duration,
    max_events: usize,
) -> (u16, Vec<Value>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + within;
        let mut r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}{path}", fake.url()))
            .bearer_auth(fake_kube::TOKEN)
            .header("Accept", accept)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let (mut buf, mut events) = (Vec::<u8>::new(), Vec::new());
        while events.len() < max_events {
            match tokio::time::timeout_at(deadline, r.chunk()).await {
                Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
                _ => break,
            }
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                events.push(serde_json::from_slice::<Value>(&line).expect("a JSON event"));
            }
        }
        events.truncate(max_events);
        (status, events)
    })
}

/// The requests recorded from a real v1.20 API server into `tests/fixtures/kube-golden` (see
/// `golden_files_match_the_real_api_server` in `tests/kube_live.rs`), made to the fake: every
/// response has the recorded shape, and each discovery entry the fake serves is the real one.
#[test]
fn golden_files_match_the_fake_api_server() {
    use support::golden::{self, ACCEPT_JSON, ACCEPT_METADATA, ACCEPT_METADATA_LIST, NAMESPACE};
    let fake = FakeKube::start_with(Served::v1_20());
    fake.set_bookmark_interval(Duration::from_millis(200));
    fake.apply(golden::namespace());
    let secrets = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    for name in ["config-a", "config-b"] {
        fake.apply(golden::secret(name));
    }
    // The Pods as the real server stored them, its defaults included (the fake stores what it is
    // given): the recorded list's item under each name.
    let recorded = golden::read("list-pods.json").remove(0)["items"][0].clone();
    for name in ["pod-a", "pod-b"] {
        let mut pod = recorded.clone();
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"] = json!({"name": name, "namespace": NAMESPACE,
                                 "labels": recorded["metadata"]["labels"]});
        fake.apply(pod);
    }
    // The real server was restarted at this point, so that its watch cache begins after these
    // changes: the fake forgets its history.
    fake.compact();
    let get = |path: &str, accept: &str| -> Value {
        let (status, body) = fake_request(&fake, path, Some(accept), true);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    };
    let rv_of = |list: &Value| {
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let list = get(&format!("{secrets}?limit=1"), ACCEPT_METADATA_LIST);
    let secrets_rv = rv_of(&list);
    golden::assert_matches("list-secrets-metadata.json", &[list]);
    let list = get(&format!("{pods}?limit=1"), ACCEPT_JSON);
    let pods_rv = rv_of(&list);
    golden::assert_matches("list-pods.json", &[list]);

    let (status, events) = fake_watch(
        &fake,
        "/api/v1/pods?watch=1&resourceVersion=1",
        ACCEPT_JSON,
        Duration::from_secs(5),
        5,
    );
    assert_eq!(status, 200);
    golden::assert_matches("watch-expired.jsonl", &events);

    fake.apply(golden::secret("config-c"));
    let (status, events) = fake_watch(
        &fake,
        &format!("{secrets}?watch=1&resourceVersion={secrets_rv}"),
        ACCEPT_METADATA,
        Duration::from_secs(5),
        1,
    );
    assert_eq!(status, 200);
    golden::assert_matches("watch-metadata.jsonl", &events);

    // No BOOKMARK for a watch opened after the kind's last change, however often they are due...
    let bookmarks = format!("{pods}?watch=1&allowWatchBookmarks=true&resourceVersion={pods_rv}");
    let (status, events) = fake_watch(
        &fake,
        &format!("{bookmarks}&timeoutSeconds=1"),
        ACCEPT_JSON,
        Duration::from_secs(3),
        1,
    );
    assert_eq!((status, events.len()), (200, 0), "{events:?}");
    // ... but once it changes, the change and then a BOOKMARK at its version.
    let (status, events) = std::thread::scope(|s| {
        let watch = s.spawn(|| {
            fake_watch(
                &fake,
                &format!("{bookmarks}&timeoutSeconds=4"),
                ACCEPT_JSON,
                Duration::from_secs(10),
                2,
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut pod = fake.get("Pod", NAMESPACE, "pod-b").unwrap();
        pod["metadata"]["labels"]["tier"] = json!("web");
        fake.apply(pod);
        watch.join().unwrap()
    });
    assert_eq!(status, 200);
    golden::assert_matches("watch-bookmark.jsonl", &events);
    assert_eq!(
        events[1]["object"]["metadata"]["resourceVersion"],
        events[0]["object"]["metadata"]["resourceVersion"],
        "{events:?}"
    );

    for (path, file) in [
        ("/apis/apps/v1", "discovery-apps-v1.json"),
        ("/api/v1", "discovery-core-v1.json"),
    ] {
        let body = get(path, ACCEPT_JSON);
        golden::assert_matches(file, std::slice::from_ref(&body));
        golden::assert_resources_recorded(file, &body);
    }
}

#[test]
fn the_fake_speaks_the_list_watch_protocol() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    for i in 0..3 {
        fake.apply(with(
            obj("v1", "Secret", "shop", &format!("s-{i}")),
            json!({"data": {"k": "c2VjcmV0"}, "metadata": {"labels": {"i": i.to_string()}}}),
        ));
    }
    assert_eq!(fake_request(&fake, "/api/v1/secrets", None, false).0, 401);

    // Metadata-only lists: no data, items typed PartialObjectMetadata; pages with a continue
    // token at the first page's version.
    let meta_list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let (status, body) = fake_request(
        &fake,
        "/api/v1/namespaces/shop/secrets?limit=2",
        Some(meta_list),
        true,
    );
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["kind"], "PartialObjectMetadataList");
    assert_eq!(page["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["kind"], "PartialObjectMetadata");
    assert!(!body.contains("c2VjcmV0"), "{body}");
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    let rv = page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    fake.delete("Secret", "shop", "s-2");
    let (_, body) = fake_request(
        &fake,
        &format!("/api/v1/namespaces/shop/secrets?limit=2&continue={token}"),
        Some(meta_list),
        true,
    );
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        page["metadata"]["resourceVersion"],
        rv.as_str(),
        "a consistent snapshot"
    );
    assert_eq!(
        page["items"][0]["metadata"]["name"], "s-2",
        "deleted after the first page"
    );
    // Asking for a single-object representation on a list is not acceptable.
    let (status, _) = fake_request(
        &fake,
        "/api/v1/secrets",
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
        true,
    );
    assert_eq!(status, 406);
    // Whole lists carry no apiVersion/kind on their items; label selectors apply.
    let (_, body) = fake_request(
        &fake,
        "/api/v1/secrets?labelSelector=i%20in%20(0%2C1)",
        None,
        true,
    );
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "SecretList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["items"][0].get("kind").is_none());
    assert_eq!(fake.full_object_responses("Secret"), 1);

    // A watch from the first page's version replays the deletion, then ends at its timeout.
    let (_, body) = fake_request(
        &fake,
        &format!("/api/v1/secrets?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
        true,
    );
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "DELETED", "{body}");
    assert_eq!(events[0]["object"]["kind"], "PartialObjectMetadata");
    // After compaction: the real server's 410 event, byte for byte.
    fake.compact();
    let (status, body) = fake_request(
        &fake,
        &format!("/api/v1/secrets?watch=1&resourceVersion={rv}"),
        None,
        true,
    );
    assert_eq!(status, 200);
    let now = fake.resource_version();
    assert_eq!(
        body,
        format!(
            "{{\"type\":\"ERROR\",\"object\":{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Failure\",\"message\":\"too old resource version: {rv} ({now})\",\"reason\":\"Expired\",\"code\":410}}}}\n"
        )
    );
    // Unserved versions are 404 with a Status.
    let (status, body) = fake_request(
        &fake,
        "/apis/autoscaling/v2beta1/horizontalpodautoscalers",
        None,
        true,
    );
    assert_eq!(status, 404);
    assert!(body.contains("the server could not find the requested resource"));
}

#[test]
fn a_kind_the_api_server_stops_serving_is_emptied_and_reported_skipped() {
    let fake = FakeKube::start();
    fake.apply(namespace("shop"));
    fake.apply(workload("apps/v1", "Deployment", "web", json!({})));
    fake.apply(with(
        obj("autoscaling/v2", "HorizontalPodAutoscaler", "shop", "web"),
        json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}}),
    ));
    let server = serve(&fake, &[]);
    let addr = server.addr().to_string();
    wait_ready(&addr);
    converges(&fake, &addr, Duration::from_secs(10), all);

    // A downgrade: autoscaling/v2 (and the other kinds v1.20 lacks) are gone; the open watches
    // end and the new ones get 404s.
    fake.set_served(Served::v1_20());
    fake.drop_watches();
    let served_by_v1_20 = |o: &Value| {
        !matches!(
            o["kind"].as_str(),
            Some("HorizontalPodAutoscaler" | "PodDisruptionBudget" | "EndpointSlice" | "CronJob")
        )
    };
    // The HPA still exists in the store, but no server answers for it: the graph drops it
    // rather than keep a copy nothing can update.
    converges(&fake, &addr, Duration::from_secs(15), served_by_v1_20);
    let (_, _, kube) = kube_health(&addr);
    assert!(
        names(&kube["skipped"]).contains(&"autoscaling/HorizontalPodAutoscaler".to_string()),
        "{kube}"
    );
}
