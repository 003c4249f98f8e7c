//! What the live Kubernetes source knows about each kind it was asked to watch, for `/health`,
//! `/readyz` and `/metrics`: served or skipped, forbidden, listing, watching, failing; and the
//! source's counters (events by kind and type, relists, watch errors).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

/// Where one kind stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KindState {
    /// The API server does not serve the kind's group/version: not watched, not a failure.
    Skipped,
    /// The API server refused to list or watch the kind (403): not watched until a later
    /// discovery finds it permitted.
    Forbidden,
    /// The first full list (or a relist) is in progress.
    Listing,
    /// Listed, and watching for changes.
    Watching,
    /// The last list or watch failed; retrying with backoff.
    Failing,
}

/// What can be wrong with the source as a whole, beyond any one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceProblem {
    /// Discovery fails (the API server is unreachable, or refuses the credentials): retried with
    /// backoff; the kinds already watched go on.
    Discovery(String),
    /// The source stopped: the graph no longer follows the cluster.
    Stopped(String),
}

/// One kind's status.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindStatus {
    /// `group/version` watched (or wanted, when skipped).
    pub api_version: String,
    /// Where it stands.
    pub state: KindState,
    /// Whether its first full list completed.
    pub listed: bool,
    /// Why, for skipped, forbidden and failing kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Labels of the per-kind counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind, `group/Kind` (core kinds without a group).
    pub kind: String,
}

/// Labels of the event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The kind.
    pub kind: String,
    /// `list` (an object of a full list), `apply` (added or modified) or `delete`.
    pub r#type: &'static str,
}

/// The source's shared status; cheap to read at every health check and scrape.
#[derive(Debug, Default)]
pub struct KubeStatus {
    kinds: Mutex<BTreeMap<String, KindStatus>>,
    problem: Mutex<Option<SourceProblem>>,
    synced: AtomicBool,
    /// Watch events received, by kind and type.
    pub events: Family<EventLabels, Counter>,
    /// Full lists started again after the first (after a 410 Gone).
    pub relists: Family<KindLabels, Counter>,
    /// List and watch errors, by kind.
    pub watch_errors: Family<KindLabels, Counter>,
    /// Objects that could not be projected and were skipped.
    pub skipped_objects: Counter,
}

impl KubeStatus {
    /// Sets a kind's state; returns the previous one (none the first time).
    pub(super) fn set(
        &self,
        kind: &str,
        api_version: &str,
        state: KindState,
        reason: Option<String>,
    ) -> Option<KindState> {
        let mut kinds = self.kinds.lock();
        let previous = kinds.get(kind).map(|k| k.state);
        let entry = kinds.entry(kind.to_string()).or_insert_with(|| KindStatus {
            api_version: api_version.to_string(),
            state,
            listed: false,
            reason: None,
        });
        entry.api_version = api_version.to_string();
        entry.state = state;
        entry.reason = reason;
        if state == KindState::Watching {
            entry.listed = true;
        }
        previous
    }

    /// Records (or, with `None`, clears) what is wrong with the source as a whole.
    pub(super) fn set_problem(&self, problem: Option<SourceProblem>) {
        *self.problem.lock() = problem;
    }

    /// Records that the source stopped for good (the graph no longer follows the cluster).
    pub fn stopped(&self, why: String) {
        self.set_problem(Some(SourceProblem::Stopped(why)));
    }

    /// What is wrong with the source as a whole, if anything.
    pub fn problem(&self) -> Option<SourceProblem> {
        self.problem.lock().clone()
    }

    /// One kind's state, if it was ever recorded.
    pub fn state(&self, kind: &str) -> Option<KindState> {
        self.kinds.lock().get(kind).map(|k| k.state)
    }

    /// Every kind's status, by kind.
    pub fn kinds(&self) -> BTreeMap<String, KindStatus> {
        self.kinds.lock().clone()
    }

    /// Whether every served, permitted kind has completed its first full list.
    pub fn all_listed(&self) -> bool {
        let kinds = self.kinds.lock();
        !kinds.is_empty()
            && kinds
                .values()
                .all(|k| k.listed || matches!(k.state, KindState::Skipped | KindState::Forbidden))
    }

    /// Marks the first full load as sent; returns whether it was already.
    pub(super) fn mark_synced(&self) -> bool {
        self.synced.swap(true, Ordering::AcqRel)
    }
}
