//! The Linear head (`fc`): hidden states -> logits, one GEMM over every row of the window.

use rayon::prelude::*;
use stagewise_kernels::matrix::{gemm, gemm_in_column_blocks, mat, mat_mut};
use stagewise_kernels::packed::{self, gemm_packed, pack_lhs, pack_transposed_rhs};
use stagewise_kernels::rows::{add_column_sums, add_to_rows, add_transposed, copy_transposed};

use crate::cache::FilledAt;
use std::ops::Range;

use stagewise_core::{
    Activations, Error, Float, Grads, Op, Par, ParamId, Params, Pieces, Result, Rng, RowOp, SlotId, Tape,
    checked_size, run_rows_whole,
};
use stagewise_kernels::matrix::row_blocks_match_whole;
use stagewise_kernels::tuning::{FILL_ROWS_PER_TASK, FOLD_BIAS_BELOW};

/// `y = x·Wᵀ + b` in plain loops: the algorithmic reference for [`LinearOp::forward`].
///
/// `x` is `[N, in]`, `w` is `[out, in]` (PyTorch layout), `b` is `[out]`, `y` is `[N, out]`.
#[allow(clippy::needless_range_loop)] // indexed loops read like the equation they check
pub fn linear_forward_naive<T: Float>(
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
    n: usize,
    inp: usize,
    out: usize,
) {
    for r in 0..n {
        for k in 0..out {
            let mut s = b[k];
            for p in 0..inp {
                s += x[r * inp + p] * w[k * inp + p];
            }
            y[r * out + k] = s;
        }
    }
}

/// A fully connected layer `y = x·Wᵀ + b` over the rows of the current window, as a tape op.
///
/// The weight is stored `[out, in]` like PyTorch's `nn.Linear`, so its checkpoint tensors
/// (`{prefix}.weight`, `{prefix}.bias`) load without transposition.
///
/// # How the bias is computed
/// The backward pass copies the input, transposed, into `{prefix}.x1_t` `[in + 1, N]` with a
/// last row of ones, so that one GEMM gives the weight gradient and the bias gradient together:
/// `[dW | db]ᵀ = [X | 1]ᵀ·dY`. Summing the columns of `dY` separately was a pass over the
/// model's largest buffer (`[N, V]`, 80 MB at the seed size) that cost as much as a tenth of the
/// GEMM; and stored transposed, `[X | 1]ᵀ` is read by faer without being repacked for every
/// block of the product (167 → 157 ms at the large size). The product lands transposed in
/// `{prefix}.dw_t` and is added into the PyTorch-layout gradients. While the input is narrow
/// (`in <` [`FOLD_BIAS_BELOW`]) the forward pass folds the bias the same way,
/// `Y = [X | 1]·[W | b]ᵀ`, with the input and a column of ones in `{prefix}.x1` `[N, in + 1]` and
/// `[W | b]ᵀ` in `{prefix}.wb_t` (`[in + 1, out]`: transposed, the orientation faer multiplies
/// 3 % faster), which gives bit-for-bit the result of the GEMM followed by a separate bias pass
/// (the bias is the last multiply-add of every dot product) and saves that pass; wider inputs
/// keep the separate pass, which measured faster there.
///
/// # The packed kernel
/// For `f32` on a processor with AVX-512 and a depth `k = in (+ 1)` up to
/// [`packed::MAX_DEPTH`], the forward product runs in `core::packed`'s kernel instead of faer
/// (bit-identical to it, 10–15 % faster on the head's shape). `{prefix}.wb_t` (or `{prefix}.w_t`
/// when the bias is not folded) then holds `[Wᵀ; b]` (or `Wᵀ`) packed in panels, refilled only
/// when the weights change, and `{prefix}.x1` (or `{prefix}.x_tiles`) the input (with its
/// column of ones) packed in tiles.
#[derive(Clone, Debug)]
pub struct LinearOp {
    name: String,
    inp: usize,
    out: usize,
    weight: ParamId,
    bias: ParamId,
    input: SlotId,
    output: SlotId,
    /// `[in + 1, N]`: the input transposed and a row of ones, for the weight gradient.
    input_t: SlotId,
    /// The forward product's own operands `(left, right)`, if it does not multiply the input
    /// slot by the weight as they are: `([N, in + 1]` input and ones, `[in + 1, out]` `[W | b]ᵀ)`
    /// if it folds the bias, and both packed (see [`LinearOp`]) if `packed`.
    operands: Option<(SlotId, SlotId)>,
    /// Whether the forward pass folds the bias into its product (`in <` [`FOLD_BIAS_BELOW`]).
    folds: bool,
    /// Whether the forward product runs in `core::packed`'s kernel (`f32`, AVX-512).
    packed: bool,
    /// Every slot the forward pass writes: the output and the operands, if any.
    own: Vec<SlotId>,
    /// `[in + 1, out]`: the transposed weight and bias gradients of the window.
    grad_t: SlotId,
    /// The parameters' version the right operand (`operands.1`) was last filled from (see
    /// [`FilledAt`]).
    filled_at: FilledAt,
    /// Whether it maps one row per stream (`N = B`: a pooled vector per text, see
    /// [`LinearOp::declare_per_stream`]) rather than one per position (`N = T·B`).
    per_stream: bool,
}

impl LinearOp {
    /// Declares the layer on `tape`: parameters `{prefix}.weight` `[out, in]` and `{prefix}.bias`
    /// `[out]`, both drawn from U(−1/√in, 1/√in) (PyTorch's `nn.Linear` default) from
    /// `Rng::stream(seed, prefix)`, weight first; and the output slot `{prefix}.out` `[N, out]`
    /// with a gradient. Returns the op; the caller pushes it.
    ///
    /// `input` must be a row slot (width `in` > 0) and `out` > 0.
    pub fn declare<T: Float>(
        tape: &mut Tape<T>,
        prefix: &str,
        input: SlotId,
        out: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::declare_with(tape, prefix, input, out, None, seed)
    }

    /// Like [`LinearOp::declare`], but the weight is an existing `[out, in]` tensor of the
    /// model — the embedding table, for a head tied to it (Press & Wolf 2016; the PyTorch
    /// word-language-model's `--tied`): only `{prefix}.bias` is declared (U(−1/√in, 1/√in) from
    /// `Rng::stream(seed, prefix)`), and the VJP accumulates into the shared weight's gradient,
    /// beside its other users. Fails, naming `embedding.tied`, if `weight` is not `[out, in]`.
    pub fn declare_tied<T: Float>(
        tape: &mut Tape<T>,
        prefix: &str,
        input: SlotId,
        weight: ParamId,
        seed: u64,
    ) -> Result<Self> {
        let shape = tape.params.layout().entry(weight).shape.clone();
        let (inp, name) = (tape.acts.slot(input).width, tape.params.layout().entry(weight).name.clone());
        let out = match shape[..] {
            [out, w_in] if w_in == inp => out,
            _ => {
                return Err(Error::config(
                    "embedding.tied",
                    format!("the head's weight {name} is {shape:?}, but its input is {inp} wide"),
                ));
            }
        };
        Self::declare_with(tape, prefix, input, out, Some(weight), seed)
    }

    fn declare_with<T: Float>(
        tape: &mut Tape<T>,
        prefix: &str,
        input: SlotId,
        out: usize,
        tied: Option<ParamId>,
        seed: u64,
    ) -> Result<Self> {
        let inp = tape.acts.slot(input).width;
        if inp == 0 {
            let name = tape.acts.slot(input).name.clone();
            return Err(Error::shape(
                format!("{prefix} input {name}"),
                "a row slot of width > 0",
                "a flat slot",
            ));
        }
        if out == 0 {
            return Err(Error::shape(format!("{prefix} output width"), "at least 1", 0));
        }
        let weight = match tied {
            Some(weight) => weight,
            None => tape.params.declare(&format!("{prefix}.weight"), &[out, inp])?,
        };
        let bias = tape.params.declare(&format!("{prefix}.bias"), &[out])?;
        let mut rng = Rng::stream(seed, prefix);
        let bound = 1.0 / (inp as f64).sqrt();
        let own = if tied.is_some() { vec![bias] } else { vec![weight, bias] };
        for id in own {
            for v in tape.params.get_mut(id) {
                *v = T::from_f64(rng.uniform_in(-bound, bound));
            }
        }
        let output = tape.acts.declare_rows(&format!("{prefix}.out"), out, true)?;
        let rows = tape.acts.max_rows();
        let input_t = tape.acts.declare_flat(&format!("{prefix}.x1_t"), &[inp + 1, rows], false)?;
        let folds = inp < FOLD_BIAS_BELOW;
        let k = inp + usize::from(folds);
        // The packed buffers hold whole tiles and panels: sized with room for one more of each.
        checked_size(&format!("{prefix} packed operands"), &[rows + 2 * packed::TILE_ROWS, k])?;
        checked_size(&format!("{prefix} packed weights"), &[out + packed::PANEL_COLS, k])?;
        let packed = packed::kernel_applies::<T>(k);
        let operands = if packed {
            let (left, right) = if folds { ("x1", "wb_t") } else { ("x_tiles", "w_t") };
            // Room for the window cut into two pieces (the overlapped schedule), each starting
            // on a whole tile.
            let left_len = packed::lhs_len(rows, k) + packed::TILE_ROWS * k;
            Some((
                tape.acts.declare_flat(&format!("{prefix}.{left}"), &[left_len], false)?,
                tape.acts.declare_flat(&format!("{prefix}.{right}"), &[packed::rhs_len(k, out)], false)?,
            ))
        } else if folds {
            let input_ones = tape.acts.declare_rows(&format!("{prefix}.x1"), inp + 1, false)?;
            Some((input_ones, tape.acts.declare_flat(&format!("{prefix}.wb_t"), &[out, inp + 1], false)?))
        } else {
            None
        };
        let grad_t = tape.acts.declare_flat(&format!("{prefix}.dw_t"), &[inp + 1, out], false)?;
        let mut own = vec![output];
        own.extend(operands.iter().flat_map(|&(left, right)| [left, right]));
        Ok(LinearOp {
            name: prefix.to_owned(),
            inp,
            out,
            weight,
            bias,
            input,
            output,
            input_t,
            operands,
            folds,
            packed,
            own,
            grad_t,
            filled_at: FilledAt::never(),
            per_stream: false,
        })
    }

    /// Like [`LinearOp::declare`], but the layer maps only the first `B` rows of `input`, one per
    /// stream (the pooled vector of each text of a batch; see `PoolOp`), to the first `B` rows of
    /// its output: a classification head. It always runs whole (never beside a recurrence).
    pub fn declare_per_stream<T: Float>(
        tape: &mut Tape<T>,
        prefix: &str,
        input: SlotId,
        out: usize,
        seed: u64,
    ) -> Result<Self> {
        let op = Self::declare_with(tape, prefix, input, out, None, seed)?;
        Ok(LinearOp { per_stream: true, ..op })
    }

    /// Rows it maps in the current window: `B` per stream, else `T·B`.
    fn rows_of<T: Float>(&self, acts: &Activations<T>) -> usize {
        if self.per_stream { acts.batch() } else { acts.rows() }
    }

    /// The output slot `[N, out]`.
    pub fn output(&self) -> SlotId {
        self.output
    }

    /// The input slot `[N, in]`.
    pub fn input(&self) -> SlotId {
        self.input
    }

    /// `(weight, bias)` handles.
    pub fn params(&self) -> (ParamId, ParamId) {
        (self.weight, self.bias)
    }
}

impl LinearOp {
    /// Where, in the left operand's buffer, the rows after the first `rows` start: a window cut
    /// into pieces fills and multiplies each piece in its own part of the buffer.
    fn left_offset(&self, rows: usize) -> usize {
        if self.packed { packed::lhs_len(rows, self.depth()) } else { rows * self.depth() }
    }

    /// The forward product's inner dimension: `in`, plus the column of ones if the bias is folded.
    fn depth(&self) -> usize {
        self.inp + usize::from(self.folds)
    }

    /// Fills the right operand of the forward product: `[W | b]ᵀ` `[in + 1, out]` (a blocked
    /// transpose of `W` split across rayon's threads under `par`, then `b` as the last row), or
    /// with the packed kernel `[Wᵀ; b]` or `Wᵀ` in panels.
    ///
    /// Skipped if the parameters' [`Params::version`] is the one of the last fill: `right` then
    /// already holds these weights.
    fn fill_right<T: Float>(&self, params: &Params<T>, right: &mut [T], par: Par) {
        let version = params.version();
        if self.filled_at.is(version) {
            return;
        }
        let (inp, out) = (self.inp, self.out);
        let (w, b) = (params.get(self.weight), params.get(self.bias));
        if self.packed {
            pack_transposed_rhs(right, w, out, inp, self.folds.then_some(b), par);
        } else {
            let (w_t, b_row) = right[..(inp + 1) * out].split_at_mut(inp * out);
            copy_transposed(w_t, w, inp, out, par);
            b_row.copy_from_slice(b);
        }
        self.filled_at.set(version);
    }

    /// Fills the left operand of the forward product from the rows of `x` (`[r, in]`): `[x | 1]`
    /// `[r, in + 1]`, or with the packed kernel `[x | 1]` or `x` in tiles; in blocks of rows spread
    /// over rayon's threads under `par`.
    fn fill_left<T: Float>(&self, x: &[T], left: &mut [T], par: Par) {
        let inp = self.inp;
        let rows = x.len() / inp;
        if self.packed {
            pack_lhs(left, x, rows, inp, self.folds, par);
            return;
        }

        let one = T::from_f64(1.0);
        let fill = |(x1, x): (&mut [T], &[T])| {
            for (row1, row) in x1.chunks_exact_mut(inp + 1).zip(x.chunks_exact(inp)) {
                row1[..inp].copy_from_slice(row);
                row1[inp] = one;
            }
        };
        let left = &mut left[..rows * (inp + 1)];
        match par {
            Par::Seq => fill((left, x)),
            Par::Rayon(_) => left
                .par_chunks_mut(FILL_ROWS_PER_TASK * (inp + 1))
                .zip(x.par_chunks(FILL_ROWS_PER_TASK * inp))
                .for_each(fill),
        }
    }

    /// The product over the rows of `x` (`[r, in]`, any `r`, so a caller may run the window in
    /// pieces) into `y` `[r, out]`, bias included: from the op's own `operands` (filled by
    /// [`Self::fill_left`] and [`Self::fill_right`]) if it has them, else `x·Wᵀ` then a pass
    /// adding `b` to every row. Each row's result is the same whichever rows are computed
    /// together (no product splits a dot product).
    fn product_rows<T: Float>(
        &self,
        params: &Params<T>,
        operands: Option<(&[T], &[T])>,
        x: &[T],
        y: &mut [T],
        par: Par,
    ) {
        let (inp, out) = (self.inp, self.out);
        let r = x.len() / inp;
        let bias = params.get(self.bias);
        match operands {
            // The packed kernel adds an unfolded bias itself, before storing each row.
            Some((left, right)) if self.packed => {
                let unfolded = (!self.folds).then_some(bias);
                gemm_packed(mat_mut(y, r, out), left, self.depth(), right, unfolded, par);
            }
            // y = [x | 1]·[W | b]ᵀ  ([r, in + 1]×[in + 1, out]); faer's operands exist only to fold.
            Some((x1, wb_t)) => {
                gemm(mat_mut(y, r, out), false, mat(x1, r, inp + 1), mat(wb_t, inp + 1, out), par)
            }
            // y = x·Wᵀ  ([r, in]×[in, out]), then y += b on every row. (Copying b into every row
            // and letting the GEMM accumulate was measured slower than the pass: a plain copy of
            // the largest buffer, then a GEMM epilogue that must read it back.)
            None => {
                let w_t = mat(params.get(self.weight), out, inp).transpose();
                gemm(mat_mut(y, r, out), false, mat(x, r, inp), w_t, par);
                add_to_rows(&mut y[..r * out], bias, par);
            }
        }
    }
}

impl<T: Float> RowOp<T> for LinearOp {
    fn input(&self) -> SlotId {
        self.input
    }

    fn own_slots(&self) -> &[SlotId] {
        &self.own
    }

    fn row_cost(&self) -> f64 {
        (self.depth() * self.out) as f64
    }

    /// Always with the packed kernel (each output is one chain of multiply-adds whatever the rows
    /// around it); with faer, when both blocks are large enough for its main kernel.
    fn splits_exactly(&self, first: usize, rows: usize) -> bool {
        self.packed || row_blocks_match_whole(first, rows, self.depth(), self.out)
    }

    /// Fills the right operand of the product (`[W | b]ᵀ`, possibly packed) unless it holds
    /// these weights already.
    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        if let Some((_, right)) = self.operands {
            self.fill_right(params, &mut acts.slot_mut(right).value, par);
        }
    }

    /// Output rows `rows` from `input` `[rows.len(), in]`: the left operand filled for these rows
    /// in its own part of the buffer (the tape runs a window in at most two runs of rows), then
    /// the product.
    fn run_rows(
        &self,
        params: &Params<T>,
        acts: &mut Activations<T>,
        input: &[T],
        rows: Range<usize>,
        par: Par,
    ) {
        let (start, out) = (rows.start, self.out);
        match self.operands {
            Some((left, right)) => {
                let [left, right, y] = acts.slots_mut([left, right, self.output]);
                let left = &mut left.value[self.left_offset(start)..];
                self.fill_left(input, left, par);
                let y = &mut y.value[start * out..rows.end * out];
                self.product_rows(params, Some((left, &right.value)), input, y, par);
            }
            None => {
                let y = &mut acts.slot_mut(self.output).value[start * out..rows.end * out];
                self.product_rows(params, None, input, y, par);
            }
        }
    }
}

impl<T: Float> Op<T> for LinearOp {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads `input` `[N, in]`; writes `output` `[N, out]` for the window's `N = T·B` rows (and
    /// the product's own operands, see [`LinearOp`]).
    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        if !self.per_stream {
            return run_rows_whole(self, params, acts, par);
        }
        let rows = acts.batch();
        self.begin(params, acts, par);
        let input = acts.take_value(self.input);
        self.run_rows(params, acts, &input[..rows * self.inp], 0..rows, par);
        acts.put_value(self.input, input);
    }

    /// Row-wise over positions: the tape may run it beside a recurrence (see
    /// `stagewise_core::tape`); a per-stream head runs whole.
    fn pieces(&self) -> Pieces<'_, T> {
        if self.per_stream { Pieces::Whole } else { Pieces::Rows(self) }
    }

    /// Reads `output.grad` `[N, out]` and `input` (copied transposed into `{prefix}.x1_t`); accumulates `dW += dYᵀ·X`,
    /// `db += Σ_rows dY`; overwrites `input.grad = dY·W` `[N, in]` (skipped if the input has no
    /// gradient buffer).
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par) {
        let n = self.rows_of(acts);
        let (inp, out) = (self.inp, self.out);
        let [x, y, x1_t, grad_t] = acts.slots_mut([self.input, self.output, self.input_t, self.grad_t]);
        let dy = &y.grad[..n * out];
        let grad_t = &mut grad_t.value;
        if params.layout().trainable(self.weight) {
            // [X | 1]ᵀ `[in + 1, N]`: the input transposed, then a row of ones.
            let (x_t, ones) = x1_t.value[..(inp + 1) * n].split_at_mut(inp * n);
            copy_transposed(x_t, &x.value[..n * inp], inp, n, par);
            ones.fill(T::from_f64(1.0));
            // [dW | db]ᵀ = [X | 1]ᵀ·dY  ([in + 1, N]×[N, out]), then added into the gradients.
            gemm_in_column_blocks(
                mat_mut(grad_t, inp + 1, out),
                false,
                mat(&x1_t.value, inp + 1, n),
                mat(dy, n, out),
                par,
            );
            add_transposed(grads.get_mut(self.weight), &grad_t[..inp * out], out, inp, par);
        } else {
            // A frozen weight (a tied, frozen embedding table) gets no gradient, as PyTorch's
            // `requires_grad = False`: only the bias's, Σ_rows dY.
            grad_t[inp * out..(inp + 1) * out].fill(T::from_f64(0.0));
            add_column_sums(&mut grad_t[inp * out..(inp + 1) * out], dy, n, par);
        }
        for (db, g) in grads.get_mut(self.bias).iter_mut().zip(&grad_t[inp * out..]) {
            *db += *g;
        }
        if !x.grad.is_empty() {
            gemm(
                mat_mut(&mut x.grad, n, inp),
                false,
                mat(dy, n, out),
                mat(params.get(self.weight), out, inp),
                par,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Declares `fc` over an input of `inp` columns and `n` rows filled from `seed`.
    fn layer(inp: usize, out: usize, n: usize, seed: u64) -> (Tape<f32>, LinearOp) {
        let mut tape = Tape::<f32>::new(n, 1);
        let x = tape.acts.declare_rows("x", inp, true).unwrap();
        let op = LinearOp::declare(&mut tape, "fc", x, out, seed).unwrap();
        tape.finish();
        tape.set_steps(1).unwrap();
        let mut rng = Rng::new(seed ^ 1);
        for v in tape.acts.slot_mut(x).value.iter_mut() {
            *v = rng.normal() as f32;
        }
        (tape, op)
    }

    #[test]
    fn folded_packed_and_plain_products_give_the_same_bits() {
        for inp in [3, 100, 255, 256, 300] {
            let (out, n) = (37, 9);
            let (mut tape, op) = layer(inp, out, n, 7);
            assert_eq!(op.folds, inp < FOLD_BIAS_BELOW);
            assert_eq!(op.packed, packed::kernel_applies::<f32>(inp + usize::from(op.folds)));
            let run = |op: &LinearOp, tape: &mut Tape<f32>| {
                op.forward(&tape.params, &mut tape.acts, Par::Seq);
                tape.acts.slot(op.output).value[..n * out].to_vec()
            };
            // faer's product of the input slot and the weight, then the bias pass.
            let unfolded = LinearOp { operands: None, folds: false, packed: false, ..op.clone() };
            let (a, b) = (run(&op, &mut tape), run(&unfolded, &mut tape));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "in = {inp}");
            let x = tape.acts.slot(op.input).value.clone();
            let mut naive = vec![0.0; n * out];
            let (w, bias) = (tape.params.get(op.weight), tape.params.get(op.bias));
            linear_forward_naive(&x, w, bias, &mut naive, n, inp, out);
            for (got, want) in a.iter().zip(&naive) {
                assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "in = {inp}: {got} vs {want}");
            }
        }
    }

    /// The folded forward reuses its `[W | b]ᵀ` copy while the parameters are unchanged and
    /// refreshes it after any write to them.
    #[test]
    fn weight_copy_follows_parameter_changes() {
        let (inp, out, n) = (20, 13, 5);
        let (mut tape, op) = layer(inp, out, n, 3);
        assert!(op.operands.is_some());
        let naive = |tape: &Tape<f32>| {
            let x = &tape.acts.slot(op.input).value;
            let mut y = vec![0.0; n * out];
            linear_forward_naive(
                x,
                tape.params.get(op.weight),
                tape.params.get(op.bias),
                &mut y,
                n,
                inp,
                out,
            );
            y
        };
        for round in 0..3 {
            op.forward(&tape.params, &mut tape.acts, Par::Seq);
            let got = tape.acts.slot(op.output).value[..n * out].to_vec();
            for (g, w) in got.iter().zip(&naive(&tape)) {
                assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "round {round}: {g} vs {w}");
            }
            // A second pass with the same weights (the copy is reused) gives the same bits.
            op.forward(&tape.params, &mut tape.acts, Par::Seq);
            assert_eq!(tape.acts.slot(op.output).value[..n * out], got[..]);
            tape.params.get_mut(op.weight)[round] += 0.5;
            tape.params.get_mut(op.bias)[round] -= 0.25;
        }
    }
}
