//! The embed box: the row gather forward (the [`TableEmbedding`](stagewise_embedding::TableEmbedding)
//! stage's `run`, which also checks and copies the ids) and the scatter-add backward (its
//! `GatherOp`'s VJP), on one window of real corpus ids, reported in tokens (`B * T` rows) per
//! second.
//!
//! The op ignores `cx.par`, so only the sequential setting is measured.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stagewise_benches::{Corpus, PreparedModel, configs, criterion_config, seed};
use stagewise_core::{Ctx, Par, Stage};
use std::hint::black_box;

fn embedding(c: &mut Criterion) {
    let corpus = Corpus::load(seed().vocab);
    let cx = Ctx::seq();
    for cfg in configs() {
        let (inputs, targets) = corpus.window(&cfg, 0);
        let mut model = PreparedModel::new(&cfg, inputs, targets);
        let op = model.op_index("embedding");

        let mut group = c.benchmark_group(format!("embedding/{}", cfg.label()));
        group.throughput(Throughput::Elements(cfg.rows() as u64));
        group.bench_function(BenchmarkId::new("gather_forward", "seq"), |b| {
            b.iter(|| {
                let PreparedModel { embedding, tape, inputs, .. } = &mut model;
                embedding.run(black_box(inputs), tape, &cx).expect("ids are in the vocabulary");
            })
        });
        group.bench_function(BenchmarkId::new("scatter_add_backward", "seq"), |b| {
            b.iter(|| model.op_vjp(black_box(op), Par::Seq))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = embedding
}
criterion_main!(benches);
