//! How objects and subgraphs are shown: the JSON node view shared by the command line and the
//! HTTP API, a plain-text table, and Graphviz DOT.
//!
//! The JSON is written with a hand-rolled `Serialize` (no intermediate `serde_json::Value`) because
//! whole-namespace graphs serialise thousands of nodes per request.

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::graph::{Graph, NodeIndex};
use crate::model::{EdgeType, Object, PodUses, Spec, Status, format_age};

/// An object as JSON: identity, status, labels, release and kind-specific details.
pub struct NodeView<'a> {
    obj: &'a Object,
}

impl<'a> NodeView<'a> {
    /// A view of `obj`.
    pub fn new(obj: &'a Object) -> Self {
        NodeView { obj }
    }
}

/// A list of strings (atoms) as a JSON array, without collecting them first.
pub(crate) struct Strs<'a, T: AsRef<str>>(pub(crate) &'a [T]);

impl<T: AsRef<str>> Serialize for Strs<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(v.as_ref())?;
        }
        seq.end()
    }
}

impl Serialize for NodeView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = self.obj;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("uid", &o.uid)?;
        m.serialize_entry("kind", o.kind.name())?;
        m.serialize_entry("group", o.kind.group())?;
        m.serialize_entry("apiVersion", o.api_version.as_str())?;
        m.serialize_entry("namespace", o.namespace.as_str())?;
        m.serialize_entry("name", o.name.as_str())?;
        m.serialize_entry("status", o.status.as_str())?;
        m.serialize_entry("message", o.message.as_str())?;
        m.serialize_entry("labels", &o.labels)?;
        m.serialize_entry("release", &o.release.as_ref().map(|r| r.name.as_str()))?;
        m.serialize_entry(
            "releaseNamespace",
            &o.release.as_ref().map(|r| r.namespace.as_str()),
        )?;
        m.serialize_entry("chart", &o.chart())?;
        m.serialize_entry("creationTimestamp", &o.created)?;
        if let Some(t) = o.deleted {
            m.serialize_entry("deletionTimestamp", &t)?;
        }
        m.serialize_entry("resourceVersion", o.resource_version.as_str())?;
        if !o.annotations.is_empty() {
            m.serialize_entry("annotations", &Annotations(&o.annotations))?;
        }
        if !o.owners.is_empty() {
            m.serialize_entry("ownerReferences", &Owners(o))?;
        }
        m.serialize_entry("details", &Details(o))?;
        m.end()
    }
}

struct Annotations<'a>(&'a [(crate::model::Atom, Box<str>)]);

impl Serialize for Annotations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k.as_str(), &**v)))
    }
}

struct Owners<'a>(&'a Object);

impl Serialize for Owners<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Owner<'a> {
            kind: &'a str,
            name: &'a str,
            uid: &'a crate::model::Uid,
            controller: bool,
        }
        let mut seq = s.serialize_seq(Some(self.0.owners.len()))?;
        for o in self.0.owners.iter() {
            seq.serialize_element(&Owner {
                kind: &o.kind,
                name: &o.name,
                uid: &o.uid,
                controller: o.controller,
            })?;
        }
        seq.end()
    }
}

/// The kind-specific fields, named as the v1 contract's `metadata` names them where it has a name.
struct Details<'a>(&'a Object);

fn pod_uses<M: SerializeMap>(m: &mut M, u: &PodUses) -> Result<(), M::Error> {
    m.serialize_entry("image", &u.images.first().map(|i| i.as_str()))?;
    m.serialize_entry("images", &Strs(&u.images))?;
    m.serialize_entry("serviceAccountName", u.service_account.as_str())?;
    m.serialize_entry("usedConfigMaps", &Strs(&u.config_maps))?;
    m.serialize_entry("usedSecrets", &Strs(&u.secrets))?;
    m.serialize_entry("mountedPVCs", &Strs(&u.claims))
}

impl Serialize for Details<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match &self.0.spec {
            Spec::None => {}
            Spec::Pod(p) => {
                pod_uses(&mut m, &p.uses)?;
                m.serialize_entry("nodeName", &p.node_name)?;
                m.serialize_entry("restartCount", &p.restarts)?;
                m.serialize_entry("phase", &p.phase)?;
            }
            Spec::Workload(w) => {
                pod_uses(&mut m, &w.uses)?;
                m.serialize_entry("replicas", &w.replicas)?;
                if !w.claim_templates.is_empty() {
                    m.serialize_entry("volumeClaimTemplates", &Strs(&w.claim_templates))?;
                }
            }
            Spec::Service(svc) => {
                m.serialize_entry("serviceType", svc.service_type.as_str())?;
                m.serialize_entry("clusterIP", &svc.cluster_ip)?;
                m.serialize_entry("selector", &svc.selector.as_ref().map(|s| s.to_string()))?;
            }
            Spec::EndpointSlice(e) => {
                m.serialize_entry("serviceName", &e.service)?;
                m.serialize_entry("targets", &e.targets.len())?;
            }
            Spec::Ingress(i) => {
                m.serialize_entry("ingressClass", &i.class)?;
                m.serialize_entry("backendServices", &Strs(&i.services))?;
                m.serialize_entry("tlsSecrets", &Strs(&i.tls_secrets))?;
            }
            Spec::Volume(v) => {
                m.serialize_entry("volumeName", &v.volume_name)?;
                m.serialize_entry("storageClass", &v.storage_class)?;
                if let Some(c) = &v.claim_ref {
                    m.serialize_entry(
                        "claimRef",
                        &serde_json::json!({"kind": c.kind, "namespace": c.namespace, "name": c.name, "uid": c.uid}),
                    )?;
                }
            }
            Spec::Hpa(h) => {
                m.serialize_entry(
                    "scaleTargetRef",
                    &serde_json::json!({"kind": h.target_kind, "name": h.target_name}),
                )?;
                m.serialize_entry("minReplicas", &h.min_replicas)?;
                m.serialize_entry("maxReplicas", &h.max_replicas)?;
                m.serialize_entry("currentReplicas", &h.current_replicas)?;
                m.serialize_entry("desiredReplicas", &h.desired_replicas)?;
            }
            Spec::PodSelector(sel) => {
                m.serialize_entry("selector", &sel.selector.as_ref().map(|s| s.to_string()))?;
            }
            Spec::Secret(sec) => {
                m.serialize_entry("secretType", sec.secret_type.as_str())?;
                if let Some(r) = &sec.helm_record {
                    m.serialize_entry("helmRelease", r.release.as_str())?;
                    m.serialize_entry("helmRevision", &r.version)?;
                    m.serialize_entry("helmStatus", r.status.as_str())?;
                }
            }
            Spec::Release(r) => {
                m.serialize_entry("revision", &r.revision)?;
                m.serialize_entry("recordStatus", &r.record_status)?;
            }
        }
        m.end()
    }
}

/// An edge as JSON: `{"from": uid, "to": uid, "type": name}`.
pub struct EdgeView<'a> {
    /// Source object.
    pub from: &'a Object,
    /// Target object.
    pub to: &'a Object,
    /// Type name (canonical, or the v1 name).
    pub ty: &'static str,
}

impl Serialize for EdgeView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("from", &self.from.uid)?;
        m.serialize_entry("to", &self.to.uid)?;
        m.serialize_entry("type", self.ty)?;
        m.end()
    }
}

/// A set of nodes and edges of one graph as `{"nodes": [...], "edges": [...]}`.
pub struct SubgraphView<'a> {
    /// The graph the indexes belong to.
    pub graph: &'a Graph,
    /// Nodes, in output order.
    pub nodes: &'a [NodeIndex],
    /// Edges, in output order.
    pub edges: &'a [(NodeIndex, NodeIndex, EdgeType)],
}

impl Serialize for SubgraphView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("nodes", &NodeList(self.graph, self.nodes))?;
        m.serialize_entry("edges", &EdgeList(self.graph, self.edges))?;
        m.end()
    }
}

/// Nodes of a graph as a JSON array of [`NodeView`]s.
pub struct NodeList<'a>(pub &'a Graph, pub &'a [NodeIndex]);

impl Serialize for NodeList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.1.iter().map(|&n| NodeView::new(self.0.object(n))))
    }
}

/// Edges of a graph as a JSON array of [`EdgeView`]s with canonical type names.
pub struct EdgeList<'a>(pub &'a Graph, pub &'a [(NodeIndex, NodeIndex, EdgeType)]);

impl Serialize for EdgeList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.1.iter().map(|&(a, b, ty)| EdgeView {
            from: self.0.object(a),
            to: self.0.object(b),
            ty: ty.as_str(),
        }))
    }
}

/// A fixed-width text table of objects: KIND, NAMESPACE, NAME, STATUS, AGE, RELEASE, MESSAGE
/// (plus DEPTH when depths are given).
pub fn table(
    graph: &Graph,
    nodes: &[NodeIndex],
    depth: Option<&dyn Fn(NodeIndex) -> u32>,
    now: i64,
) -> String {
    let mut rows: Vec<[String; 8]> = Vec::with_capacity(nodes.len() + 1);
    rows.push(
        [
            "DEPTH",
            "KIND",
            "NAMESPACE",
            "NAME",
            "STATUS",
            "AGE",
            "RELEASE",
            "MESSAGE",
        ]
        .map(String::from),
    );
    for &n in nodes {
        let o = graph.object(n);
        rows.push([
            depth.map(|d| d(n).to_string()).unwrap_or_default(),
            o.kind.name().to_string(),
            o.namespace.to_string(),
            o.name.to_string(),
            o.status.as_str().to_string(),
            o.created
                .map(|t| format_age(now - t.unix()))
                .unwrap_or_else(|| "-".into()),
            o.release
                .as_ref()
                .map(|r| r.name.to_string())
                .unwrap_or_default(),
            o.message.to_string(),
        ]);
    }
    let skip_depth = depth.is_none();
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c == 0 && skip_depth {
                continue;
            }
            if c == 7 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}   ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Graphviz DOT: one box per object, coloured by status, grouped by namespace; edges labelled
/// with their type.
pub fn dot(
    graph: &Graph,
    nodes: &[NodeIndex],
    edges: &[(NodeIndex, NodeIndex, EdgeType)],
) -> String {
    let mut out = String::from(
        "digraph astrolabe {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=8];\n",
    );
    let mut current_ns: Option<&str> = None;
    let mut in_cluster = false;
    for &n in nodes {
        let o = graph.object(n);
        if current_ns != Some(o.namespace.as_str()) {
            if in_cluster {
                out.push_str("  }\n");
                in_cluster = false;
            }
            current_ns = Some(o.namespace.as_str());
            if !o.namespace.is_empty() {
                let _ = writeln!(
                    out,
                    "  subgraph {} {{\n    label={};\n    style=dashed;",
                    quote(&format!("cluster_{}", o.namespace)),
                    quote(&o.namespace)
                );
                in_cluster = true;
            }
        }
        let label = format!("{}\n{}\n{}", o.kind.name(), o.name, o.status.as_str());
        let _ = writeln!(
            out,
            "    {} [label={}, fillcolor=\"{}\"];",
            quote(&o.uid.to_string()),
            quote(&label),
            colour(o.status)
        );
    }
    if in_cluster {
        out.push_str("  }\n");
    }
    for &(a, b, ty) in edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(&graph.object(a).uid.to_string()),
            quote(&graph.object(b).uid.to_string()),
            quote(ty.as_str())
        );
    }
    out.push_str("}\n");
    out
}

fn colour(s: Status) -> &'static str {
    match s {
        Status::Ready => "#c8e6c9",
        Status::Pending => "#fff9c4",
        Status::Error => "#ffcdd2",
        Status::Unknown => "#e0e0e0",
    }
}

/// A DOT double-quoted string: backslashes and quotes escaped, newlines as `\n`.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}
