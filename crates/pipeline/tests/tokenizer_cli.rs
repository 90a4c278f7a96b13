//! `stagewise train-tokenizer` and `stagewise encode`: HF `tokenizer.json` files trained, read
//! and used line by line, with the ids of the fixture `tokenizers` made.

use crate::util::{TempDir, corpus, stagewise, texts};
use std::path::PathBuf;

fn bpe_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tokenizer/tests/fixtures/bpe").join(name)
}

/// Runs `stagewise` with `stdin` fed from a file, returning the output.
fn with_input(dir: &TempDir, input: &str, args: &[&str]) -> std::process::Output {
    let file = dir.join("stdin.txt");
    std::fs::write(&file, input).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_stagewise"))
        .args(args)
        .current_dir(dir.path())
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap()
}

#[test]
fn encode_gives_the_ids_tokenizers_gives_line_by_line() {
    let dir = TempDir::new("encode-fixture");
    let fixture = std::fs::read_to_string(bpe_fixture("ids.jsonl")).unwrap();
    let (mut text, mut want) = (String::new(), String::new());
    for line in fixture.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let line_text = v["text"].as_str().unwrap();
        if line_text.contains('\n') {
            continue;
        }
        text.push_str(line_text);
        text.push('\n');
        let ids: Vec<String> = v["ids"].as_array().unwrap().iter().map(|x| x.to_string()).collect();
        want.push_str(&ids.join(" "));
        want.push('\n');
    }
    std::fs::write(dir.join("lines.txt"), &text).unwrap();
    let tok = bpe_fixture("tokenizer.json");
    for threads in ["1", "2"] {
        let out = stagewise(
            dir.path(),
            &["encode", "--tokenizer", tok.to_str().unwrap(), "--input", "lines.txt", "--threads", threads],
        );
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout, want);
    }
    // Standard input by default; --decode gives the lines back.
    let out = with_input(&dir, &text, &["encode", "--tokenizer", tok.to_str().unwrap()]);
    assert_eq!(texts(&out).0, want);
    let out = with_input(&dir, &want, &["encode", "--tokenizer", tok.to_str().unwrap(), "--decode"]);
    assert_eq!(texts(&out).0, text);
}

#[test]
fn trained_tokenizers_round_trip_and_are_deterministic() {
    let dir = TempDir::new("train-tokenizer");
    let text = format!("{}Grüße, 分词! 🙂\n  two  spaces\n", corpus(200));
    std::fs::write(dir.join("corpus.txt"), &text).unwrap();
    let train = |kind: &str, size: &str, threads: &str, out: &str| {
        let result = stagewise(
            dir.path(),
            &[
                "train-tokenizer",
                "--kind",
                kind,
                "--data",
                "corpus.txt",
                "--vocab-size",
                size,
                "--threads",
                threads,
                "--out",
                out,
            ],
        );
        let (stdout, stderr) = texts(&result);
        assert!(result.status.success(), "{kind}: {stderr}");
        assert_eq!(stdout, format!("wrote {out}\n"));
        std::fs::read_to_string(dir.join(out)).unwrap()
    };
    let one = train("bpe", "300", "1", "bpe1.json");
    assert_eq!(one, train("bpe", "300", "2", "bpe2.json"), "the same file at any thread count");
    let doc: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(doc["model"]["type"], "BPE");
    assert_eq!(doc["model"]["vocab"].as_object().unwrap().len(), 300);
    for (kind, size) in [("bpe", "300"), ("char", "60"), ("word", "20")] {
        let file = format!("{kind}.json");
        train(kind, size, "1", &file);
        let ids = stagewise(dir.path(), &["encode", "--tokenizer", &file, "--input", "corpus.txt"]);
        assert!(ids.status.success(), "{kind}: {}", texts(&ids).1);
        assert_eq!(ids.stdout.iter().filter(|&&b| b == b'\n').count(), text.lines().count(), "{kind}");
        let back = with_input(&dir, &texts(&ids).0, &["encode", "--tokenizer", &file, "--decode"]);
        let decoded = texts(&back).0;
        match kind {
            "bpe" | "char" => assert_eq!(decoded, text, "{kind}: exact round trip"),
            // Lower-cased words joined by spaces, rare words (beyond 20) as <unk>.
            _ => {
                assert_eq!(decoded.lines().count(), text.lines().count());
                assert!(decoded.contains(" the ") && decoded.contains("<unk>") && !decoded.contains("Grüße"));
            }
        }
    }
}

#[test]
fn bad_input_is_one_line_naming_file_and_line() {
    let dir = TempDir::new("encode-errors");
    let tok = bpe_fixture("tokenizer.json");
    let tok = tok.to_str().unwrap();
    std::fs::write(dir.join("ids.txt"), "1 2 3\n4 x 5\n").unwrap();
    let out = stagewise(dir.path(), &["encode", "--tokenizer", tok, "--input", "ids.txt", "--decode"]);
    let (_, stderr) = texts(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ids.txt:2") && stderr.contains("`x`") && stderr.lines().count() == 1,
        "{stderr}"
    );
    std::fs::write(dir.join("ids.txt"), "1\n99999\n").unwrap();
    let out = stagewise(dir.path(), &["encode", "--tokenizer", tok, "--input", "ids.txt", "--decode"]);
    assert!(texts(&out).1.contains("ids.txt:2") && texts(&out).1.contains("99999"), "{}", texts(&out).1);
    std::fs::write(dir.join("bad.txt"), b"ok\n\xff\n").unwrap();
    let out = stagewise(dir.path(), &["encode", "--tokenizer", tok, "--input", "bad.txt"]);
    assert!(texts(&out).1.contains("bad.txt:2") && texts(&out).1.contains("UTF-8"), "{}", texts(&out).1);
    let mut doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tok).unwrap()).unwrap();
    doc["normalizer"] = serde_json::json!({"type": "NFKC"});
    std::fs::write(dir.join("nfkc.json"), doc.to_string()).unwrap();
    let out = stagewise(dir.path(), &["encode", "--tokenizer", "nfkc.json", "--input", "bad.txt"]);
    let stderr = texts(&out).1;
    assert!(
        stderr.contains("nfkc.json") && stderr.contains("NFKC") && stderr.contains("kind = \"hf\""),
        "{stderr}"
    );
    let out = stagewise(
        dir.path(),
        &["train-tokenizer", "--kind", "bpe", "--data", "bad.txt", "--vocab-size", "10", "--out", "x.json"],
    );
    assert!(texts(&out).1.contains("bad.txt"), "{}", texts(&out).1);
}
