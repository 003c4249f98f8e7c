//! Queries over HTTP while a continuous stream of changes is applied: every response is
//! internally consistent (no edge to a node missing from the same response), and queries are
//! answered in the middle of the stream, from intermediate generations, rather than waiting for
//! ingest to drain.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use astrolabe::graph::Change;
use astrolabe::ingest::{self, Event};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig, names};
use astrolabe::sources::demo_change;
use serde_json::Value;
use support::http::Server;

/// Every edge of a `{nodes, edges}` body joins two nodes of the same body.
fn consistent(v: &Value, what: &str) {
    let uids: BTreeSet<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["uid"].as_str().unwrap())
        .collect();
    for e in v["edges"].as_array().unwrap() {
        let (from, to) = (e["from"].as_str().unwrap(), e["to"].as_str().unwrap());
        assert!(
            uids.contains(from) && uids.contains(to),
            "{what}: edge {e} leaves the response"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stay_consistent_while_changes_stream_in() {
    let projector = Projector::default();
    let mut cluster = DemoCluster::new(DemoConfig {
        objects: 800,
        ..DemoConfig::default()
    });
    let (handle, tx, writer) = ingest::start();
    for v in cluster.objects() {
        tx.change(Change::Upsert(Arc::new(projector.project(&v).unwrap())));
    }
    tx.send(Event::Synced);
    let s = Server::start(handle.clone()).await;
    let start_generation = s.ok("/api/v2/kinds").await["freshness"]["generation"]
        .as_u64()
        .unwrap();

    // The stream: churn steps until told to stop, then a final count of what was sent.
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for ev in cluster.step() {
                    tx.change(demo_change(&ev, &projector).unwrap());
                    sent += 1;
                }
            }
            drop(tx);
            sent
        })
    };

    let ns = names::PROBLEM_NAMESPACE;
    let mut generations = BTreeSet::new();
    for round in 0..60 {
        let v1 = s.ok(&format!("/api/v1/graph?namespace={ns}")).await;
        consistent(&v1, "v1 graph");
        let v2 = s.ok(&format!("/api/v2/graph?namespace={ns}")).await;
        consistent(&v2, "v2 graph");
        generations.insert(v2["freshness"]["generation"].as_u64().unwrap());
        let whole = s.ok("/api/v2/graph").await;
        consistent(&whole, "whole graph");
        // A Pod may be deleted between finding it and asking for its neighbourhood: 200 or 404.
        if let Some(pod) = s
            .ok(&format!(
                "/api/v2/resources?kind=Pod&namespace={ns}&limit=1"
            ))
            .await["items"][0]["uid"]
            .as_str()
        {
            let r = s
                .get(&format!("/api/v2/resources/{pod}/neighbors?depth=2"))
                .await;
            match r.status {
                200 => consistent(&r.json(), "neighbors"),
                404 => {}
                other => panic!("neighbors answered {other} in round {round}"),
            }
        }
        let imp = s
            .ok(&format!(
                "/api/v2/resources?kind=ConfigMap&namespace={}&limit=1",
                names::SHARED_CONFIGMAP_NAMESPACE
            ))
            .await;
        if let Some(cm) = imp["items"][0]["uid"].as_str() {
            let r = s.get(&format!("/api/v2/resources/{cm}/impact")).await;
            assert!(r.status == 200 || r.status == 404);
            if r.status == 200 {
                let v = r.json();
                let uids: BTreeSet<&str> = v["affected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["resource"]["uid"].as_str().unwrap())
                    .collect();
                for e in v["edges"].as_array().unwrap() {
                    assert!(
                        uids.contains(e["from"].as_str().unwrap())
                            && uids.contains(e["to"].as_str().unwrap())
                    );
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = tokio::task::spawn_blocking(move || streamer.join().unwrap())
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
    let end_generation = s.ok("/api/v2/kinds").await["freshness"]["generation"]
        .as_u64()
        .unwrap();
    assert!(sent > 0 && end_generation > start_generation);
    // The queries saw the graph move while the stream was being applied: several intermediate
    // generations, none of them the final one waited for.
    let intermediate = generations
        .iter()
        .filter(|g| **g > start_generation && **g < end_generation)
        .count();
    assert!(
        intermediate >= 10,
        "queries observed {intermediate} intermediate generations: {generations:?}"
    );
}
