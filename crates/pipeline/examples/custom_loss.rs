//! Your own loss box: cross-entropy with label smoothing, as PyTorch's
//! `nn.CrossEntropyLoss(label_smoothing=ε)` defines it, trained through the same run as the
//! built-ins.
//!
//! `SmoothedCrossEntropy` implements [`Stage`] with `Input<'a> = LossInput<'a, f32>` and
//! `Output = LossOutput`, which makes it a `stagewise_loss::Loss<f32>`. Per row, with
//! `p = softmax(x)`, the loss is `(1 − ε)·(−log p[target]) + ε·mean_j(−log p_j)` and its gradient
//! `p − (1 − ε)·onehot(target) − ε/V`; the mean over rows is what is minimised, so the gradient
//! it leaves in the logits slot's `grad` (where the backward box starts) is divided by N.
//!
//! ```sh
//! cargo run --release -p stagewise-pipeline --example custom_loss -- --max-windows 50 --out runs/smooth
//! ```

use clap::Parser;
use rayon::prelude::*;
use stagewise_core::{Ctx, Dims, Error, Mode, Par, Result, Stage};
use stagewise_loss::{LossInput, LossOutput};
use stagewise_pipeline::Model;
use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command};
use std::process::ExitCode;

#[cfg(test)]
mod common;

/// Label-smoothed cross-entropy, mean over tokens.
#[derive(Clone, Copy, Debug)]
pub struct SmoothedCrossEntropy {
    /// ε in `[0, 1)`: how much probability the target gives up to the other classes.
    pub smoothing: f64,
}

/// Rows per parallel task: fixed, so the per-row results do not depend on the thread count.
const ROWS_PER_TASK: usize = 16;

impl SmoothedCrossEntropy {
    /// One row: returns `(loss, argmax == target)` and, if `grad` is given, writes
    /// `(p − (1 − ε)·onehot − ε/V)·scale` into it. Computed in `f64`.
    fn row(&self, x: &[f32], target: usize, grad: Option<(&mut [f32], f64)>) -> (f64, bool) {
        let v = x.len() as f64;
        let max = x.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a)) as f64;
        let sum: f64 = x.iter().map(|&a| (a as f64 - max).exp()).sum();
        let lse = max + sum.ln();
        let nll = lse - x[target] as f64;
        let mean_nll = lse - x.iter().map(|&a| a as f64).sum::<f64>() / v;
        let eps = self.smoothing;
        if let Some((g, scale)) = grad {
            for (j, (g, &a)) in g.iter_mut().zip(x).enumerate() {
                let p = (a as f64 - lse).exp();
                let hit = if j == target { 1.0 - eps } else { 0.0 };
                *g = ((p - hit - eps / v) * scale) as f32;
            }
        }
        let first_max = x.iter().position(|&a| a as f64 == max) == Some(target);
        ((1.0 - eps) * nll + eps * mean_nll, first_max)
    }
}

impl SmoothedCrossEntropy {
    /// Rows of logits and gradients `(x, g)` (`v` wide) with their targets `t`: each row's loss
    /// and hit into `out`, and the gradient times `grad_scale` into `g` if training.
    fn rows(
        &self,
        v: usize,
        (x, g): (&[f32], &mut [f32]),
        t: &[u32],
        out: (&mut [f64], &mut [bool]),
        grad_scale: Option<f64>,
    ) {
        let rows = x.chunks(v).zip(g.chunks_mut(v)).zip(t).zip(out.0.iter_mut().zip(out.1.iter_mut()));
        for (((x, g), &t), (l, c)) in rows {
            (*l, *c) = self.row(x, t as usize, grad_scale.map(|s| (g, s)));
        }
    }
}

impl Stage for SmoothedCrossEntropy {
    type Input<'a> = LossInput<'a, f32>;
    type Output = LossOutput;

    fn name(&self) -> &str {
        "smoothed_cross_entropy"
    }

    fn prepare(&mut self, dims: &Dims, out: &mut LossOutput) -> Result<()> {
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(Error::config("loss.smoothing", format!("{} is not in [0, 1)", self.smoothing)));
        }
        *out = LossOutput::with_rows(dims.max_rows());
        Ok(())
    }

    /// Per-row losses and hits into `out`, the gradient of the mean into the logits slot's `grad`
    /// (training only); the logits are left as they are.
    fn run(&self, input: LossInput<'_, f32>, out: &mut LossOutput, cx: &Ctx) -> Result<()> {
        let slot = input.logits;
        let (v, n) = (slot.width, input.targets.len());
        if n == 0 || n > out.row_loss.len() || slot.value.len() < n * v || slot.grad.len() < n * v {
            return Err(Error::shape(
                "smoothed_cross_entropy input",
                format!("1..={} rows", out.row_loss.len()),
                n,
            ));
        }
        if let Some(pos) = input.targets.iter().position(|&t| t as usize >= v) {
            return Err(Error::data(
                "smoothed_cross_entropy",
                format!("target {} at row {pos} >= {v}", input.targets[pos]),
            ));
        }
        let train = cx.mode == Mode::Train;
        let scale = 1.0 / n as f64;
        let (x, g) = (&slot.value[..n * v], &mut slot.grad[..n * v]);
        let grad_scale = train.then_some(scale);
        let (loss, hit) = (&mut out.row_loss[..n], &mut out.row_correct[..n]);
        let chunk = ROWS_PER_TASK;
        match cx.par {
            Par::Seq => self.rows(v, (x, g), input.targets, (loss, hit), grad_scale),
            Par::Rayon(_) => x
                .par_chunks(chunk * v)
                .zip(g.par_chunks_mut(chunk * v))
                .zip(input.targets.par_chunks(chunk))
                .zip(loss.par_chunks_mut(chunk).zip(hit.par_chunks_mut(chunk)))
                .for_each(|(((x, g), t), out)| self.rows(v, (x, g), t, out, grad_scale)),
        }
        out.total(n);
        if !out.nll_sum.is_finite() {
            return Err(Error::Numeric {
                stage: self.name().into(),
                message: format!("loss is {}", out.nll_sum),
            });
        }
        Ok(())
    }
}

/// The flags of `cargo xtask train`, and ε.
#[derive(Parser)]
#[command(about = "Train with label-smoothed cross-entropy (a user-defined loss box).")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
    /// Label smoothing ε.
    #[arg(long, default_value_t = 0.1)]
    smoothing: f64,
}

fn run(args: &Args) -> Result<()> {
    let loss = SmoothedCrossEntropy { smoothing: args.smoothing };
    train_command(&args.train, |config| Ok(Model::<f32>::builder(config)?.loss(loss))).map(|_| ())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    exit_code(run(&Args::parse()).map(|()| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::Slot;
    use stagewise_kernels::memory::AlignedVec;
    use stagewise_loss::CrossEntropy;

    #[test]
    fn trains_through_the_common_run() {
        let scratch = common::Scratch::new("loss");
        run(&scratch.args(6, Args::parse_from)).unwrap();
        scratch.check_run(2, ["table", "lstm", "smoothed_cross_entropy", "reverse", "adam"]);
    }

    fn slot(x: &[f32], v: usize) -> Slot<f32> {
        Slot {
            name: "logits".into(),
            value: AlignedVec::from_slice(x),
            grad: AlignedVec::zeroed(x.len()),
            width: v,
        }
    }

    /// Runs `loss` on logits `x` (rows of `v`); returns the mean loss and the gradient.
    fn eval<S: stagewise_loss::Loss<f32>>(
        loss: &mut S,
        x: &[f32],
        t: &[u32],
        v: usize,
        cx: &Ctx,
    ) -> (f64, Vec<f32>) {
        let mut out = LossOutput::default();
        loss.prepare(&Dims { vocab: v, batch: t.len(), seq_len: 1, params: 0 }, &mut out).unwrap();
        let mut s = slot(x, v);
        loss.run(LossInput { logits: &mut s, targets: t }, &mut out, cx).unwrap();
        (out.mean(), s.grad.to_vec())
    }

    #[test]
    fn without_smoothing_it_is_the_built_in_cross_entropy() {
        let x: Vec<f32> = (0..3 * 7).map(|i| ((i * 37) % 11) as f32 / 3.0 - 1.5).collect();
        let t = [2, 0, 6];
        let (ours, g1) = eval(&mut SmoothedCrossEntropy { smoothing: 0.0 }, &x, &t, 7, &Ctx::seq());
        let (theirs, g2) = eval(&mut CrossEntropy::<f32>::new(), &x, &t, 7, &Ctx::seq());
        assert!((ours - theirs).abs() < 1e-6, "{ours} vs {theirs}");
        assert!(g1.iter().zip(&g2).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn gradient_matches_finite_differences_and_threads_agree() {
        let v = 5;
        let x: Vec<f32> = (0..2 * v).map(|i| ((i * 13) % 7) as f32 / 2.0 - 1.0).collect();
        let t = [1, 4];
        let mut loss = SmoothedCrossEntropy { smoothing: 0.2 };
        let (_, g) = eval(&mut loss, &x, &t, v, &Ctx::seq());
        let h = 1e-2f32;
        for k in 0..x.len() {
            let at = |d: f32| {
                let mut y = x.clone();
                y[k] += d;
                let l = eval(&mut SmoothedCrossEntropy { smoothing: 0.2 }, &y, &t, v, &Ctx::seq().eval()).0;
                (l, y[k] as f64)
            };
            let ((up, x_up), (down, x_down)) = (at(h), at(-h));
            let numeric = (up - down) / (x_up - x_down);
            assert!((numeric - g[k] as f64).abs() < 1e-4, "{k}: {numeric} vs {}", g[k]);
        }
        let (_, g2) = eval(&mut loss, &x, &t, v, &Ctx { par: Par::rayon(2), ..Ctx::seq() });
        assert_eq!(g, g2);
    }
}
