//! The data model: objects as the graph keeps them, their identities, labels and selectors.
//!
//! Plain values only: nothing here does IO or knows about Kubernetes clients, Redis or HTTP.

mod atom;
mod kind;
mod object;
mod selector;
mod uid;

pub use atom::Atom;
pub use kind::{GroupKind, Kind};
pub use object::{
    ClaimRef, Dir, EdgeType, EndpointSliceInfo, HelmRecord, HpaInfo, IngressInfo, Name, Object,
    ObjectKey, OwnerRef, PodInfo, PodTarget, PodUses, Ref, Release, ReleaseInfo, ReleaseKey,
    Replicas, SecretInfo, SelectorInfo, ServiceInfo, Spec, Status, Target, VolumeInfo,
    WorkloadInfo,
};
pub use selector::{Anchor, Expr, Labels, Selector, SelectorError};
pub use uid::{Age, Time, Uid, format_age};
