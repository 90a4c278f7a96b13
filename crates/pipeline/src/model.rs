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
    /// A classifier's batch of padded texts, time-major (see [`Model::set_texts`]); empty for a
    /// language model.
    text_ids: Vec<u32>,
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
    pub fn new(dims: Dims, embedding: E, forward: F, loss: L, backward: B, optimizer: O) -> Result<Self> {
        Self::with_outputs(dims, dims.vocab, embedding, forward, loss, backward, optimizer)
    }

    /// Like [`Model::new`], for a forward box whose output is `outputs` scores per row rather
    /// than one per vocabulary id: a classifier's head scores classes.
    pub fn with_outputs(
        mut dims: Dims,
        outputs: usize,
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
        if width != outputs {
            let what = if outputs == dims.vocab { "vocabulary" } else { "classes" };
            return Err(Error::shape(format!("forward output width ({what})"), outputs, width));
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
            text_ids: Vec::new(),
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
            Some(out) => {
                let slot = self.tape.acts.slot(out);
                &slot.value[..self.tape.acts.rows() * slot.width]
            }
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
        if cx.mode == Mode::Train {
            // A classifier's head maps all B streams, but a short last batch has fewer targets:
            // the rows without one get no gradient. (A language model's targets cover every row.)
            let batch = self.tape.acts.batch();
            let logits = self.tape.acts.slot_mut(out);
            let end = (batch * logits.width).min(logits.grad.len());
            let scored = w.targets.len() * logits.width;
            if scored < end {
                logits.grad[scored..end].fill(T::from_f64(0.0));
            }
        }
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

    /// Lays out a classifier's batch: up to `B` texts of ids (each at most the model's window
    /// long) as one window, time-major, as long as the longest text; each shorter text is padded
    /// with [`PAD_ID`] after its end, and [`Activations::lengths`](stagewise_core::Activations)
    /// records each text's length (0 for the streams past the last text). Returns the window's
    /// steps. Allocates only on the first call.
    pub fn set_texts(&mut self, texts: &[&[u32]]) -> Result<usize> {
        let (batch, max) = (self.dims.batch, self.dims.seq_len);
        let steps = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        if texts.is_empty() || texts.len() > batch || steps > max || texts.iter().any(|t| t.is_empty()) {
            return Err(Error::shape(
                "batch of texts (texts, longest)",
                format!("1..={batch} texts of 1..={max} ids"),
                (texts.len(), steps),
            ));
        }
        if self.text_ids.len() < self.dims.max_rows() {
            self.text_ids.resize(self.dims.max_rows(), PAD_ID);
        }
        self.text_ids[..steps * batch].fill(PAD_ID);
        for (b, text) in texts.iter().enumerate() {
            for (t, &id) in text.iter().enumerate() {
                self.text_ids[t * batch + b] = id;
            }
        }
        let lengths = &mut self.tape.acts.lengths;
        lengths.fill(0);
        lengths.iter_mut().zip(texts).for_each(|(l, t)| *l = t.len());
        Ok(steps)
    }

    /// One training cycle on a classifier's batch: `texts` laid out by [`Model::set_texts`], one
    /// class id per text in `labels`, from a zero state.
    pub fn train_texts(&mut self, texts: &[&[u32]], labels: &[u32], cx: &Ctx) -> Result<()> {
        self.texts_window(texts, labels, |m, w| m.train_window(w, cx))
    }

    /// Forward and loss on a classifier's batch (no gradients); the logits of text `i` are then
    /// row `i` of [`Model::class_scores`].
    pub fn eval_texts(&mut self, texts: &[&[u32]], labels: &[u32], cx: &Ctx) -> Result<()> {
        self.texts_window(texts, labels, |m, w| m.eval_window(w, cx))
    }

    /// A classifier's scores after [`Model::eval_texts`] or [`Model::predict_texts`]: `[B, C]`,
    /// row `i` for text `i`.
    pub fn class_scores(&self) -> &[T] {
        match self.tape.output() {
            Some(out) => {
                let slot = self.tape.acts.slot(out);
                &slot.value[..self.dims.batch * slot.width]
            }
            None => &[],
        }
    }

    /// Embed and forward only on a classifier's batch; returns [`Model::class_scores`].
    pub fn predict_texts(&mut self, texts: &[&[u32]], cx: &Ctx) -> Result<&[T]> {
        let cx = Ctx { mode: Mode::Eval, ..*cx };
        let steps = self.set_texts(texts)?;
        self.reset_state();
        let ids = std::mem::take(&mut self.text_ids);
        let result = self.tape.set_steps(steps).and_then(|()| {
            self.embedding.run(&ids[..steps * self.dims.batch], &mut self.tape, &cx)?;
            self.forward.run((), &mut self.tape, &cx)
        });
        self.text_ids = ids;
        result?;
        Ok(self.class_scores())
    }

    fn texts_window(
        &mut self,
        texts: &[&[u32]],
        labels: &[u32],
        run: impl FnOnce(&mut Self, Window<'_>) -> Result<()>,
    ) -> Result<()> {
        if labels.len() != texts.len() {
            return Err(Error::shape("labels of a batch of texts", texts.len(), labels.len()));
        }
        let steps = self.set_texts(texts)?;
        self.reset_state();
        let ids = std::mem::take(&mut self.text_ids);
        let w = Window { steps, inputs: &ids[..steps * self.dims.batch], targets: labels };
        let result = run(self, w);
        self.text_ids = ids;
        result
    }
}

/// The id a classifier's batch pads its shorter texts with. Any id would do: padding never
/// reaches a text's pooled vector or its gradients (see `stagewise_forward::PoolOp`).
pub const PAD_ID: u32 = 0;

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
            classes: None,
            _float: std::marker::PhantomData,
        })
    }

    /// The config's boxes for a classifier of `classes` classes (the `classify` task): the
    /// forward box pools each text's states (`forward.pooling`) and its head scores the classes.
    /// Then [`ModelBuilder::build`] with `seq_len` the longest text (`data.max_tokens`).
    pub fn classifier_builder(config: &Config, classes: usize) -> Result<ModelBuilder<T>> {
        if config.embedding.tied() {
            return Err(Error::config(
                "embedding.tied",
                "a classifier's head scores classes, not the vocabulary",
            ));
        }
        let seed = config.train.seed;
        Ok(ModelBuilder {
            embedding: config.embedding.build(seed),
            forward: ForwardImpl::classifier(&config.forward, classes, seed)?,
            loss: config.loss.build(),
            backward: config.backward.build(),
            optimizer: config.optimizer.build(),
            from_config: [true; 5],
            classes: Some(classes),
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
    /// The forward box's output width when it is not the vocabulary: a classifier's classes.
    classes: Option<usize>,
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
        let ModelBuilder { forward, loss, backward, optimizer, mut from_config, classes, _float, .. } = self;
        from_config[0] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, classes, _float }
    }

    /// Replaces the forward box.
    pub fn forward<F2: Forward<T>>(self, forward: F2) -> ModelBuilder<T, E, F2, L, B, O> {
        let ModelBuilder { embedding, loss, backward, optimizer, mut from_config, classes, _float, .. } =
            self;
        from_config[1] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, classes, _float }
    }

    /// Replaces the loss box.
    pub fn loss<L2: Loss<T>>(self, loss: L2) -> ModelBuilder<T, E, F, L2, B, O> {
        let ModelBuilder {
            embedding, forward, backward, optimizer, mut from_config, classes, _float, ..
        } = self;
        from_config[2] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, classes, _float }
    }

    /// Replaces the backward box.
    pub fn backward<B2: Backward<T>>(self, backward: B2) -> ModelBuilder<T, E, F, L, B2, O> {
        let ModelBuilder { embedding, forward, loss, optimizer, mut from_config, classes, _float, .. } = self;
        from_config[3] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, classes, _float }
    }

    /// Replaces the update box.
    pub fn optimizer<O2: Optimizer<T>>(self, optimizer: O2) -> ModelBuilder<T, E, F, L, B, O2> {
        let ModelBuilder { embedding, forward, loss, backward, mut from_config, classes, _float, .. } = self;
        from_config[4] = false;
        ModelBuilder { embedding, forward, loss, backward, optimizer, from_config, classes, _float }
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
        let outputs = self.classes.unwrap_or(vocab);
        Model::with_outputs(
            dims,
            outputs,
            self.embedding,
            self.forward,
            self.loss,
            self.backward,
            self.optimizer,
        )
    }
}
