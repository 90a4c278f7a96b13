//! Dropout as PyTorch's word-language-model places it: on the embedded input, between recurrent
//! layers and before the head.
//!
//! # Design
//! Ops never see the mode (training or evaluation) or the step, so the randomness lives in the
//! stage: every dropout site owns a *mask* slot `[T·B, width]`, and the forward stage's `run`
//! fills the masks before it replays the ops — with values `0` (probability `p`) and `1/(1 − p)`
//! from its own RNG stream in training, with ones in evaluation (then `x · 1 = x` exactly, so an
//! evaluation is bit-identical to one without dropout). The ops only multiply by the mask forwards
//! and backwards. A replay of the ops (a gradient check) reuses the masks as they are.
//!
//! Two ops apply a mask:
//! - [`DropoutOp`], `y = x ⊙ m`, a row-wise op of its own (the embedded input);
//! - [`DropoutAfter`], a recurrent layer whose *output* is masked: it runs the wrapped layer into
//!   the layer's own output slot (the undropped `h`, which the recurrence and the carried state
//!   read) and writes `h ⊙ m` into its own output step by step. It stays a recurrence
//!   ([`StepOp`]), so on several threads the tape still overlaps the head's product with the last
//!   layer's steps, as without dropout.

use std::ops::Range;

use stagewise_core::{Activations, Float, Grads, Op, Par, Params, Pieces, Result, Rng, SlotId, StepOp, Tape};

/// A recurrent layer op: an [`Op`] whose forward pass is a [`StepOp`] recurrence. Every type that
/// is both is one (the LSTM, GRU and Elman ops, a user's own).
pub trait RecurrentOp<T: Float>: Op<T> + StepOp<T> {}

impl<T: Float, R: Op<T> + StepOp<T>> RecurrentOp<T> for R {}

/// Fills `mask` for one window: each element `0` with probability `p`, else `1/(1 − p)`, from
/// `rng` (32 random bits per element, two per draw). `p` must be in `[0, 1)`.
pub fn fill_mask<T: Float>(mask: &mut [T], p: f64, rng: &mut Rng) {
    let keep = T::from_f64(1.0 / (1.0 - p));
    let zero = T::from_f64(0.0);
    // Dropped where the 32 bits fall below p·2³²; p < 1, so the threshold fits.
    let threshold = (p * 4_294_967_296.0) as u64;
    for pair in mask.chunks_mut(2) {
        let bits = rng.next_u64();
        for (m, b) in pair.iter_mut().zip([bits & 0xFFFF_FFFF, bits >> 32]) {
            *m = if b < threshold { zero } else { keep };
        }
    }
}

/// The RNG of one training window's masks: the stage's dropout stream (`key`, drawn once from
/// `Rng::stream(seed, "<prefix>.dropout")`) mixed with the optimizer step, so that a run draws
/// the same masks for the same seed and step whatever happened before.
pub fn window_rng(key: u64, step: u64) -> Rng {
    Rng::new(key ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// `y = x ⊙ m` over the rows of the current window, `m` a mask slot the stage fills.
#[derive(Clone, Debug)]
pub struct DropoutOp {
    name: String,
    width: usize,
    input: SlotId,
    output: SlotId,
    mask: SlotId,
}

impl DropoutOp {
    /// Declares dropout of the row slot `input` (width > 0): output slot `{name}.out` (with a
    /// gradient) and mask slot `{name}.mask`, both `[T·B, width]`. The caller pushes the op.
    pub fn declare<T: Float>(tape: &mut Tape<T>, name: &str, input: SlotId) -> Result<Self> {
        let width = tape.acts.slot(input).width;
        let output = tape.acts.declare_rows(&format!("{name}.out"), width, true)?;
        let mask = tape.acts.declare_rows(&format!("{name}.mask"), width, false)?;
        Ok(DropoutOp { name: name.to_owned(), width, input, output, mask })
    }

    /// The output slot `[T·B, width]`.
    pub fn output(&self) -> SlotId {
        self.output
    }

    /// The mask slot `[T·B, width]`.
    pub fn mask(&self) -> SlotId {
        self.mask
    }
}

impl<T: Float> Op<T> for DropoutOp {
    fn name(&self) -> &str {
        &self.name
    }

    /// `y = x ⊙ m` over the window's rows.
    fn forward(&self, _params: &Params<T>, acts: &mut Activations<T>, _par: Par) {
        let n = acts.rows() * self.width;
        let [x, y, m] = acts.slots_mut([self.input, self.output, self.mask]);
        for (y, (x, m)) in y.value[..n].iter_mut().zip(x.value[..n].iter().zip(&m.value[..n])) {
            *y = *x * *m;
        }
    }

    /// `dx = dy ⊙ m`, overwriting the input's gradient (skipped if it has none).
    fn vjp(&self, _params: &Params<T>, acts: &mut Activations<T>, _grads: &mut Grads<T>, _par: Par) {
        let n = acts.rows() * self.width;
        let [x, y, m] = acts.slots_mut([self.input, self.output, self.mask]);
        if x.grad.is_empty() {
            return;
        }
        for (dx, (dy, m)) in x.grad[..n].iter_mut().zip(y.grad[..n].iter().zip(&m.value[..n])) {
            *dx = *dy * *m;
        }
    }
}

/// A recurrent layer followed by dropout of its output, as one recurrence (see the module docs).
pub struct DropoutAfter<T: Float> {
    inner: Box<dyn RecurrentOp<T>>,
    width: usize,
    /// The wrapped layer's output: the undropped `h`, `[T·B, width]`, with grad.
    raw: SlotId,
    /// `h ⊙ m`, `[T·B, width]`, with grad.
    output: SlotId,
    mask: SlotId,
}

impl<T: Float> DropoutAfter<T> {
    /// Wraps `inner` (already declared on `tape`, its output a row slot with a gradient): declares
    /// the dropped output `{name}.dropped` (with a gradient) and the mask `{name}.mask`,
    /// `[T·B, H]` each. The caller pushes the op.
    pub fn declare(tape: &mut Tape<T>, name: &str, inner: Box<dyn RecurrentOp<T>>) -> Result<Self> {
        let raw = StepOp::output(inner.as_ref());
        let width = tape.acts.slot(raw).width;
        let output = tape.acts.declare_rows(&format!("{name}.dropped"), width, true)?;
        let mask = tape.acts.declare_rows(&format!("{name}.mask"), width, false)?;
        Ok(DropoutAfter { inner, width, raw, output, mask })
    }

    /// The dropped output slot `[T·B, H]`.
    pub fn output(&self) -> SlotId {
        self.output
    }

    /// The mask slot `[T·B, H]`.
    pub fn mask(&self) -> SlotId {
        self.mask
    }

    /// The wrapped layer's own (undropped) output slot.
    pub fn raw(&self) -> SlotId {
        self.raw
    }
}

impl<T: Float> StepOp<T> for DropoutAfter<T> {
    fn output(&self) -> SlotId {
        self.output
    }

    fn step_threads(&self, par: Par) -> usize {
        self.inner.step_threads(par)
    }

    fn step_cost(&self) -> f64 {
        self.inner.step_cost()
    }

    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        self.inner.begin(params, acts, par);
    }

    /// The wrapped layer's steps into its own output (`prev` is ignored: the undropped rows of
    /// the step before are in that slot), then `out = h ⊙ m` for these steps.
    fn run_steps(
        &self,
        params: &Params<T>,
        acts: &mut Activations<T>,
        _prev: &[T],
        out: &mut [T],
        steps: Range<usize>,
        par: Par,
    ) {
        let len = acts.batch() * self.width;
        let mut raw = acts.take_value(self.raw);
        let (before, after) = raw.split_at_mut(steps.start * len);
        let prev_raw = &before[before.len().saturating_sub(len)..];
        let rows = &mut after[..steps.len() * len];
        self.inner.run_steps(params, acts, prev_raw, rows, steps.clone(), par);
        let mask = &acts.slot(self.mask).value[steps.start * len..steps.end * len];
        for (o, (h, m)) in out.iter_mut().zip(rows.iter().zip(mask)) {
            *o = *h * *m;
        }
        acts.put_value(self.raw, raw);
    }
}

impl<T: Float> Op<T> for DropoutAfter<T> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        stagewise_core::run_steps_whole(self, params, acts, par);
    }

    fn pieces(&self) -> Pieces<'_, T> {
        Pieces::Steps(self)
    }

    /// `dh = d(h ⊙ m) ⊙ m` into the wrapped layer's output gradient, then its VJP.
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par) {
        let n = acts.rows() * self.width;
        let [raw, out, mask] = acts.slots_mut([self.raw, self.output, self.mask]);
        for (d, (g, m)) in raw.grad[..n].iter_mut().zip(out.grad[..n].iter().zip(&mask.value[..n])) {
            *d = *g * *m;
        }
        self.inner.vjp(params, acts, grads, par);
    }

    fn end_window(&self, acts: &mut Activations<T>) {
        self.inner.end_window(acts);
    }

    fn reset_state(&self, acts: &mut Activations<T>) {
        self.inner.reset_state(acts);
    }
}
