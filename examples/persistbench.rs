//! The load harness for persistence: starts its own `redis-server` (loopback, temporary
//! directory, AOF on with `appendfsync everysec`, as the tests do) and measures, on a demo graph
//! of N objects:
//!
//! - `throughput`: object changes persisted per second, sustained, end to end (changes sent to
//!   the graph's writer, recorded for persistence, coalesced, written as log entries), each
//!   window followed at once by `redis-benchmark -P 64 -t set` with the same value size on the
//!   same Redis (in another database), for a number of rounds, and the ratios; then the Redis
//!   writer alone (fed directly).
//! - `restore`: a snapshot of the whole graph written, then read back and the graph rebuilt
//!   (in-process, by phase), then `astrolabe serve` started on it as a process: time from exec to
//!   serving the restored graph.
//! - `restore-log`: the worst case of the same: a snapshot, then as much log after it as the
//!   writer lets grow before it replaces the log with a new snapshot, all read back in-process;
//!   with the log changing every object (in the snapshot's order, then in a random order), then
//!   changing a tenth of them over and over; each read back in-process three times, then three
//!   times by `astrolabe serve` as a process (killed once it answered, Redis started again on a
//!   copy of the same state before each; each round says whether Redis rewrote its AOF meanwhile).
//! - `snapshot`: a periodic snapshot (in the background, as `serve` takes them) while changes
//!   stream in at a steady rate: its duration and size,
//!   and the latency of ingest (a change sent until visible to readers) and of queries
//!   (depth-2 neighbourhoods) during it, next to the same measured just before without it.
//! - `outage`: the same latencies while Redis is killed for a while and then restarted, and how
//!   long catching up takes.
//! - `first-touch`: what this machine charges for memory a process touches for the first time,
//!   in µs a page for each 256 MiB in turn, in fresh processes (this harness run again): a restart
//!   is a fresh process, and recovery's time follows the pages it touches (see BENCHMARKS.md,
//!   (c)).
//!
//! ```text
//! cargo build --release && cargo run --release --example persistbench -- --objects 1000000
//! ```
//!
//! Options: `--objects N` (default 1,000,000), `--seconds S` (measurement window, default 20),
//! `--rate R` (changes per second during `snapshot` and `outage`, default 20,000), `--only NAME`
//! (one of the scenarios above), `--bin PATH` (the server binary for `restore`), `--rounds N`
//! (end-to-end windows in `throughput`, each followed by its `redis-benchmark`; default 3).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use astrolabe::graph::{Change, Direction3, Graph, NodeIndex};
use astrolabe::ingest::{self, EventSender, GraphHandle};
use astrolabe::model::{Kind, Object};
use astrolabe::persistence::{self, PersistConfig, PersistObserver, Persistence, RedisConfig};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use hdrhistogram::Histogram;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Options {
    objects: usize,
    seconds: u64,
    rate: u64,
    only: Option<String>,
    bin: PathBuf,
    rounds: usize,
}

/// This harness's own text, for `--help`.
const SOURCE: &str = include_str!("persistbench.rs");

fn options() -> Options {
    let mut o = Options {
        objects: 1_000_000,
        seconds: 20,
        rate: 20_000,
        only: None,
        bin: common::release_bin(),
        rounds: 3,
    };
    common::help(SOURCE);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| common::usage_error(SOURCE, &format!("{flag} needs a value")));
        match flag.as_str() {
            "--objects" => o.objects = value.parse().expect("--objects N"),
            "--seconds" => o.seconds = value.parse().expect("--seconds S"),
            "--rate" => o.rate = value.parse().expect("--rate R"),
            "--only" => o.only = Some(value.clone()),
            "--bin" => o.bin = value.into(),
            "--rounds" => o.rounds = value.parse().expect("--rounds N"),
            other => common::usage_error(SOURCE, &format!("unknown option {other}")),
        }
    }
    o
}

/// The tests' real redis-server (free loopback port, temporary directory, AOF `everysec`,
/// stopped by PID when dropped).
#[path = "common/server.rs"]
mod common;
#[path = "../tests/support/redis.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;
use redis_server::RedisServer as Redis;

/// What the harness reads from Redis besides the tests' needs.
trait Inspect {
    fn used_memory(&self) -> u64;
    fn quiesce(&self) -> Duration;
    fn flushall(&self);
}

impl Inspect for Redis {
    fn used_memory(&self) -> u64 {
        self.info("memory", "used_memory").unwrap_or(0)
    }

    /// Waits until Redis is not rewriting its AOF (a forked child compressing the whole
    /// dataset, which takes one of the machine's cores); returns how long that took.
    fn quiesce(&self) -> Duration {
        let t = Instant::now();
        let mut c = self.client();
        loop {
            let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
            let busy = info.lines().any(|l| {
                l == "aof_rewrite_in_progress:1"
                    || l == "aof_rewrite_scheduled:1"
                    || l == "rdb_bgsave_in_progress:1"
            });
            if !busy {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn flushall(&self) {
        let _: () = redis::cmd("FLUSHALL").query(&mut self.client()).unwrap();
    }
}

fn config(redis: &Redis) -> PersistConfig {
    PersistConfig {
        redis: RedisConfig {
            addr: redis.addr(),
            prefix: "astrolabe:{bench}".into(),
            ..RedisConfig::default()
        },
        snapshot_interval: Duration::ZERO,
        ..PersistConfig::default()
    }
}

/// The demo cluster as `serve` builds it today, projected; and a second version of every object
/// (another resourceVersion), so that alternating between them makes every change a real one.
fn objects(n: usize) -> (Vec<Arc<Object>>, Vec<Arc<Object>>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let cluster = DemoCluster::new(DemoConfig {
        objects: n,
        now: now - now.rem_euclid(86_400),
        ..DemoConfig::default()
    });
    let p = Projector::default();
    let a: Vec<Arc<Object>> = cluster
        .objects()
        .filter_map(|v| p.project(&v).ok())
        .map(Arc::new)
        .collect();
    let b = a
        .iter()
        .map(|o| {
            let mut o = Object::clone(o);
            o.resource_version = format!("{}-b", o.resource_version).into();
            Arc::new(o)
        })
        .collect();
    (a, b)
}

/// A graph of `objects` with persistence whose mirror already holds them (as after a restore),
/// so that what is measured is the changes, not the first load.
struct Rig {
    graph: GraphHandle,
    tx: Option<EventSender>,
    writer: Option<ingest::Writer>,
    persistence: Option<Persistence>,
}

impl Rig {
    fn start(cfg: PersistConfig, objects: &[Arc<Object>]) -> Rig {
        let mut g = Graph::new();
        for o in objects {
            g.apply(Change::Upsert(o.clone()));
        }
        let (sink, pending) = persistence::channel(cfg);
        let (graph, tx, writer) = ingest::start_with(
            g,
            ingest::Options {
                persist: Some(sink),
                restored: true,
            },
        );
        let persistence = pending.start(
            graph.clone(),
            persistence::Recovered {
                objects: objects.to_vec(),
                log_id: "0-0".into(),
                ..persistence::Recovered::default()
            },
        );
        Rig {
            graph,
            tx: Some(tx),
            writer: Some(writer),
            persistence: Some(persistence),
        }
    }

    fn tx(&self) -> &EventSender {
        self.tx.as_ref().unwrap()
    }

    fn persistence(&self) -> &Persistence {
        self.persistence.as_ref().unwrap()
    }

    fn stop(mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            w.join();
        }
        if let Some(p) = self.persistence.take() {
            p.stop(Instant::now() + Duration::from_secs(60));
        }
    }
}

/// Sends changes (alternating versions, every object in turn, starting at change number `from`)
/// until `stop`; at `rate` per second, or as fast as the graph's writer takes them when `rate` is
/// 0. Returns the number of the next change (how many were sent, when `from` is 0).
fn produce(
    tx: &EventSender,
    a: &[Arc<Object>],
    b: &[Arc<Object>],
    rate: u64,
    from: u64,
    stop: &AtomicBool,
    hold: &dyn Fn() -> bool,
) -> u64 {
    let started = Instant::now();
    let mut sent = from;
    let n = a.len() as u64;
    while !stop.load(Ordering::Relaxed) {
        if hold() {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        for _ in 0..64 {
            let i = (sent % n) as usize;
            let o = if (sent / n).is_multiple_of(2) {
                &b[i]
            } else {
                &a[i]
            };
            if !tx.change(Change::Upsert(o.clone())) {
                return sent;
            }
            sent += 1;
        }
        if rate > 0 {
            let due = Duration::from_secs_f64((sent - from) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    sent
}

/// CPU seconds used so far by each thread of this process (by name) and by `redis_pid` (with
/// its waited-for children, such as an AOF rewrite), from /proc.
fn cpu_by_thread(redis_pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            *out.entry(comm.trim().to_string()).or_insert(0.0) +=
                common::stat_cpu_seconds(t.path().join("stat"), false);
        }
    }
    // The whole process, including threads that have exited (parallel encoders, snapshots).
    out.insert(
        PROCESS.into(),
        common::stat_cpu_seconds("/proc/self/stat", false),
    );
    out.insert("redis-server".into(), common::cpu_seconds(redis_pid, true));
    out
}

/// The key of the whole process's CPU in `cpu_by_thread`.
const PROCESS: &str = "(process)";

/// The CPU each thread used between two readings, in % of one core.
fn cpu_report(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    window: Duration,
) -> String {
    let delta = |k: &String, v: &f64| v - before.get(k).copied().unwrap_or(0.0);
    let mut parts: Vec<(String, f64)> = after
        .iter()
        .filter(|(k, _)| *k != PROCESS)
        .map(|(k, v)| (k.clone(), delta(k, v)))
        .collect();
    // What the threads alive at the end do not account for: threads that exited meanwhile.
    let live: f64 = parts
        .iter()
        .filter(|(k, _)| k != "redis-server")
        .map(|(_, v)| v)
        .sum();
    if let Some((k, v)) = after.get_key_value(PROCESS) {
        parts.push(("exited threads".into(), (delta(k, v) - live).max(0.0)));
    }
    parts.retain(|(_, v)| *v >= 0.02 * window.as_secs_f64());
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    parts
        .iter()
        .map(|(k, v)| format!("{k} {:.0}%", 100.0 * v / window.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn throughput(o: &Options, a: &[Arc<Object>], b: &[Arc<Object>]) {
    println!("\n## throughput: object changes persisted per second, sustained");
    let redis = Redis::start();
    let rig = Rig::start(config(&redis), a);
    let stats = rig.persistence().observer();
    // As fast as the graph takes changes, but never so fast that the persistence channel
    // overflows (which would coalesce changes into snapshots): the rate sustained without loss
    // of individual states.
    let capacity = config(&redis).channel_capacity;
    let read = || {
        let s = stats.stats();
        (
            rig.graph.read().generation(),
            s.objects.load(Ordering::Relaxed),
            s.log_bytes.load(Ordering::Relaxed),
            s.batches.load(Ordering::Relaxed),
            s.snapshots.load(Ordering::Relaxed),
        )
    };
    // Rounds of one end-to-end window, then `redis-benchmark` right after it with that window's
    // value size: each ratio compares two rates of the same few seconds of this shared host.
    let (mut ends, mut raws) = (Vec::new(), Vec::new());
    let mut next = 0u64;
    for round in 1..=o.rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let producer = {
            let (tx, a, b, stop) = (rig.tx().clone(), a.to_vec(), b.to_vec(), stop.clone());
            let observer = rig.persistence().observer();
            std::thread::spawn(move || {
                produce(&tx, &a, &b, 0, next, &stop, &|| {
                    observer.status().queue_depth > capacity / 2
                })
            })
        };
        // Warm up, then measure a window.
        std::thread::sleep(Duration::from_secs(3));
        let (g0, w0, b0, n0, s0) = read();
        let cpu0 = cpu_by_thread(redis.pid());
        let redis0 = ProcCpu::of(redis.pid());
        let t0 = Instant::now();
        let (mut max_dirty, mut max_queue) = (0, 0);
        while t0.elapsed() < Duration::from_secs(o.seconds) {
            std::thread::sleep(Duration::from_millis(100));
            let st = stats.status();
            max_dirty = max_dirty.max(st.dirty);
            max_queue = max_queue.max(st.queue_depth);
        }
        let window = t0.elapsed();
        let (g1, w1, b1, n1, s1) = read();
        let running = stats.stats().snapshot_running.load(Ordering::Relaxed);
        let cpu = cpu_report(&cpu0, &cpu_by_thread(redis.pid()), window);
        let redis_window = ProcCpu::of(redis.pid()).since(&redis0);
        stop.store(true, Ordering::Relaxed);
        next = producer.join().unwrap();
        let caught = Instant::now();
        rig.persistence()
            .flush(Duration::from_secs(120))
            .expect("catch-up flush");
        let catch_up = caught.elapsed();
        // Nothing of this scenario runs beside `redis-benchmark`: not a snapshot, not an AOF
        // rewrite it started. The log written in the window can make the next snapshot due as
        // soon as the running one ends, so snapshots must have been quiet for a while.
        quiet_snapshots(&stats);
        redis.quiesce();
        let overflowed = stats.stats().overflowed.load(Ordering::Relaxed);
        let value_size = (b1 - b0) / (w1 - w0).max(1);
        let end = rate(w1 - w0, window);
        println!("round {round}:");
        println!(
            "  end to end, {window:.1?} window: changes applied {:.0}/s, object states written to Redis {end:.0}/s \
             ({} log entries, {:.0} objects each, {value_size} bytes per object)",
            rate(g1 - g0, window),
            n1 - n0,
            (w1 - w0) as f64 / (n1 - n0).max(1) as f64
        );
        println!(
            "  snapshots of the whole graph written in the background during the window: {} ({})",
            s1 - s0,
            if running {
                "one still running at its end"
            } else {
                "none running at its end"
            }
        );
        println!("  CPU during the window, in % of one core: {cpu}");
        println!(
            "  queue: deepest {max_queue}, dirty at most {max_dirty}, overflowed {overflowed} of {} changes sent so far; \
             catch-up after the producer stopped: {catch_up:.1?}",
            next
        );
        let redis1 = ProcCpu::of(redis.pid());
        let raw = raw_set(&redis, value_size, (end * o.seconds as f64) as u64);
        println!(
            "  Redis (with its AOF rewrites) during the window: {redis_window}; during redis-benchmark: {}",
            ProcCpu::of(redis.pid()).since(&redis1)
        );
        println!(
            "  raw SET right after, same value size: {raw:.0}/s; end to end / raw SET: {:.2}",
            end / raw
        );
        ends.push(end);
        raws.push(raw);
    }
    rig.stop();
    let (end, raw) = (common::median(&ends), common::median(&raws));
    println!(
        "end to end: median {end:.0}/s over {} rounds; raw SET: median {raw:.0}/s; ratio of the medians {:.2}",
        o.rounds,
        end / raw
    );

    // The Redis writer alone, fed straight from a producer (no graph writer in front of it).
    redis.flushall();
    let direct = direct_writer(&redis, a, b, o.seconds);
    println!(
        "Redis writer alone: {:.0} object states written per second",
        direct
    );
    println!(
        "Redis writer alone / median raw SET: {:.2}; end to end / 5,000 (the Go original's best): {:.0}x",
        direct / raw,
        end / 5000.0
    );
}

/// Waits until no snapshot has run for a second: neither one running nor one finished.
fn quiet_snapshots(observer: &PersistObserver) {
    let stats = observer.stats();
    let mut count = stats.snapshots.load(Ordering::Relaxed);
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(20));
        let now = stats.snapshots.load(Ordering::Relaxed);
        if stats.snapshot_running.load(Ordering::Relaxed) || now != count {
            count = now;
            quiet = Instant::now();
        }
    }
}

/// `redis-benchmark -P 64 -t set` with values of `value_size` bytes, `requests` of them (at
/// least a million), in database 9 (emptied after, so that the graph's keys in database 0 are
/// untouched); returns SETs per second.
fn raw_set(redis: &Redis, value_size: u64, requests: u64) -> f64 {
    let requests = requests.max(1_000_000).to_string();
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(["--dbnum", "9"])
        .args(["-P", "64", "-t", "set", "-d", &value_size.to_string()])
        .args(["-n", &requests, "-r", "1000000", "-q"])
        .output()
        .expect("redis-benchmark is installed (redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))
        .unwrap_or_default()
        .trim()
        .to_string();
    println!(
        "  redis-benchmark -P 64 -t set -d {value_size} -n {requests} -r 1000000 --dbnum 9 (50 clients): {line}"
    );
    let mut c = redis.client();
    let _: () = redis::cmd("SELECT").arg(9).query(&mut c).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("redis-benchmark printed its rate")
}

/// Feeds the Redis writer directly (as the graph's writer does, with increasing generations)
/// for `seconds`; returns object states written per second.
fn direct_writer(redis: &Redis, a: &[Arc<Object>], b: &[Arc<Object>], seconds: u64) -> f64 {
    let cfg = config(redis);
    let capacity = cfg.channel_capacity;
    let (sink, pending) = persistence::channel(cfg);
    let mut g = Graph::new();
    for o in a {
        g.apply(Change::Upsert(o.clone()));
    }
    let p = pending.start(
        GraphHandle::fixed(g),
        persistence::Recovered {
            objects: a.to_vec(),
            log_id: "0-0".into(),
            ..persistence::Recovered::default()
        },
    );
    let observer = p.observer();
    let n = a.len() as u64;
    let mut sent = 0u64;
    let measure_from = Instant::now() + Duration::from_secs(2);
    let mut w0 = None;
    let end = measure_from + Duration::from_secs(seconds);
    while Instant::now() < end {
        // Stay under the channel's capacity, so that nothing overflows into the dirty set.
        if observer.status().queue_depth > capacity * 3 / 4 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        for _ in 0..1024 {
            let i = (sent % n) as usize;
            let o = if (sent / n).is_multiple_of(2) {
                &b[i]
            } else {
                &a[i]
            };
            sent += 1;
            sink.upsert(o.clone(), sent);
        }
        // As the graph's writer does between batches.
        sink.drop_superseded();
        if w0.is_none() && Instant::now() >= measure_from {
            w0 = Some((
                observer.stats().objects.load(Ordering::Relaxed),
                Instant::now(),
                cpu_by_thread(redis.pid()),
            ));
        }
    }
    let (w0, t0, cpu0) = w0.unwrap();
    let w1 = observer.stats().objects.load(Ordering::Relaxed);
    let r = rate(w1 - w0, t0.elapsed());
    println!(
        "Redis writer alone, CPU in % of one core: {}",
        cpu_report(&cpu0, &cpu_by_thread(redis.pid()), t0.elapsed())
    );
    p.stop(Instant::now() + Duration::from_secs(60));
    r
}

/// A graph restored as `serve` restores it, with the time spent building it.
struct Timed {
    g: Graph,
    building: Duration,
}

impl persistence::Restore for Timed {
    fn reserve(&mut self, objects: usize) {
        let t = Instant::now();
        self.g.reserve(objects);
        self.building += t.elapsed();
    }

    fn apply(&mut self, change: Change) {
        let t = Instant::now();
        self.g.apply(change);
        self.building += t.elapsed();
    }
}

fn restore_in_process(redis: &Redis, rounds: std::ops::RangeInclusive<usize>) {
    let cfg = config(redis);
    for round in rounds {
        let waited = redis.quiesce();
        println!("  (waited {waited:.1?} for Redis to finish rewriting its AOF)");
        // As `serve` does it: the graph is built while later chunks are read and decoded.
        let machine0 = common::machine_cpu();
        let t = Instant::now();
        let mut timed = Timed {
            g: Graph::new(),
            building: Duration::ZERO,
        };
        let r = persistence::recover_with(&cfg.redis, &mut timed).expect("recovers");
        let Timed { g, building } = timed;
        println!(
            "in-process round {round}: Redis to a built graph {:.2?} (of which reading and indexing the log {:.2?}, applying to the graph {building:.2?}); {} log entries replayed ({} states of {} objects); {} objects, {} nodes",
            t.elapsed(),
            r.log_took,
            r.log_batches,
            r.log_states,
            r.log_objects,
            r.objects.len(),
            g.node_count()
        );
        let machine = common::machine_cpu();
        println!(
            "  CPU meanwhile (s): machine busy {:.2} of {:.2}, stolen by the VM's host {:.2}",
            machine.0 - machine0.0,
            all_cores(t.elapsed()),
            machine.1 - machine0.1
        );
    }
}

fn restore(o: &Options, a: &[Arc<Object>]) {
    println!("\n## restore: a graph from Redis to serving");
    let redis = Redis::start();
    let rig = Rig::start(config(&redis), a);
    let report = rig
        .persistence()
        .snapshot(Duration::from_secs(300))
        .expect("snapshot");
    rig.stop();
    println!(
        "snapshot written: {} objects, {:.1} MB, {:.2?}",
        report.objects,
        report.bytes as f64 / 1e6,
        report.duration
    );
    restore_in_process(&redis, 1..=3);
    // The server as a process: from exec to answering with the restored graph. Each exit writes
    // a final snapshot; the next round restores from it.
    for round in 1..=3 {
        restore_by_exec(o, &redis, round, Exit::FinalSnapshot);
    }
    // The snapshot the server wrote at its last exit, read in-process.
    restore_in_process(&redis, 4..=4);
}

/// How [`restore_by_exec`] ends the server.
#[derive(Clone, Copy, PartialEq)]
enum Exit {
    /// SIGTERM: it writes a final snapshot, which replaces any log.
    FinalSnapshot,
    /// SIGKILL as soon as it answered, before its source has sent anything: Redis keeps the
    /// state it was started on.
    Kill,
}

/// `astrolabe serve` started as a process on `redis`'s data: time from exec to answering with
/// the restored graph. Returns the server's line about what it restored.
fn restore_by_exec(o: &Options, redis: &Redis, round: usize, exit: Exit) -> String {
    let waited = redis.quiesce();
    println!("  (waited {waited:.1?} for Redis to finish rewriting its AOF)");
    let rewrites = redis.info("persistence", "aof_rewrites");
    let mut restored = String::new();
    let (machine0, me0, redis0) = (
        common::machine_cpu(),
        common::stat_cpu_seconds("/proc/self/stat", false),
        common::cpu_seconds(redis.pid(), true),
    );
    let t = Instant::now();
    let server = common::Server::start(
        Command::new(&o.bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--enable-persistence"])
            .args([
                "--redis-addr",
                &redis.addr(),
                "--redis-key-prefix",
                "astrolabe:{bench}",
            ])
            .args(["--source", &format!("demo:{}", o.objects)])
            .env("ASTROLABE_LOG", "info"),
        |line| {
            if line.contains("restored the graph") {
                println!("  server: {}", line.trim());
                restored = line.trim().to_string();
            }
        },
    );
    let listening = t.elapsed();
    let body = loop {
        if let Some(b) = common::http_get(&server.addr, "/api/v2/kinds") {
            break b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "no answer after 5 minutes"
        );
    };
    let serving = t.elapsed();
    // Where the machine's CPU went until the first answer: a slow round with other work on the
    // two cores (or time the VM's host took, "steal") is not the server's own slowness.
    let (machine, me, by_redis, by_server) = (
        common::machine_cpu(),
        common::stat_cpu_seconds("/proc/self/stat", false) - me0,
        common::cpu_seconds(redis.pid(), true) - redis0,
        ProcCpu::of(server.pid()),
    );
    let (busy, steal) = (machine.0 - machine0.0, machine.1 - machine0.1);
    let server_total = by_server.user + by_server.system;
    println!(
        "  CPU until the first answer (s): machine busy {busy:.2} of {:.2}, stolen by the VM's host {steal:.2}; server {server_total:.2} ({by_server}), Redis {by_redis:.2}, this harness {me:.2}, anything else {:.2}",
        all_cores(serving),
        busy - server_total - by_redis - me,
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("/api/v2/kinds answers JSON");
    let total: u64 = v["items"]
        .as_array()
        .map(|k| k.iter().filter_map(|k| k["count"].as_u64()).sum())
        .unwrap_or(0);
    // The peak includes what recovery held besides the graph (the unpacked log, chunks).
    let memory = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ");
    // A rewrite forks a child that takes a core while the server restores.
    let rewrites_then = redis.info("persistence", "aof_rewrites");
    let rewriting = redis.info("persistence", "aof_rewrite_in_progress");
    println!(
        "process round {round}: listening after {listening:.2?}, first answer after {serving:.2?}: {total} objects, restored={}, synced={}; memory then (kB): {memory}; Redis's AOF rewrites meanwhile: {} (one running: {})",
        v["freshness"]["restored"],
        v["freshness"]["synced"],
        rewrites_then.zip(rewrites).map_or(0, |(a, b)| a - b),
        rewriting == Some(1),
    );
    match exit {
        Exit::FinalSnapshot => server.stop(),
        Exit::Kill => drop(server),
    }
    restored
}

/// CPU seconds all the machine's cores have in `d`.
fn all_cores(d: Duration) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores as f64 * d.as_secs_f64()
}

/// The argument that makes this process one pass of [`first_touch`].
const FIRST_TOUCH_CHILD: &str = "--first-touch-child";

fn first_touch_child() -> Option<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, mib] if flag == FIRST_TOUCH_CHILD => Some(mib.parse().expect("MiB")),
        _ => None,
    }
}

/// Fresh processes touching fresh memory, one byte a page: 1.5 GiB twice in a row (about what
/// a restore with the longest log touches), then 6 GiB.
fn first_touch() {
    println!("\n## first-touch: µs a page for each 256 MiB in turn, each line a fresh process");
    for mib in [1536, 1536, 6144] {
        let out = Command::new(std::env::current_exe().expect("this harness's path"))
            .args([FIRST_TOUCH_CHILD, &mib.to_string()])
            .output()
            .expect("running this harness again");
        print!("{mib} MiB: {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// One pass: `mib` MiB allocated zeroed (mapped, not touched: the allocator takes it from the
/// kernel), then one byte written in every 4 KiB page, timed a 256 MiB at a time.
fn first_touch_pass(mib: usize) {
    const PAGE: usize = 4096;
    const STEP: usize = 256 << 20;
    let mut memory = vec![0u8; mib << 20];
    let mut line = String::new();
    for chunk in memory.chunks_mut(STEP) {
        let t = Instant::now();
        for page in chunk.chunks_mut(PAGE) {
            page[0] = 1;
        }
        let pages = chunk.len().div_ceil(PAGE) as f64;
        line.push_str(&format!("{:.1} ", t.elapsed().as_secs_f64() * 1e6 / pages));
    }
    println!("{line}");
    std::hint::black_box(&memory);
}

/// A process's CPU (with its waited-for children, such as Redis's AOF rewrites) and page faults.
struct ProcCpu {
    user: f64,
    system: f64,
    faults: u64,
}

impl ProcCpu {
    fn of(pid: u32) -> ProcCpu {
        let f = common::stat_fields(format!("/proc/{pid}/stat"));
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        ProcCpu {
            user: (at(11) + at(13)) as f64 / 100.0,
            system: (at(12) + at(14)) as f64 / 100.0,
            faults: at(7) + at(8),
        }
    }

    fn since(&self, before: &ProcCpu) -> ProcCpu {
        ProcCpu {
            user: self.user - before.user,
            system: self.system - before.system,
            faults: self.faults.saturating_sub(before.faults),
        }
    }
}

impl std::fmt::Display for ProcCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "user {:.2} s, system {:.2} s, {} page faults",
            self.user, self.system, self.faults
        )
    }
}

/// Redis stopped cleanly (its AOF complete on disk) and its append-only files copied aside, so
/// that [`restart_from`] can start it again on exactly this state.
fn save_data(redis: &mut Redis) -> tempfile::TempDir {
    let _ = redis::cmd("SHUTDOWN").query::<()>(&mut redis.client());
    redis.kill();
    let saved = tempfile::tempdir().expect("a temporary directory");
    copy_files(&redis.dir().join("appendonlydir"), saved.path());
    saved
}

/// Redis started again on the state [`save_data`] kept, whatever was written since.
fn restart_from(redis: &mut Redis, saved: &std::path::Path) {
    redis.kill();
    let dir = redis.dir().join("appendonlydir");
    std::fs::remove_dir_all(&dir).expect("removing the append-only files");
    std::fs::create_dir(&dir).expect("creating the append-only directory");
    copy_files(saved, &dir);
    redis.restart();
}

fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    for f in std::fs::read_dir(from).expect("reading the append-only directory") {
        let f = f.expect("a directory entry");
        std::fs::copy(f.path(), to.join(f.file_name())).expect("copying an append-only file");
    }
}

/// The worst case of recovery: the log as long as it grows before the writer replaces it with a
/// snapshot (twice the last snapshot's bytes), all of it replayed on top of the snapshot.
/// `touched`: how many objects (the first ones) the log changes, round and round: all of them
/// (each state in the log then replaces a snapshot object), or a few (then most of the log's
/// states are replaced by later ones). `shuffled`: the log changes them in a random order, as a
/// cluster's changes come, instead of in the snapshot's order (grouped by namespace). Then read
/// back in-process three times, and three times by `astrolabe serve` started as a process on the
/// same state.
fn restore_with_longest_log(
    o: &Options,
    a: &[Arc<Object>],
    b: &[Arc<Object>],
    touched: usize,
    shuffled: bool,
) {
    println!(
        "\n## restore-log: a graph from Redis, with the longest log the writer lets grow, \
         changing {touched} of the {} objects{}",
        a.len(),
        if shuffled {
            " in a random order"
        } else {
            " in the snapshot's order"
        }
    );
    let (changed_a, changed_b) = {
        let mut order: Vec<usize> = (0..touched).collect();
        if shuffled {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(4));
        }
        let pick = |v: &[Arc<Object>]| order.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        (pick(a), pick(b))
    };
    let mut redis = Redis::start();
    let cfg = config(&redis);
    let capacity = cfg.channel_capacity;
    let rig = Rig::start(cfg, a);
    let observer = rig.persistence().observer();
    let snapshot = rig
        .persistence()
        .snapshot(Duration::from_secs(300))
        .expect("snapshot");
    let stats = observer.stats();
    let (bytes0, objects0, snapshots0) = (
        stats.log_bytes.load(Ordering::Relaxed),
        stats.objects.load(Ordering::Relaxed),
        stats.snapshots.load(Ordering::Relaxed),
    );
    // Just under the trigger: the producer holds at the target, but what is already in the
    // channel (up to half its capacity) is still written after it.
    let target = snapshot.bytes * persistence::LOG_LIMIT_SNAPSHOTS * 95 / 100;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (tx, a, b, stop) = (rig.tx().clone(), changed_a, changed_b, stop.clone());
        let observer = observer.clone();
        std::thread::spawn(move || {
            produce(&tx, &a, &b, 0, 0, &stop, &|| {
                observer.status().queue_depth > capacity / 2
                    || observer.stats().log_bytes.load(Ordering::Relaxed) - bytes0 >= target
            })
        })
    };
    while stats.log_bytes.load(Ordering::Relaxed) - bytes0 < target {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("the producer");
    rig.persistence()
        .flush(Duration::from_secs(300))
        .expect("flush");
    // A stop writes no snapshot (`serve` takes its final one before it stops persistence), but
    // waits for one that is running: counted after it.
    rig.stop();
    let log_bytes = stats.log_bytes.load(Ordering::Relaxed) - bytes0;
    let log_objects = stats.objects.load(Ordering::Relaxed) - objects0;
    let snapshots = stats.snapshots.load(Ordering::Relaxed) - snapshots0;
    println!(
        "snapshot {:.1} MB ({} objects), then a log of {:.1} MB ({log_objects} object states, \
         {:.2} x the snapshot's bytes); snapshots taken meanwhile: {snapshots}",
        snapshot.bytes as f64 / 1e6,
        snapshot.objects,
        log_bytes as f64 / 1e6,
        log_bytes as f64 / snapshot.bytes as f64,
    );
    assert_eq!(
        snapshots, 0,
        "the log was replaced by a snapshot: not the worst case"
    );
    restore_in_process(&redis, 1..=3);
    // The server as a process, three times on the same state: each round starts Redis again on
    // a copy of it, and the server is killed once it answered.
    let saved = save_data(&mut redis);
    let mut first = None;
    for round in 1..=3 {
        restart_from(&mut redis, saved.path());
        let line = restore_by_exec(o, &redis, round, Exit::Kill);
        let states = line
            .split_whitespace()
            .find(|w| w.starts_with("log_states="));
        assert!(
            states.is_some(),
            "round {round}: the server did not say what it restored"
        );
        let first = first.get_or_insert_with(|| states.map(str::to_string));
        assert_eq!(
            first.as_deref(),
            states,
            "every round restores the same log"
        );
    }
}

/// Latencies of ingest (sent until visible) and of queries, recorded by background threads into
/// the histograms of the current phase.
struct Probes {
    stop: Arc<AtomicBool>,
    phase: Arc<std::sync::atomic::AtomicUsize>,
    ingest: Arc<Vec<parking_lot::Mutex<Histogram<u64>>>>,
    query: Arc<Vec<parking_lot::Mutex<Histogram<u64>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Probes {
    fn start(rig: &Rig, a: &[Arc<Object>], b: &[Arc<Object>], phases: usize) -> Probes {
        let hist = || {
            Arc::new(
                (0..phases)
                    .map(|_| parking_lot::Mutex::new(Histogram::<u64>::new(3).unwrap()))
                    .collect::<Vec<_>>(),
            )
        };
        let p = Probes {
            stop: Arc::new(AtomicBool::new(false)),
            phase: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            ingest: hist(),
            query: hist(),
            threads: Vec::new(),
        };
        let mut threads = Vec::new();
        // Ingest: every millisecond, change one probe object and wait until readers see it.
        {
            let (tx, graph, stop, phase, hist) = (
                rig.tx().clone(),
                rig.graph.clone(),
                p.stop.clone(),
                p.phase.clone(),
                p.ingest.clone(),
            );
            let versions = [a[0].clone(), b[0].clone()];
            threads.push(std::thread::spawn(move || {
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let o = versions[k % 2].clone();
                    let t = Instant::now();
                    tx.change(Change::Upsert(o.clone()));
                    loop {
                        let g = graph.read();
                        if g.find_uid(&o.uid)
                            .is_some_and(|n| g.object(n).resource_version == o.resource_version)
                        {
                            break;
                        }
                        drop(g);
                        std::thread::yield_now();
                    }
                    let us = t.elapsed().as_micros() as u64;
                    hist[phase.load(Ordering::Relaxed)]
                        .lock()
                        .record(us.max(1))
                        .ok();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        // Queries: depth-2 neighbourhoods of Deployments, one after another.
        {
            let (graph, stop, phase, hist) = (
                rig.graph.clone(),
                p.stop.clone(),
                p.phase.clone(),
                p.query.clone(),
            );
            let uids: Vec<_> = a
                .iter()
                .filter(|o| o.kind == Kind::Deployment)
                .map(|o| o.uid.clone())
                .take(10_000)
                .collect();
            threads.push(std::thread::spawn(move || {
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let uid = &uids[k % uids.len()];
                    let t = Instant::now();
                    {
                        let g = graph.read();
                        let start: Option<NodeIndex> = g.find_uid(uid);
                        if let Some(n) = start {
                            std::hint::black_box(g.neighborhood(n, 2, Direction3::Out, &[], 1000));
                        }
                    }
                    let us = t.elapsed().as_micros() as u64;
                    hist[phase.load(Ordering::Relaxed)]
                        .lock()
                        .record(us.max(1))
                        .ok();
                    std::thread::sleep(Duration::from_micros(200));
                }
            }));
        }
        Probes { threads, ..p }
    }

    fn set_phase(&self, i: usize) {
        self.phase.store(i, Ordering::Relaxed);
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }

    fn report(&self, names: &[&str]) {
        println!(
            "| phase | ingest p50 | ingest p99 | ingest max | query p50 | query p99 | query max |"
        );
        println!("|---|---|---|---|---|---|---|");
        let ms = |v: u64| format!("{:.2} ms", v as f64 / 1000.0);
        for (i, name) in names.iter().enumerate() {
            let ing = self.ingest[i].lock();
            let q = self.query[i].lock();
            println!(
                "| {name} ({} / {} samples) | {} | {} | {} | {} | {} | {} |",
                ing.len(),
                q.len(),
                ms(ing.value_at_quantile(0.5)),
                ms(ing.value_at_quantile(0.99)),
                ms(ing.max()),
                ms(q.value_at_quantile(0.5)),
                ms(q.value_at_quantile(0.99)),
                ms(q.max())
            );
        }
    }
}

/// A rig with changes streaming in at `rate` per second and the probes running.
fn streaming(
    cfg: PersistConfig,
    a: &[Arc<Object>],
    b: &[Arc<Object>],
    rate: u64,
    phases: usize,
) -> (Rig, Probes, Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let rig = Rig::start(cfg, a);
    let stop = Arc::new(AtomicBool::new(false));
    // The background stream skips object 0, which the ingest probe changes.
    let producer = {
        let (tx, a, b, stop) = (
            rig.tx().clone(),
            a[1..].to_vec(),
            b[1..].to_vec(),
            stop.clone(),
        );
        std::thread::spawn(move || produce(&tx, &a, &b, rate, 0, &stop, &|| false))
    };
    let probes = Probes::start(&rig, a, b, phases);
    (rig, probes, stop, producer)
}

/// A periodic snapshot, as `serve` takes them: in the background while the log goes on.
fn snapshot(o: &Options, a: &[Arc<Object>], b: &[Arc<Object>]) {
    println!(
        "\n## snapshot: {} objects while {} changes/s stream in",
        a.len(),
        o.rate
    );
    let redis = Redis::start();
    // Due once the steady phase below is over (the interval runs from the writer's start).
    let cfg = PersistConfig {
        snapshot_interval: Duration::from_secs(13),
        ..config(&redis)
    };
    let (rig, mut probes, stop, producer) = streaming(cfg, a, b, o.rate, 2);
    let observer = rig.persistence().observer();
    let stats = observer.stats();
    std::thread::sleep(Duration::from_secs(2));
    // Phase 0: the same load, no snapshot, for at least 10 s.
    let before = redis.used_memory();
    let batches = stats.batches.load(Ordering::Relaxed);
    probes.set_phase(0);
    std::thread::sleep(Duration::from_secs(10));
    while !stats.snapshot_running.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    probes.set_phase(1);
    let during = stats.batches.load(Ordering::Relaxed);
    let started = Instant::now();
    while stats.snapshots.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "snapshot never ended"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let entries_during = stats.batches.load(Ordering::Relaxed) - during;
    probes.set_phase(0);
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    probes.stop();
    let after = redis.used_memory();
    println!(
        "snapshot: {:.1} MB written in {:.2} s; Redis used_memory {:.1} MB before, {:.1} MB after; \
         {entries_during} log entries written meanwhile ({} in the steady phase and since)",
        stats.last_snapshot_bytes.load(Ordering::Relaxed) as f64 / 1e6,
        stats.last_snapshot_micros.load(Ordering::Relaxed) as f64 / 1e6,
        before as f64 / 1e6,
        after as f64 / 1e6,
        during - batches,
    );
    probes.report(&["steady, no snapshot", "during the snapshot"]);
    rig.stop();
}

fn outage(o: &Options, a: &[Arc<Object>], b: &[Arc<Object>]) {
    println!(
        "\n## outage: Redis killed for {} s while {} changes/s stream in",
        o.seconds, o.rate
    );
    let mut redis = Redis::start();
    let (rig, mut probes, stop, producer) = streaming(config(&redis), a, b, o.rate, 3);
    std::thread::sleep(Duration::from_secs(2));
    probes.set_phase(0);
    std::thread::sleep(Duration::from_secs(o.seconds));
    probes.set_phase(1);
    redis.kill();
    let observer = rig.persistence().observer();
    let mut max_dirty = 0;
    let mut max_pending_queue = 0;
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(o.seconds) {
        std::thread::sleep(Duration::from_millis(100));
        let s = observer.status();
        max_dirty = max_dirty.max(s.dirty);
        max_pending_queue = max_pending_queue.max(s.queue_depth);
    }
    redis.restart();
    probes.set_phase(2);
    let back = Instant::now();
    // Caught up: Redis acknowledged the graph's generation as it was when Redis came back, and
    // the snapshot that repairs what Redis lost is written.
    let target = rig.graph.read().generation();
    let snapshots = observer.stats().snapshots.load(Ordering::Relaxed);
    while observer.stats().acked_generation.load(Ordering::Relaxed) < target
        || observer.stats().snapshots.load(Ordering::Relaxed) == snapshots
        || observer.stats().snapshot_running.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let caught_up = back.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    probes.stop();
    println!(
        "while down: queue at most {max_pending_queue}, dirty objects at most {max_dirty}; \
         caught up {caught_up:.2?} after Redis came back (snapshots written: {}, reconnects: {})",
        observer.stats().snapshots.load(Ordering::Relaxed),
        observer.stats().reconnects.load(Ordering::Relaxed)
    );
    probes.report(&[
        "Redis up",
        "Redis down",
        "Redis back: catch-up and the 3 s after",
    ]);
    rig.stop();
}

fn main() {
    if let Some(mib) = first_touch_child() {
        return first_touch_pass(mib);
    }
    let o = options();
    let run = |name: &str| o.only.as_deref().is_none_or(|only| only == name);
    println!(
        "persistbench: {} objects, {} s windows, {} cores",
        o.objects,
        o.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if o.only.as_deref() == Some("first-touch") {
        return first_touch();
    }
    let t = Instant::now();
    let (a, b) = objects(o.objects);
    println!("demo built and projected in {:.1?}", t.elapsed());
    if run("throughput") {
        throughput(&o, &a, &b);
    }
    if run("restore") {
        restore(&o, &a);
    }
    if run("restore-log") {
        restore_with_longest_log(&o, &a, &b, a.len(), false);
        restore_with_longest_log(&o, &a, &b, a.len(), true);
        restore_with_longest_log(&o, &a, &b, a.len() / 10, false);
    }
    if run("snapshot") {
        snapshot(&o, &a, &b);
    }
    if run("outage") {
        outage(&o, &a, &b);
    }
}
