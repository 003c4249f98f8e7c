//! Write-behind persistence against real `redis-server` processes (free loopback port, temporary
//! directory, AOF on), driven through the library: everything acknowledged is recovered exactly,
//! snapshots and the log combine, an outage loses nothing, a Redis crash is repaired, and
//! unreadable data is reported and left alone.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use astrolabe::graph::{Change, Graph};
use astrolabe::ingest::{self, Event, EventSender, GraphHandle};
use astrolabe::persistence::{self, PersistConfig, Persistence, RedisConfig};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use astrolabe::sources::demo_change;
use support::redis::RedisServer;

fn config(redis: &RedisServer, name: &str) -> PersistConfig {
    PersistConfig {
        redis: RedisConfig {
            addr: redis.addr(),
            prefix: format!("astrolabe:{{{name}}}"),
            ..RedisConfig::default()
        },
        snapshot_interval: Duration::ZERO,
        flush_interval: Duration::from_millis(10),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..PersistConfig::default()
    }
}

/// A graph writer with persistence, fed by the returned sender.
struct Rig {
    graph: GraphHandle,
    tx: Option<EventSender>,
    writer: Option<ingest::Writer>,
    persistence: Option<Persistence>,
}

impl Rig {
    fn start(cfg: PersistConfig) -> Rig {
        let (sink, pending) = persistence::channel(cfg);
        let (graph, tx, writer) = ingest::start_with(
            Graph::new(),
            ingest::Options {
                persist: Some(sink),
                restored: false,
            },
        );
        let persistence = pending.start(graph.clone(), persistence::Recovered::default());
        Rig {
            graph,
            tx: Some(tx),
            writer: Some(writer),
            persistence: Some(persistence),
        }
    }

    fn send(&self, c: Change) {
        assert!(self.tx.as_ref().unwrap().change(c));
    }

    /// Lets the graph's writer apply everything sent, then stops it.
    fn drain(&mut self) {
        drop(self.tx.take());
        self.writer.take().unwrap().join();
    }

    fn persistence(&self) -> &Persistence {
        self.persistence.as_ref().unwrap()
    }

    /// Flushes, retrying while Redis comes back.
    fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.persistence().flush(Duration::from_secs(5)) {
                Ok(()) => return,
                Err(e) => {
                    assert!(Instant::now() < deadline, "flush never succeeded: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            w.join();
        }
        if let Some(p) = self.persistence.take() {
            p.stop(Instant::now() + Duration::from_secs(5));
        }
    }
}

/// The demo cluster's objects, as changes.
fn demo(objects: usize, cluster: &mut Option<DemoCluster>) -> Vec<Change> {
    let c = DemoCluster::new(DemoConfig {
        objects,
        ..DemoConfig::default()
    });
    let p = Projector::default();
    let changes = c
        .objects()
        .map(|v| Change::Upsert(Arc::new(p.project(&v).unwrap())))
        .collect();
    *cluster = Some(c);
    changes
}

fn churn(cluster: &mut DemoCluster, steps: usize) -> Vec<Change> {
    let p = Projector::default();
    (0..steps)
        .flat_map(|_| cluster.step())
        .map(|e| demo_change(&e, &p).unwrap())
        .collect()
}

/// The graph rebuilt from what Redis holds, compared with the live graph.
fn assert_recovers_exactly(redis: &RedisConfig, live: &GraphHandle) -> persistence::Recovered {
    let r = persistence::recover(redis).expect("recovers");
    let mut rebuilt = Graph::new();
    for o in &r.objects {
        rebuilt.apply(Change::Upsert(o.clone()));
    }
    assert_eq!(
        rebuilt.canonical(),
        live.read().canonical(),
        "Redis holds exactly the graph"
    );
    r
}

#[test]
fn everything_written_behind_is_recovered_exactly() {
    let redis = RedisServer::start();
    let cfg = config(&redis, "wb");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    for c in demo(800, &mut cluster) {
        rig.send(c);
    }
    for c in churn(cluster.as_mut().unwrap(), 300) {
        rig.send(c);
    }
    rig.drain();
    rig.flush(Duration::from_secs(10));
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert!(
        !r.from_snapshot,
        "no snapshot was asked for: the log alone restores"
    );
    assert!(r.log_batches > 0);
    let stats = rig.persistence().stats();
    assert!(stats.batches.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[test]
fn a_snapshot_and_the_log_after_it_recover_together() {
    let redis = RedisServer::start();
    let cfg = config(&redis, "snap");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    for c in demo(800, &mut cluster) {
        rig.send(c);
    }
    rig.send(Change::ListStart(astrolabe::graph::ListScope::everything()));
    rig.send(Change::ListComplete(
        astrolabe::graph::ListScope::everything(),
    ));
    let (tx, writer) = (rig.tx.take().unwrap(), rig.writer.take().unwrap());
    tx.send(Event::Synced);
    // Wait for the snapshot taken after the first full load.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rig
        .persistence()
        .stats()
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "no snapshot after the first full load"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = Projector::default();
    for e in (0..200).flat_map(|_| cluster.as_mut().unwrap().step()) {
        tx.change(demo_change(&e, &p).unwrap());
    }
    drop(tx);
    writer.join();
    rig.flush(Duration::from_secs(10));
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert!(
        r.from_snapshot && r.log_batches > 0,
        "snapshot + {} log entries",
        r.log_batches
    );
    // A new snapshot trims the log it includes and removes the older generation.
    let report = rig.persistence().snapshot(Duration::from_secs(20)).unwrap();
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert_eq!(
        (r.from_snapshot, r.log_batches, r.snapshot_generation),
        (true, 0, Some(report.generation))
    );
    let mut c = redis.client();
    let generations: Vec<u64> = redis::cmd("SMEMBERS")
        .arg("astrolabe:{snap}:generations")
        .query(&mut c)
        .unwrap();
    assert_eq!(generations, vec![report.generation]);
    let log_len: u64 = redis::cmd("XLEN")
        .arg("astrolabe:{snap}:log")
        .query(&mut c)
        .unwrap();
    assert_eq!(log_len, 0);
}

#[test]
fn a_redis_outage_loses_nothing_and_is_caught_up() {
    let mut redis = RedisServer::start();
    let cfg = config(&redis, "outage");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    for c in demo(600, &mut cluster) {
        rig.send(c);
    }
    rig.flush(Duration::from_secs(10));
    redis.kill();
    // Changes go on while Redis is away; the writer must not block the graph's writer.
    for c in churn(cluster.as_mut().unwrap(), 300) {
        rig.send(c);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while rig.persistence().status().connected {
        assert!(
            Instant::now() < deadline,
            "the writer never noticed Redis was gone"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rig.persistence().flush(Duration::from_secs(2)).is_err());
    redis.restart();
    rig.drain();
    rig.flush(Duration::from_secs(30));
    assert!(rig.persistence().status().connected);
    assert!(
        rig.persistence()
            .stats()
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn a_redis_crash_with_aof_every_second_is_repaired_by_the_snapshot_after_reconnecting() {
    let mut redis = RedisServer::start();
    let cfg = config(&redis, "crash");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    for c in demo(600, &mut cluster) {
        rig.send(c);
    }
    for c in churn(cluster.as_mut().unwrap(), 100) {
        rig.send(c);
    }
    rig.flush(Duration::from_secs(10));
    // SIGKILL right after writing: up to the last second of AOF may be lost.
    redis.kill();
    redis.restart();
    rig.drain();
    // After reconnecting, the writer writes a snapshot: Redis is exactly the graph again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while rig
        .persistence()
        .stats()
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "no snapshot after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rig.flush(Duration::from_secs(10));
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

/// Every key under a prefix, with its value (DUMP), to prove nothing was touched.
fn dump_all(c: &mut redis::Connection, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(c)
        .unwrap();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let v: Vec<u8> = redis::cmd("DUMP").arg(&k).query(c).unwrap();
            (k, v)
        })
        .collect()
}

#[test]
fn unreadable_data_is_reported_and_left_untouched() {
    let redis = RedisServer::start();
    let cfg = config(&redis, "bad");
    let prefix = "astrolabe:{bad}";
    {
        let mut rig = Rig::start(cfg.clone());
        let mut cluster = None;
        for c in demo(400, &mut cluster) {
            rig.send(c);
        }
        rig.drain();
        rig.persistence().snapshot(Duration::from_secs(20)).unwrap();
    }
    let mut c = redis.client();
    let generation: u64 = redis::cmd("GET")
        .arg(format!("{prefix}:current"))
        .query(&mut c)
        .unwrap();
    let manifest_key = format!("{prefix}:snap:{generation}:manifest");
    let chunk_key = format!("{prefix}:snap:{generation}:chunk:0");
    let good_manifest: Vec<u8> = redis::cmd("GET").arg(&manifest_key).query(&mut c).unwrap();
    let good_chunk: Vec<u8> = redis::cmd("GET").arg(&chunk_key).query(&mut c).unwrap();
    let manifest = persistence::format::decode_manifest(&good_manifest).unwrap();

    let mut future = manifest;
    future.format = 99;
    type Corruption<'a> = Box<dyn Fn(&mut redis::Connection) + 'a>;
    let cases: Vec<(&str, Corruption, &str)> = vec![
        (
            "unknown version",
            Box::new(|c| {
                let _: () = redis::cmd("SET")
                    .arg(&manifest_key)
                    .arg(persistence::format::encode_manifest(&future))
                    .query(c)
                    .unwrap();
            }),
            "unknown format version 99",
        ),
        (
            "truncated chunk",
            Box::new(|c| {
                let _: () = redis::cmd("SET")
                    .arg(&chunk_key)
                    .arg(&good_chunk[..good_chunk.len() / 2])
                    .query(c)
                    .unwrap();
            }),
            "checksum mismatch",
        ),
        (
            "missing chunk",
            Box::new(|c| {
                let _: () = redis::cmd("DEL").arg(&chunk_key).query(c).unwrap();
            }),
            "incomplete",
        ),
        (
            "foreign current",
            Box::new(|c| {
                let _: () = redis::cmd("SET")
                    .arg(format!("{prefix}:current"))
                    .arg("not-a-number")
                    .query(c)
                    .unwrap();
            }),
            "not a generation number",
        ),
        (
            "foreign manifest",
            Box::new(|c| {
                let _: () = redis::cmd("SET")
                    .arg(&manifest_key)
                    .arg("{\"some\": \"json\"}")
                    .query(c)
                    .unwrap();
            }),
            "manifest",
        ),
    ];
    for (what, corrupt, expected) in cases {
        // Restore the good state, then corrupt one thing.
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:current"))
            .arg(generation)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(&manifest_key)
            .arg(&good_manifest)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(&chunk_key)
            .arg(&good_chunk)
            .query(&mut c)
            .unwrap();
        assert!(
            persistence::recover(&cfg.redis).is_ok(),
            "{what}: the good state recovers"
        );
        corrupt(&mut c);
        let before = dump_all(&mut c, prefix);
        let err = persistence::recover(&cfg.redis)
            .expect_err(what)
            .to_string();
        assert!(err.contains(expected), "{what}: {err}");
        assert_eq!(
            dump_all(&mut c, prefix),
            before,
            "{what}: recovery changed nothing"
        );
    }
    // Starting afresh over unreadable data keeps it until a newer snapshot is switched in.
    let mut rig = Rig::start(cfg.clone());
    rig.send(Change::Upsert(Arc::new(
        Projector::default()
            .project(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}}))
            .unwrap(),
    )));
    rig.drain();
    rig.flush(Duration::from_secs(10));
    assert!(
        persistence::recover(&cfg.redis).is_err(),
        "the unreadable snapshot is still current, and still there"
    );
    let report = rig.persistence().snapshot(Duration::from_secs(20)).unwrap();
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert_eq!(r.snapshot_generation, Some(report.generation));
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:snap:{generation}:*"))
        .query(&mut c)
        .unwrap();
    assert!(
        left.is_empty(),
        "the old generation is removed once the new one is current: {left:?}"
    );
}
