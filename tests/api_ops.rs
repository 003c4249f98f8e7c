//! Operations over real HTTP: liveness, readiness before and after the first load, `/health`
//! checks, Prometheus metrics, and the OpenAPI document, against which every real response of
//! the API is validated (so the documentation cannot drift from what handlers send).

mod support;

use std::sync::Arc;

use astrolabe::graph::Change;
use astrolabe::ingest::{self, Event};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::names;
use serde_json::{Value, json};
use support::http::{Server, demo_graph};

#[tokio::test]
async fn readiness_waits_for_the_first_full_load() {
    let (handle, tx, writer) = ingest::start();
    let s = Server::start(handle).await;
    assert_eq!(s.ok("/healthz").await, json!({"status": "ok"}));
    let r = s.get("/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["ready"], false);
    let h = s.ok("/health").await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["synced"], false);
    let source = h["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "source")
        .unwrap();
    assert_eq!(source["status"], "warn");
    // Queries are answered while loading, flagged as not synced.
    let v = s.ok("/api/v2/kinds").await;
    assert_eq!(v["freshness"]["synced"], false);

    let p = Projector::default();
    let obj = p
        .project(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}))
        .unwrap();
    tx.change(Change::Upsert(Arc::new(obj)));
    tx.send(Event::Synced);
    drop(tx);
    // The writer stops once the senders are gone; joining it means everything sent is applied.
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
    assert_eq!(s.ok("/readyz").await["ready"], true);
    let h = s.ok("/health").await;
    assert_eq!(
        (h["status"].as_str(), h["nodes"].as_u64()),
        (Some("healthy"), Some(1))
    );
    for c in h["checks"].as_array().unwrap() {
        for field in ["name", "status", "observedValue", "details"] {
            assert!(c.get(field).is_some(), "{field} in {c}");
        }
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_class_and_objects_by_kind() {
    let s = Server::fixed(demo_graph(600)).await;
    s.ok("/api/v2/kinds").await;
    s.ok("/api/v2/kinds").await;
    s.get("/api/v2/resources?kind=Gizmo").await;
    s.get("/api/v2/resources/no-such-uid").await;
    s.get("/not/a/route").await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(r.body).unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    assert!(
        line(r#"astrolabe_http_responses_total{route="/api/v2/kinds",class="2xx"}"#)
            .ends_with(" 2")
    );
    assert!(
        line(r#"astrolabe_http_responses_total{route="/api/v2/resources",class="4xx"}"#)
            .ends_with(" 1")
    );
    // Path parameters never reach labels: the route template does.
    assert!(
        line(r#"astrolabe_http_responses_total{route="/api/v2/resources/{uid}",class="4xx"}"#)
            .ends_with(" 1")
    );
    assert!(
        line(r#"astrolabe_http_responses_total{route="unmatched",class="4xx"}"#).ends_with(" 1")
    );
    assert!(!text.contains("no-such-uid") && !text.contains("/not/a/route"));
    line(r#"astrolabe_http_request_duration_seconds_bucket{le="0.00005",route="/api/v2/kinds"}"#);
    line(r#"astrolabe_http_request_duration_seconds_count{route="/api/v2/kinds"} 2"#);
    let pods = s.ok("/api/v2/kinds").await;
    let pod_count = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "Pod")
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    assert!(line(r#"astrolabe_objects{kind="Pod"}"#).ends_with(&format!(" {pod_count}")));
    line(r#"astrolabe_objects{kind="apps/Deployment"}"#);
    for name in [
        "astrolabe_graph_nodes ",
        "astrolabe_graph_edges ",
        "astrolabe_graph_generation ",
        "astrolabe_source_synced 1",
        "astrolabe_changes_applied_total ",
        "astrolabe_last_change_age_seconds ",
    ] {
        line(name);
    }
    assert!(text.trim_end().ends_with("# EOF"));
}

/// A concrete URL for a documented path, with real values for its path parameters.
fn concrete(path: &str, uid: &str, ns: &str) -> String {
    path.replace("{uid}", uid)
        .replace("{kind}", "Deployment")
        .replace("{namespace}", ns)
        .replace("{name}", "storefront")
}

#[tokio::test]
async fn every_documented_route_exists_and_its_responses_match_the_document() {
    let s = Server::fixed(demo_graph(1_000)).await;
    let doc = s.ok("/api/v2/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let ns = names::PROBLEM_NAMESPACE;
    let uid = s
        .ok(&format!("/api/v2/objects/Deployment/{ns}/storefront"))
        .await["resource"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let node_uid = s
        .ok(&format!("/api/v2/objects/Node/{}", names::NOT_READY_NODE))
        .await["resource"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/health",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/namespaces",
        "/api/v1/releases",
        "/api/v1/charts",
        "/api/v1/resources",
        "/api/v1/graph",
        "/api/v2/resources",
        "/api/v2/resources/{uid}",
        "/api/v2/objects/{kind}/{namespace}/{name}",
        "/api/v2/objects/{kind}/{name}",
        "/api/v2/resources/{uid}/neighbors",
        "/api/v2/resources/{uid}/impact",
        "/api/v2/path",
        "/api/v2/graph",
        "/api/v2/kinds",
        "/api/v2/namespaces",
        "/api/v2/releases",
        "/api/v2/problems",
        "/api/v2/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut checked = 0;
    for (path, item) in paths {
        let op = &item["get"];
        assert!(op.is_object(), "{path} documents GET");
        let mut urls = vec![concrete(path, &uid, ns)];
        if path == "/api/v2/objects/{kind}/{name}" {
            urls = vec![format!("/api/v2/objects/Node/{}", names::NOT_READY_NODE)];
        }
        if path == "/api/v2/path" {
            urls = vec![
                format!("/api/v2/path?from={uid}&to={node_uid}"),
                format!("/api/v2/path?from={uid}"),
            ];
        }
        // Each route once as it is and once with a bad parameter, to see an error document too.
        urls.push(format!(
            "{}{}limit=bad",
            urls[0],
            if urls[0].contains('?') { "&" } else { "?" }
        ));
        for url in urls {
            let r = s.get(&url).await;
            let status = r.status.to_string();
            let response = op["responses"].get(&status);
            if path.starts_with("/api/v1/") && status == "200"
                || !r
                    .header("content-type")
                    .unwrap_or("")
                    .starts_with("application/json")
            {
                // v1 routes ignore unknown parameters; non-JSON bodies (metrics) are not validated.
                if r.header("content-type")
                    .unwrap_or("")
                    .starts_with("application/json")
                {
                    checked += usize::from(validate(&doc, response, &r.json(), &url));
                }
                continue;
            }
            let response = response.unwrap_or_else(|| {
                panic!("{url} answered {status}, which {path} does not document")
            });
            if path == "/api/v2/openapi.json" && status == "200" {
                // The document itself: checked as the document by every other test here.
                continue;
            }
            assert!(
                validate(&doc, Some(response), &r.json(), &url),
                "{url} answered JSON with {status}, which {path} documents without a JSON schema"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} responses validated");
}

/// Validates `body` against the JSON schema the document gives for this response.
/// Validates a JSON body against the response's documented schema; returns whether there was
/// one to validate against.
fn validate(doc: &Value, response: Option<&Value>, body: &Value, url: &str) -> bool {
    let Some(response) = response else {
        return false;
    };
    let Some(schema) = response.pointer("/content/application~1json/schema") else {
        return false;
    };
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator =
        jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("schema of {url}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(5)
        .collect();
    assert!(
        errors.is_empty(),
        "{url} does not match its documented schema: {errors:#?}"
    );
    true
}

#[tokio::test]
async fn the_document_is_served_as_json_and_is_stable() {
    let s = Server::fixed(demo_graph(300)).await;
    let a = s.get("/api/v2/openapi.json").await;
    let b = s.get("/api/v2/openapi.json").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.body, b.body);
    let doc: Value = a.json();
    assert_eq!(
        doc,
        serde_json::to_value(astrolabe::api::openapi()).unwrap()
    );
}
