//! Where objects come from: manifest files and `kubectl get -o json|yaml` dumps
//! ([`file`](mod@file)), and the built-in demo cluster ([`demo`]). A source projects each object
//! (so nothing secret leaves it) and sends the projections to the single writer, then an
//! [`Event::Synced`] marker.

pub mod demo;
pub mod file;
pub mod kube;

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::graph::{Change, ListScope};
use crate::ingest::{Event, EventSender};
use crate::model::Uid;
use crate::relations::{ProjectError, Projector};

/// How many error messages a load keeps (all are counted).
const KEPT_ERRORS: usize = 1000;

/// Which source to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// The built-in demo cluster of about this many objects.
    Demo {
        /// Approximate object count.
        objects: usize,
    },
    /// A manifest file or a directory of them, or a snapshot file (`astrolabe snapshot export`).
    Path(PathBuf),
}

/// Object count of `demo` without a size.
pub const DEMO_DEFAULT_OBJECTS: usize = 2_000;

impl SourceSpec {
    /// Parses `demo`, `demo:N` (N may use `k`/`m` suffixes: `demo:1m`), `file:PATH`, or a bare
    /// path.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        if s == "demo" {
            return Ok(SourceSpec::Demo {
                objects: DEMO_DEFAULT_OBJECTS,
            });
        }
        if let Some(n) = s.strip_prefix("demo:") {
            let objects = parse_count(n).ok_or_else(|| {
                format!("invalid demo size {n:?}: expected a number such as 5000, 100k or 1m")
            })?;
            if objects == 0 {
                return Err("the demo size must be at least 1".into());
            }
            return Ok(SourceSpec::Demo { objects });
        }
        let path = s.strip_prefix("file:").unwrap_or(s);
        if path.is_empty() {
            return Err("empty source path".into());
        }
        Ok(SourceSpec::Path(PathBuf::from(path)))
    }
}

fn parse_count(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase().replace('_', "");
    let (digits, mult) = match s.strip_suffix('k') {
        Some(d) => (d.to_string(), 1_000),
        None => match s.strip_suffix('m') {
            Some(d) => (d.to_string(), 1_000_000),
            None => (s, 1),
        },
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

/// What a load did.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Objects sent to the writer.
    pub objects: usize,
    /// Documents or objects skipped because they were malformed.
    pub skipped: usize,
    /// Why, with the origin of each (at most the first thousand).
    pub errors: Vec<String>,
    /// Files read (file source).
    pub files: usize,
}

impl LoadReport {
    fn skip(&mut self, message: String) {
        tracing::warn!(target: "astrolabe::sources", "skipped: {message}");
        self.skipped += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(message);
        }
    }
}

/// A source that cannot be read at all.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The file source failed.
    #[error(transparent)]
    File(#[from] file::FileSourceError),
    /// The snapshot file could not be read.
    #[error(transparent)]
    Snapshot(#[from] crate::persistence::BackupError),
    /// The writer stopped while the source was sending.
    #[error("the graph writer stopped")]
    WriterGone,
}

/// Reads the whole source once and sends every object, as one full list of everything (so that
/// objects that vanished since a restored state are deleted), then [`Event::Synced`].
///
/// The demo cluster is anchored at midnight UTC of `now`'s day rather than at `now` itself, so
/// that a restart on the same day regenerates exactly the same objects.
pub fn load(
    spec: &SourceSpec,
    projector: &Projector,
    tx: &EventSender,
    now: i64,
) -> Result<LoadReport, SourceError> {
    run(
        spec,
        projector,
        tx,
        now,
        0.0,
        &std::sync::atomic::AtomicBool::new(true),
    )
}

/// Like [`load`]; then, for the demo source with `churn_per_second > 0`, keeps sending realistic
/// changes at about that rate until `stop` is set.
pub fn run(
    spec: &SourceSpec,
    projector: &Projector,
    tx: &EventSender,
    now: i64,
    churn_per_second: f64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<LoadReport, SourceError> {
    let mut report = LoadReport::default();
    let gone = || SourceError::WriterGone;
    let send = |v: &serde_json::Value, origin: &dyn Fn() -> String, report: &mut LoadReport| {
        match projector.project(v) {
            Ok(obj) => {
                report.objects += 1;
                tx.change(Change::Upsert(Arc::new(obj)))
            }
            Err(e) => {
                report.skip(format!("{}: {e}", origin()));
                true
            }
        }
    };
    if !tx.change(Change::ListStart(ListScope::everything())) {
        return Err(gone());
    }
    let mut cluster = None;
    match spec {
        SourceSpec::Demo { objects } => {
            let c = demo::DemoCluster::new(demo::DemoConfig {
                objects: *objects,
                now: now - now.rem_euclid(86_400),
                ..demo::DemoConfig::default()
            });
            for (i, v) in c.objects().enumerate() {
                if !send(&v, &|| format!("demo object {i}"), &mut report) {
                    return Err(gone());
                }
            }
            cluster = Some(c);
        }
        SourceSpec::Path(path) if crate::persistence::is_snapshot_file(path) => {
            // A backup (`astrolabe snapshot export`): objects already projected.
            report.files = 1;
            for o in crate::persistence::read_file(path)? {
                report.objects += 1;
                if !tx.change(Change::Upsert(o)) {
                    return Err(gone());
                }
            }
        }
        SourceSpec::Path(path) => {
            let loaded = file::load_path(path)?;
            report.files = loaded.files;
            for e in loaded.errors {
                report.skip(e.to_string());
            }
            for l in loaded.objects {
                if !send(&l.object, &|| l.origin.to_string(), &mut report) {
                    return Err(gone());
                }
            }
        }
    }
    if !tx.change(Change::ListComplete(ListScope::everything())) || !tx.send(Event::Synced) {
        return Err(gone());
    }
    if let Some(mut c) = cluster.filter(|_| churn_per_second > 0.0) {
        churn(&mut c, projector, tx, churn_per_second, stop)?;
    }
    Ok(report)
}

/// How long the demo churn collects changes before it sends them: sent one at a time, each
/// change woke the ingest thread (a futex wake-up, then a write lock and a batch for one change),
/// which cost the source thread about a tenth of its CPU at 20,000 changes per second.
const CHURN_BURST: std::time::Duration = std::time::Duration::from_millis(1);

/// Sends demo churn at about `per_second` changes per second until `stop` is set, in bursts of
/// about [`CHURN_BURST`]'s worth.
fn churn(
    cluster: &mut demo::DemoCluster,
    projector: &Projector,
    tx: &EventSender,
    per_second: f64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), SourceError> {
    use std::time::Instant;
    let mut pace = Pace::new(per_second, Instant::now());
    let mut burst = Vec::new();
    let send = |burst: &mut Vec<Change>| burst.drain(..).all(|c| tx.change(c));
    let mut collecting_since = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if burst.is_empty() {
            collecting_since = Instant::now();
        }
        for ev in cluster.step() {
            match demo_change(&ev, projector) {
                Ok(c) => {
                    burst.push(c);
                    pace.sent(1);
                }
                Err(e) => tracing::warn!(error = %e, "skipped a demo change"),
            }
        }
        let now = Instant::now();
        let ahead = pace.wait(now).is_some_and(|wait| wait >= CHURN_BURST);
        if !ahead && now.duration_since(collecting_since) < CHURN_BURST {
            continue;
        }
        if !send(&mut burst) {
            return Err(SourceError::WriterGone);
        }
        // Pace to the rate: wait until the next change is due, in short naps so that a stop is
        // noticed at once.
        while let Some(wait) = pace.wait(Instant::now()) {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(wait.min(std::time::Duration::from_millis(50)));
        }
    }
    // What was collected is the cluster's state as of now: sent, not dropped, at a stop too.
    if !send(&mut burst) {
        return Err(SourceError::WriterGone);
    }
    Ok(())
}

/// Paces a stream to a rate: how long to wait before the next item is due. A stream more than
/// [`Pace::MAX_DEBT`] behind (the process was stopped, or starved of CPU) starts its schedule
/// again from now instead of sending everything it missed at once.
#[derive(Debug)]
struct Pace {
    per_second: f64,
    since: std::time::Instant,
    sent: u64,
}

impl Pace {
    const MAX_DEBT: std::time::Duration = std::time::Duration::from_secs(1);

    fn new(per_second: f64, now: std::time::Instant) -> Pace {
        Pace {
            per_second,
            since: now,
            sent: 0,
        }
    }

    fn sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// The wait until the next item is due at `now`, or `None` when it is due already.
    fn wait(&mut self, now: std::time::Instant) -> Option<std::time::Duration> {
        let due =
            self.since + std::time::Duration::from_secs_f64(self.sent as f64 / self.per_second);
        if now.saturating_duration_since(due) > Self::MAX_DEBT {
            *self = Pace::new(self.per_second, now);
        }
        due.checked_duration_since(now)
    }
}

/// The change a demo churn event stands for.
pub fn demo_change(event: &demo::DemoEvent, projector: &Projector) -> Result<Change, ProjectError> {
    match event {
        demo::DemoEvent::Apply(v) => Ok(Change::Upsert(Arc::new(projector.project(v)?))),
        demo::DemoEvent::Delete {
            api_version,
            kind,
            namespace,
            name,
            uid,
        } => Ok(Change::Delete {
            key: projector.key_of(api_version, kind, namespace, name)?,
            uid: Some(Uid::parse(uid)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_stream_keeps_its_rate_and_drops_a_debt_over_a_second() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut pace = Pace::new(100.0, t0);
        pace.sent(50);
        // Half a second's worth sent at once: due in 0.5 s.
        assert_eq!(pace.wait(t0), Some(Duration::from_millis(500)));
        // Behind by 0.5 s: due already, and the debt is kept (sent as fast as it can).
        assert_eq!(pace.wait(t0 + Duration::from_secs(1)), None);
        pace.sent(50);
        assert_eq!(
            pace.wait(t0 + Duration::from_millis(900)),
            Some(Duration::from_millis(100))
        );
        // Stopped for 5 s: not 500 items at once, but the rate again from now.
        let later = t0 + Duration::from_secs(6);
        assert_eq!(pace.wait(later), None);
        pace.sent(10);
        assert_eq!(pace.wait(later), Some(Duration::from_millis(100)));
    }

    #[test]
    fn parses_source_specs() {
        assert_eq!(
            SourceSpec::parse("demo"),
            Ok(SourceSpec::Demo {
                objects: DEMO_DEFAULT_OBJECTS
            })
        );
        assert_eq!(
            SourceSpec::parse("demo:5000"),
            Ok(SourceSpec::Demo { objects: 5000 })
        );
        assert_eq!(
            SourceSpec::parse("demo:100k"),
            Ok(SourceSpec::Demo { objects: 100_000 })
        );
        assert_eq!(
            SourceSpec::parse("demo:1M"),
            Ok(SourceSpec::Demo { objects: 1_000_000 })
        );
        assert!(SourceSpec::parse("demo:lots").is_err());
        assert!(SourceSpec::parse("demo:0").is_err());
        assert_eq!(
            SourceSpec::parse("file:a/b"),
            Ok(SourceSpec::Path("a/b".into()))
        );
        assert_eq!(
            SourceSpec::parse("./x.yaml"),
            Ok(SourceSpec::Path("./x.yaml".into()))
        );
    }
}
