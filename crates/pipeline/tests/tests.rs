//! Integration tests of the pipeline, ripgrep-style: one test binary, one module per concern.
//!
//! - [`nats_per_char`]: the test loss per character, for the char and word tokenizers.
//! - [`parity`]: forward, backward and optimizer steps against the PyTorch fixtures (the seed model
//!   and every configuration), as a library and a command.
//! - [`whole_model_gradient`]: the full model's gradient against finite differences, in `f64`.
//! - [`end_to_end`]: a tiny training run, its files, and its determinism.
//! - [`best_epoch`]: `best.ckpt` and `train.patience` through the command.
//! - [`cli_errors`]: the `stagewise` command's one-line errors and its happy path.
//! - [`checkpoint_safety`]: a failed save never destroys the previous checkpoint.
//! - [`bad_inputs`]: the committed bad-input corpus, every case one clean error line.
//! - [`run_dir_safety`]: concurrent, failed and killed runs never lose or mix up a run directory.
//! - [`generic_run`]: a user's box through the common run; optimizer state by name; foreign boxes refused.
//! - [`robust_inputs`]: broken reference files, enormous headers, absurd thread counts, devices
//!   as files, damaged checkpoints: refused at once, in one line that names the fix.
//! - [`pretrained`]: the embedding table started from a vector file, its coverage line, its errors.
//! - [`stages_cli`]: the catalogue of stages, as text and as JSON.
//! - [`seed_vocab`]: the seed configuration's vocabulary, pinned id for id.
//! - [`word_vectors`]: the word2vec commands (`vectors`, `vectors-eval`, `neighbors`) through the binary.
//! - [`classify_task`]: the classify task: padding invariance of a text's pooled vector and
//!   gradients, a run through the command, its files, and `classify` on its checkpoint.
//! - [`shipped_configs`]: every file in `configs/` trains through the command, with its boxes.
//! - [`tokenizer_cli`]: `train-tokenizer` and `encode`, against the ids HF `tokenizers` gives.

// `unwrap` is fine in tests (clippy.toml allows it in `#[test]` functions); this extends that to
// the helpers the tests share, which clippy does not count as test code.
#![allow(clippy::unwrap_used)]

mod util;

mod bad_inputs;
mod bench_cli;
mod best_epoch;
mod checkpoint_safety;
mod classify_task;
mod cli_errors;
mod end_to_end;
mod generic_run;
mod nats_per_char;
mod parity;
mod pretrained;
mod robust_inputs;
mod run_dir_safety;
mod seed_vocab;
mod shipped_configs;
mod stages_cli;
mod tokenizer_cli;
mod whole_model_gradient;
mod word_vectors;
