//! Your own loss box: cross-entropy with label smoothing, as PyTorch's
//! `nn.CrossEntropyLoss(label_smoothing=ε)` defines it, trained through the same run as the
//! built-ins.
//!
//! `SmoothedCrossEntropy<T>` implements [`Stage`] with `Input<'a> = LossInput<'a, T>` and
//! `Output = LossOutput`, which makes it a `stagewise_loss::Loss<T>`. (The built-in
//! `cross_entropy` now takes `label_smoothing` too; this example computes the same thing in a few
//! lines of its own, and its tests check that the two agree.) Per row, with
//! `p = softmax(x)`, the loss is `(1 − ε)·(−log p[target]) + ε·mean_j(−log p_j)` and its gradient
//! `p − (1 − ε)·onehot(target) − ε/V`; the mean over rows is what is minimised, so the gradient
//! it leaves in the logits slot's `grad` (where the backward box starts) is divided by N.
//!
//! ```sh
//! cargo run --release -p stagewise-pipeline --example custom_loss -- --max-windows 50 --out runs/smooth
//! ```

use clap::Parser;
use rayon::prelude::*;
use stagewise_core::{Ctx, Dims, Error, Float, Mode, Par, Result, Stage};
use stagewise_loss::{LossInput, LossOutput};
use stagewise_pipeline::Model;
use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command};
use std::process::ExitCode;

#[cfg(test)]
mod common;

/// Label-smoothed cross-entropy, mean over tokens; generic over the float type, so the loss
/// box's laws can be checked in `f64`.
#[derive(Clone, Copy, Debug)]
pub struct SmoothedCrossEntropy<T> {
    /// ε in `[0, 1)`: how much probability the target gives up to the other classes.
    pub smoothing: f64,
    _float: std::marker::PhantomData<fn() -> T>,
}

impl<T> SmoothedCrossEntropy<T> {
    /// The loss with smoothing `smoothing`.
    pub fn new(smoothing: f64) -> Self {
        SmoothedCrossEntropy { smoothing, _float: std::marker::PhantomData }
    }
}

/// Rows per parallel task: fixed, so the per-row results do not depend on the thread count.
const ROWS_PER_TASK: usize = 16;

impl<T: Float> SmoothedCrossEntropy<T> {
    /// One row: returns `(loss, argmax == target)` and, if `grad` is given, writes
    /// `(p − (1 − ε)·onehot − ε/V)·scale` into it. Computed in `f64`.
    fn row(&self, x: &[T], target: usize, grad: Option<(&mut [T], f64)>) -> (f64, bool) {
        let v = x.len() as f64;
        let max = x.iter().fold(f64::NEG_INFINITY, |m, &a| m.max(a.to_f64()));
        let sum: f64 = x.iter().map(|&a| (a.to_f64() - max).exp()).sum();
        let lse = max + sum.ln();
        let nll = lse - x[target].to_f64();
        let mean_nll = lse - x.iter().map(|&a| a.to_f64()).sum::<f64>() / v;
        let eps = self.smoothing;
        if let Some((g, scale)) = grad {
            for (j, (g, &a)) in g.iter_mut().zip(x).enumerate() {
                let p = (a.to_f64() - lse).exp();
                let hit = if j == target { 1.0 - eps } else { 0.0 };
                *g = T::from_f64((p - hit - eps / v) * scale);
            }
        }
        let first_max = x.iter().position(|&a| a.to_f64() == max) == Some(target);
        ((1.0 - eps) * nll + eps * mean_nll, first_max)
    }
}

impl<T: Float> SmoothedCrossEntropy<T> {
    /// Rows of logits and gradients `(x, g)` (`v` wide) with their targets `t`: each row's loss
    /// and hit into `out`, and the gradient times `grad_scale` into `g` if training.
    fn rows(
        &self,
        v: usize,
        (x, g): (&[T], &mut [T]),
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

impl<T: Float> Stage for SmoothedCrossEntropy<T> {
    type Input<'a> = LossInput<'a, T>;
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
    fn run(&self, input: LossInput<'_, T>, out: &mut LossOutput, cx: &Ctx) -> Result<()> {
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
    let loss = SmoothedCrossEntropy::<f32>::new(args.smoothing);
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

    /// The loss box's laws (`stagewise_loss::laws`), which the built-in passes too.
    #[test]
    fn keeps_the_loss_box_s_laws() {
        stagewise_loss::laws::check(|| SmoothedCrossEntropy::<f64>::new(0.1)).unwrap();
        stagewise_loss::laws::check(|| SmoothedCrossEntropy::<f64>::new(0.0)).unwrap();
    }

    /// The built-in `cross_entropy` with the same `label_smoothing` gives the same loss and gradient.
    #[test]
    fn agrees_with_the_built_in_smoothing() {
        let x: Vec<f32> = (0..3 * 7).map(|i| ((i * 37) % 11) as f32 / 3.0 - 1.5).collect();
        let t = [2, 0, 6];
        let (ours, g1) = eval(&mut SmoothedCrossEntropy::new(0.2), &x, &t, 7, &Ctx::seq());
        let (theirs, g2) = eval(&mut CrossEntropy::<f32>::with(0.2, None), &x, &t, 7, &Ctx::seq());
        assert!((ours - theirs).abs() < 1e-6, "{ours} vs {theirs}");
        assert!(g1.iter().zip(&g2).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn without_smoothing_it_is_the_built_in_cross_entropy() {
        let x: Vec<f32> = (0..3 * 7).map(|i| ((i * 37) % 11) as f32 / 3.0 - 1.5).collect();
        let t = [2, 0, 6];
        let (ours, g1) = eval(&mut SmoothedCrossEntropy::new(0.0), &x, &t, 7, &Ctx::seq());
        let (theirs, g2) = eval(&mut CrossEntropy::<f32>::new(), &x, &t, 7, &Ctx::seq());
        assert!((ours - theirs).abs() < 1e-6, "{ours} vs {theirs}");
        assert!(g1.iter().zip(&g2).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn gradient_matches_finite_differences_and_threads_agree() {
        let v = 5;
        let x: Vec<f32> = (0..2 * v).map(|i| ((i * 13) % 7) as f32 / 2.0 - 1.0).collect();
        let t = [1, 4];
        let mut loss = SmoothedCrossEntropy::new(0.2);
        let (_, g) = eval(&mut loss, &x, &t, v, &Ctx::seq());
        let h = 1e-2f32;
        for k in 0..x.len() {
            let at = |d: f32| {
                let mut y = x.clone();
                y[k] += d;
                let l = eval(&mut SmoothedCrossEntropy::new(0.2), &y, &t, v, &Ctx::seq().eval()).0;
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
