//! The loss box: logits and targets -> summed loss, accuracy and the gradient of the mean loss.
//!
//! # Brief overview
//! - [`Loss`]: the box's contract, a [`Stage`] from [`LossInput`] to [`LossOutput`].
//! - [`CrossEntropy`] (`kind = "cross_entropy"`): PyTorch's `nn.CrossEntropyLoss` (mean over
//!   tokens) fused with its softmax: one pass per row computes the log-sum-exp, the negative
//!   log-likelihood, the arg-max for accuracy and, when training, `dlogits = (softmax − onehot) / N`
//!   written *over the logits*: the probabilities are never materialised, and no second
//!   `[N, V]` buffer is read or written (the largest buffer of the model, 80 MB at the seed size).
//! - [`LossConfig`] / [`LossImpl`]: the config-file face and the run-time enum.
//!
//! The loss is reported as a *sum* over rows ([`LossOutput::nll_sum`]) so that callers average
//! over exactly the tokens they mean (a window, an epoch, a whole test split).

use rayon::prelude::*;
use stagewise_core::{Ctx, Dims, Error, Float, Mode, Par, Result, Slot, Stage};
use stagewise_kernels::matrix::with_wide_simd;
use stagewise_kernels::tuning::LOSS_ROWS_PER_TASK;

/// What the loss reads: the tape's logits slot and the targets of the current window.
#[derive(Debug)]
pub struct LossInput<'a, T> {
    /// The logits slot: `value[..N·V]` holds one row of `V` scores (`V` = the slot's width) per
    /// token position. In [`Mode::Train`] the loss leaves the gradient of the mean loss with
    /// respect to the logits in `grad[..N·V]`, where the backward box starts its sweep; it may use
    /// `value` as scratch. In [`Mode::Eval`] both are left as they are.
    ///
    /// ([`CrossEntropy`] writes the gradient over the logits and then swaps the two buffers: no
    /// second pass over the largest buffer of the model, and no data moved.)
    pub logits: &'a mut Slot<T>,
    /// The correct next id for each row (`N` of them).
    pub targets: &'a [u32],
}

/// What the loss writes, reused every cycle.
#[derive(Clone, Debug, Default)]
pub struct LossOutput {
    /// Sum over rows of the per-row loss, in `f64`.
    pub nll_sum: f64,
    /// Rows whose arg-max equals the target.
    pub correct: usize,
    /// Rows scored (`N`).
    pub count: usize,
    /// Per-row loss of the last call (`[..count]`); sized by `prepare` for the longest window,
    /// and summed in row order so that the sum is the same at any thread count.
    pub row_loss: Vec<f64>,
    /// Per-row arg-max hit of the last call (`[..count]`).
    pub row_correct: Vec<bool>,
}

impl LossOutput {
    /// Sizes the per-row buffers for windows of up to `rows` rows (what a loss's `prepare` does).
    pub fn with_rows(rows: usize) -> Self {
        LossOutput { row_loss: vec![0.0; rows], row_correct: vec![false; rows], ..Default::default() }
    }

    /// Sums the first `count` per-row results into `nll_sum` and `correct`, in row order.
    pub fn total(&mut self, count: usize) {
        self.nll_sum = self.row_loss[..count].iter().sum();
        self.correct = self.row_correct[..count].iter().filter(|&&c| c).count();
        self.count = count;
    }

    /// Mean NLL over the rows of the last call.
    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.nll_sum / self.count as f64 }
    }
}

/// The loss box's contract. A user type implementing it drops into the pipeline.
pub trait Loss<T: Float>: for<'a> Stage<Input<'a> = LossInput<'a, T>, Output = LossOutput> {}

impl<T: Float, S> Loss<T> for S where S: for<'a> Stage<Input<'a> = LossInput<'a, T>, Output = LossOutput> {}

/// Fused softmax cross-entropy, mean over tokens (PyTorch's default reduction).
#[derive(Clone, Debug, Default)]
pub struct CrossEntropy<T>(std::marker::PhantomData<T>);

impl<T> CrossEntropy<T> {
    /// The stage (it has no settings).
    pub fn new() -> Self {
        CrossEntropy(std::marker::PhantomData)
    }
}

/// One row, read only: returns `(nll, argmax == target)`.
///
/// Shapes: `x` `[V]`.
#[inline(always)]
pub fn cross_entropy_row<T: Float>(x: &[T], target: usize) -> (f64, bool) {
    let max = row_max(x);
    let hit = is_first_max(x, target, max);
    let zero = T::from_f64(0.0);
    // Eight independent partial sums: the loop vectorises, and the order of additions is fixed, so
    // the result is the same on every run and at any thread count.
    let mut lanes = [zero; LANES];
    // Two groups of lanes per iteration, added one group after the other: the order of additions
    // of a one-group loop, but sixteen exponentials at a time (a whole AVX-512 register).
    let wide = x.chunks_exact(2 * LANES);
    let rest = wide.remainder();
    for xs in wide {
        let mut e = [zero; 2 * LANES];
        for l in 0..2 * LANES {
            e[l] = (xs[l] - max).exp_nonpositive();
        }
        for l in 0..LANES {
            lanes[l] += e[l];
        }
        for l in 0..LANES {
            lanes[l] += e[LANES + l];
        }
    }
    let xc = rest.chunks_exact(LANES);
    let xr = xc.remainder();
    for xs in xc {
        for l in 0..LANES {
            lanes[l] += (xs[l] - max).exp_nonpositive();
        }
    }
    for (l, &v) in xr.iter().enumerate() {
        lanes[l] += (v - max).exp_nonpositive();
    }
    let sum = lanes.iter().fold(zero, |a, &b| a + b);
    (nll(max, sum, x[target]), hit)
}

/// One row, in place: returns `(nll, argmax == target)` and replaces `x` by
/// `(softmax(x) − onehot(target)) * scale`. The same additions in the same order as
/// [`cross_entropy_row`], so training and evaluation report the same loss bit for bit.
///
/// Shapes: `x` `[V]`.
#[inline(always)]
pub fn cross_entropy_row_grad<T: Float>(x: &mut [T], target: usize, scale: T) -> (f64, bool) {
    let max = row_max(x);
    let hit = is_first_max(x, target, max);
    let x_target = x[target];
    let zero = T::from_f64(0.0);
    let mut lanes = [zero; LANES];
    // As in `cross_entropy_row`: sixteen exponentials at a time, added in one-group order.
    let wide_len = x.len() - x.len() % (2 * LANES);
    let (wide, rest) = x.split_at_mut(wide_len);
    for xs in wide.chunks_exact_mut(2 * LANES) {
        for v in xs.iter_mut() {
            *v = (*v - max).exp_nonpositive();
        }
        for l in 0..LANES {
            lanes[l] += xs[l];
        }
        for l in 0..LANES {
            lanes[l] += xs[LANES + l];
        }
    }
    let tail = rest.len() - rest.len() % LANES;
    let (body, rest) = rest.split_at_mut(tail);
    for xs in body.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            let e = (xs[l] - max).exp_nonpositive();
            xs[l] = e;
            lanes[l] += e;
        }
    }
    for (l, v) in rest.iter_mut().enumerate() {
        let e = (*v - max).exp_nonpositive();
        *v = e;
        lanes[l] += e;
    }
    let sum = lanes.iter().fold(zero, |a, &b| a + b);
    let k = scale / sum;
    for v in x.iter_mut() {
        *v *= k;
    }
    x[target] -= scale;
    (nll(max, sum, x_target), hit)
}

/// Hit iff the target holds the maximum and no earlier id does (PyTorch's `argmax` takes the
/// first of ties); the scan runs only when the target is a maximum, which is rare.
#[inline(always)]
fn is_first_max<T: Float>(x: &[T], target: usize, max: T) -> bool {
    x[target] == max && !x[..target].contains(&max)
}

/// `log Σ exp(x) − x[target]` from the row maximum and `Σ exp(x − max)`.
#[inline(always)]
fn nll<T: Float>(max: T, sum: T, x_target: T) -> f64 {
    max.to_f64() + sum.to_f64().ln() - x_target.to_f64()
}

/// Partial sums per row (a multiple of the SIMD width for `f32`).
const LANES: usize = 8;

/// The largest value of a row, over eight lanes so the loop vectorises (a maximum does not depend
/// on the order it is taken in). Plain selects, not `f32::max`: a NaN logit is caught later,
/// because `exp_nonpositive(NaN)` is NaN.
#[inline(always)]
fn row_max<T: Float>(x: &[T]) -> T {
    let mut lanes = [x[0]; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for xs in chunks {
        for l in 0..LANES {
            if xs[l] > lanes[l] {
                lanes[l] = xs[l];
            }
        }
    }
    // The tail after the lanes are folded: touching a lane before the loop keeps the compiler
    // from keeping the lanes in one vector register.
    let lanes_max = lanes.iter().fold(lanes[0], |m, &v| if v > m { v } else { m });
    rest.iter().fold(lanes_max, |m, &v| if v > m { v } else { m })
}

/// The per-row work of one call, shared by the sequential and parallel paths.
#[derive(Clone, Copy)]
struct RowTask<T> {
    vocab: usize,
    train: bool,
    scale: T,
}

impl<T: Float> RowTask<T> {
    /// Rows `x` `[n, V]` -> per-row NLL and hit; in training, `x` becomes the gradient.
    fn rows(&self, x: &mut [T], nll: &mut [f64], ok: &mut [bool], targets: &[u32]) {
        let v = self.vocab;
        with_wide_simd(
            #[inline(always)]
            || {
                for (((xr, l), c), &t) in x.chunks_mut(v).zip(nll).zip(ok).zip(targets) {
                    (*l, *c) = if self.train {
                        cross_entropy_row_grad(xr, t as usize, self.scale)
                    } else {
                        cross_entropy_row(xr, t as usize)
                    };
                }
            },
        )
    }
}

impl<T: Float> Stage for CrossEntropy<T> {
    type Input<'a> = LossInput<'a, T>;
    type Output = LossOutput;

    fn name(&self) -> &str {
        "cross_entropy"
    }

    fn prepare(&mut self, dims: &Dims, out: &mut LossOutput) -> Result<()> {
        if dims.vocab < 2 {
            return Err(Error::config("vectorizer", "cross-entropy needs a vocabulary of at least 2 ids"));
        }
        *out = LossOutput::with_rows(dims.max_rows());
        Ok(())
    }

    fn run(&self, input: LossInput<'_, T>, out: &mut LossOutput, cx: &Ctx) -> Result<()> {
        let slot = input.logits;
        let v = slot.width;
        let n = input.targets.len();
        let train = cx.mode == Mode::Train;
        if v < 2 || n == 0 || n > out.row_loss.len() || slot.value.len() < n * v {
            return Err(Error::shape(
                "cross_entropy input",
                format!("1..={} rows of at least 2 scores", out.row_loss.len()),
                (n, v, slot.value.len()),
            ));
        }
        if train && slot.grad.len() != slot.value.len() {
            return Err(Error::shape(
                format!("gradient of {}", slot.name),
                slot.value.len(),
                slot.grad.len(),
            ));
        }
        if let Some(pos) = input.targets.iter().position(|&t| t as usize >= v) {
            return Err(Error::data(
                "cross_entropy",
                format!("target id {} at row {pos} is outside the vocabulary of {v}", input.targets[pos]),
            ));
        }
        let logits = &mut slot.value[..n * v];
        let scale = T::from_f64(1.0 / n as f64);
        let LossOutput { row_loss: row_nll, row_correct, .. } = out;
        let task = RowTask { vocab: v, train, scale };
        let chunk = LOSS_ROWS_PER_TASK;
        match cx.par {
            Par::Seq => task.rows(logits, &mut row_nll[..n], &mut row_correct[..n], input.targets),
            Par::Rayon(_) => logits
                .par_chunks_mut(chunk * v)
                .zip(row_nll[..n].par_chunks_mut(chunk))
                .zip(row_correct[..n].par_chunks_mut(chunk))
                .zip(input.targets.par_chunks(chunk))
                .for_each(|(((x, nll), ok), t)| task.rows(x, nll, ok, t)),
        }
        out.total(n);
        if train {
            // The gradient was written over the logits: hand it to the backward box by swapping
            // the buffers (equal lengths, checked above), which moves no data.
            std::mem::swap(&mut slot.value, &mut slot.grad);
        }
        if !out.nll_sum.is_finite() {
            return Err(Error::Numeric {
                stage: "cross_entropy".into(),
                message: format!("loss is {}", out.nll_sum),
            });
        }
        Ok(())
    }
}

/// The loss box as a config-file table: `[loss] kind = "cross_entropy"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossConfig {
    /// [`CrossEntropy`].
    CrossEntropy {},
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig::CrossEntropy {}
    }
}

impl LossConfig {
    /// Builds the stage.
    pub fn build<T: Float>(&self) -> LossImpl<T> {
        match self {
            LossConfig::CrossEntropy {} => LossImpl::CrossEntropy(CrossEntropy::new()),
        }
    }
}

/// Every built-in loss, chosen at run time; delegates to the variant.
#[derive(Clone, Debug)]
pub enum LossImpl<T> {
    /// [`CrossEntropy`].
    CrossEntropy(CrossEntropy<T>),
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for LossImpl<T> { CrossEntropy }
    input<'a> = LossInput<'a, T>; output = LossOutput;);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{ProptestConfig, prop, prop_assert, proptest};
    use stagewise_core::Ctx;
    use stagewise_kernels::memory::AlignedVec;

    /// Runs the loss on a copy of `logits`; returns the output and what became of the copy (the
    /// gradient in training mode, the logits unchanged in evaluation).
    fn run_ce(logits: &[f64], targets: &[u32], v: usize, cx: &Ctx) -> (LossOutput, Vec<f64>) {
        let dims = Dims { vocab: v, batch: targets.len(), seq_len: 1, params: 0 };
        let mut out = LossOutput::default();
        let mut ce = CrossEntropy::new();
        Stage::prepare(&mut ce, &dims, &mut out).unwrap();
        let mut slot = logits_slot(logits, v);
        ce.run(LossInput { logits: &mut slot, targets }, &mut out, cx).unwrap();
        let after = if cx.mode == Mode::Train { slot.grad } else { slot.value };
        (out, after.to_vec())
    }

    /// A logits slot holding `logits` (rows of `v`), with a gradient buffer.
    fn logits_slot<T: Float>(logits: &[T], v: usize) -> Slot<T> {
        Slot {
            name: "logits".into(),
            value: AlignedVec::from_slice(logits),
            grad: AlignedVec::zeroed(logits.len()),
            width: v,
        }
    }

    fn naive_nll(x: &[f64], t: usize) -> f64 {
        let z: f64 = x.iter().map(|v| v.exp()).sum();
        -(x[t].exp() / z).ln()
    }

    fn case() -> impl proptest::strategy::Strategy<Value = (usize, Vec<f64>, Vec<u32>)> {
        (2usize..12, 1usize..8).prop_flat_map(|(v, n)| {
            (
                proptest::strategy::Just(v),
                prop::collection::vec(-8.0f64..8.0, v * n),
                prop::collection::vec(0u32..v as u32, n),
            )
        })
    }
    use proptest::strategy::Strategy;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn loss_is_nonnegative_and_equals_minus_log_softmax((v, x, t) in case()) {
            let (out, _) = run_ce(&x, &t, v, &Ctx::seq());
            prop_assert!(out.nll_sum >= 0.0);
            let expect: f64 = t.iter().enumerate().map(|(r, &tr)| naive_nll(&x[r * v..(r + 1) * v], tr as usize)).sum();
            prop_assert!((out.nll_sum - expect).abs() < 1e-9 * (1.0 + expect), "{} vs {}", out.nll_sum, expect);
        }

        #[test]
        fn dlogits_rows_sum_to_zero_and_match_finite_differences((v, x, t) in case()) {
            let n = t.len();
            let (_, dlogits) = run_ce(&x, &t, v, &Ctx::seq());
            for r in 0..n {
                let s: f64 = dlogits[r * v..(r + 1) * v].iter().sum();
                prop_assert!(s.abs() < 1e-12, "row {} sums to {}", r, s);
            }
            let eps = 1e-5;
            for k in 0..x.len() {
                let mut xp = x.clone();
                xp[k] += eps;
                let mut xm = x.clone();
                xm[k] -= eps;
                let lp = run_ce(&xp, &t, v, &Ctx::seq().eval()).0.mean();
                let lm = run_ce(&xm, &t, v, &Ctx::seq().eval()).0.mean();
                let numeric = (lp - lm) / (2.0 * eps);
                let analytic = dlogits[k];
                // The NLL is `lse − x[t]`, a cancellation that costs ~1e-15 absolute, i.e. ~1e-9 in a
                // difference quotient with ε = 1e-5: gradients below 1e-2 are judged absolutely (to 1e-8).
                let rel = (numeric - analytic).abs() / numeric.abs().max(analytic.abs()).max(1e-2);
                prop_assert!(rel < 1e-6, "element {}: {} vs {}", k, analytic, numeric);
            }
        }

        #[test]
        fn parallel_equals_sequential_bit_for_bit((v, x, t) in case()) {
            let (a, ga) = run_ce(&x, &t, v, &Ctx::seq());
            let (b, gb) = run_ce(&x, &t, v, &Ctx { par: Par::rayon(2), ..Ctx::seq() });
            prop_assert!(a.nll_sum.to_bits() == b.nll_sum.to_bits());
            prop_assert!(ga == gb && a.correct == b.correct);
        }
    }

    #[test]
    fn huge_logits_stay_finite() {
        let (out, dlogits) = run_ce(&[1000.0, -1000.0, 999.0], &[2], 3, &Ctx::seq());
        // lse = 1000 + ln(1 + e^-2000 + e^-1); nll = lse - 999 = 1 + ln(1 + e^-1).
        let expect = 1.0 + (1.0 + (-1.0f64).exp()).ln();
        assert!((out.nll_sum - expect).abs() < 1e-9, "{}", out.nll_sum);
        assert!(dlogits.iter().all(|g| g.is_finite()));
    }

    #[test]
    fn a_nan_logit_anywhere_is_a_numeric_error() {
        let dims = Dims { vocab: 20, batch: 1, seq_len: 1, params: 0 };
        for mode in [Ctx::seq(), Ctx::seq().eval()] {
            let mut out = LossOutput::default();
            let mut ce = CrossEntropy::<f32>::new();
            Stage::prepare(&mut ce, &dims, &mut out).unwrap();
            let mut x = [0.5f32; 20];
            x[13] = f32::NAN;
            let mut slot = logits_slot(&x, 20);
            let err = ce.run(LossInput { logits: &mut slot, targets: &[2] }, &mut out, &mode).unwrap_err();
            assert!(err.to_string().contains("numerical error"), "{err}");
        }
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        // Row 0 predicts 1 (target 1: hit); row 1 predicts 0 (target 2: miss).
        let (out, _) = run_ce(&[0.0, 2.0, 1.0, 3.0, 0.0, 1.0], &[1, 2], 3, &Ctx::seq());
        assert_eq!((out.correct, out.count), (1, 2));
    }

    #[test]
    fn train_and_eval_report_the_same_loss_bit_for_bit() {
        let x: Vec<f32> = (0..3 * 37).map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.0).collect();
        let dims = Dims { vocab: 37, batch: 3, seq_len: 1, params: 0 };
        let mut out = LossOutput::default();
        let mut ce = CrossEntropy::<f32>::new();
        Stage::prepare(&mut ce, &dims, &mut out).unwrap();
        let targets = [0, 5, 36];
        let mut slot = logits_slot(&x, 37);
        ce.run(LossInput { logits: &mut slot, targets: &targets }, &mut out, &Ctx::seq()).unwrap();
        let train = out.nll_sum;
        let mut slot = logits_slot(&x, 37);
        ce.run(LossInput { logits: &mut slot, targets: &targets }, &mut out, &Ctx::seq().eval()).unwrap();
        assert_eq!(train.to_bits(), out.nll_sum.to_bits());
    }

    #[test]
    fn eval_mode_skips_gradient() {
        let (out, after) = run_ce(&[0.0, 2.0, 1.0], &[1], 3, &Ctx::seq().eval());
        assert_eq!(after, vec![0.0, 2.0, 1.0], "evaluation leaves the logits as they are");
        assert!(out.nll_sum > 0.0);
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let c: LossConfig = serde_json::from_str(r#"{"kind":"cross_entropy"}"#).unwrap();
        assert_eq!(c, LossConfig::default());
        assert!(serde_json::from_str::<LossConfig>(r#"{"kind":"cross_entropy","smoothing":0.1}"#).is_err());
        assert!(serde_json::from_str::<LossConfig>(r#"{"kind":"mse"}"#).is_err());
    }

    #[test]
    fn bad_target_is_an_error() {
        let dims = Dims { vocab: 3, batch: 1, seq_len: 1, params: 0 };
        let mut out = LossOutput::default();
        let mut ce = CrossEntropy::<f32>::new();
        Stage::prepare(&mut ce, &dims, &mut out).unwrap();
        let mut slot = logits_slot(&[0.0; 3], 3);
        let err = ce.run(LossInput { logits: &mut slot, targets: &[7] }, &mut out, &Ctx::seq()).unwrap_err();
        assert!(err.to_string().contains("target id 7"), "{err}");
    }
}
