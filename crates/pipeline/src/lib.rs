//! Composes the Stagewise boxes into a training pipeline.
//!
//! `text -> tokenize -> vectorize -> embed -> forward -> loss -> backward -> update -> output`
//!
//! # Brief overview
//! - [`config`]: the TOML run configuration, one table per box, strict about unknown keys.
//! - [`data`]: corpus reading, the train/test split, batching into streams and BPTT windows, and
//!   the unigram baseline.
//! - [`model`]: [`Model`], the cycle `embed -> forward -> loss -> backward -> update`,
//!   generic over every box so your own type can replace any of them ([`Model::builder`]).
//! - [`train`]: the run (epochs, evaluation, observers, metrics, checkpoint), for any model.
//! - [`texts`]: labelled texts from CSV files and their classes, for the `classify` task.
//! - [`classify`]: the `classify` task's run (batches of padded texts, accuracy, macro-F1,
//!   confusion matrix, best checkpoint) on the same boxes.
//! - [`checkpoint`], [`generate`], [`parity`]: persistence, the output box, and the PyTorch check.
//! - [`cli`]: the `train` command line, shared with programs that bring their own box.
//! - [`pretrained`]: the embedding table started from a word-vector file, and its coverage line.
//! - [`word_vectors`]: the `vectors`, `vectors-eval` and `neighbors` commands (word2vec).
//! - [`memory`]: the run's memory, estimated from the config before anything is allocated.
//! - [`run_dir`]: the run directory, locked while a run uses it and always holding one
//!   consistent set of files.
//! - [`mod@bench`]: GEMM and tokens/s measurements behind `cargo xtask bench`, and their report.
//!
//! The `stagewise` binary (`cargo xtask train`) is a thin command line over these.

pub mod bench;
pub mod checkpoint;
pub mod classify;
pub mod cli;
pub mod config;
pub mod data;
pub mod generate;
pub mod memory;
pub mod model;
pub mod parity;
pub mod pretrained;
pub mod run_dir;
pub mod stages;
pub mod texts;
pub mod tokenizer_file;
pub mod train;
pub mod word_vectors;

pub use config::Config;
pub use model::{Model, ModelBuilder};
