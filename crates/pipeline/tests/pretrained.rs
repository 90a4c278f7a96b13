//! `[embedding] pretrained = "FILE"` through the `stagewise train` command: one coverage line,
//! the table's rows equal to the file's vectors (a frozen table keeps them to the checkpoint),
//! the configured init for the rest, and one-line errors for a file of another width or a
//! malformed one; the classify task's table starts from the file the same way.

use crate::util::{TINY_TOML, TempDir, corpus, stagewise, texts};
use stagewise_pipeline::checkpoint::Checkpoint;
use stagewise_vectorizer::{VectorFormat, Vectors, Vocab};

/// A vector file of width 8 holding some of the corpus's words, words the corpus does not have,
/// and `KING`, which the `word` tokenizer's lower-cased `king` does not match (the file's words
/// are taken as they are).
fn vectors() -> Vectors {
    let mut v = Vectors::new(8);
    for (i, word) in ["the", "cat", "zebra", "KING", "queen", "dog", "unicorn", "."].iter().enumerate() {
        let row: Vec<f32> = (0..8).map(|j| (i * 8 + j) as f32 * 0.125 - 3.0).collect();
        v.push(word, &row);
    }
    v
}

/// The tiny model's config with the table frozen and started from `file`.
fn config(file: &str, format: Option<&str>) -> String {
    let format = format.map(|f| format!("format = \"{f}\"\n")).unwrap_or_default();
    TINY_TOML.replace("dim = 8\n", &format!("dim = 8\nfreeze = true\npretrained = \"{file}\"\n{format}"))
}

#[test]
fn the_table_starts_from_the_file_and_the_run_says_how_much_it_covered() {
    let dir = TempDir::new("pretrained");
    std::fs::write(dir.join("corpus.txt"), corpus(120)).unwrap();
    let file = vectors();
    for (name, format, named) in [
        ("vectors.txt", VectorFormat::Glove, Some("glove")),
        ("vectors.bin", VectorFormat::Word2vecBinary, None),
        ("vectors.vec", VectorFormat::Fasttext, Some("fasttext")),
    ] {
        file.write(&dir.join(name), format).unwrap();
        std::fs::write(dir.join("run.toml"), config(name, named)).unwrap();
        let out = format!("out-{name}");
        let result =
            stagewise(dir.path(), &["train", "--config", "run.toml", "--out", &out, "--epochs", "1"]);
        let (stdout, stderr) = texts(&result);
        assert!(result.status.success(), "{name}: {stderr}");

        let vocab = Vocab::load(dir.join(&out).join("vocab.json")).unwrap();
        let tokens = vocab.tokens();
        let lookup = |w: &str| file.get(w);
        let found = tokens.iter().filter(|w| lookup(w).is_some()).count();
        assert!(tokens.iter().any(|w| w == "king"));
        assert_eq!(found, 5, "the, cat, queen, dog, . : {tokens:?}");
        let v = tokens.len();
        let expected = format!(
            "pretrained: {found} of {v} words from {name} ({:.1} %); {} initialised",
            100.0 * found as f64 / v as f64,
            v - found
        );
        let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("pretrained")).collect();
        assert_eq!(lines, [expected.as_str()], "{stdout}");

        // Frozen: the checkpoint's table is the one the run started from.
        let table = embedding_table(&dir.join(&out).join("model.ckpt"), v * 8);
        for (id, word) in tokens.iter().enumerate() {
            let row = &table[id * 8..(id + 1) * 8];
            match lookup(word) {
                Some(expected) => assert_eq!(row, expected, "{name}: row of `{word}`"),
                // The configured N(0, 1) init: not one of the file's rows (which are multiples of 1/8).
                None => assert!(row.iter().any(|x| (x * 8.0).fract() != 0.0), "{name}: `{word}` {row:?}"),
            }
        }
    }
}

#[test]
fn a_file_of_another_width_or_a_bad_line_is_one_error_naming_file_and_line() {
    let dir = TempDir::new("pretrained-bad");
    std::fs::write(dir.join("corpus.txt"), corpus(120)).unwrap();
    let cases = [
        ("wide.txt", "the 1 2 3\ncat 4 5 6\n", "wide.txt:1: vectors of dimension 3, but embedding.dim is 8"),
        ("ragged.txt", "2 8\nthe 1 2 3 4 5 6 7 8\ncat 1 2\n", "ragged.txt:3: `cat` has 2 values, expected 8"),
        ("nan.txt", "the 1 2 3 4 5 6 7 x\n", "nan.txt:1: `x` (value 8 of `the`) is not a number"),
    ];
    for (name, text, message) in cases {
        std::fs::write(dir.join(name), text).unwrap();
        std::fs::write(dir.join("run.toml"), config(name, None)).unwrap();
        let result = stagewise(dir.path(), &["train", "--config", "run.toml", "--out", "out"]);
        let (_, stderr) = texts(&result);
        assert!(!result.status.success(), "{name}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
    }
    std::fs::write(dir.join("run.toml"), config("missing.txt", None)).unwrap();
    let result = stagewise(dir.path(), &["train", "--config", "run.toml", "--out", "out"]);
    assert!(texts(&result).1.contains("missing.txt"), "{}", texts(&result).1);
}

#[test]
fn the_classify_task_starts_its_table_from_the_file_too() {
    let dir = TempDir::new("pretrained-classify");
    std::fs::write(dir.join("train.csv"), crate::classify_task::labelled_csv(30, 0)).unwrap();
    std::fs::write(dir.join("test.csv"), crate::classify_task::labelled_csv(9, 1)).unwrap();
    let mut file = Vectors::new(8);
    for (i, word) in ["cat", "dog", "rain", "SOUP", "zebra"].iter().enumerate() {
        let row: Vec<f32> = (0..8).map(|j| (i * 8 + j) as f32 * 0.125 - 2.0).collect();
        file.push(word, &row);
    }
    file.write(&dir.join("vectors.bin"), VectorFormat::Word2vecBinary).unwrap();
    for freeze in [true, false] {
        let out = format!("run-{freeze}");
        let freeze_set = format!("embedding.freeze={freeze}");
        let args = [
            "train",
            "--task",
            "classify",
            "--train",
            "train.csv",
            "--test",
            "test.csv",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--out",
            &out,
            "--set",
            "embedding.dim=8",
            "--set",
            "forward.hidden=6",
            "--set",
            "train.batch=4",
            "--set",
            "embedding.pretrained=\"vectors.bin\"",
            "--set",
            &freeze_set,
        ];
        let result = stagewise(dir.path(), &args);
        let (stdout, stderr) = texts(&result);
        assert!(result.status.success(), "{stderr}\n{stdout}");

        let vocab = Vocab::load(dir.join(&out).join("vocab.json")).unwrap();
        let tokens = vocab.tokens();
        let v = tokens.len();
        // `soup` is lower-case in the texts; the file's `SOUP` is not lower-cased to match it.
        let found = ["cat", "dog", "rain"];
        assert!(found.iter().all(|w| tokens.iter().any(|t| t == w)) && tokens.iter().any(|t| t == "soup"));
        let expected = format!(
            "pretrained: 3 of {v} words from vectors.bin ({:.1} %); {} initialised",
            300.0 / v as f64,
            v - 3
        );
        let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("pretrained")).collect();
        assert_eq!(lines, [expected.as_str()], "{stdout}");

        let table = embedding_table(&dir.join(&out).join("model.ckpt"), v * 8);
        for (id, word) in tokens.iter().enumerate() {
            let row = &table[id * 8..(id + 1) * 8];
            match (file.get(word), freeze) {
                // Frozen, the covered rows are the file's after training.
                (Some(expected), true) => assert_eq!(row, expected, "row of `{word}`"),
                // Trainable, Adam has moved every covered word's row away from the file's.
                (Some(expected), false) => assert_ne!(row, expected, "row of `{word}`"),
                // The uniform init: never a multiple of 1/8 like the file's values.
                (None, _) => assert!(row.iter().any(|x| (x * 8.0).fract() != 0.0), "`{word}` {row:?}"),
            }
        }
    }
}

/// The first `len` values of `embedding.weight` in the checkpoint at `path`.
fn embedding_table(path: &std::path::Path, len: usize) -> Vec<f32> {
    let ckpt = Checkpoint::load(path).unwrap();
    let entry = ckpt.layout.entries().iter().find(|e| e.name == "embedding.weight").unwrap();
    ckpt.params[entry.offset..entry.offset + len].to_vec()
}
