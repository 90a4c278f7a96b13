//! A warm training cycle — embed, forward, loss, backward, update — allocates nothing
//! (ARCHITECTURE.md, "Numbers, speed, determinism"). Its own test binary, because the counting
//! allocator is global.

// Test helpers outside `#[test]` functions: clippy.toml only exempts the latter.
#![allow(clippy::unwrap_used)]

use stagewise_core::{Ctx, Par, Rng};
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::ForwardConfig;
use stagewise_pipeline::Config;
use stagewise_pipeline::Model;
use stagewise_pipeline::data::Window;
use stagewise_testkit::alloc::{Counting, count_allocations};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A model big enough for faer's blocked kernels and the loss's parallel split, and windows of
/// random ids (the full length, then a shorter last window, as at the end of a split).
fn setup(batch: usize, seq_len: usize) -> (Model<f32>, Vec<u32>) {
    let (vocab, embed, hidden) = (600, 48, 64);
    let config = Config {
        embedding: EmbeddingConfig::Table { dim: embed },
        forward: ForwardConfig::Lstm { hidden },
        ..Config::default()
    };
    let model = Model::<f32>::from_config(&config, vocab, batch, seq_len).unwrap();
    let mut rng = Rng::new(7);
    let ids = (0..(seq_len + 1) * batch).map(|_| rng.below(vocab as u64) as u32).collect();
    (model, ids)
}

fn window(ids: &[u32], batch: usize, steps: usize) -> Window<'_> {
    Window { steps, inputs: &ids[..steps * batch], targets: &ids[batch..(steps + 1) * batch] }
}

#[test]
fn warm_training_and_eval_cycles_allocate_nothing() {
    let (b, t) = (16, 12);
    assert!(count_allocations(|| drop(std::hint::black_box(vec![0u8; 16]))).0 > 0, "the counter works");
    let (mut model, ids) = setup(b, t);
    let cx = Ctx::seq();
    model.train_window(window(&ids, b, t), &cx).unwrap(); // warm-up
    let (ours, _) = count_allocations(|| {
        for steps in [t, t / 2] {
            model.train_window(window(&ids, b, steps), &cx).unwrap();
            model.eval_window(window(&ids, b, steps), &cx).unwrap();
        }
    });
    assert_eq!(ours, 0, "a warm cycle allocated {ours} times");

    // With two threads, faer's parallel GEMM and rayon's scheduling allocate internally: reported
    // (run with --nocapture), not asserted, since it is not our code.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        let cx = Ctx { par: Par::rayon(2), ..Ctx::seq() };
        model.train_window(window(&ids, b, t), &cx).unwrap();
        let (_, all) = count_allocations(|| model.train_window(window(&ids, b, t), &cx).unwrap());
        eprintln!("allocations in one warm 2-thread cycle (faer/rayon internals): {all}");
    });
}
