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
//! - [`LstmOp`]: one LSTM layer over the whole window (PyTorch's `nn.LSTM` semantics, names and
//!   layouts, gate order i, f, g, o), forward and VJP side by side, carrying `(h, c)` between
//!   windows detached (truncated BPTT) through [`Op::end_window`](stagewise_core::Op::end_window).
//! - [`LinearOp`]: the head `fc` (`y = x·Wᵀ + b`), one GEMM over every row.
//! - [`LstmForward`]: the built-in stage (name `"lstm"`) composing the two.
//! - [`Forward`]: the box's compile-time contract, for a user's own stage type.
//! - [`ForwardConfig`] / [`ForwardImpl`]: the run-time face, chosen by a TOML table
//!   `kind = "lstm"`, `hidden = 128`.
//! - [`lstm_forward_naive`], [`lstm_cell_naive`], [`linear_forward_naive`]: plain-loop references
//!   the fast kernels are tested against (llm.c keeps `matmul_forward_naive` beside the fast one).
//!
//! Data layout (fixed by `stagewise-core`): rows are time-major, row `t·B + b` is step `t` of
//! stream `b`; weights are `(out, in)` row-major and enter faer GEMMs through free transposes.
//! All matrix products go through [`stagewise_kernels::matrix::gemm`] into slots declared at
//! prepare time; element-wise work is plain slice loops; `forward`/`vjp` allocate nothing.

mod cache;
mod linear;
mod lstm;
mod lstm_cell;
mod stage;

pub use linear::{LinearOp, linear_forward_naive};
pub use lstm::{
    LSTM_PREFIX, LstmOp, LstmParams, LstmSlots, LstmWeights, lstm_cell_naive, lstm_forward_naive,
};
pub use stage::{FC_PREFIX, LstmForward};

use stagewise_core::{Error, Float, Result, Stage, Tape};

/// The forward box's contract: a stage that reads nothing but the tape (the embedding's output
/// slot, found with [`Tape::output`] at prepare time), appends its ops and leaves its logits slot
/// as the tape's output.
///
/// Any [`Stage`] with these input and output types is a `Forward` (blanket impl, like the other
/// boxes), so your own type drops into the pipeline in place of [`LstmForward`].
pub trait Forward<T: Float>: for<'a> Stage<Input<'a> = (), Output = Tape<T>> {}

impl<T: Float, S> Forward<T> for S where S: for<'a> Stage<Input<'a> = (), Output = Tape<T>> {}

/// The default hidden width, small enough to train on a laptop CPU in minutes.
pub const DEFAULT_HIDDEN: usize = 128;

fn default_hidden() -> usize {
    DEFAULT_HIDDEN
}

/// The forward box as chosen in a config file, e.g.
///
/// ```toml
/// kind = "lstm"
/// hidden = 128
/// ```
///
/// Tagged by `kind` and strict about unknown keys, so a typo is an error naming the key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ForwardConfig {
    /// One LSTM layer followed by a Linear head.
    Lstm {
        /// Hidden width H (default 128).
        #[serde(default = "default_hidden")]
        hidden: usize,
    },
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig::Lstm { hidden: DEFAULT_HIDDEN }
    }
}

impl ForwardConfig {
    /// Checks values serde cannot (a zero width), naming the offending field.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ForwardConfig::Lstm { hidden } => {
                if hidden == 0 {
                    return Err(Error::config("forward.hidden", "must be at least 1"));
                }
            }
        }
        Ok(())
    }

    /// The hidden width the chosen model uses.
    pub fn hidden(&self) -> usize {
        match *self {
            ForwardConfig::Lstm { hidden } => hidden,
        }
    }
}

/// The run-time face of the box: one variant per built-in, delegating by `match`, built from a
/// [`ForwardConfig`] and the run seed.
#[derive(Debug)]
pub enum ForwardImpl<T> {
    /// [`LstmForward`].
    Lstm(LstmForward<T>),
}

impl<T: Float> ForwardImpl<T> {
    /// Builds the stage `config` names, drawing its parameters from `seed`'s streams.
    pub fn from_config(config: &ForwardConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        match *config {
            ForwardConfig::Lstm { hidden } => Ok(ForwardImpl::Lstm(LstmForward::new(hidden, seed)?)),
        }
    }
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for ForwardImpl<T> { Lstm }
    input<'a> = (); output = Tape<T>;);
