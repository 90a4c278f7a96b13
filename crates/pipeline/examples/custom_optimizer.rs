//! Your own update box: SGD with momentum, as PyTorch's `torch.optim.SGD(momentum=μ)` computes it,
//! trained through the same run as the built-ins.
//!
//! `MomentumSgd<T>` is an ordinary type implementing [`Stage`] with `Input<'a> = Update<'a, T>`
//! and `Output = OptimizerState<T>`, which makes it a `stagewise_optimizer::Optimizer<T>`.
//! In `prepare` it declares the one state buffer it needs, `momentum_buffer` (PyTorch's name);
//! the checkpoint then stores that buffer by name. Every other box comes from the config.
//!
//! ```sh
//! cargo run --release -p stagewise-pipeline --example custom_optimizer -- --max-windows 50 --out runs/sgd
//! ```
//!
//! It takes every flag of `cargo xtask train` and writes the same files (`metrics.jsonl`,
//! `vocab.json`, `model.ckpt`). See docs/write-your-own-stage.md.

use clap::Parser;
use rayon::prelude::*;
use stagewise_core::{Ctx, Dims, Error, Float, Par, Result, Stage};
use stagewise_optimizer::{OptimizerState, StateId, Update};
use stagewise_pipeline::Model;
use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command};
use std::process::ExitCode;

#[cfg(test)]
mod common;

/// SGD with momentum μ: `b ← μ·b + g` (`b ← g` at the first step), `p ← p − lr·b`, in one pass
/// over each run of trainable tensors (a frozen tensor is left alone), `lr` scaled by the step's
/// `lr_factor` (the run's schedule). Generic over the float type, so the update box's laws can be
/// checked in `f64`.
#[derive(Clone, Debug)]
pub struct MomentumSgd<T> {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ in `[0, 1)`.
    pub momentum: f64,
    /// The `momentum_buffer` this optimizer declared, once prepared.
    buffer: Option<StateId>,
    _float: std::marker::PhantomData<fn() -> T>,
}

impl<T> MomentumSgd<T> {
    /// The optimizer at learning rate `lr` and momentum `momentum`.
    pub fn new(lr: f64, momentum: f64) -> Self {
        MomentumSgd { lr, momentum, buffer: None, _float: std::marker::PhantomData }
    }
}

/// Elements per parallel task: any fixed size keeps the result independent of the thread count
/// (each element's update is independent of the others).
const CHUNK: usize = 1 << 14;

impl<T: Float> Stage for MomentumSgd<T> {
    type Input<'a> = Update<'a, T>;
    type Output = OptimizerState<T>;

    fn name(&self) -> &str {
        "momentum_sgd"
    }

    /// Checks the settings and declares the one buffer momentum needs.
    fn prepare(&mut self, dims: &Dims, state: &mut OptimizerState<T>) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config("optimizer.lr", format!("{} is out of range", self.lr)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::config("optimizer.momentum", format!("{} is not in [0, 1)", self.momentum)));
        }
        if state.layout().total() != dims.params {
            return Err(Error::shape("optimizer state", dims.params, state.layout().total()));
        }
        self.buffer = Some(state.declare("momentum_buffer")?);
        Ok(())
    }

    /// One fused pass over each run of trainable tensors; allocates nothing.
    fn run(&self, up: Update<'_, T>, state: &mut OptimizerState<T>, cx: &Ctx) -> Result<()> {
        let id = self.buffer.ok_or_else(|| Error::config("optimizer", "momentum_sgd run before prepare"))?;
        let first = state.step == 0;
        let (lr, mu) = (T::from_f64(self.lr * up.lr_factor), T::from_f64(self.momentum));
        let step = |(p, (g, b)): (&mut [T], (&[T], &mut [T]))| {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
                *b = if first { g } else { mu * *b + g };
                *p -= lr * *b;
            }
        };
        let (layout, p) = up.params.layout_and_mut_slice();
        let (g, b) = (up.grads.as_slice(), state.get_mut(id).as_mut_slice());
        if p.len() != g.len() || p.len() != b.len() {
            return Err(Error::shape("momentum_sgd arenas", p.len(), (g.len(), b.len())));
        }
        for run in layout.trainable_runs() {
            let (p, g, b) = (&mut p[run.clone()], &g[run.clone()], &mut b[run]);
            match cx.par {
                Par::Seq => step((p, (g, b))),
                Par::Rayon(_) => p
                    .par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK).zip(b.par_chunks_mut(CHUNK)))
                    .for_each(step),
            }
        }
        state.step += 1;
        Ok(())
    }
}

/// The flags of `cargo xtask train`.
#[derive(Parser)]
#[command(about = "Train with SGD with momentum (a user-defined update box) in place of Adam.")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
    /// Learning rate of the SGD.
    #[arg(long = "sgd-lr", default_value_t = 0.1)]
    sgd_lr: f64,
}

fn run(args: &Args) -> Result<()> {
    let sgd = MomentumSgd::<f32>::new(args.sgd_lr, 0.9);
    train_command(&args.train, |config| Ok(Model::<f32>::builder(config)?.optimizer(sgd))).map(|_| ())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    exit_code(run(&Args::parse()).map(|()| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::{Grads, Params};

    #[test]
    fn trains_through_the_common_run_and_checkpoints_its_buffer() {
        let scratch = common::Scratch::new("optimizer");
        let args = scratch.args(6, Args::parse_from);
        run(&args).unwrap();
        let ck = scratch.check_run(2, ["table", "lstm", "cross_entropy", "reverse", "momentum_sgd"]);
        let names: Vec<&str> = ck.optimizer_state.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["momentum_buffer"]);
        assert_eq!(ck.step, 12);
    }

    /// The update box's laws (`stagewise_optimizer::laws`), which every built-in passes too.
    #[test]
    fn keeps_the_update_box_s_laws() {
        stagewise_optimizer::laws::check(|| MomentumSgd::<f64>::new(0.05, 0.9), false).unwrap();
    }

    #[test]
    fn steps_follow_pytorch() {
        let mut params = Params::<f32>::new();
        let id = params.declare("w", &[3]).unwrap();
        params.get_mut(id).copy_from_slice(&[1.0, -2.0, 0.5]);
        let mut grads = Grads::zeros_with_layout(params.layout());
        grads.as_mut_slice().copy_from_slice(&[0.5, 1.0, -4.0]);
        let mut state = OptimizerState::new(params.layout());
        let mut sgd = MomentumSgd::new(0.25, 0.5);
        sgd.prepare(&Dims { vocab: 2, batch: 1, seq_len: 1, params: 3 }, &mut state).unwrap();
        // Step 1: b = g; p = p − 0.25·g.
        sgd.run(Update { params: &mut params, grads: &grads, lr_factor: 1.0 }, &mut state, &Ctx::seq())
            .unwrap();
        assert_eq!(params.as_slice(), &[0.875, -2.25, 1.5]);
        // Step 2 at half the rate: b = 0.5·g + g = 1.5·g; p −= 0.125·1.5·g.
        sgd.run(Update { params: &mut params, grads: &grads, lr_factor: 0.5 }, &mut state, &Ctx::seq())
            .unwrap();
        assert_eq!(params.as_slice(), &[0.78125, -2.4375, 2.25]);
        assert_eq!(state.step, 2);
        assert!(
            MomentumSgd::new(0.0, 0.9)
                .prepare(&Dims { vocab: 2, batch: 1, seq_len: 1, params: 3 }, &mut state)
                .is_err()
        );
    }
}
