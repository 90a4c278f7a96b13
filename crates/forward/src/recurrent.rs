//! What the three recurrent layers (LSTM, GRU, Elman RNN) share: the kinds, PyTorch's parameter
//! names and initialisation, and the gradients computed after the reverse loop.

use stagewise_core::{Float, Grads, Par, ParamId, Params, Result, Rng, Tape, checked_size};
use stagewise_kernels::matrix::{gemm, gemm_in_column_blocks, mat, mat_mut};
use stagewise_kernels::rows::{add_column_sums, add_transposed, copy_transposed};

/// Which recurrent cell a forward stage stacks, as PyTorch names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecurrentKind {
    /// `nn.LSTM`: gates i, f, g, o; state `(h, c)`.
    Lstm,
    /// `nn.GRU`: gates r, z, n, with `b_hn` inside the reset product.
    Gru,
    /// `nn.RNN(nonlinearity="tanh")`: `h' = tanh(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh)`.
    RnnTanh,
}

impl RecurrentKind {
    /// The name of PyTorch's module attribute in the reference models (`lstm`, `gru`, `rnn`):
    /// the prefix of the parameter names (`gru.weight_ih_l0`) and of the layer's RNG stream.
    pub fn prefix(self) -> &'static str {
        match self {
            RecurrentKind::Lstm => "lstm",
            RecurrentKind::Gru => "gru",
            RecurrentKind::RnnTanh => "rnn",
        }
    }

    /// The config's `kind` (`lstm`, `gru`, `rnn_tanh`): the stage's name, which checkpoints record.
    pub fn name(self) -> &'static str {
        match self {
            RecurrentKind::Lstm => "lstm",
            RecurrentKind::Gru => "gru",
            RecurrentKind::RnnTanh => "rnn_tanh",
        }
    }

    /// Gate blocks per layer: the weights are `[gates·H, ·]` (4, 3 and 1).
    pub fn gates(self) -> usize {
        match self {
            RecurrentKind::Lstm => 4,
            RecurrentKind::Gru => 3,
            RecurrentKind::RnnTanh => 1,
        }
    }
}

/// The [`ParamId`]s of one recurrent layer, so callers can read or overwrite its weights (e.g.
/// load PyTorch's) without looking names up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecurrentParams {
    /// `{prefix}.weight_ih_l{k}`, `[G·H, in]`.
    pub w_ih: ParamId,
    /// `{prefix}.weight_hh_l{k}`, `[G·H, H]`.
    pub w_hh: ParamId,
    /// `{prefix}.bias_ih_l{k}`, `[G·H]`.
    pub b_ih: ParamId,
    /// `{prefix}.bias_hh_l{k}`, `[G·H]`.
    pub b_hh: ParamId,
}

/// The parameters of a recurrent layer borrowed as plain slices, PyTorch layout, for the naive
/// reference functions (which must not depend on the tape, so they can check it).
#[derive(Clone, Copy, Debug)]
pub struct RecurrentWeights<'a, T> {
    /// `weight_ih_l{k}`, shape `[G·H, E]` row-major, gate blocks in PyTorch's order.
    pub w_ih: &'a [T],
    /// `weight_hh_l{k}`, shape `[G·H, H]` row-major.
    pub w_hh: &'a [T],
    /// `bias_ih_l{k}`, shape `[G·H]`.
    pub b_ih: &'a [T],
    /// `bias_hh_l{k}`, shape `[G·H]`.
    pub b_hh: &'a [T],
    /// Input width E.
    pub embed: usize,
    /// Hidden width H.
    pub hidden: usize,
}

impl<'a, T: Float> RecurrentWeights<'a, T> {
    /// Borrows the layer `ids` from `params`.
    pub fn of(params: &'a Params<T>, ids: RecurrentParams, embed: usize, hidden: usize) -> Self {
        RecurrentWeights {
            w_ih: params.get(ids.w_ih),
            w_hh: params.get(ids.w_hh),
            b_ih: params.get(ids.b_ih),
            b_hh: params.get(ids.b_hh),
            embed,
            hidden,
        }
    }
}

/// The name of layer `layer` of a module `prefix`, used for its op and its slots: `lstm` for the
/// first layer (the names a one-layer model always had), `lstm_l1`, `lstm_l2`, ... after it.
pub(crate) fn layer_name(prefix: &str, layer: usize) -> String {
    if layer == 0 { prefix.to_owned() } else { format!("{prefix}_l{layer}") }
}

/// Declares layer `layer`'s four tensors with PyTorch's names and shapes and draws them from
/// `rng` in PyTorch's order (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`), each
/// U(−1/√H, 1/√H) as `nn.LSTM`/`nn.GRU`/`nn.RNN`'s `reset_parameters`; one stream over all the
/// layers keeps that order across layers too.
pub(crate) fn declare_params<T: Float>(
    tape: &mut Tape<T>,
    kind: RecurrentKind,
    layer: usize,
    input: usize,
    hidden: usize,
    rng: &mut Rng,
) -> Result<RecurrentParams> {
    let prefix = kind.prefix();
    let rows = checked_size(&format!("{prefix} gates"), &[kind.gates(), hidden])?;
    let p = &mut tape.params;
    let params = RecurrentParams {
        w_ih: p.declare(&format!("{prefix}.weight_ih_l{layer}"), &[rows, input])?,
        w_hh: p.declare(&format!("{prefix}.weight_hh_l{layer}"), &[rows, hidden])?,
        b_ih: p.declare(&format!("{prefix}.bias_ih_l{layer}"), &[rows])?,
        b_hh: p.declare(&format!("{prefix}.bias_hh_l{layer}"), &[rows])?,
    };
    let bound = 1.0 / (hidden as f64).sqrt();
    for id in [params.w_ih, params.w_hh, params.b_ih, params.b_hh] {
        for v in p.get_mut(id) {
            *v = T::from_f64(rng.uniform_in(-bound, bound));
        }
    }
    Ok(params)
}

/// `(prev, cur)`: the previous step's `[B, H]` block (`init` at step 0) and this step's block,
/// writable, of a `[T·B, H]` buffer whose blocks are `len = B·H` long.
pub(crate) fn prev_and_cur<'a, T>(
    all: &'a mut [T],
    init: &'a [T],
    t: usize,
    len: usize,
) -> (&'a [T], &'a mut [T]) {
    let (before, after) = all.split_at_mut(t * len);
    let prev = if t == 0 { init } else { &before[(t - 1) * len..] };
    (prev, &mut after[..len])
}

/// Sizes of one layer's window, for [`WeightGrads::accumulate`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerSizes {
    /// Input width.
    pub input: usize,
    /// Hidden width H.
    pub hidden: usize,
    /// Gate blocks G.
    pub gates: usize,
    /// Streams B.
    pub batch: usize,
    /// Steps of the current window.
    pub steps: usize,
}

/// What the gradients after a layer's reverse loop read and write: everything but the loop is the
/// same for the three cells, which differ only in their gate gradients.
pub(crate) struct WeightGrads<'a, T> {
    /// The layer's input `[n, in]`.
    pub x: &'a [T],
    /// Its gradient `[n, in]`, overwritten; empty if the input has none.
    pub x_grad: &'a mut [T],
    /// The window's initial state `h_0` `[B, H]`.
    pub h0: &'a [T],
    /// The layer's outputs `h_1 … h_T` `[n, H]`.
    pub h: &'a [T],
    /// Gradients of the input-side pre-activations `x·W_ihᵀ + b_ih` `[n, G·H]`.
    pub dgi: &'a [T],
    /// Gradients of the hidden-side pre-activations `h·W_hhᵀ + b_hh` `[n, G·H]`, or `None` where
    /// they equal `dgi` (LSTM, Elman RNN: the two sums enter the cell only added).
    pub dgh: Option<&'a [T]>,
    /// Scratch `[H, n]`: `h_0 … h_{T-2}` transposed.
    pub h_prev_t: &'a mut [T],
    /// Scratch `[max(in, H), G·H]`: one weight gradient, transposed.
    pub dw_t: &'a mut [T],
}

impl<T: Float> WeightGrads<'_, T> {
    /// Accumulates the four parameter gradients as large GEMMs over every step of the window and
    /// overwrites the input gradient `dX = dGi·W_ih`.
    ///
    /// Each weight gradient is computed transposed, `dWᵀ = Xᵀ·dG` into `[in or H, G·H]` scratch,
    /// then added into the `[G·H, ·]` gradient: the same products and sums (bit-identical), but in
    /// this orientation faer reads the `[T·B, G·H]` gate gradients contiguously (1.8× faster for
    /// the large LSTM's `W_hh` on one thread, 1.2× for the seed's `W_ih`). The bias gradients are
    /// the column sums of the gate gradients, summed from zero and then added.
    pub(crate) fn accumulate(
        self,
        params: &Params<T>,
        grads: &mut Grads<T>,
        ids: RecurrentParams,
        s: LayerSizes,
        par: Par,
    ) {
        let WeightGrads { x, x_grad, h0, h, dgi, dgh, h_prev_t, dw_t } = self;
        let (e, hd, bsz) = (s.input, s.hidden, s.batch);
        let gh = s.gates * hd;
        let n = s.steps * bsz;
        let dgh_all = dgh.unwrap_or(dgi);

        let dgi_m = mat(dgi, n, gh);
        gemm_in_column_blocks(mat_mut(dw_t, e, gh), false, mat(x, n, e).transpose(), dgi_m, par);
        add_transposed(grads.get_mut(ids.w_ih), dw_t, gh, e, par);
        gemm(mat_mut(dw_t, hd, gh), false, mat(h0, bsz, hd).transpose(), mat(dgh_all, bsz, gh), par);
        if s.steps > 1 {
            // h_0 … h_{T-2} transposed first: faer then reads it without repacking it for every
            // block of columns (37 → 32 ms for the large LSTM), for a 2 ms copy.
            let m = (s.steps - 1) * bsz;
            let h_t = &mut h_prev_t[..hd * m];
            copy_transposed(h_t, &h[..m * hd], hd, m, par);
            gemm_in_column_blocks(
                mat_mut(dw_t, hd, gh),
                true,
                mat(h_t, hd, m),
                mat(&dgh_all[bsz * gh..], m, gh),
                par,
            );
        }
        add_transposed(grads.get_mut(ids.w_hh), dw_t, gh, hd, par);

        let bias_sum = &mut dw_t[..gh];
        bias_sum.fill(T::from_f64(0.0));
        add_column_sums(bias_sum, dgi, n, par);
        let add = |g: &mut [T], s: &[T]| g.iter_mut().zip(s).for_each(|(g, s)| *g += *s);
        add(grads.get_mut(ids.b_ih), bias_sum);
        if let Some(dgh) = dgh {
            bias_sum.fill(T::from_f64(0.0));
            add_column_sums(bias_sum, dgh, n, par);
        }
        add(grads.get_mut(ids.b_hh), bias_sum);

        if !x_grad.is_empty() {
            gemm(mat_mut(x_grad, n, e), false, dgi_m, mat(params.get(ids.w_ih), gh, e), par);
        }
    }
}
