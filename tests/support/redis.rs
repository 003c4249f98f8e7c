//! Real `redis-server` processes for tests: each on a free loopback port, in its own temporary
//! directory, with AOF on (`appendfsync everysec`), stopped (or killed) by its own PID, and
//! restartable on the same directory to test what survives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// A new server in a new temporary directory.
    pub fn start() -> RedisServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir,
            _tmp: Some(tmp),
        };
        s.spawn(&[]);
        s
    }

    /// A new server on a given port.
    pub fn start_on(port: u16) -> RedisServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = RedisServer {
            child: None,
            port,
            dir,
            _tmp: Some(tmp),
        };
        s.spawn(&[]);
        s
    }

    /// A new server started with extra configuration arguments (`--name value` pairs).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir,
            _tmp: Some(tmp),
        };
        s.spawn(extra);
        s
    }

    fn spawn(&mut self, extra: &[&str]) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
            ])
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--protected-mode",
                "no",
            ])
            .args(["--logfile", "redis.log"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/install-deps.sh installs it)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
                && let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                // AOF loading answers PING with an error; a success means it is serving.
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A connection, for inspecting or corrupting what is stored.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}", self.addr()))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// SIGKILL by PID: no shutdown, no final fsync.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and directory (what AOF kept is loaded).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(&[]);
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
