//! Throughput measurements for `cargo xtask bench`: the machine's f32 GEMM rate through faer (and
//! through the head's packed kernel), and tokens/s of training or forward-only inference on a real
//! corpus; and, in [`report`], the report built from them.
//!
//! Each measurement runs in its own `stagewise bench-gemm` / `stagewise bench-run` process, so
//! the peak resident memory reported is that of one run. The results are printed as one flat JSON
//! line, which `cargo xtask bench` collects into a samples file for `stagewise bench-report`;
//! these are not unit tests (timing belongs in benchmarks).

pub mod report;

use crate::config::Config;
use crate::data::Batched;
use crate::model::Model;
use crate::train::{prepare_data, thread_pool};
use serde::Serialize;
use stagewise_core::{Ctx, Error, Mode, Result, Rng, par_for_threads};
use stagewise_kernels::matrix::{gemm, mat, mat_mut};
use stagewise_kernels::memory::AlignedVec;
use stagewise_kernels::packed;
use stagewise_vectorizer::Vectorizer;
use std::path::Path;
use std::time::Instant;

/// Which matrix product `bench-gemm` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GemmKernel {
    /// `[N, N]×[N, N]` through faer ([`stagewise_kernels::matrix::gemm`]): the practical peak that
    /// MFU is measured against.
    Faer,
    /// `[N, 512]×[512, N]` through the head's packed AVX-512 kernel ([`stagewise_kernels::packed`]),
    /// the right-hand side packed once and the left-hand side packed on every call, as the head
    /// does. Its depth is the deepest the kernel takes.
    Packed,
}

/// One GEMM measurement, f32: `[size, depth]×[depth, size]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmReport {
    /// Which product.
    pub kernel: GemmKernel,
    /// Matrix side N.
    pub size: usize,
    /// The inner dimension (N for faer's square product).
    pub depth: usize,
    /// Worker threads.
    pub threads: usize,
    /// Best rate over the timed repeats, GFLOP/s (`2·N²·depth / seconds / 1e9`).
    pub gflops: f64,
    /// Median rate over the timed repeats, GFLOP/s.
    pub median_gflops: f64,
    /// Timed repeats (after one untimed warm-up).
    pub repeats: usize,
}

/// Times `C = A·B` for f32 matrices into a preallocated `C`, inside a rayon pool of `threads`
/// threads with `Par::rayon(threads)` (`Par::Seq` for one thread): one warm-up, then `repeats`
/// timed products. `kernel` picks the product (see [`GemmKernel`]); the packed one needs AVX-512
/// and is an error elsewhere.
pub fn run_gemm(kernel: GemmKernel, size: usize, threads: usize, repeats: usize) -> Result<GemmReport> {
    if size == 0 || repeats == 0 {
        return Err(Error::config("bench-gemm", "--size and --repeats must be at least 1"));
    }
    let depth = match kernel {
        GemmKernel::Faer => size,
        GemmKernel::Packed if packed::kernel_applies::<f32>(packed::MAX_DEPTH) => packed::MAX_DEPTH,
        GemmKernel::Packed => {
            return Err(Error::config("bench-gemm", "--kernel packed needs a processor with AVX-512"));
        }
    };
    let pool = thread_pool(threads)?;
    let threads = pool.current_num_threads();
    pool.install(|| {
        let mut rng = Rng::new(0);
        let mut random =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.uniform_in(-1.0, 1.0) as f32).collect() };
        let (a, b) = (random(size * depth), random(depth * size));
        // Like the pipeline's activation buffers: 64-byte aligned, on huge pages.
        let mut c = AlignedVec::<f32>::zeroed(size * size);
        let par = par_for_threads(threads);
        // The packed kernel's operands: `b` read as `W` `[size, depth]` (so `B = Wᵀ`), packed once.
        let (mut a_tiles, mut b_panels) = match kernel {
            GemmKernel::Faer => (Vec::new(), Vec::new()),
            GemmKernel::Packed => {
                (vec![0f32; packed::lhs_len(size, depth)], vec![0f32; packed::rhs_len(depth, size)])
            }
        };
        if kernel == GemmKernel::Packed {
            packed::pack_transposed_rhs(&mut b_panels, &b, size, depth, None, par);
        }
        let flops = 2.0 * (size * size) as f64 * depth as f64;
        let mut rates = Vec::with_capacity(repeats);
        for i in 0..=repeats {
            let t = Instant::now();
            match kernel {
                GemmKernel::Faer => {
                    gemm(mat_mut(&mut c, size, size), false, mat(&a, size, size), mat(&b, size, size), par)
                }
                GemmKernel::Packed => {
                    packed::pack_lhs(&mut a_tiles, &a, size, depth, false, par);
                    packed::gemm_packed(mat_mut(&mut c, size, size), &a_tiles, depth, &b_panels, None, par);
                }
            }
            let seconds = t.elapsed().as_secs_f64();
            std::hint::black_box(&c);
            if i > 0 {
                rates.push(flops / seconds.max(1e-12) / 1e9);
            }
        }
        rates.sort_by(f64::total_cmp);
        let best = rates.last().copied().unwrap_or(0.0);
        Ok(GemmReport {
            kernel,
            size,
            depth,
            threads,
            gflops: best,
            median_gflops: median_sorted(&rates),
            repeats,
        })
    })
}

/// What `bench-run` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// Whole training cycles: embed, forward, loss, backward, Adam update (`Model::train_window`).
    Train,
    /// Forward only: embed and forward to the logits, no loss, no gradients (`Model::predict`).
    Infer,
}

/// One `bench-run` measurement; printed as one JSON line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// Always `"stagewise"` (the PyTorch script prints `"pytorch"`).
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    /// The config file's stem (`seed`, `large`).
    pub config: String,
    /// Worker threads.
    pub threads: usize,
    /// `train` or `infer`.
    pub mode: BenchMode,
    /// Target tokens (`B·steps` per window) of the timed windows per wall second.
    pub tokens_per_s: f64,
    /// Peak resident memory of the process (`VmHWM`), MiB; `None` (JSON `null`) off Linux.
    pub peak_rss_mb: Option<f64>,
    /// Timed windows.
    pub windows: usize,
    /// Untimed warm-up windows before them.
    pub warmup: usize,
    /// Target tokens in the timed windows.
    pub tokens: usize,
    /// Wall seconds of the timed windows.
    pub seconds: f64,
    /// Embedding width E.
    pub embed: usize,
    /// Recurrent width H.
    pub hidden: usize,
    /// The forward box's `kind` (`lstm`, `gru`, `rnn_tanh`), which sets the FLOPs per token.
    pub kind: &'static str,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Vocabulary size V (as fitted on the corpus).
    pub vocab: usize,
    /// Streams B.
    pub batch: usize,
    /// Window length T.
    pub bptt: usize,
}

/// Prepares the corpus exactly as `train` does (`prepare_data`, then the training split batched
/// into `B` streams), builds `Model::<f32>::from_config`, runs `warmup` windows, then times
/// `windows` more of training cycles or forward-only passes, inside a pool of `threads` threads.
///
/// Windows are taken in order from the start of the training split with the recurrent state
/// carried (and detached) between them, as in an epoch; a split shorter than `warmup + windows`
/// windows is restarted from its beginning with the state reset.
pub fn run_model(
    config: &Config,
    name: &str,
    threads: usize,
    mode: BenchMode,
    windows: usize,
    warmup: usize,
) -> Result<RunReport> {
    if windows == 0 {
        return Err(Error::config("bench-run", "--windows must be at least 1"));
    }
    config.validate()?;
    let pool = thread_pool(threads)?;
    let threads = pool.current_num_threads();
    pool.install(|| {
        let data = prepare_data(config)?;
        let vocab = data.vectorizer.vocab_size();
        let (batch, bptt) = (config.train.batch, config.train.bptt);
        let what = format!("{} (train split)", config.data.path.display());
        let split = Batched::new(&data.train_ids, batch, &what)?;
        drop(data);
        let mut model = Model::<f32>::from_config(config, vocab, batch, bptt)?;
        let cx = Ctx { par: par_for_threads(threads), mode: Mode::Train, step: 0, seed: config.train.seed };
        let mut windows_in_order = split.windows(bptt);
        let mut step = |model: &mut Model<f32>| -> Result<usize> {
            let w = match windows_in_order.next() {
                Some(w) => w,
                None => {
                    // End of the split: start it again, from a zero state as an epoch would.
                    model.reset_state();
                    windows_in_order = split.windows(bptt);
                    windows_in_order.next().ok_or_else(|| Error::data(&what, "no window to run"))?
                }
            };
            match mode {
                BenchMode::Train => model.train_window(w, &cx)?,
                BenchMode::Infer => {
                    std::hint::black_box(model.predict(w.inputs, &cx)?);
                }
            }
            Ok(w.targets.len())
        };
        for _ in 0..warmup {
            step(&mut model)?;
        }
        let started = Instant::now();
        let mut tokens = 0;
        for _ in 0..windows {
            tokens += step(&mut model)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(RunReport {
            implementation: "stagewise",
            config: name.to_owned(),
            threads,
            mode,
            tokens_per_s: tokens as f64 / seconds.max(1e-12),
            peak_rss_mb: peak_rss_mb(),
            windows,
            warmup,
            tokens,
            seconds,
            embed: config.embedding.dim(),
            hidden: config.forward.hidden(),
            kind: config.forward.kind().name(),
            layers: config.forward.layers(),
            vocab,
            batch,
            bptt,
        })
    })
}

/// The config's name for reports: the file stem (`configs/large.toml` -> `large`).
pub fn config_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}

/// Peak resident set size of this process in MiB: `VmHWM` of `/proc/self/status`.
///
/// Linux only: `None` on systems without `/proc/self/status` (or without that line).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm_kib(&status).map(|kib| kib as f64 / 1024.0)
}

/// The `VmHWM:   123456 kB` value of a `/proc/PID/status` text, in KiB.
fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// Median of an ascending slice (mean of the middle two for an even count; 0 when empty).
fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tstagewise\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(20480));
        assert_eq!(parse_vm_hwm_kib("VmRSS: 1 kB\n"), None);
        assert_eq!(parse_vm_hwm_kib("VmHWM: 12 MB\n"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median_sorted(&[]), 0.0);
        assert_eq!(median_sorted(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median_sorted(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }

    #[test]
    fn config_names_are_file_stems() {
        assert_eq!(config_name(Path::new("configs/large.toml")), "large");
        assert_eq!(config_name(Path::new("seed")), "seed");
    }

    #[test]
    fn small_gemm_reports_a_positive_rate() {
        let r = run_gemm(GemmKernel::Faer, 32, 1, 2).unwrap();
        assert_eq!((r.size, r.depth, r.threads, r.repeats), (32, 32, 1, 2));
        assert!(r.gflops > 0.0 && r.gflops >= r.median_gflops, "{r:?}");
    }

    #[test]
    fn packed_gemm_reports_a_positive_rate_or_names_what_it_needs() {
        match run_gemm(GemmKernel::Packed, 40, 1, 2) {
            Ok(r) => {
                assert_eq!((r.kernel, r.size, r.depth), (GemmKernel::Packed, 40, packed::MAX_DEPTH));
                assert!(r.gflops > 0.0 && r.gflops >= r.median_gflops, "{r:?}");
            }
            Err(e) => {
                assert!(!packed::kernel_applies::<f32>(packed::MAX_DEPTH));
                assert!(e.to_string().contains("AVX-512"), "{e}");
            }
        }
    }
}
