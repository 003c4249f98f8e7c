//! The single writer of the graph, and the handle readers share.
//!
//! Sources send [`Event`]s through a bounded channel. One named thread (`astrolabe-ingest`)
//! blocks for an event, drains what else is queued, and applies the batch under the graph's
//! write lock, releasing the lock after at most [`MAX_HOLD`] of work so that readers never wait
//! longer than that. Readers take the read lock for the duration of one query: they always see a
//! state between two changes, never half of one.
//!
//! With persistence on, it records each change's effect into the persistence channel under the
//! write lock, and sends again, under a read lock between batches, objects whose changes found
//! that channel full (see `persistence::PersistSink::resend_dirty`); it also frees the object
//! versions the Redis writer is done with (`PersistSink::drop_superseded`), as it frees replaced
//! versions itself without persistence.
//!
//! Nothing but this thread obtains `&mut Graph` (the graph sits in a private field behind the
//! lock, and the only write path is [`Writer`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{RwLock, RwLockReadGuard};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::graph::{Change, Effect, Graph};
use crate::persistence::PersistSink;

/// The longest the writer holds the write lock before letting readers in.
pub const MAX_HOLD: Duration = Duration::from_millis(2);

/// How often this thread tries again to send objects that overflowed the persistence channel
/// when no event wakes it.
const RESEND_EVERY: Duration = Duration::from_millis(5);

/// How many events the channel buffers before senders wait.
pub const CHANNEL_CAPACITY: usize = 16 * 1024;

/// What a source sends.
#[derive(Debug)]
pub enum Event {
    /// A change to apply.
    Change(Change),
    /// A change to apply, with the moment the source received it: the writer records how long it
    /// took to become visible (the apply lag).
    Received(Change, Instant),
    /// The source's first full load has been sent: once everything before this event is
    /// applied, the graph is ready.
    Synced,
}

/// Counters about the writer's work, readable without the graph lock.
#[derive(Debug)]
pub struct IngestStats {
    /// Changes applied that modified the graph.
    pub applied: AtomicU64,
    /// Batches applied.
    pub batches: AtomicU64,
    /// Unix time in milliseconds of the last applied change (0 before any).
    pub last_applied_ms: AtomicU64,
    /// Whether the source's first full load has been applied.
    pub synced: AtomicBool,
    /// Whether the graph started from a state restored from persistence (and so is served
    /// before the source's first full load, flagged as not synced).
    pub restored: AtomicBool,
    /// Seconds from a source receiving a change ([`Event::Received`]) to readers seeing it.
    pub apply_lag: Histogram,
    /// Seconds the writer held the graph's write lock, per batch: the longest a query can wait
    /// for it.
    pub write_hold: Histogram,
}

impl Default for IngestStats {
    fn default() -> Self {
        IngestStats {
            applied: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_applied_ms: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            restored: AtomicBool::new(false),
            // 100 µs to about 13 s in steps of 1.5x: fine enough to read a p99 off.
            apply_lag: Histogram::new(exponential_buckets(0.000_1, 1.5, 30)),
            // 10 µs to about 1.3 s.
            write_hold: Histogram::new(exponential_buckets(0.000_01, 1.5, 30)),
        }
    }
}

struct Shared {
    graph: RwLock<Graph>,
    stats: IngestStats,
}

/// A cheap, cloneable read handle on the graph.
#[derive(Clone)]
pub struct GraphHandle(Arc<Shared>);

impl GraphHandle {
    /// A handle on a fixed graph with no writer, already synced: for serving a graph built
    /// elsewhere (a test's, the OpenAPI document's).
    pub fn fixed(graph: Graph) -> GraphHandle {
        let stats = IngestStats::default();
        stats.synced.store(true, Ordering::Release);
        GraphHandle(Arc::new(Shared {
            graph: RwLock::new(graph),
            stats,
        }))
    }

    /// A read guard: a consistent view for as long as it is held. Hold it for one query only;
    /// the writer waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.0.graph.read()
    }

    /// The writer's counters.
    pub fn stats(&self) -> &IngestStats {
        &self.0.stats
    }

    /// Whether the source's first full load has been applied.
    pub fn is_synced(&self) -> bool {
        self.0.stats.synced.load(Ordering::Acquire)
    }

    /// Whether the graph was restored from persistence at start.
    pub fn is_restored(&self) -> bool {
        self.0.stats.restored.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for GraphHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphHandle")
            .field("synced", &self.is_synced())
            .finish_non_exhaustive()
    }
}

/// The sending side for sources. Cloneable; the writer stops when every sender is dropped.
#[derive(Clone)]
pub struct EventSender(Sender<Event>);

impl EventSender {
    /// Sends an event, waiting while the channel is full. Returns `false` when the writer has
    /// stopped.
    pub fn send(&self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }

    /// Sends a change.
    pub fn change(&self, change: Change) -> bool {
        self.send(Event::Change(change))
    }
}

/// The writer thread.
pub struct Writer {
    thread: JoinHandle<()>,
}

impl Writer {
    /// Waits until every sender is dropped and every queued event is applied.
    pub fn join(self) {
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Starts the writer thread over an empty graph.
pub fn start() -> (GraphHandle, EventSender, Writer) {
    start_with(Graph::new(), Options::default())
}

/// How the writer starts.
#[derive(Debug, Default)]
pub struct Options {
    /// Where to record the graph's changes for persistence.
    pub persist: Option<PersistSink>,
    /// The graph given was restored from persistence.
    pub restored: bool,
}

/// Starts the writer thread over `graph` (for example one restored from a snapshot).
pub fn start_with(mut graph: Graph, options: Options) -> (GraphHandle, EventSender, Writer) {
    if options.persist.is_some() {
        graph.record_effects();
    }
    let stats = IngestStats::default();
    stats.restored.store(options.restored, Ordering::Release);
    let shared = Arc::new(Shared {
        graph: RwLock::new(graph),
        stats,
    });
    let persist = options.persist;
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
    let handle = GraphHandle(shared.clone());
    let thread = std::thread::Builder::new()
        .name("astrolabe-ingest".into())
        .spawn(move || run(&shared, &rx, persist.as_ref()))
        .expect("spawning the ingest thread");
    (handle, EventSender(tx), Writer { thread })
}

fn run(shared: &Shared, rx: &Receiver<Event>, persist: Option<&PersistSink>) {
    // Events taken from the channel but not applied yet: the rest of a batch cut short by the
    // time budget, and the deletions a full list's completion expands into.
    let mut backlog: VecDeque<Event> = VecDeque::new();
    // When the batch's timed changes were received: their lag is recorded once readers see them.
    let mut received: Vec<Instant> = Vec::new();
    loop {
        if backlog.is_empty() {
            // Objects that overflowed the persistence channel are sent again as it empties:
            // while some are left, this thread wakes up to try even when no event comes.
            let next = match persist {
                Some(sink) if sink.has_dirty() => match rx.recv_timeout(RESEND_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {
                        sink.drop_superseded();
                        sink.resend_dirty(&shared.graph.read(), false);
                        continue;
                    }
                    r => r.map_err(drop),
                },
                _ => rx.recv().map_err(drop),
            };
            match next {
                Ok(ev) => backlog.push_back(ev),
                Err(()) => {
                    // Every source is gone: nothing overflowed stays behind.
                    if let Some(sink) = persist.filter(|s| s.has_dirty()) {
                        sink.resend_dirty(&shared.graph.read(), true);
                    }
                    return;
                }
            }
        }
        let mut graph = shared.graph.write();
        let started = Instant::now();
        let (mut seen, mut applied) = (0u64, 0u64);
        let mut synced = false;
        loop {
            let ev = match backlog.pop_front() {
                Some(ev) => ev,
                None => match rx.try_recv() {
                    Ok(ev) => ev,
                    Err(_) => break,
                },
            };
            let change = match ev {
                Event::Change(c) => c,
                Event::Received(c, at) => {
                    received.push(at);
                    c
                }
                Event::Synced => {
                    synced = true;
                    continue;
                }
            };
            if let Change::ListComplete(scope) = change {
                // Reconciling may delete a whole kind: the deletions go first in the backlog,
                // in order, and are applied under the same time budget as any other change.
                let deletes = graph.finish_list(&scope);
                for d in deletes.into_iter().rev() {
                    backlog.push_front(Event::Change(d));
                }
            } else {
                let changed = graph.apply(change);
                applied += u64::from(changed);
                if changed && let Some(sink) = persist {
                    // Recorded while the write lock is held: the persistence channel then
                    // carries changes in generation order (see persistence::writer).
                    let generation = graph.generation();
                    for e in graph.drain_effects() {
                        match e {
                            Effect::Upserted(o) => sink.upsert(o, generation),
                            Effect::Removed(uid) => sink.delete(uid, generation),
                        }
                    }
                }
            }
            seen += 1;
            // Check the clock every few events: reading it costs about as much as a small change.
            if seen % 16 == 0 && started.elapsed() >= MAX_HOLD {
                break;
            }
        }
        drop(graph);
        let stats = &shared.stats;
        stats.write_hold.observe(started.elapsed().as_secs_f64());
        if let Some(sink) = persist {
            sink.drop_superseded();
            if sink.has_dirty() {
                // Under the read lock: queries go on meanwhile, and nothing else changes the
                // graph.
                sink.resend_dirty(&shared.graph.read(), false);
            }
        }
        let now = Instant::now();
        for at in received.drain(..) {
            stats
                .apply_lag
                .observe(now.saturating_duration_since(at).as_secs_f64());
        }
        stats.applied.fetch_add(applied, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if applied > 0 {
            stats.last_applied_ms.store(unix_ms(), Ordering::Relaxed);
        }
        if synced {
            stats.synced.store(true, Ordering::Release);
        }
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
