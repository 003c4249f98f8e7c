//! Kinds of objects: the built-in kinds the relationship rules know, and any other kind.
//!
//! A kind is identified by its API group and kind name, never by version: `apps/v1` and
//! `extensions/v1beta1` Deployments are the same kind. Legacy groups of built-in kinds are mapped to
//! their current group so that old manifests link like new ones.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! builtin_kinds {
    ($( $variant:ident => ($group:literal, $name:literal, $version:literal, $cluster:literal) ),* $(,)?) => {
        /// The kind of an object: a built-in kind known to the relationship rules, or any other.
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub enum Kind {
            $(
                #[doc = concat!("`", $group, "/", $name, "`")]
                $variant,
            )*
            /// Any other kind (RBAC, Leases, custom resources, ...).
            Other(Arc<GroupKind>),
        }

        impl Kind {
            /// Every built-in kind, in declaration order.
            pub const BUILTIN: &'static [Kind] = &[$(Kind::$variant),*];

            /// The API group ("" for the core group).
            pub fn group(&self) -> &str {
                match self {
                    $(Kind::$variant => $group,)*
                    Kind::Other(gk) => &gk.group,
                }
            }

            /// The kind name, e.g. `Deployment`.
            pub fn name(&self) -> &str {
                match self {
                    $(Kind::$variant => $name,)*
                    Kind::Other(gk) => &gk.kind,
                }
            }

            /// The apiVersion the service reports for objects of this kind when the source gave none.
            pub fn preferred_api_version(&self) -> &'static str {
                match self {
                    $(Kind::$variant => $version,)*
                    Kind::Other(_) => "",
                }
            }

            /// Whether objects of this built-in kind live outside namespaces. `None` for other
            /// kinds, whose scope only their objects tell.
            pub fn builtin_cluster_scoped(&self) -> Option<bool> {
                match self {
                    $(Kind::$variant => Some($cluster),)*
                    Kind::Other(_) => None,
                }
            }

            /// [`Kind::qualified`] of a built-in kind, without allocating.
            fn builtin_qualified(&self) -> Option<&'static str> {
                match self {
                    $(Kind::$variant => Some(if $group.is_empty() {
                        $name
                    } else {
                        concat!($group, "/", $name)
                    }),)*
                    Kind::Other(_) => None,
                }
            }

            /// The place of a built-in kind in [`Kind::BUILTIN`].
            fn builtin_index(&self) -> Option<usize> {
                /// The built-in kinds without data, for their indexes.
                enum Builtin {
                    $($variant,)*
                }
                match self {
                    $(Kind::$variant => Some(Builtin::$variant as usize),)*
                    Kind::Other(_) => None,
                }
            }

            fn builtin(group: &str, name: &str) -> Option<Kind> {
                match (group, name) {
                    $(($group, $name) => Some(Kind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

builtin_kinds! {
    Namespace => ("", "Namespace", "v1", true),
    Node => ("", "Node", "v1", true),
    PersistentVolume => ("", "PersistentVolume", "v1", true),
    StorageClass => ("storage.k8s.io", "StorageClass", "storage.k8s.io/v1", true),
    IngressClass => ("networking.k8s.io", "IngressClass", "networking.k8s.io/v1", true),
    Pod => ("", "Pod", "v1", false),
    Service => ("", "Service", "v1", false),
    ConfigMap => ("", "ConfigMap", "v1", false),
    Secret => ("", "Secret", "v1", false),
    ServiceAccount => ("", "ServiceAccount", "v1", false),
    PersistentVolumeClaim => ("", "PersistentVolumeClaim", "v1", false),
    EndpointSlice => ("discovery.k8s.io", "EndpointSlice", "discovery.k8s.io/v1", false),
    Ingress => ("networking.k8s.io", "Ingress", "networking.k8s.io/v1", false),
    NetworkPolicy => ("networking.k8s.io", "NetworkPolicy", "networking.k8s.io/v1", false),
    Deployment => ("apps", "Deployment", "apps/v1", false),
    ReplicaSet => ("apps", "ReplicaSet", "apps/v1", false),
    StatefulSet => ("apps", "StatefulSet", "apps/v1", false),
    DaemonSet => ("apps", "DaemonSet", "apps/v1", false),
    Job => ("batch", "Job", "batch/v1", false),
    CronJob => ("batch", "CronJob", "batch/v1", false),
    HorizontalPodAutoscaler => ("autoscaling", "HorizontalPodAutoscaler", "autoscaling/v2", false),
    PodDisruptionBudget => ("policy", "PodDisruptionBudget", "policy/v1", false),
    HelmRelease => ("helm.sh", "HelmRelease", "helm.sh/v1", false),
}

/// The identity of a kind that the rules do not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKind {
    /// API group, "" for core.
    pub group: Box<str>,
    /// Kind name.
    pub kind: Box<str>,
}

impl Kind {
    /// The kind of an object from its `apiVersion` and `kind` fields.
    pub fn from_api_version(api_version: &str, kind: &str) -> Kind {
        let group = match api_version.rsplit_once('/') {
            Some((group, _version)) => group,
            None => "",
        };
        Kind::from_group(group, kind)
    }

    /// The kind from a group and kind name, mapping legacy groups of built-in kinds (for example
    /// `extensions` Deployments and Ingresses) to the current ones.
    pub fn from_group(group: &str, kind: &str) -> Kind {
        let current = match (group, kind) {
            ("extensions", "Deployment" | "DaemonSet" | "ReplicaSet") => "apps",
            ("extensions", "Ingress" | "NetworkPolicy") => "networking.k8s.io",
            ("events.k8s.io", "Event") => "",
            _ => group,
        };
        Kind::builtin(current, kind).unwrap_or_else(|| {
            Kind::Other(Arc::new(GroupKind {
                group: group.into(),
                kind: kind.into(),
            }))
        })
    }

    /// Finds a kind from user input: `Deployment`, `deployment`, `deployments`,
    /// `Deployment.apps` or `deployments.apps` (kubectl's resource.group form). Built-in kinds only
    /// need the name; other kinds are matched against `known`.
    pub fn parse_user<'a>(input: &str, known: impl IntoIterator<Item = &'a Kind>) -> Option<Kind> {
        let (name, group) = match input.split_once('.') {
            Some((name, group)) => (name, Some(group)),
            None => (input, None),
        };
        let matches = |k: &Kind| {
            let kind_name = k.name();
            let name_ok = kind_name.eq_ignore_ascii_case(name)
                || plural(kind_name).eq_ignore_ascii_case(name)
                || k.short_names().iter().any(|s| s.eq_ignore_ascii_case(name));
            name_ok && group.is_none_or(|g| k.group().eq_ignore_ascii_case(g))
        };
        Kind::BUILTIN
            .iter()
            .chain(known)
            .find(|k| matches(k))
            .cloned()
    }

    /// kubectl's short names for the built-in kinds.
    fn short_names(&self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::PersistentVolume => &["pv"],
            Kind::StorageClass => &["sc"],
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::ConfigMap => &["cm"],
            Kind::ServiceAccount => &["sa"],
            Kind::PersistentVolumeClaim => &["pvc"],
            Kind::Ingress => &["ing"],
            Kind::NetworkPolicy => &["netpol"],
            Kind::Deployment => &["deploy"],
            Kind::ReplicaSet => &["rs"],
            Kind::StatefulSet => &["sts"],
            Kind::DaemonSet => &["ds"],
            Kind::CronJob => &["cj"],
            Kind::HorizontalPodAutoscaler => &["hpa"],
            Kind::PodDisruptionBudget => &["pdb"],
            _ => &[],
        }
    }

    /// `group/Kind`, or just `Kind` for the core group: the form used in keys and messages.
    pub fn qualified(&self) -> String {
        if self.group().is_empty() {
            self.name().to_string()
        } else {
            format!("{}/{}", self.group(), self.name())
        }
    }

    /// Whether the rules treat this kind as having no status of its own ("Ready: exists").
    pub fn is_statusless(&self) -> bool {
        matches!(
            self,
            Kind::ConfigMap
                | Kind::Secret
                | Kind::ServiceAccount
                | Kind::StorageClass
                | Kind::IngressClass
                | Kind::NetworkPolicy
        )
    }
}

/// English plural of a kind name, as Kubernetes forms resource names (`Ingress` → `ingresses`,
/// `NetworkPolicy` → `networkpolicies`).
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s')
        || lower.ends_with("sh")
        || lower.ends_with("ch")
        || lower.ends_with('x')
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

impl Ord for Kind {
    /// Alphabetical by kind name, then group: the order of every sorted listing. Two built-in
    /// kinds compare by their precomputed rank in that order, without comparing text (the
    /// graph's indexes are keyed by kind, and building a large graph compares kinds millions of
    /// times).
    fn cmp(&self, other: &Self) -> Ordering {
        if let (Some(a), Some(b)) = (self.builtin_index(), other.builtin_index()) {
            let rank = builtin_rank();
            return rank[a].cmp(&rank[b]);
        }
        self.text_cmp(other)
    }
}

impl Kind {
    fn text_cmp(&self, other: &Self) -> Ordering {
        self.name()
            .cmp(other.name())
            .then_with(|| self.group().cmp(other.group()))
    }
}

/// Each built-in kind's place in [`Kind`]'s order, by [`Kind::BUILTIN`] index.
fn builtin_rank() -> &'static [usize] {
    static RANK: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    RANK.get_or_init(|| {
        let mut order: Vec<usize> = (0..Kind::BUILTIN.len()).collect();
        order.sort_by(|a, b| Kind::BUILTIN[*a].text_cmp(&Kind::BUILTIN[*b]));
        let mut rank = vec![0; order.len()];
        for (r, i) in order.into_iter().enumerate() {
            rank[i] = r;
        }
        rank
    })
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Kind {
    /// Serialised as `group/Kind` (`Kind` for core) so that a custom kind keeps its group.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.builtin_qualified() {
            Some(q) => s.serialize_str(q),
            None => s.serialize_str(&self.qualified()),
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::model::atom::from_str_with(d, |s| {
            Ok(match s.rsplit_once('/') {
                Some((group, kind)) => Kind::from_group(group, kind),
                None => Kind::from_group("", s),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_kinds_order_by_name_then_group_like_any_other() {
        let mut kinds: Vec<Kind> = Kind::BUILTIN.to_vec();
        kinds.push(Kind::from_group("example.com", "Deployment"));
        kinds.push(Kind::from_group("", "Aardvark"));
        kinds.push(Kind::from_group("zz.io", "Zebra"));
        for (i, a) in Kind::BUILTIN.iter().enumerate() {
            assert_eq!(a.builtin_index(), Some(i));
        }
        for a in &kinds {
            for b in &kinds {
                assert_eq!(a.cmp(b), a.text_cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn legacy_groups_map_to_current_kinds() {
        assert_eq!(
            Kind::from_api_version("extensions/v1beta1", "Deployment"),
            Kind::Deployment
        );
        assert_eq!(
            Kind::from_api_version("extensions/v1beta1", "Ingress"),
            Kind::Ingress
        );
        assert_eq!(
            Kind::from_api_version("apps/v1", "StatefulSet"),
            Kind::StatefulSet
        );
        assert_eq!(Kind::from_api_version("v1", "Pod"), Kind::Pod);
        assert_eq!(
            Kind::from_api_version("autoscaling/v1", "HorizontalPodAutoscaler"),
            Kind::HorizontalPodAutoscaler
        );
        let crd = Kind::from_api_version("example.com/v1", "Deployment");
        assert!(matches!(crd, Kind::Other(_)));
        assert_eq!(crd.group(), "example.com");
    }

    #[test]
    fn user_kind_names_accept_kubectl_forms() {
        let none: [&Kind; 0] = [];
        for input in ["Deployment", "deployments", "deploy", "deployment.apps"] {
            assert_eq!(
                Kind::parse_user(input, none),
                Some(Kind::Deployment),
                "{input}"
            );
        }
        assert_eq!(Kind::parse_user("ingresses", none), Some(Kind::Ingress));
        assert_eq!(
            Kind::parse_user("networkpolicies", none),
            Some(Kind::NetworkPolicy)
        );
        assert_eq!(Kind::parse_user("deployment.example.com", none), None);
        let crd = Kind::from_group("cert-manager.io", "Certificate");
        assert_eq!(Kind::parse_user("certificates", [&crd]), Some(crd));
    }

    #[test]
    fn kinds_sort_by_name_then_group_and_round_trip_through_serde() {
        let mut kinds = vec![
            Kind::Service,
            Kind::ConfigMap,
            Kind::from_group("a.io", "Service"),
        ];
        kinds.sort();
        assert_eq!(kinds[0], Kind::ConfigMap);
        assert_eq!(kinds[1], Kind::Service);
        for k in kinds {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), k);
        }
    }
}
