//! The demo cluster: a deterministic, realistic synthetic Kubernetes cluster rendered as the
//! API server's JSON objects, plus churn that produces watch events.
//!
//! Demo mode, the tests and every benchmark use it. A `DemoCluster` keeps a compact plan
//! (namespaces, apps, per-Pod state) and renders `serde_json::Value`s from it on demand, so a
//! 1,000,000-object cluster is streamed rather than held in memory. `step()` mutates the plan and
//! returns the events a watch would have delivered; applying them to an earlier `objects()`
//! snapshot yields exactly the later `objects()`.
//!
//! The cluster always contains every kind, problem and Helm case that the consumer has to
//! handle, at fixed names listed in [`names`].

mod build;
mod churn;
mod plan;
mod render;
mod render_app;
mod util;

#[cfg(test)]
mod tests;

use serde_json::Value;

/// Well-known names that tests and benchmarks rely on. They do not depend on the seed.
pub mod names {
    /// The namespace of the shared ConfigMap; when the cluster has at least
    /// [`BIG_NAMESPACE_THRESHOLD`] objects it also holds about [`big_namespace_objects`] objects.
    pub const BIG_NAMESPACE: &str = "marketplace";
    /// Cluster size from which [`BIG_NAMESPACE`] is made big.
    pub const BIG_NAMESPACE_THRESHOLD: usize = 20_000;
    /// The ConfigMap mounted by [`shared_configmap_users`] Pods, all in
    /// [`SHARED_CONFIGMAP_NAMESPACE`]; churn changes its content but never that count.
    pub const SHARED_CONFIGMAP: &str = "platform-config";
    /// Namespace of [`SHARED_CONFIGMAP`].
    pub const SHARED_CONFIGMAP_NAMESPACE: &str = BIG_NAMESPACE;
    /// The namespace that holds the permanent problems and the tricky Helm releases.
    pub const PROBLEM_NAMESPACE: &str = "shop";
    /// Deployment (in [`PROBLEM_NAMESPACE`]) with one Pod in CrashLoopBackOff (phase Running,
    /// restartCount > 0).
    pub const CRASHLOOP_DEPLOYMENT: &str = "payment-worker";
    /// Deployment (in [`PROBLEM_NAMESPACE`]) whose rollout is stuck: its new ReplicaSet's Pod is
    /// in ImagePullBackOff (phase Pending) and the Deployment has Progressing=False with reason
    /// ProgressDeadlineExceeded, while the previous revision keeps serving.
    pub const IMAGE_PULL_DEPLOYMENT: &str = "recommendation";
    /// Deployment (in [`PROBLEM_NAMESPACE`]) whose template and Pods reference
    /// [`MISSING_CONFIGMAP`]; its Pod waits in CreateContainerConfigError.
    pub const MISSING_CONFIGMAP_DEPLOYMENT: &str = "email-sender";
    /// A ConfigMap that is referenced but does not exist.
    pub const MISSING_CONFIGMAP: &str = "email-templates";
    /// PersistentVolumeClaim (in [`PROBLEM_NAMESPACE`]) that stays Pending without volumeName.
    pub const PENDING_PVC: &str = "uploads";
    /// Deployment mounting [`PENDING_PVC`]; its Pod is Pending and unschedulable.
    pub const PENDING_PVC_DEPLOYMENT: &str = "media-uploader";
    /// LoadBalancer Service (in [`PROBLEM_NAMESPACE`]) that never gets an ingress address.
    pub const PENDING_LB_SERVICE: &str = "partner-api";
    /// Job (in [`PROBLEM_NAMESPACE`]) with condition Failed=True and one Failed Pod.
    pub const FAILED_JOB: &str = "db-migrate";
    /// Ingress (in [`PROBLEM_NAMESPACE`]) routing to [`MISSING_SERVICE`].
    pub const DANGLING_INGRESS: &str = "legacy-storefront";
    /// A Service that is routed to but does not exist.
    pub const MISSING_SERVICE: &str = "legacy-storefront";
    /// The Node whose Ready condition is False.
    pub const NOT_READY_NODE: &str = "ip-10-0-16-5.eu-west-1.compute.internal";
    /// The cordoned Node (spec.unschedulable: true).
    pub const CORDONED_NODE: &str = "ip-10-0-16-6.eu-west-1.compute.internal";
    /// The PersistentVolume in phase Released (its claim is gone).
    pub const RELEASED_PV: &str = "pvc-0b6f1c9e-5d2a-4f7e-9c3b-8a1d2e4f6a70";
    /// Helm release name installed both in [`PROBLEM_NAMESPACE`] and in [`BIG_NAMESPACE`].
    pub const HELM_SHARED_RELEASE: &str = "redis";
    /// Helm release (in [`PROBLEM_NAMESPACE`]) whose latest revision failed (v3 failed, v2
    /// deployed, v1 superseded).
    pub const HELM_FAILED_RELEASE: &str = "checkout";
    /// Helm release (in namespace "ingress-nginx") that owns cluster-scoped objects.
    pub const HELM_CLUSTER_RELEASE: &str = "ingress-nginx";
    /// ClusterRole of [`HELM_CLUSTER_RELEASE`] marked by labels only (no Helm annotations); a
    /// ClusterRoleBinding of the same name carries both labels and annotations.
    pub const HELM_CLUSTER_ROLE: &str = "ingress-nginx";
    /// The IngressClass every Ingress uses.
    pub const INGRESS_CLASS: &str = "nginx";
    /// The default StorageClass.
    pub const DEFAULT_STORAGE_CLASS: &str = "standard";
    /// The second StorageClass (immediate binding).
    pub const FAST_STORAGE_CLASS: &str = "fast";

    /// Number of Pods that mount [`SHARED_CONFIGMAP`] in a cluster of `objects` objects: about a
    /// tenth of the Pods, at most 100.
    pub const fn shared_configmap_users(objects: usize) -> usize {
        let users = objects / 70;
        if users < 1 {
            1
        } else if users > 100 {
            100
        } else {
            users
        }
    }

    /// Approximate object count of [`BIG_NAMESPACE`] for a cluster of `objects` objects (0 below
    /// [`BIG_NAMESPACE_THRESHOLD`], where it is an ordinary namespace).
    pub const fn big_namespace_objects(objects: usize) -> usize {
        if objects < BIG_NAMESPACE_THRESHOLD {
            0
        } else if objects / 10 > 5_000 {
            5_000
        } else {
            objects / 10
        }
    }
}

/// Size, randomness and clock of a demo cluster.
#[derive(Clone, Copy, Debug)]
pub struct DemoConfig {
    /// Approximate number of objects: within ±10% from 1,000 on. The fixed features always
    /// present take about 230 objects, so smaller requests get those.
    pub objects: usize,
    /// Seed of every random choice; the same config always yields the same cluster.
    pub seed: u64,
    /// "Current time" in unix seconds: every timestamp is at or before it, and objects created by
    /// churn are created at it.
    pub now: i64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            objects: 2000,
            seed: 42,
            now: 1_767_225_600,
        }
    }
}

/// A change a watch would deliver.
#[derive(Clone, Debug, PartialEq)]
pub enum DemoEvent {
    /// A create or update: the full new object.
    Apply(Value),
    /// A deletion.
    Delete {
        api_version: String,
        kind: String,
        /// Empty for cluster-scoped objects.
        namespace: String,
        name: String,
        uid: String,
    },
}

/// A synthetic cluster: its plan and the churn state.
pub struct DemoCluster {
    plan: plan::Plan,
    churn: churn::Churn,
}

impl DemoCluster {
    pub fn new(cfg: DemoConfig) -> Self {
        let plan = build::build(&cfg);
        let churn = churn::Churn::new(&plan, cfg.seed);
        DemoCluster { plan, churn }
    }

    /// Every object of the current state, rendered on the fly in a deterministic order:
    /// cluster-scoped objects first, then namespace by namespace.
    ///
    /// Rendering stays on the caller's thread on purpose: building Values is allocation-bound,
    /// and with the system allocator freeing them on another thread than the one that built them
    /// made the whole pass about three times slower than doing both in one place.
    pub fn objects(&self) -> impl Iterator<Item = Value> + '_ {
        let plan = &self.plan;
        let inner = plan
            .namespaces
            .iter()
            .enumerate()
            .flat_map(|(n, ns)| render::namespace_refs(n as u32, ns));
        render::cluster_refs(plan)
            .chain(inner)
            .map(|r| render::render(plan, r))
    }

    /// Number of objects `objects()` yields now, computed from the plan.
    pub fn len(&self) -> usize {
        self.plan.len()
    }

    /// Whether the cluster has no objects (never true: the fixed features always exist).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One step of realistic churn: mutates the plan and returns the events a watch would have
    /// delivered for it, in order.
    pub fn step(&mut self) -> Vec<DemoEvent> {
        churn::step(&mut self.plan, &mut self.churn)
    }
}
