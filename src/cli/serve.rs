//! `astrolabe serve`: load a source into the graph (on its own thread, through the single
//! writer) and answer the HTTP API while it loads and after.
//!
//! Shutdown on SIGTERM or SIGINT: stop accepting connections, let in-flight requests finish
//! (at most [`GRACE`]), exit 0.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;

use super::Failure;
use crate::api::{self, ApiConfig, AppState};
use crate::ingest;
use crate::relations::Projector;
use crate::sources::{self, SourceSpec};

/// How long in-flight requests may run after a shutdown signal.
pub(super) const GRACE: Duration = Duration::from_secs(10);

/// Arguments of `serve`. Every flag can also be set through its environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where objects come from: `demo[:N]` (the built-in demo cluster of about N objects),
    /// `file:PATH` (manifests or a kubectl dump), or `kube` (a live cluster; not in this
    /// version yet).
    #[arg(long, env = "ASTROLABE_SOURCE", default_value = "demo")]
    pub source: String,
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
}

pub(super) fn run(args: &ServeArgs) -> Result<(), Failure> {
    let spec = match args.source.as_str() {
        "kube" => {
            return Err(Failure::usage(
                "the live Kubernetes source is not available in this version; use --source demo[:N] or --source file:PATH",
            ));
        }
        s => SourceSpec::parse(s).map_err(Failure::usage)?,
    };
    if let SourceSpec::Path(p) = &spec
        && !p.exists()
    {
        return Err(Failure::runtime(format!("{} does not exist", p.display())));
    }
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| Failure::usage(format!("invalid --listen {:?}: {e}", args.listen)))?;
    let config = ApiConfig {
        max_nodes: usize::try_from(args.max_nodes).unwrap_or(usize::MAX),
        response_cache_bytes: usize::try_from(args.response_cache_mb.saturating_mul(1024 * 1024))
            .unwrap_or(usize::MAX),
    };
    let projector = Projector::new(&args.allow_annotations);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("astrolabe-http")
        .build()
        .map_err(|e| Failure::runtime(format!("starting the runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::runtime(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Failure::runtime(e.to_string()))?;
        let (handle, tx, _writer) = ingest::start();
        let source = spec.clone();
        std::thread::Builder::new()
            .name("astrolabe-source".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                match sources::load(&source, &projector, &tx, now_unix()) {
                    Ok(r) => tracing::info!(
                        objects = r.objects,
                        skipped = r.skipped,
                        seconds = started.elapsed().as_secs_f64(),
                        "source loaded"
                    ),
                    Err(e) => tracing::error!(error = %e, "loading the source failed"),
                }
            })
            .map_err(|e| Failure::runtime(format!("starting the source thread: {e}")))?;
        tracing::info!(address = %local, source = %args.source, "listening on {local}");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, AppState::new(handle, config), async {
            let _ = stop_rx.await;
        }));
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let _ = stop_tx.send(());
        match tokio::time::timeout(GRACE, server).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(Failure::runtime(format!("serving: {e}"))),
            Ok(Err(e)) => Err(Failure::runtime(format!("the server task failed: {e}"))),
            Err(_) => {
                tracing::warn!(
                    "requests still running after {} s; stopping anyway",
                    GRACE.as_secs()
                );
                Ok(())
            }
        }
    })
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
