//! The cycle: `embed -> forward -> loss -> backward -> update`, one window at a time.
//!
//! [`Model`] is generic over every box (the compile-time face: plug in your own type) with the
//! config-built enums as defaults (the run-time face), like HF tokenizers' `TokenizerImpl` /
//! `Tokenizer`. All buffers are sized in [`Model::new`]; a cycle allocates nothing.

use crate::config::Config;
use crate::data::Window;
use stagewise_backward::{Backward, BackwardImpl};
use stagewise_core::{Ctx, Dims, Error, Float, Mode, Result, Tape};
use stagewise_embedding::{Embedding, EmbeddingImpl};
use stagewise_forward::{Forward, ForwardImpl};
use stagewise_loss::{Loss, LossImpl, LossInput, LossOutput};
use stagewise_optimizer::{Optimizer, OptimizerImpl, OptimizerState, Update};
use std::time::{Duration, Instant};

/// The boxes of one cycle, in order, for timing reports.
pub const CYCLE_STAGES: [&str; 5] = ["embed", "forward", "loss", "backward", "update"];

/// Wall time spent in each box of the cycle since the last [`StageClock::reset`].
#[derive(Clone, Copy, Debug, Default)]
pub struct StageClock {
    /// Seconds per box, indexed like [`CYCLE_STAGES`].
    pub spent: [Duration; 5],
}

impl StageClock {
    /// Clears the totals.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn lap(&mut self, stage: usize, since: &mut Instant) {
        let now = Instant::now();
        self.spent[stage] += now - *since;
        *since = now;
    }
}

/// A model's boxes and all their storage.
pub struct Model<
    T: Float,
    E = EmbeddingImpl<T>,
    F = ForwardImpl<T>,
    L = LossImpl<T>,
    B = BackwardImpl<T>,
    O = OptimizerImpl<T>,
> {
    /// Sizes everything was prepared for.
    pub dims: Dims,
    /// ids -> vectors.
    pub embedding: E,
    /// vectors -> logits.
    pub forward: F,
    /// logits -> loss and dlogits.
    pub loss: L,
    /// dlogits -> parameter gradients.
    pub backward: B,
    /// gradients -> parameters.
    pub optimizer: O,
    /// Parameters, gradients, activations and the schedule of ops.
    pub tape: Tape<T>,
    /// The loss box's output, reused every cycle.
    pub loss_out: LossOutput<T>,
    /// The optimizer's moments and step count.
    pub opt_state: OptimizerState<T>,
    /// Time per box.
    pub clock: StageClock,
}

impl<T, E, F, L, B, O> Model<T, E, F, L, B, O>
where
    T: Float,
    E: Embedding<T>,
    F: Forward<T>,
    L: Loss<T>,
    B: Backward<T>,
    O: Optimizer<T>,
{
    /// Prepares every box for `dims` (`dims.params` is filled in here). The only allocation.
    pub fn new(
        mut dims: Dims,
        mut embedding: E,
        mut forward: F,
        mut loss: L,
        mut backward: B,
        mut optimizer: O,
    ) -> Result<Self> {
        let mut tape = Tape::new(dims.batch, dims.seq_len);
        embedding.prepare(&dims, &mut tape)?;
        forward.prepare(&dims, &mut tape)?;
        tape.finish();
        dims.params = tape.params.layout().total();
        let out =
            tape.output().ok_or_else(|| Error::config("forward", "the forward stage declared no output"))?;
        let width = tape.acts.slot(out).width;
        if width != dims.vocab {
            return Err(Error::shape("forward output width (vocabulary)", dims.vocab, width));
        }
        let mut loss_out = LossOutput::default();
        loss.prepare(&dims, &mut loss_out)?;
        backward.prepare(&dims, &mut tape)?;
        let mut opt_state = OptimizerState::new(tape.params.layout());
        optimizer.prepare(&dims, &mut opt_state)?;
        Ok(Model {
            dims,
            embedding,
            forward,
            loss,
            backward,
            optimizer,
            tape,
            loss_out,
            opt_state,
            clock: StageClock::default(),
        })
    }

    /// The logits of the last [`Model::eval_window`] or [`Model::predict`], `[rows, V]`. (A
    /// training step's loss overwrites them with their gradient, which backward then consumes.)
    pub fn logits(&self) -> &[T] {
        match self.tape.output() {
            Some(out) => &self.tape.acts.slot(out).value[..self.tape.acts.rows() * self.dims.vocab],
            None => &[],
        }
    }

    /// Forward and loss for one window (shared by training and evaluation).
    fn forward_loss(&mut self, w: Window<'_>, cx: &Ctx, started: &mut Instant) -> Result<()> {
        self.tape.set_steps(w.steps)?;
        self.embedding.run(w.inputs, &mut self.tape, cx)?;
        self.clock.lap(0, started);
        self.forward.run((), &mut self.tape, cx)?;
        self.clock.lap(1, started);
        let rows = self.tape.acts.rows();
        let out = self.tape.output().ok_or_else(|| Error::config("forward", "no output slot"))?;
        let logits = &mut self.tape.acts.slot_mut(out).value[..rows * self.dims.vocab];
        self.loss.run(LossInput { logits, targets: w.targets }, &mut self.loss_out, cx)?;
        self.clock.lap(2, started);
        Ok(())
    }

    /// One training cycle on one window: embed, forward, loss, backward, update; then carries the
    /// recurrent state to the next window, detached. Allocates nothing.
    pub fn train_window(&mut self, w: Window<'_>, cx: &Ctx) -> Result<()> {
        let cx = Ctx { mode: Mode::Train, step: self.opt_state.step, ..*cx };
        let mut t = Instant::now();
        self.forward_loss(w, &cx, &mut t)?;
        // The loss wrote dL/dlogits over the logits. Hand that buffer to backward as the seed: it is
        // moved, not copied (`take` leaves an empty `Vec`, which allocates nothing), and backward
        // swaps it into the slot's gradient, handing back a buffer of the same size to restore.
        let out = self.tape.output().ok_or_else(|| Error::config("forward", "no output slot"))?;
        let mut seed = std::mem::take(&mut self.tape.acts.slot_mut(out).value);
        let swept = self.backward.run(&mut seed, &mut self.tape, &cx);
        self.tape.acts.slot_mut(out).value = seed;
        swept?;
        self.clock.lap(3, &mut t);
        let update = Update { params: &mut self.tape.params, grads: &self.tape.grads };
        self.optimizer.run(update, &mut self.opt_state, &cx)?;
        self.clock.lap(4, &mut t);
        self.tape.end_window();
        Ok(())
    }

    /// Forward and loss only (no gradients), then carries the state on.
    pub fn eval_window(&mut self, w: Window<'_>, cx: &Ctx) -> Result<()> {
        let cx = Ctx { mode: Mode::Eval, ..*cx };
        let mut t = Instant::now();
        self.forward_loss(w, &cx, &mut t)?;
        self.tape.end_window();
        Ok(())
    }

    /// Embed and forward only (no loss, no gradients), then carries the state on; returns the
    /// logits `[steps * batch, V]`. Used for generation.
    pub fn predict(&mut self, inputs: &[u32], cx: &Ctx) -> Result<&[T]> {
        let cx = Ctx { mode: Mode::Eval, ..*cx };
        self.tape.set_steps(inputs.len() / self.dims.batch.max(1))?;
        self.embedding.run(inputs, &mut self.tape, &cx)?;
        self.forward.run((), &mut self.tape, &cx)?;
        self.tape.end_window();
        Ok(self.logits())
    }

    /// Zeroes the recurrent state (start of an epoch or of an evaluation).
    pub fn reset_state(&mut self) {
        self.tape.reset_state();
    }
}

impl<T: Float> Model<T> {
    /// Builds the config's boxes for a vocabulary of `vocab` ids, windows of `batch x seq_len`.
    pub fn from_config(config: &Config, vocab: usize, batch: usize, seq_len: usize) -> Result<Self> {
        let seed = config.train.seed;
        let dims = Dims {
            vocab,
            embed: config.embedding.dim(),
            hidden: config.forward.hidden(),
            batch,
            seq_len,
            params: 0,
        };
        Model::new(
            dims,
            config.embedding.build(seed),
            ForwardImpl::from_config(&config.forward, seed)?,
            config.loss.build(),
            config.backward.build(),
            config.optimizer.build(),
        )
    }
}
