//! Benchmarks that read like the specification of the graph's speed:
//!
//! - `apply`: building a graph from the demo mix (already projected), by size: the writer's ingest
//!   rate. One element = one object.
//! - `project`: turning one object of each kind into its projection (done by sources, in
//!   parallel with the writer).
//! - `selectors`: the two directions of selector evaluation on a 100 K-object graph: a Pod whose
//!   labels change finds the Services/PDBs/NetworkPolicies that select it, and a Service whose
//!   selector changes finds its Pods.
//! - `delete`: removing Pods that point at hub objects (their namespace's ServiceAccount, shared
//!   ConfigMaps, a Node) and putting them back.

use std::sync::Arc;

/// The binary's allocator, so that the figures are the server's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use astrolabe::graph::{Change, Graph};
use astrolabe::model::{Kind, Object};
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

/// Whether criterion runs for real (`cargo bench`) rather than once each under `cargo test`,
/// where the sizes shrink so that the test run stays quick in a debug build.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `full` when benchmarking, `quick` under `cargo test`.
fn size(full: usize, quick: usize) -> usize {
    if benching() { full } else { quick }
}

fn demo_values(objects: usize) -> Vec<Value> {
    DemoCluster::new(DemoConfig {
        objects,
        ..DemoConfig::default()
    })
    .objects()
    .collect()
}

fn projected(objects: usize) -> Vec<Arc<Object>> {
    let p = Projector::default();
    DemoCluster::new(DemoConfig {
        objects,
        ..DemoConfig::default()
    })
    .objects()
    .map(|v| Arc::new(p.project(&v).expect("demo objects project")))
    .collect()
}

fn build(objs: &[Arc<Object>]) -> Graph {
    let mut g = Graph::new();
    for o in objs {
        g.apply(Change::Upsert(o.clone()));
    }
    g
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    let sizes: &[usize] = if benching() {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[1_000]
    };
    for &size in sizes {
        let objs = projected(size);
        group.throughput(Throughput::Elements(objs.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &objs, |b, objs| {
            b.iter_batched(
                || objs.clone(),
                |objs| build(&objs),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// A new version of every object of a built graph (only its resourceVersion differs): what the
/// writer does for a cluster that keeps changing, each change finding its object by uid.
fn update(c: &mut Criterion) {
    let mut group = c.benchmark_group("update");
    group.sample_size(10);
    let size = size(1_000_000, 1_000);
    let a = projected(size);
    let b: Vec<Arc<Object>> = a
        .iter()
        .map(|o| {
            let mut o = Object::clone(o);
            o.resource_version = format!("{}-b", o.resource_version).into();
            Arc::new(o)
        })
        .collect();
    let mut g = build(&a);
    let mut next = [&b, &a].into_iter().cycle();
    group.throughput(Throughput::Elements(a.len() as u64));
    group.bench_function(BenchmarkId::from_parameter(size), |bench| {
        bench.iter(|| {
            for o in next.next().expect("endless") {
                g.apply(Change::Upsert(o.clone()));
            }
        })
    });
    group.finish();
}

fn project(c: &mut Criterion) {
    let p = Projector::default();
    let values = demo_values(size(5_000, 500));
    let mut group = c.benchmark_group("project");
    let mut kinds: Vec<(Kind, Vec<&Value>)> = Vec::new();
    for v in &values {
        let kind = Kind::from_api_version(
            v["apiVersion"].as_str().unwrap_or(""),
            v["kind"].as_str().unwrap_or(""),
        );
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, vs)) => vs.push(v),
            None => kinds.push((kind, vec![v])),
        }
    }
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    for (kind, vs) in &kinds {
        group.throughput(Throughput::Elements(vs.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(kind.name()), vs, |b, vs| {
            b.iter(|| {
                for v in vs.iter() {
                    std::hint::black_box(p.project(v).expect("projects"));
                }
            })
        });
    }
    group.finish();
}

/// The same object with one label flipped between two values.
fn flipped(o: &Object, key: &str, a: &str, b: &str) -> [Arc<Object>; 2] {
    let with = |v: &str| {
        let mut o = o.clone();
        let mut pairs: Vec<_> = o.labels.iter().cloned().collect();
        pairs.retain(|(k, _)| k.as_str() != key);
        pairs.push((key.into(), v.into()));
        o.labels = astrolabe::model::Labels::from_pairs(pairs);
        Arc::new(o)
    };
    [with(a), with(b)]
}

fn selectors(c: &mut Criterion) {
    let objs = projected(size(100_000, 2_000));
    let mut g = build(&objs);
    let mut group = c.benchmark_group("selectors");
    // A Pod selected by Services/PDBs/NetworkPolicies: flipping a label it is not selected by
    // re-runs the reverse lookup (its labels changed) without moving edges.
    let pod = objs
        .iter()
        .find(|o| o.kind == Kind::Pod && o.labels.get_str("app").is_some())
        .expect("a labelled pod");
    let versions = flipped(pod, "bench-flip", "a", "b");
    let mut i = 0;
    group.bench_function("pod_labels_changed", |b| {
        b.iter(|| {
            i ^= 1;
            g.apply(Change::Upsert(versions[i].clone()))
        })
    });
    // A Service whose selector changes: forward evaluation through the label postings.
    let svc = objs
        .iter()
        .find(|o| o.kind == Kind::Service && o.pod_selector().is_some())
        .expect("a service with a selector");
    let mut other = (**svc).clone();
    if let astrolabe::model::Spec::Service(s) = &mut other.spec {
        let mut info = (**s).clone();
        info.selector =
            Some(astrolabe::model::Selector::parse("app=nothing-matches").expect("selector"));
        **s = info;
    }
    let versions = [svc.clone(), Arc::new(other)];
    group.bench_function("service_selector_changed", |b| {
        b.iter(|| {
            i ^= 1;
            g.apply(Change::Upsert(versions[i].clone()))
        })
    });
    group.finish();
}

fn delete(c: &mut Criterion) {
    let objs = projected(size(100_000, 2_000));
    let pods: Vec<Arc<Object>> = objs
        .iter()
        .filter(|o| o.kind == Kind::Pod)
        .take(size(1_000, 50))
        .cloned()
        .collect();
    let mut group = c.benchmark_group("delete");
    group.throughput(Throughput::Elements(pods.len() as u64));
    group.sample_size(10);
    group.bench_function("pods_then_restore", |b| {
        b.iter_batched_ref(
            || build(&objs),
            |g| {
                for p in &pods {
                    g.apply(Change::Delete {
                        key: p.key(),
                        uid: Some(p.uid.clone()),
                    });
                }
                for p in &pods {
                    g.apply(Change::Upsert(p.clone()));
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, apply, update, project, selectors, delete);
criterion_main!(benches);
