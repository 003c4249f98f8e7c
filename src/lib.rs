//! Astrolabe: a Kubernetes state server.
//!
//! It keeps a live graph of a cluster's objects and their relationships and answers questions
//! about it. Data flows one way:
//!
//! ```text
//! sources ──(Change)──▶ ingest (the single writer) ──▶ graph ◀── readers (cli, api)
//!                                                        │
//!                                            relations (pure rules)
//! ```
//!
//! - [`model`]: the values: objects' projections, kinds, uids, labels, selectors, edge types.
//! - [`relations`]: the rules of `relationships.md` as pure functions of an object.
//! - [`graph`]: the store (petgraph + indexes) and its queries; no IO.
//! - [`ingest`]: the one thread that mutates the graph, and the shared read handle.
//! - [`sources`]: where objects come from (manifest files and dumps, the demo cluster).
//! - [`view`]: how objects and subgraphs are shown (JSON, tables, DOT).
//! - [`api`]: the HTTP API (v1 compatibility, v2 graph queries, operations).
//! - [`cli`]: the command line.
//!
//! See `ARCHITECTURE.md` for the invariants that hold these together.

pub mod api;
pub mod cli;
pub mod graph;
pub mod ingest;
pub mod model;
pub mod persistence;
pub mod relations;
pub mod sources;
pub mod view;
