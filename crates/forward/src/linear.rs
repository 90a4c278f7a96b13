//! The Linear head (`fc`): hidden states -> logits, one GEMM over every row of the window.

use stagewise_core::matrix::{gemm, mat, mat_mut};
use stagewise_core::rows::{add_column_sums, add_to_rows};
use stagewise_core::{Activations, Error, Float, Grads, Op, Par, ParamId, Params, Result, Rng, SlotId, Tape};

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
#[derive(Clone, Debug)]
pub struct LinearOp {
    name: String,
    inp: usize,
    out: usize,
    weight: ParamId,
    bias: ParamId,
    input: SlotId,
    output: SlotId,
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
        let weight = tape.params.declare(&format!("{prefix}.weight"), &[out, inp])?;
        let bias = tape.params.declare(&format!("{prefix}.bias"), &[out])?;
        let mut rng = Rng::stream(seed, prefix);
        let bound = 1.0 / (inp as f64).sqrt();
        for id in [weight, bias] {
            for v in tape.params.get_mut(id) {
                *v = T::from_f64(rng.uniform_in(-bound, bound));
            }
        }
        let output = tape.acts.declare_rows(&format!("{prefix}.out"), out, true);
        Ok(LinearOp { name: prefix.to_owned(), inp, out, weight, bias, input, output })
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

impl<T: Float> Op<T> for LinearOp {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads `input` `[N, in]`; writes `output` `[N, out]` for the window's `N = T·B` rows.
    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
        let n = acts.rows();
        let (inp, out) = (self.inp, self.out);
        let [x, y] = acts.slots_mut([self.input, self.output]);
        let w = params.get(self.weight);
        let b = params.get(self.bias);
        // y = x·Wᵀ  ([N, in]×[in, out]), then y += b on every row. (Copying b into every row and
        // letting the GEMM accumulate was measured slower: a plain copy of the largest buffer,
        // then a GEMM epilogue that must read it back.)
        gemm(mat_mut(&mut y.value, n, out), false, mat(&x.value, n, inp), mat(w, out, inp).transpose(), par);
        add_to_rows(&mut y.value[..n * out], b, par);
    }

    /// Reads `output.grad` `[N, out]`; accumulates `dW += dYᵀ·X`, `db += Σ_rows dY`; overwrites
    /// `input.grad = dY·W` `[N, in]` (skipped if the input has no gradient buffer).
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par) {
        let n = acts.rows();
        let (inp, out) = (self.inp, self.out);
        let [x, y] = acts.slots_mut([self.input, self.output]);
        let dy = &y.grad[..n * out];
        gemm(
            mat_mut(grads.get_mut(self.weight), out, inp),
            true,
            mat(dy, n, out).transpose(),
            mat(&x.value, n, inp),
            par,
        );
        add_column_sums(grads.get_mut(self.bias), dy, n, par);
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
