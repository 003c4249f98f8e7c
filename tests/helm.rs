//! Helm releases: membership through annotations or labels, release nodes and their status from
//! Helm's release Secrets (labels only), and two releases of one name in two namespaces.

mod support;

use astrolabe::model::{Atom, Kind, ReleaseKey, Spec};
use serde_json::{Value, json};
use support::*;

fn annotated(
    kind: &str,
    api: &str,
    ns: &str,
    name: &str,
    release: &str,
    release_ns: &str,
) -> Value {
    let mut o = simple(api, kind, ns, name);
    o["metadata"]["annotations"] = json!({
        "meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": release_ns});
    o["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": release, "helm.sh/chart": "web-1.2.3"});
    o
}

fn record(ns: &str, release: &str, version: u32, status: &str) -> Value {
    let mut s = simple(
        "v1",
        "Secret",
        ns,
        &format!("sh.helm.release.v1.{release}.v{version}"),
    );
    s["type"] = json!("helm.sh/release.v1");
    s["metadata"]["labels"] =
        json!({"owner": "helm", "name": release, "status": status, "version": version.to_string()});
    s["data"] = json!({"release": "SDRzSUFBQUFBQUFDLyt5OWE0L2JSdEl3K2xjYUFvNWpjeFZBb2tRc2dTVGJGNXdYNmVQRU1GMUxTWjNw"});
    s
}

fn release_node(
    w: &World,
    ns: &str,
    name: &str,
) -> Option<std::sync::Arc<astrolabe::model::Object>> {
    w.g.find_key(&Kind::HelmRelease, &Atom::new(ns), name)
        .map(|n| w.g.object(n).clone())
}

#[test]
fn annotations_make_members_and_the_namespace_annotation_wins() {
    let mut w = World::new();
    // The object lives in "apps" but Helm installed it from release "web" of namespace "ops".
    w.apply(annotated(
        "Deployment",
        "apps/v1",
        "apps",
        "web",
        "web",
        "ops",
    ));
    w.assert_edges(
        "member-of",
        &[("Deployment/apps/web", "HelmRelease/ops/web")],
    );
    let d = w.get("Deployment/apps/web").unwrap();
    assert_eq!(
        d.release.as_deref(),
        Some(&ReleaseKey {
            namespace: Atom::new("ops"),
            name: Atom::new("web")
        })
    );
    assert_eq!(d.chart().map(Atom::as_str), Some("web-1.2.3"));
    let r = release_node(&w, "ops", "web").unwrap();
    assert_eq!(
        (r.status.as_str(), r.message.as_str()),
        ("Unknown", "no release record")
    );
}

#[test]
fn labels_make_members_when_annotations_are_absent_including_cluster_scoped_objects() {
    let mut w = World::new();
    let mut svc = service("ns", "web", json!({}));
    svc["metadata"]["labels"] =
        json!({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "web"});
    w.apply(svc);
    let mut role = simple(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "",
        "web-reader",
    );
    role["metadata"]["labels"] =
        json!({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "web"});
    w.apply(role);
    // managed-by other than Helm is not a release mark.
    let mut other = service("ns", "argo", json!({}));
    other["metadata"]["labels"] =
        json!({"app.kubernetes.io/managed-by": "argocd", "app.kubernetes.io/instance": "web"});
    w.apply(other);
    w.assert_edges(
        "member-of",
        &[
            ("Service/ns/web", "HelmRelease/ns/web"),
            ("ClusterRole/web-reader", "HelmRelease/web"),
        ],
    );
}

#[test]
fn controller_created_copies_are_members_too() {
    let mut w = World::new();
    w.apply(annotated("Deployment", "apps/v1", "ns", "web", "web", "ns"));
    let mut rs = annotated("ReplicaSet", "apps/v1", "ns", "web-123", "web", "ns");
    rs["metadata"]["ownerReferences"] =
        json!([{"kind": "Deployment", "name": "web", "uid": uid_of("Deployment", "ns", "web")}]);
    w.apply(rs);
    let mut slice = simple("discovery.k8s.io/v1", "EndpointSlice", "ns", "web-abc");
    slice["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "web", "kubernetes.io/service-name": "web"});
    w.apply(slice);
    let members: Vec<String> =
        w.g.release_members(&ReleaseKey {
            namespace: Atom::new("ns"),
            name: Atom::new("web"),
        })
        .into_iter()
        .map(|n| w.g.object(n).key().to_string())
        .collect();
    assert_eq!(
        members,
        [
            "Deployment/ns/web",
            "EndpointSlice/ns/web-abc",
            "ReplicaSet/ns/web-123"
        ]
    );
}

#[test]
fn release_status_comes_from_the_newest_record_labels_and_records_are_not_members() {
    let mut w = World::new();
    w.apply(annotated("Deployment", "apps/v1", "ns", "web", "web", "ns"));
    w.apply(record("ns", "web", 1, "superseded"));
    w.apply(record("ns", "web", 2, "deployed"));
    let r = release_node(&w, "ns", "web").unwrap();
    assert_eq!(
        (r.status.as_str(), r.message.as_str()),
        ("Ready", "revision 2 deployed")
    );
    assert!(matches!(&r.spec, Spec::Release(i) if i.revision == 2));
    w.apply(record("ns", "web", 3, "pending-upgrade"));
    assert_eq!(
        release_node(&w, "ns", "web").unwrap().status.as_str(),
        "Pending"
    );
    w.apply(record("ns", "web", 3, "failed"));
    assert_eq!(
        release_node(&w, "ns", "web").unwrap().status.as_str(),
        "Error"
    );
    w.apply(record("ns", "web", 3, "uninstalling"));
    assert_eq!(
        release_node(&w, "ns", "web").unwrap().status.as_str(),
        "Unknown"
    );
    w.delete("Secret/ns/sh.helm.release.v1.web.v3");
    assert_eq!(
        release_node(&w, "ns", "web").unwrap().status.as_str(),
        "Ready"
    );
    // The records carry no membership, even with Helm's labels.
    w.assert_edges("member-of", &[("Deployment/ns/web", "HelmRelease/ns/web")]);
    let rec = w.get("Secret/ns/sh.helm.release.v1.web.v2").unwrap();
    assert!(rec.release.is_none());
    // A release with records but no member exists; with neither, it disappears.
    w.delete("Deployment/ns/web");
    assert!(release_node(&w, "ns", "web").is_some());
    w.delete("Secret/ns/sh.helm.release.v1.web.v1");
    w.delete("Secret/ns/sh.helm.release.v1.web.v2");
    assert!(release_node(&w, "ns", "web").is_none());
}

#[test]
fn two_releases_of_one_name_in_two_namespaces_stay_apart() {
    let mut w = World::new();
    w.apply(annotated(
        "Deployment",
        "apps/v1",
        "team-a",
        "web",
        "web",
        "team-a",
    ));
    w.apply(annotated(
        "Deployment",
        "apps/v1",
        "team-b",
        "web",
        "web",
        "team-b",
    ));
    w.apply(record("team-a", "web", 4, "deployed"));
    w.apply(record("team-b", "web", 1, "failed"));
    let a = release_node(&w, "team-a", "web").unwrap();
    let b = release_node(&w, "team-b", "web").unwrap();
    assert_ne!(a.uid, b.uid);
    assert_eq!((a.status.as_str(), b.status.as_str()), ("Ready", "Error"));
    w.assert_edges(
        "member-of",
        &[
            ("Deployment/team-a/web", "HelmRelease/team-a/web"),
            ("Deployment/team-b/web", "HelmRelease/team-b/web"),
        ],
    );
    assert_eq!(w.g.releases().len(), 2);
}

#[test]
fn leaving_a_release_moves_the_member_and_drops_an_empty_release() {
    let mut w = World::new();
    w.apply(annotated("Deployment", "apps/v1", "ns", "web", "old", "ns"));
    w.apply(annotated("Deployment", "apps/v1", "ns", "web", "new", "ns"));
    w.assert_edges("member-of", &[("Deployment/ns/web", "HelmRelease/ns/new")]);
    assert!(release_node(&w, "ns", "old").is_none());
    w.apply(simple("apps/v1", "Deployment", "ns", "web"));
    w.assert_edges("member-of", &[]);
    assert!(w.g.releases().is_empty());
}
