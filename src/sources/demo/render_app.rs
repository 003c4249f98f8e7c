//! Rendering of everything that belongs to one app: its workload and the controller-made objects
//! below it (ReplicaSets, Jobs, Pods, claims and their volumes), its Service and EndpointSlice,
//! Ingress, autoscaler, disruption budget, network policy and configuration objects. Labels,
//! selectors and references are derived here in one place so that every object agrees with the
//! others.

use serde_json::{Map, Value, json};

use super::DemoEvent;
use super::build::node_name;
use super::names;
use super::plan::{
    App, Claim, CronJob, DaemonSet, Deployment, Job, Namespace, Plan, Pod, PodState, Release,
    Service, StatefulSet, SvcKind, Workload, mech,
};
use super::render::{
    CERT, OWN_CLAIM, Obj, Part, condition, helm_marks, ingress_status, installer, lb_hostname, map,
    uid_of,
};
use super::util::{base64, hash, hex, mix, rfc3339, suffix};

/// Owner of a Pod, as its ownerReference names it.
struct Owner<'a> {
    api: &'static str,
    kind: &'static str,
    name: &'a str,
    uid: String,
}

/// What a Pod inherits from its template.
struct Template<'a> {
    labels: Map<String, Value>,
    version: u32,
    restart: &'static str,
    /// The claim mounted as `data` (StatefulSet Pods and apps with their own claim).
    claim: Option<&'a str>,
}

/// The Pod IP for a Pod serial, unique across the cluster.
pub(super) fn pod_ip(serial: u32) -> String {
    format!(
        "10.{}.{}.{}",
        64 + (serial >> 16 & 63),
        serial >> 8 & 255,
        serial & 255
    )
}

fn node_ip(node: u32) -> String {
    format!("10.0.{}.{}", 16 + node / 250, 4 + node % 250)
}

fn zone(node: u32) -> String {
    format!("eu-west-1{}", ["a", "b", "c"][node as usize % 3])
}

/// Sets `fields` of the object `v`, moving the values in (json! would serialise them again).
fn with<const N: usize>(mut v: Value, fields: [(&str, Value); N]) -> Value {
    for (key, value) in fields {
        v[key] = value;
    }
    v
}

/// `{"matchLabels": labels}`, built without copying (json! would serialise the map again).
fn match_labels(labels: Map<String, Value>) -> Value {
    Value::Object(map([("matchLabels", Value::Object(labels))]))
}

/// Pod condition in the shape the kubelet writes (with lastProbeTime: null).
fn pod_condition(kind: &str, status: bool, time: i64, reason: Option<(&str, &str)>) -> Value {
    let mut c = json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": rfc3339(time),
    });
    if let Some((reason, message)) = reason {
        c["reason"] = reason.into();
        if !message.is_empty() {
            c["message"] = message.into();
        }
    }
    c
}

/// A view on one app of the plan with everything needed to render its objects.
pub(super) struct AppView<'a> {
    plan: &'a Plan,
    ns: &'a Namespace,
    app: &'a App,
}

impl<'a> AppView<'a> {
    pub(super) fn new(plan: &'a Plan, ns: u32, app: u32) -> Self {
        let ns = &plan.namespaces[ns as usize];
        AppView {
            plan,
            ns,
            app: &ns.apps[app as usize],
        }
    }

    /// The claims of a StatefulSet app (empty for other kinds).
    pub(super) fn claims(app: &App) -> &[Claim] {
        match &app.workload {
            Workload::StatefulSet(s) => &s.claims,
            _ => &[],
        }
    }

    /// Every object of the app, in output order.
    pub(super) fn parts(app: &App) -> impl Iterator<Item = Part> {
        let mut parts = Vec::with_capacity(app.len());
        let flags = [
            (app.account.is_some(), Part::Account),
            (app.config.is_some(), Part::Config),
            (app.secret.is_some(), Part::Secret),
            (app.claim.is_some(), Part::OwnClaim),
            (app.service.is_some(), Part::Service),
            (app.service.is_some(), Part::Slice),
        ];
        parts.extend(flags.iter().filter(|(on, _)| *on).map(|(_, p)| *p));
        parts.push(Part::Workload);
        match &app.workload {
            Workload::Deployment(d) => {
                for (r, rs) in d.sets.iter().enumerate() {
                    parts.push(Part::ReplicaSet(r as u32));
                    parts.extend((0..rs.pods.len() as u32).map(|p| Part::RsPod(r as u32, p)));
                }
            }
            Workload::StatefulSet(s) => {
                parts.extend((0..s.pods.len() as u32).map(Part::Pod));
                parts.extend((0..s.claims.len() as u32).map(Part::Claim));
            }
            Workload::DaemonSet(d) => parts.extend((0..d.pods.len() as u32).map(Part::Pod)),
            Workload::CronJob(c) => {
                for i in 0..c.runs.len() as u32 {
                    parts.push(Part::Job(i));
                    parts.push(Part::JobPod(i));
                }
            }
            Workload::Job(_) => parts.push(Part::Pod(0)),
        }
        let tail = [
            (app.ingress.is_some(), Part::Ingress),
            (
                app.ingress.as_ref().is_some_and(|i| i.tls.is_some()),
                Part::Tls,
            ),
            (app.hpa.is_some(), Part::Hpa),
            (app.pdb.is_some(), Part::Pdb),
            (app.netpol.is_some(), Part::NetPol),
        ];
        parts.extend(tail.iter().filter(|(on, _)| *on).map(|(_, p)| *p));
        parts.into_iter()
    }

    pub(super) fn render(&self, part: Part) -> Value {
        let app = self.app;
        match (part, &app.workload) {
            (Part::Account, _) => self
                .top("v1", "ServiceAccount", &app.name, app.account)
                .finish(),
            (Part::Config, _) => self.config(),
            (Part::Secret, _) => self.secret(),
            (Part::OwnClaim, _) => self.own_claim(),
            (Part::Service, _) => self.service(),
            (Part::Slice, _) => self.slice(),
            (Part::Ingress, _) => self.ingress(),
            (Part::Tls, _) => self.tls(),
            (Part::Hpa, _) => self.hpa(),
            (Part::Pdb, _) => self.pdb(),
            (Part::NetPol, _) => self.netpol(),
            (Part::Workload, Workload::Deployment(d)) => self.deployment(d),
            (Part::ReplicaSet(r), Workload::Deployment(d)) => self.replica_set(d, r as usize),
            (Part::RsPod(r, p), Workload::Deployment(d)) => self.rs_pod(d, r as usize, p as usize),
            (Part::Workload, Workload::StatefulSet(s)) => self.stateful_set(s),
            (Part::Pod(i), Workload::StatefulSet(s)) => self.sts_pod(s, i as usize),
            (Part::Claim(i), Workload::StatefulSet(s)) => {
                self.claim(&s.claims[i as usize], self.selector())
            }
            (Part::Workload, Workload::DaemonSet(d)) => self.daemon_set(d),
            (Part::Pod(i), Workload::DaemonSet(d)) => self.ds_pod(d, i as usize),
            (Part::Workload, Workload::CronJob(c)) => self.cron_job(c),
            (Part::Job(i), Workload::CronJob(c)) => self.run_job(c, i as usize),
            (Part::JobPod(i), Workload::CronJob(c)) => self.run_pod(c, i as usize),
            (Part::Workload, Workload::Job(j)) => self.job(j),
            (Part::Pod(_), Workload::Job(j)) => self.job_pod(j),
            (part, _) => unreachable!("part {part:?} does not exist for app {}", app.name),
        }
    }

    /// The Delete event of `part` (apiVersion, kind, namespace, name and uid, as [`render`] writes
    /// them), for the parts churn deletes: Pods, ReplicaSets and a CronJob's Jobs. `None` for the
    /// others. Rendering a Pod only to read these took an eighth of the demo churn's CPU;
    /// `deletions_name_what_render_writes` checks the two agree for every such part.
    ///
    /// [`render`]: AppView::render
    pub(super) fn deletion(&self, part: Part) -> Option<DemoEvent> {
        let pod = |pod: &Pod| ("v1", "Pod", pod.name.clone(), pod.meta);
        let (api, kind, name, meta) = match (part, &self.app.workload) {
            (Part::ReplicaSet(r), Workload::Deployment(d)) => {
                let r = r as usize;
                ("apps/v1", "ReplicaSet", self.rs_name(d, r), d.sets[r].meta)
            }
            (Part::RsPod(r, p), Workload::Deployment(d)) => {
                pod(&d.sets[r as usize].pods[p as usize])
            }
            (Part::Pod(i), Workload::StatefulSet(s)) => pod(&s.pods[i as usize]),
            (Part::Pod(i), Workload::DaemonSet(d)) => pod(&d.pods[i as usize]),
            (Part::Pod(_), Workload::Job(j)) => pod(&j.pod),
            (Part::Job(i), Workload::CronJob(c)) => {
                let i = i as usize;
                ("batch/v1", "Job", self.run_name(c, i), c.runs[i].meta)
            }
            (Part::JobPod(i), Workload::CronJob(c)) => pod(&c.runs[i as usize].pod),
            _ => return None,
        };
        Some(DemoEvent::Delete {
            api_version: api.into(),
            kind: kind.into(),
            namespace: self.ns.name.clone(),
            uid: self.uid(kind, &name, &meta),
            name,
        })
    }

    fn release(&self) -> Option<&'a Release> {
        self.app.helm.map(|r| &self.ns.releases[r as usize])
    }

    /// The workload's selector (matchLabels), which its Pods carry.
    fn selector(&self) -> Map<String, Value> {
        match self.release() {
            Some(rel) => map([
                ("app.kubernetes.io/name", self.app.name.as_str()),
                ("app.kubernetes.io/instance", rel.name.as_str()),
            ]),
            None => map([("app", self.app.name.as_str())]),
        }
    }

    /// Labels of the Pod template (and so of every Pod).
    fn pod_labels(&self) -> Map<String, Value> {
        let mut labels = self.selector();
        labels.insert("tier".into(), self.app.tier.into());
        labels
    }

    /// Labels and annotations of the app's top-level objects.
    fn marks(&self) -> (Map<String, Value>, Map<String, Value>) {
        match self.release() {
            Some(rel) => helm_marks(
                &self.app.name,
                &rel.name,
                &self.ns.name,
                &format!("{}-{}", rel.chart, rel.chart_version),
                rel.app_version,
            ),
            None => {
                let name = self.app.name.as_str();
                let labels = map([
                    ("app", name),
                    ("app.kubernetes.io/name", name),
                    ("app.kubernetes.io/part-of", self.ns.team),
                ]);
                (labels, Map::new())
            }
        }
    }

    /// A top-level object of the app, labelled and attributed the way it was installed.
    fn top(
        &self,
        api: &'static str,
        kind: &'static str,
        name: &str,
        meta: Option<super::plan::Meta>,
    ) -> Obj {
        let meta = meta.expect("rendered part exists in the plan");
        let (labels, annotations) = self.marks();
        Obj::new(self.plan, api, kind, &self.ns.name, name, &meta)
            .labels(labels)
            .annotations(annotations)
            .manager(installer(self.app.helm.is_some(), self.app.kubectl))
    }

    fn uid(&self, kind: &str, name: &str, meta: &super::plan::Meta) -> String {
        uid_of(self.plan, kind, &self.ns.name, name, meta)
    }

    fn image(&self, version: u32) -> String {
        let p = self.app.profile;
        if p.image.is_empty() {
            format!(
                "ghcr.io/acme-corp/{}:1.{}.{}",
                self.app.name,
                version + 3,
                hash(&self.app.name) % 7
            )
        } else {
            format!(
                "{}:{}",
                p.image,
                p.tags[(version as usize - 1) % p.tags.len()]
            )
        }
    }

    fn config_name(&self) -> Option<String> {
        if self.app.missing_config {
            Some(names::MISSING_CONFIGMAP.to_string())
        } else {
            self.app
                .config
                .as_ref()
                .map(|_| format!("{}-config", self.app.name))
        }
    }

    fn secret_name(&self) -> Option<String> {
        self.app.secret.map(|_| format!("{}-secret", self.app.name))
    }

    fn service_port(&self) -> u16 {
        match self.app.profile.port_name {
            "http" => 80,
            "https" => 443,
            _ => self.app.profile.port,
        }
    }

    fn daemon(&self) -> bool {
        matches!(self.app.workload, Workload::DaemonSet(_))
    }

    fn sts(&self) -> bool {
        matches!(self.app.workload, Workload::StatefulSet(_))
    }

    /// The Pod spec of the app's template; Pods add their node, tolerations and token volume.
    fn pod_spec(&self, t: &Template) -> Map<String, Value> {
        let app = self.app;
        let p = app.profile;
        let m = app.mech;
        let cm = self.config_name();
        let secret = self.secret_name();
        let has = |bit: u8| m & bit != 0;
        let mut env = Vec::new();
        if p.image.is_empty() {
            env.push(json!({"name": "APP_ENV", "value": self.ns.env}));
        }
        if let (true, Some(cm)) = (has(mech::CM_KEY_REF), &cm) {
            env.push(json!({"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "LOG_LEVEL"}}}));
        }
        if let (true, Some(s)) = (has(mech::SECRET_KEY_REF), &secret) {
            env.push(json!({"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": s, "key": "API_KEY"}}}));
        }
        let mut env_from = Vec::new();
        if let (true, Some(cm)) = (has(mech::CM_ENV_FROM), &cm) {
            env_from.push(json!({"configMapRef": {"name": cm}}));
        }
        if let (true, Some(s)) = (has(mech::SECRET_ENV_FROM), &secret) {
            env_from.push(json!({"secretRef": {"name": s}}));
        }
        let mut volumes = Vec::new();
        let mut mounts = Vec::new();
        if let (true, Some(cm)) = (has(mech::CM_VOLUME), &cm) {
            volumes.push(json!({"name": "config", "configMap": {"name": cm, "defaultMode": 420}}));
            mounts.push(json!({"name": "config", "mountPath": format!("/etc/{}", app.name), "readOnly": true}));
        }
        if let (true, Some(s)) = (has(mech::SECRET_VOLUME), &secret) {
            volumes
                .push(json!({"name": "secrets", "secret": {"secretName": s, "defaultMode": 420}}));
            mounts.push(json!({"name": "secrets", "mountPath": format!("/var/run/secrets/{}", app.name), "readOnly": true}));
        }
        if has(mech::PROJECTED) && (cm.is_some() || secret.is_some()) {
            let mut sources = Vec::new();
            if let Some(cm) = &cm {
                sources.push(json!({"configMap": {"name": cm}}));
            }
            if let Some(s) = &secret {
                sources.push(json!({"secret": {"name": s}}));
            }
            volumes.push(json!({"name": "app-config", "projected": {"defaultMode": 420, "sources": sources}}));
            mounts.push(
                json!({"name": "app-config", "mountPath": "/etc/app-config", "readOnly": true}),
            );
        }
        if app.shared_config {
            volumes.push(json!({"name": "platform-config", "configMap": {"name": names::SHARED_CONFIGMAP, "defaultMode": 420}}));
            mounts.push(
                json!({"name": "platform-config", "mountPath": "/etc/platform", "readOnly": true}),
            );
        }
        if let Some(claim) = t.claim {
            volumes.push(json!({"name": "data", "persistentVolumeClaim": {"claimName": claim}}));
        }
        if self.sts() || app.claim.is_some() {
            let path = if p.data_path.is_empty() {
                "/data"
            } else {
                p.data_path
            };
            mounts.push(json!({"name": "data", "mountPath": path}));
        }
        if self.daemon() {
            volumes.push(json!({"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}}));
            mounts.push(json!({"name": "varlog", "mountPath": "/var/log", "readOnly": true}));
        }
        let mut container = map([
            ("name", Value::from(app.name.as_str())),
            ("image", self.image(t.version).into()),
            ("imagePullPolicy", "IfNotPresent".into()),
            ("terminationMessagePath", "/dev/termination-log".into()),
            ("terminationMessagePolicy", "File".into()),
            (
                "resources",
                json!({"requests": {"cpu": p.cpu, "memory": p.memory}, "limits": {"memory": p.memory}}),
            ),
        ]);
        if p.port != 0 {
            container.insert(
                "ports".into(),
                json!([{"containerPort": p.port, "name": p.port_name, "protocol": p.protocol}]),
            );
            if p.port_name.starts_with("http") {
                container.insert(
                    "readinessProbe".into(),
                    json!({
                        "httpGet": {"path": "/healthz", "port": p.port_name, "scheme": "HTTP"},
                        "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3,
                    }),
                );
            }
        }
        for (key, list) in [
            ("env", env),
            ("envFrom", env_from),
            ("volumeMounts", mounts),
        ] {
            if !list.is_empty() {
                container.insert(key.into(), Value::Array(list));
            }
        }
        let account = if app.account.is_some() {
            app.name.as_str()
        } else {
            "default"
        };
        let mut spec = map([
            ("containers", Value::Array(vec![Value::Object(container)])),
            ("dnsPolicy", "ClusterFirst".into()),
            ("enableServiceLinks", true.into()),
            ("restartPolicy", t.restart.into()),
            ("schedulerName", "default-scheduler".into()),
            ("securityContext", json!({})),
            ("serviceAccount", account.into()),
            ("serviceAccountName", account.into()),
            ("terminationGracePeriodSeconds", 30.into()),
        ]);
        if !volumes.is_empty() {
            spec.insert("volumes".into(), Value::Array(volumes));
        }
        if has(mech::PULL_SECRET) {
            spec.insert("imagePullSecrets".into(), json!([{"name": "regcred"}]));
        }
        spec
    }

    /// Renders one Pod of the app.
    fn pod(&self, pod: &Pod, owner: &Owner, t: Template, generate_name: Option<&str>) -> Value {
        let ns = self.ns.name.as_str();
        let uid = self.uid("Pod", &pod.name, &pod.meta);
        let image = self.image(t.version);
        let mut spec = self.pod_spec(&t);
        let token = format!(
            "kube-api-access-{}",
            suffix(self.plan.salt ^ u64::from(pod.serial) ^ 0x55, 5)
        );
        let token_volume = json!({"name": token, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
        ]}});
        let token_mount = json!({"name": token, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true});
        if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
            volumes.push(token_volume);
        } else {
            spec.insert("volumes".into(), Value::Array(vec![token_volume]));
        }
        if let Some(Value::Object(c)) = spec.get_mut("containers").and_then(|c| c.get_mut(0)) {
            match c.get_mut("volumeMounts") {
                Some(Value::Array(mounts)) => mounts.push(token_mount),
                _ => {
                    c.insert("volumeMounts".into(), Value::Array(vec![token_mount]));
                }
            }
        }
        let node = node_name(pod.node as usize);
        if pod.state != PodState::Unschedulable {
            spec.insert("nodeName".into(), node.as_str().into());
        }
        spec.insert("priority".into(), 0.into());
        spec.insert("preemptionPolicy".into(), "PreemptLowerPriority".into());
        let mut tolerations = vec![
            json!({"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}),
            json!({"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}),
        ];
        if self.daemon() {
            spec.insert(
                "affinity".into(),
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]}}}),
            );
            for key in [
                "disk-pressure",
                "memory-pressure",
                "pid-pressure",
                "unschedulable",
            ] {
                tolerations.push(json!({"effect": "NoSchedule", "key": format!("node.kubernetes.io/{key}"), "operator": "Exists"}));
            }
        }
        spec.insert("tolerations".into(), Value::Array(tolerations));
        if let (Workload::StatefulSet(_), Some(svc)) = (&self.app.workload, &self.app.service) {
            spec.insert("hostname".into(), pod.name.as_str().into());
            spec.insert("subdomain".into(), svc.name.as_str().into());
        }
        let status = self.pod_status(pod, &uid, &image);
        let mut obj = Obj::new(self.plan, "v1", "Pod", ns, &pod.name, &pod.meta)
            .labels(t.labels)
            .owner(owner.api, owner.kind, owner.name, &owner.uid)
            .manager("kubelet");
        if let Some(prefix) = generate_name {
            obj = obj.meta_field("generateName", format!("{prefix}-").into());
        }
        obj.field("spec", Value::Object(spec))
            .field("status", status)
            .finish()
    }

    fn pod_status(&self, pod: &Pod, uid: &str, image: &str) -> Value {
        let name = self.app.name.as_str();
        let t0 = pod.meta.created;
        let now = self.plan.now;
        let salt = self.plan.salt ^ u64::from(pod.serial);
        let container_id =
            |restart: u32| format!("containerd://{}", hex(mix(salt) ^ u64::from(restart), 64));
        let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
        let image_id = format!("{repo}@sha256:{}", hex(hash(image), 64));
        // The latest (re)start: restarts spread over the last hours, newest first.
        let last_start = if pod.restarts == 0 {
            t0 + 5
        } else {
            (now - 600 * i64::from(pod.restarts % 12 + 1)).max(t0 + 5)
        };
        let not_ready = format!("containers with unready status: [{name}]");
        let unready = Some(("ContainersNotReady", not_ready.as_str()));
        let mut status = Map::new();
        let (phase, conditions, container) = match pod.state {
            PodState::Unschedulable => {
                let n = self.plan.nodes.len();
                let message = format!(
                    "0/{n} nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
                );
                let c = pod_condition(
                    "PodScheduled",
                    false,
                    t0,
                    Some(("Unschedulable", message.as_str())),
                );
                status.insert("qosClass".into(), "Burstable".into());
                status.insert("phase".into(), "Pending".into());
                status.insert("conditions".into(), json!([c]));
                return Value::Object(status);
            }
            PodState::Running => {
                let last = if pod.restarts == 0 {
                    json!({})
                } else {
                    json!({"terminated": {
                        "containerID": container_id(pod.restarts - 1), "exitCode": 137, "reason": "OOMKilled",
                        "startedAt": rfc3339(t0 + 5), "finishedAt": rfc3339(last_start - 1),
                    }})
                };
                (
                    "Running",
                    vec![
                        pod_condition("PodReadyToStartContainers", true, t0 + 3, None),
                        pod_condition("Initialized", true, t0 + 1, None),
                        pod_condition("Ready", true, last_start + 3, None),
                        pod_condition("ContainersReady", true, last_start + 3, None),
                        pod_condition("PodScheduled", true, t0, None),
                    ],
                    json!({
                        "containerID": container_id(pod.restarts), "image": image, "imageID": image_id,
                        "lastState": last, "name": name, "ready": true, "restartCount": pod.restarts,
                        "started": true, "state": {"running": {"startedAt": rfc3339(last_start)}},
                    }),
                )
            }
            PodState::CrashLoop => {
                let message = format!(
                    "back-off 5m0s restarting failed container={name} pod={}_{}({uid})",
                    pod.name, self.ns.name
                );
                (
                    "Running",
                    vec![
                        pod_condition("PodReadyToStartContainers", true, t0 + 3, None),
                        pod_condition("Initialized", true, t0 + 1, None),
                        pod_condition("Ready", false, last_start, unready),
                        pod_condition("ContainersReady", false, last_start, unready),
                        pod_condition("PodScheduled", true, t0, None),
                    ],
                    json!({
                        "containerID": container_id(pod.restarts), "image": image, "imageID": image_id,
                        "lastState": {"terminated": {
                            "containerID": container_id(pod.restarts), "exitCode": 1, "reason": "Error",
                            "startedAt": rfc3339(last_start), "finishedAt": rfc3339(last_start + 20),
                        }},
                        "name": name, "ready": false, "restartCount": pod.restarts, "started": false,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                    }),
                )
            }
            PodState::ImagePull | PodState::ConfigError => {
                let (reason, message, id) = if pod.state == PodState::ImagePull {
                    (
                        "ImagePullBackOff",
                        format!("Back-off pulling image \"{image}\""),
                        String::new(),
                    )
                } else {
                    (
                        "CreateContainerConfigError",
                        format!("configmap \"{}\" not found", names::MISSING_CONFIGMAP),
                        image_id,
                    )
                };
                (
                    "Pending",
                    vec![
                        pod_condition("PodReadyToStartContainers", true, t0 + 3, None),
                        pod_condition("Initialized", true, t0 + 1, None),
                        pod_condition("Ready", false, t0 + 1, unready),
                        pod_condition("ContainersReady", false, t0 + 1, unready),
                        pod_condition("PodScheduled", true, t0, None),
                    ],
                    json!({
                        "image": image, "imageID": id, "lastState": {}, "name": name, "ready": false,
                        "restartCount": 0, "started": false,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }),
                )
            }
            PodState::Succeeded | PodState::Failed => {
                let ok = pod.state == PodState::Succeeded;
                let reason = Some((if ok { "PodCompleted" } else { "PodFailed" }, ""));
                (
                    if ok { "Succeeded" } else { "Failed" },
                    vec![
                        pod_condition("PodReadyToStartContainers", false, t0 + 50, None),
                        pod_condition("Initialized", true, t0 + 1, reason),
                        pod_condition("Ready", false, t0 + 50, reason),
                        pod_condition("ContainersReady", false, t0 + 50, reason),
                        pod_condition("PodScheduled", true, t0, None),
                    ],
                    json!({
                        "containerID": container_id(0), "image": image, "imageID": image_id, "lastState": {},
                        "name": name, "ready": false, "restartCount": 0, "started": false,
                        "state": {"terminated": {
                            "containerID": container_id(0), "exitCode": if ok { 0 } else { 1 },
                            "reason": if ok { "Completed" } else { "Error" },
                            "startedAt": rfc3339(t0 + 3), "finishedAt": rfc3339(t0 + 45),
                        }},
                    }),
                )
            }
        };
        let host_ip = node_ip(pod.node);
        let ip = pod_ip(pod.serial);
        status.insert("phase".into(), phase.into());
        status.insert("conditions".into(), Value::Array(conditions));
        status.insert("hostIP".into(), host_ip.as_str().into());
        status.insert("hostIPs".into(), json!([{"ip": host_ip}]));
        status.insert("podIP".into(), ip.as_str().into());
        status.insert("podIPs".into(), json!([{"ip": ip}]));
        status.insert("startTime".into(), rfc3339(t0).into());
        status.insert("qosClass".into(), "Burstable".into());
        status.insert("containerStatuses".into(), Value::Array(vec![container]));
        Value::Object(status)
    }

    fn rs_name(&self, d: &Deployment, r: usize) -> String {
        format!("{}-{}", self.app.name, d.sets[r].hash)
    }

    fn deployment(&self, d: &Deployment) -> Value {
        let current = d
            .sets
            .last()
            .expect("a Deployment has a current ReplicaSet");
        let total: usize = d.sets.iter().map(|rs| rs.pods.len()).sum();
        let ready = d
            .sets
            .iter()
            .flat_map(|rs| &rs.pods)
            .filter(|p| p.state.ready())
            .count();
        let updated = current.pods.len();
        let replicas = d.replicas as usize;
        let rs_name = self.rs_name(d, d.sets.len() - 1);
        let since = (current.meta.created + 30).min(self.plan.now);
        let available = if ready + replicas / 4 >= replicas {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                since,
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                since,
            )
        };
        let progressing = if d.stuck {
            condition(
                "Progressing",
                false,
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                since,
            )
        } else {
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                since,
            )
        };
        let mut status = map([("observedGeneration", Value::from(d.meta.generation))]);
        for (key, value) in [
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
            ("unavailableReplicas", total.saturating_sub(ready)),
        ] {
            if value > 0 {
                status.insert(key.into(), value.into());
            }
        }
        let mut conditions = vec![available, progressing];
        for c in &mut conditions {
            c["lastUpdateTime"] = c["lastTransitionTime"].clone();
        }
        status.insert("conditions".into(), Value::Array(conditions));
        let labels = self.pod_labels();
        let template = Template {
            labels,
            version: current.version,
            restart: "Always",
            claim: self.own_claim_name(),
        };
        self.top("apps/v1", "Deployment", &self.app.name, Some(d.meta))
            .generation(&d.meta)
            .server_annotation("deployment.kubernetes.io/revision", current.revision.to_string())
            .field(
                "spec",
                with(json!({
                    "progressDeadlineSeconds": 600,
                    "replicas": d.replicas,
                    "revisionHistoryLimit": 10,
                    "selector": null,
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                    "template": null,
                }), [("template", self.template(&template)), ("selector", match_labels(self.selector()))]),
            )
            .field("status", Value::Object(status))
            .finish()
    }

    /// A Pod template: `{"metadata": {...}, "spec": {...}}`.
    fn template(&self, t: &Template) -> Value {
        let meta = map([
            ("creationTimestamp", Value::Null),
            ("labels", Value::Object(t.labels.clone())),
        ]);
        Value::Object(map([
            ("metadata", Value::Object(meta)),
            ("spec", Value::Object(self.pod_spec(t))),
        ]))
    }

    fn own_claim_name(&self) -> Option<&'a str> {
        self.app.claim.as_ref().map(|c| c.name.as_str())
    }

    fn replica_set(&self, d: &Deployment, r: usize) -> Value {
        let rs = &d.sets[r];
        let name = self.rs_name(d, r);
        let n = rs.pods.len();
        let ready = rs.pods.iter().filter(|p| p.state.ready()).count();
        let mut labels = self.pod_labels();
        labels.insert("pod-template-hash".into(), rs.hash.as_str().into());
        let mut selector = self.selector();
        selector.insert("pod-template-hash".into(), rs.hash.as_str().into());
        let mut status = map([
            ("observedGeneration", Value::from(rs.meta.generation)),
            ("replicas", n.into()),
        ]);
        for (key, value) in [
            ("fullyLabeledReplicas", n),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
        ] {
            if value > 0 {
                status.insert(key.into(), value.into());
            }
        }
        let template = Template {
            labels: labels.clone(),
            version: rs.version,
            restart: "Always",
            claim: self.own_claim_name(),
        };
        let (_, annotations) = self.marks();
        Obj::new(
            self.plan,
            "apps/v1",
            "ReplicaSet",
            &self.ns.name,
            &name,
            &rs.meta,
        )
        .generation(&rs.meta)
        .labels(labels)
        .annotations(annotations)
        .annotation(
            "deployment.kubernetes.io/desired-replicas",
            rs.desired.to_string(),
        )
        .annotation(
            "deployment.kubernetes.io/max-replicas",
            (rs.desired + rs.desired.div_ceil(4)).to_string(),
        )
        .annotation("deployment.kubernetes.io/revision", rs.revision.to_string())
        .owner(
            "apps/v1",
            "Deployment",
            &self.app.name,
            &self.uid("Deployment", &self.app.name, &d.meta),
        )
        .field(
            "spec",
            with(
                json!({
                    "replicas": n,
                    "selector": null,
                    "template": null,
                }),
                [
                    ("template", self.template(&template)),
                    ("selector", match_labels(selector)),
                ],
            ),
        )
        .field("status", Value::Object(status))
        .finish()
    }

    fn rs_pod(&self, d: &Deployment, r: usize, p: usize) -> Value {
        let rs = &d.sets[r];
        let name = self.rs_name(d, r);
        let mut labels = self.pod_labels();
        labels.insert("pod-template-hash".into(), rs.hash.as_str().into());
        let owner = Owner {
            api: "apps/v1",
            kind: "ReplicaSet",
            name: &name,
            uid: self.uid("ReplicaSet", &name, &rs.meta),
        };
        let t = Template {
            labels,
            version: rs.version,
            restart: "Always",
            claim: self.own_claim_name(),
        };
        self.pod(&rs.pods[p], &owner, t, Some(&name))
    }

    fn service_name(&self) -> &'a str {
        self.app
            .service
            .as_ref()
            .map_or(self.app.name.as_str(), |s| s.name.as_str())
    }

    fn stateful_set(&self, s: &StatefulSet) -> Value {
        let n = s.pods.len();
        let ready = s.pods.iter().filter(|p| p.state.ready()).count();
        let fast = s.claims.first().is_none_or(|c| c.fast);
        let size = s.claims.first().map_or(8, |c| c.size_gi);
        let template = Template {
            labels: self.pod_labels(),
            version: 1,
            restart: "Always",
            claim: None,
        };
        self.top("apps/v1", "StatefulSet", &self.app.name, Some(s.meta))
            .generation(&s.meta)
            .field(
                "spec",
                with(json!({
                    "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                    "podManagementPolicy": "OrderedReady",
                    "replicas": n,
                    "revisionHistoryLimit": 10,
                    "selector": null,
                    "serviceName": self.service_name(),
                    "template": null,
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                    "volumeClaimTemplates": [{
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"creationTimestamp": null, "name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": format!("{size}Gi")}},
                            "storageClassName": if fast { names::FAST_STORAGE_CLASS } else { names::DEFAULT_STORAGE_CLASS },
                            "volumeMode": "Filesystem",
                        },
                        "status": {"phase": "Pending"},
                    }],
                }), [("template", self.template(&template)), ("selector", match_labels(self.selector()))]),
            )
            .field(
                "status",
                json!({
                    "availableReplicas": ready, "collisionCount": 0, "currentReplicas": n,
                    "currentRevision": s.hash, "observedGeneration": s.meta.generation,
                    "readyReplicas": ready, "replicas": n, "updateRevision": s.hash, "updatedReplicas": n,
                }),
            )
            .finish()
    }

    fn sts_pod(&self, s: &StatefulSet, i: usize) -> Value {
        let pod = &s.pods[i];
        let mut labels = self.pod_labels();
        labels.insert("apps.kubernetes.io/pod-index".into(), i.to_string().into());
        labels.insert("controller-revision-hash".into(), s.hash.as_str().into());
        labels.insert(
            "statefulset.kubernetes.io/pod-name".into(),
            pod.name.as_str().into(),
        );
        let owner = Owner {
            api: "apps/v1",
            kind: "StatefulSet",
            name: &self.app.name,
            uid: self.uid("StatefulSet", &self.app.name, &s.meta),
        };
        let t = Template {
            labels,
            version: 1,
            restart: "Always",
            claim: Some(&s.claims[i].name),
        };
        self.pod(pod, &owner, t, Some(&self.app.name))
    }

    fn own_claim(&self) -> Value {
        let claim = self.app.claim.as_ref().expect("app has its own claim");
        let (labels, _) = self.marks();
        self.claim(claim, labels)
    }

    fn claim(&self, c: &Claim, labels: Map<String, Value>) -> Value {
        let class = if c.fast {
            names::FAST_STORAGE_CLASS
        } else {
            names::DEFAULT_STORAGE_CLASS
        };
        let storage = format!("{}Gi", c.size_gi);
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage}},
            "storageClassName": class,
            "volumeMode": "Filesystem",
        });
        let mut obj = Obj::new(
            self.plan,
            "v1",
            "PersistentVolumeClaim",
            &self.ns.name,
            &c.name,
            &c.meta,
        )
        .labels(labels)
        .annotation(
            "volume.beta.kubernetes.io/storage-provisioner",
            "ebs.csi.aws.com",
        )
        .annotation(
            "volume.kubernetes.io/storage-provisioner",
            "ebs.csi.aws.com",
        )
        .meta_field("finalizers", json!(["kubernetes.io/pvc-protection"]));
        let status = if c.volume.is_some() {
            spec["volumeName"] = format!(
                "pvc-{}",
                self.uid("PersistentVolumeClaim", &c.name, &c.meta)
            )
            .into();
            obj = obj
                .annotation("pv.kubernetes.io/bind-completed", "yes")
                .annotation("pv.kubernetes.io/bound-by-controller", "yes");
            json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": storage}, "phase": "Bound"})
        } else {
            json!({"phase": "Pending"})
        };
        if self.app.claim.is_some() {
            obj = obj.manager(installer(self.app.helm.is_some(), self.app.kubectl));
        }
        obj.field("spec", spec).field("status", status).finish()
    }

    /// The PersistentVolume bound to claim `claim` (or to the app's own claim).
    pub(super) fn volume(&self, claim: u32) -> Value {
        let c = if claim == OWN_CLAIM {
            self.app.claim.as_ref().expect("app has its own claim")
        } else {
            &Self::claims(self.app)[claim as usize]
        };
        let meta = c.volume.expect("only bound claims have volumes");
        let claim_uid = self.uid("PersistentVolumeClaim", &c.name, &c.meta);
        let name = format!("pvc-{claim_uid}");
        let zone = zone(hash(&name) as u32 % 3);
        Obj::new(self.plan, "v1", "PersistentVolume", "", &name, &meta)
            .annotation("pv.kubernetes.io/provisioned-by", "ebs.csi.aws.com")
            .annotation("volume.kubernetes.io/provisioner-deletion-secret-name", "")
            .annotation("volume.kubernetes.io/provisioner-deletion-secret-namespace", "")
            .meta_field("finalizers", json!(["external-provisioner.volume.kubernetes.io/finalizer", "kubernetes.io/pv-protection"]))
            .manager("csi-provisioner")
            .field(
                "spec",
                json!({
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": format!("{}Gi", c.size_gi)},
                    "claimRef": {
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "name": c.name, "namespace": self.ns.name, "uid": claim_uid,
                    },
                    "csi": {"driver": "ebs.csi.aws.com", "fsType": "ext4", "volumeHandle": format!("vol-0{}", hex(hash(&name), 16))},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}
                    ]}]}},
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": if c.fast { names::FAST_STORAGE_CLASS } else { names::DEFAULT_STORAGE_CLASS },
                    "volumeMode": "Filesystem",
                }),
            )
            .field("status", json!({"phase": "Bound", "lastPhaseTransitionTime": rfc3339(meta.created)}))
            .finish()
    }

    fn daemon_set(&self, d: &DaemonSet) -> Value {
        let n = d.pods.len();
        let ready = d.pods.iter().filter(|p| p.state.ready()).count();
        let template = Template {
            labels: self.pod_labels(),
            version: 1,
            restart: "Always",
            claim: None,
        };
        self.top("apps/v1", "DaemonSet", &self.app.name, Some(d.meta))
            .generation(&d.meta)
            .server_annotation("deprecated.daemonset.template.generation", "1".to_string())
            .field(
                "spec",
                with(json!({
                    "revisionHistoryLimit": 10,
                    "selector": null,
                    "template": null,
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                }), [("template", self.template(&template)), ("selector", match_labels(self.selector()))]),
            )
            .field(
                "status",
                json!({
                    "currentNumberScheduled": n, "desiredNumberScheduled": n, "numberAvailable": ready,
                    "numberMisscheduled": 0, "numberReady": ready, "observedGeneration": d.meta.generation,
                    "updatedNumberScheduled": n,
                }),
            )
            .finish()
    }

    fn ds_pod(&self, d: &DaemonSet, i: usize) -> Value {
        let mut labels = self.pod_labels();
        labels.insert("controller-revision-hash".into(), d.hash.as_str().into());
        labels.insert("pod-template-generation".into(), "1".into());
        let owner = Owner {
            api: "apps/v1",
            kind: "DaemonSet",
            name: &self.app.name,
            uid: self.uid("DaemonSet", &self.app.name, &d.meta),
        };
        let t = Template {
            labels,
            version: 1,
            restart: "Always",
            claim: None,
        };
        self.pod(&d.pods[i], &owner, t, Some(&self.app.name))
    }

    fn cron_job(&self, c: &CronJob) -> Value {
        let template = Template {
            labels: self.pod_labels(),
            version: 1,
            restart: "OnFailure",
            claim: None,
        };
        let mut spec = json!({
            "concurrencyPolicy": "Forbid",
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"creationTimestamp": null}, "spec": {"backoffLimit": 2}},
            "schedule": c.schedule,
            "successfulJobsHistoryLimit": 3,
            "suspend": false,
        });
        spec["jobTemplate"]["spec"]["template"] = self.template(&template);
        let mut obj = self
            .top("batch/v1", "CronJob", &self.app.name, Some(c.meta))
            .generation(&c.meta)
            .field("spec", spec);
        if let Some(last) = c.runs.last() {
            let at = self.scheduled(last.minute);
            obj = obj.field(
                "status",
                json!({"lastScheduleTime": rfc3339(at), "lastSuccessfulTime": rfc3339((at + 45).min(self.plan.now))}),
            );
        }
        obj.finish()
    }

    /// A run's scheduled time; runs triggered by churn are clamped to "now" so that no timestamp
    /// lies in the future.
    fn scheduled(&self, minute: i64) -> i64 {
        (minute * 60).min(self.plan.now)
    }

    fn run_name(&self, c: &CronJob, i: usize) -> String {
        format!("{}-{}", self.app.name, c.runs[i].minute)
    }

    /// Labels the Job controller puts on a Job and its Pods.
    fn job_labels(&self, name: &str, uid: &str) -> Map<String, Value> {
        let mut labels = self.pod_labels();
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", uid),
            ("job-name", name),
        ] {
            labels.insert(k.into(), v.into());
        }
        labels
    }

    fn job_body(
        &self,
        obj: Obj,
        uid: &str,
        labels: &Map<String, Value>,
        backoff: u32,
        restart: &'static str,
        status: Value,
    ) -> Value {
        let template = Template {
            labels: labels.clone(),
            version: 1,
            restart,
            claim: None,
        };
        obj.labels(labels.clone())
            .field(
                "spec",
                with(json!({
                    "backoffLimit": backoff, "completionMode": "NonIndexed", "completions": 1,
                    "manualSelector": false, "parallelism": 1, "podReplacementPolicy": "TerminatingOrFailed",
                    "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
                    "suspend": false,
                    "template": null,
                }), [("template", self.template(&template))]),
            )
            .field("status", status)
            .finish()
    }

    fn run_job(&self, c: &CronJob, i: usize) -> Value {
        let run = &c.runs[i];
        let name = self.run_name(c, i);
        let uid = self.uid("Job", &name, &run.meta);
        let labels = self.job_labels(&name, &uid);
        let start = run.meta.created;
        let done = (start + 45).min(self.plan.now.max(start));
        let status = json!({
            "completionTime": rfc3339(done),
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": rfc3339(done), "lastTransitionTime": rfc3339(done)},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": rfc3339(done), "lastTransitionTime": rfc3339(done)},
            ],
            "ready": 0, "startTime": rfc3339(start), "succeeded": 1, "terminating": 0, "uncountedTerminatedPods": {},
        });
        let obj = Obj::new(
            self.plan,
            "batch/v1",
            "Job",
            &self.ns.name,
            &name,
            &run.meta,
        )
        .annotation(
            "batch.kubernetes.io/cronjob-scheduled-timestamp",
            rfc3339(self.scheduled(run.minute)),
        )
        .annotation("batch.kubernetes.io/job-tracking", "")
        .generation(&run.meta)
        .owner(
            "batch/v1",
            "CronJob",
            &self.app.name,
            &self.uid("CronJob", &self.app.name, &c.meta),
        );
        self.job_body(obj, &uid, &labels, 2, "OnFailure", status)
    }

    fn run_pod(&self, c: &CronJob, i: usize) -> Value {
        let run = &c.runs[i];
        let name = self.run_name(c, i);
        let uid = self.uid("Job", &name, &run.meta);
        let labels = self.job_labels(&name, &uid);
        let owner = Owner {
            api: "batch/v1",
            kind: "Job",
            name: &name,
            uid,
        };
        let t = Template {
            labels,
            version: 1,
            restart: "OnFailure",
            claim: None,
        };
        self.pod(&run.pod, &owner, t, Some(&name))
    }

    fn job(&self, j: &Job) -> Value {
        let name = &self.app.name;
        let uid = self.uid("Job", name, &j.meta);
        let labels = self.job_labels(name, &uid);
        let failed = rfc3339(j.meta.created + 60);
        let message = "Job has reached the specified backoff limit";
        let status = json!({
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": message, "lastProbeTime": failed, "lastTransitionTime": failed},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": message, "lastProbeTime": failed, "lastTransitionTime": failed},
            ],
            "failed": 1, "ready": 0, "startTime": rfc3339(j.meta.created), "terminating": 0, "uncountedTerminatedPods": {},
        });
        let obj = self
            .top("batch/v1", "Job", name, Some(j.meta))
            .generation(&j.meta);
        self.job_body(obj, &uid, &labels, 0, "Never", status)
    }

    fn job_pod(&self, j: &Job) -> Value {
        let name = &self.app.name;
        let uid = self.uid("Job", name, &j.meta);
        let labels = self.job_labels(name, &uid);
        let owner = Owner {
            api: "batch/v1",
            kind: "Job",
            name,
            uid,
        };
        let t = Template {
            labels,
            version: 1,
            restart: "Never",
            claim: None,
        };
        self.pod(&j.pod, &owner, t, Some(name))
    }

    fn svc(&self) -> &'a Service {
        self.app.service.as_ref().expect("app has a Service")
    }

    /// The selector a Service uses in `variant`: 0 and 1 match the app's Pods, 2 matches none
    /// (a typo'd canary selector, as happens in real life).
    fn service_selector(&self, variant: u8) -> Map<String, Value> {
        let mut selector = self.selector();
        match variant {
            1 => {
                selector.insert("tier".into(), self.app.tier.into());
            }
            2 => {
                selector.insert("track".into(), "canary".into());
            }
            _ => {}
        }
        selector
    }

    fn service(&self) -> Value {
        let s = self.svc();
        let p = self.app.profile;
        let ip = match s.kind {
            SvcKind::Headless => "None".to_string(),
            _ => format!(
                "10.{}.{}.{}",
                96 + (s.ip >> 16 & 15),
                s.ip >> 8 & 255,
                s.ip & 255
            ),
        };
        let lb = matches!(s.kind, SvcKind::LoadBalancer | SvcKind::PendingLoadBalancer);
        let mut port = map([
            ("name", Value::from(p.port_name)),
            ("port", self.service_port().into()),
            ("protocol", p.protocol.into()),
            ("targetPort", p.port_name.into()),
        ]);
        let mut spec = map([
            ("clusterIP", Value::from(ip.as_str())),
            ("clusterIPs", json!([ip])),
            ("internalTrafficPolicy", "Cluster".into()),
            ("ipFamilies", json!(["IPv4"])),
            ("ipFamilyPolicy", "SingleStack".into()),
            ("selector", Value::Object(self.service_selector(s.variant))),
            ("sessionAffinity", "None".into()),
            ("type", if lb { "LoadBalancer" } else { "ClusterIP" }.into()),
        ]);
        let mut obj = self.top("v1", "Service", &s.name, Some(s.meta));
        let mut status = json!({"loadBalancer": {}});
        if lb {
            port.insert("nodePort".into(), (30000 + s.ip % 2767).into());
            spec.insert("allocateLoadBalancerNodePorts".into(), true.into());
            spec.insert("externalTrafficPolicy".into(), "Cluster".into());
            obj = obj.annotation("service.beta.kubernetes.io/aws-load-balancer-type", "nlb");
            if s.kind == SvcKind::LoadBalancer {
                status = json!({"loadBalancer": {"ingress": [{"hostname": lb_hostname(self.plan, &self.ns.name, &s.name)}]}});
            } else {
                // The subnet does not exist, so the cloud controller never provisions anything.
                obj = obj.annotation(
                    "service.beta.kubernetes.io/aws-load-balancer-subnets",
                    "subnet-0badc0ffee0000000",
                );
            }
        }
        spec.insert("ports".into(), Value::Array(vec![Value::Object(port)]));
        obj.field("spec", Value::Object(spec))
            .field("status", status)
            .finish()
    }

    fn slice(&self) -> Value {
        let s = self.svc();
        let p = self.app.profile;
        let ns = self.ns.name.as_str();
        let endpoints: Vec<Value> = if s.variant == 2 {
            Vec::new()
        } else {
            self.app
                .pods()
                .filter(|pod| pod.state.has_ip())
                .map(|pod| {
                    let ready = pod.state.ready();
                    json!({
                        "addresses": [pod_ip(pod.serial)],
                        "conditions": {"ready": ready, "serving": ready, "terminating": false},
                        "nodeName": node_name(pod.node as usize),
                        "targetRef": {"kind": "Pod", "name": pod.name, "namespace": ns, "uid": self.uid("Pod", &pod.name, &pod.meta)},
                        "zone": zone(pod.node),
                    })
                })
                .collect()
        };
        let (labels, _) = self.marks();
        let mut obj = Obj::new(
            self.plan,
            "discovery.k8s.io/v1",
            "EndpointSlice",
            ns,
            &s.slice_name,
            &s.slice,
        )
        .labels(labels)
        .label(
            "endpointslice.kubernetes.io/managed-by",
            "endpointslice-controller.k8s.io",
        )
        .label("kubernetes.io/service-name", s.name.as_str())
        .meta_field("generateName", format!("{}-", s.name).into())
        .owner(
            "v1",
            "Service",
            &s.name,
            &self.uid("Service", &s.name, &s.meta),
        )
        .manager("endpointslice-controller.k8s.io")
        .field("addressType", "IPv4".into());
        if s.kind == SvcKind::Headless {
            obj = obj.label("service.kubernetes.io/headless", "");
        }
        let (endpoints, ports) = if endpoints.is_empty() {
            (Value::Null, Value::Null)
        } else {
            (
                Value::Array(endpoints),
                json!([{"name": p.port_name, "port": p.port, "protocol": p.protocol}]),
            )
        };
        obj.field("endpoints", endpoints)
            .field("ports", ports)
            .finish()
    }

    fn ingress(&self) -> Value {
        let i = self.app.ingress.as_ref().expect("app has an Ingress");
        let s = self.svc();
        let mut spec = json!({
            "ingressClassName": names::INGRESS_CLASS,
            "rules": [{"host": i.host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": s.name, "port": {"number": self.service_port()}}},
            }]}}],
        });
        let mut obj = self
            .top(
                "networking.k8s.io/v1",
                "Ingress",
                &self.app.name,
                Some(i.meta),
            )
            .generation(&i.meta)
            .annotation("nginx.ingress.kubernetes.io/proxy-body-size", "8m");
        if i.tls.is_some() {
            spec["tls"] =
                json!([{"hosts": [i.host], "secretName": format!("{}-tls", self.app.name)}]);
            obj = obj.annotation("nginx.ingress.kubernetes.io/ssl-redirect", "true");
        }
        obj.field("spec", spec)
            .field("status", ingress_status(self.plan))
            .finish()
    }

    fn tls(&self) -> Value {
        let meta = self.app.ingress.as_ref().and_then(|i| i.tls);
        let key = format!(
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ{}\n-----END PRIVATE KEY-----\n",
            hex(self.plan.salt ^ hash(&self.app.name), 48)
        );
        self.top("v1", "Secret", &format!("{}-tls", self.app.name), meta)
            .field("type", "kubernetes.io/tls".into())
            .field(
                "data",
                json!({"tls.crt": base64(CERT.as_bytes()), "tls.key": base64(key.as_bytes())}),
            )
            .finish()
    }

    fn config(&self) -> Value {
        let c = self.app.config.as_ref().expect("app has a ConfigMap");
        let level = if c.version % 2 == 1 { "info" } else { "debug" };
        let ns = self.ns.name.as_str();
        let yaml = format!(
            "server:\n  port: {}\n  shutdownTimeout: 20s\nlogging:\n  level: {level}\nupstreams:\n  database: postgres.{ns}.svc.cluster.local:5432\n  cache: redis-headless.{ns}.svc.cluster.local:6379\nconfigRevision: {}\n",
            self.app.profile.port, c.version
        );
        self.top(
            "v1",
            "ConfigMap",
            &format!("{}-config", self.app.name),
            Some(c.meta),
        )
        .field(
            "data",
            json!({"LOG_LEVEL": level, "APP_ENV": self.ns.env, "application.yaml": yaml}),
        )
        .finish()
    }

    fn secret(&self) -> Value {
        let name = &self.app.name;
        let ns = self.ns.name.as_str();
        let seed = self.plan.salt ^ hash(&format!("{ns}/{name}"));
        let url = format!(
            "postgres://{name}:{}@postgres.{ns}.svc:5432/{name}",
            hex(seed, 20)
        );
        self.top("v1", "Secret", &format!("{name}-secret"), self.app.secret)
            .field("type", "Opaque".into())
            .field("data", json!({"API_KEY": base64(hex(seed ^ 1, 32).as_bytes()), "DATABASE_URL": base64(url.as_bytes())}))
            .finish()
    }

    fn hpa(&self) -> Value {
        let h = self.app.hpa.as_ref().expect("app has an HPA");
        let replicas = self.app.deployment().map_or(1, |d| d.replicas);
        let since = rfc3339(h.meta.created + 60);
        let cpu_milli = h.cpu * 25 / 10;
        self.top("autoscaling/v2", "HorizontalPodAutoscaler", &self.app.name, Some(h.meta))
            .generation(&h.meta)
            .field(
                "spec",
                json!({
                    "maxReplicas": h.max, "minReplicas": h.min,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.app.name},
                }),
            )
            .field(
                "status",
                json!({
                    "conditions": [
                        {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "recommended size matches current size", "lastTransitionTime": since},
                        {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)", "lastTransitionTime": since},
                        {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange", "message": "the desired count is within the acceptable range", "lastTransitionTime": since},
                    ],
                    "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": h.cpu, "averageValue": format!("{cpu_milli}m")}}}],
                    "currentReplicas": replicas,
                    "desiredReplicas": replicas,
                }),
            )
            .finish()
    }

    fn pdb(&self) -> Value {
        let b = self.app.pdb.as_ref().expect("app has a PDB");
        let expected = self.app.pods().filter(|p| p.state.has_ip()).count() as u32;
        let healthy = self.app.pods().filter(|p| p.state.ready()).count() as u32;
        let desired = if b.min_available > 0 {
            b.min_available
        } else {
            expected.saturating_sub(1)
        };
        let allowed = healthy.saturating_sub(desired);
        let mut selector = match_labels(self.selector());
        if b.expressions {
            selector["matchExpressions"] =
                json!([{"key": "tier", "operator": "In", "values": [self.app.tier]}]);
        }
        let mut spec = Value::Object(map([("selector", selector)]));
        if b.min_available > 0 {
            spec["minAvailable"] = b.min_available.into();
        } else {
            spec["maxUnavailable"] = 1.into();
        }
        let mut allowed_condition = if allowed > 0 {
            condition(
                "DisruptionAllowed",
                true,
                "SufficientPods",
                "",
                b.meta.created + 30,
            )
        } else {
            condition(
                "DisruptionAllowed",
                false,
                "InsufficientPods",
                "",
                b.meta.created + 30,
            )
        };
        allowed_condition["observedGeneration"] = b.meta.generation.into();
        self.top(
            "policy/v1",
            "PodDisruptionBudget",
            &self.app.name,
            Some(b.meta),
        )
        .generation(&b.meta)
        .field("spec", spec)
        .field(
            "status",
            json!({
                "conditions": [allowed_condition],
                "currentHealthy": healthy, "desiredHealthy": desired, "disruptionsAllowed": allowed,
                "expectedPods": expected, "observedGeneration": b.meta.generation,
            }),
        )
        .finish()
    }

    fn netpol(&self) -> Value {
        let port = self.app.profile.port;
        self.top("networking.k8s.io/v1", "NetworkPolicy", &self.app.name, self.app.netpol)
            .generation(&self.app.netpol.expect("app has a NetworkPolicy"))
            .field(
                "spec",
                with(json!({
                    "podSelector": null,
                    "policyTypes": ["Ingress"],
                    "ingress": [{
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                            {"podSelector": {}},
                        ],
                        "ports": [{"port": port, "protocol": "TCP"}],
                    }],
                }), [("podSelector", match_labels(self.selector()))]),
            )
            .finish()
    }
}
