//! The graph store and its single-writer operations: upsert, delete and "full list complete".
//!
//! Every edge is derived from exactly one *declarer*: the object whose fields state it (a Pod for
//! `uses-configmap`, the dependent for `owns`, the EndpointSlice for `endpoints`), or, for
//! `selects`, the pair of a selector holder and a Pod. An upsert diffs the declarer's old and new
//! references; a reference whose target is missing waits in an "unresolved" index keyed by what it
//! names, and is connected when that target arrives. Deleting a target puts the references that
//! pointed at it back into that index. Together these make the graph a function of the set of
//! objects, whatever the order they arrived in (the property test in `tests/` checks exactly that).

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{HashMap, HashTable};
use petgraph::Direction;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use rustc_hash::{FxBuildHasher, FxHashSet};
use smallvec::SmallVec;

use super::index::{AnyKey, Bucket, LabelIndex, SelectorIndex};
use crate::model::{
    Atom, Dir, EdgeType, HelmRecord, Kind, Labels, Name, Object, ObjectKey, Ref, ReleaseInfo,
    ReleaseKey, Spec, Target, Uid,
};
use crate::relations::{self, claim_matches, claim_prefix_of};

/// The weight of an edge: its type, and how many of the declarer's references produce it (an
/// EndpointSlice may name the same Pod by uid and by name; the edge lives while either does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeData {
    /// The edge type.
    pub ty: EdgeType,
    refs: u16,
}

/// A change for the writer to apply.
#[derive(Clone, Debug)]
pub enum Change {
    /// Create or replace an object (matched by uid, else by kind/namespace/name).
    Upsert(Arc<Object>),
    /// Delete an object. With a uid, only the object with that uid is deleted (a delete of an
    /// older incarnation does not remove a re-created object); without, the object of that name.
    Delete {
        /// Kind, namespace and name.
        key: ObjectKey,
        /// The uid of the deleted incarnation, when known.
        uid: Option<Uid>,
    },
    /// A full list of the scope begins: every object of the scope upserted until the matching
    /// `ListComplete` is recorded as present.
    ListStart(ListScope),
    /// The full list of the scope is complete: objects of the scope that it did not contain are
    /// deleted. This is how deletions missed while not watching disappear.
    ListComplete(ListScope),
}

/// The objects a full list covers: one kind or every kind (a source that lists everything it
/// has at once, like a manifest folder), in one namespace or in all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListScope {
    /// The kind listed; `None` for every kind (synthetic Helm releases excepted).
    pub kind: Option<Kind>,
    /// The namespace listed, or `None` for all namespaces (and cluster-scoped kinds).
    pub namespace: Option<Atom>,
}

impl ListScope {
    /// Every object of one kind.
    pub fn kind(kind: Kind) -> ListScope {
        ListScope {
            kind: Some(kind),
            namespace: None,
        }
    }

    /// Every object the source has.
    pub fn everything() -> ListScope {
        ListScope {
            kind: None,
            namespace: None,
        }
    }
}

/// A full list in progress: its namespace (`None` for all) and the uids it has contained so far.
type ListInProgress = (Option<Atom>, FxHashSet<Uid>);

/// A change to the source objects of the graph, in the order applied: what persistence writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// An object was created or changed; this is its state.
    Upserted(Arc<Object>),
    /// The object with this uid is gone.
    Removed(Uid),
}

/// A graph as sorted values: nodes by uid, and edges as (from uid, to uid, type).
pub type Canonical = (Vec<Arc<Object>>, Vec<(Uid, Uid, EdgeType)>);

/// Who waits for a missing target, and for which edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    node: NodeIndex,
    edge: EdgeType,
    dir: Dir,
}

type Waiters = SmallVec<[Waiter; 1]>;

/// A Helm release's bookkeeping.
#[derive(Debug)]
pub(super) struct ReleaseEntry {
    pub(super) node: NodeIndex,
    members: u32,
    /// Release records (Helm's release Secrets) of this release.
    records: SmallVec<[NodeIndex; 2]>,
}

/// The graph: objects as nodes, typed edges, and the indexes that keep every operation local.
pub struct Graph {
    pub(super) g: StableGraph<Arc<Object>, EdgeData>,
    hasher: FxBuildHasher,
    /// uid → node. A bare table of node indexes hashed by the node's uid: 4 bytes per entry.
    uids: HashTable<NodeIndex>,
    /// namespace → kind → name → node: identity lookups and every ordered listing.
    pub(super) by_ns: HashMap<Atom, BTreeMap<Kind, Bucket>, FxBuildHasher>,
    /// The namespaces of `by_ns`, in order, each with its number of objects other than
    /// synthetic releases (what `/api/v2/namespaces` reports: kept here, it is one pass over
    /// the namespaces instead of one over every kind of each).
    pub(super) ns_order: BTreeMap<Atom, usize>,
    pub(super) kind_counts: BTreeMap<Kind, usize>,
    pub(super) labels: LabelIndex,
    selectors: SelectorIndex,
    unresolved: HashMap<ObjectKey, Waiters, FxBuildHasher>,
    unresolved_uid: HashMap<Uid, Waiters, FxBuildHasher>,
    /// References by kind name in any group (HPA scale targets): kept while the declarer exists,
    /// because each new object of a matching kind must be connected, whatever its group.
    any_group: HashMap<(Name, Atom, Name), Waiters, FxBuildHasher>,
    /// StatefulSet claim prefixes, kept while the StatefulSet exists.
    claim_patterns: HashMap<(Atom, Name), SmallVec<[NodeIndex; 1]>, FxBuildHasher>,
    pub(super) releases: HashMap<ReleaseKey, ReleaseEntry, FxBuildHasher>,
    lists: HashMap<Option<Kind>, Vec<ListInProgress>, FxBuildHasher>,
    /// Effects recorded since the last `drain_effects`, when recording is on.
    journal: Option<Vec<Effect>>,
    generation: u64,
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph {
            g: StableGraph::default(),
            hasher: FxBuildHasher,
            uids: HashTable::new(),
            by_ns: HashMap::default(),
            ns_order: BTreeMap::new(),
            kind_counts: BTreeMap::new(),
            labels: LabelIndex::default(),
            selectors: SelectorIndex::default(),
            unresolved: HashMap::default(),
            unresolved_uid: HashMap::default(),
            any_group: HashMap::default(),
            claim_patterns: HashMap::default(),
            releases: HashMap::default(),
            lists: HashMap::default(),
            journal: None,
            generation: 0,
        }
    }

    /// Makes room for `additional` more objects (and as many edges) at once: a graph built from
    /// a known number of objects (a restored snapshot) then never regrows its node and edge
    /// storage or its uid table on the way. Regrowing the uid table rehashes every entry, and
    /// each rehash reads the uid through its node: a cache miss or two per entry, at every
    /// doubling.
    pub fn reserve(&mut self, additional: usize) {
        self.g.reserve_nodes(additional);
        self.g.reserve_edges(additional);
        let (g, hasher) = (&self.g, &self.hasher);
        self.uids
            .reserve(additional, |&ix| hasher.hash_one(&g[ix].uid));
    }

    /// A counter that grows with every change that modified the graph.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of nodes, synthetic release nodes included.
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.g.edge_count()
    }

    // ----- lookups ---------------------------------------------------------------------------

    /// The node of the object with this uid.
    pub fn find_uid(&self, uid: &Uid) -> Option<NodeIndex> {
        let h = self.hasher.hash_one(uid);
        self.uids.find(h, |&ix| self.g[ix].uid == *uid).copied()
    }

    /// The node of the object with this kind, namespace and name.
    pub fn find_key(&self, kind: &Kind, namespace: &Atom, name: &str) -> Option<NodeIndex> {
        self.by_ns.get(namespace)?.get(kind)?.get(name)
    }

    /// The object of a node.
    pub fn object(&self, n: NodeIndex) -> &Arc<Object> {
        &self.g[n]
    }

    /// The objects of `kind` in `namespace`, by name.
    pub(crate) fn bucket(&self, namespace: &Atom, kind: &Kind) -> Option<&Bucket> {
        self.by_ns.get(namespace)?.get(kind)
    }

    // ----- changes ---------------------------------------------------------------------------

    /// Starts recording the effects of every change (for persistence).
    pub fn record_effects(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The effects recorded since the last call, in order. The journal keeps its capacity, so
    /// recording costs no allocation per change.
    pub fn drain_effects(&mut self) -> impl Iterator<Item = Effect> + '_ {
        self.journal.iter_mut().flat_map(|j| j.drain(..))
    }

    fn effect(&mut self, e: Effect) {
        if let Some(j) = &mut self.journal {
            j.push(e);
        }
    }

    /// Applies one change; returns whether the graph changed. An upsert of exactly the object
    /// already there changes nothing (a relist after a restart costs no writes).
    pub fn apply(&mut self, change: Change) -> bool {
        let changed = match change {
            Change::Upsert(obj) => {
                self.note_listed(&obj);
                self.upsert(&obj)
            }
            Change::Delete { key, uid } => self.delete(&key, uid.as_ref()),
            Change::ListStart(scope) => {
                if scope.kind == Some(Kind::HelmRelease) {
                    return false;
                }
                let lists = self.lists.entry(scope.kind).or_default();
                lists.retain(|(ns, _)| *ns != scope.namespace);
                lists.push((scope.namespace, FxHashSet::default()));
                false
            }
            Change::ListComplete(scope) => {
                let deletes = self.finish_list(&scope);
                let mut changed = false;
                for d in deletes {
                    changed |= self.apply(d);
                }
                // Each delete counted itself.
                return changed;
            }
        };
        if changed {
            self.generation += 1;
        }
        changed
    }

    /// Records `obj` as present in any full list of its kind in progress.
    fn note_listed(&mut self, obj: &Object) {
        if self.lists.is_empty() {
            return;
        }
        for key in [Some(obj.kind.clone()), None] {
            if let Some(lists) = self.lists.get_mut(&key) {
                for (ns, seen) in lists {
                    if ns.as_ref().is_none_or(|ns| *ns == obj.namespace) {
                        seen.insert(obj.uid.clone());
                    }
                }
            }
        }
    }

    /// Ends a full list and returns the deletions that reconcile the graph with it: one
    /// `Change::Delete` (with its uid) for every object of the scope the list did not contain.
    /// A completion without a start returns nothing: a list that was never observed cannot prove
    /// anything absent. The writer applies these under its usual time budget, so that
    /// reconciling a large kind never holds the write lock for long.
    pub fn finish_list(&mut self, scope: &ListScope) -> Vec<Change> {
        let Some(lists) = self.lists.get_mut(&scope.kind) else {
            return Vec::new();
        };
        let Some(pos) = lists.iter().position(|(ns, _)| *ns == scope.namespace) else {
            return Vec::new();
        };
        let (_, seen) = lists.swap_remove(pos);
        if lists.is_empty() {
            self.lists.remove(&scope.kind);
        }
        let namespaces: Vec<Atom> = match &scope.namespace {
            Some(ns) => vec![ns.clone()],
            None => self.ns_order.keys().cloned().collect(),
        };
        let mut deletes = Vec::new();
        for ns in &namespaces {
            let Some(kinds) = self.by_ns.get(ns) else {
                continue;
            };
            let buckets = kinds.iter().filter(|(k, _)| {
                **k != Kind::HelmRelease && scope.kind.as_ref().is_none_or(|want| *want == **k)
            });
            for (_, bucket) in buckets {
                deletes.extend(
                    bucket
                        .values()
                        .map(|n| &self.g[n])
                        .filter(|o| !seen.contains(&o.uid))
                        .map(|o| Change::Delete {
                            key: o.key(),
                            uid: Some(o.uid.clone()),
                        }),
                );
            }
        }
        deletes
    }

    fn delete(&mut self, key: &ObjectKey, uid: Option<&Uid>) -> bool {
        if key.kind == Kind::HelmRelease {
            return false;
        }
        let Some(n) = self.find_key(&key.kind, &key.namespace, &key.name) else {
            return false;
        };
        if uid.is_some_and(|u| *u != self.g[n].uid) {
            return false;
        }
        self.remove(n);
        true
    }

    fn upsert(&mut self, obj: &Arc<Object>) -> bool {
        let by_uid = self.find_uid(&obj.uid);
        let by_key = self.find_key(&obj.kind, &obj.namespace, &obj.name);
        match (by_uid, by_key) {
            (Some(a), Some(b)) if a == b => {
                if *self.g[a] == **obj {
                    return false;
                }
                self.update(a, obj);
            }
            (a, b) => {
                // A new object, a re-created one (same name, new uid), or a uid now under another
                // name: whatever was there under either identity is gone.
                for n in [a, b].into_iter().flatten() {
                    if self.g.contains_node(n) {
                        self.remove(n);
                    }
                }
                self.insert(obj);
            }
        }
        self.effect(Effect::Upserted(obj.clone()));
        true
    }

    fn insert(&mut self, obj: &Arc<Object>) -> NodeIndex {
        let n = self.g.add_node(obj.clone());
        self.index_identity(n);
        self.labels.add(&obj.namespace, &obj.labels, n);
        for r in relations::refs(obj) {
            self.connect(n, &r);
        }
        if let Some(sel) = obj.pod_selector() {
            self.selectors.add(&obj.namespace, &sel.anchor(), n);
            let pods = self.pods_selected_by(n);
            for p in pods {
                self.add_edge(n, p, EdgeType::Selects);
            }
        }
        if obj.kind == Kind::Pod {
            for h in self.selectors_of_pod(n) {
                self.add_edge(h, n, EdgeType::Selects);
            }
        }
        self.resolve_waiters(n);
        if let Some(record) = helm_record(obj) {
            let key = ReleaseKey {
                namespace: obj.namespace.clone(),
                name: record.release.clone(),
            };
            self.ensure_release(&key);
            if let Some(e) = self.releases.get_mut(&key) {
                e.records.push(n);
            }
            self.refresh_release(&key);
        }
        n
    }

    fn update(&mut self, n: NodeIndex, new: &Arc<Object>) {
        let old = std::mem::replace(&mut self.g[n], new.clone());
        if old.labels != new.labels {
            self.labels.remove(&old.namespace, &old.labels, n);
            self.labels.add(&new.namespace, &new.labels, n);
        }
        let (old_refs, new_refs) = (relations::refs(&old), relations::refs(new));
        if old_refs != new_refs {
            for r in old_refs.iter().filter(|r| !new_refs.contains(r)) {
                self.disconnect(n, r);
            }
            for r in new_refs.iter().filter(|r| !old_refs.contains(r)) {
                self.connect(n, r);
            }
        }
        if old.pod_selector() != new.pod_selector() {
            if let Some(sel) = old.pod_selector() {
                self.selectors.remove(&old.namespace, &sel.anchor(), n);
            }
            if let Some(sel) = new.pod_selector() {
                self.selectors.add(&new.namespace, &sel.anchor(), n);
            }
            let now: FxHashSet<NodeIndex> = self.pods_selected_by(n).into_iter().collect();
            let before = self.neighbors_by(n, Direction::Outgoing, EdgeType::Selects);
            for &p in before.iter().filter(|p| !now.contains(p)) {
                self.remove_edge(n, p, EdgeType::Selects);
            }
            let before: FxHashSet<NodeIndex> = before.into_iter().collect();
            for &p in now.iter().filter(|p| !before.contains(p)) {
                self.add_edge(n, p, EdgeType::Selects);
            }
        }
        if new.kind == Kind::Pod && old.labels != new.labels {
            let now = self.selectors_of_pod(n);
            let before = self.neighbors_by(n, Direction::Incoming, EdgeType::Selects);
            for &h in before.iter().filter(|h| !now.contains(h)) {
                self.remove_edge(h, n, EdgeType::Selects);
            }
            for &h in now.iter().filter(|h| !before.contains(h)) {
                self.add_edge(h, n, EdgeType::Selects);
            }
        }
        let (old_rec, new_rec) = (helm_record(&old), helm_record(new));
        if old_rec != new_rec {
            if let Some(r) = old_rec {
                self.drop_record(
                    n,
                    &ReleaseKey {
                        namespace: old.namespace.clone(),
                        name: r.release.clone(),
                    },
                );
            }
            if let Some(r) = new_rec {
                let key = ReleaseKey {
                    namespace: new.namespace.clone(),
                    name: r.release.clone(),
                };
                self.ensure_release(&key);
                if let Some(e) = self.releases.get_mut(&key) {
                    e.records.push(n);
                }
                self.refresh_release(&key);
            }
        }
    }

    /// Removes a node and everything that hangs on it, putting references that pointed at it
    /// back into the unresolved index.
    fn remove(&mut self, n: NodeIndex) {
        let obj = self.g[n].clone();
        self.effect(Effect::Removed(obj.uid.clone()));
        // References this object declared: forget the ones that were waiting or registered.
        for r in relations::refs(&obj) {
            match &r.target {
                Target::Named(_) | Target::Uid(_) => {
                    if self.resolve(&r.target).is_none() {
                        self.unwait(n, &r);
                    }
                }
                Target::NamedAnyGroup { .. } | Target::ClaimPattern { .. } | Target::Release(_) => {
                    self.disconnect(n, &r)
                }
            }
        }
        if let Some(sel) = obj.pod_selector() {
            self.selectors.remove(&obj.namespace, &sel.anchor(), n);
        }
        // References other objects declared towards this one go back to waiting.
        let mut declarers: SmallVec<[NodeIndex; 8]> = SmallVec::new();
        for e in self.g.edges_directed(n, Direction::Incoming) {
            if declared_by_source(e.weight().ty) && e.source() != n {
                declarers.push(e.source());
            }
        }
        for e in self.g.edges_directed(n, Direction::Outgoing) {
            if matches!(e.weight().ty, EdgeType::Owns | EdgeType::Endpoints) && e.target() != n {
                declarers.push(e.target());
            }
        }
        declarers.sort_unstable();
        declarers.dedup();
        for m in declarers {
            let declarer = self.g[m].clone();
            for r in relations::refs(&declarer) {
                let points_here = match &r.target {
                    Target::Named(key) => {
                        key.kind == obj.kind
                            && key.namespace == obj.namespace
                            && key.name == obj.name
                    }
                    Target::Uid(uid) => *uid == obj.uid,
                    _ => false,
                };
                if points_here {
                    self.wait(m, &r);
                }
            }
        }
        if let Some(record) = helm_record(&obj) {
            self.drop_record(
                n,
                &ReleaseKey {
                    namespace: obj.namespace.clone(),
                    name: record.release.clone(),
                },
            );
        }
        self.labels.remove(&obj.namespace, &obj.labels, n);
        self.unindex_identity(n);
        self.g.remove_node(n);
    }

    // ----- identity indexes ------------------------------------------------------------------

    fn index_identity(&mut self, n: NodeIndex) {
        let obj = &self.g[n];
        let h = self.hasher.hash_one(&obj.uid);
        let (g, hasher) = (&self.g, &self.hasher);
        self.uids
            .insert_unique(h, n, |&ix| hasher.hash_one(&g[ix].uid));
        let kinds = self.by_ns.entry(obj.namespace.clone()).or_insert_with(|| {
            self.ns_order.insert(obj.namespace.clone(), 0);
            BTreeMap::new()
        });
        let names = kinds.entry(obj.kind.clone()).or_default();
        let before = names.len();
        names.insert(obj.name.clone(), n);
        let added = names.len() - before;
        if obj.kind != Kind::HelmRelease
            && let Some(count) = self.ns_order.get_mut(&obj.namespace)
        {
            *count += added;
        }
        *self.kind_counts.entry(obj.kind.clone()).or_default() += 1;
    }

    fn unindex_identity(&mut self, n: NodeIndex) {
        let obj = self.g[n].clone();
        let h = self.hasher.hash_one(&obj.uid);
        if let Ok(entry) = self.uids.find_entry(h, |&ix| ix == n) {
            entry.remove();
        }
        if let Some(kinds) = self.by_ns.get_mut(&obj.namespace) {
            if let Some(names) = kinds.get_mut(&obj.kind) {
                let before = names.len();
                names.remove(obj.name.as_str());
                let removed = before - names.len();
                if names.is_empty() {
                    kinds.remove(&obj.kind);
                }
                if obj.kind != Kind::HelmRelease
                    && let Some(count) = self.ns_order.get_mut(&obj.namespace)
                {
                    *count -= removed;
                }
            }
            if kinds.is_empty() {
                self.by_ns.remove(&obj.namespace);
                self.ns_order.remove(&obj.namespace);
            }
        }
        if let Some(c) = self.kind_counts.get_mut(&obj.kind) {
            *c -= 1;
            if *c == 0 {
                self.kind_counts.remove(&obj.kind);
            }
        }
    }

    // ----- references ------------------------------------------------------------------------

    /// The existing target of a single-target reference.
    fn resolve(&self, target: &Target) -> Option<NodeIndex> {
        match target {
            Target::Named(key) => self.find_key(&key.kind, &key.namespace, &key.name),
            Target::Uid(uid) => self.find_uid(uid),
            _ => None,
        }
    }

    /// Establishes a reference declared by `n`: edges to what exists, waiting for what does not.
    fn connect(&mut self, n: NodeIndex, r: &Ref) {
        match &r.target {
            Target::Named(_) | Target::Uid(_) => match self.resolve(&r.target) {
                Some(t) => self.add_ref_edge(n, t, r.edge, r.dir),
                None => self.wait(n, r),
            },
            Target::NamedAnyGroup {
                kind,
                namespace,
                name,
            } => {
                self.any_group
                    .entry((Name::from(kind.as_str()), namespace.clone(), name.clone()))
                    .or_default()
                    .push(Waiter {
                        node: n,
                        edge: r.edge,
                        dir: r.dir,
                    });
                let targets: SmallVec<[NodeIndex; 1]> = self
                    .by_ns
                    .get(namespace)
                    .into_iter()
                    .flat_map(|kinds| kinds.iter())
                    .filter(|(k, _)| k.name() == kind.as_str())
                    .filter_map(|(_, names)| names.get(name))
                    .collect();
                for t in targets {
                    self.add_ref_edge(n, t, r.edge, r.dir);
                }
            }
            Target::ClaimPattern { namespace, prefix } => {
                self.claim_patterns
                    .entry((namespace.clone(), prefix.clone()))
                    .or_default()
                    .push(n);
                let claims: SmallVec<[NodeIndex; 4]> = self
                    .bucket(namespace, &Kind::PersistentVolumeClaim)
                    .into_iter()
                    .flat_map(|b| b.range_from(prefix))
                    .take_while(|(name, _)| name.starts_with(prefix.as_str()))
                    .filter(|(name, _)| claim_matches(prefix, name))
                    .map(|(_, ix)| ix)
                    .collect();
                for c in claims {
                    self.add_edge(n, c, EdgeType::Claims);
                }
            }
            Target::Release(key) => {
                let rn = self.ensure_release(key);
                if let Some(e) = self.releases.get_mut(key) {
                    e.members += 1;
                }
                self.add_edge(n, rn, EdgeType::MemberOf);
            }
        }
    }

    /// Withdraws a reference declared by `n` (the declarer stays).
    fn disconnect(&mut self, n: NodeIndex, r: &Ref) {
        match &r.target {
            Target::Named(_) | Target::Uid(_) => match self.resolve(&r.target) {
                Some(t) => self.remove_ref_edge(n, t, r.edge, r.dir),
                None => self.unwait(n, r),
            },
            Target::NamedAnyGroup {
                kind,
                namespace,
                name,
            } => {
                let key = AnyKey(kind, namespace, name);
                if let Some(ws) = self.any_group.get_mut(&key) {
                    ws.retain(|w| !(w.node == n && w.edge == r.edge && w.dir == r.dir));
                    if ws.is_empty() {
                        self.any_group.remove(&key);
                    }
                }
                let targets: SmallVec<[NodeIndex; 1]> = self
                    .g
                    .edges_directed(n, Direction::Outgoing)
                    .filter(|e| e.weight().ty == r.edge)
                    .filter(|e| {
                        let t = &self.g[e.target()];
                        t.kind.name() == kind.as_str()
                            && t.namespace == *namespace
                            && t.name == *name
                    })
                    .map(|e| e.target())
                    .collect();
                for t in targets {
                    self.remove_ref_edge(n, t, r.edge, r.dir);
                }
            }
            Target::ClaimPattern { namespace, prefix } => {
                let key = (namespace.clone(), prefix.clone());
                if let Some(v) = self.claim_patterns.get_mut(&key) {
                    v.retain(|x| *x != n);
                    if v.is_empty() {
                        self.claim_patterns.remove(&key);
                    }
                }
                let claims: SmallVec<[NodeIndex; 4]> = self
                    .g
                    .edges_directed(n, Direction::Outgoing)
                    .filter(|e| e.weight().ty == EdgeType::Claims)
                    .filter(|e| claim_matches(prefix, &self.g[e.target()].name))
                    .map(|e| e.target())
                    .collect();
                for c in claims {
                    self.remove_edge(n, c, EdgeType::Claims);
                }
            }
            Target::Release(key) => {
                let Some(rn) = self.releases.get(key).map(|e| e.node) else {
                    return;
                };
                self.remove_edge(n, rn, EdgeType::MemberOf);
                if let Some(e) = self.releases.get_mut(key) {
                    e.members = e.members.saturating_sub(1);
                }
                self.drop_release_if_unused(key);
            }
        }
    }

    fn wait(&mut self, n: NodeIndex, r: &Ref) {
        let w = Waiter {
            node: n,
            edge: r.edge,
            dir: r.dir,
        };
        match &r.target {
            Target::Named(key) => self.unresolved.entry(key.clone()).or_default().push(w),
            Target::Uid(uid) => self.unresolved_uid.entry(uid.clone()).or_default().push(w),
            _ => {}
        }
    }

    fn unwait(&mut self, n: NodeIndex, r: &Ref) {
        let keep = |w: &Waiter| !(w.node == n && w.edge == r.edge && w.dir == r.dir);
        match &r.target {
            Target::Named(key) => {
                if let Some(ws) = self.unresolved.get_mut(key) {
                    ws.retain(|w| keep(w));
                    if ws.is_empty() {
                        self.unresolved.remove(key);
                    }
                }
            }
            Target::Uid(uid) => {
                if let Some(ws) = self.unresolved_uid.get_mut(uid) {
                    ws.retain(|w| keep(w));
                    if ws.is_empty() {
                        self.unresolved_uid.remove(uid);
                    }
                }
            }
            _ => {}
        }
    }

    /// Connects everything that was waiting for the new node `n`.
    fn resolve_waiters(&mut self, n: NodeIndex) {
        let obj = self.g[n].clone();
        let key = obj.key();
        let mut found: Waiters = self.unresolved.remove(&key).unwrap_or_default();
        found.extend(self.unresolved_uid.remove(&obj.uid).unwrap_or_default());
        if let Some(ws) = self
            .any_group
            .get(&AnyKey(obj.kind.name(), &obj.namespace, &obj.name))
        {
            found.extend(ws.iter().copied());
        }
        for w in found {
            self.add_ref_edge(w.node, n, w.edge, w.dir);
        }
        if obj.kind == Kind::PersistentVolumeClaim
            && let Some(prefix) = claim_prefix_of(&obj.name)
            && let Some(sets) = self
                .claim_patterns
                .get(&(obj.namespace.clone(), Name::from(prefix)))
        {
            for s in sets.clone() {
                self.add_edge(s, n, EdgeType::Claims);
            }
        }
    }

    // ----- selectors -------------------------------------------------------------------------

    /// The Pods the selector holder `h` selects now.
    fn pods_selected_by(&self, h: NodeIndex) -> Vec<NodeIndex> {
        let holder = &self.g[h];
        let Some(sel) = holder.pod_selector() else {
            return Vec::new();
        };
        let ns = &holder.namespace;
        let is_selected = |p: &NodeIndex| {
            let pod = &self.g[*p];
            pod.kind == Kind::Pod && sel.matches(&pod.labels)
        };
        match sel.anchor() {
            crate::model::Anchor::Pairs(k, vs) => {
                let mut out: Vec<NodeIndex> = vs
                    .iter()
                    .filter_map(|v| self.labels.get(ns, &k, v))
                    .flat_map(|p| p.iter())
                    .filter(is_selected)
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            }
            _ => self
                .bucket(ns, &Kind::Pod)
                .into_iter()
                .flat_map(|b| b.values())
                .filter(is_selected)
                .collect(),
        }
    }

    /// The selector holders that select the Pod `p` now.
    fn selectors_of_pod(&self, p: NodeIndex) -> SmallVec<[NodeIndex; 8]> {
        let pod = &self.g[p];
        let mut c = self.selectors.candidates(&pod.namespace, &pod.labels);
        c.retain(|h| {
            self.g[*h]
                .pod_selector()
                .is_some_and(|s| s.matches(&pod.labels))
        });
        c
    }

    // ----- Helm releases ---------------------------------------------------------------------

    fn ensure_release(&mut self, key: &ReleaseKey) -> NodeIndex {
        if let Some(e) = self.releases.get(key) {
            return e.node;
        }
        let obj = release_object(key, None, None);
        let n = self.g.add_node(Arc::new(obj));
        self.index_identity(n);
        self.releases.insert(
            key.clone(),
            ReleaseEntry {
                node: n,
                members: 0,
                records: SmallVec::new(),
            },
        );
        n
    }

    fn drop_record(&mut self, record: NodeIndex, key: &ReleaseKey) {
        if let Some(e) = self.releases.get_mut(key) {
            e.records.retain(|r| *r != record);
        }
        self.refresh_release(key);
        self.drop_release_if_unused(key);
    }

    /// Recomputes a release node's status from its newest release record.
    fn refresh_release(&mut self, key: &ReleaseKey) {
        let Some(e) = self.releases.get(key) else {
            return;
        };
        let newest = e
            .records
            .iter()
            .map(|&r| (&self.g[r], helm_record(&self.g[r])))
            .filter_map(|(o, rec)| Some((rec?, o)))
            .max_by(|(a, ao), (b, bo)| a.version.cmp(&b.version).then_with(|| ao.uid.cmp(&bo.uid)));
        let obj = release_object(
            key,
            newest.map(|(r, _)| r),
            newest.and_then(|(_, o)| o.created),
        );
        let node = e.node;
        self.g[node] = Arc::new(obj);
    }

    fn drop_release_if_unused(&mut self, key: &ReleaseKey) {
        let Some(e) = self.releases.get(key) else {
            return;
        };
        if e.members == 0 && e.records.is_empty() {
            let n = e.node;
            self.releases.remove(key);
            self.unindex_identity(n);
            self.g.remove_node(n);
        }
    }

    // ----- edges -----------------------------------------------------------------------------

    fn add_ref_edge(&mut self, declarer: NodeIndex, target: NodeIndex, ty: EdgeType, dir: Dir) {
        match dir {
            Dir::Out => self.add_edge(declarer, target, ty),
            Dir::In => self.add_edge(target, declarer, ty),
        }
    }

    fn remove_ref_edge(&mut self, declarer: NodeIndex, target: NodeIndex, ty: EdgeType, dir: Dir) {
        match dir {
            Dir::Out => self.remove_edge(declarer, target, ty),
            Dir::In => self.remove_edge(target, declarer, ty),
        }
    }

    /// Finds the edge `a --ty--> b`, walking whichever of a's outgoing or b's incoming lists ends
    /// first: one side of an edge is almost always small (a Pod's few references) even when the
    /// other is a hub (a StorageClass, a namespace's default ServiceAccount).
    fn find_edge(&self, a: NodeIndex, b: NodeIndex, ty: EdgeType) -> Option<EdgeIndex> {
        let mut out = self.g.edges_directed(a, Direction::Outgoing);
        let mut inc = self.g.edges_directed(b, Direction::Incoming);
        loop {
            match out.next() {
                Some(e) if e.target() == b && e.weight().ty == ty => return Some(e.id()),
                Some(_) => {}
                None => return None,
            }
            match inc.next() {
                Some(e) if e.source() == a && e.weight().ty == ty => return Some(e.id()),
                Some(_) => {}
                None => return None,
            }
        }
    }

    fn add_edge(&mut self, a: NodeIndex, b: NodeIndex, ty: EdgeType) {
        match self.find_edge(a, b, ty) {
            Some(e) => self.g[e].refs = self.g[e].refs.saturating_add(1),
            None => {
                self.g.add_edge(a, b, EdgeData { ty, refs: 1 });
            }
        }
    }

    fn remove_edge(&mut self, a: NodeIndex, b: NodeIndex, ty: EdgeType) {
        if let Some(e) = self.find_edge(a, b, ty) {
            if self.g[e].refs > 1 {
                self.g[e].refs -= 1;
            } else {
                self.g.remove_edge(e);
            }
        }
    }

    fn neighbors_by(&self, n: NodeIndex, dir: Direction, ty: EdgeType) -> SmallVec<[NodeIndex; 8]> {
        self.g
            .edges_directed(n, dir)
            .filter(|e| e.weight().ty == ty)
            .map(|e| match dir {
                Direction::Outgoing => e.target(),
                Direction::Incoming => e.source(),
            })
            .collect()
    }

    // ----- verification ----------------------------------------------------------------------

    /// Every waiting reference, unordered.
    pub(super) fn dangling_refs(&self) -> Vec<(NodeIndex, EdgeType, super::query::Dangling)> {
        use super::query::Dangling;
        let named = self.unresolved.iter().flat_map(|(k, ws)| {
            ws.iter()
                .map(move |w| (w.node, w.edge, Dangling::Named(k.clone())))
        });
        let by_uid = self.unresolved_uid.iter().flat_map(|(u, ws)| {
            ws.iter()
                .map(move |w| (w.node, w.edge, Dangling::Uid(u.clone())))
        });
        named.chain(by_uid).collect()
    }

    /// Checks that every index agrees with the nodes and edges, and that every derived edge is
    /// exactly what the rules give. Expensive (it recomputes everything): for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected = Graph::new();
        for n in self.g.node_indices() {
            if self.g[n].kind != Kind::HelmRelease {
                expected.apply(Change::Upsert(self.g[n].clone()));
            }
        }
        if self.canonical() != expected.canonical() {
            return Err("graph differs from the graph rebuilt from its own objects".into());
        }
        for n in self.g.node_indices() {
            let o = &self.g[n];
            if self.find_uid(&o.uid) != Some(n) {
                return Err(format!("uid index misses {}", o.key()));
            }
            if self.find_key(&o.kind, &o.namespace, &o.name) != Some(n) {
                return Err(format!("key index misses {}", o.key()));
            }
            for (k, v) in o.labels.iter() {
                if !self
                    .labels
                    .get(&o.namespace, k, v)
                    .is_some_and(|p| p.iter().any(|x| x == n))
                {
                    return Err(format!("label index misses {} {k}={v}", o.key()));
                }
            }
        }
        let indexed: usize = self
            .by_ns
            .values()
            .flat_map(|k| k.values())
            .map(Bucket::len)
            .sum();
        if indexed != self.g.node_count() || self.uids.len() != self.g.node_count() {
            return Err("identity indexes hold stale entries".into());
        }
        let mut counted: BTreeMap<&Atom, usize> = self.by_ns.keys().map(|ns| (ns, 0)).collect();
        for n in self.g.node_indices() {
            let o = &self.g[n];
            if o.kind != Kind::HelmRelease {
                *counted.entry(&o.namespace).or_default() += 1;
            }
        }
        if !counted
            .into_iter()
            .eq(self.ns_order.iter().map(|(ns, c)| (ns, *c)))
        {
            return Err("namespace counts differ from the objects".into());
        }
        for (key, ws) in &self.unresolved {
            if self
                .find_key(&key.kind, &key.namespace, &key.name)
                .is_some()
            {
                return Err(format!("{key} exists but references to it still wait"));
            }
            if ws.iter().any(|w| !self.g.contains_node(w.node)) {
                return Err(format!("a deleted object still waits for {key}"));
            }
        }
        for (uid, ws) in &self.unresolved_uid {
            if self.find_uid(uid).is_some() || ws.iter().any(|w| !self.g.contains_node(w.node)) {
                return Err(format!("stale uid waiters for {uid}"));
            }
        }
        if self.selectors.len()
            < self
                .g
                .node_indices()
                .filter(|&n| self.g[n].pod_selector().is_some())
                .count()
        {
            return Err("selector index misses a holder".into());
        }
        Ok(())
    }

    /// The graph as sorted values: nodes by uid and edges by (from uid, to uid, type). Two graphs
    /// are the same graph exactly when their canonical forms are equal.
    pub fn canonical(&self) -> Canonical {
        let mut nodes: Vec<Arc<Object>> =
            self.g.node_indices().map(|n| self.g[n].clone()).collect();
        nodes.sort_by(|a, b| a.uid.cmp(&b.uid));
        let mut edges: Vec<(Uid, Uid, EdgeType)> = self
            .g
            .edge_references()
            .map(|e| {
                (
                    self.g[e.source()].uid.clone(),
                    self.g[e.target()].uid.clone(),
                    e.weight().ty,
                )
            })
            .collect();
        edges.sort();
        (nodes, edges)
    }
}

/// Whether an edge of this type is declared by its source (as opposed to its target for `owns`
/// and `endpoints`, or by nobody for `selects`, whose edges are recomputed from labels, and
/// `claims` and `scales`, whose registrations outlive their targets).
fn declared_by_source(ty: EdgeType) -> bool {
    !matches!(
        ty,
        EdgeType::Owns
            | EdgeType::Endpoints
            | EdgeType::Selects
            | EdgeType::Claims
            | EdgeType::Scales
            | EdgeType::MemberOf
    )
}

fn helm_record(obj: &Object) -> Option<&HelmRecord> {
    match &obj.spec {
        Spec::Secret(s) => s.helm_record.as_ref(),
        _ => None,
    }
}

/// The synthetic node of a release, from its newest record.
fn release_object(
    key: &ReleaseKey,
    newest: Option<&HelmRecord>,
    created: Option<crate::model::Time>,
) -> Object {
    let (status, message) = relations::release_status(newest);
    Object {
        uid: Uid::synthetic(&["helm.sh", "HelmRelease", &key.namespace, &key.name]),
        kind: Kind::HelmRelease,
        api_version: Atom::new(Kind::HelmRelease.preferred_api_version()),
        namespace: key.namespace.clone(),
        name: Name::from(key.name.as_str()),
        resource_version: Default::default(),
        created,
        deleted: None,
        labels: Labels::default(),
        annotations: Box::default(),
        owners: Box::default(),
        status,
        message: Atom::new(&message),
        release: None,
        spec: Spec::Release(Box::new(ReleaseInfo {
            revision: newest.map_or(0, |r| r.version),
            record_status: newest.map(|r| r.status.clone()),
        })),
    }
}
