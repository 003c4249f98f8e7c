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
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// A new server in a new temporary directory.
    pub fn start() -> RedisServer {
        RedisServer::start_at(free_port(), &[])
    }

    /// A new server on a given port.
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::start_at(port, &[])
    }

    /// A new server started with extra configuration arguments (`--name value` pairs), which
    /// restarts keep.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_at(free_port(), extra)
    }

    fn start_at(port: u16, extra: &[&str]) -> RedisServer {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = RedisServer {
            child: None,
            port,
            dir: tmp.path().to_path_buf(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
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
                // As PERSISTENCE.md recommends: the values are LZ4-compressed already, so LZF
                // in AOF rewrites would cost CPU for nothing.
                "--rdbcompression",
                "no",
                "--protected-mode",
                "no",
            ])
            .args(["--logfile", "redis.log"])
            .args(&self.extra)
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

    /// The process id (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
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

    /// A numeric field of `INFO section` (`used_memory` of `memory`, `aof_rewrites` of
    /// `persistence`, ...); None when Redis does not report it.
    pub fn info(&self, section: &str, field: &str) -> Option<u64> {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.client())
            .ok()?;
        info.lines().find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// SIGKILL by PID: no shutdown, no final fsync.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process (SIGSTOP): it keeps its connections but answers nothing until the
    /// guard returned is dropped (SIGCONT), however the test ends.
    pub fn pause(&self) -> Paused<'_> {
        assert!(self.signal("-STOP"), "kill -STOP redis-server");
        Paused(self)
    }

    fn signal(&self, sig: &str) -> bool {
        Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts again on the same port and directory (what AOF kept is loaded).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

/// A redis-server stopped by [`RedisServer::pause`]; continued when dropped.
pub struct Paused<'a>(&'a RedisServer);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.signal("-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-sentinel` process watching one master (quorum 1, down after one second), with its
/// configuration file in its own temporary directory.
pub struct Sentinel {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sentinel {
    pub fn start(master_name: &str, master: &RedisServer) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\nlogfile sentinel.log\n\
                 sentinel monitor {master_name} 127.0.0.1 {mport} 1\n\
                 sentinel down-after-milliseconds {master_name} 1000\n\
                 sentinel failover-timeout {master_name} 10000\n\
                 sentinel parallel-syncs {master_name} 1\n",
                dir = dir.path().display(),
                mport = master.port,
            ),
        )
        .unwrap();
        let child = Command::new("redis-sentinel")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel is installed (scripts/install-deps.sh installs it)");
        let s = Sentinel {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.query::<String>(&["PING"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "sentinel did not start: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A command to the sentinel.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://{}", self.addr()))?;
        let mut c = client.get_connection_with_timeout(Duration::from_millis(500))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c)
    }

    /// The master's port, as the sentinel names it now.
    pub fn master_port(&self, master_name: &str) -> u16 {
        let (_, port): (String, String) = self
            .query(&["SENTINEL", "get-master-addr-by-name", master_name])
            .unwrap();
        port.parse().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A local Redis Cluster of `masters` masters and no replicas, made with `redis-cli --cluster
/// create`, each node a [`RedisServer`] (AOF on, `nodes.conf` in its directory).
pub fn start_cluster(masters: usize) -> Vec<RedisServer> {
    let nodes: Vec<RedisServer> = (0..masters)
        .map(|_| {
            RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ])
        })
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(RedisServer::addr))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli is installed (scripts/install-deps.sh installs redis-tools)");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_cluster_ok(&nodes);
    nodes
}

/// Waits until every node reports `cluster_state:ok`.
pub fn wait_cluster_ok(nodes: &[RedisServer]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in nodes {
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut n.client())
                .unwrap_or_default();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ok on {}: {info}",
                n.addr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
