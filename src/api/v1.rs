//! Astrolabe v1 compatibility: the paths and JSON shapes the Grafana plugin reads
//! (`v1-contract.md`), with deterministic ordering and real errors.
//!
//! Edge types are the canonical ones with two renames (`targets` → `selects`, `claims` →
//! `mounts`); `member-of` edges and the synthetic HelmRelease nodes are not sent: each member's
//! `release` and `chart` fields carry the membership. Unknown query parameters are ignored, as
//! the old server did.

use std::collections::BTreeSet;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use utoipa::ToSchema;

use super::error::{ApiError, V1Error};
use super::params::{self, Params};
use super::{AppState, json_ok, now_unix};
use crate::graph::{Graph, NodeIndex};
use crate::model::{Age, Atom, EdgeType, Object, Spec};
use crate::view::Strs;

type V1Result = Result<Response, V1Error>;

/// The v1 name of an edge type; `None` for types v1 does not send.
fn v1_type(ty: EdgeType) -> Option<&'static str> {
    match ty {
        EdgeType::MemberOf => None,
        EdgeType::Targets => Some("selects"),
        EdgeType::Claims => Some("mounts"),
        other => Some(other.as_str()),
    }
}

/// Scope of a v1 request: `namespace` and/or `release`, else everything.
fn scope(g: &Graph, p: &Params) -> Result<Vec<NodeIndex>, ApiError> {
    let namespace = p.one("namespace")?.map(params::namespace).transpose()?;
    let release = p.one("release")?.map(release_name).transpose()?;
    let nodes = match (release, namespace) {
        (Some(name), ns) => {
            let keys = g.releases_named(&name, ns.as_ref());
            g.release_scope(&keys, false)
        }
        (None, Some(ns)) => g.namespace_scope(&ns),
        (None, None) => g.select(&crate::graph::Filter::default()).collect(),
    };
    Ok(nodes)
}

/// A release name: what Helm accepts (lower-case alphanumerics, `-` and `.`, at most 53).
fn release_name(s: &str) -> Result<String, ApiError> {
    let ok = s.len() <= 53
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(ApiError::bad(format!(
            "invalid release name {s:?}: lower-case letters, digits, '-' and '.', at most 53 characters"
        )))
    }
}

/// Distinct namespaces of the objects in the graph.
#[utoipa::path(get, path = "/api/v1/namespaces", tag = "v1",
    responses((status = 200, description = "Namespaces holding objects, sorted", body = Vec<String>)))]
pub(super) async fn namespaces(State(st): State<AppState>) -> V1Result {
    let g = st.graph().read();
    let names: Vec<Atom> = g
        .namespace_counts()
        .into_iter()
        .map(|(ns, _)| ns.clone())
        .filter(|ns| !ns.is_empty())
        .collect();
    // Serialised after the read lock is let go (see v2's `namespaces`).
    drop(g);
    Ok(json_ok(&names))
}

/// Helm release names, optionally only those with a member in a namespace.
#[utoipa::path(get, path = "/api/v1/releases", tag = "v1",
    params(("namespace" = Option<String>, Query, description = "Only releases with a member in this namespace")),
    responses((status = 200, description = "Release names, sorted, each once", body = Vec<String>),
              (status = 400, description = "Invalid namespace", body = super::error::V1ErrorBody)))]
pub(super) async fn releases(State(st): State<AppState>, RawQuery(q): RawQuery) -> V1Result {
    let p = Params::parse(q.as_deref());
    let namespace = p.one("namespace")?.map(params::namespace).transpose()?;
    let g = st.graph().read();
    let names: BTreeSet<Atom> = g
        .releases()
        .into_iter()
        .filter(|(key, _)| {
            namespace.as_ref().is_none_or(|ns| {
                g.release_members(key)
                    .iter()
                    .any(|&m| g.object(m).namespace == *ns)
            })
        })
        .map(|(key, _)| key.name)
        .collect();
    Ok(json_ok(&names))
}

/// Distinct chart names (the `helm.sh/chart` label).
#[utoipa::path(get, path = "/api/v1/charts", tag = "v1",
    params(("namespace" = Option<String>, Query, description = "Only charts of objects in this namespace")),
    responses((status = 200, description = "Chart names, sorted, each once", body = Vec<String>),
              (status = 400, description = "Invalid namespace", body = super::error::V1ErrorBody)))]
pub(super) async fn charts(State(st): State<AppState>, RawQuery(q): RawQuery) -> V1Result {
    let p = Params::parse(q.as_deref());
    let namespace = p.one("namespace")?.map(params::namespace).transpose()?;
    let g = st.graph().read();
    let charts: Vec<Atom> = g.label_values("helm.sh/chart", namespace.as_ref());
    let names: Vec<&str> = charts
        .iter()
        .map(Atom::as_str)
        .filter(|c| !c.is_empty())
        .collect();
    Ok(json_ok(&names))
}

/// Objects of a scope, flattened as the plugin's Resource.
#[utoipa::path(get, path = "/api/v1/resources", tag = "v1",
    params(("namespace" = Option<String>, Query, description = "The namespace's objects and the cluster-scoped objects they point at"),
           ("release" = Option<String>, Query, description = "A release's objects (with `namespace`: the release of that namespace)")),
    responses((status = 200, description = "Resources sorted by namespace, kind, name", body = Vec<V1ResourceDoc>),
              (status = 400, description = "Invalid parameter", body = super::error::V1ErrorBody)))]
pub(super) async fn resources(State(st): State<AppState>, RawQuery(q): RawQuery) -> V1Result {
    let p = Params::parse(q.as_deref());
    let g = st.graph().read();
    let mut nodes = scope(&g, &p)?;
    let truncated = nodes.len() > st.max_nodes();
    nodes.truncate(st.max_nodes());
    let now = now_unix();
    let body = V1Resources {
        g: &g,
        nodes: &nodes,
        now,
    };
    let mut resp = json_ok(&body);
    if truncated {
        resp.headers_mut().insert(
            "x-astrolabe-truncated",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

/// A scoped graph: nodes and the edges between them.
#[utoipa::path(get, path = "/api/v1/graph", tag = "v1",
    params(("namespace" = Option<String>, Query, description = "The namespace's objects and the cluster-scoped objects they point at"),
           ("release" = Option<String>, Query, description = "A release's objects (with `namespace`: the release of that namespace)")),
    responses((status = 200, description = "Nodes sorted by namespace, kind, name; edges by from, to, type", body = V1GraphDoc),
              (status = 400, description = "Invalid parameter", body = super::error::V1ErrorBody)))]
pub(super) async fn graph(State(st): State<AppState>, RawQuery(q): RawQuery) -> V1Result {
    let p = Params::parse(q.as_deref());
    let g = st.graph().read();
    let mut nodes = scope(&g, &p)?;
    let truncated = nodes.len() > st.max_nodes();
    nodes.truncate(st.max_nodes());
    let edges = v1_edges(&g, &nodes);
    Ok(json_ok(&V1Graph {
        g: &g,
        nodes: &nodes,
        edges: &edges,
        truncated,
        now: now_unix(),
    }))
}

/// The v1 edges among `nodes`: renamed, `member-of` dropped, de-duplicated after renaming,
/// sorted by (from, to, type).
fn v1_edges<'g>(g: &'g Graph, nodes: &[NodeIndex]) -> Vec<(&'g Object, &'g Object, &'static str)> {
    let mut edges: Vec<(&Object, &Object, &str)> = g
        .induced_edges(nodes, |ty| v1_type(ty).is_some())
        .into_iter()
        .filter_map(|(a, b, ty)| Some((&**g.object(a), &**g.object(b), v1_type(ty)?)))
        .collect();
    edges.sort_by(|x, y| (&x.0.uid, &x.1.uid, x.2).cmp(&(&y.0.uid, &y.1.uid, y.2)));
    edges.dedup_by(|x, y| x.0.uid == y.0.uid && x.1.uid == y.1.uid && x.2 == y.2);
    edges
}

struct V1Graph<'a> {
    g: &'a Graph,
    nodes: &'a [NodeIndex],
    edges: &'a [(&'a Object, &'a Object, &'static str)],
    truncated: bool,
    now: i64,
}

impl Serialize for V1Graph<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Nodes<'a>(&'a V1Graph<'a>);
        impl Serialize for Nodes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.nodes.iter().map(|&n| V1Node {
                    g: self.0.g,
                    n,
                    now: self.0.now,
                }))
            }
        }
        struct Edges<'a>(&'a [(&'a Object, &'a Object, &'static str)]);
        impl Serialize for Edges<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (a, b, ty) in self.0 {
                    seq.serialize_element(&crate::view::EdgeView { from: a, to: b, ty })?;
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("nodes", &Nodes(self))?;
        m.serialize_entry("edges", &Edges(self.edges))?;
        if self.truncated {
            m.serialize_entry("truncated", &true)?;
        }
        m.end()
    }
}

/// A node of `/api/v1/graph`.
struct V1Node<'a> {
    g: &'a Graph,
    n: NodeIndex,
    now: i64,
}

impl Serialize for V1Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.g.object(self.n);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("uid", &o.uid)?;
        m.serialize_entry("name", o.name.as_str())?;
        m.serialize_entry("namespace", o.namespace.as_str())?;
        m.serialize_entry("kind", o.kind.name())?;
        m.serialize_entry("status", o.status.as_str())?;
        m.serialize_entry("message", o.message.as_str())?;
        if let Some(chart) = o.chart().filter(|c| !c.is_empty()) {
            m.serialize_entry("chart", chart.as_str())?;
        }
        if let Some(r) = &o.release {
            m.serialize_entry("release", r.name.as_str())?;
        }
        m.serialize_entry(
            "metadata",
            &Metadata {
                g: self.g,
                n: self.n,
                now: self.now,
            },
        )?;
        m.end()
    }
}

/// The `metadata` object of a v1 node.
struct Metadata<'a> {
    g: &'a Graph,
    n: NodeIndex,
    now: i64,
}

impl Serialize for Metadata<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.g.object(self.n);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("apiVersion", o.api_version.as_str())?;
        if let Some(t) = o.created {
            m.serialize_entry("creationTimestamp", &t)?;
            m.serialize_entry("age", &Age(self.now - t.unix()))?;
        }
        if !o.labels.is_empty() {
            m.serialize_entry("labels", &o.labels)?;
        }
        kind_fields(&mut m, self.g, self.n, true)?;
        m.end()
    }
}

/// The kind-specific fields the plugin reads, shared by the graph's `metadata` and the flat
/// Resource. `extended` adds the fields only the graph's metadata carries.
fn kind_fields<M: SerializeMap>(
    m: &mut M,
    g: &Graph,
    n: NodeIndex,
    extended: bool,
) -> Result<(), M::Error> {
    let o = g.object(n);
    if let Some(uses) = o.pod_uses() {
        if let Some(image) = uses.images.first() {
            m.serialize_entry("image", image.as_str())?;
        }
        m.serialize_entry("serviceAccountName", uses.service_account.as_str())?;
        m.serialize_entry("mountedPVCs", &Strs(&uses.claims))?;
        m.serialize_entry("usedConfigMaps", &Strs(&uses.config_maps))?;
        m.serialize_entry("usedSecrets", &Strs(&uses.secrets))?;
    }
    match &o.spec {
        Spec::Pod(p) => {
            if let Some(node) = &p.node_name {
                m.serialize_entry("nodeName", node.as_str())?;
            }
            m.serialize_entry("restartCount", &p.restarts)?;
        }
        Spec::Workload(w) => {
            let r = w.replicas;
            m.serialize_entry(
                "replicas",
                &V1Replicas {
                    desired: r.desired,
                    current: r.current,
                    ready: r.ready,
                    available: r.available,
                },
            )?;
        }
        Spec::Volume(v) => {
            if let Some(name) = &v.volume_name {
                m.serialize_entry("volumeName", name.as_str())?;
            }
            if let Some(c) = &v.claim_ref {
                m.serialize_entry(
                    "claimRef",
                    &V1ClaimRef {
                        kind: &c.kind,
                        namespace: &c.namespace,
                        name: &c.name,
                        uid: c.uid.as_ref().map(ToString::to_string).unwrap_or_default(),
                    },
                )?;
            }
        }
        Spec::Service(svc) if extended => {
            m.serialize_entry("serviceType", svc.service_type.as_str())?;
            if let Some(ip) = &svc.cluster_ip {
                m.serialize_entry("clusterIP", ip.as_str())?;
            }
        }
        Spec::Ingress(i) if extended => {
            if let Some(class) = &i.class {
                m.serialize_entry("ingressClass", class.as_str())?;
            }
        }
        Spec::Hpa(h) if extended => {
            m.serialize_entry(
                "scaleTargetRef",
                &V1TargetRef {
                    kind: &h.target_kind,
                    name: &h.target_name,
                },
            )?;
            if let Some(min) = h.min_replicas {
                m.serialize_entry("minReplicas", &min)?;
            }
            m.serialize_entry("maxReplicas", &h.max_replicas)?;
            m.serialize_entry("currentReplicas", &h.current_replicas)?;
            m.serialize_entry("desiredReplicas", &h.desired_replicas)?;
        }
        _ => {}
    }
    let targets = target_pods(g, n);
    if !targets.is_empty() {
        m.serialize_entry("targetPods", &targets)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct V1Replicas {
    desired: u32,
    current: u32,
    ready: u32,
    available: u32,
}

#[derive(Serialize)]
struct V1ClaimRef<'a> {
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    /// "" when the PersistentVolume's claimRef carries no uid.
    uid: String,
}

#[derive(Serialize)]
struct V1TargetRef<'a> {
    kind: &'a str,
    name: &'a str,
}

/// Names of the Pods a selector holder selects or an EndpointSlice targets, sorted.
fn target_pods(g: &Graph, n: NodeIndex) -> Vec<&str> {
    let mut pods: Vec<&str> = g
        .out_edges(n)
        .filter(|(_, ty)| matches!(ty, EdgeType::Selects | EdgeType::Targets))
        .map(|(p, _)| g.object(p).name.as_str())
        .collect();
    pods.sort_unstable();
    pods.dedup();
    pods
}

struct V1Resources<'a> {
    g: &'a Graph,
    nodes: &'a [NodeIndex],
    now: i64,
}

impl Serialize for V1Resources<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.nodes.iter().map(|&n| V1Resource {
            g: self.g,
            n,
            now: self.now,
        }))
    }
}

/// An element of `/api/v1/resources`.
struct V1Resource<'a> {
    g: &'a Graph,
    n: NodeIndex,
    now: i64,
}

impl Serialize for V1Resource<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.g.object(self.n);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("uid", &o.uid)?;
        m.serialize_entry("name", o.name.as_str())?;
        m.serialize_entry("namespace", o.namespace.as_str())?;
        m.serialize_entry("kind", o.kind.name())?;
        m.serialize_entry("apiVersion", o.api_version.as_str())?;
        m.serialize_entry("status", o.status.as_str())?;
        m.serialize_entry("message", o.message.as_str())?;
        m.serialize_entry("chart", o.chart().map_or("", Atom::as_str))?;
        m.serialize_entry(
            "release",
            o.release.as_ref().map_or("", |r| r.name.as_str()),
        )?;
        // Always present, "" when the object has no creation time.
        match o.created {
            Some(t) => {
                m.serialize_entry("age", &Age(self.now - t.unix()))?;
                m.serialize_entry("creationTimestamp", &t)?;
            }
            None => {
                m.serialize_entry("age", "")?;
                m.serialize_entry("creationTimestamp", "")?;
            }
        }
        if !o.owners.is_empty() {
            #[derive(Serialize)]
            struct Owner<'a> {
                kind: &'a str,
                name: &'a str,
            }
            let owners: Vec<Owner> = o
                .owners
                .iter()
                .map(|r| Owner {
                    kind: &r.kind,
                    name: &r.name,
                })
                .collect();
            m.serialize_entry("ownerReferences", &owners)?;
        }
        kind_fields(&mut m, self.g, self.n, false)?;
        m.end()
    }
}

/// Documentation schema of a v1 Resource (the handler writes the same fields directly).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
#[schema(as = V1Resource)]
pub(super) struct V1ResourceDoc {
    uid: String,
    name: String,
    namespace: String,
    kind: String,
    api_version: String,
    /// `Ready`, `Pending`, `Error` or `Unknown`.
    status: String,
    message: String,
    /// The `helm.sh/chart` label, "" when none.
    chart: String,
    /// The Helm release, "" when none.
    release: String,
    /// "45s", "12m", "3h", "20d".
    age: String,
    creation_timestamp: String,
    image: Option<String>,
    node_name: Option<String>,
    restart_count: Option<u32>,
    replicas: Option<V1ReplicasDoc>,
    owner_references: Option<Vec<std::collections::BTreeMap<String, String>>>,
    volume_name: Option<String>,
    claim_ref: Option<std::collections::BTreeMap<String, String>>,
    target_pods: Option<Vec<String>>,
    #[serde(rename = "mountedPVCs")]
    mounted_pvcs: Option<Vec<String>>,
    used_config_maps: Option<Vec<String>>,
    used_secrets: Option<Vec<String>>,
    service_account_name: Option<String>,
}

/// Documentation schema of v1 replica counters.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
#[schema(as = V1Replicas)]
pub(super) struct V1ReplicasDoc {
    desired: u32,
    current: u32,
    ready: u32,
    available: u32,
}

/// Documentation schema of a v1 graph node.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
#[schema(as = V1Node)]
pub(super) struct V1NodeDoc {
    uid: String,
    name: String,
    /// "" for cluster-scoped objects.
    namespace: String,
    kind: String,
    /// `Ready`, `Pending`, `Error` or `Unknown`.
    status: String,
    message: String,
    /// Omitted when empty.
    chart: Option<String>,
    /// Omitted when empty.
    release: Option<String>,
    /// `image`, `nodeName`, `restartCount`, `replicas`, `volumeName`, `claimRef`, `age`,
    /// `creationTimestamp`, `targetPods`, `mountedPVCs`, `usedConfigMaps`, `usedSecrets`,
    /// `serviceAccountName`, `clusterIP`, `serviceType`, `ingressClass`, `scaleTargetRef`,
    /// `minReplicas`, `maxReplicas`, `currentReplicas`, `desiredReplicas`, `labels`, `apiVersion`.
    metadata: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// Documentation schema of a v1 edge.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
#[schema(as = V1Edge)]
pub(super) struct V1EdgeDoc {
    /// `owns`, `selects`, `endpoints`, `routes-to`, `mounts`, `binds`, `uses-configmap`,
    /// `uses-secret`, `uses-sa`, `scales`, `uses-class`, `runs-on`.
    #[serde(rename = "type")]
    ty: String,
    from: String,
    to: String,
}

/// Documentation schema of `/api/v1/graph`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
#[schema(as = V1Graph)]
pub(super) struct V1GraphDoc {
    nodes: Vec<V1NodeDoc>,
    edges: Vec<V1EdgeDoc>,
    /// Present and true when the node cap cut the graph short.
    truncated: Option<bool>,
}
