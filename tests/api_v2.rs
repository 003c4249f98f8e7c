//! The v2 API over real HTTP on loopback: every endpoint, every parameter, every error code, on
//! the demo cluster.

mod support;

use std::collections::BTreeSet;

use astrolabe::sources::demo::names;
use serde_json::Value;
use support::http::{Server, demo_graph};

async fn demo() -> Server {
    Server::fixed(demo_graph(2_000)).await
}

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().expect("items")
}

fn assert_fresh(v: &Value) {
    let f = &v["freshness"];
    assert!(f["generation"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["synced"], true);
    assert!(f.get("lastChangeAt").is_some());
}

async fn uid_of(s: &Server, kind: &str, ns: &str, name: &str) -> String {
    let path = if ns.is_empty() {
        format!("/api/v2/objects/{kind}/{name}")
    } else {
        format!("/api/v2/objects/{kind}/{ns}/{name}")
    };
    s.ok(&path).await["resource"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn error(s: &Server, path: &str, status: u16) -> String {
    let r = s.get(path).await;
    assert_eq!(
        r.status,
        status,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    let code = v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: v2 error shape: {v}"));
    assert!(!code.is_empty());
    v["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn resources_filter_by_every_parameter() {
    let s = demo().await;
    let all = s.ok("/api/v2/resources?limit=1000").await;
    assert_fresh(&all);
    assert_eq!(items(&all).len(), 1000);
    let pods = s
        .ok(&format!(
            "/api/v2/resources?kind=Pod&namespace={}&limit=1000",
            names::PROBLEM_NAMESPACE
        ))
        .await;
    assert!(!items(&pods).is_empty());
    assert!(
        items(&pods)
            .iter()
            .all(|n| n["kind"] == "Pod" && n["namespace"] == names::PROBLEM_NAMESPACE)
    );
    // Repeated and comma-separated lists, kubectl kind names.
    let two = s
        .ok(&format!(
            "/api/v2/resources?kind=deploy,svc&kind=cm&namespace={}",
            names::PROBLEM_NAMESPACE
        ))
        .await;
    let kinds: BTreeSet<&str> = items(&two)
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ConfigMap", "Deployment", "Service"])
    );
    let sel = s.ok("/api/v2/resources?kind=Pod&labelSelector=app%20in%20(storefront,payment-worker),tier&limit=1000").await;
    assert!(!items(&sel).is_empty());
    for n in items(&sel) {
        let app = n["labels"]["app"].as_str().unwrap();
        assert!(app == "storefront" || app == "payment-worker");
        assert!(n["labels"].get("tier").is_some());
    }
    let errors = s.ok("/api/v2/resources?status=Error&limit=1000").await;
    assert!(items(&errors).iter().all(|n| n["status"] == "Error"));
    assert!(items(&errors).iter().any(|n| {
        n["name"]
            .as_str()
            .unwrap()
            .starts_with(names::CRASHLOOP_DEPLOYMENT)
    }));
    let pending_or_error = s
        .ok("/api/v2/resources?status=Pending,error&limit=1000")
        .await;
    assert!(items(&pending_or_error).len() > items(&errors).len());
    let q = s.ok("/api/v2/resources?q=storefront&limit=1000").await;
    assert!(
        !items(&q).is_empty()
            && items(&q)
                .iter()
                .all(|n| n["name"].as_str().unwrap().contains("storefront"))
    );
    let release = s
        .ok(&format!(
            "/api/v2/resources?release={}/{}",
            names::PROBLEM_NAMESPACE,
            names::HELM_FAILED_RELEASE
        ))
        .await;
    assert!(!items(&release).is_empty());
    assert!(
        items(&release)
            .iter()
            .all(|n| n["release"] == names::HELM_FAILED_RELEASE
                && n["releaseNamespace"] == names::PROBLEM_NAMESPACE)
    );
}

#[tokio::test]
async fn resources_paginate_in_a_stable_order() {
    let s = demo().await;
    let everything: Vec<Value> =
        items(&s.ok("/api/v2/resources?kind=Pod,Service&limit=1000").await).clone();
    assert!(everything.len() > 50);
    let mut paged = Vec::new();
    let mut path = "/api/v2/resources?kind=Pod,Service&limit=7".to_string();
    loop {
        let page = s.ok(&path).await;
        paged.extend(items(&page).iter().cloned());
        match page["continue"].as_str() {
            Some(t) => path = format!("/api/v2/resources?kind=Pod,Service&limit=7&continue={t}"),
            None => break,
        }
    }
    assert_eq!(paged, everything);
    let key = |n: &Value| {
        (
            n["namespace"].as_str().unwrap().to_string(),
            n["kind"].as_str().unwrap().to_string(),
            n["name"].as_str().unwrap().to_string(),
        )
    };
    assert!(everything.windows(2).all(|w| key(&w[0]) < key(&w[1])));
    // A token only works for the query it came from.
    let first = s.ok("/api/v2/resources?kind=Pod&limit=2").await;
    let token = first["continue"].as_str().unwrap();
    let msg = error(
        &s,
        &format!("/api/v2/resources?kind=Service&limit=2&continue={token}"),
        400,
    )
    .await;
    assert!(msg.contains("other filters"), "{msg}");
    error(&s, "/api/v2/resources?continue=not-a-token", 400).await;
    error(&s, "/api/v2/resources?continue=e30", 400).await;
}

#[tokio::test]
async fn resources_reject_bad_parameters() {
    let s = demo().await;
    for (path, needle) in [
        ("/api/v2/resources?kind=Gizmo", "unknown kind"),
        (
            "/api/v2/resources?labelSelector=a%20in%20(x",
            "invalid label selector",
        ),
        ("/api/v2/resources?status=Broken", "unknown status"),
        (
            "/api/v2/resources?namespace=Not_A_Namespace",
            "invalid namespace",
        ),
        ("/api/v2/resources?release=no-slash", "NAMESPACE/NAME"),
        ("/api/v2/resources?limit=0", "limit"),
        ("/api/v2/resources?limit=1001", "limit"),
        ("/api/v2/resources?limit=ten", "limit"),
        ("/api/v2/resources?limit=1&limit=2", "more than once"),
        ("/api/v2/resources?kinds=Pod", "unknown parameter"),
    ] {
        let msg = error(&s, path, 400).await;
        assert!(msg.contains(needle), "{path}: {msg}");
    }
}

#[tokio::test]
async fn single_objects_by_uid_and_by_name_with_their_edges() {
    let s = demo().await;
    let ns = names::PROBLEM_NAMESPACE;
    let by_name = s
        .ok(&format!("/api/v2/objects/Deployment/{ns}/storefront"))
        .await;
    assert_fresh(&by_name);
    let uid = by_name["resource"]["uid"].as_str().unwrap();
    let by_uid = s.ok(&format!("/api/v2/resources/{uid}")).await;
    assert_eq!(by_uid["resource"], by_name["resource"]);
    let out: Vec<&Value> = by_uid["outgoing"].as_array().unwrap().iter().collect();
    assert!(
        out.iter()
            .any(|l| l["type"] == "owns" && l["kind"] == "ReplicaSet")
    );
    assert!(out.iter().any(|l| l["type"] == "uses-sa"));
    let inc: Vec<&Value> = by_uid["incoming"].as_array().unwrap().iter().collect();
    assert!(
        inc.iter()
            .any(|l| l["type"] == "scales" && l["kind"] == "HorizontalPodAutoscaler")
    );
    // kubectl spellings of kinds, and cluster-scoped objects without a namespace.
    assert_eq!(
        s.ok(&format!("/api/v2/objects/deployments.apps/{ns}/storefront"))
            .await["resource"]["uid"],
        uid
    );
    let node = s
        .ok(&format!("/api/v2/objects/node/{}", names::NOT_READY_NODE))
        .await;
    assert_eq!(node["resource"]["status"], "Error");
    assert!(
        node["incoming"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["type"] == "runs-on")
    );
    // Errors.
    error(
        &s,
        "/api/v2/resources/00000000-0000-4000-8000-000000000000",
        404,
    )
    .await;
    error(&s, &format!("/api/v2/objects/Deployment/{ns}/nope"), 404).await;
    error(&s, &format!("/api/v2/objects/Gizmo/{ns}/storefront"), 400).await;
    error(&s, "/api/v2/objects/Deployment/Bad_NS/storefront", 400).await;
    error(&s, &format!("/api/v2/resources/{uid}?x=1"), 400).await;
}

#[tokio::test]
async fn neighbors_follow_direction_depth_types_kinds_and_limit() {
    let s = demo().await;
    let ns = names::PROBLEM_NAMESPACE;
    let uid = uid_of(&s, "Deployment", ns, "storefront").await;
    let out1 = s
        .ok(&format!("/api/v2/resources/{uid}/neighbors?direction=out"))
        .await;
    assert_fresh(&out1);
    let out2 = s
        .ok(&format!(
            "/api/v2/resources/{uid}/neighbors?direction=out&depth=2"
        ))
        .await;
    assert!(out2["nodes"].as_array().unwrap().len() > out1["nodes"].as_array().unwrap().len());
    // Depth 2 along `owns` reaches the Pods through the ReplicaSets.
    let owned = s
        .ok(&format!(
            "/api/v2/resources/{uid}/neighbors?direction=out&depth=2&types=owns"
        ))
        .await;
    let kinds: BTreeSet<&str> = owned["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["Deployment", "Pod", "ReplicaSet"]));
    assert!(
        owned["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == "owns")
    );
    let only_pods = s
        .ok(&format!(
            "/api/v2/resources/{uid}/neighbors?direction=out&depth=2&types=owns&kinds=Pod"
        ))
        .await;
    let kinds: BTreeSet<&str> = only_pods["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["Deployment", "Pod"]),
        "the start is always included"
    );
    let incoming = s
        .ok(&format!("/api/v2/resources/{uid}/neighbors?direction=in"))
        .await;
    assert!(
        incoming["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "HorizontalPodAutoscaler")
    );
    // Every edge joins two returned nodes.
    for v in [&out1, &out2, &owned, &incoming] {
        let uids: BTreeSet<&str> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["uid"].as_str().unwrap())
            .collect();
        for e in v["edges"].as_array().unwrap() {
            assert!(
                uids.contains(e["from"].as_str().unwrap())
                    && uids.contains(e["to"].as_str().unwrap())
            );
        }
    }
    let capped = s
        .ok(&format!(
            "/api/v2/resources/{uid}/neighbors?direction=out&depth=3&limit=3"
        ))
        .await;
    assert_eq!(capped["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(capped["truncated"], true);
    for (q, needle) in [
        ("depth=0", "depth"),
        ("depth=11", "depth"),
        ("direction=up", "direction"),
        ("types=likes", "unknown edge type"),
        ("kinds=Gizmo", "unknown kind"),
        ("limit=0", "limit"),
        ("hops=2", "unknown parameter"),
    ] {
        let msg = error(&s, &format!("/api/v2/resources/{uid}/neighbors?{q}"), 400).await;
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    error(&s, "/api/v2/resources/nope/neighbors", 404).await;
}

#[tokio::test]
async fn impact_of_a_shared_configmap_reaches_pods_owners_and_services() {
    let s = demo().await;
    let uid = uid_of(
        &s,
        "ConfigMap",
        names::SHARED_CONFIGMAP_NAMESPACE,
        names::SHARED_CONFIGMAP,
    )
    .await;
    let v = s.ok(&format!("/api/v2/resources/{uid}/impact")).await;
    assert_fresh(&v);
    assert_eq!(v["root"], uid.as_str());
    let affected = v["affected"].as_array().unwrap();
    assert_eq!(affected[0]["distance"], 0);
    assert_eq!(affected[0]["resource"]["uid"], uid.as_str());
    let at = |d: u64, kind: &str| {
        affected
            .iter()
            .filter(|a| a["distance"] == d && a["resource"]["kind"] == kind)
            .count()
    };
    assert_eq!(at(1, "Pod"), names::shared_configmap_users(2_000));
    // Workloads use it through their pod templates: also at distance 1.
    assert!(at(1, "ReplicaSet") > 0 && at(1, "Deployment") > 0);
    // Services select the Pods, Ingresses route to the Services.
    assert!(at(2, "Service") > 0 && at(2, "EndpointSlice") > 0);
    assert!(at(3, "Ingress") > 0);
    let distances: Vec<u64> = affected
        .iter()
        .map(|a| a["distance"].as_u64().unwrap())
        .collect();
    assert!(
        distances.windows(2).all(|w| w[0] <= w[1]),
        "sorted by distance"
    );
    let shallow = s
        .ok(&format!("/api/v2/resources/{uid}/impact?depth=1"))
        .await;
    assert!(
        shallow["affected"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["distance"].as_u64().unwrap() <= 1)
    );
    let capped = s
        .ok(&format!("/api/v2/resources/{uid}/impact?limit=5"))
        .await;
    assert_eq!(capped["truncated"], true);
    error(&s, &format!("/api/v2/resources/{uid}/impact?depth=99"), 400).await;
    error(
        &s,
        &format!("/api/v2/resources/{uid}/impact?direction=in"),
        400,
    )
    .await;
}

#[tokio::test]
async fn paths_connect_two_objects_or_say_why_not() {
    let s = demo().await;
    let ns = names::PROBLEM_NAMESPACE;
    let ing = uid_of(&s, "Ingress", ns, "storefront").await;
    let node = uid_of(&s, "Node", "", "ip-10-0-16-4.eu-west-1.compute.internal").await;
    let v = s.ok(&format!("/api/v2/path?from={ing}&to={node}")).await;
    assert_fresh(&v);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.first().unwrap()["uid"], ing.as_str());
    assert_eq!(nodes.last().unwrap()["uid"], node.as_str());
    assert_eq!(v["length"].as_u64().unwrap() as usize, nodes.len() - 1);
    assert_eq!(v["edges"].as_array().unwrap().len(), nodes.len() - 1);
    let msg = error(
        &s,
        &format!("/api/v2/path?from={ing}&to={node}&maxDepth=1"),
        404,
    )
    .await;
    assert!(msg.contains("no path"), "{msg}");
    error(&s, &format!("/api/v2/path?from={ing}"), 400).await;
    error(&s, &format!("/api/v2/path?from={ing}&to=missing"), 404).await;
    error(
        &s,
        &format!("/api/v2/path?from={ing}&to={node}&maxDepth=21"),
        400,
    )
    .await;
}

#[tokio::test]
async fn scoped_graphs_by_namespace_release_and_kinds() {
    let s = demo().await;
    let ns = names::PROBLEM_NAMESPACE;
    let g = s.ok(&format!("/api/v2/graph?namespace={ns}")).await;
    assert_fresh(&g);
    let nodes = g["nodes"].as_array().unwrap();
    assert!(
        nodes
            .iter()
            .all(|n| n["namespace"] == ns || n["namespace"] == "")
    );
    assert!(
        nodes.iter().any(|n| n["kind"] == "Node"),
        "cluster objects pointed at come along"
    );
    let uids: BTreeSet<&str> = nodes.iter().map(|n| n["uid"].as_str().unwrap()).collect();
    assert!(
        g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| uids.contains(e["from"].as_str().unwrap())
                && uids.contains(e["to"].as_str().unwrap()))
    );
    // v2 keeps canonical types and the release nodes.
    let r = s
        .ok(&format!(
            "/api/v2/graph?release={ns}/{}",
            names::HELM_FAILED_RELEASE
        ))
        .await;
    assert!(
        r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "HelmRelease")
    );
    assert!(
        r["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "member-of")
    );
    let both = s
        .ok(&format!(
            "/api/v2/graph?release={}",
            names::HELM_SHARED_RELEASE
        ))
        .await;
    let one = s
        .ok(&format!(
            "/api/v2/graph?release={}&namespace={ns}",
            names::HELM_SHARED_RELEASE
        ))
        .await;
    assert!(both["nodes"].as_array().unwrap().len() > one["nodes"].as_array().unwrap().len());
    let only = s
        .ok(&format!("/api/v2/graph?namespace={ns}&kinds=Service,Pod"))
        .await;
    assert!(
        only["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["kind"] == "Service" || n["kind"] == "Pod")
    );
    let whole = s.ok("/api/v2/graph").await;
    assert_eq!(whole["truncated"], false);
    error(&s, "/api/v2/graph?namespace=BAD", 400).await;
    error(&s, "/api/v2/graph?kinds=Gizmo", 400).await;
}

#[tokio::test]
async fn graphs_past_the_node_cap_are_truncated() {
    let s = Server::start_with(
        astrolabe::ingest::GraphHandle::fixed(demo_graph(2_000)),
        astrolabe::api::ApiConfig {
            max_nodes: 100,
            ..Default::default()
        },
    )
    .await;
    let g = s.ok("/api/v2/graph").await;
    assert_eq!(g["nodes"].as_array().unwrap().len(), 100);
    assert_eq!(g["truncated"], true);
    let v1 = s.ok("/api/v1/graph").await;
    assert_eq!(v1["nodes"].as_array().unwrap().len(), 100);
    assert_eq!(v1["truncated"], true);
    let r = s.get("/api/v1/resources").await;
    assert_eq!(r.json().as_array().unwrap().len(), 100);
    assert_eq!(r.header("x-astrolabe-truncated"), Some("true"));
}

#[tokio::test]
async fn summaries_of_kinds_namespaces_releases_and_problems() {
    let s = demo().await;
    let kinds = s.ok("/api/v2/kinds").await;
    assert_fresh(&kinds);
    let pods = items(&kinds)
        .iter()
        .find(|k| k["kind"] == "Pod" && k["group"] == "")
        .unwrap();
    let all_pods = s.ok("/api/v2/resources?kind=Pod&limit=1000").await;
    assert_eq!(
        pods["count"].as_u64().unwrap() as usize,
        items(&all_pods).len()
    );

    let nss = s.ok("/api/v2/namespaces").await;
    let shop = items(&nss)
        .iter()
        .find(|n| n["name"] == names::PROBLEM_NAMESPACE)
        .unwrap();
    assert!(shop["count"].as_u64().unwrap() > 50);
    assert!(nss["clusterScoped"].as_u64().unwrap() > 0);
    let listed: Vec<&str> = items(&nss)
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(listed, sorted);

    let rel = s.ok("/api/v2/releases").await;
    let failed = items(&rel)
        .iter()
        .find(|r| {
            r["name"] == names::HELM_FAILED_RELEASE && r["namespace"] == names::PROBLEM_NAMESPACE
        })
        .unwrap();
    assert_eq!(failed["status"], "Error");
    assert_eq!(failed["revision"], 3);
    assert!(
        failed["chart"]
            .as_str()
            .unwrap()
            .starts_with(names::HELM_FAILED_RELEASE)
    );
    let total: u64 = failed["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, failed["memberCount"].as_u64().unwrap());
    assert_eq!(
        items(&rel)
            .iter()
            .filter(|r| r["name"] == names::HELM_SHARED_RELEASE)
            .count(),
        2
    );

    let p = s.ok("/api/v2/problems").await;
    let shop = items(&p)
        .iter()
        .find(|g| g["namespace"] == names::PROBLEM_NAMESPACE)
        .unwrap();
    let objects = shop["objects"].as_array().unwrap();
    assert!(
        objects
            .iter()
            .all(|o| o["status"] == "Error" || o["status"] == "Pending")
    );
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "PersistentVolumeClaim" && o["name"] == names::PENDING_PVC)
    );
    let dangling = shop["dangling"].as_array().unwrap();
    assert!(
        dangling
            .iter()
            .any(|d| d["type"] == "uses-configmap"
                && d["missing"]["name"] == names::MISSING_CONFIGMAP)
    );
    assert!(dangling.iter().any(|d| d["type"] == "routes-to"
        && d["missing"]["name"] == names::MISSING_SERVICE
        && d["from"]["kind"] == "Ingress"));
    for path in [
        "/api/v2/kinds?x=1",
        "/api/v2/namespaces?x=1",
        "/api/v2/releases?x=1",
        "/api/v2/problems?x=1",
    ] {
        error(&s, path, 400).await;
    }
}

#[tokio::test]
async fn identical_requests_give_identical_bodies_and_freshness_headers() {
    let s = demo().await;
    let uid = uid_of(&s, "Deployment", names::PROBLEM_NAMESPACE, "storefront").await;
    for path in [
        "/api/v2/resources?limit=500".to_string(),
        format!("/api/v2/resources/{uid}"),
        format!("/api/v2/resources/{uid}/neighbors?depth=3"),
        format!("/api/v2/resources/{uid}/impact"),
        "/api/v2/graph".to_string(),
        "/api/v2/releases".to_string(),
        "/api/v2/problems".to_string(),
    ] {
        let (a, b) = (s.get(&path).await, s.get(&path).await);
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b.body, "{path}");
        assert!(a.header("x-astrolabe-generation").is_some());
        assert_eq!(a.header("x-astrolabe-synced"), Some("true"));
        assert_eq!(a.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths() {
    let s = demo().await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let r = s.request(method.clone(), "/api/v2/resources").await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.json()["error"]["code"], "method_not_allowed");
        assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
    }
    let r = s.get("/api/v2/nothing-here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let head = s.request(reqwest::Method::HEAD, "/api/v2/kinds").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}
