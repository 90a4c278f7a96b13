//! The committed bad-input corpus (`tests/bad_inputs/`, its cases in `cases.txt`): the built
//! binary on every case must end with exit code 1 or 2 and exactly one `error:` line — no panic,
//! no abort, no backtrace, no `internal error`.

use crate::util::{TINY_TOML, TempDir, corpus, stagewise, texts};
use std::path::{Path, PathBuf};

fn bad_inputs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_inputs")
}

/// A copy of the checkpoint `good`, damaged as `kind` says, in `dir`.
fn damaged(good: &[u8], kind: &str, dir: &Path) -> PathBuf {
    let bytes = match kind {
        "cut-in-header" => good[..20].to_vec(),
        "cut-in-body" => good[..good.len() - 100].to_vec(),
        "flipped-byte" => {
            let mut b = good.to_vec();
            let last = b.len() - 1;
            b[last] ^= 0x40;
            b
        }
        "version-99" => {
            let mut b = good.to_vec();
            b[8] = 99;
            b
        }
        "empty" => Vec::new(),
        other => panic!("cases.txt names an unknown damage `{other}`"),
    };
    let path = dir.join(format!("damaged-{kind}.ckpt"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn every_bad_input_gets_one_clean_error_line() {
    let dir = TempDir::new("bad-inputs");
    // Long enough for the default batch of 32 streams, so that each case fails where it means to.
    std::fs::write(dir.join("corpus.txt"), corpus(1000)).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    let made = stagewise(dir.path(), &["train", "--config", "tiny.toml", "--epochs", "1", "--out", "good"]);
    assert!(made.status.success(), "{:?}", texts(&made));
    let ckpt = dir.join("good/model.ckpt");
    let good = std::fs::read(&ckpt).unwrap();

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity_small.safetensors");
    let cases = std::fs::read_to_string(bad_inputs().join("cases.txt")).unwrap();
    let mut ran = 0;
    for line in cases.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let parts: Vec<&str> = line.split(" | ").collect();
        let [name, args, expected] = parts[..] else { panic!("malformed line in cases.txt: {line}") };
        let out = dir.join(format!("out-{name}"));
        let args: Vec<String> = args
            .split(' ')
            .map(|a| {
                let a = a
                    .replace("{in}", bad_inputs().to_str().unwrap())
                    .replace("{corpus}", dir.join("corpus.txt").to_str().unwrap())
                    .replace("{out}", out.to_str().unwrap())
                    .replace("{ckpt}", ckpt.to_str().unwrap())
                    .replace("{fixture}", fixture.to_str().unwrap());
                match a.strip_prefix("{bad:").and_then(|k| k.strip_suffix('}')) {
                    Some(kind) => damaged(&good, kind, dir.path()).to_str().unwrap().to_owned(),
                    None => a,
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = stagewise(dir.path(), &args);
        let (stdout, stderr) = texts(&run);
        let code = run.status.code();
        let context = format!("case {name}: exit {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(matches!(code, Some(1 | 2)), "{context}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{context}");
        assert!(errors[0].contains(expected), "case {name}: expected `{expected}` in `{}`", errors[0]);
        for sign in ["panicked", "internal error", "backtrace", "memory allocation of"] {
            assert!(!stderr.contains(sign), "{context}");
        }
        ran += 1;
    }
    assert!(ran >= 45, "only {ran} cases ran");
}
