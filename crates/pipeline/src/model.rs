//! The cycle: `embed -> forward -> loss -> backward -> update`, one window at a time.
//!
//! [`Model`] is generic over every box (the compile-time face: plug in your own type) with the
//! config-built enums as defaults (the run-time face), like HF tokenizers' `TokenizerImpl` /
//! `Tokenizer`. [`Model::builder`] starts from a config's boxes and lets any of them be replaced
//! by your own type; everything that drives a model (training, evaluation, generation,
//! checkpoints) takes any `Model<T, E, F, L, B, O>`. All buffers are sized when the model is
//! built; a cycle allocates nothing.

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
    pub loss_out: LossOutput,
    /// The optimizer's moments and step count.
    pub opt_state: OptimizerState<T>,
    /// The factor on the optimizer's learning rate for the next training step, passed to it as
    /// [`Update::lr_factor`]: 1.0 (the optimizer's own rate) unless the run sets it from its
    /// learning-rate schedule before each step.
    pub lr_factor: f64,
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
    ///
    /// Fails with the box's own error if a box refuses `dims`, or if the forward box's output
    /// is not one score per vocabulary id.
    pub fn new(
        mut dims: Dims,
        mut embedding: E,
        mut forward: F,
        mut loss: L,
        mut backward: B,
        mut optimizer: O,
    ) -> Result<Self> {
        if dims.vocab == 0 || dims.batch == 0 || dims.seq_len == 0 {
            return Err(Error::shape("model dims (vocabulary, batch, window)", "all at least 1", dims));
        }
        let mut tape = Tape::try_new(dims.batch, dims.seq_len)?;
        embedding.prepare(&dims, &mut tape)?;
        forward.prepare(&dims, &mut tape)?;
        tape.try_finish()?;
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
            lr_factor: 1.0,
            clock: StageClock::default(),
        })
    }

    /// The names of the five boxes (`"table"`, `"lstm"`, `"cross_entropy"`, `"reverse"`,
    /// `"adam"` for the seed), in cycle order: what a checkpoint records about how it was made.
    pub fn stage_names(&self) -> [String; 5] {
        [
            self.embedding.name().to_owned(),
            self.forward.name().to_owned(),
            self.loss.name().to_owned(),
            self.backward.name().to_owned(),
            self.optimizer.name().to_owned(),
        ]
    }

    /// The logits of the last [`Model::eval_window`] or [`Model::predict`], `[rows, V]`. (A
    /// training step's loss may use the logits buffer as scratch.)
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
        let out = self.tape.output().ok_or_else(|| Error::config("forward", "no output slot"))?;
        let logits = self.tape.acts.slot_mut(out);
        self.loss.run(LossInput { logits, targets: w.targets }, &mut self.loss_out, cx)?;
        self.clock.lap(2, started);
        Ok(())
    }

    /// One training cycle on one window: embed, forward, loss, backward, update (at the learning
    /// rate times [`Model::lr_factor`]); then carries the recurrent state to the next window,
    /// detached. Allocates nothing.
    pub fn train_window(&mut self, w: Window<'_>, cx: &Ctx) -> Result<()> {
        let cx = Ctx { mode: Mode::Train, step: self.opt_state.step, ..*cx };
        let mut t = Instant::now();
        self.forward_loss(w, &cx, &mut t)?;
        // The loss left dL/dlogits in the logits slot's gradient: the backward box starts there.
        let out = self.tape.output().ok_or_else(|| Error::config("forward", "no output slot"))?;
        self.backward.run(out, &mut self.tape, &cx)?;
        self.clock.lap(3, &mut t);
        let update =
            Update { params: &mut self.tape.params, grads: &self.tape.grads, lr_factor: self.lr_factor };
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
    /// The config's boxes, not yet built: replace any of them with your own type, then
    /// [`ModelBuilder::build`].
    ///
    /// ```
    /// # use stagewise_pipeline::{Config, Model};
    /// let config = Config::default();
    /// let model = Model::<f32>::builder(&config)?.build(50, 2, 4)?;
    /// assert_eq!(model.stage_names(), ["table", "lstm", "cross_entropy", "reverse", "adam"]);
    /// # Ok::<(), stagewise_core::Error>(())
    /// ```
    ///
    /// Fails on a head tied to the embedding table (`embedding.tied`) whose width differs from the
    /// last layer's (`forward.hidden` must equal `embedding.dim`), naming `embedding.tied`.
    pub fn builder(config: &Config) -> Result<ModelBuilder<T>> {
        let seed = config.train.seed;
        let tied = config.embedding.tied();
        let (dim, hidden) = (config.embedding.dim(), config.forward.hidden());
        if tied && dim != hidden {
            return Err(Error::config(
                "embedding.tied",
                format!(
                    "the head's weight is the embedding table, so forward.hidden ({hidden}) must equal embedding.dim ({dim})"
                ),
            ));
        }
        Ok(ModelBuilder {
            embedding: config.embedding.build(seed),
            forward: ForwardImpl::from_config(&config.forward, tied, seed)?,
            loss: config.loss.build(),
            backward: config.backward.build(),
            optimizer: config.optimizer.build(),
            from_config: [true; 5],
            _float: std::marker::PhantomData,
        })
    }

    /// Builds the config's boxes for a vocabulary of `vocab` ids, windows of `batch x seq_len`.
    pub fn from_config(config: &Config, vocab: usize, batch: usize, seq_len: usize) -> Result<Self> {
        Self::builder(config)?.build(vocab, batch, seq_len)
    }
}

/// A model's five boxes before they are prepared: the config's built-ins, any of which can be
/// replaced by another type implementing the same box (`.optimizer(MySgd { .. })`).
///
/// Each replacing method changes one type parameter, so the model that comes out is as
/// statically typed as one written by hand, and a user's type gets everything a built-in gets.
#[derive(Clone, Debug)]
pub struct ModelBuilder<
    T: Float,
    E = EmbeddingImpl<T>,
    F = ForwardImpl<T>,
    L = LossImpl<T>,
    B = BackwardImpl<T>,
    O = OptimizerImpl<T>,
> {
    embedding: E,
    forward: F,
    loss: L,
    backward: B,
    optimizer: O,
    /// Which boxes are still the config's built-ins (embed, forward, loss, backward, update).
    from_config: [bool; 5],
    _float: std::marker::PhantomData<fn() -> T>,
}

impl<T: Float, E, F, L, B, O> ModelBuilder<T, E, F, L, B, O> {
    /// Which of the five boxes (embed, forward, loss, backward, update) are still the config's
    /// built-ins, so that the config describes their sizes (the run's memory estimate counts
    /// only those).
    pub fn config_boxes(&self) -> [bool; 5] {
        self.from_config
    }

    /// Replaces the embed box.
    pub fn embedding<E2: Embedding<T>>(self, embedding: E2) -> ModelBuilder<T, E2, F, L, B, O> {
        let ModelBuilder { forward, loss, backward, optimizer, mut from_config, _float, .. } = self;
        from_config[0] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, _float }
    }

    /// Replaces the forward box.
    pub fn forward<F2: Forward<T>>(self, forward: F2) -> ModelBuilder<T, E, F2, L, B, O> {
        let ModelBuilder { embedding, loss, backward, optimizer, mut from_config, _float, .. } = self;
        from_config[1] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, _float }
    }

    /// Replaces the loss box.
    pub fn loss<L2: Loss<T>>(self, loss: L2) -> ModelBuilder<T, E, F, L2, B, O> {
        let ModelBuilder { embedding, forward, backward, optimizer, mut from_config, _float, .. } = self;
        from_config[2] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, _float }
    }

    /// Replaces the backward box.
    pub fn backward<B2: Backward<T>>(self, backward: B2) -> ModelBuilder<T, E, F, L, B2, O> {
        let ModelBuilder { embedding, forward, loss, optimizer, mut from_config, _float, .. } = self;
        from_config[3] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, _float }
    }

    /// Replaces the update box.
    pub fn optimizer<O2: Optimizer<T>>(self, optimizer: O2) -> ModelBuilder<T, E, F, L, B, O2> {
        let ModelBuilder { embedding, forward, loss, backward, mut from_config, _float, .. } = self;
        from_config[4] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, _float }
    }
}

impl<T, E, F, L, B, O> ModelBuilder<T, E, F, L, B, O>
where
    T: Float,
    E: Embedding<T>,
    F: Forward<T>,
    L: Loss<T>,
    B: Backward<T>,
    O: Optimizer<T>,
{
    /// Prepares every box for a vocabulary of `vocab` ids and windows of `batch` streams of up to
    /// `seq_len` steps (see [`Model::new`]).
    pub fn build(self, vocab: usize, batch: usize, seq_len: usize) -> Result<Model<T, E, F, L, B, O>> {
        let dims = Dims { vocab, batch, seq_len, params: 0 };
        Model::new(dims, self.embedding, self.forward, self.loss, self.backward, self.optimizer)
    }
}
