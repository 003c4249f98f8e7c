//! The projection of a Kubernetes object that the graph keeps, and the typed edges between them.
//!
//! An [`Object`] is built once by `relations::project` and never changed afterwards: an update is a
//! new `Object`. It holds what the relationship rules, the status rules and the API need, and
//! nothing else: no Secret or ConfigMap data, no managedFields, no annotation outside the
//! allow-list.
//!
//! Serde names. An object and its parts serialise only for persistence (the API writes its own
//! views of them), so their fields and the spec's variants carry short names
//! (`#[serde(rename = "u")]`): field names were nearly a third of every packed object. Each keeps
//! its long name as an `alias`, so data written with the long names (persistence format versions
//! 1 and 2) is still read.

use std::ops::Deref;

use compact_str::CompactString;
use internment::ArcIntern;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Atom, Kind, Labels, Selector, Time, Uid};

/// An object's name; names up to 24 bytes are stored inline.
pub type Name = CompactString;

/// The health summary of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// Working as intended.
    Ready,
    /// On its way, or waiting for something.
    Pending,
    /// Broken.
    Error,
    /// The rules cannot tell.
    Unknown,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 4] = [
        Status::Ready,
        Status::Pending,
        Status::Error,
        Status::Unknown,
    ];

    /// The name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "Ready",
            Status::Pending => "Pending",
            Status::Error => "Error",
            Status::Unknown => "Unknown",
        }
    }

    /// Parses a status name, case-insensitively.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

/// The type of an edge, from `relationships.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EdgeType {
    /// owner → dependent (ownerReferences, by owner uid).
    Owns,
    /// Service / PodDisruptionBudget / NetworkPolicy → Pod (label selectors).
    Selects,
    /// Service → EndpointSlice (the slice's `kubernetes.io/service-name` label).
    Endpoints,
    /// EndpointSlice → Pod (`endpoints[].targetRef`).
    Targets,
    /// Ingress → Service (backends).
    RoutesTo,
    /// Ingress (TLS) or Pod / pod template → Secret.
    UsesSecret,
    /// Ingress → IngressClass, PersistentVolumeClaim / PersistentVolume → StorageClass.
    UsesClass,
    /// Pod / pod template → PersistentVolumeClaim.
    Mounts,
    /// StatefulSet → PersistentVolumeClaim (volumeClaimTemplates).
    Claims,
    /// PersistentVolumeClaim → PersistentVolume.
    Binds,
    /// Pod / pod template → ConfigMap.
    UsesConfigMap,
    /// Pod / pod template → ServiceAccount.
    UsesSa,
    /// Pod → Node.
    RunsOn,
    /// HorizontalPodAutoscaler → its scale target.
    Scales,
    /// Any object → HelmRelease.
    MemberOf,
}

impl EdgeType {
    /// Every edge type.
    pub const ALL: [EdgeType; 15] = [
        EdgeType::Owns,
        EdgeType::Selects,
        EdgeType::Endpoints,
        EdgeType::Targets,
        EdgeType::RoutesTo,
        EdgeType::UsesSecret,
        EdgeType::UsesClass,
        EdgeType::Mounts,
        EdgeType::Claims,
        EdgeType::Binds,
        EdgeType::UsesConfigMap,
        EdgeType::UsesSa,
        EdgeType::RunsOn,
        EdgeType::Scales,
        EdgeType::MemberOf,
    ];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeType::Owns => "owns",
            EdgeType::Selects => "selects",
            EdgeType::Endpoints => "endpoints",
            EdgeType::Targets => "targets",
            EdgeType::RoutesTo => "routes-to",
            EdgeType::UsesSecret => "uses-secret",
            EdgeType::UsesClass => "uses-class",
            EdgeType::Mounts => "mounts",
            EdgeType::Claims => "claims",
            EdgeType::Binds => "binds",
            EdgeType::UsesConfigMap => "uses-configmap",
            EdgeType::UsesSa => "uses-sa",
            EdgeType::RunsOn => "runs-on",
            EdgeType::Scales => "scales",
            EdgeType::MemberOf => "member-of",
        }
    }

    /// Parses a canonical name.
    pub fn parse(s: &str) -> Option<EdgeType> {
        EdgeType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EdgeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry of `metadata.ownerReferences`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OwnerRef {
    /// The owner's uid: the only thing the `owns` rule matches on.
    #[serde(rename = "u", alias = "uid")]
    pub uid: Uid,
    /// The owner's kind, as the reference names it.
    #[serde(rename = "k", alias = "kind")]
    pub kind: Atom,
    /// The owner's name.
    #[serde(rename = "n", alias = "name")]
    pub name: Name,
    /// Whether this owner is the managing controller.
    #[serde(rename = "c", alias = "controller")]
    pub controller: bool,
}

/// A Helm release, named by its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReleaseKey {
    /// The release namespace ("" for a cluster-scoped member found through labels).
    #[serde(rename = "ns", alias = "namespace")]
    pub namespace: Atom,
    /// The release name.
    #[serde(rename = "n", alias = "name")]
    pub name: Atom,
}

/// A release key shared by all members of a release: 8 bytes per member instead of 16, and
/// pointer equality.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Release(ArcIntern<ReleaseKey>);

impl Release {
    /// Interns `key`.
    pub fn new(key: ReleaseKey) -> Release {
        Release(ArcIntern::new(key))
    }
}

impl Deref for Release {
    type Target = ReleaseKey;
    fn deref(&self) -> &ReleaseKey {
        &self.0
    }
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for Release {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Release {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ReleaseKey::deserialize(d).map(Release::new)
    }
}

/// Replica counters of a workload. Missing counters are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replicas {
    /// What the spec asks for.
    #[serde(rename = "d", alias = "desired")]
    pub desired: u32,
    /// What exists.
    #[serde(rename = "c", alias = "current")]
    pub current: u32,
    /// Ready.
    #[serde(rename = "r", alias = "ready")]
    pub ready: u32,
    /// Available.
    #[serde(rename = "a", alias = "available")]
    pub available: u32,
    /// Running the current template.
    #[serde(rename = "u", alias = "updated")]
    pub updated: u32,
}

/// What a Pod, or the pods of a workload, use by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodUses {
    /// `spec.serviceAccountName`, `default` when empty.
    #[serde(rename = "sa", alias = "service_account")]
    pub service_account: Atom,
    /// ConfigMaps, sorted, unique.
    #[serde(rename = "cm", alias = "config_maps")]
    pub config_maps: Box<[Atom]>,
    /// Secrets, sorted, unique.
    #[serde(rename = "s", alias = "secrets")]
    pub secrets: Box<[Atom]>,
    /// PersistentVolumeClaims, sorted, unique.
    #[serde(rename = "c", alias = "claims")]
    pub claims: Box<[Atom]>,
    /// Container images in container order (init containers excluded).
    #[serde(rename = "i", alias = "images")]
    pub images: Box<[Atom]>,
}

/// Kind-specific fields of a Pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodInfo {
    /// What the Pod uses.
    #[serde(rename = "u", alias = "uses")]
    pub uses: PodUses,
    /// `spec.nodeName`.
    #[serde(rename = "nn", alias = "node_name")]
    pub node_name: Option<Atom>,
    /// Sum of the containers' restart counts.
    #[serde(rename = "r", alias = "restarts")]
    pub restarts: u32,
    /// `status.phase`.
    #[serde(rename = "p", alias = "phase")]
    pub phase: Option<Atom>,
}

/// Kind-specific fields of a Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or CronJob.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// What the pod template uses.
    #[serde(rename = "u", alias = "uses")]
    pub uses: PodUses,
    /// Replica counters (Jobs: parallelism as desired, active/succeeded as current/ready).
    #[serde(rename = "r", alias = "replicas")]
    pub replicas: Replicas,
    /// StatefulSet `volumeClaimTemplates[].metadata.name`.
    #[serde(rename = "ct", alias = "claim_templates")]
    pub claim_templates: Box<[Atom]>,
}

/// Kind-specific fields of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// `spec.selector` when non-empty.
    #[serde(with = "selector_text")]
    #[serde(rename = "s", alias = "selector")]
    pub selector: Option<Selector>,
    /// `spec.type`, `ClusterIP` when absent.
    #[serde(rename = "t", alias = "service_type")]
    pub service_type: Atom,
    /// `spec.clusterIP`.
    #[serde(rename = "ip", alias = "cluster_ip")]
    pub cluster_ip: Option<Atom>,
}

/// A Pod an EndpointSlice points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PodTarget {
    /// By uid (then only by uid).
    #[serde(rename = "u", alias = "Uid")]
    Uid(Uid),
    /// By name in the slice's namespace.
    #[serde(rename = "n", alias = "Name")]
    Name(Atom),
}

/// Kind-specific fields of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointSliceInfo {
    /// The `kubernetes.io/service-name` label.
    #[serde(rename = "s", alias = "service")]
    pub service: Option<Atom>,
    /// Pod targets, sorted, unique.
    #[serde(rename = "t", alias = "targets")]
    pub targets: Box<[PodTarget]>,
}

/// Kind-specific fields of an Ingress.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IngressInfo {
    /// `spec.ingressClassName`, else the `kubernetes.io/ingress.class` annotation.
    #[serde(rename = "c", alias = "class")]
    pub class: Option<Atom>,
    /// Backend Services, sorted, unique.
    #[serde(rename = "s", alias = "services")]
    pub services: Box<[Atom]>,
    /// TLS Secrets, sorted, unique.
    #[serde(rename = "ts", alias = "tls_secrets")]
    pub tls_secrets: Box<[Atom]>,
}

/// A PersistentVolume's `spec.claimRef`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaimRef {
    /// Usually `PersistentVolumeClaim`.
    #[serde(rename = "k", alias = "kind")]
    pub kind: Atom,
    /// The claim's namespace.
    #[serde(rename = "ns", alias = "namespace")]
    pub namespace: Atom,
    /// The claim's name.
    #[serde(rename = "n", alias = "name")]
    pub name: Atom,
    /// The claim's uid, when set.
    #[serde(rename = "u", alias = "uid")]
    pub uid: Option<Uid>,
}

/// Kind-specific fields of a PersistentVolumeClaim or PersistentVolume.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// PVC: `spec.volumeName`.
    #[serde(rename = "vn", alias = "volume_name")]
    pub volume_name: Option<Atom>,
    /// `spec.storageClassName`, else the deprecated annotation.
    #[serde(rename = "sc", alias = "storage_class")]
    pub storage_class: Option<Atom>,
    /// PV: `spec.claimRef`.
    #[serde(rename = "cr", alias = "claim_ref")]
    pub claim_ref: Option<ClaimRef>,
}

/// Kind-specific fields of a HorizontalPodAutoscaler.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HpaInfo {
    /// `spec.scaleTargetRef.kind`.
    #[serde(rename = "tk", alias = "target_kind")]
    pub target_kind: Atom,
    /// `spec.scaleTargetRef.name`.
    #[serde(rename = "tn", alias = "target_name")]
    pub target_name: Atom,
    /// `spec.minReplicas`.
    #[serde(rename = "min", alias = "min_replicas")]
    pub min_replicas: Option<u32>,
    /// `spec.maxReplicas`.
    #[serde(rename = "max", alias = "max_replicas")]
    pub max_replicas: u32,
    /// `status.currentReplicas`.
    #[serde(rename = "cur", alias = "current_replicas")]
    pub current_replicas: u32,
    /// `status.desiredReplicas`.
    #[serde(rename = "des", alias = "desired_replicas")]
    pub desired_replicas: u32,
}

/// Kind-specific fields of a PodDisruptionBudget or NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SelectorInfo {
    /// The Pod selector; `None` selects nothing.
    #[serde(with = "selector_text")]
    #[serde(rename = "s", alias = "selector")]
    pub selector: Option<Selector>,
}

/// A Helm release record: one of Helm's own release Secrets, read from its labels only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HelmRecord {
    /// The release (namespace = the Secret's namespace).
    #[serde(rename = "r", alias = "release")]
    pub release: Atom,
    /// The `version` label: the release revision.
    #[serde(rename = "v", alias = "version")]
    pub version: u32,
    /// The `status` label.
    #[serde(rename = "s", alias = "status")]
    pub status: Atom,
}

/// Kind-specific fields of a Secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretInfo {
    /// `type`.
    #[serde(rename = "t", alias = "secret_type")]
    pub secret_type: Atom,
    /// Set for Helm's release Secrets.
    #[serde(rename = "h", alias = "helm_record")]
    pub helm_record: Option<HelmRecord>,
}

/// Kind-specific fields of a synthetic HelmRelease node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// The highest revision seen in the release records.
    #[serde(rename = "r", alias = "revision")]
    pub revision: u32,
    /// Its `status` label.
    #[serde(rename = "s", alias = "record_status")]
    pub record_status: Option<Atom>,
}

/// The kind-specific part of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Spec {
    /// Nothing kind-specific is kept.
    #[default]
    None,
    /// A Pod.
    #[serde(rename = "pod", alias = "Pod")]
    Pod(Box<PodInfo>),
    /// A workload with a pod template.
    #[serde(rename = "wl", alias = "Workload")]
    Workload(Box<WorkloadInfo>),
    /// A Service.
    #[serde(rename = "svc", alias = "Service")]
    Service(Box<ServiceInfo>),
    /// An EndpointSlice.
    #[serde(rename = "eps", alias = "EndpointSlice")]
    EndpointSlice(Box<EndpointSliceInfo>),
    /// An Ingress.
    #[serde(rename = "ing", alias = "Ingress")]
    Ingress(Box<IngressInfo>),
    /// A PersistentVolumeClaim or PersistentVolume.
    #[serde(rename = "vol", alias = "Volume")]
    Volume(Box<VolumeInfo>),
    /// A HorizontalPodAutoscaler.
    #[serde(rename = "hpa", alias = "Hpa")]
    Hpa(Box<HpaInfo>),
    /// A PodDisruptionBudget or NetworkPolicy: its Pod selector.
    #[serde(rename = "psel", alias = "PodSelector")]
    PodSelector(Box<SelectorInfo>),
    /// A Secret.
    #[serde(rename = "sec", alias = "Secret")]
    Secret(Box<SecretInfo>),
    /// A synthetic HelmRelease.
    #[serde(rename = "rel", alias = "Release")]
    Release(Box<ReleaseInfo>),
}

/// The projection of one Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Object {
    /// `metadata.uid` (synthesised from the identity when absent).
    #[serde(rename = "u", alias = "uid")]
    pub uid: Uid,
    /// Group and kind.
    #[serde(rename = "k", alias = "kind")]
    pub kind: Kind,
    /// `apiVersion` as the source gave it.
    #[serde(rename = "av", alias = "api_version")]
    pub api_version: Atom,
    /// `metadata.namespace`, "" for cluster-scoped objects.
    #[serde(rename = "ns", alias = "namespace")]
    pub namespace: Atom,
    /// `metadata.name`.
    #[serde(rename = "n", alias = "name")]
    pub name: Name,
    /// `metadata.resourceVersion`.
    #[serde(rename = "rv", alias = "resource_version")]
    pub resource_version: CompactString,
    /// `metadata.creationTimestamp`.
    #[serde(rename = "c", alias = "created")]
    pub created: Option<Time>,
    /// `metadata.deletionTimestamp`.
    #[serde(rename = "d", alias = "deleted")]
    pub deleted: Option<Time>,
    /// `metadata.labels`.
    #[serde(rename = "l", alias = "labels")]
    pub labels: Labels,
    /// `metadata.annotations` on the allow-list, sorted by key.
    #[serde(rename = "a", alias = "annotations")]
    pub annotations: Box<[(Atom, Box<str>)]>,
    /// `metadata.ownerReferences`.
    #[serde(rename = "o", alias = "owners")]
    pub owners: Box<[OwnerRef]>,
    /// Health summary.
    #[serde(rename = "s", alias = "status")]
    pub status: Status,
    /// One-line explanation of the status (interned: most messages repeat).
    #[serde(rename = "m", alias = "message")]
    pub message: Atom,
    /// The Helm release this object belongs to.
    #[serde(rename = "r", alias = "release")]
    pub release: Option<Release>,
    /// Kind-specific fields.
    #[serde(rename = "sp", alias = "spec")]
    pub spec: Spec,
}

impl Object {
    /// The object's identity by name.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The `helm.sh/chart` label (Helm sets the chart as a label).
    pub fn chart(&self) -> Option<&Atom> {
        static KEY: std::sync::OnceLock<Atom> = std::sync::OnceLock::new();
        self.labels
            .get(KEY.get_or_init(|| Atom::new("helm.sh/chart")))
    }

    /// What the Pod or pod template of this object uses, for Pods and workloads.
    pub fn pod_uses(&self) -> Option<&PodUses> {
        match &self.spec {
            Spec::Pod(p) => Some(&p.uses),
            Spec::Workload(w) => Some(&w.uses),
            _ => None,
        }
    }

    /// The selector this object applies to the Pods of its namespace, if it is a selector holder.
    pub fn pod_selector(&self) -> Option<&Selector> {
        match &self.spec {
            Spec::Service(s) => s.selector.as_ref(),
            Spec::PodSelector(s) => s.selector.as_ref(),
            _ => None,
        }
    }
}

/// Identity of an object by name: kind, namespace ("" when cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace, "" for cluster-scoped objects.
    pub namespace: Atom,
    /// The name.
    pub name: Name,
}

impl std::fmt::Display for ObjectKey {
    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped objects.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind.name(), self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind.name(), self.namespace, self.name)
        }
    }
}

/// Which side of an edge a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// The declaring object is the edge's source (`Pod --uses-secret--> Secret`).
    Out,
    /// The declaring object is the edge's target (`owner --owns--> dependent`, declared by the
    /// dependent's ownerReferences).
    In,
}

/// What a reference points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// An object of this exact kind, by namespace and name.
    Named(ObjectKey),
    /// An object of any group whose kind name is `kind` (an HPA's scale target).
    NamedAnyGroup {
        /// The kind name.
        kind: Atom,
        /// The namespace.
        namespace: Atom,
        /// The name.
        name: Name,
    },
    /// The object with this uid.
    Uid(Uid),
    /// Every PersistentVolumeClaim of the namespace named `<prefix>-<decimal number>`.
    ClaimPattern {
        /// The namespace.
        namespace: Atom,
        /// `<template>-<statefulset name>`.
        prefix: Name,
    },
    /// The synthetic node of a Helm release.
    Release(ReleaseKey),
}

/// A reference an object declares: one edge (or, for a claim pattern, a family of edges) that holds
/// whenever the target exists.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ref {
    /// The edge type.
    pub edge: EdgeType,
    /// Which end of the edge the declaring object is.
    pub dir: Dir,
    /// The other end.
    pub target: Target,
}

mod selector_text {
    //! Selectors are serialised in kubectl syntax, which round-trips exactly.
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::Selector;

    pub(super) fn serialize<S: Serializer>(
        sel: &Option<Selector>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match sel {
            Some(sel) => s.serialize_some(&sel.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Selector>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| Selector::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_fits_the_224_byte_allocation_class_with_its_arc_header() {
        // Arc adds two counters (16 bytes); jemalloc's classes around here are 192, 224, 256.
        // Crossing 208 bytes costs 32 bytes for every object of the graph.
        assert!(
            size_of::<Object>() <= 208,
            "Object is {} bytes",
            size_of::<Object>()
        );
        assert_eq!(size_of::<Spec>(), 16);
        assert_eq!(size_of::<Option<Release>>(), 8);
    }
}
