//! The graph is a function of the set of objects: any order and interleaving of upserts and
//! deletes that ends in a given set of objects yields exactly the graph built from that set from
//! scratch (nodes and edges).
//!
//! Objects come from a deliberately small universe (two namespaces, three names, two incarnations
//! per name) so that references collide, targets come and go, selectors flip, and Helm releases
//! appear and vanish within a few operations.

use std::collections::BTreeMap;
use std::sync::Arc;

use astrolabe::graph::{Change, Graph};
use astrolabe::model::{Object, ObjectKey, Uid};
use astrolabe::relations::Projector;
use proptest::prelude::*;
use serde_json::{Value, json};

const NAMESPACES: [&str; 2] = ["a", "b"];
const NAMES: [&str; 3] = ["x", "y", "z"];

/// A UUID for the first incarnation, text for the others: uids of both forms (kept as 16 bytes
/// and as text) mix in every interleaving.
fn uid(kind: &str, ns: &str, name: &str, incarnation: u8) -> String {
    if incarnation == 0 {
        Uid::synthetic(&["prop", kind, ns, name]).to_string()
    } else {
        format!("{kind}.{ns}.{name}.{incarnation}")
    }
}

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&NAMES[..])
}

fn labels() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(&["web", "db"][..])),
        prop::option::of(prop::sample::select(&["f", "b"][..])),
        prop::option::of(prop::sample::select(&["r1", "r2"][..])),
    )
        .prop_map(|(app, tier, helm)| {
            let mut m = serde_json::Map::new();
            if let Some(a) = app {
                m.insert("app".into(), json!(a));
            }
            if let Some(t) = tier {
                m.insert("tier".into(), json!(t));
            }
            if let Some(r) = helm {
                m.insert("app.kubernetes.io/managed-by".into(), json!("Helm"));
                m.insert("app.kubernetes.io/instance".into(), json!(r));
            }
            Value::Object(m)
        })
}

fn selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"matchLabels": {"app": "web"}})),
        Just(
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["f", "b"]}]})
        ),
        Just(
            json!({"matchExpressions": [{"key": "app", "operator": "Exists"}, {"key": "tier", "operator": "NotIn", "values": ["b"]}]})
        ),
        Just(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})),
    ]
}

fn owner() -> impl Strategy<Value = (&'static str, &'static str, u8)> {
    (
        prop::sample::select(&["ReplicaSet", "StatefulSet", "Deployment", "Widget"][..]),
        name(),
        0u8..2,
    )
}

fn pod_spec(with_node: bool) -> impl Strategy<Value = Value> {
    (name(), name(), name(), name(), any::<bool>(), name(), any::<bool>()).prop_map(
        move |(cm, sec, pvc, sa, ephemeral, node, has_node)| {
            let mut volumes = vec![
                json!({"name": "c", "configMap": {"name": cm}}),
                json!({"name": "s", "secret": {"secretName": sec}}),
                json!({"name": "p", "persistentVolumeClaim": {"claimName": pvc}}),
            ];
            if ephemeral {
                volumes.push(json!({"name": "e", "ephemeral": {"volumeClaimTemplate": {}}}));
            }
            let mut spec = json!({"serviceAccountName": sa, "volumes": volumes,
                "containers": [{"name": "c", "image": "img", "envFrom": [{"secretRef": {"name": cm}}]}]});
            if with_node && has_node {
                spec["nodeName"] = json!(node);
            }
            spec
        },
    )
}

/// One object of the universe, as JSON.
fn object() -> impl Strategy<Value = Value> {
    let ns = prop::sample::select(&NAMESPACES[..]);
    let base = (
        ns,
        name(),
        0u8..2,
        labels(),
        prop::collection::vec(owner(), 0..2),
    );
    (base, 0u8..17, pod_spec(true), selector(), name(), name(), any::<bool>()).prop_map(
        |((ns, name, inc, labels, owners), which, spec, sel, other, other2, flag)| {
            let (api, kind) = [
                ("v1", "Pod"),
                ("v1", "Service"),
                ("discovery.k8s.io/v1", "EndpointSlice"),
                ("v1", "ConfigMap"),
                ("v1", "Secret"),
                ("v1", "PersistentVolumeClaim"),
                ("v1", "PersistentVolume"),
                ("storage.k8s.io/v1", "StorageClass"),
                ("v1", "Node"),
                ("apps/v1", "StatefulSet"),
                ("apps/v1", "Deployment"),
                ("apps/v1", "ReplicaSet"),
                ("autoscaling/v2", "HorizontalPodAutoscaler"),
                ("networking.k8s.io/v1", "Ingress"),
                ("policy/v1", "PodDisruptionBudget"),
                ("networking.k8s.io/v1", "NetworkPolicy"),
                ("example.com/v1", "Widget"),
            ][which as usize];
            let cluster = matches!(kind, "PersistentVolume" | "StorageClass" | "Node");
            let ns = if cluster { "" } else { ns };
            let mut obj_name = name.to_string();
            let mut o = json!({"apiVersion": api, "kind": kind, "metadata": {
                "name": name, "uid": "", "labels": labels,
                "ownerReferences": owners.iter().map(|(k, n, i)| json!({"kind": k, "name": n, "uid": uid(k, ns, n, *i)})).collect::<Vec<_>>()}});
            if !cluster {
                o["metadata"]["namespace"] = json!(ns);
            }
            match kind {
                "Pod" => o["spec"] = spec,
                "Service" => o["spec"] = json!({"selector": if flag { json!({"app": other}) } else { json!({"tier": "f"}) }}),
                "EndpointSlice" => {
                    o["metadata"]["labels"]["kubernetes.io/service-name"] = json!(other);
                    let target = if flag {
                        json!({"kind": "Pod", "name": other2, "uid": uid("Pod", ns, other2, 0)})
                    } else {
                        json!({"kind": "Pod", "name": other2})
                    };
                    o["endpoints"] = json!([{"targetRef": target}]);
                }
                "Secret" if flag => {
                    // A Helm release record.
                    obj_name = format!("sh.helm.release.v1.r1.v{}", inc + 1);
                    o["metadata"]["name"] = json!(obj_name);
                    o["type"] = json!("helm.sh/release.v1");
                    o["metadata"]["labels"] = json!({"owner": "helm", "name": "r1",
                        "status": if other == "x" { "deployed" } else { "failed" }, "version": (inc + 1).to_string()});
                }
                "PersistentVolumeClaim" => {
                    if flag {
                        obj_name = format!("data-{other}-{inc}");
                        o["metadata"]["name"] = json!(obj_name);
                    }
                    o["spec"] = json!({"volumeName": other2, "storageClassName": other});
                }
                "PersistentVolume" => o["spec"] = json!({"storageClassName": other}),
                "StatefulSet" | "Deployment" | "ReplicaSet" => {
                    o["spec"] = json!({"template": {"spec": spec}, "volumeClaimTemplates": [{"metadata": {"name": "data"}}]});
                }
                "HorizontalPodAutoscaler" => {
                    let target = if flag { "Deployment" } else { "StatefulSet" };
                    o["spec"] = json!({"scaleTargetRef": {"kind": target, "name": other}, "maxReplicas": 3});
                }
                "Ingress" => o["spec"] = json!({"ingressClassName": other2,
                    "tls": [{"secretName": other}], "defaultBackend": {"service": {"name": other2}}}),
                "PodDisruptionBudget" => o["spec"] = json!({"selector": sel}),
                "NetworkPolicy" => o["spec"] = json!({"podSelector": sel}),
                _ => {}
            }
            o["metadata"]["uid"] = json!(uid(kind, ns, &obj_name, inc));
            o
        },
    )
}

#[derive(Clone, Debug)]
enum Op {
    Upsert(Value),
    Delete(Value),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![3 => object().prop_map(Op::Upsert), 1 => object().prop_map(Op::Delete)],
        1..80,
    )
}

fn from_scratch(objects: &BTreeMap<ObjectKey, Arc<Object>>) -> Graph {
    let mut g = Graph::new();
    for o in objects.values() {
        g.apply(Change::Upsert(o.clone()));
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_gives_the_from_scratch_graph(
        ops in ops(),
        shuffle_seed in any::<u64>(),
        (reserve_at, reserve) in (0usize..80, 0usize..5_000),
    ) {
        let p = Projector::default();
        let mut g = Graph::new();
        let mut live: BTreeMap<ObjectKey, Arc<Object>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            // Room made at any point (as recovery does before building) changes nothing but
            // capacity: the uid table rehashes what it holds.
            if i == reserve_at {
                g.reserve(reserve);
            }
            match op {
                Op::Upsert(v) => {
                    let o = Arc::new(p.project(v).unwrap());
                    live.insert(o.key(), o.clone());
                    g.apply(Change::Upsert(o));
                }
                Op::Delete(v) => {
                    let key = p.project(v).unwrap().key();
                    live.remove(&key);
                    g.apply(Change::Delete { key, uid: None });
                }
            }
        }
        g.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert_eq!(g.canonical(), from_scratch(&live).canonical());

        // The same final set inserted in another order gives the same graph too.
        let mut shuffled: Vec<Arc<Object>> = live.values().cloned().collect();
        let mut rng = shuffle_seed;
        for i in (1..shuffled.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (rng >> 33) as usize % (i + 1));
        }
        let mut h = Graph::new();
        for o in shuffled {
            h.apply(Change::Upsert(o));
        }
        prop_assert_eq!(g.canonical(), h.canonical());
    }
}
