//! A warm training cycle — embed, forward, loss, backward, update — allocates nothing, on one
//! thread or two (counting both workers: ours, rayon's and faer's allocations), with every
//! built-in forward kind (stacked, with dropout, tied to the embedding) and every loss, backward
//! and update setting. Its own test binary, and one test, because the
//! counting allocator is global.

// Test helpers outside `#[test]` functions: clippy.toml only exempts the latter.
#![allow(clippy::unwrap_used)]

use stagewise_backward::BackwardConfig;
use stagewise_core::{Ctx, Par, Rng};
use stagewise_embedding::{EmbeddingConfig, EmbeddingInit};
use stagewise_forward::{ForwardConfig, RecurrentKind};
use stagewise_loss::LossConfig;
use stagewise_optimizer::OptimizerConfig;
use stagewise_pipeline::Config;
use stagewise_pipeline::Model;
use stagewise_pipeline::data::Window;
use stagewise_testkit::alloc::{Counting, count_allocations, mark_this_thread};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A model with windows of random ids (the full length, then a shorter last window, as at the
/// end of a split).
fn setup(vocab: usize, embed: usize, hidden: usize, batch: usize, seq_len: usize) -> (Model<f32>, Vec<u32>) {
    setup_with(Config::default(), vocab, embed, hidden, batch, seq_len)
}

/// [`setup`] with the boxes of `config` (its sizes replaced).
fn setup_with(
    config: Config,
    vocab: usize,
    embed: usize,
    hidden: usize,
    batch: usize,
    seq_len: usize,
) -> (Model<f32>, Vec<u32>) {
    let config =
        Config { embedding: EmbeddingConfig::table(embed), forward: ForwardConfig::lstm(hidden), ..config };
    let model = Model::<f32>::from_config(&config, vocab, batch, seq_len).unwrap();
    let mut rng = Rng::new(7);
    let ids = (0..(seq_len + 1) * batch).map(|_| rng.below(vocab as u64) as u32).collect();
    (model, ids)
}

fn window(ids: &[u32], batch: usize, steps: usize) -> Window<'_> {
    Window { steps, inputs: &ids[..steps * batch], targets: &ids[batch..(steps + 1) * batch] }
}

/// Allocations (on this thread, and on it and the marked workers) of warm training and evaluation cycles (full and shorter
/// windows) under `cx`, after one warm-up cycle.
fn warm_cycle_allocations(model: &mut Model<f32>, ids: &[u32], cx: &Ctx) -> (usize, usize) {
    let (b, t) = (model.dims.batch, model.dims.seq_len);
    model.train_window(window(ids, b, t), cx).unwrap(); // warm-up
    count_allocations(|| {
        for steps in [t, t / 2] {
            model.train_window(window(ids, b, steps), cx).unwrap();
            model.eval_window(window(ids, b, steps), cx).unwrap();
        }
    })
}

/// A product large enough for faer's main kernel, which sets up its per-thread scratch.
fn first_product_on_this_thread() {
    use stagewise_kernels::matrix::{gemm, mat, mat_mut};
    let (a, mut c) = (vec![1.0f32; 64 * 64], vec![0.0f32; 64 * 64]);
    gemm(mat_mut(&mut c, 64, 64), false, mat(&a, 64, 64), mat(&a, 64, 64), Par::Seq);
}

#[test]
fn warm_training_and_eval_cycles_allocate_nothing() {
    assert!(count_allocations(|| drop(std::hint::black_box(vec![0u8; 16]))).0 > 0, "the counter works");
    // Big enough for faer's blocked kernels and the loss's parallel split.
    let (mut model, ids) = setup(600, 48, 64, 16, 12);
    let (ours, _) = warm_cycle_allocations(&mut model, &ids, &Ctx::seq());
    assert_eq!(ours, 0, "a warm one-thread cycle allocated {ours} times");

    // Two threads, counting on both (ours, rayon's and faer's allocations), in both multi-threaded schedules:
    // (a) steps too small to split, so the tape overlaps the head with the recurrence and the
    // large products are cut across threads; (b) steps split by hidden units across threads.
    // Its workers are marked, so that their allocations count (the test harness's threads, which
    // allocate on their own schedule, are not). faer's kernel keeps one scratch buffer per thread,
    // allocated the first time that thread runs a product: with work stealing, a worker may run
    // its first product in any cycle, so every worker runs one first. That is the whole of the
    // bound: one allocation per thread in its lifetime, none of ours.
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(2).start_handler(|_| mark_this_thread()).build().unwrap();
    pool.broadcast(|_| first_product_on_this_thread());
    let cx = Ctx { par: Par::rayon(2), ..Ctx::seq() };
    for (label, (v, e, h, b, t), overlaps) in
        [("overlapped", (1000, 48, 64, 16, 12), true), ("split by units", (600, 32, 256, 16, 6), false)]
    {
        let (mut model, ids) = setup(v, e, h, b, t);
        let before = model.tape.overlapped_runs();
        let (_, all) = pool.install(|| warm_cycle_allocations(&mut model, &ids, &cx));
        assert_eq!(model.tape.overlapped_runs() > before, overlaps, "{label}: schedule taken");
        assert_eq!(all, 0, "{label}: a warm two-thread cycle allocated {all} times");
    }

    // Every other loss, backward and update setting, with a frozen tensor and a scheduled rate,
    // on one thread and on two.
    let sgd =
        OptimizerConfig::Sgd { lr: 0.5, momentum: 0.9, nesterov: true, weight_decay: 0.01, dampening: 0.0 };
    let adamw = OptimizerConfig::AdamW {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        decay_all: false,
    };
    let loss = LossConfig::CrossEntropy { label_smoothing: 0.1, ignore_index: Some(3) };
    for (optimizer, backward, sizes) in [
        (sgd, BackwardConfig::Reverse { clip: 0.25 }, (600, 48, 64, 16, 12)),
        (adamw, BackwardConfig::Reverse { clip: 0.25 }, (1000, 48, 64, 16, 12)),
        (OptimizerConfig::default(), BackwardConfig::Numeric { clip: 0.1 }, (12, 3, 4, 2, 3)),
    ] {
        let label = format!("{optimizer:?}, {backward:?}");
        let config = Config { loss: loss.clone(), backward, optimizer, ..Config::default() };
        let (v, e, h, b, t) = sizes;
        let (mut model, ids) = setup_with(config.clone(), v, e, h, b, t);
        let frozen = model.tape.params.layout().find("embedding.weight").unwrap();
        model.tape.params.set_trainable(frozen, false);
        model.lr_factor = 0.5;
        let (ours, _) = warm_cycle_allocations(&mut model, &ids, &Ctx::seq());
        assert_eq!(ours, 0, "{label}: a warm one-thread cycle allocated {ours} times");
        assert!(model.tape.grad_norm.is_some(), "{label}: the norm is measured");
        let (mut model, ids) = setup_with(config, v, e, h, b, t);
        model.tape.params.set_trainable(frozen, false);
        let (_, all) = pool.install(|| warm_cycle_allocations(&mut model, &ids, &cx));
        assert_eq!(all, 0, "{label}: a warm two-thread cycle allocated {all} times");
    }

    // Every forward kind, stacked with dropout (masks drawn every training window) and a head
    // tied to the embedding table.
    for kind in [RecurrentKind::Gru, RecurrentKind::RnnTanh, RecurrentKind::Lstm] {
        let (v, h, b, t) = (600, 64, 16, 12);
        let config = Config {
            embedding: EmbeddingConfig::Table {
                dim: h,
                init: EmbeddingInit::Uniform,
                freeze: false,
                tied: true,
                pretrained: None,
                format: None,
            },
            forward: ForwardConfig::with(kind, h, 2, 0.2),
            ..Config::default()
        };
        let label = format!("{kind:?}, 2 layers, dropout, tied");
        let mut rng = Rng::new(11);
        let ids: Vec<u32> = (0..(t + 1) * b).map(|_| rng.below(v as u64) as u32).collect();
        let mut model = Model::<f32>::from_config(&config, v, b, t).unwrap();
        let (ours, _) = warm_cycle_allocations(&mut model, &ids, &Ctx::seq());
        assert_eq!(ours, 0, "{label}: a warm one-thread cycle allocated {ours} times");
        let mut model = Model::<f32>::from_config(&config, v, b, t).unwrap();
        let (_, all) = pool.install(|| warm_cycle_allocations(&mut model, &ids, &cx));
        assert_eq!(all, 0, "{label}: a warm two-thread cycle allocated {all} times");
    }
}
