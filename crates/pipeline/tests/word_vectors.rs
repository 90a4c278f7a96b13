//! `stagewise vectors`, `vectors-eval` and `neighbors` through the binary: a loss line per epoch,
//! a vector file that reads back, the same bytes from the same seed on one thread, and one-line
//! errors.

use crate::util::{TempDir, corpus, stagewise, texts};
use stagewise_vectorizer::{VectorFormat, Vectors};

fn train(dir: &TempDir, out: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "vectors",
        "--data",
        "corpus.txt",
        "--out",
        out,
        "--dim",
        "12",
        "--epochs",
        "3",
        "--min-count",
        "2",
        "--threads",
        "1",
        "--seed",
        "4",
    ];
    args.extend(extra);
    let result = stagewise(dir.path(), &args);
    let (stdout, stderr) = texts(&result);
    assert!(result.status.success(), "{stderr}");
    stdout
}

#[test]
fn vectors_trains_writes_a_file_and_reproduces_on_one_thread() {
    let dir = TempDir::new("w2v");
    std::fs::write(dir.join("corpus.txt"), corpus(400)).unwrap();
    let stdout = train(&dir, "a.txt", &[]);
    let losses: Vec<f64> = stdout
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .map(|l| l.split("loss ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 3, "{stdout}");
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0) && losses[2] < losses[0], "{stdout}");
    let a = Vectors::read(&dir.join("a.txt"), None).unwrap();
    assert_eq!((a.dim(), a.words()[0].as_str()), (12, "the"), "most frequent first");
    assert!(stdout.contains(&format!("wrote a.txt ({} vectors of dimension 12, word2vec)", a.len())));

    // One thread: the same seed gives the same bytes; binary and CBOW run too.
    train(&dir, "b.txt", &[]);
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), std::fs::read(dir.join("b.txt")).unwrap());
    train(&dir, "c.bin", &["--binary", "--cbow", "--limit", "5"]);
    let c = Vectors::read(&dir.join("c.bin"), Some(VectorFormat::Word2vecBinary)).unwrap();
    assert_eq!((c.len(), &c.words()[..2]), (5, &a.words()[..2]));

    // Neighbours: k lines `word similarity`, most similar first, the word itself left out.
    let result = stagewise(dir.path(), &["neighbors", "--vectors", "a.txt", "cat", "--k", "4"]);
    let (stdout, stderr) = texts(&result);
    assert!(result.status.success(), "{stderr}");
    let sims: Vec<(String, f32)> = stdout
        .lines()
        .map(|l| {
            let (w, s) = l.split_once(' ').unwrap();
            (w.to_owned(), s.parse().unwrap())
        })
        .collect();
    assert_eq!(sims.len(), 4, "{stdout}");
    assert!(sims.windows(2).all(|p| p[0].1 >= p[1].1) && sims.iter().all(|(w, _)| w != "cat"), "{stdout}");

    // Word pairs: rho and the count of pairs used.
    std::fs::write(
        dir.join("pairs.tsv"),
        "# a comment\ncat\tdog\t9\ncat\tmat\t2\nking\tqueen\t8\nzebra\tcat\t1\n",
    )
    .unwrap();
    let result = stagewise(dir.path(), &["vectors-eval", "--vectors", "a.txt", "--pairs", "pairs.tsv"]);
    let (stdout, stderr) = texts(&result);
    assert!(result.status.success(), "{stderr}");
    assert!(stdout.starts_with("spearman ") && stdout.contains("on 3 of 4 pairs of pairs.tsv"), "{stdout}");
}

#[test]
fn word_vector_commands_fail_in_one_line() {
    let dir = TempDir::new("w2v-errors");
    std::fs::write(dir.join("corpus.txt"), corpus(20)).unwrap();
    std::fs::write(dir.join("v.txt"), "2 2\na 1 2\nb 1\n").unwrap();
    for (args, message) in [
        (&["vectors", "--data", "corpus.txt", "--out", "o.txt", "--min-count", "1000"][..], "--min-count"),
        (&["vectors", "--data", "corpus.txt", "--out", "o.txt", "--window", "0"][..], "--window"),
        (&["vectors", "--data", "corpus.txt", "--out", "o.txt", "--tokenizer", "bpe"][..], "--tokenizer"),
        (&["neighbors", "--vectors", "v.txt", "a"][..], "v.txt:3"),
        (&["neighbors", "--vectors", "missing.txt", "a"][..], "missing.txt"),
        (
            &["vectors-eval", "--vectors", "v.txt", "--format", "glove"][..],
            "v.txt:2: `a` has 2 values, expected 1",
        ),
    ] {
        let result = stagewise(dir.path(), args);
        let (_, stderr) = texts(&result);
        assert!(!result.status.success(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    std::fs::write(dir.join("v.txt"), "2 2\na 1 2\nb 1 3\n").unwrap();
    let result = stagewise(dir.path(), &["neighbors", "--vectors", "v.txt", "zebra"]);
    assert!(texts(&result).1.contains("no vector for `zebra`"));
}
