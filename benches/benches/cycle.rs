//! The whole cycle: one training step [`Model::train_window`] (embed, forward, loss, backward,
//! Adam update) and forward-only inference [`Model::predict`] (embed and forward, no loss), built
//! by [`Model::from_config`] exactly as the pipeline does, on real corpus windows taken in turn,
//! sequentially and on 2 threads, reported in tokens (`B * T`) per second.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use stagewise_benches::{Corpus, Threads, configs, criterion_config, seed};
use stagewise_core::Mode;
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::ForwardConfig;
use stagewise_pipeline::data::Window;
use stagewise_pipeline::{Config, Model};
use std::hint::black_box;

/// Distinct windows cycled through, so the model does not see one window over and over.
const WINDOWS: usize = 8;

fn cycle(c: &mut Criterion) {
    let corpus = Corpus::load(seed().vocab);
    let settings = Threads::both();
    for cfg in configs() {
        let config = Config {
            embedding: EmbeddingConfig::table(cfg.embed),
            forward: ForwardConfig::lstm(cfg.hidden),
            ..Config::default()
        };
        let mut model = Model::<f32>::from_config(&config, cfg.vocab, cfg.batch, cfg.seq_len)
            .expect("building the bench model");
        let windows = corpus.windows(&cfg, WINDOWS);
        let window = |i: usize| {
            let (inputs, targets) = &windows[i % windows.len()];
            Window { steps: cfg.seq_len, inputs, targets }
        };

        let mut group = c.benchmark_group(format!("cycle/{}", cfg.label()));
        group.throughput(Throughput::Elements(cfg.rows() as u64));
        // Iterations take milliseconds to seconds: the same count per sample, not 1, 2, .., 10.
        group.sampling_mode(SamplingMode::Flat);
        for threads in &settings {
            let cx = threads.ctx(Mode::Train);
            let mut i = 0;
            group.bench_function(BenchmarkId::new("train_window", threads.label()), |b| {
                threads.install(|| {
                    b.iter(|| {
                        model.train_window(black_box(window(i)), &cx).expect("a training step");
                        i += 1;
                    })
                })
            });
            let cx = threads.ctx(Mode::Eval);
            group.bench_function(BenchmarkId::new("predict", threads.label()), |b| {
                threads.install(|| {
                    b.iter(|| {
                        let logits = model.predict(black_box(window(i).inputs), &cx).expect("a forward pass");
                        i += 1;
                        black_box(logits.len())
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = cycle
}
criterion_main!(benches);
