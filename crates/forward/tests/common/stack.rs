//! A tape holding an input slot, a stack of recurrent layers of one kind and optionally the head,
//! built op by op (the way the stage builds it, without dropout).

use stagewise_core::{Float, Op, Par, Rng, SlotId, Tape};
use stagewise_forward::{FC_PREFIX, GruOp, Layer, LinearOp, LstmOp, RecurrentKind, RnnTanhOp};

use super::fill;

/// The stack and its tape.
pub struct Stack<T: Float> {
    pub tape: Tape<T>,
    pub x: SlotId,
    pub layers: Vec<Layer>,
    pub fc: Option<LinearOp>,
}

impl<T: Float> Stack<T> {
    /// The slot the last op writes.
    pub fn output(&self) -> SlotId {
        match (&self.fc, self.layers.last()) {
            (Some(fc), _) => fc.output(),
            (None, Some(layer)) => layer.output(),
            (None, None) => self.x,
        }
    }

    /// Runs every op forwards.
    pub fn forward(&mut self, par: Par) {
        let n = self.tape.ops().len();
        self.tape.forward_range(0..n, par);
    }

    /// Seeds the output gradient with `w` and runs every VJP in reverse after zeroing grads.
    pub fn backward(&mut self, w: &[T], par: Par) {
        let out = self.output();
        self.tape.grads.fill_zero();
        self.tape.acts.slot_mut(out).grad[..w.len()].copy_from_slice(w);
        let (ops, params, acts, grads) = self.tape.sweep_parts();
        for op in ops.iter().rev() {
            op.vjp(params, acts, grads, par);
        }
    }

    /// A random output cotangent for the current window.
    pub fn cotangent(&self, seed: u64) -> Vec<T> {
        let slot = self.tape.acts.slot(self.output());
        let mut w = vec![T::from_f64(0.0); self.tape.acts.rows() * slot.width];
        fill(&mut w, &mut Rng::new(seed), 1.0);
        w
    }
}

/// Declares layer `l` of `kind` reading `input`.
pub fn declare_layer<T: Float>(
    tape: &mut Tape<T>,
    kind: RecurrentKind,
    input: SlotId,
    hidden: usize,
    l: usize,
    rng: &mut Rng,
) -> Layer {
    match kind {
        RecurrentKind::Lstm => Layer::Lstm(LstmOp::declare_layer(tape, input, hidden, l, rng).expect("lstm")),
        RecurrentKind::Gru => Layer::Gru(GruOp::declare_layer(tape, input, hidden, l, rng).expect("gru")),
        RecurrentKind::RnnTanh => {
            Layer::RnnTanh(RnnTanhOp::declare_layer(tape, input, hidden, l, rng).expect("rnn"))
        }
    }
}

/// Pushes a layer's op onto the tape.
pub fn push<T: Float>(tape: &mut Tape<T>, layer: &Layer) {
    let op: Box<dyn Op<T>> = match layer {
        Layer::Lstm(op) => Box::new(op.clone()),
        Layer::Gru(op) => Box::new(op.clone()),
        Layer::RnnTanh(op) => Box::new(op.clone()),
    };
    tape.push(op);
}

/// Builds `layers` layers of `kind` (input width `e`, hidden `h`) and a head of width `vocab` if
/// given; the input and every layer's initial state random (zero if `zero_state`).
#[allow(clippy::too_many_arguments)]
pub fn build<T: Float>(
    kind: RecurrentKind,
    layers: usize,
    batch: usize,
    max_steps: usize,
    e: usize,
    h: usize,
    vocab: Option<usize>,
    seed: u64,
    zero_state: bool,
) -> Stack<T> {
    let mut tape = Tape::<T>::new(batch, max_steps);
    let x = tape.acts.declare_rows("x", e, true).expect("declare x");
    let mut rng = Rng::stream(seed, kind.prefix());
    let mut input = x;
    let mut stack = Vec::new();
    for l in 0..layers {
        let layer = declare_layer(&mut tape, kind, input, h, l, &mut rng);
        push(&mut tape, &layer);
        input = layer.output();
        stack.push(layer);
    }
    let fc = vocab.map(|v| {
        let fc = LinearOp::declare(&mut tape, FC_PREFIX, input, v, seed).expect("declare fc");
        tape.push(Box::new(fc.clone()));
        fc
    });
    tape.finish();
    let mut rng = Rng::new(seed ^ 0xDA7A);
    fill(&mut tape.acts.slot_mut(x).value, &mut rng, 1.0);
    if !zero_state {
        for layer in &stack {
            fill(&mut tape.acts.slot_mut(layer.h0()).value, &mut rng, 0.5);
            if let Layer::Lstm(op) = layer {
                fill(&mut tape.acts.slot_mut(op.slots().c0).value, &mut rng, 1.0);
            }
        }
    }
    Stack { tape, x, layers: stack, fc }
}

/// Every layer's outputs for the first `n` rows from the plain-loop references, each layer reading
/// the one below, for the stack's current weights, input and initial states.
pub fn naive_outputs(s: &Stack<f64>, n: usize) -> Vec<Vec<f64>> {
    let acts = &s.tape.acts;
    let params = &s.tape.params;
    let batch = acts.batch();
    let mut input = acts.slot(s.x).value[..n * acts.slot(s.x).width].to_vec();
    let mut outs = Vec::new();
    for layer in &s.layers {
        let out = match layer {
            Layer::Lstm(op) => {
                let (mut h, mut c) = (vec![0.0; n * op.hidden()], vec![0.0; n * op.hidden()]);
                let sl = op.slots();
                let (h0, c0) = (&acts.slot(sl.h0).value, &acts.slot(sl.c0).value);
                stagewise_forward::lstm_forward_naive(
                    op.weights(params),
                    &input,
                    h0,
                    c0,
                    batch,
                    &mut h,
                    &mut c,
                );
                h
            }
            Layer::Gru(op) => {
                let mut h = vec![0.0; n * op.hidden()];
                let h0 = &acts.slot(op.slots().h0).value;
                stagewise_forward::gru_forward_naive(op.weights(params), &input, h0, batch, &mut h);
                h
            }
            Layer::RnnTanh(op) => {
                let mut h = vec![0.0; n * op.hidden()];
                let h0 = &acts.slot(op.slots().h0).value;
                stagewise_forward::rnn_tanh_forward_naive(op.weights(params), &input, h0, batch, &mut h);
                h
            }
        };
        input = out.clone();
        outs.push(out);
    }
    outs
}
