//! The update box: one [`Adam`] step (PyTorch defaults, lr 1e-3) over the whole parameter arena of
//! the model (embedding, LSTM and `fc` head), with the real gradients of one window, sequentially
//! and on 2 threads, reported in parameters per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stagewise_benches::{Corpus, PreparedModel, Threads, configs, criterion_config, seed};
use stagewise_core::{Mode, Stage};
use stagewise_optimizer::{Adam, OptimizerState, Update};
use std::hint::black_box;

fn optimizer(c: &mut Criterion) {
    let corpus = Corpus::load(seed().vocab);
    let settings = Threads::both();
    for cfg in configs() {
        let (inputs, targets) = corpus.window(&cfg, 0);
        let mut model = PreparedModel::new(&cfg, inputs, targets);
        let mut adam = Adam::<f32>::new(1e-3);
        let mut state = OptimizerState::new(model.tape.params.layout());
        adam.prepare(&model.dims, &mut state).expect("preparing Adam");

        let mut group = c.benchmark_group(format!("optimizer/{}", cfg.label()));
        group.throughput(Throughput::Elements(model.dims.params as u64));
        for threads in &settings {
            let cx = threads.ctx(Mode::Train);
            group.bench_function(BenchmarkId::new("adam.step", threads.label()), |b| {
                threads.install(|| {
                    b.iter(|| {
                        let tape = &mut model.tape;
                        let update = Update { params: &mut tape.params, grads: &tape.grads, lr_factor: 1.0 };
                        adam.run(black_box(update), &mut state, &cx).expect("arenas match");
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
    targets = optimizer
}
criterion_main!(benches);
