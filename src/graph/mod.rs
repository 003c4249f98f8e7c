//! The in-memory graph: objects as nodes of a petgraph `StableGraph`, typed edges, and the
//! indexes that let every change and every query touch only what it concerns.
//!
//! [`Graph`] is a plain value: it does no IO, spawns nothing and takes no lock. The single writer
//! (`ingest`) owns the only `&mut` access; readers share `&Graph` under a read lock.

mod index;
mod query;
mod store;

pub use petgraph::stable_graph::NodeIndex;
pub use query::{Dangling, Direction3, EdgeTriple, Filter, Subgraph};
pub use store::{Canonical, Change, EdgeData, Effect, Graph, ListScope};
