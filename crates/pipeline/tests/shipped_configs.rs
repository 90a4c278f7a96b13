//! Every configuration in `configs/` trains through the `stagewise train` command: each file's
//! boxes (its kinds, layers, tying, loss, clipping, optimizer and schedule) run end to end on a
//! small corpus, shrunk with `--set` to test-sized widths, and the run directory records exactly
//! the boxes the file chose.

use crate::classify_task::labelled_csv;
use crate::util::{TempDir, corpus, stagewise, texts};
use stagewise_pipeline::Config;
use stagewise_pipeline::config::Task;
use std::path::{Path, PathBuf};

/// The shipped configurations, sorted by name.
fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_trains_through_the_command() {
    let files = shipped();
    for name in ["seed", "gru", "rnn", "sgd", "lstm-2layer", "lstm-2layer-tied", "classify", "classify-w2v"] {
        assert!(files.iter().any(|f| f.file_stem().unwrap() == name), "configs/{name}.toml is missing");
    }
    let dir = TempDir::new("shipped");
    std::fs::write(dir.join("corpus.txt"), corpus(120)).unwrap();
    std::fs::write(dir.join("train.csv"), labelled_csv(40, 0)).unwrap();
    std::fs::write(dir.join("test.csv"), labelled_csv(12, 1)).unwrap();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let shipped = Config::load(file).unwrap();
        let out = format!("run-{name}");
        // A table started from a vector file keeps the file's width, and reads the file from the
        // repository (the config names it relative to the repository root).
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let pretrained = shipped.embedding.pretrained().map(|(path, _)| {
            let file = root.join(path);
            assert!(file.is_file(), "configs/{name}.toml: {} is not in the repository", path.display());
            format!("embedding.pretrained={}", file.display())
        });
        let dim = match &pretrained {
            Some(_) => format!("embedding.dim={}", shipped.embedding.dim()),
            None => "embedding.dim=8".to_owned(),
        };
        let classify = shipped.data.task == Task::Classify;
        let mut args = vec![
            "train",
            "--config",
            file.to_str().unwrap(),
            "--data",
            "corpus.txt",
            "--epochs",
            "2",
            "--max-windows",
            "6",
            "--threads",
            "1",
            "--out",
            &out,
            "--set",
            &dim,
            "--set",
            "forward.hidden=8",
            "--set",
            "train.batch=3",
            "--set",
            "train.bptt=6",
            "--set",
            "vectorizer.max_size=40",
        ];
        if let Some(set) = &pretrained {
            args.extend(["--set", set.as_str()]);
        }
        if classify {
            // The bundled CSV files are relative to the repository; a small pair stands in.
            args.extend(["--train", "train.csv", "--test", "test.csv", "--set", "data.max_tokens=12"]);
        }
        let result = stagewise(dir.path(), &args);
        let (stdout, stderr) = texts(&result);
        assert!(result.status.success(), "configs/{name}.toml: {stderr}\n{stdout}");
        let coverage = stdout.lines().filter(|l| l.starts_with("pretrained: ")).count();
        assert_eq!(coverage, usize::from(pretrained.is_some()), "configs/{name}.toml: {stdout}");

        // The run's effective config is the file's, with only the sizes and the run's length
        // changed: same boxes, same keys.
        let ran = Config::load(&dir.join(&out).join("config.toml")).unwrap();
        let mut expected = shipped.clone();
        expected.data.path = ran.data.path.clone();
        if classify {
            assert_eq!(ran.forward.pooling(), shipped.forward.pooling(), "configs/{name}.toml");
            expected.data.train = ran.data.train.clone();
            expected.data.test = ran.data.test.clone();
            expected.data.max_tokens = ran.data.max_tokens;
        }
        expected.train = ran.train.clone();
        expected.embedding = ran.embedding.clone();
        expected.forward = ran.forward.clone();
        expected.vectorizer = ran.vectorizer.clone();
        if shipped.tokenizer.trainer().is_some() {
            // A tokenizer trained at the start of the run is recorded as the file it was saved
            // to, which generate and eval then load.
            expected.tokenizer =
                stagewise_pipeline::train::recorded_config(&shipped, Path::new(&out)).tokenizer;
            assert!(dir.join(&out).join("tokenizer.json").is_file(), "configs/{name}.toml");
            for cmd in [&["generate", "--tokens", "5"][..], &["eval"][..]] {
                let ckpt = format!("{out}/model.ckpt");
                let args: Vec<&str> = cmd.iter().copied().chain(["--checkpoint", ckpt.as_str()]).collect();
                let result = stagewise(dir.path(), &args);
                let (stdout, stderr) = texts(&result);
                assert!(result.status.success(), "configs/{name}.toml {cmd:?}: {stderr}\n{stdout}");
            }
        }
        assert_eq!(ran, expected, "configs/{name}.toml");
        assert_eq!(ran.forward.kind(), shipped.forward.kind(), "configs/{name}.toml");
        assert_eq!(ran.forward.layers(), shipped.forward.layers(), "configs/{name}.toml");
        assert_eq!(ran.embedding.tied(), shipped.embedding.tied(), "configs/{name}.toml");

        let metrics = std::fs::read_to_string(dir.join(&out).join("metrics.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> =
            metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "configs/{name}.toml: {metrics}");
        for line in &lines {
            let keys: &[&str] = if classify {
                &["train_loss", "test_loss", "test_acc", "macro_f1", "seconds"]
            } else {
                // Every built-in tokenizer locates its tokens, so every language model reports
                // its test loss per character too.
                &["train_loss", "test_loss", "lr", "grad_norm", "test_nats_per_char"]
            };
            for &key in keys {
                let v = line[key].as_f64().unwrap_or(f64::NAN);
                assert!(v.is_finite() && v >= 0.0, "configs/{name}.toml: {key} = {v} in {line}");
            }
        }
    }
}
