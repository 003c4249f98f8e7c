//! `astrolabe serve` with persistence, as a process, against real `redis-server` processes:
//! a graceful restart comes back with exactly the same graph; a SIGKILL during a stream of
//! changes leaves exactly a state the writer acknowledged, and the source's full lists then bring
//! the graph back to the source's state; production mode refuses to start without Redis;
//! development mode runs degraded while Redis is away and catches up when it returns; `/health`
//! reports persistence behind after the lag given; backups
//! (`snapshot export|import`, `inspect FILE`) round-trip exactly and refuse damaged files.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use astrolabe::graph::{Change, Graph, ListScope};
use astrolabe::persistence::{self, RedisConfig};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use astrolabe::sources::demo_change;
use serde_json::Value;
use support::process::{Proc, command, get, get_text, signal, start, wait_exit, wait_ready};
use support::redis::{RedisServer, free_port};
use support::wait_for;

fn redis_config(redis: &RedisServer) -> RedisConfig {
    RedisConfig {
        addr: redis.addr(),
        prefix: "astrolabe:{default}".into(),
        ..RedisConfig::default()
    }
}

fn serve(redis_addr: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--enable-persistence",
        "--redis-addr",
        redis_addr,
    ];
    args.extend_from_slice(extra);
    start(&args, &[])
}

/// The graph's nodes and edges as sets of readable strings, from `/api/v2/graph`.
fn graph_of(addr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (status, g) = get(addr, "/api/v2/graph");
    assert_eq!(status, 200);
    let nodes = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(node_line)
        .collect();
    let edges = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e["from"], e["type"], e["to"]))
        .collect();
    (nodes, edges)
}

fn node_line(n: &Value) -> String {
    format!(
        "{} {}/{}/{} {} {} rv={}",
        n["uid"],
        n["kind"],
        n["namespace"],
        n["name"],
        n["status"],
        n["message"],
        n["resourceVersion"]
    )
}

/// The graph built from what Redis holds.
fn recovered_graph(cfg: &RedisConfig) -> (Graph, persistence::Recovered) {
    let r = persistence::recover(cfg).expect("recovers");
    let mut g = Graph::new();
    for o in &r.objects {
        g.apply(Change::Upsert(o.clone()));
    }
    (g, r)
}

/// The demo as `serve` builds it today (anchored at midnight UTC).
fn demo_config(objects: usize) -> DemoConfig {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    DemoConfig {
        objects,
        now: now - now.rem_euclid(86_400),
        ..DemoConfig::default()
    }
}

#[test]
fn a_graceful_restart_restores_the_same_graph() {
    let redis = RedisServer::start();
    let p = serve(&redis.addr(), &["--source", "demo:500"]);
    wait_ready(&p.addr);
    let before = graph_of(&p.addr);
    let (_, releases_before) = get(&p.addr, "/api/v2/releases");
    signal(&p, "-TERM");
    let (code, log) = wait_exit(p);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("final snapshot written"), "{log}");

    // What Redis holds is exactly the graph that was served.
    let (restored, r) = recovered_graph(&redis_config(&redis));
    assert!(
        r.from_snapshot && r.log_batches == 0,
        "the final snapshot holds everything"
    );
    let restored_nodes: BTreeSet<String> = restored
        .canonical()
        .0
        .iter()
        .map(|o| node_line(&serde_json::to_value(astrolabe::view::NodeView::new(o)).unwrap()))
        .collect();
    assert_eq!(restored_nodes, before.0, "nodes restored from Redis");

    let p = serve(&redis.addr(), &["--source", "demo:500"]);
    let (_, health) = get(&p.addr, "/health");
    assert_eq!(health["restored"], true);
    wait_ready(&p.addr);
    let after = graph_of(&p.addr);
    assert_eq!(
        after, before,
        "same nodes (statuses included) and edges after the restart"
    );
    let (_, releases_after) = get(&p.addr, "/api/v2/releases");
    assert_eq!(
        releases_after["items"], releases_before["items"],
        "same releases"
    );
    signal(&p, "-TERM");
    assert_eq!(wait_exit(p).0, Some(0));
}

#[test]
fn a_crash_during_changes_leaves_an_acknowledged_state_and_the_source_repairs_the_rest() {
    let redis = RedisServer::start();
    let objects = 600;
    let p = serve(
        &redis.addr(),
        &[
            "--source",
            &format!("demo:{objects}"),
            "--demo-churn",
            "400",
            "--flush-interval-ms",
            "5",
        ],
    );
    wait_ready(&p.addr);
    // Let changes stream for a while, then SIGKILL: no shutdown at all.
    let g0 = get(&p.addr, "/api/v2/kinds").1["freshness"]["generation"]
        .as_u64()
        .unwrap();
    wait_for("changes applied", Duration::from_secs(30), || {
        get(&p.addr, "/api/v2/kinds").1["freshness"]["generation"]
            .as_u64()
            .unwrap()
            > g0 + 300
    });
    let mut p = p;
    p.child.kill().unwrap();
    p.child.wait().unwrap();

    // Redis holds exactly the graph at the generation of the last acknowledged write: replay the
    // same (deterministic) changes offline up to that generation and compare.
    let (restored, r) = recovered_graph(&redis_config(&redis));
    assert!(r.graph_generation > 0);
    let projector = Projector::default();
    let mut offline = Graph::new();
    let mut cluster = DemoCluster::new(demo_config(objects));
    let mut changes: Vec<Change> = vec![Change::ListStart(ListScope::everything())];
    changes.extend(
        cluster
            .objects()
            .map(|v| Change::Upsert(Arc::new(projector.project(&v).unwrap()))),
    );
    changes.push(Change::ListComplete(ListScope::everything()));
    'replay: loop {
        for c in changes.drain(..) {
            offline.apply(c);
            if offline.generation() == r.graph_generation {
                break 'replay;
            }
            assert!(
                offline.generation() < r.graph_generation,
                "replay passed generation {}",
                r.graph_generation
            );
        }
        changes = cluster
            .step()
            .iter()
            .map(|e| demo_change(e, &projector).unwrap())
            .collect();
    }
    assert_eq!(
        restored.canonical(),
        offline.canonical(),
        "exactly the state at generation {}",
        r.graph_generation
    );

    // Restarted without changes: served warm at once, then exactly the source's state (what the
    // churn created is gone, what it deleted is back).
    let p = serve(&redis.addr(), &["--source", &format!("demo:{objects}")]);
    wait_ready(&p.addr);
    wait_for("synced", Duration::from_secs(30), || {
        get(&p.addr, "/readyz").1["reason"].is_null()
    });
    let served = graph_of(&p.addr);
    let mut source = Graph::new();
    for v in DemoCluster::new(demo_config(objects)).objects() {
        source.apply(Change::Upsert(Arc::new(projector.project(&v).unwrap())));
    }
    let source_nodes: BTreeSet<String> = source
        .canonical()
        .0
        .iter()
        .map(|o| o.uid.to_string())
        .collect();
    let served_nodes: BTreeSet<String> = served
        .0
        .iter()
        .map(|l| l.split(' ').next().unwrap().trim_matches('"').to_string())
        .collect();
    assert_eq!(served_nodes, source_nodes, "zero ghosts, zero missing");
    signal(&p, "-TERM");
    assert_eq!(wait_exit(p).0, Some(0));
}

#[test]
fn production_mode_refuses_to_start_without_persistence_or_redis() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(
        &[("ASTROLABE_ENV", "production")],
        &["serve", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("requires persistence"), "{err}");
    let nowhere = format!("127.0.0.1:{}", free_port());
    let (code, err) = run(
        &[
            ("ASTROLABE_ENV", "production"),
            ("ENABLE_PERSISTENCE", "true"),
            ("REDIS_ADDR", &nowhere),
        ],
        &["serve", "--source", "demo", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("not reachable") && err.contains(&nowhere),
        "{err}"
    );
}

#[test]
fn development_mode_runs_degraded_while_redis_is_away_and_catches_up() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let p = serve(&addr, &["--source", "demo:400"]);
    wait_ready(&p.addr);
    let (_, health) = get(&p.addr, "/health");
    assert_eq!(health["status"], "degraded");
    let check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "persistence")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "warn");
    assert!(check["details"].as_str().unwrap().contains("unreachable"));
    // Redis appears on the configured port: the writer connects and catches up.
    let redis = RedisServer::start_on(port);
    wait_for("healthy again", Duration::from_secs(30), || {
        get(&p.addr, "/health").1["status"] == "healthy"
    });
    wait_for("snapshot written", Duration::from_secs(30), || {
        persistence::recover(&redis_config(&redis)).is_ok_and(|r| r.from_snapshot)
    });
    let (restored, _) = recovered_graph(&redis_config(&redis));
    let served = graph_of(&p.addr);
    let restored_uids: BTreeSet<String> = restored
        .canonical()
        .0
        .iter()
        .map(|o| o.uid.to_string())
        .collect();
    let served_uids: BTreeSet<String> = served
        .0
        .iter()
        .map(|l| l.split(' ').next().unwrap().trim_matches('"').to_string())
        .collect();
    assert_eq!(
        restored_uids, served_uids,
        "Redis caught up with the whole graph"
    );
    let (_, metrics) = get_text(&p.addr, "/metrics");
    assert!(
        metrics.contains("astrolabe_persistence_connected 1"),
        "{metrics}"
    );
    signal(&p, "-TERM");
    assert_eq!(wait_exit(p).0, Some(0));
}

#[test]
fn health_reports_persistence_behind_after_the_lag_given_and_healthy_once_written() {
    let redis = RedisServer::start();
    let p = serve(
        &redis.addr(),
        &[
            "--source",
            "demo:400",
            "--demo-churn",
            "200",
            "--persistence-lag-warning",
            "1",
        ],
    );
    wait_ready(&p.addr);
    let persistence_check = |health: &Value| {
        health["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "persistence")
            .unwrap()
            .clone()
    };
    wait_for("healthy", Duration::from_secs(30), || {
        get(&p.addr, "/health").1["status"] == "healthy"
    });
    // Redis keeps the connection but answers nothing: the changes wait unwritten. The writer
    // gives up on its write after 5 s and reports Redis unreachable instead; with the default
    // lag (30 s) "behind" would never show before that.
    let paused = redis.pause();
    let since = std::time::Instant::now();
    wait_for("reported behind", Duration::from_secs(20), || {
        let (_, health) = get(&p.addr, "/health");
        let check = persistence_check(&health);
        health["status"] == "degraded"
            && check["status"] == "warn"
            && check["observedValue"] == true
            && check["details"]
                .as_str()
                .unwrap()
                .contains("writing behind")
    });
    // The oldest change waiting may predate the pause by one flush interval (50 ms).
    assert!(
        since.elapsed() >= Duration::from_millis(900),
        "reported behind {:?} after Redis stopped answering, under the 1 s given",
        since.elapsed()
    );
    drop(paused);
    wait_for("healthy again", Duration::from_secs(30), || {
        get(&p.addr, "/health").1["status"] == "healthy"
    });
    signal(&p, "-TERM");
    assert_eq!(wait_exit(p).0, Some(0));
}

/// Runs the binary to completion: (exit code, stdout, stderr).
fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = command().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_backup_exports_to_a_file_imports_into_redis_and_is_a_source_for_inspect() {
    let redis = RedisServer::start();
    let addr = redis.addr();
    let dir = tempfile::tempdir().unwrap();
    let p = serve(&addr, &["--source", "demo:300"]);
    wait_ready(&p.addr);
    signal(&p, "-TERM");
    assert_eq!(wait_exit(p).0, Some(0));
    let (stored, stored_r) = recovered_graph(&redis_config(&redis));
    let (stored, stored_objects) = (stored.canonical(), stored_r.objects.len());

    // Export: one file holding exactly what Redis holds.
    let file = dir.path().join("backup.astrolabe");
    let file_s = file.to_str().unwrap();
    let (code, out, err) = run_cli(&["snapshot", "export", "--out", file_s, "--redis-addr", &addr]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("exported {stored_objects} objects")),
        "{out}"
    );
    assert!(
        !dir.path().join("backup.partial").exists(),
        "no partial file left behind"
    );

    // `inspect` reads it as a source: the same graph as the demo it came from.
    let (code, from_file, err) = run_cli(&["inspect", file_s, "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, from_demo, err) = run_cli(&["inspect", "demo:300", "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&from_file).unwrap(),
        serde_json::from_str::<Value>(&from_demo).unwrap(),
        "inspect of the backup equals inspect of its source"
    );

    // Import under another cluster name: recovery there gives the same graph, from a snapshot.
    let (code, out, err) = run_cli(&[
        "snapshot",
        "import",
        "--file",
        file_s,
        "--redis-addr",
        &addr,
        "--cluster-name",
        "copy",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("imported {stored_objects} objects")),
        "{out}"
    );
    let copy = RedisConfig {
        prefix: "astrolabe:{copy}".into(),
        ..redis_config(&redis)
    };
    let (imported, r) = recovered_graph(&copy);
    assert!(r.from_snapshot && r.log_batches == 0);
    assert_eq!(
        imported.canonical(),
        stored,
        "the imported graph equals the exported one"
    );

    // A damaged file is refused with a clear message, and nothing is written.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let damaged = dir.path().join("damaged.astrolabe");
    std::fs::write(&damaged, &bytes).unwrap();
    let damaged_s = damaged.to_str().unwrap();
    let (code, _, err) = run_cli(&[
        "snapshot",
        "import",
        "--file",
        damaged_s,
        "--redis-addr",
        &addr,
        "--cluster-name",
        "third",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("checksum mismatch"), "{err}");
    let mut c = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("astrolabe:{third}*")
        .query(&mut c)
        .unwrap();
    assert!(
        keys.is_empty(),
        "nothing written for a damaged file: {keys:?}"
    );
    let (code, _, err) = run_cli(&["inspect", damaged_s]);
    assert_eq!(code, Some(1));
    assert!(err.contains("checksum mismatch"), "{err}");

    // Exporting a prefix that holds nothing says so.
    let (code, _, err) = run_cli(&[
        "snapshot",
        "export",
        "--out",
        file_s,
        "--redis-addr",
        &addr,
        "--cluster-name",
        "nothing",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nothing is stored"), "{err}");
}
