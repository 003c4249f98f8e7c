//! The graph's read queries on the demo cluster and on hand-built graphs: v1 scoping by namespace
//! and release, blast radius, shortest paths, keyset pagination, dangling references.

mod support;

use std::sync::Arc;

use astrolabe::graph::{Change, Dangling, Filter, Graph, NodeIndex};
use astrolabe::model::{Atom, EdgeType, Kind, ObjectKey, ReleaseKey, Status};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig, names};
use proptest::prelude::*;
use serde_json::json;
use support::*;

fn demo(objects: usize) -> Graph {
    let p = Projector::default();
    let mut g = Graph::new();
    for v in DemoCluster::new(DemoConfig {
        objects,
        ..DemoConfig::default()
    })
    .objects()
    {
        g.apply(Change::Upsert(Arc::new(p.project(&v).unwrap())));
    }
    g
}

fn keys(g: &Graph, nodes: &[NodeIndex]) -> Vec<String> {
    nodes
        .iter()
        .map(|&n| g.object(n).key().to_string())
        .collect()
}

#[test]
fn namespace_scope_adds_only_the_cluster_objects_pointed_at() {
    let mut w = World::new();
    w.apply(pod("a", "p", json!({}), json!({"nodeName": "n1", "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]})));
    let mut claim = simple("v1", "PersistentVolumeClaim", "a", "c");
    claim["spec"] = json!({"volumeName": "pv1", "storageClassName": "sc"});
    w.apply(claim);
    for (api, kind, name) in [
        ("v1", "Node", "n1"),
        ("v1", "Node", "n2"),
        ("v1", "PersistentVolume", "pv1"),
        ("storage.k8s.io/v1", "StorageClass", "sc"),
    ] {
        w.apply(simple(api, kind, "", name));
    }
    w.apply(simple("v1", "ConfigMap", "b", "other"));
    let scope = w.g.namespace_scope(&Atom::new("a"));
    // One hop: the PV is reached from the claim, the StorageClass too (from the claim); n2 is not
    // pointed at by anything in the namespace.
    assert_eq!(
        keys(&w.g, &scope),
        [
            "Node/n1",
            "PersistentVolume/pv1",
            "StorageClass/sc",
            "PersistentVolumeClaim/a/c",
            "Pod/a/p"
        ]
    );
}

#[test]
fn release_scope_follows_owns_claims_volumes_and_pod_uses() {
    let g = demo(2_000);
    let key = ReleaseKey {
        namespace: Atom::new(names::PROBLEM_NAMESPACE),
        name: Atom::new(names::HELM_FAILED_RELEASE),
    };
    let scope = g.release_scope(std::slice::from_ref(&key), false);
    let ks = keys(&g, &scope);
    let members = g.release_members(&key);
    assert!(!members.is_empty());
    for m in &members {
        assert!(scope.contains(m), "member {} in scope", g.object(*m).key());
    }
    // Owned objects (ReplicaSets, Pods) of members are in; the release node is not (v1 scope).
    assert!(ks.iter().any(|k| k.starts_with("ReplicaSet/")), "{ks:?}");
    assert!(ks.iter().any(|k| k.starts_with("Pod/")), "{ks:?}");
    assert!(!ks.iter().any(|k| k.starts_with("HelmRelease/")));
    for &n in &scope {
        let o = g.object(n);
        let justified = members.contains(&n)
            || g.in_edges(n).any(|(m, ty)| {
                scope.contains(&m)
                    && matches!(
                        ty,
                        EdgeType::Owns
                            | EdgeType::Mounts
                            | EdgeType::Claims
                            | EdgeType::Binds
                            | EdgeType::UsesConfigMap
                            | EdgeType::UsesSecret
                            | EdgeType::UsesSa
                    )
            });
        assert!(justified, "{} is in the scope without a rule", o.key());
    }
    assert!(
        g.release_scope(&[key], true)
            .iter()
            .any(|&n| g.object(n).kind == Kind::HelmRelease)
    );
    // Two releases of one name: each alone, or both when the namespace is not given.
    let shared = g.releases_named(names::HELM_SHARED_RELEASE, None);
    assert_eq!(shared.len(), 2);
    let one = g.releases_named(
        names::HELM_SHARED_RELEASE,
        Some(&Atom::new(names::PROBLEM_NAMESPACE)),
    );
    assert_eq!(one.len(), 1);
    assert!(g.release_scope(&shared, false).len() > g.release_scope(&one, false).len());
}

#[test]
fn impact_walks_from_a_secret_to_pods_owners_services_and_ingresses() {
    let mut w = World::new();
    w.apply(simple("v1", "Secret", "ns", "db"));
    w.apply(simple("apps/v1", "Deployment", "ns", "web"));
    let mut rs = simple("apps/v1", "ReplicaSet", "ns", "web-1");
    rs["metadata"]["ownerReferences"] =
        json!([{"kind": "Deployment", "name": "web", "uid": uid_of("Deployment", "ns", "web")}]);
    w.apply(rs);
    let mut p = pod(
        "ns",
        "web-1-a",
        json!({"app": "web"}),
        json!({"volumes": [{"name": "s", "secret": {"secretName": "db"}}]}),
    );
    p["metadata"]["ownerReferences"] = json!([{"kind": "ReplicaSet", "name": "web-1", "uid": uid_of("ReplicaSet", "ns", "web-1")}]);
    w.apply(p);
    w.apply(service("ns", "web", json!({"app": "web"})));
    let mut ing = simple("networking.k8s.io/v1", "Ingress", "ns", "web");
    ing["spec"] = json!({"defaultBackend": {"service": {"name": "web"}}});
    w.apply(ing);
    w.apply(pod("ns", "unrelated", json!({}), json!({})));
    let start = w.g.find_key(&Kind::Secret, &Atom::new("ns"), "db").unwrap();
    let sub = w.g.impact(start, 10, 1_000);
    let dist = |path: &str| {
        let k = key(path);
        sub.depth[&w.g.find_key(&k.kind, &k.namespace, &k.name).unwrap()]
    };
    assert_eq!(dist("Secret/ns/db"), 0);
    assert_eq!(dist("Pod/ns/web-1-a"), 1);
    assert_eq!(dist("ReplicaSet/ns/web-1"), 2);
    assert_eq!(dist("Service/ns/web"), 2);
    assert_eq!(dist("Deployment/ns/web"), 3);
    assert_eq!(dist("Ingress/ns/web"), 3);
    assert_eq!(sub.nodes.len(), 6, "the unrelated pod is not affected");
    let shallow = w.g.impact(start, 1, 1_000);
    assert_eq!(shallow.nodes.len(), 2);
    let capped = w.g.impact(start, 10, 3);
    assert!(capped.truncated && capped.nodes.len() == 3);
}

#[test]
fn impact_of_a_member_reaches_its_release_and_of_a_node_its_pods() {
    let g = demo(2_000);
    let node = g
        .find_key(
            &Kind::Node,
            &Atom::empty(),
            "ip-10-0-16-4.eu-west-1.compute.internal",
        )
        .unwrap();
    let sub = g.impact(node, 1, 100_000);
    assert!(
        sub.nodes
            .iter()
            .filter(|&&n| g.object(n).kind == Kind::Pod)
            .count()
            > 5
    );
    let key = ReleaseKey {
        namespace: Atom::new(names::PROBLEM_NAMESPACE),
        name: Atom::new(names::HELM_FAILED_RELEASE),
    };
    let member = g.release_members(&key)[0];
    let sub = g.impact(member, 1, 100);
    assert!(
        sub.nodes
            .iter()
            .any(|&n| g.object(n).kind == Kind::HelmRelease)
    );
}

#[test]
fn shortest_paths_follow_edges_both_ways_and_respect_the_limit() {
    let g = demo(2_000);
    let ns = Atom::new(names::PROBLEM_NAMESPACE);
    let ing = g.find_key(&Kind::Ingress, &ns, "storefront").unwrap();
    let node = g
        .find_key(
            &Kind::Node,
            &Atom::empty(),
            "ip-10-0-16-4.eu-west-1.compute.internal",
        )
        .unwrap();
    let (nodes, edges) = g.shortest_path(ing, node, 10).expect("connected");
    assert_eq!(nodes.first(), Some(&ing));
    assert_eq!(nodes.last(), Some(&node));
    assert_eq!(edges.len(), nodes.len() - 1);
    for (i, &(a, b, _)) in edges.iter().enumerate() {
        let pair = [nodes[i], nodes[i + 1]];
        assert!(
            pair.contains(&a) && pair.contains(&b),
            "edge {i} joins consecutive nodes"
        );
    }
    assert_eq!(
        g.shortest_path(ing, node, 10),
        g.shortest_path(ing, node, 10),
        "deterministic"
    );
    assert!(g.shortest_path(ing, node, 1).is_none());
    assert_eq!(g.shortest_path(ing, ing, 3), Some((vec![ing], vec![])));
}

#[test]
fn dangling_references_name_what_is_missing() {
    let g = demo(2_000);
    let d = g.dangling();
    let missing_cm = d.iter().any(|(n, ty, what)| {
        *ty == EdgeType::UsesConfigMap
            && g.object(*n).kind == Kind::Pod
            && *what
                == Dangling::Named(ObjectKey {
                    kind: Kind::ConfigMap,
                    namespace: Atom::new(names::PROBLEM_NAMESPACE),
                    name: names::MISSING_CONFIGMAP.into(),
                })
    });
    assert!(missing_cm, "{d:?}");
    assert!(d.iter().any(
        |(n, ty, _)| *ty == EdgeType::RoutesTo && g.object(*n).name == names::DANGLING_INGRESS
    ));
}

fn kind_choices() -> impl Strategy<Value = Vec<Kind>> {
    prop::collection::vec(
        prop::sample::select(vec![
            Kind::Pod,
            Kind::Service,
            Kind::ConfigMap,
            Kind::Node,
            Kind::HelmRelease,
        ]),
        0..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pages_concatenate_to_the_full_listing(
        page in 1usize..50,
        kinds in kind_choices(),
        ns_pick in prop::collection::vec(0usize..40, 0..3),
        status in prop::option::of(prop::sample::select(vec![Status::Ready, Status::Pending, Status::Error])),
    ) {
        thread_local!(static G: Graph = demo(1_000));
        G.with(|g| {
            let all_ns: Vec<Atom> = g.namespaces().cloned().collect();
            let filter = Filter {
                kinds,
                namespaces: ns_pick.iter().map(|i| all_ns[i % all_ns.len()].clone()).collect(),
                statuses: status.into_iter().collect(),
                include_releases: true,
                ..Filter::default()
            };
            let full: Vec<NodeIndex> = g.select(&filter).collect();
            let mut paged = Vec::new();
            let mut after: Option<ObjectKey> = None;
            loop {
                let chunk: Vec<NodeIndex> = g.select_after(&filter, after.as_ref()).take(page).collect();
                if chunk.is_empty() {
                    break;
                }
                after = Some(g.object(*chunk.last().unwrap()).key());
                paged.extend(chunk);
            }
            prop_assert_eq!(&paged, &full);
            let mut sorted = full.clone();
            g.sort_nodes(&mut sorted);
            prop_assert_eq!(sorted, full);
            Ok(())
        })?;
    }
}
