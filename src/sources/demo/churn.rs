//! Realistic churn for `DemoCluster::step`: each step picks one kind of change by weight, mutates
//! the plan and re-renders exactly the objects that change, producing the events a watch would
//! deliver. Deleted objects are rendered before the mutation (to know their uid); every event
//! bumps the global resourceVersion.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::DemoEvent;
use super::build::template_hash;
use super::plan::{Meta, Plan, Pod, PodState, ReplicaSet, Run, SvcKind, Workload};
use super::render::{OWN_CLAIM, Part, Ref, render};
use super::render_app::AppView;
use super::util::suffix;

/// Old ReplicaSets kept besides the current one (the generator's, not Kubernetes', history).
const OLD_REVISIONS: usize = 2;
/// Jobs a CronJob keeps (successfulJobsHistoryLimit).
const JOB_HISTORY: usize = 3;

/// Candidates for each kind of change, collected once (apps are never added or removed).
struct Targets {
    restartable: Vec<(u32, u32)>,
    rollable: Vec<(u32, u32)>,
    scalable: Vec<(u32, u32)>,
    stateful: Vec<(u32, u32)>,
    crons: Vec<(u32, u32)>,
    /// App ConfigMaps as `Some(app)`, namespace-level (shared) ones as `None` with the object index.
    configs: Vec<(u32, Option<u32>, u32)>,
    services: Vec<(u32, u32)>,
    hpas: Vec<(u32, u32)>,
}

/// The churn state: its own random stream and the candidate lists.
pub(super) struct Churn {
    rng: ChaCha8Rng,
    targets: Targets,
    /// Nodes that churn took down and may bring back.
    down: Vec<u32>,
}

impl Churn {
    pub(super) fn new(plan: &Plan, seed: u64) -> Self {
        let mut t = Targets {
            restartable: Vec::new(),
            rollable: Vec::new(),
            scalable: Vec::new(),
            stateful: Vec::new(),
            crons: Vec::new(),
            configs: Vec::new(),
            services: Vec::new(),
            hpas: Vec::new(),
        };
        for (n, ns) in plan.namespaces.iter().enumerate() {
            let n = n as u32;
            for (i, o) in ns.objects.iter().enumerate() {
                if o.kind == super::plan::NsKind::SharedConfig {
                    t.configs.push((n, None, i as u32));
                }
            }
            for (a, app) in ns.apps.iter().enumerate() {
                let id = (n, a as u32);
                match &app.workload {
                    Workload::Deployment(_) => {
                        t.restartable.push(id);
                        if !app.pinned {
                            t.rollable.push(id);
                            if !app.fixed_scale {
                                t.scalable.push(id);
                            }
                        }
                    }
                    Workload::StatefulSet(_) => {
                        t.restartable.push(id);
                        t.stateful.push(id);
                    }
                    Workload::CronJob(_) => t.crons.push(id),
                    Workload::DaemonSet(_) | Workload::Job(_) => {}
                }
                if app.config.is_some() {
                    t.configs.push((n, Some(a as u32), 0));
                }
                if app
                    .service
                    .as_ref()
                    .is_some_and(|s| s.kind != SvcKind::Headless)
                    && !app.pinned
                {
                    t.services.push(id);
                }
                if app.hpa.is_some() {
                    t.hpas.push(id);
                }
            }
        }
        Churn {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6368_7572_6e21),
            targets: t,
            down: Vec::new(),
        }
    }

    fn pick(&mut self, list: fn(&Targets) -> &Vec<(u32, u32)>) -> Option<(u32, u32)> {
        let list = list(&self.targets);
        (!list.is_empty()).then(|| list[self.rng.random_range(0..list.len())])
    }

    /// A Node for a Pod created now: never the NotReady (1) or the cordoned (2) one.
    fn node(&mut self, nodes: usize) -> u32 {
        match self.rng.random_range(0..nodes as u32 - 2) {
            0 => 0,
            i => i + 2,
        }
    }
}

/// Collects the events of one step in order.
struct Events<'a> {
    plan: &'a mut Plan,
    out: Vec<DemoEvent>,
}

impl Events<'_> {
    /// Records a create or update of `r` (already mutated in the plan).
    fn apply(&mut self, r: Ref) {
        let rv = self.plan.bump();
        meta_mut(self.plan, r).rv = rv;
        self.out.push(DemoEvent::Apply(render(self.plan, r)));
    }

    /// Records the deletion of an object whose identity was captured before the mutation.
    fn delete(&mut self, event: DemoEvent) {
        self.plan.bump();
        self.out.push(event);
    }
}

/// The Delete event for `part` of app `a` of namespace `n`, from the plan as it is now (before it
/// is removed).
fn deletion(plan: &Plan, n: u32, a: u32, part: Part) -> DemoEvent {
    AppView::new(plan, n, a)
        .deletion(part)
        .expect("churn deletes only Pods, ReplicaSets and Jobs")
}

fn meta_mut(plan: &mut Plan, r: Ref) -> &mut Meta {
    let (n, a, part) = match r {
        Ref::Node(i) => return &mut plan.nodes[i as usize].meta,
        Ref::Cluster(i) => return &mut plan.cluster[i as usize].meta,
        Ref::Namespace(n) => return &mut plan.namespaces[n as usize].meta,
        Ref::NsObj(n, i) => return &mut plan.namespaces[n as usize].objects[i as usize].meta,
        Ref::Release(n, r, v) => {
            return &mut plan.namespaces[n as usize].releases[r as usize].records[v as usize];
        }
        Ref::Volume { ns, app, claim } => {
            let app = &mut plan.namespaces[ns as usize].apps[app as usize];
            let c = match (&mut app.workload, claim) {
                (_, OWN_CLAIM) => app.claim.as_mut(),
                (Workload::StatefulSet(s), c) => s.claims.get_mut(c as usize),
                _ => None,
            };
            return c.and_then(|c| c.volume.as_mut()).expect("volume exists");
        }
        Ref::App(n, a, part) => (n, a, part),
    };
    let app = &mut plan.namespaces[n as usize].apps[a as usize];
    let missing = "referenced part exists";
    match (part, &mut app.workload) {
        (Part::Account, _) => app.account.as_mut().expect(missing),
        (Part::Config, _) => &mut app.config.as_mut().expect(missing).meta,
        (Part::Secret, _) => app.secret.as_mut().expect(missing),
        (Part::OwnClaim, _) => &mut app.claim.as_mut().expect(missing).meta,
        (Part::Service, _) => &mut app.service.as_mut().expect(missing).meta,
        (Part::Slice, _) => &mut app.service.as_mut().expect(missing).slice,
        (Part::Ingress, _) => &mut app.ingress.as_mut().expect(missing).meta,
        (Part::Tls, _) => app
            .ingress
            .as_mut()
            .and_then(|i| i.tls.as_mut())
            .expect(missing),
        (Part::Hpa, _) => &mut app.hpa.as_mut().expect(missing).meta,
        (Part::Pdb, _) => &mut app.pdb.as_mut().expect(missing).meta,
        (Part::NetPol, _) => app.netpol.as_mut().expect(missing),
        (Part::Workload, Workload::Deployment(d)) => &mut d.meta,
        (Part::Workload, Workload::StatefulSet(s)) => &mut s.meta,
        (Part::Workload, Workload::DaemonSet(d)) => &mut d.meta,
        (Part::Workload, Workload::CronJob(c)) => &mut c.meta,
        (Part::Workload, Workload::Job(j)) => &mut j.meta,
        (Part::ReplicaSet(r), Workload::Deployment(d)) => &mut d.sets[r as usize].meta,
        (Part::RsPod(r, p), Workload::Deployment(d)) => {
            &mut d.sets[r as usize].pods[p as usize].meta
        }
        (Part::Pod(i), Workload::StatefulSet(s)) => &mut s.pods[i as usize].meta,
        (Part::Pod(i), Workload::DaemonSet(d)) => &mut d.pods[i as usize].meta,
        (Part::Pod(_), Workload::Job(j)) => &mut j.pod.meta,
        (Part::Claim(i), Workload::StatefulSet(s)) => &mut s.claims[i as usize].meta,
        (Part::Job(i), Workload::CronJob(c)) => &mut c.runs[i as usize].meta,
        (Part::JobPod(i), Workload::CronJob(c)) => &mut c.runs[i as usize].pod.meta,
        (part, _) => unreachable!("part {part:?} does not exist"),
    }
}

/// Runs one step of churn and returns its events.
pub(super) fn step(plan: &mut Plan, churn: &mut Churn) -> Vec<DemoEvent> {
    let mut ev = Events {
        plan,
        out: Vec::new(),
    };
    let done = match churn.rng.random_range(0..100) {
        0..30 => restart(&mut ev, churn),
        30..45 => scale(&mut ev, churn),
        45..53 => rollout(&mut ev, churn),
        53..61 => recreate(&mut ev, churn),
        61..73 => cron_run(&mut ev, churn),
        73..81 => config_change(&mut ev, churn),
        81..85 => selector_change(&mut ev, churn),
        85..95 => hpa_change(&mut ev, churn),
        _ => false,
    };
    if !done {
        node_flip(&mut ev, churn);
    }
    ev.out
}

/// After a Pod's readiness changed: everything whose status counts ready Pods.
fn readiness_followers(ev: &mut Events, n: u32, a: u32, rs: Option<u32>) {
    let app = &ev.plan.namespaces[n as usize].apps[a as usize];
    let (service, pdb) = (app.service.is_some(), app.pdb.is_some());
    if let Some(r) = rs {
        ev.apply(Ref::App(n, a, Part::ReplicaSet(r)));
    }
    ev.apply(Ref::App(n, a, Part::Workload));
    if service {
        ev.apply(Ref::App(n, a, Part::Slice));
    }
    if pdb {
        ev.apply(Ref::App(n, a, Part::Pdb));
    }
}

/// A container restart; unpinned Pods sometimes fall into or recover from CrashLoopBackOff.
fn restart(ev: &mut Events, churn: &mut Churn) -> bool {
    let Some((n, a)) = churn.pick(|t| &t.restartable) else {
        return false;
    };
    let app = &mut ev.plan.namespaces[n as usize].apps[a as usize];
    let pinned = app.pinned;
    let mut candidates: Vec<(Option<u32>, u32)> = Vec::new();
    match &app.workload {
        Workload::Deployment(d) => {
            for (r, rs) in d.sets.iter().enumerate() {
                for (p, pod) in rs.pods.iter().enumerate() {
                    if matches!(pod.state, PodState::Running | PodState::CrashLoop) {
                        candidates.push((Some(r as u32), p as u32));
                    }
                }
            }
        }
        Workload::StatefulSet(s) => candidates.extend((0..s.pods.len() as u32).map(|p| (None, p))),
        _ => {}
    }
    if candidates.is_empty() {
        return false;
    }
    let (rs, p) = candidates[churn.rng.random_range(0..candidates.len())];
    let pod = match (&mut app.workload, rs) {
        (Workload::Deployment(d), Some(r)) => &mut d.sets[r as usize].pods[p as usize],
        (Workload::StatefulSet(s), None) => &mut s.pods[p as usize],
        _ => unreachable!("candidates come from the workload"),
    };
    pod.restarts += 1;
    let before = pod.state;
    if !pinned {
        pod.state = match pod.state {
            PodState::CrashLoop if churn.rng.random_bool(0.5) => PodState::Running,
            PodState::Running if churn.rng.random_bool(0.1) => PodState::CrashLoop,
            s => s,
        };
    }
    let changed = before != pod.state;
    ev.apply(match rs {
        Some(r) => Ref::App(n, a, Part::RsPod(r, p)),
        None => Ref::App(n, a, Part::Pod(p)),
    });
    if changed {
        readiness_followers(ev, n, a, rs);
    }
    true
}

/// A fresh Running Pod named `<prefix>-<suffix>`, avoiding the names in `taken`.
fn new_pod(plan: &mut Plan, churn: &mut Churn, prefix: &str, taken: &[String]) -> Pod {
    let (name, serial) = plan.pod_identity(prefix, |n| taken.iter().any(|t| t == n));
    let node = churn.node(plan.nodes.len());
    Pod {
        meta: plan.fresh(),
        name,
        node,
        serial,
        restarts: 0,
        state: PodState::Running,
    }
}

/// Scales a Deployment by one replica, within its HPA's bounds.
fn scale(ev: &mut Events, churn: &mut Churn) -> bool {
    let Some((n, a)) = churn.pick(|t| &t.scalable) else {
        return false;
    };
    let plan = &mut *ev.plan;
    let app = &plan.namespaces[n as usize].apps[a as usize];
    let Some(d) = app.deployment() else {
        return false;
    };
    let (lo, hi) = app.hpa.as_ref().map_or((1, 8), |h| (h.min, h.max));
    let up = match d.replicas {
        r if r <= lo => true,
        r if r >= hi => false,
        _ => churn.rng.random_bool(0.5),
    };
    let r = (d.sets.len() - 1) as u32;
    let current = d.sets.last().expect("current ReplicaSet");
    let last_pod = current.pods.len() as u32;
    let (name, has_service, has_hpa, has_pdb) = (
        app.name.clone(),
        app.service.is_some(),
        app.hpa.is_some(),
        app.pdb.is_some(),
    );
    let prefix = format!("{name}-{}", current.hash);
    let taken: Vec<String> = current.pods.iter().map(|p| p.name.clone()).collect();
    let removed = (!up && last_pod > 0).then(|| deletion(plan, n, a, Part::RsPod(r, last_pod - 1)));
    let new_pod = up.then(|| new_pod(plan, churn, &prefix, &taken));
    let Workload::Deployment(d) = &mut plan.namespaces[n as usize].apps[a as usize].workload else {
        unreachable!("picked a Deployment")
    };
    d.replicas = if up { d.replicas + 1 } else { d.replicas - 1 };
    d.meta.generation += 1;
    let current = d.sets.last_mut().expect("current ReplicaSet");
    current.desired = d.replicas;
    current.meta.generation += 1;
    match new_pod {
        Some(pod) => current.pods.push(pod),
        None => {
            current.pods.pop();
        }
    }
    ev.apply(Ref::App(n, a, Part::Workload));
    ev.apply(Ref::App(n, a, Part::ReplicaSet(r)));
    match removed {
        Some(event) => ev.delete(event),
        None => ev.apply(Ref::App(n, a, Part::RsPod(r, last_pod))),
    }
    for (on, part) in [
        (has_service, Part::Slice),
        (has_hpa, Part::Hpa),
        (has_pdb, Part::Pdb),
    ] {
        if on {
            ev.apply(Ref::App(n, a, part));
        }
    }
    true
}

/// A completed rollout: a new revision with fresh Pods, the previous one scaled to zero and the
/// oldest beyond the kept history deleted.
fn rollout(ev: &mut Events, churn: &mut Churn) -> bool {
    let Some((n, a)) = churn.pick(|t| &t.rollable) else {
        return false;
    };
    let plan = &mut *ev.plan;
    let ns_name = plan.namespaces[n as usize].name.clone();
    let app = &plan.namespaces[n as usize].apps[a as usize];
    let Some(d) = app.deployment() else {
        return false;
    };
    let (name, has_service, has_pdb) = (app.name.clone(), app.service.is_some(), app.pdb.is_some());
    let prev = (d.sets.len() - 1) as u32;
    let old_pods: Vec<DemoEvent> = (0..d.sets[prev as usize].pods.len() as u32)
        .map(|p| deletion(plan, n, a, Part::RsPod(prev, p)))
        .collect();
    let pruned = (d.sets.len() > OLD_REVISIONS).then(|| deletion(plan, n, a, Part::ReplicaSet(0)));
    let (replicas, revision, version) = {
        let last = d.sets.last().expect("current ReplicaSet");
        (d.replicas, last.revision + 1, last.version + 1)
    };
    let mut rs = ReplicaSet {
        meta: plan.fresh(),
        revision,
        hash: template_hash(plan.salt, &ns_name, &name, revision),
        desired: replicas,
        version,
        pods: Vec::new(),
    };
    let prefix = format!("{name}-{}", rs.hash);
    for _ in 0..replicas {
        let taken: Vec<String> = rs.pods.iter().map(|p| p.name.clone()).collect();
        let pod = new_pod(plan, churn, &prefix, &taken);
        rs.pods.push(pod);
    }
    let Workload::Deployment(d) = &mut plan.namespaces[n as usize].apps[a as usize].workload else {
        unreachable!("picked a Deployment")
    };
    d.meta.generation += 1;
    let old = d.sets.last_mut().expect("current ReplicaSet");
    old.pods.clear();
    old.meta.generation += 1;
    d.sets.push(rs);
    if pruned.is_some() {
        d.sets.remove(0);
    }
    let current = (d.sets.len() - 1) as u32;
    ev.apply(Ref::App(n, a, Part::Workload));
    ev.apply(Ref::App(n, a, Part::ReplicaSet(current)));
    for p in 0..replicas {
        ev.apply(Ref::App(n, a, Part::RsPod(current, p)));
    }
    for event in old_pods {
        ev.delete(event);
    }
    ev.apply(Ref::App(n, a, Part::ReplicaSet(current - 1)));
    if let Some(event) = pruned {
        ev.delete(event);
    }
    for (on, part) in [(has_service, Part::Slice), (has_pdb, Part::Pdb)] {
        if on {
            ev.apply(Ref::App(n, a, part));
        }
    }
    true
}

/// A StatefulSet Pod deleted and recreated by its controller: same name, new uid and IP.
fn recreate(ev: &mut Events, churn: &mut Churn) -> bool {
    let Some((n, a)) = churn.pick(|t| &t.stateful) else {
        return false;
    };
    let plan = &mut *ev.plan;
    let app = &plan.namespaces[n as usize].apps[a as usize];
    let Workload::StatefulSet(s) = &app.workload else {
        return false;
    };
    let i = churn.rng.random_range(0..s.pods.len()) as u32;
    let has_service = app.service.is_some();
    let gone = deletion(plan, n, a, Part::Pod(i));
    let meta = plan.fresh();
    let serial = plan.next_serial();
    let node = churn.node(plan.nodes.len());
    let Workload::StatefulSet(s) = &mut plan.namespaces[n as usize].apps[a as usize].workload
    else {
        unreachable!("picked a StatefulSet")
    };
    let pod = &mut s.pods[i as usize];
    *pod = Pod {
        meta,
        name: pod.name.clone(),
        node,
        serial,
        restarts: 0,
        state: PodState::Running,
    };
    ev.delete(gone);
    ev.apply(Ref::App(n, a, Part::Pod(i)));
    // The StatefulSet's status counts ready Pods, and the replaced Pod may have been crashing.
    ev.apply(Ref::App(n, a, Part::Workload));
    if has_service {
        ev.apply(Ref::App(n, a, Part::Slice));
    }
    true
}

/// A CronJob fires: a new completed Job and Pod, and the oldest run beyond the history goes.
fn cron_run(ev: &mut Events, churn: &mut Churn) -> bool {
    let Some((n, a)) = churn.pick(|t| &t.crons) else {
        return false;
    };
    let plan = &mut *ev.plan;
    let app = &plan.namespaces[n as usize].apps[a as usize];
    let Workload::CronJob(c) = &app.workload else {
        return false;
    };
    let minute = c.runs.last().map_or(plan.now / 60, |r| r.minute) + c.period_min;
    let job = format!("{}-{minute}", app.name);
    let pruned = (c.runs.len() >= JOB_HISTORY).then(|| {
        (
            deletion(plan, n, a, Part::JobPod(0)),
            deletion(plan, n, a, Part::Job(0)),
        )
    });
    let meta = plan.fresh();
    let serial = plan.next_serial();
    let pod_name = format!("{job}-{}", suffix(plan.salt ^ u64::from(serial), 5));
    let node = churn.node(plan.nodes.len());
    let pod = Pod {
        meta: plan.fresh(),
        name: pod_name,
        node,
        serial,
        restarts: 0,
        state: PodState::Succeeded,
    };
    let Workload::CronJob(c) = &mut plan.namespaces[n as usize].apps[a as usize].workload else {
        unreachable!("picked a CronJob")
    };
    c.runs.push(Run { meta, minute, pod });
    if pruned.is_some() {
        c.runs.remove(0);
    }
    let i = (c.runs.len() - 1) as u32;
    ev.apply(Ref::App(n, a, Part::Job(i)));
    ev.apply(Ref::App(n, a, Part::JobPod(i)));
    ev.apply(Ref::App(n, a, Part::Workload));
    if let Some((pod, job)) = pruned {
        ev.delete(pod);
        ev.delete(job);
    }
    true
}

/// New ConfigMap content (an app's own or the shared one).
fn config_change(ev: &mut Events, churn: &mut Churn) -> bool {
    let list = &churn.targets.configs;
    if list.is_empty() {
        return false;
    }
    let (n, app, i) = list[churn.rng.random_range(0..list.len())];
    let ns = &mut ev.plan.namespaces[n as usize];
    match app {
        Some(a) => {
            if let Some(c) = ns.apps[a as usize].config.as_mut() {
                c.version += 1;
            }
            ev.apply(Ref::App(n, a, Part::Config));
        }
        None => {
            ns.objects[i as usize].version += 1;
            ev.apply(Ref::NsObj(n, i));
        }
    }
    true
}

/// A Service switches selector; one of the variants matches no Pod, emptying its EndpointSlice.
fn selector_change(ev: &mut Events, churn: &mut Churn) -> bool {
    let Some((n, a)) = churn.pick(|t| &t.services) else {
        return false;
    };
    let next = |variant: u8, rng: &mut ChaCha8Rng| match variant {
        0 if rng.random_bool(0.3) => 2,
        0 => 1,
        _ => 0,
    };
    let app = &mut ev.plan.namespaces[n as usize].apps[a as usize];
    let Some(s) = app.service.as_mut() else {
        return false;
    };
    s.variant = next(s.variant, &mut churn.rng);
    ev.apply(Ref::App(n, a, Part::Service));
    ev.apply(Ref::App(n, a, Part::Slice));
    true
}

/// The autoscaler observes a new CPU utilisation.
fn hpa_change(ev: &mut Events, churn: &mut Churn) -> bool {
    let Some((n, a)) = churn.pick(|t| &t.hpas) else {
        return false;
    };
    let app = &mut ev.plan.namespaces[n as usize].apps[a as usize];
    let Some(h) = app.hpa.as_mut() else {
        return false;
    };
    let cpu = churn.rng.random_range(15..95);
    h.cpu = if cpu == h.cpu { cpu + 1 } else { cpu };
    ev.apply(Ref::App(n, a, Part::Hpa));
    true
}

/// A Node's Ready condition flips; Nodes that went down usually come back first.
fn node_flip(ev: &mut Events, churn: &mut Churn) {
    let nodes = ev.plan.nodes.len();
    let i = if !churn.down.is_empty() && churn.rng.random_bool(0.7) {
        let k = churn.rng.random_range(0..churn.down.len());
        churn.down.swap_remove(k)
    } else {
        let i = churn.node(nodes);
        if let Some(k) = churn.down.iter().position(|&d| d == i) {
            churn.down.swap_remove(k);
        }
        i
    };
    let now = ev.plan.now;
    let node = &mut ev.plan.nodes[i as usize];
    node.ready = !node.ready;
    node.transition = now;
    if !node.ready {
        churn.down.push(i);
    }
    ev.apply(Ref::Node(i));
}
