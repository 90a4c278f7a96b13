//! The GRU layer as one coarse op over the whole window, with its naive reference beside it.
//!
//! Semantics are PyTorch's `nn.GRU` (batch not first, gate order r, z, n; `aten/src/ATen/native/
//! RNN.cpp`, `GRUCell`), with `b_hn` inside the reset product:
//!
//! ```text
//! r = σ(x·W_irᵀ + b_ir + h·W_hrᵀ + b_hr)
//! z = σ(x·W_izᵀ + b_iz + h·W_hzᵀ + b_hz)
//! n = tanh(x·W_inᵀ + b_in + r ⊙ (h·W_hnᵀ + b_hn))
//! h' = (1 − z) ⊙ n + z ⊙ h          computed as PyTorch does: n + z ⊙ (h − n)
//! ```
//!
//! The fast path does one GEMM `[T·B, E]×[E, 3H]` for every step's input projection, then per
//! step one `[B, H]×[H, 3H]` GEMM into a step scratch and one fused element-wise pass. The
//! hidden-side and input-side sums must stay apart (the reset gate multiplies only the hidden
//! side of `n`), so the backward pass keeps two gate gradients: `dGi` for `W_ih`, `b_ih` and the
//! input, `dGh` for `W_hh`, `b_hh` and the recurrence (they differ only in the `n` block,
//! `dGh_n = dGi_n ⊙ r`). It runs the recurrence in reverse (one `[B, 3H]×[3H, H]` GEMM and one
//! fused pass per step) and computes the weight gradients after the loop as large GEMMs.
//!
//! As for the LSTM (`lstm_cell`), a step large enough is split across threads by hidden units:
//! the part owning units `U` computes the three gate columns of `U` and then the cell for `U`.

use std::ops::Range;

use crate::cache::FilledAt;
use crate::lstm_cell::{SplitByUnits, gate_blocks, row, run_split, split_gates, unit_parts_of};
use crate::recurrent::{
    LayerSizes, RecurrentKind, RecurrentParams, RecurrentWeights, WeightGrads, declare_params, layer_name,
    prev_and_cur,
};
use stagewise_core::{
    Activations, Error, Float, Grads, Op, Par, Params, Pieces, Result, Rng, SlotId, StepOp, Tape,
    checked_size, run_steps_whole,
};
use stagewise_kernels::matrix::{MatMut, gemm, mat, mat_mut, with_wide_simd};
use stagewise_kernels::rows::copy_transposed;
use stagewise_kernels::tuning::RECURRENCE_COST_FACTOR;

/// PyTorch's name prefix of the module in the reference model (`gru.weight_ih_l0`, ...).
pub const GRU_PREFIX: &str = "gru";

/// Gate blocks of a GRU layer: r, z, n.
const GATES: usize = 3;

/// The parameters of a GRU layer borrowed as plain slices (`[3H, ·]`, gate blocks r, z, n), for
/// the naive reference functions.
pub type GruWeights<'a, T> = RecurrentWeights<'a, T>;

/// One GRU step for one stream, in plain loops: the algorithmic reference for the fast kernel.
///
/// `x` is `[E]`, `h_prev` and `h` are `[H]`. Writes `h_t` into `h`.
#[allow(clippy::needless_range_loop)] // indexed loops read like the equations they check
pub fn gru_cell_naive<T: Float>(w: GruWeights<'_, T>, x: &[T], h_prev: &[T], h: &mut [T]) {
    let (e, hd) = (w.embed, w.hidden);
    // The input side `x·W_ihᵀ + b_ih` and the hidden side `h·W_hhᵀ + b_hh` of gate row `k`.
    let input_side = |k: usize| {
        let mut s = w.b_ih[k];
        for p in 0..e {
            s += w.w_ih[k * e + p] * x[p];
        }
        s
    };
    let hidden_side = |k: usize| {
        let mut s = w.b_hh[k];
        for p in 0..hd {
            s += w.w_hh[k * hd + p] * h_prev[p];
        }
        s
    };
    for j in 0..hd {
        let r = (input_side(j) + hidden_side(j)).sigmoid();
        let z = (input_side(hd + j) + hidden_side(hd + j)).sigmoid();
        let n = (input_side(2 * hd + j) + r * hidden_side(2 * hd + j)).tanh();
        h[j] = (T::from_f64(1.0) - z) * n + z * h_prev[j];
    }
}

/// The whole window in plain loops: the reference [`GruOp`]'s forward is tested against.
///
/// `x` is `[steps·B, E]` time-major (row `t·B + b` is step `t` of stream `b`; `steps` is
/// `x.len() / (B·E)`); `h0` is `[B, H]`; `h_out` `[steps·B, H]` receives every step's `h_t`.
/// Allocates (it is a reference, not a kernel).
pub fn gru_forward_naive<T: Float>(w: GruWeights<'_, T>, x: &[T], h0: &[T], batch: usize, h_out: &mut [T]) {
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
            gru_cell_naive(w, &x[row * e..(row + 1) * e], h_prev, &mut h);
            h_out[row * hd..(row + 1) * hd].copy_from_slice(&h);
        }
    }
}

/// The activation buffers of a GRU layer, declared once on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GruSlots {
    /// The input `x`, `[T·B, E]` (not owned by the layer: the embedding or the layer below).
    pub input: SlotId,
    /// `[T·B, 3H]`: every step's input projection `x·W_ihᵀ` (`begin`), then the activated gates
    /// r, z, n (no grad).
    pub gates: SlotId,
    /// `h·W_hnᵀ + b_hn` of every step, `[T·B, H]`, saved for the backward pass (no grad).
    pub hn: SlotId,
    /// The output `h_t`, `[T·B, H]`, with grad.
    pub h: SlotId,
    /// Initial hidden state of the window, flat `[B, H]` (no grad: truncated BPTT).
    pub h0: SlotId,
    /// One step's recurrent product `h_{t-1}·W_hhᵀ`, flat `[B, 3H]`.
    pub gh: SlotId,
    /// Backward scratch: gradients of the input-side pre-activations, `[T·B, 3H]`.
    pub dgi: SlotId,
    /// Backward scratch: gradients of the hidden-side pre-activations, `[T·B, 3H]`.
    pub dgh: SlotId,
    /// Backward scratch: the gradient of `h_t` from step `t + 1`, flat `[B, H]`.
    pub dh_next: SlotId,
    /// Backward scratch: one weight gradient, transposed, flat `[max(E, H), 3H]`.
    pub dw_t: SlotId,
    /// Backward scratch: `h_0 … h_{T-2}` transposed, flat `[H, T·B]`.
    pub h_prev_t: SlotId,
    /// `weight_hh` transposed, flat `[H, 3H]`, the one-part recurrence's right-hand side,
    /// refilled only when the weights change.
    pub w_hh_t: SlotId,
}

/// One GRU layer over a whole window, as one op of the tape.
///
/// Holds only sizes and handles; every buffer lives in the tape, so a cycle allocates nothing.
#[derive(Clone, Debug)]
pub struct GruOp {
    /// `gru` for the first layer, `gru_l{k}` after it: the op's name and its slots' prefix.
    name: String,
    embed: usize,
    hidden: usize,
    batch: usize,
    params: RecurrentParams,
    slots: GruSlots,
    /// The parameters' version `w_hh_t` was last filled from.
    filled_at: FilledAt,
}

impl GruOp {
    /// Declares a one-layer GRU on `tape` reading `input`, its parameters drawn from
    /// `Rng::stream(seed, "gru")`. See [`GruOp::declare_layer`].
    pub fn declare<T: Float>(tape: &mut Tape<T>, input: SlotId, hidden: usize, seed: u64) -> Result<Self> {
        Self::declare_layer(tape, input, hidden, 0, &mut Rng::stream(seed, GRU_PREFIX))
    }

    /// Declares layer `layer` of a stack: PyTorch-named parameters (`gru.weight_ih_l{layer}`
    /// `[3H, in]`, `gru.weight_hh_l{layer}` `[3H, H]`, `gru.bias_ih_l{layer}`,
    /// `gru.bias_hh_l{layer}` `[3H]`) drawn from `rng` U(−1/√H, 1/√H) in PyTorch's order, the
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
            return Err(Error::shape(format!("gru input {name}"), "a row slot of width > 0", "a flat slot"));
        }
        if hidden == 0 {
            return Err(Error::config("hidden", "must be at least 1"));
        }
        let h3 = checked_size("gru gates", &[GATES, hidden])?;
        let params = declare_params(tape, RecurrentKind::Gru, layer, embed, hidden, rng)?;
        let name = layer_name(GRU_PREFIX, layer);
        let batch = tape.acts.batch();
        let acts = &mut tape.acts;
        let slot = |what: &str| format!("{name}.{what}");
        let slots = GruSlots {
            input,
            gates: acts.declare_rows(&slot("gates"), h3, false)?,
            hn: acts.declare_rows(&slot("hn"), hidden, false)?,
            h: acts.declare_rows(&slot("h"), hidden, true)?,
            h0: acts.declare_flat(&slot("h0"), &[batch, hidden], false)?,
            gh: acts.declare_flat(&slot("gh"), &[batch, h3], false)?,
            dgi: acts.declare_rows(&slot("dgi"), h3, false)?,
            dgh: acts.declare_rows(&slot("dgh"), h3, false)?,
            dh_next: acts.declare_flat(&slot("dh_next"), &[batch, hidden], false)?,
            dw_t: acts.declare_flat(&slot("dw_t"), &[embed.max(hidden), h3], false)?,
            h_prev_t: acts.declare_flat(&slot("h_prev_t"), &[hidden, acts.max_rows()], false)?,
            w_hh_t: acts.declare_flat(&slot("w_hh_t"), &[hidden, h3], false)?,
        };
        Ok(GruOp { name, embed, hidden, batch, params, slots, filled_at: FilledAt::never() })
    }

    /// The output slot `h`, `[T·B, H]`.
    pub fn output(&self) -> SlotId {
        self.slots.h
    }

    /// Every slot of the layer.
    pub fn slots(&self) -> GruSlots {
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
    pub fn weights<'a, T: Float>(&self, params: &'a Params<T>) -> GruWeights<'a, T> {
        RecurrentWeights::of(params, self.params, self.embed, self.hidden)
    }

    /// How many parts by hidden units a step runs in under `par`.
    fn parts(&self, par: Par) -> usize {
        unit_parts_of(par, self.batch, self.hidden, GATES)
    }

    /// Copies `W_hhᵀ` into `w_hh_t` `[H, 3H]`, unless it already holds these weights.
    fn fill_w_hh_t<T: Float>(&self, params: &Params<T>, w_hh_t: &mut [T]) {
        let version = params.version();
        if self.filled_at.is(version) {
            return;
        }
        let hd = self.hidden;
        copy_transposed(
            &mut w_hh_t[..hd * GATES * hd],
            params.get(self.params.w_hh),
            hd,
            GATES * hd,
            Par::Seq,
        );
        self.filled_at.set(version);
    }
}

/// What one forward step reads, shared by every part.
#[derive(Clone, Copy)]
struct ForwardShared<'a, T> {
    /// `h_{t-1}`, `[B, H]`.
    h_prev: &'a [T],
    /// `weight_hh`, `[3H, H]`.
    w_hh: &'a [T],
    /// `bias_ih`, `bias_hh`, `[3H]`.
    b_ih: &'a [T],
    b_hh: &'a [T],
    batch: usize,
    hidden: usize,
}

/// What one forward step writes for the units `units`: the three `[B, U]` blocks of the gates
/// (input projections on entry, r, z, n on exit), of the step's recurrent product, and `hn`, `h`.
struct ForwardPart<'a, T> {
    units: Range<usize>,
    gates: [MatMut<'a, T>; GATES],
    gh: [MatMut<'a, T>; GATES],
    hn: MatMut<'a, T>,
    h: MatMut<'a, T>,
}

impl<'a, T: Float> ForwardPart<'a, T> {
    /// The whole step: `gates`, `gh` `[B, 3H]`, `hn`, `h` `[B, H]`.
    fn new(
        gates: &'a mut [T],
        gh: &'a mut [T],
        hn: &'a mut [T],
        h: &'a mut [T],
        batch: usize,
        hidden: usize,
    ) -> Self {
        ForwardPart {
            units: 0..hidden,
            gates: gate_blocks(gates, batch, hidden),
            gh: gate_blocks(gh, batch, hidden),
            hn: mat_mut(hn, batch, hidden),
            h: mat_mut(h, batch, hidden),
        }
    }

    /// The cell alone, after the whole step's recurrent product was computed by one GEMM.
    fn cells_only(mut self, s: &ForwardShared<'_, T>) {
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }

    /// The fused element-wise pass over this part's units, row by row, in short loops over a
    /// few slices each (so that each vectorises; see `lstm_cell`).
    #[inline(always)]
    fn cells(&mut self, s: &ForwardShared<'_, T>) {
        let hd = s.hidden;
        let u = self.units.clone();
        let bias = |q: usize| {
            let r = q * hd + u.start..q * hd + u.end;
            (&s.b_ih[r.clone()], &s.b_hh[r])
        };
        let ((bir, bhr), (biz, bhz), (bin, bhn)) = (bias(0), bias(1), bias(2));
        let [gr_m, gz_m, gn_m] = &mut self.gates;
        let [hr_m, hz_m, hnp_m] = &mut self.gh;
        for b in 0..s.batch {
            let (gr, gz, gn) = (row(gr_m, b), row(gz_m, b), row(gn_m, b));
            let (hr, hz, hnp) = (row(hr_m, b), row(hz_m, b), row(hnp_m, b));
            let (hn, h) = (row(&mut self.hn, b), row(&mut self.h, b));
            let hp = &s.h_prev[b * hd + u.start..b * hd + u.end];
            // r and z: σ((x·W_iᵀ + b_i) + (h·W_hᵀ + b_h)), the two sums as PyTorch forms them.
            for ((x, (a, g)), c) in gr.iter_mut().zip(bir.iter().zip(hr.iter())).zip(bhr) {
                *x = ((*x + *a) + (*g + *c)).sigmoid_fast();
            }
            for ((x, (a, g)), c) in gz.iter_mut().zip(biz.iter().zip(hz.iter())).zip(bhz) {
                *x = ((*x + *a) + (*g + *c)).sigmoid_fast();
            }
            for (v, (g, c)) in hn.iter_mut().zip(hnp.iter().zip(bhn)) {
                *v = *g + *c;
            }
            for (x, (a, (r, v))) in gn.iter_mut().zip(bin.iter().zip(gr.iter().zip(hn.iter()))) {
                *x = (*x + *a + *r * *v).tanh_fast();
            }
            for (ht, (n, (z, p))) in h.iter_mut().zip(gn.iter().zip(gz.iter().zip(hp))) {
                *ht = *n + *z * (*p - *n);
            }
        }
    }
}

impl<'a, 's, T: Float> SplitByUnits<ForwardShared<'s, T>> for ForwardPart<'a, T> {
    fn units(&self) -> Range<usize> {
        self.units.clone()
    }

    fn split_at(self, at: usize) -> (Self, Self) {
        let local = at - self.units.start;
        let (g1, g2) = split_gates(self.gates, local);
        let (p1, p2) = split_gates(self.gh, local);
        let (n1, n2) = self.hn.split_at_col_mut(local);
        let (h1, h2) = self.h.split_at_col_mut(local);
        (
            ForwardPart { units: self.units.start..at, gates: g1, gh: p1, hn: n1, h: h1 },
            ForwardPart { units: at..self.units.end, gates: g2, gh: p2, hn: n2, h: h2 },
        )
    }

    /// The recurrent product for this part's gate columns, then the cell for its units.
    fn run_part(mut self, s: &ForwardShared<'s, T>) {
        let (bsz, hd) = (s.batch, s.hidden);
        let h_prev = mat(s.h_prev, bsz, hd);
        let w_hh = mat(s.w_hh, GATES * hd, hd);
        let (u0, nu) = (self.units.start, self.units.len());
        for (q, gh) in self.gh.iter_mut().enumerate() {
            // gh_q[:, U] = h_{t-1}·W_hh[qH + U, :]ᵀ  ([B, H]×[H, U]).
            gemm(gh.as_mut(), false, h_prev, w_hh.subrows(q * hd + u0, nu).transpose(), Par::Seq);
        }
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

/// What one backward step reads, shared by every part.
#[derive(Clone, Copy)]
struct BackwardShared<'a, T> {
    /// Hidden-side gate gradients of step `t + 1`, `[B, 3H]`, or `None` at the window's last step.
    dgh_next: Option<&'a [T]>,
    /// `weight_hh`, `[3H, H]`.
    w_hh: &'a [T],
    /// r, z, n of step `t`, `[B, 3H]`.
    gates: &'a [T],
    /// `h·W_hnᵀ + b_hn` of step `t`, `[B, H]`.
    hn: &'a [T],
    /// `h_{t-1}`, `[B, H]`.
    h_prev: &'a [T],
    /// The loss's gradient of `h_t`, `[B, H]`.
    dh_out: &'a [T],
    batch: usize,
    hidden: usize,
}

/// What one backward step writes for the units `units`: the `[B, U]` blocks of `dGi_t` and
/// `dGh_t`, and the recurrent gradient `dh` (`dh_t`'s share from step `t + 1` on entry, after the
/// product; `dh_{t-1}`'s direct share `dh ⊙ z` on exit).
struct BackwardPart<'a, T> {
    units: Range<usize>,
    dgi: [MatMut<'a, T>; GATES],
    dgh: [MatMut<'a, T>; GATES],
    dh_next: MatMut<'a, T>,
}

impl<'a, T: Float> BackwardPart<'a, T> {
    /// The whole step: `dgi`, `dgh` `[B, 3H]`, `dh_next` `[B, H]`.
    fn new(dgi: &'a mut [T], dgh: &'a mut [T], dh_next: &'a mut [T], batch: usize, hidden: usize) -> Self {
        BackwardPart {
            units: 0..hidden,
            dgi: gate_blocks(dgi, batch, hidden),
            dgh: gate_blocks(dgh, batch, hidden),
            dh_next: mat_mut(dh_next, batch, hidden),
        }
    }

    /// The element-wise pass alone, after the whole `dh_next` product was added by one GEMM.
    fn cells_only(mut self, s: &BackwardShared<'_, T>) {
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }

    /// The fused element-wise pass over this part's units, row by row:
    ///
    /// ```text
    /// dh = dh_out + dh_next;  dz = dh ⊙ (h_prev − n) ⊙ z(1 − z)
    /// dn = dh ⊙ (1 − z) ⊙ (1 − n²);  dr = dn ⊙ hn ⊙ r(1 − r)
    /// dGi = [dr, dz, dn];  dGh = [dr, dz, dn ⊙ r];  dh_next ← dh ⊙ z
    /// ```
    #[inline(always)]
    fn cells(&mut self, s: &BackwardShared<'_, T>) {
        let (hd, one) = (s.hidden, T::from_f64(1.0));
        let u = self.units.clone();
        let [dir_m, diz_m, din_m] = &mut self.dgi;
        let [dhr_m, dhz_m, dhn_m] = &mut self.dgh;
        for b in 0..s.batch {
            let gate =
                |q: usize| &s.gates[b * GATES * hd + q * hd + u.start..b * GATES * hd + q * hd + u.end];
            let (r, z, n) = (gate(0), gate(1), gate(2));
            let rr = b * hd + u.start..b * hd + u.end;
            let (hn, hp, dho) = (&s.hn[rr.clone()], &s.h_prev[rr.clone()], &s.dh_out[rr]);
            let (dir, diz, din) = (row(dir_m, b), row(diz_m, b), row(din_m, b));
            let (dhr, dhz, dhn) = (row(dhr_m, b), row(dhz_m, b), row(dhn_m, b));
            let carry = row(&mut self.dh_next, b);
            // `dhn` holds dh until the n block's own gradient replaces it.
            for (d, (a, c)) in dhn.iter_mut().zip(dho.iter().zip(carry.iter())) {
                *d = *a + *c;
            }
            for (d, (dh, (p, nv))) in diz.iter_mut().zip(dhn.iter().zip(hp.iter().zip(n))) {
                *d = *dh * (*p - *nv);
            }
            for (d, zv) in diz.iter_mut().zip(z) {
                *d = *d * *zv * (one - *zv);
            }
            for (d, (dh, (zv, nv))) in din.iter_mut().zip(dhn.iter().zip(z.iter().zip(n))) {
                *d = *dh * (one - *zv) * (one - *nv * *nv);
            }
            for (c, (dh, zv)) in carry.iter_mut().zip(dhn.iter().zip(z)) {
                *c = *dh * *zv;
            }
            for (d, (dnv, (v, rv))) in dir.iter_mut().zip(din.iter().zip(hn.iter().zip(r))) {
                *d = *dnv * *v * *rv * (one - *rv);
            }
            for (d, (dnv, rv)) in dhn.iter_mut().zip(din.iter().zip(r)) {
                *d = *dnv * *rv;
            }
            dhr.copy_from_slice(dir);
            dhz.copy_from_slice(diz);
        }
    }
}

impl<'a, 's, T: Float> SplitByUnits<BackwardShared<'s, T>> for BackwardPart<'a, T> {
    fn units(&self) -> Range<usize> {
        self.units.clone()
    }

    fn split_at(self, at: usize) -> (Self, Self) {
        let local = at - self.units.start;
        let (i1, i2) = split_gates(self.dgi, local);
        let (h1, h2) = split_gates(self.dgh, local);
        let (c1, c2) = self.dh_next.split_at_col_mut(local);
        (
            BackwardPart { units: self.units.start..at, dgi: i1, dgh: h1, dh_next: c1 },
            BackwardPart { units: at..self.units.end, dgi: i2, dgh: h2, dh_next: c2 },
        )
    }

    /// `dh[:, U] += dGh_{t+1}·W_hh[:, U]`, then the element-wise pass for its units.
    fn run_part(mut self, s: &BackwardShared<'s, T>) {
        let (bsz, hd) = (s.batch, s.hidden);
        if let Some(dgh_next) = s.dgh_next {
            let w = mat(s.w_hh, GATES * hd, hd).subcols(self.units.start, self.units.len());
            gemm(self.dh_next.as_mut(), true, mat(dgh_next, bsz, GATES * hd), w, Par::Seq);
        }
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

impl<T: Float> StepOp<T> for GruOp {
    fn output(&self) -> SlotId {
        self.slots.h
    }

    fn step_threads(&self, par: Par) -> usize {
        self.parts(par)
    }

    /// `B·H·3H` multiply-adds per step, weighted like the LSTM's; per stream.
    fn step_cost(&self) -> f64 {
        RECURRENCE_COST_FACTOR * (GATES * self.hidden * self.hidden) as f64
    }

    /// Every step's input projection in one GEMM, `gates = X·W_ihᵀ` (`[T·B, E]×[E, 3H]`), and the
    /// cached `W_hhᵀ` the one-part recurrence reads.
    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        let n = acts.rows();
        let (e, h3) = (self.embed, GATES * self.hidden);
        let s = &self.slots;
        let [x, gates, w_hh_t] = acts.slots_mut([s.input, s.gates, s.w_hh_t]);
        if self.parts(par) == 1 {
            self.fill_w_hh_t(params, &mut w_hh_t.value);
        }
        let w_ih = mat(params.get(self.params.w_ih), h3, e).transpose();
        gemm(mat_mut(&mut gates.value, n, h3), false, mat(&x.value, n, e), w_ih, par);
    }

    /// The recurrence over `steps`: per step the recurrent product and the cell, in as many parts
    /// by hidden units as [`StepOp::step_threads`] says. Reads `h0` at step 0, else `prev`.
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
        let (h3, len) = (GATES * hd, bsz * hd);
        let parts = self.parts(par);
        let s = &self.slots;
        let [gates, hn, h0, gh, w_hh_t] = acts.slots_mut([s.gates, s.hn, s.h0, s.gh, s.w_hh_t]);
        let init = if steps.start == 0 { &h0.value[..len] } else { &prev[prev.len() - len..] };
        let w_hh = params.get(self.params.w_hh);
        let (b_ih, b_hh) = (params.get(self.params.b_ih), params.get(self.params.b_hh));
        let gh = &mut gh.value[..bsz * h3];
        for (i, t) in steps.enumerate() {
            let g_t = &mut gates.value[t * bsz * h3..(t + 1) * bsz * h3];
            let hn_t = &mut hn.value[t * len..(t + 1) * len];
            let (h_prev, h_t) = prev_and_cur(out, init, i, len);
            let shared = ForwardShared { h_prev, w_hh, b_ih, b_hh, batch: bsz, hidden: hd };
            if parts == 1 {
                // gh = h_{t-1}·W_hhᵀ  ([B, H]×[H, 3H]), then the cell.
                gemm(mat_mut(gh, bsz, h3), false, mat(h_prev, bsz, hd), mat(&w_hh_t.value, hd, h3), par);
                ForwardPart::new(g_t, gh, hn_t, h_t, bsz, hd).cells_only(&shared);
            } else {
                run_split(ForwardPart::new(g_t, gh, hn_t, h_t, bsz, hd), &shared, parts);
            }
        }
    }
}

impl<T: Float> Op<T> for GruOp {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads `input` `[T·B, E]` and `h0` `[B, H]`; writes `gates`, `hn` and `h` for the current
    /// window.
    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        run_steps_whole(self, params, acts, par);
    }

    /// A recurrence the tape may overlap with the head (see `stagewise_core::tape`).
    fn pieces(&self) -> Pieces<'_, T> {
        Pieces::Steps(self)
    }

    /// Reads `h.grad` `[T·B, H]` and the intermediates saved by `forward`; accumulates into the
    /// four parameter gradients and overwrites `input.grad` (skipped if the input has no gradient
    /// buffer). Nothing flows into `h0` (truncated BPTT).
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par) {
        let (e, hd, bsz) = (self.embed, self.hidden, self.batch);
        let h3 = GATES * hd;
        let steps = acts.steps();
        let len = bsz * hd;
        let s = &self.slots;
        let [x, gates, hn, h, h0, dgi, dgh, dh_next, dw_t, h_prev_t] =
            acts.slots_mut([s.input, s.gates, s.hn, s.h, s.h0, s.dgi, s.dgh, s.dh_next, s.dw_t, s.h_prev_t]);
        let w_hh = params.get(self.params.w_hh);
        let (dgi, dgh) = (&mut dgi.value, &mut dgh.value);
        let dh_next = &mut dh_next.value[..len];
        dh_next.fill(T::from_f64(0.0));

        // Reverse recurrence: per step, dh_t += dGh_{t+1}·W_hh ([B, 3H]×[3H, H]; nothing at the
        // window's last step) and one fused element-wise pass.
        let parts = self.parts(par);
        for t in (0..steps).rev() {
            let (now, later) = dgh.split_at_mut((t + 1) * bsz * h3);
            let dgh_t = &mut now[t * bsz * h3..];
            let dgh_next = (t + 1 < steps).then(|| &later[..bsz * h3]);
            let dgi_t = &mut dgi[t * bsz * h3..(t + 1) * bsz * h3];
            let rows = t * len..(t + 1) * len;
            let shared = BackwardShared {
                dgh_next,
                w_hh,
                gates: &gates.value[t * bsz * h3..(t + 1) * bsz * h3],
                hn: &hn.value[rows.clone()],
                h_prev: if t == 0 { &h0.value[..len] } else { &h.value[(t - 1) * len..t * len] },
                dh_out: &h.grad[rows],
                batch: bsz,
                hidden: hd,
            };
            if parts == 1 {
                if let Some(dgh_next) = dgh_next {
                    gemm(mat_mut(dh_next, bsz, hd), true, mat(dgh_next, bsz, h3), mat(w_hh, h3, hd), par);
                }
                BackwardPart::new(dgi_t, dgh_t, dh_next, bsz, hd).cells_only(&shared);
            } else {
                run_split(BackwardPart::new(dgi_t, dgh_t, dh_next, bsz, hd), &shared, parts);
            }
        }

        let sizes = LayerSizes { input: e, hidden: hd, gates: GATES, batch: bsz, steps };
        WeightGrads {
            x: &x.value,
            x_grad: &mut x.grad,
            h0: &h0.value,
            h: &h.value,
            dgi,
            dgh: Some(dgh),
            h_prev_t: &mut h_prev_t.value,
            dw_t: &mut dw_t.value,
        }
        .accumulate(params, grads, self.params, sizes, par);
    }

    /// Copies the window's last `h` into `h0`: the next window starts where this one ended, with
    /// no gradient path back (truncated BPTT).
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
