//! Tests of the demo cluster: size accuracy, determinism, presence of every kind, problem and
//! Helm case, referential consistency, and the replay invariant of `step()`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::util::rfc3339;
use super::{DemoCluster, DemoConfig, DemoEvent, names};

type Key = (String, String, String);

fn cluster(objects: usize, seed: u64) -> DemoCluster {
    DemoCluster::new(DemoConfig {
        objects,
        seed,
        ..DemoConfig::default()
    })
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn key(v: &Value) -> Key {
    (
        text(v, "/kind").to_string(),
        text(v, "/metadata/namespace").to_string(),
        text(v, "/metadata/name").to_string(),
    )
}

/// The objects by (kind, namespace, name), asserting that no key repeats.
fn snapshot(objects: impl Iterator<Item = Value>) -> BTreeMap<Key, Value> {
    let mut map = BTreeMap::new();
    for v in objects {
        let k = key(&v);
        assert!(map.insert(k.clone(), v).is_none(), "duplicate object {k:?}");
    }
    map
}

fn of_kind<'a>(
    state: &'a BTreeMap<Key, Value>,
    kind: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    state
        .iter()
        .filter(move |(k, _)| k.0 == kind)
        .map(|(_, v)| v)
}

fn get<'a>(state: &'a BTreeMap<Key, Value>, kind: &str, ns: &str, name: &str) -> &'a Value {
    state
        .get(&(kind.to_string(), ns.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("missing {kind} {ns}/{name}"))
}

fn condition<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn pods_of<'a>(
    state: &'a BTreeMap<Key, Value>,
    ns: &'a str,
    prefix: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    of_kind(state, "Pod").filter(move |p| {
        text(p, "/metadata/namespace") == ns && text(p, "/metadata/name").starts_with(prefix)
    })
}

/// Uniqueness of uids, well-formed metadata and every cross-object reference.
fn check_consistency(state: &BTreeMap<Key, Value>, now: i64) {
    let newest = rfc3339(now);
    let mut uids: HashMap<&str, &Value> = HashMap::new();
    for v in state.values() {
        let uid = text(v, "/metadata/uid");
        assert_eq!(uid.len(), 36, "uid of {:?}", key(v));
        assert!(uids.insert(uid, v).is_none(), "duplicate uid {uid}");
        let created = text(v, "/metadata/creationTimestamp");
        assert!(
            created.len() == 20 && created.ends_with('Z') && created <= newest.as_str(),
            "{created} for {:?}",
            key(v)
        );
        assert!(text(v, "/metadata/resourceVersion").parse::<u64>().is_ok());
        assert!(
            v.pointer("/metadata/managedFields/0/manager").is_some(),
            "managedFields of {:?}",
            key(v)
        );
    }
    let nodes: HashSet<&str> = of_kind(state, "Node")
        .map(|n| text(n, "/metadata/name"))
        .collect();
    for v in state.values() {
        for owner in v
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let target = uids
                .get(text(owner, "/uid"))
                .unwrap_or_else(|| panic!("owner of {:?} missing", key(v)));
            assert_eq!(target["kind"], owner["kind"]);
            assert_eq!(target["metadata"]["name"], owner["name"]);
            assert_eq!(target["metadata"]["namespace"], v["metadata"]["namespace"]);
        }
    }
    for pod in of_kind(state, "Pod") {
        if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            assert!(nodes.contains(node), "unknown node {node}");
        }
    }
    for slice in of_kind(state, "EndpointSlice") {
        let ns = text(slice, "/metadata/namespace");
        let service = text(slice, "/metadata/labels/kubernetes.io~1service-name");
        get(state, "Service", ns, service);
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            let pod = uids
                .get(text(e, "/targetRef/uid"))
                .expect("endpoint Pod exists");
            assert_eq!(pod["metadata"]["name"], e["targetRef"]["name"]);
            assert_eq!(text(e, "/addresses/0"), text(pod, "/status/podIP"));
        }
    }
    for pvc in of_kind(state, "PersistentVolumeClaim") {
        if let Some(volume) = pvc.pointer("/spec/volumeName").and_then(Value::as_str) {
            let pv = get(state, "PersistentVolume", "", volume);
            assert_eq!(pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"]);
            assert_eq!(text(pv, "/status/phase"), "Bound");
        }
    }
    for pv in of_kind(state, "PersistentVolume") {
        if text(pv, "/status/phase") == "Bound" {
            assert!(
                uids.contains_key(text(pv, "/spec/claimRef/uid")),
                "claim of {:?}",
                key(pv)
            );
        }
    }
    for hpa in of_kind(state, "HorizontalPodAutoscaler") {
        let ns = text(hpa, "/metadata/namespace");
        get(
            state,
            "Deployment",
            ns,
            text(hpa, "/spec/scaleTargetRef/name"),
        );
    }
}

/// The permanent problems, checked on any state (fresh or churned).
fn check_problems(state: &BTreeMap<Key, Value>) {
    let shop = names::PROBLEM_NAMESPACE;
    let crash = pods_of(state, shop, names::CRASHLOOP_DEPLOYMENT)
        .find(|p| text(p, "/status/containerStatuses/0/state/waiting/reason") == "CrashLoopBackOff")
        .expect("a CrashLoopBackOff Pod");
    assert_eq!(text(crash, "/status/phase"), "Running");
    assert!(
        crash["status"]["containerStatuses"][0]["restartCount"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let pull = pods_of(state, shop, names::IMAGE_PULL_DEPLOYMENT)
        .find(|p| text(p, "/status/containerStatuses/0/state/waiting/reason") == "ImagePullBackOff")
        .expect("an ImagePullBackOff Pod");
    assert_eq!(text(pull, "/status/phase"), "Pending");
    let stuck = get(state, "Deployment", shop, names::IMAGE_PULL_DEPLOYMENT);
    let progressing = condition(stuck, "Progressing").expect("Progressing condition");
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
    let uses_missing = |v: &Value| {
        v.to_string()
            .contains(&format!("\"name\":\"{}\"", names::MISSING_CONFIGMAP))
    };
    assert!(uses_missing(get(
        state,
        "Deployment",
        shop,
        names::MISSING_CONFIGMAP_DEPLOYMENT
    )));
    assert!(pods_of(state, shop, names::MISSING_CONFIGMAP_DEPLOYMENT).any(uses_missing));
    assert!(!state.contains_key(&(
        "ConfigMap".into(),
        shop.into(),
        names::MISSING_CONFIGMAP.into()
    )));
    let pending = get(state, "PersistentVolumeClaim", shop, names::PENDING_PVC);
    assert_eq!(text(pending, "/status/phase"), "Pending");
    assert!(pending.pointer("/spec/volumeName").is_none());
    let failed =
        condition(get(state, "Job", shop, names::FAILED_JOB), "Failed").expect("Failed condition");
    assert_eq!(failed["status"], "True");
    let dangling = get(state, "Ingress", shop, names::DANGLING_INGRESS);
    assert_eq!(
        text(dangling, "/spec/rules/0/http/paths/0/backend/service/name"),
        names::MISSING_SERVICE
    );
    assert!(!state.contains_key(&("Service".into(), shop.into(), names::MISSING_SERVICE.into())));
    let pending_lb = get(state, "Service", shop, names::PENDING_LB_SERVICE);
    assert_eq!(text(pending_lb, "/spec/type"), "LoadBalancer");
    assert!(pending_lb.pointer("/status/loadBalancer/ingress").is_none());
    let not_ready = get(state, "Node", "", names::NOT_READY_NODE);
    assert_eq!(
        condition(not_ready, "Ready").expect("Ready")["status"],
        "False"
    );
    assert_eq!(
        get(state, "Node", "", names::CORDONED_NODE)["spec"]["unschedulable"],
        true
    );
}

/// Every kind, Helm case and configuration mechanism the consumer has to handle.
fn check_features(state: &BTreeMap<Key, Value>, objects: usize) {
    let kinds: BTreeSet<&str> = state.keys().map(|k| k.0.as_str()).collect();
    for kind in [
        "Node",
        "StorageClass",
        "IngressClass",
        "PersistentVolume",
        "Namespace",
        "ClusterRole",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "ReplicaSet",
        "Pod",
        "StatefulSet",
        "PersistentVolumeClaim",
        "DaemonSet",
        "CronJob",
        "Job",
        "Service",
        "EndpointSlice",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(kind), "no {kind}");
    }
    // Cluster-scoped objects.
    assert!(of_kind(state, "Node").count() >= 3);
    let standard = get(state, "StorageClass", "", names::DEFAULT_STORAGE_CLASS);
    assert_eq!(
        text(
            standard,
            "/metadata/annotations/storageclass.kubernetes.io~1is-default-class"
        ),
        "true"
    );
    get(state, "StorageClass", "", names::FAST_STORAGE_CLASS);
    get(state, "IngressClass", "", names::INGRESS_CLASS);
    assert_eq!(
        text(
            get(state, "PersistentVolume", "", names::RELEASED_PV),
            "/status/phase"
        ),
        "Released"
    );
    for ns in of_kind(state, "Namespace") {
        let name = text(ns, "/metadata/name");
        assert_eq!(text(ns, "/status/phase"), "Active");
        assert_eq!(
            text(ns, "/metadata/labels/kubernetes.io~1metadata.name"),
            name
        );
        get(state, "ServiceAccount", name, "default");
    }
    // Workload structure.
    let old_rs = of_kind(state, "ReplicaSet")
        .find(|rs| rs["spec"]["replicas"] == 0)
        .expect("an old ReplicaSet scaled to zero");
    assert!(
        old_rs
            .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .is_some()
    );
    assert!(
        old_rs
            .pointer("/metadata/labels/pod-template-hash")
            .is_some()
    );
    assert_eq!(old_rs["metadata"]["ownerReferences"][0]["controller"], true);
    let sts_pod = of_kind(state, "Pod")
        .find(|p| p["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet")
        .expect("a StatefulSet Pod");
    let claim = sts_pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
        .expect("a StatefulSet Pod mounts its claim");
    assert_eq!(claim, format!("data-{}", text(sts_pod, "/metadata/name")));
    let claim = get(
        state,
        "PersistentVolumeClaim",
        text(sts_pod, "/metadata/namespace"),
        claim,
    );
    assert_eq!(text(claim, "/status/phase"), "Bound");
    assert!(claim.pointer("/spec/storageClassName").is_some());
    let nodes = of_kind(state, "Node").count();
    for ds in of_kind(state, "DaemonSet") {
        let uid = text(ds, "/metadata/uid");
        let pods = of_kind(state, "Pod")
            .filter(|p| text(p, "/metadata/ownerReferences/0/uid") == uid)
            .count();
        assert_eq!(
            pods,
            nodes,
            "one Pod per Node for {}",
            text(ds, "/metadata/name")
        );
    }
    assert!(
        of_kind(state, "Job")
            .any(|j| condition(j, "Complete").is_some_and(|c| c["status"] == "True"))
    );
    assert!(of_kind(state, "Pod").any(|p| p["status"]["phase"] == "Succeeded"));
    // Networking.
    let services: Vec<&Value> = of_kind(state, "Service").collect();
    assert!(services.iter().any(|s| s["spec"]["type"] == "ClusterIP"));
    assert!(
        services
            .iter()
            .any(|s| s.pointer("/status/loadBalancer/ingress/0").is_some())
    );
    let tls_ingress = of_kind(state, "Ingress")
        .find(|i| i.pointer("/spec/tls/0/secretName").is_some())
        .expect("a TLS Ingress");
    let tls = get(
        state,
        "Secret",
        text(tls_ingress, "/metadata/namespace"),
        text(tls_ingress, "/spec/tls/0/secretName"),
    );
    assert_eq!(text(tls, "/type"), "kubernetes.io/tls");
    assert!(
        tls_ingress
            .pointer("/status/loadBalancer/ingress/0")
            .is_some()
    );
    assert!(
        of_kind(state, "EndpointSlice")
            .any(|s| s.pointer("/endpoints/0/conditions/ready").is_some())
    );
    let pdbs: Vec<&Value> = of_kind(state, "PodDisruptionBudget").collect();
    assert!(
        pdbs.iter()
            .any(|p| p.pointer("/spec/selector/matchExpressions").is_some())
    );
    assert!(
        pdbs.iter()
            .any(|p| p.pointer("/spec/selector/matchExpressions").is_none())
    );
    let policies: Vec<&Value> = of_kind(state, "NetworkPolicy").collect();
    assert!(
        policies
            .iter()
            .any(|p| p["spec"]["podSelector"] == serde_json::json!({}))
    );
    assert!(
        policies
            .iter()
            .any(|p| p.pointer("/spec/podSelector/matchLabels").is_some())
    );
    for hpa in of_kind(state, "HorizontalPodAutoscaler") {
        assert_eq!(text(hpa, "/apiVersion"), "autoscaling/v2");
        for c in ["AbleToScale", "ScalingActive"] {
            assert_eq!(condition(hpa, c).expect("HPA condition")["status"], "True");
        }
    }
    // Configuration mechanisms and their noise.
    let pods = of_kind(state, "Pod")
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for mechanism in [
        "\"configMapRef\"",
        "\"secretRef\"",
        "\"configMapKeyRef\"",
        "\"secretKeyRef\"",
        "\"projected\"",
        "\"imagePullSecrets\"",
        "\"secretName\"",
        "\"configMap\":{\"defaultMode\"",
    ] {
        assert!(pods.contains(mechanism), "no Pod uses {mechanism}");
    }
    assert!(of_kind(state, "Secret").all(|s| s["data"].as_object().is_some_and(|d| !d.is_empty())));
    assert!(
        of_kind(state, "ConfigMap").all(|c| c["data"].as_object().is_some_and(|d| !d.is_empty()))
    );
    let applied = |v: &&Value| {
        v.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
            .is_some()
    };
    assert!(of_kind(state, "Secret").filter(applied).any(|s| {
        text(
            s,
            "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
        )
        .contains("\"data\":{")
    }));
    // Helm.
    let records: Vec<&Value> = of_kind(state, "Secret")
        .filter(|s| s["type"] == "helm.sh/release.v1")
        .collect();
    for r in &records {
        assert_eq!(text(r, "/metadata/labels/owner"), "helm");
        assert!(text(r, "/metadata/name").starts_with(&format!(
            "sh.helm.release.v1.{}.v",
            text(r, "/metadata/labels/name")
        )));
        assert!(
            r.pointer("/data/release").is_some() && r.pointer("/metadata/labels/version").is_some()
        );
    }
    let release = |name: &'static str| {
        records
            .iter()
            .filter(move |r| text(r, "/metadata/labels/name") == name)
    };
    let shared: BTreeSet<&str> = release(names::HELM_SHARED_RELEASE)
        .map(|r| text(r, "/metadata/namespace"))
        .collect();
    assert!(shared.contains(names::PROBLEM_NAMESPACE) && shared.contains(names::BIG_NAMESPACE));
    let failed: Vec<&str> = release(names::HELM_FAILED_RELEASE)
        .map(|r| text(r, "/metadata/labels/status"))
        .collect();
    assert!(
        failed.contains(&"failed")
            && failed.contains(&"deployed")
            && failed.contains(&"superseded")
    );
    let role = get(state, "ClusterRole", "", names::HELM_CLUSTER_ROLE);
    assert_eq!(
        text(role, "/metadata/labels/app.kubernetes.io~1managed-by"),
        "Helm"
    );
    assert_eq!(
        text(role, "/metadata/labels/app.kubernetes.io~1instance"),
        names::HELM_CLUSTER_RELEASE
    );
    assert!(
        role.pointer("/metadata/annotations/meta.helm.sh~1release-name")
            .is_none()
    );
    let helm_rs = of_kind(state, "ReplicaSet").find(|rs| {
        rs.pointer("/metadata/annotations/meta.helm.sh~1release-name")
            .is_some()
    });
    assert!(helm_rs.is_some(), "ReplicaSets copy Helm annotations");
    assert!(
        of_kind(state, "EndpointSlice")
            .any(|s| s.pointer("/metadata/labels/helm.sh~1chart").is_some())
    );
    // The shared ConfigMap.
    get(
        state,
        "ConfigMap",
        names::SHARED_CONFIGMAP_NAMESPACE,
        names::SHARED_CONFIGMAP,
    );
    let marker = format!("\"name\":\"{}\"", names::SHARED_CONFIGMAP);
    let users = of_kind(state, "Pod")
        .filter(|p| p["spec"]["volumes"].to_string().contains(&marker))
        .count();
    assert_eq!(users, names::shared_configmap_users(objects));
}

#[test]
fn sizes_track_the_request() {
    for objects in [300, 2000] {
        let c = cluster(objects, 42);
        let count = c.objects().count();
        assert_eq!(count, c.len());
        assert!(!c.is_empty());
        assert!(
            count.abs_diff(objects) * 10 <= objects,
            "{count} objects for {objects}"
        );
    }
    // Counting only: the plan knows the exact size without rendering.
    let c = cluster(100_000, 42);
    assert!(c.len().abs_diff(100_000) <= 10_000, "{} objects", c.len());
    let big = c
        .plan
        .namespaces
        .iter()
        .find(|n| n.name == names::BIG_NAMESPACE)
        .expect("big namespace");
    assert!(
        big.len().abs_diff(5_000) <= 500,
        "big namespace has {}",
        big.len()
    );
    let users: usize = big
        .apps
        .iter()
        .filter(|a| a.shared_config)
        .map(|a| a.pods().count())
        .sum();
    assert_eq!(users, 100);
    let largest_other = c
        .plan
        .namespaces
        .iter()
        .filter(|n| n.name != names::BIG_NAMESPACE)
        .map(|n| n.len())
        .max();
    assert!(
        largest_other.unwrap_or(0) < 1_000,
        "scale by namespaces, not by one huge namespace"
    );
}

#[test]
fn same_config_gives_the_same_cluster() {
    let mut a = cluster(2000, 7);
    let mut b = cluster(2000, 7);
    assert!(a.objects().eq(b.objects()));
    for _ in 0..30 {
        assert_eq!(a.step(), b.step());
    }
    assert!(a.objects().eq(b.objects()));
    let c = cluster(2000, 8);
    assert!(!cluster(2000, 7).objects().eq(c.objects()));
}

#[test]
fn every_feature_is_present() {
    for objects in [300, 2000] {
        let c = cluster(objects, 42);
        let state = snapshot(c.objects());
        check_consistency(&state, DemoConfig::default().now);
        check_problems(&state);
        check_features(&state, objects);
    }
}

#[test]
fn steps_replay_to_the_current_state() {
    for seed in [1, 2, 3] {
        let mut c = cluster(400, seed);
        let now = DemoConfig::default().now;
        let mut state = snapshot(c.objects());
        let mut last_rv = state
            .values()
            .map(|v| {
                text(v, "/metadata/resourceVersion")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .max();
        let mut seen: BTreeSet<(bool, String)> = BTreeSet::new();
        for step in 1..=300 {
            let events = c.step();
            assert!(!events.is_empty());
            for event in events {
                match event {
                    DemoEvent::Apply(v) => {
                        let rv = text(&v, "/metadata/resourceVersion").parse::<u64>().ok();
                        assert!(rv > last_rv, "resourceVersion must grow");
                        last_rv = rv;
                        seen.insert((true, text(&v, "/kind").to_string()));
                        state.insert(key(&v), v);
                    }
                    DemoEvent::Delete {
                        api_version,
                        kind,
                        namespace,
                        name,
                        uid,
                    } => {
                        let old = state
                            .remove(&(kind.clone(), namespace, name))
                            .expect("deleted object existed");
                        assert_eq!(text(&old, "/metadata/uid"), uid);
                        assert_eq!(text(&old, "/apiVersion"), api_version);
                        seen.insert((false, kind));
                    }
                }
            }
            if step % 60 == 0 {
                let now_state = snapshot(c.objects());
                assert_eq!(now_state.len(), c.len());
                let differing: Vec<&Key> = state
                    .keys()
                    .chain(now_state.keys())
                    .filter(|k| state.get(*k) != now_state.get(*k))
                    .collect();
                assert!(
                    differing.is_empty(),
                    "replay differs after {step} steps (seed {seed}): {differing:?}"
                );
                check_consistency(&state, now);
                check_problems(&state);
            }
        }
        for kind in [
            "Pod",
            "ReplicaSet",
            "Deployment",
            "Job",
            "CronJob",
            "ConfigMap",
            "Service",
            "EndpointSlice",
            "HorizontalPodAutoscaler",
            "Node",
        ] {
            assert!(
                seen.contains(&(true, kind.to_string())),
                "no {kind} update (seed {seed})"
            );
        }
        for kind in ["Pod", "ReplicaSet", "Job"] {
            assert!(
                seen.contains(&(false, kind.to_string())),
                "no {kind} deletion (seed {seed})"
            );
        }
    }
}

#[test]
fn deletions_name_what_render_writes() {
    use super::render::Ref;
    use super::render_app::AppView;
    let c = cluster(2000, 7);
    let mut checked = BTreeMap::new();
    for (n, ns) in c.plan.namespaces.iter().enumerate() {
        for (a, app) in ns.apps.iter().enumerate() {
            let view = AppView::new(&c.plan, n as u32, a as u32);
            for part in AppView::parts(app) {
                let Some(DemoEvent::Delete {
                    api_version,
                    kind,
                    namespace,
                    name,
                    uid,
                }) = view.deletion(part)
                else {
                    continue;
                };
                let v = super::render::render(&c.plan, Ref::App(n as u32, a as u32, part));
                assert_eq!(text(&v, "/apiVersion"), api_version, "{part:?}");
                assert_eq!(text(&v, "/kind"), kind, "{part:?}");
                assert_eq!(text(&v, "/metadata/namespace"), namespace, "{part:?}");
                assert_eq!(text(&v, "/metadata/name"), name, "{part:?}");
                assert_eq!(text(&v, "/metadata/uid"), uid, "{part:?}");
                *checked.entry(kind).or_insert(0) += 1;
            }
        }
    }
    for kind in ["Pod", "ReplicaSet", "Job"] {
        assert!(
            checked.get(kind).is_some_and(|n| *n > 0),
            "no {kind} checked: {checked:?}"
        );
    }
}
