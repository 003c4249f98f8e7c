//! Benchmarks of the persistence formats: one snapshot chunk (25,000 objects of the demo mix, as
//! the writer stores them) encoded, decoded (in one pass, as recovery reads a chunk with no log
//! after it; and object by object behind the walk that finds each uid, as it reads one when a log
//! follows, none of them skipped), and walked with every object skipped (what recovery
//! does with the snapshot's objects that the log replaced); the same objects as one log part,
//! indexed (uid, namespace and place of each state) with its buffer handed back to the pool, or
//! kept (as recovery keeps a part with states left to decode, so a fresh buffer each time).
//! Decoding is most of what recovery costs: a million objects of snapshot, plus up to twice
//! that many bytes of log. One element = one object.

use std::sync::Arc;

/// The binary's allocator, so that the figures are the server's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use astrolabe::model::Object;
use astrolabe::persistence::format;
use astrolabe::relations::Projector;
use astrolabe::sources::demo::{DemoCluster, DemoConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A full chunk when benchmarking, a small one once under `cargo test` (a debug build).
fn chunk_objects() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        25_000
    } else {
        500
    }
}

fn chunk(c: &mut Criterion) {
    let p = Projector::default();
    let objects: Vec<Arc<Object>> = DemoCluster::new(DemoConfig {
        objects: chunk_objects(),
        ..DemoConfig::default()
    })
    .objects()
    .map(|v| Arc::new(p.project(&v).expect("demo objects project")))
    .collect();
    let (bytes, crc) = format::encode(&objects);
    let mut group = c.benchmark_group("chunk");
    group.sample_size(20);
    group.throughput(Throughput::Elements(objects.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| std::hint::black_box(format::encode(&objects)))
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let decoded: Vec<Arc<Object>> = format::decode(&bytes, crc, "chunk").expect("decodes");
            assert_eq!(decoded.len(), objects.len());
            decoded
        })
    });
    group.bench_function("decode behind the walk, nothing skipped", |b| {
        b.iter(|| {
            let entries = format::decode_chunk(&bytes, crc, "chunk", |_| false).expect("decodes");
            assert_eq!(entries.len(), objects.len());
            entries
        })
    });
    group.bench_function("walk, every object skipped", |b| {
        b.iter(|| {
            let entries = format::decode_chunk(&bytes, crc, "chunk", |_| true).expect("walks");
            assert_eq!(entries.len(), objects.len());
            entries
        })
    });
    let batch = format::Batch {
        format: format::FORMAT_VERSION,
        graph_generation: 1,
        ops: objects
            .iter()
            .map(|o| format::Op::Upsert(o.clone()))
            .collect::<Vec<_>>(),
    };
    let (bytes, crc) = format::encode(&batch);
    group.bench_function("log part indexed", |b| {
        b.iter(|| {
            let index = format::index_batch(&bytes, crc, "part").expect("indexes");
            assert_eq!(index.ops.len(), objects.len());
            format::recycle(index.packed);
            index.ops
        })
    });
    group.bench_function("log part indexed, buffer kept", |b| {
        b.iter(|| {
            let index = format::index_batch(&bytes, crc, "part").expect("indexes");
            index.packed
        })
    });
    group.finish();
}

criterion_group!(benches, chunk);
criterion_main!(benches);
