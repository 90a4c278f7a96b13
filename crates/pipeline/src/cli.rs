//! The `train` command line, shared by the `stagewise` binary and by any program that trains a
//! model with a box of its own (the `custom_*` examples), so both take the same flags, print the
//! same lines and write the same files.
//!
//! ```no_run
//! use clap::Parser;
//! use stagewise_pipeline::Model;
//! use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command};
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     train: TrainArgs,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let args = Args::parse();
//!     // The config's boxes; replace one with `.optimizer(MyOptimizer { .. })` and so on.
//!     exit_code(train_command(&args.train, |config| Model::builder(config)).map(|_| true))
//! }
//! ```

use crate::config::Config;
use crate::generate::greedy_continuation;
use crate::model::ModelBuilder;
use crate::train::{Console, MetricsFile, Observer, train};
use stagewise_backward::Backward;
use stagewise_core::Result;
use stagewise_embedding::Embedding;
use stagewise_forward::Forward;
use stagewise_loss::Loss;
use stagewise_optimizer::Optimizer;
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags of `stagewise train` (and of every program built on [`train_command`]).
#[derive(Clone, Debug, clap::Args)]
pub struct TrainArgs {
    /// A TOML config (see configs/seed.toml); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Epochs to train.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// The UTF-8 corpus.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory for metrics.jsonl, vocab.json and model.ckpt.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Run seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (0 = all cores; at most 1024).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop each epoch after N windows, for quick experiments (0 = the whole epoch).
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Learning rate, greater than 0.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
}

impl TrainArgs {
    /// The run's config: the `--config` file (or the seed configuration's defaults) with every
    /// flag given applied, validated.
    pub fn config(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let t = &mut config.train;
        if let Some(v) = self.epochs {
            t.epochs = v;
        }
        if let Some(v) = self.seed {
            t.seed = v;
        }
        if let Some(v) = self.threads {
            t.threads = v;
        }
        if let Some(v) = self.max_windows {
            t.max_windows = v;
        }
        if let Some(v) = &self.data {
            config.data.path = v.clone();
        }
        if let Some(v) = self.lr {
            config.optimizer.set_lr(v);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Trains as `stagewise train` does — progress and one line per epoch on the terminal,
/// `metrics.jsonl`, `vocab.json` and `model.ckpt` in `--out`, then the config's prompt continued —
/// on the model `build` makes from the run's config. Returns the config it ran.
pub fn train_command<E, F, L, B, O>(
    args: &TrainArgs,
    build: impl FnOnce(&Config) -> Result<ModelBuilder<f32, E, F, L, B, O>>,
) -> Result<Config>
where
    E: Embedding<f32> + Send,
    F: Forward<f32> + Send,
    L: Loss<f32> + Send,
    B: Backward<f32> + Send,
    O: Optimizer<f32> + Send,
{
    let config = args.config()?;
    let builder = build(&config)?;
    let mut console = Console::default();
    let mut metrics = MetricsFile::create(args.out.join("metrics.jsonl"))?;
    let mut observers: [&mut dyn Observer; 2] = [&mut console, &mut metrics];
    let mut outcome = train(&config, builder, &args.out, &mut observers)?;
    println!(
        "wrote {}, {} and {}",
        args.out.join("metrics.jsonl").display(),
        args.out.join("vocab.json").display(),
        outcome.checkpoint.display()
    );
    if config.generate.tokens > 0 {
        let text = greedy_continuation(
            &mut outcome.model,
            &outcome.data.tokenizer,
            &outcome.data.vectorizer,
            &config.generate.prompt,
            config.generate.tokens,
        )?;
        println!("prompt: {}", config.generate.prompt);
        println!("continuation: {text}");
    }
    Ok(config)
}

/// The process exit code for a command's outcome: success, failure (`Ok(false)`, e.g. a parity
/// check that found differences), or an error printed as one line on stderr.
pub fn exit_code(result: Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
