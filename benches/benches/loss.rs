//! The loss box: fused softmax cross-entropy ([`CrossEntropy`]) over one window's logits
//! (`[B*T, V]`, a freshly initialised model's, for real corpus targets), in train mode (also
//! writes `dlogits`, over the logits then swapped into the slot's gradient, so each iteration gets
//! a fresh copy of the slot, made outside the timing)
//! and eval mode (loss and accuracy only), sequentially and on 2 threads,
//! reported in rows (token positions) per second.

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use stagewise_benches::{Corpus, PreparedModel, Threads, configs, criterion_config, seed};
use stagewise_core::{Mode, Stage};
use stagewise_loss::{CrossEntropy, LossInput, LossOutput};
use std::hint::black_box;

fn loss(c: &mut Criterion) {
    let corpus = Corpus::load(seed().vocab);
    let settings = Threads::both();
    for cfg in configs() {
        let (inputs, targets) = corpus.window(&cfg, 0);
        let model = PreparedModel::new(&cfg, inputs, targets);
        let mut ce = CrossEntropy::<f32>::new();
        let mut out = LossOutput::default();
        ce.prepare(&model.dims, &mut out).expect("preparing the loss");
        let out_slot = model.tape.output().expect("the logits slot");
        let logits = model.tape.acts.slot(out_slot).clone();

        let mut group = c.benchmark_group(format!("loss/{}", cfg.label()));
        group.throughput(Throughput::Elements(cfg.rows() as u64));
        // Train-mode iterations take tens of milliseconds: the same count per sample.
        group.sampling_mode(SamplingMode::Flat);
        for (label, mode) in [("cross_entropy.train", Mode::Train), ("cross_entropy.eval", Mode::Eval)] {
            for threads in &settings {
                let cx = threads.ctx(mode);
                group.bench_function(BenchmarkId::new(label, threads.label()), |b| {
                    threads.install(|| {
                        b.iter_batched_ref(
                            || logits.clone(),
                            |slot| {
                                let input = LossInput { logits: slot, targets: &model.targets };
                                ce.run(black_box(input), &mut out, &cx).expect("finite loss");
                                black_box(out.nll_sum)
                            },
                            BatchSize::LargeInput,
                        )
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = loss
}
criterion_main!(benches);
