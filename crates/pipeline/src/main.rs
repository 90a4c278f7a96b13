//! `stagewise`: train a language model or a text classifier, check it against PyTorch, generate
//! text, label texts.
//!
//! Usually run through `cargo xtask train|parity|generate ...`, which builds it in release mode.

use clap::{Parser, Subcommand};
use stagewise_core::{Ctx, Error, Mode, Result, par_for_threads};
use stagewise_pipeline::Model;
use stagewise_pipeline::bench::report::Report;
use stagewise_pipeline::bench::{BenchMode, GemmKernel, config_name, run_gemm, run_model};
use stagewise_pipeline::checkpoint::Checkpoint;
use stagewise_pipeline::classify::{encode, train_classifier};
use stagewise_pipeline::cli::{TrainArgs, exit_code, train_command, write_stdout};
use stagewise_pipeline::config::{Config, Task, check_threads};
use stagewise_pipeline::data::Batched;
use stagewise_pipeline::generate::{check_token_count, generate};
use stagewise_pipeline::parity::{run_parity, run_parity_with_config};
use stagewise_pipeline::tokenizer_file::{TokenizerFile, TokenizerKind, train_tokenizer};
use stagewise_pipeline::train::{evaluate, prepare_data_with, thread_pool};
use stagewise_pipeline::word_vectors::{
    NeighborsArgs, VectorsArgs, VectorsEvalArgs, run_neighbors, run_vectors, run_vectors_eval,
};
use stagewise_vectorizer::{Vectorizer, VectorizerImpl};
use std::path::{Path, PathBuf};
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
    /// Compare one forward/backward (and optimizer steps) with a PyTorch reference file.
    Parity(ParityArgs),
    /// Continue a prompt greedily with a trained checkpoint.
    Generate(GenerateArgs),
    /// Score a trained checkpoint on the test split of a corpus.
    Eval(EvalArgs),
    /// Label texts with a trained classifier: the predicted label and the class probabilities.
    Classify(ClassifyArgs),
    /// List every implementation of every box, with its config keys, types and defaults.
    Stages(StagesArgs),
    /// Train a tokenizer on a text file and write it as a HuggingFace tokenizer.json.
    TrainTokenizer(TrainTokenizerArgs),
    /// Encode text to ids line by line with a tokenizer.json (or `--decode` ids back to text).
    Encode(EncodeArgs),
    /// Train word2vec (skip-gram or CBOW, negative sampling) on a corpus; write a vector file.
    Vectors(VectorsArgs),
    /// Spearman's rho of a vector file on word pairs with human similarity scores.
    VectorsEval(VectorsEvalArgs),
    /// The nearest words to a word by cosine, one `word similarity` per line.
    Neighbors(NeighborsArgs),
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
    /// Worker threads (0 = all cores; at most 1024).
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
    /// Worker threads (0 = all cores; at most 1024).
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
struct TrainTokenizerArgs {
    /// Which tokenizer: byte-level BPE, or a word-level vocabulary of characters or words.
    #[arg(long, value_enum)]
    kind: TokenizerKind,
    /// The UTF-8 text to train on (read line by line, as HF `tokenizers` reads training files).
    #[arg(long)]
    data: PathBuf,
    /// Tokens in the vocabulary (for bpe: the 256 bytes and `<|endoftext|>` included; for char
    /// and word: `<unk>` included).
    #[arg(long)]
    vocab_size: usize,
    /// Least count of a merged pair (bpe, default 2) or of a kept token (char, word, default 1).
    #[arg(long)]
    min_frequency: Option<u64>,
    /// Worker threads (0 = all cores; at most 1024). The file is the same at any count.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where to write the tokenizer.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct EncodeArgs {
    /// A tokenizer.json (byte-level BPE, or a word/char file `train-tokenizer` wrote).
    #[arg(long)]
    tokenizer: PathBuf,
    /// The text to encode, one line at a time (default: standard input).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Read lines of space-separated ids and write the text of each line.
    #[arg(long)]
    decode: bool,
    /// Worker threads (0 = all cores; at most 1024). The output is the same at any count.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(clap::Args)]
struct StagesArgs {
    /// Print the catalogue as JSON (sections, kinds, keys with type, default, summary).
    #[arg(long)]
    json: bool,
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
    /// Worker threads (0 = all cores; at most 1024; default: the checkpoint's `train.threads`).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// A classifier's checkpoint written by `train --task classify` (DIR/model.ckpt or
    /// DIR/best.ckpt).
    #[arg(long, default_value = "runs/latest/model.ckpt")]
    checkpoint: PathBuf,
    /// Texts to label, one per argument.
    #[arg(value_name = "TEXT")]
    texts: Vec<String>,
    /// Also label each non-blank line of FILE (UTF-8), after the TEXT arguments.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ParityArgs {
    /// A safetensors file written by benches/reference/make_parity_fixture.py.
    file: PathBuf,
    /// The model's config (its kind, tying, loss, backward, clipping and optimizer; the sizes
    /// come from the file). Default: the seed configuration (one LSTM layer, Adam).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also apply N optimizer steps on the same batch and compare the parameters after each.
    #[arg(long, visible_alias = "adam-steps", default_value_t = 0)]
    steps: usize,
    /// Learning rate of the steps, greater than 0 (default: the config's; without --config, the
    /// file's metadata, else 1e-3).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Largest absolute difference accepted: a finite number, at least 0.
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
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
    tokens: Option<u64>,
}

/// `n` and `noun`, the noun in the plural unless `n` is 1 ("1 tensor", "29 tensors").
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn run_parity_cmd(args: ParityArgs) -> Result<bool> {
    if !(args.tol.is_finite() && args.tol >= 0.0) {
        return Err(Error::config("--tol", format!("{} is not a finite number of at least 0", args.tol)));
    }
    let report = match &args.config {
        Some(path) => run_parity_with_config(&args.file, &Config::load(path)?, args.steps, args.lr)?,
        None => run_parity(&args.file, args.steps, args.lr)?,
    };
    println!("checking in {}", report.dtype);
    println!("model: {}", report.model);
    println!("loss ours={:.8} reference={:.8}", report.loss, report.reference_loss);
    for c in &report.comparisons {
        println!("{} max_abs_diff={:.3e}", c.name, c.max_abs_diff);
    }
    let failures = report.failures(args.tol);
    if failures.is_empty() {
        println!("parity OK: {} within tol {:e}", count(report.comparisons.len(), "tensor"), args.tol);
        Ok(true)
    } else {
        let names: Vec<&str> = failures.iter().map(|c| c.name.as_str()).collect();
        let verb = if failures.len() == 1 { "exceeds" } else { "exceed" };
        println!(
            "parity FAILED: {} {verb} tol {:e}: {}",
            count(failures.len(), "tensor"),
            args.tol,
            names.join(", ")
        );
        Ok(false)
    }
}

/// A checkpoint with its embedded config and vocabulary, ready to load into a model.
struct Loaded {
    path: PathBuf,
    checkpoint: Checkpoint,
    config: Config,
    vectorizer: VectorizerImpl,
}

fn load_checkpoint(path: &Path) -> Result<Loaded> {
    let checkpoint = Checkpoint::load(path)?;
    let mut config =
        Config::from_toml(&checkpoint.config_toml, &format!("{} (embedded config)", path.display()))?;
    find_tokenizer_file(&mut config, path);
    let vectorizer = config
        .vectorizer
        .from_json(&checkpoint.vocab_json, &format!("{} (embedded vocabulary)", path.display()))?;
    Ok(Loaded { path: path.to_path_buf(), checkpoint, config, vectorizer })
}

/// A BPE run records its `tokenizer.json` by its path from where it was trained; when that path
/// does not lead to a file from here, the `tokenizer.json` beside the checkpoint is the one (the
/// run directory moved, or the command runs from elsewhere).
fn find_tokenizer_file(config: &mut Config, checkpoint: &Path) {
    if let stagewise_tokenizer::TokenizerConfig::Bpe { path: Some(p), .. } = &mut config.tokenizer
        && !p.is_file()
    {
        let beside = checkpoint.with_file_name(stagewise_pipeline::train::TOKENIZER_FILE);
        if beside.is_file() {
            *p = beside;
        }
    }
}

impl Loaded {
    /// The config's model for windows of `batch x seq_len`, holding the checkpoint's parameters.
    ///
    /// A checkpoint trained with an embedding or forward box of a program's own can only be
    /// loaded by that program: that is an error naming the box, not a layout mismatch.
    fn model(&self, batch: usize, seq_len: usize) -> Result<Model<f32>> {
        let mut model =
            Model::<f32>::builder(&self.config)?.build(self.vectorizer.vocab_size(), batch, seq_len)?;
        let ours = model.stage_names();
        for (i, what) in [(0, "embedding"), (1, "forward")] {
            if let Some(saved) = self.checkpoint.stages.get(i).filter(|s| **s != ours[i]) {
                return Err(Error::Checkpoint {
                    path: self.path.clone(),
                    message: format!(
                        "trained with the {what} box `{saved}`, which this program does not build \
                         (its config gives `{}`); load it in the program that defines `{saved}`",
                        ours[i]
                    ),
                });
            }
        }
        self.checkpoint.restore(&mut model, false, &self.path)?;
        Ok(model)
    }
}

fn run_generate(args: GenerateArgs) -> Result<()> {
    let loaded = load_checkpoint(&args.checkpoint)?;
    let config = &loaded.config;
    let tokenizer = config.tokenizer.build()?;
    let prompt = args.prompt.unwrap_or_else(|| config.generate.prompt.clone());
    let tokens = args.tokens.unwrap_or(config.generate.tokens);
    check_token_count(tokens, "--tokens")?;
    let mut model = loaded.model(1, 1)?;
    generate(&mut model, &tokenizer, &loaded.vectorizer, &prompt, tokens, write_stdout)?;
    println!();
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    if let Some(threads) = args.threads {
        check_threads("--threads", threads)?;
    }
    let loaded = load_checkpoint(&args.checkpoint)?;
    let mut config = loaded.config.clone();
    let from_checkpoint = args.data.is_none();
    if let Some(path) = args.data {
        config.data.path = path;
    }
    let pool = thread_pool(args.threads.unwrap_or(config.train.threads))?;
    let threads = pool.current_num_threads();
    pool.install(|| {
        let data = prepare_data_with(&config, Some(loaded.vectorizer.clone())).map_err(|e| match e {
            // The checkpoint's `data.path` is relative to where it was trained, not to here.
            Error::Io { path, source }
                if from_checkpoint
                    && path == config.data.path
                    && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Error::data(
                    path.display().to_string(),
                    format!(
                        "{source} (the corpus the checkpoint's config names, relative to where it was \
                         trained; pass --data FILE)"
                    ),
                )
            }
            e => e,
        })?;
        let test = Batched::new(&data.test_ids, config.train.batch, "test split")?;
        let mut model = loaded.model(config.train.batch, config.train.bptt)?;
        let cx = Ctx { par: par_for_threads(threads), mode: Mode::Eval, step: 0, seed: config.train.seed };
        let stats = evaluate(&mut model, &test, config.train.bptt, &cx)?;
        let per_char =
            data.nats_per_char(stats.loss()).map(|x| format!(" | test nats/char {x:.4}")).unwrap_or_default();
        println!(
            "test loss {:.4} | test ppl {:.2} | test acc {:.4}{per_char} | {}",
            stats.loss(),
            stats.perplexity(),
            stats.accuracy(),
            count(stats.count, "token")
        );
        Ok(())
    })
}

/// The texts `classify` labels, each with where it came from for errors: the arguments, then
/// the non-blank lines of `--input`.
fn classify_inputs(args: &ClassifyArgs) -> Result<Vec<(String, String)>> {
    let mut texts: Vec<(String, String)> =
        args.texts.iter().enumerate().map(|(i, t)| (t.clone(), format!("TEXT argument {}", i + 1))).collect();
    if let Some(path) = &args.input {
        let text = stagewise_pipeline::data::read_corpus(path)?;
        for (i, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                texts.push((line.to_owned(), format!("{}:{}", path.display(), i + 1)));
            }
        }
    }
    if texts.is_empty() {
        return Err(Error::config("classify", "no text to label: give TEXT arguments or --input FILE"));
    }
    Ok(texts)
}

fn run_classify(args: ClassifyArgs) -> Result<()> {
    let loaded = load_checkpoint(&args.checkpoint)?;
    let labels = &loaded.checkpoint.labels;
    if labels.is_empty() {
        return Err(Error::Checkpoint {
            path: loaded.path.clone(),
            message: "is a language model, not a classifier (train one with --task classify)".into(),
        });
    }
    let config = &loaded.config;
    let texts = classify_inputs(&args)?;
    let tokenizer = config.tokenizer.build()?;
    let mut tokens = stagewise_core::Tokens::new();
    let mut ids = Vec::with_capacity(texts.len());
    for (text, place) in &texts {
        let v = encode(&tokenizer, &loaded.vectorizer, text, config.data.max_tokens, &mut tokens)?;
        if v.is_empty() {
            return Err(Error::data(place.clone(), "the text has no tokens"));
        }
        ids.push(v);
    }
    let batch = config.train.batch.min(ids.len());
    let mut model = Model::<f32>::classifier_builder(config, labels.len())?.build(
        loaded.vectorizer.vocab_size(),
        batch,
        config.data.max_tokens,
    )?;
    loaded.checkpoint.restore(&mut model, false, &loaded.path)?;
    let cx = Ctx::seq();
    let mut out = String::new();
    for chunk in ids.chunks(batch) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let scores = model.predict_texts(&refs, &cx)?;
        for row in scores.chunks(labels.len()).take(chunk.len()) {
            let probs = softmax(row);
            let best = (0..probs.len()).fold(0, |b, i| if probs[i] > probs[b] { i } else { b });
            let shown: Vec<String> = labels.iter().zip(&probs).map(|(l, p)| format!("{l}={p:.4}")).collect();
            out.push_str(&format!("{}\t{}\n", labels[best], shown.join(" ")));
        }
    }
    write_stdout(&out)
}

/// Probabilities from scores, computed in f64.
fn softmax(scores: &[f32]) -> Vec<f64> {
    let max = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(f64::from(s)));
    let exp: Vec<f64> = scores.iter().map(|&s| (f64::from(s) - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// `train`: the language model through the shared command line, or the classify task.
fn run_train(args: &TrainArgs) -> Result<()> {
    let config = args.config()?;
    if config.data.task == Task::Classify {
        train_classifier(&config, &args.out).map(|_| ())
    } else {
        train_command(args, Model::<f32>::builder).map(|_| ())
    }
}

fn run_bench_gemm(args: BenchGemmArgs) -> Result<()> {
    check_threads("--threads", args.threads)?;
    let report = run_gemm(args.kernel, args.size, args.threads, args.repeats)?;
    println!("{}", json_line(&report)?);
    Ok(())
}

fn run_bench_run(args: BenchRunArgs) -> Result<()> {
    check_threads("--threads", args.threads)?;
    let mut config = Config::load(&args.config)?;
    if let Some(path) = args.data {
        config.data.path = path;
    }
    let name = config_name(&args.config);
    let report = run_model(&config, &name, args.threads, args.mode, args.windows, args.warmup)?;
    println!("{}", json_line(&report)?);
    Ok(())
}

fn run_stages(args: StagesArgs) -> Result<()> {
    let catalogue = stagewise_pipeline::stages::catalogue();
    let text = if args.json {
        let mut json =
            serde_json::to_string_pretty(&catalogue).map_err(|e| Error::config("--json", e.to_string()))?;
        json.push('\n');
        json
    } else {
        stagewise_pipeline::stages::render(&catalogue)
    };
    write_stdout(&text)
}

fn run_train_tokenizer(args: TrainTokenizerArgs) -> Result<()> {
    check_threads("--threads", args.threads)?;
    let pool = thread_pool(args.threads)?;
    let json =
        pool.install(|| train_tokenizer(args.kind, &args.data, args.vocab_size, args.min_frequency))?;
    stagewise_core::write_atomically(&args.out, json.as_bytes()).map_err(|e| Error::io(&args.out, e))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn run_encode(args: EncodeArgs) -> Result<()> {
    use std::io::{Read, Write};
    check_threads("--threads", args.threads)?;
    let tokenizer = TokenizerFile::load(&args.tokenizer)?;
    let (bytes, origin) = match &args.input {
        Some(path) => {
            (stagewise_core::read_regular_file(path, u64::MAX).map_err(|e| Error::io(path, e))?, path.clone())
        }
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().lock().read_to_end(&mut bytes).map_err(|e| Error::io("standard input", e))?;
            (bytes, PathBuf::from("standard input"))
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::data(format!("{}:{line}", origin.display()), format!("invalid UTF-8 at byte offset {offset}"))
    })?;
    let out = if args.decode {
        tokenizer.decode_lines(&text, &origin.display().to_string())?
    } else {
        thread_pool(args.threads)?.install(|| tokenizer.encode_lines(&text))
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out).and_then(|()| stdout.flush()).map_err(|e| Error::io("standard output", e))
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

/// Any panic left is a bug: report it as one line, with where it happened and a request to
/// report it, instead of a backtrace (the process still exits with the panic code, 101).
fn report_panics_in_one_line() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| String::from("panic"));
        eprintln!("{}", panic_line(&what, info.location().map(|l| (l.file(), l.line()))));
    }));
}

/// The one line a panic is reported as.
fn panic_line(what: &str, location: Option<(&str, u32)>) -> String {
    let place = location.map(|(file, line)| format!(" at {file}:{line}")).unwrap_or_default();
    let what = what.replace('\n', " ");
    format!("error: internal error: {what}{place}; please report it (a bug of stagewise, not of your input)")
}

fn main() -> ExitCode {
    report_panics_in_one_line();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => run_train(&a).map(|()| true),
        Command::Classify(a) => run_classify(a).map(|()| true),
        Command::Parity(a) => run_parity_cmd(a),
        Command::Generate(a) => run_generate(a).map(|()| true),
        Command::Eval(a) => run_eval(a).map(|()| true),
        Command::Stages(a) => run_stages(a).map(|()| true),
        Command::TrainTokenizer(a) => run_train_tokenizer(a).map(|()| true),
        Command::Encode(a) => run_encode(a).map(|()| true),
        Command::Vectors(a) => run_vectors(&a).map(|()| true),
        Command::VectorsEval(a) => run_vectors_eval(&a).map(|()| true),
        Command::Neighbors(a) => run_neighbors(&a).map(|()| true),
        Command::BenchGemm(a) => run_bench_gemm(a).map(|()| true),
        Command::BenchRun(a) => run_bench_run(a).map(|()| true),
        Command::BenchReport(a) => run_bench_report(a).map(|()| true),
    };
    exit_code(result)
}

#[cfg(test)]
mod tests {
    use super::{count, panic_line};

    #[test]
    fn a_panic_is_one_line_asking_for_a_report() {
        let line = panic_line("index out of bounds:\nthe len is 3", Some(("src/x.rs", 7)));
        assert_eq!(
            line,
            "error: internal error: index out of bounds: the len is 3 at src/x.rs:7; please report it (a bug of stagewise, not of your input)"
        );
        assert!(!panic_line("boom", None).contains('\n'));
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "tensor"), "1 tensor");
        assert_eq!(count(0, "token"), "0 tokens");
        assert_eq!(count(29, "tensor"), "29 tensors");
    }
}
