//! What the load harnesses share: `--help` and usage errors (their own doc comment), medians,
//! histograms read from `/metrics`, the release binary next to them, the `astrolabe serve`
//! process (stopped by its own PID, also when a harness panics), a blocking loopback GET, and CPU
//! time read from /proc.
#![allow(dead_code, unreachable_pub)]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A harness's doc comment: the `//!` lines of `source`, the harness's own text.
fn doc(source: &str) -> String {
    source
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect()
}

/// Answers `--help` or `-h` with the harness's doc comment (see [`doc`]), and exits.
pub fn help(source: &str) {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{}", doc(source));
        std::process::exit(0);
    }
}

/// A bad command line: what is wrong, then the harness's doc comment, on stderr; exit code 2.
#[allow(clippy::print_stderr)]
pub fn usage_error(source: &str, why: &str) -> ! {
    eprint!("{why}\n\n{}", doc(source));
    std::process::exit(2);
}

/// The median of `v`: the mean of the middle two of an even count.
pub fn median<T>(v: &[T]) -> T
where
    T: Copy + PartialOrd + std::ops::Add<Output = T> + std::ops::Div<Output = T> + From<u8>,
{
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / T::from(2)
    }
}

/// The cumulative buckets of histogram `name` in a Prometheus text exposition: (upper bound in
/// the histogram's unit, count), in order.
pub fn histogram(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let (le, count) = l.strip_prefix(prefix.as_str())?.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// What a histogram counted between two readings of its buckets (see [`histogram`]).
pub fn histogram_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .zip(before)
        .map(|(&(le, a), &(_, b))| (le, a - b))
        .collect()
}

/// The `astrolabe` binary of the same build as the running example (`target/release/astrolabe`
/// for `cargo run --release --example ...`).
pub fn release_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("astrolabe")))
        .unwrap_or_else(|| "target/release/astrolabe".into())
}

/// A running `astrolabe serve`: SIGTERM on [`Server::stop`], killed by its PID when dropped.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: String,
}

impl Server {
    /// Starts `cmd` (stderr is read for the "listening on" line at log level info or above) and
    /// hands every log line before it to `early` (for example, the restore report).
    pub fn start(cmd: &mut Command, mut early: impl FnMut(&str)) -> Server {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts (build it first: cargo build --release)");
        let stderr = child.stderr.take().unwrap();
        // From here on the process is stopped on every path, panics included.
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
        };
        let mut lines = std::io::BufReader::new(stderr).lines();
        loop {
            let line = lines
                .next()
                .expect("the server logs where it listens")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                server.addr = rest.split_whitespace().next().unwrap().to_string();
                // Keep draining the log so that the server never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                return server;
            }
            early(&line);
        }
    }

    /// Wraps a process started elsewhere (listening on a known address).
    pub fn adopt(child: Child, addr: String) -> Server {
        Server {
            child: Some(child),
            addr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `sig` (`-TERM`, `-STOP`, `-CONT`, ...) to the server; whether it was delivered.
    pub fn signal(&self, sig: &str) -> bool {
        self.child.as_ref().is_some_and(|c| {
            Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// SIGTERM (a graceful shutdown: final snapshot with persistence on), then waits.
    pub fn stop(mut self) {
        self.signal("-TERM");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A blocking HTTP/1.1 GET over loopback; the body when the answer is 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(body.to_string());
    }
    let mut rest = body;
    let mut decoded = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(decoded);
        }
        decoded.push_str(tail.get(..n)?);
        rest = tail.get(n + 2..)?;
    }
}

/// The fields of a `/proc/.../stat` file after "(comm)", numbers where they are (the state
/// letter reads 0): minor faults at 7 (with waited-for children's at 8); user, system, and
/// children's user and system time at 11 to 14, in clock ticks (100 per second on Linux).
/// Empty when it cannot be read.
pub fn stat_fields(path: impl AsRef<std::path::Path>) -> Vec<u64> {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    stat.rsplit_once(')').map_or_else(Vec::new, |(_, rest)| {
        rest.split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect()
    })
}

/// CPU seconds from a `/proc/.../stat` file: user + system time, and with `children` also that
/// of the waited-for children (such as Redis's AOF rewrites); 0 when it cannot be read.
pub fn stat_cpu_seconds(path: impl AsRef<std::path::Path>, children: bool) -> f64 {
    let fields = stat_fields(path);
    let ticks: u64 = fields
        .iter()
        .skip(11)
        .take(if children { 4 } else { 2 })
        .sum();
    ticks as f64 / 100.0
}

/// [`stat_cpu_seconds`] of process `pid`.
pub fn cpu_seconds(pid: u32, children: bool) -> f64 {
    stat_cpu_seconds(format!("/proc/{pid}/stat"), children)
}

/// The whole machine's CPU seconds so far from `/proc/stat`: busy (all but idle, I/O wait and
/// steal) and stolen by the VM's host.
pub fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice (clock ticks; guest
    // time is already counted in user).
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0) / 100.0;
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}
