//! Your own backward box: the exact reverse sweep followed by gradient clipping, as PyTorch's
//! `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` does it, trained through the same run as
//! the built-ins.
//!
//! `ClippedSweep<T>` implements [`Stage`] with `Input<'a> = SlotId` (the slot whose gradient the
//! loss box wrote: the seed) and `Output = Tape<T>`, which makes it a
//! `stagewise_backward::Backward<T>`. (The built-in `reverse` box now takes `clip` too; this
//! example writes it out in a few lines, and its tests check that the two agree.) It runs the exact reverse sweep
//! (`stagewise_backward::reverse_sweep`: the parameter gradients zeroed, then every op's
//! vector–Jacobian product in reverse order), then scales all gradients by
//! `min(1, max_norm / (‖g‖₂ + 1e-6))`, where `‖g‖₂` is the 2-norm over every parameter's
//! gradient together (summed in `f64`, in arena order, so the same at any thread count).
//!
//! ```sh
//! cargo run --release -p stagewise-pipeline --example custom_backward -- --max-windows 50 --out runs/clip
//! ```

use clap::Parser;
use stagewise_backward::reverse_sweep;
use stagewise_core::{Ctx, Dims, Error, Float, Result, SlotId, Stage, Tape};
use stagewise_pipeline::Model;
use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command};
use std::process::ExitCode;

#[cfg(test)]
mod common;

/// The reverse sweep, then the total gradient norm clipped to `max_norm`; generic over the float
/// type, so the backward box's laws can be checked in `f64`.
#[derive(Clone, Copy, Debug)]
pub struct ClippedSweep<T> {
    /// Largest 2-norm the gradients may have after clipping (the word-language-model example
    /// uses 0.25).
    pub max_norm: f64,
    _float: std::marker::PhantomData<fn() -> T>,
}

impl<T> ClippedSweep<T> {
    /// The sweep clipping the norm to `max_norm`.
    pub fn new(max_norm: f64) -> Self {
        ClippedSweep { max_norm, _float: std::marker::PhantomData }
    }
}

impl<T: Float> Stage for ClippedSweep<T> {
    type Input<'a> = SlotId;
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "clipped_reverse"
    }

    fn prepare(&mut self, _dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        if !(self.max_norm > 0.0 && self.max_norm.is_finite()) {
            return Err(Error::config("backward.max_norm", format!("{} is not positive", self.max_norm)));
        }
        if tape.ops().is_empty() {
            return Err(Error::config(
                "backward",
                "the tape has no ops: prepare the embed and forward boxes first",
            ));
        }
        Ok(())
    }

    fn run(&self, seed: SlotId, tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        reverse_sweep(seed, tape, cx.par)?;
        let total = tape.grads.as_slice().iter().map(|&g| g.to_f64() * g.to_f64()).sum::<f64>().sqrt();
        let coef = self.max_norm / (total + 1e-6);
        if coef < 1.0 {
            let coef = T::from_f64(coef);
            for g in tape.grads.as_mut_slice() {
                *g *= coef;
            }
        }
        Ok(())
    }
}

/// The flags of `cargo xtask train`, and the clipping norm.
#[derive(Parser)]
#[command(about = "Train with gradient clipping (a user-defined backward box).")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
    /// The largest total gradient norm.
    #[arg(long, default_value_t = 0.25)]
    max_norm: f64,
}

fn run(args: &Args) -> Result<()> {
    let backward = ClippedSweep::<f32>::new(args.max_norm);
    train_command(&args.train, |config| Ok(Model::<f32>::builder(config)?.backward(backward))).map(|_| ())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    exit_code(run(&Args::parse()).map(|()| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_pipeline::Config;
    use stagewise_pipeline::data::Window;

    #[test]
    fn trains_through_the_common_run() {
        let scratch = common::Scratch::new("backward");
        run(&scratch.args(6, Args::parse_from)).unwrap();
        scratch.check_run(2, ["table", "lstm", "cross_entropy", "clipped_reverse", "adam"]);
    }

    /// The backward box's laws (`stagewise_backward::laws`), which the built-ins pass too.
    #[test]
    fn keeps_the_backward_box_s_laws() {
        stagewise_backward::laws::check(|| ClippedSweep::<f64>::new(0.05)).unwrap();
        stagewise_backward::laws::check(|| ClippedSweep::<f64>::new(1e9)).unwrap();
    }

    /// Against the built-in sweep on the same window: the same direction, the norm clipped to
    /// `max_norm`, and unchanged when it is already below.
    #[test]
    fn clips_the_total_norm_and_keeps_the_direction() {
        let config = Config::default();
        let ids: Vec<u32> = (0..2 * 3 * 4).map(|i| (i * 7 % 20) as u32).collect();
        let window = Window { steps: 3, inputs: &ids[..12], targets: &ids[12..] };
        let grads_with = |max_norm: Option<f64>| {
            let builder = Model::<f32>::builder(&config).unwrap();
            match max_norm {
                Some(max_norm) => {
                    let mut m = builder.backward(ClippedSweep::new(max_norm)).build(20, 4, 3).unwrap();
                    m.train_window(window, &Ctx::seq()).unwrap();
                    m.tape.grads.as_slice().to_vec()
                }
                None => {
                    let mut m = builder.build(20, 4, 3).unwrap();
                    m.train_window(window, &Ctx::seq()).unwrap();
                    m.tape.grads.as_slice().to_vec()
                }
            }
        };
        let norm = |g: &[f32]| g.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        let exact = grads_with(None);
        let full = norm(&exact);
        assert!(full > 0.01, "{full}");
        let clipped = grads_with(Some(full / 4.0));
        assert!((norm(&clipped) - full / 4.0).abs() < 1e-4 * full, "{} vs {}", norm(&clipped), full / 4.0);
        for (c, e) in clipped.iter().zip(&exact) {
            assert!((c * 4.0 - e).abs() <= 1e-5 * (1.0 + e.abs()));
        }
        assert_eq!(grads_with(Some(full * 2.0)), exact, "below max_norm nothing changes");
    }
}
