//! A fake Kubernetes API server for tests: the list/watch protocol that `kube::runtime::watcher`
//! speaks, served over plain HTTP on a free loopback port by axum on a runtime of its own thread,
//! with fault injection driven from the test.
//!
//! What it implements, as the real API server does:
//! - **Discovery**: `/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}`, with a
//!   configurable set of served group/versions ([`Served::latest`], or [`Served::v1_20`], which
//!   lacks `autoscaling/v2`, `policy/v1`, `discovery.k8s.io/v1` and `batch/v1` CronJob), in the
//!   real server's form (entries sorted by name, `storageVersionHash`, `categories`, no
//!   `apiVersion` at the top of `/api/v1`; v1.20's empty `singularName`s).
//! - **Store**: objects per resource and a global resourceVersion counter; the test creates,
//!   updates and deletes with [`FakeKube::apply`] and [`FakeKube::delete`], which set
//!   `metadata.uid`, `resourceVersion`, `creationTimestamp` (and a `managedFields` entry).
//! - **List**: namespaced and all-namespace paths, `labelSelector` (`=`, `==`, `!=`, `in`,
//!   `notin`, `key`, `!key`), `fieldSelector` on `metadata.name`/`metadata.namespace`,
//!   `limit`/`continue` pagination over a consistent snapshot (the continue token names the
//!   first page's resourceVersion; once compacted past it the server answers 410 Expired),
//!   `metadata.resourceVersion`, `remainingItemCount` (not on v1.20's metadata-only lists);
//!   items carry no `apiVersion`/`kind`, as built-in lists do.
//! - **Metadata-only** responses when `Accept` asks for `as=PartialObjectMetadataList` (lists) or
//!   `as=PartialObjectMetadata` (watches, gets): only `apiVersion`/`kind`/`metadata`, never a
//!   Secret's data. An `Accept` offering no acceptable representation gets 406.
//! - **Watch** (`watch=true` or `watch=1`): chunked newline-delimited JSON events
//!   (ADDED/MODIFIED/DELETED/BOOKMARK/ERROR) replayed from an event history after the given
//!   resourceVersion, label-selector transitions as ADDED/DELETED (as the watch cache does),
//!   BOOKMARKs when `allowWatchBookmarks=true` (as v1.20: at the version of the kind's last
//!   change, only once that is newer than the watch's start, the object the kind's empty value),
//!   `sendInitialEvents`, `timeoutSeconds`; a
//!   resourceVersion older than the compaction point gets the real 410 ERROR event
//!   (`too old resource version: X (Y)`, reason `Expired`), and so does an open watch that falls
//!   behind a compaction.
//! - **Faults**: drop every open watch; compact the history; an atomic "outage" (drop watches,
//!   change the store, optionally compact, all at once, so no watch sees the changes as events);
//!   the next N lists of a kind answer 429 (with `Retry-After`) or 500; the next N continued
//!   lists of a kind answer 410 Expired; 403 for a kind; every watch request failing with a
//!   code; a delay before each watch event; another set of served group/versions at run time.
//! - **Observation**: a log of every request (kind, verb, namespace, query, Accept), counts per
//!   kind and verb, how many full (not metadata-only) responses a kind got, open watches.
//!
//! Authentication is a bearer token ([`TOKEN`]); anything else gets 401.
#![allow(dead_code, unreachable_pub)]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// The bearer token the fake accepts.
pub const TOKEN: &str = "fake-kube-token";

/// A resource the fake knows: its group, kind, plural and scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    pub group: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Whether it has a `/status` subresource.
    pub status: bool,
}

const fn def(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
) -> ResourceDef {
    ResourceDef {
        group,
        kind,
        plural,
        singular: "",
        namespaced,
        short_names,
        status,
    }
}

/// Every resource the fake can store (which version serves it is [`Served`]'s business).
pub const RESOURCES: &[ResourceDef] = &[
    def("", "Namespace", "namespaces", false, &["ns"], true),
    def("", "Node", "nodes", false, &["no"], true),
    def(
        "",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        true,
    ),
    def("", "Pod", "pods", true, &["po"], true),
    def("", "Service", "services", true, &["svc"], true),
    def("", "ConfigMap", "configmaps", true, &["cm"], false),
    def("", "Secret", "secrets", true, &[], false),
    def(
        "",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
    ),
    def(
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
    ),
    def("", "Endpoints", "endpoints", true, &["ep"], false),
    def("", "Event", "events", true, &["ev"], false),
    def(
        "storage.k8s.io",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        false,
    ),
    def(
        "networking.k8s.io",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
        false,
    ),
    def(
        "networking.k8s.io",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        true,
    ),
    def(
        "networking.k8s.io",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        false,
    ),
    def(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        false,
    ),
    def("apps", "Deployment", "deployments", true, &["deploy"], true),
    def("apps", "ReplicaSet", "replicasets", true, &["rs"], true),
    def("apps", "StatefulSet", "statefulsets", true, &["sts"], true),
    def("apps", "DaemonSet", "daemonsets", true, &["ds"], true),
    def(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        false,
    ),
    def("batch", "Job", "jobs", true, &[], true),
    def("batch", "CronJob", "cronjobs", true, &["cj"], true),
    def(
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        true,
    ),
    def(
        "policy",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        true,
    ),
    def("coordination.k8s.io", "Lease", "leases", true, &[], false),
];

/// The resource of a kind name (every kind above is unique by name).
pub fn resource(kind: &str) -> &'static ResourceDef {
    RESOURCES
        .iter()
        .find(|d| d.kind == kind)
        .unwrap_or_else(|| panic!("the fake knows no kind {kind}"))
}

/// Which group/versions the fake serves, and which kinds each one offers. The first version
/// listed for a group is its preferred version.
#[derive(Clone, Debug)]
pub struct Served {
    pub git_version: &'static str,
    pub versions: Vec<(&'static str, &'static str, Vec<&'static str>)>,
}

impl Served {
    /// A current API server: every kind at the version Astrolabe watches.
    pub fn latest() -> Served {
        Served {
            git_version: "v1.31.0",
            versions: vec![
                (
                    "",
                    "v1",
                    vec![
                        "Namespace",
                        "Node",
                        "PersistentVolume",
                        "Pod",
                        "Service",
                        "ConfigMap",
                        "Secret",
                        "ServiceAccount",
                        "PersistentVolumeClaim",
                        "Endpoints",
                        "Event",
                    ],
                ),
                (
                    "apps",
                    "v1",
                    vec![
                        "Deployment",
                        "ReplicaSet",
                        "StatefulSet",
                        "DaemonSet",
                        "ControllerRevision",
                    ],
                ),
                ("batch", "v1", vec!["Job", "CronJob"]),
                ("autoscaling", "v2", vec!["HorizontalPodAutoscaler"]),
                ("autoscaling", "v1", vec!["HorizontalPodAutoscaler"]),
                ("policy", "v1", vec!["PodDisruptionBudget"]),
                (
                    "networking.k8s.io",
                    "v1",
                    vec!["Ingress", "IngressClass", "NetworkPolicy"],
                ),
                ("discovery.k8s.io", "v1", vec!["EndpointSlice"]),
                ("storage.k8s.io", "v1", vec!["StorageClass"]),
                ("coordination.k8s.io", "v1", vec!["Lease"]),
            ],
        }
    }

    /// Kubernetes v1.20's discovery: no `autoscaling/v2`, `policy/v1`, `discovery.k8s.io/v1`,
    /// and CronJob only in `batch/v1beta1`.
    pub fn v1_20() -> Served {
        Served {
            git_version: "v1.20.2",
            versions: vec![
                (
                    "",
                    "v1",
                    vec![
                        "Namespace",
                        "Node",
                        "PersistentVolume",
                        "Pod",
                        "Service",
                        "ConfigMap",
                        "Secret",
                        "ServiceAccount",
                        "PersistentVolumeClaim",
                        "Endpoints",
                        "Event",
                    ],
                ),
                (
                    "apps",
                    "v1",
                    vec![
                        "Deployment",
                        "ReplicaSet",
                        "StatefulSet",
                        "DaemonSet",
                        "ControllerRevision",
                    ],
                ),
                ("batch", "v1", vec!["Job"]),
                ("batch", "v1beta1", vec!["CronJob"]),
                ("autoscaling", "v1", vec!["HorizontalPodAutoscaler"]),
                ("autoscaling", "v2beta1", vec!["HorizontalPodAutoscaler"]),
                ("autoscaling", "v2beta2", vec!["HorizontalPodAutoscaler"]),
                ("policy", "v1beta1", vec!["PodDisruptionBudget"]),
                (
                    "networking.k8s.io",
                    "v1",
                    vec!["Ingress", "IngressClass", "NetworkPolicy"],
                ),
                (
                    "networking.k8s.io",
                    "v1beta1",
                    vec!["Ingress", "IngressClass"],
                ),
                ("discovery.k8s.io", "v1beta1", vec!["EndpointSlice"]),
                ("storage.k8s.io", "v1", vec!["StorageClass"]),
                ("storage.k8s.io", "v1beta1", vec!["StorageClass"]),
                ("coordination.k8s.io", "v1", vec!["Lease"]),
            ],
        }
    }

    fn groups(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (g, _, _) in &self.versions {
            if !out.contains(g) {
                out.push(g);
            }
        }
        out
    }

    fn versions_of(&self, group: &str) -> Vec<&'static str> {
        self.versions
            .iter()
            .filter(|(g, _, _)| *g == group)
            .map(|(_, v, _)| *v)
            .collect()
    }

    /// Whether this is a v1.20 server, whose responses differ from current ones in small ways
    /// (recorded in `tests/fixtures/kube-golden`): metadata-only lists carry no
    /// `remainingItemCount`, discovery gives every `singularName` as `""` and Services no
    /// `deletecollection` verb.
    fn is_v1_20(&self) -> bool {
        self.git_version.starts_with("v1.20.")
    }

    fn kinds_at(&self, group: &str, version: &str) -> Option<&[&'static str]> {
        self.versions
            .iter()
            .find(|(g, v, _)| *g == group && *v == version)
            .map(|(_, _, k)| k.as_slice())
    }
}

/// One request the fake answered (discovery included, with kind "").
#[derive(Clone, Debug)]
pub struct Recorded {
    pub kind: &'static str,
    /// `list`, `watch`, `get`, `discovery`, or the method for anything else.
    pub verb: &'static str,
    pub namespace: Option<String>,
    pub query: String,
    pub accept: String,
    pub status: u16,
    /// Whether whole objects (not metadata only) were sent.
    pub full_objects: bool,
}

/// One entry of the event history.
#[derive(Clone, Debug)]
struct HistEvent {
    rv: u64,
    kind: &'static str,
    ty: &'static str,
    /// The object after the change (for DELETED: the last state, at the deletion's version).
    obj: Value,
    /// The object before the change (MODIFIED, DELETED).
    old: Option<Value>,
}

type Key = (String, String);

#[derive(Default)]
struct Faults {
    /// kind -> (code, remaining).
    list_failures: HashMap<&'static str, (u16, u32)>,
    /// kind -> how many continued lists still answer 410 Expired.
    expired_continues: HashMap<&'static str, u32>,
    forbidden: HashSet<&'static str>,
    watch_failure: Option<u16>,
    discovery_failure: Option<u16>,
    event_delay: Duration,
}

struct Inner {
    served: Served,
    rv: u64,
    objects: HashMap<&'static str, BTreeMap<Key, Value>>,
    history: Vec<HistEvent>,
    /// Events at or below this version are gone from the history.
    compacted: u64,
    /// Bumped to end every open watch.
    epoch: u64,
    faults: Faults,
    bookmark_interval: Duration,
    /// kind -> the resourceVersion of its last change (what the real server's watch cache of
    /// the kind has last seen: BOOKMARKs carry it).
    last_change: HashMap<&'static str, u64>,
    log: Vec<Recorded>,
    open_watches: usize,
    uids: u64,
    port: u16,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped (after the lock is released) on every change, so watches wake up.
    tick: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn wake(&self) {
        self.tick.send_modify(|t| *t = t.wrapping_add(1));
    }
}

/// A running fake API server; stopped on drop.
pub struct FakeKube {
    shared: Arc<Shared>,
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKube {
    /// A current API server (see [`Served::latest`]).
    pub fn start() -> FakeKube {
        FakeKube::start_with(Served::latest())
    }

    /// An API server serving `served`.
    pub fn start_with(served: Served) -> FakeKube {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tick, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                served,
                rv: 100,
                objects: HashMap::new(),
                history: Vec::new(),
                compacted: 100,
                epoch: 0,
                faults: Faults::default(),
                bookmark_interval: Duration::from_secs(2),
                last_change: HashMap::new(),
                log: Vec::new(),
                open_watches: 0,
                uids: 0,
                port,
            }),
            tick,
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-kube".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        r = axum::serve(listener, app) => r.unwrap(),
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .unwrap();
        FakeKube {
            shared,
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes a kubeconfig for this server (a bearer-token user) into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n\
                 current-context: fake\nusers:\n- name: tester\n  user:\n    token: {TOKEN}\n",
                self.url()
            ),
        )
        .unwrap();
        path
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let out = f(&mut self.shared.inner.lock());
        self.shared.wake();
        out
    }

    /// Creates or updates an object (by kind, namespace, name); returns it as stored, with its
    /// uid, resourceVersion and creationTimestamp.
    pub fn apply(&self, obj: Value) -> Value {
        self.with(|i| i.apply(obj))
    }

    /// Deletes an object; returns whether it existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.with(|i| i.delete(kind, namespace, name))
    }

    /// An object as stored.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let i = self.shared.inner.lock();
        i.objects
            .get(resource(kind).kind)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
            .cloned()
    }

    /// Every stored object (with `apiVersion` and `kind`).
    pub fn objects(&self) -> Vec<Value> {
        let i = self.shared.inner.lock();
        let mut out: Vec<Value> = i
            .objects
            .values()
            .flat_map(|m| m.values().cloned())
            .collect();
        out.sort_by_key(|o| o["metadata"]["uid"].as_str().unwrap_or("").to_string());
        out
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.inner.lock().rv
    }

    /// Ends every open watch (cleanly, as a server closing its streams); clients re-watch from
    /// their last resourceVersion.
    pub fn drop_watches(&self) {
        self.with(|i| i.epoch += 1);
    }

    /// Forgets the event history: a watch from an older resourceVersion gets 410 Expired, and so
    /// does a continue token of an older list.
    pub fn compact(&self) {
        self.with(Inner::compact);
    }

    /// An outage, atomically: every open watch ends, `f` changes the store, and with `compact`
    /// the history is compacted, so that no watch sees those changes as events (resuming watches
    /// get 410 and must list again). Without `compact` resuming watches replay them.
    pub fn outage(&self, compact: bool, f: impl FnOnce(&mut Txn<'_>)) {
        self.with(|i| {
            i.epoch += 1;
            f(&mut Txn(i));
            if compact {
                i.compact();
            }
        });
    }

    /// The next `n` lists of `kind` answer `code` (429 comes with `Retry-After: 1`).
    pub fn fail_lists(&self, kind: &str, code: u16, n: u32) {
        self.with(|i| {
            i.faults
                .list_failures
                .insert(resource(kind).kind, (code, n));
        });
    }

    /// The next `n` continued lists (pages after the first) of `kind` answer 410 Expired, as when
    /// the history is compacted during a paginated list.
    pub fn expire_continues(&self, kind: &str, n: u32) {
        self.with(|i| {
            i.faults.expired_continues.insert(resource(kind).kind, n);
        });
    }

    /// Serves another set of group/versions from now on (an upgrade or a downgrade); open
    /// watches are not cut.
    pub fn set_served(&self, served: Served) {
        self.with(|i| i.served = served);
    }

    /// Every watch request (of any kind) answers `code`, until `None`.
    pub fn fail_watches(&self, code: Option<u16>) {
        self.with(|i| i.faults.watch_failure = code);
    }

    /// Every discovery request (`/api`, `/apis`, a group's resource list) answers `code`, until
    /// `None`.
    pub fn fail_discovery(&self, code: Option<u16>) {
        self.with(|i| i.faults.discovery_failure = code);
    }

    /// Lists, watches and gets of `kind` answer 403 (or no longer).
    pub fn forbid(&self, kind: &str, forbidden: bool) {
        self.with(|i| {
            let k = resource(kind).kind;
            if forbidden {
                i.faults.forbidden.insert(k);
                // A watch already open is not cut by an RBAC change in the real server either.
            } else {
                i.faults.forbidden.remove(k);
            }
        });
    }

    /// A delay before each watch event is sent.
    pub fn set_event_delay(&self, d: Duration) {
        self.with(|i| i.faults.event_delay = d);
    }

    /// How often an idle watch with `allowWatchBookmarks=true` gets a BOOKMARK (default 2 s), once
    /// its kind has changed since the watch began (the real server sends one 2 s before the
    /// watch's timeout).
    pub fn set_bookmark_interval(&self, d: Duration) {
        self.with(|i| i.bookmark_interval = d);
    }

    /// Requests of `kind` with `verb` (`list`, `watch`, `get`) so far, whatever their answer.
    pub fn requests(&self, kind: &str, verb: &str) -> usize {
        let k = resource(kind).kind;
        self.shared
            .inner
            .lock()
            .log
            .iter()
            .filter(|r| r.kind == k && r.verb == verb)
            .count()
    }

    /// Successful responses that carried whole objects of `kind` (not metadata only).
    pub fn full_object_responses(&self, kind: &str) -> usize {
        let k = resource(kind).kind;
        self.shared
            .inner
            .lock()
            .log
            .iter()
            .filter(|r| r.kind == k && r.full_objects)
            .count()
    }

    /// Every request so far.
    pub fn request_log(&self) -> Vec<Recorded> {
        self.shared.inner.lock().log.clone()
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.shared.inner.lock().open_watches
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Changes made inside [`FakeKube::outage`].
pub struct Txn<'a>(&'a mut Inner);

impl Txn<'_> {
    pub fn apply(&mut self, obj: Value) -> Value {
        self.0.apply(obj)
    }

    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> bool {
        self.0.delete(kind, namespace, name)
    }
}

impl Inner {
    fn apply(&mut self, mut obj: Value) -> Value {
        let api_version = obj["apiVersion"]
            .as_str()
            .expect("the object has an apiVersion")
            .to_string();
        let kind = obj["kind"]
            .as_str()
            .expect("the object has a kind")
            .to_string();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let d = resource(&kind);
        assert_eq!(d.group, group, "{kind} is in group {:?}", d.group);
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("the object has a name")
            .to_string();
        let namespace = if d.namespaced {
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let key = (namespace.clone(), name);
        let old = self.objects.get(d.kind).and_then(|m| m.get(&key)).cloned();
        self.rv += 1;
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        if d.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        match &old {
            Some(o) => {
                meta.insert("uid".into(), o["metadata"]["uid"].clone());
                meta.insert(
                    "creationTimestamp".into(),
                    o["metadata"]["creationTimestamp"].clone(),
                );
            }
            None => {
                // The server assigns the uid: one given by the client is ignored.
                self.uids += 1;
                let uid = uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("fake-kube/{}/{}", self.port, self.uids).as_bytes(),
                );
                meta.insert("uid".into(), json!(uid.to_string()));
                meta.insert("creationTimestamp".into(), json!(rfc3339_now()));
            }
        }
        // What server-side field tracking adds to every object (Astrolabe must drop it).
        let mut fields = serde_json::Map::new();
        for f in ["data", "spec", "stringData"] {
            if obj.get(f).is_some() {
                fields.insert(format!("f:{f}"), json!({}));
            }
        }
        obj["metadata"]["managedFields"] = json!([{
            "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": api_version,
            "time": rfc3339_now(), "fieldsType": "FieldsV1", "fieldsV1": Value::Object(fields),
        }]);
        // The API server never returns stringData: it is merged into data on write.
        if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
            && let Some(sd) = sd.as_object()
        {
            let data = obj
                .as_object_mut()
                .unwrap()
                .entry("data")
                .or_insert_with(|| json!({}));
            for (k, v) in sd {
                data[k] = json!(STANDARD.encode(v.as_str().unwrap_or("")));
            }
        }
        self.objects
            .entry(d.kind)
            .or_default()
            .insert(key, obj.clone());
        self.last_change.insert(d.kind, self.rv);
        self.history.push(HistEvent {
            rv: self.rv,
            kind: d.kind,
            ty: if old.is_some() { "MODIFIED" } else { "ADDED" },
            obj: obj.clone(),
            old,
        });
        obj
    }

    fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> bool {
        let d = resource(kind);
        let ns = if d.namespaced { namespace } else { "" };
        let Some(old) = self
            .objects
            .get_mut(d.kind)
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))
        else {
            return false;
        };
        self.rv += 1;
        let mut obj = old.clone();
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.last_change.insert(d.kind, self.rv);
        self.history.push(HistEvent {
            rv: self.rv,
            kind: d.kind,
            ty: "DELETED",
            obj,
            old: Some(old),
        });
        true
    }

    fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// The objects of `kind` as they were at `rv` (which must not be older than the compaction
    /// point), in key order, borrowed: the current ones with every later change undone. Lists
    /// ask for this once per page, so it copies nothing (a 100 K-object list has 200 pages).
    fn state_at(&self, kind: &'static str, rv: u64) -> Vec<(Cow<'_, Key>, &Value)> {
        static EMPTY: BTreeMap<Key, Value> = BTreeMap::new();
        let current = self.objects.get(kind).unwrap_or(&EMPTY);
        // The state at `rv` of each key changed since: the old object of its earliest later
        // event (none for an object added since).
        let mut undo: BTreeMap<Key, Option<&Value>> = BTreeMap::new();
        for e in self.history.iter().filter(|e| e.rv > rv && e.kind == kind) {
            undo.entry(key_of(&e.obj)).or_insert(match e.ty {
                "ADDED" => None,
                _ => Some(
                    e.old
                        .as_ref()
                        .expect("MODIFIED/DELETED keep the old object"),
                ),
            });
        }
        if undo.is_empty() {
            // The common case (nothing changed since the list began): already in key order.
            return current.iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect();
        }
        let mut state: BTreeMap<Cow<'_, Key>, &Value> =
            current.iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect();
        for (key, old) in undo {
            match old {
                None => {
                    state.remove(&key);
                }
                Some(o) => {
                    state.insert(Cow::Owned(key), o);
                }
            }
        }
        state.into_iter().collect()
    }
}

fn key_of(o: &Value) -> Key {
    (
        o["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        o["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

// ----- label selectors ------------------------------------------------------------------------

#[derive(Debug)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A label selector in the API's string syntax.
fn parse_selector(s: &str) -> Result<Vec<Req>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let set = |v: &str| -> Result<Vec<String>, String> {
        let v = v.trim();
        let inner = v
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(|| format!("expected a parenthesized set, found {v:?}"))?;
        Ok(inner.split(',').map(|x| x.trim().to_string()).collect())
    };
    let mut out = Vec::new();
    for t in terms {
        let t = t.trim();
        if t.is_empty() {
            continue;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        let req = if let Some(k) = t.strip_prefix('!') {
            Req::NotExists(k.trim().to_string())
        } else if words.len() >= 2 && words[1] == "notin" {
            Req::NotIn(words[0].to_string(), set(t.split_once("notin").unwrap().1)?)
        } else if words.len() >= 2 && words[1] == "in" {
            Req::In(words[0].to_string(), set(t.split_once(" in").unwrap().1)?)
        } else if let Some((k, v)) = t.split_once("!=") {
            Req::Ne(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            Req::Eq(k.trim().to_string(), v.trim().to_string())
        } else if t.contains(['<', '>', '(', ')', ' ']) {
            return Err(format!("unable to parse requirement: {t:?}"));
        } else {
            Req::Exists(t.to_string())
        };
        out.push(req);
    }
    Ok(out)
}

/// Whether an object with `labels` matches the label selector `s` as the fake evaluates it (for
/// testing the fake itself).
pub fn label_selector_matches(s: &str, labels: &Value) -> Result<bool, String> {
    Ok(selector_matches(
        &parse_selector(s)?,
        &json!({"metadata": {"labels": labels}}),
    ))
}

fn selector_matches(sel: &[Req], obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    sel.iter().all(|r| match r {
        Req::Eq(k, v) => get(k) == Some(v.as_str()),
        Req::Ne(k, v) => get(k) != Some(v.as_str()),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    })
}

/// `metadata.name=x` / `metadata.namespace=x` (`=`, `==`, `!=`), comma-separated.
fn parse_field_selector(s: &str) -> Result<Vec<(String, bool, String)>, String> {
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, eq, value) = if let Some((f, v)) = t.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            (f, true, v)
        } else {
            return Err(format!("invalid selector: {t:?}"));
        };
        if !matches!(field.trim(), "metadata.name" | "metadata.namespace") {
            return Err(format!("field label not supported: {}", field.trim()));
        }
        out.push((field.trim().to_string(), eq, value.trim().to_string()));
    }
    Ok(out)
}

fn fields_match(sel: &[(String, bool, String)], obj: &Value) -> bool {
    sel.iter().all(|(f, eq, v)| {
        let actual = match f.as_str() {
            "metadata.name" => obj["metadata"]["name"].as_str().unwrap_or(""),
            _ => obj["metadata"]["namespace"].as_str().unwrap_or(""),
        };
        (actual == v) == *eq
    })
}

// ----- HTTP -----------------------------------------------------------------------------------

/// A `Status` object, as the API server writes errors.
fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status_response(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    json_response(code, &status_body(code, reason, message, details))
}

fn not_found() -> Response {
    status_response(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// The representation an `Accept` header asks for, trying its alternatives in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repr {
    Full,
    /// `as=PartialObjectMetadata` (objects, watch events).
    Meta,
    /// `as=PartialObjectMetadataList` (lists).
    MetaList,
}

fn negotiate(accept: &str, list: bool) -> Option<Repr> {
    if accept.trim().is_empty() {
        return Some(Repr::Full);
    }
    for alt in accept.split(',') {
        let mut parts = alt.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("");
        if !matches!(mime, "application/json" | "application/*" | "*/*") {
            continue;
        }
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        match params.get("as").copied() {
            None => return Some(Repr::Full),
            Some(kind) => {
                let meta_gv = params.get("g") == Some(&"meta.k8s.io")
                    && matches!(params.get("v").copied(), Some("v1" | "v1beta1"));
                match kind {
                    "PartialObjectMetadataList" if meta_gv && list => return Some(Repr::MetaList),
                    "PartialObjectMetadata" if meta_gv && !list => return Some(Repr::Meta),
                    _ => continue,
                }
            }
        }
    }
    None
}

/// An object as served at `group/version`, whole or metadata only.
fn render(obj: &Value, gv: &str, repr: Repr, in_list: bool) -> Value {
    match repr {
        Repr::Full => {
            let mut o = obj.clone();
            if in_list {
                // Lists of built-in kinds carry no apiVersion/kind on their items.
                let m = o.as_object_mut().unwrap();
                m.remove("apiVersion");
                m.remove("kind");
            } else {
                o["apiVersion"] = json!(gv);
            }
            o
        }
        Repr::Meta | Repr::MetaList => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"].clone(),
        }),
    }
}

fn continue_token(rv: u64, after: &Key) -> String {
    let start = if after.0.is_empty() {
        format!("{}\u{0}", after.1)
    } else {
        format!("{}/{}\u{0}", after.0, after.1)
    };
    STANDARD.encode(
        serde_json::to_vec(&json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start})).unwrap(),
    )
}

fn parse_continue(token: &str) -> Option<(u64, Key)> {
    let raw = STANDARD.decode(token).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let rv = v["rv"].as_u64()?;
    let start = v["start"].as_str()?.trim_end_matches('\u{0}');
    let key = match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    };
    Some((rv, key))
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// What a resource path names.
struct Target {
    def: &'static ResourceDef,
    gv: String,
    namespace: Option<String>,
    name: Option<String>,
}

enum Route {
    Text(&'static str),
    Version,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList(String, String),
    Resource(Target),
    NotFound,
}

fn route(served: &Served, path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["readyz" | "healthz" | "livez"] => return Route::Text("ok"),
        ["version"] => return Route::Version,
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Route::NotFound,
    };
    let Some(kinds) = served.kinds_at(group, version) else {
        return Route::NotFound;
    };
    if rest.is_empty() {
        return Route::ResourceList(group.to_string(), version.to_string());
    }
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural, None),
        ["namespaces", ns, plural, name] => (Some(ns.to_string()), *plural, Some(name.to_string())),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(name.to_string())),
        _ => return Route::NotFound,
    };
    let Some(def) = RESOURCES
        .iter()
        .find(|d| d.group == group && d.plural == plural && kinds.contains(&d.kind))
    else {
        return Route::NotFound;
    };
    if namespace.is_some() && !def.namespaced {
        return Route::NotFound;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Route::Resource(Target {
        def,
        gv,
        namespace,
        name,
    })
}

/// Kinds in the `all` category (what `kubectl get all` lists).
const CATEGORY_ALL: &[&str] = &[
    "Pod",
    "Service",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
];

/// An `APIResourceList` as the real server writes it (checked against the recording of a v1.20
/// server in `tests/fixtures/kube-golden`): entries sorted by name, subresources after their
/// resource, `categories` and `storageVersionHash` on the resources themselves, and no
/// `apiVersion` at the top of the core group's list.
fn api_resource_list(served: &Served, group: &str, version: &str) -> Value {
    let kinds = served.kinds_at(group, version).unwrap_or(&[]);
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    if group.is_empty() {
        // Creating a Binding is how a scheduler binds a Pod: no object the fake stores, but
        // the first entry of every real core list.
        resources.push(
            json!({"name": "bindings", "singularName": "", "namespaced": true,
                              "kind": "Binding", "verbs": ["create"]}),
        );
    }
    for d in RESOURCES
        .iter()
        .filter(|d| d.group == group && kinds.contains(&d.kind))
    {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if d.kind == "Namespace" || (d.kind == "Service" && served.is_v1_20()) {
            verbs.retain(|v| *v != "deletecollection");
        }
        let singular = if served.is_v1_20() {
            String::new()
        } else if d.singular.is_empty() {
            d.kind.to_ascii_lowercase()
        } else {
            d.singular.to_string()
        };
        // The real hash is the first 8 bytes of sha256("group/version/kind"), base64; the fake's
        // is as opaque and as stable.
        let hash = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{group}/{version}/{}", d.kind).as_bytes(),
        );
        let mut r = json!({"name": d.plural, "singularName": singular, "namespaced": d.namespaced,
                           "kind": d.kind, "verbs": verbs,
                           "storageVersionHash": STANDARD.encode(&hash.as_bytes()[..8])});
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if CATEGORY_ALL.contains(&d.kind) {
            r["categories"] = json!(["all"]);
        }
        resources.push(r);
        if d.status {
            resources.push(
                json!({"name": format!("{}/status", d.plural), "singularName": "",
                                  "namespaced": d.namespaced, "kind": d.kind,
                                  "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    // Sorted by name, which keeps each `/status` right after its resource.
    resources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut list = json!({"kind": "APIResourceList", "groupVersion": gv, "resources": resources});
    if !group.is_empty() {
        list["apiVersion"] = json!("v1");
    }
    list
}

fn api_group(served: &Served, group: &str) -> Value {
    let versions: Vec<Value> = served
        .versions_of(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let accept = header_str(req.headers(), header::ACCEPT);
    let method = req.method().clone();
    let mut inner = shared.inner.lock();
    if !authorized {
        return status_response(401, "Unauthorized", "Unauthorized", None);
    }
    let route = route(&inner.served, &path);
    let discovery = |inner: &mut Inner, status: u16| {
        inner.log.push(Recorded {
            kind: "",
            verb: "discovery",
            namespace: None,
            query: path.clone(),
            accept: accept.clone(),
            status,
            full_objects: false,
        });
    };
    if matches!(
        route,
        Route::CoreVersions | Route::Groups | Route::Group(_) | Route::ResourceList(..)
    ) && let Some(code) = inner.faults.discovery_failure
    {
        discovery(&mut inner, code);
        return status_response(code, "InternalError", "discovery is failing", None);
    }
    match route {
        Route::Text(t) => Response::new(Body::from(t)),
        Route::Version => {
            let v = inner.served.git_version;
            let minor = v.split('.').nth(1).unwrap_or("0");
            json_response(
                200,
                &json!({"major": "1", "minor": minor, "gitVersion": v,
                                       "platform": "linux/amd64"}),
            )
        }
        Route::CoreVersions => {
            discovery(&mut inner, 200);
            let port = inner.port;
            json_response(
                200,
                &json!({"kind": "APIVersions", "versions": inner.served.versions_of(""),
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}]}),
            )
        }
        Route::Groups => {
            discovery(&mut inner, 200);
            let groups: Vec<Value> = inner
                .served
                .groups()
                .into_iter()
                .filter(|g| !g.is_empty())
                .map(|g| api_group(&inner.served, g))
                .collect();
            json_response(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
        Route::Group(g) => {
            discovery(&mut inner, 200);
            if inner.served.versions_of(&g).is_empty() || g.is_empty() {
                return not_found();
            }
            let mut body = api_group(&inner.served, &g);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            json_response(200, &body)
        }
        Route::ResourceList(g, v) => {
            discovery(&mut inner, 200);
            json_response(200, &api_resource_list(&inner.served, &g, &v))
        }
        Route::NotFound => {
            discovery(&mut inner, 404);
            not_found()
        }
        Route::Resource(t) => {
            if method != Method::GET {
                return status_response(
                    405,
                    "MethodNotAllowed",
                    "the fake API server only serves reads; change objects with FakeKube::apply",
                    None,
                );
            }
            let q = parse_query(query.as_deref());
            let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
            let verb = match (&t.name, watch) {
                (Some(_), _) => "get",
                (None, true) => "watch",
                (None, false) => "list",
            };
            let (response, full) = serve_resource(&shared, &mut inner, &t, verb, &q, &accept);
            inner.log.push(Recorded {
                kind: t.def.kind,
                verb,
                namespace: t.namespace.clone(),
                query: query.unwrap_or_default(),
                accept,
                status: response.status().as_u16(),
                full_objects: full,
            });
            response
        }
    }
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Answers a list, watch or get; returns the response and whether it carries whole objects.
fn serve_resource(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    t: &Target,
    verb: &'static str,
    q: &HashMap<String, String>,
    accept: &str,
) -> (Response, bool) {
    let d = t.def;
    if inner.faults.forbidden.contains(d.kind) {
        let group_part = if d.group.is_empty() {
            d.plural.to_string()
        } else {
            format!("{}.{}", d.plural, d.group)
        };
        let scope = match &t.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let msg = format!(
            "{group_part} is forbidden: User \"system:serviceaccount:astrolabe:astrolabe\" cannot \
             {verb} resource \"{}\" in API group \"{}\" {scope}",
            d.plural, d.group
        );
        return (
            status_response(
                403,
                "Forbidden",
                &msg,
                Some(json!({"group": d.group, "kind": d.plural})),
            ),
            false,
        );
    }
    if verb == "list"
        && let Some((code, left)) = inner.faults.list_failures.get_mut(d.kind)
        && *left > 0
    {
        *left -= 1;
        let code = *code;
        return (injected_failure(code), false);
    }
    if verb == "watch"
        && let Some(code) = inner.faults.watch_failure
    {
        return (injected_failure(code), false);
    }
    let Some(repr) = negotiate(accept, verb == "list") else {
        return (
            status_response(
                406,
                "NotAcceptable",
                &format!(
                    "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (asked: {accept})"
                ),
                None,
            ),
            false,
        );
    };
    let labels = match q
        .get("labelSelector")
        .map(|s| parse_selector(s))
        .transpose()
    {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return (status_response(400, "BadRequest", &e, None), false),
    };
    let fields = match q
        .get("fieldSelector")
        .map(|s| parse_field_selector(s))
        .transpose()
    {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return (status_response(400, "BadRequest", &e, None), false),
    };
    let ns = t.namespace.clone();
    let in_scope = move |o: &Value| {
        ns.as_deref()
            .is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
    };
    match verb {
        "get" => {
            let key = (
                t.namespace.clone().unwrap_or_default(),
                t.name.clone().unwrap_or_default(),
            );
            match inner.objects.get(d.kind).and_then(|m| m.get(&key)) {
                Some(o) => {
                    let repr = if repr == Repr::Full {
                        Repr::Full
                    } else {
                        Repr::Meta
                    };
                    (
                        json_response(200, &render(o, &t.gv, repr, false)),
                        repr == Repr::Full,
                    )
                }
                None => (
                    status_response(
                        404,
                        "NotFound",
                        &format!("{} \"{}\" not found", d.plural, key.1),
                        Some(json!({"name": key.1, "kind": d.plural})),
                    ),
                    false,
                ),
            }
        }
        "list" => {
            let (rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
                Some(c) => match parse_continue(c) {
                    None => {
                        return (
                            status_response(
                                400,
                                "BadRequest",
                                "continue key is not valid: malformed",
                                None,
                            ),
                            false,
                        );
                    }
                    Some((rv, _))
                        if rv < inner.compacted
                            || inner.faults.expired_continues.get_mut(d.kind).is_some_and(
                                |n| {
                                    let hit = *n > 0;
                                    *n = n.saturating_sub(1);
                                    hit
                                },
                            ) =>
                    {
                        return (
                            json_response(
                                410,
                                &json!({"kind": "Status", "apiVersion": "v1",
                                "metadata": {}, "status": "Failure",
                                "message": "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                                "reason": "Expired", "code": 410}),
                            ),
                            false,
                        );
                    }
                    Some((rv, after)) => (rv, Some(after)),
                },
                None => (inner.rv, None),
            };
            let limit = q
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0);
            let state = inner.state_at(d.kind, rv);
            let matching: Vec<(Cow<'_, Key>, &Value)> = state
                .into_iter()
                .filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_ref() > a))
                .filter(|(_, o)| {
                    in_scope(o) && selector_matches(&labels, o) && fields_match(&fields, o)
                })
                .collect();
            let take = limit.unwrap_or(usize::MAX).min(matching.len());
            let items: Vec<Value> = matching[..take]
                .iter()
                .map(|(_, o)| render(o, &t.gv, repr, true))
                .collect();
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if take < matching.len() {
                meta["continue"] = json!(continue_token(rv, &matching[take - 1].0));
                // v1.20 drops the count when it converts a list to metadata only.
                let dropped = repr != Repr::Full && inner.served.is_v1_20();
                if labels.is_empty() && fields.is_empty() && !dropped {
                    meta["remainingItemCount"] = json!(matching.len() - take);
                }
            }
            let (kind, api_version) = match repr {
                Repr::Full => (format!("{}List", d.kind), t.gv.clone()),
                _ => (
                    "PartialObjectMetadataList".to_string(),
                    "meta.k8s.io/v1".to_string(),
                ),
            };
            let full = repr == Repr::Full && !items.is_empty();
            (
                json_response(
                    200,
                    &json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items}),
                ),
                full,
            )
        }
        _ => {
            let spec = WatchSpec {
                kind: d.kind,
                gv: t.gv.clone(),
                repr,
                labels,
                fields,
                namespace: t.namespace.clone(),
                bookmarks: q.get("allowWatchBookmarks").map(String::as_str) == Some("true"),
                initial_events: q.get("sendInitialEvents").map(String::as_str) == Some("true"),
                timeout: Duration::from_secs(
                    q.get("timeoutSeconds")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1800),
                ),
            };
            let from = q.get("resourceVersion").cloned().unwrap_or_default();
            let full = repr == Repr::Full;
            (start_watch(shared, inner, spec, &from), full)
        }
    }
}

fn injected_failure(code: u16) -> Response {
    let (reason, message) = match code {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.",
        ),
        500 => ("InternalError", "Internal error occurred: injected fault"),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted",
        ),
        _ => ("InternalError", "injected fault"),
    };
    let details = match code {
        429 => json!({"retryAfterSeconds": 1}),
        500 => json!({"causes": [{"message": "injected fault"}]}),
        _ => json!({}),
    };
    let mut r = status_response(code, reason, message, Some(details));
    if code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

struct WatchSpec {
    kind: &'static str,
    gv: String,
    repr: Repr,
    labels: Vec<Req>,
    fields: Vec<(String, bool, String)>,
    namespace: Option<String>,
    bookmarks: bool,
    initial_events: bool,
    timeout: Duration,
}

impl WatchSpec {
    fn matches(&self, o: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
            && selector_matches(&self.labels, o)
            && fields_match(&self.fields, o)
    }

    fn event(&self, ty: &str, obj: &Value) -> Bytes {
        let mut o = render(obj, &self.gv, self.repr, false);
        if self.repr == Repr::Full {
            o["kind"] = json!(self.kind);
        }
        line(&json!({"type": ty, "object": o}))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let (kind, api_version) = match self.repr {
            Repr::Full => (self.kind.to_string(), self.gv.clone()),
            _ => (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            ),
        };
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut object = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
        // The real object is the kind's empty value as the server serializes it: for a Pod,
        // with an empty spec and status (recorded; other kinds get metadata only here).
        if self.repr == Repr::Full && self.kind == "Pod" {
            object["spec"] = json!({"containers": null});
            object["status"] = json!({});
        }
        line(&json!({"type": "BOOKMARK", "object": object}))
    }

    /// What a history event looks like through this watch's filter (selector transitions become
    /// ADDED/DELETED, as in the watch cache).
    fn translate(&self, e: &HistEvent) -> Option<(&'static str, Value)> {
        if e.kind != self.kind {
            return None;
        }
        match e.ty {
            "ADDED" => self.matches(&e.obj).then(|| ("ADDED", e.obj.clone())),
            "DELETED" => self.matches(&e.obj).then(|| ("DELETED", e.obj.clone())),
            _ => {
                let was = e.old.as_ref().is_some_and(|o| self.matches(o));
                match (was, self.matches(&e.obj)) {
                    (true, true) => Some(("MODIFIED", e.obj.clone())),
                    (false, true) => Some(("ADDED", e.obj.clone())),
                    (true, false) => Some(("DELETED", e.obj.clone())),
                    (false, false) => None,
                }
            }
        }
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

/// The event the real server sends for a watch from a compacted resourceVersion, byte for byte.
fn expired(rv: u64, oldest: u64) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"ERROR\",\"object\":{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\
         \"status\":\"Failure\",\"message\":\"too old resource version: {rv} ({oldest})\",\
         \"reason\":\"Expired\",\"code\":410}}}}\n"
    ))
}

/// Counts an open watch while alive.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.inner.lock().open_watches -= 1;
    }
}

fn start_watch(shared: &Arc<Shared>, inner: &mut Inner, spec: WatchSpec, from: &str) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut initial: Vec<Bytes> = Vec::new();
    let pos = match from.parse::<u64>() {
        Ok(rv) if rv > 0 => {
            if rv < inner.compacted {
                // The real server answers 200 and sends the ERROR as the only event.
                initial.push(expired(rv, inner.compacted));
                None
            } else {
                Some(rv)
            }
        }
        _ => {
            // "" or "0": the current state as ADDED events first.
            let state = inner.objects.get(spec.kind).cloned().unwrap_or_default();
            for o in state.values().filter(|o| spec.matches(o)) {
                initial.push(spec.event("ADDED", o));
            }
            if spec.initial_events && spec.bookmarks {
                initial.push(spec.bookmark(inner.rv, true));
            }
            Some(inner.rv)
        }
    };
    inner.open_watches += 1;
    let guard = OpenWatch(shared.clone());
    let epoch = inner.epoch;
    let shared = shared.clone();
    tokio::spawn(async move {
        let _guard = guard;
        for b in initial {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let Some(mut pos) = pos else { return };
        let start = pos;
        let deadline = tokio::time::Instant::now() + spec.timeout;
        let mut ticks = shared.tick.subscribe();
        let mut last_sent = tokio::time::Instant::now();
        loop {
            ticks.borrow_and_update();
            let (events, current, delay, interval, gone, compacted) = {
                let i = shared.inner.lock();
                if i.epoch != epoch {
                    return;
                }
                let events: Vec<(u64, &'static str, Value)> = i
                    .history
                    .iter()
                    .filter(|e| e.rv > pos)
                    .filter_map(|e| spec.translate(e).map(|(ty, o)| (e.rv, ty, o)))
                    .collect();
                (
                    events,
                    i.rv,
                    i.faults.event_delay,
                    i.bookmark_interval,
                    pos < i.compacted,
                    i.compacted,
                )
            };
            if gone {
                // Fell behind a compaction: the events it missed are gone.
                let _ = tx.send(expired(pos, compacted)).await;
                return;
            }
            if events.is_empty() {
                pos = pos.max(current);
            }
            for (rv, ty, o) in events {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                    if shared.inner.lock().epoch != epoch {
                        return;
                    }
                }
                if tx.send(spec.event(ty, &o)).await.is_err() {
                    return;
                }
                pos = rv;
                last_sent = tokio::time::Instant::now();
            }
            let bookmark_at = last_sent + interval;
            tokio::select! {
                r = ticks.changed() => if r.is_err() { return },
                () = tokio::time::sleep_until(deadline) => return,
                () = tokio::time::sleep_until(bookmark_at), if spec.bookmarks => {
                    let rv = {
                        let i = shared.inner.lock();
                        if i.epoch != epoch {
                            return;
                        }
                        // As v1.20's watch cache: the version of the kind's last change (whatever
                        // the watch's selectors), and only one newer than the watch's start, with
                        // nothing pending for this watch. A watch opened after the kind's last
                        // change gets no BOOKMARK until it changes again.
                        let last = i.last_change.get(spec.kind).copied().unwrap_or(0);
                        let pending = i.history.iter().any(|e| e.rv > pos && spec.translate(e).is_some());
                        (last > start && !pending).then_some(last)
                    };
                    if let Some(rv) = rv {
                        if tx.send(spec.bookmark(rv, false)).await.is_err() {
                            return;
                        }
                        pos = pos.max(rv);
                    }
                    last_sent = tokio::time::Instant::now();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    }));
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

/// Now as RFC 3339 UTC, seconds precision (as `metadata.creationTimestamp`).
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    astrolabe::model::Time::from_unix(secs)
        .expect("after 1970")
        .to_rfc3339()
}
