//! A warm forward + backward of the stage allocates nothing (ARCHITECTURE.md, "Numbers, speed,
//! determinism"): every buffer is a slot declared at prepare time.

// A global allocator is the one place a counting test needs `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use stagewise_core::{Ctx, Dims, Rng, Stage, Tape};
use stagewise_forward::LstmForward;

/// Counts allocations made by the thread that switched counting on.
struct Counting;

static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count(f: impl FnOnce()) -> usize {
    COUNT.store(0, Ordering::Relaxed);
    ON.with(|on| on.set(true));
    f();
    ON.with(|on| on.set(false));
    COUNT.load(Ordering::Relaxed)
}

#[test]
fn warm_cycle_allocates_nothing() {
    assert!(count(|| drop(std::hint::black_box(vec![0u8; 16]))) > 0, "the counter must see allocations");
    // Shapes that take faer's blocked kernels (not only its tiny-matrix path), and B = 1 for the
    // matrix–vector paths.
    for (batch, seq_len, embed, hidden, vocab) in [(8, 12, 64, 128, 500), (1, 6, 32, 128, 300)] {
        let d = Dims { vocab, embed, hidden, batch, seq_len, params: 0 };
        let mut tape = Tape::<f32>::new(batch, seq_len);
        let x = tape.acts.declare_rows("embedding.out", embed, true);
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
