//! `astrolabe inspect` end to end: the real binary on real-world manifests (committed under
//! `tests/fixtures/public-manifests` with their licence notices), on `kubectl get -o json|yaml`
//! list dumps, and on bad input; JSON, table and DOT output (DOT is rendered by Graphviz).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_astrolabe"))
        .args(args)
        .env("ASTROLABE_LOG", "error")
        .output()
        .expect("the binary runs")
}

fn json_of(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = run(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Edges of a JSON graph as readable `Kind/ns/name type Kind/ns/name` lines.
fn edges(g: &Value) -> BTreeSet<String> {
    let name = |uid: &Value| {
        let n = g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["uid"] == *uid)
            .expect("edge ends are nodes");
        let ns = n["namespace"].as_str().unwrap();
        if ns.is_empty() {
            format!(
                "{}/{}",
                n["kind"].as_str().unwrap(),
                n["name"].as_str().unwrap()
            )
        } else {
            format!(
                "{}/{}/{}",
                n["kind"].as_str().unwrap(),
                ns,
                n["name"].as_str().unwrap()
            )
        }
    };
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                name(&e["from"]),
                e["type"].as_str().unwrap(),
                name(&e["to"])
            )
        })
        .collect()
}

fn kinds(g: &Value) -> Vec<String> {
    g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn online_boutique_manifests_link_deployments_to_their_service_accounts() {
    let f = fixture("public-manifests/online-boutique/release/kubernetes-manifests.yaml");
    let g = json_of(&["inspect", f.to_str().unwrap()]);
    assert_eq!(g["nodes"].as_array().unwrap().len(), 35);
    let e = edges(&g);
    assert_eq!(e.len(), 11, "{e:#?}");
    for svc in [
        "adservice",
        "cartservice",
        "checkoutservice",
        "currencyservice",
        "emailservice",
        "frontend",
    ] {
        assert!(
            e.contains(&format!(
                "Deployment/default/{svc} uses-sa ServiceAccount/default/{svc}"
            )),
            "{svc}"
        );
    }
    // No Pods in manifests, so no Service selects anything; nothing is invented.
    assert!(e.iter().all(|l| l.contains(" uses-sa ")));
    // Every node carries the fields the issue lists.
    for n in g["nodes"].as_array().unwrap() {
        for field in [
            "uid",
            "kind",
            "apiVersion",
            "namespace",
            "name",
            "status",
            "message",
            "labels",
            "release",
        ] {
            assert!(n.get(field).is_some(), "{field} missing in {n}");
        }
    }
}

#[test]
fn helm_rendered_manifests_form_a_release() {
    let dir = fixture(
        "public-manifests/otel-helm/charts/opentelemetry-collector/examples/statefulset-with-pvc/rendered",
    );
    let g = json_of(&["inspect", dir.to_str().unwrap()]);
    let e = edges(&g);
    for member in [
        "ConfigMap/default/example-opentelemetry-collector-statefulset",
        "ServiceAccount/default/example-opentelemetry-collector",
        "StatefulSet/default/example-opentelemetry-collector",
        "Service/default/example-opentelemetry-collector",
    ] {
        assert!(
            e.contains(&format!("{member} member-of HelmRelease/default/example")),
            "{member}"
        );
    }
    assert!(e.contains(
        "StatefulSet/default/example-opentelemetry-collector uses-configmap ConfigMap/default/example-opentelemetry-collector-statefulset"
    ));
    let sts = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "StatefulSet")
        .unwrap();
    assert_eq!(sts["release"], "example");
    assert!(
        sts["chart"]
            .as_str()
            .unwrap()
            .starts_with("opentelemetry-collector-")
    );
}

#[test]
fn ingress_example_routes_to_its_services() {
    let f = fixture("public-manifests/ingress-nginx/docs/examples/multi-tls/multi-tls.yaml");
    let e = edges(&json_of(&["inspect", f.to_str().unwrap()]));
    assert_eq!(
        e,
        BTreeSet::from([
            "Ingress/default/foo-tls routes-to Service/default/http-svc".to_string(),
            "Ingress/default/foo-tls routes-to Service/default/nginx".to_string(),
        ])
    );
}

#[test]
fn the_whole_fixture_tree_loads_skipping_only_the_helm_values_files() {
    let dir = fixture("public-manifests");
    let out = run(&["inspect", dir.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped 2 malformed document(s)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("values.yaml#0").count(), 2, "{stderr}");
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(g["nodes"].as_array().unwrap().len() > 250);
    // The 2018 sock-shop uses extensions/v1beta1 Deployments: they are Deployments all the same.
    assert!(
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "Deployment" && n["apiVersion"] == "extensions/v1beta1")
    );
}

fn shop() -> Value {
    json_of(&["inspect", fixture("dumps/shop-list.json").to_str().unwrap()])
}

#[test]
fn a_kubectl_list_dump_gives_every_kind_of_edge() {
    let g = shop();
    let e = edges(&g);
    let expect = [
        "ReplicaSet/shop/checkout-btdqshdwb9 owns Pod/shop/checkout-btdqshdwb9-jxllj",
        "Deployment/shop/checkout owns ReplicaSet/shop/checkout-btdqshdwb9",
        "Service/shop/checkout selects Pod/shop/checkout-btdqshdwb9-jxllj",
        "Service/shop/checkout endpoints EndpointSlice/shop/checkout-ztzw2",
        "EndpointSlice/shop/checkout-ztzw2 targets Pod/shop/checkout-btdqshdwb9-jxllj",
        "StatefulSet/shop/redis claims PersistentVolumeClaim/shop/data-redis-0",
        "Pod/shop/redis-0 mounts PersistentVolumeClaim/shop/data-redis-0",
        "Ingress/shop/storefront routes-to Service/shop/storefront",
        "HorizontalPodAutoscaler/shop/checkout scales Deployment/shop/checkout",
        "PodDisruptionBudget/shop/checkout selects Pod/shop/checkout-btdqshdwb9-jxllj",
        "NetworkPolicy/shop/default-deny-ingress selects Pod/shop/redis-0",
        "Deployment/shop/checkout member-of HelmRelease/shop/checkout",
        "CronJob/shop/report-generator owns Job/shop/report-generator-29453760",
        "Job/shop/report-generator-29453760 owns Pod/shop/report-generator-29453760-c7kbz",
    ];
    for line in expect {
        assert!(e.contains(line), "missing: {line}");
    }
    let types: BTreeSet<&str> = e.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    for t in [
        "owns",
        "selects",
        "endpoints",
        "targets",
        "routes-to",
        "uses-secret",
        "uses-class",
        "mounts",
        "claims",
        "binds",
        "uses-configmap",
        "uses-sa",
        "runs-on",
        "scales",
        "member-of",
    ] {
        assert!(types.contains(t), "no {t} edge in the dump");
    }
    // The missing ConfigMap and the missing Service give no edge (and no phantom node).
    assert!(!e.iter().any(|l| l.contains("email-templates")));
    assert!(!kinds(&g).is_empty());
    let release = |name: &str| {
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == "HelmRelease" && n["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(release("checkout")["status"], "Error");
    assert_eq!(release("redis")["status"], "Ready");
}

#[test]
fn nothing_secret_from_the_dump_reaches_the_output() {
    let raw: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("dumps/shop-list.json")).unwrap())
            .unwrap();
    let mut secrets = Vec::new();
    for item in raw["items"].as_array().unwrap() {
        if matches!(item["kind"].as_str(), Some("Secret" | "ConfigMap")) {
            for field in ["data", "stringData", "binaryData"] {
                if let Some(m) = item[field].as_object() {
                    secrets.extend(
                        m.values()
                            .filter_map(Value::as_str)
                            .filter(|v| v.len() >= 8)
                            .map(str::to_string),
                    );
                }
            }
        }
    }
    assert!(secrets.len() > 10, "the dump carries data to leak");
    let mut any_last_applied = false;
    for item in raw["items"].as_array().unwrap() {
        any_last_applied |=
            item["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .is_string();
    }
    assert!(any_last_applied && raw.to_string().contains("managedFields"));
    for format in ["json", "table", "dot"] {
        let out = run(&[
            "inspect",
            fixture("dumps/shop-list.json").to_str().unwrap(),
            "-o",
            format,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{format} output leaks {s}");
        }
        assert!(!text.contains("managedFields") && !text.contains("last-applied-configuration"));
    }
}

#[test]
fn a_typed_yaml_pod_list_fills_kind_and_api_version() {
    let g = json_of(&["inspect", fixture("dumps/shop-pods.yaml").to_str().unwrap()]);
    let k = kinds(&g);
    assert_eq!(k.len(), 19);
    assert!(k.iter().all(|k| k == "Pod"));
    assert!(
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["apiVersion"] == "v1")
    );
}

#[test]
fn filters_select_by_kind_namespace_and_selector() {
    let dump = fixture("dumps/shop-list.json");
    let d = dump.to_str().unwrap();
    let g = json_of(&["inspect", d, "--kind", "deploy,svc", "-n", "shop"]);
    let k: BTreeSet<String> = kinds(&g).into_iter().collect();
    assert_eq!(
        k,
        BTreeSet::from(["Deployment".to_string(), "Service".to_string()])
    );
    // Only edges between shown nodes.
    assert!(edges(&g).iter().all(|l| !l.contains("Pod/")));
    let g = json_of(&[
        "inspect",
        d,
        "--kind",
        "Pod",
        "-l",
        "app in (storefront, payment-worker)",
    ]);
    assert_eq!(g["nodes"].as_array().unwrap().len(), 5);
    let g = json_of(&[
        "inspect",
        d,
        "--kind",
        "Pod",
        "-l",
        "app.kubernetes.io/name,app.kubernetes.io/name!=redis",
    ]);
    let names: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["checkout-btdqshdwb9-jxllj", "checkout-btdqshdwb9-r5vcz"]
    );
    let g = json_of(&["inspect", d, "--kind", "Pod", "-l", "!app"]);
    assert_eq!(g["nodes"].as_array().unwrap().len(), 3);
    // Cluster-scoped objects by the empty namespace.
    let g = json_of(&["inspect", d, "-n", ""]);
    let k: BTreeSet<String> = kinds(&g).into_iter().collect();
    assert_eq!(
        k,
        [
            "IngressClass",
            "Namespace",
            "Node",
            "PersistentVolume",
            "StorageClass"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
}

#[test]
fn neighbors_follow_direction_and_depth() {
    let d = fixture("dumps/shop-list.json");
    let d = d.to_str().unwrap();
    // What depends on the checkout ConfigMap: its Pods (depth 1), then their owners (depth 2).
    let g = json_of(&[
        "inspect",
        d,
        "--neighbors",
        "ConfigMap/shop/checkout-config",
        "--direction",
        "in",
        "--depth",
        "2",
    ]);
    let k = kinds(&g);
    assert!(
        k.contains(&"Pod".to_string())
            && k.contains(&"ReplicaSet".to_string())
            && k.contains(&"Deployment".to_string())
    );
    assert!(
        edges(&g)
            .iter()
            .all(|l| !l.ends_with("ServiceAccount/shop/default")),
        "out-edges of dependents are not followed"
    );
    let g = json_of(&[
        "inspect",
        d,
        "--neighbors",
        "Node/ip-10-0-16-4.eu-west-1.compute.internal",
        "--direction",
        "in",
    ]);
    assert_eq!(kinds(&g).iter().filter(|k| *k == "Pod").count(), 10);
    let out = run(&[
        "inspect",
        d,
        "--neighbors",
        "Deployment/shop/checkout",
        "--depth",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DEPTH"), "{text}");
    assert!(
        text.contains("EDGES\n")
            && text
                .contains("Deployment/shop/checkout --owns--> ReplicaSet/shop/checkout-btdqshdwb9")
    );
}

#[test]
fn bad_input_is_a_clear_error_with_the_right_exit_code() {
    let d = fixture("dumps/shop-list.json");
    let d = d.to_str().unwrap();
    let cases: [(&[&str], i32, &str); 9] = [
        (
            &["inspect", d, "-l", "a in (x"],
            2,
            "invalid label selector",
        ),
        (&["inspect", d, "-l", "=b"], 2, "invalid label selector"),
        (
            &["inspect", d, "--kind", "Gizmo"],
            2,
            "unknown kind \"Gizmo\"",
        ),
        (
            &["inspect", d, "--neighbors", "Deployment"],
            2,
            "expected KIND/NAMESPACE/NAME",
        ),
        (
            &["inspect", d, "--depth", "0", "--neighbors", "Node/x"],
            2,
            "0",
        ),
        (&["inspect", d, "--direction", "sideways"], 2, "sideways"),
        (
            &["inspect", d, "--neighbors", "Deployment/shop/nope"],
            1,
            "no Deployment named shop/nope",
        ),
        (
            &["inspect", "/nonexistent/astrolabe/path"],
            1,
            "does not exist",
        ),
        (&["inspect", "demo:lots"], 2, "invalid demo size"),
    ];
    for (args, code, needle) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
}

#[test]
fn malformed_documents_are_skipped_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good, namespace: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: a}\n---\n: : bad yaml [\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: also-good, namespace: a}\n",
    )
    .unwrap();
    let out = run(&["inspect", path.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped 2 malformed document(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mixed.yaml#1") && stderr.contains("metadata.name"),
        "{stderr}"
    );
    assert!(stderr.contains("mixed.yaml#2"), "{stderr}");
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["good", "also-good"]);
}

#[test]
fn dot_output_renders_in_graphviz() {
    let out = run(&[
        "inspect",
        fixture("dumps/shop-list.json").to_str().unwrap(),
        "-o",
        "dot",
    ]);
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.starts_with("digraph astrolabe {") && dot.contains("label=\"owns\""));
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Graphviz `dot` is installed (scripts/install-deps.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let rendered = child.wait_with_output().unwrap();
    assert!(
        rendered.status.success(),
        "dot failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let svg = String::from_utf8_lossy(&rendered.stdout);
    assert!(svg.contains("<svg") && svg.contains("checkout"));
}

#[test]
fn the_demo_source_builds_a_complete_graph() {
    let g = json_of(&["inspect", "demo:400"]);
    let nodes = g["nodes"].as_array().unwrap();
    assert!(nodes.len() >= 350, "{}", nodes.len());
    let types: BTreeSet<String> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types.len(),
        15,
        "every edge type appears in the demo: {types:?}"
    );
    for status in ["Ready", "Pending", "Error"] {
        assert!(nodes.iter().any(|n| n["status"] == status), "{status}");
    }
    // Identical input, identical output. The demo is anchored at midnight UTC of the current day,
    // so two runs differ (in their timestamps only) if midnight passes between them: those are
    // left out of the comparison.
    let without_clock = |mut v: Value| {
        for n in v["nodes"].as_array_mut().unwrap() {
            let n = n.as_object_mut().unwrap();
            n.remove("creationTimestamp");
            n.remove("deletionTimestamp");
        }
        v
    };
    let again = json_of(&["inspect", "demo:400"]);
    assert_eq!(without_clock(g), without_clock(again));
}
