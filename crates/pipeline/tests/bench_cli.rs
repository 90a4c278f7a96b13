//! The hidden `bench-run` / `bench-gemm` commands behind `cargo xtask bench`: they exit 0 and print
//! one JSON line with the keys the task reads. (No timing is asserted: timing belongs in
//! benchmarks.)

use crate::util::{TINY_TOML, TempDir, corpus, stagewise, texts};

/// The last stdout line of a successful run, parsed as a JSON object.
fn json_line(dir: &std::path::Path, args: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let out = stagewise(dir, args);
    let (stdout, stderr) = texts(&out);
    let context = format!("stagewise {}\nstdout:\n{stdout}\nstderr:\n{stderr}", args.join(" "));
    assert!(out.status.success(), "{context}");
    let line = stdout.lines().last().unwrap_or_default();
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => panic!("not a JSON object line: {context}"),
    }
}

#[test]
fn bench_run_prints_one_json_line_per_mode() {
    let dir = TempDir::new("bench-run");
    std::fs::write(dir.join("corpus.txt"), corpus(60)).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    for mode in ["train", "infer"] {
        // 30 windows > the ~12 the tiny training split holds: the stream restarts (twice).
        let args = ["bench-run", "--config", "tiny.toml", "--threads", "1", "--mode", mode];
        let o = json_line(dir.path(), &[&args[..], &["--windows", "30", "--warmup", "1"]].concat());
        for key in
            ["impl", "config", "threads", "mode", "tokens_per_s", "peak_rss_mb", "embed", "hidden", "vocab"]
        {
            assert!(o.contains_key(key), "no `{key}` in {o:?}");
        }
        assert_eq!(o["impl"], "stagewise");
        assert_eq!(o["config"], "tiny");
        assert_eq!(o["threads"], 1);
        assert_eq!(o["mode"], mode);
        assert_eq!(
            (o["embed"].as_u64(), o["hidden"].as_u64(), o["batch"].as_u64()),
            (Some(8), Some(16), Some(4))
        );
        assert!(o["tokens_per_s"].as_f64().is_some_and(|x| x > 0.0), "{o:?}");
        // 30 windows of at most B·T = 32 targets each.
        let tokens = o["tokens"].as_u64().unwrap();
        assert!(tokens > 0 && tokens <= 30 * 32, "{o:?}");
        if cfg!(target_os = "linux") {
            assert!(o["peak_rss_mb"].as_f64().is_some_and(|x| x > 0.0), "{o:?}");
        }
    }
}

#[test]
fn bench_run_takes_the_corpus_from_the_flag_and_names_bad_input() {
    let dir = TempDir::new("bench-run-data");
    std::fs::write(dir.join("other.txt"), corpus(60)).unwrap();
    std::fs::write(dir.join("tiny.toml"), TINY_TOML).unwrap();
    let args = ["bench-run", "--config", "tiny.toml", "--data", "other.txt", "--windows", "2"];
    assert_eq!(json_line(dir.path(), &args)["mode"], "train");

    let out = stagewise(dir.path(), &["bench-run", "--config", "tiny.toml", "--windows", "2"]);
    let (_, stderr) = texts(&out);
    assert!(
        !out.status.success() && stderr.starts_with("error: ") && stderr.contains("corpus.txt"),
        "{stderr}"
    );
}

#[test]
fn bench_gemm_prints_one_json_line() {
    let dir = TempDir::new("bench-gemm");
    let o = json_line(dir.path(), &["bench-gemm", "--size", "48", "--threads", "2", "--repeats", "2"]);
    assert_eq!(
        (o["size"].as_u64(), o["threads"].as_u64(), o["repeats"].as_u64()),
        (Some(48), Some(2), Some(2))
    );
    assert!(o["gflops"].as_f64().is_some_and(|x| x > 0.0), "{o:?}");
}

#[test]
fn bench_commands_are_hidden_from_help() {
    let dir = TempDir::new("bench-help");
    let (stdout, _) = texts(&stagewise(dir.path(), &["--help"]));
    assert!(stdout.contains("train") && !stdout.contains("bench"), "{stdout}");
}
