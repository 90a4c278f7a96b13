//! `stagewise`: train a language model, check it against PyTorch, generate text.
//!
//! Usually run through `cargo xtask train|parity|generate ...`, which builds it in release mode.

use clap::{Parser, Subcommand};
use stagewise_core::{Ctx, Error, Mode, Params, Result, par_for_threads};
use stagewise_pipeline::Model;
use stagewise_pipeline::bench::report::Report;
use stagewise_pipeline::bench::{BenchMode, GemmKernel, config_name, run_gemm, run_model};
use stagewise_pipeline::checkpoint::Checkpoint;
use stagewise_pipeline::config::Config;
use stagewise_pipeline::data::Batched;
use stagewise_pipeline::generate::greedy_continuation;
use stagewise_pipeline::parity::run_parity;
use stagewise_pipeline::train::{
    Console, MetricsFile, Observer, evaluate, prepare_data_with, thread_pool, train,
};
use stagewise_vectorizer::{Vectorizer, VectorizerImpl};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "stagewise",
    version,
    about = "Train a word-level LSTM language model on the CPU, box by box."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train end to end (defaults: the seed configuration on data/shakespeare.txt).
    Train(TrainArgs),
    /// Compare one forward/backward (and Adam steps) with a PyTorch reference file.
    Parity(ParityArgs),
    /// Continue a prompt greedily with a trained checkpoint.
    Generate(GenerateArgs),
    /// Score a trained checkpoint on the test split of a corpus.
    Eval(EvalArgs),
    /// Time f32 GEMM through faer; prints one JSON line (used by `cargo xtask bench`).
    #[command(hide = true)]
    BenchGemm(BenchGemmArgs),
    /// Time training or inference windows; prints one JSON line (used by `cargo xtask bench`).
    #[command(hide = true)]
    BenchRun(BenchRunArgs),
    /// Summarise the samples `cargo xtask bench` records: prints the tables, writes the JSON
    /// report and the docs section (used by `cargo xtask bench`).
    #[command(hide = true)]
    BenchReport(BenchReportArgs),
}

#[derive(clap::Args)]
struct BenchGemmArgs {
    /// Matrix side N: times an N x N by N x N product (`faer`), or N x 512 by 512 x N (`packed`).
    #[arg(long)]
    size: usize,
    /// Which product: faer's (the MFU yardstick) or the head's packed AVX-512 kernel.
    #[arg(long, value_enum, default_value_t = GemmKernel::Faer)]
    kernel: GemmKernel,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed products after one warm-up; the best is reported as `gflops`.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

#[derive(clap::Args)]
struct BenchRunArgs {
    /// A TOML config (its file stem names the run: `configs/large.toml` -> `large`).
    #[arg(long)]
    config: PathBuf,
    /// The UTF-8 corpus (default: the config's `data.path`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `train` (whole cycles) or `infer` (embed + forward only).
    #[arg(long, value_enum, default_value_t = BenchMode::Train)]
    mode: BenchMode,
    /// Timed windows.
    #[arg(long, default_value_t = 10)]
    windows: usize,
    /// Untimed warm-up windows first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
}

#[derive(clap::Args)]
struct BenchReportArgs {
    /// The samples file: one JSON object per line, a `context` record and the `gemm` and `run`
    /// lines of the children (see `stagewise_pipeline::bench::report`).
    #[arg(long, value_name = "FILE")]
    samples: PathBuf,
    /// Also write the JSON report to FILE (its directory is created).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The markdown file whose `<!-- bench:start -->` ... `<!-- bench:end -->` section is
    /// rewritten (appended when the markers are missing).
    #[arg(long, value_name = "FILE", default_value = "docs/results.md")]
    docs: PathBuf,
    /// Leave the markdown file alone.
    #[arg(long, conflicts_with = "docs")]
    no_docs: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A checkpoint written by `train` (DIR/model.ckpt).
    #[arg(long, default_value = "runs/latest/model.ckpt")]
    checkpoint: PathBuf,
    /// The corpus whose test split is scored (default: the one the checkpoint was trained on).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// A TOML config (see configs/seed.toml); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Epochs to train.
    #[arg(long)]
    epochs: Option<usize>,
    /// The UTF-8 corpus.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory for metrics.jsonl, vocab.json and model.ckpt.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Run seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop each epoch after N windows (quick experiments).
    #[arg(long)]
    max_windows: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
}

#[derive(clap::Args)]
struct ParityArgs {
    /// A safetensors file written by benches/reference/make_parity_fixture.py.
    file: PathBuf,
    /// Also apply N Adam steps on the same batch and compare the parameters after each.
    #[arg(long, default_value_t = 0)]
    adam_steps: usize,
    /// Learning rate for the Adam steps (default: the file's metadata, else 1e-3).
    #[arg(long)]
    lr: Option<f64>,
    /// Largest absolute difference accepted.
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// A checkpoint written by `train` (DIR/model.ckpt).
    #[arg(long, default_value = "runs/latest/model.ckpt")]
    checkpoint: PathBuf,
    /// Text to continue (default: the config's prompt).
    #[arg(long)]
    prompt: Option<String>,
    /// Tokens to generate (default: the config's count).
    #[arg(long)]
    tokens: Option<usize>,
}

fn run_train(args: TrainArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.epochs {
        config.train.epochs = v;
    }
    if let Some(v) = args.data {
        config.data.path = v;
    }
    if let Some(v) = args.seed {
        config.train.seed = v;
    }
    if let Some(v) = args.threads {
        config.train.threads = v;
    }
    if let Some(v) = args.max_windows {
        config.train.max_windows = v;
    }
    if let Some(v) = args.lr {
        config.optimizer.set_lr(v);
    }
    config.validate()?;
    let mut console = Console::default();
    let mut metrics = MetricsFile::create(args.out.join("metrics.jsonl"))?;
    let mut observers: [&mut dyn Observer; 2] = [&mut console, &mut metrics];
    let outcome = train(&config, &args.out, &mut observers)?;
    println!(
        "wrote {}, {} and {}",
        args.out.join("metrics.jsonl").display(),
        args.out.join("vocab.json").display(),
        outcome.checkpoint.display()
    );
    if config.generate.tokens > 0 {
        let text = greedy_continuation(
            &config,
            &outcome.model.tape.params,
            &outcome.data.tokenizer,
            &outcome.data.vectorizer,
            &config.generate.prompt,
            config.generate.tokens,
        )?;
        println!("prompt: {}", config.generate.prompt);
        println!("continuation: {text}");
    }
    Ok(())
}

fn run_parity_cmd(args: ParityArgs) -> Result<bool> {
    let report = run_parity(&args.file, args.adam_steps, args.lr)?;
    println!("loss ours={:.8} reference={:.8}", report.loss, report.reference_loss);
    for c in &report.comparisons {
        println!("{} max_abs_diff={:.3e}", c.name, c.max_abs_diff);
    }
    let failures = report.failures(args.tol);
    if failures.is_empty() {
        println!("parity OK: {} tensors within tol {:e}", report.comparisons.len(), args.tol);
        Ok(true)
    } else {
        let names: Vec<&str> = failures.iter().map(|c| c.name.as_str()).collect();
        println!("parity FAILED: {} tensors exceed tol {:e}: {}", failures.len(), args.tol, names.join(", "));
        Ok(false)
    }
}

/// A checkpoint with its embedded config, vocabulary and parameters, ready to use.
struct Loaded {
    config: Config,
    vectorizer: VectorizerImpl,
    params: Params<f32>,
}

fn load_checkpoint(path: &std::path::Path) -> Result<Loaded> {
    let ck = Checkpoint::load(path)?;
    let config = Config::from_toml(&ck.config_toml, &format!("{} (embedded config)", path.display()))?;
    let vectorizer =
        config.vectorizer.from_json(&ck.vocab_json, &format!("{} (embedded vocabulary)", path.display()))?;
    Ok(Loaded { vectorizer, params: Params::from_parts(ck.layout, ck.params)?, config })
}

fn run_generate(args: GenerateArgs) -> Result<()> {
    let Loaded { config, vectorizer, params } = load_checkpoint(&args.checkpoint)?;
    let tokenizer = config.tokenizer.build()?;
    let prompt = args.prompt.unwrap_or_else(|| config.generate.prompt.clone());
    let tokens = args.tokens.unwrap_or(config.generate.tokens);
    println!("{}", greedy_continuation(&config, &params, &tokenizer, &vectorizer, &prompt, tokens)?);
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let Loaded { mut config, vectorizer, params } = load_checkpoint(&args.checkpoint)?;
    if let Some(path) = args.data {
        config.data.path = path;
    }
    let pool = thread_pool(args.threads.unwrap_or(config.train.threads))?;
    let threads = pool.current_num_threads();
    pool.install(|| {
        let data = prepare_data_with(&config, Some(vectorizer))?;
        let test = Batched::new(&data.test_ids, config.train.batch, "test split")?;
        let vocab = data.vectorizer.vocab_size();
        let mut model = Model::<f32>::from_config(&config, vocab, config.train.batch, config.train.bptt)?;
        if model.tape.params.layout() != params.layout() {
            return Err(Error::shape("checkpoint parameters", "the config's layout", "a different layout"));
        }
        model.tape.params.as_mut_slice().copy_from_slice(params.as_slice());
        let cx = Ctx { par: par_for_threads(threads), mode: Mode::Eval, step: 0, seed: config.train.seed };
        let stats = evaluate(&mut model, &test, config.train.bptt, &cx)?;
        println!(
            "test loss {:.4} | test ppl {:.2} | test acc {:.4} | {} tokens",
            stats.loss(),
            stats.perplexity(),
            stats.accuracy(),
            stats.count
        );
        Ok(())
    })
}

fn run_bench_gemm(args: BenchGemmArgs) -> Result<()> {
    let report = run_gemm(args.kernel, args.size, args.threads, args.repeats)?;
    println!("{}", json_line(&report)?);
    Ok(())
}

fn run_bench_run(args: BenchRunArgs) -> Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(path) = args.data {
        config.data.path = path;
    }
    let name = config_name(&args.config);
    let report = run_model(&config, &name, args.threads, args.mode, args.windows, args.warmup)?;
    println!("{}", json_line(&report)?);
    Ok(())
}

fn run_bench_report(args: BenchReportArgs) -> Result<()> {
    let report = Report::load(&args.samples)?;
    print!("{}", report.console());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("wrote {}", path.display());
    }
    if !args.no_docs {
        report.update_docs(&args.docs)?;
        println!("updated {}", args.docs.display());
    }
    Ok(())
}

fn json_line(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::data("bench report", e.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => run_train(a).map(|()| true),
        Command::Parity(a) => run_parity_cmd(a),
        Command::Generate(a) => run_generate(a).map(|()| true),
        Command::Eval(a) => run_eval(a).map(|()| true),
        Command::BenchGemm(a) => run_bench_gemm(a).map(|()| true),
        Command::BenchRun(a) => run_bench_run(a).map(|()| true),
        Command::BenchReport(a) => run_bench_report(a).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
