//! The secondary indexes of the graph that are not a simple map: label postings and the selector
//! index.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Bound;

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

/// The nodes carrying one label key/value in one namespace. Most label values are carried by
/// one object (pod-template hashes, StatefulSet pod names), so that case stays inline; shared
/// values grow into a vector, and into a hash set once large, so that removal stays O(1) for
/// labels shared by thousands of Pods. 16 bytes inline.
#[derive(Debug, Clone)]
pub(crate) enum Posting {
    One(NodeIndex),
    #[allow(
        clippy::box_collection,
        reason = "a boxed Vec keeps the posting 16 bytes; a bare Vec would make every posting 24"
    )]
    Few(Box<Vec<NodeIndex>>),
    Many(Box<FxHashSet<NodeIndex>>),
}

const POSTING_FEW_MAX: usize = 16;

impl Posting {
    fn insert(&mut self, n: NodeIndex) {
        match self {
            Posting::One(a) => *self = Posting::Few(Box::new(vec![*a, n])),
            Posting::Few(v) if v.len() < POSTING_FEW_MAX => v.push(n),
            Posting::Few(v) => {
                let mut set: FxHashSet<NodeIndex> = v.iter().copied().collect();
                set.insert(n);
                *self = Posting::Many(Box::new(set));
            }
            Posting::Many(s) => {
                s.insert(n);
            }
        }
    }

    /// Removes `n`; returns whether the posting is now empty.
    fn remove(&mut self, n: NodeIndex) -> bool {
        match self {
            Posting::One(a) => *a == n,
            Posting::Few(v) => {
                if let Some(i) = v.iter().position(|&x| x == n) {
                    v.swap_remove(i);
                }
                if let [only] = v.as_slice() {
                    *self = Posting::One(*only);
                }
                false
            }
            Posting::Many(s) => {
                s.remove(&n);
                if s.len() <= POSTING_FEW_MAX / 2 {
                    *self = Posting::Few(Box::new(s.iter().copied().collect()));
                }
                false
            }
        }
    }

    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = NodeIndex> + '_> {
        match self {
            Posting::One(a) => Box::new(std::iter::once(*a)),
            Posting::Few(v) => Box::new(v.iter().copied()),
            Posting::Many(s) => Box::new(s.iter().copied()),
        }
    }
}

/// The objects of one (namespace, kind) by name, in name order. Most buckets hold a handful of
/// objects (a namespace's one ServiceAccount, its few ConfigMaps): those are a sorted vector,
/// which costs a fraction of a B-tree leaf; a bucket that grows past [`BUCKET_SMALL_MAX`] becomes
/// a B-tree.
#[derive(Debug)]
pub(crate) enum Bucket {
    Small(Vec<(Name, NodeIndex)>),
    Large(BTreeMap<Name, NodeIndex>),
}

const BUCKET_SMALL_MAX: usize = 32;

impl Default for Bucket {
    fn default() -> Self {
        Bucket::Small(Vec::new())
    }
}

impl Bucket {
    pub(crate) fn get(&self, name: &str) -> Option<NodeIndex> {
        match self {
            Bucket::Small(v) => v
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
                .ok()
                .map(|i| v[i].1),
            Bucket::Large(m) => m.get(name).copied(),
        }
    }

    pub(crate) fn insert(&mut self, name: Name, n: NodeIndex) {
        match self {
            Bucket::Small(v) => match v.binary_search_by(|(x, _)| x.as_str().cmp(&name)) {
                Ok(i) => v[i].1 = n,
                Err(_) if v.len() >= BUCKET_SMALL_MAX => {
                    let mut m: BTreeMap<Name, NodeIndex> = std::mem::take(v).into_iter().collect();
                    m.insert(name, n);
                    *self = Bucket::Large(m);
                }
                Err(i) => v.insert(i, (name, n)),
            },
            Bucket::Large(m) => {
                m.insert(name, n);
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        match self {
            Bucket::Small(v) => {
                if let Ok(i) = v.binary_search_by(|(x, _)| x.as_str().cmp(name)) {
                    v.remove(i);
                }
            }
            Bucket::Large(m) => {
                m.remove(name);
                if m.len() <= BUCKET_SMALL_MAX / 2 {
                    *self = Bucket::Small(std::mem::take(m).into_iter().collect());
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Bucket::Small(v) => v.len(),
            Bucket::Large(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries with a name at or after `from`, in name order.
    pub(crate) fn range_from<'a>(&'a self, from: &str) -> BucketIter<'a> {
        match self {
            Bucket::Small(v) => {
                let start = v.partition_point(|(n, _)| n.as_str() < from);
                BucketIter::Small(v[start..].iter())
            }
            Bucket::Large(m) => {
                BucketIter::Large(m.range::<str, _>((Bound::Included(from), Bound::Unbounded)))
            }
        }
    }

    /// Entries with a name strictly after `after`, in name order.
    pub(crate) fn range_after<'a>(&'a self, after: &str) -> BucketIter<'a> {
        match self {
            Bucket::Small(v) => {
                let start = v.partition_point(|(n, _)| n.as_str() <= after);
                BucketIter::Small(v[start..].iter())
            }
            Bucket::Large(m) => {
                BucketIter::Large(m.range::<str, _>((Bound::Excluded(after), Bound::Unbounded)))
            }
        }
    }

    /// Every entry, in name order.
    pub(crate) fn iter(&self) -> BucketIter<'_> {
        match self {
            Bucket::Small(v) => BucketIter::Small(v.iter()),
            Bucket::Large(m) => BucketIter::Large(m.range::<str, _>(..)),
        }
    }

    /// Every node, in name order.
    pub(crate) fn values(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.iter().map(|(_, n)| n)
    }
}

/// Iterator over a [`Bucket`].
pub(crate) enum BucketIter<'a> {
    Small(std::slice::Iter<'a, (Name, NodeIndex)>),
    Large(std::collections::btree_map::Range<'a, Name, NodeIndex>),
}

impl<'a> Iterator for BucketIter<'a> {
    type Item = (&'a Name, NodeIndex);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            BucketIter::Small(i) => i.next().map(|(k, v)| (k, *v)),
            BucketIter::Large(i) => i.next().map(|(k, v)| (k, *v)),
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
            // Looked up by reference first: most pairs are indexed already, and cloning the key
            // for `entry` costs three atomic increments (and decrements when it is dropped).
            match self.map.get_mut(&Key3(ns, k, v)) {
                Some(p) => p.insert(n),
                None => {
                    self.map
                        .insert((ns.clone(), k.clone(), v.clone()), Posting::One(n));
                }
            }
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

    /// The values of label `key` in `namespace` (or any), unsorted, possibly repeated.
    pub(crate) fn values_of(&self, key: &str, namespace: Option<&Atom>) -> Vec<Atom> {
        self.map
            .keys()
            .filter(|(ns, k, _)| k.as_str() == key && namespace.is_none_or(|n| n == ns))
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    pub(crate) fn get(&self, ns: &Atom, k: &Atom, v: &Atom) -> Option<&Posting> {
        self.map.get(&Key3(ns, k, v))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(i: u32) -> NodeIndex {
        NodeIndex::new(i as usize)
    }

    #[test]
    fn bucket_stays_sorted_across_small_and_large_forms() {
        let mut b = Bucket::default();
        // Insert in a scrambled order, past the small limit, then remove back below half of it.
        let names: Vec<String> = (0..100u32)
            .map(|i| format!("n{:03}", (i * 37) % 100))
            .collect();
        for (i, n) in names.iter().enumerate() {
            b.insert(Name::from(n.as_str()), ix(i as u32));
            let listed: Vec<&str> = b.iter().map(|(k, _)| k.as_str()).collect();
            assert!(
                listed.windows(2).all(|w| w[0] < w[1]),
                "sorted after {i} inserts"
            );
        }
        assert!(matches!(b, Bucket::Large(_)));
        assert_eq!(b.len(), 100);
        assert_eq!(b.get("n037"), Some(ix(1)));
        let from: Vec<&str> = b.range_from("n095").map(|(k, _)| k.as_str()).collect();
        assert_eq!(from, ["n095", "n096", "n097", "n098", "n099"]);
        let after: Vec<&str> = b.range_after("n095").map(|(k, _)| k.as_str()).collect();
        assert_eq!(after, ["n096", "n097", "n098", "n099"]);
        for n in &names[..90] {
            b.remove(n);
        }
        assert!(matches!(b, Bucket::Small(_)));
        assert_eq!(b.len(), 10);
        let from: Vec<&str> = b.range_from("n05").map(|(k, _)| k.as_str()).collect();
        let mut expected: Vec<&str> = names[90..]
            .iter()
            .map(String::as_str)
            .filter(|n| *n >= "n05")
            .collect();
        expected.sort();
        assert_eq!(from, expected);
        // Re-inserting a name replaces its node.
        b.insert(Name::from(names[95].as_str()), ix(999));
        assert_eq!(b.get(&names[95]), Some(ix(999)));
        assert_eq!(b.len(), 10);
        for n in &names[90..] {
            b.remove(n);
        }
        assert!(b.is_empty());
    }

    #[test]
    fn postings_grow_and_shrink_through_every_form() {
        let mut p = Posting::One(ix(0));
        for i in 1..40 {
            p.insert(ix(i));
        }
        assert!(matches!(p, Posting::Many(_)));
        let mut members: Vec<NodeIndex> = p.iter().collect();
        members.sort();
        assert_eq!(members, (0..40).map(ix).collect::<Vec<_>>());
        for i in 0..38 {
            assert!(!p.remove(ix(i)));
        }
        assert!(matches!(p, Posting::Few(_)));
        assert!(!p.remove(ix(38)));
        assert!(matches!(p, Posting::One(n) if n == ix(39)));
        assert!(p.remove(ix(39)));
    }
}
