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
//! - [`Float`]: `f32` to train, `f64` to check gradients; [`matrix`]: faer views and GEMM.
//! - [`packed`]: the head's forward product from a right-hand side packed once (AVX-512).
//! - [`rows`]: bias add and bias-gradient column sums, split across threads without changing a bit.
//! - [`Rng`]: per-stage seeded random streams; [`Error`]: one error type naming file, line, field.

mod error;
mod float;
pub mod matrix;
pub mod memory;
pub mod packed;
mod params;
mod rng;
pub mod rows;
mod stage;
mod tape;

pub use error::{Error, Result};
pub use faer::Par;
pub use float::Float;
pub use params::{Grads, Moments, ParamEntry, ParamId, ParamLayout, Params};
pub use rng::Rng;
pub use stage::{Ctx, Dims, Mode, Stage};
pub use tape::{Activations, Op, Slot, SlotId, Tape};

/// `Par` for `threads` threads: sequential for 1, faer's rayon-backed parallelism otherwise.
pub fn par_for_threads(threads: usize) -> Par {
    if threads <= 1 { Par::Seq } else { Par::rayon(threads) }
}
