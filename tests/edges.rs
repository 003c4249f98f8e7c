//! Every edge rule of `relationships.md`: the edge appears whichever end arrives first, goes away
//! when the declaring field changes, and comes back when a deleted target is re-created.

mod support;

use astrolabe::model::Kind;
use serde_json::json;
use support::*;

/// Applies `objs` in the given order and in reverse, checking the same edges come out.
fn both_orders(objs: Vec<serde_json::Value>, check: impl Fn(&World)) {
    let mut fwd = World::new();
    for o in &objs {
        fwd.apply(o.clone());
    }
    check(&fwd);
    let mut rev = World::new();
    for o in objs.iter().rev() {
        rev.apply(o.clone());
    }
    check(&rev);
    assert_eq!(
        fwd.g.canonical(),
        rev.g.canonical(),
        "arrival order changed the graph"
    );
}

fn owned_pod(ns: &str, name: &str, owner_kind: &str, owner: &str) -> serde_json::Value {
    let mut p = pod(
        ns,
        name,
        json!({}),
        json!({"containers": [{"name": "c", "image": "x"}]}),
    );
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner,
        "uid": uid_of(owner_kind, ns, owner), "controller": true}]);
    p
}

#[test]
fn owns_follows_owner_uid_in_both_orders_and_on_update() {
    let rs = simple("apps/v1", "ReplicaSet", "ns", "web-1");
    let p = owned_pod("ns", "web-1-a", "ReplicaSet", "web-1");
    both_orders(vec![rs.clone(), p.clone()], |w| {
        w.assert_edges("owns", &[("ReplicaSet/ns/web-1", "Pod/ns/web-1-a")]);
    });

    let mut w = World::new();
    w.apply(rs.clone());
    w.apply(p.clone());
    // The owner is matched by uid only: a reference naming the right owner with another uid
    // gives no edge.
    let mut wrong = p.clone();
    wrong["metadata"]["ownerReferences"][0]["uid"] = json!(uid("someone-else"));
    w.apply(wrong);
    w.assert_edges("owns", &[]);
    w.apply(p.clone());
    w.assert_edges("owns", &[("ReplicaSet/ns/web-1", "Pod/ns/web-1-a")]);
    // Removing the ownerReference removes the edge.
    let mut orphan = p.clone();
    orphan["metadata"]["ownerReferences"] = json!([]);
    w.apply(orphan);
    w.assert_edges("owns", &[]);
    // Deleting the owner drops the edge; the same owner (same uid) coming back restores it.
    w.apply(p);
    assert!(w.delete("ReplicaSet/ns/web-1"));
    w.assert_edges("owns", &[]);
    w.apply(rs);
    w.assert_edges("owns", &[("ReplicaSet/ns/web-1", "Pod/ns/web-1-a")]);
}

#[test]
fn service_selects_pods_of_its_namespace_by_label_subset() {
    let objs = vec![
        service("ns", "web", json!({"app": "web"})),
        pod("ns", "a", json!({"app": "web", "tier": "x"}), json!({})),
        pod("ns", "b", json!({"app": "db"}), json!({})),
        pod("other", "c", json!({"app": "web"}), json!({})),
        service("ns", "empty", json!({})),
    ];
    both_orders(objs, |w| {
        w.assert_edges("selects", &[("Service/ns/web", "Pod/ns/a")])
    });
}

#[test]
fn selects_moves_when_the_selector_or_the_labels_change() {
    let mut w = World::new();
    w.apply(pod("ns", "a", json!({"app": "web"}), json!({})));
    w.apply(pod("ns", "b", json!({"app": "db"}), json!({})));
    w.apply(service("ns", "svc", json!({"app": "web"})));
    w.assert_edges("selects", &[("Service/ns/svc", "Pod/ns/a")]);
    // The Service's selector changes: re-evaluated from the Service's side.
    w.apply(service("ns", "svc", json!({"app": "db"})));
    w.assert_edges("selects", &[("Service/ns/svc", "Pod/ns/b")]);
    // A Pod's labels change: re-evaluated from the Pod's side.
    w.apply(pod("ns", "a", json!({"app": "db"}), json!({})));
    w.assert_edges(
        "selects",
        &[
            ("Service/ns/svc", "Pod/ns/a"),
            ("Service/ns/svc", "Pod/ns/b"),
        ],
    );
    w.apply(pod("ns", "b", json!({}), json!({})));
    w.assert_edges("selects", &[("Service/ns/svc", "Pod/ns/a")]);
    // A selector emptied selects nothing (a Service without selector has manual endpoints).
    w.apply(service("ns", "svc", json!({})));
    w.assert_edges("selects", &[]);
}

#[test]
fn pdb_selector_supports_expressions_empty_and_absent() {
    let mut pdb = simple("policy/v1", "PodDisruptionBudget", "ns", "expr");
    pdb["spec"] = json!({"selector": {"matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]},
                             {"key": "zone", "operator": "Exists"}]}});
    let mut all = simple("policy/v1", "PodDisruptionBudget", "ns", "all");
    all["spec"] = json!({"selector": {}});
    let mut none = simple("policy/v1", "PodDisruptionBudget", "ns", "none");
    none["spec"] = json!({"minAvailable": 1});
    let objs = vec![
        pdb,
        all,
        none,
        pod("ns", "a", json!({"app": "web", "zone": "1"}), json!({})),
        pod(
            "ns",
            "b",
            json!({"app": "web", "zone": "1", "track": "canary"}),
            json!({}),
        ),
        pod("ns", "c", json!({"app": "web"}), json!({})),
        pod("other", "d", json!({"app": "web", "zone": "1"}), json!({})),
    ];
    both_orders(objs, |w| {
        w.assert_edges(
            "selects",
            &[
                ("PodDisruptionBudget/ns/expr", "Pod/ns/a"),
                ("PodDisruptionBudget/ns/all", "Pod/ns/a"),
                ("PodDisruptionBudget/ns/all", "Pod/ns/b"),
                ("PodDisruptionBudget/ns/all", "Pod/ns/c"),
            ],
        )
    });
}

#[test]
fn network_policy_pod_selector_empty_selects_the_namespace() {
    let mut np = simple("networking.k8s.io/v1", "NetworkPolicy", "ns", "deny");
    np["spec"] = json!({"podSelector": {}});
    let mut web = simple("networking.k8s.io/v1", "NetworkPolicy", "ns", "web");
    web["spec"] = json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}});
    let objs = vec![
        np,
        web,
        pod("ns", "a", json!({"app": "api"}), json!({})),
        pod("ns", "b", json!({"app": "db"}), json!({})),
        pod("x", "c", json!({"app": "web"}), json!({})),
    ];
    both_orders(objs, |w| {
        w.assert_edges(
            "selects",
            &[
                ("NetworkPolicy/ns/deny", "Pod/ns/a"),
                ("NetworkPolicy/ns/deny", "Pod/ns/b"),
                ("NetworkPolicy/ns/web", "Pod/ns/a"),
            ],
        )
    });
}

fn slice(ns: &str, name: &str, service: &str, targets: serde_json::Value) -> serde_json::Value {
    let mut s = simple("discovery.k8s.io/v1", "EndpointSlice", ns, name);
    s["metadata"]["labels"] = json!({"kubernetes.io/service-name": service});
    s["endpoints"] = targets;
    s
}

#[test]
fn endpoints_and_targets_from_endpoint_slices() {
    let a_uid = uid_of("Pod", "ns", "a");
    let objs = vec![
        service("ns", "web", json!({"app": "web"})),
        pod("ns", "a", json!({}), json!({})),
        pod("ns", "b", json!({}), json!({})),
        slice(
            "ns",
            "web-x",
            "web",
            json!([
                // By uid: only the uid counts, whatever the name says.
                {"targetRef": {"kind": "Pod", "name": "b", "uid": a_uid}},
                // By name when there is no uid.
                {"targetRef": {"kind": "Pod", "name": "b"}},
                {"targetRef": {"kind": "Node", "name": "n1"}},
            ]),
        ),
    ];
    both_orders(objs, |w| {
        w.assert_edges("endpoints", &[("Service/ns/web", "EndpointSlice/ns/web-x")]);
        w.assert_edges(
            "targets",
            &[
                ("EndpointSlice/ns/web-x", "Pod/ns/a"),
                ("EndpointSlice/ns/web-x", "Pod/ns/b"),
            ],
        );
    });
}

#[test]
fn slice_edges_follow_updates_and_shared_targets() {
    let a_uid = uid_of("Pod", "ns", "a");
    let mut w = World::new();
    w.apply(service("ns", "web", json!({})));
    w.apply(service("ns", "api", json!({})));
    w.apply(pod("ns", "a", json!({}), json!({})));
    // The same Pod named twice (by uid and by name) is one edge, which lives while either holds.
    w.apply(slice("ns", "s", "web", json!([{"targetRef": {"kind": "Pod", "uid": a_uid}}, {"targetRef": {"kind": "Pod", "name": "a"}}])));
    w.assert_edges("targets", &[("EndpointSlice/ns/s", "Pod/ns/a")]);
    w.apply(slice(
        "ns",
        "s",
        "web",
        json!([{"targetRef": {"kind": "Pod", "name": "a"}}]),
    ));
    w.assert_edges("targets", &[("EndpointSlice/ns/s", "Pod/ns/a")]);
    // The service-name label moves the endpoints edge.
    w.apply(slice("ns", "s", "api", json!([])));
    w.assert_edges("endpoints", &[("Service/ns/api", "EndpointSlice/ns/s")]);
    w.assert_edges("targets", &[]);
    // Deleting the Service and re-creating it (new uid) re-links the slice.
    w.delete("Service/ns/api");
    w.assert_edges("endpoints", &[]);
    let mut again = service("ns", "api", json!({}));
    again["metadata"]["uid"] = json!(uid("api-2"));
    w.apply(again);
    w.assert_edges("endpoints", &[("Service/ns/api", "EndpointSlice/ns/s")]);
}

fn ingress(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut i = simple("networking.k8s.io/v1", "Ingress", ns, name);
    i["spec"] = spec;
    i
}

#[test]
fn ingress_routes_to_services_uses_tls_secrets_and_its_class() {
    let objs = vec![
        ingress(
            "ns",
            "ing",
            json!({
                "ingressClassName": "nginx",
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "tls": [{"secretName": "tls-a", "hosts": ["a"]}],
                "rules": [{"http": {"paths": [
                    {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/api", "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}]
            }),
        ),
        service("ns", "web", json!({})),
        service("ns", "api", json!({})),
        service("ns", "fallback", json!({})),
        service("other", "web", json!({})),
        simple("v1", "Secret", "ns", "tls-a"),
        simple("networking.k8s.io/v1", "IngressClass", "", "nginx"),
    ];
    both_orders(objs, |w| {
        w.assert_edges(
            "routes-to",
            &[
                ("Ingress/ns/ing", "Service/ns/api"),
                ("Ingress/ns/ing", "Service/ns/fallback"),
                ("Ingress/ns/ing", "Service/ns/web"),
            ],
        );
        w.assert_edges("uses-secret", &[("Ingress/ns/ing", "Secret/ns/tls-a")]);
        w.assert_edges("uses-class", &[("Ingress/ns/ing", "IngressClass/nginx")]);
    });
}

#[test]
fn ingress_edges_follow_backend_and_class_changes_and_legacy_fields() {
    let mut w = World::new();
    w.apply(service("ns", "web", json!({})));
    w.apply(service("ns", "old", json!({})));
    w.apply(simple("networking.k8s.io/v1", "IngressClass", "", "nginx"));
    w.apply(simple(
        "networking.k8s.io/v1",
        "IngressClass",
        "",
        "traefik",
    ));
    w.apply(ingress(
        "ns",
        "ing",
        json!({"ingressClassName": "nginx",
        "rules": [{"http": {"paths": [{"backend": {"service": {"name": "web"}}}]}}]}),
    ));
    w.assert_edges("routes-to", &[("Ingress/ns/ing", "Service/ns/web")]);
    // extensions/v1beta1 shape: serviceName, class from the annotation.
    let mut legacy = ingress(
        "ns",
        "ing",
        json!({"rules": [{"http": {"paths": [{"backend": {"serviceName": "old", "servicePort": 80}}]}}]}),
    );
    legacy["apiVersion"] = json!("extensions/v1beta1");
    legacy["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": "traefik"});
    w.apply(legacy);
    w.assert_edges("routes-to", &[("Ingress/ns/ing", "Service/ns/old")]);
    w.assert_edges("uses-class", &[("Ingress/ns/ing", "IngressClass/traefik")]);
}

fn pvc(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut p = simple("v1", "PersistentVolumeClaim", ns, name);
    p["spec"] = spec;
    p
}

#[test]
fn pods_mount_claims_and_generic_ephemeral_volumes() {
    let spec = json!({"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]});
    let mut deploy = simple("apps/v1", "Deployment", "ns", "d");
    deploy["spec"] = json!({"template": {"spec": spec}});
    let objs = vec![
        pod("ns", "p", json!({}), spec),
        deploy,
        pvc("ns", "data", json!({})),
        pvc("ns", "p-scratch", json!({})),
        pvc("ns", "d-scratch", json!({})),
    ];
    both_orders(objs, |w| {
        // A template's ephemeral volume names no claim: only real Pods get that edge.
        w.assert_edges(
            "mounts",
            &[
                ("Deployment/ns/d", "PersistentVolumeClaim/ns/data"),
                ("Pod/ns/p", "PersistentVolumeClaim/ns/data"),
                ("Pod/ns/p", "PersistentVolumeClaim/ns/p-scratch"),
            ],
        )
    });
}

#[test]
fn statefulsets_claim_every_numbered_pvc_of_their_templates() {
    let mut sts = simple("apps/v1", "StatefulSet", "ns", "db");
    sts["spec"] = json!({"replicas": 1, "volumeClaimTemplates": [{"metadata": {"name": "data"}}, {"metadata": {"name": "logs"}}]});
    let objs = vec![
        sts.clone(),
        pvc("ns", "data-db-0", json!({})),
        pvc("ns", "data-db-7", json!({})),
        pvc("ns", "logs-db-12", json!({})),
        pvc("ns", "data-db-x", json!({})),
        pvc("ns", "data-dbx-0", json!({})),
        pvc("ns", "data-db-", json!({})),
        pvc("other", "data-db-0", json!({})),
    ];
    both_orders(objs, |w| {
        w.assert_edges(
            "claims",
            &[
                ("StatefulSet/ns/db", "PersistentVolumeClaim/ns/data-db-0"),
                ("StatefulSet/ns/db", "PersistentVolumeClaim/ns/data-db-7"),
                ("StatefulSet/ns/db", "PersistentVolumeClaim/ns/logs-db-12"),
            ],
        )
    });
    let mut w = World::new();
    w.apply(sts.clone());
    w.apply(pvc("ns", "data-db-0", json!({})));
    w.apply(pvc("ns", "logs-db-0", json!({})));
    // Dropping a template drops its claims; deleting and re-creating a PVC re-links it.
    sts["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "logs"}}]);
    w.apply(sts);
    w.assert_edges(
        "claims",
        &[("StatefulSet/ns/db", "PersistentVolumeClaim/ns/logs-db-0")],
    );
    w.delete("PersistentVolumeClaim/ns/logs-db-0");
    w.assert_edges("claims", &[]);
    w.apply(pvc("ns", "logs-db-0", json!({})));
    w.assert_edges(
        "claims",
        &[("StatefulSet/ns/db", "PersistentVolumeClaim/ns/logs-db-0")],
    );
}

#[test]
fn claims_bind_volumes_and_both_use_storage_classes() {
    let mut pv = simple("v1", "PersistentVolume", "", "pv-1");
    pv["spec"] = json!({"storageClassName": "fast", "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "ns", "name": "c"}});
    let mut pv_legacy = simple("v1", "PersistentVolume", "", "pv-2");
    pv_legacy["metadata"]["annotations"] =
        json!({"volume.beta.kubernetes.io/storage-class": "slow"});
    let mut legacy_claim = pvc("ns", "old", json!({}));
    legacy_claim["metadata"]["annotations"] =
        json!({"volume.beta.kubernetes.io/storage-class": "slow"});
    let objs = vec![
        pvc(
            "ns",
            "c",
            json!({"volumeName": "pv-1", "storageClassName": "fast"}),
        ),
        legacy_claim,
        pv,
        pv_legacy,
        simple("storage.k8s.io/v1", "StorageClass", "", "fast"),
        simple("storage.k8s.io/v1", "StorageClass", "", "slow"),
    ];
    both_orders(objs, |w| {
        w.assert_edges(
            "binds",
            &[("PersistentVolumeClaim/ns/c", "PersistentVolume/pv-1")],
        );
        w.assert_edges(
            "uses-class",
            &[
                ("PersistentVolume/pv-1", "StorageClass/fast"),
                ("PersistentVolume/pv-2", "StorageClass/slow"),
                ("PersistentVolumeClaim/ns/c", "StorageClass/fast"),
                ("PersistentVolumeClaim/ns/old", "StorageClass/slow"),
            ],
        );
    });
}

fn full_pod_spec() -> serde_json::Value {
    json!({
        "serviceAccountName": "runner",
        "nodeName": "node-1",
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [
            {"name": "v1", "configMap": {"name": "cm-vol"}},
            {"name": "v2", "secret": {"secretName": "sec-vol"}},
            {"name": "v3", "projected": {"sources": [{"configMap": {"name": "cm-proj"}}, {"secret": {"name": "sec-proj"}}, {"serviceAccountToken": {"path": "t"}}]}}
        ],
        "initContainers": [{"name": "init", "image": "busybox", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
        "containers": [{"name": "app", "image": "app:1",
            "envFrom": [{"configMapRef": {"name": "cm-envfrom"}}, {"secretRef": {"name": "sec-envfrom"}}],
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "a"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec-key", "key": "b"}}},
                    {"name": "C", "value": "plain"}]}],
        "ephemeralContainers": [{"name": "debug", "image": "x", "env": [{"name": "D", "valueFrom": {"configMapKeyRef": {"name": "cm-eph", "key": "d"}}}]}]
    })
}

#[test]
fn pods_and_templates_use_configmaps_secrets_and_service_accounts() {
    let mut cron = simple("batch/v1", "CronJob", "ns", "cron");
    cron["spec"] = json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": full_pod_spec()}}}});
    let mut objs = vec![pod("ns", "p", json!({}), full_pod_spec()), cron];
    for cm in [
        "cm-vol",
        "cm-proj",
        "cm-init",
        "cm-envfrom",
        "cm-key",
        "cm-eph",
    ] {
        objs.push(simple("v1", "ConfigMap", "ns", cm));
    }
    for s in ["sec-vol", "sec-proj", "pull", "sec-envfrom", "sec-key"] {
        objs.push(simple("v1", "Secret", "ns", s));
    }
    objs.push(simple("v1", "ServiceAccount", "ns", "runner"));
    objs.push(simple("v1", "Node", "", "node-1"));
    both_orders(objs, |w| {
        for from in ["Pod/ns/p", "CronJob/ns/cron"] {
            for cm in [
                "cm-vol",
                "cm-proj",
                "cm-init",
                "cm-envfrom",
                "cm-key",
                "cm-eph",
            ] {
                assert!(
                    w.has(from, "uses-configmap", &format!("ConfigMap/ns/{cm}")),
                    "{from} {cm}"
                );
            }
            for s in ["sec-vol", "sec-proj", "pull", "sec-envfrom", "sec-key"] {
                assert!(
                    w.has(from, "uses-secret", &format!("Secret/ns/{s}")),
                    "{from} {s}"
                );
            }
            assert!(w.has(from, "uses-sa", "ServiceAccount/ns/runner"));
        }
        w.assert_edges("runs-on", &[("Pod/ns/p", "Node/node-1")]);
        assert_eq!(
            w.edges()
                .iter()
                .filter(|(_, t, _)| t == "uses-configmap")
                .count(),
            12
        );
    });
}

#[test]
fn pod_template_reference_changes_move_edges() {
    let mut w = World::new();
    for name in ["a", "b"] {
        w.apply(simple("v1", "ConfigMap", "ns", name));
        w.apply(simple("v1", "Secret", "ns", name));
        w.apply(simple("v1", "PersistentVolumeClaim", "ns", name));
    }
    w.apply(simple("v1", "ServiceAccount", "ns", "default"));
    w.apply(simple("v1", "ServiceAccount", "ns", "robot"));
    let deploy = |cm: &str, sa: &str| {
        let mut d = simple("apps/v1", "Deployment", "ns", "d");
        d["spec"] = json!({"template": {"spec": {"serviceAccountName": sa, "volumes": [
            {"name": "c", "configMap": {"name": cm}}, {"name": "s", "secret": {"secretName": cm}},
            {"name": "p", "persistentVolumeClaim": {"claimName": cm}}]}}});
        d
    };
    w.apply(deploy("a", ""));
    w.assert_edges("uses-configmap", &[("Deployment/ns/d", "ConfigMap/ns/a")]);
    w.assert_edges(
        "uses-sa",
        &[("Deployment/ns/d", "ServiceAccount/ns/default")],
    );
    w.apply(deploy("b", "robot"));
    w.assert_edges("uses-configmap", &[("Deployment/ns/d", "ConfigMap/ns/b")]);
    w.assert_edges("uses-secret", &[("Deployment/ns/d", "Secret/ns/b")]);
    w.assert_edges(
        "mounts",
        &[("Deployment/ns/d", "PersistentVolumeClaim/ns/b")],
    );
    w.assert_edges("uses-sa", &[("Deployment/ns/d", "ServiceAccount/ns/robot")]);
}

#[test]
fn runs_on_follows_node_name_and_node_recreation() {
    let mut w = World::new();
    w.apply(pod("ns", "p", json!({}), json!({"nodeName": "n1"})));
    w.assert_edges("runs-on", &[]);
    w.apply(simple("v1", "Node", "", "n1"));
    w.assert_edges("runs-on", &[("Pod/ns/p", "Node/n1")]);
    w.delete("Node/n1");
    w.assert_edges("runs-on", &[]);
    let mut again = simple("v1", "Node", "", "n1");
    again["metadata"]["uid"] = json!(uid("n1-second-incarnation"));
    w.apply(again);
    w.assert_edges("runs-on", &[("Pod/ns/p", "Node/n1")]);
}

#[test]
fn hpa_scales_its_target_by_kind_and_name_whatever_the_api_version() {
    let mut hpa = simple("autoscaling/v2", "HorizontalPodAutoscaler", "ns", "h");
    hpa["spec"] = json!({"scaleTargetRef": {"apiVersion": "extensions/v1beta1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5});
    let mut rollout_hpa = simple("autoscaling/v2", "HorizontalPodAutoscaler", "ns", "r");
    rollout_hpa["spec"] = json!({"scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web"}, "maxReplicas": 5});
    let objs = vec![
        hpa.clone(),
        rollout_hpa,
        simple("apps/v1", "Deployment", "ns", "web"),
        simple("apps/v1", "Deployment", "other", "web"),
        simple("argoproj.io/v1alpha1", "Rollout", "ns", "web"),
    ];
    both_orders(objs, |w| {
        w.assert_edges(
            "scales",
            &[
                ("HorizontalPodAutoscaler/ns/h", "Deployment/ns/web"),
                ("HorizontalPodAutoscaler/ns/r", "Rollout/ns/web"),
            ],
        )
    });
    let mut w = World::new();
    w.apply(simple("apps/v1", "Deployment", "ns", "web"));
    w.apply(simple("apps/v1", "StatefulSet", "ns", "web"));
    w.apply(hpa.clone());
    hpa["spec"]["scaleTargetRef"]["kind"] = json!("StatefulSet");
    w.apply(hpa);
    w.assert_edges(
        "scales",
        &[("HorizontalPodAutoscaler/ns/h", "StatefulSet/ns/web")],
    );
    w.delete("StatefulSet/ns/web");
    w.assert_edges("scales", &[]);
    w.apply(simple("apps/v1", "StatefulSet", "ns", "web"));
    w.assert_edges(
        "scales",
        &[("HorizontalPodAutoscaler/ns/h", "StatefulSet/ns/web")],
    );
}

#[test]
fn unknown_kinds_are_generic_nodes_with_owner_edges() {
    let mut cert = simple("cert-manager.io/v1", "Certificate", "ns", "c");
    cert["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    let mut secret = simple("v1", "Secret", "ns", "c-tls");
    secret["metadata"]["ownerReferences"] =
        json!([{"kind": "Certificate", "name": "c", "uid": uid_of("Certificate", "ns", "c")}]);
    both_orders(vec![cert, secret], |w| {
        w.assert_edges("owns", &[("Certificate/ns/c", "Secret/ns/c-tls")]);
        assert_eq!(w.status("Certificate/ns/c").0, "Ready");
    });
}

#[test]
fn delete_and_recreate_with_a_new_uid_replaces_the_node() {
    let mut w = World::new();
    w.apply(simple("v1", "ConfigMap", "ns", "cm"));
    w.apply(pod(
        "ns",
        "p",
        json!({}),
        json!({"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}),
    ));
    let old = w.get("ConfigMap/ns/cm").unwrap().uid.clone();
    // Re-created without a delete event in between (missed while not watching): same name,
    // new uid. The old node goes, the new one takes its edges.
    let mut again = simple("v1", "ConfigMap", "ns", "cm");
    again["metadata"]["uid"] = json!(uid("cm-2"));
    w.apply(again);
    assert!(w.g.find_uid(&old).is_none());
    assert_eq!(w.g.node_count(), 2);
    w.assert_edges("uses-configmap", &[("Pod/ns/p", "ConfigMap/ns/cm")]);
    // A delete for the old incarnation does not remove the new one.
    let key = key("ConfigMap/ns/cm");
    assert!(!w.g.apply(astrolabe::graph::Change::Delete {
        key,
        uid: Some(old)
    }));
    assert!(w.get("ConfigMap/ns/cm").is_some());
    // Deleting something unknown is a no-op.
    assert!(!w.delete("ConfigMap/ns/nope"));
    assert!(!w.delete("Pod/elsewhere/p"));
}

#[test]
fn full_list_complete_removes_what_the_list_did_not_contain() {
    let mut w = World::new();
    for name in ["a", "b", "c"] {
        w.apply(simple("v1", "ConfigMap", "ns", name));
        w.apply(simple("v1", "ConfigMap", "other", name));
    }
    w.apply(simple("v1", "Secret", "ns", "s"));
    w.apply(pod(
        "ns",
        "p",
        json!({}),
        json!({"volumes": [{"name": "v", "configMap": {"name": "b"}}]}),
    ));
    // A namespaced relist of ConfigMaps in ns that only contains "a".
    w.list_start(Kind::ConfigMap, Some("ns"));
    w.apply(simple("v1", "ConfigMap", "ns", "a"));
    w.list_complete(Kind::ConfigMap, Some("ns"));
    assert!(w.get("ConfigMap/ns/a").is_some());
    assert!(w.get("ConfigMap/ns/b").is_none());
    assert!(w.get("ConfigMap/ns/c").is_none());
    assert!(
        w.get("ConfigMap/other/c").is_some(),
        "other namespaces are outside the list"
    );
    assert!(
        w.get("Secret/ns/s").is_some(),
        "other kinds are outside the list"
    );
    w.assert_edges("uses-configmap", &[]);
    // A cluster-wide relist.
    w.list_start(Kind::ConfigMap, None);
    w.apply(simple("v1", "ConfigMap", "other", "b"));
    w.list_complete(Kind::ConfigMap, None);
    let left: Vec<String> =
        w.g.select(&astrolabe::graph::Filter {
            kinds: vec![Kind::ConfigMap],
            ..Default::default()
        })
        .map(|n| w.g.object(n).key().to_string())
        .collect();
    assert_eq!(left, vec!["ConfigMap/other/b"]);
    // A completion with no start proves nothing and deletes nothing.
    w.list_complete(Kind::ConfigMap, None);
    assert!(w.get("ConfigMap/other/b").is_some());
}
