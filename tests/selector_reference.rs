//! Our label-selector matching agrees with kube-core's `Selector::matches` (Kubernetes' own
//! semantics) on random selectors and label sets, and our kubectl-syntax printer and parser round
//! trip. kube-core is the reference; ours exists because it matches interned label slices without
//! allocating and exposes the requirement the graph indexes a selector under.

use std::collections::{BTreeMap, BTreeSet};

use astrolabe::model::{Atom, Expr, Labels, Selector};
use kube_core::{Expression, Selector as KubeSelector, SelectorExt};
use proptest::prelude::*;

const KEYS: [&str; 3] = ["app", "tier", "app.kubernetes.io/name"];
const VALUES: [&str; 4] = ["web", "db", "x-1", ""];

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]).prop_map(String::from),
        prop::sample::select(&VALUES[..]).prop_map(String::from),
        0..4,
    )
}

/// (operator, key, value, set of values)
fn requirement() -> impl Strategy<Value = (u8, &'static str, &'static str, BTreeSet<&'static str>)>
{
    (
        0u8..6,
        prop::sample::select(&KEYS[..]),
        prop::sample::select(&VALUES[..]),
        prop::collection::btree_set(prop::sample::select(&VALUES[..3]), 1..3),
    )
}

fn both(
    reqs: &[(u8, &'static str, &'static str, BTreeSet<&'static str>)],
) -> (Selector, KubeSelector) {
    let atoms = |vs: &BTreeSet<&str>| {
        vs.iter()
            .map(|v| Atom::new(v))
            .collect::<Vec<_>>()
            .into_boxed_slice()
    };
    let strings = |vs: &BTreeSet<&str>| {
        vs.iter()
            .map(|v| v.to_string())
            .collect::<BTreeSet<String>>()
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (op, k, v, vs) in reqs {
        let key = Atom::new(k);
        match op {
            0 => {
                ours.push(Expr::Eq(key, Atom::new(v)));
                theirs.push(Expression::Equal(k.to_string(), v.to_string()));
            }
            1 => {
                ours.push(Expr::NotEq(key, Atom::new(v)));
                theirs.push(Expression::NotEqual(k.to_string(), v.to_string()));
            }
            2 => {
                ours.push(Expr::In(key, atoms(vs)));
                theirs.push(Expression::In(k.to_string(), strings(vs)));
            }
            3 => {
                ours.push(Expr::NotIn(key, atoms(vs)));
                theirs.push(Expression::NotIn(k.to_string(), strings(vs)));
            }
            4 => {
                ours.push(Expr::Exists(key));
                theirs.push(Expression::Exists(k.to_string()));
            }
            _ => {
                ours.push(Expr::NotExists(key));
                theirs.push(Expression::DoesNotExist(k.to_string()));
            }
        }
    }
    (Selector::new(ours), theirs.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn matching_agrees_with_kube_core(reqs in prop::collection::vec(requirement(), 0..4), l in labels()) {
        let (ours, theirs) = both(&reqs);
        let interned = Labels::from_pairs(l.iter().map(|(k, v)| (Atom::new(k), Atom::new(v))).collect());
        prop_assert_eq!(ours.matches(&interned), theirs.matches(&l), "selector {}", ours);
        // The anchor the graph indexes a selector under never hides a match: whatever matches
        // carries the anchored label.
        if ours.matches(&interned) {
            match ours.anchor() {
                astrolabe::model::Anchor::Pairs(k, vs) => prop_assert!(interned.get(&k).is_some_and(|v| vs.contains(v))),
                astrolabe::model::Anchor::Key(k) => prop_assert!(interned.get(&k).is_some()),
                astrolabe::model::Anchor::All => {}
            }
        }
    }

    #[test]
    fn kubectl_syntax_round_trips(reqs in prop::collection::vec(requirement(), 0..4), l in labels()) {
        let (ours, _) = both(&reqs);
        let text = ours.to_string();
        let parsed = Selector::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let interned = Labels::from_pairs(l.iter().map(|(k, v)| (Atom::new(k), Atom::new(v))).collect());
        prop_assert_eq!(parsed.matches(&interned), ours.matches(&interned), "{}", text);
        prop_assert_eq!(parsed.to_string(), text);
    }
}
