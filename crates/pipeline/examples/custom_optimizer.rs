//! A user-defined box plugged into the pipeline: plain SGD (`p ← p − lr·g`) as the update stage.
//!
//! `Sgd` is an ordinary type implementing [`Stage`] with `Input<'a> = Update<'a, f32>` and
//! `Output = OptimizerState<f32>`, which makes it a `stagewise_optimizer::Optimizer<f32>` through
//! that crate's blanket impl. It takes the place of the config-built Adam in
//! [`Model::new`]; every other box is built from the (default) config. The program trains the model
//! for a few hundred windows on a small synthetic, repetitive text made here, and compares the
//! test loss before and after.
//!
//! ```sh
//! cargo run -p stagewise-pipeline --release --example custom_optimizer   # exits 1 if the loss did not fall
//! cargo test -p stagewise-pipeline --example custom_optimizer            # the same check as a #[test]
//! ```
//!
//! See docs/write-your-own-stage.md.

use stagewise_backward::BackwardImpl;
use stagewise_core::{Ctx, Dims, Error, Result, Rng, Stage};
use stagewise_embedding::{EmbeddingConfig, EmbeddingImpl};
use stagewise_forward::{ForwardConfig, ForwardImpl};
use stagewise_loss::LossImpl;
use stagewise_optimizer::{OptimizerState, Update};
use stagewise_pipeline::data::{Batched, split_tokens};
use stagewise_pipeline::{Config, Model};
use stagewise_tokenizer::Tokenizer;
use stagewise_vectorizer::Vectorizer;
use std::process::ExitCode;

/// Plain stochastic gradient descent over the whole parameter arena: `p ← p − lr·g`.
///
/// It keeps no moments: of the [`OptimizerState`] the pipeline hands it, only `step` is used.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
}

impl Stage for Sgd {
    type Input<'a> = Update<'a, f32>;
    type Output = OptimizerState<f32>;

    fn name(&self) -> &str {
        "sgd"
    }

    /// Checks the learning rate and that the state matches the model's parameter count. The
    /// state's moment buffers are sized by `Model::new` (they are part of the box's `Output`
    /// type); SGD leaves them untouched.
    fn prepare(&mut self, dims: &Dims, state: &mut OptimizerState<f32>) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config("optimizer.lr", format!("{} is out of range", self.lr)));
        }
        if state.m.as_slice().len() != dims.params {
            return Err(Error::shape("optimizer state", dims.params, state.m.as_slice().len()));
        }
        Ok(())
    }

    /// One fused pass over the arena; allocates nothing.
    fn run(&self, up: Update<'_, f32>, state: &mut OptimizerState<f32>, _cx: &Ctx) -> Result<()> {
        let grads = up.grads.as_slice();
        let params = up.params.as_mut_slice();
        if params.len() != grads.len() {
            return Err(Error::shape("sgd arenas", params.len(), grads.len()));
        }
        for (p, &g) in params.iter_mut().zip(grads) {
            *p -= self.lr * g;
        }
        state.step += 1;
        Ok(())
    }
}

/// Compile-time proof that `Sgd` satisfies the update box's contract.
const _: () = {
    const fn is_optimizer<O: stagewise_optimizer::Optimizer<f32>>() {}
    is_optimizer::<Sgd>()
};

/// The model with every box from the config except the optimizer.
type SgdModel = Model<f32, EmbeddingImpl<f32>, ForwardImpl<f32>, LossImpl<f32>, BackwardImpl<f32>, Sgd>;

/// Parallel streams B and window length T of this small run.
const BATCH: usize = 8;
const BPTT: usize = 16;
/// Training windows (a few passes over the synthetic training split).
const WINDOWS: usize = 300;
/// How far (in nats per token) the test loss must fall for the run to count as learning.
const REQUIRED_DROP: f64 = 1.0;

/// `sentences` sentences of a tiny grammar, "the {cat|dog|bird} {sat on|ran to|looked at} the
/// {mat|door|tree} .", chosen with a seeded generator: repetitive, so a model can learn it, and
/// with 3·ln 3 / 7 ≈ 0.47 nats per token of irreducible uncertainty (three free choices per
/// seven-token sentence).
fn synthetic_text(sentences: usize, seed: u64) -> String {
    const SUBJECTS: [&str; 3] = ["cat", "dog", "bird"];
    const VERBS: [&str; 3] = ["sat on", "ran to", "looked at"];
    const OBJECTS: [&str; 3] = ["mat", "door", "tree"];
    let mut rng = Rng::new(seed);
    let mut pick = |words: &[&'static str; 3]| words[rng.below(3) as usize];
    let mut text = String::new();
    for _ in 0..sentences {
        let (s, v, o) = (pick(&SUBJECTS), pick(&VERBS), pick(&OBJECTS));
        text.push_str(&format!("The {s} {v} the {o} .\n"));
    }
    text
}

/// Mean NLL per target over the whole split, state zeroed first (the evaluation protocol).
fn test_loss(model: &mut SgdModel, split: &Batched) -> Result<f64> {
    let cx = Ctx::seq().eval();
    model.reset_state();
    let (mut nll, mut count) = (0.0, 0usize);
    for w in split.windows(BPTT) {
        model.eval_window(w, &cx)?;
        nll += model.loss_out.nll_sum;
        count += model.loss_out.count;
    }
    Ok(nll / count.max(1) as f64)
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    /// Vocabulary size V.
    vocab: usize,
    /// Training windows run.
    windows: usize,
    /// Test loss of the freshly initialised model.
    before: f64,
    /// Test loss after training.
    after: f64,
}

/// Builds the model around `Sgd`, trains it for `windows` windows and measures the test loss
/// before and after.
fn run(windows: usize) -> Result<Outcome> {
    // The default (seed) config with a smaller embedding and LSTM for this tiny vocabulary.
    let config = Config {
        embedding: EmbeddingConfig::Table { dim: 16 },
        forward: ForwardConfig::Lstm { hidden: 32 },
        ..Config::default()
    };
    let seed = config.train.seed;

    // text -> tokens -> (train, test) -> vocabulary fitted on train -> ids -> B streams.
    let text = synthetic_text(2_000, 7);
    let tokens = config.tokenizer.build()?.tokenize(&text)?;
    let (train, test) = split_tokens(&tokens, config.data.test_fraction);
    let vectorizer = config.vectorizer.fit(train)?;
    let train_split = Batched::new(&vectorizer.vectorize(train)?, BATCH, "train split")?;
    let test_split = Batched::new(&vectorizer.vectorize(test)?, BATCH, "test split")?;

    let dims = Dims {
        vocab: vectorizer.vocab_size(),
        embed: config.embedding.dim(),
        hidden: config.forward.hidden(),
        batch: BATCH,
        seq_len: BPTT,
        params: 0, // filled in by Model::new
    };
    let mut model: SgdModel = Model::new(
        dims,
        config.embedding.build(seed),
        ForwardImpl::from_config(&config.forward, seed)?,
        config.loss.build(),
        config.backward.build(),
        Sgd { lr: 1.0 },
    )?;

    let before = test_loss(&mut model, &test_split)?;
    let cx = Ctx::seq();
    let mut done = 0;
    while done < windows {
        // An epoch: state zeroed, then carried across windows (truncated BPTT).
        model.reset_state();
        for w in train_split.windows(BPTT).take(windows - done) {
            model.train_window(w, &cx)?;
            done += 1;
        }
    }
    let after = test_loss(&mut model, &test_split)?;
    Ok(Outcome { vocab: dims.vocab, windows: done, before, after })
}

/// `true` if the test loss fell by at least [`REQUIRED_DROP`].
fn learned(o: &Outcome) -> bool {
    o.after.is_finite() && o.after <= o.before - REQUIRED_DROP
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    match run(WINDOWS) {
        Ok(o) => {
            println!("optimizer: sgd (a user type), vocabulary {}, {} training windows", o.vocab, o.windows);
            println!("test loss before: {:.4}", o.before);
            println!("test loss after:  {:.4}", o.after);
            if learned(&o) {
                println!("ok: the loss fell by {:.4} nats per token", o.before - o.after);
                ExitCode::SUCCESS
            } else {
                eprintln!("FAILED: the loss did not fall by at least {REQUIRED_DROP} nats per token");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_learns() {
        let o = run(WINDOWS).unwrap();
        assert_eq!(o.windows, WINDOWS);
        assert!(learned(&o), "test loss {} -> {}", o.before, o.after);
    }

    #[test]
    fn sgd_step_is_p_minus_lr_g() {
        let mut params = stagewise_core::Params::<f32>::new();
        let id = params.declare("w", &[3]).unwrap();
        params.get_mut(id).copy_from_slice(&[1.0, -2.0, 0.5]);
        let mut grads = stagewise_core::Grads::zeros_with_layout(params.layout());
        grads.as_mut_slice().copy_from_slice(&[0.5, 1.0, -4.0]);
        let mut state = OptimizerState::new(params.layout());
        let mut sgd = Sgd { lr: 0.25 };
        let dims = Dims { vocab: 2, embed: 1, hidden: 1, batch: 1, seq_len: 1, params: 3 };
        sgd.prepare(&dims, &mut state).unwrap();
        sgd.run(Update { params: &mut params, grads: &grads }, &mut state, &Ctx::seq()).unwrap();
        assert_eq!(params.as_slice(), &[0.875, -2.25, 1.5]);
        assert_eq!(state.step, 1);
        assert!(Sgd { lr: 0.0 }.prepare(&dims, &mut state).is_err());
    }
}
