//! Nothing in a run directory is lost or mixed up: a second run into it is refused while the
//! first holds it, a run that fails leaves the previous files as they were, and a run killed at
//! any moment (SIGKILL) leaves files that load and agree with each other.

use crate::util::{TINY_TOML, TempDir, corpus, stagewise, texts};
use stagewise_core::Rng;
use stagewise_pipeline::checkpoint::Checkpoint;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `stagewise train --config tiny.toml --epochs N --out run` started in `dir`, in the background.
fn spawn_training(dir: &Path, epochs: u64, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stagewise"))
        .args(["train", "--config", "tiny.toml", "--epochs", &epochs.to_string(), "--out", "run"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A scratch directory with the tiny corpus and config.
fn scratch(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::write(dir.join("corpus.txt"), corpus(110)).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML.replace("tokens = 4", "tokens = 0")).unwrap();
    dir
}

/// The run directory's three files, which must load and belong together; returns the epoch of
/// the checkpoint, or `None` if nothing was published yet.
fn consistent_files(run: &Path) -> Option<u64> {
    let ckpt = run.join("model.ckpt");
    if !ckpt.exists() {
        assert!(!run.join("metrics.jsonl").exists() && !run.join("vocab.json").exists());
        return None;
    }
    let ck = Checkpoint::load(&ckpt).unwrap_or_else(|e| panic!("the published checkpoint must load: {e}"));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, ck.epoch, "one metrics line per epoch of the checkpoint");
    assert_eq!(lines.last().and_then(|m| m["epoch"].as_u64()), Some(ck.epoch));
    assert_eq!(
        std::fs::read_to_string(run.join("vocab.json")).unwrap(),
        ck.vocab_json,
        "vocab.json is the checkpoint's"
    );
    Some(ck.epoch)
}

fn run_files(run: &Path) -> Vec<Vec<u8>> {
    ["metrics.jsonl", "vocab.json", "model.ckpt"]
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .collect()
}

#[test]
fn a_second_run_into_a_busy_directory_is_refused_at_once() {
    let dir = scratch("busy");
    let mut first = spawn_training(dir.path(), 1_000_000, &[]);
    // Wait until the first run holds the lock (its process id is in the lock file).
    let lock = dir.join("run/.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock).map_or(true, |s| s.trim() != first.id().to_string()) {
        assert!(Instant::now() < deadline, "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let second = stagewise(dir.path(), &["train", "--config", "tiny.toml", "--out", "run"]);
    let (_, stderr) = texts(&second);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by process") && stderr.contains(&first.id().to_string()), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused at once, not after training");
    first.kill().unwrap();
    first.wait().unwrap();
    consistent_files(&dir.join("run"));
    // The lock died with the process: the directory can be used again.
    let again = stagewise(dir.path(), &["train", "--config", "tiny.toml", "--epochs", "1", "--out", "run"]);
    assert!(again.status.success(), "{:?}", texts(&again));
    assert_eq!(consistent_files(&dir.join("run")), Some(1));
}

#[test]
fn a_failed_run_leaves_the_previous_files_as_they_were() {
    let dir = scratch("failed");
    let good = stagewise(dir.path(), &["train", "--config", "tiny.toml", "--out", "run"]);
    assert!(good.status.success(), "{:?}", texts(&good));
    let before = run_files(&dir.join("run"));
    // Diverges in its first windows; then fails before reading anything.
    for (args, expected) in [
        (&["--lr", "1e30"][..], "non-finite"),
        (&["--lr", "1000", "--epochs", "1"][..], "diverged"),
        (&["--data", "no_such.txt"][..], "no_such.txt"),
    ] {
        let mut line = vec!["train", "--config", "tiny.toml", "--out", "run"];
        line.extend(args);
        let failed = stagewise(dir.path(), &line);
        let (_, stderr) = texts(&failed);
        assert_eq!(failed.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(run_files(&dir.join("run")), before, "{args:?} changed the previous run's files");
    }
}

/// SIGKILL at random moments, many times: every time, the directory's files load and agree.
#[test]
fn a_run_killed_at_any_moment_leaves_consistent_files() {
    let dir = scratch("killed");
    let mut rng = Rng::new(17);
    let mut published = 0;
    for round in 0..25 {
        let mut child = spawn_training(dir.path(), 1_000_000, &[]);
        std::thread::sleep(Duration::from_millis(30 + rng.below(400)));
        child.kill().unwrap();
        child.wait().unwrap();
        if let Some(epoch) = consistent_files(&dir.join("run")) {
            assert!(epoch >= 1, "round {round}");
            published += 1;
        }
    }
    assert!(published >= 10, "the kills should mostly land after a publication ({published} of 25)");
    // A complete run afterwards leaves exactly its own generation and no temporary files.
    let last = stagewise(dir.path(), &["train", "--config", "tiny.toml", "--epochs", "1", "--out", "run"]);
    assert!(last.status.success(), "{:?}", texts(&last));
    assert_eq!(consistent_files(&dir.join("run")), Some(1));
    assert_eq!(std::fs::read_dir(dir.join("run/generations")).unwrap().count(), 1);
    let leftovers: Vec<String> = std::fs::read_dir(dir.join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
