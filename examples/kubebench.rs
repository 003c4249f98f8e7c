//! The live source's load harness: the release `astrolabe serve --source kube` process against the
//! fake API server of the tests (`tests/support/fake_kube.rs`: paginated lists, chunked watches).
//!
//! 1. Initial sync: the fake holds the demo cluster's objects (about `--objects`, every watched
//!    kind); the time from starting the server to `/readyz` answering 200 (discovery, every
//!    kind's paginated list, projection, the graph), and objects per second. `--rounds` times.
//! 2. Apply lag: the fake changes `--rate` objects per second (Pod labels and annotations, which
//!    move `selects` edges) for `--seconds`; the server's `astrolabe_apply_lag_seconds` histogram
//!    (from the watch event's receipt to readers seeing the change) over that window gives the
//!    percentiles (the upper bound of the bucket that holds each: buckets grow by 1.5x).
//!
//! ```sh
//! cargo build --release && cargo run --release --example kubebench -- --objects 100000
//! ```

#[path = "common/server.rs"]
mod common;
#[path = "../tests/support/fake_kube.rs"]
mod fake_kube;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use astrolabe::model::Kind;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use common::{Server, http_get, release_bin};
use fake_kube::FakeKube;
use serde_json::Value;

/// This harness's own text, for `--help`.
const SOURCE: &str = include_str!("kubebench.rs");

struct Opts {
    bin: PathBuf,
    objects: usize,
    rounds: usize,
    rate: u64,
    seconds: u64,
}

fn main() {
    let mut o = Opts {
        bin: release_bin(),
        objects: 100_000,
        rounds: 3,
        rate: 1_000,
        seconds: 30,
    };
    common::help(SOURCE);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| common::usage_error(SOURCE, &format!("{flag} needs a value")));
        match flag.as_str() {
            "--bin" => o.bin = value.into(),
            "--objects" => o.objects = value.parse().expect("--objects N"),
            "--rounds" => o.rounds = value.parse().expect("--rounds N"),
            "--rate" => o.rate = value.parse().expect("--rate N"),
            "--seconds" => o.seconds = value.parse().expect("--seconds N"),
            other => common::usage_error(SOURCE, &format!("unknown option {other}")),
        }
    }
    let fake = FakeKube::start();
    let t = Instant::now();
    let cluster = DemoCluster::new(DemoConfig {
        objects: o.objects,
        ..DemoConfig::default()
    });
    let mut pods = Vec::new();
    for v in cluster.objects() {
        // The watched kinds only (the demo also has RBAC objects, which are not watched).
        let kind = Kind::from_api_version(
            v["apiVersion"].as_str().unwrap_or(""),
            v["kind"].as_str().unwrap_or(""),
        );
        if matches!(kind, Kind::Other(_) | Kind::HelmRelease) {
            continue;
        }
        if v["kind"] == "Pod" && pods.len() < 50_000 {
            pods.push(v.clone());
        }
        fake.apply(v);
    }
    let total = fake.objects().len();
    println!(
        "fake API server: {total} objects loaded in {:.1?} (demo cluster of about {})",
        t.elapsed(),
        o.objects
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());

    // 1. Initial sync to ready.
    let mut last = None;
    for round in 1..=o.rounds {
        // Each round alone: the previous server's watches would load the fake meanwhile.
        if let Some(previous) = last.take() {
            Server::stop(previous);
        }
        let started = Instant::now();
        let server = Server::start(
            Command::new(&o.bin)
                .args(["serve", "--source", "kube", "--kubeconfig"])
                .arg(&kubeconfig)
                .args(["--listen", "127.0.0.1:0"])
                .env("ASTROLABE_LOG", "info"),
            |_| {},
        );
        let addr = server.addr.clone();
        while http_get(&addr, "/readyz").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "not ready after 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = started.elapsed();
        let cpu = common::cpu_seconds(server.pid(), false);
        let nodes = node_count(&addr);
        println!(
            "round {round}: ready after {:.2} s: {total} objects listed ({} nodes served), {:.0} objects/s; \
             the server used {cpu:.2} s of CPU ({:.0} objects per CPU-second; the rest is the fake's)",
            took.as_secs_f64(),
            nodes,
            total as f64 / took.as_secs_f64(),
            total as f64 / cpu
        );
        last = Some(server);
    }
    let server = last.expect("at least one round");
    let addr = server.addr.clone();

    // 2. Apply lag under a steady change rate.
    let before = lag_buckets(&addr);
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / o.rate as f64);
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(o.seconds) {
        let due = started + interval * sent as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut pod = pods[sent as usize % pods.len()].clone();
        let round = sent / pods.len() as u64;
        pod["metadata"]["annotations"]["bench/seq"] = Value::from(sent.to_string());
        pod["metadata"]["labels"]["bench-round"] = Value::from((round % 2).to_string());
        fake.apply(pod);
        sent += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let after = lag_buckets(&addr);
    let window = common::histogram_delta(&before, &after);
    let count = window.last().map_or(0.0, |(_, c)| *c);
    let pct = |q: f64| {
        window
            .iter()
            .find(|(_, c)| *c >= q * count)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    println!(
        "apply lag over {elapsed:.1} s at {:.0} changes/s sent ({count} changes applied): p50 <= {:.2} ms, p99 <= {:.2} ms, p99.9 <= {:.2} ms",
        sent as f64 / elapsed,
        pct(0.5) * 1000.0,
        pct(0.99) * 1000.0,
        pct(0.999) * 1000.0
    );
    server.stop();
}

fn node_count(addr: &str) -> u64 {
    let body = http_get(addr, "/health").expect("health answers");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["nodes"].as_u64().unwrap_or(0)
}

/// The apply-lag histogram: (upper bound in seconds, cumulative count), in order.
fn lag_buckets(addr: &str) -> Vec<(f64, f64)> {
    let text = http_get(addr, "/metrics").expect("metrics answer");
    common::histogram(&text, "astrolabe_apply_lag_seconds")
}
