//! The loss box's laws, as a check any implementation can be run through: the built-ins in this
//! crate's tests, a user's own loss in theirs (enable the `testkit` feature).
//!
//! ```ignore
//! #[test]
//! fn my_loss_keeps_the_laws() {
//!     stagewise_loss::laws::check(|| MyLoss::new()).unwrap();
//! }
//! ```
//!
//! Each law is checked on seeded random logits (several vocabularies, row counts and scales):
//! - per-row losses are finite and ≥ 0, and the reported sum, count and hits agree with them;
//! - uniform logits give `ln V` per row (every cross-entropy, smoothed or not);
//! - in training each row of the gradient sums to zero (it is `p − q` for two distributions) and
//!   the gradient equals central finite differences of the mean loss, in `f64`;
//! - evaluation leaves the logits as they are and reports the training loss, bit for bit;
//! - two threads give the same bits as one.

use crate::{Loss, LossInput, LossOutput};
use stagewise_core::{Ctx, Dims, Mode, Par, Rng, Slot};
use stagewise_kernels::memory::AlignedVec;

/// Runs every law on losses made by `make` (a fresh one per case); the first violation, described.
pub fn check<L: Loss<f64> + Sync>(make: impl Fn() -> L) -> Result<(), String> {
    let mut rng = Rng::new(29);
    for (v, n, scale) in [(2, 1, 1.0), (5, 3, 2.0), (17, 4, 6.0), (40, 2, 0.5)] {
        let logits: Vec<f64> = (0..v * n).map(|_| scale * rng.normal()).collect();
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v as u64) as u32).collect();
        let case = format!("V = {v}, {n} rows");
        let (train, grad) = run(&make, &logits, &targets, v, Ctx::seq())?;
        per_row_laws(&train, n).map_err(|e| format!("{case}: {e}"))?;
        gradient_laws(&make, &logits, &targets, v, &grad).map_err(|e| format!("{case}: {e}"))?;
        let (eval, after) = run(&make, &logits, &targets, v, Ctx::seq().eval())?;
        if after != logits {
            return Err(format!("{case}: evaluation changed the logits"));
        }
        if eval.nll_sum.to_bits() != train.nll_sum.to_bits() {
            return Err(format!("{case}: evaluation reports {}, training {}", eval.nll_sum, train.nll_sum));
        }
        let (two, grad2) = run(&make, &logits, &targets, v, Ctx { par: Par::rayon(2), ..Ctx::seq() })?;
        if two.nll_sum.to_bits() != train.nll_sum.to_bits() || grad2 != grad {
            return Err(format!("{case}: two threads changed the loss or its gradient"));
        }
        let uniform = vec![0.25; v * n];
        let (flat, _) = run(&make, &uniform, &targets, v, Ctx::seq().eval())?;
        let ln_v = (v as f64).ln();
        if let Some(r) = (0..n).find(|&r| (flat.row_loss[r] - ln_v).abs() > 1e-12 * ln_v.max(1.0)) {
            return Err(format!(
                "{case}: uniform logits give {} in row {r}, not ln V = {ln_v}",
                flat.row_loss[r]
            ));
        }
    }
    Ok(())
}

/// Runs the loss once on a copy of `logits`; returns its output and, in training, the gradient it
/// left in the slot (in evaluation, the slot's values afterwards).
fn run<L: Loss<f64> + Sync>(
    make: &impl Fn() -> L,
    logits: &[f64],
    targets: &[u32],
    v: usize,
    cx: Ctx,
) -> Result<(LossOutput, Vec<f64>), String> {
    let mut loss = make();
    let mut out = LossOutput::default();
    let dims = Dims { vocab: v, batch: targets.len(), seq_len: 1, params: 0 };
    loss.prepare(&dims, &mut out).map_err(|e| format!("prepare: {e}"))?;
    let mut slot = Slot {
        name: "logits".into(),
        value: AlignedVec::from_slice(logits),
        grad: AlignedVec::zeroed(logits.len()),
        width: v,
    };
    let threads = stagewise_core::threads_of(cx.par);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    pool.install(|| loss.run(LossInput { logits: &mut slot, targets }, &mut out, &cx))
        .map_err(|e| format!("run: {e}"))?;
    let after = if cx.mode == Mode::Train { slot.grad.to_vec() } else { slot.value.to_vec() };
    Ok((out, after))
}

/// Finite, non-negative rows whose sum, count and hits are what the output reports.
fn per_row_laws(out: &LossOutput, n: usize) -> Result<(), String> {
    if out.count != n {
        return Err(format!("count {} for {n} scored rows", out.count));
    }
    let rows = &out.row_loss[..n];
    if let Some(r) = rows.iter().position(|l| !(l.is_finite() && *l >= 0.0)) {
        return Err(format!("row {r} has loss {}", rows[r]));
    }
    let sum: f64 = rows.iter().sum();
    if (sum - out.nll_sum).abs() > 1e-12 * sum.max(1.0) {
        return Err(format!("nll_sum {} is not the sum of the rows, {sum}", out.nll_sum));
    }
    let hits = out.row_correct[..n].iter().filter(|&&c| c).count();
    if hits != out.correct {
        return Err(format!("correct {} but {hits} rows hit", out.correct));
    }
    Ok(())
}

/// Gradient rows sum to zero and match central differences of the mean loss.
fn gradient_laws<L: Loss<f64> + Sync>(
    make: &impl Fn() -> L,
    logits: &[f64],
    targets: &[u32],
    v: usize,
    grad: &[f64],
) -> Result<(), String> {
    for (r, row) in grad.chunks(v).enumerate() {
        let s: f64 = row.iter().sum();
        if s.abs() > 1e-12 {
            return Err(format!("gradient row {r} sums to {s}, not zero"));
        }
    }
    let eps = 1e-6;
    for k in 0..logits.len() {
        let mean_at = |d: f64| -> Result<f64, String> {
            let mut x = logits.to_vec();
            x[k] += d;
            Ok(run(make, &x, targets, v, Ctx::seq().eval())?.0.mean())
        };
        let numeric = (mean_at(eps)? - mean_at(-eps)?) / (2.0 * eps);
        if (numeric - grad[k]).abs() > 1e-6 * numeric.abs().max(1e-2) {
            return Err(format!("gradient element {k} is {}, finite differences give {numeric}", grad[k]));
        }
    }
    Ok(())
}
