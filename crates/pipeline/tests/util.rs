//! Shared helpers: self-deleting temporary directories, a deterministic corpus, tiny configs and
//! running the `stagewise` binary.

use stagewise_core::Rng;
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::ForwardConfig;
use stagewise_pipeline::Config;
use stagewise_pipeline::config::TrainConfig;
use stagewise_vectorizer::VectorizerConfig;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, unique per process and per call, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("stagewise-it-{}-{name}-{n}", std::process::id()));
        std::fs::remove_dir_all(&path).ok();
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// `sentences` short sentences drawn deterministically from a small grammar (about 6 words each,
/// ~20 distinct words), so the text repeats enough for a tiny model to learn something.
pub fn corpus(sentences: usize) -> String {
    const SUBJECTS: [&str; 5] = ["the cat", "the dog", "a bird", "my friend", "the old king"];
    const VERBS: [&str; 4] = ["sat on", "looked at", "ran to", "sang for"];
    const OBJECTS: [&str; 4] = ["the mat", "the house", "the queen", "a tall tree"];
    let mut rng = Rng::new(2024);
    let mut text = String::new();
    for i in 0..sentences {
        let s = SUBJECTS[rng.below(SUBJECTS.len() as u64) as usize];
        let v = VERBS[rng.below(VERBS.len() as u64) as usize];
        let o = OBJECTS[rng.below(OBJECTS.len() as u64) as usize];
        text.push_str(&format!("{s} {v} {o} ."));
        text.push(if i % 8 == 7 { '\n' } else { ' ' });
    }
    text
}

/// A tiny model (E = 8, H = 16, B = 4, T = 8, vocabulary <= 50) for 3 epochs on one thread.
pub fn tiny_config(corpus: PathBuf) -> Config {
    let mut config = Config::default();
    config.data.path = corpus;
    config.train =
        TrainConfig { epochs: 3, batch: 4, bptt: 8, seed: 7, threads: 1, ..TrainConfig::default() };
    config.embedding = EmbeddingConfig::table(8);
    config.forward = ForwardConfig::lstm(16);
    config.vectorizer = VectorizerConfig::vocab(50);
    config.optimizer.set_lr(1e-2);
    config.validate().unwrap();
    config
}

/// The same tiny model as a config file, for the command line (`corpus.txt` in the working dir).
pub const TINY_TOML: &str = r#"
[data]
path = "corpus.txt"

[train]
epochs = 2
batch = 4
bptt = 8
seed = 3

[embedding]
kind = "table"
dim = 8

[forward]
kind = "lstm"
hidden = 16

[vectorizer]
kind = "vocab"
max_size = 50

[optimizer]
kind = "adam"
lr = 0.01

[generate]
prompt = "the cat sat on"
tokens = 4
"#;

/// Runs `stagewise args...` in `dir` and returns its output.
pub fn stagewise(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagewise")).args(args).current_dir(dir).output().unwrap()
}

/// Stdout and stderr of a finished command, lossily decoded, for assertions and their messages.
pub fn texts(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
