//! The report of `cargo xtask bench`: `stagewise bench-report` reads the samples file the task
//! records and summarises it into the console tables, the JSON report and the
//! `<!-- bench:start -->` ... `<!-- bench:end -->` section of `docs/results.md`.
//!
//! # The samples file
//!
//! One JSON object per line, each a [`Record`] named by its `record` key:
//!
//! - `{"record":"context", ...}`: where and how the benchmark ran ([`Context`]); exactly one;
//! - `{"record":"gemm","pass":1, ...}`: a `stagewise bench-gemm` line ([`GemmReport`]'s keys)
//!   with the pass it belongs to (1: before the model runs, 2: after them);
//! - `{"record":"run", ...}`: a `stagewise bench-run` line ([`RunReport`]'s keys) or a
//!   `benches/reference/bench_reference.py` line (the same keys, plus `torch`);
//! - `{"record":"load_after","load_after":"..."}`: the load average once the model runs are over.
//!
//! Keys a record does not use are ignored, so the children's lines are kept whole. Runs are
//! grouped into rows in the order they first appear.
//!
//! [`GemmReport`]: super::GemmReport
//! [`RunReport`]: super::RunReport

use super::{BenchMode, GemmKernel};
use serde::{Deserialize, Serialize};
use stagewise_core::{Error, Result};
use std::fmt::{self, Write as _};
use std::io;
use std::path::Path;

/// Start marker of the generated section of `docs/results.md`.
pub const START: &str = "<!-- bench:start -->";
/// End marker of the generated section; see [`START`].
pub const END: &str = "<!-- bench:end -->";

/// One line of the samples file; see the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// Where and how the benchmark ran.
    Context(Context),
    /// One GEMM measurement.
    Gemm(Gemm),
    /// One model run.
    Run(Sample),
    /// The load average once the model runs are over (before the second GEMM pass).
    LoadAfter {
        /// `/proc/loadavg`'s 1, 5 and 15 minute figures.
        load_after: String,
    },
}

/// Facts about where and how the benchmark ran, recorded by `cargo xtask bench` before the runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// When the benchmark started, in seconds since 1970-01-01 00:00 UTC.
    pub started_unix: u64,
    /// The command line as typed (`cargo xtask bench ...`).
    pub command: String,
    /// Logical CPUs.
    pub nproc: usize,
    /// The processor's model name.
    pub cpu: String,
    /// `rustc --version`.
    pub rustc: String,
    /// PyTorch's version when the reference ran alternating with Stagewise, else `None`.
    #[serde(default)]
    pub torch: Option<String>,
    /// The load average (1, 5, 15 minutes) before the runs.
    pub load_before: String,
    /// A `--quick` smoke run (figures not meaningful).
    pub quick: bool,
    /// Timed windows per run.
    pub windows: usize,
    /// Untimed warm-up windows per run.
    pub warmup: usize,
    /// Runs per (implementation, configuration, threads, mode).
    pub repeats: usize,
}

/// One GEMM measurement: a `bench-gemm` line and its pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    /// 1: measured before the model runs, 2: after them.
    pub pass: usize,
    /// faer's `[N, N]×[N, N]` (the MFU yardstick) or the head's packed kernel
    /// (`[N, depth]×[depth, N]`).
    pub kernel: GemmKernel,
    /// Matrix side N.
    pub size: usize,
    /// The inner dimension.
    pub depth: usize,
    /// Worker threads.
    pub threads: usize,
    /// Best rate over the repeats, GFLOP/s.
    pub gflops: f64,
    /// Median rate over the repeats, GFLOP/s.
    pub median_gflops: f64,
}

/// One model run: the keys the report reads from a `bench-run` or `bench_reference.py` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `stagewise` or `pytorch`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The configuration's name (`seed`, `large`).
    pub config: String,
    /// Worker threads.
    pub threads: usize,
    /// Training or inference.
    pub mode: BenchMode,
    /// Target tokens of the timed windows per wall second.
    pub tokens_per_s: f64,
    /// Peak resident memory of the run's process, MiB; `None` when unknown.
    #[serde(default)]
    pub peak_rss_mb: Option<f64>,
    /// Embedding width E.
    pub embed: usize,
    /// Recurrent width H.
    pub hidden: usize,
    /// The forward box's kind (`lstm`, `gru`, `rnn_tanh`); `lstm` when absent (older samples).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Stacked recurrent layers; 1 when absent (older samples).
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// Vocabulary size V.
    pub vocab: usize,
}

fn default_kind() -> String {
    "lstm".into()
}

fn default_layers() -> usize {
    1
}

/// The summary of the samples of one (implementation, configuration, threads, mode); also one
/// entry of the JSON report's `runs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `stagewise` or `pytorch`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The configuration's name.
    pub config: String,
    /// Worker threads.
    pub threads: usize,
    /// Training or inference.
    pub mode: BenchMode,
    /// Median over the samples.
    pub tokens_per_s: f64,
    /// Model FLOP utilisation against faer's peak at the same thread count; `None` when no peak
    /// was measured there.
    pub mfu: Option<f64>,
    /// Largest over the samples.
    pub peak_rss_mb: Option<f64>,
    /// Every sample's tokens/s, in run order.
    #[serde(rename = "tokens_per_s_samples")]
    pub samples: Vec<f64>,
    /// See [`flops_per_token`].
    pub flops_per_token: f64,
    /// Stagewise's tokens/s over PyTorch's in the same setting; `None` for PyTorch's rows and
    /// when PyTorch did not run.
    pub ratio_vs_pytorch: Option<f64>,
}

/// The JSON report (`cargo xtask bench --json FILE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonReport {
    /// faer's peak at 2 threads, GFLOP/s.
    pub peak_gflops: Option<f64>,
    /// faer's peak at 1 thread, GFLOP/s.
    pub peak_gflops_1t: Option<f64>,
    /// The packed kernel's best rate at 2 threads, GFLOP/s.
    pub packed_peak_gflops: Option<f64>,
    /// The packed kernel's best rate at 1 thread, GFLOP/s.
    pub packed_peak_gflops_1t: Option<f64>,
    /// Every GEMM measurement, in run order.
    pub gemm: Vec<Gemm>,
    /// One row per (implementation, configuration, threads, mode).
    pub runs: Vec<Row>,
    /// Timed windows per run.
    pub windows: usize,
    /// Untimed warm-up windows per run.
    pub warmup: usize,
    /// Runs per row.
    pub repeats: usize,
    /// A `--quick` smoke run.
    pub quick: bool,
    /// When the benchmark started, `YYYY-MM-DD HH:MM` (UTC).
    pub date: String,
    /// The command line as typed.
    pub command: String,
    /// Logical CPUs.
    pub nproc: usize,
    /// The processor's model name.
    pub cpu: String,
    /// `rustc --version`.
    pub rustc: String,
    /// PyTorch's version, when it ran.
    pub torch: Option<String>,
    /// Load average before the runs.
    pub load_before: String,
    /// Load average after the model runs.
    pub load_after: String,
}

impl fmt::Display for BenchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BenchMode::Train => "train",
            BenchMode::Infer => "infer",
        })
    }
}

impl fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GemmKernel::Faer => "faer",
            GemmKernel::Packed => "packed",
        })
    }
}

/// The shape of a recurrent language model that sets its FLOPs per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape<'a> {
    /// The forward box's kind: `lstm` (4 gate blocks), `gru` (3) or `rnn_tanh` (1).
    pub kind: &'a str,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Embedding width E.
    pub embed: usize,
    /// Recurrent width H.
    pub hidden: usize,
    /// Vocabulary size V.
    pub vocab: usize,
}

impl ModelShape<'_> {
    /// The seed's shape: one LSTM layer.
    pub fn lstm(embed: usize, hidden: usize, vocab: usize) -> ModelShape<'static> {
        ModelShape { kind: "lstm", layers: 1, embed, hidden, vocab }
    }

    /// Gate blocks per layer, `G`; an unknown kind counts as an LSTM's 4.
    fn gates(&self) -> f64 {
        match self.kind {
            "gru" => 3.0,
            "rnn_tanh" => 1.0,
            _ => 4.0,
        }
    }
}

/// FLOPs per target token of a recurrent language model: `G·H(E+H)` multiply-adds for the first
/// layer's gates (`G` = 4 for an LSTM, 3 for a GRU, 1 for an Elman RNN), `G·H(H+H)` for each
/// further layer, and `H·V` for the vocabulary projection; 2 FLOPs per multiply-add forward, 3x
/// that for training (forward + the two backward products).
pub fn flops_per_token(shape: ModelShape<'_>, mode: BenchMode) -> f64 {
    let (e, h, v) = (shape.embed as f64, shape.hidden as f64, shape.vocab as f64);
    let g = shape.gates();
    let deeper = shape.layers.saturating_sub(1) as f64;
    let mac = g * h * (e + h) + deeper * g * h * (2.0 * h) + h * v;
    match mode {
        BenchMode::Train => 6.0 * mac,
        BenchMode::Infer => 2.0 * mac,
    }
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

/// The best rate per thread count of one kernel's products, or of every product (`None`), in
/// the order the thread counts first appear.
pub fn kernel_peaks(gemms: &[Gemm], kernel: Option<GemmKernel>) -> Vec<(usize, f64)> {
    let mut out: Vec<(usize, f64)> = Vec::new();
    for g in gemms.iter().filter(|g| kernel.is_none_or(|k| g.kernel == k)) {
        match out.iter_mut().find(|(t, _)| *t == g.threads) {
            Some((_, p)) => *p = p.max(g.gflops),
            None => out.push((g.threads, g.gflops)),
        }
    }
    out
}

/// The best rate of faer's GEMM per thread count: the practical peak MFU is measured against.
pub fn peaks(gemms: &[Gemm]) -> Vec<(usize, f64)> {
    kernel_peaks(gemms, Some(GemmKernel::Faer))
}

fn peak_at(peaks: &[(usize, f64)], threads: usize) -> Option<f64> {
    peaks.iter().find(|(t, _)| *t == threads).map(|&(_, p)| p)
}

/// Groups samples by (implementation, configuration, threads, mode), in first-seen order: median
/// tokens/s, largest peak RSS, MFU against `peaks` (faer's, see [`peaks`]) at the same thread
/// count, and the ratio to PyTorch's row.
pub fn summarise(samples: &[Sample], peaks: &[(usize, f64)]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for s in samples {
        let same = |r: &Row| {
            r.implementation == s.implementation
                && r.config == s.config
                && r.threads == s.threads
                && r.mode == s.mode
        };
        let row = match rows.iter().position(same) {
            Some(i) => &mut rows[i],
            None => {
                rows.push(Row {
                    implementation: s.implementation.clone(),
                    config: s.config.clone(),
                    threads: s.threads,
                    mode: s.mode,
                    tokens_per_s: 0.0,
                    mfu: None,
                    peak_rss_mb: None,
                    samples: Vec::new(),
                    flops_per_token: flops_per_token(
                        ModelShape {
                            kind: &s.kind,
                            layers: s.layers,
                            embed: s.embed,
                            hidden: s.hidden,
                            vocab: s.vocab,
                        },
                        s.mode,
                    ),
                    ratio_vs_pytorch: None,
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
    let ratios: Vec<Option<f64>> = rows
        .iter()
        .map(|r| match r.implementation.as_str() {
            "stagewise" => reference_of(&rows, r).map(|p| r.tokens_per_s / p.tokens_per_s),
            _ => None,
        })
        .collect();
    for (r, ratio) in rows.iter_mut().zip(ratios) {
        r.ratio_vs_pytorch = ratio;
    }
    rows
}

/// The PyTorch row matching a row's setting.
fn reference_of<'a>(rows: &'a [Row], r: &Row) -> Option<&'a Row> {
    find(rows, "pytorch", &r.config, r.threads, r.mode)
}

fn find<'a>(
    rows: &'a [Row],
    implementation: &str,
    config: &str,
    threads: usize,
    mode: BenchMode,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.implementation == implementation && r.config == config && r.threads == threads && r.mode == mode
    })
}

/// `12345.6` -> `12,346`.
pub fn thousands(x: f64) -> String {
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

/// The markdown table of GEMM measurements.
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

/// The markdown table of model runs.
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

/// The throughput targets set for Stagewise against the PyTorch reference, each with the
/// measured figure and whether it is met; lines whose inputs were not measured are left out.
fn targets(rows: &[Row]) -> String {
    use BenchMode::{Infer, Train};
    let mut t = String::new();
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let ratio = |config: &str, mode: BenchMode| {
        let ours = find(rows, "stagewise", config, 2, mode)?;
        let theirs = find(rows, "pytorch", config, 2, mode)?;
        Some(ours.tokens_per_s / theirs.tokens_per_s)
    };
    if let Some(x) = ratio("seed", Train) {
        let _ = writeln!(
            t,
            "- seed training tokens/s ≥ 2× PyTorch's (2 threads): {x:.2}× — {}",
            verdict(x >= 2.0)
        );
    }
    for (config, what) in [("gru", "GRU"), ("lstm-2layer", "2-layer LSTM")] {
        if let Some(x) = ratio(config, Train) {
            let _ = writeln!(
                t,
                "- {config} ({what}) training tokens/s ≥ 2× PyTorch's (2 threads): {x:.2}× — {}",
                verdict(x >= 2.0)
            );
        }
    }
    if let Some(x) = ratio("large", Train) {
        let _ = writeln!(
            t,
            "- large training tokens/s ≥ 1.25× PyTorch's (2 threads): {x:.2}× — {}",
            verdict(x >= 1.25)
        );
    }
    if let Some(m) = find(rows, "stagewise", "large", 2, Train).and_then(|r| r.mfu) {
        let v = if m > 1.0 {
            "unreliable (above 100 %: the peak was measured under load)"
        } else {
            verdict(m >= 0.8)
        };
        let _ = writeln!(t, "- large training MFU ≥ 80 % (2 threads): {:.1} % — {v}", 100.0 * m);
    }
    if let (Some(two), Some(one)) =
        (find(rows, "stagewise", "large", 2, Train), find(rows, "stagewise", "large", 1, Train))
    {
        let x = two.tokens_per_s / one.tokens_per_s;
        let _ =
            writeln!(t, "- large training, 2 threads ≥ 1.85× one thread: {x:.2}× — {}", verdict(x >= 1.85));
    }
    let rss = |implementation: &str| {
        [1, 2]
            .iter()
            .filter_map(|&n| find(rows, implementation, "seed", n, Train)?.peak_rss_mb)
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
    if let Some(x) = ratio("seed", Infer) {
        let _ = writeln!(
            t,
            "- seed inference tokens/s ≥ 2× PyTorch's (2 threads): {x:.2}× — {}",
            verdict(x >= 2.0)
        );
    }
    t
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

/// `YYYY-MM-DD HH:MM` (UTC) of a time in seconds since 1970-01-01 00:00 UTC.
pub fn utc_minutes(unix_seconds: u64) -> String {
    let (days, rem) = (unix_seconds / 86_400, unix_seconds % 86_400);
    format!("{} {:02}:{:02}", civil_date(days as i64), rem / 3600, rem % 3600 / 60)
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

/// The layout of the JSON report: the members of the outer two levels (the report's keys, the
/// entries of its arrays) on lines of their own, anything deeper on one line, so that each GEMM
/// measurement and each run is one line (`grep` finds them); numbers as Rust prints them (`190`,
/// not `190.0`).
#[derive(Debug, Default)]
pub struct Layout {
    /// Containers open around the next token.
    depth: usize,
    /// Whether the innermost container has a member yet.
    has_value: bool,
}

impl Layout {
    /// Members of containers this deep or shallower go on lines of their own.
    const PRETTY_DEPTH: usize = 2;

    fn begin(&mut self, w: &mut (impl io::Write + ?Sized), open: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(open)
    }

    fn end(&mut self, w: &mut (impl io::Write + ?Sized), close: &[u8]) -> io::Result<()> {
        let pretty = self.depth <= Self::PRETTY_DEPTH;
        self.depth -= 1;
        if pretty && self.has_value {
            self.new_line(w)?;
        }
        w.write_all(close)
    }

    fn member(&mut self, w: &mut (impl io::Write + ?Sized), first: bool) -> io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        if self.depth <= Self::PRETTY_DEPTH { self.new_line(w) } else { Ok(()) }
    }

    fn new_line(&self, w: &mut (impl io::Write + ?Sized)) -> io::Result<()> {
        w.write_all(b"\n")?;
        (0..self.depth).try_for_each(|_| w.write_all(b"  "))
    }
}

impl serde_json::ser::Formatter for Layout {
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        // serde_json writes non-finite numbers as `null` without asking the formatter.
        write!(w, "{value}")
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.begin(w, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end(w, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.member(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.begin(w, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end(w, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.member(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(if self.depth <= Self::PRETTY_DEPTH { b": " } else { b":" })
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// A benchmark's samples, summarised.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Where and how it ran.
    pub context: Context,
    /// The load average once the model runs were over (`unknown` when not recorded).
    pub load_after: String,
    /// Every GEMM measurement, in run order.
    pub gemms: Vec<Gemm>,
    /// faer's best rate per thread count (see [`peaks`]).
    pub peaks: Vec<(usize, f64)>,
    /// One row per (implementation, configuration, threads, mode), in first-seen order.
    pub rows: Vec<Row>,
}

impl Report {
    /// Summarises records; exactly one must be a [`Record::Context`].
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Result<Report> {
        let (mut context, mut load_after) = (None, None);
        let (mut gemms, mut samples) = (Vec::new(), Vec::new());
        for record in records {
            match record {
                Record::Context(c) if context.is_none() => context = Some(c),
                Record::Context(_) => {
                    return Err(Error::data("bench samples", "more than one `context` record"));
                }
                Record::Gemm(g) => gemms.push(g),
                Record::Run(s) => samples.push(s),
                Record::LoadAfter { load_after: l } => load_after = Some(l),
            }
        }
        let context = context.ok_or_else(|| {
            Error::data("bench samples", "no `context` record (the first line `cargo xtask bench` writes)")
        })?;
        let peaks = peaks(&gemms);
        let rows = summarise(&samples, &peaks);
        Ok(Report { context, load_after: load_after.unwrap_or_else(|| "unknown".into()), gemms, peaks, rows })
    }

    /// Parses a samples file's text (one [`Record`] per line; blank lines are skipped) and
    /// summarises it; errors name `what` and the line.
    pub fn from_jsonl(text: &str, what: &str) -> Result<Report> {
        let records = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str::<Record>(line)
                    .map_err(|e| Error::data(format!("{what}, line {}", i + 1), e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Report::from_records(records).map_err(|e| match e {
            Error::Data { message, .. } => Error::data(what, message),
            e => e,
        })
    }

    /// Reads and summarises a samples file.
    pub fn load(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Report::from_jsonl(&text, &path.display().to_string())
    }

    /// The report printed on the console: the GEMM table and peaks, the runs table, the packed
    /// kernel's rates, the MFU warning, the targets and the load averages.
    pub fn console(&self) -> String {
        let mut s = String::from("\n");
        s.push_str(&gemm_table(&self.gemms));
        s.push('\n');
        for (t, p) in &self.peaks {
            let _ = writeln!(s, "peak at {t} thread(s): {p:.1} GFLOP/s");
        }
        s.push('\n');
        s.push_str(&runs_table(&self.rows));
        s.push('\n');
        for (t, p) in &kernel_peaks(&self.gemms, Some(GemmKernel::Packed)) {
            let _ = writeln!(s, "packed kernel at {t} thread(s): {p:.1} GFLOP/s");
        }
        if let Some(w) = mfu_warning(&self.rows, &kernel_peaks(&self.gemms, None)) {
            let _ = writeln!(s, "{w}");
        }
        let t = targets(&self.rows);
        if !t.is_empty() {
            let _ = writeln!(s, "{t}");
        }
        let _ = writeln!(s, "load average before: {}; after: {}", self.context.load_before, self.load_after);
        s
    }

    /// The JSON report.
    pub fn json(&self) -> JsonReport {
        let cx = &self.context;
        let packed = kernel_peaks(&self.gemms, Some(GemmKernel::Packed));
        JsonReport {
            peak_gflops: peak_at(&self.peaks, 2),
            peak_gflops_1t: peak_at(&self.peaks, 1),
            packed_peak_gflops: peak_at(&packed, 2),
            packed_peak_gflops_1t: peak_at(&packed, 1),
            gemm: self.gemms.clone(),
            runs: self.rows.clone(),
            windows: cx.windows,
            warmup: cx.warmup,
            repeats: cx.repeats,
            quick: cx.quick,
            date: utc_minutes(cx.started_unix),
            command: cx.command.clone(),
            nproc: cx.nproc,
            cpu: cx.cpu.clone(),
            rustc: cx.rustc.clone(),
            torch: cx.torch.clone(),
            load_before: cx.load_before.clone(),
            load_after: self.load_after.clone(),
        }
    }

    /// The JSON report's text: its top-level keys one per line, each GEMM measurement and each
    /// run on a line of its own (see [`Layout`]).
    pub fn json_text(&self) -> Result<String> {
        let mut out = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, Layout::default());
        self.json()
            .serialize(&mut serializer)
            .map_err(|e| Error::data("bench JSON report", e.to_string()))?;
        out.push(b'\n');
        String::from_utf8(out).map_err(|e| Error::data("bench JSON report", e.to_string()))
    }

    /// Writes the JSON report to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(path, self.json_text()?).map_err(|e| Error::io(path, e))
    }

    /// Rewrites the marked section of the markdown file at `path` (appending it when missing).
    pub fn update_docs(&self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        std::fs::write(path, replace_section(&text, &self.section())).map_err(|e| Error::io(path, e))
    }

    /// One sentence on the run lengths.
    fn plan_text(&self) -> String {
        let cx = &self.context;
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "Each run: {} warm-up window{} then {} timed window{} from the start of the training split, in a fresh\n\
             process; {} run{} per row{}, median reported.",
            cx.warmup,
            plural(cx.warmup),
            cx.windows,
            plural(cx.windows),
            cx.repeats,
            plural(cx.repeats),
            if cx.torch.is_some() { ", Stagewise and PyTorch alternating" } else { "" }
        )
    }

    /// The `docs/results.md` section, markers included.
    pub fn section(&self) -> String {
        let cx = &self.context;
        let mut s = format!("{START}\n## Throughput: `cargo xtask bench`\n\n");
        if cx.quick {
            s.push_str("> **Smoke run (`--quick`)**: a handful of windows, one repeat; the figures below are not\n> meaningful. Run `cargo xtask bench` without `--quick` for the real measurement.\n\n");
        }
        let _ = writeln!(s, "Generated by `{}` on {} (UTC).\n", cx.command, utc_minutes(cx.started_unix));
        let _ = writeln!(
            s,
            "Machine: {} logical CPUs, {}; {}{}. Load average (1/5/15 min) before: {}; after: {}.\n",
            cx.nproc,
            cx.cpu,
            cx.rustc,
            cx.torch.as_ref().map_or(String::new(), |t| format!(", PyTorch {t}")),
            cx.load_before,
            self.load_after
        );
        let _ = writeln!(s, "{}\n", self.plan_text());
        s.push_str("### f32 GEMM (`stagewise bench-gemm`)\n\n");
        s.push_str(&gemm_table(&self.gemms));
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
            list(&self.peaks)
        );
        let packed = kernel_peaks(&self.gemms, Some(GemmKernel::Packed));
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
        s.push_str(&runs_table(&self.rows));
        s.push_str(
            "\nTokens are target tokens (B × steps per window). MFU = tokens/s × flops_per_token / peak of the\n\
             same thread count, with flops_per_token = 6·(G·H(E+H) + (L−1)·G·H·2H + H·V) for training and a\n\
             third of it for inference (G gate blocks: 4 LSTM, 3 GRU, 1 RNN; L layers). Peak RSS: the largest\n\
             over the runs of a row, each run a fresh process (`VmHWM` for Stagewise, `ru_maxrss` for\n\
             PyTorch), corpus preparation included.\n",
        );
        if let Some(w) = mfu_warning(&self.rows, &kernel_peaks(&self.gemms, None)) {
            s.push('\n');
            s.push_str(&w);
        }
        let t = targets(&self.rows);
        if !t.is_empty() {
            s.push_str("\n### Throughput targets\n\n");
            s.push_str("The goals Stagewise is held to, each with the figure measured here:\n\n");
            s.push_str(&t);
        }
        s.push_str(END);
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GemmReport, RunReport};
    use super::*;
    use BenchMode::{Infer, Train};
    use GemmKernel::{Faer, Packed};

    /// A GEMM measurement: pass, kernel, size, depth, threads, best and median GFLOP/s.
    fn measured(
        pass: usize,
        kernel: GemmKernel,
        size: usize,
        depth: usize,
        threads: usize,
        gflops: f64,
        median: f64,
    ) -> Gemm {
        Gemm { pass, kernel, size, depth, threads, gflops, median_gflops: median }
    }

    fn sample(implementation: &str, threads: usize, mode: BenchMode, tps: f64, rss: Option<f64>) -> Sample {
        Sample {
            implementation: implementation.into(),
            config: "seed".into(),
            threads,
            mode,
            tokens_per_s: tps,
            peak_rss_mb: rss,
            embed: 100,
            hidden: 128,
            kind: "lstm".into(),
            layers: 1,
            vocab: 10_000,
        }
    }

    fn report(gemms: &[Gemm], samples: &[Sample]) -> Report {
        let context = Context { windows: 1, repeats: 3, ..Context::default() };
        let records = std::iter::once(Record::Context(context))
            .chain(gemms.iter().cloned().map(Record::Gemm))
            .chain(samples.iter().cloned().map(Record::Run));
        Report::from_records(records).unwrap()
    }

    #[test]
    fn flops_per_token_of_the_two_configurations() {
        // seed: 4·128·(100+128) + 128·10000 = 116,736 + 1,280,000 multiply-adds.
        assert_eq!(flops_per_token(ModelShape::lstm(100, 128, 10_000), Train), 6.0 * 1_396_736.0);
        assert_eq!(flops_per_token(ModelShape::lstm(100, 128, 10_000), Infer), 2.0 * 1_396_736.0);
        // large: 4·512·(256+512) + 512·10000 = 1,572,864 + 5,120,000.
        assert_eq!(flops_per_token(ModelShape::lstm(256, 512, 10_000), Train), 6.0 * 6_692_864.0);
        // gru: 3·128·228 + 1,280,000; lstm-2layer: the seed's + 4·128·256.
        let gru = ModelShape { kind: "gru", ..ModelShape::lstm(100, 128, 10_000) };
        assert_eq!(flops_per_token(gru, Train), 6.0 * 1_367_552.0);
        let two = ModelShape { layers: 2, ..ModelShape::lstm(100, 128, 10_000) };
        assert_eq!(flops_per_token(two, Infer), 2.0 * 1_527_808.0);
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
            measured(1, Faer, 2048, 2048, 1, 90.0, 80.0),
            measured(1, Faer, 4096, 4096, 1, 100.0, 95.0),
            measured(1, Faer, 2048, 2048, 2, 190.0, 180.0),
            measured(1, Faer, 4096, 4096, 2, 185.0, 180.0),
        ];
        assert_eq!(peaks(&gemms), vec![(1, 100.0), (2, 190.0)]);
        let samples = [
            sample("stagewise", 1, Train, 3000.0, Some(400.0)),
            sample("pytorch", 1, Train, 1000.0, Some(1200.0)),
            sample("stagewise", 1, Train, 1000.0, Some(410.0)),
            sample("pytorch", 1, Train, 2000.0, None),
            sample("stagewise", 1, Train, 2000.0, Some(405.0)),
            sample("pytorch", 1, Train, 1500.0, Some(1100.0)),
            sample("stagewise", 2, Infer, 5000.0, None),
        ];
        let report = report(&gemms, &samples);
        let rows = &report.rows;
        assert_eq!(rows.len(), 3);
        let ours = &rows[0];
        assert_eq!(
            (ours.implementation.as_str(), ours.tokens_per_s, ours.peak_rss_mb),
            ("stagewise", 2000.0, Some(410.0))
        );
        assert_eq!(ours.samples, vec![3000.0, 1000.0, 2000.0]);
        let expected = 2000.0 * 6.0 * 1_396_736.0 / 100e9;
        assert!((ours.mfu.unwrap() - expected).abs() < 1e-12);
        assert_eq!(ours.ratio_vs_pytorch, Some(2000.0 / 1500.0));
        assert_eq!((rows[1].tokens_per_s, rows[1].peak_rss_mb), (1500.0, Some(1200.0)));
        assert_eq!(rows[1].ratio_vs_pytorch, None);
        assert_eq!((rows[2].peak_rss_mb, rows[2].ratio_vs_pytorch), (None, None));
        let infer_mfu = 5000.0 * 2.0 * 1_396_736.0 / 190e9;
        assert!((rows[2].mfu.unwrap() - infer_mfu).abs() < 1e-12);
        assert_eq!(mfu_warning(rows, &report.peaks), None);
        let table = runs_table(rows);
        assert!(table.contains("**1.33×**") && table.contains("0.34×"), "{table}");

        let json = serde_json::to_value(report.json()).unwrap();
        assert_eq!(
            (json["peak_gflops"].as_f64(), json["peak_gflops_1t"].as_f64()),
            (Some(190.0), Some(100.0))
        );
        assert_eq!(json["packed_peak_gflops"], serde_json::Value::Null);
        let run = &json["runs"][0];
        assert_eq!(
            (&run["impl"], &run["config"], &run["threads"], &run["mode"], run["tokens_per_s"].as_f64()),
            (&"stagewise".into(), &"seed".into(), &1.into(), &"train".into(), Some(2000.0))
        );
        assert_eq!(run["tokens_per_s_samples"], serde_json::json!([3000.0, 1000.0, 2000.0]));
        assert_eq!(json["runs"][1]["ratio_vs_pytorch"], serde_json::Value::Null);
        assert_eq!((&json["windows"], &json["repeats"]), (&1.into(), &3.into()));
    }

    /// Every key of the JSON report and of its entries, in order: scripts read them.
    #[test]
    fn json_report_keys_are_stable() {
        let gemms = [measured(1, Faer, 2048, 2048, 2, 190.0, 180.0)];
        let report = report(&gemms, &[sample("stagewise", 2, Train, 5000.0, Some(300.0))]);
        let text = serde_json::to_string(&report.json()).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut top = keys(&value);
        top.sort();
        let mut expected = vec![
            "peak_gflops",
            "peak_gflops_1t",
            "packed_peak_gflops",
            "packed_peak_gflops_1t",
            "gemm",
            "runs",
            "windows",
            "warmup",
            "repeats",
            "quick",
            "date",
            "command",
            "nproc",
            "cpu",
            "rustc",
            "torch",
            "load_before",
            "load_after",
        ];
        expected.sort_unstable();
        assert_eq!(top, expected);
        let mut gemm = keys(&value["gemm"][0]);
        gemm.sort();
        assert_eq!(gemm, ["depth", "gflops", "kernel", "median_gflops", "pass", "size", "threads"]);
        let mut run = keys(&value["runs"][0]);
        run.sort();
        assert_eq!(
            run,
            [
                "config",
                "flops_per_token",
                "impl",
                "mfu",
                "mode",
                "peak_rss_mb",
                "ratio_vs_pytorch",
                "threads",
                "tokens_per_s",
                "tokens_per_s_samples"
            ]
        );
        // Written in the old order too: `peak_gflops` first, `load_after` last.
        assert!(
            text.starts_with("{\"peak_gflops\":") && text.contains("\"load_after\":\"unknown\"}"),
            "{text}"
        );
        // Laid out as before: a key per line, a GEMM measurement or a run per line, integral
        // numbers without `.0`.
        let laid_out = report.json_text().unwrap();
        assert!(
            laid_out.starts_with("{\n  \"peak_gflops\": 190,\n  \"peak_gflops_1t\": null,\n"),
            "{laid_out}"
        );
        assert!(laid_out.contains("\n  \"gemm\": [\n    {\"pass\":1,\"kernel\":\"faer\",\"size\":2048,\"depth\":2048,\"threads\":2,\"gflops\":190,\"median_gflops\":180}\n  ],\n"), "{laid_out}");
        assert!(laid_out.contains("\n    {\"impl\":\"stagewise\",\"config\":\"seed\",\"threads\":2,\"mode\":\"train\",\"tokens_per_s\":5000,\"mfu\":0.22"), "{laid_out}");
        assert!(laid_out.contains("\"peak_rss_mb\":300,\"tokens_per_s_samples\":[5000],\"flops_per_token\":8380416,\"ratio_vs_pytorch\":null}\n  ],\n"), "{laid_out}");
        assert!(laid_out.ends_with("\n  \"load_after\": \"unknown\"\n}\n"), "{laid_out}");
        // And read back, to the bit.
        assert_eq!(serde_json::from_str::<JsonReport>(&laid_out).unwrap(), report.json());
    }

    /// The packed kernel's rate is reported beside faer's but is not the MFU yardstick; a run
    /// faster than faer's peak but not than the packed kernel's is no reason for a warning.
    #[test]
    fn packed_kernel_peak_is_reported_and_raises_the_warning_threshold() {
        let gemms =
            [measured(1, Faer, 2048, 2048, 2, 180.0, 170.0), measured(1, Packed, 2048, 512, 2, 220.0, 215.0)];
        assert_eq!(peaks(&gemms), vec![(2, 180.0)]);
        let best = kernel_peaks(&gemms, None);
        assert_eq!(best, vec![(2, 220.0)]);
        // 70,000 tokens/s × 2.79 MFLOP = 196 GFLOP/s: above faer's 180, below the packed 220.
        let report = report(&gemms, &[sample("stagewise", 2, Infer, 70_000.0, None)]);
        assert!(report.rows[0].mfu.is_some_and(|m| m > 1.0));
        assert_eq!(mfu_warning(&report.rows, &best), None);
        assert!(mfu_warning(&report.rows, &report.peaks).is_some());
        let table = gemm_table(&gemms);
        assert!(
            table.contains("| packed | 2048×512×2048 | 2 | 220.0 |") && table.contains("| faer | 2048³ |"),
            "{table}"
        );
        let json = report.json();
        assert_eq!((json.packed_peak_gflops, json.packed_peak_gflops_1t), (Some(220.0), None));
        assert!(serde_json::to_string(&json).unwrap().contains("\"kernel\":\"packed\""));
        assert!(report.console().contains("packed kernel at 2 thread(s): 220.0 GFLOP/s"));
        assert!(report.section().contains("The head's packed AVX-512 kernel"));
    }

    #[test]
    fn peak_is_the_best_over_passes_and_an_impossible_mfu_is_flagged() {
        let gemms =
            [measured(1, Faer, 2048, 2048, 2, 110.0, 100.0), measured(2, Faer, 2048, 2048, 2, 180.0, 170.0)];
        assert_eq!(peaks(&gemms), vec![(2, 180.0)]);
        let mut large = sample("stagewise", 2, Train, 5000.0, Some(700.0));
        (large.config, large.embed, large.hidden) = ("large".into(), 256, 512);
        // 5,000 tokens/s × 40.2 MFLOP = 201 GFLOP/s > the 180 GFLOP/s "peak".
        let report = report(&gemms, &[large]);
        assert!(report.rows[0].mfu.is_some_and(|m| m > 1.0));
        assert!(mfu_warning(&report.rows, &report.peaks).is_some_and(|w| w.contains("112 %")));
        assert!(targets(&report.rows).contains("unreliable"), "{}", targets(&report.rows));
        let section = report.section();
        assert!(section.contains("### Throughput targets") && section.contains("**Warning:**"), "{section}");
        assert!(section.contains("| before | faer | 2048³ |") && section.contains("| after | faer |"));
    }

    #[test]
    fn targets_compare_with_pytorch_and_one_thread() {
        let mut samples = Vec::new();
        for (implementation, threads, mode, tps, rss) in [
            ("stagewise", 2, Train, 25_000.0, 230.0),
            ("pytorch", 2, Train, 10_000.0, 1100.0),
            ("stagewise", 2, Infer, 90_000.0, 130.0),
            ("pytorch", 2, Infer, 50_000.0, 800.0),
        ] {
            samples.push(sample(implementation, threads, mode, tps, Some(rss)));
        }
        let mut large = |threads, tps| {
            let mut s = sample("stagewise", threads, Train, tps, None);
            (s.config, s.embed, s.hidden) = ("large".into(), 256, 512);
            samples.push(s);
        };
        large(1, 3000.0);
        large(2, 5000.0);
        for (implementation, tps) in [("stagewise", 21_000.0), ("pytorch", 10_000.0)] {
            let mut s = sample(implementation, 2, Train, tps, None);
            (s.config, s.kind) = ("gru".into(), "gru".into());
            samples.push(s);
        }
        let t = targets(&report(&[], &samples).rows);
        assert!(t.contains("gru (GRU) training tokens/s ≥ 2× PyTorch's (2 threads): 2.10× — met"), "{t}");
        assert!(!t.contains("lstm-2layer"), "{t}");
        assert!(t.contains("seed training tokens/s ≥ 2× PyTorch's (2 threads): 2.50× — met"), "{t}");
        assert!(t.contains("seed inference tokens/s ≥ 2× PyTorch's (2 threads): 1.80× — **not met**"), "{t}");
        assert!(t.contains("2 threads ≥ 1.85× one thread: 1.67× — **not met**"), "{t}");
        assert!(t.contains("230 vs 1,100 MiB = 0.21× — met"), "{t}");
        // No PyTorch run of large, no GEMM peak: those lines are left out.
        assert!(!t.contains("large training tokens/s") && !t.contains("MFU"), "{t}");
        assert_eq!(targets(&[]), "");
    }

    /// The report reads the lines the children print: `bench-gemm` and `bench-run` (serialised
    /// from their own types here) and the PyTorch script's (written by hand, with its extra key).
    #[test]
    fn child_lines_become_records() {
        let gemm = GemmReport {
            kernel: Packed,
            size: 2048,
            depth: 512,
            threads: 2,
            gflops: 220.5,
            median_gflops: 219.0,
            repeats: 3,
        };
        let mut line = serde_json::to_value(&gemm).unwrap();
        line["record"] = "gemm".into();
        line["pass"] = 2.into();
        assert_eq!(
            serde_json::from_value::<Record>(line).unwrap(),
            Record::Gemm(measured(2, Packed, 2048, 512, 2, 220.5, 219.0))
        );

        let run = RunReport {
            implementation: "stagewise",
            config: "seed".into(),
            threads: 1,
            mode: Infer,
            tokens_per_s: 1234.5,
            peak_rss_mb: None,
            windows: 2,
            warmup: 1,
            tokens: 4096,
            seconds: 3.3,
            embed: 100,
            hidden: 128,
            kind: "lstm",
            layers: 1,
            vocab: 10_000,
            batch: 32,
            bptt: 64,
        };
        let mut line = serde_json::to_value(&run).unwrap();
        line["record"] = "run".into();
        assert_eq!(
            serde_json::from_value::<Record>(line).unwrap(),
            Record::Run(sample("stagewise", 1, Infer, 1234.5, None))
        );

        let python = r#"{"record":"run","impl":"pytorch","config":"large","threads":2,"mode":"infer","tokens_per_s":1.5,"peak_rss_mb":12.5,"windows":1,"warmup":0,"tokens":4096,"seconds":2.0,"embed":256,"hidden":512,"vocab":10000,"batch":64,"bptt":64,"torch":"2.15.0"}"#;
        let Record::Run(s) = serde_json::from_str::<Record>(python).unwrap() else { panic!("not a run") };
        assert_eq!(
            (s.implementation.as_str(), s.config.as_str(), s.threads, s.mode),
            ("pytorch", "large", 2, Infer)
        );
        assert_eq!(
            (s.tokens_per_s, s.peak_rss_mb, s.embed, s.hidden, s.vocab),
            (1.5, Some(12.5), 256, 512, 10_000)
        );
        // A missing `peak_rss_mb` is unknown memory; a missing `tokens_per_s` or an unknown mode is an error.
        let no_rss = r#"{"record":"run","impl":"x","config":"c","threads":1,"mode":"train","tokens_per_s":1,"embed":1,"hidden":1,"vocab":1}"#;
        assert!(matches!(
            serde_json::from_str::<Record>(no_rss),
            Ok(Record::Run(Sample { peak_rss_mb: None, .. }))
        ));
        assert!(serde_json::from_str::<Record>(r#"{"record":"run","impl":"x"}"#).is_err());
        assert!(serde_json::from_str::<Record>(&no_rss.replace("train", "sing")).is_err());
        assert!(serde_json::from_str::<Record>(&no_rss.replace("\"run\"", "\"walk\"")).is_err());
    }

    #[test]
    fn samples_files_are_read_line_by_line() {
        let context = serde_json::to_string(&Record::Context(Context {
            started_unix: 1_704_067_260,
            command: "cargo xtask bench --quick".into(),
            torch: Some("2.15.0".into()),
            quick: true,
            windows: 5,
            warmup: 1,
            repeats: 1,
            ..Context::default()
        }))
        .unwrap();
        let run = r#"{"record":"run","impl":"stagewise","config":"seed","threads":2,"mode":"train","tokens_per_s":20000,"peak_rss_mb":230,"embed":100,"hidden":128,"vocab":10000}"#;
        let load = r#"{"record":"load_after","load_after":"1.00 0.50 0.25"}"#;
        let text = format!("{context}\n\n{run}\n{load}\n");
        let report = Report::from_jsonl(&text, "s.jsonl").unwrap();
        assert_eq!((report.rows.len(), report.load_after.as_str()), (1, "1.00 0.50 0.25"));
        let section = report.section();
        assert!(
            section.contains("Generated by `cargo xtask bench --quick` on 2024-01-01 00:01 (UTC)."),
            "{section}"
        );
        assert!(section.contains("**Smoke run (`--quick`)**"), "{section}");
        assert!(
            section.contains("1 warm-up window then 5 timed windows")
                && section.contains("1 run per row, Stagewise and PyTorch alternating"),
            "{section}"
        );
        assert!(section.starts_with(START) && section.ends_with(&format!("{END}\n")));
        let console = report.console();
        assert!(
            console.contains("| stagewise | seed | 2 | train | 20,000 | 20,000–20,000 | – | 230 MiB |  |  |"),
            "{console}"
        );
        assert!(console.ends_with("load average before: ; after: 1.00 0.50 0.25\n"), "{console}");

        let err = Report::from_jsonl(&format!("{context}\n{{\"record\":\"run\"}}\n"), "s.jsonl").unwrap_err();
        assert!(err.to_string().starts_with("s.jsonl, line 2: "), "{err}");
        let err = Report::from_jsonl(run, "s.jsonl").unwrap_err();
        assert!(err.to_string().contains("no `context` record"), "{err}");
        let err = Report::from_jsonl(&format!("{context}\n{context}\n"), "s.jsonl").unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
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
    fn dates_from_days_and_seconds() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_017), "2000-03-01");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(utc_minutes(0), "1970-01-01 00:00");
        assert_eq!(utc_minutes(19_723 * 86_400 + 13 * 3600 + 7 * 60 + 59), "2024-01-01 13:07");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.6), "1,234,568");
    }
}
