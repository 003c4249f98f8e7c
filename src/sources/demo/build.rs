//! Construction of the initial plan from a `DemoConfig`: the cluster-scoped singletons, the fixed
//! "feature" namespaces that always hold every kind, problem and Helm case, the shared-ConfigMap
//! namespace (big for benchmarks), and then random filler namespaces until the object budget is
//! reached.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::DemoConfig;
use super::names;
use super::plan::{
    App, Claim, ClusterKind, ClusterObj, Config, CronJob, DaemonSet, Deployment, Hpa, Ingress, Job,
    Meta, Namespace, Node, NsKind, NsObj, Pdb, Plan, Pod, PodState, Profile, Release, ReplicaSet,
    Run, Service, StatefulSet, SvcKind, Workload, mech,
};
use super::util::{hash, mix, suffix};

const DAY: i64 = 86_400;

/// Approximate objects per Pod of a whole cluster, used to size the Node pool at about 30 Pods
/// per Node before the exact Pod count is known.
const OBJECTS_PER_NODE: usize = 210;

const fn custom(port: u16, cpu: &'static str, memory: &'static str) -> Profile {
    Profile {
        image: "",
        tags: &[],
        port,
        port_name: "http",
        protocol: "TCP",
        cpu,
        memory,
        data_path: "",
    }
}

const fn stock(
    image: &'static str,
    tags: &'static [&'static str],
    port: u16,
    port_name: &'static str,
    data_path: &'static str,
) -> Profile {
    Profile {
        image,
        tags,
        port,
        port_name,
        protocol: "TCP",
        cpu: "100m",
        memory: "128Mi",
        data_path,
    }
}

static WEB: Profile = custom(8080, "100m", "128Mi");
static API: Profile = custom(8080, "250m", "256Mi");
static WORKER: Profile = custom(0, "200m", "256Mi");
static BATCH: Profile = custom(0, "100m", "128Mi");
static NGINX: Profile = stock(
    "docker.io/library/nginx",
    &["1.27.1", "1.27.2", "1.27.3", "1.27.4"],
    80,
    "http",
    "",
);
static REDIS: Profile = stock(
    "docker.io/bitnami/redis",
    &[
        "7.2.5-debian-12-r4",
        "7.4.1-debian-12-r0",
        "7.4.1-debian-12-r2",
    ],
    6379,
    "redis",
    "/bitnami/redis/data",
);
static POSTGRES: Profile = stock(
    "docker.io/library/postgres",
    &["16.3", "16.4", "16.6"],
    5432,
    "postgresql",
    "/var/lib/postgresql/data",
);
static COREDNS: Profile = Profile {
    protocol: "UDP",
    ..stock(
        "registry.k8s.io/coredns/coredns",
        &["v1.11.3"],
        53,
        "dns",
        "",
    )
};
static KUBE_PROXY: Profile = stock("registry.k8s.io/kube-proxy", &["v1.31.4"], 0, "", "");
static METRICS_SERVER: Profile = stock(
    "registry.k8s.io/metrics-server/metrics-server",
    &["v0.7.2"],
    10250,
    "https",
    "",
);
static INGRESS_NGINX: Profile = stock(
    "registry.k8s.io/ingress-nginx/controller",
    &["v1.11.2", "v1.11.3"],
    80,
    "http",
    "",
);
static NODE_EXPORTER: Profile = stock(
    "quay.io/prometheus/node-exporter",
    &["v1.8.2"],
    9100,
    "http-metrics",
    "",
);
static PROMETHEUS: Profile = stock(
    "quay.io/prometheus/prometheus",
    &["v2.55.1"],
    9090,
    "http-web",
    "/prometheus",
);
static GRAFANA: Profile = stock(
    "docker.io/grafana/grafana",
    &["11.3.0"],
    3000,
    "grafana",
    "",
);
static FLUENT_BIT: Profile = stock(
    "cr.fluentbit.io/fluent/fluent-bit",
    &["3.1.9"],
    2020,
    "http",
    "",
);

/// Product teams that own the filler namespaces (`<team>-<env>`).
const TEAMS: &[&str] = &[
    "payments",
    "orders",
    "identity",
    "search",
    "catalog",
    "billing",
    "shipping",
    "analytics",
    "media",
    "notifications",
    "inventory",
    "pricing",
    "reviews",
    "loyalty",
    "support",
    "partners",
    "fraud",
    "ads",
    "messaging",
    "data-platform",
];
const ENVS: &[&str] = &["prod", "staging", "dev", "qa"];

/// Service names apps are drawn from inside a namespace.
const APP_NAMES: &[&str] = &[
    "api",
    "web",
    "worker",
    "gateway",
    "auth",
    "users",
    "cart",
    "catalog",
    "search",
    "pricing",
    "inventory",
    "orders",
    "payments",
    "notifications",
    "email",
    "sms",
    "scheduler",
    "reports",
    "exporter",
    "importer",
    "sync",
    "webhooks",
    "media",
    "thumbnails",
    "recommendations",
    "ratings",
    "sessions",
    "profile",
    "ledger",
    "invoices",
    "refunds",
    "fraud-check",
    "geo",
    "currency",
    "shipping",
    "tracking",
    "loyalty",
    "coupons",
];

const CHART_VERSIONS: &[&str] = &["0.4.2", "0.5.0", "0.5.3", "1.0.1", "1.2.0"];
const APP_VERSIONS: &[&str] = &["1.8.0", "1.9.2", "2.0.0", "2.1.4"];

/// A chart as (name, version, appVersion).
pub(super) type Chart = (&'static str, &'static str, &'static str);

/// The ingress-nginx chart; the renderer also labels the release's cluster-scoped objects with it.
pub(super) const INGRESS_NGINX_CHART: Chart = ("ingress-nginx", "4.11.3", "1.11.3");

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment(u32),
    StatefulSet(u32),
    DaemonSet,
    CronJob(i64),
    Job,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Problem {
    None,
    CrashLoop,
    ImagePull,
    MissingConfig,
    PendingClaim,
}

/// Everything needed to build one app; fixtures spell it out, fillers draw it at random.
struct AppSpec {
    name: String,
    profile: &'static Profile,
    kind: Kind,
    tier: &'static str,
    helm: Option<u16>,
    service: Option<SvcKind>,
    ingress: bool,
    tls: bool,
    hpa: bool,
    pdb: bool,
    pdb_expressions: bool,
    netpol: bool,
    config: bool,
    secret: bool,
    account: bool,
    mech: u8,
    old_revisions: u32,
    problem: Problem,
    shared_config: bool,
    fixed_scale: bool,
    claim: Option<&'static str>,
}

impl AppSpec {
    fn new(name: &str, profile: &'static Profile, kind: Kind) -> Self {
        AppSpec {
            name: name.to_string(),
            profile,
            kind,
            tier: "backend",
            helm: None,
            service: None,
            ingress: false,
            tls: false,
            hpa: false,
            pdb: false,
            pdb_expressions: false,
            netpol: false,
            config: false,
            secret: false,
            account: false,
            mech: 0,
            old_revisions: 1,
            problem: Problem::None,
            shared_config: false,
            fixed_scale: false,
            claim: None,
        }
    }
}

/// Name of the i-th Node, in the EKS style `ip-10-0-16-4.eu-west-1.compute.internal`.
pub(super) fn node_name(i: usize) -> String {
    format!(
        "ip-10-0-{}-{}.eu-west-1.compute.internal",
        16 + i / 250,
        4 + i % 250
    )
}

/// The pod-template-hash of a Deployment revision; stable so that churn can derive new ones.
pub(super) fn template_hash(salt: u64, ns: &str, app: &str, revision: u32) -> String {
    suffix(mix(salt ^ hash(&format!("{ns}/{app}/{revision}"))), 10)
}

/// Builds the initial plan for `cfg`.
pub(super) fn build(cfg: &DemoConfig) -> Plan {
    let mut b = Builder {
        plan: Plan {
            now: cfg.now,
            root: Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("astrolabe-demo/{}", cfg.seed).as_bytes(),
            ),
            salt: mix(cfg.seed),
            rv: 1000,
            serial: 0,
            nodes: Vec::new(),
            cluster: Vec::new(),
            namespaces: Vec::new(),
        },
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        target: cfg.objects,
        service_ip: 20,
    };
    b.cluster_objects();
    b.system_namespaces();
    b.problem_namespace();
    b.big_namespace();
    b.fill();
    b.plan
}

struct Builder {
    plan: Plan,
    rng: ChaCha8Rng,
    target: usize,
    /// Next free offset in the Service CIDR (low ones are reserved, e.g. 10 for kube-dns).
    service_ip: u32,
}

impl Builder {
    fn now(&self) -> i64 {
        self.plan.now
    }

    /// A uniformly random time in [lo, hi], or hi when the range is empty.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if lo >= hi {
            hi
        } else {
            self.rng.random_range(lo..=hi)
        }
    }

    fn meta(&mut self, created: i64) -> Meta {
        let rv = self.plan.bump();
        Meta {
            rv,
            created,
            inc: 0,
            generation: 1,
        }
    }

    /// A Node for a Pod of the initial state: anything but the NotReady node (index 1), whose
    /// Pods were evicted. Pods created before the cordon may still sit on the cordoned one.
    fn initial_node(&mut self) -> u32 {
        let n = self.plan.nodes.len() as u32;
        match self.rng.random_range(0..n) {
            1 => 0,
            i => i,
        }
    }

    fn pod(&mut self, name: String, serial: u32, node: u32, created: i64, state: PodState) -> Pod {
        let restarts = match state {
            PodState::CrashLoop => self.rng.random_range(20..60),
            PodState::Running if self.rng.random_bool(0.15) => self.rng.random_range(1..5),
            _ => 0,
        };
        Pod {
            meta: self.meta(created),
            name,
            node,
            serial,
            restarts,
            state,
        }
    }

    fn cluster_objects(&mut self) {
        let count = (self.target / OBJECTS_PER_NODE).max(3);
        for i in 0..count {
            let created = self.between(self.now() - 90 * DAY, self.now() - 5 * DAY);
            let transition = created + 40;
            let meta = self.meta(created);
            let (ready, cordoned) = (i != 1, i == 2);
            let transition = if ready {
                transition
            } else {
                self.now() - 2 * 3600
            };
            self.plan.nodes.push(Node {
                meta,
                ready,
                cordoned,
                transition,
            });
        }
        let born = self.now() - 400 * DAY;
        for kind in [
            ClusterKind::StandardClass,
            ClusterKind::FastClass,
            ClusterKind::IngressClass,
            ClusterKind::ClusterRole,
            ClusterKind::ClusterRoleBinding,
            ClusterKind::ReleasedVolume,
        ] {
            let created = if kind == ClusterKind::ReleasedVolume {
                self.now() - 30 * DAY
            } else {
                born
            };
            let meta = self.meta(created);
            self.plan.cluster.push(ClusterObj { kind, meta });
        }
    }

    fn namespace(
        &mut self,
        name: &str,
        team: &'static str,
        env: &'static str,
        system: bool,
    ) -> usize {
        let created = if system {
            self.now() - 400 * DAY
        } else {
            self.between(self.now() - 380 * DAY, self.now() - 20 * DAY)
        };
        let meta = self.meta(created);
        let mut ns = Namespace {
            name: name.to_string(),
            meta,
            team,
            env,
            system,
            objects: Vec::new(),
            releases: Vec::new(),
            apps: Vec::new(),
        };
        for kind in [NsKind::DefaultAccount, NsKind::RootCa] {
            let meta = self.meta(created);
            ns.objects.push(NsObj {
                kind,
                meta,
                version: 1,
            });
        }
        self.plan.namespaces.push(ns);
        self.plan.namespaces.len() - 1
    }

    fn ns_object(&mut self, ns: usize, kind: NsKind) {
        let created = self.plan.namespaces[ns].meta.created + 600;
        let meta = self.meta(created);
        self.plan.namespaces[ns].objects.push(NsObj {
            kind,
            meta,
            version: 1,
        });
    }

    /// Adds a Helm release of `chart` = (name, version, appVersion) with `revisions` records.
    fn release(
        &mut self,
        ns: usize,
        name: &str,
        chart: Chart,
        revisions: u32,
        failed: bool,
    ) -> u16 {
        let (chart, chart_version, app_version) = chart;
        let first = self.between(self.plan.namespaces[ns].meta.created, self.now() - 10 * DAY);
        let step = (self.now() - first) / i64::from(revisions + 1);
        let records = (0..revisions)
            .map(|i| self.meta(first + step * i64::from(i)))
            .collect();
        let releases = &mut self.plan.namespaces[ns].releases;
        releases.push(Release {
            name: name.to_string(),
            chart,
            chart_version,
            app_version,
            records,
            failed,
        });
        (releases.len() - 1) as u16
    }

    /// Builds one app and appends it to namespace `ns`.
    fn app(&mut self, ns: usize, spec: &AppSpec) {
        let ns_created = self.plan.namespaces[ns].meta.created;
        let ns_name = self.plan.namespaces[ns].name.clone();
        let system = self.plan.namespaces[ns].system;
        let created = self.between(ns_created + 3600, self.now() - 3 * DAY);
        let name = spec.name.clone();
        let workload = match spec.kind {
            Kind::Deployment(replicas) => {
                Workload::Deployment(self.deployment(&ns_name, spec, created, replicas))
            }
            Kind::StatefulSet(replicas) => {
                Workload::StatefulSet(self.stateful_set(spec, created, replicas))
            }
            Kind::DaemonSet => Workload::DaemonSet(self.daemon_set(&ns_name, &name, created)),
            Kind::CronJob(period) => Workload::CronJob(self.cron_job(&name, created, period)),
            Kind::Job => {
                let created = self.now() - self.rng.random_range(3600..2 * DAY);
                let meta = self.meta(created);
                let serial = self.plan.next_serial();
                let pod_name = format!("{name}-{}", suffix(self.plan.salt ^ u64::from(serial), 5));
                let node = self.initial_node();
                let pod = self.pod(pod_name, serial, node, created + 1, PodState::Failed);
                Workload::Job(Job { meta, pod })
            }
        };
        let replicas = match spec.kind {
            Kind::Deployment(r) | Kind::StatefulSet(r) => r,
            _ => 1,
        };
        let meta = |b: &mut Self, on: bool| on.then(|| b.meta(created));
        let account = meta(self, spec.account);
        let config = meta(self, spec.config).map(|meta| Config { meta, version: 1 });
        let secret = meta(self, spec.secret);
        let netpol = meta(self, spec.netpol);
        let service = spec.service.map(|kind| {
            let svc_name = if name == "coredns" {
                "kube-dns".to_string()
            } else {
                name.clone()
            };
            let ip = if name == "coredns" {
                10
            } else {
                self.service_ip += 1;
                self.service_ip
            };
            let slice_name = format!(
                "{svc_name}-{}",
                suffix(self.plan.salt ^ hash(&format!("{ns_name}/{svc_name}")), 5)
            );
            Service {
                meta: self.meta(created),
                name: svc_name,
                kind,
                ip,
                variant: 0,
                slice: self.meta(created + 5),
                slice_name,
            }
        });
        let ingress = spec.ingress.then(|| Ingress {
            meta: self.meta(created),
            host: format!("{name}.{ns_name}.example.com"),
            tls: spec.tls.then(|| self.meta(created)),
        });
        let hpa = spec.hpa.then(|| {
            let min = replicas.clamp(1, 2);
            let max = replicas + self.rng.random_range(2..=6);
            let cpu = self.rng.random_range(20..=85);
            Hpa {
                meta: self.meta(created),
                min,
                max,
                cpu,
            }
        });
        let pdb = spec.pdb.then(|| {
            let min_available = u32::from(replicas >= 2 && self.rng.random_bool(0.5));
            Pdb {
                meta: self.meta(created),
                min_available,
                expressions: spec.pdb_expressions,
            }
        });
        let claim = spec.claim.map(|claim| Claim {
            meta: self.meta(created),
            name: claim.to_string(),
            fast: true,
            size_gi: 100,
            volume: None,
        });
        let app = App {
            name,
            profile: spec.profile,
            tier: spec.tier,
            helm: spec.helm,
            kubectl: spec.helm.is_none() && !system,
            pinned: spec.problem != Problem::None || spec.kind == Kind::Job,
            fixed_scale: spec.fixed_scale,
            mech: spec.mech,
            shared_config: spec.shared_config,
            missing_config: spec.problem == Problem::MissingConfig,
            account,
            config,
            secret,
            workload,
            service,
            ingress,
            hpa,
            pdb,
            netpol,
            claim,
        };
        self.plan.namespaces[ns].apps.push(app);
    }

    fn deployment(&mut self, ns: &str, spec: &AppSpec, created: i64, replicas: u32) -> Deployment {
        let revisions = spec.old_revisions + 1;
        let span = (self.now() - created - 3600).max(i64::from(revisions));
        let stuck = spec.problem == Problem::ImagePull;
        // Exact capacities: a Vec grows to at least four elements, and with hundreds of thousands
        // of one-Pod ReplicaSets that slack would dominate the plan's memory.
        let mut sets = Vec::with_capacity(revisions as usize);
        for revision in 1..=revisions {
            let rs_created = created + span * i64::from(revision - 1) / i64::from(revisions);
            let hash = template_hash(self.plan.salt, ns, &spec.name, revision);
            // A stuck rollout keeps the previous revision serving while one new Pod cannot
            // pull its image (maxSurge 25% rounds up to one extra Pod).
            let (count, state) = match (revision == revisions, stuck) {
                (true, true) => (1, PodState::ImagePull),
                (true, false) => (replicas, PodState::Running),
                (false, true) if revision + 1 == revisions => (replicas, PodState::Running),
                _ => (0, PodState::Running),
            };
            let mut pods: Vec<Pod> = Vec::with_capacity(count as usize);
            for i in 0..count {
                let state = match spec.problem {
                    Problem::CrashLoop if i == 0 => PodState::CrashLoop,
                    Problem::MissingConfig => PodState::ConfigError,
                    Problem::PendingClaim => PodState::Unschedulable,
                    _ => state,
                };
                let (name, serial) = self
                    .plan
                    .pod_identity(&format!("{}-{hash}", spec.name), |n| {
                        pods.iter().any(|p| p.name == n)
                    });
                let node = if state == PodState::Unschedulable {
                    0
                } else {
                    self.initial_node()
                };
                let pod_created = self.between(rs_created + 5, self.now() - 600);
                pods.push(self.pod(name, serial, node, pod_created, state));
            }
            let meta = self.meta(rs_created);
            sets.push(ReplicaSet {
                meta,
                revision,
                hash,
                desired: replicas,
                version: revision,
                pods,
            });
        }
        let mut meta = self.meta(created);
        meta.generation = revisions;
        Deployment {
            meta,
            replicas,
            stuck,
            sets,
        }
    }

    fn stateful_set(&mut self, spec: &AppSpec, created: i64, replicas: u32) -> StatefulSet {
        let meta = self.meta(created);
        let hash = format!(
            "{}-{}",
            spec.name,
            suffix(self.plan.salt ^ hash(&spec.name), 10)
        );
        let mut pods = Vec::with_capacity(replicas as usize);
        let mut claims = Vec::with_capacity(replicas as usize);
        let fast = spec.profile.data_path != "/bitnami/redis/data";
        for i in 0..replicas {
            let claim_meta = self.meta(created + 2);
            let volume = Some(self.meta(created + 3));
            claims.push(Claim {
                meta: claim_meta,
                name: format!("data-{}-{i}", spec.name),
                fast,
                size_gi: if fast { 50 } else { 8 },
                volume,
            });
            let serial = self.plan.next_serial();
            let node = self.initial_node();
            let pod_created = self.between(created + 10, self.now() - 600);
            pods.push(self.pod(
                format!("{}-{i}", spec.name),
                serial,
                node,
                pod_created,
                PodState::Running,
            ));
        }
        StatefulSet {
            meta,
            hash,
            pods,
            claims,
        }
    }

    fn daemon_set(&mut self, ns: &str, app: &str, created: i64) -> DaemonSet {
        let meta = self.meta(created);
        let hash = suffix(self.plan.salt ^ hash(&format!("{ns}/{app}")), 10);
        let mut pods: Vec<Pod> = Vec::with_capacity(self.plan.nodes.len());
        let mut taken = HashSet::new();
        for node in 0..self.plan.nodes.len() {
            let (name, serial) = self.plan.pod_identity(app, |n| taken.contains(n));
            taken.insert(name.clone());
            let pod_created = created.max(self.plan.nodes[node].meta.created) + 30;
            pods.push(self.pod(name, serial, node as u32, pod_created, PodState::Running));
        }
        DaemonSet { meta, hash, pods }
    }

    fn cron_job(&mut self, app: &str, created: i64, period_min: i64) -> CronJob {
        let last = self.now() / 60 / period_min * period_min;
        let first = last - 2 * period_min;
        let meta = self.meta(created.min(first * 60 - 3600));
        let mut runs = Vec::with_capacity(3);
        for minute in [first, first + period_min, last] {
            let job_meta = self.meta(minute * 60);
            let serial = self.plan.next_serial();
            let name = format!(
                "{app}-{minute}-{}",
                suffix(self.plan.salt ^ u64::from(serial), 5)
            );
            let node = self.initial_node();
            let pod = self.pod(name, serial, node, minute * 60, PodState::Succeeded);
            runs.push(Run {
                meta: job_meta,
                minute,
                pod,
            });
        }
        let schedule = match period_min {
            15 => "*/15 * * * *",
            30 => "*/30 * * * *",
            60 => "0 * * * *",
            360 => "0 */6 * * *",
            _ => "0 0 * * *",
        };
        CronJob {
            meta,
            schedule,
            period_min,
            runs,
        }
    }

    /// kube-system plus the add-on namespaces, each installed the way real clusters install them.
    fn system_namespaces(&mut self) {
        for name in ["default", "kube-public", "kube-node-lease"] {
            self.namespace(name, "platform", "prod", true);
        }
        let ks = self.namespace("kube-system", "platform", "prod", true);
        self.app(
            ks,
            &AppSpec {
                service: Some(SvcKind::ClusterIp),
                config: true,
                account: true,
                mech: mech::CM_VOLUME,
                pdb: true,
                ..AppSpec::new("coredns", &COREDNS, Kind::Deployment(2))
            },
        );
        self.app(
            ks,
            &AppSpec {
                config: true,
                account: true,
                mech: mech::CM_VOLUME,
                ..AppSpec::new("kube-proxy", &KUBE_PROXY, Kind::DaemonSet)
            },
        );
        self.app(
            ks,
            &AppSpec {
                service: Some(SvcKind::ClusterIp),
                account: true,
                ..AppSpec::new("metrics-server", &METRICS_SERVER, Kind::Deployment(1))
            },
        );

        let ing = self.namespace("ingress-nginx", "platform", "prod", true);
        let rel = self.release(
            ing,
            names::HELM_CLUSTER_RELEASE,
            INGRESS_NGINX_CHART,
            2,
            false,
        );
        self.app(
            ing,
            &AppSpec {
                helm: Some(rel),
                service: Some(SvcKind::LoadBalancer),
                config: true,
                account: true,
                pdb: true,
                mech: mech::CM_ENV_FROM,
                tier: "frontend",
                ..AppSpec::new(
                    "ingress-nginx-controller",
                    &INGRESS_NGINX,
                    Kind::Deployment(2),
                )
            },
        );

        let mon = self.namespace("monitoring", "platform", "prod", true);
        let rel = self.release(
            mon,
            "kube-prometheus-stack",
            ("kube-prometheus-stack", "65.1.1", "v0.77.2"),
            3,
            false,
        );
        self.app(
            mon,
            &AppSpec {
                helm: Some(rel),
                service: Some(SvcKind::ClusterIp),
                account: true,
                ..AppSpec::new("node-exporter", &NODE_EXPORTER, Kind::DaemonSet)
            },
        );
        self.app(
            mon,
            &AppSpec {
                helm: Some(rel),
                service: Some(SvcKind::Headless),
                config: true,
                account: true,
                mech: mech::CM_VOLUME,
                ..AppSpec::new("prometheus", &PROMETHEUS, Kind::StatefulSet(1))
            },
        );
        self.app(
            mon,
            &AppSpec {
                helm: Some(rel),
                service: Some(SvcKind::ClusterIp),
                ingress: true,
                tls: true,
                config: true,
                secret: true,
                account: true,
                mech: mech::CM_VOLUME | mech::SECRET_KEY_REF,
                tier: "frontend",
                ..AppSpec::new("grafana", &GRAFANA, Kind::Deployment(1))
            },
        );

        let log = self.namespace("logging", "platform", "prod", true);
        let rel = self.release(
            log,
            "fluent-bit",
            ("fluent-bit", "0.47.10", "3.1.9"),
            2,
            false,
        );
        self.app(
            log,
            &AppSpec {
                helm: Some(rel),
                config: true,
                account: true,
                mech: mech::CM_VOLUME,
                ..AppSpec::new("fluent-bit", &FLUENT_BIT, Kind::DaemonSet)
            },
        );
    }

    /// The namespace that holds every permanent problem and the trickier Helm cases.
    fn problem_namespace(&mut self) {
        let shop = self.namespace(names::PROBLEM_NAMESPACE, "shop", "prod", false);
        for kind in [
            NsKind::Regcred,
            NsKind::DefaultDeny,
            NsKind::Role,
            NsKind::RoleBinding,
            NsKind::DanglingIngress,
        ] {
            self.ns_object(shop, kind);
        }
        self.app(
            shop,
            &AppSpec {
                tier: "frontend",
                service: Some(SvcKind::ClusterIp),
                ingress: true,
                tls: true,
                hpa: true,
                pdb: true,
                pdb_expressions: true,
                netpol: true,
                config: true,
                secret: true,
                account: true,
                mech: mech::CM_VOLUME | mech::SECRET_ENV_FROM | mech::PULL_SECRET,
                old_revisions: 2,
                ..AppSpec::new("storefront", &WEB, Kind::Deployment(3))
            },
        );
        self.app(
            shop,
            &AppSpec {
                problem: Problem::CrashLoop,
                config: true,
                secret: true,
                account: true,
                mech: mech::CM_KEY_REF | mech::SECRET_KEY_REF,
                ..AppSpec::new(names::CRASHLOOP_DEPLOYMENT, &WORKER, Kind::Deployment(2))
            },
        );
        self.app(
            shop,
            &AppSpec {
                problem: Problem::ImagePull,
                service: Some(SvcKind::ClusterIp),
                config: true,
                secret: true,
                mech: mech::PROJECTED | mech::PULL_SECRET,
                ..AppSpec::new(names::IMAGE_PULL_DEPLOYMENT, &API, Kind::Deployment(2))
            },
        );
        self.app(
            shop,
            &AppSpec {
                problem: Problem::MissingConfig,
                secret: true,
                mech: mech::CM_ENV_FROM | mech::CM_KEY_REF | mech::SECRET_VOLUME,
                ..AppSpec::new(
                    names::MISSING_CONFIGMAP_DEPLOYMENT,
                    &WORKER,
                    Kind::Deployment(1),
                )
            },
        );
        self.app(
            shop,
            &AppSpec {
                problem: Problem::PendingClaim,
                claim: Some(names::PENDING_PVC),
                service: Some(SvcKind::ClusterIp),
                ..AppSpec::new(names::PENDING_PVC_DEPLOYMENT, &API, Kind::Deployment(1))
            },
        );
        self.app(
            shop,
            &AppSpec {
                service: Some(SvcKind::PendingLoadBalancer),
                config: true,
                netpol: true,
                mech: mech::CM_ENV_FROM,
                ..AppSpec::new(names::PENDING_LB_SERVICE, &API, Kind::Deployment(2))
            },
        );
        let rel = self.release(
            shop,
            names::HELM_FAILED_RELEASE,
            ("checkout", "2.3.1", "2.3.1"),
            3,
            true,
        );
        self.app(
            shop,
            &AppSpec {
                helm: Some(rel),
                service: Some(SvcKind::ClusterIp),
                hpa: true,
                pdb: true,
                config: true,
                secret: true,
                account: true,
                mech: mech::CM_VOLUME | mech::SECRET_ENV_FROM,
                ..AppSpec::new(names::HELM_FAILED_RELEASE, &API, Kind::Deployment(2))
            },
        );
        self.shared_release(shop);
        self.app(
            shop,
            &AppSpec {
                config: true,
                secret: true,
                mech: mech::CM_ENV_FROM | mech::SECRET_ENV_FROM,
                ..AppSpec::new("report-generator", &BATCH, Kind::CronJob(60))
            },
        );
        self.app(
            shop,
            &AppSpec {
                secret: true,
                mech: mech::SECRET_KEY_REF,
                ..AppSpec::new(names::FAILED_JOB, &BATCH, Kind::Job)
            },
        );
    }

    /// The Helm release whose name also exists in another namespace.
    fn shared_release(&mut self, ns: usize) {
        let rel = self.release(
            ns,
            names::HELM_SHARED_RELEASE,
            ("redis", "20.2.1", "7.4.1"),
            2,
            false,
        );
        self.app(
            ns,
            &AppSpec {
                helm: Some(rel),
                service: Some(SvcKind::Headless),
                secret: true,
                account: true,
                mech: mech::SECRET_KEY_REF,
                ..AppSpec::new(names::HELM_SHARED_RELEASE, &REDIS, Kind::StatefulSet(1))
            },
        );
    }

    /// The namespace of the shared ConfigMap; for benchmark sizes it is also the big namespace.
    fn big_namespace(&mut self) {
        let big = self.namespace(names::BIG_NAMESPACE, "marketplace", "prod", false);
        self.ns_object(big, NsKind::SharedConfig);
        self.ns_object(big, NsKind::Regcred);
        self.shared_release(big);
        let mut remaining = names::shared_configmap_users(self.target) as u32;
        let mut index = 0;
        while remaining > 0 {
            let replicas = remaining.min(self.rng.random_range(1..=4));
            remaining -= replicas;
            let name = app_name(index);
            index += 1;
            let spec = self.random_app(&name, true, Some(replicas));
            self.app(
                big,
                &AppSpec {
                    shared_config: true,
                    fixed_scale: true,
                    ..spec
                },
            );
        }
        let goal = names::big_namespace_objects(self.target);
        while self.plan.namespaces[big].len() < goal {
            let name = app_name(index);
            index += 1;
            let spec = self.random_app(&name, true, None);
            self.add_random(big, spec);
        }
    }

    /// Filler namespaces with a handful of random apps each, until the object budget is spent.
    fn fill(&mut self) {
        let mut count = self.plan.len();
        let mut filler = 0;
        while count < self.target {
            let team = TEAMS[filler % TEAMS.len()];
            let env = ENVS[filler / TEAMS.len() % ENVS.len()];
            let round = filler / (TEAMS.len() * ENVS.len());
            let name = if round == 0 {
                format!("{team}-{env}")
            } else {
                format!("{team}-{env}-{}", round + 1)
            };
            filler += 1;
            let ns = self.namespace(&name, team, env, false);
            let regcred = self.rng.random_bool(0.5);
            if regcred {
                self.ns_object(ns, NsKind::Regcred);
            }
            if self.rng.random_bool(0.4) {
                self.ns_object(ns, NsKind::DefaultDeny);
            }
            if self.rng.random_bool(0.6) {
                self.ns_object(ns, NsKind::Role);
                self.ns_object(ns, NsKind::RoleBinding);
            }
            count += self.plan.namespaces[ns].len();
            let apps = self.rng.random_range(3..=9);
            let offset = self.rng.random_range(0..APP_NAMES.len());
            for i in 0..apps {
                if count >= self.target {
                    break;
                }
                let spec = self.random_app(&app_name(offset + i), regcred, None);
                let before = self.plan.namespaces[ns].len();
                self.add_random(ns, spec);
                count += self.plan.namespaces[ns].len() - before;
            }
        }
    }

    /// Adds a random app, giving it its own Helm release when it was drawn as Helm-installed.
    fn add_random(&mut self, ns: usize, mut spec: AppSpec) {
        if self.rng.random_bool(0.4) {
            let chart_version = CHART_VERSIONS[self.rng.random_range(0..CHART_VERSIONS.len())];
            let app_version = APP_VERSIONS[self.rng.random_range(0..APP_VERSIONS.len())];
            // Helm keeps up to ten release records per release by default.
            let revisions = self.rng.random_range(1..=10);
            let name = spec.name.clone();
            spec.helm = Some(self.release(
                ns,
                &name,
                ("acme-service", chart_version, app_version),
                revisions,
                false,
            ));
        }
        self.app(ns, &spec);
    }

    /// Draws an app; `replicas` forces a Deployment of that size (the shared-ConfigMap users).
    fn random_app(&mut self, name: &str, regcred: bool, replicas: Option<u32>) -> AppSpec {
        let rng = &mut self.rng;
        let roll = rng.random_range(0..100);
        let kind = match (replicas, roll) {
            (Some(r), _) => Kind::Deployment(r),
            (None, 0..84) => Kind::Deployment(match rng.random_range(0..100) {
                0..55 => 1,
                55..85 => 2,
                85..95 => 3,
                _ => rng.random_range(4..=6),
            }),
            (None, 84..91) => Kind::StatefulSet(rng.random_range(1..=3)),
            _ => Kind::CronJob([15, 30, 60, 360, 1440][rng.random_range(0..5)]),
        };
        let profile: &'static Profile = match kind {
            Kind::StatefulSet(_) if rng.random_bool(0.5) => &REDIS,
            Kind::StatefulSet(_) => &POSTGRES,
            Kind::CronJob(_) => &BATCH,
            _ => [
                &WEB, &API, &API, &WORKER, &API, &WEB, &WORKER, &NGINX, &API, &API,
            ][rng.random_range(0..10)],
        };
        let frontend = std::ptr::eq(profile, &WEB) || std::ptr::eq(profile, &NGINX);
        let replicas = match kind {
            Kind::Deployment(r) => r,
            _ => 1,
        };
        let service = match kind {
            Kind::StatefulSet(_) => Some(SvcKind::Headless),
            _ if profile.port == 0 || rng.random_bool(0.1) => None,
            _ if rng.random_bool(0.03) => Some(SvcKind::LoadBalancer),
            _ => Some(SvcKind::ClusterIp),
        };
        let ingress = service == Some(SvcKind::ClusterIp) && frontend && rng.random_bool(0.5);
        let deployment = matches!(kind, Kind::Deployment(_));
        let config = rng.random_bool(0.85);
        let secret = rng.random_bool(0.75);
        let mut mech = 0;
        if config {
            mech |= [
                mech::CM_VOLUME,
                mech::CM_ENV_FROM,
                mech::CM_KEY_REF,
                mech::PROJECTED,
            ][rng.random_range(0..4)];
        }
        if secret {
            mech |= [
                mech::SECRET_VOLUME,
                mech::SECRET_ENV_FROM,
                mech::SECRET_KEY_REF,
                mech::PROJECTED,
            ][rng.random_range(0..4)];
        }
        if regcred && profile.image.is_empty() && rng.random_bool(0.5) {
            mech |= mech::PULL_SECRET;
        }
        AppSpec {
            tier: if frontend { "frontend" } else { "backend" },
            service,
            ingress,
            tls: ingress && rng.random_bool(0.75),
            hpa: deployment && replicas >= 2 && rng.random_bool(0.35),
            pdb: deployment && replicas >= 2 && rng.random_bool(0.4),
            pdb_expressions: rng.random_bool(0.3),
            netpol: service.is_some() && rng.random_bool(0.35),
            config,
            secret,
            account: rng.random_bool(0.65),
            mech,
            old_revisions: rng.random_range(1..=2),
            ..AppSpec::new(name, profile, kind)
        }
    }
}

/// The i-th app name of a namespace: the pool first, then numbered repeats.
fn app_name(i: usize) -> String {
    let base = APP_NAMES[i % APP_NAMES.len()];
    match i / APP_NAMES.len() {
        0 => base.to_string(),
        round => format!("{base}-{}", round + 1),
    }
}
