//! A warm forward + backward of the stage allocates nothing (ARCHITECTURE.md, "Numbers, speed,
//! determinism"): every buffer is a slot declared at prepare time.

use stagewise_core::{Ctx, Dims, Rng, Stage, Tape};
use stagewise_forward::LstmForward;
use stagewise_testkit::alloc::{Counting, count_allocations};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count(f: impl FnOnce()) -> usize {
    count_allocations(f).0
}

#[test]
fn warm_cycle_allocates_nothing() {
    assert!(count(|| drop(std::hint::black_box(vec![0u8; 16]))) > 0, "the counter must see allocations");
    // Shapes that take faer's blocked kernels (not only its tiny-matrix path), and B = 1 for the
    // matrix–vector paths.
    for (batch, seq_len, embed, hidden, vocab) in [(8, 12, 64, 128, 500), (1, 6, 32, 128, 300)] {
        let d = Dims { vocab, batch, seq_len, params: 0 };
        let mut tape = Tape::<f32>::new(batch, seq_len);
        let x = tape.acts.declare_rows("embedding.out", embed, true).unwrap();
        let mut rng = Rng::new(3);
        for v in &mut tape.acts.slot_mut(x).value {
            *v = rng.normal() as f32;
        }
        tape.set_output(x);
        let mut stage = LstmForward::<f32>::new(hidden, 1).unwrap();
        stage.prepare(&d, &mut tape).unwrap();
        tape.finish();
        let logits = tape.output().unwrap();
        tape.acts.slot_mut(logits).grad.fill(0.01);

        let cycle = |tape: &mut Tape<f32>| {
            stage.run((), tape, &Ctx::seq()).unwrap();
            tape.grads.fill_zero();
            let (ops, params, acts, grads) = tape.sweep_parts();
            for op in ops.iter().rev() {
                op.vjp(params, acts, grads, Ctx::seq().par);
            }
            tape.end_window();
        };
        cycle(&mut tape); // warm-up: faer's thread-local scratch, if any
        let n = count(|| {
            for steps in [seq_len, seq_len / 2] {
                tape.set_steps(steps).unwrap();
                cycle(&mut tape);
            }
        });
        assert_eq!(n, 0, "B={batch} T={seq_len} E={embed} H={hidden} V={vocab}: {n} allocations");
    }
}
