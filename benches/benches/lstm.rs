//! The forward box's ops on a prepared tape, each direction separately: the LSTM layer
//! (`lstm.forward`: input projection GEMM plus the recurrence; `lstm.backward`: its VJP, reverse
//! recurrence plus the weight-gradient GEMMs) and the `fc` head (`[B*T, H] x [H, V]` and its VJP),
//! sequentially and on 2 threads, reported in tokens (`B * T` rows) per second.
//!
//! The tape has been through one full forward, loss and backward pass (see
//! `stagewise_benches::PreparedModel`), so each VJP starts from the real gradient of its output.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use stagewise_benches::{Corpus, PreparedModel, Threads, configs, criterion_config, seed};
use std::hint::black_box;

fn lstm(c: &mut Criterion) {
    let corpus = Corpus::load(seed().vocab);
    let settings = Threads::both();
    for cfg in configs() {
        let (inputs, targets) = corpus.window(&cfg, 0);
        let mut model = PreparedModel::new(&cfg, inputs, targets);

        let mut group = c.benchmark_group(format!("lstm/{}", cfg.label()));
        group.throughput(Throughput::Elements(cfg.rows() as u64));
        // Iterations take milliseconds to seconds: the same count per sample, not 1, 2, .., 10.
        group.sampling_mode(SamplingMode::Flat);
        for name in ["lstm", "fc"] {
            let op = model.op_index(name);
            for threads in &settings {
                let par = threads.par();
                group.bench_function(BenchmarkId::new(format!("{name}.forward"), threads.label()), |b| {
                    threads.install(|| b.iter(|| model.op_forward(black_box(op), par)))
                });
                group.bench_function(BenchmarkId::new(format!("{name}.backward"), threads.label()), |b| {
                    threads.install(|| b.iter(|| model.op_vjp(black_box(op), par)))
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = lstm
}
criterion_main!(benches);
