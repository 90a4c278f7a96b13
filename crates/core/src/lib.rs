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

mod error;
mod params;
mod rng;
mod stage;
mod tape;

pub use error::{Error, Result};
pub use params::{Grads, Moments, ParamEntry, ParamId, ParamLayout, Params};
pub use rng::Rng;
pub use stage::{Ctx, Dims, Mode, Stage};
pub use stagewise_kernels::{Float, Par, par_for_threads, threads_of};
pub use tape::{Activations, Op, Slot, SlotId, Tape};
