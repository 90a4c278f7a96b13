//! The loss box: logits and targets -> summed loss, accuracy and the gradient of the mean loss.
//!
//! # Brief overview
//! - [`Loss`]: the box's contract, a [`Stage`] from [`LossInput`] to [`LossOutput`].
//! - [`CrossEntropy`] (`kind = "cross_entropy"`): PyTorch's `nn.CrossEntropyLoss` (mean over
//!   tokens) fused with its softmax: one pass per row computes the log-sum-exp, the negative
//!   log-likelihood, the arg-max for accuracy and, when training, `dlogits = (softmax − onehot) / N`
//!   written *over the logits*: the probabilities are never materialised, and no second
//!   `[N, V]` buffer is read or written (the largest buffer of the model, 80 MB at the seed size).
//!   With PyTorch's `label_smoothing = ε` a row's loss is `(1 − ε)·NLL + ε·mean_j(−log p_j)`; with
//!   `ignore_index` the rows whose target is that id are neither scored nor counted.
//! - [`LossConfig`] / [`LossImpl`]: the config-file face and the run-time enum.
//! - `laws` (feature `testkit`): the box's laws as a check any implementation can be run through.
//!
//! The loss is reported as a *sum* over rows ([`LossOutput::nll_sum`]) so that callers average
//! over exactly the tokens they mean (a window, an epoch, a whole test split).

#[cfg(any(test, feature = "testkit"))]
pub mod laws;

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
    /// Rows scored: the window's `N` rows less those whose target the loss ignores (the divisor
    /// of the mean, so that averages over windows, epochs and splits count only scored tokens).
    pub count: usize,
    /// Per-row loss of the last call (`[..N]`, 0 for an ignored row); sized by `prepare` for the
    /// longest window, and summed in row order so that the sum is the same at any thread count.
    pub row_loss: Vec<f64>,
    /// Per-row arg-max hit of the last call (`[..N]`, `false` for an ignored row).
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

    /// [`LossOutput::total`] for a call of `rows` rows of which `ignored` were not scored (their
    /// per-row loss 0 and hit `false`): `count` becomes the scored rows only.
    pub fn total_scored(&mut self, rows: usize, ignored: usize) {
        self.total(rows);
        self.count = rows - ignored.min(rows);
    }

    /// Mean NLL over the rows of the last call.
    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.nll_sum / self.count as f64 }
    }
}

/// The loss box's contract. A user type implementing it drops into the pipeline.
pub trait Loss<T: Float>: for<'a> Stage<Input<'a> = LossInput<'a, T>, Output = LossOutput> {}

impl<T: Float, S> Loss<T> for S where S: for<'a> Stage<Input<'a> = LossInput<'a, T>, Output = LossOutput> {}

/// Fused softmax cross-entropy, mean over scored tokens (PyTorch's default reduction), with
/// PyTorch's `label_smoothing` and `ignore_index`.
///
/// Per scored row, with `p = softmax(x)`: loss `(1 − ε)·(−log p[t]) + ε·mean_j(−log p_j)`, gradient
/// of the mean `(p − (1 − ε)·onehot(t) − ε/V) / N_scored`. A row whose target is `ignore_index`
/// has loss 0, no hit, a zero gradient, and is not in `N_scored`. With ε = 0 and no ignored id
/// this is the plain fused kernel, bit for bit.
#[derive(Clone, Debug, Default)]
pub struct CrossEntropy<T> {
    /// ε in `[0, 1]`: the share of each target's probability spread evenly over the vocabulary
    /// (PyTorch's `label_smoothing`, which regularises an over-confident model).
    pub label_smoothing: f64,
    /// A target id that is neither scored nor counted (PyTorch's `ignore_index`; any `u32`, in
    /// the vocabulary or not), so padding or a masked position costs nothing.
    pub ignore_index: Option<u32>,
    _float: std::marker::PhantomData<T>,
}

impl<T> CrossEntropy<T> {
    /// Plain cross-entropy: no smoothing, every row scored.
    pub fn new() -> Self {
        Self::with(0.0, None)
    }

    /// Cross-entropy with label smoothing `label_smoothing` and, if given, an ignored target id
    /// (checked when the stage is prepared).
    pub fn with(label_smoothing: f64, ignore_index: Option<u32>) -> Self {
        CrossEntropy { label_smoothing, ignore_index, _float: std::marker::PhantomData }
    }
}

/// `label_smoothing` in `[0, 1]` (PyTorch's range), or a config error naming the field.
fn check_smoothing(label_smoothing: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::config("loss.label_smoothing", format!("{label_smoothing} is not in [0, 1]")));
    }
    Ok(())
}

/// One row, read only: returns `(nll, argmax == target)`.
///
/// Shapes: `x` `[V]`.
#[inline(always)]
pub fn cross_entropy_row<T: Float>(x: &[T], target: usize) -> (f64, bool) {
    let max = row_max(x);
    let hit = is_first_max(x, target, max);
    let sum = exp_sum(x, max);
    (nll(max, sum, x[target]), hit)
}

/// `Σ exp(x − max)` over a row, read only, in the fixed order of additions every kernel shares.
#[inline(always)]
fn exp_sum<T: Float>(x: &[T], max: T) -> T {
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
    lanes.iter().fold(zero, |a, &b| a + b)
}

/// Replaces a row by `exp(x − max)` and returns their sum: the same additions in the same order
/// as [`exp_sum`].
#[inline(always)]
fn exp_in_place<T: Float>(x: &mut [T], max: T) -> T {
    let zero = T::from_f64(0.0);
    let mut lanes = [zero; LANES];
    // As in `exp_sum`: sixteen exponentials at a time, added in one-group order.
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
    lanes.iter().fold(zero, |a, &b| a + b)
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
    let sum = exp_in_place(x, max);
    let k = scale / sum;
    for v in x.iter_mut() {
        *v *= k;
    }
    x[target] -= scale;
    (nll(max, sum, x_target), hit)
}

/// One row with label smoothing ε, read only: returns
/// `((1 − ε)·(−log p[target]) + ε·mean_j(−log p_j), argmax == target)`.
///
/// Shapes: `x` `[V]`.
#[inline(always)]
pub fn smoothed_row<T: Float>(x: &[T], target: usize, eps: f64) -> (f64, bool) {
    let max = row_max(x);
    let hit = is_first_max(x, target, max);
    let mean = row_mean(x);
    let sum = exp_sum(x, max);
    (smoothed(max, sum, x[target], mean, eps), hit)
}

/// One row with label smoothing ε, in place: returns what [`smoothed_row`] returns (bit for bit)
/// and replaces `x` by `(softmax(x) − (1 − ε)·onehot(target) − ε/V) * scale`.
///
/// Shapes: `x` `[V]`.
#[inline(always)]
pub fn smoothed_row_grad<T: Float>(x: &mut [T], target: usize, eps: f64, scale: f64) -> (f64, bool) {
    let max = row_max(x);
    let hit = is_first_max(x, target, max);
    let mean = row_mean(x);
    let x_target = x[target];
    let sum = exp_in_place(x, max);
    let k = T::from_f64(scale) / sum;
    let uniform = T::from_f64(scale * eps / x.len() as f64);
    for v in x.iter_mut() {
        *v = *v * k - uniform;
    }
    x[target] -= T::from_f64(scale * (1.0 - eps));
    (smoothed(max, sum, x_target, mean, eps), hit)
}

/// `(1 − ε)·(lse − x[target]) + ε·(lse − mean(x))` from the row maximum, `Σ exp(x − max)` and the
/// row mean (`lse − mean(x)` is `mean_j(−log p_j)`).
#[inline(always)]
fn smoothed<T: Float>(max: T, sum: T, x_target: T, mean: f64, eps: f64) -> f64 {
    let lse = max.to_f64() + sum.to_f64().ln();
    (1.0 - eps) * (lse - x_target.to_f64()) + eps * (lse - mean)
}

/// The mean of a row in `f64`, over eight lanes in a fixed order of additions.
#[inline(always)]
fn row_mean<T: Float>(x: &[T]) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for xs in chunks {
        for l in 0..LANES {
            lanes[l] += xs[l].to_f64();
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        lanes[l] += v.to_f64();
    }
    lanes.iter().sum::<f64>() / x.len() as f64
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
    /// `1 / N_scored`, in `T` for the plain kernel and in `f64` for the smoothed one.
    scale: T,
    scale_f64: f64,
    /// ε (0: the plain kernel).
    smoothing: f64,
    ignore: Option<u32>,
}

impl<T: Float> RowTask<T> {
    /// Rows `x` `[n, V]` -> per-row loss and hit; in training, `x` becomes the gradient.
    fn rows(&self, x: &mut [T], nll: &mut [f64], ok: &mut [bool], targets: &[u32]) {
        let v = self.vocab;
        with_wide_simd(
            #[inline(always)]
            || {
                for (((xr, l), c), &t) in x.chunks_mut(v).zip(nll).zip(ok).zip(targets) {
                    (*l, *c) = if Some(t) == self.ignore {
                        if self.train {
                            xr.fill(T::from_f64(0.0));
                        }
                        (0.0, false)
                    } else if self.smoothing == 0.0 {
                        if self.train {
                            cross_entropy_row_grad(xr, t as usize, self.scale)
                        } else {
                            cross_entropy_row(xr, t as usize)
                        }
                    } else if self.train {
                        smoothed_row_grad(xr, t as usize, self.smoothing, self.scale_f64)
                    } else {
                        smoothed_row(xr, t as usize, self.smoothing)
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
        check_smoothing(self.label_smoothing)?;
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
        check_smoothing(self.label_smoothing)?;
        let ignore = self.ignore_index;
        let outside = |&t: &u32| t as usize >= v && Some(t) != ignore;
        if let Some(pos) = input.targets.iter().position(outside) {
            return Err(Error::data(
                "cross_entropy",
                format!("target id {} at row {pos} is outside the vocabulary of {v}", input.targets[pos]),
            ));
        }
        let ignored = match ignore {
            Some(id) => input.targets.iter().filter(|&&t| t == id).count(),
            None => 0,
        };
        let logits = &mut slot.value[..n * v];
        // The mean is over scored rows; with none, every gradient row is zero and the scale unused.
        let scale_f64 = 1.0 / (n - ignored).max(1) as f64;
        let scale = T::from_f64(scale_f64);
        let LossOutput { row_loss: row_nll, row_correct, .. } = out;
        let task = RowTask { vocab: v, train, scale, scale_f64, smoothing: self.label_smoothing, ignore };
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
        out.total_scored(n, ignored);
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

/// The loss box as a config-file table: `[loss] kind = "cross_entropy"  label_smoothing = 0.1`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossConfig {
    /// Softmax cross-entropy over the vocabulary (PyTorch's `nn.CrossEntropyLoss`).
    ///
    /// [`CrossEntropy`].
    CrossEntropy {
        /// ε in `[0, 1]` (PyTorch's `label_smoothing`; default 0, no smoothing).
        #[serde(default)]
        label_smoothing: f64,
        /// A target id neither scored nor counted (PyTorch's `ignore_index`; default none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ignore_index: Option<u32>,
    },
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig::CrossEntropy { label_smoothing: 0.0, ignore_index: None }
    }
}

impl LossConfig {
    /// Builds the stage.
    pub fn build<T: Float>(&self) -> LossImpl<T> {
        match *self {
            LossConfig::CrossEntropy { label_smoothing, ignore_index } => {
                LossImpl::CrossEntropy(CrossEntropy::with(label_smoothing, ignore_index))
            }
        }
    }

    /// Checks the settings without building the stage, so a bad config fails before the corpus
    /// is read; the error names the field.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LossConfig::CrossEntropy { label_smoothing, .. } => check_smoothing(label_smoothing),
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
        run_with(CrossEntropy::new(), logits, targets, v, cx)
    }

    /// [`run_ce`] with a configured stage.
    fn run_with(
        mut ce: CrossEntropy<f64>,
        logits: &[f64],
        targets: &[u32],
        v: usize,
        cx: &Ctx,
    ) -> (LossOutput, Vec<f64>) {
        let dims = Dims { vocab: v, batch: targets.len(), seq_len: 1, params: 0 };
        let mut out = LossOutput::default();
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
    fn config_reads_smoothing_and_ignore_index_and_checks_the_range() {
        let text = "kind = \"cross_entropy\"\nlabel_smoothing = 0.1\nignore_index = 0\n";
        let c: LossConfig = toml::from_str(text).unwrap();
        assert_eq!(c, LossConfig::CrossEntropy { label_smoothing: 0.1, ignore_index: Some(0) });
        c.validate().unwrap();
        let back: LossConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let plain = toml::to_string(&LossConfig::default()).unwrap();
        assert!(!plain.contains("ignore_index"), "no ignored id is no key: {plain}");
        for bad in [-0.1, 1.5, f64::NAN] {
            let c = LossConfig::CrossEntropy { label_smoothing: bad, ignore_index: None };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("loss.label_smoothing"), "{err}");
            let dims = Dims { vocab: 3, batch: 1, seq_len: 1, params: 0 };
            let err = c.build::<f32>().prepare(&dims, &mut LossOutput::default()).unwrap_err().to_string();
            assert!(err.contains("loss.label_smoothing"), "{err}");
        }
    }

    /// `F.cross_entropy(x, t, label_smoothing=ε, ignore_index=i)` in float64, torch 2.15:
    ///
    /// ```python
    /// x = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    /// loss = F.cross_entropy(x, torch.tensor(t), **kw); loss.backward()  # loss.item(), x.grad
    /// ```
    /// (an ignored id outside the vocabulary is passed to PyTorch as -100, its default).
    const LOGITS: [f64; 20] = [
        1.5, -0.25, 0.75, 2.0, -1.0, //
        0.0, 3.0, -2.0, 0.5, 0.25, //
        -0.5, 0.5, 1.25, -1.75, 0.0, //
        2.5, -3.0, 0.125, 1.0, -0.5,
    ];

    #[allow(clippy::type_complexity)]
    const PYTORCH: [(&str, [u32; 4], f64, Option<u32>, f64, [f64; 20]); 4] = [
        (
            "smooth",
            [3, 1, 0, 4],
            0.1,
            None,
            1.7407637471503676,
            [
                0.06903137134198732,
                0.007864723337141409,
                0.029969943675504502,
                -0.10794290336936561,
                0.0010768650147323705,
                0.005350415856898647,
                -0.022106340135915087,
                -0.003599223538389894,
                0.012064950783860693,
                0.008290197033545693,
                -0.20808576640087548,
                0.054569062977106855,
                0.12110770731213666,
                0.0012785330456639241,
                0.03113046306596803,
                0.17747928913156005,
                -0.0042542488530659135,
                0.011973217870097034,
                0.03571663300769663,
                -0.22091489115628782,
            ],
        ),
        (
            "ignore",
            [3, 2, 0, 2],
            0.0,
            Some(2),
            1.5756482667818896,
            [
                0.14806274268397465,
                0.02572944667428282,
                0.069939887351009,
                -0.2558858067387312,
                0.012153730029464741,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                -0.45617153280175093,
                0.1191381259542137,
                0.2522154146242733,
                0.012557066091327848,
                0.07226092613193606,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
        ),
        (
            "both",
            [3, 2, 0, 4],
            0.25,
            Some(2),
            2.1949569230179766,
            [
                0.0820418284559831,
                0.0004862977828552127,
                0.029959924900672667,
                -0.10392387115915415,
                -0.008564179980356839,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                -0.23744768853450063,
                0.06275875063614246,
                0.15147694308284887,
                -0.008295289272448101,
                0.031507284087957374,
                0.22663905217541339,
                -0.015672331804087884,
                0.005964290493462712,
                0.037622177343595506,
                -0.25455318820838374,
            ],
        ),
        (
            "ignore_outside",
            [3, 7, 0, 7],
            0.0,
            Some(7),
            1.5756482667818896,
            [
                0.14806274268397465,
                0.02572944667428282,
                0.069939887351009,
                -0.2558858067387312,
                0.012153730029464741,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                -0.45617153280175093,
                0.1191381259542137,
                0.2522154146242733,
                0.012557066091327848,
                0.07226092613193606,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
        ),
    ];

    #[test]
    fn smoothing_and_ignore_index_match_pytorch() {
        for (name, targets, eps, ignore, loss, grad) in PYTORCH {
            for cx in [Ctx::seq(), Ctx { par: Par::rayon(2), ..Ctx::seq() }] {
                let (out, g) = run_with(CrossEntropy::with(eps, ignore), &LOGITS, &targets, 5, &cx);
                let scored = targets.iter().filter(|&&t| Some(t) != ignore).count();
                assert_eq!(out.count, scored, "{name}");
                assert!((out.mean() - loss).abs() < 1e-14, "{name}: {} vs {loss}", out.mean());
                for (k, (a, b)) in g.iter().zip(&grad).enumerate() {
                    assert!((a - b).abs() < 1e-15, "{name} element {k}: {a} vs {b}");
                    if *b == 0.0 {
                        assert_eq!(*a, 0.0, "{name}: an ignored row has no gradient at all");
                    }
                }
            }
        }
    }

    /// Fingerprints of the plain kernel's loss and gradient bits (`f32`), recorded before label
    /// smoothing and `ignore_index` were added: with ε = 0 and no ignored id, nothing changed.
    #[test]
    fn smoothing_zero_is_bit_identical_to_the_plain_kernel() {
        let recorded: [(usize, usize, u64, u64); 4] = [
            (37, 5, 0x4040e232da6655dd, 0x5ba64abf9f467f3c),
            (1000, 7, 0x40502be233f5eeab, 0x03f7dff65238d021),
            (16, 3, 0x403777135f04f2c6, 0xd52819b1e6ada49b),
            (9, 2, 0x40202ba758e9dadc, 0x1742f886373044db),
        ];
        /// The loss sum's bits and a hash of the gradient's bits.
        fn fingerprint<S>(mut ce: S, v: usize, n: usize) -> (u64, u64)
        where
            S: for<'a> Stage<Input<'a> = LossInput<'a, f32>, Output = LossOutput>,
        {
            let x: Vec<f32> = (0..v * n).map(|i| ((i * 7919 + 13) % 1009) as f32 / 97.0 - 5.0).collect();
            let targets: Vec<u32> = (0..n).map(|r| ((r * 31 + 3) % v) as u32).collect();
            let dims = Dims { vocab: v, batch: n, seq_len: 1, params: 0 };
            let mut out = LossOutput::default();
            ce.prepare(&dims, &mut out).unwrap();
            let mut slot = logits_slot(&x, v);
            ce.run(LossInput { logits: &mut slot, targets: &targets }, &mut out, &Ctx::seq()).unwrap();
            let hash = slot
                .grad
                .iter()
                .fold(0u64, |h, g| h.wrapping_mul(0x100000001b3).wrapping_add(u64::from(g.to_bits())));
            (out.nll_sum.to_bits(), hash)
        }
        for (v, n, nll_bits, grad_hash) in recorded {
            assert_eq!(
                fingerprint(CrossEntropy::<f32>::new(), v, n),
                (nll_bits, grad_hash),
                "V = {v}, N = {n}"
            );
            let from_config = LossConfig::default().build::<f32>();
            assert_eq!(fingerprint(from_config, v, n), (nll_bits, grad_hash), "V = {v}, N = {n}");
        }
    }

    #[test]
    fn a_window_of_ignored_rows_scores_nothing_and_has_no_gradient() {
        let x = [0.5, -1.0, 2.0, 0.25, 0.0, 1.0];
        let (out, g) = run_with(CrossEntropy::with(0.2, Some(1)), &x, &[1, 1], 3, &Ctx::seq());
        assert_eq!((out.count, out.correct, out.nll_sum, out.mean()), (0, 0, 0.0, 0.0));
        assert!(g.iter().all(|&v| v == 0.0), "{g:?}");
        let (out, after) = run_with(CrossEntropy::with(0.2, Some(1)), &x, &[1, 2], 3, &Ctx::seq().eval());
        assert_eq!((out.count, out.correct), (1, 1), "row 1 (target 2) is scored and a hit");
        assert_eq!(after, x, "evaluation leaves even ignored rows as they are");
    }

    #[test]
    fn an_id_outside_the_vocabulary_is_refused_unless_it_is_the_ignored_one() {
        let x = [0.0; 6];
        let dims = Dims { vocab: 3, batch: 2, seq_len: 1, params: 0 };
        let mut out = LossOutput::default();
        let mut ce = CrossEntropy::<f64>::with(0.0, Some(9));
        Stage::prepare(&mut ce, &dims, &mut out).unwrap();
        let mut slot = logits_slot(&x, 3);
        let err =
            ce.run(LossInput { logits: &mut slot, targets: &[9, 8] }, &mut out, &Ctx::seq()).unwrap_err();
        assert!(err.to_string().contains("target id 8 at row 1"), "{err}");
    }

    fn smoothed_case() -> impl Strategy<Value = (usize, Vec<f64>, Vec<u32>, f64, Option<u32>)> {
        (case(), 0.0f64..=1.0, proptest::option::of(0u32..12))
            .prop_map(|((v, x, t), eps, ignore)| (v, x, t, eps, ignore))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn smoothed_gradient_matches_finite_differences((v, x, t, eps, ignore) in smoothed_case()) {
            let ce = || CrossEntropy::with(eps, ignore);
            let (out, dlogits) = run_with(ce(), &x, &t, v, &Ctx::seq());
            let naive: f64 = t.iter().enumerate().filter(|&(_, &tr)| Some(tr) != ignore).map(|(r, &tr)| {
                let row = &x[r * v..(r + 1) * v];
                let mean_nll = (0..v).map(|j| naive_nll(row, j)).sum::<f64>() / v as f64;
                (1.0 - eps) * naive_nll(row, tr as usize) + eps * mean_nll
            }).sum();
            prop_assert!((out.nll_sum - naive).abs() < 1e-9 * (1.0 + naive), "{} vs {}", out.nll_sum, naive);
            for (r, &tr) in t.iter().enumerate() {
                let s: f64 = dlogits[r * v..(r + 1) * v].iter().sum();
                prop_assert!(s.abs() < 1e-12, "row {} sums to {}", r, s);
                if Some(tr) == ignore {
                    prop_assert!(dlogits[r * v..(r + 1) * v].iter().all(|&g| g == 0.0));
                }
            }
            let h = 1e-5;
            for k in 0..x.len() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let lp = run_with(ce(), &xp, &t, v, &Ctx::seq().eval()).0.mean();
                let lm = run_with(ce(), &xm, &t, v, &Ctx::seq().eval()).0.mean();
                let numeric = (lp - lm) / (2.0 * h);
                let analytic = dlogits[k];
                // As in the plain test: gradients below 1e-2 are judged absolutely (to 1e-8).
                let rel = (numeric - analytic).abs() / numeric.abs().max(analytic.abs()).max(1e-2);
                prop_assert!(rel < 1e-6, "element {}: {} vs {}", k, analytic, numeric);
            }
        }

        #[test]
        fn smoothed_parallel_equals_sequential_and_train_equals_eval((v, x, t, eps, ignore) in smoothed_case()) {
            let ce = || CrossEntropy::with(eps, ignore);
            let (a, ga) = run_with(ce(), &x, &t, v, &Ctx::seq());
            let (b, gb) = run_with(ce(), &x, &t, v, &Ctx { par: Par::rayon(2), ..Ctx::seq() });
            let (e, _) = run_with(ce(), &x, &t, v, &Ctx::seq().eval());
            prop_assert!(a.nll_sum.to_bits() == b.nll_sum.to_bits() && ga == gb);
            prop_assert!((a.correct, a.count) == (b.correct, b.count));
            prop_assert!(a.nll_sum.to_bits() == e.nll_sum.to_bits() && a.correct == e.correct);
        }
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

#[cfg(test)]
mod law_tests {
    use super::*;

    #[test]
    fn the_built_in_keeps_the_laws() {
        laws::check(CrossEntropy::<f64>::new).unwrap();
        laws::check(|| CrossEntropy::<f64>::with(0.1, None)).unwrap();
        laws::check(|| CrossEntropy::<f64>::with(0.0, Some(1000))).unwrap();
    }

    /// Cross-entropy whose gradient is off by a factor: the kit must catch it.
    struct WrongGradient(CrossEntropy<f64>);

    impl Stage for WrongGradient {
        type Input<'a> = LossInput<'a, f64>;
        type Output = LossOutput;
        fn name(&self) -> &str {
            "wrong"
        }
        fn prepare(&mut self, dims: &Dims, out: &mut LossOutput) -> Result<()> {
            self.0.prepare(dims, out)
        }
        fn run(&self, input: LossInput<'_, f64>, out: &mut LossOutput, cx: &Ctx) -> Result<()> {
            let slot = input.logits;
            self.0.run(LossInput { logits: &mut *slot, targets: input.targets }, out, cx)?;
            for g in slot.grad.iter_mut() {
                *g *= 1.5;
            }
            Ok(())
        }
    }

    #[test]
    fn the_kit_catches_a_wrong_gradient() {
        let err = laws::check(|| WrongGradient(CrossEntropy::new())).unwrap_err();
        assert!(err.contains("gradient"), "{err}");
    }
}
