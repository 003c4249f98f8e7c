//! `astrolabe serve` as a process: it reports where it listens, becomes ready after the first
//! load, reads its flags from the environment, rejects bad configuration with the right exit
//! code, and exits 0 on SIGTERM and SIGINT. Every process is stopped by its own PID.

mod support;

use std::path::Path;

use support::process::{command, get, signal, start, wait_exit, wait_ready};

#[test]
fn serves_the_demo_and_stops_cleanly_on_sigterm() {
    let p = start(
        &["serve", "--source", "demo:500", "--listen", "127.0.0.1:0"],
        &[],
    );
    wait_ready(&p.addr);
    let (status, health) = get(&p.addr, "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert!(health["nodes"].as_u64().unwrap() > 400);
    let (status, nss) = get(&p.addr, "/api/v1/namespaces");
    assert_eq!(status, 200);
    assert!(nss.as_array().unwrap().iter().any(|n| n == "shop"));
    signal(&p, "-TERM");
    let (code, log) = wait_exit(p);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn reads_its_configuration_from_the_environment_and_stops_on_sigint() {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dumps/shop-list.json");
    let source = format!("file:{}", dump.display());
    let p = start(
        &["serve"],
        &[
            ("ASTROLABE_SOURCE", &source),
            ("ASTROLABE_LISTEN", "127.0.0.1:0"),
            ("ASTROLABE_MAX_NODES", "10"),
        ],
    );
    wait_ready(&p.addr);
    let (_, g) = get(&p.addr, "/api/v2/graph");
    assert_eq!(
        g["nodes"].as_array().unwrap().len(),
        10,
        "the node cap came from the environment"
    );
    assert_eq!(g["truncated"], true);
    let (_, kinds) = get(&p.addr, "/api/v2/kinds");
    let pods = kinds["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "Pod")
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    assert_eq!(pods, 19, "the dump's Pods");
    signal(&p, "-INT");
    assert_eq!(wait_exit(p).0, Some(0));
}

#[test]
fn bad_configuration_is_a_clear_error() {
    // No cluster configuration anywhere: not in a pod, no KUBECONFIG, an empty home.
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = command()
            .args(args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("KUBECONFIG")
            .env("HOME", home.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // The live source is the default: without a cluster it says so and names the demo, never
    // serving demo data in its place.
    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["serve", "--source", "kube", "--listen", "127.0.0.1:0"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("no Kubernetes cluster configuration found")
                && err.contains("--source demo"),
            "{err}"
        );
    }
    let (code, err) = run(&[
        "serve",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    // A kubeconfig this build cannot use (a SOCKS5 proxy): the server stops at start, rather
    // than listen and never follow the cluster.
    let kubeconfig = home.path().join("socks");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         \x20   proxy-url: socks5://127.0.0.1:1\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
         current-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    let (code, err) = run(&[
        "serve",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot create the Kubernetes client") && err.contains("socks5"),
        "{err}"
    );
    let (code, err) = run(&[
        "serve",
        "--label-selector",
        "app in (",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid --label-selector"), "{err}");
    let (code, err) = run(&[
        "serve",
        "--source",
        "file:/nonexistent/astrolabe",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not exist"), "{err}");
    let (code, err) = run(&["serve", "--listen", "nowhere"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid --listen"), "{err}");
    let (code, _) = run(&["serve", "--max-nodes", "0", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2));
    let (code, err) = run(&["serve", "--source", "demo:many"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid demo size"), "{err}");
}
