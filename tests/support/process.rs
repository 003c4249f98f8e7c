//! The `astrolabe` binary as a process: started with arguments and environment, its address read
//! from its log, queried over loopback HTTP, signalled and stopped by its own PID.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Stop by our own PID if a test failed before doing so.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary as a command, with none of the configuration the developer's environment may hold
/// (every `ASTROLABE_*`, `REDIS_*` and `ENABLE_PERSISTENCE` variable is removed), so that a test
/// sees only what it sets.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_astrolabe"));
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("ASTROLABE_") || n.starts_with("REDIS_") || n == "ENABLE_PERSISTENCE" {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Starts the binary with `args` and `env`, and waits for its "listening on" log line.
#[allow(
    clippy::zombie_processes,
    reason = "the child is owned by `Proc`, whose Drop kills and waits for it"
)]
pub fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut child = command()
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

/// A GET over loopback: the status and the body as JSON (`Null` when it is not JSON).
pub fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get_text(addr, path);
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A GET over loopback: the status and the body as text. No proxy is ever used, whatever the
/// environment says.
pub fn get_text(addr: &str, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let r = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

/// Polls readiness until it answers 200 (the load runs in the background), at most 30 s.
pub fn wait_ready(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for the process to exit, at most 20 s; returns its exit code and the rest of its log.
pub fn wait_exit(mut p: Proc) -> (Option<i32>, String) {
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
