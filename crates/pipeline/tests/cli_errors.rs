//! The `stagewise` command: every bad input is one `error: ` line on stderr naming the problem and
//! a non-zero exit, never a panic; and the happy path of `train` then `generate`.

use crate::util::{TINY_TOML, TempDir, corpus, stagewise, texts};
use std::path::Path;

/// Runs `stagewise args...` in `dir` and checks it failed with exactly one `error: ` line on
/// stderr containing every one of `needles`. Returns that line.
fn expect_error(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let out = stagewise(dir, args);
    let (stdout, stderr) = texts(&out);
    let context = format!("stagewise {}\nstdout:\n{stdout}\nstderr:\n{stderr}", args.join(" "));
    assert!(!out.status.success(), "succeeded: {context}");
    assert!(!stderr.contains("panicked") && !stdout.contains("panicked"), "{context}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected exactly one line on stderr: {context}");
    assert!(lines[0].starts_with("error: "), "{context}");
    for needle in needles {
        assert!(lines[0].contains(needle), "`{needle}` not named: {context}");
    }
    lines[0].to_owned()
}

#[test]
fn bad_corpora_are_one_line_errors_naming_the_problem() {
    let dir = TempDir::new("cli-corpus");
    let d = dir.path();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    let train =
        |data: &str| ["train", "--config", "tiny.toml", "--data", data, "--out", "out"].map(String::from);
    let check = |data: &str, needles: &[&str]| {
        let args = train(data);
        expect_error(d, &args.iter().map(String::as_str).collect::<Vec<_>>(), needles)
    };

    check("missing.txt", &["missing.txt"]);

    std::fs::write(dir.join("empty.txt"), " \n\t\n").unwrap();
    check("empty.txt", &["empty.txt", "empty"]);

    std::fs::write(dir.join("bad.txt"), b"the cat sat\n\xc3\x28 on the mat\n").unwrap();
    check("bad.txt", &["bad.txt", "invalid UTF-8", "byte offset 12"]);

    // The seed config's 32 streams: 20 tokens leave 18 for training, 64 are needed.
    std::fs::write(dir.join("short.txt"), "a b c d e f g h i j k l m n o p q r s t").unwrap();
    expect_error(
        d,
        &["train", "--data", "short.txt", "--out", "out"],
        &["train split", "too few", "32 streams"],
    );

    // Train split fine, test split too short for 4 streams.
    std::fs::write(dir.join("short_test.txt"), corpus(8)).unwrap();
    check("short_test.txt", &["test split", "too few"]);

    // Too few tokens to hold out any test token at all: names the corpus.
    std::fs::write(dir.join("five.txt"), "a b c d e").unwrap();
    check("five.txt", &["five.txt", "empty test split"]);
}

#[test]
fn bad_configs_and_flags_are_one_line_errors_naming_the_problem() {
    let dir = TempDir::new("cli-config");
    let d = dir.path();
    std::fs::write(dir.join("corpus.txt"), corpus(60)).unwrap();
    let cases: [(&str, &str, &[&str]); 4] = [
        ("unknown_key.toml", "[train]\nepochs = 1\nbatchsize = 4\n", &["unknown_key.toml:3", "batchsize"]),
        ("rnn_relu.toml", "[forward]\nkind = \"rnn_relu\"\n", &["rnn_relu.toml:", "rnn_relu"]),
        ("zero_batch.toml", "[train]\nbatch = 0\n", &["train.batch"]),
        ("not_toml.toml", "[train\nepochs = 1\n", &["not_toml.toml:1"]),
    ];
    for (name, text, needles) in cases {
        std::fs::write(dir.join(name), text).unwrap();
        expect_error(d, &["train", "--config", name, "--data", "corpus.txt", "--out", "out"], needles);
    }
    expect_error(d, &["train", "--config", "absent.toml", "--out", "out"], &["absent.toml"]);

    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    let tiny = ["train", "--config", "tiny.toml", "--out", "out"];
    expect_error(d, &[&tiny[..], &["--epochs", "0"]].concat(), &["train.epochs"]);
    expect_error(d, &[&tiny[..], &["--lr", "0"]].concat(), &["optimizer.lr"]);

    // `--out` below a regular file cannot be created.
    std::fs::write(dir.join("blocker"), "a file, not a directory").unwrap();
    expect_error(d, &["train", "--config", "tiny.toml", "--out", "blocker/run"], &["blocker"]);
}

#[test]
fn generate_and_parity_errors_name_the_file() {
    let dir = TempDir::new("cli-files");
    let d = dir.path();
    expect_error(d, &["generate", "--checkpoint", "nothing.ckpt"], &["nothing.ckpt"]);
    std::fs::write(dir.join("garbage.ckpt"), vec![7u8; 100]).unwrap();
    expect_error(d, &["generate", "--checkpoint", "garbage.ckpt"], &["garbage.ckpt", "magic"]);
    expect_error(d, &["parity", "nothing.safetensors"], &["nothing.safetensors"]);
    std::fs::write(dir.join("garbage.safetensors"), vec![7u8; 100]).unwrap();
    expect_error(d, &["parity", "garbage.safetensors"], &["garbage.safetensors"]);
}

#[test]
fn train_then_generate_on_a_tiny_corpus() {
    let dir = TempDir::new("cli-happy");
    let d = dir.path();
    std::fs::write(dir.join("corpus.txt"), corpus(80)).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();

    let args = ["train", "--config", "tiny.toml", "--epochs", "1", "--threads", "1", "--out", "run"];
    let out = stagewise(d, &args);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("error"), "{stderr}");
    let position = |prefix: &str| stdout.lines().position(|l| l.starts_with(prefix));
    let baseline = position("unigram baseline: test ppl").expect("baseline line");
    let epoch = position("epoch 1: train loss").expect("epoch line");
    assert!(baseline < epoch, "{stdout}");
    assert!(position("epoch 2:").is_none(), "--epochs 1 overrides the config's 2: {stdout}");
    assert!(position("continuation:").is_some(), "{stdout}");
    for file in ["metrics.jsonl", "vocab.json", "model.ckpt"] {
        assert!(dir.join("run").join(file).is_file(), "{file} not written");
    }
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");

    let out = stagewise(
        d,
        &["generate", "--checkpoint", "run/model.ckpt", "--prompt", "the cat sat", "--tokens", "5"],
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0].split_whitespace().count(), 5, "{stdout}");
    assert!(!lines[0].contains("<unk>"), "{stdout}");

    expect_error(d, &["generate", "--checkpoint", "run/model.ckpt", "--prompt", "  "], &["generate.prompt"]);
}

/// A prompt with no tokens is only noticed after training: `train` runs every epoch, writes the
/// checkpoint, then fails in `greedy_continuation` (src/generate.rs) with exit code 1, because
/// `Config::validate` (src/config.rs) never looks at `[generate]`. Either rejecting it up front or
/// succeeding without a continuation would do; failing after the work is done is the bug.
#[test]
fn empty_prompt_is_rejected_before_training() {
    let dir = TempDir::new("cli-prompt");
    let d = dir.path();
    std::fs::write(dir.join("corpus.txt"), corpus(80)).unwrap();
    std::fs::write(
        dir.join("tiny.toml"),
        TINY_TOML.replace("prompt = \"the cat sat on\"", "prompt = \"  \""),
    )
    .unwrap();
    let out = stagewise(d, &["train", "--config", "tiny.toml", "--epochs", "1", "--out", "run"]);
    let (stdout, stderr) = texts(&out);
    let trained = stdout.lines().any(|l| l.starts_with("epoch 1:"));
    assert!(out.status.success() || !trained, "failed after training:\nstdout:\n{stdout}\nstderr:\n{stderr}");
}

/// A run that fails before training (here: a typo in `--data`) should leave the previous run in
/// the same `--out` directory as it was. `run_train` (src/main.rs) creates `MetricsFile` — which
/// truncates `metrics.jsonl` — before `train` reads the corpus, so the old metrics are wiped while
/// the old `model.ckpt` and `vocab.json` stay: the directory no longer describes one run.
#[test]
fn failed_run_keeps_the_previous_metrics() {
    let dir = TempDir::new("cli-keep");
    let d = dir.path();
    std::fs::write(dir.join("corpus.txt"), corpus(80)).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    let out = stagewise(d, &["train", "--config", "tiny.toml", "--epochs", "1", "--out", "run"]);
    assert!(out.status.success(), "{:?}", texts(&out));
    let before = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert_eq!(before.lines().count(), 1);
    expect_error(d, &["train", "--config", "tiny.toml", "--data", "typo.txt", "--out", "run"], &["typo.txt"]);
    assert_eq!(std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap(), before);
}
