//! The load harness for the HTTP API: starts the real server (`astrolabe serve`) on a demo graph,
//! then runs each query scenario over loopback with N keep-alive HTTP/1.1 connections for a
//! fixed time and reports latency percentiles, next to a trivial static JSON endpoint of the same
//! server (`/healthz`) measured in the same run as the HTTP floor.
//!
//! ```text
//! cargo build --release && cargo run --release --example loadgen -- --objects 1000000
//! ```
//!
//! Options: `--objects N` (demo size, default 1,000,000), `--connections N` (16), `--seconds S`
//! per scenario (10), `--warmup S` (2), `--bin PATH` (the server binary; default: the
//! `astrolabe` next to this example's target directory), `--only TEXT` (run the floor and the
//! scenarios whose name contains TEXT), `--cache-mb N` (the server's response cache; 0 turns it
//! off, so that every request is computed), `--churn R` (the demo keeps changing at R changes per
//! second while queries run), `--persistence off|on|compare` (on: the server writes behind to a
//! `redis-server` this harness starts on loopback, AOF on; compare: the whole run with
//! persistence off, then on, and the p99 ratio of each scenario; paired: both servers at once,
//! each scenario measured on them in turn for `--window S` seconds (5) at a time while the other
//! is stopped with SIGSTOP, `--rounds` pairs of windows, so that the host's drift over minutes
//! weighs on both sides alike; the windows of the "on" side in which a snapshot ran are marked,
//! and the p99 of the others is given too, and, by kind of window, the CPU the machine spent
//! besides the two servers, Redis and this harness, and Redis's own), `--rounds N` (1: repeat the whole run, alternating the order,
//! and compare the medians; the spread of the "off" rounds is printed as the noise floor), `--load F` (open loop: instead of every connection sending its
//! next request as soon as the last one is answered, which keeps the server saturated, each
//! scenario is sent at a fixed rate, F times the rate it sustained in a closed-loop calibration
//! of 3 s made at the start of the first run; later runs reuse those rates, so that every run of
//! a comparison carries the same query load. Latency is measured from when each request was due,
//! not from when it was sent, so a server that falls behind is charged for the wait),
//! `--redis-nice N|idle` (none: run the harness's redis-server, its threads and the AOF rewrites
//! it forks, at nice N or in the idle scheduling class, so that on this shared machine it takes
//! only what the server leaves, as if it ran on cores of its own like any production Redis; this
//! isolates what the server's own persistence work costs its queries).
//!
//! The targets (Pods and Deployments of the largest namespace, a ConfigMap that 100 Pods use) are
//! taken from the graph just before each scenario and again every 5 s while it runs: the demo's
//! churn replaces Pods, and stale uids would be answered 404 (counted in the `errors` column)
//! instead of doing the scenario's work.
//!
//! Each run also reports how long the server's graph writer held its write lock in the window
//! (`astrolabe_ingest_write_lock_hold_seconds`): the longest a query can have waited for it.
//!
//! ```text
//! cargo run --release --example loadgen -- --churn 20000 --persistence compare
//! ```

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's allocator, for the same reason as the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Options {
    objects: usize,
    connections: usize,
    seconds: u64,
    warmup: u64,
    bin: std::path::PathBuf,
    only: Option<String>,
    cache_mb: u64,
    churn: f64,
    persistence: String,
    rounds: usize,
    load: Option<f64>,
    /// `--persistence paired`: seconds each side is measured at a time (after the warm-up).
    window: u64,
    /// redis-server's priority, if lowered (standing in for a Redis on cores of its own: it
    /// runs only when the server and the load leave a core free).
    redis_priority: Option<RedisPriority>,
}

#[derive(Clone, Copy)]
enum RedisPriority {
    Nice(u32),
    /// The idle scheduling class.
    Idle,
}

/// Every scenario and its request paths, with targets taken from the graph as it is now: the demo's
/// churn replaces Pods (rollouts, restarts, scaling), so targets listed once would go stale and
/// more and more requests would be answered 404 instead of doing the scenario's work.
async fn scenario_paths(addr: &str, print: bool) -> Vec<(&'static str, Vec<String>)> {
    let big = "marketplace";
    // In pages of 100: these requests run beside the scenarios' (see `REFRESH_TARGETS`), and one
    // page of a thousand objects would hold a runtime thread for tens of milliseconds.
    let uids = |kind: &'static str| async move {
        let (mut uids, mut next) = (Vec::new(), String::new());
        loop {
            let page = json(
                addr,
                &format!("/api/v2/resources?kind={kind}&namespace={big}&limit=100{next}"),
            )
            .await;
            let items = page["items"].as_array().unwrap();
            uids.extend(items.iter().map(|o| o["uid"].as_str().unwrap().to_string()));
            match page["continue"].as_str() {
                Some(token) if uids.len() < 1000 => next = format!("&continue={token}"),
                _ => return uids,
            }
        }
    };
    let (pod_uids, deployment_uids) = (uids("Pod").await, uids("Deployment").await);
    let cm = json(
        addr,
        &format!("/api/v2/objects/ConfigMap/{big}/platform-config"),
    )
    .await;
    let cm_uid = cm["resource"]["uid"].as_str().unwrap().to_string();
    if print {
        let users = cm["incoming"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["kind"] == "Pod")
            .count();
        // Only when printing: the count of every namespace (12,668 of them at a million
        // objects) is a query of about 12 ms under the graph's read lock, which would stall
        // ingest, and behind it every other query, each time the targets are taken again.
        let ns_size = json(addr, "/api/v2/namespaces").await["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == big)
            .map_or(0, |n| n["count"].as_u64().unwrap());
        println!(
            "targets: {} Pods and {} Deployments of {big}; platform-config used by {users} Pods; {big} holds {ns_size} objects",
            pod_uids.len(),
            deployment_uids.len()
        );
    }

    // Each of `uids` as `/api/v2/resources/{uid}{rest}`.
    let each = |uids: &[String], rest: &str| -> Vec<String> {
        uids.iter()
            .map(|u| format!("/api/v2/resources/{u}{rest}"))
            .collect()
    };
    vec![
        ("floor: GET /healthz (static JSON)", vec!["/healthz".into()]),
        ("get by uid", each(&pod_uids, "")),
        (
            "neighbors depth 2 of a Deployment, out (what it runs, mounts, uses)",
            each(&deployment_uids, "/neighbors?depth=2&direction=out"),
        ),
        (
            "neighbors depth 2 of a Deployment, both directions",
            each(&deployment_uids, "/neighbors?depth=2"),
        ),
        (
            "neighbors depth 2 of a Pod, both directions (through namespace hubs)",
            each(&pod_uids, "/neighbors?depth=2"),
        ),
        (
            "impact of a ConfigMap used by 100 Pods",
            vec![format!("/api/v2/resources/{cm_uid}/impact")],
        ),
        (
            "list by namespace and kind (100 results)",
            vec![format!(
                "/api/v2/resources?namespace={big}&kind=Pod&limit=100"
            )],
        ),
        (
            "v1 graph?namespace= (5K-object namespace)",
            vec![format!("/api/v1/graph?namespace={big}")],
        ),
    ]
}

/// This harness's own text, for `--help`.
const SOURCE: &str = include_str!("loadgen.rs");

fn options() -> Options {
    let mut o = Options {
        objects: 1_000_000,
        connections: 16,
        seconds: 10,
        warmup: 2,
        bin: common::release_bin(),
        only: None,
        cache_mb: 64,
        churn: 0.0,
        persistence: "off".into(),
        rounds: 1,
        load: None,
        window: 5,
        redis_priority: None,
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
            "--connections" => o.connections = value.parse().expect("--connections N"),
            "--seconds" => o.seconds = value.parse().expect("--seconds S"),
            "--warmup" => o.warmup = value.parse().expect("--warmup S"),
            "--bin" => o.bin = value.into(),
            "--only" => o.only = Some(value.clone()),
            "--cache-mb" => o.cache_mb = value.parse().expect("--cache-mb N"),
            "--churn" => o.churn = value.parse().expect("--churn R"),
            "--rounds" => o.rounds = value.parse().expect("--rounds N"),
            "--window" => o.window = value.parse().expect("--window S"),
            "--redis-nice" => {
                o.redis_priority = Some(match value.as_str() {
                    "idle" => RedisPriority::Idle,
                    n => RedisPriority::Nice(n.parse().expect("--redis-nice N|idle")),
                });
            }
            "--load" => {
                let f: f64 = value.parse().expect("--load F");
                assert!(f > 0.0 && f <= 1.0, "--load F: 0 < F <= 1");
                o.load = Some(f);
            }
            "--persistence" => {
                assert!(
                    ["off", "on", "compare", "paired"].contains(&value.as_str()),
                    "--persistence off|on|compare|paired"
                );
                o.persistence = value.clone();
            }
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
use redis_server::{RedisServer, free_port};

/// The value of an unlabelled metric in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name || k == format!("{name}_total")).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

/// How long the graph's writer held its write lock in a window (a query waits for it): the
/// batches that held it longer than about 5 and 20 ms (the bucket bounds at or below those), and
/// the bound of the longest hold's bucket.
fn write_holds(before: &str, after: &str) -> String {
    const HOLD: &str = "astrolabe_ingest_write_lock_hold_seconds";
    let delta = common::histogram_delta(
        &common::histogram(before, HOLD),
        &common::histogram(after, HOLD),
    );
    let total = delta.last().map_or(0.0, |x| x.1);
    let over = |secs: f64| {
        let (le, n) = delta
            .iter()
            .rfind(|x| x.0 <= secs)
            .copied()
            .unwrap_or((0.0, 0.0));
        format!("{:.0} over {:.1} ms", total - n, le * 1000.0)
    };
    let longest = delta
        .iter()
        .find(|x| x.1 >= total)
        .map_or(0.0, |x| x.0 * 1000.0);
    format!(
        "the write lock was held {total:.0} times, {}, {}, the longest under {longest:.1} ms",
        over(0.005),
        over(0.020)
    )
}

/// The AOF rewrites a redis-server has forked since it started: each takes most of a core for
/// seconds, beside the server on this machine.
fn aof_rewrites(redis: &RedisServer) -> u64 {
    redis
        .info("persistence", "aof_rewrites")
        .expect("aof_rewrites in INFO persistence")
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Sends a GET and reads the whole response; returns the status and the body length.
    async fn get(&mut self, path: &str) -> (u16, usize) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await.expect("write");
        self.buf.clear();
        let header_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more().await;
        };
        let head = std::str::from_utf8(&self.buf[..header_end]).expect("ascii headers");
        let status: u16 = head[9..12].parse().expect("status");
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        while self.buf.len() < header_end + len {
            self.read_more().await;
        }
        (status, len)
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed by the server");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Fetches a JSON document (setup only).
async fn json(addr: &str, path: &str) -> serde_json::Value {
    let mut c = Conn::open(addr).await;
    let (status, len) = c.get(path).await;
    assert_eq!(status, 200, "{path}");
    let start = c.buf.len() - len;
    serde_json::from_slice(&c.buf[start..]).expect("JSON")
}

struct Outcome {
    name: String,
    hist: Histogram<u64>,
    errors: u64,
    bytes: u64,
    elapsed: Duration,
}

/// How often a scenario's targets are taken again while it runs (see [`scenario_paths`]): a few
/// small requests that both sides of a comparison make alike.
const REFRESH_TARGETS: Duration = Duration::from_secs(5);

/// The scenario `name`'s paths with targets taken from the graph now; `None` for the floor (no
/// targets) or when the namespace has none of them at this moment.
async fn fresh_paths(addr: &str, name: &str) -> Option<Vec<String>> {
    if name.starts_with("floor") {
        return None;
    }
    let all = scenario_paths(addr, false).await;
    all.into_iter()
        .find(|(n, p)| *n == name && !p.is_empty())
        .map(|(_, p)| p)
}

/// Runs one scenario: `paths` requested round-robin by every connection, for the warm-up and
/// then `seconds`, with targets taken at its start and again every [`REFRESH_TARGETS`] (`paths`
/// as given where there are none to take). Closed loop (`rate` None): each connection sends its
/// next request as soon as the last is answered. Open loop (`rate` Some(r), requests per second
/// for all connections together): each connection sends on a fixed schedule, and a request's
/// latency runs from when it was due when the connection was still waiting for the previous
/// answer then, so that waiting behind a slow answer counts (no coordinated omission).
async fn scenario(
    addr: &str,
    name: &str,
    paths: Vec<String>,
    o: &Options,
    rate: Option<f64>,
    seconds: u64,
) -> Outcome {
    let paths = fresh_paths(addr, name).await.unwrap_or(paths);
    let paths = Arc::new(std::sync::RwLock::new(Arc::new(paths)));
    let start = Instant::now();
    let warm_until = start + Duration::from_secs(o.warmup);
    let stop_at = warm_until + Duration::from_secs(seconds);
    let refresh = {
        let (addr, name, paths) = (addr.to_string(), name.to_string(), paths.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_TARGETS).await;
                if Instant::now() >= stop_at {
                    return;
                }
                // None keeps the previous list: a connection picks its next target by index.
                if let Some(p) = fresh_paths(&addr, &name).await {
                    *paths.write().expect("targets") = Arc::new(p);
                }
            }
        })
    };
    // Each connection's interval between two requests, and its offset so that the connections'
    // schedules interleave.
    let interval = rate.map(|r| Duration::from_secs_f64(o.connections as f64 / r));
    let (mut tasks, n) = (Vec::new(), o.connections);
    for c in 0..n {
        let (addr, paths) = (addr.to_string(), paths.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let (mut errors, mut bytes) = (0u64, 0u64);
            let (mut i, mut last_answer) = (c, start);
            let mut due = interval.map(|iv| start + iv.mul_f64(c as f64 / n as f64));
            loop {
                // When the latency starts: in the open loop, at the due time if the last answer
                // came after it (the server kept this request waiting), else when it is sent
                // (so that the timer's own lateness, up to a millisecond, is not charged).
                let now = match due {
                    Some(at) if last_answer > at => at,
                    Some(at) => {
                        tokio::time::sleep_until(at.into()).await;
                        Instant::now()
                    }
                    None => Instant::now(),
                };
                if now >= stop_at {
                    break;
                }
                let targets = paths.read().expect("targets").clone();
                let path = &targets[i % targets.len()];
                i += 1;
                let (status, len) = conn.get(path).await;
                last_answer = Instant::now();
                if now >= warm_until {
                    hist.record(now.elapsed().as_micros().max(1) as u64)
                        .expect("record");
                    bytes += len as u64;
                    if status != 200 {
                        errors += 1;
                    }
                }
                if let (Some(at), Some(iv)) = (due.as_mut(), interval) {
                    *at += iv;
                }
            }
            (hist, errors, bytes)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut errors, mut bytes) = (0, 0);
    for t in tasks {
        let (h, e, b) = t.await.expect("connection task");
        hist.add(h).expect("merge");
        errors += e;
        bytes += b;
    }
    refresh.abort();
    Outcome {
        name: name.to_string(),
        hist,
        errors,
        bytes,
        elapsed: Duration::from_secs(seconds),
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

#[allow(clippy::print_stdout)]
fn report(results: &[Outcome], o: &Options) {
    let floor_p99 = results[0].hist.value_at_quantile(0.99);
    println!(
        "\n{} objects, {} connections, {} s per scenario after {} s warm-up, response cache {} MiB, {}\n",
        o.objects,
        o.connections,
        o.seconds,
        o.warmup,
        o.cache_mb,
        match o.load {
            Some(f) => format!("open loop at {f} of each scenario's calibrated closed-loop rate"),
            None => "closed loop".into(),
        }
    );
    println!(
        "| scenario | requests/s | p50 ms | p90 ms | p99 ms | max ms | p99 / floor p99 | avg body | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let n = r.hist.len().max(1);
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {:.2} | {} B | {} |",
            r.name,
            r.hist.len() as f64 / r.elapsed.as_secs_f64(),
            ms(r.hist.value_at_quantile(0.50)),
            ms(r.hist.value_at_quantile(0.90)),
            ms(r.hist.value_at_quantile(0.99)),
            ms(r.hist.max()),
            r.hist.value_at_quantile(0.99) as f64 / floor_p99.max(1) as f64,
            r.bytes / n,
            r.errors,
        );
    }
}

/// The text of a GET answered 200.
async fn text(addr: &str, path: &str) -> String {
    let mut c = Conn::open(addr).await;
    let (status, len) = c.get(path).await;
    assert_eq!(status, 200, "{path}");
    let start = c.buf.len() - len;
    String::from_utf8_lossy(&c.buf[start..]).into_owned()
}

/// What one server run measured.
struct Run {
    results: Vec<Outcome>,
    /// Changes applied per second while the scenarios ran.
    change_rate: f64,
    /// What persistence did meanwhile (when on), and the CPU the server and Redis used.
    persistence: String,
}

#[allow(clippy::print_stdout)]
fn main() {
    let o = options();
    if o.persistence == "paired" {
        run_paired(&o);
        return;
    }
    // With several rounds, the order alternates (off, on, then on, off, ...), so that whatever
    // drifts over a long run weighs on both sides.
    let runs: Vec<bool> = (0..o.rounds.max(1))
        .flat_map(|round| match o.persistence.as_str() {
            "on" => vec![true],
            "compare" if round % 2 == 0 => vec![false, true],
            "compare" => vec![true, false],
            _ => vec![false],
        })
        .collect();
    let mut done: Vec<(bool, Run)> = Vec::new();
    // With `--load`, each scenario's open-loop rate, calibrated in the first run.
    let mut rates = std::collections::HashMap::new();
    for persist in runs {
        let run = run_server(&o, persist, &mut rates);
        println!(
            "\n### persistence {}: {:.0} changes applied per second during the scenarios{}",
            if persist { "on" } else { "off" },
            run.change_rate,
            run.persistence
        );
        report(&run.results, &o);
        done.push((persist, run));
    }
    let offs: Vec<&Run> = done.iter().filter(|(p, _)| !p).map(|(_, r)| r).collect();
    let ons: Vec<&Run> = done.iter().filter(|(p, _)| *p).map(|(_, r)| r).collect();
    if offs.is_empty() || ons.is_empty() {
        return;
    }
    let p99 = |r: &Run, i: usize| r.results[i].hist.value_at_quantile(0.99);
    println!(
        "\n### p99 with persistence on / off (same scenarios, same churn, same run; {} round(s), \
         medians across rounds)\n",
        offs.len().min(ons.len())
    );
    println!(
        "| scenario | p99 off ms | p99 on ms | on / off | each round: on / off | off / off (noise) \
         | pooled: p99 off ms | p99 on ms | on / off |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, outcome) in offs[0].results.iter().enumerate() {
        let (off, on): (Vec<u64>, Vec<u64>) = (
            offs.iter().map(|r| p99(r, i)).collect(),
            ons.iter().map(|r| p99(r, i)).collect(),
        );
        let rounds: Vec<String> = off
            .iter()
            .zip(&on)
            .map(|(a, b)| format!("{:.2}", *b as f64 / (*a).max(1) as f64))
            .collect();
        let noise = if off.len() > 1 {
            let (lo, hi) = (off.iter().min().unwrap(), off.iter().max().unwrap());
            format!("{:.2}", *hi as f64 / (*lo).max(1) as f64)
        } else {
            "-".into()
        };
        let (mo, mn) = (common::median(&off), common::median(&on));
        // Every request of every round of a side in one distribution: a p99 over rounds times
        // as many requests, less at the mercy of one round's hiccup than the median of p99s.
        let pooled = |runs: &[&Run]| {
            let mut all = runs[0].results[i].hist.clone();
            for r in &runs[1..] {
                all.add(&r.results[i].hist).expect("same bounds");
            }
            all.value_at_quantile(0.99)
        };
        let (po, pn) = (pooled(&offs), pooled(&ons));
        println!(
            "| {} | {} | {} | {:.2} | {} | {noise} | {} | {} | {:.2} |",
            outcome.name,
            ms(mo),
            ms(mn),
            mn as f64 / mo.max(1) as f64,
            rounds.join(", "),
            ms(po),
            ms(pn),
            pn as f64 / po.max(1) as f64,
        );
    }
}

/// Starts the server (with persistence to a fresh redis-server when `persist`), waits until it
/// is ready (and, with persistence, until the first full image is in Redis), runs the scenarios.
#[allow(clippy::print_stdout)]
fn run_server(
    o: &Options,
    persist: bool,
    rates: &mut std::collections::HashMap<String, f64>,
) -> Run {
    let Launched {
        server,
        redis,
        addr,
    } = launch(o, persist);
    runtime().block_on(async {
        settle(&addr, persist).await;
        // Targets, taken from the graph itself.
        let scenarios = selected(scenario_paths(&addr, true).await, o);
        if let Some(load) = o.load {
            for (name, paths) in &scenarios {
                if !rates.contains_key(*name) {
                    let sat = scenario(&addr, name, paths.clone(), o, None, 3).await;
                    let r = sat.hist.len() as f64 / sat.elapsed.as_secs_f64();
                    println!("calibrated: {name}: {r:.0} requests/s closed loop");
                    rates.insert(name.to_string(), load * r);
                }
            }
        }
        let before = text(&addr, "/metrics").await;
        let rewrites0 = redis.as_ref().map(aof_rewrites);
        let cpu0 = (common::cpu_seconds(server.pid(), true), redis.as_ref().map_or(0.0, |r| common::cpu_seconds(r.pid(), true)));
        let t0 = Instant::now();
        let mut results = Vec::new();
        for (name, paths) in scenarios {
            let rate = rates.get(name).copied();
            match rate {
                Some(r) => println!("running: {name} (open loop, {r:.0} requests/s)"),
                None => println!("running: {name}"),
            }
            results.push(scenario(&addr, name, paths, o, rate, o.seconds).await);
        }
        let after = text(&addr, "/metrics").await;
        let window = t0.elapsed().as_secs_f64();
        let cpu1 = (common::cpu_seconds(server.pid(), true), redis.as_ref().map_or(0.0, |r| common::cpu_seconds(r.pid(), true)));
        let delta = |name: &str| metric(&after, name) - metric(&before, name);
        let persistence = if persist {
            format!(
                "; persistence wrote {:.0} object states/s in {:.0} log entries, {:.0} snapshot(s), \
                 {:.0} changes overflowed into the dirty set, queue depth at the end {:.0}; \
                 redis-server (with its AOF rewrites) used {:.1}% of one core and forked {} AOF \
                 rewrite(s)",
                delta("astrolabe_persistence_objects_written") / window,
                delta("astrolabe_persistence_batches"),
                delta("astrolabe_persistence_snapshots"),
                delta("astrolabe_persistence_overflowed"),
                metric(&after, "astrolabe_persistence_queue_depth"),
                100.0 * (cpu1.1 - cpu0.1) / window,
                redis.as_ref().map_or(0, aof_rewrites) - rewrites0.unwrap_or(0),
            )
        } else {
            String::new()
        };
        Run {
            results,
            change_rate: delta("astrolabe_graph_generation") / window,
            persistence: format!(
                "{persistence}; the server used {:.1}% of one core; {}",
                100.0 * (cpu1.0 - cpu0.0) / window,
                write_holds(&before, &after)
            ),
        }
    })
}

/// A server started by [`launch`], with its redis-server when it persists.
struct Launched {
    server: common::Server,
    redis: Option<RedisServer>,
    addr: String,
}

/// Starts the server on the demo graph, with persistence to a fresh redis-server (at the
/// priority asked for) when `persist`.
#[allow(clippy::print_stdout)]
fn launch(o: &Options, persist: bool) -> Launched {
    let addr = format!("127.0.0.1:{}", free_port());
    let redis = persist.then(RedisServer::start);
    let lowered = redis.as_ref().zip(o.redis_priority);
    if let Some((r, RedisPriority::Idle)) = lowered {
        // Every thread of it; the children it forks (AOF rewrites) inherit the class.
        let ok = Command::new("chrt")
            .args(["--idle", "--all-tasks", "--pid", "0"])
            .arg(r.pid().to_string())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chrt --idle redis-server");
    } else if let Some((r, RedisPriority::Nice(nice))) = lowered {
        // Every thread of it (the nice value is per thread); the children it forks inherit it.
        for task in
            std::fs::read_dir(format!("/proc/{}/task", r.pid())).expect("redis-server's threads")
        {
            let tid = task.expect("a thread").file_name();
            let ok = Command::new("renice")
                .args(["-n", &nice.to_string(), "-p"])
                .arg(&tid)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "renice {tid:?}");
        }
    }
    println!(
        "\nstarting {} serve --source demo:{} --listen {addr} --demo-churn {}{}",
        o.bin.display(),
        o.objects,
        o.churn,
        redis.as_ref().map_or(String::new(), |r| format!(
            " --enable-persistence --redis-addr {}{}",
            r.addr(),
            match o.redis_priority {
                Some(RedisPriority::Idle) => " (redis-server in SCHED_IDLE)".to_string(),
                Some(RedisPriority::Nice(n)) => format!(" (redis-server at nice {n})"),
                None => String::new(),
            }
        ))
    );
    let mut cmd = Command::new(&o.bin);
    cmd.args([
        "serve",
        "--source",
        &format!("demo:{}", o.objects),
        "--listen",
        &addr,
    ])
    .args(["--response-cache-mb", &o.cache_mb.to_string()])
    .args(["--demo-churn", &o.churn.to_string()])
    .env("ASTROLABE_LOG", "warn")
    .stdout(Stdio::null());
    if let Some(r) = &redis {
        cmd.args([
            "--enable-persistence",
            "--redis-addr",
            &r.addr(),
            "--redis-key-prefix",
            "astrolabe:{loadgen}",
        ]);
    }
    let server = common::Server::adopt(
        cmd.spawn()
            .expect("the server binary starts (build it first: cargo build --release)"),
        addr.clone(),
    );
    Launched {
        server,
        redis,
        addr,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Waits until the server at `addr` is ready and, when it persists, until the first full image
/// after its load is in Redis.
#[allow(clippy::print_stdout)]
async fn settle(addr: &str, persist: bool) {
    let addr = addr.to_string();
    let started = Instant::now();
    loop {
        if let Ok(mut c) = TcpStream::connect(&addr).await.map(|s| Conn {
            stream: s,
            buf: Vec::new(),
        }) && c.get("/readyz").await.0 == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "server not ready after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "server ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if persist {
        // The first full image in Redis (the snapshot the server starts once synced: one
        // that started after the server was ready, not one taken while the demo loaded) and
        // nothing left over from the load: what follows is the steady state under churn.
        let ready = started.elapsed().as_secs_f64();
        loop {
            let m = text(&addr, "/metrics").await;
            let began_ago = metric(&m, "astrolabe_persistence_last_snapshot_age_seconds")
                + metric(&m, "astrolabe_persistence_last_snapshot_seconds");
            if metric(&m, "astrolabe_persistence_snapshots") >= 1.0
                && began_ago <= started.elapsed().as_secs_f64() - ready + 1.0
                && metric(&m, "astrolabe_persistence_snapshot_running") == 0.0
                && metric(&m, "astrolabe_persistence_dirty_objects") == 0.0
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "no snapshot after 15 minutes"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "the first snapshot after sync in Redis after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Whether a snapshot was running at either reading of `/metrics`, or one ran between them.
fn snapshot_in(before: &str, after: &str) -> bool {
    const RUNNING: &str = "astrolabe_persistence_snapshot_running";
    const TAKEN: &str = "astrolabe_persistence_snapshots";
    metric(before, RUNNING) > 0.0
        || metric(after, RUNNING) > 0.0
        || metric(after, TAKEN) > metric(before, TAKEN)
}

/// Sends `sig` (`-STOP`, `-CONT`) to the server.
fn signal(server: &common::Server, sig: &str) {
    assert!(server.signal(sig), "kill {sig} the server");
}

/// Adds a window's latencies to a side's.
fn pool(into: &mut Option<Histogram<u64>>, window: &Histogram<u64>) {
    match into {
        Some(h) => h.add(window).expect("same bounds"),
        none => *none = Some(window.clone()),
    }
}

/// The scenarios `--only` selects, and the floor (the first) always.
fn selected<'a>(
    scenarios: Vec<(&'a str, Vec<String>)>,
    o: &Options,
) -> Vec<(&'a str, Vec<String>)> {
    scenarios
        .into_iter()
        .enumerate()
        .filter(|(i, (name, _))| {
            *i == 0
                || o.only
                    .as_ref()
                    .is_none_or(|only| name.contains(only.as_str()))
        })
        .map(|(_, s)| s)
        .collect()
}

/// The CPU seconds of paired windows: the machine's busy time, and what of it the two servers,
/// Redis (with its AOF rewrites) and this harness used; the rest is other processes and the
/// kernel's own threads (such as the one reporting freed memory to the VM's host).
#[derive(Clone, Copy, Default)]
struct WindowCpu {
    wall: f64,
    busy: f64,
    servers: f64,
    redis: f64,
    me: f64,
}

impl WindowCpu {
    fn now(sides: &[&Launched; 2], redis_pid: u32) -> WindowCpu {
        WindowCpu {
            wall: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            busy: common::machine_cpu().0,
            servers: sides
                .iter()
                .map(|s| common::cpu_seconds(s.server.pid(), false))
                .sum(),
            redis: common::cpu_seconds(redis_pid, true),
            me: common::stat_cpu_seconds("/proc/self/stat", false),
        }
    }

    fn since(&self, before: &WindowCpu) -> WindowCpu {
        WindowCpu {
            wall: self.wall - before.wall,
            busy: self.busy - before.busy,
            servers: self.servers - before.servers,
            redis: self.redis - before.redis,
            me: self.me - before.me,
        }
    }

    fn add(&mut self, other: &WindowCpu) {
        self.wall += other.wall;
        self.busy += other.busy;
        self.servers += other.servers;
        self.redis += other.redis;
        self.me += other.me;
    }

    fn percent(&self, v: f64) -> String {
        if self.wall > 0.0 {
            format!("{:.0}", 100.0 * v / self.wall)
        } else {
            "-".into()
        }
    }

    fn other_percent(&self) -> String {
        self.percent(self.busy - self.servers - self.redis - self.me)
    }

    fn redis_percent(&self) -> String {
        self.percent(self.redis)
    }
}

/// `--persistence paired`: both servers run at once, persistence off and on, and each scenario
/// measures them in turn, a window at a time, the other one stopped (SIGSTOP) meanwhile, for
/// `--rounds` pairs of windows (the order alternating). Whatever drifts on the host over minutes
/// then weighs on both sides alike, instead of on whichever ran in a slow phase.
#[allow(clippy::print_stdout)]
fn run_paired(o: &Options) {
    let rt = runtime();
    let off = launch(o, false);
    rt.block_on(settle(&off.addr, false));
    signal(&off.server, "-STOP");
    let on = launch(o, true);
    rt.block_on(settle(&on.addr, true));
    let sides = [&off, &on];
    let mut rates = std::collections::HashMap::new();
    rt.block_on(async {
        let scenarios = selected(scenario_paths(&on.addr, true).await, o);
        let mut active = 1;
        println!(
            "\n### persistence off and on, paired: {} pair(s) of {} s windows per scenario (after {} s \
             of warm-up each), the other server stopped meanwhile\n",
            o.rounds, o.window, o.warmup
        );
        println!(
            "| scenario | p99 off ms | p99 on ms | on / off | each pair: on / off (* a snapshot ran in the on window) | on / off, on windows without a snapshot | errors off, on | CPU besides the servers, Redis and this harness, % of a core: off / on / on with a snapshot | Redis (user + system), % of a core: on / on with a snapshot |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for (name, paths) in scenarios {
            if let Some(load) = o.load
                && !rates.contains_key(name)
            {
                // On whichever runs now: the other is stopped.
                let sat =
                    scenario(&sides[active].addr, name, paths.clone(), o, None, 3).await;
                rates.insert(name, load * sat.hist.len() as f64 / sat.elapsed.as_secs_f64());
            }
            let rate = rates.get(name).copied();
            let mut pooled: [Option<Histogram<u64>>; 2] = [None, None];
            // The on side's windows in which no snapshot ran.
            let mut quiet: Option<Histogram<u64>> = None;
            let (mut pairs, mut errors) = (Vec::new(), [0u64; 2]);
            // By kind of window: off, on, on with a snapshot.
            let mut cpu = [WindowCpu::default(); 3];
            let redis_pid = on.redis.as_ref().map_or(0, RedisServer::pid);
            for round in 0..o.rounds.max(1) {
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                let (mut p99, mut snapshot) = ([0u64; 2], false);
                for side in order {
                    if active != side {
                        signal(&sides[active].server, "-STOP");
                        signal(&sides[side].server, "-CONT");
                        active = side;
                    }
                    let before = text(&sides[side].addr, "/metrics").await;
                    let cpu0 = WindowCpu::now(&sides, redis_pid);
                    let out =
                        scenario(&sides[side].addr, name, paths.clone(), o, rate, o.window).await;
                    let used = WindowCpu::now(&sides, redis_pid).since(&cpu0);
                    let after = text(&sides[side].addr, "/metrics").await;
                    p99[side] = out.hist.value_at_quantile(0.99);
                    errors[side] += out.errors;
                    if side == 1 {
                        snapshot = snapshot_in(&before, &after);
                        if !snapshot {
                            pool(&mut quiet, &out.hist);
                        }
                    }
                    cpu[side + usize::from(snapshot)].add(&used);
                    pool(&mut pooled[side], &out.hist);
                }
                pairs.push(format!(
                    "{:.2}{}",
                    p99[1] as f64 / p99[0].max(1) as f64,
                    if snapshot { "*" } else { "" }
                ));
            }
            let [p_off, p_on] = pooled.map(|h| h.map_or(0, |h| h.value_at_quantile(0.99)));
            let quiet = quiet.map_or("no such window".to_string(), |h| {
                format!(
                    "{:.2} ({} ms)",
                    h.value_at_quantile(0.99) as f64 / p_off.max(1) as f64,
                    ms(h.value_at_quantile(0.99))
                )
            });
            println!(
                "| {name} | {} | {} | {:.2} | {} | {quiet} | {}, {} | {} / {} / {} | {} / {} |",
                ms(p_off),
                ms(p_on),
                p_on as f64 / p_off.max(1) as f64,
                pairs.join(", "),
                errors[0],
                errors[1],
                cpu[0].other_percent(),
                cpu[1].other_percent(),
                cpu[2].other_percent(),
                cpu[1].redis_percent(),
                cpu[2].redis_percent(),
            );
        }
    });
    // Both running again, so that they stop as usual.
    signal(&off.server, "-CONT");
    signal(&on.server, "-CONT");
}
