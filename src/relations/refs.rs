//! The references an object declares, from its projection alone: the `relationships.md` catalogue
//! minus the selector rules (which depend on the other side's labels, and live in the graph's
//! selector index).

use compact_str::format_compact;
use smallvec::SmallVec;

use crate::model::{
    Atom, Dir, EdgeType, Kind, Name, Object, ObjectKey, PodTarget, Ref, Spec, Target,
};

/// Inline capacity: a typical Pod declares fewer references than this.
pub type Refs = SmallVec<[Ref; 8]>;

fn named(edge: EdgeType, kind: Kind, namespace: &Atom, name: &str) -> Ref {
    Ref {
        edge,
        dir: Dir::Out,
        target: Target::Named(ObjectKey {
            kind,
            namespace: namespace.clone(),
            name: Name::from(name),
        }),
    }
}

/// Every reference `obj` declares, sorted and without duplicates.
pub fn refs(obj: &Object) -> Refs {
    let mut out = Refs::new();
    let ns = &obj.namespace;
    let cluster = Atom::empty();

    // owns: declared by the dependent, matched by the owner's uid.
    for owner in obj.owners.iter() {
        out.push(Ref {
            edge: EdgeType::Owns,
            dir: Dir::In,
            target: Target::Uid(owner.uid.clone()),
        });
    }
    if let Some(release) = &obj.release {
        out.push(Ref {
            edge: EdgeType::MemberOf,
            dir: Dir::Out,
            target: Target::Release((**release).clone()),
        });
    }
    if let Some(uses) = obj.pod_uses() {
        out.push(named(
            EdgeType::UsesSa,
            Kind::ServiceAccount,
            ns,
            &uses.service_account,
        ));
        for cm in uses.config_maps.iter() {
            out.push(named(EdgeType::UsesConfigMap, Kind::ConfigMap, ns, cm));
        }
        for s in uses.secrets.iter() {
            out.push(named(EdgeType::UsesSecret, Kind::Secret, ns, s));
        }
        for c in uses.claims.iter() {
            out.push(named(EdgeType::Mounts, Kind::PersistentVolumeClaim, ns, c));
        }
    }
    match &obj.spec {
        Spec::Pod(p) => {
            if let Some(node) = &p.node_name {
                out.push(named(EdgeType::RunsOn, Kind::Node, &cluster, node));
            }
        }
        Spec::Workload(w) => {
            for t in w.claim_templates.iter() {
                out.push(Ref {
                    edge: EdgeType::Claims,
                    dir: Dir::Out,
                    target: Target::ClaimPattern {
                        namespace: ns.clone(),
                        prefix: format_compact!("{t}-{}", obj.name),
                    },
                });
            }
        }
        Spec::EndpointSlice(e) => {
            if let Some(svc) = &e.service {
                out.push(Ref {
                    dir: Dir::In,
                    ..named(EdgeType::Endpoints, Kind::Service, ns, svc)
                });
            }
            for t in e.targets.iter() {
                out.push(match t {
                    PodTarget::Uid(uid) => Ref {
                        edge: EdgeType::Targets,
                        dir: Dir::Out,
                        target: Target::Uid(uid.clone()),
                    },
                    PodTarget::Name(n) => named(EdgeType::Targets, Kind::Pod, ns, n),
                });
            }
        }
        Spec::Ingress(i) => {
            for svc in i.services.iter() {
                out.push(named(EdgeType::RoutesTo, Kind::Service, ns, svc));
            }
            for s in i.tls_secrets.iter() {
                out.push(named(EdgeType::UsesSecret, Kind::Secret, ns, s));
            }
            if let Some(class) = &i.class {
                out.push(named(
                    EdgeType::UsesClass,
                    Kind::IngressClass,
                    &cluster,
                    class,
                ));
            }
        }
        Spec::Volume(v) => {
            if let Some(pv) = &v.volume_name {
                out.push(named(EdgeType::Binds, Kind::PersistentVolume, &cluster, pv));
            }
            if let Some(sc) = &v.storage_class {
                out.push(named(EdgeType::UsesClass, Kind::StorageClass, &cluster, sc));
            }
        }
        Spec::Hpa(h) if !h.target_kind.is_empty() && !h.target_name.is_empty() => {
            out.push(Ref {
                edge: EdgeType::Scales,
                dir: Dir::Out,
                target: Target::NamedAnyGroup {
                    kind: h.target_kind.clone(),
                    namespace: ns.clone(),
                    name: Name::from(h.target_name.as_str()),
                },
            });
        }
        _ => {}
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether a PersistentVolumeClaim named `pvc` matches a StatefulSet claim prefix: `prefix`
/// followed by `-` and a decimal number.
pub fn claim_matches(prefix: &str, pvc: &str) -> bool {
    pvc.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The claim prefix a PersistentVolumeClaim name could match (`data-web-3` → `data-web`).
pub fn claim_prefix_of(pvc: &str) -> Option<&str> {
    let (prefix, n) = pvc.rsplit_once('-')?;
    (!prefix.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(prefix)
}
