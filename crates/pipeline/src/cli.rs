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
use crate::generate::generate;
use crate::model::ModelBuilder;
use crate::train::{Console, Observer, train};
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
    /// The UTF-8 corpus (language model).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// What to train: `language_model` or `classify` (default: the config's `data.task`).
    #[arg(long, value_name = "TASK")]
    pub task: Option<crate::config::Task>,
    /// The training texts, a CSV file with a header row (classify; `data.train`).
    #[arg(long = "train", value_name = "FILE.csv")]
    pub train_csv: Option<PathBuf>,
    /// The test texts, a CSV file with the training file's columns (classify; `data.test`).
    #[arg(long = "test", value_name = "FILE.csv")]
    pub test_csv: Option<PathBuf>,
    /// Directory for metrics.jsonl, vocab.json and model.ckpt (and, for classify, best.ckpt and
    /// confusion.json).
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
    /// Overrides any config value, `section.key=value` (repeatable), with the file's validation:
    /// `--set forward.hidden=256 --set optimizer.lr=0.01`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// The most memory the run may use (`8G`, `512M`, bytes; default: what the system has
    /// available): a run estimated to need more is refused before it starts.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
}

impl TrainArgs {
    /// The run's config: the `--config` file (or the seed configuration's defaults) with every
    /// flag given applied, validated.
    pub fn config(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        // The task and its files first: `--set` is validated for the task the run will have.
        if let Some(v) = self.task {
            config.data.task = v;
        }
        if let Some(v) = &self.train_csv {
            config.data.train = Some(v.clone());
        }
        if let Some(v) = &self.test_csv {
            config.data.test = Some(v.clone());
        }
        let mut config = config.with_overrides(&self.set)?;
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
        if let Some(v) = &self.max_memory {
            config.train.max_memory = Some(v.clone());
        }
        if let Some(v) = self.lr {
            config.optimizer.set_lr(v);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Trains as `stagewise train` does — progress and one line per epoch on the terminal, then
/// `best: epoch N, test loss X` (the epoch with the lowest test loss), `metrics.jsonl`,
/// `vocab.json`, `model.ckpt` and `best.ckpt` in `--out`, then the config's prompt continued (from
/// the best epoch's weights when `train.patience` > 0, else from the last epoch's) — on the model
/// `build` makes from the run's config. Returns the config it ran.
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
    if config.data.task == crate::config::Task::Classify {
        return Err(stagewise_core::Error::config(
            "data.task",
            "the classify task trains the config's own boxes: run it with `stagewise train` \
             (stagewise_pipeline::classify::train_classifier)",
        ));
    }
    let builder = build(&config)?;
    let mut console = Console::default();
    let mut observers: [&mut dyn Observer; 1] = [&mut console];
    let mut outcome = train(&config, builder, &args.out, &mut observers)?;
    if outcome.stopped_early {
        println!(
            "stopped early: no lower test loss in the {} epochs after epoch {} (train.patience = {})",
            config.train.patience, outcome.best_epoch, config.train.patience
        );
    }
    let per_char = outcome
        .data
        .nats_per_char(outcome.best_test_loss)
        .map(|x| format!(", test nats/char {x:.4}"))
        .unwrap_or_default();
    println!("best: epoch {}, test loss {:.4}{per_char}", outcome.best_epoch, outcome.best_test_loss);
    println!(
        "wrote {}, {}, {} and {}",
        args.out.join("metrics.jsonl").display(),
        args.out.join("vocab.json").display(),
        outcome.checkpoint.display(),
        args.out.join("best.ckpt").display()
    );
    if config.generate.tokens > 0 {
        if config.train.patience > 0 {
            println!("generating with the weights of epoch {} (best.ckpt)", outcome.best_epoch);
        }
        println!("prompt: {}", config.generate.prompt);
        print!("continuation: ");
        let d = &outcome.data;
        let (prompt, tokens) = (&config.generate.prompt, config.generate.tokens);
        generate(&mut outcome.model, &d.tokenizer, &d.vectorizer, prompt, tokens, write_stdout)?;
        println!();
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

/// Writes generated text to standard output as it comes (flushed, so it shows at once).
pub fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| stagewise_core::Error::io("standard output", e))
}
