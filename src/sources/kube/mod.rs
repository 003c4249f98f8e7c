//! The live Kubernetes source: kube-runtime watchers for every built-in kind the relationship
//! rules know, each object projected the moment it arrives (so nothing secret goes further), and
//! every full list (the first; a relist after a 410 Gone; the list of a watch started again after
//! a 403 or 404; a dropped watch is resumed from its last resourceVersion, without one) bracketed by
//! `ListStart` / `ListComplete` so that the graph reconciles to exactly the cluster's state.
//!
//! - **Configuration**: `--kubeconfig` (with `--context`) when given; otherwise in-cluster
//!   configuration; otherwise `KUBECONFIG` or `~/.kube/config`. Nothing found is an error that
//!   names `--source demo`: the service never serves demo data in place of a cluster.
//! - **Discovery** at startup and every `rediscover` period: a kind whose group/version the
//!   server does not serve is skipped (one log line, listed in `/health`); a kind refused with
//!   403 is marked forbidden and retried at the next discovery, without an error loop.
//! - **Secrets and ConfigMaps are watched metadata-only**: their data never reaches this
//!   process. A metadata-only Secret carries no `type`; one labelled like a Helm 3 release
//!   record (`owner=helm` with `name` and `version`) is taken as one (`helm.sh/release.v1`).
//! - **Filters**: `namespaces` restricts namespaced kinds (cluster-scoped kinds are always
//!   watched whole). `label_selector` is applied by the API server to the namespaced kinds other
//!   than ConfigMap, Secret, ServiceAccount and PersistentVolumeClaim: those four are what kept
//!   objects reference, and a reference can appear with any later change of its referrer, so they
//!   are kept whatever their labels.
//! - **Readiness**: `Event::Synced` is sent once every served, permitted kind has completed its
//!   first full list.

mod status;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::kube::api::{Api, DynamicObject, ObjectMeta, PartialObjectMeta};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use ::kube::runtime::utils::Backoff;
use ::kube::runtime::watcher::{self, DefaultBackoff, Event as WatchEvent};
use ::kube::{Client, Config};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::task::JoinSet;

pub use status::{EventLabels, KindLabels, KindState, KindStatus, KubeStatus, SourceProblem};

use crate::graph::{Change, ListScope};
use crate::ingest::{Event, EventSender};
use crate::model::{Atom, Kind, Selector};
use crate::relations::Projector;

/// The annotation `kubectl apply` fills with the whole applied object (a Secret's data included).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How the live source connects and what it watches.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// A kubeconfig file to use instead of in-cluster configuration and `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    pub context: Option<String>,
    /// Namespaces to watch (empty: all).
    pub namespaces: Vec<String>,
    /// Label selector (kubectl syntax) for the namespaced objects kept (see the module docs).
    pub label_selector: Option<String>,
    /// How often discovery runs again, to pick up newly served or newly permitted kinds.
    pub rediscover: Duration,
    /// Objects per page of a list.
    pub page_size: u32,
}

/// Why the live source cannot start.
#[derive(Debug, Error)]
pub enum KubeError {
    /// No configuration anywhere.
    #[error(
        "no Kubernetes cluster configuration found: not running inside a cluster, and {0}; \
         pass --kubeconfig PATH (or set KUBECONFIG), or use --source demo for the built-in demo cluster"
    )]
    NoConfig(String),
    /// The kubeconfig given could not be used.
    #[error("cannot use the kubeconfig {path}: {error}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// The label selector does not parse.
    #[error("invalid --label-selector {selector:?}: {error}")]
    Selector {
        /// What was given.
        selector: String,
        /// Why it is wrong.
        error: String,
    },
    /// The client could not be built from the configuration.
    #[error("cannot create the Kubernetes client: {0}")]
    Client(String),
}

/// Checks the options that can be checked without a cluster.
pub fn validate(opts: &KubeOptions) -> Result<(), KubeError> {
    if let Some(s) = &opts.label_selector {
        Selector::parse(s).map_err(|e| KubeError::Selector {
            selector: s.clone(),
            error: e.to_string(),
        })?;
    }
    Ok(())
}

/// Finds the cluster configuration (see the module docs for the order) and checks that a client
/// can be built from it (not so with a `proxy-url`, say: this build has no proxy support), so that
/// such a mistake stops the server at start instead of leaving it serving nothing. Connecting gives
/// up after 4 s (`CONNECT_TIMEOUT`).
pub async fn find_config(opts: &KubeOptions) -> Result<Config, KubeError> {
    let mut config = locate_config(opts).await?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    Client::try_from(config.clone()).map_err(|e| KubeError::Client(e.to_string()))?;
    Ok(config)
}

async fn locate_config(opts: &KubeOptions) -> Result<Config, KubeError> {
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        ..KubeConfigOptions::default()
    };
    let from_file = |path: String, kc: Kubeconfig| async move {
        Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| KubeError::Kubeconfig {
                path,
                error: e.to_string(),
            })
    };
    if let Some(path) = &opts.kubeconfig {
        let shown = path.display().to_string();
        let kc = Kubeconfig::read_from(path).map_err(|e| KubeError::Kubeconfig {
            path: shown.clone(),
            error: e.to_string(),
        })?;
        return from_file(shown, kc).await;
    }
    // A context names a kubeconfig entry: asking for one means the kubeconfig, not the pod's
    // own service account.
    if opts.context.is_none()
        && let Ok(c) = Config::incluster()
    {
        return Ok(c);
    }
    let shown = std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".into());
    match Kubeconfig::read() {
        Ok(kc) => from_file(shown, kc).await,
        Err(e) => Err(KubeError::NoConfig(format!(
            "no kubeconfig at {shown} ({e})"
        ))),
    }
}

/// One watch: a kind, in one namespace or all.
#[derive(Clone, Debug)]
struct Watch {
    /// The status key: the qualified kind, and the namespace when restricted.
    key: String,
    kind: Kind,
    resource: ApiResource,
    namespace: Option<String>,
    metadata_only: bool,
    label_selector: Option<String>,
}

/// How long a failing watch must stay quiet (no error, no event) to count as recovered: longer
/// than a refused request takes to come back, and than [`CONNECT_TIMEOUT`], so that an API
/// server that does not answer at all is not taken for one that came back.
const RECOVERED_AFTER: Duration = Duration::from_secs(5);

/// How long connecting to the API server may take (kube-client's default is 30 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// How a watch ended.
enum Ended {
    /// The writer stopped.
    WriterGone,
    /// The server refused (403) or no longer serves the kind (404): wait for a discovery.
    Unavailable,
}

struct Ctx {
    client: Client,
    opts: KubeOptions,
    projector: Projector,
    tx: EventSender,
    status: Arc<KubeStatus>,
}

impl Ctx {
    fn send(&self, change: Change, received: Instant) -> bool {
        self.tx.send(Event::Received(change, received))
    }

    /// Sends `Synced` once every served, permitted kind has completed its first full list.
    fn check_synced(&self) -> bool {
        if self.status.all_listed() && !self.status.mark_synced() {
            tracing::info!("kubernetes: every watched kind is listed; the graph is in sync");
            return self.tx.send(Event::Synced);
        }
        true
    }
}

/// Watches the cluster until the writer stops (or the future is dropped, which stops every
/// watch). Blocking sends into the writer's channel are the backpressure: run this on a runtime
/// of its own.
pub async fn run(
    client: Client,
    opts: KubeOptions,
    projector: Projector,
    tx: EventSender,
    status: Arc<KubeStatus>,
) {
    let ctx = Arc::new(Ctx {
        client,
        opts,
        projector,
        tx,
        status,
    });
    let mut tasks: JoinSet<(String, Ended)> = JoinSet::new();
    let mut running: HashSet<String> = HashSet::new();
    // Discovery retries with kube-runtime's default policy (0.8 s doubling to 30 s).
    let mut backoff = DefaultBackoff::default();
    let mut failed = false;
    loop {
        // Watches that ended while discovery was not looking are collected first, so that the
        // kinds they watched are started again.
        while let Some(done) = tasks.try_join_next() {
            if !ended(&ctx, &mut running, done) {
                return;
            }
        }
        let wait = match plan(&ctx).await {
            Ok(watches) => {
                failed = false;
                backoff.reset();
                ctx.status.set_problem(None);
                for w in watches {
                    if running.insert(w.key.clone()) {
                        // A kind not watched yet (new, or back after a skip or a 403) starts
                        // listing; a running watch keeps its state.
                        ctx.status
                            .set(&w.key, &w.resource.api_version, KindState::Listing, None);
                        let ctx = ctx.clone();
                        tasks.spawn(async move {
                            let key = w.key.clone();
                            (key, watch(&ctx, w).await)
                        });
                    }
                }
                if !ctx.check_synced() {
                    return;
                }
                ctx.opts.rediscover
            }
            Err(e) => {
                if failed {
                    tracing::debug!(error = %e, "kubernetes: discovery failed again");
                } else {
                    tracing::warn!(error = %e, "kubernetes: discovery failed; retrying");
                }
                failed = true;
                ctx.status
                    .set_problem(Some(SourceProblem::Discovery(e.to_string())));
                backoff.next().unwrap_or(Duration::from_secs(30))
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                Some(done) = tasks.join_next() => if !ended(&ctx, &mut running, done) {
                    return;
                },
            }
        }
    }
}

/// Takes note of a watch that ended; returns false when the source must stop.
fn ended(
    ctx: &Ctx,
    running: &mut HashSet<String>,
    done: Result<(String, Ended), tokio::task::JoinError>,
) -> bool {
    match done {
        Ok((_, Ended::WriterGone)) => false,
        Ok((key, Ended::Unavailable)) => {
            running.remove(&key);
            ctx.check_synced()
        }
        Err(e) => {
            tracing::error!(error = %e, "kubernetes: a watch task failed");
            ctx.status.set_problem(Some(SourceProblem::Stopped(format!(
                "a watch task failed: {e}"
            ))));
            false
        }
    }
}

/// Runs discovery and returns the watches to run; records skipped kinds in the status.
async fn plan(ctx: &Ctx) -> Result<Vec<Watch>, ::kube::Error> {
    let wanted: Vec<&Kind> = Kind::BUILTIN
        .iter()
        .filter(|k| **k != Kind::HelmRelease)
        .collect();
    let mut groups: Vec<&str> = wanted.iter().map(|k| k.group()).collect();
    groups.sort_unstable();
    groups.dedup();
    let discovery = Discovery::new(ctx.client.clone())
        .filter(&groups)
        .run()
        .await?;
    let mut watches = Vec::new();
    for kind in wanted {
        let api_version = kind.preferred_api_version();
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let gvk = ::kube::api::GroupVersionKind::gvk(kind.group(), version, kind.name());
        let keys = status_keys(kind, &ctx.opts.namespaces);
        match discovery.resolve_gvk(&gvk) {
            Some((resource, caps)) if watchable(&caps) => {
                let namespaced = caps.scope == Scope::Namespaced;
                let namespaces: Vec<Option<String>> =
                    if namespaced && !ctx.opts.namespaces.is_empty() {
                        ctx.opts.namespaces.iter().cloned().map(Some).collect()
                    } else {
                        vec![None]
                    };
                let metadata_only = matches!(kind, Kind::Secret | Kind::ConfigMap);
                let label_selector = ctx.opts.label_selector.clone().filter(|_| {
                    namespaced
                        && !matches!(
                            kind,
                            Kind::ConfigMap
                                | Kind::Secret
                                | Kind::ServiceAccount
                                | Kind::PersistentVolumeClaim
                        )
                });
                for namespace in namespaces {
                    let key = status_key(kind, namespace.as_deref());
                    watches.push(Watch {
                        key,
                        kind: kind.clone(),
                        resource: resource.clone(),
                        namespace,
                        metadata_only,
                        label_selector: label_selector.clone(),
                    });
                }
            }
            found => {
                let offered: Vec<&str> = discovery
                    .get(kind.group())
                    .map(|g| g.versions().collect())
                    .unwrap_or_default();
                let reason = match found {
                    Some(_) => {
                        format!("{api_version} {} cannot be listed and watched", kind.name())
                    }
                    None if offered.is_empty() => {
                        format!("{api_version} is not served (nor any version of its group)")
                    }
                    None if offered.contains(&version) => {
                        format!("{api_version} has no {} on this server", kind.name())
                    }
                    None => format!(
                        "{api_version} is not served (the server offers {})",
                        offered.join(", ")
                    ),
                };
                for key in keys {
                    let previous =
                        ctx.status
                            .set(&key, api_version, KindState::Skipped, Some(reason.clone()));
                    if previous != Some(KindState::Skipped) {
                        tracing::warn!(kind = %key, "kubernetes: skipping {}: {reason}", kind.name());
                    }
                }
            }
        }
    }
    Ok(watches)
}

fn watchable(caps: &ApiCapabilities) -> bool {
    caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::WATCH)
}

fn status_key(kind: &Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{} in {ns}", kind.qualified()),
        None => kind.qualified(),
    }
}

fn status_keys(kind: &Kind, namespaces: &[String]) -> Vec<String> {
    if namespaces.is_empty() || kind.builtin_cluster_scoped() == Some(true) {
        vec![status_key(kind, None)]
    } else {
        namespaces
            .iter()
            .map(|ns| status_key(kind, Some(ns)))
            .collect()
    }
}

/// One kind's watch loop, until the writer stops or the kind becomes unavailable.
async fn watch(ctx: &Ctx, w: Watch) -> Ended {
    let client = ctx.client.clone();
    let mut config = watcher::Config::default().page_size(ctx.opts.page_size);
    if let Some(s) = &w.label_selector {
        config = config.labels(s);
    }
    let resource = w.resource.clone();
    let is_secret = w.kind == Kind::Secret;
    let stream = if w.metadata_only {
        // `Api<PartialObjectMeta<_>>` asks the server for metadata only: the data of ConfigMaps
        // and Secrets is never sent to this process.
        let api: Api<PartialObjectMeta<DynamicObject>> = match &w.namespace {
            Some(ns) => Api::namespaced_with(client, ns, &w.resource),
            None => Api::all_with(client, &w.resource),
        };
        watcher::watcher(api, config)
            .map_ok(move |e| map_event(e, |m| metadata_value(m, &resource, is_secret)))
            .boxed()
    } else {
        let api: Api<DynamicObject> = match &w.namespace {
            Some(ns) => Api::namespaced_with(client, ns, &w.resource),
            None => Api::all_with(client, &w.resource),
        };
        watcher::watcher(api, config)
            .map_ok(move |e| map_event(e, |o| object_value(o, &resource)))
            .boxed()
    };
    let mut stream = std::pin::pin!(stream);
    // kube-runtime's default policy (0.8 s doubling to 30 s, reset after 2 quiet minutes), applied
    // here rather than as a stream adapter so that a watch that reopened quietly can be noticed.
    let mut backoff = DefaultBackoff::default();
    let scope = ListScope {
        kind: Some(w.kind.clone()),
        namespace: w.namespace.as_deref().map(Atom::new),
    };
    // The kind's counters, looked up once rather than per event.
    let kind_label = KindLabels {
        kind: w.kind.qualified(),
    };
    let events = |t: &'static str| {
        ctx.status
            .events
            .get_or_create(&EventLabels {
                kind: kind_label.kind.clone(),
                r#type: t,
            })
            .clone()
    };
    let (listed_events, applied_events, deleted_events) =
        (events("list"), events("apply"), events("delete"));
    let relists = ctx.status.relists.get_or_create(&kind_label).clone();
    let errors = ctx.status.watch_errors.get_or_create(&kind_label).clone();
    let api_version = w.resource.api_version.clone();
    let recovered = |failing: &mut bool, backoff: &mut DefaultBackoff, listed: bool| {
        *failing = false;
        backoff.reset();
        tracing::info!(kind = %w.key, "kubernetes: watch recovered");
        let state = if listed {
            KindState::Watching
        } else {
            KindState::Listing
        };
        ctx.status.set(&w.key, &api_version, state, None);
    };
    let mut lists = 0u64;
    let mut listed = false;
    let mut failing = false;
    loop {
        let item = if failing {
            // A reopened watch yields nothing until something changes (bookmarks are not
            // passed on), while a failing one errs again within its backoff: a quiet spell
            // means the watch is back.
            match tokio::time::timeout(RECOVERED_AFTER, stream.next()).await {
                Ok(item) => item,
                Err(_) => {
                    recovered(&mut failing, &mut backoff, listed);
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let Some(item) = item else { break };
        let received = Instant::now();
        let event = match item {
            Ok(e) => e,
            Err(e) => {
                errors.inc();
                match unavailable(&e) {
                    Some((state, reason)) => {
                        let previous = ctx.status.set(&w.key, &api_version, state, Some(reason));
                        if previous != Some(state) {
                            tracing::warn!(kind = %w.key, error = %e, "kubernetes: not watching {} until the next discovery", w.key);
                        }
                        // A kind the server no longer serves has no objects: an empty full list
                        // removes what the graph kept of it. (A 403 keeps them, flagged in
                        // /health: the objects exist, this service may just not read them.)
                        if state == KindState::Skipped
                            && !(ctx.send(Change::ListStart(scope.clone()), received)
                                && ctx.send(Change::ListComplete(scope.clone()), received))
                        {
                            return Ended::WriterGone;
                        }
                        return Ended::Unavailable;
                    }
                    None => {
                        if !failing {
                            tracing::warn!(kind = %w.key, error = %e, "kubernetes: watch failed; retrying with backoff");
                        } else {
                            tracing::debug!(kind = %w.key, error = %e, "kubernetes: watch failed again");
                        }
                        failing = true;
                        ctx.status.set(
                            &w.key,
                            &api_version,
                            KindState::Failing,
                            Some(e.to_string()),
                        );
                        let wait = backoff.next().unwrap_or(Duration::from_secs(30));
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
        };
        if failing {
            recovered(&mut failing, &mut backoff, listed);
        }
        let sent = match event {
            WatchEvent::Init => {
                lists += 1;
                if lists > 1 {
                    relists.inc();
                    tracing::info!(kind = %w.key, "kubernetes: listing {} again", w.key);
                }
                ctx.send(Change::ListStart(scope.clone()), received)
            }
            WatchEvent::InitApply(v) => {
                listed_events.inc();
                upsert(ctx, &v, received)
            }
            WatchEvent::InitDone => {
                listed = true;
                ctx.status
                    .set(&w.key, &api_version, KindState::Watching, None);
                ctx.send(Change::ListComplete(scope.clone()), received) && ctx.check_synced()
            }
            WatchEvent::Apply(v) => {
                applied_events.inc();
                upsert(ctx, &v, received)
            }
            WatchEvent::Delete(v) => {
                deleted_events.inc();
                delete(ctx, &v, received)
            }
        };
        if !sent {
            return Ended::WriterGone;
        }
    }
    Ended::WriterGone
}

fn upsert(ctx: &Ctx, v: &Value, received: Instant) -> bool {
    match ctx.projector.project(v) {
        Ok(o) => ctx.send(Change::Upsert(Arc::new(o)), received),
        Err(e) => {
            skipped(ctx, v, &e);
            true
        }
    }
}

fn delete(ctx: &Ctx, v: &Value, received: Instant) -> bool {
    match ctx.projector.project(v) {
        Ok(o) => {
            let key = o.key();
            ctx.send(
                Change::Delete {
                    key,
                    uid: Some(o.uid),
                },
                received,
            )
        }
        Err(e) => {
            skipped(ctx, v, &e);
            true
        }
    }
}

fn skipped(ctx: &Ctx, v: &Value, e: &crate::relations::ProjectError) {
    ctx.status.skipped_objects.inc();
    let name = |f: &str| {
        v.get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    tracing::warn!(
        kind,
        namespace = %name("namespace"),
        name = %name("name"),
        error = %e,
        "kubernetes: skipped an object that cannot be read"
    );
}

/// A 403 (forbidden) or 404 (no longer served) ends a watch until the next discovery; other
/// errors are retried with backoff.
fn unavailable(e: &watcher::Error) -> Option<(KindState, String)> {
    let status = match e {
        watcher::Error::InitialListFailed(::kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(::kube::Error::Api(s))
        | watcher::Error::WatchFailed(::kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => s,
        _ => return None,
    };
    match status.code {
        403 => Some((KindState::Forbidden, status.message.clone())),
        404 => Some((KindState::Skipped, status.message.clone())),
        _ => None,
    }
}

fn map_event<K>(e: WatchEvent<K>, f: impl Fn(K) -> Value) -> WatchEvent<Value> {
    match e {
        WatchEvent::Apply(o) => WatchEvent::Apply(f(o)),
        WatchEvent::Delete(o) => WatchEvent::Delete(f(o)),
        WatchEvent::Init => WatchEvent::Init,
        WatchEvent::InitApply(o) => WatchEvent::InitApply(f(o)),
        WatchEvent::InitDone => WatchEvent::InitDone,
    }
}

/// A full object as the JSON the projector reads. List items carry no `apiVersion`/`kind`: they
/// come from the watched resource.
fn object_value(o: DynamicObject, resource: &ApiResource) -> Value {
    let map = match o.data {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    with_metadata(map, o.metadata, resource)
}

/// A metadata-only object (ConfigMap, Secret) as the JSON the projector reads.
fn metadata_value(
    o: PartialObjectMeta<DynamicObject>,
    resource: &ApiResource,
    is_secret: bool,
) -> Value {
    let mut map = Map::new();
    if is_secret && looks_like_helm_record(o.metadata.labels.as_ref()) {
        map.insert("type".into(), Value::from("helm.sh/release.v1"));
    }
    with_metadata(map, o.metadata, resource)
}

/// Completes an object with its `apiVersion`, `kind` and `metadata`, dropping the managed fields
/// and the last-applied annotation already here.
fn with_metadata(
    mut map: Map<String, Value>,
    mut meta: ObjectMeta,
    resource: &ApiResource,
) -> Value {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    map.insert(
        "apiVersion".into(),
        Value::from(resource.api_version.as_str()),
    );
    map.insert("kind".into(), Value::from(resource.kind.as_str()));
    map.insert(
        "metadata".into(),
        serde_json::to_value(meta).unwrap_or(Value::Null),
    );
    Value::Object(map)
}

fn looks_like_helm_record(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get("owner").map(String::as_str) == Some("helm")
            && l.contains_key("name")
            && l.contains_key("version")
    })
}

/// Runs [`run`] on a runtime of its own in the calling thread (the client's connections live on
/// it) until `stop` is set or the writer stops.
pub fn run_blocking(
    config: Config,
    opts: KubeOptions,
    projector: Projector,
    tx: EventSender,
    status: Arc<KubeStatus>,
    stop: &AtomicBool,
) -> Result<(), KubeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KubeError::Client(e.to_string()))?;
    runtime.block_on(async {
        let client = Client::try_from(config).map_err(|e| KubeError::Client(e.to_string()))?;
        tokio::select! {
            () = run(client, opts, projector, tx, status) => {},
            () = async {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } => {},
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    #[test]
    fn a_full_object_loses_managed_fields_and_the_last_applied_annotation_before_projection() {
        let o: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"hunter2\"}}", "keep": "me"}},
            "spec": {"selector": {"app": "web"}}
        }))
        .unwrap();
        let v = object_value(o, &resource("v1", "Service", "services"));
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Service");
        assert_eq!(v["spec"]["selector"]["app"], "web");
        assert!(v["metadata"].get("managedFields").is_none(), "{v}");
        assert_eq!(v["metadata"]["annotations"], json!({"keep": "me"}));
        assert!(!v.to_string().contains("hunter2"));
    }

    #[test]
    fn a_metadata_only_secret_labelled_as_a_helm_record_is_one() {
        let meta = |labels: Value| -> PartialObjectMeta<DynamicObject> {
            serde_json::from_value(json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "sh.helm.release.v1.web.v3", "namespace": "shop", "uid": "u2",
                             "labels": labels}
            }))
            .unwrap()
        };
        let secrets = resource("v1", "Secret", "secrets");
        let record = metadata_value(
            meta(json!({"owner": "helm", "name": "web", "version": "3", "status": "deployed"})),
            &secrets,
            true,
        );
        assert_eq!(record["kind"], "Secret");
        assert_eq!(record["apiVersion"], "v1");
        assert_eq!(record["type"], "helm.sh/release.v1");
        let projected = Projector::default().project(&record).unwrap();
        assert_eq!(projected.kind, Kind::Secret);
        let plain = metadata_value(meta(json!({"app": "web"})), &secrets, true);
        assert!(plain.get("type").is_none(), "{plain}");
        let cm = metadata_value(
            meta(json!({"owner": "helm", "name": "web", "version": "3"})),
            &resource("v1", "ConfigMap", "configmaps"),
            false,
        );
        assert!(cm.get("type").is_none(), "{cm}");
    }

    #[test]
    fn status_keys_follow_the_namespace_filter() {
        let nss = vec!["a".to_string(), "b".to_string()];
        assert_eq!(status_keys(&Kind::Pod, &[]), vec!["Pod"]);
        assert_eq!(status_keys(&Kind::Pod, &nss), vec!["Pod in a", "Pod in b"]);
        assert_eq!(status_keys(&Kind::Node, &nss), vec!["Node"]);
        assert_eq!(status_keys(&Kind::Deployment, &[]), vec!["apps/Deployment"]);
    }

    #[test]
    fn readiness_waits_for_every_served_kind_and_ignores_skipped_and_forbidden_ones() {
        let s = KubeStatus::default();
        assert!(!s.all_listed(), "nothing discovered yet");
        s.set("Pod", "v1", KindState::Listing, None);
        s.set(
            "batch/CronJob",
            "batch/v1",
            KindState::Skipped,
            Some("not served".into()),
        );
        assert!(!s.all_listed());
        s.set("Pod", "v1", KindState::Watching, None);
        assert!(s.all_listed());
        s.set("Secret", "v1", KindState::Listing, None);
        assert!(!s.all_listed());
        s.set(
            "Secret",
            "v1",
            KindState::Forbidden,
            Some("forbidden".into()),
        );
        assert!(s.all_listed());
        // A kind that fails after its first list stays listed.
        s.set("Pod", "v1", KindState::Failing, Some("boom".into()));
        assert!(s.all_listed());
        assert!(!s.mark_synced());
        assert!(s.mark_synced());
    }
}
