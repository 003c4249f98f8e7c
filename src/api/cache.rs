//! A shared cache of API responses, so that many clients asking the same question of the same
//! graph state (dashboards refreshing one namespace view) cost one computation.
//!
//! An entry is keyed by the exact path and query, and by everything the body depends on besides
//! the graph's contents: the graph's generation (which grows with every change), the time of the
//! last change and the sync flag (both in v2 bodies), and for v1 the current second (v1 bodies
//! carry ages). An entry can therefore never be served for another state of the graph: it just
//! stops matching. Bodies are shared (`Bytes`), so a hit costs no copy. The cache holds at most
//! its byte budget; on overflow, entries of older generations go first, then everything.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hashbrown::HashMap;
use parking_lot::Mutex;

use super::AppState;
use super::metrics::last_change_age;

/// Largest body worth caching (bodies are buffered in full to be cached).
const MAX_ENTRY: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uri: String,
    generation: u64,
    changed_ms: u64,
    synced: bool,
    /// The current second for v1 (ages), 0 otherwise.
    second: i64,
}

struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// The cache, with its hit and miss counters.
#[derive(Default)]
pub struct ResponseCache {
    budget: usize,
    inner: Mutex<Inner>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// A cache of at most `budget` bytes of bodies; 0 disables it.
    pub fn new(budget: usize) -> ResponseCache {
        ResponseCache {
            budget,
            ..ResponseCache::default()
        }
    }

    fn get(&self, key: &Key) -> Option<(StatusCode, HeaderMap, Bytes)> {
        let inner = self.inner.lock();
        inner
            .entries
            .get(key)
            .map(|e| (e.status, e.headers.clone(), e.body.clone()))
    }

    fn put(&self, key: Key, entry: Entry) {
        let size = entry.body.len() + key.uri.len();
        if size > self.budget {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.bytes + size > self.budget {
            // Entries of older generations can never match again: drop them first.
            let generation = key.generation;
            inner.entries.retain(|k, _| k.generation >= generation);
            inner.bytes = inner
                .entries
                .iter()
                .map(|(k, e)| e.body.len() + k.uri.len())
                .sum();
        }
        if inner.bytes + size > self.budget {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += size;
        if let Some(old) = inner.entries.insert(key.clone(), entry) {
            inner.bytes -= old.body.len() + key.uri.len();
        }
    }
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/v1/") || (path.starts_with("/api/v2/") && path != "/api/v2/openapi.json")
}

/// Serves API GETs from the cache when an identical request met the same graph state, and
/// stores successful answers. Also stamps v2 answers with the moving age of the last change,
/// which is kept out of bodies and cached headers.
pub(super) async fn layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let v2 = path.starts_with("/api/v2/");
    let cache = st.cache();
    let cacheable = cache.budget > 0
        && is_api(path)
        && (req.method() == Method::GET || req.method() == Method::HEAD);
    if !cacheable {
        return stamp(next.run(req).await, v2.then_some(&st));
    }
    let key = {
        let stats = st.graph().stats();
        Key {
            uri: req.uri().to_string(),
            generation: st.graph().read().generation(),
            changed_ms: stats.last_applied_ms.load(Ordering::Relaxed),
            synced: st.graph().is_synced(),
            second: if v2 { 0 } else { super::now_unix() },
        }
    };
    let head = req.method() == Method::HEAD;
    if let Some((status, headers, body)) = cache.get(&key) {
        cache.hits.fetch_add(1, Ordering::Relaxed);
        let mut resp = (
            status,
            if head {
                Body::empty()
            } else {
                Body::from(body)
            },
        )
            .into_response();
        *resp.headers_mut() = headers;
        return stamp(resp, v2.then_some(&st));
    }
    cache.misses.fetch_add(1, Ordering::Relaxed);
    let resp = next.run(req).await;
    if resp.status() != StatusCode::OK || head {
        return stamp(resp, v2.then_some(&st));
    }
    let (parts, body) = resp.into_parts();
    // Only a body of known length that fits is read into the cache: a larger one (a whole-cluster
    // graph beyond the budget) streams to the client untouched.
    let fits = axum::body::HttpBody::size_hint(&body)
        .exact()
        .is_some_and(|n| usize::try_from(n).is_ok_and(|n| n <= cache.budget.min(MAX_ENTRY)));
    if !fits {
        return stamp(Response::from_parts(parts, body), v2.then_some(&st));
    }
    let bytes = match axum::body::to_bytes(body, MAX_ENTRY).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "reading a response to cache it failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    cache.put(
        key,
        Entry {
            status: parts.status,
            headers: parts.headers.clone(),
            body: bytes.clone(),
        },
    );
    stamp(
        Response::from_parts(parts, Body::from(bytes)),
        v2.then_some(&st),
    )
}

/// Adds `X-Astrolabe-Last-Change-Age` (seconds, millisecond precision) to v2 answers.
fn stamp(mut resp: Response, v2: Option<&AppState>) -> Response {
    if let Some(st) = v2
        && let Some(age) = last_change_age(st.graph().stats())
        && let Ok(v) = HeaderValue::from_str(&format!("{:.3}", age.as_secs_f64()))
    {
        resp.headers_mut().insert("x-astrolabe-last-change-age", v);
    }
    resp
}
