//! Helpers shared by the integration tests: build objects from JSON, apply them to a graph, and
//! read edges back as readable triples.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::sync::Arc;

pub mod fake_kube;
pub mod golden;
pub mod http;
pub mod kube;
pub mod process;
pub mod redis;

use astrolabe::graph::{Change, Graph, ListScope};
use astrolabe::model::{Atom, Kind, Object, ObjectKey, Uid};
use astrolabe::relations::Projector;
use serde_json::{Value, json};

/// A graph with a projector, driven by JSON objects.
#[derive(Default)]
pub struct World {
    pub g: Graph,
    pub p: Projector,
}

impl World {
    pub fn new() -> World {
        World::default()
    }

    /// Projects and upserts an object; panics on a projection error.
    pub fn apply(&mut self, v: Value) -> Arc<Object> {
        let obj = Arc::new(self.p.project(&v).expect("valid object"));
        self.g.apply(Change::Upsert(obj.clone()));
        self.g.check_invariants().expect("invariants after upsert");
        obj
    }

    /// Deletes by "Kind/ns/name" or "Kind/name".
    pub fn delete(&mut self, path: &str) -> bool {
        let key = key(path);
        let changed = self.g.apply(Change::Delete { key, uid: None });
        self.g.check_invariants().expect("invariants after delete");
        changed
    }

    pub fn list_start(&mut self, kind: Kind, ns: Option<&str>) {
        self.g.apply(Change::ListStart(ListScope {
            kind: Some(kind),
            namespace: ns.map(Atom::new),
        }));
    }

    pub fn list_complete(&mut self, kind: Kind, ns: Option<&str>) {
        self.g.apply(Change::ListComplete(ListScope {
            kind: Some(kind),
            namespace: ns.map(Atom::new),
        }));
        self.g.check_invariants().expect("invariants after list");
    }

    /// Every edge as ("Kind/ns/name", type, "Kind/ns/name").
    pub fn edges(&self) -> BTreeSet<(String, String, String)> {
        let (_, edges) = self.g.canonical();
        let name = |u: &Uid| {
            let n = self.g.find_uid(u).expect("edge end exists");
            self.g.object(n).key().to_string()
        };
        edges
            .iter()
            .map(|(a, b, t)| (name(a), t.as_str().to_string(), name(b)))
            .collect()
    }

    pub fn has(&self, from: &str, ty: &str, to: &str) -> bool {
        self.edges()
            .contains(&(from.to_string(), ty.to_string(), to.to_string()))
    }

    /// Asserts the exact set of edges of one type.
    pub fn assert_edges(&self, ty: &str, expected: &[(&str, &str)]) {
        let got: BTreeSet<(String, String)> = self
            .edges()
            .into_iter()
            .filter(|(_, t, _)| t == ty)
            .map(|(a, _, b)| (a, b))
            .collect();
        let want: BTreeSet<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "edges of type {ty}");
    }

    pub fn get(&self, path: &str) -> Option<Arc<Object>> {
        let k = key_among(path, self.g.kinds());
        self.g
            .find_key(&k.kind, &k.namespace, &k.name)
            .map(|n| self.g.object(n).clone())
    }

    pub fn status(&self, path: &str) -> (String, String) {
        let o = self.get(path).unwrap_or_else(|| panic!("{path} exists"));
        (o.status.as_str().to_string(), o.message.to_string())
    }
}

/// "Kind/ns/name" or "Kind/name" (cluster-scoped) to a key; Kind by its built-in name.
pub fn key(path: &str) -> ObjectKey {
    let none: [&Kind; 0] = [];
    key_among(path, none)
}

/// Like [`key`], also knowing the kinds in `known`.
pub fn key_among<'a>(path: &str, known: impl IntoIterator<Item = &'a Kind>) -> ObjectKey {
    let parts: Vec<&str> = path.split('/').collect();
    let kind = Kind::parse_user(parts[0], known).unwrap_or_else(|| panic!("kind {}", parts[0]));
    let (ns, name) = match parts.len() {
        2 => ("", parts[1]),
        3 => (parts[1], parts[2]),
        _ => panic!("bad path {path}"),
    };
    ObjectKey {
        kind,
        namespace: Atom::new(ns),
        name: name.into(),
    }
}

/// A deterministic uid for test objects.
pub fn uid(seed: &str) -> String {
    Uid::synthetic(&["test", seed]).to_string()
}

pub fn meta(ns: &str, name: &str) -> Value {
    json!({"namespace": ns, "name": name, "uid": uid(&format!("{ns}/{name}"))})
}

pub fn pod(ns: &str, name: &str, labels: Value, spec: Value) -> Value {
    let mut m = meta(ns, name);
    m["uid"] = json!(uid(&format!("pod/{ns}/{name}")));
    m["labels"] = labels;
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec,
           "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0}]}})
}

pub fn simple(api_version: &str, kind: &str, ns: &str, name: &str) -> Value {
    let mut m = if ns.is_empty() {
        json!({"name": name})
    } else {
        meta(ns, name)
    };
    m["uid"] = json!(uid(&format!("{kind}/{ns}/{name}")));
    json!({"apiVersion": api_version, "kind": kind, "metadata": m})
}

pub fn service(ns: &str, name: &str, selector: Value) -> Value {
    let mut v = simple("v1", "Service", ns, name);
    v["spec"] = json!({"selector": selector});
    v
}

/// The uid `simple`/`pod` give an object, to write ownerReferences.
pub fn uid_of(kind: &str, ns: &str, name: &str) -> String {
    if kind == "Pod" {
        uid(&format!("pod/{ns}/{name}"))
    } else {
        uid(&format!("{kind}/{ns}/{name}"))
    }
}

/// Polls `check` every 50 ms until it returns Ok; fails the test with "`what`: not within
/// `within`" and the last error if it does not in time.
pub fn eventually(
    what: &str,
    within: std::time::Duration,
    mut check: impl FnMut() -> Result<(), String>,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {within:?}{}{e}",
                if e.is_empty() { "" } else { ":\n" }
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// [`eventually`] for a condition with nothing to report.
pub fn wait_for(what: &str, within: std::time::Duration, mut ok: impl FnMut() -> bool) {
    eventually(
        what,
        within,
        || if ok() { Ok(()) } else { Err(String::new()) },
    );
}
