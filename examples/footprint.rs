//! Builds a demo graph of N objects through the real pipeline (demo source → projection →
//! channel → single writer) and reports the ingest rate, the time to build, and the resident
//! memory per object. Used for BENCHMARKS.md:
//!
//! ```text
//! cargo run --release --example footprint -- 1000000
//! ```

use std::time::Instant;

/// The binary's allocator (see `src/main.rs`), so that the figures are the server's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use astrolabe::ingest;
use astrolabe::relations::Projector;
use astrolabe::sources::{self, SourceSpec};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[allow(clippy::print_stdout)]
fn main() {
    let objects: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("N must be a number"))
        .unwrap_or(1_000_000);
    let baseline = rss_bytes();
    let (handle, tx, writer) = ingest::start();
    let started = Instant::now();
    let report = sources::load(
        &SourceSpec::Demo { objects },
        &Projector::default(),
        &tx,
        1_767_225_600,
    )
    .expect("demo load");
    drop(tx);
    writer.join();
    let elapsed = started.elapsed();
    let graph = handle.read();
    let (nodes, edges) = (graph.node_count(), graph.edge_count());
    drop(graph);
    let rss = rss_bytes();
    println!("objects sent:        {}", report.objects);
    println!("graph:               {nodes} nodes, {edges} edges");
    println!("time to build:       {:.2} s", elapsed.as_secs_f64());
    println!(
        "end-to-end rate:     {:.0} objects/s (generate + project on one thread, apply on the writer)",
        report.objects as f64 / elapsed.as_secs_f64()
    );
    println!(
        "resident memory:     {:.1} MiB (baseline before loading {:.1} MiB)",
        rss as f64 / 1048576.0,
        baseline as f64 / 1048576.0
    );
    println!(
        "memory per object:   {:.0} bytes (process RSS / nodes), {:.0} bytes above baseline",
        rss as f64 / nodes as f64,
        (rss - baseline) as f64 / nodes as f64
    );
}
