//! The shared response cache: identical requests against an unchanged graph are served from it,
//! a change to the graph is visible in the very next answer, errors are never cached, and the
//! budget is respected (0 disables the cache).

mod support;

use std::sync::Arc;

use astrolabe::api::ApiConfig;
use astrolabe::graph::Change;
use astrolabe::ingest::{self, Event};
use astrolabe::relations::Projector;
use serde_json::json;
use support::http::Server;

/// The value of a counter in the metrics text.
async fn counter(s: &Server, name: &str) -> u64 {
    let r = s.get("/metrics").await;
    let text = String::from_utf8(r.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .unwrap_or_else(|| panic!("{name} in metrics"))
        .parse()
        .unwrap()
}

fn config_map(name: &str, value: &str) -> Change {
    let v = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "labels": {"v": value}}});
    Change::Upsert(Arc::new(Projector::default().project(&v).unwrap()))
}

/// A server over a graph fed by a live writer; the returned sender applies changes.
async fn live(config: ApiConfig) -> (Server, ingest::EventSender) {
    let (handle, tx, _writer) = ingest::start();
    tx.change(config_map("a", "1"));
    tx.send(Event::Synced);
    let s = Server::start_with(handle, config).await;
    wait_for(&s, |v| v["items"].as_array().is_some_and(|i| !i.is_empty())).await;
    (s, tx)
}

/// Polls the ConfigMap listing until `ok` holds (the writer applies changes asynchronously).
async fn wait_for(s: &Server, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..10_000 {
        let v = s.ok("/api/v2/resources?kind=ConfigMap").await;
        if ok(&v) {
            return v;
        }
        tokio::task::yield_now().await;
    }
    panic!("the change never showed");
}

#[tokio::test]
async fn identical_requests_hit_and_changes_show_at_once() {
    let (s, tx) = live(ApiConfig::default()).await;
    let (hits, misses) = (
        counter(&s, "astrolabe_http_cache_hits").await,
        counter(&s, "astrolabe_http_cache_misses").await,
    );
    let a = s.get("/api/v1/graph?namespace=ns").await;
    let b = s.get("/api/v1/graph?namespace=ns").await;
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.body, b.body);
    assert!(
        counter(&s, "astrolabe_http_cache_hits").await > hits,
        "the second request was a hit"
    );
    assert!(counter(&s, "astrolabe_http_cache_misses").await > misses);
    // A change: the next answer shows it, whatever was cached.
    tx.change(config_map("a", "2"));
    let v = wait_for(&s, |v| v["items"][0]["labels"]["v"] == "2").await;
    assert_eq!(v["items"][0]["labels"]["v"], "2");
    let g = s.ok("/api/v1/graph?namespace=ns").await;
    assert_eq!(g["nodes"][0]["metadata"]["labels"]["v"], "2");
    // Cached v2 answers still carry the moving age header, computed per answer.
    let r = s.get("/api/v2/resources?kind=ConfigMap").await;
    assert!(r.header("x-astrolabe-last-change-age").is_some());
}

#[tokio::test]
async fn errors_are_not_cached_and_zero_disables_the_cache() {
    let (s, _tx) = live(ApiConfig::default()).await;
    let misses = counter(&s, "astrolabe_http_cache_misses").await;
    let hits = counter(&s, "astrolabe_http_cache_hits").await;
    for _ in 0..3 {
        assert_eq!(s.get("/api/v2/resources/no-such-uid").await.status, 404);
    }
    assert_eq!(
        counter(&s, "astrolabe_http_cache_hits").await,
        hits,
        "a 404 is never served from the cache"
    );
    assert_eq!(counter(&s, "astrolabe_http_cache_misses").await, misses + 3);

    let (off, _tx2) = live(ApiConfig {
        response_cache_bytes: 0,
        ..ApiConfig::default()
    })
    .await;
    for _ in 0..3 {
        off.ok("/api/v2/kinds").await;
    }
    assert_eq!(counter(&off, "astrolabe_http_cache_hits").await, 0);
    assert_eq!(
        counter(&off, "astrolabe_http_cache_misses").await,
        0,
        "a disabled cache is not even consulted"
    );
}

#[tokio::test]
async fn bodies_larger_than_the_budget_are_not_kept() {
    let (s, _tx) = live(ApiConfig {
        response_cache_bytes: 64,
        ..ApiConfig::default()
    })
    .await;
    let hits = counter(&s, "astrolabe_http_cache_hits").await;
    let misses = counter(&s, "astrolabe_http_cache_misses").await;
    for _ in 0..3 {
        s.ok("/api/v2/kinds").await;
    }
    assert_eq!(
        counter(&s, "astrolabe_http_cache_hits").await,
        hits,
        "a 200-byte body does not fit 64 bytes"
    );
    // The cache is on (each request was looked up), the body just never kept.
    assert_eq!(counter(&s, "astrolabe_http_cache_misses").await, misses + 3);
}
