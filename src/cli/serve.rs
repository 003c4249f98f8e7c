//! `astrolabe serve`: restore the graph from Redis (when persistence is on), load the source into
//! it through the single writer, and answer the HTTP API all the while.
//!
//! Shutdown on SIGTERM or SIGINT, in order and under one deadline (`--shutdown-timeout`): stop the
//! source, stop accepting connections and finish requests in flight, let the graph's writer apply
//! what is queued, write what persistence holds and a final snapshot, exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use super::Failure;
use super::redis::RedisArgs;
use crate::api::{self, ApiConfig, AppState};
use crate::graph::Graph;
use crate::ingest;
use crate::persistence::{self, PersistConfig};
use crate::relations::Projector;
use crate::sources::kube::{KubeOptions, KubeStatus};
use crate::sources::{self, SourceSpec};

/// Arguments of `serve`. Every flag can also be set through its environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where objects come from: `kube` (a live cluster: `--kubeconfig` when given, else
    /// in-cluster configuration, else `KUBECONFIG` or `~/.kube/config`), `demo[:N]` (the built-in demo cluster
    /// of about N objects), or `file:PATH` (manifests or a kubectl dump).
    #[arg(long, env = "ASTROLABE_SOURCE", default_value = "kube")]
    pub source: String,
    /// The live source.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Address to listen on.
    #[arg(long, env = "ASTROLABE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// The most nodes a graph-shaped response carries before it is cut and flagged `truncated`.
    #[arg(long, env = "ASTROLABE_MAX_NODES", default_value_t = ApiConfig::default().max_nodes as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_nodes: u64,
    /// Megabytes of response bodies kept in the shared response cache (identical requests
    /// against an unchanged graph are answered from it); 0 disables it.
    #[arg(long, env = "ASTROLABE_RESPONSE_CACHE_MB", default_value_t = 64)]
    pub response_cache_mb: u64,
    /// Keep this annotation too (repeatable or comma-separated; `prefix*` keeps every annotation
    /// with the prefix).
    #[arg(
        long = "allow-annotation",
        env = "ASTROLABE_ALLOW_ANNOTATIONS",
        value_delimiter = ','
    )]
    pub allow_annotations: Vec<String>,
    /// After the demo source's load, keep changing it at about this many changes per second
    /// (pod restarts, scaling, rollouts, ...); 0 keeps it still. A stall of over a second (the
    /// process stopped or starved) is not made up in a burst.
    #[arg(long, env = "ASTROLABE_DEMO_CHURN", default_value_t = 0.0)]
    pub demo_churn: f64,
    /// `production` requires persistence and a reachable Redis at startup.
    #[arg(long = "env", env = "ASTROLABE_ENV", value_enum, default_value_t = Environment::Development)]
    pub environment: Environment,
    /// The longest a shutdown may take (inside Kubernetes' 30 s grace period).
    #[arg(long, env = "ASTROLABE_SHUTDOWN_TIMEOUT", default_value_t = 25)]
    pub shutdown_timeout: u64,
    /// Persistence.
    #[command(flatten)]
    pub persistence: PersistArgs,
}

/// Flags of the live Kubernetes source.
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// Kubeconfig file to use (instead of in-cluster configuration, `KUBECONFIG` and
    /// `~/.kube/config`).
    #[arg(long, env = "ASTROLABE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, env = "ASTROLABE_CONTEXT")]
    pub context: Option<String>,
    /// Watch only this namespace (repeatable or comma-separated; default: all). Cluster-scoped
    /// kinds are always watched.
    #[arg(
        long = "namespace",
        env = "ASTROLABE_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Keep only namespaced objects matching this label selector (kubectl syntax). Cluster-scoped
    /// objects, and the ConfigMaps, Secrets, ServiceAccounts and PVCs that kept objects may
    /// reference, are kept whatever their labels.
    #[arg(long, env = "ASTROLABE_LABEL_SELECTOR")]
    pub label_selector: Option<String>,
    /// Seconds between API discoveries (newly served or newly permitted kinds start being
    /// watched).
    #[arg(long, env = "ASTROLABE_REDISCOVERY_INTERVAL", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rediscovery_interval: u64,
    /// Objects per page when listing.
    #[arg(long, env = "ASTROLABE_LIST_PAGE_SIZE", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub list_page_size: u32,
}

impl KubeArgs {
    fn options(&self) -> KubeOptions {
        KubeOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespaces: self
                .namespaces
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
            label_selector: self.label_selector.clone().filter(|s| !s.trim().is_empty()),
            rediscover: Duration::from_secs(self.rediscovery_interval),
            page_size: self.list_page_size,
        }
    }
}

/// What `--source` chose.
enum Source {
    Spec(SourceSpec),
    Kube(Box<kube::Config>, KubeOptions),
}

/// Where the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Persistence optional; an unreachable Redis degrades the service.
    Development,
    /// Persistence on and Redis reachable at startup, or no start.
    Production,
}

/// Persistence flags.
#[derive(Debug, Args)]
pub struct PersistArgs {
    /// Write the graph behind to Redis and restore it at startup.
    #[arg(long, env = "ENABLE_PERSISTENCE", value_parser = clap::builder::BoolishValueParser::new(),
          default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_persistence: bool,
    /// Where the graph is kept.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Seconds between periodic snapshots; 0 takes them only at shutdown (and after the first
    /// full load, and when Redis comes back).
    #[arg(long, env = "ASTROLABE_SNAPSHOT_INTERVAL", default_value_t = 300)]
    pub snapshot_interval: u64,
    /// The longest a change waits before it is written, in milliseconds.
    #[arg(long, env = "ASTROLABE_FLUSH_INTERVAL_MS", default_value_t = 50)]
    pub flush_interval_ms: u64,
    /// Changes taken from the queue per write cycle.
    #[arg(long, env = "ASTROLABE_BATCH_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Seconds the oldest unwritten change may wait, while Redis answers, before `/health`
    /// reports persistence as behind (`degraded`): the writer short of CPU, or Redis too slow
    /// for the rate of change.
    #[arg(long, env = "ASTROLABE_PERSISTENCE_LAG_WARNING", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub persistence_lag_warning: u64,
}

impl PersistArgs {
    fn config(&self) -> PersistConfig {
        PersistConfig {
            redis: self.redis.config(),
            snapshot_interval: Duration::from_secs(self.snapshot_interval),
            flush_interval: Duration::from_millis(self.flush_interval_ms.max(1)),
            batch_size: usize::try_from(self.batch_size).unwrap_or(usize::MAX),
            behind_warning: Duration::from_secs(self.persistence_lag_warning),
            ..PersistConfig::default()
        }
    }
}

pub(super) fn run(args: &ServeArgs) -> Result<(), Failure> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| Failure::usage(format!("invalid --listen {:?}: {e}", args.listen)))?;
    let config = ApiConfig {
        max_nodes: usize::try_from(args.max_nodes).unwrap_or(usize::MAX),
        response_cache_bytes: usize::try_from(args.response_cache_mb.saturating_mul(1024 * 1024))
            .unwrap_or(usize::MAX),
    };
    let persist = &args.persistence;
    if args.environment == Environment::Production && !persist.enable_persistence {
        return Err(Failure::usage(
            "ASTROLABE_ENV=production requires persistence: set ENABLE_PERSISTENCE=true (or --enable-persistence) and REDIS_ADDR",
        ));
    }
    let source = match args.source.as_str() {
        "kube" => {
            let opts = args.kube.options();
            sources::kube::validate(&opts).map_err(|e| Failure::usage(e.to_string()))?;
            // Found before anything else starts: without a cluster, say so and stop rather than
            // serve something else.
            let config = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::runtime(format!("starting a runtime: {e}")))?
                .block_on(sources::kube::find_config(&opts))
                .map_err(|e| match e {
                    sources::kube::KubeError::NoConfig(_) => Failure::usage(e.to_string()),
                    e => Failure::runtime(e.to_string()),
                })?;
            Source::Kube(Box::new(config), opts)
        }
        s => {
            let spec = SourceSpec::parse(s).map_err(Failure::usage)?;
            if let SourceSpec::Path(p) = &spec
                && !p.exists()
            {
                return Err(Failure::runtime(format!("{} does not exist", p.display())));
            }
            Source::Spec(spec)
        }
    };
    // Restore what Redis holds before serving anything.
    let mut restored = persistence::Recovered::default();
    let mut graph = Graph::new();
    let persist_config = persist.enable_persistence.then(|| persist.config());
    if let Some(pc) = &persist_config {
        // One connection answers both "is Redis there" and "is it configured sensibly".
        match persistence::hygiene(&pc.redis) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                let started = Instant::now();
                // The graph is built while the snapshot's later chunks are still being read.
                match persistence::recover_with(&pc.redis, &mut graph) {
                    Ok(r) => {
                        tracing::info!(
                            objects = r.objects.len(),
                            snapshot = ?r.snapshot_generation,
                            log_entries = r.log_batches,
                            log_states = r.log_states,
                            log_objects = r.log_objects,
                            log_seconds = r.log_took.as_secs_f64(),
                            seconds = started.elapsed().as_secs_f64(),
                            "restored the graph from Redis"
                        );
                        restored = r;
                    }
                    Err(e) => {
                        graph = Graph::new();
                        tracing::error!(
                        error = %e,
                        "the state in Redis cannot be read; starting from the source alone and leaving that data untouched \
                         until a newer snapshot replaces it"
                        );
                    }
                }
            }
            Err(e) if args.environment == Environment::Production => {
                return Err(Failure::runtime(format!(
                    "ASTROLABE_ENV=production and {} is not reachable: {e}",
                    persist.redis.describe()
                )));
            }
            Err(e) => tracing::warn!(
                error = %e,
                "PERSISTENCE DEGRADED: {} is not reachable; serving from memory, retrying in the background",
                persist.redis.describe()
            ),
        }
    }
    let is_restored = !restored.objects.is_empty();

    let projector = Projector::new(&args.allow_annotations);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("astrolabe-http")
        .build()
        .map_err(|e| Failure::runtime(format!("starting the runtime: {e}")))?;
    let shutdown_timeout = Duration::from_secs(args.shutdown_timeout);
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::runtime(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(|e| Failure::runtime(e.to_string()))?;
        let (sink, pending) = match persist_config {
            Some(pc) => {
                let (sink, pending) = persistence::channel(pc);
                (Some(sink), Some(pending))
            }
            None => (None, None),
        };
        let (handle, tx, writer) =
            ingest::start_with(graph, ingest::Options { persist: sink, restored: is_restored });
        let persistence = pending.map(|p| p.start(handle.clone(), restored));
        let observer = persistence.as_ref().map(persistence::Persistence::observer);

        let stop_source = Arc::new(AtomicBool::new(false));
        let kube_status = matches!(source, Source::Kube(..)).then(|| Arc::new(KubeStatus::default()));
        let source = {
            let (stop, churn, status) = (stop_source.clone(), args.demo_churn, kube_status.clone());
            std::thread::Builder::new()
                .name("astrolabe-source".into())
                .spawn(move || match source {
                    Source::Spec(spec) => {
                        let started = Instant::now();
                        match sources::run(&spec, &projector, &tx, now_unix(), churn, &stop) {
                            Ok(r) => tracing::info!(
                                objects = r.objects,
                                skipped = r.skipped,
                                seconds = started.elapsed().as_secs_f64(),
                                "source stopped after loading"
                            ),
                            Err(e) => tracing::error!(error = %e, "the source failed"),
                        }
                    }
                    Source::Kube(config, opts) => {
                        let status = status.unwrap_or_default();
                        if let Err(e) = sources::kube::run_blocking(*config, opts, projector, tx, status.clone(), &stop) {
                            tracing::error!(error = %e, "the Kubernetes source failed");
                            status.stopped(e.to_string());
                        }
                    }
                })
                .map_err(|e| Failure::runtime(format!("starting the source thread: {e}")))?
        };
        tracing::info!(address = %local, source = %args.source, restored = is_restored, "listening on {local}");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, AppState::with_sources(handle, config, observer, kube_status), async {
            let _ = stop_rx.await;
        }));
        shutdown_signal().await;
        let deadline = Instant::now() + shutdown_timeout;
        tracing::info!(
            "shutting down: stopping the source, finishing requests{}",
            if persistence.is_some() { ", writing the final snapshot" } else { "" }
        );
        stop_source.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(());
        let served = match tokio::time::timeout(remaining(deadline), server).await {
            Ok(Ok(r)) => r.map_err(|e| Failure::runtime(format!("serving: {e}"))),
            Ok(Err(e)) => Err(Failure::runtime(format!("the server task failed: {e}"))),
            Err(_) => {
                tracing::warn!("requests still running at the shutdown deadline; stopping anyway");
                Ok(())
            }
        };
        tokio::task::spawn_blocking(move || {
            // The source holds the graph writer's sender: once it is gone, the writer applies
            // what is queued and stops.
            wait_until(deadline, || source.is_finished());
            if source.is_finished() {
                let _ = source.join();
                writer.join();
            }
            if let Some(p) = persistence {
                match p.snapshot(remaining(deadline)) {
                    Ok(r) => tracing::info!(objects = r.objects, bytes = r.bytes, "final snapshot written"),
                    Err(e) => tracing::warn!(error = %e, "no final snapshot: the log written so far restores the graph"),
                }
                p.stop(deadline);
            }
        })
        .await
        .map_err(|e| Failure::runtime(format!("shutting down: {e}")))?;
        served
    })
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
