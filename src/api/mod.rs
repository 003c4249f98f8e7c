//! The HTTP API (axum): Astrolabe v1 compatibility (`v1`), the v2 graph queries (`v2`), and
//! operations (`ops`: health, readiness, metrics, the OpenAPI document).
//!
//! Handlers take the graph's read lock for the duration of one query and serialise the response
//! while holding it, so that every response describes one state of the graph; no lock is held
//! across an `.await`. The OpenAPI document is assembled from the handlers' `#[utoipa::path]`
//! annotations by the same router that routes them, so a route cannot exist without its
//! documentation.

mod cache;
mod error;
mod extract;
mod metrics;
mod ops;
mod params;
mod v1;
mod v2;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, V1Error};
pub use metrics::Metrics;
pub use metrics::names as metric_names;

use crate::ingest::GraphHandle;
use crate::persistence::PersistObserver;
use crate::sources::kube::KubeStatus;

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The most nodes a graph-shaped response carries; larger results are cut and flagged
    /// `truncated`.
    pub max_nodes: usize,
    /// Bytes of response bodies the shared response cache may hold; 0 disables it.
    pub response_cache_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_nodes: 50_000,
            response_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What every handler can reach: the graph's read handle, the metrics, the settings.
#[derive(Clone, Debug)]
pub struct AppState(Arc<StateInner>);

#[derive(Debug)]
struct StateInner {
    graph: GraphHandle,
    metrics: Metrics,
    cache: Arc<cache::ResponseCache>,
    persistence: Option<PersistObserver>,
    kube: Option<Arc<KubeStatus>>,
    config: ApiConfig,
}

impl AppState {
    /// State over `graph`.
    pub fn new(graph: GraphHandle, config: ApiConfig) -> AppState {
        AppState::with_sources(graph, config, None, None)
    }

    /// State over `graph`, reporting on persistence and on the live Kubernetes source.
    pub fn with_sources(
        graph: GraphHandle,
        config: ApiConfig,
        persistence: Option<PersistObserver>,
        kube: Option<Arc<KubeStatus>>,
    ) -> AppState {
        let cache = Arc::new(cache::ResponseCache::new(config.response_cache_bytes));
        AppState(Arc::new(StateInner {
            metrics: Metrics::new(
                graph.clone(),
                cache.clone(),
                persistence.clone(),
                kube.clone(),
            ),
            graph,
            cache,
            persistence,
            kube,
            config,
        }))
    }

    pub(crate) fn kube(&self) -> Option<&KubeStatus> {
        self.0.kube.as_deref()
    }

    pub(crate) fn persistence(&self) -> Option<&PersistObserver> {
        self.0.persistence.as_ref()
    }

    /// The graph.
    pub fn graph(&self) -> &GraphHandle {
        &self.0.graph
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn cache(&self) -> &cache::ResponseCache {
        &self.0.cache
    }

    pub(crate) fn max_nodes(&self) -> usize {
        self.0.config.max_nodes
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Astrolabe",
        description = "A live graph of a Kubernetes cluster's resources and their relationships. \
            v1 is the compatibility surface of the Grafana plugin; v2 is the graph API.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "v1", description = "Astrolabe v1 compatibility (the Grafana plugin's contract)"),
        (name = "v2", description = "Graph queries"),
        (name = "operations", description = "Health, readiness, metrics")
    )
)]
struct ApiDoc;

/// The router and the OpenAPI document it was built with.
fn assemble(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(v1::namespaces))
        .routes(routes!(v1::releases))
        .routes(routes!(v1::charts))
        .routes(routes!(v1::resources))
        .routes(routes!(v1::graph))
        .routes(routes!(v2::resources))
        .routes(routes!(v2::resource))
        .routes(routes!(v2::object_namespaced))
        .routes(routes!(v2::object_cluster))
        .routes(routes!(v2::neighbors))
        .routes(routes!(v2::impact))
        .routes(routes!(v2::path))
        .routes(routes!(v2::graph))
        .routes(routes!(v2::kinds))
        .routes(routes!(v2::namespaces))
        .routes(routes!(v2::releases))
        .routes(routes!(v2::problems))
        .routes(routes!(ops::openapi_json))
        .with_state(state.clone())
        .split_for_parts();
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cache::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(state, metrics::track));
    (router, api)
}

/// The API's router.
pub fn router(state: AppState) -> Router {
    assemble(state).0
}

/// The OpenAPI 3 document of the whole API, as served at `/api/v2/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let graph = GraphHandle::fixed(crate::graph::Graph::new());
    assemble(AppState::new(graph, ApiConfig::default())).1
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whether a path belongs to the v1 contract (its `/api/v1` routes and `/health`), whose errors
/// have the v1 shape.
fn is_v1(uri: &Uri) -> bool {
    let path = uri.path();
    path.starts_with("/api/v1/") || path == "/api/v1" || path == "/health"
}

async fn not_found(uri: Uri) -> Response {
    let e = ApiError::not_found(format!("no route for {}", uri.path()));
    if is_v1(&uri) {
        e.v1().into_response()
    } else {
        e.into_response()
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    tracing::debug!(%method, path = uri.path(), "method not allowed");
    let e = ApiError::MethodNotAllowed;
    if is_v1(&uri) {
        e.v1().into_response()
    } else {
        e.into_response()
    }
}

/// A 200 response with `value` as JSON.
pub(crate) fn json_ok<T: Serialize + ?Sized>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

/// A 200 JSON response for a body of about `nodes` objects: the buffer is sized up front, so
/// that a multi-megabyte graph is not copied through a dozen reallocations.
pub(crate) fn json_ok_nodes<T: Serialize + ?Sized>(value: &T, nodes: usize) -> Response {
    json_sized(
        StatusCode::OK,
        value,
        256 + nodes.saturating_mul(BYTES_PER_NODE),
    )
}

/// About how many bytes one object takes in a response (measured on the demo mix: 850 to 950).
const BYTES_PER_NODE: usize = 1024;

/// A response with `value` as JSON.
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    json_sized(status, value, 128)
}

/// A response with `value` as JSON, written into a buffer of `capacity` bytes to start with.
/// Serialising our own types cannot fail; if it ever did, the error is logged and answered as a
/// 500 without details.
fn json_sized<T: Serialize + ?Sized>(status: StatusCode, value: &T, capacity: usize) -> Response {
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => {
            let mut resp = (status, body).into_response();
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "serialising a response failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The current time, whole seconds since the epoch.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
