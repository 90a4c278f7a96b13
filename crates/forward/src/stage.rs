//! The built-in forward stage: a stack of recurrent layers (LSTM, GRU or Elman RNN), optional
//! dropout, and the Linear head, optionally tied to the embedding table.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use stagewise_core::{Ctx, Dims, Error, Float, Mode, Result, Rng, SlotId, Stage, Tape};

use crate::dropout::{DropoutAfter, DropoutOp, RecurrentOp, fill_mask, window_rng};
use crate::recurrent::layer_name;
use crate::{GruOp, LinearOp, LstmOp, PoolOp, Pooling, RecurrentKind, RnnTanhOp};

/// Name prefix of the Linear head's parameters (`fc.weight`, `fc.bias`) and its RNG stream.
pub const FC_PREFIX: &str = "fc";

/// The name of the embedding table a tied head uses as its weight.
pub const EMBEDDING_WEIGHT: &str = "embedding.weight";

/// What a [`RecurrentForward`] stage builds: the kind of cell, the widths and the extras.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentSpec {
    /// LSTM, GRU or Elman RNN.
    pub kind: RecurrentKind,
    /// Hidden width H of every layer.
    pub hidden: usize,
    /// Stacked layers (at least 1); layer `l` reads layer `l − 1`'s output.
    pub layers: usize,
    /// Dropout probability in `[0, 1)`, applied in training (see `dropout`): on the embedded
    /// input, after every layer (so between layers and before the head), as PyTorch's
    /// word-language-model does. `0` adds no op.
    pub dropout: f64,
    /// Whether the head's weight is the embedding table `embedding.weight` (`[V, E]`, so H must
    /// equal E): the head then declares only `fc.bias`.
    pub tied: bool,
}

impl RecurrentSpec {
    /// One layer of `hidden` units of `kind`, no dropout, an untied head.
    pub fn new(kind: RecurrentKind, hidden: usize) -> Self {
        RecurrentSpec { kind, hidden, layers: 1, dropout: 0.0, tied: false }
    }

    /// Checks the values, naming the config field (`forward.hidden`, `forward.layers`,
    /// `forward.dropout`).
    pub fn validate(&self) -> Result<()> {
        if self.hidden == 0 {
            return Err(Error::config("forward.hidden", "must be at least 1"));
        }
        if self.layers == 0 {
            return Err(Error::config("forward.layers", "must be at least 1"));
        }
        if !(self.dropout >= 0.0 && self.dropout < 1.0) {
            return Err(Error::config("forward.dropout", format!("{} is not in [0, 1)", self.dropout)));
        }
        Ok(())
    }
}

/// One layer of the stack as built (a copy of the op pushed onto the tape: sizes and handles).
#[derive(Clone, Debug)]
pub enum Layer {
    /// An LSTM layer.
    Lstm(LstmOp),
    /// A GRU layer.
    Gru(GruOp),
    /// An Elman RNN layer.
    RnnTanh(RnnTanhOp),
}

impl Layer {
    /// The layer's own output `h` `[T·B, H]` (before dropout, if any).
    pub fn output(&self) -> SlotId {
        match self {
            Layer::Lstm(op) => op.output(),
            Layer::Gru(op) => op.output(),
            Layer::RnnTanh(op) => op.output(),
        }
    }

    /// The slot holding the state `h` the next window starts from, `[B, H]`.
    pub fn h0(&self) -> SlotId {
        match self {
            Layer::Lstm(op) => op.slots().h0,
            Layer::Gru(op) => op.slots().h0,
            Layer::RnnTanh(op) => op.slots().h0,
        }
    }

    /// The layer as an op for the tape.
    fn boxed<T: Float>(&self) -> Box<dyn RecurrentOp<T>> {
        match self {
            Layer::Lstm(op) => Box::new(op.clone()),
            Layer::Gru(op) => Box::new(op.clone()),
            Layer::RnnTanh(op) => Box::new(op.clone()),
        }
    }
}

/// What `prepare` fixed: the schedule positions and the handles callers may need.
#[derive(Clone, Debug)]
struct Prepared {
    ops: (usize, usize),
    layers: Vec<Layer>,
    /// Every dropout mask, in the order the stage fills them (input, then layer by layer).
    masks: Vec<SlotId>,
    /// What the head reads: the last layer's output, after dropout if any.
    head_input: SlotId,
    fc_op: LinearOp,
}

/// The built-in forward box: embedded vectors `[T·B, E]` -> (dropout) -> `layers` recurrent
/// layers of kind `kind` (each followed by dropout) -> Linear -> logits `[T·B, V]`.
///
/// One stage for the three kinds (config `kind = "lstm" | "gru" | "rnn_tanh"`, which is also its
/// name). `prepare` declares and initialises the parameters (PyTorch's names: `lstm.weight_ih_l0`,
/// `gru.weight_hh_l1`, `rnn.bias_ih_l0`, ..., `fc.weight`, `fc.bias`; one RNG stream named after
/// the module for all layers, in PyTorch's parameter order) and pushes the ops; `run` fills the
/// dropout masks for the mode and replays the ops. The input is the tape itself: `prepare` reads
/// the previous stage's output slot from [`Tape::output`] and leaves the logits slot there.
#[derive(Debug)]
pub struct RecurrentForward<T> {
    spec: RecurrentSpec,
    seed: u64,
    /// The dropout stream's key (see [`window_rng`]), drawn once so that `run` allocates nothing.
    dropout_key: u64,
    prepared: Option<Prepared>,
    /// Whether every mask holds ones (the last `run` was an evaluation), so that a run of
    /// evaluation windows fills them once.
    masks_are_ones: AtomicBool,
    /// With a pooled head (a classifier): how texts are pooled and how many classes it scores.
    pooled: Option<(Pooling, usize)>,
    _float: PhantomData<fn() -> T>,
}

impl<T: Float> RecurrentForward<T> {
    /// A stage building `spec`, its parameters drawn from the streams of run seed `seed`. Fails on
    /// an invalid spec, naming the field.
    pub fn new(spec: RecurrentSpec, seed: u64) -> Result<Self> {
        spec.validate()?;
        let dropout_key = Rng::stream(seed, &format!("{}.dropout", spec.kind.prefix())).next_u64();
        Ok(RecurrentForward {
            spec,
            seed,
            dropout_key,
            prepared: None,
            masks_are_ones: AtomicBool::new(false),
            pooled: None,
            _float: PhantomData,
        })
    }

    /// A classifier building `spec`'s layers, then pooling over time (`pooling`, see
    /// [`PoolOp`]) and a Linear head to `classes` scores per text (`fc`, one row per stream), in
    /// place of the head over every position. Fails on an invalid spec, on a tied head (its
    /// weight would be the vocabulary's table) and on fewer than 2 classes, naming the field.
    pub fn classifier(spec: RecurrentSpec, pooling: Pooling, classes: usize, seed: u64) -> Result<Self> {
        if spec.tied {
            return Err(Error::config(
                "embedding.tied",
                "a classifier's head scores classes, not the vocabulary",
            ));
        }
        if classes < 2 {
            return Err(Error::data(
                "training labels",
                format!("{classes} class: a classifier needs at least 2"),
            ));
        }
        Ok(RecurrentForward { pooled: Some((pooling, classes)), ..Self::new(spec, seed)? })
    }

    /// The pooling and class count of a classifier's head ([`RecurrentForward::classifier`]).
    pub fn pooled(&self) -> Option<(Pooling, usize)> {
        self.pooled
    }

    /// One LSTM layer of `hidden` units and the head: the seed configuration's forward box.
    pub fn lstm(hidden: usize, seed: u64) -> Result<Self> {
        Self::new(RecurrentSpec::new(RecurrentKind::Lstm, hidden), seed)
    }

    /// What the stage builds.
    pub fn spec(&self) -> RecurrentSpec {
        self.spec
    }

    /// Hidden width H.
    pub fn hidden(&self) -> usize {
        self.spec.hidden
    }

    /// The layers as built, bottom first, once prepared.
    pub fn layers(&self) -> &[Layer] {
        self.prepared.as_ref().map_or(&[], |p| &p.layers)
    }

    /// The first LSTM layer's slots (state `h0`/`c0`, output `h`, ...), once prepared, if the kind
    /// is LSTM.
    pub fn lstm_slots(&self) -> Option<crate::LstmSlots> {
        match self.layers().first() {
            Some(Layer::Lstm(op)) => Some(op.slots()),
            _ => None,
        }
    }

    /// The dropout masks (input first, then after each layer), once prepared; empty without
    /// dropout.
    pub fn dropout_masks(&self) -> &[SlotId] {
        self.prepared.as_ref().map_or(&[], |p| &p.masks)
    }

    /// The slot the head reads (the last layer's output, after dropout if any), once prepared.
    pub fn head_input(&self) -> Option<SlotId> {
        self.prepared.as_ref().map(|p| p.head_input)
    }

    /// The head op (its parameters, input and output), once prepared.
    pub fn head(&self) -> Option<&LinearOp> {
        self.prepared.as_ref().map(|p| &p.fc_op)
    }

    /// The logits slot `[T·B, V]`, once prepared.
    pub fn logits(&self) -> Option<SlotId> {
        self.prepared.as_ref().map(|p| p.fc_op.output())
    }

    /// Positions of this stage's ops in the tape's schedule, once prepared.
    pub fn op_range(&self) -> Option<Range<usize>> {
        self.prepared.as_ref().map(|p| p.ops.0..p.ops.1)
    }

    /// Declares one layer reading `input`, drawing from `rng`.
    fn declare_layer(&self, tape: &mut Tape<T>, input: SlotId, layer: usize, rng: &mut Rng) -> Result<Layer> {
        let h = self.spec.hidden;
        Ok(match self.spec.kind {
            RecurrentKind::Lstm => Layer::Lstm(LstmOp::declare_layer(tape, input, h, layer, rng)?),
            RecurrentKind::Gru => Layer::Gru(GruOp::declare_layer(tape, input, h, layer, rng)?),
            RecurrentKind::RnnTanh => Layer::RnnTanh(RnnTanhOp::declare_layer(tape, input, h, layer, rng)?),
        })
    }

    /// The embedding table a tied head uses: `embedding.weight`, `[V, H]`; else an error naming
    /// `embedding.tied`.
    fn tied_weight(&self, dims: &Dims, tape: &Tape<T>) -> Result<stagewise_core::ParamId> {
        let layout = tape.params.layout();
        let id = layout.find(EMBEDDING_WEIGHT).ok_or_else(|| {
            Error::config(
                "embedding.tied",
                format!("needs the table embedding's {EMBEDDING_WEIGHT}, and there is none"),
            )
        })?;
        let shape = &layout.entry(id).shape;
        if shape[..] != [dims.vocab, self.spec.hidden] {
            let dim = shape.get(1).copied().unwrap_or(0);
            return Err(Error::config(
                "embedding.tied",
                format!(
                    "the head's weight is the embedding table, so forward.hidden ({}) must equal embedding.dim ({dim})",
                    self.spec.hidden
                ),
            ));
        }
        Ok(id)
    }
}

impl<T: Float> Stage for RecurrentForward<T> {
    type Input<'a>
        = ()
    where
        Self: 'a;
    type Output = Tape<T>;

    /// The config's kind: `lstm`, `gru` or `rnn_tanh`.
    fn name(&self) -> &str {
        self.spec.kind.name()
    }

    /// Reads the embedding's output slot from `tape.output()` (its width is the first layer's
    /// input width E), declares every layer's parameters and slots, the dropout masks and the
    /// head, pushes the ops (input dropout, the layers — each with its dropout —, the head) and
    /// sets the logits slot (width `dims.vocab`) as the tape's output. A classifier pushes the
    /// pooling op before its head, whose logits slot holds one row of `classes` scores per stream.
    ///
    /// Fails (without touching the tape) if no stage has set an output slot, if that slot is not
    /// laid out by rows, if the tape was built for another `dims.batch` / `dims.seq_len`, or if a
    /// tied head finds no `[V, H]` embedding table; and, touching it, if called twice (the
    /// parameter names would clash).
    fn prepare(&mut self, dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        let name = self.spec.kind.name();
        if self.prepared.is_some() {
            return Err(Error::config("forward", format!("stage \"{name}\" prepared twice")));
        }
        let input = tape.output().ok_or_else(|| {
            Error::shape("forward input (tape output)", "a slot written by the embedding stage", "none")
        })?;
        if tape.acts.slot(input).width == 0 {
            let name = tape.acts.slot(input).name.clone();
            return Err(Error::shape(
                format!("forward input {name}"),
                "a row slot of width E > 0",
                "a flat slot",
            ));
        }
        if tape.acts.batch() != dims.batch || tape.acts.max_steps() != dims.seq_len {
            return Err(Error::shape(
                "tape (batch, max steps)",
                (dims.batch, dims.seq_len),
                (tape.acts.batch(), tape.acts.max_steps()),
            ));
        }
        let tied = if self.spec.tied { Some(self.tied_weight(dims, tape)?) } else { None };

        let prefix = self.spec.kind.prefix();
        let dropout = self.spec.dropout > 0.0;
        let mut ops: Vec<Box<dyn stagewise_core::Op<T>>> = Vec::new();
        let mut masks = Vec::new();
        let mut x = input;
        if dropout {
            let op = DropoutOp::declare(tape, &format!("{prefix}.dropout_in"), x)?;
            x = op.output();
            masks.push(op.mask());
            ops.push(Box::new(op));
        }
        let mut rng = Rng::stream(self.seed, prefix);
        let mut layers = Vec::new();
        for l in 0..self.spec.layers {
            let layer = self.declare_layer(tape, x, l, &mut rng)?;
            x = layer.output();
            if dropout {
                let name = format!("{}.dropout", layer_name(prefix, l));
                let op = DropoutAfter::declare(tape, &name, layer.boxed())?;
                x = op.output();
                masks.push(op.mask());
                ops.push(Box::new(op));
            } else {
                ops.push(layer.boxed::<T>());
            }
            layers.push(layer);
        }
        let fc = match (tied, self.pooled) {
            (_, Some((pooling, classes))) => {
                let pool = PoolOp::declare(tape, &format!("{prefix}.pool"), x, pooling)?;
                let fc = LinearOp::declare_per_stream(tape, FC_PREFIX, pool.output(), classes, self.seed)?;
                ops.push(Box::new(pool));
                fc
            }
            (Some(weight), None) => LinearOp::declare_tied(tape, FC_PREFIX, x, weight, self.seed)?,
            (None, None) => LinearOp::declare(tape, FC_PREFIX, x, dims.vocab, self.seed)?,
        };
        let logits = fc.output();
        let fc_op = fc.clone();
        let first = tape.ops().len();
        for op in ops {
            tape.push(op);
        }
        let last = tape.push(Box::new(fc));
        tape.set_output(logits);
        self.masks_are_ones.store(false, Ordering::Relaxed);
        self.prepared = Some(Prepared { ops: (first, last + 1), layers, masks, head_input: x, fc_op });
        Ok(())
    }

    /// Fills the dropout masks for the mode (training: fresh random masks from the stage's
    /// dropout stream and `cx.step`; evaluation: ones, once), then runs the ops over the current
    /// window (`tape.acts.steps()` steps). On several threads the tape overlaps the head's product
    /// with the last layer's recurrence where that pays (see `stagewise_core::tape`).
    fn run(&self, _input: (), tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        let p = self.prepared.as_ref().ok_or_else(|| {
            Error::config("forward", format!("stage \"{}\" run before prepare", self.spec.kind.name()))
        })?;
        if !p.masks.is_empty() {
            match cx.mode {
                Mode::Train => {
                    let mut rng = window_rng(self.dropout_key, cx.step);
                    let rows = tape.acts.rows();
                    for &m in &p.masks {
                        let slot = tape.acts.slot_mut(m);
                        let n = rows * slot.width;
                        fill_mask(&mut slot.value[..n], self.spec.dropout, &mut rng);
                    }
                    self.masks_are_ones.store(false, Ordering::Relaxed);
                }
                Mode::Eval => {
                    if !self.masks_are_ones.load(Ordering::Relaxed) {
                        for &m in &p.masks {
                            tape.acts.slot_mut(m).value.fill(T::from_f64(1.0));
                        }
                        self.masks_are_ones.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        tape.forward_range(p.ops.0..p.ops.1, cx.par);
        Ok(())
    }
}
