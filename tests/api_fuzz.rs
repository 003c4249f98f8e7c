//! Property test over the query strings and path segments of every route of the HTTP API: random
//! combinations of the parameters each handler knows (from its `p.only`/`p.one`/`p.list` calls and
//! its utoipa `params`) and of unknown names, with values drawn from real uids, kinds, namespaces
//! and release names of the demo cluster and from edge cases (empty, huge, negative, unicode,
//! percent-escapes valid and not, commas, slashes, very long strings, repeated parameters), and
//! random path segments for the routes with path parameters.
//!
//! The property: no answer is a 5xx; every body is JSON (except `/metrics`, which is OpenMetrics
//! text); every 4xx body has its API generation's error shape: `{"error": "..."}` under `/api/v1`,
//! `{"error": {"code": "...", "message": "..."}}` elsewhere. The router is driven in-process with
//! `tower::ServiceExt::oneshot`, which is fast enough for a thousand cases in a debug build.
//!
//! The route table below is checked against the OpenAPI document (which the router builds from
//! the same handlers), so a new route or parameter cannot escape the fuzzing unnoticed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use astrolabe::api::{self, ApiConfig, AppState};
use astrolabe::ingest::GraphHandle;
use astrolabe::model::Kind;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use support::http::demo_graph;
use tower::ServiceExt;

/// Every route of `api::assemble` with the query parameters its handler knows. Routes that parse
/// no query at all (operations, `/api/v1/namespaces`) have none; the fuzzer still sends them
/// unknown ones.
const ROUTES: &[(&str, &[&str])] = &[
    ("/health", &[]),
    ("/healthz", &[]),
    ("/readyz", &[]),
    ("/metrics", &[]),
    ("/api/v1/namespaces", &[]),
    ("/api/v1/releases", &["namespace"]),
    ("/api/v1/charts", &["namespace"]),
    ("/api/v1/resources", &["namespace", "release"]),
    ("/api/v1/graph", &["namespace", "release"]),
    (
        "/api/v2/resources",
        &[
            "kind",
            "namespace",
            "labelSelector",
            "release",
            "status",
            "q",
            "limit",
            "continue",
        ],
    ),
    ("/api/v2/resources/{uid}", &[]),
    ("/api/v2/objects/{kind}/{namespace}/{name}", &[]),
    ("/api/v2/objects/{kind}/{name}", &[]),
    (
        "/api/v2/resources/{uid}/neighbors",
        &["direction", "depth", "types", "kinds", "limit"],
    ),
    ("/api/v2/resources/{uid}/impact", &["depth", "limit"]),
    ("/api/v2/path", &["from", "to", "maxDepth"]),
    ("/api/v2/graph", &["namespace", "release", "kinds"]),
    ("/api/v2/kinds", &[]),
    ("/api/v2/namespaces", &[]),
    ("/api/v2/releases", &[]),
    ("/api/v2/problems", &[]),
    ("/api/v2/openapi.json", &[]),
];

/// Parameter names no handler knows, or near misses of known ones (case, brackets, spaces,
/// escapes that decode to a known name).
const UNKNOWN_NAMES: &[&str] = &[
    "foo",
    "Namespace",
    "NAMESPACE",
    "namespace[]",
    "ns",
    "",
    "%6Eamespace",
    "name%20space",
    "limit%00",
    "kind%2C",
    "%E2%98%83",
    "%FF",
    "releases",
    "watch",
    "pretty",
];

/// Values inserted as they are (they are valid URI text): escapes valid and invalid, separators,
/// numbers at and beyond every bound.
const RAW_EDGE_VALUES: &[&str] = &[
    "",
    "%",
    "%Z",
    "%ZZ",
    "%FF",
    "%C3%28",
    "%F0%9F%98",
    "%00",
    "%0A",
    "%2C",
    "%2F",
    "%26",
    "%3D",
    "%25",
    "+",
    "a+b",
    ",",
    ",,,",
    "a,,b",
    "/",
    "a/b",
    "/a/",
    "..",
    "../..",
    ".",
    "-",
    "-1",
    "0",
    "1",
    "2",
    "10",
    "11",
    "20",
    "21",
    "100",
    "1000",
    "1001",
    "50000",
    "50001",
    "2147483648",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "-99999999999999999999",
    "1e3",
    "0x10",
    "%2B5",
    "%205",
    "5%20",
    "1.5",
    "NaN",
    "null",
    "true",
    "[]",
    "%7B%7D",
    "'",
    "(",
    ")",
    "!",
    "*",
    "~",
    ":",
    "@",
    "$",
    ";",
    "=",
    "==",
    "a=b",
    "!a",
    "a!=b",
    "a%20in%20(x,y)",
    "a%20notin%20(x)",
    "a%20in%20(",
    "in%20in%20in",
    "(((",
    "a=b,,c",
    "%21%21a",
    "app.kubernetes.io%2Fname%3Dredis",
    "default%2Fredis",
    "shop%2Fredis",
    "shop%2F",
    "%2Fredis",
    "shop%2Fredis%2Fx",
    "Ready",
    "ready",
    "READY",
    "Bogus",
    "in",
    "out",
    "both",
    "sideways",
    "owns",
    "member-of",
    "targets,claims",
    "bogus-type",
    "eyJucyI6IiIsImtpbmQiOiJQb2QiLCJuYW1lIjoiIiwicXVlcnkiOjB9",
    "eyJ9",
    "!!!!",
    "AAAA",
];

/// Kind spellings the v2 API accepts (and some it does not).
const KIND_SPELLINGS: &[&str] = &[
    "deploy",
    "deployments",
    "deployments.apps",
    "Deployment.apps",
    "po",
    "svc",
    "pvc",
    "pv",
    "ing",
    "helmrelease",
    "HelmRelease.helm.sh",
    "ClusterRole.rbac.authorization.k8s.io",
    "clusterroles",
    "Gizmo",
    "gizmos.example.com",
    "Deployment.",
    ".apps",
];

/// Everything the cases are drawn from: the router over the demo cluster and real values of it.
struct Fixture {
    rt: tokio::runtime::Runtime,
    router: Router,
    uids: Vec<String>,
    kinds: Vec<String>,
    namespaces: Vec<String>,
    names: Vec<String>,
    releases: Vec<String>,
    release_keys: Vec<String>,
    tokens: Vec<String>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let g = demo_graph(600);
    let (nodes, _) = g.canonical();
    let mut kinds = BTreeSet::new();
    let mut namespaces = BTreeSet::new();
    let mut releases = BTreeSet::new();
    let mut release_keys = BTreeSet::new();
    let (mut uids, mut names) = (Vec::new(), BTreeSet::new());
    for (i, o) in nodes.iter().enumerate() {
        kinds.insert(o.kind.name().to_string());
        if !o.namespace.is_empty() {
            namespaces.insert(o.namespace.to_string());
        }
        if o.kind == Kind::HelmRelease {
            releases.insert(o.name.to_string());
            release_keys.insert(format!("{}/{}", o.namespace, o.name));
            uids.push(o.uid.to_string());
        } else if i % 5 == 0 {
            uids.push(o.uid.to_string());
            names.insert(o.name.to_string());
        }
    }
    let router = api::router(AppState::new(GraphHandle::fixed(g), ApiConfig::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    // Real continue tokens, each valid only for the query it came from.
    let mut tokens = Vec::new();
    for q in ["limit=1", "limit=3&kind=Pod", "limit=2&namespace=shop"] {
        let (_, _, body) = rt.block_on(call(&router, &format!("/api/v2/resources?{q}")));
        let v: Value = serde_json::from_slice(&body).expect("a page");
        tokens.push(
            v["continue"]
                .as_str()
                .expect("a continue token")
                .to_string(),
        );
    }
    Fixture {
        rt,
        router,
        uids,
        kinds: kinds.into_iter().collect(),
        namespaces: namespaces.into_iter().collect(),
        names: names.into_iter().collect(),
        releases: releases.into_iter().collect(),
        release_keys: release_keys.into_iter().collect(),
        tokens,
    }
});

/// One GET through the router: status, content type, body.
async fn call(router: &Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .method("GET")
        .uri(uri)
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("the test built an invalid URI {uri:?}: {e}"));
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body read")
        .to_vec();
    (status, ct, body)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encoded(values: &[String]) -> Vec<String> {
    values.iter().map(|v| enc(v)).collect()
}

/// Valid-looking values for a known parameter, URI-encoded.
fn valid_for(name: &str) -> Vec<String> {
    let fx = &*FIXTURE;
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match name {
        "namespace" => encoded(&fx.namespaces),
        "release" => [encoded(&fx.releases), encoded(&fx.release_keys)].concat(),
        "kind" | "kinds" => [encoded(&fx.kinds), strs(KIND_SPELLINGS)].concat(),
        "status" => strs(&[
            "Ready",
            "Pending",
            "Error",
            "Unknown",
            "error",
            "Ready,Error",
        ]),
        "labelSelector" => strs(&[
            "app%3Dredis",
            "app.kubernetes.io%2Fmanaged-by%3DHelm",
            "tier%20in%20(backend,frontend)",
            "tier%20notin%20(backend)",
            "app",
            "%21app",
            "app%21%3Dweb",
            "app%3Dweb,tier",
        ]),
        "q" => encoded(&fx.names),
        "limit" | "depth" | "maxDepth" => strs(&["1", "2", "3", "5", "10", "20", "100", "1000"]),
        "continue" => fx.tokens.clone(),
        "direction" => strs(&["in", "out", "both"]),
        "types" => strs(&[
            "owns",
            "selects",
            "member-of",
            "uses-configmap,uses-secret",
            "runs-on",
            "targets",
            "claims",
        ]),
        "from" | "to" => encoded(&fx.uids),
        _ => [encoded(&fx.namespaces), encoded(&fx.releases)].concat(),
    }
}

/// A value for parameter `name`: mostly valid ones, else edge cases, random unicode, long text,
/// comma lists.
fn value(name: &'static str) -> BoxedStrategy<String> {
    let valid = valid_for(name);
    let any_valid: Vec<String> = [
        valid.clone(),
        encoded(&FIXTURE.uids),
        encoded(&FIXTURE.kinds),
    ]
    .concat();
    prop_oneof![
        5 => select(valid.clone()),
        3 => select(RAW_EDGE_VALUES).prop_map(str::to_string),
        2 => select(any_valid),
        2 => any::<String>().prop_map(|s| enc(&s)),
        1 => "[a-z0-9.-]{0,80}",
        1 => (1usize..6000).prop_map(|n| "a".repeat(n)),
        1 => (1usize..600).prop_map(|n| "%E2%82%AC".repeat(n)),
        1 => (select(valid.clone()), select(RAW_EDGE_VALUES))
            .prop_map(|(v, e)| format!("{v}{e}")),
        1 => proptest::collection::vec(select(valid), 1..5).prop_map(|v| v.join(",")),
    ]
    .boxed()
}

/// A query string (without `?`): 0 to 6 parameters, known names more often than unknown ones,
/// repeats allowed, sometimes without `=`, sometimes with stray `&`.
fn query(known: &'static [&'static str]) -> BoxedStrategy<String> {
    let known_or_unknown: BoxedStrategy<&'static str> = if known.is_empty() {
        select(UNKNOWN_NAMES).boxed()
    } else {
        prop_oneof![3 => select(known), 1 => select(UNKNOWN_NAMES)].boxed()
    };
    let pair = known_or_unknown.prop_flat_map(|name| {
        (Just(name), value(name), prop::bool::weighted(0.9)).prop_map(|(n, v, eq)| {
            if eq {
                format!("{n}={v}")
            } else {
                format!("{n}{v}")
            }
        })
    });
    (
        proptest::collection::vec(pair, 0..7),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(pairs, lead, trail)| {
            let mut q = pairs.join("&");
            if lead {
                q.insert(0, '&');
            }
            if trail {
                q.push('&');
            }
            q
        })
        .boxed()
}

/// A path segment: a real uid, kind, namespace or name, or junk (invalid UTF-8 escapes, NUL,
/// encoded slashes, dot segments, unicode, very long).
fn segment() -> BoxedStrategy<String> {
    let fx = &*FIXTURE;
    let real: Vec<String> = [
        encoded(&fx.uids),
        encoded(&fx.kinds),
        encoded(&fx.namespaces),
        encoded(&fx.names),
        KIND_SPELLINGS.iter().map(|s| s.to_string()).collect(),
    ]
    .concat();
    prop_oneof![
        6 => select(real),
        1 => select(vec![
            "%FF", "%C3%28", "%00", "%2F", "a%2Fb", "..", ".", "%2E%2E", "%20", "+", "%25",
            "%", "%ZZ", "-", "_", "~", "%E2%98%83", "HelmRelease", "x",
        ])
        .prop_map(str::to_string),
        1 => any::<String>().prop_filter("non-empty", |s| !s.is_empty()).prop_map(|s| enc(&s)),
        1 => (1usize..5000).prop_map(|n| "s".repeat(n)),
    ]
    .boxed()
}

/// A request URI for `route`: its path parameters filled with segments, and a query.
fn case(route: &'static str) -> BoxedStrategy<String> {
    let known = ROUTES
        .iter()
        .find(|(r, _)| *r == route)
        .unwrap_or_else(|| panic!("{route} is in the route table"))
        .1;
    let holes = route.matches('{').count();
    (
        proptest::collection::vec(segment(), holes),
        query(known),
        prop::bool::weighted(0.85),
    )
        .prop_map(move |(segs, q, with_q)| {
            let mut path = String::new();
            let mut segs = segs.into_iter();
            for part in route.split('/').skip(1) {
                path.push('/');
                if part.starts_with('{') {
                    path.push_str(&segs.next().expect("a segment per hole"));
                } else {
                    path.push_str(part);
                }
            }
            if with_q { format!("{path}?{q}") } else { path }
        })
        .boxed()
}

/// Whether a path belongs to the v1 surface, whose errors have the v1 shape.
fn is_v1(path: &str) -> bool {
    path.starts_with("/api/v1/") || path == "/api/v1"
}

/// The property, for one request.
fn check(uri: &str) -> Result<(), TestCaseError> {
    let fx = &*FIXTURE;
    let (status, ct, body) = fx.rt.block_on(call(&fx.router, uri));
    let text = || {
        String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>()
    };
    let path = uri.split('?').next().unwrap_or(uri);
    prop_assert!(!status.is_server_error(), "GET {uri}: {status}: {}", text());
    if path == "/metrics" {
        prop_assert_eq!(status, StatusCode::OK, "GET {}", uri);
        prop_assert!(
            ct.starts_with("application/openmetrics-text"),
            "GET {uri}: content-type {ct:?}"
        );
        prop_assert!(std::str::from_utf8(&body).is_ok(), "GET {uri}: not text");
        return Ok(());
    }
    prop_assert!(
        ct.starts_with("application/json"),
        "GET {uri}: {status} with content-type {ct:?}: {}",
        text()
    );
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        TestCaseError::fail(format!(
            "GET {uri}: {status}, body is not JSON ({e}): {}",
            text()
        ))
    })?;
    if status.is_client_error() {
        let m = v
            .as_object()
            .ok_or_else(|| TestCaseError::fail(format!("GET {uri}: {status}: error body {v}")))?;
        let keys: Vec<&String> = m.keys().collect();
        prop_assert_eq!(
            keys,
            vec!["error"],
            "GET {}: {} error body {}",
            uri,
            status,
            v
        );
        if is_v1(path) {
            prop_assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "GET {uri}: {status}: v1 error is not a message string: {v}"
            );
        } else {
            let e = v["error"]
                .as_object()
                .ok_or_else(|| TestCaseError::fail(format!("GET {uri}: {status}: v2 error {v}")))?;
            let keys: BTreeSet<&str> = e.keys().map(String::as_str).collect();
            prop_assert_eq!(
                keys,
                BTreeSet::from(["code", "message"]),
                "GET {}: {} v2 error {}",
                uri,
                status,
                v
            );
            let code = match status.as_u16() {
                400 => "bad_request",
                404 => "not_found",
                405 => "method_not_allowed",
                _ => "",
            };
            prop_assert_eq!(
                e["code"].as_str(),
                Some(code),
                "GET {}: {} {}",
                uri,
                status,
                v
            );
            prop_assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "GET {uri}: {status}: empty message: {v}"
            );
        }
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // The cases are cheap to regenerate; no regression file next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The route table is the router's: same paths, same query and path parameters as the OpenAPI
/// document that `assemble` builds from the handlers' annotations.
#[test]
fn route_table_matches_the_openapi_document() {
    let doc = serde_json::to_value(api::openapi()).expect("the document serialises");
    let mut documented: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods: Vec<&String> = item.as_object().expect("path item").keys().collect();
        assert!(
            methods.iter().all(|m| *m == "get" || *m == "parameters"),
            "{path}: only GET routes are fuzzed, found {methods:?}"
        );
        let (mut query, mut path_params) = (BTreeSet::new(), BTreeSet::new());
        for p in item["get"]["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().expect("parameter name").to_string();
            match p["in"].as_str() {
                Some("query") => query.insert(name),
                Some("path") => path_params.insert(name),
                other => panic!("{path}: parameter {name} in {other:?}"),
            };
        }
        documented.insert(path.clone(), (query, path_params));
    }
    let table: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = ROUTES
        .iter()
        .map(|(path, known)| {
            let holes = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_string)
                .collect();
            (
                path.to_string(),
                (known.iter().map(|s| s.to_string()).collect(), holes),
            )
        })
        .collect();
    assert_eq!(table, documented);
}

/// Path segments that percent-decode to invalid UTF-8, in every hole of every route with path
/// parameters: deterministic, so that this case does not depend on the random draw.
#[test]
fn path_segments_that_are_not_utf8() {
    for (route, _) in ROUTES.iter().filter(|(r, _)| r.contains('{')) {
        let holes = route.matches('{').count();
        for bad in ["%FF", "%C3%28", "%F0%9F%98", "%80abc"] {
            for hole in 0..holes {
                let mut i = 0;
                let uri: String = route
                    .split('/')
                    .skip(1)
                    .map(|part| {
                        let seg = if part.starts_with('{') {
                            i += 1;
                            if i - 1 == hole {
                                bad.to_string()
                            } else {
                                "x".to_string()
                            }
                        } else {
                            part.to_string()
                        };
                        format!("/{seg}")
                    })
                    .collect();
                if let Err(e) = check(&uri) {
                    panic!("{e}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(40))]

    #[test]
    fn health(uri in case("/health")) { check(&uri)?; }

    #[test]
    fn healthz(uri in case("/healthz")) { check(&uri)?; }

    #[test]
    fn readyz(uri in case("/readyz")) { check(&uri)?; }

    #[test]
    fn metrics(uri in case("/metrics")) { check(&uri)?; }

    #[test]
    fn v1_namespaces(uri in case("/api/v1/namespaces")) { check(&uri)?; }

    #[test]
    fn v1_releases(uri in case("/api/v1/releases")) { check(&uri)?; }

    #[test]
    fn v1_charts(uri in case("/api/v1/charts")) { check(&uri)?; }

    #[test]
    fn v1_resources(uri in case("/api/v1/resources")) { check(&uri)?; }

    #[test]
    fn v1_graph(uri in case("/api/v1/graph")) { check(&uri)?; }

    #[test]
    fn v2_resources(uri in case("/api/v2/resources")) { check(&uri)?; }

    #[test]
    fn v2_resource(uri in case("/api/v2/resources/{uid}")) { check(&uri)?; }

    #[test]
    fn v2_object_namespaced(uri in case("/api/v2/objects/{kind}/{namespace}/{name}")) { check(&uri)?; }

    #[test]
    fn v2_object_cluster(uri in case("/api/v2/objects/{kind}/{name}")) { check(&uri)?; }

    #[test]
    fn v2_neighbors(uri in case("/api/v2/resources/{uid}/neighbors")) { check(&uri)?; }

    #[test]
    fn v2_impact(uri in case("/api/v2/resources/{uid}/impact")) { check(&uri)?; }

    #[test]
    fn v2_path(uri in case("/api/v2/path")) { check(&uri)?; }

    #[test]
    fn v2_graph(uri in case("/api/v2/graph")) { check(&uri)?; }

    #[test]
    fn v2_kinds(uri in case("/api/v2/kinds")) { check(&uri)?; }

    #[test]
    fn v2_namespaces(uri in case("/api/v2/namespaces")) { check(&uri)?; }

    #[test]
    fn v2_releases(uri in case("/api/v2/releases")) { check(&uri)?; }

    #[test]
    fn v2_problems(uri in case("/api/v2/problems")) { check(&uri)?; }

    #[test]
    fn openapi_json(uri in case("/api/v2/openapi.json")) { check(&uri)?; }
}

proptest! {
    #![proptest_config(config(120))]

    /// Paths around the routes (extra or missing segments, near misses of route names), most of
    /// which no route matches: the fallback's 404 has the error shape of the generation the path
    /// falls under.
    #[test]
    fn unrouted_paths(
        prefix in select(vec![
            "/", "/api", "/api/", "/api/v1", "/api/v1/", "/api/v2", "/api/v2/", "/api/v3/",
            "/api/v1/graph/", "/api/v1/resources/", "/api/v2/resources/", "/api/v2/objects/",
            "/api/v2/path/", "/api/v2/graph/", "/health/", "/metrics/", "/api/v1x/",
        ]),
        segs in proptest::collection::vec(segment(), 0..4),
        q in query(&["namespace", "release", "kind", "limit"]),
    ) {
        let uri = format!("{prefix}{}?{q}", segs.join("/"));
        check(&uri)?;
    }
}
