//! The hidden `bench-run` / `bench-gemm` commands behind `cargo xtask bench`: they exit 0 and print
//! one JSON line with the keys the task reads. (No timing is asserted: timing belongs in
//! benchmarks.) And `bench-report`, which turns a samples file of such lines into the tables, the
//! JSON report and the docs section.

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

/// A samples file as `cargo xtask bench --torch PYTHON` records it: the context, a GEMM pass, the
/// runs (Stagewise and PyTorch alternating; the PyTorch lines carry their extra `torch` key), the
/// load average after them and the second GEMM pass.
const SAMPLES: &str = r#"{"record":"context","started_unix":1704110400,"command":"cargo xtask bench --torch python3","nproc":2,"cpu":"Test CPU","rustc":"rustc 1.95.0","torch":"2.15.0","load_before":"0.10 0.20 0.30","quick":false,"windows":10,"warmup":2,"repeats":2}
{"record":"gemm","pass":1,"kernel":"faer","size":2048,"depth":2048,"threads":1,"gflops":100.0,"median_gflops":95.0,"repeats":3}
{"record":"gemm","pass":1,"kernel":"faer","size":2048,"depth":2048,"threads":2,"gflops":400.0,"median_gflops":390.0,"repeats":3}
{"record":"run","impl":"stagewise","config":"seed","threads":2,"mode":"train","tokens_per_s":24000.0,"peak_rss_mb":230.0,"windows":10,"warmup":2,"tokens":20480,"seconds":0.85,"embed":100,"hidden":128,"vocab":10000,"batch":32,"bptt":64}
{"record":"run","impl":"pytorch","config":"seed","threads":2,"mode":"train","tokens_per_s":10000.0,"peak_rss_mb":1100.0,"windows":10,"warmup":2,"tokens":20480,"seconds":2.05,"embed":100,"hidden":128,"vocab":10000,"batch":32,"bptt":64,"torch":"2.15.0"}
{"record":"run","impl":"stagewise","config":"seed","threads":2,"mode":"train","tokens_per_s":26000.0,"peak_rss_mb":232.0,"windows":10,"warmup":2,"tokens":20480,"seconds":0.79,"embed":100,"hidden":128,"vocab":10000,"batch":32,"bptt":64}
{"record":"run","impl":"pytorch","config":"seed","threads":2,"mode":"train","tokens_per_s":9000.0,"peak_rss_mb":1090.0,"windows":10,"warmup":2,"tokens":20480,"seconds":2.28,"embed":100,"hidden":128,"vocab":10000,"batch":32,"bptt":64,"torch":"2.15.0"}
{"record":"load_after","load_after":"1.50 1.00 0.50"}
{"record":"gemm","pass":2,"kernel":"faer","size":2048,"depth":2048,"threads":2,"gflops":380.0,"median_gflops":375.0,"repeats":3}
"#;

#[test]
fn bench_report_prints_the_tables_and_writes_the_json_and_the_docs_section() {
    let dir = TempDir::new("bench-report");
    std::fs::write(dir.join("samples.jsonl"), SAMPLES).unwrap();
    let docs = "# Results\n\nkept\n\n<!-- bench:start -->\nold figures\n<!-- bench:end -->\n\nalso kept\n";
    std::fs::write(dir.join("results.md"), docs).unwrap();
    let args = ["bench-report", "--samples", "samples.jsonl", "--json", "out/b.json", "--docs", "results.md"];
    let out = stagewise(dir.path(), &args);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for line in [
        "| before | faer | 2048³ | 2 | 400.0 | 390.0 |",
        "peak at 1 thread(s): 100.0 GFLOP/s",
        "peak at 2 thread(s): 400.0 GFLOP/s",
        "| stagewise | seed | 2 | train | 25,000 | 24,000–26,000 | 52.4 % | 232 MiB | **2.63×** | 0.21× |",
        "| pytorch | seed | 2 | train | 9,500 | 9,000–10,000 | 19.9 % | 1,100 MiB |  |  |",
        "- seed training tokens/s ≥ 2× PyTorch's (2 threads): 2.63× — met",
        "- seed training peak RSS ≤ ¼ of PyTorch's: 232 vs 1,100 MiB = 0.21× — met",
        "load average before: 0.10 0.20 0.30; after: 1.50 1.00 0.50",
        "wrote out/b.json",
        "updated results.md",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/b.json")).unwrap()).unwrap();
    assert_eq!((json["peak_gflops"].as_f64(), json["peak_gflops_1t"].as_f64()), (Some(400.0), Some(100.0)));
    assert_eq!(json["packed_peak_gflops"], serde_json::Value::Null);
    assert_eq!(json["gemm"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["gemm"][2]["pass"], 2);
    assert_eq!(
        (&json["date"], &json["torch"], &json["load_after"], &json["repeats"], &json["quick"]),
        (&"2024-01-01 12:00".into(), &"2.15.0".into(), &"1.50 1.00 0.50".into(), &2.into(), &false.into())
    );
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((&runs[0]["impl"], &runs[0]["mode"]), (&"stagewise".into(), &"train".into()));
    assert_eq!(runs[0]["tokens_per_s_samples"], serde_json::json!([24000, 26000]));
    assert_eq!(runs[0]["ratio_vs_pytorch"].as_f64(), Some(25_000.0 / 9_500.0));
    assert_eq!(runs[1]["ratio_vs_pytorch"], serde_json::Value::Null);

    let updated = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(updated.starts_with("# Results\n\nkept\n\n<!-- bench:start -->\n## Throughput"), "{updated}");
    assert!(updated.ends_with("<!-- bench:end -->\n\nalso kept\n"), "{updated}");
    assert!(!updated.contains("old figures"), "{updated}");
    for line in [
        "Generated by `cargo xtask bench --torch python3` on 2024-01-01 12:00 (UTC).",
        "Machine: 2 logical CPUs, Test CPU; rustc 1.95.0, PyTorch 2.15.0.",
        "2 runs per row, Stagewise and PyTorch alternating, median reported.",
        "### Throughput targets",
    ] {
        assert!(updated.contains(line), "no `{line}` in:\n{updated}");
    }
}

#[test]
fn bench_report_leaves_the_docs_alone_and_names_bad_lines() {
    let dir = TempDir::new("bench-report-bad");
    std::fs::write(dir.join("samples.jsonl"), SAMPLES).unwrap();
    let out = stagewise(dir.path(), &["bench-report", "--samples", "samples.jsonl", "--no-docs"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    // No docs/results.md here: with --no-docs it is not read; without --json nothing is written.
    assert!(!stdout.contains("updated") && !stdout.contains("wrote"), "{stdout}");

    let bad = SAMPLES.replacen(r#""mode":"train""#, r#""mode":"sing""#, 1);
    std::fs::write(dir.join("bad.jsonl"), bad).unwrap();
    let out = stagewise(dir.path(), &["bench-report", "--samples", "bad.jsonl", "--no-docs"]);
    let (_, stderr) = texts(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.starts_with("error: bad.jsonl, line 4: ") && stderr.contains("sing"), "{stderr}");

    let out = stagewise(dir.path(), &["bench-report", "--samples", "absent.jsonl", "--no-docs"]);
    let (_, stderr) = texts(&out);
    assert!(!out.status.success() && stderr.contains("absent.jsonl"), "{stderr}");
}
