//! The one contract every flowchart box implements.

use crate::Result;
use faer::Par;

/// The sizes every box shares, fixed for the lifetime of a run.
///
/// Only what every box needs: the batch and window a cycle runs on, the vocabulary that the
/// embedding reads and the head writes, and the parameter count the optimizer sizes its state by.
/// A stage's own sizes (an embedding width, a hidden width, a number of layers) live in its own
/// configuration, and it declares them to the tape as parameter and slot shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dims {
    /// Vocabulary size V (number of ids, `<unk>` included).
    pub vocab: usize,
    /// Parallel streams per batch B.
    pub batch: usize,
    /// Longest window T of the truncated back-propagation through time; a window may be shorter.
    pub seq_len: usize,
    /// Number of scalar parameters in the model, known once the tape's stages have declared
    /// theirs. Zero until then; stages that size buffers per parameter (the optimizer) read it.
    pub params: usize,
}

impl Dims {
    /// Rows of a window's activations: `seq_len * batch`, the largest `N` any op sees.
    pub fn max_rows(&self) -> usize {
        self.seq_len.saturating_mul(self.batch)
    }
}

/// Training or evaluation: stages may skip work (gradients, dropout) that evaluation never needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Gradients will be requested.
    Train,
    /// Forward only.
    Eval,
}

/// The small, copyable context passed to every data-plane call.
///
/// `par` is the one parallelism setting of the whole run (never nested); `seed` is the run seed from
/// which each stage derives its own [`Rng`](crate::Rng) stream, so swapping one stage never changes
/// the random numbers another stage sees.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// faer's parallelism for matrix products and our own parallel loops.
    pub par: Par,
    /// Train or eval.
    pub mode: Mode,
    /// Optimizer steps taken so far (0 before the first update).
    pub step: u64,
    /// The run seed.
    pub seed: u64,
}

impl Ctx {
    /// A sequential training context with seed 0, for tests and small tools.
    pub fn seq() -> Self {
        Ctx { par: Par::Seq, mode: Mode::Train, step: 0, seed: 0 }
    }

    /// The same context in evaluation mode.
    pub fn eval(self) -> Self {
        Ctx { mode: Mode::Eval, ..self }
    }
}

/// One box of the flowchart: `text -> tokenize -> vectorize -> embed -> forward -> loss ->
/// backward -> update -> output`.
///
/// The control plane (`prepare`, which may allocate) is split from the data plane (`run`, which
/// must not): a training cycle calls `run` on buffers that `prepare` sized once, so a warm step
/// allocates nothing. The output is caller-owned and reused every cycle, like ripgrep's
/// `Matcher::new_captures`.
///
/// Each stage crate narrows this trait to its own box with a subtrait that fixes `Input` and
/// `Output` (e.g. `stagewise_loss::Loss`), so a user type implementing that subtrait drops into the
/// pipeline in place of a built-in.
pub trait Stage {
    /// What the box reads, borrowed for the duration of one call.
    ///
    /// (No `where Self: 'a` bound: inputs borrow from the caller, never from the stage, and the
    /// bound would make the `for<'a> Stage<Input<'a> = ...>` subtraits unusable.)
    type Input<'a>;
    /// What the box writes: storage owned by the caller and reused every cycle.
    type Output;

    /// A short name for logs, timings and config files (`"lstm"`, `"adam"`, ...).
    fn name(&self) -> &str;

    /// Sizes `out` for `dims` and declares what the stage needs (parameters, slots, ops, state
    /// buffers). The only place a model stage may allocate.
    ///
    /// Called once, before the first `run`. The default does nothing: the text boxes (tokenize,
    /// vectorize) have nothing to size, since their output grows with the text.
    fn prepare(&mut self, _dims: &Dims, _out: &mut Self::Output) -> Result<()> {
        Ok(())
    }

    /// Reads `input` and writes `out`. Must not allocate once `prepare` has run.
    fn run(&self, input: Self::Input<'_>, out: &mut Self::Output, cx: &Ctx) -> Result<()>;
}

/// Implements [`Stage`] for a run-time enum of built-in stages by forwarding every call to the
/// variant (HF tokenizers' `impl_enum_from!` idea): each stage crate's `XxxImpl` enum is one line
/// per variant instead of three hand-written `match`es.
///
/// ```
/// # use stagewise_core::{Ctx, Dims, Result, Stage};
/// struct Upper;
/// impl Stage for Upper {
///     type Input<'a> = &'a str;
///     type Output = String;
///     fn name(&self) -> &str { "upper" }
///     fn prepare(&mut self, _: &Dims, _: &mut String) -> Result<()> { Ok(()) }
///     fn run(&self, s: &str, out: &mut String, _: &Ctx) -> Result<()> {
///         out.clear();
///         out.push_str(&s.to_uppercase());
///         Ok(())
///     }
/// }
/// enum TextImpl { Upper(Upper) }
/// stagewise_core::delegate_stage!(impl[] Stage for TextImpl { Upper }
///     input<'a> = &'a str; output = String;);
/// let mut out = String::new();
/// TextImpl::Upper(Upper).run("ab", &mut out, &Ctx::seq())?;
/// assert_eq!(out, "AB");
/// # Ok::<(), stagewise_core::Error>(())
/// ```
#[macro_export]
macro_rules! delegate_stage {
    (impl[$($generics:tt)*] Stage for $enum:ty { $($variant:ident),+ $(,)? }
     input<$a:lifetime> = $input:ty; output = $output:ty;) => {
        impl<$($generics)*> $crate::Stage for $enum {
            type Input<$a> = $input;
            type Output = $output;

            fn name(&self) -> &str {
                match self {
                    $(Self::$variant(s) => $crate::Stage::name(s),)+
                }
            }

            fn prepare(&mut self, dims: &$crate::Dims, out: &mut Self::Output) -> $crate::Result<()> {
                match self {
                    $(Self::$variant(s) => $crate::Stage::prepare(s, dims, out),)+
                }
            }

            fn run(&self, input: Self::Input<'_>, out: &mut Self::Output, cx: &$crate::Ctx) -> $crate::Result<()> {
                match self {
                    $(Self::$variant(s) => $crate::Stage::run(s, input, out, cx),)+
                }
            }
        }
    };
}
