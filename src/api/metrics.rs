//! Prometheus metrics: request latency by route template and responses by status class
//! (recorded by a middleware), and the graph's and writer's figures (read at scrape time from
//! the graph handle, so they can never drift from the truth).
//!
//! Label values are bounded: route templates come from the router (`/api/v2/resources/{uid}`,
//! never the raw path; unmatched requests are `unmatched`), status classes are `2xx`..`5xx`,
//! kinds are the cluster's kinds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::ingest::GraphHandle;

/// Metric names, as constants so that tests and dashboards share them.
pub mod names {
    /// Histogram of request durations in seconds, by `route`.
    pub const REQUEST_DURATION: &str = "astrolabe_http_request_duration_seconds";
    /// Counter of responses, by `route` and `class`.
    pub const RESPONSES: &str = "astrolabe_http_responses";
    /// Gauge of objects, by `kind`.
    pub const OBJECTS: &str = "astrolabe_objects";
    /// Counter of changes applied to the graph.
    pub const CHANGES_APPLIED: &str = "astrolabe_changes_applied";
    /// Histogram of apply lag in seconds (source receipt to visible).
    pub const APPLY_LAG: &str = "astrolabe_apply_lag_seconds";
    /// Histogram of how long the single writer held the graph's write lock, per batch.
    pub const WRITE_LOCK_HOLD: &str = "astrolabe_ingest_write_lock_hold_seconds";
    /// Counter of Kubernetes watch events, by `kind` and `type`.
    pub const KUBE_EVENTS: &str = "astrolabe_kube_events";
    /// Counter of relists, by `kind`.
    pub const KUBE_RELISTS: &str = "astrolabe_kube_relists";
    /// Counter of list and watch errors, by `kind`.
    pub const KUBE_WATCH_ERRORS: &str = "astrolabe_kube_watch_errors";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    route: String,
    class: &'static str,
}

/// The registry and the metrics recorded per request.
pub struct Metrics {
    registry: Registry,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    responses: Family<ResponseLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s, doubling: point queries land in the first buckets, whole-cluster
    // graphs in the last.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 19,
    ))
}

impl Metrics {
    /// A registry with every metric, reading graph figures from `graph` at scrape time.
    pub fn new(
        graph: GraphHandle,
        cache: Arc<super::cache::ResponseCache>,
        persistence: Option<crate::persistence::PersistObserver>,
        kube: Option<Arc<crate::sources::kube::KubeStatus>>,
    ) -> Metrics {
        let mut registry = Registry::default();
        let duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            names::REQUEST_DURATION,
            "HTTP request duration in seconds, by route template",
            duration.clone(),
        );
        registry.register(
            names::RESPONSES,
            "HTTP responses, by route template and status class",
            responses.clone(),
        );
        registry.register(
            names::APPLY_LAG,
            "Seconds from a source receiving a change to readers seeing it in the graph",
            graph.stats().apply_lag.clone(),
        );
        registry.register(
            names::WRITE_LOCK_HOLD,
            "Seconds the single writer held the graph's write lock per batch: the longest a query waits for it",
            graph.stats().write_hold.clone(),
        );
        if let Some(k) = kube {
            registry.register(
                names::KUBE_EVENTS,
                "Watch events received from the Kubernetes API, by kind and type (list, apply, delete)",
                k.events.clone(),
            );
            registry.register(
                names::KUBE_RELISTS,
                "Full lists of a kind after its first (after a 410 or a restarted watch)",
                k.relists.clone(),
            );
            registry.register(
                names::KUBE_WATCH_ERRORS,
                "List and watch errors from the Kubernetes API, by kind",
                k.watch_errors.clone(),
            );
            registry.register(
                "astrolabe_kube_skipped_objects",
                "Objects from the Kubernetes API that could not be read and were skipped",
                k.skipped_objects.clone(),
            );
        }
        registry.register_collector(Box::new(GraphCollector { graph, cache }));
        if let Some(p) = persistence {
            registry.register_collector(Box::new(PersistCollector(p)));
        }
        Metrics {
            registry,
            duration,
            responses,
        }
    }

    fn observe(&self, route: &str, status: StatusCode, elapsed: Duration) {
        self.duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.responses
            .get_or_create(&ResponseLabels {
                route: route.to_string(),
                class,
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Records every request's route, status class and duration.
pub(super) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::<str>::from("unmatched"), |m| Arc::from(m.as_str()));
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics()
        .observe(&route, resp.status(), started.elapsed());
    resp
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Graph and writer figures, read on each scrape.
#[derive(Debug)]
struct GraphCollector {
    graph: GraphHandle,
    cache: Arc<super::cache::ResponseCache>,
}

impl Collector for GraphCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.graph.stats();
        let (kinds, nodes, edges, generation) = {
            let g = self.graph.read();
            let kinds: Vec<(String, usize)> =
                g.kind_counts().map(|(k, c)| (k.qualified(), c)).collect();
            (kinds, g.node_count(), g.edge_count(), g.generation())
        };
        let objects = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            names::OBJECTS,
            "Objects in the graph, by kind (group/Kind)",
            None,
            objects.metric_type(),
        )?;
        for (kind, count) in kinds {
            ConstGauge::new(count as i64).encode(family.encode_family(&KindLabels { kind })?)?;
        }
        let gauges: [(&str, &str, i64); 5] = [
            (
                "astrolabe_graph_nodes",
                "Nodes in the graph, synthetic Helm releases included",
                nodes as i64,
            ),
            ("astrolabe_graph_edges", "Edges in the graph", edges as i64),
            (
                "astrolabe_graph_generation",
                "Changes applied since start; grows with every change",
                generation as i64,
            ),
            (
                "astrolabe_source_synced",
                "1 once the source's first full load is in the graph",
                i64::from(stats.synced.load(Ordering::Acquire)),
            ),
            (
                "astrolabe_last_change_age_seconds",
                "Seconds since the writer last applied a change (-1 before any)",
                last_change_age(stats).map_or(-1, |d| d.as_secs() as i64),
            ),
        ];
        encode_all(
            &mut encoder,
            gauges.map(|(n, h, v)| (n, h, ConstGauge::new(v))),
        )?;
        let counters: [(&str, &str, u64); 4] = [
            (
                "astrolabe_http_cache_hits",
                "API answers served from the response cache",
                self.cache.hits.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_http_cache_misses",
                "API answers computed (not in the response cache)",
                self.cache.misses.load(Ordering::Relaxed),
            ),
            (
                names::CHANGES_APPLIED,
                "Changes applied to the graph by the writer",
                stats.applied.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_ingest_batches",
                "Write batches applied under the graph lock",
                stats.batches.load(Ordering::Relaxed),
            ),
        ];
        encode_all(
            &mut encoder,
            counters.map(|(n, h, v)| (n, h, ConstCounter::new(v))),
        )?;
        Ok(())
    }
}

/// Encodes unlabelled metrics, each with its name and help.
fn encode_all<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    metrics: impl IntoIterator<Item = (&'static str, &'static str, M)>,
) -> Result<(), std::fmt::Error> {
    for (name, help, m) in metrics {
        m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
    }
    Ok(())
}

/// Time since the writer last applied a change, if it ever did.
pub(super) fn last_change_age(stats: &crate::ingest::IngestStats) -> Option<Duration> {
    age_since_ms(stats.last_applied_ms.load(Ordering::Relaxed))
}

/// Time since a Unix time in milliseconds; `None` for 0 (never).
pub(super) fn age_since_ms(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(crate::ingest::unix_ms().saturating_sub(ms)))
}

/// Persistence figures, read on each scrape.
#[derive(Debug)]
struct PersistCollector(crate::persistence::PersistObserver);

impl Collector for PersistCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.status();
        let st = self.0.stats();
        let age = |ms: u64| age_since_ms(ms).map_or(-1.0, |d| d.as_secs_f64());
        let gauges: [(&str, &str, f64); 11] = [
            (
                "astrolabe_persistence_connected",
                "1 when the writer has a working Redis connection",
                f64::from(u8::from(s.connected)),
            ),
            (
                "astrolabe_persistence_queue_depth",
                "Changes queued for the Redis writer",
                s.queue_depth as f64,
            ),
            (
                "astrolabe_persistence_dirty_objects",
                "Objects marked dirty after the queue overflowed",
                s.dirty as f64,
            ),
            (
                "astrolabe_persistence_behind_seconds",
                "How long the oldest change not yet written to Redis has waited (0 when none waits)",
                s.behind.map_or(0.0, |d| d.as_secs_f64()),
            ),
            (
                "astrolabe_persistence_flush_seconds",
                "Duration of the last log write",
                st.flush_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "astrolabe_persistence_last_flush_age_seconds",
                "Seconds since the last log write (-1 before any)",
                age(st.last_flush_ms.load(Ordering::Relaxed)),
            ),
            (
                "astrolabe_persistence_last_snapshot_age_seconds",
                "Seconds since the last snapshot (-1 before any)",
                age(st.last_snapshot_ms.load(Ordering::Relaxed)),
            ),
            (
                "astrolabe_persistence_last_snapshot_bytes",
                "Bytes written by the last snapshot",
                st.last_snapshot_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "astrolabe_persistence_last_snapshot_seconds",
                "Duration of the last snapshot",
                st.last_snapshot_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "astrolabe_persistence_snapshot_running",
                "1 while a snapshot is written in the background (the log goes on meanwhile)",
                f64::from(u8::from(st.snapshot_running.load(Ordering::Relaxed))),
            ),
            (
                "astrolabe_persistence_acked_generation",
                "The graph generation Redis has acknowledged",
                st.acked_generation.load(Ordering::Relaxed) as f64,
            ),
        ];
        encode_all(
            &mut encoder,
            gauges.map(|(n, h, v)| (n, h, ConstGauge::new(v))),
        )?;
        let counters: [(&str, &str, u64); 8] = [
            (
                "astrolabe_persistence_batches",
                "Log entries written",
                st.batches.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_persistence_objects_written",
                "Object states written in log entries",
                st.objects.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_persistence_log_bytes",
                "Bytes of the log entries written",
                st.log_bytes.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_persistence_snapshots",
                "Snapshots written",
                st.snapshots.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_persistence_snapshots_hurried",
                "Background snapshots that stopped waiting for idle cores (the log outgrew half \
                 its limit meanwhile, or something waited for them)",
                st.snapshots_hurried.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_persistence_reconnects",
                "Reconnections to Redis after a loss",
                st.reconnects.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_persistence_errors",
                "Failed Redis operations",
                st.errors.load(Ordering::Relaxed),
            ),
            (
                "astrolabe_persistence_overflowed",
                "Changes that found the queue full (their objects were marked dirty)",
                st.overflowed.load(Ordering::Relaxed),
            ),
        ];
        encode_all(
            &mut encoder,
            counters.map(|(n, h, v)| (n, h, ConstCounter::new(v))),
        )?;
        Ok(())
    }
}
