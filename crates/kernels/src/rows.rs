//! Memory-bound kernels over row-major `[rows, cols]` buffers: adding a bias to every row,
//! summing the rows into a bias gradient, adding or copying a transposed matrix.
//!
//! The first two are passes over the model's largest buffers (the `[B·T, V]` logits and their
//! gradient, 80 MB at the seed size), so with [`Par::Rayon`] they are split across threads. The
//! split never changes a result: rows are independent when adding, and when summing each thread
//! owns a block of columns and adds its rows in row order, exactly as the sequential loop does.

use crate::Float;
use crate::matrix::with_wide_simd;
use crate::tuning::{ADD_ROWS_PER_TASK, SUM_COLS_PER_TASK, TRANSPOSE_BLOCK};
use faer::Par;
use rayon::prelude::*;

/// `m[r, ·] += v` for every row `r` of `m` (`[rows, v.len()]`; `m.len()` a multiple of `v.len()`).
pub fn add_to_rows<T: Float>(m: &mut [T], v: &[T], par: Par) {
    let cols = v.len();
    if cols == 0 {
        return;
    }
    let rows_of = |block: &mut [T]| {
        with_wide_simd(
            #[inline(always)]
            || {
                for row in block.chunks_exact_mut(cols) {
                    for (x, b) in row.iter_mut().zip(v) {
                        *x += *b;
                    }
                }
            },
        )
    };
    match par {
        Par::Rayon(_) if m.len() > ADD_ROWS_PER_TASK * cols => {
            m.par_chunks_mut(ADD_ROWS_PER_TASK * cols).for_each(rows_of);
        }
        _ => rows_of(m),
    }
}

/// `acc[c] += Σ_r m[r, c]` over the first `rows` rows of `m` (`[rows, acc.len()]`), each column
/// summed in row order, so the result is bit-identical at any thread count.
pub fn add_column_sums<T: Float>(acc: &mut [T], m: &[T], rows: usize, par: Par) {
    let cols = acc.len();
    let m = &m[..rows * cols];
    match par {
        // Each task owns a block of columns and reads that block of every row.
        Par::Rayon(_) if cols > SUM_COLS_PER_TASK => {
            acc.par_chunks_mut(SUM_COLS_PER_TASK).enumerate().for_each(|(block, acc)| {
                let first = block * SUM_COLS_PER_TASK;
                add_rows_of_block(acc, m, cols, first);
            });
        }
        // One thread: whole rows, front to back (blocks would stride through every row once per
        // block, which was measured slower); the same additions in the same order.
        _ => add_rows_of_block(acc, m, cols, 0),
    }
}

/// `acc[j] += Σ_r m[r, first + j]` for the rows of `m` (`[·, cols]`), in row order.
fn add_rows_of_block<T: Float>(acc: &mut [T], m: &[T], cols: usize, first: usize) {
    let width = acc.len();
    with_wide_simd(
        #[inline(always)]
        || {
            for row in m.chunks_exact(cols) {
                for (a, x) in acc.iter_mut().zip(&row[first..first + width]) {
                    *a += *x;
                }
            }
        },
    )
}

/// `dst[r, c] += src[c, r]` for `dst` `[rows, cols]` and `src` `[cols, rows]`, both row-major.
///
/// The second half of a weight gradient computed in the orientation faer runs faster (see
/// `LstmOp::vjp`): the product lands transposed in a scratch buffer and is added into the
/// PyTorch-layout gradient here. Worked in `32 × 32` blocks so both sides stay in cache; every
/// element is one addition, so the split across threads changes nothing.
pub fn add_transposed<T: Float>(dst: &mut [T], src: &[T], rows: usize, cols: usize, par: Par) {
    transposed_into(dst, src, rows, cols, par, |d, s| *d += s);
}

/// `dst[r, c] = src[c, r]` for `dst` `[rows, cols]` and `src` `[cols, rows]`, both row-major: a
/// weight copied into the orientation a GEMM reads fastest (see `LinearOp`), blocked and split
/// like [`add_transposed`].
pub fn copy_transposed<T: Float>(dst: &mut [T], src: &[T], rows: usize, cols: usize, par: Par) {
    transposed_into(dst, src, rows, cols, par, |d, s| *d = s);
}

/// `set(&mut dst[r, c], src[c, r])` for every element, in `32 × 32` blocks, rows of blocks split
/// across rayon's threads under `par`.
fn transposed_into<T: Float>(
    dst: &mut [T],
    src: &[T],
    rows: usize,
    cols: usize,
    par: Par,
    set: impl Fn(&mut T, T) + Sync,
) {
    let dst = &mut dst[..rows * cols];
    let src = &src[..rows * cols];
    let block_rows = |(block, d): (usize, &mut [T])| {
        let r0 = block * TRANSPOSE_BLOCK;
        let height = d.len() / cols.max(1);
        for c0 in (0..cols).step_by(TRANSPOSE_BLOCK) {
            let c1 = (c0 + TRANSPOSE_BLOCK).min(cols);
            for (i, drow) in d.chunks_exact_mut(cols).enumerate().take(height) {
                for (c, v) in drow[c0..c1].iter_mut().enumerate() {
                    set(v, src[(c0 + c) * rows + r0 + i]);
                }
            }
        }
    };
    if cols == 0 {
        return;
    }
    match par {
        Par::Rayon(_) if rows > TRANSPOSE_BLOCK => {
            dst.par_chunks_mut(TRANSPOSE_BLOCK * cols).enumerate().for_each(block_rows);
        }
        _ => dst.chunks_mut(TRANSPOSE_BLOCK * cols).enumerate().for_each(block_rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn column_sums_are_the_plain_row_order_loop_at_any_split(
            rows in 1usize..40, cols in 1usize..700, seed in any::<u64>(),
        ) {
            let mut rng = crate::test_rng::TestRng::new(seed);
            let m: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
            let start: Vec<f32> = (0..cols).map(|_| rng.normal() as f32).collect();
            let mut plain = start.clone();
            for row in m.chunks_exact(cols) {
                for (a, x) in plain.iter_mut().zip(row) {
                    *a += *x;
                }
            }
            for par in [Par::Seq, Par::rayon(2), Par::rayon(3)] {
                let mut acc = start.clone();
                add_column_sums(&mut acc, &m, rows, par);
                prop_assert!(acc.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }

        #[test]
        fn add_transposed_adds_the_transpose(rows in 0usize..80, cols in 0usize..80, seed in any::<u64>()) {
            let mut rng = crate::test_rng::TestRng::new(seed);
            let dst: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
            let src: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
            for par in [Par::Seq, Par::rayon(2)] {
                let mut out = dst.clone();
                add_transposed(&mut out, &src, rows, cols, par);
                for r in 0..rows {
                    for c in 0..cols {
                        prop_assert_eq!(out[r * cols + c], dst[r * cols + c] + src[c * rows + r]);
                    }
                }
            }
        }

        #[test]
        fn copy_transposed_copies_the_transpose(rows in 0usize..80, cols in 0usize..80, seed in any::<u64>()) {
            let mut rng = crate::test_rng::TestRng::new(seed);
            let src: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
            for par in [Par::Seq, Par::rayon(2)] {
                let mut out = vec![f64::NAN; rows * cols];
                copy_transposed(&mut out, &src, rows, cols, par);
                for r in 0..rows {
                    for c in 0..cols {
                        prop_assert_eq!(out[r * cols + c], src[c * rows + r]);
                    }
                }
            }
        }

        #[test]
        fn add_to_rows_adds_the_vector_to_every_row(rows in 0usize..100, cols in 1usize..50, seed in any::<u64>()) {
            let mut rng = crate::test_rng::TestRng::new(seed);
            let m: Vec<f64> = (0..rows * cols).map(|_| rng.normal()).collect();
            let v: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
            for par in [Par::Seq, Par::rayon(2)] {
                let mut out = m.clone();
                add_to_rows(&mut out, &v, par);
                for (i, (o, x)) in out.iter().zip(&m).enumerate() {
                    prop_assert_eq!(*o, *x + v[i % cols]);
                }
            }
        }
    }
}
