//! `DIR/best.ckpt` and `train.patience`, through the command: a small model that overfits a tiny
//! corpus stops once the test loss has not improved for `patience` epochs, `best.ckpt` is the
//! epoch with the lowest test loss (its own evaluation gives that loss back), and the continuation
//! printed after training comes from it.

use crate::util::{TempDir, corpus, stagewise, texts};
use stagewise_pipeline::checkpoint::Checkpoint;

/// A model far larger than its 200-word training split, at a high learning rate: it memorises
/// the split within a few epochs and its test loss then rises.
const OVERFIT_TOML: &str = r#"
[data]
path = "corpus.txt"

[train]
epochs = 40
batch = 2
bptt = 8
seed = 3
threads = 1

[embedding]
kind = "table"
dim = 16

[forward]
kind = "lstm"
hidden = 32

[vectorizer]
kind = "vocab"
max_size = 50

[optimizer]
kind = "adam"
lr = 0.03

[generate]
prompt = "the cat sat on"
tokens = 4
"#;

/// `(test_loss, best_epoch)` of every line of `DIR/metrics.jsonl`.
fn metrics(dir: &std::path::Path) -> Vec<(f64, u64)> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (v["test_loss"].as_f64().unwrap(), v["best_epoch"].as_u64().unwrap())
        })
        .collect()
}

/// The 1-based epoch of the lowest test loss, the earliest on ties.
fn argmin(losses: &[(f64, u64)]) -> usize {
    let mut best = 0;
    for (i, &(loss, _)) in losses.iter().enumerate() {
        if loss < losses[best].0 {
            best = i;
        }
    }
    best + 1
}

fn setup(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::write(dir.join("corpus.txt"), corpus(30)).unwrap();
    std::fs::write(dir.join("run.toml"), OVERFIT_TOML).unwrap();
    dir
}

#[test]
fn patience_stops_the_run_and_best_ckpt_is_the_lowest_test_loss() {
    let dir = setup("patience");
    let out = stagewise(
        dir.path(),
        &["train", "--config", "run.toml", "--out", "run", "--set", "train.patience=3"],
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = metrics(&dir.join("run"));
    let best = argmin(&lines);
    // Stopped exactly `patience` epochs after the best, well before epoch 40.
    assert!(lines.len() < 40, "patience did not stop the run:\n{stdout}");
    assert_eq!(lines.len(), best + 3, "{stdout}");
    assert!(stdout.contains("stopped early"), "{stdout}");
    assert_eq!(lines.last().unwrap().1, best as u64, "best_epoch in metrics.jsonl");
    let min = lines[best - 1].0;
    assert!(stdout.contains(&format!("best: epoch {best}, test loss {min:.4}")), "{stdout}");

    // best.ckpt is that epoch's model, model.ckpt the last one's.
    let best_ckpt = Checkpoint::load(&dir.join("run/best.ckpt")).unwrap();
    let last_ckpt = Checkpoint::load(&dir.join("run/model.ckpt")).unwrap();
    assert_eq!((best_ckpt.epoch, last_ckpt.epoch), (best as u64, lines.len() as u64));
    assert_ne!(best_ckpt.params, last_ckpt.params);
    let eval = stagewise(dir.path(), &["eval", "--checkpoint", "run/best.ckpt"]);
    let (eval_out, eval_err) = texts(&eval);
    assert!(eval.status.success(), "{eval_err}");
    assert!(eval_out.starts_with(&format!("test loss {min:.4} |")), "{eval_out} vs {min}");

    // The continuation printed after training is the best epoch's.
    let generated = stagewise(dir.path(), &["generate", "--checkpoint", "run/best.ckpt"]);
    let (generated, _) = texts(&generated);
    let continuation = stdout.lines().find_map(|l| l.strip_prefix("continuation: ")).unwrap();
    assert_eq!(continuation, generated.trim_end(), "{stdout}");
}

#[test]
fn without_patience_every_epoch_runs_and_best_ckpt_still_tracks_the_best() {
    let dir = setup("no-patience");
    let out = stagewise(dir.path(), &["train", "--config", "run.toml", "--out", "run", "--epochs", "8"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let lines = metrics(&dir.join("run"));
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(!stdout.contains("stopped early"), "{stdout}");
    let best = argmin(&lines);
    assert!(best < 8, "the tiny model should overfit within 8 epochs:\n{stdout}");
    for (i, &(_, best_so_far)) in lines.iter().enumerate() {
        assert_eq!(best_so_far, argmin(&lines[..=i]) as u64, "epoch {}", i + 1);
    }
    let best_ckpt = Checkpoint::load(&dir.join("run/best.ckpt")).unwrap();
    assert_eq!(best_ckpt.epoch, best as u64);
    assert!(stdout.contains(&format!("best: epoch {best}, test loss {:.4}", lines[best - 1].0)), "{stdout}");
}
