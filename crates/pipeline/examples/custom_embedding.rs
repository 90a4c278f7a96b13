//! Your own embed box: a scaled-uniform embedding table, trained through the same run as the
//! built-ins.
//!
//! The built-in table is PyTorch's `nn.Embedding`: rows drawn from N(0, 1), looked up as they are.
//! `ScaledEmbedding` draws its rows from U(−√(3/E), √(3/E)) (variance 1/E per component) and
//! multiplies what it looks up by √E, the Transformer's convention: the vectors it hands the
//! forward box have the same scale, but every gradient step moves a row √E times less relative
//! to its size. It keeps PyTorch's parameter name, `embedding.weight`.
//!
//! Two pieces: `ScaledGather`, an op of the tape (forward: `out[r] = s·W[ids[r]]`; its
//! vector–Jacobian product: `dW[ids[r]] += s·dout[r]`, in position order), and the box
//! `ScaledEmbedding`, a [`Stage`] with `Input<'a> = &'a [u32]` (the window's ids) and
//! `Output = Tape<T>`, which makes it a `stagewise_embedding::Embedding<T>`.
//!
//! ```sh
//! cargo run --release -p stagewise-pipeline --example custom_embedding -- --max-windows 50 --out runs/scaled
//! ```

use clap::Parser;
use stagewise_core::{
    Activations, Ctx, Dims, Error, Float, Grads, Op, Par, ParamId, Params, Result, Rng, SlotId, Stage, Tape,
};
use stagewise_pipeline::Model;
use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command};
use std::process::ExitCode;

#[cfg(test)]
mod common;

/// `out[r] = scale · W[ids[r]]`: `W` `[V, E]`, the window's ids `[N]`, `out` `[N, E]`.
#[derive(Clone, Debug)]
pub struct ScaledGather {
    weight: ParamId,
    out: SlotId,
    dim: usize,
    scale: f64,
}

impl<T: Float> Op<T> for ScaledGather {
    fn name(&self) -> &str {
        "embedding"
    }

    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, _par: Par) {
        let (rows, e, s) = (acts.rows(), self.dim, T::from_f64(self.scale));
        let w = params.get(self.weight);
        let (ids, out) = acts.ids_and_slot_mut(self.out);
        for (dst, &id) in out.value[..rows * e].chunks_exact_mut(e).zip(ids) {
            for (d, &x) in dst.iter_mut().zip(&w[id as usize * e..(id as usize + 1) * e]) {
                *d = s * x;
            }
        }
    }

    /// Scatter-add in position order, so the sum is the same at any thread count.
    fn vjp(&self, _params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, _par: Par) {
        let (rows, e, s) = (acts.rows(), self.dim, T::from_f64(self.scale));
        let dw = grads.get_mut(self.weight);
        let dout = &acts.slot(self.out).grad[..rows * e];
        for (g, &id) in dout.chunks_exact(e).zip(&acts.ids[..rows]) {
            for (d, &x) in dw[id as usize * e..(id as usize + 1) * e].iter_mut().zip(g) {
                *d += s * x;
            }
        }
    }
}

/// The embed box "scaled_uniform" (see the module docs); generic over the float type, so the
/// embed box's laws can be checked in `f64`.
#[derive(Clone, Debug)]
pub struct ScaledEmbedding<T> {
    dim: usize,
    seed: u64,
    vocab: usize,
    op: usize,
    _float: std::marker::PhantomData<fn() -> T>,
}

impl<T> ScaledEmbedding<T> {
    /// A table of width `dim`, initialised from the run seed's `"embedding"` stream.
    pub fn new(dim: usize, seed: u64) -> Self {
        ScaledEmbedding { dim, seed, vocab: 0, op: usize::MAX, _float: std::marker::PhantomData }
    }
}

impl<T: Float> Stage for ScaledEmbedding<T> {
    type Input<'a> = &'a [u32];
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "scaled_uniform"
    }

    /// Declares `embedding.weight` `[V, E]` (drawn from U(−√(3/E), √(3/E))), the output slot
    /// `embedding.out` `[T·B, E]` and the op, and leaves that slot as the tape's output.
    fn prepare(&mut self, dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::config("embedding.dim", "must be at least 1"));
        }
        self.vocab = dims.vocab;
        let weight = tape.params.declare("embedding.weight", &[dims.vocab, self.dim])?;
        let bound = (3.0 / self.dim as f64).sqrt();
        let mut rng = Rng::stream(self.seed, "embedding");
        for w in tape.params.get_mut(weight) {
            *w = T::from_f64(rng.uniform_in(-bound, bound));
        }
        let out = tape.acts.declare_rows("embedding.out", self.dim, true)?;
        let scale = (self.dim as f64).sqrt();
        self.op = tape.push(Box::new(ScaledGather { weight, out, dim: self.dim, scale }));
        tape.set_output(out);
        Ok(())
    }

    /// Stores the window's ids in the tape (where the op reads them) and runs the op.
    fn run(&self, ids: &[u32], tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        let rows = tape.acts.rows();
        if ids.len() != rows {
            return Err(Error::shape("embedding input ids", rows, ids.len()));
        }
        if let Some(pos) = ids.iter().position(|&id| id as usize >= self.vocab) {
            return Err(Error::data(
                "embedding",
                format!("id {} at position {pos} is outside the vocabulary of {}", ids[pos], self.vocab),
            ));
        }
        tape.acts.ids[..rows].copy_from_slice(ids);
        tape.forward_range(self.op..self.op + 1, cx.par);
        Ok(())
    }
}

/// The flags of `cargo xtask train`.
#[derive(Parser)]
#[command(about = "Train with a scaled-uniform embedding (a user-defined embed box).")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
}

fn run(args: &Args) -> Result<()> {
    train_command(&args.train, |config| {
        let table = ScaledEmbedding::<f32>::new(config.embedding.dim(), config.train.seed);
        Ok(Model::<f32>::builder(config)?.embedding(table))
    })
    .map(|_| ())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    exit_code(run(&Args::parse()).map(|()| true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_testkit::check_tape_gradients;

    #[test]
    fn trains_through_the_common_run() {
        let scratch = common::Scratch::new("embedding");
        run(&scratch.args(6, Args::parse_from)).unwrap();
        scratch.check_run(2, ["scaled_uniform", "lstm", "cross_entropy", "reverse", "adam"]);
    }

    /// The embed box's laws (`stagewise_embedding::laws`), which the built-in table passes too;
    /// not the plain table's (its rows are scaled by √E).
    #[test]
    fn keeps_the_embed_box_s_laws() {
        stagewise_embedding::laws::check(|| ScaledEmbedding::<f64>::new(4, 9)).unwrap();
        stagewise_embedding::laws::check(|| ScaledEmbedding::<f64>::new(1, 2)).unwrap();
        let err =
            stagewise_embedding::laws::check_plain_table(|| ScaledEmbedding::<f64>::new(4, 9)).unwrap_err();
        assert!(err.contains("not the table's row"), "{err}");
    }

    #[test]
    fn lookup_is_scaled_and_the_gradient_matches_finite_differences() {
        let (v, e, b, t) = (7, 4, 3, 2);
        let mut tape = Tape::<f64>::new(b, t);
        let mut table = ScaledEmbedding::<f64>::new(e, 9);
        table.prepare(&Dims { vocab: v, batch: b, seq_len: t, params: 0 }, &mut tape).unwrap();
        tape.finish();
        let ids: Vec<u32> = (0..b * t).map(|i| (i * 5 % v) as u32).collect();
        table.run(&ids, &mut tape, &Ctx::seq()).unwrap();
        let (w, out) = (tape.params.as_slice().to_vec(), tape.output().unwrap());
        let bound = (3.0 / e as f64).sqrt();
        assert!(w.iter().all(|x| x.abs() <= bound));
        for (r, &id) in ids.iter().enumerate() {
            for k in 0..e {
                let want = 2.0 * w[id as usize * e + k];
                assert!((tape.acts.slot(out).value[r * e + k] - want).abs() < 1e-15);
            }
        }
        let report = check_tape_gradients(&mut tape, &[], out, 4, 3, 6);
        assert!(report.max_rel_err < 1e-6, "{}", report.worst);
        let err = table.run(&[9; 6], &mut tape, &Ctx::seq()).unwrap_err().to_string();
        assert!(err.contains("id 9 at position 0"), "{err}");
    }
}
