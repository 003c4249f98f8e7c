//! From a Kubernetes object (as JSON) to its [`Object`] projection.
//!
//! This is where "what is never kept" is enforced: the projection copies named fields only, so
//! Secret and ConfigMap data, managedFields and any annotation outside the allow-list never leave
//! this function.

use std::collections::BTreeSet;

use compact_str::CompactString;
use serde_json::{Map, Value};
use thiserror::Error;

use super::json::{at, list_at, nonempty_at, scalar_text, str_at, u32_at};
use super::status::status;
use crate::model::{
    Atom, ClaimRef, EndpointSliceInfo, HelmRecord, HpaInfo, IngressInfo, Kind, Labels, Object,
    ObjectKey, OwnerRef, PodInfo, PodTarget, PodUses, Release, ReleaseKey, Replicas, SecretInfo,
    Selector, SelectorInfo, ServiceInfo, Spec, Time, Uid, VolumeInfo, WorkloadInfo,
};

/// Annotations kept by default: the ones the rules read, and a few that help an operator.
pub const DEFAULT_ANNOTATIONS: &[&str] = &[
    "meta.helm.sh/release-name",
    "meta.helm.sh/release-namespace",
    "deployment.kubernetes.io/revision",
    "kubernetes.io/ingress.class",
    "volume.beta.kubernetes.io/storage-class",
    "storageclass.kubernetes.io/is-default-class",
    "ingressclass.kubernetes.io/is-default-class",
];

/// Annotations that are never kept, whatever the allow-list says: they can carry a Secret's data
/// in clear.
const FORBIDDEN_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";
const HELM_RECORD_TYPE: &str = "helm.sh/release.v1";

/// Why an object could not be projected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProjectError {
    /// The document is not a JSON/YAML mapping.
    #[error("not an object (expected a mapping with apiVersion, kind and metadata)")]
    NotAnObject,
    /// A required field is missing or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A required field has the wrong type.
    #[error("{0} is not a string")]
    NotAString(&'static str),
    /// The kind is the one the service uses for its own release nodes.
    #[error("helm.sh/HelmRelease is reserved for the release nodes the service derives itself")]
    ReservedKind,
}

/// Turns objects into projections. Holds the configuration that shapes them.
#[derive(Clone, Debug)]
pub struct Projector {
    annotations: BTreeSet<String>,
    annotation_prefixes: Vec<String>,
    default_namespace: Atom,
}

impl Default for Projector {
    fn default() -> Self {
        Projector::new(std::iter::empty::<&str>())
    }
}

impl Projector {
    /// A projector keeping [`DEFAULT_ANNOTATIONS`] plus `extra` annotations (an entry ending in
    /// `*` keeps every annotation with that prefix).
    pub fn new<S: AsRef<str>>(extra: impl IntoIterator<Item = S>) -> Projector {
        let mut annotations: BTreeSet<String> =
            DEFAULT_ANNOTATIONS.iter().map(|s| s.to_string()).collect();
        let mut annotation_prefixes = Vec::new();
        for a in extra {
            let a = a.as_ref();
            match a.strip_suffix('*') {
                Some(prefix) => annotation_prefixes.push(prefix.to_string()),
                None => {
                    annotations.insert(a.to_string());
                }
            }
        }
        Projector {
            annotations,
            annotation_prefixes,
            default_namespace: Atom::new("default"),
        }
    }

    /// Sets the namespace given to namespaced objects of built-in kinds that name none (as
    /// `kubectl apply` would with its default context).
    pub fn with_default_namespace(mut self, namespace: &str) -> Projector {
        self.default_namespace = Atom::new(namespace);
        self
    }

    fn keeps_annotation(&self, key: &str) -> bool {
        !FORBIDDEN_ANNOTATIONS.contains(&key)
            && (self.annotations.contains(key)
                || self
                    .annotation_prefixes
                    .iter()
                    .any(|p| key.starts_with(p.as_str())))
    }

    /// The identity an object with these fields gets: its kind (legacy groups mapped), and its
    /// namespace ("" for cluster-scoped built-in kinds whatever the object says, the default
    /// namespace for namespaced built-in kinds that name none). Deletes from a source use it so
    /// that they name exactly what `project` indexed.
    pub fn key_of(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<ObjectKey, ProjectError> {
        let kind = Kind::from_api_version(api_version, kind);
        if kind == Kind::HelmRelease {
            return Err(ProjectError::ReservedKind);
        }
        let namespace = match (kind.builtin_cluster_scoped(), namespace) {
            (Some(true), _) => Atom::empty(),
            (Some(false), "") => self.default_namespace.clone(),
            (_, ns) => Atom::new(ns),
        };
        Ok(ObjectKey {
            kind,
            namespace,
            name: name.into(),
        })
    }

    /// The projection of `obj`.
    pub fn project(&self, obj: &Value) -> Result<Object, ProjectError> {
        let map = obj.as_object().ok_or(ProjectError::NotAnObject)?;
        let api_version = required_str(map, "apiVersion")?;
        let kind_name = required_str(map, "kind")?;
        let meta = match map.get("metadata") {
            Some(m @ Value::Object(_)) => m,
            _ => return Err(ProjectError::Missing("metadata")),
        };
        let name = match meta.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(ProjectError::Missing("metadata.name"));
            }
            Some(_) => return Err(ProjectError::NotAString("metadata.name")),
        };
        let ObjectKey {
            kind, namespace, ..
        } = self.key_of(
            api_version,
            kind_name,
            str_at(meta, &["namespace"]).unwrap_or(""),
            name,
        )?;
        let uid = match nonempty_at(meta, &["uid"]) {
            Some(u) => Uid::parse(u),
            None => Uid::synthetic(&[kind.group(), kind.name(), &namespace, name]),
        };
        let labels = labels_of(meta.get("labels"));
        let annotations_all = meta.get("annotations").and_then(Value::as_object);
        let annotation = |k: &str| {
            annotations_all
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        let mut annotations: Vec<(Atom, Box<str>)> = annotations_all
            .into_iter()
            .flatten()
            .filter(|(k, _)| self.keeps_annotation(k))
            .filter_map(|(k, v)| Some((Atom::new(k), scalar_text(v)?.into())))
            .collect();
        annotations.sort_by(|a, b| a.0.cmp(&b.0));

        let owners = list_at(meta, &["ownerReferences"])
            .iter()
            .filter_map(|o| {
                Some(OwnerRef {
                    uid: Uid::parse(nonempty_at(o, &["uid"])?),
                    kind: Atom::new(str_at(o, &["kind"]).unwrap_or("")),
                    name: str_at(o, &["name"]).unwrap_or("").into(),
                    controller: at(o, &["controller"])
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
            })
            .collect();

        let spec = kind_spec(&kind, obj, name, &labels, &annotation);
        let replicas = match &spec {
            Spec::Workload(w) => Some(&w.replicas),
            _ => None,
        };
        let (status, message) = status(&kind, obj, replicas);
        let is_record = matches!(&spec, Spec::Secret(s) if s.helm_record.is_some());
        let release = if is_record {
            None
        } else {
            helm_membership(&namespace, &labels, &annotation)
        };

        Ok(Object {
            uid,
            kind,
            api_version: Atom::new(api_version),
            namespace,
            name: name.into(),
            resource_version: str_at(meta, &["resourceVersion"]).unwrap_or("").into(),
            created: str_at(meta, &["creationTimestamp"]).and_then(Time::parse_rfc3339),
            deleted: str_at(meta, &["deletionTimestamp"]).and_then(Time::parse_rfc3339),
            labels,
            annotations: annotations.into_boxed_slice(),
            owners,
            status,
            message: Atom::new(&message),
            release: release.map(Release::new),
            spec,
        })
    }
}

fn required_str<'a>(
    map: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, ProjectError> {
    match map.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(ProjectError::Missing(field)),
        Some(_) => Err(ProjectError::NotAString(field)),
    }
}

/// The labels map, reading scalar values as text.
fn labels_of(v: Option<&Value>) -> Labels {
    let Some(Value::Object(m)) = v else {
        return Labels::default();
    };
    Labels::from_pairs(
        m.iter()
            .filter_map(|(k, v)| Some((Atom::new(k), Atom::new(&scalar_text(v)?))))
            .collect(),
    )
}

/// Helm membership: the release annotations (both), else the managed-by/instance labels.
fn helm_membership<'a>(
    namespace: &Atom,
    labels: &Labels,
    annotation: &impl Fn(&str) -> Option<&'a str>,
) -> Option<ReleaseKey> {
    if let (Some(name), Some(ns)) = (
        annotation(HELM_RELEASE_NAME),
        annotation(HELM_RELEASE_NAMESPACE),
    ) && !name.is_empty()
    {
        return Some(ReleaseKey {
            namespace: Atom::new(ns),
            name: Atom::new(name),
        });
    }
    let managed = labels.get_str("app.kubernetes.io/managed-by")?;
    let instance = labels.get_str("app.kubernetes.io/instance")?;
    (managed.as_str() == "Helm" && !instance.is_empty()).then(|| ReleaseKey {
        namespace: namespace.clone(),
        name: instance.clone(),
    })
}

fn kind_spec<'a>(
    kind: &Kind,
    obj: &Value,
    name: &str,
    labels: &Labels,
    annotation: &impl Fn(&str) -> Option<&'a str>,
) -> Spec {
    match kind {
        Kind::Pod => {
            let pod_spec = obj.get("spec").unwrap_or(&Value::Null);
            let restarts = list_at(obj, &["status", "initContainerStatuses"])
                .iter()
                .chain(list_at(obj, &["status", "containerStatuses"]))
                .filter_map(|s| u32_at(s, &["restartCount"]))
                .fold(0u32, u32::saturating_add);
            Spec::Pod(Box::new(PodInfo {
                uses: pod_uses(pod_spec, Some(name)),
                node_name: nonempty_at(obj, &["spec", "nodeName"]).map(Atom::new),
                restarts,
                phase: nonempty_at(obj, &["status", "phase"]).map(Atom::new),
            }))
        }
        Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet | Kind::Job => {
            let template = at(obj, &["spec", "template", "spec"]).unwrap_or(&Value::Null);
            let claim_templates = if *kind == Kind::StatefulSet {
                sorted_atoms(
                    list_at(obj, &["spec", "volumeClaimTemplates"])
                        .iter()
                        .filter_map(|t| nonempty_at(t, &["metadata", "name"])),
                )
            } else {
                Box::default()
            };
            Spec::Workload(Box::new(WorkloadInfo {
                uses: pod_uses(template, None),
                replicas: replicas(kind, obj),
                claim_templates,
            }))
        }
        Kind::CronJob => {
            let template = at(obj, &["spec", "jobTemplate", "spec", "template", "spec"])
                .unwrap_or(&Value::Null);
            Spec::Workload(Box::new(WorkloadInfo {
                uses: pod_uses(template, None),
                replicas: replicas(kind, obj),
                claim_templates: Box::default(),
            }))
        }
        Kind::Service => Spec::Service(Box::new(ServiceInfo {
            selector: at(obj, &["spec", "selector"])
                .and_then(Value::as_object)
                .filter(|m| !m.is_empty())
                .and_then(|m| Selector::from_map(m).ok()),
            service_type: Atom::new(str_at(obj, &["spec", "type"]).unwrap_or("ClusterIP")),
            cluster_ip: nonempty_at(obj, &["spec", "clusterIP"]).map(Atom::new),
        })),
        Kind::EndpointSlice => {
            let mut targets: Vec<PodTarget> = list_at(obj, &["endpoints"])
                .iter()
                .filter_map(|e| e.get("targetRef"))
                .filter(|t| str_at(t, &["kind"]) == Some("Pod"))
                .filter_map(|t| match nonempty_at(t, &["uid"]) {
                    Some(uid) => Some(PodTarget::Uid(Uid::parse(uid))),
                    None => nonempty_at(t, &["name"]).map(|n| PodTarget::Name(Atom::new(n))),
                })
                .collect();
            targets.sort();
            targets.dedup();
            Spec::EndpointSlice(Box::new(EndpointSliceInfo {
                service: labels
                    .get_str("kubernetes.io/service-name")
                    .filter(|s| !s.is_empty())
                    .cloned(),
                targets: targets.into_boxed_slice(),
            }))
        }
        Kind::Ingress => {
            fn backend_service(b: &Value) -> Option<&str> {
                nonempty_at(b, &["service", "name"]).or_else(|| nonempty_at(b, &["serviceName"]))
            }
            let rules = list_at(obj, &["spec", "rules"]);
            let services = rules
                .iter()
                .flat_map(|r| list_at(r, &["http", "paths"]))
                .filter_map(|p| p.get("backend").and_then(backend_service))
                .chain(at(obj, &["spec", "defaultBackend"]).and_then(backend_service))
                .chain(at(obj, &["spec", "backend"]).and_then(backend_service));
            Spec::Ingress(Box::new(IngressInfo {
                class: nonempty_at(obj, &["spec", "ingressClassName"])
                    .or_else(|| annotation("kubernetes.io/ingress.class").filter(|s| !s.is_empty()))
                    .map(Atom::new),
                services: sorted_atoms(services),
                tls_secrets: sorted_atoms(
                    list_at(obj, &["spec", "tls"])
                        .iter()
                        .filter_map(|t| nonempty_at(t, &["secretName"])),
                ),
            }))
        }
        Kind::PersistentVolumeClaim | Kind::PersistentVolume => {
            let claim_ref = (*kind == Kind::PersistentVolume)
                .then(|| at(obj, &["spec", "claimRef"]))
                .flatten()
                .and_then(|c| {
                    Some(ClaimRef {
                        kind: Atom::new(str_at(c, &["kind"]).unwrap_or("PersistentVolumeClaim")),
                        namespace: Atom::new(str_at(c, &["namespace"]).unwrap_or("")),
                        name: Atom::new(nonempty_at(c, &["name"])?),
                        uid: nonempty_at(c, &["uid"]).map(Uid::parse),
                    })
                });
            Spec::Volume(Box::new(VolumeInfo {
                volume_name: (*kind == Kind::PersistentVolumeClaim)
                    .then(|| nonempty_at(obj, &["spec", "volumeName"]))
                    .flatten()
                    .map(Atom::new),
                storage_class: nonempty_at(obj, &["spec", "storageClassName"])
                    .or_else(|| {
                        annotation("volume.beta.kubernetes.io/storage-class")
                            .filter(|s| !s.is_empty())
                    })
                    .map(Atom::new),
                claim_ref,
            }))
        }
        Kind::HorizontalPodAutoscaler => Spec::Hpa(Box::new(HpaInfo {
            target_kind: Atom::new(str_at(obj, &["spec", "scaleTargetRef", "kind"]).unwrap_or("")),
            target_name: Atom::new(str_at(obj, &["spec", "scaleTargetRef", "name"]).unwrap_or("")),
            min_replicas: u32_at(obj, &["spec", "minReplicas"]),
            max_replicas: u32_at(obj, &["spec", "maxReplicas"]).unwrap_or(0),
            current_replicas: u32_at(obj, &["status", "currentReplicas"]).unwrap_or(0),
            desired_replicas: u32_at(obj, &["status", "desiredReplicas"]).unwrap_or(0),
        })),
        // policy/v1: an absent selector selects no Pod, an empty one every Pod of the namespace.
        Kind::PodDisruptionBudget => Spec::PodSelector(Box::new(SelectorInfo {
            selector: at(obj, &["spec", "selector"])
                .filter(|s| !s.is_null())
                .and_then(|s| Selector::from_label_selector(s).ok()),
        })),
        // podSelector is required by the API; Go decodes a missing one as the empty selector,
        // which selects every Pod of the namespace.
        Kind::NetworkPolicy => Spec::PodSelector(Box::new(SelectorInfo {
            selector: match at(obj, &["spec", "podSelector"]) {
                None | Some(Value::Null) => Some(Selector::default()),
                Some(s) => Selector::from_label_selector(s).ok(),
            },
        })),
        Kind::Secret => {
            let secret_type = str_at(obj, &["type"]).unwrap_or("Opaque");
            let helm_record = (secret_type == HELM_RECORD_TYPE
                && labels.get_str("owner").map(Atom::as_str) == Some("helm"))
            .then(|| {
                Some(HelmRecord {
                    release: labels.get_str("name").filter(|n| !n.is_empty())?.clone(),
                    version: labels.get_str("version")?.parse().ok()?,
                    status: labels.get_str("status").cloned().unwrap_or_default(),
                })
            })
            .flatten();
            Spec::Secret(Box::new(SecretInfo {
                secret_type: Atom::new(secret_type),
                helm_record,
            }))
        }
        _ => Spec::None,
    }
}

fn replicas(kind: &Kind, obj: &Value) -> Replicas {
    let s = |f: &str| u32_at(obj, &["status", f]).unwrap_or(0);
    match kind {
        Kind::DaemonSet => Replicas {
            desired: s("desiredNumberScheduled"),
            current: s("currentNumberScheduled"),
            ready: s("numberReady"),
            available: s("numberAvailable"),
            updated: s("updatedNumberScheduled"),
        },
        Kind::Job => Replicas {
            desired: u32_at(obj, &["spec", "completions"]).unwrap_or(1),
            current: s("active"),
            ready: s("succeeded"),
            available: s("succeeded"),
            updated: 0,
        },
        Kind::CronJob => Replicas {
            current: list_at(obj, &["status", "active"]).len() as u32,
            ..Replicas::default()
        },
        _ => Replicas {
            desired: u32_at(obj, &["spec", "replicas"]).unwrap_or(1),
            current: s("replicas"),
            ready: s("readyReplicas"),
            available: s("availableReplicas"),
            updated: s("updatedReplicas"),
        },
    }
}

/// What a pod spec uses. `pod_name` is set for real Pods: only they can name the PVC of a generic
/// ephemeral volume (`<pod name>-<volume name>`).
fn pod_uses(spec: &Value, pod_name: Option<&str>) -> PodUses {
    let mut config_maps: Vec<&str> = Vec::new();
    let mut secrets: Vec<&str> = Vec::new();
    let mut claims: Vec<CompactString> = Vec::new();
    for vol in list_at(spec, &["volumes"]) {
        config_maps.extend(nonempty_at(vol, &["configMap", "name"]));
        secrets.extend(nonempty_at(vol, &["secret", "secretName"]));
        for src in list_at(vol, &["projected", "sources"]) {
            config_maps.extend(nonempty_at(src, &["configMap", "name"]));
            secrets.extend(nonempty_at(src, &["secret", "name"]));
        }
        claims.extend(
            nonempty_at(vol, &["persistentVolumeClaim", "claimName"]).map(CompactString::from),
        );
        if let (Some(pod), Some(_), Some(vol_name)) =
            (pod_name, vol.get("ephemeral"), nonempty_at(vol, &["name"]))
        {
            claims.push(compact_str::format_compact!("{pod}-{vol_name}"));
        }
    }
    secrets.extend(
        list_at(spec, &["imagePullSecrets"])
            .iter()
            .filter_map(|s| nonempty_at(s, &["name"])),
    );
    let containers = list_at(spec, &["containers"]);
    let all_containers = containers
        .iter()
        .chain(list_at(spec, &["initContainers"]))
        .chain(list_at(spec, &["ephemeralContainers"]));
    for c in all_containers {
        for from in list_at(c, &["envFrom"]) {
            config_maps.extend(nonempty_at(from, &["configMapRef", "name"]));
            secrets.extend(nonempty_at(from, &["secretRef", "name"]));
        }
        for env in list_at(c, &["env"]) {
            config_maps.extend(nonempty_at(env, &["valueFrom", "configMapKeyRef", "name"]));
            secrets.extend(nonempty_at(env, &["valueFrom", "secretKeyRef", "name"]));
        }
    }
    let service_account = nonempty_at(spec, &["serviceAccountName"])
        .or_else(|| nonempty_at(spec, &["serviceAccount"]))
        .unwrap_or("default");
    PodUses {
        service_account: Atom::new(service_account),
        config_maps: sorted_atoms(config_maps),
        secrets: sorted_atoms(secrets),
        claims: sorted_atoms(claims.iter().map(CompactString::as_str)),
        images: containers
            .iter()
            .filter_map(|c| nonempty_at(c, &["image"]))
            .map(Atom::new)
            .collect(),
    }
}

fn sorted_atoms<'a>(names: impl IntoIterator<Item = &'a str>) -> Box<[Atom]> {
    let mut v: Vec<&str> = names.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter().map(Atom::new).collect()
}
