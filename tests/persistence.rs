//! Write-behind persistence against real `redis-server` processes (free loopback port, temporary
//! directory, AOF on), driven through the library: everything acknowledged is recovered exactly,
//! snapshots and the log combine, an outage loses nothing, a Redis crash is repaired, a machine
//! crash (the AOF's unsynced tail cut mid-command) loses at most that tail and never half a batch,
//! unreadable data is reported and left alone, and the writer keeps going through a Sentinel
//! failover and a Redis Cluster node restart.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use astrolabe::graph::{Change, Graph};
use astrolabe::ingest::{self, Event, EventSender, GraphHandle};
use astrolabe::model::Object;
use astrolabe::persistence::{self, PersistConfig, Persistence, RedisConfig};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use astrolabe::sources::demo_change;
use support::redis::{RedisServer, Sentinel, start_cluster, wait_cluster_ok};
use support::wait_for;

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
        // Snapshots of these small graphs still span several chunks and round trips.
        snapshot_chunk_objects: 100,
        ..PersistConfig::default()
    }
}

/// A graph writer with persistence, fed by the returned sender.
struct Rig {
    graph: GraphHandle,
    /// The same changes applied here, to know which generation the live graph will reach.
    offline: Graph,
    tx: Option<EventSender>,
    writer: Option<ingest::Writer>,
    persistence: Option<Persistence>,
}

impl Rig {
    fn start(cfg: PersistConfig) -> Rig {
        Rig::start_restored(cfg, persistence::Recovered::default())
    }

    /// A rig whose graph starts as what was recovered (flagged restored, as `serve` does).
    fn start_restored(cfg: PersistConfig, recovered: persistence::Recovered) -> Rig {
        let mut g = Graph::new();
        let mut offline = Graph::new();
        for o in &recovered.objects {
            g.apply(Change::Upsert(o.clone()));
            offline.apply(Change::Upsert(o.clone()));
        }
        let (sink, pending) = persistence::channel(cfg);
        let (graph, tx, writer) = ingest::start_with(
            g,
            ingest::Options {
                persist: Some(sink),
                restored: recovered.from_snapshot || recovered.log_batches > 0,
            },
        );
        let persistence = pending.start(graph.clone(), recovered);
        Rig {
            graph,
            offline,
            tx: Some(tx),
            writer: Some(writer),
            persistence: Some(persistence),
        }
    }

    /// Waits until the graph's writer has applied everything sent; returns the generation.
    fn settle(&self) -> u64 {
        let target = self.offline.generation();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.graph.read().generation() < target {
            assert!(Instant::now() < deadline, "changes not applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        target
    }

    fn send(&mut self, c: Change) {
        self.offline.apply(c.clone());
        assert!(self.tx.as_ref().unwrap().change(c));
    }

    fn send_all(&mut self, changes: impl IntoIterator<Item = Change>) {
        for c in changes {
            self.send(c);
        }
    }

    /// Lets the graph's writer apply everything sent, then stops it.
    fn drain(&mut self) {
        drop(self.tx.take());
        self.writer.take().unwrap().join();
    }

    fn persistence(&self) -> &Persistence {
        self.persistence.as_ref().unwrap()
    }

    /// Snapshots written so far.
    fn snapshots(&self) -> u64 {
        self.persistence().stats().snapshots.load(Ordering::Relaxed)
    }

    /// Once everything sent is applied, flushes, retrying while Redis comes back.
    fn flush(&self, within: Duration) {
        self.settle();
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

/// A rig whose background snapshots wait `switch_delay` between their chunks and their switch,
/// holding a demo of about `objects` objects (the source not yet synced); with its configuration
/// and the demo, for churn.
fn slow_switch_rig(
    redis: &RedisServer,
    name: &str,
    switch_delay: Duration,
    objects: usize,
) -> (Rig, PersistConfig, DemoCluster) {
    let cfg = PersistConfig {
        snapshot_switch_delay: switch_delay,
        ..config(redis, name)
    };
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(objects, &mut cluster));
    (rig, cfg, cluster.expect("demo sets the cluster"))
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

/// The demo cluster's objects themselves.
fn demo_objects(objects: usize, cluster: &mut Option<DemoCluster>) -> Vec<Arc<Object>> {
    demo(objects, cluster)
        .into_iter()
        .filter_map(|c| match c {
            Change::Upsert(o) => Some(o),
            _ => None,
        })
        .collect()
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
    rig.send_all(demo(5000, &mut cluster));
    rig.send_all(churn(cluster.as_mut().unwrap(), 300));
    rig.drain();
    rig.flush(Duration::from_secs(10));
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert!(
        !r.from_snapshot,
        "no snapshot was asked for: the log alone restores"
    );
    // More last states than recovery decodes in one unit (2,048), so that several threads decode
    // them. (How many entries they take depends on how fast the writer drains.)
    assert!(
        r.log_batches > 0 && r.log_objects > 4096,
        "{} entries, {} objects",
        r.log_batches,
        r.log_objects
    );
    let stats = rig.persistence().stats();
    assert!(stats.batches.load(Ordering::Relaxed) > 0);
}

#[test]
fn changes_that_overflow_the_channel_are_written_with_their_objects_current_state() {
    let redis = RedisServer::start();
    let cfg = PersistConfig {
        // The graph's writer applies thousands of changes a millisecond; the Redis writer takes
        // them every millisecond: most overflow.
        channel_capacity: 4,
        ..config(&redis, "overflow")
    };
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(800, &mut cluster));
    let cluster = cluster.as_mut().unwrap();
    rig.send_all(churn(cluster, 300));
    // A flush while the graph's writer runs answers once the overflowed objects are in Redis.
    rig.flush(Duration::from_secs(20));
    let overflowed = rig.persistence().stats().overflowed.load(Ordering::Relaxed);
    assert!(overflowed > 100, "the channel overflowed ({overflowed})");
    assert_eq!(rig.persistence().status().dirty, 0);
    assert_recovers_exactly(&cfg.redis, &rig.graph);
    // Objects that overflow as the graph's writer stops are sent before it ends.
    rig.send_all(churn(cluster, 300));
    rig.drain();
    assert!(rig.persistence().stats().overflowed.load(Ordering::Relaxed) > overflowed);
    rig.flush(Duration::from_secs(20));
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn a_writer_that_falls_behind_is_reported_while_connected_and_catches_up() {
    let redis = RedisServer::start();
    let cfg = PersistConfig {
        channel_capacity: 4,
        behind_warning: Duration::from_millis(300),
        redis: RedisConfig {
            // A stopped Redis keeps the connection: the writer is behind, not disconnected.
            timeout: Duration::from_secs(60),
            ..config(&redis, "behind").redis
        },
        ..config(&redis, "behind")
    };
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(300, &mut cluster));
    rig.flush(Duration::from_secs(20));
    let s = rig.persistence().status();
    assert!(
        !s.lagging && s.behind.is_none(),
        "nothing waits once flushed: {s:?}"
    );
    // Redis stops answering (SIGSTOP): the writer waits on its write while changes go on.
    // Resumed however the test ends, so that stopping the rig does not wait on it.
    let resume = redis.pause();
    let cluster = cluster.as_mut().unwrap();
    rig.send_all(churn(cluster, 100));
    wait_for(
        "the writer reported behind while connected",
        Duration::from_secs(20),
        || {
            let s = rig.persistence().status();
            s.lagging && s.connected
        },
    );
    drop(resume);
    rig.flush(Duration::from_secs(30));
    let s = rig.persistence().status();
    assert!(!s.lagging && s.dirty == 0, "caught up: {s:?}");
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn versions_the_writer_is_done_with_are_freed_by_the_graphs_writer() {
    let redis = RedisServer::start();
    let cfg = config(&redis, "freed");
    let mut rig = Rig::start(cfg);
    let mut cluster = None;
    let objects = demo_objects(300, &mut cluster);
    rig.send_all(objects.iter().map(|o| Change::Upsert(o.clone())));
    rig.flush(Duration::from_secs(10));
    let first: Vec<Weak<Object>> = {
        let g = rig.graph.read();
        objects
            .iter()
            .take(50)
            .map(|o| Arc::downgrade(g.object(g.find_uid(&o.uid).expect("applied"))))
            .collect()
    };
    // New versions of those 50: once written, the writer's mirror lets go of the old ones.
    for o in objects.iter().take(50) {
        let mut v = (**o).clone();
        v.resource_version = format!("{}-2", o.resource_version).into();
        rig.send(Change::Upsert(Arc::new(v)));
    }
    drop(objects);
    rig.flush(Duration::from_secs(10));
    assert!(
        first.iter().all(|w| w.upgrade().is_some()),
        "the old versions live until the graph's writer frees them: the Redis writer gives them back"
    );
    // The graph's writer frees them after its next batch.
    let mut cluster = cluster.unwrap();
    rig.send_all(churn(&mut cluster, 1));
    wait_for(
        "the graph's writer freeing the old versions",
        Duration::from_secs(10),
        || first.iter().all(|w| w.upgrade().is_none()),
    );
}

#[test]
fn a_large_batch_is_one_log_entry_in_parts_and_a_bad_part_fails_the_whole_recovery() {
    let mut redis = RedisServer::start();
    let cfg = config(&redis, "parts");
    // Redis is away until everything is pending, so that the first write is one batch of
    // thousands (never having connected, the writer has no reason to snapshot instead).
    redis.kill();
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(6000, &mut cluster));
    rig.drain();
    // The writer (it may lag behind on a busy machine) has taken every change.
    wait_for(
        "the writer taking every change",
        Duration::from_secs(30),
        || rig.persistence().status().queue_depth == 0,
    );
    redis.restart();
    rig.flush(Duration::from_secs(20));
    assert_recovers_exactly(&cfg.redis, &rig.graph);
    let mut c = redis.client();
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> = redis::cmd("XRANGE")
        .arg("astrolabe:{parts}:log")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        entries.len(),
        1,
        "everything pending is written as one entry"
    );
    let widest = entries.iter().map(|(_, f)| f.len() / 2).max().unwrap_or(0);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        assert!(
            widest >= 2,
            "a batch of thousands is encoded in parts on several cores: {widest} part(s) at most"
        );
    }
    // An entry whose second part does not match its checksum: recovery refuses it, names it,
    // and deletes nothing.
    let id: String = redis::cmd("XADD")
        .arg("astrolabe:{parts}:log")
        .arg("*")
        .arg("b")
        .arg(&entries[0].1[0].1)
        .arg("c")
        .arg(&entries[0].1[1].1)
        .arg("b1")
        .arg(b"not a batch".as_slice())
        .arg("c1")
        .arg(7u32)
        .query(&mut c)
        .unwrap();
    let err = persistence::recover(&cfg.redis).unwrap_err().to_string();
    assert!(
        err.contains(&format!("log entry {id} part 1")) && err.contains("checksum"),
        "{err}"
    );
    let len: usize = redis::cmd("XLEN")
        .arg("astrolabe:{parts}:log")
        .query(&mut c)
        .unwrap();
    assert_eq!(len, entries.len() + 1, "nothing was deleted");
}

#[test]
fn a_snapshot_and_the_log_after_it_recover_together() {
    let redis = RedisServer::start();
    let cfg = config(&redis, "snap");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(800, &mut cluster));
    rig.send(Change::ListStart(astrolabe::graph::ListScope::everything()));
    rig.send(Change::ListComplete(
        astrolabe::graph::ListScope::everything(),
    ));
    let (tx, writer) = (rig.tx.take().unwrap(), rig.writer.take().unwrap());
    tx.send(Event::Synced);
    // Wait for the snapshot taken after the first full load.
    wait_for(
        "a snapshot after the first full load",
        Duration::from_secs(20),
        || rig.snapshots() > 0,
    );
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
fn the_log_goes_on_while_a_snapshot_is_written_in_the_background() {
    let redis = RedisServer::start();
    // The snapshot waits between its chunks and its switch, so that log entries are certainly
    // written while it runs.
    let (mut rig, cfg, mut cluster) =
        slow_switch_rig(&redis, "bg", Duration::from_millis(1500), 800);
    let (tx, writer) = (rig.tx.take().unwrap(), rig.writer.take().unwrap());
    tx.send(Event::Synced);
    let stats = || rig.persistence().stats();
    let running = || stats().snapshot_running.load(Ordering::Relaxed);
    wait_for(
        "the snapshot after the first full load to start",
        Duration::from_secs(20),
        running,
    );
    // Changes keep being written to the log while the snapshot runs.
    let batches = stats().batches.load(Ordering::Relaxed);
    let p = Projector::default();
    for e in (0..100).flat_map(|_| cluster.step()) {
        tx.change(demo_change(&e, &p).unwrap());
    }
    wait_for("a log entry", Duration::from_secs(5), || {
        stats().batches.load(Ordering::Relaxed) > batches
    });
    assert!(running(), "the log was written while the snapshot ran");
    assert_eq!(rig.snapshots(), 0);
    // Until the switch, recovery reads the log alone, and it is the graph.
    drop(tx);
    writer.join();
    rig.persistence().flush(Duration::from_secs(5)).unwrap();
    assert!(running(), "still running after the flush");
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert!(!r.from_snapshot, "not switched yet");
    // After the switch: the snapshot and the entries written meanwhile, which it did not trim.
    wait_for("the switch", Duration::from_secs(20), || {
        rig.snapshots() > 0
    });
    assert!(!running());
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert!(
        r.from_snapshot && r.log_batches > 0,
        "snapshot + {} log entries",
        r.log_batches
    );
}

#[test]
fn a_repair_waits_for_the_background_snapshot_instead_of_removing_its_generation() {
    // A Redis that refuses INFO (as some hosted ones do) cannot say whether it restarted, so
    // every reconnect repairs, as on a Cluster: here while a background snapshot still runs on
    // a connection of its own.
    let redis = RedisServer::start_with(&["--rename-command", "INFO", "ASTROLABE-TEST-INFO"]);
    let (mut rig, cfg, mut cluster) = slow_switch_rig(&redis, "rep", Duration::from_secs(5), 600);
    rig.settle();
    rig.tx.as_ref().unwrap().send(Event::Synced);
    let running = |rig: &Rig| {
        rig.persistence()
            .stats()
            .snapshot_running
            .load(Ordering::Relaxed)
    };
    wait_for("the background snapshot", Duration::from_secs(20), || {
        running(&rig)
    });
    // Only the writer's own connection drops (the snapshot's is left alone): once it reconnects,
    // Redis may have lost writes for all it can tell, so the next flush must repair, while the
    // background snapshot is still waiting to switch.
    let mut c = redis.client();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    // The writer's connection is the oldest of those whose last command was its own (the
    // snapshot's may still show the PING of its connect, when its thread has not run since).
    let writer: u64 = clients
        .lines()
        .filter(|l| l.contains("cmd=xadd") || l.contains("cmd=ping"))
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .strip_prefix("id=")?
                .parse()
                .ok()
        })
        .min()
        .unwrap_or_else(|| panic!("no writer connection in {clients}"));
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(writer)
        .query(&mut c)
        .unwrap();
    rig.send_all(churn(&mut cluster, 50));
    wait_for("the writer to reconnect", Duration::from_secs(10), || {
        rig.persistence().stats().reconnects.load(Ordering::Relaxed) > 0
    });
    assert!(
        running(&rig),
        "the background snapshot has not switched yet"
    );
    rig.flush(Duration::from_secs(20));
    wait_for("no snapshot running", Duration::from_secs(20), || {
        !running(&rig)
    });
    // Both snapshots were written, one after the other: the later (the repair) is current,
    // complete, and the only generation left.
    assert_eq!(rig.snapshots(), 2);
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    let generations: Vec<u64> = redis::cmd("SMEMBERS")
        .arg("astrolabe:{rep}:generations")
        .query(&mut c)
        .unwrap();
    assert_eq!(generations, vec![r.snapshot_generation.unwrap()]);
}

#[test]
fn a_stream_faster_than_the_writer_drains_does_not_keep_it_from_reconnecting() {
    // Nothing listens on this port: the writer must keep trying, and say so, however fast
    // changes come.
    let port = support::redis::free_port();
    let cfg = PersistConfig {
        redis: RedisConfig {
            addr: format!("127.0.0.1:{port}"),
            prefix: "astrolabe:{fast}".into(),
            ..RedisConfig::default()
        },
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(50),
        ..PersistConfig::default()
    };
    let (sink, pending) = persistence::channel(cfg);
    let mut cluster = None;
    let objects = demo_objects(200, &mut cluster);
    let p = pending.start(
        GraphHandle::fixed(Graph::new()),
        persistence::Recovered::default(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut generation = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for o in &objects {
                    generation += 1;
                    sink.upsert(o.clone(), generation);
                }
            }
        })
    };
    wait_for(
        "attempts to connect, reported as errors",
        Duration::from_secs(10),
        || p.stats().errors.load(Ordering::Relaxed) >= 3,
    );
    assert!(!p.status().connected);
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    p.stop(Instant::now() + Duration::from_secs(5));
}

#[test]
fn a_redis_outage_loses_nothing_and_is_caught_up() {
    let mut redis = RedisServer::start();
    let cfg = config(&redis, "outage");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(600, &mut cluster));
    rig.flush(Duration::from_secs(10));
    redis.kill();
    // Changes go on while Redis is away; the writer must not block the graph's writer.
    rig.send_all(churn(cluster.as_mut().unwrap(), 300));
    wait_for(
        "the writer noticing Redis is gone",
        Duration::from_secs(20),
        || !rig.persistence().status().connected,
    );
    assert!(rig.persistence().flush(Duration::from_secs(2)).is_err());
    redis.restart();
    rig.drain();
    rig.flush(Duration::from_secs(30));
    assert!(rig.persistence().status().connected);
    assert!(rig.persistence().stats().reconnects.load(Ordering::Relaxed) >= 1);
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn a_redis_crash_with_aof_every_second_is_repaired_by_the_snapshot_after_reconnecting() {
    let mut redis = RedisServer::start();
    let cfg = config(&redis, "crash");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(600, &mut cluster));
    rig.send_all(churn(cluster.as_mut().unwrap(), 100));
    rig.flush(Duration::from_secs(10));
    // SIGKILL right after writing: up to the last second of AOF may be lost.
    redis.kill();
    redis.restart();
    rig.drain();
    // After reconnecting, the writer writes a snapshot: Redis is exactly the graph again.
    wait_for(
        "a snapshot after Redis came back",
        Duration::from_secs(30),
        || rig.snapshots() > 0,
    );
    rig.flush(Duration::from_secs(10));
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn a_broken_connection_to_a_redis_that_kept_running_is_caught_up_without_a_repair_snapshot() {
    let redis = RedisServer::start();
    let cfg = config(&redis, "broken");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(600, &mut cluster));
    rig.flush(Duration::from_secs(10));
    assert_eq!(rig.snapshots(), 0);
    // Redis closes the writer's connection (as a proxy, a timeout or an interrupted read would
    // break it) but keeps everything it acknowledged.
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query(&mut redis.client())
        .unwrap();
    assert!(killed >= 1, "the writer's connection was closed");
    rig.send_all(churn(cluster.as_mut().unwrap(), 100));
    rig.drain();
    rig.flush(Duration::from_secs(10));
    assert!(rig.persistence().stats().reconnects.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        rig.snapshots(),
        0,
        "the same Redis lost nothing: no image of the whole graph after reconnecting"
    );
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn a_failed_background_snapshot_keeps_the_writers_connection_and_is_retried() {
    let redis = RedisServer::start();
    let mut cfg = config(&redis, "snapfail");
    cfg.snapshot_interval = Duration::from_millis(300);
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(600, &mut cluster));
    rig.flush(Duration::from_secs(10));
    // Redis past its client limit (the lowest, 1; connections already open stay): the writer's
    // connection goes on working, and each background snapshot's new connection is refused.
    // This test keeps its own one connection.
    let mut admin = redis.client();
    let set_limit = |admin: &mut redis::Connection, limit: &str| {
        redis::cmd("CONFIG")
            .arg(&["SET", "maxclients", limit])
            .query::<()>(admin)
            .unwrap();
    };
    set_limit(&mut admin, "1");
    let observer = rig.persistence().observer();
    let stats = observer.stats();
    let errors = stats.errors.load(Ordering::Relaxed);
    wait_for(
        "a background snapshot refused a connection",
        Duration::from_secs(20),
        || stats.errors.load(Ordering::Relaxed) >= errors + 2,
    );
    // Redis answers "max number of clients reached" and closes: the client may see either.
    assert!(
        observer.status().last_error.is_some(),
        "the snapshot's error is reported"
    );
    let snapshots = rig.snapshots();
    rig.send_all(churn(cluster.as_mut().unwrap(), 100));
    rig.settle();
    rig.persistence()
        .flush(Duration::from_secs(5))
        .expect("the log goes on, on the writer's own connection");
    assert!(
        observer.status().connected,
        "the writer kept its connection"
    );
    assert_eq!(stats.reconnects.load(Ordering::Relaxed), 0);
    assert_eq!(rig.snapshots(), snapshots, "no snapshot while refused");
    set_limit(&mut admin, "10000");
    wait_for(
        "the snapshot retried once Redis takes connections again",
        Duration::from_secs(20),
        || rig.snapshots() > snapshots,
    );
    rig.drain();
    rig.flush(Duration::from_secs(10));
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

/// The graph after applying `changes` up to (and including) the change that reaches `generation`.
fn replay_until(changes: &[Change], generation: u64) -> Graph {
    let mut g = Graph::new();
    for c in changes {
        if g.generation() == generation {
            break;
        }
        g.apply(c.clone());
    }
    assert_eq!(
        g.generation(),
        generation,
        "the replay reaches the generation"
    );
    g
}

fn replay_until_end(changes: &[Change]) -> Graph {
    let mut g = Graph::new();
    for c in changes {
        g.apply(c.clone());
    }
    g
}

/// Redis 7 keeps its AOF as a base file plus incremental files; the newest incremental one.
fn incremental_aof(redis: &RedisServer) -> std::path::PathBuf {
    let dir = redis.dir().join("appendonlydir");
    let mut incr: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    incr.sort();
    incr.pop().expect("an incremental AOF file")
}

#[test]
fn a_machine_crash_loses_at_most_the_unsynced_second_never_half_a_batch_and_full_lists_repair_it() {
    let mut redis = RedisServer::start();
    let cfg = config(&redis, "everysec");
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    let mut sent = demo(600, &mut cluster);
    let cluster = cluster.as_mut().unwrap();
    sent.extend(churn(cluster, 100));
    rig.send_all(sent.iter().cloned());
    let settled = rig.settle();
    rig.flush(Duration::from_secs(10));
    // `appendfsync everysec`: after a second and a half, all of that is on disk.
    std::thread::sleep(Duration::from_millis(1500));
    let synced_len = std::fs::metadata(incremental_aof(&redis)).unwrap().len();
    let more = churn(cluster, 150);
    rig.send_all(more.iter().cloned());
    sent.extend(more);
    let last = rig.settle();
    rig.flush(Duration::from_secs(10));
    redis.kill();
    drop(rig);
    // A machine crash loses what the kernel had not written: cut the AOF somewhere inside the
    // unsynced tail, mid-command (Redis loads a truncated AOF up to its last whole command).
    let aof = incremental_aof(&redis);
    let full_len = std::fs::metadata(&aof).unwrap().len();
    assert!(full_len > synced_len, "the tail was written");
    let cut = synced_len + (full_len - synced_len) / 2 + 3;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&aof)
        .unwrap()
        .set_len(cut)
        .unwrap();
    redis.restart();

    let r = persistence::recover(&cfg.redis).expect("recovers after the crash");
    assert!(
        (settled..last).contains(&r.graph_generation),
        "lost at most the unsynced tail: recovered generation {} within {settled}..{last}",
        r.graph_generation
    );
    let mut rebuilt = Graph::new();
    for o in &r.objects {
        rebuilt.apply(Change::Upsert(o.clone()));
    }
    assert_eq!(
        rebuilt.canonical(),
        replay_until(&sent, r.graph_generation).canonical(),
        "exactly the state the writer acknowledged at generation {}: no half batch",
        r.graph_generation
    );

    // The source's full list brings back what was lost.
    let mut rig = Rig::start_restored(cfg.clone(), r);
    let p = Projector::default();
    let current: Vec<Change> = cluster
        .objects()
        .map(|v| Change::Upsert(Arc::new(p.project(&v).unwrap())))
        .collect();
    rig.send(Change::ListStart(astrolabe::graph::ListScope::everything()));
    rig.send_all(current.iter().cloned());
    rig.send(Change::ListComplete(
        astrolabe::graph::ListScope::everything(),
    ));
    rig.drain();
    rig.flush(Duration::from_secs(10));
    assert_eq!(
        rig.graph.read().canonical(),
        replay_until_end(&current).canonical(),
        "the full list repaired the graph"
    );
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn through_a_sentinel_failover_the_writer_follows_the_new_master_and_recovery_works() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.client())
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sentinel = Sentinel::start("astro", &master);
    let replica_port = replica.port.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replicas: Vec<Vec<String>> = sentinel
            .query(&["SENTINEL", "replicas", "astro"])
            .unwrap_or_default();
        if replicas
            .iter()
            .any(|r| r.contains(&replica_port) && !r.iter().any(|f| f.contains("disconnected")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinel never found the replica: {replicas:?}\n{}",
            sentinel.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut cfg = config(&master, "ha");
    cfg.redis.sentinels = vec![sentinel.addr()];
    cfg.redis.master_name = "astro".into();
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(600, &mut cluster));
    rig.flush(Duration::from_secs(10));
    assert_recovers_exactly(&cfg.redis, &rig.graph);

    // The master dies; changes keep coming while the sentinel promotes the replica.
    master.kill();
    let cluster = cluster.as_mut().unwrap();
    rig.send_all(churn(cluster, 200));
    let deadline = Instant::now() + Duration::from_secs(60);
    while sentinel.master_port("astro") != replica.port {
        assert!(
            Instant::now() < deadline,
            "no failover within 60 s:\n{}",
            sentinel.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rig.send_all(churn(cluster, 100));
    rig.drain();
    rig.flush(Duration::from_secs(60));
    assert!(rig.persistence().stats().reconnects.load(Ordering::Relaxed) >= 1);
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut replica.client())
        .unwrap();
    assert!(role.contains("role:master"), "{role}");
    // Recovery through the sentinel reads the new master: exactly the graph.
    assert_recovers_exactly(&cfg.redis, &rig.graph);
}

#[test]
fn on_a_redis_cluster_the_writer_keeps_going_through_a_node_restart_and_recovery_works() {
    let mut nodes = start_cluster(3);
    let mut cfg = config(&nodes[0], "cl");
    cfg.redis.cluster = nodes.iter().map(RedisServer::addr).collect();
    let mut rig = Rig::start(cfg.clone());
    let mut cluster = None;
    rig.send_all(demo(600, &mut cluster));
    let cluster = cluster.as_mut().unwrap();
    rig.send_all(churn(cluster, 100));
    rig.flush(Duration::from_secs(10));
    // A snapshot (chunks, manifest, the atomic switch script) and the log after it.
    rig.persistence().snapshot(Duration::from_secs(20)).unwrap();
    rig.send_all(churn(cluster, 100));
    rig.flush(Duration::from_secs(10));
    let r = assert_recovers_exactly(&cfg.redis, &rig.graph);
    assert!(r.from_snapshot);

    // The node holding the graph's slot goes away and comes back; changes keep coming.
    let owner = nodes
        .iter()
        .position(|n| {
            redis::cmd("EXISTS")
                .arg("astrolabe:{cl}:current")
                .query::<i64>(&mut n.client())
                == Ok(1)
        })
        .expect("one node owns the graph's slot");
    nodes[owner].kill();
    rig.send_all(churn(cluster, 200));
    std::thread::sleep(Duration::from_millis(500));
    nodes[owner].restart();
    wait_cluster_ok(&nodes);
    rig.drain();
    rig.flush(Duration::from_secs(60));
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
        rig.send_all(demo(400, &mut cluster));
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

    let mut overstated = manifest.clone();
    overstated.objects = u64::MAX;
    let mut future = manifest;
    future.format = 99;
    type Corruption<'a> = Box<dyn Fn(&mut redis::Connection) + 'a>;
    // Most corruptions store other bytes under one key.
    let set = |key: &str, value: &[u8]| -> Corruption<'static> {
        let (key, value) = (key.to_string(), value.to_vec());
        Box::new(move |c| {
            let _: () = redis::cmd("SET").arg(&key).arg(&value).query(c).unwrap();
        })
    };
    let cases: Vec<(&str, Corruption, &str)> = vec![
        (
            "unknown version",
            set(
                &manifest_key,
                &persistence::format::encode_manifest(&future),
            ),
            "unknown format version 99",
        ),
        (
            // A count no allocation could hold: reported, not a crash while making room.
            "overstated object count",
            set(
                &manifest_key,
                &persistence::format::encode_manifest(&overstated),
            ),
            "objects but holds",
        ),
        (
            "truncated chunk",
            set(&chunk_key, &good_chunk[..good_chunk.len() / 2]),
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
            set(&format!("{prefix}:current"), b"not-a-number"),
            "not a generation number",
        ),
        (
            "foreign manifest",
            set(&manifest_key, b"{\"some\": \"json\"}"),
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
