//! The shared contract of every Stagewise stage.
//!
//! Stagewise trains a language model one flowchart box at a time:
//! `text -> tokenize -> vectorize -> embed -> forward -> loss -> backward -> update -> output`.
//! Every box is a crate that depends on this one only.
//!
//! # Brief overview
//! - [`Stage`]: the trait every box implements (`prepare` sizes buffers once, `run` reuses them),
//!   with [`Dims`] (sizes) and [`Ctx`] (parallelism, mode, step, seed).
//! - [`Tape`]: the static schedule of [`Op`]s the embed and forward stages build and the backward
//!   stage walks in reverse, with the activation buffers ([`Activations`], [`Slot`]).
//! - [`Params`], [`Grads`], [`Moments`]: flat arenas with PyTorch names ([`ParamLayout`]).
//! - [`Float`]: `f32` to train, `f64` to check gradients (from `stagewise-kernels`, which holds
//!   the numeric kernels the ops call: GEMM, the packed head product, row kernels, aligned memory).
//! - [`Rng`]: per-stage seeded random streams; [`Error`]: one error type naming file, line, field.
//! - [`Tokens`]: the token list the tokenize box writes and the vectorize box reads, stored in one
//!   text arena with end offsets instead of one `String` per token.

mod error;
mod params;
mod rng;
mod stage;
mod tape;
mod text;

pub use error::{Error, Result, human_bytes};

pub use params::{Grads, Moments, ParamEntry, ParamId, ParamLayout, Params};
pub use rng::Rng;
pub use stage::{Ctx, Dims, Mode, Stage};
/// Atomic file replacement (temporary file, fsync, rename, directory fsync), for every file a
/// stage or the pipeline writes that someone may rely on.
pub use stagewise_fs::{read_regular_file, write_atomically, write_atomically_with};
pub use stagewise_kernels::{Float, Par, par_for_threads, threads_of};
pub use tape::{
    Activations, Op, Pieces, RowOp, Slot, SlotId, StepOp, Tape, checked_size, run_rows_whole, run_steps_whole,
};
pub use text::Tokens;
