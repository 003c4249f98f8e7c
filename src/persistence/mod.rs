//! Redis write-behind persistence: the graph's changes are written behind it (never in the way of
//! ingest or queries), with periodic snapshots, so that a restart comes back warm.
//!
//! - [`channel`] creates the bounded channel the graph's writer records changes into
//!   ([`PersistSink`]); a full channel never blocks it: the object is marked dirty instead.
//! - [`PendingWriter::start`] starts the Redis writer thread (see `writer.rs` for how changes are
//!   coalesced, batched, snapshotted, and kept across Redis outages).
//! - [`recover`] reads the newest complete snapshot and the log after it.
//!
//! `PERSISTENCE.md` documents the key schema and the guarantees.

pub mod format;
mod store;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use thiserror::Error;

pub use format::{FORMAT_VERSION, FormatError, Manifest};
pub use store::{RedisConfig, StoreError};

use crate::graph::{Change, Graph};
use crate::ingest::{GraphHandle, unix_ms};
use crate::model::{Object, Uid};

/// A snapshot is taken once the log written since the last one outgrows this many times that
/// snapshot's bytes (whatever the schedule): it bounds both Redis's memory and the log that
/// recovery reads.
pub const LOG_LIMIT_SNAPSHOTS: u64 = 2;

/// How persistence behaves.
#[derive(Clone, Debug)]
pub struct PersistConfig {
    /// Where Redis is.
    pub redis: RedisConfig,
    /// Time between periodic snapshots; zero takes them only at shutdown, after the first full
    /// load, after Redis comes back, and when the log outgrows the last snapshot (see the writer).
    pub snapshot_interval: Duration,
    /// The longest a change waits before it is written.
    pub flush_interval: Duration,
    /// Changes taken from the channel per write cycle.
    pub batch_size: usize,
    /// Above this many pending objects, or a quarter of the graph if that is more (after an
    /// outage), a snapshot replaces the log entry.
    pub max_log_entry: usize,
    /// Capacity of the channel from the graph's writer.
    pub channel_capacity: usize,
    /// How long changes may wait unwritten (while Redis is reachable) before health reports the
    /// writer as behind: it is starved of CPU, or Redis is too slow for the rate of change.
    pub behind_warning: Duration,
    /// First and longest wait between reconnection attempts.
    pub reconnect_min: Duration,
    /// See `reconnect_min`.
    pub reconnect_max: Duration,
    /// Fault injection for tests: how long a background snapshot waits after writing its chunks
    /// and manifest, before it switches to them. Zero outside tests.
    #[doc(hidden)]
    pub snapshot_switch_delay: Duration,
    /// Objects per snapshot chunk (chunks are read and decoded in parallel at recovery). Tests
    /// make it small, so that a small graph spans many chunks and round trips.
    #[doc(hidden)]
    pub snapshot_chunk_objects: usize,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            redis: RedisConfig::default(),
            snapshot_interval: Duration::from_secs(300),
            flush_interval: Duration::from_millis(50),
            batch_size: 10_000,
            max_log_entry: 50_000,
            channel_capacity: 65_536,
            behind_warning: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            snapshot_switch_delay: Duration::ZERO,
            snapshot_chunk_objects: writer::CHUNK_OBJECTS,
        }
    }
}

/// What a snapshot wrote.
#[derive(Clone, Debug)]
pub struct SnapshotReport {
    /// Its generation.
    pub generation: u64,
    /// Objects in it.
    pub objects: u64,
    /// Bytes written to Redis.
    pub bytes: u64,
    /// How long encoding and writing took.
    pub duration: Duration,
}

pub(crate) enum Msg {
    Upsert(Arc<Object>, u64),
    Delete(Uid, u64),
    Flush(Sender<Result<(), String>>),
    Snapshot(Sender<Result<SnapshotReport, String>>),
    Stop,
}

/// Counters, readable without locks.
#[derive(Debug, Default)]
pub struct PersistStats {
    /// Whether the writer holds a working connection.
    pub connected: AtomicBool,
    pub(crate) ever_connected: AtomicBool,
    /// Reconnections after a loss.
    pub reconnects: AtomicU64,
    /// Failed Redis operations.
    pub errors: AtomicU64,
    /// Log entries written.
    pub batches: AtomicU64,
    /// Object states written in log entries.
    pub objects: AtomicU64,
    /// Bytes of the log entries written.
    pub log_bytes: AtomicU64,
    /// Duration of the last log write, microseconds.
    pub flush_micros: AtomicU64,
    /// Unix ms of the last log write.
    pub last_flush_ms: AtomicU64,
    /// Snapshots written.
    pub snapshots: AtomicU64,
    /// Unix ms of the last snapshot.
    pub last_snapshot_ms: AtomicU64,
    /// Bytes of the last snapshot.
    pub last_snapshot_bytes: AtomicU64,
    /// Duration of the last snapshot, microseconds.
    pub last_snapshot_micros: AtomicU64,
    /// Whether a snapshot is being written in the background while the log goes on.
    pub snapshot_running: AtomicBool,
    /// Background snapshots that stopped waiting for idle cores (the log outgrew half its limit
    /// while they ran, or something waited for them).
    pub snapshots_hurried: AtomicU64,
    /// The graph generation Redis has acknowledged.
    pub acked_generation: AtomicU64,
    /// Changes that found the channel full (their objects were marked dirty).
    pub overflowed: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) stats: PersistStats,
    /// Taken from the back (`resend_dirty`): a hash set taken from the front would scan the
    /// buckets it emptied before on every call.
    dirty: Mutex<indexmap::IndexSet<Uid, rustc_hash::FxBuildHasher>>,
    dirty_count: AtomicUsize,
    /// Unix ms since when objects have been dirty (meaningful while `dirty_count` > 0).
    dirty_since_ms: AtomicU64,
    /// Unix ms since when the writer has held changes it has not written (0: none), set by the
    /// writer.
    pub(crate) pending_since_ms: AtomicU64,
    behind_warning: Duration,
    last_error: Mutex<Option<String>>,
}

/// The graph writer's side: records each change, never blocking.
#[derive(Clone)]
pub struct PersistSink {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    /// Object versions the Redis writer is done with (see [`PersistSink::drop_superseded`]).
    superseded: Receiver<Superseded>,
}

/// Object versions the Redis writer let go of, whose last reference it held.
pub(crate) type Superseded = Vec<Arc<Object>>;

/// Messages of superseded versions (each at most `writer::GIVE_BACK_CHUNK`) freed per call of
/// `PersistSink::drop_superseded`.
const SUPERSEDED_PER_CALL: usize = 4;

impl PersistSink {
    /// Records an object's new state, produced at graph generation `generation`.
    pub fn upsert(&self, obj: Arc<Object>, generation: u64) {
        self.send(Msg::Upsert(obj, generation));
    }

    /// Records that the object with `uid` is gone, at graph generation `generation`.
    pub fn delete(&self, uid: Uid, generation: u64) {
        self.send(Msg::Delete(uid, generation));
    }

    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(msg)) => {
                let uid = match msg {
                    Msg::Upsert(o, _) => o.uid.clone(),
                    Msg::Delete(uid, _) => uid,
                    _ => return,
                };
                // Nothing is lost: the object's current state is sent once the channel has room
                // (`resend_dirty`).
                self.shared.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                let mut dirty = self.shared.dirty.lock();
                if dirty.is_empty() {
                    self.shared
                        .dirty_since_ms
                        .store(unix_ms(), Ordering::Relaxed);
                }
                if dirty.insert(uid) {
                    self.shared
                        .dirty_count
                        .store(dirty.len(), Ordering::Release);
                }
            }
        }
    }

    /// Frees the object versions the Redis writer is done with (those written and since replaced,
    /// and snapshot images). It sends them back rather than dropping them itself, so that they
    /// are freed where replaced versions are freed without persistence: dropping a last
    /// reference frees memory and may take the string interner's lock, which the queries take
    /// too. The graph's writer calls this between batches, outside the graph's lock.
    ///
    /// A few thousand at most per call, so that a call takes well under a millisecond; a
    /// snapshot's end can give back tens of thousands at once.
    pub fn drop_superseded(&self) {
        self.superseded
            .try_iter()
            .take(SUPERSEDED_PER_CALL)
            .for_each(drop);
    }

    /// Whether objects wait to be sent again after overflowing the channel.
    pub fn has_dirty(&self) -> bool {
        self.shared.dirty_count.load(Ordering::Acquire) > 0
    }

    /// Sends the current state of objects whose changes overflowed the channel, as many as it
    /// has room for (all of them, waiting for room, when `wait`).
    ///
    /// Only the graph's writer calls this, between batches, with `graph` as it is now, so the
    /// channel stays in generation order: these states are the newest of their objects, sent
    /// after every older change. The Redis writer never reads the graph, so it shares no lock of
    /// ours with ingest or the queries.
    pub fn resend_dirty(&self, graph: &Graph, wait: bool) {
        let generation = graph.generation();
        let mut dirty = self.shared.dirty.lock();
        let room = if wait {
            dirty.len()
        } else {
            self.tx.capacity().unwrap_or(usize::MAX) - self.tx.len()
        };
        for _ in 0..room {
            let Some(uid) = dirty.last() else {
                break;
            };
            let msg = match graph.find_uid(uid) {
                Some(n) => Msg::Upsert(graph.object(n).clone(), generation),
                None => Msg::Delete(uid.clone(), generation),
            };
            let sent = if wait {
                // Only a stopped Redis writer refuses (it takes messages even while Redis is away).
                self.tx.send(msg).is_ok()
            } else {
                !matches!(self.tx.try_send(msg), Err(TrySendError::Full(_)))
            };
            if !sent {
                break;
            }
            dirty.pop();
        }
        // After the sends: a Redis writer that reads no dirty object left finds their states in
        // the channel (see writer::Writer::answer).
        self.shared
            .dirty_count
            .store(dirty.len(), Ordering::Release);
    }
}

impl std::fmt::Debug for PersistSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersistSink")
    }
}

/// The channel, before its writer thread is started (the thread needs the graph handle, which
/// exists only once the graph's writer, which needs the sink, has started).
pub struct PendingWriter {
    cfg: PersistConfig,
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    superseded: Sender<Superseded>,
}

/// Creates the channel: the sink for the graph's writer, and the writer-to-be.
pub fn channel(cfg: PersistConfig) -> (PersistSink, PendingWriter) {
    let (tx, rx) = crossbeam_channel::bounded(cfg.channel_capacity);
    // Unbounded, and only ever polled: sending on it never takes a lock (see `drop_superseded`).
    let (superseded_tx, superseded) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        stats: PersistStats::default(),
        dirty: Mutex::new(indexmap::IndexSet::default()),
        dirty_count: AtomicUsize::new(0),
        dirty_since_ms: AtomicU64::new(0),
        pending_since_ms: AtomicU64::new(0),
        behind_warning: cfg.behind_warning,
        last_error: Mutex::new(None),
    });
    (
        PersistSink {
            tx: tx.clone(),
            shared: shared.clone(),
            superseded,
        },
        PendingWriter {
            cfg,
            rx,
            tx,
            shared,
            superseded: superseded_tx,
        },
    )
}

/// A state read back from Redis.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The objects.
    pub objects: Vec<Arc<Object>>,
    /// The last log entry replayed ("0-0" for none).
    pub log_id: String,
    /// Whether a snapshot was read (else only the log, or nothing).
    pub from_snapshot: bool,
    /// The snapshot's generation.
    pub snapshot_generation: Option<u64>,
    /// Log entries replayed after it.
    pub log_batches: usize,
    /// Object states in those entries.
    pub log_states: usize,
    /// Distinct objects the log entries touch.
    pub log_objects: usize,
    /// Time spent reading and indexing the log, before the snapshot is read (its states are
    /// decoded while the snapshot is).
    pub log_took: Duration,
    /// The graph generation of the state read (as recorded by the writer that wrote it): tells
    /// which acknowledged state a recovery returned.
    pub graph_generation: u64,
}

impl PendingWriter {
    /// Starts the writer thread over `graph`, whose contents are `restored`.
    pub fn start(self, graph: GraphHandle, restored: Recovered) -> Persistence {
        let (cfg, rx, shared, superseded) =
            (self.cfg, self.rx, self.shared.clone(), self.superseded);
        // The writer indexes the restored objects (a million take it about 0.2 s) on its own
        // thread: the server answers meanwhile, and changes wait in the channel.
        let thread = std::thread::Builder::new()
            .name("astrolabe-redis".into())
            .spawn(move || writer::Writer::new(cfg, rx, graph, shared, superseded, restored).run())
            .expect("spawning the persistence thread");
        Persistence {
            observer: PersistObserver {
                tx: self.tx,
                shared: self.shared,
            },
            thread,
        }
    }
}

/// The running writer thread.
pub struct Persistence {
    /// The channel and the shared counters (the same handle the API reads).
    observer: PersistObserver,
    thread: JoinHandle<()>,
}

/// What `/health` and `/metrics` show of persistence.
#[derive(Debug, Clone)]
pub struct PersistStatus {
    /// Connected to Redis.
    pub connected: bool,
    /// Changes queued in the channel.
    pub queue_depth: usize,
    /// Objects marked dirty after the channel overflowed.
    pub dirty: usize,
    /// How long the oldest change not yet written has waited, if any waits: in the writer's
    /// hands, or marked dirty after the channel overflowed.
    pub behind: Option<Duration>,
    /// Whether `behind` is longer than [`PersistConfig::behind_warning`].
    pub lagging: bool,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// A persistence failure reported to a caller waiting for it.
#[derive(Debug, Error)]
pub enum PersistError {
    /// The writer did not answer in time.
    #[error("persistence did not answer within {0:?}")]
    Timeout(Duration),
    /// The writer answered with an error.
    #[error("persistence: {0}")]
    Failed(String),
}

impl Persistence {
    /// Counters.
    pub fn stats(&self) -> &PersistStats {
        self.observer.stats()
    }

    /// Connection, queue, dirty set, last error.
    pub fn status(&self) -> PersistStatus {
        self.observer.status()
    }

    /// A cheap handle for status readers (the API).
    pub fn observer(&self) -> PersistObserver {
        self.observer.clone()
    }

    /// Writes everything queued, waiting at most `timeout`; after Redis came back, also the
    /// snapshot that repairs what it may have lost. A snapshot running in the background for
    /// another reason is not waited for.
    pub fn flush(&self, timeout: Duration) -> Result<(), PersistError> {
        self.request(Msg::Flush, timeout)
    }

    /// Writes everything queued, then a snapshot, waiting at most `timeout`.
    pub fn snapshot(&self, timeout: Duration) -> Result<SnapshotReport, PersistError> {
        self.request(Msg::Snapshot, timeout)
    }

    /// Sends a request to the writer and waits for its answer, both within one `timeout`.
    fn request<T>(
        &self,
        msg: impl FnOnce(Sender<Result<T, String>>) -> Msg,
        timeout: Duration,
    ) -> Result<T, PersistError> {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.observer
            .tx
            .send_deadline(msg(tx), deadline)
            .map_err(|_| PersistError::Timeout(timeout))?;
        rx.recv_deadline(deadline)
            .map_err(|_| PersistError::Timeout(timeout))?
            .map_err(PersistError::Failed)
    }

    /// Stops the thread after it flushes what is queued; gives up waiting at `deadline`.
    pub fn stop(self, deadline: Instant) {
        let _ = self.observer.tx.send_deadline(Msg::Stop, deadline);
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            tracing::warn!("persistence: still writing at the shutdown deadline; leaving");
        }
    }
}

/// A read-only view of persistence for health and metrics.
#[derive(Clone)]
pub struct PersistObserver {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
}

impl PersistObserver {
    /// Counters.
    pub fn stats(&self) -> &PersistStats {
        &self.shared.stats
    }

    /// Connection, queue, dirty set, last error.
    pub fn status(&self) -> PersistStatus {
        let dirty = self.shared.dirty_count.load(Ordering::Relaxed);
        let since = |at: &AtomicU64| {
            let ms = at.load(Ordering::Relaxed);
            (ms > 0).then(|| Duration::from_millis(unix_ms().saturating_sub(ms)))
        };
        let behind = [
            since(&self.shared.pending_since_ms),
            since(&self.shared.dirty_since_ms).filter(|_| dirty > 0),
        ]
        .into_iter()
        .flatten()
        .max();
        PersistStatus {
            connected: self.shared.stats.connected.load(Ordering::Relaxed),
            queue_depth: self.tx.len(),
            dirty,
            behind,
            lagging: behind.is_some_and(|b| b > self.shared.behind_warning),
            last_error: self.shared.last_error.lock().clone(),
        }
    }
}

impl std::fmt::Debug for PersistObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersistObserver")
    }
}

/// Why a recovery read nothing usable.
#[derive(Debug, Error)]
pub enum RecoverError {
    /// Redis could not be reached or answered with an error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chunk listed in the manifest is missing.
    #[error("snapshot generation {generation} is incomplete: chunk {chunk} is missing")]
    Incomplete {
        /// The generation.
        generation: u64,
        /// The missing chunk.
        chunk: usize,
    },
}

/// What [`recover_with`] builds from the recovered state: a [`Graph`], as a rule.
pub trait Restore {
    /// About `objects` objects are coming (told once, before the first of them).
    fn reserve(&mut self, objects: usize);
    /// One change of the recovered state.
    fn apply(&mut self, change: Change);
}

impl Restore for Graph {
    fn reserve(&mut self, objects: usize) {
        Graph::reserve(self, objects);
    }

    fn apply(&mut self, change: Change) {
        Graph::apply(self, change);
    }
}

/// The most objects recovery reserves room for up front (16 M; more are still built, growing as
/// they come).
const RESERVE_MAX: usize = 1 << 24;

/// Builds nothing: [`recover`] returns the objects only.
struct Nothing;

impl Restore for Nothing {
    fn reserve(&mut self, _: usize) {}
    fn apply(&mut self, _: Change) {}
}

/// Reads the newest complete snapshot and the log entries after it. Nothing is deleted or
/// changed; unreadable data is reported, not touched.
pub fn recover(cfg: &RedisConfig) -> Result<Recovered, RecoverError> {
    recover_with(cfg, &mut Nothing)
}

/// [`recover`], handing every change of the recovered state to `into` as soon as it is read
/// (told first how many objects to expect). A graph built from these changes is ready when this
/// returns. On an error, what `into` received must be discarded.
///
/// The log is read first and indexed on all cores: the last operation on each object it
/// touches. Replaying it in order on top of the snapshot built every object the log changed
/// twice or more (at a million objects with the longest log the writer keeps, 1.4 M states
/// replayed one by one took recovery from 4 to 13 s). Only those last states are decoded, on
/// their own threads, a unit at a time in an order that groups them by namespace. The
/// snapshot's chunks are read and decoded on other threads meanwhile, except for the objects the
/// log replaced or deleted, which are only walked over. This thread builds from both as they
/// come (the snapshot's chunks in their stored order) and decodes a unit of the log itself when
/// nothing is ready: the graph is built while the rest is decoded, whatever order the log's
/// states are in.
pub fn recover_with(cfg: &RedisConfig, into: &mut impl Restore) -> Result<Recovered, RecoverError> {
    let mut store = writer::connect(cfg)?;
    let mut out = Recovered {
        log_id: "0-0".into(),
        ..Recovered::default()
    };
    let manifest = match store.current()? {
        Some(generation) => Some(store.manifest(generation)?),
        None => None,
    };
    if let Some(m) = &manifest {
        out.log_id = m.log_id.clone();
        out.from_snapshot = true;
        out.snapshot_generation = Some(m.generation);
        out.graph_generation = m.graph_generation;
    }
    // The log's index first, on all cores.
    let started = Instant::now();
    let log = read_log(&mut store, out.log_id.clone())?;
    out.log_took = started.elapsed();
    out.log_states = log.states;
    out.log_objects = log.last.len();
    // The manifest's count is checked against the chunks only once they are read: as a hint for
    // reserving, it is capped, so that a wrong count cannot ask for an impossible allocation.
    let expected = manifest
        .as_ref()
        .map_or(0, |m| usize::try_from(m.objects).unwrap_or(0))
        .min(RESERVE_MAX)
        .max(log.last.len());
    into.reserve(expected);
    let mut objects = Vec::with_capacity(expected);
    let mut put = |o: &Arc<Object>| {
        into.apply(Change::Upsert(o.clone()));
        objects.push(o.clone());
    };
    log.ready.iter().for_each(&mut put);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (units_tx, units) = crossbeam_channel::unbounded();
        for _ in 0..writer::cores().saturating_sub(1).max(1) {
            let (log, stop, units_tx) = (&log, &stop, units_tx.clone());
            s.spawn(move || {
                while let Some(unit) = log.claim().filter(|_| !stop.load(Ordering::Relaxed)) {
                    let decoded = log.decode(unit);
                    let failed = decoded.is_err();
                    if units_tx.send(decoded).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(units_tx);
        let chunks = match &manifest {
            Some(m) => read_chunks(s, cfg, m, &log.last, &stop),
            None => crossbeam_channel::never(),
        };
        let built = build(&log, manifest.as_ref(), &units, &chunks, &mut put);
        if built.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        built
    })?;
    if let Some(id) = log.last_id {
        out.log_id = id;
        out.graph_generation = log.graph_generation;
    }
    out.log_batches = log.entries;
    out.objects = objects;
    Ok(out)
}

/// A decoded unit of the log's states, as its decoding threads send it.
type DecodedUnit = Result<Vec<Arc<Object>>, RecoverError>;

/// A decoded chunk of the snapshot and its number, as its reading threads send it.
type DecodedChunk = Result<(usize, Vec<format::ChunkEntry>), RecoverError>;

/// [`recover_with`]'s building: hands to `put` the log's decoded units and the snapshot's chunks
/// (in their order) as they arrive, until both are done; decodes a unit of the log itself when
/// neither has anything ready.
fn build(
    log: &LogIndex,
    manifest: Option<&Manifest>,
    units: &Receiver<DecodedUnit>,
    chunks: &Receiver<DecodedChunk>,
    put: &mut impl FnMut(&Arc<Object>),
) -> Result<(), RecoverError> {
    let mut select = crossbeam_channel::Select::new();
    let from_log = select.recv(units);
    let from_snapshot = select.recv(chunks);
    let mut open = 2;
    if manifest.is_none() {
        select.remove(from_snapshot);
        open = 1;
    }
    // Chunks arrive in any order; they are built in order.
    let mut waiting = std::collections::BTreeMap::new();
    let (mut due, mut read) = (0, 0u64);
    while open > 0 {
        let ready = match select.try_select() {
            Ok(ready) => ready,
            Err(_) => match log.claim() {
                Some(unit) => {
                    log.decode(unit)?.iter().for_each(&mut *put);
                    continue;
                }
                None => select.select(),
            },
        };
        if ready.index() == from_log {
            match ready.recv(units) {
                Ok(unit) => unit?.iter().for_each(&mut *put),
                Err(_) => {
                    select.remove(from_log);
                    open -= 1;
                }
            }
        } else {
            match ready.recv(chunks) {
                Ok(chunk) => {
                    let (i, entries) = chunk?;
                    waiting.insert(i, entries);
                    while let Some(entries) = waiting.remove(&due) {
                        read += entries.len() as u64;
                        for entry in &entries {
                            if let format::ChunkEntry::Decoded(o) = entry {
                                put(o);
                            }
                        }
                        due += 1;
                    }
                }
                Err(_) => {
                    select.remove(from_snapshot);
                    open -= 1;
                }
            }
        }
    }
    if let Some(m) = manifest {
        if due < m.chunks.len() {
            return Err(RecoverError::Incomplete {
                generation: m.generation,
                chunk: due,
            });
        }
        if read != m.objects {
            return Err(StoreError::Foreign(format!(
                "snapshot {} lists {} objects but holds {read}",
                m.generation, m.objects
            ))
            .into());
        }
    }
    Ok(())
}

/// The log after a snapshot, read and indexed but not decoded.
#[derive(Default)]
struct LogIndex {
    /// Each part read, unpacked, with its name for errors. A part is let go of as soon as later
    /// parts replaced every state in it: only parts with states to decode stay (at most the
    /// whole log, about twice a snapshot's bytes before compression).
    parts: Vec<(String, Vec<u8>)>,
    /// How many states still to decode each part holds (last states, not yet replaced).
    live: Vec<usize>,
    /// The last operation on each object the log touches, and the part it is in.
    last: LogOps,
    /// The last entry read, and the graph generation it recorded.
    last_id: Option<String>,
    graph_generation: u64,
    entries: usize,
    states: usize,
    /// The states to decode (those in `last`) grouped by namespace: their part and where they
    /// lie in it. Decoded [`UNIT`] at a time, in this order.
    wanted: Vec<(usize, std::ops::Range<usize>)>,
    /// The states in `last` that the index decoded already (a part it could not walk).
    ready: Vec<Arc<Object>>,
    /// The next unit of `wanted` to [`claim`](LogIndex::claim).
    next: AtomicUsize,
}

/// The last operation on each object, by uid, and the log part it is in.
///
/// The uids of UUID form (nearly all) key their own table as 16 bytes: 24 bytes an entry, with
/// the operations in a vector beside it, against 64 in a table keyed by `Uid` holding them. At a
/// million objects that is 50 instead of 130 MB of table, which the chunks' walk probes once for
/// every object of the snapshot, and which recovery fills on fresh memory.
#[derive(Default)]
struct LogOps {
    uuids: rustc_hash::FxHashMap<[u8; 16], usize>,
    texts: rustc_hash::FxHashMap<Box<str>, usize>,
    ops: Vec<(usize, format::LogOp)>,
}

impl LogOps {
    fn reserve(&mut self, additional: usize) {
        self.uuids.reserve(additional);
        self.ops.reserve(additional);
    }

    /// Records `op` in `part` as the last operation on `uid`, returning the one it replaces.
    fn insert(
        &mut self,
        uid: Uid,
        part: usize,
        op: format::LogOp,
    ) -> Option<(usize, format::LogOp)> {
        let next = self.ops.len();
        let at = match uid {
            Uid::Uuid(bytes) => *self.uuids.entry(bytes).or_insert(next),
            Uid::Text(text) => *self.texts.entry(text).or_insert(next),
        };
        if at == next {
            self.ops.push((part, op));
            None
        } else {
            Some(std::mem::replace(&mut self.ops[at], (part, op)))
        }
    }

    fn contains(&self, uid: &Uid) -> bool {
        match uid {
            Uid::Uuid(bytes) => self.uuids.contains_key(bytes),
            Uid::Text(text) => self.texts.contains_key(text),
        }
    }

    /// Objects the log touches.
    fn len(&self) -> usize {
        self.ops.len()
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Log entries read per round trip: a few tens of megabytes at most.
const LOG_ENTRIES_PER_READ: usize = 16;

/// States of the log decoded together.
const UNIT: usize = 2048;

/// Reads the log after `after` and indexes it: the last operation on each object, and where its
/// state lies. One thread reads the log from Redis and indexes each round trip's parts on all
/// cores while this one collects the previous round trip's. Only the last states are decoded,
/// later ([`LogIndex::decode`]), in an order that groups them by namespace, as a snapshot's
/// objects are: a graph is built about three times faster so than from objects in the order
/// they changed (see `writer::grouped_by_namespace`).
fn read_log(store: &mut store::Store, after: String) -> Result<LogIndex, RecoverError> {
    let mut log = LogIndex::default();
    std::thread::scope(|s| -> Result<(), RecoverError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        s.spawn(move || {
            let mut after = after;
            loop {
                let entries = match store.log_after(&after, LOG_ENTRIES_PER_READ) {
                    Ok(entries) => entries,
                    Err(e) => {
                        let _ = tx.send(Err(RecoverError::from(e)));
                        return;
                    }
                };
                let Some((last_id, _)) = entries.last() else {
                    return;
                };
                after.clone_from(last_id);
                let count = entries.len();
                let mut read = Vec::new();
                for (id, entry_parts) in entries {
                    for (i, (bytes, crc)) in entry_parts.into_iter().enumerate() {
                        read.push((format!("log entry {id} part {i}"), bytes, crc));
                    }
                }
                let indexed = writer::parallel_map(read.iter(), |(what, bytes, crc)| {
                    format::index_batch(bytes, *crc, what)
                });
                let names = read.into_iter().map(|(what, _, _)| what);
                let round = (after.clone(), count, names.zip(indexed).collect::<Vec<_>>());
                if tx.send(Ok(round)).is_err() {
                    return;
                }
            }
        });
        for round in rx {
            let (last_id, entries, indexed) = round?;
            log.entries += entries;
            for (what, index) in indexed {
                log.add(what, index.map_err(StoreError::from)?);
            }
            log.last_id = Some(last_id);
        }
        Ok(())
    })?;
    let mut wanted = Vec::new();
    for (part, op) in &log.last.ops {
        match op {
            format::LogOp::At { range, group } => wanted.push((*group, *part, range.clone())),
            format::LogOp::Decoded(o) => log.ready.push(o.clone()),
            format::LogOp::Deleted => {}
        }
    }
    wanted.sort_unstable_by_key(|(group, part, range)| (*group, *part, range.start));
    log.wanted = wanted
        .into_iter()
        .map(|(_, part, range)| (part, range))
        .collect();
    Ok(log)
}

impl LogIndex {
    /// Adds the next part of the log, indexed; lets go of the parts that no longer hold any
    /// object's last state.
    fn add(&mut self, what: String, index: format::BatchIndex) {
        let part = self.parts.len();
        self.graph_generation = self.graph_generation.max(index.graph_generation);
        self.states += index.ops.len();
        self.parts.push((what, index.packed));
        self.live.push(0);
        self.last.reserve(index.ops.len());
        for (uid, op) in index.ops {
            if matches!(op, format::LogOp::At { .. }) {
                self.live[part] += 1;
            }
            if let Some((before, format::LogOp::At { .. })) = self.last.insert(uid, part, op) {
                self.live[before] -= 1;
                if self.live[before] == 0 {
                    format::recycle(std::mem::take(&mut self.parts[before].1));
                }
            }
        }
        if self.live[part] == 0 {
            format::recycle(std::mem::take(&mut self.parts[part].1));
        }
    }

    /// The next unit of states to decode that no thread has taken yet.
    fn claim(&self) -> Option<usize> {
        let unit = self.next.fetch_add(1, Ordering::Relaxed);
        (unit * UNIT < self.wanted.len()).then_some(unit)
    }

    /// Decodes the states of `unit`.
    fn decode(&self, unit: usize) -> DecodedUnit {
        let end = self.wanted.len().min((unit + 1) * UNIT);
        self.wanted[unit * UNIT..end]
            .iter()
            .map(|(part, range)| {
                let (what, packed) = &self.parts[*part];
                format::decode_state(packed, range.clone(), what)
                    .map_err(|e| StoreError::from(e).into())
            })
            .collect()
    }
}

/// Starts reading and decoding a generation's chunks, several at a time on separate connections
/// (leaving the objects `known` from the log undecoded), until done or `stop`; the chunks arrive
/// on the channel returned, in any order, and an error ends it.
fn read_chunks<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    cfg: &'scope RedisConfig,
    manifest: &'scope Manifest,
    known: &'scope LogOps,
    stop: &'scope AtomicBool,
) -> Receiver<DecodedChunk> {
    let n = manifest.chunks.len();
    // One core is left to the caller, which builds the graph from the chunks meanwhile.
    let threads = writer::cores().saturating_sub(1).clamp(1, 8).min(n.max(1));
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..threads {
        let (next, tx) = (next.clone(), tx.clone());
        s.spawn(move || {
            let read = || -> Result<(), RecoverError> {
                let mut store = writer::connect(cfg)?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let info = &manifest.chunks[i];
                    let bytes =
                        store
                            .chunk(manifest.generation, i)?
                            .ok_or(RecoverError::Incomplete {
                                generation: manifest.generation,
                                chunk: i,
                            })?;
                    let what = format!("snapshot {} chunk {i}", manifest.generation);
                    let objects = if known.is_empty() {
                        // Nothing to skip (no log after the snapshot, as after a clean
                        // shutdown): decoded in one pass, not walked object by object to find
                        // each one's uid and end first (about 15 % of decoding a chunk).
                        format::decode::<Vec<Arc<Object>>>(&bytes, info.crc32, &what)
                            .map(|v| v.into_iter().map(format::ChunkEntry::Decoded).collect())
                    } else {
                        format::decode_chunk(&bytes, info.crc32, &what, |uid| known.contains(uid))
                    }
                    .map_err(StoreError::from)?;
                    if tx.send(Ok((i, objects))).is_err() {
                        return Ok(());
                    }
                }
            };
            if let Err(e) = read() {
                stop.store(true, Ordering::Relaxed);
                let _ = tx.send(Err(e));
            }
        });
    }
    rx
}

/// Connects to Redis (an error when it does not answer) and returns warnings about how it keeps
/// data (nothing on disk, an evicting policy).
pub fn hygiene(cfg: &RedisConfig) -> Result<Vec<String>, StoreError> {
    Ok(writer::connect(cfg)?.hygiene())
}

/// Why a backup could not be made or restored.
#[derive(Debug, Error)]
pub enum BackupError {
    /// Reading Redis failed.
    #[error(transparent)]
    Recover(#[from] RecoverError),
    /// Writing Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Nothing is stored under the prefix.
    #[error("nothing is stored under {prefix:?} (no snapshot and no log)")]
    Empty {
        /// The key prefix.
        prefix: String,
    },
    /// The file is not a readable snapshot.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: FormatError,
    },
}

/// Writes the state Redis holds (current snapshot + log) to a file; returns how many objects.
pub fn export(cfg: &RedisConfig, path: &std::path::Path) -> Result<usize, BackupError> {
    let r = recover(cfg)?;
    if !r.from_snapshot && r.log_batches == 0 {
        return Err(BackupError::Empty {
            prefix: cfg.prefix.clone(),
        });
    }
    let file = format::SnapshotFile {
        format: FORMAT_VERSION,
        created_ms: unix_ms(),
        prefix: cfg.prefix.clone(),
        objects: r.objects,
    };
    // Written beside the target, then renamed: a crash never leaves half a backup under its name.
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, format::encode_file(&file))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| BackupError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(file.objects.len())
}

/// Reads the objects of a snapshot file.
pub fn read_file(path: &std::path::Path) -> Result<Vec<Arc<Object>>, BackupError> {
    let bytes = std::fs::read(path).map_err(|source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    format::decode_file(&bytes)
        .map(|f| f.objects)
        .map_err(|source| BackupError::Format {
            path: path.to_path_buf(),
            source,
        })
}

/// Whether the file at `path` is a snapshot file (by its first bytes).
pub fn is_snapshot_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && format::is_file(&magic)
}

/// Writes a snapshot file into Redis as a new current generation, superseding the log and any
/// older generation (removed only after the switch).
pub fn import(cfg: &RedisConfig, path: &std::path::Path) -> Result<SnapshotReport, BackupError> {
    let objects = read_file(path)?;
    let started = Instant::now();
    let mut store = writer::connect(cfg)?;
    let refs = writer::grouped_by_namespace(objects.iter());
    let log_id = store.last_log_id()?;
    let (generation, objects, bytes) =
        writer::write_generation(&mut store, &refs, 0, log_id, writer::How::FULL)?;
    Ok(SnapshotReport {
        generation,
        objects,
        bytes,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_index_keeps_the_last_operation_on_each_uid_of_either_form() {
        let uuid = Uid::parse("3f2c1a9e-8b7d-4c6e-a5f4-000000000001");
        let text = Uid::parse("not-a-uuid");
        assert!(matches!(text, Uid::Text(_)), "the test needs a text uid");
        let mut ops = LogOps::default();
        assert!(ops.is_empty());
        assert!(
            ops.insert(uuid.clone(), 0, format::LogOp::Deleted)
                .is_none()
        );
        assert!(
            ops.insert(text.clone(), 0, format::LogOp::Deleted)
                .is_none()
        );
        let at = |start| format::LogOp::At {
            range: start..start + 1,
            group: 0,
        };
        // A later operation replaces the earlier one and hands it back, for either form.
        let before = ops.insert(uuid.clone(), 2, at(7));
        assert!(
            matches!(before, Some((0, format::LogOp::Deleted))),
            "{before:?}"
        );
        let before = ops.insert(text.clone(), 3, at(9));
        assert!(
            matches!(before, Some((0, format::LogOp::Deleted))),
            "{before:?}"
        );
        let before = ops.insert(uuid.clone(), 4, format::LogOp::Deleted);
        assert!(
            matches!(before, Some((2, format::LogOp::At { .. }))),
            "{before:?}"
        );
        assert_eq!(ops.len(), 2);
        assert!(ops.contains(&uuid) && ops.contains(&text));
        assert!(!ops.contains(&Uid::parse("3f2c1a9e-8b7d-4c6e-a5f4-000000000002")));
        assert!(!ops.contains(&Uid::parse("another")));
        let last: Vec<_> = ops
            .ops
            .iter()
            .map(|(part, op)| (*part, matches!(op, format::LogOp::Deleted)))
            .collect();
        assert_eq!(last, [(4, true), (3, false)]);
    }
}
