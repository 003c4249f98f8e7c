//! The status rules of `relationships.md`: each object's `Status` and one-line message, computed
//! from the object alone, in the order the catalogue gives.

use compact_str::{CompactString, format_compact};
use serde_json::Value;

use super::json::{at, condition, flag_at, list_at, str_at, u32_at};
use crate::model::{HelmRecord, Kind, Replicas, Status};

/// Waiting reasons that make a Pod an Error whatever its phase.
const FATAL_WAITING: [&str; 4] = [
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
];

type Verdict = (Status, CompactString);

fn v(status: Status, msg: &str) -> Verdict {
    (status, CompactString::from(msg))
}

/// The status of an object of `kind`; `replicas` are the workload counters already read.
pub(crate) fn status(kind: &Kind, obj: &Value, replicas: Option<&Replicas>) -> Verdict {
    match kind {
        Kind::Pod => pod(obj),
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => {
            workload(obj, replicas.copied().unwrap_or_default(), true)
        }
        Kind::ReplicaSet => workload(obj, replicas.copied().unwrap_or_default(), false),
        Kind::Job => job(obj),
        Kind::CronJob => cron_job(obj),
        Kind::Service => service(obj),
        Kind::EndpointSlice => endpoint_slice(obj),
        Kind::Ingress => match list_at(obj, &["status", "loadBalancer", "ingress"]).is_empty() {
            false => v(Status::Ready, "load balancer ready"),
            true => v(Status::Pending, "waiting for load balancer"),
        },
        Kind::PodDisruptionBudget => {
            let current = u32_at(obj, &["status", "currentHealthy"]).unwrap_or(0);
            let desired = u32_at(obj, &["status", "desiredHealthy"]).unwrap_or(0);
            let msg = format_compact!("{current}/{desired} healthy");
            let st = if current >= desired {
                Status::Ready
            } else {
                Status::Pending
            };
            (st, msg)
        }
        Kind::Node => node(obj),
        Kind::PersistentVolumeClaim => match str_at(obj, &["status", "phase"]) {
            Some("Bound") => v(Status::Ready, "Bound"),
            Some("Pending") => v(Status::Pending, "Pending"),
            Some("Lost") => v(Status::Error, "Lost"),
            other => unknown_phase(other),
        },
        Kind::PersistentVolume => match str_at(obj, &["status", "phase"]) {
            Some(p @ ("Bound" | "Available")) => v(Status::Ready, p),
            Some("Released") => v(Status::Pending, "Released"),
            Some("Failed") => v(Status::Error, "Failed"),
            other => unknown_phase(other),
        },
        Kind::Namespace => match str_at(obj, &["status", "phase"]) {
            Some("Active") => v(Status::Ready, "Active"),
            Some("Terminating") => v(Status::Pending, "Terminating"),
            other => unknown_phase(other),
        },
        Kind::HorizontalPodAutoscaler => hpa(obj),
        // A HelmRelease object from a source is a custom resource (e.g. Flux's); the synthetic
        // release nodes get their status from `release_status`.
        k if k.is_statusless() => v(Status::Ready, "exists"),
        _ => other_kind(obj),
    }
}

fn unknown_phase(phase: Option<&str>) -> Verdict {
    match phase {
        Some(p) => (Status::Unknown, format_compact!("phase {p}")),
        None => v(Status::Unknown, "no phase"),
    }
}

fn pod(obj: &Value) -> Verdict {
    if at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        return v(Status::Pending, "Terminating");
    }
    let phase = str_at(obj, &["status", "phase"]);
    match phase {
        Some("Succeeded") => return v(Status::Ready, "Succeeded"),
        Some("Failed") => {
            let reason = str_at(obj, &["status", "reason"]).unwrap_or("Failed");
            return v(Status::Error, reason);
        }
        _ => {}
    }
    let statuses = || {
        list_at(obj, &["status", "initContainerStatuses"])
            .iter()
            .chain(list_at(obj, &["status", "containerStatuses"]))
    };
    fn waiting(s: &Value) -> Option<&str> {
        str_at(s, &["state", "waiting", "reason"])
    }
    if let Some(reason) = statuses()
        .filter_map(waiting)
        .find(|r| FATAL_WAITING.contains(r))
    {
        return v(Status::Error, reason);
    }
    match phase {
        Some("Pending") => {
            let msg = statuses()
                .filter_map(waiting)
                .next()
                .or_else(|| {
                    condition(obj, "PodScheduled")
                        .filter(|c| c.status == "False")
                        .map(|c| c.reason)
                        .filter(|r| !r.is_empty())
                })
                .unwrap_or("Pending");
            v(Status::Pending, msg)
        }
        Some("Running") => {
            let containers = list_at(obj, &["spec", "containers"]).len();
            let ready = list_at(obj, &["status", "containerStatuses"])
                .iter()
                .filter(|s| flag_at(s, &["ready"]))
                .count();
            if ready >= containers.max(1) {
                v(Status::Ready, "Running")
            } else {
                v(Status::Pending, "not ready")
            }
        }
        Some(other) => (Status::Unknown, format_compact!("phase {other}")),
        None => v(Status::Unknown, "no phase"),
    }
}

/// Deployment, StatefulSet and DaemonSet (`check_updated`), ReplicaSet (not).
fn workload(obj: &Value, r: Replicas, check_updated: bool) -> Verdict {
    if condition(obj, "Progressing")
        .is_some_and(|c| c.status == "False" && c.reason == "ProgressDeadlineExceeded")
    {
        return v(Status::Error, "ProgressDeadlineExceeded");
    }
    if r.desired == 0 {
        return v(Status::Ready, "scaled to zero");
    }
    let msg = format_compact!("{}/{} ready", r.ready, r.desired);
    if r.ready == r.desired && (!check_updated || r.updated == r.desired) {
        (Status::Ready, msg)
    } else if r.ready == 0 {
        (Status::Error, msg)
    } else {
        (Status::Pending, msg)
    }
}

fn job(obj: &Value) -> Verdict {
    let holds = |t: &str| condition(obj, t).is_some_and(|c| c.status == "True");
    if holds("Complete") {
        v(Status::Ready, "Complete")
    } else if holds("Failed") {
        let reason = condition(obj, "Failed")
            .map(|c| c.reason)
            .filter(|r| !r.is_empty())
            .unwrap_or("Failed");
        v(Status::Error, reason)
    } else {
        v(Status::Pending, "running")
    }
}

fn cron_job(obj: &Value) -> Verdict {
    if flag_at(obj, &["spec", "suspend"]) {
        return v(Status::Ready, "suspended");
    }
    match str_at(obj, &["status", "lastScheduleTime"]) {
        Some(t) => (Status::Ready, format_compact!("last scheduled {t}")),
        None => v(Status::Ready, "never scheduled"),
    }
}

fn service(obj: &Value) -> Verdict {
    let ty = str_at(obj, &["spec", "type"]).unwrap_or("ClusterIP");
    if ty == "LoadBalancer" && list_at(obj, &["status", "loadBalancer", "ingress"]).is_empty() {
        v(Status::Pending, "waiting for load balancer")
    } else {
        v(Status::Ready, ty)
    }
}

fn endpoint_slice(obj: &Value) -> Verdict {
    let endpoints = list_at(obj, &["endpoints"]);
    let ready = endpoints
        .iter()
        .filter(|e| at(e, &["conditions", "ready"]).and_then(Value::as_bool) != Some(false))
        .count();
    let msg = format_compact!("{ready}/{} ready", endpoints.len());
    let st = if ready > 0 {
        Status::Ready
    } else {
        Status::Pending
    };
    (st, msg)
}

/// A `Ready` condition read the way Nodes (and any kind with one) are.
fn ready_condition(obj: &Value) -> Option<Verdict> {
    let c = condition(obj, "Ready")?;
    Some(match c.status {
        "True" => v(Status::Ready, "Ready"),
        "False" => (
            Status::Error,
            if c.reason.is_empty() {
                "NotReady".into()
            } else {
                format_compact!("NotReady: {}", c.reason)
            },
        ),
        _ => v(Status::Unknown, "Ready condition Unknown"),
    })
}

fn node(obj: &Value) -> Verdict {
    let (st, mut msg) =
        ready_condition(obj).unwrap_or_else(|| v(Status::Unknown, "no Ready condition"));
    if flag_at(obj, &["spec", "unschedulable"]) {
        msg.push_str(", cordoned");
    }
    (st, msg)
}

fn hpa(obj: &Value) -> Verdict {
    for t in ["ScalingActive", "AbleToScale"] {
        if let Some(c) = condition(obj, t).filter(|c| c.status == "False") {
            let reason = if c.reason.is_empty() { t } else { c.reason };
            return (Status::Error, format_compact!("{t}=False: {reason}"));
        }
    }
    let current = u32_at(obj, &["status", "currentReplicas"]).unwrap_or(0);
    let desired = u32_at(obj, &["status", "desiredReplicas"]).unwrap_or(0);
    (
        Status::Ready,
        format_compact!("{current}/{desired} replicas"),
    )
}

fn other_kind(obj: &Value) -> Verdict {
    if let Some(verdict) = ready_condition(obj) {
        return verdict;
    }
    match obj.get("status") {
        None | Some(Value::Null) => v(Status::Ready, "exists"),
        Some(Value::Object(m)) if m.is_empty() => v(Status::Ready, "exists"),
        Some(_) => v(Status::Unknown, "no Ready condition"),
    }
}

/// The status of a Helm release from its newest release record.
pub fn release_status(newest: Option<&HelmRecord>) -> (Status, CompactString) {
    let Some(record) = newest else {
        return v(Status::Unknown, "no release record");
    };
    let st = match record.status.as_str() {
        "deployed" => Status::Ready,
        "failed" => Status::Error,
        "pending-install" | "pending-upgrade" | "pending-rollback" => Status::Pending,
        _ => Status::Unknown,
    };
    (
        st,
        format_compact!("revision {} {}", record.version, record.status),
    )
}
