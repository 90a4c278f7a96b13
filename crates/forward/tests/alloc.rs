//! A warm forward + backward of the stage allocates nothing (ARCHITECTURE.md, "Numbers, speed,
//! determinism"): every buffer is a slot declared at prepare time, and the dropout masks are
//! filled in place.

// Test helpers outside `#[test]` functions: clippy.toml only exempts the latter.
#![allow(clippy::unwrap_used)]

use stagewise_core::{Ctx, Dims, Mode, Par, Rng, Stage, Tape};
use stagewise_forward::{RecurrentForward, RecurrentKind, RecurrentSpec};
use stagewise_testkit::alloc::{Counting, count_allocations, mark_this_thread};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by each test while it runs: the counters are global, so a test counting while the other
/// allocates (on its marked pool workers, say) would count the other's allocations.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Allocations made by `f` on this thread and on the marked workers.
fn count(f: impl FnOnce()) -> usize {
    count_allocations(f).1
}

/// Builds the stage for `spec` over a random input and returns its tape, ready to cycle.
fn setup(
    spec: RecurrentSpec,
    batch: usize,
    seq_len: usize,
    embed: usize,
    vocab: usize,
) -> (Tape<f32>, RecurrentForward<f32>) {
    let d = Dims { vocab, batch, seq_len, params: 0 };
    let mut tape = Tape::<f32>::new(batch, seq_len);
    let x = tape.acts.declare_rows("embedding.out", embed, true).unwrap();
    let mut rng = Rng::new(3);
    for v in &mut tape.acts.slot_mut(x).value {
        *v = rng.normal() as f32;
    }
    tape.set_output(x);
    let mut stage = RecurrentForward::<f32>::new(spec, 1).unwrap();
    stage.prepare(&d, &mut tape).unwrap();
    tape.finish();
    let logits = tape.output().unwrap();
    tape.acts.slot_mut(logits).grad.fill(0.01);
    (tape, stage)
}

/// Forward in training mode, the reverse sweep, forward in evaluation mode, then the window's end.
fn cycle(stage: &RecurrentForward<f32>, tape: &mut Tape<f32>, cx: &Ctx) {
    stage.run((), tape, &Ctx { mode: Mode::Train, ..*cx }).unwrap();
    tape.grads.fill_zero();
    let (ops, params, acts, grads) = tape.sweep_parts();
    for op in ops.iter().rev() {
        op.vjp(params, acts, grads, cx.par);
    }
    stage.run((), tape, &Ctx { mode: Mode::Eval, ..*cx }).unwrap();
    tape.end_window();
}

/// Warm cycles over a full and a shorter window, after one warm-up cycle.
fn warm_allocations(stage: &RecurrentForward<f32>, tape: &mut Tape<f32>, cx: &Ctx) -> usize {
    let seq_len = tape.acts.max_steps();
    cycle(stage, tape, cx); // warm-up: faer's thread-local scratch, if any
    count(|| {
        for steps in [seq_len, seq_len / 2] {
            tape.set_steps(steps).unwrap();
            cycle(stage, tape, cx);
        }
    })
}

fn spec(kind: RecurrentKind, hidden: usize, layers: usize, dropout: f64) -> RecurrentSpec {
    RecurrentSpec { kind, hidden, layers, dropout, tied: false }
}

#[test]
fn warm_cycle_allocates_nothing() {
    let _serial = one_at_a_time();
    assert!(count(|| drop(std::hint::black_box(vec![0u8; 16]))) > 0, "the counter must see allocations");
    // Shapes that take faer's blocked kernels (not only its tiny-matrix path), and B = 1 for the
    // matrix–vector paths; every kind, two layers with dropout.
    let cases = [
        (spec(RecurrentKind::Lstm, 128, 1, 0.0), (8, 12, 64, 500)),
        (spec(RecurrentKind::Lstm, 128, 1, 0.0), (1, 6, 32, 300)),
        (spec(RecurrentKind::Gru, 128, 2, 0.0), (8, 12, 64, 500)),
        (spec(RecurrentKind::Gru, 96, 2, 0.3), (8, 12, 64, 500)),
        (spec(RecurrentKind::Lstm, 64, 2, 0.5), (1, 6, 32, 300)),
        (spec(RecurrentKind::RnnTanh, 128, 2, 0.2), (8, 12, 64, 500)),
    ];
    for (spec, (batch, seq_len, embed, vocab)) in cases {
        let (mut tape, stage) = setup(spec, batch, seq_len, embed, vocab);
        let n = warm_allocations(&stage, &mut tape, &Ctx::seq());
        assert_eq!(n, 0, "{spec:?} B={batch} T={seq_len} E={embed} V={vocab}: {n} allocations");
    }
}

/// The same on two threads, counting both workers, in both multi-threaded schedules: steps too
/// small to split (the tape overlaps the head with the last layer's recurrence), and steps split
/// by hidden units. faer keeps one scratch buffer per thread, allocated on its first product, so
/// every worker runs one first (see the pipeline's allocation test).
#[test]
fn warm_two_thread_cycle_allocates_nothing() {
    let _serial = one_at_a_time();
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(2).start_handler(|_| mark_this_thread()).build().unwrap();
    pool.broadcast(|_| {
        use stagewise_kernels::matrix::{gemm, mat, mat_mut};
        let (a, mut c) = (vec![1.0f32; 64 * 64], vec![0.0f32; 64 * 64]);
        gemm(mat_mut(&mut c, 64, 64), false, mat(&a, 64, 64), mat(&a, 64, 64), Par::Seq);
    });
    let cx = Ctx { par: Par::rayon(2), ..Ctx::seq() };
    let cases = [
        (spec(RecurrentKind::Gru, 64, 2, 0.0), (16, 12, 48, 1000), true),
        (spec(RecurrentKind::Gru, 64, 2, 0.3), (16, 12, 48, 1000), true),
        (spec(RecurrentKind::Gru, 320, 2, 0.0), (16, 6, 32, 600), false),
        (spec(RecurrentKind::RnnTanh, 512, 1, 0.1), (16, 6, 32, 600), false),
    ];
    for (spec, (batch, seq_len, embed, vocab), overlaps) in cases {
        let (mut tape, stage) = setup(spec, batch, seq_len, embed, vocab);
        let before = tape.overlapped_runs();
        let n = pool.install(|| warm_allocations(&stage, &mut tape, &cx));
        assert_eq!(tape.overlapped_runs() > before, overlaps, "{spec:?}: schedule taken");
        assert_eq!(n, 0, "{spec:?}: a warm two-thread cycle allocated {n} times");
    }
}
