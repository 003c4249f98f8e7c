//! Rendering of plan entries into full API objects, the way the API server returns them: every
//! object goes through `Obj`, which adds the server-owned metadata, managedFields and (for
//! objects applied with kubectl) the last-applied-configuration annotation. This file also holds
//! the object references (`Ref`) that `objects()` walks and `step()` re-renders, and the
//! cluster-scoped and namespace-level kinds; app objects live in `render_app`.

use serde_json::{Map, Value, json};

use super::build::{INGRESS_NGINX_CHART, node_name};
use super::names;
use super::plan::{ClusterKind, Meta, Namespace, NsKind, Plan};
use super::render_app::AppView;
use super::util::{base64, hash, hex, itoa, rfc3339, uid};

/// Which part of an app a reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Account,
    Config,
    Secret,
    OwnClaim,
    Service,
    Slice,
    /// The Deployment, StatefulSet, DaemonSet, CronJob or standalone Job itself.
    Workload,
    ReplicaSet(u32),
    RsPod(u32, u32),
    /// A StatefulSet, DaemonSet or standalone-Job Pod.
    Pod(u32),
    Claim(u32),
    Job(u32),
    JobPod(u32),
    Ingress,
    Tls,
    Hpa,
    Pdb,
    NetPol,
}

/// A reference to one object of the plan, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ref {
    Node(u32),
    Cluster(u32),
    /// The PersistentVolume bound to a StatefulSet claim (`claim`) or to the app's own claim
    /// (`claim == u32::MAX`).
    Volume {
        ns: u32,
        app: u32,
        claim: u32,
    },
    Namespace(u32),
    NsObj(u32, u32),
    Release(u32, u16, u16),
    App(u32, u32, Part),
}

/// Marks the app's own (non-StatefulSet) claim in `Ref::Volume`.
pub(super) const OWN_CLAIM: u32 = u32::MAX;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const KUBECTL: &str = "kubectl-client-side-apply";
pub(super) const CONTROLLER: &str = "kube-controller-manager";

/// A fake but well-formed PEM body; realistic size matters more than validity here.
pub(super) const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIDBTCCAe2gAwIBAgIIRmvGcVFd0rEwDQYJKoZIhvcNAQELBQAwFTETMBEGA1UE\nAxMKa3ViZXJuZXRlczAeFw0yNDExMDExMjAwMDBaFw0zNDEwMzAxMjA1MDBaMBUx\nEzARBgNVBAMTCmt1YmVybmV0ZXMwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK\nAoIBAQDQ7bJx2Gd3n1Xo0ZQH8m3Vd9vT5yq8rKk0W2w0C7e5yX1m3tK8fPq9sZ4n\n-----END CERTIFICATE-----\n";

/// The cluster-scoped objects, in output order (they come before every namespace's objects).
pub(super) fn cluster_refs(plan: &Plan) -> impl Iterator<Item = Ref> + '_ {
    let nodes = (0..plan.nodes.len() as u32).map(Ref::Node);
    let cluster = (0..plan.cluster.len() as u32).map(Ref::Cluster);
    let volumes = plan.namespaces.iter().enumerate().flat_map(|(n, ns)| {
        ns.apps.iter().enumerate().flat_map(move |(a, app)| {
            let (n, a) = (n as u32, a as u32);
            let own = app
                .claim
                .iter()
                .filter(|c| c.volume.is_some())
                .map(move |_| Ref::Volume {
                    ns: n,
                    app: a,
                    claim: OWN_CLAIM,
                });
            let sts = AppView::claims(app)
                .iter()
                .enumerate()
                .filter(|(_, c)| c.volume.is_some())
                .map(move |(c, _)| Ref::Volume {
                    ns: n,
                    app: a,
                    claim: c as u32,
                });
            own.chain(sts)
        })
    });
    let namespaces = (0..plan.namespaces.len() as u32).map(Ref::Namespace);
    nodes.chain(cluster).chain(volumes).chain(namespaces)
}

/// The objects inside namespace `n`, in output order.
pub(super) fn namespace_refs(n: u32, ns: &Namespace) -> impl Iterator<Item = Ref> + '_ {
    let objects = (0..ns.objects.len() as u32).map(move |i| Ref::NsObj(n, i));
    let releases = ns.releases.iter().enumerate().flat_map(move |(r, rel)| {
        (0..rel.records.len() as u16).map(move |v| Ref::Release(n, r as u16, v))
    });
    let apps = ns
        .apps
        .iter()
        .enumerate()
        .flat_map(move |(a, app)| AppView::parts(app).map(move |p| Ref::App(n, a as u32, p)));
    objects.chain(releases).chain(apps)
}

/// Renders the object `r` points at.
pub(super) fn render(plan: &Plan, r: Ref) -> Value {
    match r {
        Ref::Node(i) => node(plan, i as usize),
        Ref::Cluster(i) => cluster_object(plan, i as usize),
        Ref::Volume { ns, app, claim } => AppView::new(plan, ns, app).volume(claim),
        Ref::Namespace(n) => namespace(plan, &plan.namespaces[n as usize]),
        Ref::NsObj(n, i) => ns_object(plan, &plan.namespaces[n as usize], i as usize),
        Ref::Release(n, r, v) => {
            release_record(plan, &plan.namespaces[n as usize], r as usize, v as usize)
        }
        Ref::App(n, a, part) => AppView::new(plan, n, a).render(part),
    }
}

/// Builder for one API object: collects metadata and body, then adds the noise a real API server
/// response carries (managedFields, last-applied-configuration).
pub(super) struct Obj {
    api: &'static str,
    kind: &'static str,
    created: i64,
    metadata: Map<String, Value>,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    /// Annotations the server or a controller adds; kubectl never applied them.
    server_annotations: Map<String, Value>,
    body: Map<String, Value>,
    last_applied: bool,
    manager: &'static str,
}

impl Obj {
    pub(super) fn new(
        plan: &Plan,
        api: &'static str,
        kind: &'static str,
        ns: &str,
        name: &str,
        meta: &Meta,
    ) -> Obj {
        let mut metadata = Map::new();
        metadata.insert("name".into(), name.into());
        if !ns.is_empty() {
            metadata.insert("namespace".into(), ns.into());
        }
        metadata.insert(
            "uid".into(),
            uid(&plan.root, kind, ns, name, meta.inc).into(),
        );
        metadata.insert("resourceVersion".into(), itoa(meta.rv).into());
        metadata.insert("creationTimestamp".into(), rfc3339(meta.created).into());
        Obj {
            api,
            kind,
            created: meta.created,
            metadata,
            labels: Map::new(),
            annotations: Map::new(),
            server_annotations: Map::new(),
            body: Map::new(),
            last_applied: false,
            manager: CONTROLLER,
        }
    }

    /// Adds metadata.generation (only kinds with a spec that controllers observe show it).
    pub(super) fn generation(mut self, meta: &Meta) -> Self {
        self.metadata
            .insert("generation".into(), meta.generation.into());
        self
    }

    pub(super) fn labels(mut self, labels: Map<String, Value>) -> Self {
        if self.labels.is_empty() {
            self.labels = labels;
        } else {
            self.labels.extend(labels);
        }
        self
    }

    pub(super) fn annotations(mut self, annotations: Map<String, Value>) -> Self {
        if self.annotations.is_empty() {
            self.annotations = annotations;
        } else {
            self.annotations.extend(annotations);
        }
        self
    }

    pub(super) fn label(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub(super) fn annotation(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub(super) fn server_annotation(mut self, key: &str, value: String) -> Self {
        self.server_annotations.insert(key.into(), value.into());
        self
    }

    /// Adds the controlling ownerReference.
    pub(super) fn owner(mut self, api: &str, kind: &str, name: &str, uid: &str) -> Self {
        let owner = json!([{
            "apiVersion": api, "kind": kind, "name": name, "uid": uid,
            "controller": true, "blockOwnerDeletion": true,
        }]);
        self.metadata.insert("ownerReferences".into(), owner);
        self
    }

    pub(super) fn meta_field(mut self, key: &str, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    pub(super) fn field(mut self, key: &str, value: Value) -> Self {
        self.body.insert(key.into(), value);
        self
    }

    /// Records who last wrote the object; `kubectl` also adds the last-applied annotation.
    pub(super) fn manager(mut self, manager: &'static str) -> Self {
        self.manager = manager;
        self.last_applied = manager == KUBECTL;
        self
    }

    pub(super) fn finish(mut self) -> Value {
        if self.last_applied {
            let applied = self.applied_manifest();
            self.annotations.insert(LAST_APPLIED.into(), applied.into());
        }
        let server_annotations = std::mem::take(&mut self.server_annotations);
        self.annotations.extend(server_annotations);
        let fields = self.fields();
        let mut entry = json!({
            "apiVersion": self.api,
            "fieldsType": "FieldsV1",
            "manager": self.manager,
            "operation": "Update",
            "time": rfc3339(self.created),
        });
        entry["fieldsV1"] = fields;
        if !self.labels.is_empty() {
            self.metadata
                .insert("labels".into(), Value::Object(self.labels));
        }
        if !self.annotations.is_empty() {
            self.metadata
                .insert("annotations".into(), Value::Object(self.annotations));
        }
        self.metadata
            .insert("managedFields".into(), Value::Array(vec![entry]));
        let mut root = self.body;
        root.insert("apiVersion".into(), self.api.into());
        root.insert("kind".into(), self.kind.into());
        root.insert("metadata".into(), Value::Object(self.metadata));
        Value::Object(root)
    }

    /// What `kubectl apply` sent: the manifest without server-populated fields or status, as
    /// compact JSON with sorted keys (like kubectl writes it). It is written piece by piece from
    /// borrowed parts because cloning the spec into a new Value doubled the cost of such objects.
    fn applied_manifest(&self) -> String {
        /// Appends `"key":`, after a comma unless the enclosing object just opened.
        fn key(out: &mut Vec<u8>, key: &str) {
            if out.last() != Some(&b'{') {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
        }
        const MEMORY: &str = "writing JSON to memory cannot fail";
        let mut out = Vec::with_capacity(1024);
        out.push(b'{');
        let mut keys: Vec<&str> = self
            .body
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "status")
            .collect();
        keys.extend(["apiVersion", "kind", "metadata"]);
        keys.sort_unstable();
        for k in keys {
            key(&mut out, k);
            match k {
                "apiVersion" => serde_json::to_writer(&mut out, self.api).expect(MEMORY),
                "kind" => serde_json::to_writer(&mut out, self.kind).expect(MEMORY),
                "metadata" => {
                    out.push(b'{');
                    for (k, map) in [("annotations", &self.annotations), ("labels", &self.labels)] {
                        if !map.is_empty() {
                            key(&mut out, k);
                            serde_json::to_writer(&mut out, map).expect(MEMORY);
                        }
                    }
                    for k in ["name", "namespace"] {
                        if let Some(v) = self.metadata.get(k) {
                            key(&mut out, k);
                            serde_json::to_writer(&mut out, v).expect(MEMORY);
                        }
                    }
                    out.push(b'}');
                }
                _ => serde_json::to_writer(&mut out, &self.body[k]).expect(MEMORY),
            }
        }
        out.extend_from_slice(b"}\n");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// A small FieldsV1 set: the label and annotation keys plus the top-level sections this
    /// manager wrote (real entries go deeper; consumers only need to recognise and drop them).
    fn fields(&self) -> Value {
        fn keys<'a>(keys: impl Iterator<Item = &'a String>) -> Value {
            let mut set = Map::new();
            set.insert(".".into(), Value::Object(Map::new()));
            for k in keys {
                set.insert(field_key(k), Value::Object(Map::new()));
            }
            Value::Object(set)
        }
        let mut meta = Map::new();
        if !self.labels.is_empty() {
            meta.insert("f:labels".into(), keys(self.labels.keys()));
        }
        if !self.annotations.is_empty() {
            meta.insert("f:annotations".into(), keys(self.annotations.keys()));
        }
        let mut fields = Map::new();
        fields.insert("f:metadata".into(), Value::Object(meta));
        for k in self.body.keys() {
            fields.insert(field_key(k), Value::Object(Map::new()));
        }
        Value::Object(fields)
    }
}

/// `f:<key>`, the FieldsV1 spelling of a field.
fn field_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    out.push_str("f:");
    out.push_str(key);
    out
}

/// The manager name that wrote a top-level object, given how it was installed.
pub(super) fn installer(helm: bool, kubectl: bool) -> &'static str {
    match (helm, kubectl) {
        (true, _) => "helm",
        (false, true) => KUBECTL,
        (false, false) => "eks",
    }
}

/// Builds a label/annotation map from pairs.
pub(super) fn map<K: Into<String>, V: Into<Value>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// The uid the object of `kind`/`ns`/`name` with metadata `meta` renders with.
pub(super) fn uid_of(plan: &Plan, kind: &str, ns: &str, name: &str, meta: &Meta) -> String {
    uid(&plan.root, kind, ns, name, meta.inc)
}

/// Helm's labels and annotations for a member of `release`.
pub(super) fn helm_marks(
    name: &str,
    release: &str,
    release_ns: &str,
    chart: &str,
    app_version: &str,
) -> (Map<String, Value>, Map<String, Value>) {
    let labels = map([
        ("app.kubernetes.io/name", name),
        ("app.kubernetes.io/instance", release),
        ("app.kubernetes.io/managed-by", "Helm"),
        ("helm.sh/chart", chart),
        ("app.kubernetes.io/version", app_version),
    ]);
    let annotations = map([
        ("meta.helm.sh/release-name", release),
        ("meta.helm.sh/release-namespace", release_ns),
    ]);
    (labels, annotations)
}

/// The external hostname a cloud load balancer gives Service `ns/name`.
pub(super) fn lb_hostname(plan: &Plan, ns: &str, name: &str) -> String {
    let short: String = format!("{ns}-{name}").chars().take(20).collect();
    let id = hex(plan.salt ^ hash(&format!("{ns}/{name}")), 16);
    format!("k8s-{short}-{id}.elb.eu-west-1.amazonaws.com")
}

/// A condition entry in the common Kubernetes shape.
pub(super) fn condition(kind: &str, status: bool, reason: &str, message: &str, time: i64) -> Value {
    json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(time),
    })
}

fn node(plan: &Plan, i: usize) -> Value {
    let n = &plan.nodes[i];
    let name = node_name(i);
    let zone = format!("eu-west-1{}", ["a", "b", "c"][i % 3]);
    let ip = format!("10.0.{}.{}", 16 + i / 250, 4 + i % 250);
    let seed = plan.salt ^ (i as u64) << 8;
    let mut taints = Vec::new();
    if n.cordoned {
        taints.push(json!({"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable", "timeAdded": rfc3339(n.meta.created + 86_400)}));
    }
    if !n.ready {
        taints.push(json!({"effect": "NoSchedule", "key": "node.kubernetes.io/not-ready", "timeAdded": rfc3339(n.transition)}));
    }
    let mut spec = Map::new();
    spec.insert(
        "providerID".into(),
        format!("aws:///{zone}/i-0{}", hex(seed, 16)).into(),
    );
    if n.cordoned {
        spec.insert("unschedulable".into(), true.into());
    }
    if !taints.is_empty() {
        spec.insert("taints".into(), Value::Array(taints));
    }
    let healthy = n.meta.created + 40;
    let pressure = |kind: &str, reason: &str, message: &str| {
        let mut c = condition(kind, false, reason, message, healthy);
        c["lastHeartbeatTime"] = rfc3339(plan.now).into();
        c
    };
    let mut ready = if n.ready {
        condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
            n.transition,
        )
    } else {
        condition(
            "Ready",
            false,
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
            n.transition,
        )
    };
    ready["lastHeartbeatTime"] = rfc3339(plan.now).into();
    let capacity = json!({"cpu": "4", "ephemeral-storage": "83873772Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "16069588Ki", "pods": "58"});
    let allocatable = json!({"cpu": "3920m", "ephemeral-storage": "76224326324", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "15052756Ki", "pods": "58"});
    let status = json!({
        "addresses": [
            {"address": ip, "type": "InternalIP"},
            {"address": name, "type": "InternalDNS"},
            {"address": name, "type": "Hostname"},
        ],
        "allocatable": allocatable,
        "capacity": capacity,
        "conditions": [
            pressure("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            pressure("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ready,
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": uid(&plan.root, "boot", "", &name, 0),
            "containerRuntimeVersion": "containerd://1.7.23",
            "kernelVersion": "6.1.115-126.197.amzn2023.x86_64",
            "kubeProxyVersion": "v1.31.4-eks-aeac579",
            "kubeletVersion": "v1.31.4-eks-aeac579",
            "machineID": hex(seed ^ 1, 32),
            "operatingSystem": "linux",
            "osImage": "Amazon Linux 2023.6.20241121",
            "systemUUID": uid(&plan.root, "system", "", &name, 0),
        },
    });
    let labels = map([
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/instance-type", "m6i.xlarge"),
        ("beta.kubernetes.io/os", "linux"),
        ("eks.amazonaws.com/nodegroup", "general"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "m6i.xlarge"),
        ("topology.kubernetes.io/region", "eu-west-1"),
        ("topology.kubernetes.io/zone", zone.as_str()),
    ]);
    Obj::new(plan, "v1", "Node", "", &name, &n.meta)
        .labels(labels)
        .annotation("node.alpha.kubernetes.io/ttl", "0")
        .annotation(
            "volumes.kubernetes.io/controller-managed-attach-detach",
            "true",
        )
        .manager("kubelet")
        .field("spec", Value::Object(spec))
        .field("status", status)
        .finish()
}

fn cluster_object(plan: &Plan, i: usize) -> Value {
    let c = &plan.cluster[i];
    let release = names::HELM_CLUSTER_RELEASE;
    let (chart, version, app_version) = INGRESS_NGINX_CHART;
    let chart = format!("{chart}-{version}");
    let (helm_labels, helm_annotations) =
        helm_marks(release, release, release, &chart, app_version);
    match c.kind {
        ClusterKind::StandardClass | ClusterKind::FastClass => {
            let fast = c.kind == ClusterKind::FastClass;
            let name = if fast { names::FAST_STORAGE_CLASS } else { names::DEFAULT_STORAGE_CLASS };
            let obj = Obj::new(plan, "storage.k8s.io/v1", "StorageClass", "", name, &c.meta);
            let obj = if fast { obj } else { obj.annotation("storageclass.kubernetes.io/is-default-class", "true") };
            // The fast class binds immediately, which is why an unprovisionable claim of it
            // leaves its Pod unschedulable.
            let binding = if fast { "Immediate" } else { "WaitForFirstConsumer" };
            obj.manager(KUBECTL)
                .field("provisioner", "ebs.csi.aws.com".into())
                .field("parameters", json!({"type": if fast { "io2" } else { "gp3" }, "fsType": "ext4"}))
                .field("reclaimPolicy", "Delete".into())
                .field("volumeBindingMode", binding.into())
                .field("allowVolumeExpansion", true.into())
                .finish()
        }
        ClusterKind::IngressClass => Obj::new(plan, "networking.k8s.io/v1", "IngressClass", "", names::INGRESS_CLASS, &c.meta)
            .generation(&c.meta)
            .labels(helm_labels)
            .label("app.kubernetes.io/component", "controller")
            .annotations(helm_annotations)
            .manager("helm")
            .field("spec", json!({"controller": "k8s.io/ingress-nginx"}))
            .finish(),
        // Reached through labels only: Helm's annotations are missing on purpose.
        ClusterKind::ClusterRole => Obj::new(plan, "rbac.authorization.k8s.io/v1", "ClusterRole", "", names::HELM_CLUSTER_ROLE, &c.meta)
            .labels(helm_labels)
            .manager("helm")
            .field(
                "rules",
                json!([
                    {"apiGroups": [""], "resources": ["configmaps", "endpoints", "nodes", "pods", "secrets", "namespaces"], "verbs": ["list", "watch"]},
                    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch", "get"]},
                ]),
            )
            .finish(),
        ClusterKind::ClusterRoleBinding => Obj::new(plan, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", names::HELM_CLUSTER_ROLE, &c.meta)
            .labels(helm_labels)
            .annotations(helm_annotations)
            .manager("helm")
            .field("roleRef", json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": names::HELM_CLUSTER_ROLE}))
            .field("subjects", json!([{"kind": "ServiceAccount", "name": "ingress-nginx-controller", "namespace": "ingress-nginx"}]))
            .finish(),
        ClusterKind::ReleasedVolume => Obj::new(plan, "v1", "PersistentVolume", "", names::RELEASED_PV, &c.meta)
            .annotation("pv.kubernetes.io/provisioned-by", "ebs.csi.aws.com")
            .meta_field("finalizers", json!(["kubernetes.io/pv-protection"]))
            .field(
                "spec",
                json!({
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": "20Gi"},
                    "claimRef": {
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "namespace": names::PROBLEM_NAMESPACE, "name": "data-legacy-mysql-0",
                        "uid": uid(&plan.root, "PersistentVolumeClaim", names::PROBLEM_NAMESPACE, "data-legacy-mysql-0", 0),
                    },
                    "csi": {"driver": "ebs.csi.aws.com", "fsType": "ext4", "volumeHandle": format!("vol-0{}", hex(plan.salt, 16))},
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": names::DEFAULT_STORAGE_CLASS,
                    "volumeMode": "Filesystem",
                }),
            )
            .field("status", json!({"phase": "Released", "lastPhaseTransitionTime": rfc3339(c.meta.created + 86_400)}))
            .finish(),
    }
}

fn namespace(plan: &Plan, ns: &Namespace) -> Value {
    let obj = Obj::new(plan, "v1", "Namespace", "", &ns.name, &ns.meta)
        .label("kubernetes.io/metadata.name", ns.name.as_str());
    let obj = if ns.system {
        obj.manager("kube-apiserver")
    } else {
        obj.label("team", ns.team)
            .label("environment", ns.env)
            .manager(KUBECTL)
    };
    obj.field("spec", json!({"finalizers": ["kubernetes"]}))
        .field("status", json!({"phase": "Active"}))
        .finish()
}

/// The data of the shared ConfigMap (and of every app ConfigMap) changes with `version`.
fn shared_config(version: u32) -> Value {
    json!({
        "platform.yaml": format!(
            "tracing:\n  endpoint: http://otel-collector.monitoring.svc:4317\n  sampleRate: 0.{}\nfeatureFlags:\n  newCheckout: {}\n  searchV2: true\nrevision: {version}\n",
            version % 10,
            version.is_multiple_of(2)
        ),
        "REGION": "eu-west-1",
        "CACHE_TTL_SECONDS": (300 + version * 30).to_string(),
    })
}

fn ns_object(plan: &Plan, ns: &Namespace, i: usize) -> Value {
    let o = &ns.objects[i];
    let n = ns.name.as_str();
    match o.kind {
        NsKind::DefaultAccount => Obj::new(plan, "v1", "ServiceAccount", n, "default", &o.meta).finish(),
        NsKind::RootCa => Obj::new(plan, "v1", "ConfigMap", n, "kube-root-ca.crt", &o.meta)
            .annotation(
                "kubernetes.io/description",
                "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.",
            )
            .field("data", json!({"ca.crt": CERT}))
            .finish(),
        NsKind::Regcred => {
            let auth = base64(format!("acme-ci:ghp_{}", hex(plan.salt ^ hash(n), 36)).as_bytes());
            let config = format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}"}}}}}}"#);
            Obj::new(plan, "v1", "Secret", n, "regcred", &o.meta)
                .manager(KUBECTL)
                .field("type", "kubernetes.io/dockerconfigjson".into())
                .field("data", json!({".dockerconfigjson": base64(config.as_bytes())}))
                .finish()
        }
        NsKind::DefaultDeny => Obj::new(plan, "networking.k8s.io/v1", "NetworkPolicy", n, "default-deny-ingress", &o.meta)
            .generation(&o.meta)
            .manager(KUBECTL)
            .field("spec", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))
            .finish(),
        NsKind::Role => Obj::new(plan, "rbac.authorization.k8s.io/v1", "Role", n, "pod-reader", &o.meta)
            .manager(KUBECTL)
            .field("rules", json!([{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]))
            .finish(),
        NsKind::RoleBinding => Obj::new(plan, "rbac.authorization.k8s.io/v1", "RoleBinding", n, "pod-reader", &o.meta)
            .manager(KUBECTL)
            .field("roleRef", json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}))
            .field("subjects", json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("{}-developers", ns.team)}]))
            .finish(),
        NsKind::SharedConfig => Obj::new(plan, "v1", "ConfigMap", n, names::SHARED_CONFIGMAP, &o.meta)
            .label("app.kubernetes.io/part-of", "platform")
            .manager(KUBECTL)
            .field("data", shared_config(o.version))
            .finish(),
        NsKind::DanglingIngress => {
            let host = format!("legacy.{n}.example.com");
            Obj::new(plan, "networking.k8s.io/v1", "Ingress", n, names::DANGLING_INGRESS, &o.meta)
                .generation(&o.meta)
                .label("app", names::DANGLING_INGRESS)
                .manager(KUBECTL)
                .field(
                    "spec",
                    json!({
                        "ingressClassName": names::INGRESS_CLASS,
                        "rules": [{"host": host, "http": {"paths": [{
                            "path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": names::MISSING_SERVICE, "port": {"number": 80}}},
                        }]}}],
                    }),
                )
                .field("status", ingress_status(plan))
                .finish()
        }
    }
}

/// Every Ingress of class nginx is published on the ingress-nginx controller's load balancer.
pub(super) fn ingress_status(plan: &Plan) -> Value {
    json!({"loadBalancer": {"ingress": [{"hostname": lb_hostname(plan, "ingress-nginx", "ingress-nginx-controller")}]}})
}

fn release_record(plan: &Plan, ns: &Namespace, r: usize, v: usize) -> Value {
    let rel = &ns.releases[r];
    let meta = &rel.records[v];
    let latest = v + 1 == rel.records.len();
    let status = match (latest, rel.failed) {
        (true, true) => "failed",
        (true, false) => "deployed",
        (false, true) if v + 2 == rel.records.len() => "deployed",
        _ => "superseded",
    };
    let version = (v + 1).to_string();
    let name = format!("sh.helm.release.v1.{}.v{version}", rel.name);
    // Helm stores base64(gzip(json)) and the API adds its own base64 on top; the inner payload is
    // not really gzipped, but it has the right shape and the consumer must drop it anyway.
    let payload = format!(
        r#"{{"name":"{}","namespace":"{}","version":{version},"info":{{"status":"{status}"}},"chart":{{"metadata":{{"name":"{}","version":"{}","appVersion":"{}"}}}},"manifest":"---\n# Source: {}/templates/deployment.yaml\n"}}"#,
        rel.name, ns.name, rel.chart, rel.chart_version, rel.app_version, rel.chart
    );
    let blob = format!("H4sIAAAAAAAC/{}", base64(payload.as_bytes()));
    Obj::new(plan, "v1", "Secret", &ns.name, &name, meta)
        .labels(map([
            ("name", rel.name.clone()),
            ("owner", "helm".to_string()),
            ("status", status.to_string()),
            ("version", version),
            ("modifiedAt", meta.created.to_string()),
        ]))
        .manager("helm")
        .field("type", "helm.sh/release.v1".into())
        .field("data", json!({"release": base64(blob.as_bytes())}))
        .finish()
}
