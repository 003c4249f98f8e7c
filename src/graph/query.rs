//! Read-only queries over the graph: ordered listings with filters, adjacency, neighbourhoods
//! and induced subgraphs. Every function here takes `&Graph`, so it runs under a read lock and
//! sees one consistent state.

use std::collections::VecDeque;

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use rustc_hash::{FxHashMap, FxHashSet};

use super::index::Bucket;
use super::store::Graph;
use crate::model::{Atom, EdgeType, Kind, Object, ObjectKey, ReleaseKey, Selector, Status};

/// An edge as (from, to, type).
pub type EdgeTriple = (NodeIndex, NodeIndex, EdgeType);

/// Which edges a traversal follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction3 {
    /// Along edges (what this object uses, owns, selects...).
    #[default]
    Out,
    /// Against edges (what uses, owns, selects this object).
    In,
    /// Both ways.
    Both,
}

impl Direction3 {
    /// Parses `out`, `in` or `both`.
    pub fn parse(s: &str) -> Option<Direction3> {
        match s {
            "out" => Some(Direction3::Out),
            "in" => Some(Direction3::In),
            "both" => Some(Direction3::Both),
            _ => None,
        }
    }

    fn directions(self) -> &'static [Direction] {
        match self {
            Direction3::Out => &[Direction::Outgoing],
            Direction3::In => &[Direction::Incoming],
            Direction3::Both => &[Direction::Outgoing, Direction::Incoming],
        }
    }
}

/// A filter over objects. Empty lists mean "any".
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Any of these kinds.
    pub kinds: Vec<Kind>,
    /// Any of these namespaces ("" is the cluster scope).
    pub namespaces: Vec<Atom>,
    /// Labels matching this selector.
    pub selector: Option<Selector>,
    /// Any of these statuses.
    pub statuses: Vec<Status>,
    /// Members of this release.
    pub release: Option<ReleaseKey>,
    /// Name containing this text.
    pub name_contains: Option<String>,
    /// Whether to include the synthetic HelmRelease nodes when no kind is given.
    pub include_releases: bool,
}

impl Filter {
    fn accepts(&self, o: &Object) -> bool {
        (self.include_releases || !self.kinds.is_empty() || o.kind != Kind::HelmRelease)
            && (self.statuses.is_empty() || self.statuses.contains(&o.status))
            && self.selector.as_ref().is_none_or(|s| s.matches(&o.labels))
            && self
                .release
                .as_ref()
                .is_none_or(|r| o.release.as_deref() == Some(r))
            && self
                .name_contains
                .as_deref()
                .is_none_or(|q| o.name.contains(q))
    }
}

/// A set of nodes and the edges among them that a query returns.
#[derive(Clone, Debug, Default)]
pub struct Subgraph {
    /// Nodes, in (namespace, kind, name) order.
    pub nodes: Vec<NodeIndex>,
    /// Edges whose both ends are in `nodes`, as (from, to, type).
    pub edges: Vec<(NodeIndex, NodeIndex, EdgeType)>,
    /// Distance from the start for traversals.
    pub depth: FxHashMap<NodeIndex, u32>,
    /// Whether the node cap cut the result short.
    pub truncated: bool,
}

impl Graph {
    /// Namespaces holding at least one object, sorted ("" for the cluster scope comes first).
    pub fn namespaces(&self) -> impl Iterator<Item = &Atom> {
        self.ns_order.keys()
    }

    /// Number of objects per kind (synthetic releases included), in kind order.
    pub fn kind_counts(&self) -> impl Iterator<Item = (&Kind, usize)> {
        self.kind_counts.iter().map(|(k, c)| (k, *c))
    }

    /// Namespaces holding at least one object other than a synthetic release, with their number
    /// of such objects, in order ("" for the cluster scope comes first).
    pub fn namespace_counts(&self) -> Vec<(&Atom, usize)> {
        self.ns_order
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(ns, count)| (ns, *count))
            .collect()
    }

    /// Distinct values of a label, over one namespace or all, sorted.
    pub fn label_values(&self, key: &str, namespace: Option<&Atom>) -> Vec<Atom> {
        let mut values = self.labels.values_of(key, namespace);
        values.sort();
        values.dedup();
        values
    }

    /// Every known kind, in order.
    pub fn kinds(&self) -> impl Iterator<Item = &Kind> {
        self.kind_counts.keys()
    }

    /// Nodes matching `filter`, in (namespace, kind, name) order.
    pub fn select<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = NodeIndex> + 'a {
        self.select_after(filter, None)
    }

    /// Nodes matching `filter` strictly after `after` in (namespace, kind, name) order: the
    /// next page of a listing. Seeks through the namespace, kind and name indexes, so a page
    /// costs the same wherever it starts.
    pub fn select_after<'a>(
        &'a self,
        filter: &'a Filter,
        after: Option<&'a ObjectKey>,
    ) -> impl Iterator<Item = NodeIndex> + 'a {
        let mut namespaces: Vec<&Atom> = if filter.namespaces.is_empty() {
            match after {
                Some(k) => self
                    .ns_order
                    .range(k.namespace.clone()..)
                    .map(|(ns, _)| ns)
                    .collect(),
                None => self.ns_order.keys().collect(),
            }
        } else {
            filter.namespaces.iter().collect()
        };
        namespaces.sort();
        namespaces.dedup();
        namespaces.retain(|ns| after.is_none_or(|k| **ns >= k.namespace));
        let mut wanted: Vec<&Kind> = filter.kinds.iter().collect();
        wanted.sort();
        wanted.dedup();
        namespaces.into_iter().flat_map(move |ns| {
            let at = after.filter(|k| k.namespace == *ns);
            let buckets: Vec<(&Kind, &Bucket)> = match self.by_ns.get(ns) {
                None => Vec::new(),
                Some(kinds) if wanted.is_empty() => kinds.iter().collect(),
                Some(kinds) => wanted
                    .iter()
                    .filter_map(|k| kinds.get_key_value(*k))
                    .collect(),
            };
            buckets
                .into_iter()
                .filter(move |(kind, _)| at.is_none_or(|k| **kind >= k.kind))
                .flat_map(move |(kind, bucket)| match at.filter(|k| k.kind == *kind) {
                    Some(k) => bucket.range_after(&k.name),
                    None => bucket.iter(),
                })
                .map(|(_, n)| n)
                .filter(move |&n| filter.accepts(&self.g[n]))
        })
    }

    /// Edges leaving `n`: (target, type).
    pub fn out_edges(&self, n: NodeIndex) -> impl Iterator<Item = (NodeIndex, EdgeType)> + '_ {
        self.g
            .edges_directed(n, Direction::Outgoing)
            .map(|e| (e.target(), e.weight().ty))
    }

    /// Edges arriving at `n`: (source, type).
    pub fn in_edges(&self, n: NodeIndex) -> impl Iterator<Item = (NodeIndex, EdgeType)> + '_ {
        self.g
            .edges_directed(n, Direction::Incoming)
            .map(|e| (e.source(), e.weight().ty))
    }

    /// Breadth-first neighbourhood of `start` up to `depth` hops, following `types` (all when
    /// empty) in `dir`, at most `cap` nodes.
    pub fn neighborhood(
        &self,
        start: NodeIndex,
        depth: u32,
        dir: Direction3,
        types: &[EdgeType],
        cap: usize,
    ) -> Subgraph {
        let mut dist: FxHashMap<NodeIndex, u32> = FxHashMap::default();
        let mut queue = VecDeque::new();
        let mut truncated = false;
        dist.insert(start, 0);
        queue.push_back(start);
        'bfs: while let Some(n) = queue.pop_front() {
            let d = dist[&n];
            if d >= depth {
                continue;
            }
            for &direction in dir.directions() {
                for e in self.g.edges_directed(n, direction) {
                    if !types.is_empty() && !types.contains(&e.weight().ty) {
                        continue;
                    }
                    let m = if direction == Direction::Outgoing {
                        e.target()
                    } else {
                        e.source()
                    };
                    if dist.contains_key(&m) {
                        continue;
                    }
                    if dist.len() >= cap {
                        truncated = true;
                        break 'bfs;
                    }
                    dist.insert(m, d + 1);
                    queue.push_back(m);
                }
            }
        }
        let mut nodes: Vec<NodeIndex> = dist.keys().copied().collect();
        self.sort_nodes(&mut nodes);
        let edges = self.induced_edges(&nodes, |ty| types.is_empty() || types.contains(&ty));
        Subgraph {
            nodes,
            edges,
            depth: dist,
            truncated,
        }
    }

    /// The edges (of accepted types) whose both ends are in `nodes`, sorted by (from uid, to uid,
    /// type).
    pub fn induced_edges(
        &self,
        nodes: &[NodeIndex],
        accept: impl Fn(EdgeType) -> bool,
    ) -> Vec<(NodeIndex, NodeIndex, EdgeType)> {
        let set: FxHashSet<NodeIndex> = nodes.iter().copied().collect();
        let mut edges: Vec<(NodeIndex, NodeIndex, EdgeType)> = nodes
            .iter()
            .flat_map(|&n| self.out_edges(n).map(move |(m, ty)| (n, m, ty)))
            .filter(|(_, m, ty)| set.contains(m) && accept(*ty))
            .collect();
        edges.sort_by(|a, b| {
            let (ga, gb) = (&self.g, &self.g);
            (&ga[a.0].uid, &ga[a.1].uid, a.2).cmp(&(&gb[b.0].uid, &gb[b.1].uid, b.2))
        });
        edges
    }

    /// Sorts nodes in (namespace, kind, name) order.
    pub fn sort_nodes(&self, nodes: &mut [NodeIndex]) {
        nodes.sort_by(|&a, &b| {
            let (a, b) = (&self.g[a], &self.g[b]);
            (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
        });
    }

    /// The synthetic release nodes, in (namespace, name) order.
    pub fn releases(&self) -> Vec<(ReleaseKey, NodeIndex)> {
        let mut v: Vec<(ReleaseKey, NodeIndex)> = self
            .releases
            .iter()
            .map(|(k, e)| (k.clone(), e.node))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The objects of a release: the sources of its `member-of` edges, in order.
    pub fn release_members(&self, key: &ReleaseKey) -> Vec<NodeIndex> {
        let Some(e) = self.releases.get(key) else {
            return Vec::new();
        };
        let mut v: Vec<NodeIndex> = self.in_edges(e.node).map(|(m, _)| m).collect();
        self.sort_nodes(&mut v);
        v
    }
}

impl Graph {
    /// The v1 namespace scope: every object of `ns` (no synthetic release nodes), plus the
    /// cluster-scoped objects one of them points at (their Nodes, PVs, StorageClasses,
    /// IngressClasses), in (namespace, kind, name) order.
    pub fn namespace_scope(&self, ns: &Atom) -> Vec<NodeIndex> {
        let filter = Filter {
            namespaces: vec![ns.clone()],
            ..Filter::default()
        };
        // The namespace's objects come out of the index already in order; the cluster-scoped
        // objects they point at all sort before them ("" < any namespace), so only those few
        // need sorting.
        let own: Vec<NodeIndex> = self.select(&filter).collect();
        if ns.is_empty() {
            // The cluster scope itself: its objects are already in `own`.
            return own;
        }
        let mut cluster: Vec<NodeIndex> = own
            .iter()
            .flat_map(|&n| self.out_edges(n))
            .map(|(m, _)| m)
            .filter(|&m| {
                let o = &self.g[m];
                o.namespace.is_empty() && o.kind != Kind::HelmRelease
            })
            .collect();
        cluster.sort_unstable();
        cluster.dedup();
        self.sort_nodes(&mut cluster);
        cluster.extend(own);
        cluster
    }

    /// The release scope: the members of the given releases, everything reachable from them
    /// through `owns`, the PersistentVolumeClaims their Pods and templates mount or their
    /// StatefulSets claim, the PersistentVolumes those bind, and the ConfigMaps, Secrets and
    /// ServiceAccounts their Pods and templates use. The release nodes themselves are included
    /// when `with_release_nodes`.
    pub fn release_scope(
        &self,
        releases: &[ReleaseKey],
        with_release_nodes: bool,
    ) -> Vec<NodeIndex> {
        let mut set: FxHashSet<NodeIndex> = FxHashSet::default();
        let mut queue: VecDeque<NodeIndex> = VecDeque::new();
        for key in releases {
            for m in self.release_members(key) {
                if set.insert(m) {
                    queue.push_back(m);
                }
            }
            if with_release_nodes && let Some(e) = self.releases.get(key) {
                set.insert(e.node);
            }
        }
        while let Some(n) = queue.pop_front() {
            for (m, ty) in self.out_edges(n) {
                if ty == EdgeType::Owns && set.insert(m) {
                    queue.push_back(m);
                }
            }
        }
        let owned: Vec<NodeIndex> = set.iter().copied().collect();
        let mut claims = Vec::new();
        for &n in &owned {
            let uses_pods = self.g[n].pod_uses().is_some();
            for (m, ty) in self.out_edges(n) {
                let take = match ty {
                    EdgeType::Mounts | EdgeType::Claims => {
                        claims.push(m);
                        true
                    }
                    EdgeType::UsesConfigMap | EdgeType::UsesSecret | EdgeType::UsesSa => uses_pods,
                    _ => false,
                };
                if take {
                    set.insert(m);
                }
            }
        }
        for c in claims {
            for (m, ty) in self.out_edges(c) {
                if ty == EdgeType::Binds {
                    set.insert(m);
                }
            }
        }
        let mut nodes: Vec<NodeIndex> = set.into_iter().collect();
        self.sort_nodes(&mut nodes);
        nodes
    }

    /// The releases named `name`, in `namespace` when given, in (namespace, name) order.
    pub fn releases_named(&self, name: &str, namespace: Option<&Atom>) -> Vec<ReleaseKey> {
        let mut keys: Vec<ReleaseKey> = self
            .releases
            .keys()
            .filter(|k| k.name.as_str() == name && namespace.is_none_or(|ns| k.namespace == *ns))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Blast radius: everything that depends on `start`, transitively, up to `depth` hops, at
    /// most `cap` nodes. An object depends on what it references (it is the source of the edge):
    /// a Pod on its Secrets and Node, an owner on what it owns (a ReplicaSet is unavailable when
    /// its Pods are), a Service on the Pods it selects, an Ingress on its Services. The exception
    /// is `member-of`, where the release depends on its member.
    pub fn impact(&self, start: NodeIndex, depth: u32, cap: usize) -> Subgraph {
        let mut dist: FxHashMap<NodeIndex, u32> = FxHashMap::default();
        let mut queue = VecDeque::new();
        let mut truncated = false;
        dist.insert(start, 0);
        queue.push_back(start);
        'bfs: while let Some(n) = queue.pop_front() {
            let d = dist[&n];
            if d >= depth {
                continue;
            }
            let dependents = self
                .in_edges(n)
                .filter(|(_, ty)| *ty != EdgeType::MemberOf)
                .map(|(m, _)| m)
                .chain(
                    self.out_edges(n)
                        .filter(|(_, ty)| *ty == EdgeType::MemberOf)
                        .map(|(m, _)| m),
                );
            for m in dependents {
                if dist.contains_key(&m) {
                    continue;
                }
                if dist.len() >= cap {
                    truncated = true;
                    break 'bfs;
                }
                dist.insert(m, d + 1);
                queue.push_back(m);
            }
        }
        let mut nodes: Vec<NodeIndex> = dist.keys().copied().collect();
        self.sort_nodes(&mut nodes);
        let edges = self.induced_edges(&nodes, |_| true);
        Subgraph {
            nodes,
            edges,
            depth: dist,
            truncated,
        }
    }

    /// A shortest path between two nodes following edges in either direction, of at most
    /// `max_depth` edges: the nodes in path order and the edges (with their real direction).
    pub fn shortest_path(
        &self,
        from: NodeIndex,
        to: NodeIndex,
        max_depth: u32,
    ) -> Option<(Vec<NodeIndex>, Vec<EdgeTriple>)> {
        // For each node reached: the node it was reached from, and the edge used.
        let mut prev: FxHashMap<NodeIndex, (NodeIndex, EdgeTriple)> = FxHashMap::default();
        let mut queue = VecDeque::from([(from, 0u32)]);
        let mut seen: FxHashSet<NodeIndex> = FxHashSet::from_iter([from]);
        while let Some((n, d)) = queue.pop_front() {
            if n == to {
                break;
            }
            if d >= max_depth {
                continue;
            }
            // Deterministic order: neighbours sorted by (uid, type), so the same graph always
            // gives the same path.
            let mut next: Vec<(NodeIndex, EdgeTriple)> = self
                .out_edges(n)
                .map(|(m, ty)| (m, (n, m, ty)))
                .chain(self.in_edges(n).map(|(m, ty)| (m, (m, n, ty))))
                .collect();
            next.sort_by(|a, b| (&self.g[a.0].uid, a.1.2).cmp(&(&self.g[b.0].uid, b.1.2)));
            for (m, edge) in next {
                if seen.insert(m) {
                    prev.insert(m, (n, edge));
                    queue.push_back((m, d + 1));
                }
            }
        }
        if from != to && !prev.contains_key(&to) {
            return None;
        }
        let (mut nodes, mut edges) = (vec![to], Vec::new());
        let mut cur = to;
        while cur != from {
            let (p, edge) = prev[&cur];
            edges.push(edge);
            nodes.push(p);
            cur = p;
        }
        nodes.reverse();
        edges.reverse();
        Some((nodes, edges))
    }

    /// References waiting for a target that does not exist, as (declarer, edge type, what it
    /// names), in (declarer, type) order.
    pub fn dangling(&self) -> Vec<(NodeIndex, EdgeType, Dangling)> {
        let mut out = self.dangling_refs();
        out.sort_by(|a, b| {
            let (oa, ob) = (&self.g[a.0], &self.g[b.0]);
            (&oa.namespace, &oa.kind, &oa.name, a.1).cmp(&(&ob.namespace, &ob.kind, &ob.name, b.1))
        });
        out
    }
}

/// What a dangling reference names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dangling {
    /// An object by kind, namespace and name.
    Named(ObjectKey),
    /// An object by uid (owner references, EndpointSlice targets with a uid).
    Uid(crate::model::Uid),
}
