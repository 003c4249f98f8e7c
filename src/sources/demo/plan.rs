//! The compact plan of the demo cluster: namespaces, apps and their per-object state (metadata
//! counters, replica sets, pods, claims, ...). Objects are rendered from this plan on demand, so
//! even a 1,000,000-object cluster only keeps a few small structs per object in memory.

use uuid::Uuid;

use super::util::suffix;

/// Per-object bookkeeping that the API server would own.
#[derive(Clone, Copy, Debug)]
pub(super) struct Meta {
    /// resourceVersion of the object's last change.
    pub rv: u64,
    /// creationTimestamp, unix seconds.
    pub created: i64,
    /// Incarnation: 0 for objects of the initial state, a fresh serial for every object created
    /// by churn, so a recreated object with the same name gets a new uid.
    pub inc: u32,
    /// metadata.generation, bumped whenever the object's spec changes.
    pub generation: u32,
}

/// Container-level situation of a Pod; it decides phase, readiness and container states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PodState {
    Running,
    CrashLoop,
    ImagePull,
    ConfigError,
    Unschedulable,
    Succeeded,
    Failed,
}

impl PodState {
    /// Whether the Pod's Ready condition is True.
    pub(super) fn ready(self) -> bool {
        self == PodState::Running
    }

    /// Whether the Pod has a sandbox and therefore an IP (and shows up in EndpointSlices).
    pub(super) fn has_ip(self) -> bool {
        matches!(
            self,
            PodState::Running | PodState::CrashLoop | PodState::ImagePull | PodState::ConfigError
        )
    }
}

pub(super) struct Pod {
    pub meta: Meta,
    pub name: String,
    pub node: u32,
    /// Unique per Pod incarnation; the Pod IP is derived from it.
    pub serial: u32,
    pub restarts: u32,
    pub state: PodState,
}

/// An archetype of application: which image it runs and how it listens.
pub(super) struct Profile {
    /// Image repository; empty means the company's own registry under the app's name.
    pub image: &'static str,
    /// Tags that successive rollouts walk through (ignored for company images).
    pub tags: &'static [&'static str],
    /// Container port; 0 for apps that listen on nothing (workers, batch jobs).
    pub port: u16,
    pub port_name: &'static str,
    pub protocol: &'static str,
    pub cpu: &'static str,
    pub memory: &'static str,
    /// Mount path of the StatefulSet's `data` volume.
    pub data_path: &'static str,
}

pub(super) struct ReplicaSet {
    pub meta: Meta,
    pub revision: u32,
    pub hash: String,
    /// The Deployment's replica count when this revision was last scaled (its
    /// deployment.kubernetes.io/desired-replicas annotation).
    pub desired: u32,
    /// Image version the revision's template runs; rollouts bump it.
    pub version: u32,
    pub pods: Vec<Pod>,
}

pub(super) struct Deployment {
    pub meta: Meta,
    pub replicas: u32,
    /// Set for the rollout that never finishes (Progressing=False, ProgressDeadlineExceeded).
    pub stuck: bool,
    /// Ordered by revision; the last one is the current revision.
    pub sets: Vec<ReplicaSet>,
}

pub(super) struct Claim {
    pub meta: Meta,
    pub name: String,
    pub fast: bool,
    pub size_gi: u32,
    /// The bound PersistentVolume (named `pvc-<claim uid>`), or None while Pending.
    pub volume: Option<Meta>,
}

pub(super) struct StatefulSet {
    pub meta: Meta,
    pub hash: String,
    pub pods: Vec<Pod>,
    pub claims: Vec<Claim>,
}

pub(super) struct DaemonSet {
    pub meta: Meta,
    pub hash: String,
    /// One Pod per Node, index = node index.
    pub pods: Vec<Pod>,
}

/// One Job spawned by a CronJob, with its single Pod.
pub(super) struct Run {
    pub meta: Meta,
    /// Scheduled time in unix minutes; also the Job's name suffix, as the CronJob controller does.
    pub minute: i64,
    pub pod: Pod,
}

pub(super) struct CronJob {
    pub meta: Meta,
    pub schedule: &'static str,
    pub period_min: i64,
    pub runs: Vec<Run>,
}

/// A standalone Job (created by a pipeline, not a CronJob) with its single Pod.
pub(super) struct Job {
    pub meta: Meta,
    pub pod: Pod,
}

pub(super) enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
    CronJob(CronJob),
    Job(Job),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SvcKind {
    ClusterIp,
    Headless,
    LoadBalancer,
    PendingLoadBalancer,
}

pub(super) struct Service {
    pub meta: Meta,
    pub name: String,
    pub kind: SvcKind,
    /// Index into the service CIDR (10.96.0.0/12).
    pub ip: u32,
    /// Which selector the Service currently uses (see `render::service_selector`).
    pub variant: u8,
    pub slice: Meta,
    pub slice_name: String,
}

pub(super) struct Ingress {
    pub meta: Meta,
    pub host: String,
    /// The kubernetes.io/tls Secret `<app>-tls`, when the Ingress terminates TLS.
    pub tls: Option<Meta>,
}

pub(super) struct Hpa {
    pub meta: Meta,
    pub min: u32,
    pub max: u32,
    /// Current average CPU utilisation in percent.
    pub cpu: u32,
}

pub(super) struct Pdb {
    pub meta: Meta,
    /// minAvailable when non-zero, otherwise maxUnavailable: 1.
    pub min_available: u32,
    /// Whether the selector also carries matchExpressions.
    pub expressions: bool,
}

pub(super) struct Config {
    pub meta: Meta,
    /// Bumped by churn; rendered into the data so that content changes are visible.
    pub version: u32,
}

/// How an app's Pods consume configuration; a bit set so that mechanisms vary between apps.
pub(super) mod mech {
    pub(crate) const CM_VOLUME: u8 = 1;
    pub(crate) const CM_ENV_FROM: u8 = 2;
    pub(crate) const CM_KEY_REF: u8 = 4;
    pub(crate) const SECRET_VOLUME: u8 = 8;
    pub(crate) const SECRET_ENV_FROM: u8 = 16;
    pub(crate) const SECRET_KEY_REF: u8 = 32;
    pub(crate) const PROJECTED: u8 = 64;
    pub(crate) const PULL_SECRET: u8 = 128;
}

pub(super) struct App {
    pub name: String,
    pub profile: &'static Profile,
    pub tier: &'static str,
    /// Index into the namespace's Helm releases when the app is installed by Helm.
    pub helm: Option<u16>,
    /// Whether the top-level objects were `kubectl apply`-ed (and so carry last-applied).
    pub kubectl: bool,
    /// Pinned apps hold a permanent problem; churn leaves them alone (except restarts).
    pub pinned: bool,
    /// Apps whose replica count churn must not change (the shared-ConfigMap consumers).
    pub fixed_scale: bool,
    pub mech: u8,
    pub shared_config: bool,
    pub missing_config: bool,
    pub account: Option<Meta>,
    pub config: Option<Config>,
    pub secret: Option<Meta>,
    pub workload: Workload,
    pub service: Option<Service>,
    pub ingress: Option<Ingress>,
    pub hpa: Option<Hpa>,
    pub pdb: Option<Pdb>,
    pub netpol: Option<Meta>,
    /// A standalone PersistentVolumeClaim mounted by a Deployment's Pods.
    pub claim: Option<Claim>,
}

/// Namespace-level objects that do not belong to one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NsKind {
    DefaultAccount,
    RootCa,
    Regcred,
    DefaultDeny,
    Role,
    RoleBinding,
    SharedConfig,
    DanglingIngress,
}

pub(super) struct NsObj {
    pub kind: NsKind,
    pub meta: Meta,
    pub version: u32,
}

pub(super) struct Release {
    pub name: String,
    pub chart: &'static str,
    pub chart_version: &'static str,
    pub app_version: &'static str,
    /// One release Secret per revision, oldest first.
    pub records: Vec<Meta>,
    /// Whether the latest revision failed (so the one before it stays deployed).
    pub failed: bool,
}

pub(super) struct Namespace {
    pub name: String,
    pub meta: Meta,
    pub team: &'static str,
    pub env: &'static str,
    pub system: bool,
    pub objects: Vec<NsObj>,
    pub releases: Vec<Release>,
    pub apps: Vec<App>,
}

pub(super) struct Node {
    pub meta: Meta,
    pub ready: bool,
    pub cordoned: bool,
    /// lastTransitionTime of the Ready condition.
    pub transition: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ClusterKind {
    StandardClass,
    FastClass,
    IngressClass,
    ClusterRole,
    ClusterRoleBinding,
    ReleasedVolume,
}

pub(super) struct ClusterObj {
    pub kind: ClusterKind,
    pub meta: Meta,
}

pub(super) struct Plan {
    pub now: i64,
    /// Root of the uid namespace; derived from the seed so that two demo clusters differ.
    pub root: Uuid,
    /// Seed-derived salt for generated names.
    pub salt: u64,
    /// The global resourceVersion counter.
    pub rv: u64,
    /// Counter for incarnations and Pod serials.
    pub serial: u32,
    pub nodes: Vec<Node>,
    pub cluster: Vec<ClusterObj>,
    pub namespaces: Vec<Namespace>,
}

impl Plan {
    /// Bumps the global resourceVersion and returns the new value.
    pub(super) fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Returns a fresh serial (never 0, so it also works as a non-initial incarnation).
    pub(super) fn next_serial(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }

    /// A fresh Pod name `<prefix>-<5 chars>` that `taken` does not reject, with the serial it came
    /// from (generated suffixes can collide, as they can in Kubernetes, which then retries).
    pub(super) fn pod_identity(
        &mut self,
        prefix: &str,
        taken: impl Fn(&str) -> bool,
    ) -> (String, u32) {
        loop {
            let serial = self.next_serial();
            let name = format!("{prefix}-{}", suffix(self.salt ^ u64::from(serial), 5));
            if !taken(&name) {
                return (name, serial);
            }
        }
    }

    /// Metadata for an object created by churn right now.
    pub(super) fn fresh(&mut self) -> Meta {
        let rv = self.bump();
        let inc = self.next_serial();
        Meta {
            rv,
            created: self.now,
            inc,
            generation: 1,
        }
    }

    /// Exact number of objects the plan renders to.
    pub(super) fn len(&self) -> usize {
        // Bound PersistentVolumes are counted with the namespace whose claims they serve.
        self.nodes.len()
            + self.cluster.len()
            + self.namespaces.iter().map(Namespace::len).sum::<usize>()
    }
}

impl Namespace {
    /// Objects this namespace contributes: its own Namespace object, everything inside it and
    /// the PersistentVolumes bound to its claims.
    pub(super) fn len(&self) -> usize {
        1 + self.objects.len()
            + self.releases.iter().map(|r| r.records.len()).sum::<usize>()
            + self
                .apps
                .iter()
                .map(|a| a.len() + a.volume_count())
                .sum::<usize>()
    }
}

impl App {
    /// Namespaced objects of this app.
    pub(super) fn len(&self) -> usize {
        let workload = match &self.workload {
            Workload::Deployment(d) => 1 + d.sets.iter().map(|rs| 1 + rs.pods.len()).sum::<usize>(),
            Workload::StatefulSet(s) => 1 + s.pods.len() + s.claims.len(),
            Workload::DaemonSet(d) => 1 + d.pods.len(),
            Workload::CronJob(c) => 1 + 2 * c.runs.len(),
            Workload::Job(_) => 2,
        };
        let ingress = self
            .ingress
            .as_ref()
            .map_or(0, |i| 1 + usize::from(i.tls.is_some()));
        workload
            + ingress
            + usize::from(self.account.is_some())
            + usize::from(self.config.is_some())
            + usize::from(self.secret.is_some())
            + 2 * usize::from(self.service.is_some())
            + usize::from(self.hpa.is_some())
            + usize::from(self.pdb.is_some())
            + usize::from(self.netpol.is_some())
            + usize::from(self.claim.is_some())
    }

    /// Cluster-scoped PersistentVolumes bound to this app's claims.
    pub(super) fn volume_count(&self) -> usize {
        let own = self
            .claim
            .as_ref()
            .map_or(0, |c| usize::from(c.volume.is_some()));
        match &self.workload {
            Workload::StatefulSet(s) => {
                own + s.claims.iter().filter(|c| c.volume.is_some()).count()
            }
            _ => own,
        }
    }

    pub(super) fn deployment(&self) -> Option<&Deployment> {
        match &self.workload {
            Workload::Deployment(d) => Some(d),
            _ => None,
        }
    }

    /// Every Pod of the app, in rendering order.
    pub(super) fn pods(&self) -> Box<dyn Iterator<Item = &Pod> + '_> {
        match &self.workload {
            Workload::Deployment(d) => Box::new(d.sets.iter().flat_map(|rs| &rs.pods)),
            Workload::StatefulSet(s) => Box::new(s.pods.iter()),
            Workload::DaemonSet(d) => Box::new(d.pods.iter()),
            Workload::CronJob(c) => Box::new(c.runs.iter().map(|r| &r.pod)),
            Workload::Job(j) => Box::new(std::iter::once(&j.pod)),
        }
    }
}
