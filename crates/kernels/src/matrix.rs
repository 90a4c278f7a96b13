//! Row-major views over our own slices, and the one GEMM entry point.
//!
//! Every buffer in Stagewise is a plain row-major slice; these helpers give faer views of them so
//! matrix products run in faer's kernels, writing into preallocated outputs.

use crate::Float;
use crate::tuning::{COLUMN_BLOCK, SEQUENTIAL_BELOW_MACS, SPLIT_ALIGN};
use faer::{Accum, Par};

/// faer's matrix views, re-exported so crates that cut our buffers into blocks need not depend on
/// faer themselves.
pub use faer::{MatMut, MatRef};

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

/// Rows and multiply-adds below which a block of rows of a product may not round like the same
/// rows of the whole: faer multiplies a single row with a matrix–vector kernel and products of at
/// most `16³` multiply-adds with another small kernel.
const MIN_BLOCK_ROWS: usize = 16;
/// See [`MIN_BLOCK_ROWS`].
const MIN_BLOCK_MACS: usize = 1 << 16;

/// Whether [`gemm`] over the first `first` of `rows` rows of `[rows, k]×[k, n]` and then over the
/// rest gives every output bit-identical to one product over all `rows`: both blocks must run
/// faer's main kernel, as the whole does (faer never splits the sum over `k` by rows).
pub fn row_blocks_match_whole(first: usize, rows: usize, k: usize, n: usize) -> bool {
    let rest = rows.saturating_sub(first);
    [first, rest].iter().all(|&r| r >= MIN_BLOCK_ROWS && r * k * n >= MIN_BLOCK_MACS)
}

/// `dst = a·b` (`accumulate == false`) or `dst += a·b` (`true`), through faer.
///
/// Two things are done around faer's call, both measured:
/// - A product whose output is a single row or column runs sequentially: faer splits such
///   matrix–vector sums across threads, which changes the rounding with the thread count (and
///   allocates scratch). Our results must be bit-identical at any thread count.
/// - Larger products on several threads are cut into independent blocks (`split_gemm`) rather
///   than handed to faer's parallel kernel, which measured 20–30 % slower here.
/// - A product of fewer than [`SEQUENTIAL_BELOW_MACS`] multiply-adds: splitting it costs
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
    let vector = dst.nrows() == 1 || dst.ncols() == 1;
    match par {
        Par::Rayon(threads) if !small && !vector => split_gemm(dst, beta, a, b, threads.get()),
        _ => faer::linalg::matmul::matmul(dst, beta, a, b, T::from_f64(1.0), Par::Seq),
    }
    clear_upper_vector_state();
}

/// `dst = a·b` or `dst += a·b` like [`gemm`], computed as independent products over blocks of
/// [`COLUMN_BLOCK`] columns of `dst`, spread over rayon's threads under `par`.
///
/// For the weight gradients, whose reduction runs over every row of the window (`k = B·T`, in
/// the thousands): faer walks `k` in slices and reads and writes its whole output block once per
/// slice, so an output of 10 MB (half the head's `[513, 10000]` gradient) goes through memory a
/// dozen times, where a `[513, 256]` block stays in cache. Measured on the project's machine, two
/// threads: the head's weight gradient 176 → 167 ms (large configuration) and 25.6 → 23.9 ms
/// (seed), the LSTM's `W_hh` gradient 38.3 → 35.2 ms. Blocks of columns are independent products,
/// so the result is bit-identical to [`gemm`] (and to one thread).
pub fn gemm_in_column_blocks<T: Float>(
    dst: MatMut<'_, T>,
    accumulate: bool,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    par: Par,
) {
    let beta = if accumulate { Accum::Add } else { Accum::Replace };
    let vector = dst.nrows() == 1 || dst.ncols() == 1;
    if vector || dst.ncols() <= COLUMN_BLOCK {
        gemm(dst, accumulate, a, b, par);
        return;
    }
    let parallel =
        matches!(par, Par::Rayon(_)) && dst.nrows() * dst.ncols() * a.ncols() >= SEQUENTIAL_BELOW_MACS;
    column_blocks(dst, beta, a, b, parallel);
    clear_upper_vector_state();
}

/// Halves `dst` at a block boundary until every piece is at most [`COLUMN_BLOCK`] wide, the
/// halves under `rayon::join` if `parallel`.
fn column_blocks<T: Float>(
    dst: MatMut<'_, T>,
    beta: Accum,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    parallel: bool,
) {
    let blocks = dst.ncols().div_ceil(COLUMN_BLOCK);
    if blocks <= 1 {
        faer::linalg::matmul::matmul(dst, beta, a, b, T::from_f64(1.0), Par::Seq);
        return;
    }
    let cut = blocks / 2 * COLUMN_BLOCK;
    let (d1, d2) = dst.split_at_col_mut(cut);
    let (b1, b2) = b.split_at_col(cut);
    if parallel {
        rayon::join(|| column_blocks(d1, beta, a, b1, true), || column_blocks(d2, beta, a, b2, true));
    } else {
        column_blocks(d1, beta, a, b1, false);
        column_blocks(d2, beta, a, b2, false);
    }
}

/// `dst (+)= a·b` as `parts` independent single-threaded products on disjoint blocks of `dst`,
/// cut along its longer side, run on rayon's threads.
///
/// Why not faer's own `Par::Rayon`: measured on the project's 2-core machine, two independent
/// halves reach 268–294 GFLOP/s on the model's shapes (and on 2048³) where faer's parallel
/// product reaches 215–251: each half packs its own panels and never waits at a barrier. Every
/// element of `dst` is still computed by the same kernel over the same `k` in the same order, so
/// the result is bit-identical to the single-threaded product (tested below, and end to end by
/// the pipeline's 1-vs-2-thread determinism test).
fn split_gemm<T: Float>(dst: MatMut<'_, T>, beta: Accum, a: MatRef<'_, T>, b: MatRef<'_, T>, parts: usize) {
    let long = dst.nrows().max(dst.ncols());
    if parts <= 1 || long < 2 * SPLIT_ALIGN {
        faer::linalg::matmul::matmul(dst, beta, a, b, T::from_f64(1.0), Par::Seq);
        return;
    }
    let first_parts = parts / 2;
    let cut = (long * first_parts / parts).div_ceil(SPLIT_ALIGN) * SPLIT_ALIGN;
    let cut = cut.clamp(SPLIT_ALIGN, long - SPLIT_ALIGN);
    if dst.ncols() >= dst.nrows() {
        let (d1, d2) = dst.split_at_col_mut(cut);
        let (b1, b2) = b.split_at_col(cut);
        rayon::join(
            || split_gemm(d1, beta, a, b1, first_parts),
            || split_gemm(d2, beta, a, b2, parts - first_parts),
        );
    } else {
        let (d1, d2) = dst.split_at_row_mut(cut);
        let (a1, a2) = a.split_at_row(cut);
        rayon::join(
            || split_gemm(d1, beta, a1, b, first_parts),
            || split_gemm(d2, beta, a2, b, parts - first_parts),
        );
    }
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
    use crate::test_rng::TestRng as Rng;

    fn beta(accumulate: bool) -> Accum {
        if accumulate { Accum::Add } else { Accum::Replace }
    }

    /// The parallel split against the single-threaded product, bit for bit, on the model's
    /// shapes (f32, the training type), both layouts of each operand.
    #[test]
    fn split_gemm_is_bit_identical_to_one_thread() {
        let mut rng = Rng::new(9);
        for &(m, k, n) in
            &[(2048, 129, 700), (129, 2048, 640), (333, 512, 200), (64, 512, 2048), (100, 37, 1000)]
        {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let av = if ta { mat(&a, k, m).transpose() } else { mat(&a, m, k) };
                let bv = if tb { mat(&b, n, k).transpose() } else { mat(&b, k, n) };
                let mut one = vec![0.0f32; m * n];
                faer::linalg::matmul::matmul(mat_mut(&mut one, m, n), Accum::Replace, av, bv, 1.0, Par::Seq);
                for parts in [2, 3, 4] {
                    let mut split = vec![1.0f32; m * n];
                    split_gemm(mat_mut(&mut split, m, n), Accum::Replace, av, bv, parts);
                    let same = split.iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{m}x{k}x{n} ta={ta} tb={tb} parts={parts}");
                }
            }
        }
    }

    /// Column blocks against the single-threaded product, bit for bit, including widths that are
    /// not a multiple of the block and an accumulating product.
    #[test]
    fn column_blocks_are_bit_identical_to_one_product() {
        let mut rng = Rng::new(4);
        for &(m, k, n) in &[(129, 2048, 700), (100, 600, 513), (7, 3000, 300), (513, 40, 1000)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
            let init: Vec<f32> = (0..m * n).map(|_| rng.normal() as f32).collect();
            for accumulate in [false, true] {
                let av = mat(&a, k, m).transpose();
                let mut one = init.clone();
                faer::linalg::matmul::matmul(
                    mat_mut(&mut one, m, n),
                    beta(accumulate),
                    av,
                    mat(&b, k, n),
                    1.0,
                    Par::Seq,
                );
                for par in [Par::Seq, Par::rayon(2), Par::rayon(3)] {
                    let mut blocked = init.clone();
                    gemm_in_column_blocks(mat_mut(&mut blocked, m, n), accumulate, av, mat(&b, k, n), par);
                    let same = blocked.iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{m}x{k}x{n} accumulate={accumulate} {par:?}");
                }
            }
        }
    }

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
                for parts in [2, 3] {
                    let mut split = init.clone();
                    split_gemm(
                        mat_mut(&mut split, m, n),
                        beta(accumulate),
                        mat(&a, m, k),
                        mat(&b, k, n),
                        parts,
                    );
                    assert!(split.iter().zip(&fast).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n}");
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
