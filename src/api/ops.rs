//! Operations: liveness (`/healthz`), readiness (`/readyz`), health with checks (`/health`, the
//! v1 shape extended), Prometheus metrics (`/metrics`) and the OpenAPI document.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::metrics::{age_since_ms, last_change_age};
use super::{AppState, json_ok, json_response};

/// One health check, in the style of the IETF health-check draft.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Check {
    /// What is checked: `source`, `graph`, `ingest`.
    name: &'static str,
    /// `pass`, `warn` or `fail`.
    status: &'static str,
    /// The measured value.
    observed_value: serde_json::Value,
    /// For people.
    details: String,
}

/// `/health`: the v1 shape (`status`, `nodes`) plus the checks behind the status.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    /// `healthy` (every check passes), `degraded` (a check warns) or `unhealthy` (a check fails).
    status: &'static str,
    /// Objects in the graph (synthetic Helm release nodes included).
    nodes: usize,
    /// Edges in the graph.
    edges: usize,
    /// Changes applied so far.
    generation: u64,
    /// Whether the source's first full load is in the graph.
    synced: bool,
    /// Whether the graph was restored from persistence at start.
    restored: bool,
    /// The checks.
    checks: Vec<Check>,
}

/// Health: whether the service is serving a complete, current graph.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Healthy or degraded", body = Health),
              (status = 503, description = "Unhealthy", body = Health)))]
pub(super) async fn health(State(st): State<AppState>) -> Response {
    let (nodes, edges, generation) = {
        let g = st.graph().read();
        (g.node_count(), g.edge_count(), g.generation())
    };
    let synced = st.graph().is_synced();
    let restored = st.graph().is_restored();
    let age = last_change_age(st.graph().stats());
    let mut checks = vec![
        Check {
            name: "source",
            status: if synced { "pass" } else { "warn" },
            observed_value: serde_json::json!(synced),
            details: match (synced, restored) {
                (true, _) => "first full load complete",
                (false, true) => "serving the restored state; first full load in progress",
                (false, false) => "first full load in progress",
            }
            .into(),
        },
        Check {
            name: "graph",
            status: "pass",
            observed_value: serde_json::json!(nodes),
            details: format!("{nodes} nodes, {edges} edges"),
        },
        Check {
            name: "ingest",
            status: "pass",
            observed_value: serde_json::json!(age.map(|a| a.as_secs_f64())),
            details: match age {
                Some(a) => format!("last change applied {:.1} s ago", a.as_secs_f64()),
                None => "no change applied yet".into(),
            },
        },
    ];
    if let Some(k) = st.kube() {
        checks.push(kube_check(k));
    }
    if let Some(p) = st.persistence() {
        checks.push(persistence_check(p));
    }
    let status = if checks.iter().any(|c| c.status == "fail") {
        "unhealthy"
    } else if checks.iter().any(|c| c.status == "warn") {
        "degraded"
    } else {
        "healthy"
    };
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(
        code,
        &Health {
            status,
            nodes,
            edges,
            generation,
            synced,
            restored,
            checks,
        },
    )
}

/// The live source's kinds: skipped ones (not served by this API server) are reported but pass;
/// forbidden or failing ones, or failing discovery, degrade the service, each named; a stopped
/// source fails the check (the graph no longer follows the cluster).
fn kube_check(k: &crate::sources::kube::KubeStatus) -> Check {
    use crate::sources::kube::{KindState, SourceProblem};
    let kinds = k.kinds();
    let names = |state: KindState| -> Vec<&String> {
        kinds
            .iter()
            .filter(|(_, s)| s.state == state)
            .map(|(name, _)| name)
            .collect()
    };
    let (skipped, forbidden, failing) = (
        names(KindState::Skipped),
        names(KindState::Forbidden),
        names(KindState::Failing),
    );
    let count = |f: fn(KindState) -> bool| kinds.values().filter(|s| f(s.state)).count();
    let watching = count(|s| s == KindState::Watching);
    let listing = count(|s| s == KindState::Listing);
    let problem = k.problem();
    let mut details = match &problem {
        Some(SourceProblem::Stopped(why)) => format!("the source stopped: {why}; "),
        Some(SourceProblem::Discovery(why)) => format!("discovery failing: {why}; "),
        None => String::new(),
    };
    details.push_str(&format!("{watching} kinds watched, {listing} listing"));
    for (label, list) in [
        ("forbidden", &forbidden),
        ("failing", &failing),
        ("skipped (not served)", &skipped),
    ] {
        if !list.is_empty() {
            let named: Vec<String> = list
                .iter()
                .map(|name| match &kinds[*name].reason {
                    Some(r) => format!("{name} ({r})"),
                    None => (*name).clone(),
                })
                .collect();
            details.push_str(&format!("; {label}: {}", named.join(", ")));
        }
    }
    Check {
        name: "kubernetes",
        status: match problem {
            Some(SourceProblem::Stopped(_)) => "fail",
            Some(SourceProblem::Discovery(_)) => "warn",
            None if forbidden.is_empty() && failing.is_empty() => "pass",
            None => "warn",
        },
        observed_value: serde_json::json!({
            "kinds": kinds,
            "skipped": skipped,
            "forbidden": forbidden,
            "failing": failing,
        }),
        details,
    }
}

/// Persistence: connected passes; Redis away (the service runs from memory and catches up
/// later) warns.
fn persistence_check(p: &crate::persistence::PersistObserver) -> Check {
    use std::sync::atomic::Ordering::Relaxed;
    let s = p.status();
    let stats = p.stats();
    let age = |ms: u64| age_since_ms(ms).map(|d| format!("{:.1} s ago", d.as_secs_f64()));
    let mut details = format!(
        "{}; {} queued, {} dirty; last write {}; last snapshot {}",
        if s.connected {
            "connected to Redis"
        } else {
            "Redis unreachable: running from memory, will catch up"
        },
        s.queue_depth,
        s.dirty,
        age(stats.last_flush_ms.load(Relaxed)).unwrap_or_else(|| "never".into()),
        age(stats.last_snapshot_ms.load(Relaxed)).unwrap_or_else(|| "never".into()),
    );
    if let Some(e) = s.last_error.filter(|_| !s.connected) {
        details.push_str(&format!("; last error: {e}"));
    }
    if let Some(b) = s.behind.filter(|_| s.lagging && s.connected) {
        details.push_str(&format!(
            "; writing behind: changes have waited {:.1} s (the writer is short of CPU, or Redis \
             is too slow for the rate of change)",
            b.as_secs_f64()
        ));
    }
    Check {
        name: "persistence",
        status: if s.connected && !s.lagging {
            "pass"
        } else {
            "warn"
        },
        observed_value: serde_json::json!(s.connected),
        details,
    }
}

/// The body of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Alive {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness: the process serves HTTP. A static answer (it is also the HTTP floor in the load
/// harness).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Alive)))]
pub(super) async fn healthz() -> Response {
    json_ok(&Alive { status: "ok" })
}

/// The body of `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Ready {
    /// Whether the service is ready.
    ready: bool,
    /// Why not, or how (restored but not yet synced).
    reason: Option<&'static str>,
}

/// Readiness: ready once the source's first full load is in the graph, or at once when the
/// graph was restored from persistence (answers are then flagged as not synced).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Ready),
              (status = 503, description = "Not ready yet", body = Ready)))]
pub(super) async fn readyz(State(st): State<AppState>) -> Response {
    if st.graph().is_synced() {
        json_ok(&Ready {
            ready: true,
            reason: None,
        })
    } else if st.graph().is_restored() {
        json_ok(&Ready {
            ready: true,
            reason: Some(
                "serving the state restored from persistence; the source's first full load is in progress",
            ),
        })
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &Ready {
                ready: false,
                reason: Some("the source's first full load is in progress"),
            },
        )
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text")))]
pub(super) async fn metrics(State(st): State<AppState>) -> Response {
    let mut resp = st.metrics().render().into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/api/v2/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(super) async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| super::openapi().to_pretty_json().unwrap_or_default());
    let mut resp = doc.clone().into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
