//! `cargo xtask bench`: Stagewise's throughput side by side with the PyTorch reference.
//!
//! This task only orchestrates; the measuring and the reporting are the `stagewise` binary's. One
//! invocation
//! 1. builds the release `stagewise` binary once (`$CARGO build --release -p stagewise-pipeline`);
//! 2. measures the practical f32 GEMM peak through faer (`stagewise bench-gemm`, N = 2048 and
//!    4096, 1 and 2 threads), and the rate of the head's packed AVX-512 kernel
//!    (`--kernel packed`, `[2048, 512]×[512, 2048]`) beside it;
//! 3. for each configuration (`configs/seed.toml`, `large.toml`, `gru.toml`, `lstm-2layer.toml`,
//!    or those named by `--configs`) x threads (1, 2) x mode
//!    (train, infer), runs R repeats, each a fresh `stagewise bench-run` process then (with
//!    `--torch PYTHON`) a fresh `benches/reference/bench_reference.py` process, alternating, so
//!    each run's peak resident memory is its own; then measures the GEMM peak again;
//! 4. records where and how it ran and every child's JSON line in a samples file
//!    (`target/bench-samples.jsonl`, one record per line, in the format of
//!    `stagewise_pipeline::bench::report`), and runs `stagewise bench-report` on it, which prints
//!    the tables, writes the JSON report (`--json`, default `target/bench.json`) and rewrites the
//!    `<!-- bench:start -->` ... `<!-- bench:end -->` section of `docs/results.md`.

use serde_json::{Map, Value, json};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Where to write the JSON results (default: target/bench.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// A Python with torch: also run the PyTorch reference, alternating with ours.
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<OsString>,
    /// Timed windows per run (default 10; 5 with --quick).
    #[arg(long)]
    pub windows: Option<usize>,
    /// Untimed warm-up windows per run (default 2; 1 with --quick).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Runs per (implementation, configuration, threads, mode); the median is reported
    /// (default 3; 1 with --quick).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Smoke test: few windows, one repeat (figures not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// The corpus (default: each configuration's `data.path`, i.e. data/shakespeare.txt).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Leave docs/results.md alone.
    #[arg(long)]
    pub no_docs: bool,
    /// Configurations to measure, by name (`configs/NAME.toml`), comma-separated
    /// (default: seed,large,gru,lstm-2layer).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub configs: Vec<String>,
}

/// Configurations measured: the files `configs/NAME.toml`, which hold their sizes.
const CONFIGS: [&str; 4] = ["seed", "large", "gru", "lstm-2layer"];
/// Thread counts measured.
const THREADS: [usize; 2] = [1, 2];
/// Modes measured.
const MODES: [&str; 2] = ["train", "infer"];
/// GEMM sizes measured.
const GEMM_SIZES: [usize; 2] = [2048, 4096];

/// Run lengths after applying `--quick` and explicit overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    /// Timed windows per run.
    windows: usize,
    /// Untimed warm-up windows per run.
    warmup: usize,
    /// Runs per (implementation, configuration, threads, mode).
    repeats: usize,
    /// Timed products per GEMM measurement.
    gemm_repeats: usize,
}

impl Plan {
    /// The plan of `--quick` or the full run, with `--windows`, `--warmup`, `--repeats` applied.
    fn from_args(a: &BenchArgs) -> Result<Plan, String> {
        let (windows, warmup, repeats, gemm_repeats) = if a.quick { (5, 1, 1, 1) } else { (10, 2, 3, 3) };
        let plan = Plan {
            windows: a.windows.unwrap_or(windows),
            warmup: a.warmup.unwrap_or(warmup),
            repeats: a.repeats.unwrap_or(repeats),
            gemm_repeats,
        };
        if plan.windows == 0 || plan.repeats == 0 {
            return Err("--windows and --repeats must be at least 1".into());
        }
        Ok(plan)
    }
}

/// The samples file `stagewise bench-report` reads: one JSON record per line, written as the
/// measurements come (a failed run leaves the ones before it).
struct Samples {
    path: PathBuf,
    file: File,
}

impl Samples {
    fn create(path: PathBuf) -> Result<Samples, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Samples { path, file })
    }

    fn write(&mut self, record: &Value) -> Result<(), String> {
        writeln!(self.file, "{record}").map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// The last line of a child's stdout that starts with `{`, parsed as a JSON object, tagged as
/// `record` (children may print other lines first).
fn child_record(stdout: &str, record: &str) -> Result<Map<String, Value>, String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| "no JSON line in the output".to_string())?;
    let mut object: Map<String, Value> = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    object.insert("record".into(), record.into());
    Ok(object)
}

/// A number of a child's record, for the progress lines.
fn number(o: &Map<String, Value>, key: &str) -> Result<f64, String> {
    o.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("no number `{key}` in {}", Value::from(o.clone())))
}

/// The processor's model name, from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU (no /proc/cpuinfo)".into())
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The command line as typed, for the report (`cargo xtask bench ...`).
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| if a.contains(char::is_whitespace) { format!("'{a}'") } else { a })
        .collect();
    format!("cargo xtask {}", args.join(" "))
}

/// Runs a child, returning its stdout, or an error with the end of its stderr.
pub(crate) fn run_child(cmd: &mut Command, what: &str) -> Result<String, String> {
    let Output { status, stdout, stderr } =
        cmd.output().map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{what} failed ({status}):\n{}", tail.join("\n")));
    }
    Ok(stdout)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the root) or `target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// One pass of `stagewise bench-gemm` over [`THREADS`] x [`GEMM_SIZES`] through faer, then the
/// head's packed kernel at [`PACKED_SIZE`] (on processors with AVX-512, which it needs); each line
/// is recorded with its pass.
fn gemm_pass(
    bin: &Path,
    root: &Path,
    pass: usize,
    repeats: usize,
    samples: &mut Samples,
) -> Result<(), String> {
    let mut runs: Vec<(&str, usize, usize)> =
        THREADS.iter().flat_map(|&t| GEMM_SIZES.map(|n| ("faer", n, t))).collect();
    if packed_kernel_available() {
        runs.extend(THREADS.iter().map(|&t| ("packed", PACKED_SIZE, t)));
    }
    for (kernel, size, threads) in runs {
        let (n, t, r) = (size.to_string(), threads.to_string(), repeats.to_string());
        let what = format!("bench-gemm --kernel {kernel} {size} at {threads} threads");
        let out = run_child(
            Command::new(bin).current_dir(root).args([
                "bench-gemm",
                "--kernel",
                kernel,
                "--size",
                &n,
                "--threads",
                &t,
                "--repeats",
                &r,
            ]),
            &what,
        )?;
        let mut g = child_record(&out, "gemm").map_err(|e| format!("{what} output: {e}"))?;
        g.insert("pass".into(), pass.into());
        let field = |key: &str| number(&g, key).map_err(|e| format!("{what} output: {e}"));
        let (depth, gflops, median) = (field("depth")?, field("gflops")?, field("median_gflops")?);
        eprintln!(
            "  gemm (pass {pass}) {kernel} {size}×{depth}×{size} {threads} thread(s): {gflops:.1} GFLOP/s (median {median:.1})"
        );
        samples.write(&Value::Object(g))?;
    }
    Ok(())
}

/// Side `N` of the packed kernel's `[N, 512]×[512, N]` measurement.
const PACKED_SIZE: usize = 2048;

/// Whether this processor runs the head's packed kernel (AVX-512F), as `core::packed` decides.
fn packed_kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Runs `cargo xtask bench`; returns the exit code.
pub fn run(root: &Path, args: &BenchArgs) -> Result<i32, String> {
    let plan = Plan::from_args(args)?;
    let cargo = crate::cargo();
    eprintln!("xtask bench: building the release binary");
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "stagewise-pipeline", "--bin", "stagewise"])
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", cargo.to_string_lossy()))?;
    if !status.success() {
        return Err(format!("the release build failed ({status})"));
    }
    let bin = target_dir(root).join("release").join(format!("stagewise{}", std::env::consts::EXE_SUFFIX));
    let script = root.join("benches/reference/bench_reference.py");

    let torch = match &args.torch {
        Some(py) => {
            let out = run_child(
                Command::new(py).current_dir(root).args(["-c", "import torch; print(torch.__version__)"]),
                "checking the --torch Python",
            )?;
            Some(out.trim().to_string())
        }
        None => None,
    };
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rustc (unknown version)".into());
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (cpu, load_before) = (cpu_model(), load_average());
    eprintln!(
        "xtask bench: {nproc} CPUs ({cpu}), load {load_before}; {} windows (+{} warm-up), {} repeat(s){}",
        plan.windows,
        plan.warmup,
        plan.repeats,
        if args.quick { ", --quick" } else { "" }
    );
    let samples_path = target_dir(root).join("bench-samples.jsonl");
    let mut samples = Samples::create(samples_path.clone())?;
    samples.write(&json!({
        "record": "context",
        "started_unix": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "command": command_line(),
        "nproc": nproc,
        "cpu": cpu,
        "rustc": rustc,
        "torch": torch,
        "load_before": load_before,
        "quick": args.quick,
        "windows": plan.windows,
        "warmup": plan.warmup,
        "repeats": plan.repeats,
    }))?;

    gemm_pass(&bin, root, 1, plan.gemm_repeats, &mut samples)?;

    let impls: Vec<&str> =
        if args.torch.is_some() { vec!["stagewise", "pytorch"] } else { vec!["stagewise"] };
    let configs: Vec<String> = if args.configs.is_empty() {
        CONFIGS.iter().map(|c| c.to_string()).collect()
    } else {
        args.configs.clone()
    };
    for config in &configs {
        let path = root.join(format!("configs/{config}.toml"));
        if !path.is_file() {
            return Err(format!("--configs: no configuration {config} ({} is not a file)", path.display()));
        }
    }
    let total = configs.len() * THREADS.len() * MODES.len() * plan.repeats * impls.len();
    let mut done = 0;
    for config in &configs {
        let config_path = format!("configs/{config}.toml");
        for threads in THREADS {
            for mode in MODES {
                for _ in 0..plan.repeats {
                    for &implementation in &impls {
                        let mut cmd = match (implementation, &args.torch) {
                            ("pytorch", Some(py)) => {
                                let mut c = Command::new(py);
                                c.arg(&script);
                                c
                            }
                            _ => {
                                let mut c = Command::new(&bin);
                                c.arg("bench-run");
                                c
                            }
                        };
                        cmd.current_dir(root).args(["--config", &config_path]);
                        cmd.args(["--threads", &threads.to_string(), "--mode", mode]);
                        cmd.args([
                            "--windows",
                            &plan.windows.to_string(),
                            "--warmup",
                            &plan.warmup.to_string(),
                        ]);
                        if let Some(d) = &args.data {
                            cmd.arg("--data").arg(d);
                        }
                        let what = format!("{implementation} {config} {threads} thread(s) {mode}");
                        let out = run_child(&mut cmd, &what)?;
                        let s = child_record(&out, "run").map_err(|e| format!("{what} output: {e}"))?;
                        let tokens_per_s =
                            number(&s, "tokens_per_s").map_err(|e| format!("{what} output: {e}"))?;
                        let rss = s.get("peak_rss_mb").and_then(Value::as_f64);
                        done += 1;
                        eprintln!(
                            "  [{done:>2}/{total}] {what}: {tokens_per_s:.0} tokens/s, peak RSS {}",
                            rss.map_or("n/a".into(), |m| format!("{m:.0} MiB"))
                        );
                        samples.write(&Value::Object(s))?;
                    }
                }
            }
        }
    }
    samples.write(&json!({ "record": "load_after", "load_after": load_average() }))?;
    // The peak again: a busy machine during the first pass would otherwise understate it.
    gemm_pass(&bin, root, 2, plan.gemm_repeats, &mut samples)?;
    drop(samples);
    eprintln!("xtask bench: samples in {}", samples_path.display());

    // The report, from this process's directory, so a relative --json is where the user meant.
    let json_path = args.json.clone().unwrap_or_else(|| target_dir(root).join("bench.json"));
    let mut report = Command::new(&bin);
    report.arg("bench-report").arg("--samples").arg(&samples_path).arg("--json").arg(&json_path);
    if args.no_docs {
        report.arg("--no-docs");
    } else {
        report.arg("--docs").arg(root.join("docs/results.md"));
    }
    let status = report.status().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !status.success() {
        return Err(format!(
            "stagewise bench-report failed ({status}); the samples are in {}",
            samples_path.display()
        ));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_and_overrides() -> Result<(), String> {
        let args = |quick, windows| BenchArgs {
            json: None,
            torch: None,
            windows,
            warmup: None,
            repeats: None,
            quick,
            data: None,
            no_docs: false,
            configs: Vec::new(),
        };
        assert_eq!(
            Plan::from_args(&args(false, None))?,
            Plan { windows: 10, warmup: 2, repeats: 3, gemm_repeats: 3 }
        );
        assert_eq!(
            Plan::from_args(&args(true, None))?,
            Plan { windows: 5, warmup: 1, repeats: 1, gemm_repeats: 1 }
        );
        assert_eq!(Plan::from_args(&args(true, Some(7)))?.windows, 7);
        assert!(Plan::from_args(&args(false, Some(0))).is_err());
        Ok(())
    }

    #[test]
    fn child_lines_are_tagged_records() -> Result<(), String> {
        let out = "warming up\n{\"a\":1}\nnoise\n{\"impl\":\"pytorch\",\"tokens_per_s\":2.5,\"torch\":\"2.15.0\"}\n\n";
        let o = child_record(out, "run")?;
        assert_eq!(o.get("record"), Some(&Value::from("run")));
        assert_eq!(o.get("torch"), Some(&Value::from("2.15.0")));
        assert_eq!(number(&o, "tokens_per_s")?, 2.5);
        assert!(number(&o, "impl").is_err() && number(&o, "absent").is_err());
        assert!(child_record("no json here\n", "run").is_err());
        assert!(child_record("{\"a\":1,}\n", "run").is_err());
        Ok(())
    }
}
