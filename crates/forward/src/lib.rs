//! The forward box of Stagewise: embedded vectors -> logits.
//!
//! ```text
//! text -> tokenize -> vectorize -> embed -> [forward] -> loss -> backward -> update -> output
//! ```
//!
//! # Overview
//! The box is a [`Stage`] whose input and output are the model's [`Tape`]: `prepare` reads the
//! embedding's output slot (`[T·B, E]`), declares this box's parameters and activation buffers,
//! pushes its ops and leaves the logits slot (`[T·B, V]`) as the tape's output for the loss;
//! `run` replays those ops. The backward stage later walks the same ops in reverse, so this crate
//! never sees the backward stage and vice versa.
//!
//! - [`LstmOp`], [`GruOp`], [`RnnTanhOp`]: one recurrent layer over the whole window each
//!   (PyTorch's `nn.LSTM`, `nn.GRU`, `nn.RNN(nonlinearity="tanh")` semantics, names and layouts),
//!   forward and VJP side by side, carrying the state between windows detached (truncated BPTT)
//!   through [`Op::end_window`](stagewise_core::Op::end_window). Each is a recurrence the tape can
//!   overlap with the head ([`StepOp`](stagewise_core::StepOp)).
//! - [`LinearOp`]: the head `fc` (`y = x·Wᵀ + b`), one GEMM over every row; its weight may be the
//!   embedding table ([`LinearOp::declare_tied`]).
//! - [`PoolOp`]: pooling over time (`last`, `mean`, `max`) of a batch of padded texts, one
//!   vector per text, for a classifier's head ([`RecurrentForward::classifier`]).
//! - [`DropoutOp`], [`DropoutAfter`]: dropout of the embedded input and of a layer's output, with
//!   masks the stage fills for the mode (see the `dropout` module).
//! - [`RecurrentForward`]: the built-in stage (names `"lstm"`, `"gru"`, `"rnn_tanh"`) stacking
//!   layers of one kind, with dropout, and the head.
//! - [`Forward`]: the box's compile-time contract, for a user's own stage type.
//! - [`ForwardConfig`] / [`ForwardImpl`]: the run-time face, chosen by a TOML table
//!   `kind = "lstm"`, `hidden = 128`, `layers = 1`, `dropout = 0.0`.
//! - [`lstm_forward_naive`], [`gru_forward_naive`], [`rnn_tanh_forward_naive`], the cells
//!   [`lstm_cell_naive`], [`gru_cell_naive`], [`rnn_tanh_cell_naive`], and
//!   [`linear_forward_naive`]: plain-loop references the fast kernels are tested against (llm.c
//!   keeps `matmul_forward_naive` beside the fast one).
//! - `laws` (feature `testkit`): the box's laws as a check any implementation can be run through.
//!
//! Data layout (fixed by `stagewise-core`): rows are time-major, row `t·B + b` is step `t` of
//! stream `b`; weights are `(out, in)` row-major and enter faer GEMMs through free transposes.
//! All matrix products go through [`stagewise_kernels::matrix::gemm`] into slots declared at
//! prepare time; element-wise work is plain slice loops; `forward`/`vjp` allocate nothing.

mod cache;
mod dropout;
mod gru;
#[cfg(test)]
mod law_tests;
#[cfg(any(test, feature = "testkit"))]
pub mod laws;
mod linear;
mod lstm;
mod lstm_cell;
mod pool;
mod recurrent;
mod rnn;
mod stage;

pub use dropout::{DropoutAfter, DropoutOp, RecurrentOp, fill_mask, window_rng};
pub use gru::{GRU_PREFIX, GruOp, GruSlots, GruWeights, gru_cell_naive, gru_forward_naive};
pub use linear::{LinearOp, linear_forward_naive};
pub use lstm::{
    LSTM_PREFIX, LstmOp, LstmParams, LstmSlots, LstmWeights, lstm_cell_naive, lstm_forward_naive,
};
pub use pool::{PoolOp, Pooling, pool_forward_naive};
pub use recurrent::{RecurrentKind, RecurrentParams, RecurrentWeights};
pub use rnn::{RNN_PREFIX, RnnSlots, RnnTanhOp, RnnWeights, rnn_tanh_cell_naive, rnn_tanh_forward_naive};
pub use stage::{EMBEDDING_WEIGHT, FC_PREFIX, Layer, RecurrentForward, RecurrentSpec};

use stagewise_core::{Float, Result, Stage, Tape};

/// The forward box's contract: a stage that reads nothing but the tape (the embedding's output
/// slot, found with [`Tape::output`] at prepare time), appends its ops and leaves its logits slot
/// as the tape's output.
///
/// Any [`Stage`] with these input and output types is a `Forward` (blanket impl, like the other
/// boxes), so your own type drops into the pipeline in place of [`RecurrentForward`].
pub trait Forward<T: Float>: for<'a> Stage<Input<'a> = (), Output = Tape<T>> {}

impl<T: Float, S> Forward<T> for S where S: for<'a> Stage<Input<'a> = (), Output = Tape<T>> {}

/// The default hidden width, small enough to train on a laptop CPU in minutes.
pub const DEFAULT_HIDDEN: usize = 128;

fn default_hidden() -> usize {
    DEFAULT_HIDDEN
}

fn default_layers() -> usize {
    1
}

/// The forward box as chosen in a config file, e.g.
///
/// ```toml
/// kind = "gru"      # or "lstm", "rnn_tanh"
/// hidden = 128
/// layers = 1
/// dropout = 0.0
/// ```
///
/// Tagged by `kind` and strict about unknown keys, so a typo is an error naming the key. Every
/// kind has the same keys: a stack of `layers` recurrent layers of `hidden` units (PyTorch's
/// `nn.LSTM`, `nn.GRU`, `nn.RNN(nonlinearity="tanh")`) and the Linear head, with dropout `dropout`
/// as PyTorch's word-language-model places it (on the embedded input, between layers, before the
/// head; training only).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ForwardConfig {
    /// PyTorch's `nn.LSTM` layers (gates i, f, g, o) followed by a Linear head to the vocabulary.
    Lstm {
        /// Hidden width H (default 128).
        #[serde(default = "default_hidden")]
        hidden: usize,
        /// Stacked layers (default 1).
        #[serde(default = "default_layers")]
        layers: usize,
        /// Dropout probability in `[0, 1)` (default 0: none).
        #[serde(default)]
        dropout: f64,
        /// Task `classify` only: how a text's states become one vector for the head, `last`
        /// (the state at its last real token), `mean` or `max` over its tokens (default `last`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pooling: Option<Pooling>,
    },
    /// PyTorch's `nn.GRU` layers (gates r, z, n; `b_hn` inside the reset product) followed by a
    /// Linear head to the vocabulary.
    Gru {
        /// Hidden width H (default 128).
        #[serde(default = "default_hidden")]
        hidden: usize,
        /// Stacked layers (default 1).
        #[serde(default = "default_layers")]
        layers: usize,
        /// Dropout probability in `[0, 1)` (default 0: none).
        #[serde(default)]
        dropout: f64,
        /// Task `classify` only: how a text's states become one vector for the head, `last`
        /// (the state at its last real token), `mean` or `max` over its tokens (default `last`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pooling: Option<Pooling>,
    },
    /// PyTorch's `nn.RNN(nonlinearity="tanh")` (Elman) layers followed by a Linear head to the
    /// vocabulary.
    RnnTanh {
        /// Hidden width H (default 128).
        #[serde(default = "default_hidden")]
        hidden: usize,
        /// Stacked layers (default 1).
        #[serde(default = "default_layers")]
        layers: usize,
        /// Dropout probability in `[0, 1)` (default 0: none).
        #[serde(default)]
        dropout: f64,
        /// Task `classify` only: how a text's states become one vector for the head, `last`
        /// (the state at its last real token), `mean` or `max` over its tokens (default `last`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pooling: Option<Pooling>,
    },
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig::lstm(DEFAULT_HIDDEN)
    }
}

impl ForwardConfig {
    /// `kind` with `hidden` units, one layer, no dropout: the shape of the seed configuration.
    pub fn new(kind: RecurrentKind, hidden: usize) -> Self {
        Self::with(kind, hidden, 1, 0.0)
    }

    /// One LSTM layer of `hidden` units, no dropout (the seed configuration at `hidden = 128`).
    pub fn lstm(hidden: usize) -> Self {
        Self::new(RecurrentKind::Lstm, hidden)
    }

    /// Every setting at once.
    pub fn with(kind: RecurrentKind, hidden: usize, layers: usize, dropout: f64) -> Self {
        match kind {
            RecurrentKind::Lstm => ForwardConfig::Lstm { hidden, layers, dropout, pooling: None },
            RecurrentKind::Gru => ForwardConfig::Gru { hidden, layers, dropout, pooling: None },
            RecurrentKind::RnnTanh => ForwardConfig::RnnTanh { hidden, layers, dropout, pooling: None },
        }
    }

    /// The recurrent cell the config names.
    pub fn kind(&self) -> RecurrentKind {
        match self {
            ForwardConfig::Lstm { .. } => RecurrentKind::Lstm,
            ForwardConfig::Gru { .. } => RecurrentKind::Gru,
            ForwardConfig::RnnTanh { .. } => RecurrentKind::RnnTanh,
        }
    }

    /// `(hidden, layers, dropout)`, the same keys for every kind.
    fn settings(&self) -> (usize, usize, f64) {
        match *self {
            ForwardConfig::Lstm { hidden, layers, dropout, .. }
            | ForwardConfig::Gru { hidden, layers, dropout, .. }
            | ForwardConfig::RnnTanh { hidden, layers, dropout, .. } => (hidden, layers, dropout),
        }
    }

    /// The `pooling` key: set only for a classifier.
    pub fn pooling(&self) -> Option<Pooling> {
        match *self {
            ForwardConfig::Lstm { pooling, .. }
            | ForwardConfig::Gru { pooling, .. }
            | ForwardConfig::RnnTanh { pooling, .. } => pooling,
        }
    }

    /// This config with the `pooling` key set to `pooling`.
    pub fn with_pooling(mut self, to: Option<Pooling>) -> Self {
        match &mut self {
            ForwardConfig::Lstm { pooling, .. }
            | ForwardConfig::Gru { pooling, .. }
            | ForwardConfig::RnnTanh { pooling, .. } => *pooling = to,
        }
        self
    }

    /// The hidden width the chosen model uses.
    pub fn hidden(&self) -> usize {
        self.settings().0
    }

    /// Stacked recurrent layers.
    pub fn layers(&self) -> usize {
        self.settings().1
    }

    /// Dropout probability (training only).
    pub fn dropout(&self) -> f64 {
        self.settings().2
    }

    /// What the stage builds, with the head tied to the embedding table if `tied`.
    pub fn spec(&self, tied: bool) -> RecurrentSpec {
        let (hidden, layers, dropout) = self.settings();
        RecurrentSpec { kind: self.kind(), hidden, layers, dropout, tied }
    }

    /// Checks values serde cannot (a zero width or layer count, a dropout outside `[0, 1)`),
    /// naming the offending field.
    pub fn validate(&self) -> Result<()> {
        self.spec(false).validate()
    }
}

/// The run-time face of the box: one variant per built-in, delegating by `match`, built from a
/// [`ForwardConfig`] and the run seed.
#[derive(Debug)]
pub enum ForwardImpl<T> {
    /// [`RecurrentForward`]: LSTM, GRU or Elman RNN layers and the head.
    Recurrent(RecurrentForward<T>),
}

impl<T: Float> ForwardImpl<T> {
    /// Builds the stage `config` names, drawing its parameters from `seed`'s streams; `tied` (the
    /// embedding's `tied` key) makes the head's weight the embedding table.
    ///
    /// A config with a `pooling` key is a classifier's: it is built by
    /// [`ForwardImpl::classifier`], which knows the class count, and is an error here.
    pub fn from_config(config: &ForwardConfig, tied: bool, seed: u64) -> Result<Self> {
        config.validate()?;
        if config.pooling().is_some() {
            return Err(stagewise_core::Error::config(
                "forward.pooling",
                "pools texts for a classifier's head: it applies to the classify task only",
            ));
        }
        Ok(ForwardImpl::Recurrent(RecurrentForward::new(config.spec(tied), seed)?))
    }

    /// A classifier's forward box: `config`'s layers, pooling over time (its `pooling` key,
    /// default `last`) and a head scoring `classes` classes per text.
    pub fn classifier(config: &ForwardConfig, classes: usize, seed: u64) -> Result<Self> {
        config.validate()?;
        let pooling = config.pooling().unwrap_or_default();
        Ok(ForwardImpl::Recurrent(RecurrentForward::classifier(config.spec(false), pooling, classes, seed)?))
    }
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for ForwardImpl<T> { Recurrent }
    input<'a> = (); output = Tape<T>;);
