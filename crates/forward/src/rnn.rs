//! The Elman RNN layer (`tanh`) as one coarse op over the whole window, with its naive reference.
//!
//! Semantics are PyTorch's `nn.RNN(nonlinearity="tanh")` (batch not first):
//!
//! ```text
//! h_t = tanh(x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh)
//! ```
//!
//! The fast path does one GEMM `[T·B, E]×[E, H]` for every step's input projection, then per step
//! one `[B, H]×[H, H]` GEMM accumulated onto it and one element-wise pass. The backward pass runs
//! the recurrence in reverse (one pass and one `[B, H]×[H, H]` GEMM per step) and computes the
//! weight gradients after the loop as large GEMMs. A step large enough is split across threads
//! by hidden units, as the LSTM's is (`lstm_cell`).

use std::ops::Range;

use crate::cache::FilledAt;
use crate::lstm_cell::{SplitByUnits, row, run_split, unit_parts_of};
use crate::recurrent::{
    LayerSizes, RecurrentKind, RecurrentParams, RecurrentWeights, WeightGrads, declare_params, layer_name,
    prev_and_cur,
};
use stagewise_core::{
    Activations, Error, Float, Grads, Op, Par, Params, Pieces, Result, Rng, SlotId, StepOp, Tape,
    run_steps_whole,
};
use stagewise_kernels::matrix::{MatMut, gemm, mat, mat_mut, with_wide_simd};
use stagewise_kernels::rows::copy_transposed;
use stagewise_kernels::tuning::RECURRENCE_COST_FACTOR;

/// PyTorch's name prefix of the module in the reference model (`rnn.weight_ih_l0`, ...).
pub const RNN_PREFIX: &str = "rnn";

/// The parameters of an Elman RNN layer borrowed as plain slices (`[H, ·]`), for the naive
/// reference functions.
pub type RnnWeights<'a, T> = RecurrentWeights<'a, T>;

/// One Elman step for one stream, in plain loops: the algorithmic reference for the fast kernel.
///
/// `x` is `[E]`, `h_prev` and `h` are `[H]`. Writes `h_t` into `h`.
#[allow(clippy::needless_range_loop)] // indexed loops read like the equation they check
pub fn rnn_tanh_cell_naive<T: Float>(w: RnnWeights<'_, T>, x: &[T], h_prev: &[T], h: &mut [T]) {
    let (e, hd) = (w.embed, w.hidden);
    for j in 0..hd {
        let mut s = w.b_ih[j] + w.b_hh[j];
        for p in 0..e {
            s += w.w_ih[j * e + p] * x[p];
        }
        for p in 0..hd {
            s += w.w_hh[j * hd + p] * h_prev[p];
        }
        h[j] = s.tanh();
    }
}

/// The whole window in plain loops: the reference [`RnnTanhOp`]'s forward is tested against.
///
/// `x` is `[steps·B, E]` time-major; `h0` is `[B, H]`; `h_out` `[steps·B, H]` receives every
/// step's `h_t`. Allocates (it is a reference, not a kernel).
pub fn rnn_tanh_forward_naive<T: Float>(
    w: RnnWeights<'_, T>,
    x: &[T],
    h0: &[T],
    batch: usize,
    h_out: &mut [T],
) {
    let (e, hd) = (w.embed, w.hidden);
    let steps = x.len() / (batch * e);
    let mut h = vec![T::from_f64(0.0); hd];
    for t in 0..steps {
        for b in 0..batch {
            let row = t * batch + b;
            let h_prev = if t == 0 {
                &h0[b * hd..(b + 1) * hd]
            } else {
                let prev = row - batch;
                &h_out[prev * hd..(prev + 1) * hd]
            };
            rnn_tanh_cell_naive(w, &x[row * e..(row + 1) * e], h_prev, &mut h);
            h_out[row * hd..(row + 1) * hd].copy_from_slice(&h);
        }
    }
}

/// The activation buffers of an Elman RNN layer, declared once on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RnnSlots {
    /// The input `x`, `[T·B, E]` (not owned by the layer: the embedding or the layer below).
    pub input: SlotId,
    /// Pre-activations without the biases, `x·W_ihᵀ + h·W_hhᵀ`, `[T·B, H]` (no grad).
    pub pre: SlotId,
    /// The output `h_t`, `[T·B, H]`, with grad.
    pub h: SlotId,
    /// Initial hidden state of the window, flat `[B, H]` (no grad: truncated BPTT).
    pub h0: SlotId,
    /// Backward scratch: gradients of the pre-activations, `[T·B, H]`.
    pub da: SlotId,
    /// Backward scratch: `dh_t` from step `t + 1`, flat `[B, H]`.
    pub dh_next: SlotId,
    /// Backward scratch: one weight gradient, transposed, flat `[max(E, H), H]`.
    pub dw_t: SlotId,
    /// Backward scratch: `h_0 … h_{T-2}` transposed, flat `[H, T·B]`.
    pub h_prev_t: SlotId,
    /// `weight_hh` transposed, flat `[H, H]`, refilled only when the weights change.
    pub w_hh_t: SlotId,
}

/// One Elman RNN layer (`tanh`) over a whole window, as one op of the tape.
///
/// Holds only sizes and handles; every buffer lives in the tape, so a cycle allocates nothing.
#[derive(Clone, Debug)]
pub struct RnnTanhOp {
    /// `rnn` for the first layer, `rnn_l{k}` after it: the op's name and its slots' prefix.
    name: String,
    embed: usize,
    hidden: usize,
    batch: usize,
    params: RecurrentParams,
    slots: RnnSlots,
    /// The parameters' version `w_hh_t` was last filled from.
    filled_at: FilledAt,
}

impl RnnTanhOp {
    /// Declares a one-layer Elman RNN on `tape` reading `input`, its parameters drawn from
    /// `Rng::stream(seed, "rnn")`. See [`RnnTanhOp::declare_layer`].
    pub fn declare<T: Float>(tape: &mut Tape<T>, input: SlotId, hidden: usize, seed: u64) -> Result<Self> {
        Self::declare_layer(tape, input, hidden, 0, &mut Rng::stream(seed, RNN_PREFIX))
    }

    /// Declares layer `layer` of a stack: PyTorch-named parameters (`rnn.weight_ih_l{layer}`
    /// `[H, in]`, `rnn.weight_hh_l{layer}` `[H, H]`, `rnn.bias_ih_l{layer}`,
    /// `rnn.bias_hh_l{layer}` `[H]`) drawn from `rng` U(−1/√H, 1/√H) in PyTorch's order, the
    /// output slot and every intermediate. Returns the op; the caller pushes it.
    ///
    /// `input` must be a row slot (width > 0). Fails on a zero `hidden` or a flat input.
    pub fn declare_layer<T: Float>(
        tape: &mut Tape<T>,
        input: SlotId,
        hidden: usize,
        layer: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        let embed = tape.acts.slot(input).width;
        if embed == 0 {
            let name = tape.acts.slot(input).name.clone();
            return Err(Error::shape(format!("rnn input {name}"), "a row slot of width > 0", "a flat slot"));
        }
        if hidden == 0 {
            return Err(Error::config("hidden", "must be at least 1"));
        }
        let params = declare_params(tape, RecurrentKind::RnnTanh, layer, embed, hidden, rng)?;
        let name = layer_name(RNN_PREFIX, layer);
        let batch = tape.acts.batch();
        let acts = &mut tape.acts;
        let slot = |what: &str| format!("{name}.{what}");
        let slots = RnnSlots {
            input,
            pre: acts.declare_rows(&slot("pre"), hidden, false)?,
            h: acts.declare_rows(&slot("h"), hidden, true)?,
            h0: acts.declare_flat(&slot("h0"), &[batch, hidden], false)?,
            da: acts.declare_rows(&slot("da"), hidden, false)?,
            dh_next: acts.declare_flat(&slot("dh_next"), &[batch, hidden], false)?,
            dw_t: acts.declare_flat(&slot("dw_t"), &[embed.max(hidden), hidden], false)?,
            h_prev_t: acts.declare_flat(&slot("h_prev_t"), &[hidden, acts.max_rows()], false)?,
            w_hh_t: acts.declare_flat(&slot("w_hh_t"), &[hidden, hidden], false)?,
        };
        Ok(RnnTanhOp { name, embed, hidden, batch, params, slots, filled_at: FilledAt::never() })
    }

    /// The output slot `h`, `[T·B, H]`.
    pub fn output(&self) -> SlotId {
        self.slots.h
    }

    /// Every slot of the layer.
    pub fn slots(&self) -> RnnSlots {
        self.slots
    }

    /// The layer's parameter handles.
    pub fn params(&self) -> RecurrentParams {
        self.params
    }

    /// Hidden width H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Input width.
    pub fn embed(&self) -> usize {
        self.embed
    }

    /// The weights as plain slices, for the naive reference.
    pub fn weights<'a, T: Float>(&self, params: &'a Params<T>) -> RnnWeights<'a, T> {
        RecurrentWeights::of(params, self.params, self.embed, self.hidden)
    }

    /// How many parts by hidden units a step runs in under `par`.
    fn parts(&self, par: Par) -> usize {
        unit_parts_of(par, self.batch, self.hidden, 1)
    }

    /// Copies `W_hhᵀ` into `w_hh_t` `[H, H]`, unless it already holds these weights.
    fn fill_w_hh_t<T: Float>(&self, params: &Params<T>, w_hh_t: &mut [T]) {
        let version = params.version();
        if self.filled_at.is(version) {
            return;
        }
        let hd = self.hidden;
        copy_transposed(&mut w_hh_t[..hd * hd], params.get(self.params.w_hh), hd, hd, Par::Seq);
        self.filled_at.set(version);
    }
}

/// What one forward step reads, shared by every part.
#[derive(Clone, Copy)]
struct ForwardShared<'a, T> {
    h_prev: &'a [T],
    w_hh: &'a [T],
    b_ih: &'a [T],
    b_hh: &'a [T],
    batch: usize,
    hidden: usize,
}

/// What one forward step writes for the units `units`: `pre` (the input projection on entry) and
/// `h`, `[B, U]` each.
struct ForwardPart<'a, T> {
    units: Range<usize>,
    pre: MatMut<'a, T>,
    h: MatMut<'a, T>,
}

impl<'a, T: Float> ForwardPart<'a, T> {
    /// The whole step: `pre`, `h` `[B, H]`.
    fn new(pre: &'a mut [T], h: &'a mut [T], batch: usize, hidden: usize) -> Self {
        ForwardPart { units: 0..hidden, pre: mat_mut(pre, batch, hidden), h: mat_mut(h, batch, hidden) }
    }

    /// `h = tanh(pre + b_ih + b_hh)` over this part's units, row by row.
    #[inline(always)]
    fn cells(&mut self, s: &ForwardShared<'_, T>) {
        let u = self.units.clone();
        let (bi, bh) = (&s.b_ih[u.clone()], &s.b_hh[u]);
        for b in 0..s.batch {
            let (pre, h) = (row(&mut self.pre, b), row(&mut self.h, b));
            for (y, (p, (a, c))) in h.iter_mut().zip(pre.iter().zip(bi.iter().zip(bh))) {
                *y = (*p + *a + *c).tanh_fast();
            }
        }
    }

    /// The cell alone, after the whole step's recurrent product was added by one GEMM.
    fn cells_only(mut self, s: &ForwardShared<'_, T>) {
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

impl<'a, 's, T: Float> SplitByUnits<ForwardShared<'s, T>> for ForwardPart<'a, T> {
    fn units(&self) -> Range<usize> {
        self.units.clone()
    }

    fn split_at(self, at: usize) -> (Self, Self) {
        let local = at - self.units.start;
        let (p1, p2) = self.pre.split_at_col_mut(local);
        let (h1, h2) = self.h.split_at_col_mut(local);
        (
            ForwardPart { units: self.units.start..at, pre: p1, h: h1 },
            ForwardPart { units: at..self.units.end, pre: p2, h: h2 },
        )
    }

    /// `pre[:, U] += h_{t-1}·W_hh[U, :]ᵀ`, then the cell for its units.
    fn run_part(mut self, s: &ForwardShared<'s, T>) {
        let (bsz, hd) = (s.batch, s.hidden);
        let w = mat(s.w_hh, hd, hd).subrows(self.units.start, self.units.len()).transpose();
        gemm(self.pre.as_mut(), true, mat(s.h_prev, bsz, hd), w, Par::Seq);
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

/// What one backward step reads, shared by every part.
#[derive(Clone, Copy)]
struct BackwardShared<'a, T> {
    /// Pre-activation gradients of step `t + 1`, `[B, H]`, or `None` at the window's last step.
    da_next: Option<&'a [T]>,
    w_hh: &'a [T],
    /// `h_t`, `[B, H]`.
    h: &'a [T],
    /// The loss's gradient of `h_t`, `[B, H]`.
    dh_out: &'a [T],
    batch: usize,
    hidden: usize,
}

/// What one backward step writes for the units `units`: `da_t` and `dh` (from step `t + 1`).
struct BackwardPart<'a, T> {
    units: Range<usize>,
    da: MatMut<'a, T>,
    dh_next: MatMut<'a, T>,
}

impl<'a, T: Float> BackwardPart<'a, T> {
    /// The whole step: `da`, `dh_next` `[B, H]`.
    fn new(da: &'a mut [T], dh_next: &'a mut [T], batch: usize, hidden: usize) -> Self {
        BackwardPart {
            units: 0..hidden,
            da: mat_mut(da, batch, hidden),
            dh_next: mat_mut(dh_next, batch, hidden),
        }
    }

    /// `da = (dh_out + dh_next) ⊙ (1 − h²)` over this part's units.
    #[inline(always)]
    fn cells(&mut self, s: &BackwardShared<'_, T>) {
        let (hd, one) = (s.hidden, T::from_f64(1.0));
        let u = self.units.clone();
        for b in 0..s.batch {
            let r = b * hd + u.start..b * hd + u.end;
            let (h, dho) = (&s.h[r.clone()], &s.dh_out[r]);
            let (da, dhn) = (row(&mut self.da, b), row(&mut self.dh_next, b));
            for (d, (hv, (a, c))) in da.iter_mut().zip(h.iter().zip(dho.iter().zip(dhn.iter()))) {
                *d = (*a + *c) * (one - *hv * *hv);
            }
        }
    }

    /// The element-wise pass alone, after the whole `dh_next` was computed by one GEMM.
    fn cells_only(mut self, s: &BackwardShared<'_, T>) {
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

impl<'a, 's, T: Float> SplitByUnits<BackwardShared<'s, T>> for BackwardPart<'a, T> {
    fn units(&self) -> Range<usize> {
        self.units.clone()
    }

    fn split_at(self, at: usize) -> (Self, Self) {
        let local = at - self.units.start;
        let (a1, a2) = self.da.split_at_col_mut(local);
        let (h1, h2) = self.dh_next.split_at_col_mut(local);
        (
            BackwardPart { units: self.units.start..at, da: a1, dh_next: h1 },
            BackwardPart { units: at..self.units.end, da: a2, dh_next: h2 },
        )
    }

    /// `dh[:, U] = da_{t+1}·W_hh[:, U]`, then the element-wise pass for its units.
    fn run_part(mut self, s: &BackwardShared<'s, T>) {
        let (bsz, hd) = (s.batch, s.hidden);
        if let Some(da_next) = s.da_next {
            let w = mat(s.w_hh, hd, hd).subcols(self.units.start, self.units.len());
            gemm(self.dh_next.as_mut(), false, mat(da_next, bsz, hd), w, Par::Seq);
        }
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

impl<T: Float> StepOp<T> for RnnTanhOp {
    fn output(&self) -> SlotId {
        self.slots.h
    }

    fn step_threads(&self, par: Par) -> usize {
        self.parts(par)
    }

    /// `B·H·H` multiply-adds per step, weighted like the LSTM's; per stream.
    fn step_cost(&self) -> f64 {
        RECURRENCE_COST_FACTOR * (self.hidden * self.hidden) as f64
    }

    /// Every step's input projection in one GEMM, `pre = X·W_ihᵀ` (`[T·B, E]×[E, H]`), and the
    /// cached `W_hhᵀ` the one-part recurrence reads.
    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        let n = acts.rows();
        let (e, hd) = (self.embed, self.hidden);
        let s = &self.slots;
        let [x, pre, w_hh_t] = acts.slots_mut([s.input, s.pre, s.w_hh_t]);
        if self.parts(par) == 1 {
            self.fill_w_hh_t(params, &mut w_hh_t.value);
        }
        let w_ih = mat(params.get(self.params.w_ih), hd, e).transpose();
        gemm(mat_mut(&mut pre.value, n, hd), false, mat(&x.value, n, e), w_ih, par);
    }

    /// The recurrence over `steps`: per step `pre_t += h_{t-1}·W_hhᵀ`, then `h_t = tanh(pre_t +
    /// b_ih + b_hh)`, in as many parts by hidden units as [`StepOp::step_threads`] says. Reads
    /// `h0` at step 0, else `prev`.
    fn run_steps(
        &self,
        params: &Params<T>,
        acts: &mut Activations<T>,
        prev: &[T],
        out: &mut [T],
        steps: Range<usize>,
        par: Par,
    ) {
        let (hd, bsz) = (self.hidden, self.batch);
        let len = bsz * hd;
        let parts = self.parts(par);
        let s = &self.slots;
        let [pre, h0, w_hh_t] = acts.slots_mut([s.pre, s.h0, s.w_hh_t]);
        let init = if steps.start == 0 { &h0.value[..len] } else { &prev[prev.len() - len..] };
        let w_hh = params.get(self.params.w_hh);
        let (b_ih, b_hh) = (params.get(self.params.b_ih), params.get(self.params.b_hh));
        for (i, t) in steps.enumerate() {
            let pre_t = &mut pre.value[t * len..(t + 1) * len];
            let (h_prev, h_t) = prev_and_cur(out, init, i, len);
            let shared = ForwardShared { h_prev, w_hh, b_ih, b_hh, batch: bsz, hidden: hd };
            if parts == 1 {
                gemm(mat_mut(pre_t, bsz, hd), true, mat(h_prev, bsz, hd), mat(&w_hh_t.value, hd, hd), par);
                ForwardPart::new(pre_t, h_t, bsz, hd).cells_only(&shared);
            } else {
                run_split(ForwardPart::new(pre_t, h_t, bsz, hd), &shared, parts);
            }
        }
    }
}

impl<T: Float> Op<T> for RnnTanhOp {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads `input` `[T·B, E]` and `h0` `[B, H]`; writes `pre` and `h` for the current window.
    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        run_steps_whole(self, params, acts, par);
    }

    /// A recurrence the tape may overlap with the head (see `stagewise_core::tape`).
    fn pieces(&self) -> Pieces<'_, T> {
        Pieces::Steps(self)
    }

    /// Reads `h.grad` `[T·B, H]` and `h`; accumulates into the four parameter gradients and
    /// overwrites `input.grad` (skipped if the input has no gradient buffer). Nothing flows into
    /// `h0` (truncated BPTT).
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par) {
        let (e, hd, bsz) = (self.embed, self.hidden, self.batch);
        let steps = acts.steps();
        let len = bsz * hd;
        let s = &self.slots;
        let [x, h, h0, da, dh_next, dw_t, h_prev_t] =
            acts.slots_mut([s.input, s.h, s.h0, s.da, s.dh_next, s.dw_t, s.h_prev_t]);
        let w_hh = params.get(self.params.w_hh);
        let da = &mut da.value;
        let dh_next = &mut dh_next.value[..len];
        dh_next.fill(T::from_f64(0.0));

        // Reverse recurrence: per step, dh_t = da_{t+1}·W_hh ([B, H]×[H, H]; zero at the window's
        // last step) and one element-wise pass.
        let parts = self.parts(par);
        for t in (0..steps).rev() {
            let (now, later) = da.split_at_mut((t + 1) * len);
            let da_t = &mut now[t * len..];
            let da_next = (t + 1 < steps).then(|| &later[..len]);
            let rows = t * len..(t + 1) * len;
            let shared = BackwardShared {
                da_next,
                w_hh,
                h: &h.value[rows.clone()],
                dh_out: &h.grad[rows],
                batch: bsz,
                hidden: hd,
            };
            if parts == 1 {
                if let Some(da_next) = da_next {
                    gemm(mat_mut(dh_next, bsz, hd), false, mat(da_next, bsz, hd), mat(w_hh, hd, hd), par);
                }
                BackwardPart::new(da_t, dh_next, bsz, hd).cells_only(&shared);
            } else {
                run_split(BackwardPart::new(da_t, dh_next, bsz, hd), &shared, parts);
            }
        }

        let sizes = LayerSizes { input: e, hidden: hd, gates: 1, batch: bsz, steps };
        WeightGrads {
            x: &x.value,
            x_grad: &mut x.grad,
            h0: &h0.value,
            h: &h.value,
            dgi: da,
            dgh: None,
            h_prev_t: &mut h_prev_t.value,
            dw_t: &mut dw_t.value,
        }
        .accumulate(params, grads, self.params, sizes, par);
    }

    /// Copies the window's last `h` into `h0` (truncated BPTT).
    fn end_window(&self, acts: &mut Activations<T>) {
        let len = self.batch * self.hidden;
        let last = (acts.steps() - 1) * len..acts.steps() * len;
        let [h, h0] = acts.slots_mut([self.slots.h, self.slots.h0]);
        h0.value[..len].copy_from_slice(&h.value[last]);
    }

    /// Zeroes `h0`, as PyTorch does when no state is passed.
    fn reset_state(&self, acts: &mut Activations<T>) {
        acts.slot_mut(self.slots.h0).value.fill(T::from_f64(0.0));
    }
}
