//! Shared builders for the forward crate's tests.

#![allow(dead_code)]

pub mod stack;

use stagewise_core::{Float, Op, Rng, SlotId, Tape};
use stagewise_forward::{FC_PREFIX, LinearOp, LstmOp};

/// A tape holding a dummy input slot `x` `[T·B, E]` (with grad), an LSTM and optionally the head.
pub struct Model<T: Float> {
    pub tape: Tape<T>,
    pub x: SlotId,
    pub lstm: LstmOp,
    pub fc: Option<LinearOp>,
}

impl<T: Float> Model<T> {
    /// The slot the last op writes.
    pub fn output(&self) -> SlotId {
        self.fc.as_ref().map_or(self.lstm.output(), LinearOp::output)
    }

    /// Runs every op forwards.
    pub fn forward(&mut self, par: stagewise_core::Par) {
        let n = self.tape.ops().len();
        self.tape.forward_range(0..n, par);
    }

    /// Seeds the output gradient with `w` and runs every VJP in reverse after zeroing grads.
    pub fn backward(&mut self, w: &[T], par: stagewise_core::Par) {
        let out = self.output();
        self.tape.grads.fill_zero();
        self.tape.acts.slot_mut(out).grad[..w.len()].copy_from_slice(w);
        let (ops, params, acts, grads) = self.tape.sweep_parts();
        for op in ops.iter().rev() {
            op.vjp(params, acts, grads, par);
        }
    }
}

/// Fills `v` with N(0, scale²) draws.
pub fn fill<T: Float>(v: &mut [T], rng: &mut Rng, scale: f64) {
    for x in v {
        *x = T::from_f64(scale * rng.normal());
    }
}

/// Builds a model: input width `e`, hidden `h`, head of width `vocab` if given; input values and
/// the initial state `h0`, `c0` random (state zero if `zero_state`).
#[allow(clippy::too_many_arguments)]
pub fn build<T: Float>(
    batch: usize,
    max_steps: usize,
    e: usize,
    h: usize,
    vocab: Option<usize>,
    seed: u64,
    input_scale: f64,
    zero_state: bool,
) -> Model<T> {
    let mut tape = Tape::<T>::new(batch, max_steps);
    let x = tape.acts.declare_rows("x", e, true).expect("declare x");
    let lstm = LstmOp::declare(&mut tape, x, h, seed).expect("declare lstm");
    tape.push(Box::new(lstm.clone()) as Box<dyn Op<T>>);
    let fc = vocab.map(|v| {
        let fc = LinearOp::declare(&mut tape, FC_PREFIX, lstm.output(), v, seed).expect("declare fc");
        tape.push(Box::new(fc.clone()));
        fc
    });
    tape.finish();
    let mut rng = Rng::new(seed ^ 0xDA7A);
    fill(&mut tape.acts.slot_mut(x).value, &mut rng, input_scale);
    if !zero_state {
        let s = lstm.slots();
        fill(&mut tape.acts.slot_mut(s.h0).value, &mut rng, 0.5);
        fill(&mut tape.acts.slot_mut(s.c0).value, &mut rng, 1.0);
    }
    Model { tape, x, lstm, fc }
}
