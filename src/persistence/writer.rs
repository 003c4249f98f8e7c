//! The Redis writer thread: coalesces the graph's changes per object and writes them to the log
//! in batches, takes snapshots from its own image of what Redis holds, and survives Redis being
//! away.
//!
//! Ordering. The graph's writer sends each change with the graph generation it produced, while
//! it still holds the graph's write lock, so the channel carries changes in generation order.
//! When the channel is full, the change's uid goes into the shared dirty set instead, and the
//! graph's writer sends the object's current state once the channel has room again
//! (`PersistSink::resend_dirty`), still in order. This thread never reads the graph: it shares no
//! lock of ours with ingest or the queries. It runs at the process's own priority (see `run`);
//! a background snapshot encodes in the idle scheduling class (see [`Pace::Background`]).
//!
//! Batches. Everything pending is written as one log entry (one XADD: atomic), so every state the
//! log acknowledges is the graph's state at some generation. Pending changes are coalesced per uid
//! (last state wins; a delete replaces an upsert), so memory is bounded by the graph, not by the
//! number of changes, however long Redis is away. When too much is pending for one entry (after a
//! long outage), a snapshot is written instead.
//!
//! Snapshots are taken from `mirror`, this thread's image of what Redis acknowledged, so taking
//! one never pauses ingest or queries; periodic ones are then encoded and written by a thread of
//! their own while this one goes on writing the log (see [`Running`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rand::Rng;
use rustc_hash::FxHashMap;

use super::format::{self, Batch, ChunkInfo, FORMAT_VERSION, Manifest, Op};
use super::store::{RedisConfig, Store, StoreError};
use super::{Msg, PersistConfig, Shared, SnapshotReport, Superseded};
use crate::ingest::{GraphHandle, unix_ms};
use crate::model::{Object, Uid};

/// How long the connection may sit idle before a PING checks it: a Redis that restarted (and may
/// have lost its last second of writes) is noticed, reconnected to and repaired by a snapshot
/// even when no change is waiting to be written (a restart is told by Redis's `run_id`).
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Objects per snapshot chunk: chunks load in parallel.
pub(super) const CHUNK_OBJECTS: usize = 25_000;

/// The log may always grow to this many bytes before a snapshot replaces it (see `tick`).
const LOG_BYTES_MIN: u64 = 64 * 1024 * 1024;

/// Operations per part of a log entry, at least: below this, one thread encodes the entry.
const PART_OPS: usize = 2_000;

/// A pending change: the object's state (`None`: deleted).
type Pending = Option<Arc<Object>>;

/// A flush or a snapshot asked for, answered once no overflowed object is left to be sent again
/// (see [`Writer::answer`]).
enum Request {
    Flush(crossbeam_channel::Sender<Result<(), String>>),
    Snapshot(crossbeam_channel::Sender<Result<SnapshotReport, String>>),
}

pub(super) struct Writer {
    cfg: PersistConfig,
    rx: Receiver<Msg>,
    graph: GraphHandle,
    shared: Arc<Shared>,
    store: Option<Store>,
    /// What Redis holds, as far as this thread knows (acknowledged writes).
    mirror: FxHashMap<Uid, Arc<Object>>,
    pending: FxHashMap<Uid, Pending>,
    /// Flushes and snapshots asked for and not answered yet.
    waiting: Vec<Request>,
    /// Versions replaced in `pending` or `mirror`, to be sent back to the graph's writer, which
    /// frees them (see `PersistSink::drop_superseded`).
    replaced: Superseded,
    superseded: crossbeam_channel::Sender<Superseded>,
    /// The highest generation processed.
    seen_generation: u64,
    /// The last log entry written ("0-0" before any).
    last_log_id: String,
    /// When to try connecting again.
    reconnect: Backoff,
    /// A failed background snapshot is retried on a backoff of its own: its failure (its own
    /// connection refused, Redis out of memory) says nothing about the writer's connection,
    /// which goes on writing the log.
    snapshot_retry: Backoff,
    last_snapshot: Instant,
    snapshot_due: bool,
    /// Redis may have lost acknowledged writes (it restarted): a snapshot must make it whole
    /// again.
    repair_due: bool,
    /// The `run_id` of the Redis last connected to (see [`Store::run_id`]).
    redis_run: Option<String>,
    /// The last time Redis answered.
    last_contact: Instant,
    /// Whether the snapshot after the source's first full load was taken.
    synced_snapshot: bool,
    /// Bytes appended to the log since the last snapshot, and that snapshot's size.
    log_bytes_since_snapshot: u64,
    last_snapshot_bytes: u64,
    /// The snapshot being written in the background, if any.
    running: Option<Running>,
}

/// A snapshot written by a thread of its own, on a connection of its own, while this thread
/// goes on writing the log: the image is the mirror after a flush, so it is exactly the log up
/// to `log_id`, and the log entries written meanwhile follow it (the switch trims only up to
/// `log_id`).
struct Running {
    thread: std::thread::JoinHandle<Result<(u64, u64, u64), StoreError>>,
    started: Instant,
    /// The log bytes the image includes (trimmed by its switch).
    log_bytes: u64,
    /// Whether it repairs a Redis that may have lost writes.
    repair: bool,
    /// Set once it must stop waiting for idle cores (see [`Pace::Background`]).
    hurry: Arc<AtomicBool>,
}

impl Running {
    /// Tells the snapshot to encode at the process's priority from its next round trip on.
    fn hurry(&self, shared: &Shared, why: &str) {
        if self.thread.is_finished() || self.hurry.swap(true, Ordering::Relaxed) {
            return;
        }
        shared
            .stats
            .snapshots_hurried
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            seconds = self.started.elapsed().as_secs_f64(),
            "persistence: the background snapshot no longer waits for idle cores: {why}"
        );
    }
}

impl Writer {
    pub(super) fn new(
        cfg: PersistConfig,
        rx: Receiver<Msg>,
        graph: GraphHandle,
        shared: Arc<Shared>,
        superseded: crossbeam_channel::Sender<Superseded>,
        restored: super::Recovered,
    ) -> Writer {
        Writer {
            reconnect: Backoff::new(cfg.reconnect_min, cfg.reconnect_max),
            snapshot_retry: Backoff::new(cfg.reconnect_min, cfg.reconnect_max),
            cfg,
            rx,
            graph,
            shared,
            store: None,
            mirror: restored
                .objects
                .into_iter()
                .map(|o| (o.uid.clone(), o))
                .collect(),
            pending: FxHashMap::default(),
            waiting: Vec::new(),
            replaced: Vec::new(),
            superseded,
            seen_generation: 0,
            last_log_id: restored.log_id,
            last_snapshot: Instant::now(),
            snapshot_due: false,
            repair_due: false,
            redis_run: None,
            last_contact: Instant::now(),
            synced_snapshot: false,
            log_bytes_since_snapshot: 0,
            last_snapshot_bytes: 0,
            running: None,
        }
    }

    pub(super) fn run(mut self) {
        // At the process's own priority, as its encoding threads and snapshots are. In a lower
        // one (the idle class or nice 19), a heavy query's p99 under change load was several
        // times higher than without persistence, against about the same at this one
        // (BENCHMARKS.md, (b)); why was not found (not the graph's lock, nor, it seems, the
        // allocator's arenas).
        loop {
            match self.rx.recv_timeout(self.cfg.flush_interval) {
                Ok(msg) => {
                    if !self.handle(msg) {
                        break;
                    }
                    if !self.gather() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if !self.answer() {
                break;
            }
            self.tick();
        }
        self.finish();
    }

    /// Collects changes for one log entry: for one flush interval after the first, or until a
    /// batch of distinct objects is pending. Under a steady stream this writes one entry per
    /// interval instead of one per burst (at 20 K changes/s, ~20 instead of ~600 commands a
    /// second), and coalesces repeated changes to an object. It sleeps rather than waking for
    /// every message, the channel holding what arrives meanwhile, for as long as the rate it
    /// just saw allows (see [`nap`]): at 20 K changes/s about three wake-ups an interval instead
    /// of one every tenth of it. Returns false when the thread should stop.
    fn gather(&mut self) -> bool {
        let deadline = Instant::now() + self.cfg.flush_interval;
        // While Redis is away nothing can be written: changes coalesce in memory for the whole
        // interval instead of ending the batch early.
        let batch = if self.store.is_some() {
            self.cfg.batch_size
        } else {
            usize::MAX
        };
        let (mut drained, mut slept) = (Instant::now(), Duration::ZERO);
        loop {
            // The deadline is also checked while messages keep coming: a stream faster than
            // this thread drains must not keep it from writing (or reconnecting) forever.
            let mut taken = 0u32;
            while self.pending.len() < batch && !self.answerable() {
                match self.rx.try_recv() {
                    Ok(msg) => {
                        if !self.handle(msg) {
                            return false;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return false,
                }
                taken += 1;
                if taken.is_multiple_of(1024) && Instant::now() >= deadline {
                    return true;
                }
            }
            let now = Instant::now();
            if self.pending.len() >= batch || now >= deadline || self.answerable() {
                return true;
            }
            // Room for a batch's worth of messages, or a quarter of the channel, whichever is
            // less: the stream may speed up while this thread sleeps.
            let room = (batch - self.pending.len()).min(self.cfg.channel_capacity / 4);
            slept = nap(taken, now - drained, slept, room, deadline - now);
            drained = now;
            std::thread::sleep(slept);
        }
    }

    /// Applies one message; returns false when the thread should stop.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Upsert(obj, g) => self.note(obj.uid.clone(), g, Some(obj)),
            Msg::Delete(uid, g) => self.note(uid, g, None),
            Msg::Flush(reply) => self.waiting.push(Request::Flush(reply)),
            Msg::Snapshot(reply) => self.waiting.push(Request::Snapshot(reply)),
            Msg::Stop => return false,
        }
        true
    }

    /// The channel is in generation order, so the last message about an object is its newest
    /// state.
    fn note(&mut self, uid: Uid, g: u64, state: Option<Arc<Object>>) {
        self.seen_generation = self.seen_generation.max(g);
        if self.pending.is_empty() {
            self.shared
                .pending_since_ms
                .store(unix_ms(), Ordering::Relaxed);
        }
        if let Some(Some(old)) = self.pending.insert(uid, state) {
            keep_last(old, &mut self.replaced);
        }
    }

    /// Whether a flush or snapshot asked for can be answered now (see [`Writer::answer`]).
    fn answerable(&self) -> bool {
        !self.waiting.is_empty() && self.shared.dirty_count.load(Ordering::Acquire) == 0
    }

    /// Answers the flushes and snapshots asked for. "Done" means Redis holds the graph as it was
    /// when asked, including objects that overflowed the channel: so they are answered only once
    /// the graph's writer has sent every overflowed object again. Those sends precede the dirty
    /// count it then stores, so they are in the channel, and are taken first. Returns false when
    /// the thread should stop.
    fn answer(&mut self) -> bool {
        if !self.answerable() {
            return true;
        }
        for _ in 0..self.rx.len() {
            match self.rx.try_recv() {
                Ok(msg) => {
                    if !self.handle(msg) {
                        return false;
                    }
                }
                Err(_) => break,
            }
        }
        for request in std::mem::take(&mut self.waiting) {
            match request {
                Request::Flush(reply) => {
                    // A repair is part of "Redis holds the graph".
                    if self.running.as_ref().is_some_and(|r| r.repair) {
                        self.wait_snapshot();
                    }
                    let r = self.ensure_connected().and_then(|()| {
                        if self.repair_due {
                            self.snapshot().map(|_| ())
                        } else {
                            self.flush()
                        }
                    });
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                }
                Request::Snapshot(reply) => {
                    let r = self
                        .ensure_connected()
                        .and_then(|()| self.flush())
                        .and_then(|()| self.snapshot());
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                }
            }
        }
        true
    }

    /// Periodic work: overflowed objects, the flush, snapshots, reconnection.
    fn tick(&mut self) {
        if !self.synced_snapshot && self.graph.is_synced() {
            // The first complete image, so that the next start reads one snapshot instead of the
            // whole log.
            self.synced_snapshot = true;
            self.snapshot_due = true;
        }
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.thread.is_finished())
        {
            self.wait_snapshot();
        }
        if self.ensure_connected().is_err() {
            return;
        }
        let interval = self.cfg.snapshot_interval;
        // Besides the schedule, a snapshot once the log outgrows twice the last snapshot: Redis
        // then holds about three images' worth, however fast the cluster changes, and recovery
        // replays about two images' worth of log at most (plus what is written while a
        // background snapshot runs: at most half the limit before it hurries).
        let limit = (super::LOG_LIMIT_SNAPSHOTS * self.last_snapshot_bytes).max(LOG_BYTES_MIN);
        let log_full = self.log_bytes_since_snapshot > limit;
        if let Some(r) = &self.running
            && self.log_bytes_since_snapshot.saturating_sub(r.log_bytes) > limit / 2
        {
            r.hurry(&self.shared, "the log grew by half its limit meanwhile");
        }
        let periodic =
            log_full || (!interval.is_zero() && self.last_snapshot.elapsed() >= interval);
        // A snapshot replaces the log entry only when it costs about as much: when a quarter of
        // the graph is pending (after a long outage). Below that, one (multi-part) entry is far
        // cheaper; snapshotting whenever a busy channel overflowed would spiral, as changes keep
        // overflowing while each snapshot of a large graph is written.
        let too_much = self.cfg.max_log_entry.max(self.mirror.len() / 4);
        let result = if self.pending.len() > too_much {
            // Too much for one log entry: a snapshot of everything instead.
            self.snapshot().map(|_| ())
        } else if (self.snapshot_due || self.repair_due || periodic)
            && self.running.is_none()
            && self.snapshot_retry.due()
        {
            self.flush().and_then(|()| self.start_snapshot())
        } else if self.pending.is_empty() {
            if self.last_contact.elapsed() < KEEPALIVE {
                return;
            }
            self.store.as_mut().map_or(Ok(()), Store::ping)
        } else {
            self.flush()
        };
        match result {
            Ok(()) => self.last_contact = Instant::now(),
            Err(e) => self.failed(&e),
        }
    }

    fn ensure_connected(&mut self) -> Result<(), StoreError> {
        if self.store.is_some() {
            return Ok(());
        }
        if !self.reconnect.due() {
            return Err(StoreError::Foreign("waiting to reconnect".into()));
        }
        match connect(&self.cfg.redis) {
            Ok(mut store) => {
                let run = store.run_id();
                if self
                    .shared
                    .stats
                    .ever_connected
                    .swap(true, Ordering::Relaxed)
                {
                    self.shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    // A Redis that restarted may have lost acknowledged writes (a crash with AOF
                    // every second; a failover to a replica behind its master): a snapshot makes
                    // it exactly the graph again. One that did not (the connection broke: a
                    // timeout, the network, a read interrupted when this process was stopped and
                    // continued) holds every write it acknowledged, and what it did not
                    // acknowledge is still pending: an image of the whole graph would be wasted.
                    let restarted = run.is_none() || run != self.redis_run;
                    tracing::info!(restarted, "persistence: reconnected to Redis");
                    self.repair_due |= restarted;
                }
                self.redis_run = run;
                self.store = Some(store);
                self.shared.stats.connected.store(true, Ordering::Relaxed);
                self.reconnect.succeeded();
                Ok(())
            }
            Err(e) => {
                self.failed(&e);
                Err(e)
            }
        }
    }

    /// Records a failure: disconnects, and schedules the next attempt with capped exponential
    /// backoff and jitter.
    fn failed(&mut self, e: &StoreError) {
        let was_connected = self.shared.stats.connected.swap(false, Ordering::Relaxed);
        if was_connected {
            tracing::warn!(error = %e, "persistence: Redis unavailable; keeping changes in memory and retrying");
        }
        self.error(e);
        self.store = None;
        self.reconnect.failed();
    }

    /// Counts `e` and keeps it as the last error (`/metrics`, `/health`).
    fn error(&self, e: &StoreError) {
        self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        *self.shared.last_error.lock() = Some(e.to_string());
    }

    /// Writes everything pending as one log entry.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| StoreError::Foreign("not connected".into()))?;
        let started = Instant::now();
        let ops: Vec<Op> = self
            .pending
            .iter()
            .map(|(uid, state)| match state {
                Some(o) => Op::Upsert(o.clone()),
                None => Op::Delete(uid.clone()),
            })
            .collect();
        // Encoding is most of the cost of a write: a large batch is encoded in parts, on all
        // cores, and the parts are written as one entry.
        let parts = ops.len().div_ceil(PART_OPS).clamp(1, cores());
        let generation = self.seen_generation;
        let encoded = parallel_map(ops.chunks(ops.len().div_ceil(parts).max(1)), |ops| {
            format::encode(&Batch {
                format: FORMAT_VERSION,
                graph_generation: generation,
                ops: format::Yielding(ops),
            })
        });
        let size: usize = encoded.iter().map(|(b, _)| b.len()).sum();
        let id = store.append(&encoded)?;
        let n = self.pending.len();
        self.commit_pending();
        self.last_log_id = id;
        let stats = &self.shared.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.objects.fetch_add(n as u64, Ordering::Relaxed);
        stats.log_bytes.fetch_add(size as u64, Ordering::Relaxed);
        self.log_bytes_since_snapshot += size as u64;
        stats
            .flush_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.last_flush_ms.store(unix_ms(), Ordering::Relaxed);
        Ok(())
    }

    /// Writes the mirror, with whatever is pending applied, as a new snapshot generation and
    /// switches to it, while this thread waits (for a snapshot asked for, a repair a flush waits
    /// for, or one that replaces a log entry too large to write). The mirror changes only once Redis has acknowledged the
    /// switch.
    fn snapshot(&mut self) -> Result<SnapshotReport, StoreError> {
        // One snapshot at a time: another could remove this one's generation as it is written.
        self.wait_snapshot();
        let store = self
            .store
            .as_mut()
            .ok_or_else(|| StoreError::Foreign("not connected".into()))?;
        let started = Instant::now();
        let image = image(&self.mirror, &self.pending);
        let (graph_generation, log_id) = (self.seen_generation, self.last_log_id.clone());
        // On this thread, so that its order relative to the log is unchanged.
        let how = How {
            chunk_objects: self.cfg.snapshot_chunk_objects,
            ..How::FULL
        };
        let written = write_image(store, &image, graph_generation, log_id, how);
        for o in image {
            keep_last(o, &mut self.replaced);
        }
        self.give_back();
        let written = written?;
        self.commit_pending();
        self.snapshot_due = false;
        self.repair_due = false;
        Ok(self.snapshot_written(written, started, self.log_bytes_since_snapshot))
    }

    /// Starts a snapshot in the background (see [`Running`]); everything pending must have been
    /// flushed. Taking the image costs this thread one pass over the mirror; encoding and
    /// writing it do not hold up the log.
    fn start_snapshot(&mut self) -> Result<(), StoreError> {
        debug_assert!(self.pending.is_empty(), "flushed first");
        let image = image(&self.mirror, &self.pending);
        let (graph_generation, log_id) = (self.seen_generation, self.last_log_id.clone());
        let redis = self.cfg.redis.clone();
        let superseded = self.superseded.clone();
        let (chunk_objects, switch_delay) = (
            self.cfg.snapshot_chunk_objects,
            self.cfg.snapshot_switch_delay,
        );
        let hurry = Arc::new(AtomicBool::new(false));
        let flag = hurry.clone();
        let thread = std::thread::Builder::new()
            .name("astrolabe-snapshot".into())
            .spawn(move || {
                let how = How {
                    pace: Pace::Background(&flag),
                    chunk_objects,
                    switch_delay,
                };
                let written = connect(&redis).and_then(|mut store| {
                    write_image(&mut store, &image, graph_generation, log_id, how)
                });
                // Most of the image is still in the mirror; what was replaced meanwhile is freed by
                // the graph's writer, as the writer's own replaced versions are.
                let mut last = Vec::new();
                for o in image {
                    keep_last(o, &mut last);
                }
                send_back(&superseded, last);
                written
            })
            .map_err(|e| StoreError::Foreign(format!("cannot start a snapshot thread: {e}")))?;
        self.running = Some(Running {
            thread,
            started: Instant::now(),
            log_bytes: self.log_bytes_since_snapshot,
            repair: self.repair_due,
            hurry,
        });
        self.snapshot_due = false;
        self.repair_due = false;
        self.shared
            .stats
            .snapshot_running
            .store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the background snapshot, if one is running, and records how it ended. A failed
    /// one is retried after a backoff of its own; the writer keeps its connection (when Redis is
    /// gone, the writer's next write finds out).
    fn wait_snapshot(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.hurry(&self.shared, "something waits for it");
        let result = running.thread.join().expect("the snapshot thread panicked");
        self.shared
            .stats
            .snapshot_running
            .store(false, Ordering::Relaxed);
        match result {
            Ok(written) => {
                self.snapshot_written(written, running.started, running.log_bytes);
            }
            Err(e) => {
                let retry = self.snapshot_retry.failed();
                tracing::warn!(error = %e, retry_in = ?retry, "persistence: background snapshot failed; the log goes on, the previous snapshot stays current");
                self.error(&e);
                self.snapshot_due = true;
                self.repair_due |= running.repair;
            }
        }
    }

    /// Records a snapshot that was switched in, which included `log_bytes` of the log.
    fn snapshot_written(
        &mut self,
        (generation, objects, bytes): (u64, u64, u64),
        started: Instant,
        log_bytes: u64,
    ) -> SnapshotReport {
        let report = SnapshotReport {
            generation,
            objects,
            bytes,
            duration: started.elapsed(),
        };
        let stats = &self.shared.stats;
        stats.snapshots.fetch_add(1, Ordering::Relaxed);
        stats.last_snapshot_ms.store(unix_ms(), Ordering::Relaxed);
        stats.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
        stats
            .last_snapshot_micros
            .store(report.duration.as_micros() as u64, Ordering::Relaxed);
        tracing::info!(
            generation,
            objects,
            bytes,
            seconds = report.duration.as_secs_f64(),
            "persistence: snapshot written"
        );
        self.last_snapshot = Instant::now();
        self.snapshot_retry.succeeded();
        self.log_bytes_since_snapshot = self.log_bytes_since_snapshot.saturating_sub(log_bytes);
        self.last_snapshot_bytes = bytes;
        report
    }

    /// Redis acknowledged everything pending: it is now what Redis holds.
    fn commit_pending(&mut self) {
        for (uid, state) in self.pending.drain() {
            // The uids dropped here are not the last references: the versions sent back hold
            // theirs.
            let old = match state {
                Some(o) => self.mirror.insert(uid, o),
                None => self.mirror.remove(&uid),
            };
            if let Some(old) = old {
                keep_last(old, &mut self.replaced);
            }
        }
        self.give_back();
        self.shared.pending_since_ms.store(0, Ordering::Relaxed);
        self.shared
            .stats
            .acked_generation
            .store(self.seen_generation, Ordering::Relaxed);
    }

    /// Sends the versions replaced so far back to the graph's writer to free.
    fn give_back(&mut self) {
        send_back(&self.superseded, std::mem::take(&mut self.replaced));
    }

    /// On stop: what is queued is flushed (best effort; the caller bounds the time).
    fn finish(mut self) {
        self.wait_snapshot();
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Upsert(..) | Msg::Delete(..) = msg {
                self.handle(msg);
            }
        }
        if self.ensure_connected().is_ok()
            && let Err(e) = self.flush()
        {
            self.failed(&e);
        }
        let dirty = self.shared.dirty_count.load(Ordering::Acquire);
        if dirty > 0 {
            // The graph's writer sends them before it stops; it did not stop first.
            tracing::warn!(
                dirty,
                "persistence: stopping with objects that overflowed the channel unwritten; the \
                 source's next full lists repair them"
            );
        }
    }
}

/// Versions sent back to the graph's writer per message: it frees a few messages' worth between
/// two batches (see `PersistSink::drop_superseded`), so that freeing what a snapshot's image
/// held last never stalls it.
pub(super) const GIVE_BACK_CHUNK: usize = 1024;

/// Capped exponential backoff with jitter (0.5 to 1.5 times the delay, so that many servers
/// retrying one Redis spread out).
struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
    next: Instant,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            delay: min,
            next: Instant::now(),
        }
    }

    /// Whether the next attempt may be made.
    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// An attempt failed: the next one waits the delay (with jitter), which then doubles up to
    /// the cap. Returns the wait.
    fn failed(&mut self) -> Duration {
        let wait = self.delay.mul_f64(rand::rng().random_range(0.5..1.5));
        self.next = Instant::now() + wait;
        self.delay = (self.delay * 2).min(self.max);
        wait
    }

    /// An attempt succeeded: the next failure waits the shortest delay again.
    fn succeeded(&mut self) {
        self.delay = self.min;
    }
}

/// Keeps `version` in `last` if this was its last reference (to be freed by the graph's
/// writer); otherwise only lets go of it, which frees nothing. (Another holder letting go at the
/// same instant can still leave the last reference here; rare, and only a free on this thread.)
fn keep_last(version: Arc<Object>, last: &mut Superseded) {
    if Arc::strong_count(&version) == 1 {
        last.push(version);
    }
}

/// Sends `versions` to the graph's writer to free, in chunks of [`GIVE_BACK_CHUNK`].
fn send_back(to: &crossbeam_channel::Sender<Superseded>, versions: Superseded) {
    let mut versions = versions.into_iter();
    loop {
        let chunk: Superseded = versions.by_ref().take(GIVE_BACK_CHUNK).collect();
        if chunk.is_empty() {
            return;
        }
        // Refused only once the graph's writer is gone: then they are freed here.
        let _ = to.send(chunk);
    }
}

/// `mirror` with `pending` applied: what Redis holds once `pending` is written.
fn image(
    mirror: &FxHashMap<Uid, Arc<Object>>,
    pending: &FxHashMap<Uid, Pending>,
) -> Vec<Arc<Object>> {
    if pending.is_empty() {
        // After a flush (background snapshots): one pass, no lookups.
        return mirror
            .values()
            .enumerate()
            .map(|(i, o)| {
                format::yield_point(i, CHEAP_STEPS);
                o.clone()
            })
            .collect();
    }
    mirror
        .iter()
        .filter(|(uid, _)| !pending.contains_key(*uid))
        .enumerate()
        .map(|(i, (_, o))| {
            format::yield_point(i, CHEAP_STEPS);
            o.clone()
        })
        .chain(pending.values().filter_map(Clone::clone))
        .collect()
}

/// How a snapshot uses the machine.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pace<'a> {
    /// As fast as the cores and Redis allow: something waits for it (shutdown, a repair, an
    /// import).
    Full,
    /// In the background: one encoding thread, and after each round trip of chunks encoded and
    /// written, a pause as long as that work took. At most half of one core and half of Redis's
    /// time, in short bursts: a snapshot that encoded on every core and sent Redis 119 MB at
    /// once (a million objects) measurably held up the queries it ran beside, through memory
    /// bandwidth and Redis's share of the same cores, though its threads yield the CPU at once.
    ///
    /// The encoding (and the grouping by namespace before it) runs in Linux's idle scheduling
    /// class, on threads of its own, until the flag is set: a core that runs only idle-class
    /// work counts as idle when a thread wakes, so a waking query is placed there and runs at
    /// once (the likely reason it helps; not traced). At the process's own priority, or at
    /// nice 19 (which the scheduler does not count as idle), the windows a snapshot of a million
    /// objects ran in had a query p99 1.5-2.1 times the server without persistence, against
    /// about 1.05 in the other windows; 1.07-1.24 in this class (BENCHMARKS.md, (b)). On a
    /// saturated machine the idle
    /// class gets almost nothing, so the writer sets the flag when the log grows by half its
    /// limit meanwhile, and when something waits for the snapshot; from the next round trip on,
    /// it encodes on its own thread, at the process's priority, still paced (without the pause,
    /// a saturated machine wrote more snapshots, not more changes). A thread cannot leave the
    /// idle class without a privilege: hence a thread per round trip.
    Background(&'a AtomicBool),
}

/// How a snapshot generation is written.
#[derive(Clone, Copy, Debug)]
pub(super) struct How<'a> {
    pub(super) pace: Pace<'a>,
    /// Objects per chunk.
    pub(super) chunk_objects: usize,
    /// How long to wait between writing the generation and switching to it: fault injection for
    /// tests.
    pub(super) switch_delay: Duration,
}

impl How<'_> {
    /// At full speed, in chunks of [`CHUNK_OBJECTS`], switched at once.
    pub(super) const FULL: How<'static> = How {
        pace: Pace::Full,
        chunk_objects: CHUNK_OBJECTS,
        switch_delay: Duration::ZERO,
    };
}

/// Writes an image as a new generation, switches to it and removes the others (see
/// [`write_generation`]): (generation, objects, bytes).
fn write_image(
    store: &mut Store,
    image: &[Arc<Object>],
    graph_generation: u64,
    log_id: String,
    how: How,
) -> Result<(u64, u64, u64), StoreError> {
    let objects = in_idle_time(how.pace, || grouped_by_namespace(image.iter()));
    write_generation(store, &objects, graph_generation, log_id, how)
}

/// Writes `objects` as a new snapshot generation that includes the log up to `log_id`, switches
/// to it and removes the others: (generation, objects, bytes). Chunks are encoded a round trip's
/// worth at a time, so that only that much encoded data is held at once.
pub(super) fn write_generation(
    store: &mut Store,
    objects: &[&Arc<Object>],
    graph_generation: u64,
    log_id: String,
    how: How,
) -> Result<(u64, u64, u64), StoreError> {
    let generation = store.next_generation()?;
    store.begin_snapshot(generation)?;
    let per_trip = store.chunks_per_trip();
    let chunk_objects = how.chunk_objects.max(1);
    let (mut chunks, mut bytes) = (Vec::new(), 0u64);
    for (trip, group) in objects.chunks(chunk_objects * per_trip).enumerate() {
        let started = Instant::now();
        let parts: Vec<&[&Arc<Object>]> = group.chunks(chunk_objects).collect();
        let encoded: Vec<(Vec<u8>, u32)> = match how.pace {
            Pace::Full => {
                parallel_map(parts.iter(), |part| format::encode(&format::Yielding(part)))
            }
            Pace::Background(_) => in_idle_time(how.pace, || {
                parts
                    .iter()
                    .map(|part| format::encode(&format::Yielding(part)))
                    .collect()
            }),
        };
        let mut bodies = Vec::with_capacity(parts.len());
        for ((body, crc32), part) in encoded.into_iter().zip(&parts) {
            chunks.push(ChunkInfo {
                objects: part.len() as u64,
                bytes: body.len() as u64,
                crc32,
            });
            bodies.push(body);
        }
        bytes += store.write_chunks(generation, trip * per_trip, &bodies)?;
        // Freed before the pause, not after it.
        drop(bodies);
        if matches!(how.pace, Pace::Background(_)) {
            std::thread::sleep(started.elapsed());
        }
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        generation,
        created_ms: unix_ms(),
        objects: objects.len() as u64,
        graph_generation,
        log_id,
        chunks,
    };
    bytes += store.write_manifest(&manifest)?;
    std::thread::sleep(how.switch_delay);
    store.switch(generation, &manifest.log_id)?;
    store.remove_other_generations(generation)?;
    Ok((generation, manifest.objects, bytes))
}

/// Whether a snapshot at this pace still waits for idle cores (see [`Pace::Background`]).
fn idle(pace: Pace) -> bool {
    matches!(pace, Pace::Background(hurry) if !hurry.load(Ordering::Relaxed))
}

/// `f`, on a thread of its own in the idle scheduling class while `pace` waits for idle cores
/// (see [`Pace::Background`]), else on this thread. Also on this thread if no thread can be
/// started.
fn in_idle_time<R: Send>(pace: Pace, f: impl FnOnce() -> R + Send) -> R {
    if !idle(pace) {
        return f();
    }
    // In an `Option`, so that `f` is still here when no thread could be started.
    let mut f = Some(f);
    let done = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("astrolabe-snap-idle".into())
            .spawn_scoped(s, || {
                idle_class();
                f.take().map(|f| f())
            })
            .ok()
            .and_then(|t| t.join().expect("a snapshot encoding thread panicked"))
    });
    done.unwrap_or_else(|| f.take().expect("not taken: no thread ran it")())
}

/// Puts the calling thread in Linux's idle scheduling class (nothing elsewhere: it then runs
/// at the process's priority).
fn idle_class() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ) {
            tracing::debug!(error = ?e, "no idle scheduling class for a snapshot thread");
        }
    }
}

/// The objects grouped by namespace (in order of first appearance, otherwise as given). A graph
/// is built about three times faster from objects in this order than in hash order (measured at
/// a million objects: the namespace's indexes stay in cache), so snapshots are stored in it.
pub(super) fn grouped_by_namespace<'a>(
    objects: impl Iterator<Item = &'a Arc<Object>>,
) -> Vec<&'a Arc<Object>> {
    let mut groups: FxHashMap<&crate::model::Atom, Vec<&'a Arc<Object>>> = FxHashMap::default();
    let mut order = Vec::new();
    let mut total = 0;
    for o in objects {
        format::yield_point(total, CHEAP_STEPS);
        total += 1;
        groups
            .entry(&o.namespace)
            .or_insert_with(|| {
                order.push(&o.namespace);
                Vec::new()
            })
            .push(o);
    }
    let mut out = Vec::with_capacity(total);
    for ns in order {
        out.extend(groups.remove(ns).unwrap_or_default());
    }
    out
}

/// Steps of a loop that does little per item (a clone, a hash lookup) between two
/// [`format::yield_point`]s: about 0.1 ms.
const CHEAP_STEPS: usize = 4096;

/// The shortest sleep while gathering a batch: each one costs a wake-up.
const MIN_NAP: Duration = Duration::from_millis(1);

/// How long [`Writer::gather`] may sleep: until `room` more messages are expected at the rate
/// just seen (`taken` in `since`), within `[MIN_NAP, left]`. When none came, twice the last
/// sleep (`slept`), so that a stream that has stopped costs a few wake-ups, not one a
/// millisecond. The first estimate of a batch, from the messages that came with the one that
/// woke the thread, is high, so its first sleep is short.
fn nap(taken: u32, since: Duration, slept: Duration, room: usize, left: Duration) -> Duration {
    let wanted = if taken == 0 {
        slept * 2
    } else {
        // `since` is never zero here in practice; the floor keeps the division finite.
        let rate = f64::from(taken) / since.as_secs_f64().max(1e-9);
        Duration::from_secs_f64((room as f64 / rate).min(left.as_secs_f64()))
    };
    wanted.clamp(MIN_NAP.min(left), left)
}

/// The machine's cores, as the process may use them (read once: the standard library reads the
/// cgroup's files on every call).
pub(super) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// `f` applied to every item, the items shared among one thread per core; results in order.
pub(super) fn parallel_map<T: Sync, R: Send>(
    items: impl Iterator<Item = T>,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let items: Vec<T> = items.collect();
    if items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cores().min(items.len()))
            .map(|_| {
                let (items, next, f) = (&items, &next, &f);
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an encoding thread panicked"))
            .collect()
    });
    out.sort_unstable_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Connects for a one-off task (recovery, export, import).
pub(super) fn connect(cfg: &RedisConfig) -> Result<Store, StoreError> {
    let mut s = cfg.connect()?;
    s.ping()?;
    Ok(s)
}

#[cfg(test)]
mod grouping_tests {
    use std::sync::Arc;

    use crate::model::Object;
    use crate::relations::Projector;

    fn object(namespace: &str, name: &str) -> Arc<Object> {
        let json = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}-{name}")}});
        Arc::new(Projector::default().project(&json).unwrap())
    }

    #[test]
    fn snapshot_objects_are_grouped_by_namespace_in_the_order_first_seen() {
        let objects = [
            object("b", "1"),
            object("a", "1"),
            object("b", "2"),
            object("c", "1"),
            object("a", "2"),
            object("b", "3"),
        ];
        let grouped: Vec<String> = super::grouped_by_namespace(objects.iter())
            .into_iter()
            .map(|o| format!("{}/{}", o.namespace, o.name))
            .collect();
        assert_eq!(grouped, ["b/1", "b/2", "b/3", "a/1", "a/2", "c/1"]);
    }
}

#[cfg(test)]
mod nap_tests {
    use std::time::Duration;

    use super::{MIN_NAP, nap};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_steady_stream_waits_out_the_interval() {
        // 20,000 changes/s: 50 in 2.5 ms; a batch has room for thousands more.
        assert_eq!(nap(50, MS * 5 / 2, MS, 9_950, MS * 45), MS * 45);
    }

    #[test]
    fn a_fast_stream_wakes_before_the_batch_overruns() {
        // 400,000 changes/s: 2,000 in 5 ms; room for 8,000 more is 20 ms of them.
        assert_eq!(nap(2_000, MS * 5, MS, 8_000, MS * 45), MS * 20);
    }

    #[test]
    fn a_burst_seen_in_no_time_gives_the_shortest_sleep() {
        assert_eq!(
            nap(20, Duration::from_micros(1), MS, 9_980, MS * 50),
            MIN_NAP
        );
    }

    #[test]
    fn a_stream_that_stopped_backs_off() {
        assert_eq!(nap(0, MS * 4, Duration::ZERO, 10_000, MS * 50), MIN_NAP);
        assert_eq!(nap(0, MS * 4, MS * 4, 10_000, MS * 50), MS * 8);
        assert_eq!(nap(0, MS * 40, MS * 40, 10_000, MS * 10), MS * 10);
    }

    #[test]
    fn never_past_the_deadline() {
        let left = Duration::from_micros(300);
        assert_eq!(nap(0, MS, Duration::ZERO, 10_000, left), left);
        assert_eq!(nap(1, MS * 10, MS, 10_000, left), left);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod idle_tests {
    use std::sync::atomic::AtomicBool;

    use super::{Pace, in_idle_time};

    /// The scheduling policy (`/proc/thread-self/stat`, field 41) and id of the calling thread.
    fn policy_and_thread() -> (u32, String) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // Field 3 is the first after the name; the policy is field 41.
        let policy = fields[41 - 3].parse().expect("a policy number");
        let tid = std::fs::read_link("/proc/thread-self")
            .expect("procfs")
            .to_string_lossy()
            .into_owned();
        (policy, tid)
    }

    const SCHED_IDLE: u32 = 5;

    #[test]
    fn background_work_runs_in_the_idle_class_until_it_hurries() {
        let (own_policy, own_thread) = policy_and_thread();
        assert_ne!(own_policy, SCHED_IDLE);
        let hurry = AtomicBool::new(false);
        let (policy, thread) = in_idle_time(Pace::Background(&hurry), policy_and_thread);
        assert_eq!(policy, SCHED_IDLE);
        assert_ne!(thread, own_thread);
        // This thread is not moved: only the thread made for the work was.
        assert_eq!(policy_and_thread().0, own_policy);
        hurry.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            in_idle_time(Pace::Background(&hurry), policy_and_thread),
            (own_policy, own_thread.clone())
        );
        assert_eq!(
            in_idle_time(Pace::Full, policy_and_thread),
            (own_policy, own_thread)
        );
    }
}
