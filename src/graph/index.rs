//! The secondary indexes of the graph that are not a simple map: label postings and the selector
//! index.

use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};
use petgraph::stable_graph::NodeIndex;
use rustc_hash::{FxBuildHasher, FxHashSet};
use smallvec::SmallVec;

use crate::model::{Anchor, Atom, Labels, Name};

/// A borrowed `(namespace, key, value)` key, hashing exactly like the owned tuple, so that lookups
/// need not clone (and reference-count) three atoms.
pub(crate) struct Key3<'a>(
    pub(crate) &'a Atom,
    pub(crate) &'a Atom,
    pub(crate) &'a Atom,
);

impl Hash for Key3<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
        self.1.hash(h);
        self.2.hash(h);
    }
}

impl Equivalent<(Atom, Atom, Atom)> for Key3<'_> {
    fn equivalent(&self, key: &(Atom, Atom, Atom)) -> bool {
        *self.0 == key.0 && *self.1 == key.1 && *self.2 == key.2
    }
}

/// A borrowed `(namespace, key)` key.
pub(crate) struct Key2<'a>(pub(crate) &'a Atom, pub(crate) &'a Atom);

impl Hash for Key2<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
        self.1.hash(h);
    }
}

impl Equivalent<(Atom, Atom)> for Key2<'_> {
    fn equivalent(&self, key: &(Atom, Atom)) -> bool {
        *self.0 == key.0 && *self.1 == key.1
    }
}

/// A borrowed `(kind name, namespace, name)` key of the any-group reference registry, hashing
/// exactly like the owned `(Name, Atom, Name)`.
pub(crate) struct AnyKey<'a>(pub(crate) &'a str, pub(crate) &'a Atom, pub(crate) &'a str);

impl Hash for AnyKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
        self.1.hash(h);
        self.2.hash(h);
    }
}

impl Equivalent<(Name, Atom, Name)> for AnyKey<'_> {
    fn equivalent(&self, key: &(Name, Atom, Name)) -> bool {
        self.0 == key.0 && *self.1 == key.1 && self.2 == key.2
    }
}

/// Nodes per label key/value; small sets stay inline, large ones become hash sets so that removal
/// stays O(1) for labels shared by thousands of Pods.
#[derive(Debug, Clone)]
pub(crate) enum Posting {
    Small(SmallVec<[NodeIndex; 4]>),
    Large(Box<FxHashSet<NodeIndex>>),
}

const POSTING_SMALL_MAX: usize = 16;

impl Posting {
    fn insert(&mut self, n: NodeIndex) {
        match self {
            Posting::Small(v) if v.len() < POSTING_SMALL_MAX => v.push(n),
            Posting::Small(v) => {
                let mut set: FxHashSet<NodeIndex> = v.iter().copied().collect();
                set.insert(n);
                *self = Posting::Large(Box::new(set));
            }
            Posting::Large(s) => {
                s.insert(n);
            }
        }
    }

    /// Removes `n`; returns whether the posting is now empty.
    fn remove(&mut self, n: NodeIndex) -> bool {
        match self {
            Posting::Small(v) => {
                if let Some(i) = v.iter().position(|&x| x == n) {
                    v.swap_remove(i);
                }
                v.is_empty()
            }
            Posting::Large(s) => {
                s.remove(&n);
                s.is_empty()
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Posting::Small(v) => v.len(),
            Posting::Large(s) => s.len(),
        }
    }

    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = NodeIndex> + '_> {
        match self {
            Posting::Small(v) => Box::new(v.iter().copied()),
            Posting::Large(s) => Box::new(s.iter().copied()),
        }
    }
}

/// (namespace, label key, label value) → the objects carrying that label.
#[derive(Debug, Default)]
pub(crate) struct LabelIndex {
    map: HashMap<(Atom, Atom, Atom), Posting, FxBuildHasher>,
}

impl LabelIndex {
    pub(crate) fn add(&mut self, ns: &Atom, labels: &Labels, n: NodeIndex) {
        for (k, v) in labels.iter() {
            self.map
                .entry((ns.clone(), k.clone(), v.clone()))
                .or_insert_with(|| Posting::Small(SmallVec::new()))
                .insert(n);
        }
    }

    pub(crate) fn remove(&mut self, ns: &Atom, labels: &Labels, n: NodeIndex) {
        for (k, v) in labels.iter() {
            let key = Key3(ns, k, v);
            if let Some(p) = self.map.get_mut(&key)
                && p.remove(n)
            {
                self.map.remove(&key);
            }
        }
    }

    pub(crate) fn get(&self, ns: &Atom, k: &Atom, v: &Atom) -> Option<&Posting> {
        self.map.get(&Key3(ns, k, v))
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

type Holders = SmallVec<[NodeIndex; 2]>;

/// Selector holders (Services, PodDisruptionBudgets, NetworkPolicies) indexed by their anchor,
/// so that a Pod finds the selectors that may select it from its own labels.
#[derive(Debug, Default)]
pub(crate) struct SelectorIndex {
    by_pair: HashMap<(Atom, Atom, Atom), Holders, FxBuildHasher>,
    by_key: HashMap<(Atom, Atom), Holders, FxBuildHasher>,
    all: HashMap<Atom, Holders, FxBuildHasher>,
}

fn drop_holder<K: Hash + Eq, Q: Hash + Equivalent<K>>(
    map: &mut HashMap<K, Holders, FxBuildHasher>,
    key: &Q,
    n: NodeIndex,
) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|x| *x != n);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

impl SelectorIndex {
    pub(crate) fn add(&mut self, ns: &Atom, anchor: &Anchor, n: NodeIndex) {
        match anchor {
            Anchor::Pairs(k, vs) => {
                for v in vs {
                    self.by_pair
                        .entry((ns.clone(), k.clone(), v.clone()))
                        .or_default()
                        .push(n);
                }
            }
            Anchor::Key(k) => self
                .by_key
                .entry((ns.clone(), k.clone()))
                .or_default()
                .push(n),
            Anchor::All => self.all.entry(ns.clone()).or_default().push(n),
        }
    }

    pub(crate) fn remove(&mut self, ns: &Atom, anchor: &Anchor, n: NodeIndex) {
        match anchor {
            Anchor::Pairs(k, vs) => {
                for v in vs {
                    drop_holder(&mut self.by_pair, &Key3(ns, k, v), n);
                }
            }
            Anchor::Key(k) => drop_holder(&mut self.by_key, &Key2(ns, k), n),
            Anchor::All => drop_holder(&mut self.all, ns, n),
        }
    }

    /// Every holder whose anchor a Pod with `labels` in `ns` satisfies (a superset of the
    /// holders that select it), without duplicates.
    pub(crate) fn candidates(&self, ns: &Atom, labels: &Labels) -> SmallVec<[NodeIndex; 8]> {
        let mut out: SmallVec<[NodeIndex; 8]> = SmallVec::new();
        for (k, v) in labels.iter() {
            if let Some(h) = self.by_pair.get(&Key3(ns, k, v)) {
                out.extend_from_slice(h);
            }
            if let Some(h) = self.by_key.get(&Key2(ns, k)) {
                out.extend_from_slice(h);
            }
        }
        if let Some(h) = self.all.get(ns) {
            out.extend_from_slice(h);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.by_pair.values().map(SmallVec::len).sum::<usize>()
            + self.by_key.values().map(SmallVec::len).sum::<usize>()
            + self.all.values().map(SmallVec::len).sum::<usize>()
    }
}
