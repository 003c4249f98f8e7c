//! The Astrolabe v1 HTTP contract (`v1-contract.md`, the Grafana plugin's compatibility surface),
//! checked field by field over real HTTP on loopback, on the demo cluster, on a manifest fixture
//! (online-boutique), on a `kubectl get -o json` dump and on hand-built objects: every endpoint and
//! parameter combination, the exact field sets and JSON types of Node, Edge and Resource, the
//! `metadata` values against the source objects, the edge renames, the scoping rules, the sort
//! order and byte-identical repeats, and the error shapes.
//!
//! The expected values are computed here, independently of the v1 code: object fields from the
//! raw Kubernetes JSON the graph was built from, scopes and edges from the contract's rules applied
//! to the graph's canonical (un-renamed) edge list. Relationship rules themselves are tested in
//! `edges.rs`; this file tests what v1 makes of them.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use astrolabe::graph::Graph;
use astrolabe::model::Kind;
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig, names};
use serde_json::{Map, Value, json};
use support::http::{Server, demo_graph, file_graph};

const DEMO_OBJECTS: usize = 2_000;
const BOUTIQUE: &str = "public-manifests/online-boutique/release/kubernetes-manifests.yaml";
const DUMP: &str = "dumps/shop-list.json";

const STATUSES: [&str; 4] = ["Ready", "Pending", "Error", "Unknown"];
/// Every field a v1 graph node may carry.
const NODE_FIELDS: [&str; 9] = [
    "uid",
    "name",
    "namespace",
    "kind",
    "status",
    "message",
    "chart",
    "release",
    "metadata",
];
/// Node fields that are always present (`chart`, `release`, `metadata` are omitted when empty).
const NODE_REQUIRED: [&str; 6] = ["uid", "name", "namespace", "kind", "status", "message"];
/// Every `metadata` field the contract names: the ones the plugin reads and the "also useful
/// and allowed" ones.
const METADATA_FIELDS: [&str; 23] = [
    "image",
    "nodeName",
    "restartCount",
    "replicas",
    "volumeName",
    "claimRef",
    "age",
    "creationTimestamp",
    "targetPods",
    "mountedPVCs",
    "usedConfigMaps",
    "usedSecrets",
    "serviceAccountName",
    "clusterIP",
    "serviceType",
    "ingressClass",
    "scaleTargetRef",
    "minReplicas",
    "maxReplicas",
    "currentReplicas",
    "desiredReplicas",
    "labels",
    "apiVersion",
];
/// Resource fields that are always present, as strings.
const RESOURCE_REQUIRED: [&str; 11] = [
    "uid",
    "name",
    "namespace",
    "kind",
    "apiVersion",
    "status",
    "message",
    "chart",
    "release",
    "age",
    "creationTimestamp",
];
/// Resource fields that may be present.
const RESOURCE_OPTIONAL: [&str; 12] = [
    "image",
    "nodeName",
    "restartCount",
    "replicas",
    "ownerReferences",
    "volumeName",
    "claimRef",
    "targetPods",
    "mountedPVCs",
    "usedConfigMaps",
    "usedSecrets",
    "serviceAccountName",
];
/// The edge type names v1 may send: the plugin's list plus `uses-class` and `runs-on`, which are
/// sent as they are.
const V1_EDGE_TYPES: [&str; 12] = [
    "owns",
    "selects",
    "endpoints",
    "routes-to",
    "mounts",
    "binds",
    "uses-configmap",
    "uses-secret",
    "uses-sa",
    "scales",
    "uses-class",
    "runs-on",
];
/// Kinds whose pod template the relationship rules read.
const TEMPLATE_KINDS: [&str; 6] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// The expected values: objects from their raw JSON, edges from the graph's canonical edge list.
// ---------------------------------------------------------------------------------------------

/// One object of the graph (never a synthetic HelmRelease) with the JSON it was projected from.
struct Obj {
    kind: String,
    namespace: String,
    name: String,
    raw: Value,
}

/// What the v1 responses are checked against.
struct Truth {
    /// Objects by uid.
    objects: BTreeMap<String, Obj>,
    /// Synthetic HelmRelease nodes by uid: (release namespace, release name).
    releases: BTreeMap<String, (String, String)>,
    /// Canonical edges (from uid, to uid, canonical type).
    edges: BTreeSet<(String, String, String)>,
    /// Outgoing canonical edges by source uid: (to uid, type).
    out: BTreeMap<String, Vec<(String, String)>>,
}

impl Truth {
    fn new(g: &Graph, raws: Vec<Value>) -> Truth {
        let p = Projector::default();
        let mut raw_by_uid: BTreeMap<String, Value> = BTreeMap::new();
        for v in raws {
            // Only the uid is taken from the projection (offline manifests get a synthetic one);
            // every value checked below comes from the raw JSON.
            if let Ok(o) = p.project(&v) {
                raw_by_uid.insert(o.uid.to_string(), v);
            }
        }
        let (nodes, edges) = g.canonical();
        let mut objects = BTreeMap::new();
        let mut releases = BTreeMap::new();
        for o in nodes {
            let uid = o.uid.to_string();
            if o.kind == Kind::HelmRelease {
                releases.insert(uid, (o.namespace.to_string(), o.name.to_string()));
                continue;
            }
            let raw = raw_by_uid
                .remove(&uid)
                .unwrap_or_else(|| panic!("no source object for {uid}"));
            assert_eq!(raw["kind"], o.kind.name(), "source kind of {uid}");
            assert_eq!(
                raw["metadata"]["name"],
                o.name.as_str(),
                "source name of {uid}"
            );
            objects.insert(
                uid,
                Obj {
                    kind: o.kind.name().to_string(),
                    namespace: o.namespace.to_string(),
                    name: o.name.to_string(),
                    raw,
                },
            );
        }
        let edges: BTreeSet<(String, String, String)> = edges
            .iter()
            .map(|(a, b, t)| (a.to_string(), b.to_string(), t.as_str().to_string()))
            .collect();
        let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (a, b, t) in &edges {
            out.entry(a.clone())
                .or_default()
                .push((b.clone(), t.clone()));
        }
        Truth {
            objects,
            releases,
            edges,
            out,
        }
    }

    fn out(&self, uid: &str) -> impl Iterator<Item = (&str, &str)> {
        self.out
            .get(uid)
            .into_iter()
            .flatten()
            .map(|(b, t)| (b.as_str(), t.as_str()))
    }

    /// The release an object is a member of: (namespace, name).
    fn release_of(&self, uid: &str) -> Option<&(String, String)> {
        self.out(uid)
            .find(|(_, t)| *t == "member-of")
            .map(|(r, _)| &self.releases[r])
    }

    /// The object's `helm.sh/chart` label, when non-empty.
    fn chart_of(&self, uid: &str) -> Option<&str> {
        str_at(&self.objects[uid].raw, "/metadata/labels/helm.sh~1chart")
    }

    fn key(&self, uid: &str) -> String {
        let o = &self.objects[uid];
        format!("{}/{}/{}", o.kind, o.namespace, o.name)
    }

    /// The node set the contract's scoping rules give.
    fn scope(&self, namespace: Option<&str>, release: Option<&str>) -> BTreeSet<String> {
        match (release, namespace) {
            (None, None) => self.objects.keys().cloned().collect(),
            (None, Some(ns)) => {
                let own: BTreeSet<String> = self
                    .objects
                    .iter()
                    .filter(|(_, o)| o.namespace == ns)
                    .map(|(u, _)| u.clone())
                    .collect();
                let mut all = own.clone();
                for u in &own {
                    for (to, _) in self.out(u) {
                        if self.objects.get(to).is_some_and(|o| o.namespace.is_empty()) {
                            all.insert(to.to_string());
                        }
                    }
                }
                all
            }
            (Some(name), ns) => {
                let wanted: BTreeSet<&str> = self
                    .releases
                    .iter()
                    .filter(|(_, (rns, rname))| rname == name && ns.is_none_or(|n| n == rns))
                    .map(|(u, _)| u.as_str())
                    .collect();
                // Members, then everything they own, transitively.
                let mut set: BTreeSet<String> = self
                    .edges
                    .iter()
                    .filter(|(_, r, t)| t == "member-of" && wanted.contains(r.as_str()))
                    .map(|(a, _, _)| a.clone())
                    .collect();
                let mut queue: Vec<String> = set.iter().cloned().collect();
                while let Some(u) = queue.pop() {
                    for (to, t) in self.out(&u) {
                        if t == "owns" && set.insert(to.to_string()) {
                            queue.push(to.to_string());
                        }
                    }
                }
                // The PVCs their Pods (and templates) mount or their StatefulSets claim, the PVs
                // those bind, and what their Pods and templates use.
                let owned = set.clone();
                let mut claims = BTreeSet::new();
                for u in &owned {
                    let kind = self.objects[u].kind.as_str();
                    let pods = kind == "Pod" || TEMPLATE_KINDS.contains(&kind);
                    for (to, t) in self.out(u) {
                        match t {
                            "mounts" if pods => {
                                claims.insert(to.to_string());
                            }
                            "claims" if kind == "StatefulSet" => {
                                claims.insert(to.to_string());
                            }
                            "uses-configmap" | "uses-secret" | "uses-sa" if pods => {
                                set.insert(to.to_string());
                            }
                            _ => {}
                        }
                    }
                }
                for c in &claims {
                    set.insert(c.clone());
                    for (to, t) in self.out(c) {
                        if t == "binds" {
                            set.insert(to.to_string());
                        }
                    }
                }
                set
            }
        }
    }

    /// The v1 edges among `nodes`: renamed, `member-of` dropped, each once, sorted by (from, to,
    /// type).
    fn v1_edges(&self, nodes: &BTreeSet<String>) -> Vec<(String, String, String)> {
        let set: BTreeSet<(String, String, String)> = self
            .edges
            .iter()
            .filter(|(a, b, t)| t != "member-of" && nodes.contains(a) && nodes.contains(b))
            .map(|(a, b, t)| {
                let t = match t.as_str() {
                    "targets" => "selects",
                    "claims" => "mounts",
                    other => other,
                };
                (a.clone(), b.clone(), t.to_string())
            })
            .collect();
        set.into_iter().collect()
    }
}

/// A non-empty string at a JSON pointer.
fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

fn list_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The pod spec of a Pod or the pod template of a workload.
fn pod_spec(o: &Obj) -> Option<&Value> {
    static NULL: Value = Value::Null;
    match o.kind.as_str() {
        "Pod" => Some(o.raw.get("spec").unwrap_or(&NULL)),
        "CronJob" => Some(
            o.raw
                .pointer("/spec/jobTemplate/spec/template/spec")
                .unwrap_or(&NULL),
        ),
        k if TEMPLATE_KINDS.contains(&k) => {
            Some(o.raw.pointer("/spec/template/spec").unwrap_or(&NULL))
        }
        _ => None,
    }
}

/// What a pod spec uses, by the rules of `relationships.md`.
struct Uses {
    image: Option<String>,
    service_account: String,
    claims: BTreeSet<String>,
    config_maps: BTreeSet<String>,
    secrets: BTreeSet<String>,
}

fn uses(spec: &Value, pod_name: Option<&str>) -> Uses {
    let mut u = Uses {
        image: list_at(spec, "/containers")
            .first()
            .and_then(|c| str_at(c, "/image"))
            .map(str::to_string),
        service_account: str_at(spec, "/serviceAccountName")
            .or_else(|| str_at(spec, "/serviceAccount"))
            .unwrap_or("default")
            .to_string(),
        claims: BTreeSet::new(),
        config_maps: BTreeSet::new(),
        secrets: BTreeSet::new(),
    };
    let add = |set: &mut BTreeSet<String>, v: Option<&str>| {
        if let Some(v) = v {
            set.insert(v.to_string());
        }
    };
    for vol in list_at(spec, "/volumes") {
        add(
            &mut u.claims,
            str_at(vol, "/persistentVolumeClaim/claimName"),
        );
        if let (Some(pod), Some(name), Some(_)) =
            (pod_name, str_at(vol, "/name"), vol.get("ephemeral"))
        {
            u.claims.insert(format!("{pod}-{name}"));
        }
        add(&mut u.config_maps, str_at(vol, "/configMap/name"));
        add(&mut u.secrets, str_at(vol, "/secret/secretName"));
        for src in list_at(vol, "/projected/sources") {
            add(&mut u.config_maps, str_at(src, "/configMap/name"));
            add(&mut u.secrets, str_at(src, "/secret/name"));
        }
    }
    for s in list_at(spec, "/imagePullSecrets") {
        add(&mut u.secrets, str_at(s, "/name"));
    }
    for group in ["/containers", "/initContainers", "/ephemeralContainers"] {
        for c in list_at(spec, group) {
            for from in list_at(c, "/envFrom") {
                add(&mut u.config_maps, str_at(from, "/configMapRef/name"));
                add(&mut u.secrets, str_at(from, "/secretRef/name"));
            }
            for env in list_at(c, "/env") {
                add(
                    &mut u.config_maps,
                    str_at(env, "/valueFrom/configMapKeyRef/name"),
                );
                add(&mut u.secrets, str_at(env, "/valueFrom/secretKeyRef/name"));
            }
        }
    }
    u
}

/// Replica counters {desired, current, ready, available} where Kubernetes defines them.
fn expected_replicas(o: &Obj) -> Option<Value> {
    let s = |f: &str| u64_at(&o.raw, &format!("/status/{f}")).unwrap_or(0);
    match o.kind.as_str() {
        "Deployment" | "StatefulSet" | "ReplicaSet" => Some(json!({
            "desired": u64_at(&o.raw, "/spec/replicas").unwrap_or(1),
            "current": s("replicas"),
            "ready": s("readyReplicas"),
            "available": s("availableReplicas"),
        })),
        "DaemonSet" => Some(json!({
            "desired": s("desiredNumberScheduled"),
            "current": s("currentNumberScheduled"),
            "ready": s("numberReady"),
            "available": s("numberAvailable"),
        })),
        _ => None,
    }
}

/// Seconds since the epoch of an RFC 3339 timestamp; `None` when the text is not RFC 3339.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        (t.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, se) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = if rest == "Z" {
        0
    } else {
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        if rest.len() != 6 || rest.as_bytes()[3] != b':' {
            return None;
        }
        sign * (digits_of(&rest[1..3])? * 3600 + digits_of(&rest[4..6])? * 60)
    };
    // Days since the epoch of a proleptic Gregorian date.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

fn digits_of(s: &str) -> Option<i64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
}

/// The contract's age format: the largest whole unit, "45s", "12m", "3h", "20d".
fn age_text(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The wall-clock interval a response was produced in: ages are checked against every second
/// of it, so that a second ticking over between the request and the check cannot fail a test.
#[derive(Clone, Copy)]
struct Clock {
    before: i64,
    after: i64,
}

impl Clock {
    fn ages(self, created: i64) -> BTreeSet<String> {
        (self.before..=self.after)
            .map(|now| age_text(now - created))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and requests.
// ---------------------------------------------------------------------------------------------

fn demo_raw() -> Vec<Value> {
    DemoCluster::new(DemoConfig {
        objects: DEMO_OBJECTS,
        ..DemoConfig::default()
    })
    .objects()
    .collect()
}

async fn serve_demo() -> (Server, Truth) {
    let g = demo_graph(DEMO_OBJECTS);
    let truth = Truth::new(&g, demo_raw());
    (Server::fixed(g).await, truth)
}

async fn serve_file(rel: &str) -> (Server, Truth) {
    let path = fixture(rel);
    let g = file_graph(&path);
    let raws = astrolabe::sources::file::load_path(&path)
        .expect("fixture loads")
        .objects
        .into_iter()
        .map(|l| l.object)
        .collect();
    let truth = Truth::new(&g, raws);
    (Server::fixed(g).await, truth)
}

/// GET, asserting a 200 JSON answer, with the clock interval around it.
async fn fetch(s: &Server, path: &str) -> (Value, Clock) {
    let before = now_unix();
    let r = s.get(path).await;
    let after = now_unix();
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_json_type(&r, path);
    (r.json(), Clock { before, after })
}

fn assert_json_type(r: &support::http::Reply, path: &str) {
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{path}: content-type {ct:?}"
    );
}

/// Splits `?namespace=..&release=..` into its two values (the test's own queries only).
fn scope_params(query: &str) -> (Option<&str>, Option<&str>) {
    let mut ns = None;
    let mut rel = None;
    for pair in query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("namespace", v)) => ns = Some(v),
            Some(("release", v)) => rel = Some(v),
            _ => panic!("unexpected test query {query}"),
        }
    }
    (ns, rel)
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what}: not a string: {s}"))
                .to_string()
        })
        .collect()
}

fn assert_sorted_unique(list: &[String], what: &str) {
    for w in list.windows(2) {
        assert!(w[0] < w[1], "{what}: {:?} before {:?}", w[0], w[1]);
    }
}

fn obj<'a>(v: &'a Value, what: &str) -> &'a Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"))
}

fn field_str<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> &'a str {
    m.get(key)
        .unwrap_or_else(|| panic!("{what}: no {key}"))
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {key} is not a string: {}", m[key]))
}

/// A list of names as a set, checking that it is sorted ("all lists are sorted
/// deterministically") and names each object once.
fn str_set(v: &Value, what: &str) -> BTreeSet<String> {
    let list = strings(v, what);
    assert_sorted_unique(&list, what);
    list.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Field-by-field checks.
// ---------------------------------------------------------------------------------------------

/// Checks the kind-specific fields that graph `metadata` and Resources share, plus `age` and
/// `creationTimestamp`, against the object's source. `fields` is the metadata object or the
/// Resource itself.
fn check_details(
    t: &Truth,
    uid: &str,
    fields: &Map<String, Value>,
    graph: bool,
    clock: Clock,
    what: &str,
) {
    let o = &t.objects[uid];

    // Time: RFC 3339 and the same instant as the source; age in the contract's format.
    let created = str_at(&o.raw, "/metadata/creationTimestamp")
        .map(|s| parse_rfc3339(s).unwrap_or_else(|| panic!("{what}: source time {s}")));
    match created {
        Some(created) => {
            let ts = field_str(fields, "creationTimestamp", what);
            assert_eq!(
                parse_rfc3339(ts),
                Some(created),
                "{what}: creationTimestamp {ts:?} is not RFC 3339 for the source's instant"
            );
            let age = field_str(fields, "age", what);
            let ok = clock.ages(created);
            assert!(
                ok.contains(age),
                "{what}: age {age:?}, expected one of {ok:?}"
            );
        }
        None if graph => {
            // Optional in metadata: nothing to say about an unknown time, but never a bad one.
            if let Some(ts) = fields.get("creationTimestamp") {
                panic!("{what}: creationTimestamp {ts} for an object without one");
            }
            if let Some(age) = fields.get("age") {
                panic!("{what}: age {age} for an object without a creation time");
            }
        }
        None => {
            // Resources always carry both; "" when unknown, like the other strings.
            assert_eq!(fields.get("creationTimestamp"), Some(&json!("")), "{what}");
            assert_eq!(fields.get("age"), Some(&json!("")), "{what}");
        }
    }

    // What a Pod or pod template uses.
    match pod_spec(o) {
        Some(spec) => {
            let u = uses(spec, (o.kind == "Pod").then_some(o.name.as_str()));
            match &u.image {
                Some(image) => assert_eq!(
                    fields.get("image"),
                    Some(&json!(image)),
                    "{what}: image is the first container's"
                ),
                None => assert!(
                    fields.get("image").is_none(),
                    "{what}: image without container"
                ),
            }
            assert_eq!(
                fields.get("serviceAccountName"),
                Some(&json!(u.service_account)),
                "{what}: serviceAccountName"
            );
            for (key, want) in [
                ("mountedPVCs", &u.claims),
                ("usedConfigMaps", &u.config_maps),
                ("usedSecrets", &u.secrets),
            ] {
                let got = fields
                    .get(key)
                    .map(|v| str_set(v, &format!("{what}: {key}")))
                    .unwrap_or_default();
                assert_eq!(&got, want, "{what}: {key}");
                if !want.is_empty() {
                    assert!(fields.contains_key(key), "{what}: {key} missing");
                }
            }
        }
        None => {
            for key in [
                "image",
                "serviceAccountName",
                "mountedPVCs",
                "usedConfigMaps",
                "usedSecrets",
            ] {
                assert!(!fields.contains_key(key), "{what}: {key} on a {}", o.kind);
            }
        }
    }

    // Pod: node and restarts (an int, summed over the containers).
    if o.kind == "Pod" {
        assert_eq!(
            fields.get("nodeName").and_then(Value::as_str),
            str_at(&o.raw, "/spec/nodeName"),
            "{what}: nodeName"
        );
        let restarts: u64 = list_at(&o.raw, "/status/containerStatuses")
            .iter()
            .filter_map(|c| u64_at(c, "/restartCount"))
            .sum();
        let got = fields
            .get("restartCount")
            .unwrap_or_else(|| panic!("{what}: no restartCount"));
        assert!(got.is_u64(), "{what}: restartCount {got} is not an int");
        assert_eq!(got.as_u64(), Some(restarts), "{what}: restartCount");
    } else {
        assert!(
            !fields.contains_key("nodeName"),
            "{what}: nodeName on a {}",
            o.kind
        );
        assert!(
            !fields.contains_key("restartCount"),
            "{what}: restartCount on a {}",
            o.kind
        );
    }

    // Replicas: {desired, current, ready, available}, ints.
    if let Some(r) = fields.get("replicas") {
        let m = obj(r, &format!("{what}: replicas"));
        let keys: BTreeSet<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["available", "current", "desired", "ready"]),
            "{what}: replicas fields"
        );
        for (k, v) in m {
            assert!(v.is_u64(), "{what}: replicas.{k} = {v} is not an int");
        }
    }
    if let Some(want) = expected_replicas(o) {
        assert_eq!(fields.get("replicas"), Some(&want), "{what}: replicas");
    }

    // Volumes.
    if o.kind == "PersistentVolumeClaim" {
        assert_eq!(
            fields.get("volumeName").and_then(Value::as_str),
            str_at(&o.raw, "/spec/volumeName"),
            "{what}: volumeName"
        );
    } else {
        assert!(
            !fields.contains_key("volumeName"),
            "{what}: volumeName on a {}",
            o.kind
        );
    }
    if o.kind == "PersistentVolume"
        && let Some(c) = o.raw.pointer("/spec/claimRef")
    {
        let want = json!({
            "kind": c["kind"], "namespace": c["namespace"], "name": c["name"], "uid": c["uid"],
        });
        assert_eq!(fields.get("claimRef"), Some(&want), "{what}: claimRef");
    } else {
        assert!(
            !fields.contains_key("claimRef"),
            "{what}: claimRef on a {}",
            o.kind
        );
    }

    // targetPods: the Pods the object selects (Service, PDB, NetworkPolicy) or targets
    // (EndpointSlice), by name.
    let want: BTreeSet<String> = t
        .out(uid)
        .filter(|(_, ty)| *ty == "selects" || *ty == "targets")
        .map(|(p, _)| t.objects[p].name.clone())
        .collect();
    let got = fields
        .get("targetPods")
        .map(|v| str_set(v, &format!("{what}: targetPods")))
        .unwrap_or_default();
    assert_eq!(got, want, "{what}: targetPods");
}

/// Checks the graph-only metadata fields (the contract's "also useful and allowed" ones), when
/// present, against the source.
fn check_extended_metadata(o: &Obj, md: &Map<String, Value>, what: &str) {
    if let Some(v) = md.get("apiVersion") {
        assert_eq!(v, &o.raw["apiVersion"], "{what}: apiVersion");
    }
    if let Some(v) = md.get("labels") {
        assert_eq!(v, &o.raw["metadata"]["labels"], "{what}: labels");
    }
    if let Some(v) = md.get("serviceType") {
        assert_eq!(o.kind, "Service", "{what}: serviceType");
        assert_eq!(
            v.as_str(),
            Some(str_at(&o.raw, "/spec/type").unwrap_or("ClusterIP")),
            "{what}"
        );
    }
    if let Some(v) = md.get("clusterIP") {
        assert_eq!(
            v.as_str(),
            str_at(&o.raw, "/spec/clusterIP"),
            "{what}: clusterIP"
        );
    }
    if let Some(v) = md.get("ingressClass") {
        let want = str_at(&o.raw, "/spec/ingressClassName")
            .or_else(|| str_at(&o.raw, "/metadata/annotations/kubernetes.io~1ingress.class"));
        assert_eq!(v.as_str(), want, "{what}: ingressClass");
    }
    if let Some(v) = md.get("scaleTargetRef") {
        let want = json!({
            "kind": o.raw.pointer("/spec/scaleTargetRef/kind"),
            "name": o.raw.pointer("/spec/scaleTargetRef/name"),
        });
        assert_eq!(v, &want, "{what}: scaleTargetRef");
    }
    for (key, pointer) in [
        ("minReplicas", "/spec/minReplicas"),
        ("maxReplicas", "/spec/maxReplicas"),
        ("currentReplicas", "/status/currentReplicas"),
        ("desiredReplicas", "/status/desiredReplicas"),
    ] {
        if let Some(v) = md.get(key) {
            assert!(v.is_u64(), "{what}: {key} = {v} is not an int");
            if let Some(want) = u64_at(&o.raw, pointer) {
                assert_eq!(v.as_u64(), Some(want), "{what}: {key}");
            }
        }
    }
}

/// Checks one `/api/v1/graph` node.
fn check_node(t: &Truth, n: &Value, clock: Clock) {
    let m = obj(n, "graph node");
    let uid = field_str(m, "uid", "graph node");
    assert!(
        !t.releases.contains_key(uid),
        "graph node {uid}: a synthetic HelmRelease node"
    );
    let o = t
        .objects
        .get(uid)
        .unwrap_or_else(|| panic!("graph node {uid}: not an object of the graph"));
    let what = format!("graph node {}", t.key(uid));
    for k in NODE_REQUIRED {
        assert!(
            m.get(k).is_some_and(Value::is_string),
            "{what}: {k} missing or not a string"
        );
    }
    for k in m.keys() {
        assert!(
            NODE_FIELDS.contains(&k.as_str()),
            "{what}: field {k:?} is not in the contract"
        );
    }
    assert_eq!(field_str(m, "name", &what), o.name, "{what}: name");
    assert_eq!(
        field_str(m, "namespace", &what),
        o.namespace,
        "{what}: namespace"
    );
    assert_eq!(field_str(m, "kind", &what), o.kind, "{what}: kind");
    let status = field_str(m, "status", &what);
    assert!(STATUSES.contains(&status), "{what}: status {status:?}");
    // chart and release: omitted when empty, else the label / the release's name.
    assert_eq!(
        m.get("chart")
            .map(|v| v.as_str().unwrap_or_else(|| panic!("{what}: chart {v}"))),
        t.chart_of(uid),
        "{what}: chart"
    );
    assert_eq!(
        m.get("release")
            .map(|v| v.as_str().unwrap_or_else(|| panic!("{what}: release {v}"))),
        t.release_of(uid).map(|(_, name)| name.as_str()),
        "{what}: release"
    );
    let empty = Map::new();
    let md = match m.get("metadata") {
        Some(v) => {
            let md = obj(v, &format!("{what}: metadata"));
            assert!(
                !md.is_empty(),
                "{what}: metadata sent empty instead of omitted"
            );
            md
        }
        None => &empty,
    };
    for k in md.keys() {
        assert!(
            METADATA_FIELDS.contains(&k.as_str()),
            "{what}: metadata field {k:?} is not in the contract"
        );
    }
    check_details(t, uid, md, true, clock, &format!("{what} metadata"));
    check_extended_metadata(o, md, &what);
}

/// Checks one `/api/v1/resources` element.
fn check_resource(t: &Truth, r: &Value, clock: Clock) {
    let m = obj(r, "resource");
    let uid = field_str(m, "uid", "resource");
    assert!(
        !t.releases.contains_key(uid),
        "resource {uid}: a synthetic HelmRelease"
    );
    let o = t
        .objects
        .get(uid)
        .unwrap_or_else(|| panic!("resource {uid}: not an object of the graph"));
    let what = format!("resource {}", t.key(uid));
    for k in RESOURCE_REQUIRED {
        assert!(
            m.get(k).is_some_and(Value::is_string),
            "{what}: {k} missing or not a string"
        );
    }
    for k in m.keys() {
        assert!(
            RESOURCE_REQUIRED.contains(&k.as_str()) || RESOURCE_OPTIONAL.contains(&k.as_str()),
            "{what}: field {k:?} is not in the contract"
        );
    }
    assert_eq!(m["name"], json!(o.name), "{what}: name");
    assert_eq!(m["namespace"], json!(o.namespace), "{what}: namespace");
    assert_eq!(m["kind"], json!(o.kind), "{what}: kind");
    assert_eq!(
        m["apiVersion"],
        json!(str_at(&o.raw, "/apiVersion").unwrap_or("")),
        "{what}: apiVersion"
    );
    let status = field_str(m, "status", &what);
    assert!(STATUSES.contains(&status), "{what}: status {status:?}");
    assert_eq!(
        m["chart"],
        json!(t.chart_of(uid).unwrap_or("")),
        "{what}: chart"
    );
    assert_eq!(
        m["release"],
        json!(t.release_of(uid).map_or("", |(_, n)| n.as_str())),
        "{what}: release"
    );
    // ownerReferences: [{kind, name}] in the source's order, omitted when there are none.
    let owners: Vec<Value> = list_at(&o.raw, "/metadata/ownerReferences")
        .iter()
        .map(|r| json!({"kind": r["kind"], "name": r["name"]}))
        .collect();
    if owners.is_empty() {
        assert!(
            !m.contains_key("ownerReferences"),
            "{what}: empty ownerReferences sent"
        );
    } else {
        assert_eq!(
            m.get("ownerReferences"),
            Some(&json!(owners)),
            "{what}: ownerReferences"
        );
    }
    check_details(t, uid, m, false, clock, &what);
}

/// Checks one edge's shape and returns it as (from, to, type).
fn edge_triple(e: &Value) -> (String, String, String) {
    let m = obj(e, "edge");
    let keys: BTreeSet<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["from", "to", "type"]),
        "edge fields: {e}"
    );
    let s = |k: &str| field_str(m, k, "edge").to_string();
    let ty = s("type");
    assert!(
        V1_EDGE_TYPES.contains(&ty.as_str()),
        "edge type {ty:?} is not a v1 type: {e}"
    );
    (s("from"), s("to"), ty)
}

/// The node list's (namespace, kind, name) keys are in order.
fn assert_nodes_sorted(nodes: &[Value], what: &str) {
    let keys: Vec<(String, String, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["namespace"].as_str().unwrap_or_default().to_string(),
                n["kind"].as_str().unwrap_or_default().to_string(),
                n["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for w in keys.windows(2) {
        assert!(w[0] <= w[1], "{what}: {:?} listed before {:?}", w[0], w[1]);
    }
}

/// Fetches `/api/v1/graph` and `/api/v1/resources` with `query` and checks everything the
/// contract says about them: scope, fields, edges, order, and that the two agree.
async fn check_scope(s: &Server, t: &Truth, query: &str) -> BTreeSet<String> {
    let (ns, rel) = scope_params(query);
    let want = t.scope(ns, rel);

    let (g, clock) = fetch(s, &format!("/api/v1/graph{query}")).await;
    let gm = obj(&g, "graph");
    let keys: BTreeSet<&str> = gm.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["edges", "nodes"]),
        "graph{query}: top-level fields"
    );
    let nodes = g["nodes"].as_array().expect("nodes array");
    for n in nodes {
        check_node(t, n, clock);
    }
    let uids: Vec<String> = nodes
        .iter()
        .map(|n| n["uid"].as_str().unwrap().to_string())
        .collect();
    let got: BTreeSet<String> = uids.iter().cloned().collect();
    assert_eq!(got.len(), uids.len(), "graph{query}: a node listed twice");
    let missing: Vec<String> = want.difference(&got).map(|u| t.key(u)).collect();
    let extra: Vec<String> = got.difference(&want).map(|u| t.key(u)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "graph{query}: scope differs from the contract's rules; missing {missing:?}, extra {extra:?}"
    );
    assert_nodes_sorted(nodes, &format!("graph{query}"));

    let edges: Vec<(String, String, String)> = g["edges"]
        .as_array()
        .expect("edges array")
        .iter()
        .map(edge_triple)
        .collect();
    for (a, b, ty) in &edges {
        assert!(
            got.contains(a) && got.contains(b),
            "graph{query}: edge {ty} {a} -> {b} has an end outside the node set"
        );
    }
    let want_edges = t.v1_edges(&got);
    if edges != want_edges {
        let have: BTreeSet<_> = edges.iter().cloned().collect();
        let exp: BTreeSet<_> = want_edges.iter().cloned().collect();
        let name =
            |(a, b, ty): &(String, String, String)| format!("{} -{ty}-> {}", t.key(a), t.key(b));
        panic!(
            "graph{query}: edges differ from the renamed canonical edges among the nodes \
             (sorted by from, to, type, each once); missing {:?}, extra {:?}, same set: {}",
            exp.difference(&have).map(name).collect::<Vec<_>>(),
            have.difference(&exp).map(name).collect::<Vec<_>>(),
            have == exp
        );
    }

    let (r, clock) = fetch(s, &format!("/api/v1/resources{query}")).await;
    let list = r.as_array().expect("resources array");
    for x in list {
        check_resource(t, x, clock);
    }
    let ruids: Vec<String> = list
        .iter()
        .map(|x| x["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ruids, uids,
        "resources{query}: not the graph's nodes in the graph's order"
    );
    assert_nodes_sorted(list, &format!("resources{query}"));
    // The fields both shapes carry say the same thing.
    for (n, x) in nodes.iter().zip(list) {
        for k in ["uid", "name", "namespace", "kind", "status", "message"] {
            assert_eq!(n[k], x[k], "{k} of {} in graph and resources", n["uid"]);
        }
        assert_eq!(n.get("chart").unwrap_or(&json!("")), &x["chart"]);
        assert_eq!(n.get("release").unwrap_or(&json!("")), &x["release"]);
    }
    got
}

/// The demo's scopes worth checking: every namespace, and the tricky releases with and without
/// their namespace.
fn demo_queries(t: &Truth) -> Vec<String> {
    let mut q = vec![String::new()];
    let namespaces: BTreeSet<&str> = t
        .objects
        .values()
        .map(|o| o.namespace.as_str())
        .filter(|ns| !ns.is_empty())
        .collect();
    q.extend(namespaces.iter().map(|ns| format!("?namespace={ns}")));
    for (rel, ns) in [
        (names::HELM_SHARED_RELEASE, None),
        (names::HELM_SHARED_RELEASE, Some(names::PROBLEM_NAMESPACE)),
        (names::HELM_SHARED_RELEASE, Some(names::BIG_NAMESPACE)),
        (names::HELM_FAILED_RELEASE, None),
        (names::HELM_FAILED_RELEASE, Some(names::PROBLEM_NAMESPACE)),
        (names::HELM_CLUSTER_RELEASE, None),
        (names::HELM_CLUSTER_RELEASE, Some("ingress-nginx")),
    ] {
        q.push(match ns {
            None => format!("?release={rel}"),
            Some(ns) => format!("?release={rel}&namespace={ns}"),
        });
    }
    // Every other release by name alone.
    let mut others: BTreeSet<&str> = t.releases.values().map(|(_, n)| n.as_str()).collect();
    for n in [
        names::HELM_SHARED_RELEASE,
        names::HELM_FAILED_RELEASE,
        names::HELM_CLUSTER_RELEASE,
    ] {
        others.remove(n);
    }
    q.extend(others.iter().map(|n| format!("?release={n}")));
    q
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// `GET /health`: `{"status": "healthy"|"degraded"|"unhealthy", "nodes": <int>, ...}`.
#[tokio::test]
async fn health_reports_a_status_and_an_int_node_count() {
    let (s, t) = serve_demo().await;
    let (h, _) = fetch(&s, "/health").await;
    let status = h["status"].as_str().expect("status is a string");
    assert!(
        ["healthy", "degraded", "unhealthy"].contains(&status),
        "status {status:?}"
    );
    let nodes = h["nodes"].as_u64().expect("nodes is an int");
    // Whether the synthetic release nodes count is the server's business; the objects do.
    assert!(
        nodes >= t.objects.len() as u64,
        "nodes {nodes} < {} objects",
        t.objects.len()
    );
}

/// `GET /api/v1/namespaces`: the distinct non-empty namespaces of the objects, sorted.
#[tokio::test]
async fn namespaces_are_the_distinct_namespaces_of_the_objects_sorted() {
    for (s, t) in [
        serve_demo().await,
        serve_file(DUMP).await,
        serve_file(BOUTIQUE).await,
    ] {
        let (v, _) = fetch(&s, "/api/v1/namespaces").await;
        let got = strings(&v, "namespaces");
        assert_sorted_unique(&got, "namespaces");
        let want: Vec<String> = t
            .objects
            .values()
            .map(|o| o.namespace.clone())
            .filter(|ns| !ns.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(got, want);
    }
}

/// `GET /api/v1/releases[?namespace=NS]`: release names, each once, sorted; with a namespace only
/// the releases with a member in it.
#[tokio::test]
async fn releases_are_distinct_names_sorted_and_filtered_by_member_namespace() {
    for (s, t) in [serve_demo().await, serve_file(DUMP).await] {
        let (v, _) = fetch(&s, "/api/v1/releases").await;
        let got = strings(&v, "releases");
        assert_sorted_unique(&got, "releases");
        let all: Vec<String> = t
            .releases
            .values()
            .map(|(_, n)| n.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(got, all, "every release name once");

        let namespaces: BTreeSet<&str> = t.objects.values().map(|o| o.namespace.as_str()).collect();
        for ns in namespaces.iter().filter(|ns| !ns.is_empty()) {
            let (v, _) = fetch(&s, &format!("/api/v1/releases?namespace={ns}")).await;
            let got = strings(&v, "releases");
            assert_sorted_unique(&got, "releases");
            let want: Vec<String> = t
                .objects
                .iter()
                .filter(|(_, o)| o.namespace == *ns)
                .filter_map(|(u, _)| t.release_of(u).map(|(_, n)| n.clone()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(got, want, "releases with a member in {ns}");
        }
    }
    // The demo's same-named release is listed once, and under both of its namespaces.
    let (s, _) = serve_demo().await;
    for ns in [names::PROBLEM_NAMESPACE, names::BIG_NAMESPACE] {
        let (v, _) = fetch(&s, &format!("/api/v1/releases?namespace={ns}")).await;
        assert!(
            strings(&v, "releases").contains(&names::HELM_SHARED_RELEASE.to_string()),
            "{ns}"
        );
    }
    let (v, _) = fetch(&s, "/api/v1/releases").await;
    let all = strings(&v, "releases");
    assert_eq!(
        all.iter()
            .filter(|n| *n == names::HELM_SHARED_RELEASE)
            .count(),
        1
    );
}

/// `GET /api/v1/charts[?namespace=NS]`: the distinct `helm.sh/chart` labels, sorted; with a
/// namespace, those of its objects.
#[tokio::test]
async fn charts_are_distinct_chart_labels_sorted_and_filtered_by_namespace() {
    for (s, t) in [
        serve_demo().await,
        serve_file(DUMP).await,
        serve_file(BOUTIQUE).await,
    ] {
        let charts = |ns: Option<&str>| -> Vec<String> {
            t.objects
                .iter()
                .filter(|(_, o)| ns.is_none_or(|n| o.namespace == n))
                .filter_map(|(u, _)| t.chart_of(u).map(str::to_string))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        let (v, _) = fetch(&s, "/api/v1/charts").await;
        let got = strings(&v, "charts");
        assert_sorted_unique(&got, "charts");
        assert_eq!(got, charts(None));
        let namespaces: BTreeSet<&str> = t.objects.values().map(|o| o.namespace.as_str()).collect();
        for ns in namespaces.iter().filter(|ns| !ns.is_empty()) {
            let (v, _) = fetch(&s, &format!("/api/v1/charts?namespace={ns}")).await;
            let got = strings(&v, "charts");
            assert_sorted_unique(&got, "charts");
            assert_eq!(got, charts(Some(ns)), "charts of {ns}");
        }
    }
    let (s, _) = serve_demo().await;
    let (v, _) = fetch(
        &s,
        &format!("/api/v1/charts?namespace={}", names::PROBLEM_NAMESPACE),
    )
    .await;
    assert!(
        !strings(&v, "charts").is_empty(),
        "the problem namespace has Helm charts"
    );
}

/// `/api/v1/graph` and `/api/v1/resources` on the demo cluster, in every scope: no parameter,
/// each namespace, the tricky releases with and without their namespace, every other release.
#[tokio::test]
async fn demo_graph_and_resources_follow_the_contract_in_every_scope() {
    let (s, t) = serve_demo().await;
    for q in demo_queries(&t) {
        check_scope(&s, &t, &q).await;
    }
}

/// The same on a manifest fixture (no uids, no timestamps, no status) and on a kubectl dump.
#[tokio::test]
async fn manifest_and_dump_graphs_follow_the_contract_in_every_scope() {
    for rel in [BOUTIQUE, DUMP] {
        let (s, t) = serve_file(rel).await;
        let mut queries = vec![String::new()];
        let namespaces: BTreeSet<&str> = t.objects.values().map(|o| o.namespace.as_str()).collect();
        queries.extend(
            namespaces
                .iter()
                .filter(|ns| !ns.is_empty())
                .map(|ns| format!("?namespace={ns}")),
        );
        for (rns, rname) in t.releases.values().collect::<BTreeSet<_>>() {
            queries.push(format!("?release={rname}"));
            if !rns.is_empty() {
                queries.push(format!("?release={rname}&namespace={rns}"));
            }
        }
        for q in &queries {
            let got = check_scope(&s, &t, q).await;
            if q.is_empty() {
                assert_eq!(got.len(), t.objects.len(), "{rel}: everything");
            }
        }
    }
    // The dump's releases reach what their members own and use.
    let (s, t) = serve_file(DUMP).await;
    let got = check_scope(&s, &t, "?release=checkout&namespace=shop").await;
    let kinds: BTreeSet<&str> = got.iter().map(|u| t.objects[u].kind.as_str()).collect();
    for k in [
        "Deployment",
        "ReplicaSet",
        "Pod",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
    ] {
        assert!(
            kinds.contains(k),
            "checkout release scope has a {k}: {kinds:?}"
        );
    }
}

/// `namespace=NS`: the namespace's objects plus only the cluster-scoped objects one of them
/// points at, not every cluster-scoped object.
#[tokio::test]
async fn namespace_scope_adds_only_the_cluster_objects_its_objects_point_at() {
    let (s, t) = serve_demo().await;
    let (g, _) = fetch(
        &s,
        &format!("/api/v1/graph?namespace={}", names::PROBLEM_NAMESPACE),
    )
    .await;
    let nodes = g["nodes"].as_array().unwrap();
    let inside: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n["namespace"] == names::PROBLEM_NAMESPACE)
        .map(|n| n["uid"].as_str().unwrap())
        .collect();
    let cluster: Vec<&Value> = nodes.iter().filter(|n| n["namespace"] == "").collect();
    let kinds: BTreeSet<&str> = cluster
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    for k in ["Node", "PersistentVolume", "StorageClass", "IngressClass"] {
        assert!(
            kinds.contains(k),
            "the shop namespace points at a {k}: {kinds:?}"
        );
    }
    assert!(
        !kinds.contains("Namespace"),
        "Namespace objects are not pointed at"
    );
    for n in &cluster {
        let uid = n["uid"].as_str().unwrap();
        assert!(
            t.edges
                .iter()
                .any(|(a, b, _)| b == uid && inside.contains(a.as_str())),
            "{} is cluster-scoped and not the target of an edge from the namespace",
            t.key(uid)
        );
    }
    let all_cluster = t
        .objects
        .values()
        .filter(|o| o.namespace.is_empty())
        .count();
    assert!(
        cluster.len() < all_cluster,
        "not every cluster-scoped object ({} of {all_cluster})",
        cluster.len()
    );
    // Every Pod's Node, no other Node.
    let node_count = cluster.iter().filter(|n| n["kind"] == "Node").count();
    let nodes_used: BTreeSet<&str> = t
        .objects
        .values()
        .filter(|o| o.kind == "Pod" && o.namespace == names::PROBLEM_NAMESPACE)
        .filter_map(|o| str_at(&o.raw, "/spec/nodeName"))
        .collect();
    assert_eq!(node_count, nodes_used.len());
}

/// `release=NAME`: members, what they own, their claims and volumes, what their Pods use; the
/// namespace picks one of two same-named releases.
#[tokio::test]
async fn release_scope_follows_members_and_the_namespace_disambiguates() {
    let (s, t) = serve_demo().await;
    let shared = names::HELM_SHARED_RELEASE;
    let both = check_scope(&s, &t, &format!("?release={shared}")).await;
    let in_shop = check_scope(
        &s,
        &t,
        &format!("?release={shared}&namespace={}", names::PROBLEM_NAMESPACE),
    )
    .await;
    let in_big = check_scope(
        &s,
        &t,
        &format!("?release={shared}&namespace={}", names::BIG_NAMESPACE),
    )
    .await;
    assert!(!in_shop.is_empty() && !in_big.is_empty());
    let ns_of = |set: &BTreeSet<String>| -> BTreeSet<String> {
        set.iter()
            .map(|u| t.objects[u].namespace.clone())
            .filter(|n| !n.is_empty())
            .collect()
    };
    assert_eq!(
        ns_of(&in_shop),
        BTreeSet::from([names::PROBLEM_NAMESPACE.to_string()])
    );
    assert_eq!(
        ns_of(&in_big),
        BTreeSet::from([names::BIG_NAMESPACE.to_string()])
    );
    // Without the namespace the name means both releases (an assumption: the contract only says
    // the namespace disambiguates).
    let union: BTreeSet<String> = in_shop.union(&in_big).cloned().collect();
    assert_eq!(both, union);
    // The StatefulSet's claims and their volumes come along.
    let kinds: BTreeSet<&str> = in_shop.iter().map(|u| t.objects[u].kind.as_str()).collect();
    for k in [
        "StatefulSet",
        "Pod",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "Secret",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(k), "redis in shop has a {k}: {kinds:?}");
    }
    // The release that owns cluster-scoped objects.
    let cluster = check_scope(&s, &t, &format!("?release={}", names::HELM_CLUSTER_RELEASE)).await;
    assert!(
        cluster.iter().any(|u| t.objects[u].namespace.is_empty()),
        "ingress-nginx has cluster-scoped members"
    );
    // Unknown names: nothing, not an error.
    let (g, _) = fetch(&s, "/api/v1/graph?release=no-such-release").await;
    assert_eq!(g, json!({"nodes": [], "edges": []}));
    let (r, _) = fetch(&s, "/api/v1/resources?release=no-such-release").await;
    assert_eq!(r, json!([]));
}

/// Edge types: `targets` is sent as `selects`, `claims` as `mounts`; `uses-class` and `runs-on`
/// as they are; `member-of` never; no HelmRelease node anywhere.
#[tokio::test]
async fn edges_are_renamed_and_member_of_and_release_nodes_are_never_sent() {
    let (s, t) = serve_demo().await;
    let (g, _) = fetch(&s, "/api/v1/graph").await;
    let nodes = g["nodes"].as_array().unwrap();
    assert!(nodes.iter().all(|n| n["kind"] != "HelmRelease"));
    assert_eq!(nodes.len(), t.objects.len(), "no parameter: every object");
    let edges: Vec<(String, String, String)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(edge_triple)
        .collect();
    let kind = |u: &str| t.objects[u].kind.as_str();
    let has = |from: &str, ty: &str, to: &str| {
        edges
            .iter()
            .any(|(a, b, x)| x == ty && kind(a) == from && kind(b) == to)
    };
    assert!(
        has("EndpointSlice", "selects", "Pod"),
        "targets sent as selects"
    );
    assert!(
        has("StatefulSet", "mounts", "PersistentVolumeClaim"),
        "claims sent as mounts"
    );
    assert!(has("Pod", "runs-on", "Node"));
    assert!(has("PersistentVolumeClaim", "uses-class", "StorageClass"));
    assert!(has("Ingress", "uses-class", "IngressClass"));
    for bad in ["targets", "claims", "member-of"] {
        assert!(edges.iter().all(|(_, _, ty)| ty != bad), "{bad} sent");
    }
    // Every canonical edge but member-of is there, under its v1 name.
    let all: BTreeSet<String> = t.objects.keys().cloned().collect();
    assert_eq!(edges, t.v1_edges(&all));
    let (r, _) = fetch(&s, "/api/v1/resources").await;
    assert!(
        r.as_array()
            .unwrap()
            .iter()
            .all(|x| x["kind"] != "HelmRelease")
    );
}

/// Sorted lists, and two identical requests give byte-identical bodies.
#[tokio::test]
async fn responses_are_sorted_and_repeat_byte_for_byte() {
    let (s, t) = serve_demo().await;
    let mut paths: Vec<String> = vec![
        "/health".into(),
        "/api/v1/namespaces".into(),
        "/api/v1/releases".into(),
        "/api/v1/charts".into(),
        format!("/api/v1/releases?namespace={}", names::PROBLEM_NAMESPACE),
        format!("/api/v1/charts?namespace={}", names::PROBLEM_NAMESPACE),
    ];
    for q in demo_queries(&t).iter().take(12) {
        paths.push(format!("/api/v1/graph{q}"));
        paths.push(format!("/api/v1/resources{q}"));
    }
    for q in [
        format!("?release={}", names::HELM_SHARED_RELEASE),
        format!(
            "?release={}&namespace={}",
            names::HELM_SHARED_RELEASE,
            names::BIG_NAMESPACE
        ),
    ] {
        paths.push(format!("/api/v1/graph{q}"));
        paths.push(format!("/api/v1/resources{q}"));
    }
    for p in &paths {
        // `age` follows the wall clock, so a unit can tick over between two requests: bodies must
        // be equal without their ages every time, and byte-identical in one of three tries.
        let mut identical = false;
        for _ in 0..3 {
            let a = s.get(p).await;
            let b = s.get(p).await;
            assert_eq!((a.status, b.status), (200, 200), "{p}");
            assert_eq!(
                without_ages(a.json()),
                without_ages(b.json()),
                "{p}: bodies differ"
            );
            if a.body == b.body {
                identical = true;
                break;
            }
        }
        assert!(
            identical,
            "{p}: two identical requests never gave identical bytes"
        );
        if p.starts_with("/api/v1/graph") {
            let v = s.ok(p).await;
            let edges: Vec<(String, String, String)> = v["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(edge_triple)
                .collect();
            for w in edges.windows(2) {
                assert!(
                    w[0] < w[1],
                    "{p}: edges not sorted by (from, to, type): {w:?}"
                );
            }
            assert_nodes_sorted(v["nodes"].as_array().unwrap(), p);
        } else if p.starts_with("/api/v1/resources") {
            assert_nodes_sorted(s.ok(p).await.as_array().unwrap(), p);
        } else if p.starts_with("/api/v1/") {
            assert_sorted_unique(&strings(&s.ok(p).await, p), p);
        }
    }
}

fn without_ages(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("age");
                // /health's ingest check reports the age of the last change.
                m.remove("observedValue");
                m.remove("details");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Hand-built objects with values the fixtures do not have: several containers and an init
/// container, restarts in more than one container, generic ephemeral volumes, ages in every unit,
/// an object without a creation time.
#[tokio::test]
async fn metadata_of_hand_built_pods_workloads_and_volumes() {
    let now = now_unix();
    // RFC 3339 of `now - ago`.
    let at = |ago: i64| -> String {
        astrolabe::model::Time::from_unix(now - ago)
            .expect("after 1970")
            .to_rfc3339()
    };
    assert_eq!(
        parse_rfc3339(&at(0)),
        Some(now),
        "the test's own clock arithmetic"
    );
    let pod_uid = "0b0e5a1c-1111-4a1b-9c1d-000000000001";
    let claim_uid = "0b0e5a1c-1111-4a1b-9c1d-000000000002";
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000010"}}),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "multi", "namespace": "hb", "uid": pod_uid, "creationTimestamp": at(45),
                         "labels": {"app": "multi"}},
            "spec": {
                "nodeName": "n1", "serviceAccountName": "runner",
                "imagePullSecrets": [{"name": "registry"}],
                "initContainers": [{"name": "init", "image": "busybox:1.36",
                                    "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
                "containers": [
                    {"name": "app", "image": "ghcr.io/acme/app:1.0",
                     "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "k"}}}]},
                    {"name": "sidecar", "image": "envoyproxy/envoy:v1.30"}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "cfg", "configMap": {"name": "app-config"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [{"name": "init", "ready": true, "restartCount": 0}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 2},
                    {"name": "sidecar", "ready": true, "restartCount": 3}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "hb", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000003",
                         "creationTimestamp": at(12 * 60 + 5)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:2"}, {"name": "b", "image": "b:1"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2, "availableReplicas": 1, "updatedReplicas": 3}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "hb", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000004",
                         "creationTimestamp": at(3 * 3600 + 30)},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}}]},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "www-db-0", "namespace": "hb", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000005"},
            "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "hb", "uid": claim_uid, "creationTimestamp": at(3 * 3600 + 30)},
            "spec": {"volumeName": "pv-data", "storageClassName": "standard"}, "status": {"phase": "Bound"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-data", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000006",
                         "creationTimestamp": at(20 * 86_400 + 30)},
            "spec": {"storageClassName": "standard",
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "hb",
                                  "name": "data", "uid": claim_uid}},
            "status": {"phase": "Bound"}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "standard", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000007"}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "multi", "namespace": "hb", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000008"},
            "spec": {"selector": {"app": "multi"}, "clusterIP": "10.0.0.7"}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "multi-abcde", "namespace": "hb", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000009",
                         "labels": {"kubernetes.io/service-name": "multi"}},
            "endpoints": [{"addresses": ["10.1.0.5"], "targetRef": {"kind": "Pod", "name": "multi", "namespace": "hb", "uid": pod_uid}}]}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": "hb", "uid": "0b0e5a1c-1111-4a1b-9c1d-000000000011"}}),
    ];
    let p = Projector::default();
    let mut g = Graph::new();
    for v in &objects {
        g.apply(astrolabe::graph::Change::Upsert(std::sync::Arc::new(
            p.project(v).expect("valid object"),
        )));
    }
    let t = Truth::new(&g, objects);
    let s = Server::fixed(g).await;
    check_scope(&s, &t, "").await;
    check_scope(&s, &t, "?namespace=hb").await;

    let (graph, clock) = fetch(&s, "/api/v1/graph").await;
    let node = |name: &str| -> Value {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("node {name}"))
            .clone()
    };
    let md = |name: &str| node(name)["metadata"].clone();
    let pod = md("multi");
    assert_eq!(
        pod["image"], "ghcr.io/acme/app:1.0",
        "first container, not the init container"
    );
    assert_eq!(pod["restartCount"], 5, "summed over the containers");
    assert_eq!(pod["nodeName"], "n1");
    assert_eq!(pod["serviceAccountName"], "runner");
    assert_eq!(
        str_set(&pod["mountedPVCs"], "mountedPVCs"),
        BTreeSet::from(["data".into(), "multi-scratch".into()])
    );
    assert_eq!(
        str_set(&pod["usedConfigMaps"], "usedConfigMaps"),
        BTreeSet::from(["app-config".into(), "init-env".into()])
    );
    assert_eq!(
        str_set(&pod["usedSecrets"], "usedSecrets"),
        BTreeSet::from(["app-secret".into(), "registry".into()])
    );
    assert!(
        clock.ages(now - 45).contains(pod["age"].as_str().unwrap()),
        "{}",
        pod["age"]
    );
    assert_eq!(
        md("web")["replicas"],
        json!({"desired": 3, "current": 3, "ready": 2, "available": 1})
    );
    assert_eq!(md("web")["image"], "web:2");
    assert_eq!(md("web")["age"], "12m");
    assert_eq!(md("db")["age"], "3h");
    assert_eq!(md("data")["volumeName"], "pv-data");
    assert_eq!(
        md("pv-data")["claimRef"],
        json!({"kind": "PersistentVolumeClaim", "namespace": "hb", "name": "data", "uid": claim_uid})
    );
    assert_eq!(md("pv-data")["age"], "20d");
    assert_eq!(
        str_set(&md("multi-abcde")["targetPods"], "targetPods"),
        BTreeSet::from(["multi".into()])
    );
    assert!(node("www-db-0").get("chart").is_none() && node("www-db-0").get("release").is_none());

    // Edges by names: the renames and the pass-through types.
    let uid_name: BTreeMap<String, String> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["uid"].as_str().unwrap().to_string(),
                n["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let named: BTreeSet<(String, String, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(edge_triple)
        .map(|(a, b, ty)| (uid_name[&a].clone(), ty, uid_name[&b].clone()))
        .collect();
    for (a, ty, b) in [
        ("multi-abcde", "selects", "multi"),
        ("multi", "selects", "multi"),
        ("multi", "endpoints", "multi-abcde"),
        ("db", "mounts", "www-db-0"),
        ("multi", "mounts", "data"),
        ("data", "binds", "pv-data"),
        ("data", "uses-class", "standard"),
        ("pv-data", "uses-class", "standard"),
        ("multi", "runs-on", "n1"),
        ("multi", "uses-configmap", "app-config"),
    ] {
        assert!(
            named.contains(&(a.to_string(), ty.to_string(), b.to_string())),
            "edge {a} -{ty}-> {b} in {named:?}"
        );
    }

    // Resources: the same values, and "" for an unknown creation time.
    let (list, _) = fetch(&s, "/api/v1/resources").await;
    let res = |name: &str| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("resource {name}"))
            .clone()
    };
    assert_eq!(res("multi")["restartCount"], 5);
    assert_eq!(res("multi")["image"], "ghcr.io/acme/app:1.0");
    assert_eq!(
        (
            res("app-config")["age"].clone(),
            res("app-config")["creationTimestamp"].clone()
        ),
        (json!(""), json!(""))
    );
    assert_eq!(
        (
            res("app-config")["chart"].clone(),
            res("app-config")["release"].clone()
        ),
        (json!(""), json!(""))
    );
    assert_eq!(res("web")["age"], "12m");
}

/// Errors: a non-GET method gets 405, an unknown path under `/api/v1` 404, a bad parameter 400,
/// always with a JSON body `{"error": "<string>"}`.
#[tokio::test]
async fn errors_are_405_404_400_with_a_json_error_string() {
    let (s, _) = serve_demo().await;
    let v1_paths = [
        "/api/v1/namespaces",
        "/api/v1/releases",
        "/api/v1/charts",
        "/api/v1/resources",
        "/api/v1/graph",
        "/api/v1/graph?namespace=shop",
        "/api/v1/resources?release=redis",
    ];
    for path in v1_paths {
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
            reqwest::Method::OPTIONS,
        ] {
            let r = s.request(method.clone(), path).await;
            assert_v1_error(&r, 405, &format!("{method} {path}"));
        }
    }
    for path in [
        "/api/v1",
        "/api/v1/",
        "/api/v1/graph/",
        "/api/v1/nope",
        "/api/v1/graphs",
        "/api/v1/Graph",
        "/api/v1/graph/extra",
        "/api/v1/resources/some-uid",
        "/api/v1/namespaces/shop",
        "/api/v1/releases/redis?namespace=shop",
    ] {
        let r = s.get(path).await;
        assert_v1_error(&r, 404, path);
    }
    // An unknown path is unknown whatever the method.
    let r = s.request(reqwest::Method::POST, "/api/v1/nope").await;
    assert_v1_error(&r, 404, "POST /api/v1/nope");
    let long = "a".repeat(64);
    let mut bad: Vec<String> = Vec::new();
    for endpoint in ["releases", "charts", "resources", "graph"] {
        for ns in [
            "Not_Valid!",
            "-shop",
            "shop-",
            "Shop",
            "sh%20op",
            long.as_str(),
            "sh.op",
        ] {
            bad.push(format!("/api/v1/{endpoint}?namespace={ns}"));
        }
    }
    for endpoint in ["resources", "graph"] {
        for rel in ["Not_Valid!", "Redis", "red%20is", "re/dis"] {
            bad.push(format!("/api/v1/{endpoint}?release={rel}"));
        }
        bad.push(format!(
            "/api/v1/{endpoint}?release=redis&namespace=Not_Valid!"
        ));
        bad.push(format!("/api/v1/{endpoint}?release={}", "r".repeat(54)));
        // A single-valued parameter given twice is ambiguous: an error, not a silent pick.
        bad.push(format!(
            "/api/v1/{endpoint}?namespace=shop&namespace=marketplace"
        ));
        bad.push(format!("/api/v1/{endpoint}?release=redis&release=checkout"));
    }
    for path in &bad {
        let r = s.get(path).await;
        assert_v1_error(&r, 400, path);
    }
}

/// `/health` is a contract endpoint too: a non-GET method gets 405 with `{"error": "..."}`.
#[tokio::test]
async fn health_answers_other_methods_with_405_and_the_contract_error_body() {
    let (s, _) = serve_demo().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = s.request(method.clone(), "/health").await;
        assert_v1_error(&r, 405, &format!("{method} /health"));
    }
}

fn assert_v1_error(r: &support::http::Reply, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_json_type(r, what);
    let v = r.json();
    let m = obj(&v, what);
    assert_eq!(m.len(), 1, "{what}: error body has other fields: {v}");
    let e = field_str(m, "error", what);
    assert!(!e.is_empty(), "{what}: empty error message");
}

/// What the contract leaves open, answered as the old server's clients expect: unknown
/// parameters are ignored, an empty value is no value, an unknown namespace or release is an
/// empty answer rather than an error, and HEAD is served like GET.
#[tokio::test]
async fn unknown_and_empty_parameters_and_unknown_names() {
    let (s, _) = serve_demo().await;
    for endpoint in ["namespaces", "releases", "charts", "resources", "graph"] {
        let base = s.get(&format!("/api/v1/{endpoint}")).await;
        let with_unknown = s.get(&format!("/api/v1/{endpoint}?foo=bar&limit=3")).await;
        assert_eq!(
            with_unknown.status, 200,
            "{endpoint}: unknown parameters are ignored"
        );
        assert_eq!(
            without_ages(with_unknown.json()),
            without_ages(base.json()),
            "{endpoint}"
        );
    }
    for endpoint in ["releases", "charts", "resources", "graph"] {
        let base = s.get(&format!("/api/v1/{endpoint}")).await;
        let empty = s.get(&format!("/api/v1/{endpoint}?namespace=")).await;
        assert_eq!(empty.status, 200, "{endpoint}?namespace=");
        assert_eq!(
            without_ages(empty.json()),
            without_ages(base.json()),
            "{endpoint}?namespace="
        );
    }
    for (path, want) in [
        ("/api/v1/releases?namespace=no-such-namespace", json!([])),
        ("/api/v1/charts?namespace=no-such-namespace", json!([])),
        ("/api/v1/resources?namespace=no-such-namespace", json!([])),
        (
            "/api/v1/graph?namespace=no-such-namespace",
            json!({"nodes": [], "edges": []}),
        ),
        (
            "/api/v1/graph?release=redis&namespace=no-such-namespace",
            json!({"nodes": [], "edges": []}),
        ),
    ] {
        assert_eq!(fetch(&s, path).await.0, want, "{path}");
    }
    let r = s.request(reqwest::Method::HEAD, "/api/v1/namespaces").await;
    assert_eq!(r.status, 200, "HEAD is GET without a body");
}

/// The old server served stale data; this one answers from the live graph: a change applied by
/// the writer shows in the next response.
#[tokio::test]
async fn answers_follow_the_live_graph() {
    use astrolabe::graph::Change;
    use std::sync::Arc;
    let p = Projector::default();
    let pod = |name: &str| {
        Arc::new(
            p.project(&json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "live", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "c", "image": "app:1"}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0}]}}))
            .expect("valid pod"),
        )
    };
    let mut g = Graph::new();
    g.apply(Change::Upsert(pod("a")));
    g.apply(Change::Upsert(pod("b")));
    let (handle, tx, writer) =
        astrolabe::ingest::start_with(g, astrolabe::ingest::Options::default());
    let s = Server::start(handle).await;
    let names_of = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names_of(&fetch(&s, "/api/v1/resources?namespace=live").await.0),
        ["a", "b"]
    );
    tx.change(Change::Delete {
        key: support::key("Pod/live/a"),
        uid: None,
    });
    tx.change(Change::Upsert(pod("c")));
    drop(tx);
    // The writer stops once its sender is gone; joining it means every change is applied.
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("writer joined");
    assert_eq!(
        names_of(&fetch(&s, "/api/v1/resources?namespace=live").await.0),
        ["b", "c"]
    );
    let (g, _) = fetch(&s, "/api/v1/graph?namespace=live").await;
    assert_eq!(names_of(&g["nodes"]), ["b", "c"]);
}
