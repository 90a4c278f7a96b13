//! `cargo xtask bench`: the side-by-side throughput measurement of issue 3.
//!
//! One invocation
//! 1. builds the release `stagewise` binary once (`$CARGO build --release -p stagewise-pipeline`);
//! 2. measures the practical f32 GEMM peak through faer (`stagewise bench-gemm`, N = 2048 and
//!    4096, 1 and 2 threads; the peak of a thread count is its best rate over the sizes), and
//!    the rate of the head's packed AVX-512 kernel (`--kernel packed`, `[2048, 512]×[512, 2048]`),
//!    reported beside it; MFU is against faer's peak, the issue's yardstick;
//! 3. for each configuration (seed, large) x threads (1, 2) x mode (train, infer), runs R repeats,
//!    each a fresh `stagewise bench-run` process then (with `--torch PYTHON`) a fresh
//!    `benches/reference/bench_reference.py` process, alternating, so each run's peak resident
//!    memory is its own;
//! 4. reports per (implementation, configuration, threads, mode) the median tokens/s, the model
//!    FLOP utilisation `tokens/s x flops_per_token / peak` (peak of the same thread count), and
//!    the largest peak RSS; prints a table, writes JSON (`--json`, default `target/bench.json`)
//!    and rewrites the `<!-- bench:start -->` ... `<!-- bench:end -->` section of
//!    `docs/results.md`.
//!
//! The children print one flat JSON line each, read with [`crate::flat_json`].

use crate::flat_json::{self, Object};
use std::ffi::OsString;
use std::fmt::Write as _;
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
}

/// Configurations measured (files `configs/NAME.toml`).
const CONFIGS: [&str; 2] = ["seed", "large"];
/// Thread counts measured.
const THREADS: [usize; 2] = [1, 2];
/// Modes measured.
const MODES: [&str; 2] = ["train", "infer"];
/// GEMM sizes measured.
const GEMM_SIZES: [usize; 2] = [2048, 4096];
/// Section markers in docs/results.md.
const START: &str = "<!-- bench:start -->";
/// See [`START`].
const END: &str = "<!-- bench:end -->";

/// Run lengths after applying `--quick` and explicit overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    windows: usize,
    warmup: usize,
    repeats: usize,
    gemm_repeats: usize,
}

impl Plan {
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

/// One GEMM measurement.
#[derive(Clone, Debug, PartialEq)]
struct Gemm {
    /// 1: measured before the model runs, 2: after them.
    pass: usize,
    /// `faer` (`[N, N]×[N, N]`, the MFU yardstick) or `packed` (the head's kernel,
    /// `[N, depth]×[depth, N]`).
    kernel: String,
    size: usize,
    depth: usize,
    threads: usize,
    gflops: f64,
    median_gflops: f64,
}

/// One child run of `bench-run` or `bench_reference.py`.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    implementation: String,
    config: String,
    threads: usize,
    mode: String,
    tokens_per_s: f64,
    peak_rss_mb: Option<f64>,
    embed: usize,
    hidden: usize,
    vocab: usize,
}

impl Sample {
    fn from_object(o: &Object) -> Result<Sample, String> {
        let count = |key: &str| flat_json::num(o, key).map(|x| x as usize);
        Ok(Sample {
            implementation: flat_json::string(o, "impl")?,
            config: flat_json::string(o, "config")?,
            threads: count("threads")?,
            mode: flat_json::string(o, "mode")?,
            tokens_per_s: flat_json::num(o, "tokens_per_s")?,
            peak_rss_mb: flat_json::opt_num(o, "peak_rss_mb")?,
            embed: count("embed")?,
            hidden: count("hidden")?,
            vocab: count("vocab")?,
        })
    }
}

/// The summary of the samples of one (implementation, configuration, threads, mode).
#[derive(Clone, Debug, PartialEq)]
struct Row {
    implementation: String,
    config: String,
    threads: usize,
    mode: String,
    /// Median over the samples.
    tokens_per_s: f64,
    /// Every sample, in run order.
    samples: Vec<f64>,
    flops_per_token: f64,
    /// `None` when no GEMM peak was measured at this thread count.
    mfu: Option<f64>,
    /// Largest over the samples.
    peak_rss_mb: Option<f64>,
}

/// FLOPs per target token of the LSTM language model: `4H(E+H)` multiply-adds for the gates and
/// `H·V` for the vocabulary projection; 2 FLOPs per multiply-add forward, 3x that for training
/// (forward + the two backward products).
pub fn flops_per_token(embed: usize, hidden: usize, vocab: usize, mode: &str) -> f64 {
    let (e, h, v) = (embed as f64, hidden as f64, vocab as f64);
    let mac = 4.0 * h * (e + h) + h * v;
    if mode == "train" { 6.0 * mac } else { 2.0 * mac }
}

/// Model FLOP utilisation: achieved FLOP/s over the peak.
pub fn mfu(tokens_per_s: f64, flops_per_token: f64, peak_gflops: f64) -> f64 {
    tokens_per_s * flops_per_token / (peak_gflops * 1e9)
}

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some(0.5 * (v[n / 2 - 1] + v[n / 2])),
    }
}

/// The best rate of faer's GEMM per thread count: the practical peak MFU is measured against.
fn peaks(gemms: &[Gemm]) -> Vec<(usize, f64)> {
    kernel_peaks(gemms, Some("faer"))
}

/// The best rate per thread count of one kernel's products (`Some("packed")`), or of any.
fn kernel_peaks(gemms: &[Gemm], kernel: Option<&str>) -> Vec<(usize, f64)> {
    let mut out: Vec<(usize, f64)> = Vec::new();
    for g in gemms.iter().filter(|g| kernel.is_none_or(|k| g.kernel == k)) {
        match out.iter_mut().find(|(t, _)| *t == g.threads) {
            Some((_, p)) => *p = p.max(g.gflops),
            None => out.push((g.threads, g.gflops)),
        }
    }
    out
}

fn peak_at(peaks: &[(usize, f64)], threads: usize) -> Option<f64> {
    peaks.iter().find(|(t, _)| *t == threads).map(|&(_, p)| p)
}

/// Groups samples by (implementation, configuration, threads, mode), in first-seen order.
fn summarise(samples: &[Sample], peaks: &[(usize, f64)]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for s in samples {
        let same = |r: &&mut Row| {
            r.implementation == s.implementation
                && r.config == s.config
                && r.threads == s.threads
                && r.mode == s.mode
        };
        let row = match rows.iter_mut().find(same) {
            Some(r) => r,
            None => {
                rows.push(Row {
                    implementation: s.implementation.clone(),
                    config: s.config.clone(),
                    threads: s.threads,
                    mode: s.mode.clone(),
                    tokens_per_s: 0.0,
                    samples: Vec::new(),
                    flops_per_token: flops_per_token(s.embed, s.hidden, s.vocab, &s.mode),
                    mfu: None,
                    peak_rss_mb: None,
                });
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        row.samples.push(s.tokens_per_s);
        if let Some(m) = s.peak_rss_mb {
            row.peak_rss_mb = Some(row.peak_rss_mb.map_or(m, |x| x.max(m)));
        }
    }
    for r in &mut rows {
        r.tokens_per_s = median(&r.samples).unwrap_or(0.0);
        r.mfu = peak_at(peaks, r.threads).map(|p| mfu(r.tokens_per_s, r.flops_per_token, p));
    }
    rows
}

/// The PyTorch row matching a Stagewise row.
fn reference_of<'a>(rows: &'a [Row], r: &Row) -> Option<&'a Row> {
    rows.iter().find(|p| {
        p.implementation == "pytorch" && p.config == r.config && p.threads == r.threads && p.mode == r.mode
    })
}

fn find<'a>(
    rows: &'a [Row],
    implementation: &str,
    config: &str,
    threads: usize,
    mode: &str,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.implementation == implementation && r.config == config && r.threads == threads && r.mode == mode
    })
}

/// `12345.6` -> `12,346`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn gemm_table(gemms: &[Gemm]) -> String {
    let mut t = String::from(
        "| pass | kernel | product | threads | best GFLOP/s | median GFLOP/s |\n|---|---|---|---:|---:|---:|\n",
    );
    for g in gemms {
        let pass = if g.pass == 1 { "before" } else { "after" };
        let product = if g.depth == g.size {
            format!("{}³", g.size)
        } else {
            format!("{n}×{}×{n}", g.depth, n = g.size)
        };
        let _ = writeln!(
            t,
            "| {pass} | {} | {product} | {} | {:.1} | {:.1} |",
            g.kernel, g.threads, g.gflops, g.median_gflops
        );
    }
    t
}

fn runs_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| impl | config | threads | mode | tokens/s (median) | min–max | MFU | peak RSS | ours/PyTorch tokens/s | ours/PyTorch RSS |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let lo = r.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.samples.iter().copied().fold(0.0, f64::max);
        let mfu = r.mfu.map_or("–".into(), |m| format!("{:.1} %", 100.0 * m));
        let rss = r.peak_rss_mb.map_or("–".into(), |m| format!("{} MiB", thousands(m)));
        let (speed, memory) = match (r.implementation.as_str(), reference_of(rows, r)) {
            ("stagewise", Some(p)) => (
                format!("**{:.2}×**", r.tokens_per_s / p.tokens_per_s),
                match (r.peak_rss_mb, p.peak_rss_mb) {
                    (Some(a), Some(b)) => format!("{:.2}×", a / b),
                    _ => "–".into(),
                },
            ),
            _ => ("".into(), "".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {}–{} | {} | {} | {} | {} |",
            r.implementation,
            r.config,
            r.threads,
            r.mode,
            thousands(r.tokens_per_s),
            thousands(lo),
            thousands(hi),
            mfu,
            rss,
            speed,
            memory
        );
    }
    t
}

/// Issue 3's targets, each with the measured figure; lines whose inputs were not measured are
/// left out.
fn targets(rows: &[Row]) -> String {
    let mut t = String::new();
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let ratio = |config: &str, mode: &str| {
        let ours = find(rows, "stagewise", config, 2, mode)?;
        let theirs = find(rows, "pytorch", config, 2, mode)?;
        Some(ours.tokens_per_s / theirs.tokens_per_s)
    };
    if let Some(x) = ratio("seed", "train") {
        let _ = writeln!(
            t,
            "- seed training tokens/s ≥ 2× PyTorch's (2 threads): {x:.2}× — {}",
            verdict(x >= 2.0)
        );
    }
    if let Some(x) = ratio("large", "train") {
        let _ = writeln!(
            t,
            "- large training tokens/s ≥ 1.25× PyTorch's (2 threads): {x:.2}× — {}",
            verdict(x >= 1.25)
        );
    }
    if let Some(m) = find(rows, "stagewise", "large", 2, "train").and_then(|r| r.mfu) {
        let v = if m > 1.0 {
            "unreliable (above 100 %: the peak was measured under load)"
        } else {
            verdict(m >= 0.8)
        };
        let _ = writeln!(t, "- large training MFU ≥ 80 % (2 threads): {:.1} % — {v}", 100.0 * m);
    }
    if let (Some(two), Some(one)) =
        (find(rows, "stagewise", "large", 2, "train"), find(rows, "stagewise", "large", 1, "train"))
    {
        let x = two.tokens_per_s / one.tokens_per_s;
        let _ =
            writeln!(t, "- large training, 2 threads ≥ 1.85× one thread: {x:.2}× — {}", verdict(x >= 1.85));
    }
    let rss = |implementation: &str| {
        [1, 2]
            .iter()
            .filter_map(|&n| find(rows, implementation, "seed", n, "train")?.peak_rss_mb)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    };
    if let (Some(ours), Some(theirs)) = (rss("stagewise"), rss("pytorch")) {
        let x = ours / theirs;
        let _ = writeln!(
            t,
            "- seed training peak RSS ≤ ¼ of PyTorch's: {} vs {} MiB = {x:.2}× — {}",
            thousands(ours),
            thousands(theirs),
            verdict(x <= 0.25)
        );
    }
    if let Some(x) = ratio("seed", "infer") {
        let _ = writeln!(
            t,
            "- seed inference tokens/s ≥ 2× PyTorch's (2 threads): {x:.2}× — {}",
            verdict(x >= 2.0)
        );
    }
    t
}

/// Facts about where and how the benchmark ran, for the report.
#[derive(Clone, Debug, Default)]
struct Context {
    date: String,
    command: String,
    nproc: usize,
    cpu: String,
    load_before: String,
    load_after: String,
    rustc: String,
    torch: Option<String>,
    plan_text: String,
    quick: bool,
}

/// The `docs/results.md` section, markers included.
fn section(cx: &Context, gemms: &[Gemm], peaks: &[(usize, f64)], rows: &[Row]) -> String {
    let mut s = format!("{START}\n## Throughput: `cargo xtask bench`\n\n");
    if cx.quick {
        s.push_str("> **Smoke run (`--quick`)**: a handful of windows, one repeat; the figures below are not\n> meaningful. Run `cargo xtask bench` without `--quick` for the real measurement.\n\n");
    }
    let _ = writeln!(s, "Generated by `{}` on {} (UTC).\n", cx.command, cx.date);
    let _ = writeln!(
        s,
        "Machine: {} logical CPUs, {}; {}{}. Load average (1/5/15 min) before: {}; after: {}.\n",
        cx.nproc,
        cx.cpu,
        cx.rustc,
        cx.torch.as_ref().map_or(String::new(), |t| format!(", PyTorch {t}")),
        cx.load_before,
        cx.load_after
    );
    let _ = writeln!(s, "{}\n", cx.plan_text);
    s.push_str("### f32 GEMM (`stagewise bench-gemm`)\n\n");
    s.push_str(&gemm_table(gemms));
    let list = |peaks: &[(usize, f64)]| -> String {
        let items: Vec<String> = peaks
            .iter()
            .map(|(t, p)| format!("{p:.1} GFLOP/s at {t} thread{}", if *t == 1 { "" } else { "s" }))
            .collect();
        items.join(", ")
    };
    let _ = writeln!(
        s,
        "\nMeasured before and after the model runs. Practical peak through faer (best over sizes and \
         passes; the MFU yardstick): {}.",
        list(peaks)
    );
    let packed = kernel_peaks(gemms, Some("packed"));
    if !packed.is_empty() {
        let _ = writeln!(
            s,
            "The head's packed AVX-512 kernel (`core::packed`, depth 512): {}. It outruns faer's square \
             product, so an inference row, whose time is mostly the head's product, can show an MFU \
             above 100 %.",
            list(&packed)
        );
    }
    s.push('\n');
    s.push_str("### Tokens/s, MFU, peak memory\n\n");
    s.push_str(&runs_table(rows));
    s.push_str(
        "\nTokens are target tokens (B × steps per window). MFU = tokens/s × flops_per_token / peak of the\n\
         same thread count, with flops_per_token = 6·(4H(E+H) + H·V) for training and 2·(4H(E+H) + H·V)\n\
         for inference. Peak RSS: the largest over the runs of a row, each run a fresh process\n\
         (`VmHWM` for Stagewise, `ru_maxrss` for PyTorch), corpus preparation included.\n",
    );
    if let Some(w) = mfu_warning(rows, &kernel_peaks(gemms, None)) {
        s.push('\n');
        s.push_str(&w);
    }
    let t = targets(rows);
    if !t.is_empty() {
        s.push_str("\n### Issue 3 targets\n\n");
        s.push_str(&t);
    }
    s.push_str(END);
    s.push('\n');
    s
}

/// `text` with the marked section replaced by `section` (which carries its own markers), or with
/// `section` appended when the markers are missing.
pub fn replace_section(text: &str, section: &str) -> String {
    if let (Some(a), Some(b)) = (text.find(START), text.find(END))
        && a < b
    {
        let mut end = b + END.len();
        if text[end..].starts_with('\n') {
            end += 1;
        }
        return format!("{}{}{}", &text[..a], section, &text[end..]);
    }
    let sep = if text.is_empty() || text.ends_with("\n\n") {
        ""
    } else if text.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    format!("{text}{sep}{section}")
}

fn json_report(cx: &Context, gemms: &[Gemm], peaks: &[(usize, f64)], rows: &[Row], plan: &Plan) -> String {
    use flat_json::{number, opt_number, quote};
    let mut j = String::from("{\n");
    let _ = writeln!(j, "  \"peak_gflops\": {},", opt_number(peak_at(peaks, 2)));
    let _ = writeln!(j, "  \"peak_gflops_1t\": {},", opt_number(peak_at(peaks, 1)));
    let packed = kernel_peaks(gemms, Some("packed"));
    let _ = writeln!(j, "  \"packed_peak_gflops\": {},", opt_number(peak_at(&packed, 2)));
    let _ = writeln!(j, "  \"packed_peak_gflops_1t\": {},", opt_number(peak_at(&packed, 1)));
    let gemm: Vec<String> = gemms
        .iter()
        .map(|g| {
            format!(
                "{{\"pass\":{},\"kernel\":{},\"size\":{},\"depth\":{},\"threads\":{},\"gflops\":{},\"median_gflops\":{}}}",
                g.pass,
                quote(&g.kernel),
                g.size,
                g.depth,
                g.threads,
                number(g.gflops),
                number(g.median_gflops)
            )
        })
        .collect();
    let _ = writeln!(j, "  \"gemm\": [\n    {}\n  ],", gemm.join(",\n    "));
    let runs: Vec<String> = rows
        .iter()
        .map(|r| {
            let samples: Vec<String> = r.samples.iter().map(|&x| number(x)).collect();
            let ratio = match (r.implementation.as_str(), reference_of(rows, r)) {
                ("stagewise", Some(p)) => number(r.tokens_per_s / p.tokens_per_s),
                _ => "null".into(),
            };
            format!(
                "{{\"impl\":{},\"config\":{},\"threads\":{},\"mode\":{},\"tokens_per_s\":{},\"mfu\":{},\"peak_rss_mb\":{},\"tokens_per_s_samples\":[{}],\"flops_per_token\":{},\"ratio_vs_pytorch\":{}}}",
                quote(&r.implementation),
                quote(&r.config),
                r.threads,
                quote(&r.mode),
                number(r.tokens_per_s),
                opt_number(r.mfu),
                opt_number(r.peak_rss_mb),
                samples.join(","),
                number(r.flops_per_token),
                ratio
            )
        })
        .collect();
    let _ = writeln!(j, "  \"runs\": [\n    {}\n  ],", runs.join(",\n    "));
    let _ = writeln!(
        j,
        "  \"windows\": {}, \"warmup\": {}, \"repeats\": {}, \"quick\": {},",
        plan.windows, plan.warmup, plan.repeats, cx.quick
    );
    let _ = writeln!(
        j,
        "  \"date\": {}, \"command\": {}, \"nproc\": {}, \"cpu\": {}, \"rustc\": {}, \"torch\": {}, \"load_before\": {}, \"load_after\": {}",
        quote(&cx.date),
        quote(&cx.command),
        cx.nproc,
        quote(&cx.cpu),
        quote(&cx.rustc),
        cx.torch.as_ref().map_or("null".into(), |t| quote(t)),
        quote(&cx.load_before),
        quote(&cx.load_after)
    );
    j.push_str("}\n");
    j
}

/// `YYYY-MM-DD` of a count of days since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn now_utc() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!("{} {:02}:{:02}", civil_date(days), rem / 3600, rem % 3600 / 60)
}

fn cpu_model() -> String {
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

fn load_average() -> String {
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
fn run_child(cmd: &mut Command, what: &str) -> Result<String, String> {
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

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// One pass of `stagewise bench-gemm` over [`THREADS`] x [`GEMM_SIZES`] through faer, then the
/// head's packed kernel at [`PACKED_SIZE`] (on processors with AVX-512, which it needs).
fn gemm_pass(bin: &Path, root: &Path, pass: usize, repeats: usize) -> Result<Vec<Gemm>, String> {
    let mut runs: Vec<(&str, usize, usize)> =
        THREADS.iter().flat_map(|&t| GEMM_SIZES.map(|n| ("faer", n, t))).collect();
    if packed_kernel_available() {
        runs.extend(THREADS.iter().map(|&t| ("packed", PACKED_SIZE, t)));
    }
    let mut gemms = Vec::new();
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
        let o = flat_json::last_object(&out).map_err(|e| format!("{what} output: {e}"))?;
        let g = Gemm {
            pass,
            kernel: kernel.to_owned(),
            size,
            depth: flat_json::num(&o, "depth")? as usize,
            threads,
            gflops: flat_json::num(&o, "gflops")?,
            median_gflops: flat_json::num(&o, "median_gflops")?,
        };
        eprintln!(
            "  gemm (pass {pass}) {kernel} {size}×{}×{size} {threads} thread(s): {:.1} GFLOP/s (median {:.1})",
            g.depth, g.gflops, g.median_gflops
        );
        gemms.push(g);
    }
    Ok(gemms)
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

/// A warning when some run did more FLOP/s than the best product measured at its thread count
/// (`best_peaks`, over every kernel), i.e. the peaks were measured while the machine was busier
/// than during that run.
fn mfu_warning(rows: &[Row], best_peaks: &[(usize, f64)]) -> Option<String> {
    let over = |r: &Row| {
        let achieved = r.tokens_per_s * r.flops_per_token / 1e9;
        peak_at(best_peaks, r.threads).map(|p| achieved / p)
    };
    let worst = rows.iter().filter_map(over).fold(0.0, f64::max);
    (worst > 1.0).then(|| {
        format!(
            "**Warning:** a run reached {:.0} % of the best GEMM rate measured at its thread count, which means \
             the peaks were measured while the machine was busier than during that run (other processes \
             share the cores); treat the MFU column as unreliable.\n",
            100.0 * worst
        )
    })
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

    let mut cx = Context {
        date: now_utc(),
        command: command_line(),
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu: cpu_model(),
        load_before: load_average(),
        quick: args.quick,
        ..Context::default()
    };
    cx.rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rustc (unknown version)".into());
    if let Some(py) = &args.torch {
        let out = run_child(
            Command::new(py).current_dir(root).args(["-c", "import torch; print(torch.__version__)"]),
            "checking the --torch Python",
        )?;
        cx.torch = Some(out.trim().to_string());
    }
    cx.plan_text = format!(
        "Each run: {} warm-up window{} then {} timed window{} from the start of the training split, in a fresh\n\
         process; {} run{} per row{}, median reported.",
        plan.warmup,
        if plan.warmup == 1 { "" } else { "s" },
        plan.windows,
        if plan.windows == 1 { "" } else { "s" },
        plan.repeats,
        if plan.repeats == 1 { "" } else { "s" },
        if args.torch.is_some() { ", Stagewise and PyTorch alternating" } else { "" }
    );
    eprintln!(
        "xtask bench: {} CPUs ({}), load {}; {} windows (+{} warm-up), {} repeat(s){}",
        cx.nproc,
        cx.cpu,
        cx.load_before,
        plan.windows,
        plan.warmup,
        plan.repeats,
        if args.quick { ", --quick" } else { "" }
    );

    let mut gemms = gemm_pass(&bin, root, 1, plan.gemm_repeats)?;

    let impls: Vec<&str> =
        if args.torch.is_some() { vec!["stagewise", "pytorch"] } else { vec!["stagewise"] };
    let total = CONFIGS.len() * THREADS.len() * MODES.len() * plan.repeats * impls.len();
    let mut samples = Vec::new();
    for config in CONFIGS {
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
                        let o = flat_json::last_object(&out).map_err(|e| format!("{what} output: {e}"))?;
                        let s = Sample::from_object(&o).map_err(|e| format!("{what} output: {e}"))?;
                        eprintln!(
                            "  [{:>2}/{total}] {what}: {} tokens/s, peak RSS {}",
                            samples.len() + 1,
                            thousands(s.tokens_per_s),
                            s.peak_rss_mb.map_or("n/a".into(), |m| format!("{} MiB", thousands(m)))
                        );
                        samples.push(s);
                    }
                }
            }
        }
    }
    cx.load_after = load_average();
    // The peak again: a busy machine during the first pass would otherwise understate it.
    gemms.extend(gemm_pass(&bin, root, 2, plan.gemm_repeats)?);
    let peaks = peaks(&gemms);
    let rows = summarise(&samples, &peaks);

    println!();
    println!("{}", gemm_table(&gemms));
    for (t, p) in &peaks {
        println!("peak at {t} thread(s): {p:.1} GFLOP/s");
    }
    println!();
    println!("{}", runs_table(&rows));
    let packed = kernel_peaks(&gemms, Some("packed"));
    for (t, p) in &packed {
        println!("packed kernel at {t} thread(s): {p:.1} GFLOP/s");
    }
    if let Some(w) = mfu_warning(&rows, &kernel_peaks(&gemms, None)) {
        println!("{w}");
    }
    let t = targets(&rows);
    if !t.is_empty() {
        println!("{t}");
    }
    println!("load average before: {}; after: {}", cx.load_before, cx.load_after);

    let json_path = args.json.clone().unwrap_or_else(|| target_dir(root).join("bench.json"));
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&json_path, json_report(&cx, &gemms, &peaks, &rows, &plan))
        .map_err(|e| format!("{}: {e}", json_path.display()))?;
    println!("wrote {}", json_path.display());
    if !args.no_docs {
        let docs = root.join("docs/results.md");
        let text = std::fs::read_to_string(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
        let updated = replace_section(&text, &section(&cx, &gemms, &peaks, &rows));
        std::fs::write(&docs, updated).map_err(|e| format!("{}: {e}", docs.display()))?;
        println!("updated {}", docs.display());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GEMM measurement: pass, kernel, size, depth, threads, best and median GFLOP/s.
    fn measured(
        pass: usize,
        kernel: &str,
        size: usize,
        depth: usize,
        threads: usize,
        gflops: f64,
        median: f64,
    ) -> Gemm {
        Gemm { pass, kernel: kernel.into(), size, depth, threads, gflops, median_gflops: median }
    }

    fn sample(implementation: &str, threads: usize, mode: &str, tps: f64, rss: Option<f64>) -> Sample {
        Sample {
            implementation: implementation.into(),
            config: "seed".into(),
            threads,
            mode: mode.into(),
            tokens_per_s: tps,
            peak_rss_mb: rss,
            embed: 100,
            hidden: 128,
            vocab: 10_000,
        }
    }

    #[test]
    fn flops_per_token_of_the_two_configurations() {
        // seed: 4·128·(100+128) + 128·10000 = 116,736 + 1,280,000 multiply-adds.
        assert_eq!(flops_per_token(100, 128, 10_000, "train"), 6.0 * 1_396_736.0);
        assert_eq!(flops_per_token(100, 128, 10_000, "infer"), 2.0 * 1_396_736.0);
        // large: 4·512·(256+512) + 512·10000 = 1,572,864 + 5,120,000.
        assert_eq!(flops_per_token(256, 512, 10_000, "train"), 6.0 * 6_692_864.0);
    }

    #[test]
    fn mfu_is_achieved_over_peak() {
        // 10,000 tokens/s × 1e7 FLOPs = 100 GFLOP/s of a 200 GFLOP/s peak.
        assert!((mfu(10_000.0, 1e7, 200.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[9.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 9.0, 2.0]), Some(3.0));
    }

    #[test]
    fn summary_takes_medians_max_rss_and_the_peak_of_the_same_thread_count() {
        let gemms = [
            measured(1, "faer", 2048, 2048, 1, 90.0, 80.0),
            measured(1, "faer", 4096, 4096, 1, 100.0, 95.0),
            measured(1, "faer", 2048, 2048, 2, 190.0, 180.0),
            measured(1, "faer", 4096, 4096, 2, 185.0, 180.0),
        ];
        let peaks = peaks(&gemms);
        assert_eq!(peaks, vec![(1, 100.0), (2, 190.0)]);
        let samples = [
            sample("stagewise", 1, "train", 3000.0, Some(400.0)),
            sample("pytorch", 1, "train", 1000.0, Some(1200.0)),
            sample("stagewise", 1, "train", 1000.0, Some(410.0)),
            sample("pytorch", 1, "train", 2000.0, None),
            sample("stagewise", 1, "train", 2000.0, Some(405.0)),
            sample("pytorch", 1, "train", 1500.0, Some(1100.0)),
            sample("stagewise", 2, "infer", 5000.0, None),
        ];
        let rows = summarise(&samples, &peaks);
        assert_eq!(rows.len(), 3);
        let ours = &rows[0];
        assert_eq!(
            (ours.implementation.as_str(), ours.tokens_per_s, ours.peak_rss_mb),
            ("stagewise", 2000.0, Some(410.0))
        );
        assert_eq!(ours.samples, vec![3000.0, 1000.0, 2000.0]);
        let expected = 2000.0 * 6.0 * 1_396_736.0 / 100e9;
        assert!((ours.mfu.unwrap_or(0.0) - expected).abs() < 1e-12);
        assert_eq!((rows[1].tokens_per_s, rows[1].peak_rss_mb), (1500.0, Some(1200.0)));
        assert_eq!(rows[2].peak_rss_mb, None);
        let infer_mfu = 5000.0 * 2.0 * 1_396_736.0 / 190e9;
        assert!((rows[2].mfu.unwrap_or(0.0) - infer_mfu).abs() < 1e-12);
        assert_eq!(mfu_warning(&rows, &peaks), None);
        let table = runs_table(&rows);
        assert!(table.contains("**1.33×**") && table.contains("0.34×"), "{table}");
        let json = json_report(
            &Context::default(),
            &gemms,
            &peaks,
            &rows,
            &Plan { windows: 1, warmup: 0, repeats: 3, gemm_repeats: 1 },
        );
        assert!(
            json.contains("\"peak_gflops\": 190,") && json.contains("\"peak_gflops_1t\": 100,"),
            "{json}"
        );
        assert!(json.contains("{\"impl\":\"stagewise\",\"config\":\"seed\",\"threads\":1,\"mode\":\"train\",\"tokens_per_s\":2000,"), "{json}");
    }

    /// The packed kernel's rate is reported beside faer's but is not the MFU yardstick; a run
    /// faster than faer's peak but not than the packed kernel's is no reason for a warning.
    #[test]
    fn packed_kernel_peak_is_reported_and_raises_the_warning_threshold() {
        let gemms = [
            measured(1, "faer", 2048, 2048, 2, 180.0, 170.0),
            measured(1, "packed", 2048, 512, 2, 220.0, 215.0),
        ];
        let peaks = peaks(&gemms);
        assert_eq!(peaks, vec![(2, 180.0)]);
        let best = kernel_peaks(&gemms, None);
        assert_eq!(best, vec![(2, 220.0)]);
        // 70,000 tokens/s × 2.79 MFLOP = 196 GFLOP/s: above faer's 180, below the packed 220.
        let rows = summarise(&[sample("stagewise", 2, "infer", 70_000.0, None)], &peaks);
        assert!(rows[0].mfu.is_some_and(|m| m > 1.0));
        assert_eq!(mfu_warning(&rows, &best), None);
        assert!(mfu_warning(&rows, &peaks).is_some());
        let table = gemm_table(&gemms);
        assert!(
            table.contains("| packed | 2048×512×2048 | 2 | 220.0 |") && table.contains("| faer | 2048³ |"),
            "{table}"
        );
        let plan = Plan { windows: 1, warmup: 0, repeats: 1, gemm_repeats: 1 };
        let json = json_report(&Context::default(), &gemms, &peaks, &rows, &plan);
        assert!(
            json.contains("\"packed_peak_gflops\": 220,") && json.contains("\"kernel\":\"packed\""),
            "{json}"
        );
    }

    #[test]
    fn peak_is_the_best_over_passes_and_an_impossible_mfu_is_flagged() {
        let gemms = [
            measured(1, "faer", 2048, 2048, 2, 110.0, 100.0),
            measured(2, "faer", 2048, 2048, 2, 180.0, 170.0),
        ];
        let peaks = peaks(&gemms);
        assert_eq!(peaks, vec![(2, 180.0)]);
        let mut large = sample("stagewise", 2, "train", 5000.0, Some(700.0));
        (large.config, large.embed, large.hidden) = ("large".into(), 256, 512);
        // 5,000 tokens/s × 40.2 MFLOP = 201 GFLOP/s > the 180 GFLOP/s "peak".
        let rows = summarise(&[large], &peaks);
        assert!(rows[0].mfu.is_some_and(|m| m > 1.0));
        assert!(mfu_warning(&rows, &peaks).is_some_and(|w| w.contains("112 %")));
        assert!(targets(&rows).contains("unreliable"), "{}", targets(&rows));
    }

    #[test]
    fn child_lines_become_samples() -> Result<(), String> {
        let o = flat_json::parse(
            r#"{"impl":"pytorch","config":"large","threads":2,"mode":"infer","tokens_per_s":1.5,"peak_rss_mb":12.5,"embed":256,"hidden":512,"vocab":10000,"torch":"2.15.0"}"#,
        )?;
        let s = Sample::from_object(&o)?;
        assert_eq!(
            (s.implementation.as_str(), s.config.as_str(), s.threads, s.mode.as_str()),
            ("pytorch", "large", 2, "infer")
        );
        assert_eq!(
            (s.tokens_per_s, s.peak_rss_mb, s.embed, s.hidden, s.vocab),
            (1.5, Some(12.5), 256, 512, 10_000)
        );
        assert!(Sample::from_object(&flat_json::parse(r#"{"impl":"x"}"#)?).is_err());
        Ok(())
    }

    #[test]
    fn section_is_replaced_or_appended() {
        let new = format!("{START}\nnew\n{END}\n");
        let doc = format!("# Results\n\nbefore\n\n{START}\nold\nold\n{END}\n\nafter\n");
        assert_eq!(
            replace_section(&doc, &new),
            format!("# Results\n\nbefore\n\n{START}\nnew\n{END}\n\nafter\n")
        );
        assert_eq!(replace_section("# Results\n\ntext\n", &new), format!("# Results\n\ntext\n\n{new}"));
        assert_eq!(replace_section("# Results", &new), format!("# Results\n\n{new}"));
        // Idempotent once appended.
        let once = replace_section("# Results\n", &new);
        assert_eq!(replace_section(&once, &new), once);
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_017), "2000-03-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(-1), "1969-12-31");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.6), "1,234,568");
    }

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
}
