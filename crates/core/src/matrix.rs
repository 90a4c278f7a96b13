//! Row-major views over our own slices, and the one GEMM entry point.
//!
//! Every buffer in Stagewise is a plain row-major slice; these helpers give faer views of them so
//! matrix products run in faer's kernels, writing into preallocated outputs.

use crate::Float;
use faer::{Accum, MatMut, MatRef, Par};

/// A row-major `rows x cols` view of `data[..rows * cols]`.
#[inline]
pub fn mat<T: Float>(data: &[T], rows: usize, cols: usize) -> MatRef<'_, T> {
    MatRef::from_row_major_slice(&data[..rows * cols], rows, cols)
}

/// A writable row-major `rows x cols` view of `data[..rows * cols]`.
#[inline]
pub fn mat_mut<T: Float>(data: &mut [T], rows: usize, cols: usize) -> MatMut<'_, T> {
    MatMut::from_row_major_slice_mut(&mut data[..rows * cols], rows, cols)
}

/// Products below this many multiply-adds (`m·n·k`) run on one thread: 8 Mi, between the seed's
/// recurrence products (2 Mi, faster sequential) and the large configuration's (64 Mi, faster on
/// two threads), measured on the project's 2-core machine.
pub const SEQUENTIAL_BELOW_MACS: usize = 8 << 20;

/// `dst = a·b` (`accumulate == false`) or `dst += a·b` (`true`), through faer.
///
/// Two things are done around faer's call, both measured:
/// - A product whose output is a single row or column runs sequentially: faer splits such
///   matrix–vector sums across threads, which changes the rounding with the thread count (and
///   allocates scratch). Our results must be bit-identical at any thread count.
/// - So does a product of fewer than [`SEQUENTIAL_BELOW_MACS`] multiply-adds: splitting it costs
///   more than it saves (the seed's per-step `[32, 512]×[512, 128]` recurrence product took 78 µs
///   on two threads, 31 µs on one). faer's split of a matrix product never splits the sum over
///   `k`, so this changes no result.
/// - Afterwards the upper halves of the AVX registers are cleared (`vzeroupper`). faer's kernels
///   leave them dirty; on Intel cores every later SSE-encoded instruction (our element-wise loops,
///   libm's `exp`) then pays a merge penalty — 60× slower `exp` was measured on this machine.
#[inline]
pub fn gemm<T: Float>(dst: MatMut<'_, T>, accumulate: bool, a: MatRef<'_, T>, b: MatRef<'_, T>, par: Par) {
    let beta = if accumulate { Accum::Add } else { Accum::Replace };
    let small = dst.nrows() * dst.ncols() * a.ncols() < SEQUENTIAL_BELOW_MACS;
    let par = if dst.nrows() == 1 || dst.ncols() == 1 || small { Par::Seq } else { par };
    faer::linalg::matmul::matmul(dst, beta, a, b, T::from_f64(1.0), par);
    clear_upper_vector_state();
}

/// Clears the upper halves of the AVX registers after foreign wide-vector code (see [`gemm`]).
#[inline]
pub fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        #[allow(unsafe_code)]
        // SAFETY: AVX was detected just above, which is the only requirement of `vzeroupper`. It
        // zeroes bits 128.. of the vector registers; no Rust value lives there between statements
        // of code compiled without AVX, which is all of ours.
        unsafe {
            zeroupper()
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn zeroupper() {
    std::arch::x86_64::_mm256_zeroupper();
}

/// A textbook triple loop, the algorithmic reference the faer path is tested against.
pub fn gemm_naive<T: Float>(dst: &mut [T], accumulate: bool, a: &[T], b: &[T], m: usize, k: usize, n: usize) {
    for i in 0..m {
        for j in 0..n {
            let mut s = T::from_f64(0.0);
            for p in 0..k {
                s += a[i * k + p] * b[p * n + j];
            }
            let d = &mut dst[i * n + j];
            *d = if accumulate { *d + s } else { s };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn faer_gemm_matches_naive_across_tile_edges() {
        let mut rng = Rng::new(5);
        for &(m, k, n) in &[(1, 1, 1), (15, 16, 17), (17, 33, 5), (64, 129, 31), (3, 200, 2)] {
            let a: Vec<f64> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rng.normal()).collect();
            for accumulate in [false, true] {
                let init: Vec<f64> = (0..m * n).map(|_| rng.normal()).collect();
                let mut fast = init.clone();
                let mut slow = init.clone();
                gemm(mat_mut(&mut fast, m, n), accumulate, mat(&a, m, k), mat(&b, k, n), Par::Seq);
                gemm_naive(&mut slow, accumulate, &a, &b, m, k, n);
                for (x, y) in fast.iter().zip(&slow) {
                    assert!((x - y).abs() < 1e-10, "{m}x{k}x{n}: {x} vs {y}");
                }
            }
        }
    }
}

/// Runs `f` compiled for AVX-512 (or else AVX2 + FMA) when the processor has it, and as is
/// otherwise.
///
/// Element-wise kernels (softmax, LSTM gates) are plain loops the compiler vectorises; built for
/// the x86-64 baseline they get 4-wide SSE2. Called inside this wrapper (and inlined into it, so
/// mark the kernel `#[inline(always)]`), the same loop is also compiled for 16-wide AVX-512 and
/// 8-wide AVX2, and the widest the processor runs is picked at run time, so the binary still runs
/// on any x86-64. Results are bit-identical either way: Rust never contracts `a * b + c` into an
/// FMA by itself, every other operation is IEEE-exact in every instruction set, and the kernels fix
/// their own order of additions (e.g. eight partial sums) rather than leaving it to the width.
#[inline(always)]
pub fn with_wide_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[allow(unsafe_code)]
        // SAFETY: AVX-512F was detected just above, the only requirement of `avx512`.
        return unsafe { avx512(f) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[allow(unsafe_code)]
        // SAFETY: AVX2 and FMA were detected just above, the only requirement of `avx2_fma`.
        return unsafe { avx2_fma(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}
