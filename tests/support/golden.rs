//! Golden files: responses recorded from a real kube-apiserver (`tests/fixtures/kube-golden`),
//! and the *shape* they are compared by, so that the fake API server of `fake_kube` cannot drift
//! from the real one.
//!
//! The shape of a JSON value is the set of its key paths, each with the type of its value
//! (`items[].metadata.name: string`). Arrays are described by their first element (`[]`), an
//! empty array by its type alone. Volatile values (uids, timestamps, resourceVersions, continue
//! tokens, messages) are compared by type only; values that are protocol constants are compared
//! exactly: `kind`, `apiVersion`, `groupVersion`, an event's `type`, and a Status's `status`,
//! `reason` and `code` (any key of those names whose value is a string or a number). Under
//! `fieldsV1` (server-side field tracking: its keys name the object's own fields) only the type
//! counts.
//!
//! `ASTROLABE_RECORD_GOLDEN=1` makes the live test (`tests/kube_live.rs`) rewrite the files from
//! the real server instead of comparing with them.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

/// The environment variable that makes the live test record the golden files.
pub const RECORD_ENV: &str = "ASTROLABE_RECORD_GOLDEN";

/// Keys whose string or number values are protocol constants, compared exactly.
const CONSTANT_KEYS: &[&str] = &[
    "kind",
    "apiVersion",
    "groupVersion",
    "type",
    "status",
    "reason",
    "code",
];

/// Keys whose content is not compared, only their type.
const OPAQUE_KEYS: &[&str] = &["fieldsV1"];

/// The `Accept` kube-client 5 sends for metadata-only lists (`JSON_METADATA_LIST_MIME` in
/// kube-core's `request.rs`).
pub const ACCEPT_METADATA_LIST: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
/// The `Accept` kube-client 5 sends for metadata-only watches and gets (`JSON_METADATA_MIME`).
pub const ACCEPT_METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
/// The `Accept` kube-client 5 sends for whole objects (`JSON_MIME`).
pub const ACCEPT_JSON: &str = "application/json";

/// The namespace the recorded objects live in.
pub const NAMESPACE: &str = "golden";

pub fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
}

/// A Secret with harmless data (the golden files are public: nothing secret goes in them, and
/// metadata-only responses carry no data anyway).
pub fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "golden"}},
           "type": "Opaque", "data": {"greeting": "aGVsbG8="}})
}

/// A Pod as a client creates it (the real server adds its defaults; no scheduler runs, so it
/// stays Pending).
pub fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "golden"}},
           "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}})
}

/// `tests/fixtures/kube-golden`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube-golden")
}

/// Whether `ASTROLABE_RECORD_GOLDEN=1` asks for recording.
pub fn recording() -> bool {
    std::env::var(RECORD_ENV).is_ok_and(|v| v == "1")
}

/// A golden file's responses: a `.json` file holds one JSON value, a `.jsonl` file one watch
/// event per line.
pub fn read(name: &str) -> Vec<Value> {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record it with {RECORD_ENV}=1 cargo test --test kube_live golden)",
            path.display()
        )
    });
    let parse = |t: &str| -> Value {
        serde_json::from_str(t).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    if name.ends_with(".jsonl") {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse)
            .collect()
    } else {
        vec![parse(&text)]
    }
}

/// Writes a golden file: pretty JSON for `.json` (exactly one value), one compact event per line
/// for `.jsonl`.
pub fn write(name: &str, values: &[Value]) {
    let text = if name.ends_with(".jsonl") {
        values.iter().map(|v| format!("{v}\n")).collect::<String>()
    } else {
        assert_eq!(values.len(), 1, "{name} holds one JSON value");
        format!("{}\n", serde_json::to_string_pretty(&values[0]).unwrap())
    };
    std::fs::write(dir().join(name), text).unwrap();
}

/// The shape of `v`: key path -> type, or type and value for protocol constants.
pub fn shape(v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(v, "", None, &mut out);
    out
}

fn walk(v: &Value, path: &str, key: Option<&str>, out: &mut BTreeMap<String, String>) {
    let constant = key.is_some_and(|k| CONSTANT_KEYS.contains(&k));
    let ty = match v {
        Value::Null => "null".to_string(),
        Value::Bool(_) => "boolean".to_string(),
        Value::Number(n) if constant => format!("number = {n}"),
        Value::Number(_) => "number".to_string(),
        Value::String(s) if constant => format!("string = {s:?}"),
        Value::String(_) => "string".to_string(),
        Value::Array(_) => "array".to_string(),
        Value::Object(_) => "object".to_string(),
    };
    out.insert(if path.is_empty() { "." } else { path }.to_string(), ty);
    if key.is_some_and(|k| OPAQUE_KEYS.contains(&k)) {
        return;
    }
    match v {
        Value::Array(items) => {
            if let Some(first) = items.first() {
                walk(first, &format!("{path}[]"), None, out);
            }
        }
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, &p, Some(k), out);
            }
        }
        _ => {}
    }
}

/// The differences between the shapes of `want` (golden) and `got`, one line each: `-` for what
/// only the golden value has, `+` for what only `got` has, `~` for a different type or constant.
pub fn shape_diff(want: &Value, got: &Value) -> Vec<String> {
    let (w, g) = (shape(want), shape(got));
    let mut out = Vec::new();
    for (path, ty) in &w {
        match g.get(path) {
            None => out.push(format!("- {path}: {ty}")),
            Some(other) if other != ty => out.push(format!("~ {path}: {ty} (got {other})")),
            Some(_) => {}
        }
    }
    for (path, ty) in &g {
        if !w.contains_key(path) {
            out.push(format!("+ {path}: {ty}"));
        }
    }
    out
}

/// Asserts that `got` has the shape of the golden file `name`: as many values (events), each of
/// the same shape as the recorded one at its position.
pub fn assert_matches(name: &str, got: &[Value]) {
    let want = read(name);
    let mut problems = Vec::new();
    if want.len() != got.len() {
        problems.push(format!(
            "{} values recorded, {} got: {}",
            want.len(),
            got.len(),
            got.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        for d in shape_diff(w, g) {
            problems.push(format!("value {i}: {d}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{name} does not match the golden file (- recorded only, + got only, ~ differs):\n{}",
        problems.join("\n")
    );
}

/// With `ASTROLABE_RECORD_GOLDEN=1` writes `got` as the golden file `name`; otherwise asserts it
/// matches (see [`assert_matches`]).
pub fn record_or_check(name: &str, got: &[Value]) {
    if recording() {
        write(name, got);
    }
    assert_matches(name, got);
}

/// Asserts that every entry of the `APIResourceList` `got` is in the one recorded in the golden
/// file `name`, under the same name and with the same content (`storageVersionHash` by presence
/// only: its value is a hash of the storage version). Shapes compare first entries only; this
/// holds a fake's discovery to the real one resource by resource, while the fake may serve fewer.
pub fn assert_resources_recorded(name: &str, got: &Value) {
    let recorded = read(name).remove(0);
    let normalize = |r: &Value| -> Value {
        let mut r = r.clone();
        if let Some(h) = r.get_mut("storageVersionHash") {
            *h = json!("<hash>");
        }
        r
    };
    let by_name: BTreeMap<&str, Value> = recorded["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is an APIResourceList"))
        .iter()
        .map(|r| (r["name"].as_str().unwrap_or(""), normalize(r)))
        .collect();
    let mut problems = Vec::new();
    for r in got["resources"].as_array().expect("an APIResourceList") {
        let n = r["name"].as_str().unwrap_or("");
        match by_name.get(n) {
            None => problems.push(format!("{n}: not served by the real server")),
            Some(want) if *want != normalize(r) => {
                problems.push(format!("{n}: recorded {want}, got {}", normalize(r)));
            }
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{name}: entries differ from the recording:\n{}",
        problems.join("\n")
    );
}
