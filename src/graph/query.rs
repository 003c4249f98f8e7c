//! Read-only queries over the graph: ordered listings with filters, adjacency, neighbourhoods
//! and induced subgraphs. Every function here takes `&Graph`, so it runs under a read lock and
//! sees one consistent state.

use std::collections::VecDeque;

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use rustc_hash::{FxHashMap, FxHashSet};

use super::store::Graph;
use crate::model::{Atom, EdgeType, Kind, Object, ReleaseKey, Selector, Status};

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
        self.ns_order.iter()
    }

    /// Every known kind, in order.
    pub fn kinds(&self) -> impl Iterator<Item = &Kind> {
        self.kind_counts.keys()
    }

    /// Nodes matching `filter`, in (namespace, kind, name) order.
    pub fn select<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = NodeIndex> + 'a {
        let namespaces: Vec<&Atom> = if filter.namespaces.is_empty() {
            self.ns_order.iter().collect()
        } else {
            let mut v: Vec<&Atom> = filter.namespaces.iter().collect();
            v.sort();
            v.dedup();
            v
        };
        namespaces.into_iter().flat_map(move |ns| {
            let kinds = self.by_ns.get(ns);
            let buckets: Vec<_> = match (kinds, filter.kinds.is_empty()) {
                (None, _) => Vec::new(),
                (Some(k), true) => k.values().collect(),
                (Some(k), false) => {
                    let mut wanted: Vec<&Kind> = filter.kinds.iter().collect();
                    wanted.sort();
                    wanted.dedup();
                    wanted.into_iter().filter_map(|kind| k.get(kind)).collect()
                }
            };
            buckets
                .into_iter()
                .flat_map(|b| b.values())
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
