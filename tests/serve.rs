//! `astrolabe serve` as a process: it reports where it listens, becomes ready after the first
//! load, reads its flags from the environment, rejects bad configuration with the right exit
//! code, and exits 0 on SIGTERM and SIGINT. Every process is stopped by its own PID.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Stop by our own PID if a test failed before doing so.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args` and `env`, and waits for its "listening on" log line.
#[allow(
    clippy::zombie_processes,
    reason = "the child is owned by `Proc`, whose Drop kills and waits for it"
)]
fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_astrolabe"))
        .args(args)
        .envs(env.iter().copied())
        .env("ASTROLABE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server logs where it listens within 30 s");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            return Proc { child, addr, lines };
        }
    }
}

fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    })
}

/// Polls readiness until it answers 200 (the load runs in the background), at most 30 s.
fn wait_ready(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready within 30 s");
        std::thread::yield_now();
    }
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for the process to exit, at most 20 s; returns its exit code and the rest of its log.
fn wait_exit(mut p: Proc) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    loop {
        while let Ok(l) = p.lines.try_recv() {
            log.push_str(&l);
            log.push('\n');
        }
        if let Some(status) = p.child.try_wait().unwrap() {
            while let Ok(l) = p.lines.recv_timeout(Duration::from_millis(200)) {
                log.push_str(&l);
                log.push('\n');
            }
            return (status.code(), log);
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after the signal:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serves_the_demo_and_stops_cleanly_on_sigterm() {
    let p = start(
        &["serve", "--source", "demo:500", "--listen", "127.0.0.1:0"],
        &[],
    );
    wait_ready(&p.addr);
    let (status, health) = get(&p.addr, "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert!(health["nodes"].as_u64().unwrap() > 400);
    let (status, nss) = get(&p.addr, "/api/v1/namespaces");
    assert_eq!(status, 200);
    assert!(nss.as_array().unwrap().iter().any(|n| n == "shop"));
    signal(&p, "-TERM");
    let (code, log) = wait_exit(p);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn reads_its_configuration_from_the_environment_and_stops_on_sigint() {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dumps/shop-list.json");
    let source = format!("file:{}", dump.display());
    let p = start(
        &["serve"],
        &[
            ("ASTROLABE_SOURCE", &source),
            ("ASTROLABE_LISTEN", "127.0.0.1:0"),
            ("ASTROLABE_MAX_NODES", "10"),
        ],
    );
    wait_ready(&p.addr);
    let (_, g) = get(&p.addr, "/api/v2/graph");
    assert_eq!(
        g["nodes"].as_array().unwrap().len(),
        10,
        "the node cap came from the environment"
    );
    assert_eq!(g["truncated"], true);
    let (_, kinds) = get(&p.addr, "/api/v2/kinds");
    let pods = kinds["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "Pod")
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    assert_eq!(pods, 19, "the dump's Pods");
    signal(&p, "-INT");
    assert_eq!(wait_exit(p).0, Some(0));
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_astrolabe"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["serve", "--source", "kube", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--source demo"), "{err}");
    let (code, err) = run(&[
        "serve",
        "--source",
        "file:/nonexistent/astrolabe",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not exist"), "{err}");
    let (code, err) = run(&["serve", "--listen", "nowhere"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid --listen"), "{err}");
    let (code, _) = run(&["serve", "--max-nodes", "0", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2));
    let (code, err) = run(&["serve", "--source", "demo:many"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid demo size"), "{err}");
}
