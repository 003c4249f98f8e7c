//! The single writer: changes sent through the channel end up in the graph, full lists reconcile
//! (also when they delete a whole kind), and readers holding the read lock always see a state
//! between two changes while churn streams in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use astrolabe::graph::{Change, Filter, Graph, ListScope};
use astrolabe::ingest::{self, Event};
use astrolabe::model::Kind;
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use astrolabe::sources::demo_change;
use serde_json::json;

fn config_map(name: &str) -> Change {
    let v = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "uid": astrolabe::model::Uid::synthetic(&["cm", name]).to_string()}});
    Change::Upsert(Arc::new(Projector::default().project(&v).unwrap()))
}

#[test]
fn a_relist_through_the_writer_deletes_what_it_did_not_contain() {
    let (handle, tx, writer) = ingest::start();
    for i in 0..5_000 {
        assert!(tx.change(config_map(&format!("cm-{i}"))));
    }
    let scope = ListScope::kind(Kind::ConfigMap);
    tx.change(Change::ListStart(scope.clone()));
    for i in (0..5_000).step_by(5) {
        tx.change(config_map(&format!("cm-{i}")));
    }
    tx.change(config_map("brand-new"));
    tx.change(Change::ListComplete(scope));
    // Everything sent after the completion is applied after its deletions.
    tx.change(config_map("cm-1"));
    tx.send(Event::Synced);
    drop(tx);
    writer.join();
    assert!(handle.is_synced());
    let g = handle.read();
    let names: Vec<String> = g
        .select(&Filter {
            kinds: vec![Kind::ConfigMap],
            ..Filter::default()
        })
        .map(|n| g.object(n).name.to_string())
        .collect();
    assert_eq!(names.len(), 1_000 + 2);
    assert!(names.contains(&"brand-new".to_string()) && names.contains(&"cm-1".to_string()));
    assert!(!names.contains(&"cm-2".to_string()));
    g.check_invariants().unwrap();
    // 5,000 upserts, 1 new object, 4,000 deletes and cm-1 again modified the graph; the 1,000
    // objects relisted unchanged did not.
    assert_eq!(
        handle.stats().applied.load(Ordering::Relaxed),
        5_000 + 1 + 4_000 + 1
    );
}

#[test]
fn readers_see_consistent_states_while_churn_streams_in() {
    let projector = Projector::default();
    let mut cluster = DemoCluster::new(DemoConfig {
        objects: 400,
        ..DemoConfig::default()
    });
    let (handle, tx, writer) = ingest::start();
    for v in cluster.objects() {
        tx.change(Change::Upsert(Arc::new(projector.project(&v).unwrap())));
    }
    tx.send(Event::Synced);

    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (handle, stop, checks) = (handle.clone(), stop.clone(), checks.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = handle.read();
                // Rebuilds the graph from the objects it holds and compares: a state caught in the
                // middle of a change would fail.
                g.check_invariants()
                    .expect("a reader saw a half-applied change");
                checks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for _ in 0..600 {
        for ev in cluster.step() {
            tx.change(demo_change(&ev, &projector).unwrap());
        }
    }
    drop(tx);
    writer.join();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(checks.load(Ordering::Relaxed) > 0);

    // The churn, applied through the writer, gives exactly the graph of the cluster's final state.
    let mut expected = Graph::new();
    for v in cluster.objects() {
        expected.apply(Change::Upsert(Arc::new(projector.project(&v).unwrap())));
    }
    assert_eq!(handle.read().canonical(), expected.canonical());
}
