//! The LSTM layer as one coarse op over the whole window, with its naive reference beside it.
//!
//! Semantics are PyTorch's `nn.LSTM` (one layer, batch not first, gate order i, f, g, o):
//!
//! ```text
//! a_t = x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh          [B, 4H]
//! i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
//! c_t = f ⊙ c_{t-1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)
//! ```
//!
//! The fast path does one GEMM `[T·B, E]×[E, 4H]` for every step's input projection, then per
//! step one `[B, H]×[H, 4H]` GEMM and one fused element-wise pass. The backward pass runs the
//! recurrence in reverse (one fused pass and one `[B, 4H]×[4H, H]` GEMM per step) and computes
//! the weight gradients after the loop as large GEMMs over all steps.

use crate::cache::FilledAt;
use crate::lstm_cell::{BackwardPart, BackwardShared, ForwardPart, ForwardShared, run_split, unit_parts};
use crate::recurrent::{
    LayerSizes, RecurrentKind, RecurrentParams, RecurrentWeights, WeightGrads, declare_params, layer_name,
    prev_and_cur,
};
use std::ops::Range;

use stagewise_core::{
    Activations, Error, Float, Grads, Op, Par, Params, Pieces, Result, Rng, SlotId, StepOp, Tape,
    checked_size, run_steps_whole,
};
use stagewise_kernels::matrix::{gemm, mat, mat_mut};
use stagewise_kernels::rows::copy_transposed;
use stagewise_kernels::tuning::RECURRENCE_COST_FACTOR;

/// PyTorch's name prefix of the layer; parameter names and slot names start with it.
pub const LSTM_PREFIX: &str = "lstm";

/// The parameters of an LSTM layer borrowed as plain slices (`[4H, ·]`, gate blocks i, f, g, o),
/// for the naive reference functions.
pub type LstmWeights<'a, T> = RecurrentWeights<'a, T>;

/// One LSTM step for one stream, in plain loops: the algorithmic reference for the fast kernel.
///
/// `x` is `[E]`, `h_prev`, `c_prev`, `h`, `c` are `[H]`. Writes `h_t` into `h` and `c_t` into `c`.
#[allow(clippy::needless_range_loop)] // indexed loops read like the equations they check
pub fn lstm_cell_naive<T: Float>(
    w: LstmWeights<'_, T>,
    x: &[T],
    h_prev: &[T],
    c_prev: &[T],
    h: &mut [T],
    c: &mut [T],
) {
    let (e, hd) = (w.embed, w.hidden);
    let pre = |k: usize| {
        let mut s = w.b_ih[k] + w.b_hh[k];
        for p in 0..e {
            s += w.w_ih[k * e + p] * x[p];
        }
        for p in 0..hd {
            s += w.w_hh[k * hd + p] * h_prev[p];
        }
        s
    };
    for j in 0..hd {
        let i = pre(j).sigmoid();
        let f = pre(hd + j).sigmoid();
        let g = pre(2 * hd + j).tanh();
        let o = pre(3 * hd + j).sigmoid();
        c[j] = f * c_prev[j] + i * g;
        h[j] = o * c[j].tanh();
    }
}

/// The whole window in plain loops: the reference [`LstmOp`]'s forward is tested against.
///
/// `x` is `[steps·B, E]` time-major (row `t·B + b` is step `t` of stream `b`; `steps` is
/// `x.len() / (B·E)`); `h0`, `c0` are `[B, H]`; `h_out`, `c_out` are `[steps·B, H]` and receive
/// every step's `h_t` and `c_t`. Allocates (it is a reference, not a kernel).
pub fn lstm_forward_naive<T: Float>(
    w: LstmWeights<'_, T>,
    x: &[T],
    h0: &[T],
    c0: &[T],
    batch: usize,
    h_out: &mut [T],
    c_out: &mut [T],
) {
    let (e, hd) = (w.embed, w.hidden);
    let steps = x.len() / (batch * e);
    let (mut h, mut c) = (vec![T::from_f64(0.0); hd], vec![T::from_f64(0.0); hd]);
    for t in 0..steps {
        for b in 0..batch {
            let row = t * batch + b;
            let (h_prev, c_prev) = if t == 0 {
                (&h0[b * hd..(b + 1) * hd], &c0[b * hd..(b + 1) * hd])
            } else {
                let prev = row - batch;
                (&h_out[prev * hd..(prev + 1) * hd], &c_out[prev * hd..(prev + 1) * hd])
            };
            lstm_cell_naive(w, &x[row * e..(row + 1) * e], h_prev, c_prev, &mut h, &mut c);
            h_out[row * hd..(row + 1) * hd].copy_from_slice(&h);
            c_out[row * hd..(row + 1) * hd].copy_from_slice(&c);
        }
    }
}

/// The [`ParamId`](stagewise_core::ParamId)s of an LSTM layer (`lstm.weight_ih_l{k}`,
/// `lstm.weight_hh_l{k}`, `lstm.bias_ih_l{k}`, `lstm.bias_hh_l{k}`, all `[4H, ·]`).
pub type LstmParams = RecurrentParams;

/// The activation buffers of an LSTM layer, declared once on the tape.
///
/// Public so tests, generation and diagnostics can reach the recurrent state and the saved
/// intermediates without searching slots by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmSlots {
    /// The input `x`, `[T·B, E]` (not owned by the layer; usually the embedding's output).
    pub input: SlotId,
    /// Gate activations after the non-linearities, `[T·B, 4H]`, blocks i, f, g, o (no grad).
    pub gates: SlotId,
    /// Cell states `c_t`, `[T·B, H]` (no grad).
    pub c: SlotId,
    /// `tanh(c_t)`, `[T·B, H]`, saved for the backward pass (no grad).
    pub tanh_c: SlotId,
    /// The output `h_t`, `[T·B, H]`, with grad.
    pub h: SlotId,
    /// Initial hidden state of the window, flat `[B, H]` (no grad: truncated BPTT).
    pub h0: SlotId,
    /// Initial cell state of the window, flat `[B, H]` (no grad).
    pub c0: SlotId,
    /// Backward scratch: gradients of the gate pre-activations, `[T·B, 4H]`.
    pub dgates: SlotId,
    /// Backward scratch: `dh_t` flowing back from step `t+1`, flat `[B, H]`.
    pub dh_next: SlotId,
    /// Backward scratch: `dc_t` flowing back from step `t+1`, flat `[B, H]`.
    pub dc_next: SlotId,
    /// Backward scratch: one weight gradient, transposed, flat `[max(E, H), 4H]`.
    pub dw_t: SlotId,
    /// Backward scratch: `h_0 … h_{T-2}` transposed, flat `[H, T·B]`, the left operand of the
    /// `W_hh` gradient in the layout faer reads without repacking.
    pub h_prev_t: SlotId,
    /// `weight_hh_l0` transposed, flat `[H, 4H]`: the recurrent product's right-hand side in the
    /// layout faer reads without repacking (one-thread steps 14 % faster at the seed size),
    /// refilled only when the weights change.
    pub w_hh_t: SlotId,
}

/// One LSTM layer over a whole window, as one op of the tape.
///
/// Holds only sizes and handles; every buffer lives in the tape, so a cycle allocates nothing.
#[derive(Clone, Debug)]
pub struct LstmOp {
    /// `lstm` for the first layer, `lstm_l{k}` after it: the op's name and its slots' prefix.
    name: String,
    embed: usize,
    hidden: usize,
    batch: usize,
    params: LstmParams,
    slots: LstmSlots,
    /// The parameters' version `lstm.w_hh_t` was last filled from.
    filled_at: FilledAt,
}

impl LstmOp {
    /// Declares the layer on `tape`: PyTorch-named parameters initialised from
    /// `Rng::stream(seed, "lstm")` (U(−1/√H, 1/√H) like `nn.LSTM.reset_parameters`, drawn in
    /// PyTorch's parameter order), the output slot `lstm.h` and every intermediate the forward
    /// and backward passes need. Returns the op; the caller pushes it.
    ///
    /// `input` must be a row slot (width E > 0). Fails on a zero `hidden` or a flat input.
    pub fn declare<T: Float>(tape: &mut Tape<T>, input: SlotId, hidden: usize, seed: u64) -> Result<Self> {
        Self::declare_layer(tape, input, hidden, 0, &mut Rng::stream(seed, LSTM_PREFIX))
    }

    /// Declares layer `layer` of a stack (`lstm.weight_ih_l{layer}`, ...; slots `lstm_l{layer}.*`
    /// after the first), reading `input` (the embedding, or the layer below), its parameters drawn
    /// from `rng`, which the caller threads through the layers in order as PyTorch does.
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
            return Err(Error::shape(
                format!("lstm input {name}"),
                "a row slot of width E > 0",
                "a flat slot",
            ));
        }
        if hidden == 0 {
            return Err(Error::config("hidden", "must be at least 1"));
        }
        let h4 = checked_size("lstm gates", &[4, hidden])?;
        let params = declare_params(tape, RecurrentKind::Lstm, layer, embed, hidden, rng)?;
        let name = layer_name(LSTM_PREFIX, layer);
        let batch = tape.acts.batch();
        let acts = &mut tape.acts;
        let slot = |what: &str| format!("{name}.{what}");
        let slots = LstmSlots {
            input,
            gates: acts.declare_rows(&slot("gates"), h4, false)?,
            c: acts.declare_rows(&slot("c"), hidden, false)?,
            tanh_c: acts.declare_rows(&slot("tanh_c"), hidden, false)?,
            h: acts.declare_rows(&slot("h"), hidden, true)?,
            h0: acts.declare_flat(&slot("h0"), &[batch, hidden], false)?,
            c0: acts.declare_flat(&slot("c0"), &[batch, hidden], false)?,
            dgates: acts.declare_rows(&slot("dgates"), h4, false)?,
            dh_next: acts.declare_flat(&slot("dh_next"), &[batch, hidden], false)?,
            dc_next: acts.declare_flat(&slot("dc_next"), &[batch, hidden], false)?,
            dw_t: acts.declare_flat(&slot("dw_t"), &[embed.max(hidden), h4], false)?,
            h_prev_t: acts.declare_flat(&slot("h_prev_t"), &[hidden, acts.max_rows()], false)?,
            w_hh_t: acts.declare_flat(&slot("w_hh_t"), &[hidden, h4], false)?,
        };
        Ok(LstmOp { name, embed, hidden, batch, params, slots, filled_at: FilledAt::never() })
    }

    /// The output slot `h`, `[T·B, H]`.
    pub fn output(&self) -> SlotId {
        self.slots.h
    }

    /// Every slot of the layer.
    pub fn slots(&self) -> LstmSlots {
        self.slots
    }

    /// The layer's parameter handles.
    pub fn params(&self) -> LstmParams {
        self.params
    }

    /// Hidden width H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Input width E.
    pub fn embed(&self) -> usize {
        self.embed
    }

    /// The weights as plain slices, for the naive reference.
    pub fn weights<'a, T: Float>(&self, params: &'a Params<T>) -> LstmWeights<'a, T> {
        LstmWeights {
            w_ih: params.get(self.params.w_ih),
            w_hh: params.get(self.params.w_hh),
            b_ih: params.get(self.params.b_ih),
            b_hh: params.get(self.params.b_hh),
            embed: self.embed,
            hidden: self.hidden,
        }
    }
}

/// The forward buffers of a run of consecutive steps (`gates` `[S·B, 4H]`, the others
/// `[S·B, H]`), holding the input projections in `gates` on entry.
struct StepsMut<'a, T> {
    gates: &'a mut [T],
    c: &'a mut [T],
    tanh_c: &'a mut [T],
    h: &'a mut [T],
}

impl LstmOp {
    /// The recurrence over the steps of `out`, starting from `state = (h, c)` of the step before
    /// the first: per step the recurrent product and the cell, in `parts` parts by hidden units
    /// (see `lstm_cell`).
    ///
    /// `w_hh_t` is `W_hhᵀ` (filled by [`Self::fill_w_hh_t`]), read by the one-part path.
    fn recurrence<T: Float>(
        &self,
        params: &Params<T>,
        w_hh_t: &[T],
        state: (&[T], &[T]),
        out: StepsMut<'_, T>,
        parts: usize,
        par: Par,
    ) {
        let (hd, bsz) = (self.hidden, self.batch);
        let (h4, len) = (4 * hd, bsz * hd);
        let w_hh = params.get(self.params.w_hh);
        let (b_ih, b_hh) = (params.get(self.params.b_ih), params.get(self.params.b_hh));
        let StepsMut { gates, c, tanh_c, h } = out;
        for t in 0..h.len() / len {
            let g_t = &mut gates[t * bsz * h4..(t + 1) * bsz * h4];
            let (h_prev, h_t) = prev_and_cur(h, state.0, t, len);
            let (c_prev, c_t) = prev_and_cur(c, state.1, t, len);
            let tc_t = &mut tanh_c[t * len..(t + 1) * len];
            let shared = ForwardShared { h_prev, c_prev, w_hh, b_ih, b_hh, batch: bsz, hidden: hd };
            if parts == 1 {
                // Recurrent projection: gates_t += h_{t-1}·W_hhᵀ  ([B, H]×[H, 4H]), then the cell.
                gemm(mat_mut(g_t, bsz, h4), true, mat(h_prev, bsz, hd), mat(w_hh_t, hd, h4), par);
                ForwardPart::new(g_t, c_t, tc_t, h_t, bsz, hd).cells_only(&shared);
            } else {
                // The same per thread, each on its own block of hidden units (see `lstm_cell`).
                run_split(ForwardPart::new(g_t, c_t, tc_t, h_t, bsz, hd), &shared, parts);
            }
        }
    }

    /// Copies `W_hhᵀ` into `w_hh_t` `[H, 4H]`, unless it already holds these weights (see
    /// [`FilledAt`]).
    fn fill_w_hh_t<T: Float>(&self, params: &Params<T>, w_hh_t: &mut [T]) {
        let version = params.version();
        if self.filled_at.is(version) {
            return;
        }
        let hd = self.hidden;
        copy_transposed(&mut w_hh_t[..hd * 4 * hd], params.get(self.params.w_hh), hd, 4 * hd, Par::Seq);
        self.filled_at.set(version);
    }

    /// Every step's input projection: `gates = X·W_ihᵀ` over the window's `n` rows.
    fn input_projection<T: Float>(&self, params: &Params<T>, x: &[T], gates: &mut [T], n: usize, par: Par) {
        let (e, h4) = (self.embed, 4 * self.hidden);
        let w_ih = params.get(self.params.w_ih);
        gemm(mat_mut(gates, n, h4), false, mat(x, n, e), mat(w_ih, h4, e).transpose(), par);
    }
}

impl<T: Float> StepOp<T> for LstmOp {
    fn output(&self) -> SlotId {
        self.slots.h
    }

    fn step_threads(&self, par: Par) -> usize {
        unit_parts(par, self.batch, self.hidden)
    }

    /// `B·H·4H` multiply-adds per step, weighted by [`RECURRENCE_COST_FACTOR`] for the cell pass
    /// and the small product's lower efficiency; per stream.
    fn step_cost(&self) -> f64 {
        RECURRENCE_COST_FACTOR * (4 * self.hidden * self.hidden) as f64
    }

    /// Every step's input projection in one GEMM, `gates = X·W_ihᵀ` (`[T·B, E]×[E, 4H]`), and the
    /// cached `W_hhᵀ` the one-part recurrence reads.
    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        let n = acts.rows();
        let s = &self.slots;
        let [x, gates, w_hh_t] = acts.slots_mut([s.input, s.gates, s.w_hh_t]);
        if unit_parts(par, self.batch, self.hidden) == 1 {
            self.fill_w_hh_t(params, &mut w_hh_t.value);
        }
        self.input_projection(params, &x.value, &mut gates.value, n, par);
    }

    /// The recurrence over `steps`: per step the recurrent product and the cell, in as many parts
    /// by hidden units as [`StepOp::step_threads`] says (see `lstm_cell`). Reads `h0`, `c0` at step 0,
    /// else `prev` and the previous step's `c`.
    fn run_steps(
        &self,
        params: &Params<T>,
        acts: &mut Activations<T>,
        prev: &[T],
        out: &mut [T],
        steps: Range<usize>,
        par: Par,
    ) {
        let len = self.batch * self.hidden;
        let (first, count) = (steps.start, steps.len());
        let h4 = 4 * self.hidden;
        let s = &self.slots;
        let [gates, c, tanh_c, h0, c0, w_hh_t] =
            acts.slots_mut([s.gates, s.c, s.tanh_c, s.h0, s.c0, s.w_hh_t]);
        let (c_before, c_after) = c.value.split_at_mut(first * len);
        let state = if first == 0 {
            (&h0.value[..len], &c0.value[..len])
        } else {
            (&prev[prev.len() - len..], &c_before[(first - 1) * len..])
        };
        let run = StepsMut {
            gates: &mut gates.value[first * self.batch * h4..(first + count) * self.batch * h4],
            c: &mut c_after[..count * len],
            tanh_c: &mut tanh_c.value[first * len..(first + count) * len],
            h: &mut out[..count * len],
        };
        self.recurrence(params, &w_hh_t.value, state, run, unit_parts(par, self.batch, self.hidden), par);
    }
}

impl<T: Float> Op<T> for LstmOp {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads `input` `[T·B, E]`, `h0`, `c0` `[B, H]`; writes `gates` (activated), `c`, `tanh_c`
    /// and `h` `[T·B, ·]` for the current window. `h0` and `c0` are only read.
    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        run_steps_whole(self, params, acts, par);
    }

    /// A recurrence the tape may overlap with the head (see `stagewise_core::tape`).
    fn pieces(&self) -> Pieces<'_, T> {
        Pieces::Steps(self)
    }

    /// Reads `h.grad` `[T·B, H]` and the intermediates saved by `forward`; accumulates into the
    /// four parameter gradients and overwrites `input.grad` `[T·B, E]` (skipped if the input has
    /// no gradient buffer). Nothing flows into `h0`/`c0` (truncated BPTT).
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par) {
        let (e, hd, bsz) = (self.embed, self.hidden, self.batch);
        let h4 = 4 * hd;
        let steps = acts.steps();
        let len = bsz * hd;
        let s = &self.slots;
        let [x, gates, c, tanh_c, h, h0, c0, dgates, dh_next, dc_next, dw_t, h_prev_t] = acts.slots_mut([
            s.input, s.gates, s.c, s.tanh_c, s.h, s.h0, s.c0, s.dgates, s.dh_next, s.dc_next, s.dw_t,
            s.h_prev_t,
        ]);
        let w_hh = params.get(self.params.w_hh);
        let dgates = &mut dgates.value;
        let (dh_next, dc_next) = (&mut dh_next.value[..len], &mut dc_next.value[..len]);
        dh_next.fill(T::from_f64(0.0));
        dc_next.fill(T::from_f64(0.0));

        // Reverse recurrence: per step, dh_t = dGates_{t+1}·W_hh ([B, 4H]×[4H, H]; zero at the
        // window's last step) and one fused element-wise pass.
        let parts = unit_parts(par, bsz, hd);
        for t in (0..steps).rev() {
            let (now, later) = dgates.split_at_mut((t + 1) * bsz * h4);
            let dg_t = &mut now[t * bsz * h4..];
            let dg_next = (t + 1 < steps).then(|| &later[..bsz * h4]);
            let rows = t * len..(t + 1) * len;
            let shared = BackwardShared {
                dg_next,
                w_hh,
                gates: &gates.value[t * bsz * h4..(t + 1) * bsz * h4],
                tanh_c: &tanh_c.value[rows.clone()],
                c_prev: if t == 0 { &c0.value[..len] } else { &c.value[(t - 1) * len..t * len] },
                dh_out: &h.grad[rows],
                batch: bsz,
                hidden: hd,
            };
            if parts == 1 {
                if let Some(dg_next) = dg_next {
                    gemm(mat_mut(dh_next, bsz, hd), false, mat(dg_next, bsz, h4), mat(w_hh, h4, hd), par);
                }
                BackwardPart::new(dg_t, dh_next, dc_next, bsz, hd).cells_only(&shared);
            } else {
                run_split(BackwardPart::new(dg_t, dh_next, dc_next, bsz, hd), &shared, parts);
            }
        }

        // Weight gradients as large GEMMs over every step, then the input gradient.
        let sizes = LayerSizes { input: e, hidden: hd, gates: 4, batch: bsz, steps };
        WeightGrads {
            x: &x.value,
            x_grad: &mut x.grad,
            h0: &h0.value,
            h: &h.value,
            dgi: dgates,
            dgh: None,
            h_prev_t: &mut h_prev_t.value,
            dw_t: &mut dw_t.value,
        }
        .accumulate(params, grads, self.params, sizes, par);
    }

    /// Copies the last step's `h` and `c` of the window into `h0`, `c0`: the next window starts
    /// where this one ended, with no gradient path back (truncated BPTT).
    fn end_window(&self, acts: &mut Activations<T>) {
        let len = self.batch * self.hidden;
        let last = (acts.steps() - 1) * len..acts.steps() * len;
        let s = &self.slots;
        let [h, c, h0, c0] = acts.slots_mut([s.h, s.c, s.h0, s.c0]);
        h0.value[..len].copy_from_slice(&h.value[last.clone()]);
        c0.value[..len].copy_from_slice(&c.value[last]);
    }

    /// Zeroes `h0` and `c0`, as PyTorch does when no state is passed.
    fn reset_state(&self, acts: &mut Activations<T>) {
        let zero = T::from_f64(0.0);
        acts.slot_mut(self.slots.h0).value.fill(zero);
        acts.slot_mut(self.slots.c0).value.fill(zero);
    }
}
