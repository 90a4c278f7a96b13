//! What the `custom_*` examples' tests share: a tiny corpus and config in a temporary directory,
//! the command line that trains on them for a few windows, and the checks that the common run
//! wrote what `stagewise train` writes.

#![allow(dead_code, clippy::unwrap_used)]

use stagewise_pipeline::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};

/// A tiny model on a tiny corpus: a run takes a fraction of a second.
const TINY_TOML: &str = r#"
[data]
path = "corpus.txt"
[train]
epochs = 2
batch = 4
bptt = 8
threads = 1
[embedding]
kind = "table"
dim = 8
[forward]
kind = "lstm"
hidden = 16
[vectorizer]
kind = "vocab"
max_size = 40
[generate]
prompt = "the cat"
tokens = 3
"#;

/// A directory holding `corpus.txt` and `tiny.toml`, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("stagewise-example-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let sentence = |i: usize| {
            let subject = ["the cat", "the dog", "a bird"][i % 3];
            let verb = ["sat on", "ran to", "looked at"][(i / 3) % 3];
            let object = ["the mat", "the door", "a tree"][(i / 9) % 3];
            format!("{subject} {verb} {object} .\n")
        };
        let text: String = (0..400).map(|i| sentence((i * 7) % 27)).collect();
        std::fs::write(dir.join("corpus.txt"), text).unwrap();
        std::fs::write(
            dir.join("tiny.toml"),
            TINY_TOML.replace("corpus.txt", &path_str(&dir.join("corpus.txt"))),
        )
        .unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `--config tiny.toml --max-windows N --out DIR/out`, as a user would type it, parsed by
    /// the example's own argument parser `parse`.
    pub fn args<A>(&self, max_windows: usize, parse: impl FnOnce(Vec<String>) -> A) -> A {
        let line = [
            "example",
            "--config",
            &path_str(&self.0.join("tiny.toml")),
            "--max-windows",
            &max_windows.to_string(),
            "--out",
            &path_str(&self.out()),
        ];
        parse(line.iter().map(|s| s.to_string()).collect())
    }

    /// The run directory of [`Scratch::args`].
    pub fn out(&self) -> PathBuf {
        self.0.join("out")
    }

    /// Checks what the run left in [`Scratch::out`]: one `metrics.jsonl` line per epoch with
    /// finite losses and the per-box clock, `vocab.json`, and a checkpoint naming `stages`.
    /// Returns the checkpoint.
    pub fn check_run(&self, epochs: usize, stages: [&str; 5]) -> Checkpoint {
        let out = self.out();
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), epochs, "{metrics}");
        for line in metrics.lines() {
            let m: serde_json::Value = serde_json::from_str(line).unwrap();
            for key in ["train_loss", "test_loss", "test_ppl", "test_acc", "tokens_per_s"] {
                assert!(m[key].as_f64().is_some_and(f64::is_finite), "{key} in {line}");
            }
            assert_eq!(m["stage_seconds"].as_array().map(Vec::len), Some(5), "{line}");
        }
        assert!(out.join("vocab.json").is_file());
        let ck = Checkpoint::load(&out.join("model.ckpt")).unwrap();
        assert_eq!(ck.stages, stages);
        assert_eq!(ck.epoch, epochs as u64);
        assert!(ck.params.iter().all(|p| p.is_finite()));
        ck
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}
