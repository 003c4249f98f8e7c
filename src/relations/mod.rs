//! The relationship rules of `relationships.md` as pure functions: an object's projection and
//! status ([`Projector::project`]), the references it declares ([`refs`]), the claim-name rule of
//! StatefulSets and the status of a Helm release.
//!
//! No IO, no global state: every function here is a function of its arguments, which is what
//! makes the graph's results independent of arrival order.

mod json;
mod project;
mod refs;
mod status;

pub use project::{DEFAULT_ANNOTATIONS, ProjectError, Projector};
pub use refs::{Refs, claim_matches, claim_prefix_of, refs};
pub use status::release_status;

#[cfg(test)]
mod tests;
