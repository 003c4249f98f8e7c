//! The v2 graph API: listings with filters and keyset pagination, single objects with their
//! edges, neighbourhoods, blast radius, paths, scoped subgraphs, summaries and problems.
//!
//! Every response carries `freshness` (the graph's generation, whether the source's first full
//! load is done, and when the last change was applied) read under the same lock as the data.
//! The age of the last change, which moves with the clock, is sent in the
//! `X-Astrolabe-Last-Change-Age` header, so that two identical requests against the same
//! generation return byte-identical bodies. Unknown query parameters are errors.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::{RawQuery, State};
use axum::http::HeaderValue;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::ser::Serializer;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::Segments;
use super::params::{self, Params};
use super::{AppState, json_ok_nodes};
use crate::graph::{Dangling, Direction3, Filter, Graph, NodeIndex, Subgraph};
use crate::model::{
    Atom, EdgeType, Kind, Object, ObjectKey, ReleaseKey, Selector, Status, Time, Uid,
};
use crate::view::{EdgeList, NodeList, NodeView};

type V2Result = Result<Response, ApiError>;

/// How fresh a response is.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Freshness {
    /// Grows by one with every change applied to the graph.
    generation: u64,
    /// Whether the source's first full load is in the graph.
    synced: bool,
    /// Whether the graph was restored from persistence at start (until `synced`, it may still
    /// hold objects the source has since deleted).
    restored: bool,
    /// When the last change was applied (RFC 3339, milliseconds); null before any.
    last_change_at: Option<String>,
}

fn freshness(st: &AppState, g: &Graph) -> Freshness {
    let stats = st.graph().stats();
    let at = stats.last_applied_ms.load(Ordering::Relaxed);
    Freshness {
        generation: g.generation(),
        synced: st.graph().is_synced(),
        restored: st.graph().is_restored(),
        last_change_at: (at > 0).then(|| {
            let secs = (at / 1000) as i64;
            let ms = at % 1000;
            Time::from_unix(secs).map_or_else(String::new, |t| {
                let s = t.to_rfc3339();
                format!("{}.{ms:03}Z", s.trim_end_matches('Z'))
            })
        }),
    }
}

/// A 200 JSON response with the freshness headers, for a body of about `nodes` objects. (The
/// moving age of the last change is stamped by the cache layer, outside cached answers.)
fn ok<T: Serialize>(f: &Freshness, body: &T, nodes: usize) -> Response {
    let mut resp = json_ok_nodes(body, nodes);
    let h = resp.headers_mut();
    h.insert("x-astrolabe-generation", HeaderValue::from(f.generation));
    h.insert(
        "x-astrolabe-synced",
        HeaderValue::from_static(if f.synced { "true" } else { "false" }),
    );
    resp
}

fn parse_kinds(g: &Graph, values: &[&str]) -> Result<Vec<Kind>, ApiError> {
    values
        .iter()
        .map(|k| {
            Kind::parse_user(k, g.kinds())
                .ok_or_else(|| ApiError::bad(format!("unknown kind {k:?}")))
        })
        .collect()
}

fn parse_types(values: &[&str]) -> Result<Vec<EdgeType>, ApiError> {
    values
        .iter()
        .map(|t| {
            EdgeType::parse(t).ok_or_else(|| {
                let all: Vec<&str> = EdgeType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::bad(format!(
                    "unknown edge type {t:?}; types: {}",
                    all.join(", ")
                ))
            })
        })
        .collect()
}

/// `namespace/name`.
fn parse_release(value: &str) -> Result<ReleaseKey, ApiError> {
    let (ns, name) = value
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| {
            ApiError::bad(format!(
                "invalid release {value:?}: expected NAMESPACE/NAME"
            ))
        })?;
    Ok(ReleaseKey {
        namespace: params::namespace(ns)?,
        name: Atom::new(name),
    })
}

fn find_uid(g: &Graph, uid: &str) -> Result<NodeIndex, ApiError> {
    g.find_uid(&Uid::parse(uid))
        .ok_or_else(|| ApiError::not_found(format!("no object with uid {uid:?}")))
}

// ----- listings -----------------------------------------------------------------------------

/// The query a continue token belongs to, and where the next page starts.
#[derive(Serialize, serde::Deserialize)]
struct Token {
    ns: String,
    kind: Kind,
    name: String,
    query: u64,
}

/// FNV-1a of the query's filters, so that a token is only accepted for the query it came from.
fn fingerprint(p: &Params, keys: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for k in keys {
        let mut values = p.list(k);
        values.sort_unstable();
        for b in k
            .bytes()
            .chain([0])
            .chain(values.join("\u{1}").bytes())
            .chain([0])
        {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn encode_token(o: &Object, query: u64) -> String {
    let t = Token {
        ns: o.namespace.to_string(),
        kind: o.kind.clone(),
        name: o.name.to_string(),
        query,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_token(s: &str, query: u64) -> Result<ObjectKey, ApiError> {
    let bad = || ApiError::bad("invalid continue token");
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.query != query {
        return Err(ApiError::bad(
            "the continue token belongs to a query with other filters",
        ));
    }
    Ok(ObjectKey {
        kind: t.kind,
        namespace: Atom::new(&t.ns),
        name: t.name.into(),
    })
}

#[derive(Serialize)]
struct ListBody<'a> {
    items: NodeList<'a>,
    #[serde(rename = "continue")]
    cont: Option<String>,
    freshness: Freshness,
}

/// Objects matching filters, in (namespace, kind, name) order, a page at a time.
#[utoipa::path(get, path = "/api/v2/resources", tag = "v2",
    params(
        ("kind" = Option<Vec<String>>, Query, description = "Kinds (repeatable or comma-separated; `Deployment`, `deployments`, `deploy`, `Deployment.apps`)"),
        ("namespace" = Option<Vec<String>>, Query, description = "Namespaces (repeatable or comma-separated)"),
        ("labelSelector" = Option<String>, Query, description = "kubectl label selector: `a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`"),
        ("release" = Option<String>, Query, description = "Members of the Helm release NAMESPACE/NAME"),
        ("status" = Option<Vec<String>>, Query, description = "Ready, Pending, Error, Unknown"),
        ("q" = Option<String>, Query, description = "Name contains this text"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 100)"),
        ("continue" = Option<String>, Query, description = "The `continue` value of the previous page"),
    ),
    responses((status = 200, description = "One page", body = ResourceListDoc),
              (status = 400, description = "Invalid parameter or token", body = ErrorBody)))]
pub(super) async fn resources(State(st): State<AppState>, RawQuery(q): RawQuery) -> V2Result {
    const FILTERS: [&str; 6] = [
        "kind",
        "namespace",
        "labelSelector",
        "release",
        "status",
        "q",
    ];
    let p = Params::parse(q.as_deref());
    p.only(&[&FILTERS[..], &["limit", "continue"]].concat())?;
    let limit = p.number("limit", 1..=1000, 100)? as usize;
    let selector = p
        .one("labelSelector")?
        .map(Selector::parse)
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let statuses = p
        .list("status")
        .iter()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::bad(format!(
                    "unknown status {s:?}: Ready, Pending, Error or Unknown"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let namespaces = p
        .list("namespace")
        .into_iter()
        .map(params::namespace)
        .collect::<Result<Vec<_>, _>>()?;
    let release = p.one("release")?.map(parse_release).transpose()?;
    let query = fingerprint(&p, &FILTERS);
    let after = p
        .one("continue")?
        .map(|t| decode_token(t, query))
        .transpose()?;
    let g = st.graph().read();
    let filter = Filter {
        kinds: parse_kinds(&g, &p.list("kind"))?,
        namespaces,
        selector,
        statuses,
        release,
        name_contains: p.one("q")?.map(str::to_string),
        include_releases: true,
    };
    let mut page: Vec<NodeIndex> = g
        .select_after(&filter, after.as_ref())
        .take(limit + 1)
        .collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let cont = more
        .then(|| page.last().map(|&n| encode_token(g.object(n), query)))
        .flatten();
    let f = freshness(&st, &g);
    Ok(ok(
        &f,
        &ListBody {
            items: NodeList(&g, &page),
            cont,
            freshness: f.clone(),
        },
        page.len(),
    ))
}

// ----- single objects -----------------------------------------------------------------------

/// The other end of an edge.
struct Link<'a> {
    ty: EdgeType,
    other: &'a Object,
}

impl Serialize for Link<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("type", self.ty.as_str())?;
        m.serialize_entry("uid", &self.other.uid)?;
        m.serialize_entry("kind", self.other.kind.name())?;
        m.serialize_entry("namespace", self.other.namespace.as_str())?;
        m.serialize_entry("name", self.other.name.as_str())?;
        m.end()
    }
}

#[derive(Serialize)]
struct DetailBody<'a> {
    resource: NodeView<'a>,
    outgoing: Vec<Link<'a>>,
    incoming: Vec<Link<'a>>,
    freshness: Freshness,
}

fn links<'g>(g: &'g Graph, edges: impl Iterator<Item = (NodeIndex, EdgeType)>) -> Vec<Link<'g>> {
    let mut v: Vec<Link> = edges
        .map(|(m, ty)| Link {
            ty,
            other: g.object(m),
        })
        .collect();
    v.sort_by(|a, b| {
        (a.ty, &a.other.namespace, &a.other.kind, &a.other.name).cmp(&(
            b.ty,
            &b.other.namespace,
            &b.other.kind,
            &b.other.name,
        ))
    });
    v
}

fn detail(st: &AppState, g: &Graph, n: NodeIndex) -> Response {
    let f = freshness(st, g);
    let body = DetailBody {
        resource: NodeView::new(g.object(n)),
        outgoing: links(g, g.out_edges(n)),
        incoming: links(g, g.in_edges(n)),
        freshness: f.clone(),
    };
    ok(&f, &body, 1)
}

/// One object by uid, with its outgoing and incoming edges.
#[utoipa::path(get, path = "/api/v2/resources/{uid}", tag = "v2",
    params(("uid" = String, Path, description = "The object's uid")),
    responses((status = 200, description = "The object and its edges", body = DetailDoc),
              (status = 400, description = "Unknown parameter", body = ErrorBody),
              (status = 404, description = "No such object", body = ErrorBody)))]
pub(super) async fn resource(
    State(st): State<AppState>,
    Segments(uid): Segments<String>,
    RawQuery(q): RawQuery,
) -> V2Result {
    Params::parse(q.as_deref()).only(&[])?;
    let g = st.graph().read();
    let n = find_uid(&g, &uid)?;
    Ok(detail(&st, &g, n))
}

fn by_key(st: &AppState, kind: &str, ns: &str, name: &str) -> V2Result {
    let g = st.graph().read();
    let kind = parse_kinds(&g, &[kind])?.remove(0);
    let ns = if ns.is_empty() {
        Atom::empty()
    } else {
        params::namespace(ns)?
    };
    let n = g.find_key(&kind, &ns, name).ok_or_else(|| {
        let key = ObjectKey {
            kind: kind.clone(),
            namespace: ns.clone(),
            name: name.into(),
        };
        ApiError::not_found(format!("no object {key}"))
    })?;
    Ok(detail(st, &g, n))
}

/// One namespaced object by kind, namespace and name, with its edges.
#[utoipa::path(get, path = "/api/v2/objects/{kind}/{namespace}/{name}", tag = "v2",
    params(("kind" = String, Path, description = "Kind (`Deployment`, `deploy`, `deployments.apps`)"),
           ("namespace" = String, Path, description = "Namespace"),
           ("name" = String, Path, description = "Name")),
    responses((status = 200, description = "The object and its edges", body = DetailDoc),
              (status = 400, description = "Unknown kind or invalid namespace", body = ErrorBody),
              (status = 404, description = "No such object", body = ErrorBody)))]
pub(super) async fn object_namespaced(
    State(st): State<AppState>,
    Segments((kind, ns, name)): Segments<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> V2Result {
    Params::parse(q.as_deref()).only(&[])?;
    by_key(&st, &kind, &ns, &name)
}

/// One cluster-scoped object by kind and name, with its edges.
#[utoipa::path(get, path = "/api/v2/objects/{kind}/{name}", tag = "v2",
    params(("kind" = String, Path, description = "Kind (`Node`, `pv`, `storageclasses`)"),
           ("name" = String, Path, description = "Name")),
    responses((status = 200, description = "The object and its edges", body = DetailDoc),
              (status = 400, description = "Unknown kind", body = ErrorBody),
              (status = 404, description = "No such object", body = ErrorBody)))]
pub(super) async fn object_cluster(
    State(st): State<AppState>,
    Segments((kind, name)): Segments<(String, String)>,
    RawQuery(q): RawQuery,
) -> V2Result {
    Params::parse(q.as_deref()).only(&[])?;
    by_key(&st, &kind, "", &name)
}

// ----- traversals ---------------------------------------------------------------------------

#[derive(Serialize)]
struct GraphBody<'a> {
    nodes: NodeList<'a>,
    edges: EdgeList<'a>,
    truncated: bool,
    freshness: Freshness,
}

/// The neighbourhood of an object.
#[utoipa::path(get, path = "/api/v2/resources/{uid}/neighbors", tag = "v2",
    params(("uid" = String, Path, description = "The object's uid"),
           ("direction" = Option<String>, Query, description = "`out` (what it uses), `in` (what uses it) or `both` (default)"),
           ("depth" = Option<u32>, Query, description = "Hops, 1 to 10 (default 1)"),
           ("types" = Option<Vec<String>>, Query, description = "Only these edge types"),
           ("kinds" = Option<Vec<String>>, Query, description = "Only nodes of these kinds (the object itself is always included)"),
           ("limit" = Option<u32>, Query, description = "At most this many nodes (default 1000)")),
    responses((status = 200, description = "Nodes and edges", body = GraphDoc),
              (status = 400, description = "Invalid parameter", body = ErrorBody),
              (status = 404, description = "No such object", body = ErrorBody)))]
pub(super) async fn neighbors(
    State(st): State<AppState>,
    Segments(uid): Segments<String>,
    RawQuery(q): RawQuery,
) -> V2Result {
    let p = Params::parse(q.as_deref());
    p.only(&["direction", "depth", "types", "kinds", "limit"])?;
    let dir = match p.one("direction")? {
        None => Direction3::Both,
        Some(d) => Direction3::parse(d)
            .ok_or_else(|| ApiError::bad(format!("invalid direction {d:?}: out, in or both")))?,
    };
    let depth = p.number("depth", 1..=10, 1)?;
    let types = parse_types(&p.list("types"))?;
    let limit = limit(&st, &p)?;
    let g = st.graph().read();
    let kinds = parse_kinds(&g, &p.list("kinds"))?;
    let start = find_uid(&g, &uid)?;
    let sub = g.neighborhood(start, depth, dir, &types, limit);
    let nodes: Vec<NodeIndex> = sub
        .nodes
        .iter()
        .copied()
        .filter(|&n| n == start || kinds.is_empty() || kinds.contains(&g.object(n).kind))
        .collect();
    let edges = g.induced_edges(&nodes, |ty| types.is_empty() || types.contains(&ty));
    let f = freshness(&st, &g);
    Ok(ok(
        &f,
        &GraphBody {
            nodes: NodeList(&g, &nodes),
            edges: EdgeList(&g, &edges),
            truncated: sub.truncated,
            freshness: f.clone(),
        },
        nodes.len(),
    ))
}

fn limit(st: &AppState, p: &Params) -> Result<usize, ApiError> {
    let max = st.max_nodes().min(u32::MAX as usize) as u32;
    Ok(p.number("limit", 1..=max, 1000.min(max))? as usize)
}

/// A node of an impact, with its distance from the root.
struct Affected<'a> {
    g: &'a Graph,
    sub: &'a Subgraph,
}

impl Serialize for Affected<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item<'a> {
            distance: u32,
            resource: NodeView<'a>,
        }
        let mut items: Vec<(u32, NodeIndex)> = self
            .sub
            .nodes
            .iter()
            .map(|&n| (self.sub.depth[&n], n))
            .collect();
        // By distance, then in listing order (the nodes are already in that order).
        items.sort_by_key(|(d, _)| *d);
        s.collect_seq(items.into_iter().map(|(d, n)| Item {
            distance: d,
            resource: NodeView::new(self.g.object(n)),
        }))
    }
}

#[derive(Serialize)]
struct ImpactBody<'a> {
    root: &'a Uid,
    affected: Affected<'a>,
    edges: EdgeList<'a>,
    truncated: bool,
    freshness: Freshness,
}

/// Blast radius: everything that depends on an object, transitively, with distances.
#[utoipa::path(get, path = "/api/v2/resources/{uid}/impact", tag = "v2",
    params(("uid" = String, Path, description = "The object's uid"),
           ("depth" = Option<u32>, Query, description = "Hops, 1 to 10 (default 10)"),
           ("limit" = Option<u32>, Query, description = "At most this many nodes (default 1000)")),
    responses((status = 200, description = "The object (distance 0) and everything depending on it", body = ImpactDoc),
              (status = 400, description = "Invalid parameter", body = ErrorBody),
              (status = 404, description = "No such object", body = ErrorBody)))]
pub(super) async fn impact(
    State(st): State<AppState>,
    Segments(uid): Segments<String>,
    RawQuery(q): RawQuery,
) -> V2Result {
    let p = Params::parse(q.as_deref());
    p.only(&["depth", "limit"])?;
    let depth = p.number("depth", 1..=10, 10)?;
    let limit = limit(&st, &p)?;
    let g = st.graph().read();
    let start = find_uid(&g, &uid)?;
    let sub = g.impact(start, depth, limit);
    let f = freshness(&st, &g);
    let body = ImpactBody {
        root: &g.object(start).uid,
        affected: Affected { g: &g, sub: &sub },
        edges: EdgeList(&g, &sub.edges),
        truncated: sub.truncated,
        freshness: f.clone(),
    };
    Ok(ok(&f, &body, sub.nodes.len()))
}

#[derive(Serialize)]
struct PathBody<'a> {
    length: usize,
    nodes: NodeList<'a>,
    edges: EdgeList<'a>,
    freshness: Freshness,
}

/// A shortest path between two objects, following edges either way.
#[utoipa::path(get, path = "/api/v2/path", tag = "v2",
    params(("from" = String, Query, description = "uid of one end"),
           ("to" = String, Query, description = "uid of the other end"),
           ("maxDepth" = Option<u32>, Query, description = "At most this many edges, 1 to 20 (default 10)")),
    responses((status = 200, description = "The path: nodes in order, and the edges joining them", body = PathDoc),
              (status = 400, description = "Missing or invalid parameter", body = ErrorBody),
              (status = 404, description = "No such object, or no path within maxDepth", body = ErrorBody)))]
pub(super) async fn path(State(st): State<AppState>, RawQuery(q): RawQuery) -> V2Result {
    let p = Params::parse(q.as_deref());
    p.only(&["from", "to", "maxDepth"])?;
    let from = p
        .one("from")?
        .ok_or_else(|| ApiError::bad("parameter \"from\" (a uid) is required"))?;
    let to = p
        .one("to")?
        .ok_or_else(|| ApiError::bad("parameter \"to\" (a uid) is required"))?;
    let max_depth = p.number("maxDepth", 1..=20, 10)?;
    let g = st.graph().read();
    let (a, b) = (find_uid(&g, from)?, find_uid(&g, to)?);
    let (nodes, edges) = g.shortest_path(a, b, max_depth).ok_or_else(|| {
        ApiError::not_found(format!(
            "no path between {from} and {to} within {max_depth} edges"
        ))
    })?;
    let f = freshness(&st, &g);
    let body = PathBody {
        length: edges.len(),
        nodes: NodeList(&g, &nodes),
        edges: EdgeList(&g, &edges),
        freshness: f.clone(),
    };
    Ok(ok(&f, &body, nodes.len()))
}

/// A scoped subgraph: a namespace (its objects and the cluster objects they point at) or a
/// release (its members, what they own, mount and use), optionally only some kinds.
#[utoipa::path(get, path = "/api/v2/graph", tag = "v2",
    params(("namespace" = Option<String>, Query, description = "A namespace; with `release`, the release's namespace"),
           ("release" = Option<String>, Query, description = "A release: NAME (any namespace, or the one given) or NAMESPACE/NAME"),
           ("kinds" = Option<Vec<String>>, Query, description = "Only nodes of these kinds")),
    responses((status = 200, description = "Nodes and edges", body = GraphDoc),
              (status = 400, description = "Invalid parameter", body = ErrorBody)))]
pub(super) async fn graph(State(st): State<AppState>, RawQuery(q): RawQuery) -> V2Result {
    let p = Params::parse(q.as_deref());
    p.only(&["namespace", "release", "kinds"])?;
    let namespace = p.one("namespace")?.map(params::namespace).transpose()?;
    let release = p.one("release")?;
    let g = st.graph().read();
    let kinds = parse_kinds(&g, &p.list("kinds"))?;
    let mut nodes = match (release, &namespace) {
        (Some(r), ns) => {
            let keys = match r.split_once('/') {
                Some(_) => vec![parse_release(r)?],
                None => g.releases_named(r, ns.as_ref()),
            };
            g.release_scope(&keys, true)
        }
        (None, Some(ns)) => g.namespace_scope(ns),
        (None, None) => g
            .select(&Filter {
                include_releases: true,
                ..Filter::default()
            })
            .collect(),
    };
    if !kinds.is_empty() {
        nodes.retain(|&n| kinds.contains(&g.object(n).kind));
    }
    let truncated = nodes.len() > st.max_nodes();
    nodes.truncate(st.max_nodes());
    let edges = g.induced_edges(&nodes, |_| true);
    let f = freshness(&st, &g);
    Ok(ok(
        &f,
        &GraphBody {
            nodes: NodeList(&g, &nodes),
            edges: EdgeList(&g, &edges),
            truncated,
            freshness: f.clone(),
        },
        nodes.len(),
    ))
}

// ----- summaries ----------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
struct KindCount {
    kind: String,
    group: String,
    count: usize,
}

#[derive(Serialize)]
struct ItemsBody<T: Serialize> {
    items: Vec<T>,
    freshness: Freshness,
}

/// Kinds in the graph, with object counts.
#[utoipa::path(get, path = "/api/v2/kinds", tag = "v2",
    responses((status = 200, description = "Kinds sorted by name, then group", body = KindsDoc),
              (status = 400, description = "Unknown parameter", body = ErrorBody)))]
pub(super) async fn kinds(State(st): State<AppState>, RawQuery(q): RawQuery) -> V2Result {
    Params::parse(q.as_deref()).only(&[])?;
    let g = st.graph().read();
    let items: Vec<KindCount> = g
        .kind_counts()
        .map(|(k, count)| KindCount {
            kind: k.name().to_string(),
            group: k.group().to_string(),
            count,
        })
        .collect();
    let f = freshness(&st, &g);
    Ok(ok(
        &f,
        &ItemsBody {
            items,
            freshness: f.clone(),
        },
        0,
    ))
}

#[derive(Serialize, ToSchema)]
struct NamespaceCount {
    name: String,
    count: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NamespacesBody {
    items: Vec<NamespaceCount>,
    cluster_scoped: usize,
    freshness: Freshness,
}

/// Namespaces with their object counts, and the number of cluster-scoped objects.
#[utoipa::path(get, path = "/api/v2/namespaces", tag = "v2",
    responses((status = 200, description = "Namespaces sorted by name", body = NamespacesDoc),
              (status = 400, description = "Unknown parameter", body = ErrorBody)))]
pub(super) async fn namespaces(State(st): State<AppState>, RawQuery(q): RawQuery) -> V2Result {
    Params::parse(q.as_deref()).only(&[])?;
    let g = st.graph().read();
    let mut cluster_scoped = 0;
    let mut items = Vec::new();
    for (ns, count) in g.namespace_counts() {
        if ns.is_empty() {
            cluster_scoped = count;
        } else {
            items.push(NamespaceCount {
                name: ns.to_string(),
                count,
            });
        }
    }
    let f = freshness(&st, &g);
    // The body owns its data: it is serialised (half a megabyte of JSON for 12,668 namespaces)
    // after the read lock is let go, so that ingest, and the queries queued behind its write
    // lock, do not wait for that.
    drop(g);
    Ok(ok(
        &f,
        &NamespacesBody {
            items,
            cluster_scoped,
            freshness: f.clone(),
        },
        0,
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReleaseSummary {
    namespace: String,
    name: String,
    uid: String,
    /// The most common `helm.sh/chart` label among the members.
    chart: Option<String>,
    revision: u32,
    #[schema(value_type = StatusDoc)]
    status: Status,
    message: String,
    /// Members by status.
    members: BTreeMap<String, usize>,
    member_count: usize,
}

/// Helm releases: chart, revision, status, and member counts by status.
#[utoipa::path(get, path = "/api/v2/releases", tag = "v2",
    responses((status = 200, description = "Releases sorted by namespace, name", body = ReleasesDoc),
              (status = 400, description = "Unknown parameter", body = ErrorBody)))]
pub(super) async fn releases(State(st): State<AppState>, RawQuery(q): RawQuery) -> V2Result {
    Params::parse(q.as_deref()).only(&[])?;
    let g = st.graph().read();
    let mut items = Vec::new();
    for (key, rn) in g.releases() {
        let r = g.object(rn);
        let members = g.release_members(&key);
        let mut by_status: BTreeMap<String, usize> = Status::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut charts: BTreeMap<&str, usize> = BTreeMap::new();
        for &m in &members {
            let o = g.object(m);
            *by_status.entry(o.status.as_str().to_string()).or_default() += 1;
            if let Some(c) = o.chart() {
                *charts.entry(c.as_str()).or_default() += 1;
            }
        }
        // Most common chart; ties go to the alphabetically first (BTreeMap order, stable max).
        let chart = charts
            .iter()
            .rev()
            .max_by_key(|(_, c)| **c)
            .map(|(name, _)| name.to_string());
        let revision = match &r.spec {
            crate::model::Spec::Release(info) => info.revision,
            _ => 0,
        };
        items.push(ReleaseSummary {
            namespace: key.namespace.to_string(),
            name: key.name.to_string(),
            uid: r.uid.to_string(),
            chart,
            revision,
            status: r.status,
            message: r.message.to_string(),
            members: by_status,
            member_count: members.len(),
        });
    }
    let f = freshness(&st, &g);
    Ok(ok(
        &f,
        &ItemsBody {
            items,
            freshness: f.clone(),
        },
        0,
    ))
}

#[derive(Serialize)]
struct ProblemObject<'a> {
    uid: &'a Uid,
    kind: &'a str,
    name: &'a str,
    status: Status,
    message: &'a str,
}

#[derive(Serialize)]
struct DanglingRef<'a> {
    from: ProblemObject<'a>,
    #[serde(rename = "type")]
    ty: &'static str,
    missing: serde_json::Value,
}

#[derive(Serialize)]
struct NamespaceProblems<'a> {
    namespace: &'a str,
    objects: Vec<ProblemObject<'a>>,
    dangling: Vec<DanglingRef<'a>>,
}

fn problem<'a>(o: &'a Object) -> ProblemObject<'a> {
    ProblemObject {
        uid: &o.uid,
        kind: o.kind.name(),
        name: &o.name,
        status: o.status,
        message: &o.message,
    }
}

/// Objects in Error or Pending, and references to objects that do not exist, by namespace.
#[utoipa::path(get, path = "/api/v2/problems", tag = "v2",
    responses((status = 200, description = "Problems grouped by namespace (\"\" for cluster-scoped objects), sorted", body = ProblemsDoc),
              (status = 400, description = "Unknown parameter", body = ErrorBody)))]
pub(super) async fn problems(State(st): State<AppState>, RawQuery(q): RawQuery) -> V2Result {
    Params::parse(q.as_deref()).only(&[])?;
    let g = st.graph().read();
    let filter = Filter {
        statuses: vec![Status::Error, Status::Pending],
        include_releases: true,
        ..Filter::default()
    };
    let mut groups: BTreeMap<&str, NamespaceProblems> = BTreeMap::new();
    for n in g.select(&filter) {
        let o = g.object(n);
        groups
            .entry(o.namespace.as_str())
            .or_insert_with(|| NamespaceProblems {
                namespace: o.namespace.as_str(),
                objects: Vec::new(),
                dangling: Vec::new(),
            })
            .objects
            .push(problem(o));
    }
    for (n, ty, what) in g.dangling() {
        let o = g.object(n);
        let missing = match what {
            Dangling::Named(k) => {
                serde_json::json!({"kind": k.kind.name(), "namespace": k.namespace, "name": k.name.as_str()})
            }
            Dangling::Uid(u) => serde_json::json!({"uid": u}),
        };
        groups
            .entry(o.namespace.as_str())
            .or_insert_with(|| NamespaceProblems {
                namespace: o.namespace.as_str(),
                objects: Vec::new(),
                dangling: Vec::new(),
            })
            .dangling
            .push(DanglingRef {
                from: problem(o),
                ty: ty.as_str(),
                missing,
            });
    }
    let items: Vec<NamespaceProblems> = groups.into_values().collect();
    let f = freshness(&st, &g);
    Ok(ok(
        &f,
        &ItemsBody {
            items,
            freshness: f.clone(),
        },
        0,
    ))
}

// ----- documentation schemas ----------------------------------------------------------------

/// An object's status.
#[derive(ToSchema)]
#[schema(as = Status)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) enum StatusDoc {
    /// Working as intended.
    Ready,
    /// On its way, or waiting for something.
    Pending,
    /// Broken.
    Error,
    /// The rules cannot tell.
    Unknown,
}
// The handlers write JSON directly from the graph; these types describe the same shapes for
// the OpenAPI document (tests validate real responses against them).

/// A node (an object) in v2 responses.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Node)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct NodeDoc {
    uid: String,
    kind: String,
    /// API group, "" for core.
    group: String,
    api_version: String,
    /// "" for cluster-scoped objects.
    namespace: String,
    name: String,
    #[schema(value_type = StatusDoc)]
    status: Status,
    message: String,
    labels: BTreeMap<String, String>,
    /// The Helm release's name, when a member.
    release: Option<String>,
    release_namespace: Option<String>,
    /// The `helm.sh/chart` label.
    chart: Option<String>,
    creation_timestamp: Option<String>,
    deletion_timestamp: Option<String>,
    resource_version: String,
    /// Annotations on the allow-list.
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<BTreeMap<String, serde_json::Value>>>,
    /// Kind-specific fields (images, node, restart count, replica counters, volumes, selectors,
    /// HPA figures, Secret type, release revision).
    details: BTreeMap<String, serde_json::Value>,
}

/// An edge in v2 responses.
#[derive(Serialize, ToSchema)]
#[schema(as = Edge)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct EdgeDoc {
    from: String,
    to: String,
    /// Canonical edge type (`owns`, `selects`, `endpoints`, `targets`, `routes-to`,
    /// `uses-secret`, `uses-class`, `mounts`, `claims`, `binds`, `uses-configmap`, `uses-sa`,
    /// `runs-on`, `scales`, `member-of`).
    #[serde(rename = "type")]
    ty: String,
}

/// A page of objects.
#[derive(Serialize, ToSchema)]
#[schema(as = ResourceList)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct ResourceListDoc {
    items: Vec<NodeDoc>,
    /// Pass as `continue` for the next page; null on the last page.
    #[serde(rename = "continue")]
    cont: Option<String>,
    freshness: Freshness,
}

/// The other end of an edge.
#[derive(Serialize, ToSchema)]
#[schema(as = Link)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct LinkDoc {
    #[serde(rename = "type")]
    ty: String,
    uid: String,
    kind: String,
    namespace: String,
    name: String,
}

/// One object with its edges.
#[derive(Serialize, ToSchema)]
#[schema(as = Detail)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct DetailDoc {
    resource: NodeDoc,
    outgoing: Vec<LinkDoc>,
    incoming: Vec<LinkDoc>,
    freshness: Freshness,
}

/// Nodes and the edges among them.
#[derive(Serialize, ToSchema)]
#[schema(as = Graph)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct GraphDoc {
    nodes: Vec<NodeDoc>,
    edges: Vec<EdgeDoc>,
    /// Whether the node cap cut the result short.
    truncated: bool,
    freshness: Freshness,
}

/// An affected object and its distance from the root.
#[derive(Serialize, ToSchema)]
#[schema(as = Affected)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct AffectedDoc {
    distance: u32,
    resource: NodeDoc,
}

/// Blast radius.
#[derive(Serialize, ToSchema)]
#[schema(as = Impact)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct ImpactDoc {
    root: String,
    affected: Vec<AffectedDoc>,
    edges: Vec<EdgeDoc>,
    truncated: bool,
    freshness: Freshness,
}

/// A path.
#[derive(Serialize, ToSchema)]
#[schema(as = Path)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct PathDoc {
    /// Number of edges.
    length: usize,
    nodes: Vec<NodeDoc>,
    edges: Vec<EdgeDoc>,
    freshness: Freshness,
}

/// Kinds with counts.
#[derive(Serialize, ToSchema)]
#[schema(as = Kinds)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct KindsDoc {
    items: Vec<KindCount>,
    freshness: Freshness,
}

/// Namespaces with counts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Namespaces)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct NamespacesDoc {
    items: Vec<NamespaceCount>,
    cluster_scoped: usize,
    freshness: Freshness,
}

/// Release summaries.
#[derive(Serialize, ToSchema)]
#[schema(as = Releases)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct ReleasesDoc {
    items: Vec<ReleaseSummary>,
    freshness: Freshness,
}

/// An object with a problem.
#[derive(Serialize, ToSchema)]
#[schema(as = ProblemObject)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct ProblemObjectDoc {
    uid: String,
    kind: String,
    name: String,
    #[schema(value_type = StatusDoc)]
    status: Status,
    message: String,
}

/// A reference to something that does not exist.
#[derive(Serialize, ToSchema)]
#[schema(as = DanglingRef)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct DanglingDoc {
    from: ProblemObjectDoc,
    #[serde(rename = "type")]
    ty: String,
    /// `{kind, namespace, name}` or `{uid}`.
    missing: BTreeMap<String, String>,
}

/// Problems of one namespace.
#[derive(Serialize, ToSchema)]
#[schema(as = NamespaceProblems)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct NamespaceProblemsDoc {
    namespace: String,
    objects: Vec<ProblemObjectDoc>,
    dangling: Vec<DanglingDoc>,
}

/// Problems by namespace.
#[derive(Serialize, ToSchema)]
#[schema(as = Problems)]
#[allow(dead_code, reason = "a schema for the OpenAPI document only")]
pub(super) struct ProblemsDoc {
    items: Vec<NamespaceProblemsDoc>,
    freshness: Freshness,
}
