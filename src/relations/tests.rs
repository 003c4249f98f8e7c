//! Every status rule of `relationships.md`, and "what is never kept".

use serde_json::{Value, json};

use super::*;
use crate::model::{Kind, Status};

fn project(v: Value) -> crate::model::Object {
    Projector::default().project(&v).expect("projects")
}

fn status_of(v: Value) -> (Status, String) {
    let o = project(v);
    (o.status, o.message.to_string())
}

fn obj(api: &str, kind: &str, extra: Value) -> Value {
    let mut v =
        json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x", "namespace": "ns"}});
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        for (k, val) in e {
            if k == "metadata" {
                for (mk, mv) in val.as_object().unwrap() {
                    m.get_mut("metadata").unwrap()[mk] = mv.clone();
                }
            } else {
                m.insert(k, val);
            }
        }
    }
    v
}

fn pod(status: Value) -> Value {
    obj(
        "v1",
        "Pod",
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}, "status": status}),
    )
}

#[test]
fn pod_rules_in_order() {
    use Status::*;
    let ready2 = json!([{"name": "a", "ready": true}, {"name": "b", "ready": true}]);
    let mut terminating = pod(json!({"phase": "Running", "containerStatuses": ready2}));
    terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(status_of(terminating), (Pending, "Terminating".into()));
    assert_eq!(
        status_of(pod(json!({"phase": "Succeeded"}))),
        (Ready, "Succeeded".into())
    );
    assert_eq!(
        status_of(pod(json!({"phase": "Failed", "reason": "Evicted"}))),
        (Error, "Evicted".into())
    );
    assert_eq!(
        status_of(pod(json!({"phase": "Failed"}))),
        (Error, "Failed".into())
    );
    for reason in [
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "CreateContainerConfigError",
    ] {
        for phase in ["Running", "Pending"] {
            let s = json!({"phase": phase, "containerStatuses": [{"name": "a", "ready": false, "state": {"waiting": {"reason": reason}}}]});
            assert_eq!(
                status_of(pod(s)),
                (Error, reason.into()),
                "{reason} in {phase}"
            );
        }
        let init = json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"waiting": {"reason": reason}}}]});
        assert_eq!(status_of(pod(init)), (Error, reason.into()));
    }
    let creating = json!({"phase": "Pending", "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    assert_eq!(
        status_of(pod(creating)),
        (Pending, "ContainerCreating".into())
    );
    let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
    assert_eq!(
        status_of(pod(unschedulable)),
        (Pending, "Unschedulable".into())
    );
    assert_eq!(
        status_of(pod(json!({"phase": "Pending"}))),
        (Pending, "Pending".into())
    );
    assert_eq!(
        status_of(pod(
            json!({"phase": "Running", "containerStatuses": ready2})
        )),
        (Ready, "Running".into())
    );
    let half = json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": true}, {"name": "b", "ready": false}]});
    assert_eq!(status_of(pod(half)), (Pending, "not ready".into()));
    assert_eq!(
        status_of(pod(json!({"phase": "Running"}))),
        (Pending, "not ready".into())
    );
    assert_eq!(status_of(pod(json!({"phase": "Unknown"}))).0, Unknown);
    assert_eq!(status_of(pod(json!({}))).0, Unknown);
}

fn workload(kind: &str, spec: Value, status: Value) -> Value {
    obj("apps/v1", kind, json!({"spec": spec, "status": status}))
}

#[test]
fn deployment_and_statefulset_rules_in_order() {
    use Status::*;
    for kind in ["Deployment", "StatefulSet"] {
        let deadline = json!({"readyReplicas": 3, "updatedReplicas": 3, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
        assert_eq!(
            status_of(workload(kind, json!({"replicas": 3}), deadline)).0,
            Error
        );
        assert_eq!(
            status_of(workload(kind, json!({"replicas": 0}), json!({}))),
            (Ready, "scaled to zero".into())
        );
        let full = json!({"readyReplicas": 3, "updatedReplicas": 3});
        assert_eq!(
            status_of(workload(kind, json!({"replicas": 3}), full)),
            (Ready, "3/3 ready".into())
        );
        let stale = json!({"readyReplicas": 3, "updatedReplicas": 1});
        assert_eq!(
            status_of(workload(kind, json!({"replicas": 3}), stale)),
            (Pending, "3/3 ready".into())
        );
        assert_eq!(
            status_of(workload(kind, json!({"replicas": 3}), json!({}))),
            (Error, "0/3 ready".into())
        );
        let some = json!({"readyReplicas": 2, "updatedReplicas": 3});
        assert_eq!(
            status_of(workload(kind, json!({"replicas": 3}), some)),
            (Pending, "2/3 ready".into())
        );
        // Absent replicas means 1.
        let one = json!({"readyReplicas": 1, "updatedReplicas": 1});
        assert_eq!(
            status_of(workload(kind, json!({}), one)),
            (Ready, "1/1 ready".into())
        );
    }
}

#[test]
fn replicaset_ignores_updated_and_daemonset_reads_its_own_counters() {
    use Status::*;
    let rs = workload(
        "ReplicaSet",
        json!({"replicas": 2}),
        json!({"readyReplicas": 2}),
    );
    assert_eq!(status_of(rs), (Ready, "2/2 ready".into()));
    assert_eq!(
        status_of(workload("ReplicaSet", json!({"replicas": 0}), json!({}))).0,
        Ready
    );
    assert_eq!(
        status_of(workload("ReplicaSet", json!({"replicas": 2}), json!({}))).0,
        Error
    );
    let ds = |ready, updated| {
        workload(
            "DaemonSet",
            json!({}),
            json!({"desiredNumberScheduled": 4, "numberReady": ready, "updatedNumberScheduled": updated}),
        )
    };
    assert_eq!(status_of(ds(4, 4)), (Ready, "4/4 ready".into()));
    assert_eq!(status_of(ds(4, 2)).0, Pending);
    assert_eq!(status_of(ds(2, 4)), (Pending, "2/4 ready".into()));
    assert_eq!(status_of(ds(0, 0)).0, Error);
    assert_eq!(
        status_of(workload(
            "DaemonSet",
            json!({}),
            json!({"desiredNumberScheduled": 0})
        ))
        .0,
        Ready
    );
}

#[test]
fn job_and_cronjob_rules() {
    use Status::*;
    let job = |conds: Value| obj("batch/v1", "Job", json!({"status": {"conditions": conds}}));
    assert_eq!(
        status_of(job(json!([{"type": "Complete", "status": "True"}]))),
        (Ready, "Complete".into())
    );
    assert_eq!(
        status_of(job(
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
        )),
        (Error, "BackoffLimitExceeded".into())
    );
    assert_eq!(
        status_of(job(json!([{"type": "Complete", "status": "False"}]))),
        (Pending, "running".into())
    );
    assert_eq!(status_of(job(json!([]))), (Pending, "running".into()));
    let cron = |spec: Value, status: Value| {
        obj(
            "batch/v1",
            "CronJob",
            json!({"spec": spec, "status": status}),
        )
    };
    assert_eq!(
        status_of(cron(json!({"suspend": true}), json!({}))),
        (Ready, "suspended".into())
    );
    assert_eq!(
        status_of(cron(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:00:00Z"})
        )),
        (Ready, "last scheduled 2026-01-01T00:00:00Z".into())
    );
    assert_eq!(
        status_of(cron(json!({}), json!({}))),
        (Ready, "never scheduled".into())
    );
}

#[test]
fn service_endpointslice_ingress_and_pdb_rules() {
    use Status::*;
    let svc = |ty: &str, lb: Value| {
        obj(
            "v1",
            "Service",
            json!({"spec": {"type": ty}, "status": {"loadBalancer": lb}}),
        )
    };
    assert_eq!(
        status_of(svc("LoadBalancer", json!({}))),
        (Pending, "waiting for load balancer".into())
    );
    assert_eq!(
        status_of(svc("LoadBalancer", json!({"ingress": [{"ip": "1.2.3.4"}]}))).0,
        Ready
    );
    assert_eq!(
        status_of(svc("ClusterIP", json!({}))),
        (Ready, "ClusterIP".into())
    );
    assert_eq!(
        status_of(obj("v1", "Service", json!({}))),
        (Ready, "ClusterIP".into())
    );

    let slice = |eps: Value| {
        obj(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            json!({"endpoints": eps}),
        )
    };
    let eps = json!([{"conditions": {"ready": true}}, {"conditions": {}}, {"conditions": {"ready": false}}]);
    assert_eq!(status_of(slice(eps)), (Ready, "2/3 ready".into()));
    assert_eq!(
        status_of(slice(json!([{"conditions": {"ready": false}}]))),
        (Pending, "0/1 ready".into())
    );
    assert_eq!(status_of(slice(json!([]))), (Pending, "0/0 ready".into()));

    let ing = |lb: Value| {
        obj(
            "networking.k8s.io/v1",
            "Ingress",
            json!({"status": {"loadBalancer": lb}}),
        )
    };
    assert_eq!(
        status_of(ing(json!({"ingress": [{"hostname": "x"}]}))).0,
        Ready
    );
    assert_eq!(
        status_of(ing(json!({}))),
        (Pending, "waiting for load balancer".into())
    );

    let pdb = |s: Value| obj("policy/v1", "PodDisruptionBudget", json!({"status": s}));
    assert_eq!(
        status_of(pdb(json!({"currentHealthy": 3, "desiredHealthy": 2}))),
        (Ready, "3/2 healthy".into())
    );
    assert_eq!(
        status_of(pdb(json!({"currentHealthy": 1, "desiredHealthy": 2}))).0,
        Pending
    );
    assert_eq!(status_of(pdb(json!({}))).0, Ready);
}

#[test]
fn node_volume_namespace_and_hpa_rules() {
    use Status::*;
    let node = |cond: Value, unsched: bool| {
        obj(
            "v1",
            "Node",
            json!({"spec": {"unschedulable": unsched}, "status": {"conditions": cond}}),
        )
    };
    assert_eq!(
        status_of(node(json!([{"type": "Ready", "status": "True"}]), false)),
        (Ready, "Ready".into())
    );
    assert_eq!(
        status_of(node(json!([{"type": "Ready", "status": "True"}]), true)),
        (Ready, "Ready, cordoned".into())
    );
    assert_eq!(
        status_of(node(
            json!([{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]),
            false
        ))
        .0,
        Error
    );
    assert_eq!(
        status_of(node(json!([{"type": "Ready", "status": "Unknown"}]), false)).0,
        Unknown
    );
    assert_eq!(
        status_of(node(json!([]), true)),
        (Unknown, "no Ready condition, cordoned".into())
    );

    let phase = |api: &str, kind: &str, p: &str| obj(api, kind, json!({"status": {"phase": p}}));
    for (p, st) in [
        ("Bound", Ready),
        ("Pending", Pending),
        ("Lost", Error),
        ("Weird", Unknown),
    ] {
        assert_eq!(
            status_of(phase("v1", "PersistentVolumeClaim", p)).0,
            st,
            "PVC {p}"
        );
    }
    for (p, st) in [
        ("Bound", Ready),
        ("Available", Ready),
        ("Released", Pending),
        ("Failed", Error),
        ("Weird", Unknown),
    ] {
        assert_eq!(
            status_of(phase("v1", "PersistentVolume", p)).0,
            st,
            "PV {p}"
        );
    }
    for (p, st) in [("Active", Ready), ("Terminating", Pending)] {
        assert_eq!(
            status_of(phase("v1", "Namespace", p)).0,
            st,
            "Namespace {p}"
        );
    }

    let hpa = |conds: Value| {
        obj(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            json!({"status": {"currentReplicas": 2, "desiredReplicas": 3, "conditions": conds}}),
        )
    };
    assert_eq!(
        status_of(hpa(
            json!([{"type": "ScalingActive", "status": "True"}, {"type": "AbleToScale", "status": "True"}])
        )),
        (Ready, "2/3 replicas".into())
    );
    assert_eq!(status_of(hpa(json!([{"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric"}]))).0, Error);
    assert_eq!(
        status_of(hpa(json!([{"type": "AbleToScale", "status": "False"}]))).0,
        Error
    );
}

#[test]
fn statusless_and_other_kinds() {
    use Status::*;
    for (api, kind) in [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("networking.k8s.io/v1", "IngressClass"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ] {
        assert_eq!(
            status_of(obj(api, kind, json!({"status": {"weird": 1}}))),
            (Ready, "exists".into()),
            "{kind}"
        );
    }
    let other = |status: Value| obj("example.com/v1", "Widget", json!({"status": status}));
    assert_eq!(
        status_of(other(
            json!({"conditions": [{"type": "Ready", "status": "True"}]})
        ))
        .0,
        Ready
    );
    assert_eq!(
        status_of(other(
            json!({"conditions": [{"type": "Ready", "status": "False"}]})
        ))
        .0,
        Error
    );
    assert_eq!(
        status_of(other(
            json!({"conditions": [{"type": "Ready", "status": "Unknown"}]})
        ))
        .0,
        Unknown
    );
    assert_eq!(status_of(other(json!({}))), (Ready, "exists".into()));
    assert_eq!(
        status_of(obj("rbac.authorization.k8s.io/v1", "Role", json!({}))),
        (Ready, "exists".into())
    );
    assert_eq!(status_of(other(json!({"phase": "Running"}))).0, Unknown);
}

#[test]
fn helm_release_status_from_the_newest_record() {
    use crate::model::{Atom, HelmRecord};
    let rec = |s: &str| HelmRecord {
        release: Atom::new("r"),
        version: 7,
        status: Atom::new(s),
    };
    let cases = [
        ("deployed", Status::Ready),
        ("failed", Status::Error),
        ("pending-install", Status::Pending),
        ("pending-upgrade", Status::Pending),
        ("pending-rollback", Status::Pending),
        ("superseded", Status::Unknown),
        ("uninstalling", Status::Unknown),
    ];
    for (label, st) in cases {
        assert_eq!(release_status(Some(&rec(label))).0, st, "{label}");
    }
    assert_eq!(
        release_status(None),
        (Status::Unknown, "no release record".into())
    );
}

/// Serialises a projection and checks none of the secrets of the source object appear.
fn assert_clean(o: &crate::model::Object, secrets: &[&str]) {
    let text = serde_json::to_string(o).unwrap() + &format!("{o:?}");
    for s in secrets {
        assert!(!text.contains(s), "{s:?} survived into {text}");
    }
    assert!(!text.contains("managedFields") && !text.contains("last-applied-configuration"));
}

#[test]
fn secret_and_configmap_data_managed_fields_and_last_applied_never_survive() {
    let managed = json!([{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:data": {"f:password": {}}}}]);
    let last_applied = r#"{"apiVersion":"v1","data":{"password":"aHVudGVyMg=="},"kind":"Secret"}"#;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db", "namespace": "ns", "managedFields": managed,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied, "note": "SECRET-NOTE"}},
        "data": {"password": "aHVudGVyMg=="},
        "stringData": {"token": "plain-token-value"}
    });
    let o = project(secret);
    assert_clean(
        &o,
        &[
            "aHVudGVyMg==",
            "plain-token-value",
            "SECRET-NOTE",
            "hunter2",
        ],
    );
    assert!(o.annotations.is_empty());

    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "ns", "managedFields": managed},
        "data": {"app.properties": "db.password=CM-SECRET"},
        "binaryData": {"blob": "QklOQVJZLVNFQ1JFVA=="}
    });
    assert_clean(&project(cm), &["CM-SECRET", "QklOQVJZLVNFQ1JFVA=="]);

    // Even an allow-list that names it cannot keep last-applied-configuration.
    let p = Projector::new(["kubectl.kubernetes.io/*", "team.example.com/owner"]);
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": last_applied,
            "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z",
            "team.example.com/owner": "payments",
            "other.example.com/x": "dropped"}}});
    let o = p.project(&dep).unwrap();
    let kept: Vec<&str> = o.annotations.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kept,
        [
            "kubectl.kubernetes.io/restartedAt",
            "team.example.com/owner"
        ]
    );
    assert_clean(&o, &["aHVudGVyMg=="]);
}

#[test]
fn helm_release_secrets_are_read_from_labels_only() {
    let rec = json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.web.v3", "namespace": "ns",
            "labels": {"owner": "helm", "name": "web", "status": "deployed", "version": "3"}},
        "data": {"release": "H4sIAAAAAAAC/RELEASE-PAYLOAD"}});
    let o = project(rec);
    assert_clean(&o, &["RELEASE-PAYLOAD"]);
    match &o.spec {
        crate::model::Spec::Secret(s) => {
            let r = s.helm_record.as_ref().expect("a release record");
            assert_eq!(
                (r.release.as_str(), r.version, r.status.as_str()),
                ("web", 3, "deployed")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_objects_are_precise_errors() {
    let p = Projector::default();
    assert_eq!(p.project(&json!([1])), Err(ProjectError::NotAnObject));
    assert_eq!(
        p.project(&json!({"kind": "Pod", "metadata": {"name": "a"}})),
        Err(ProjectError::Missing("apiVersion"))
    );
    assert_eq!(
        p.project(&json!({"apiVersion": "v1", "metadata": {"name": "a"}})),
        Err(ProjectError::Missing("kind"))
    );
    assert_eq!(
        p.project(&json!({"apiVersion": "v1", "kind": "Pod"})),
        Err(ProjectError::Missing("metadata"))
    );
    assert_eq!(
        p.project(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}})),
        Err(ProjectError::Missing("metadata.name"))
    );
    assert_eq!(
        p.project(&json!({"apiVersion": 1, "kind": "Pod", "metadata": {"name": "a"}})),
        Err(ProjectError::NotAString("apiVersion"))
    );
    assert_eq!(
        p.project(
            &json!({"apiVersion": "helm.sh/v1", "kind": "HelmRelease", "metadata": {"name": "a"}})
        ),
        Err(ProjectError::ReservedKind)
    );
}

#[test]
fn identity_scope_and_fields() {
    // Built-in namespaced kinds without a namespace get the default one; cluster-scoped kinds
    // ignore a namespace; unknown kinds keep what they say.
    let o = project(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}));
    assert_eq!(o.namespace.as_str(), "default");
    let o = project(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "x"}}),
    );
    assert_eq!(o.namespace.as_str(), "");
    let o = project(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}),
    );
    assert_eq!(
        (o.namespace.as_str(), &o.kind),
        (
            "",
            &Kind::from_group("rbac.authorization.k8s.io", "ClusterRole")
        )
    );
    // Without a uid, the uid is derived from the identity, so reloading a manifest is stable.
    let a = project(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}}),
    );
    let b = project(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n", "labels": {"x": "y"}}}),
    );
    assert_eq!(a.uid, b.uid);
    // Labels written as numbers or booleans in a hand-made manifest are read as text.
    let o = project(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"v": 2, "b": true}}}),
    );
    assert_eq!(o.labels.get_str("v").map(|a| a.as_str()), Some("2"));
    assert_eq!(o.labels.get_str("b").map(|a| a.as_str()), Some("true"));
}
