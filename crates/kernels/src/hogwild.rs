//! A row-major `f32` matrix that threads read and update without locks (Hogwild), for word2vec.
//!
//! Why unsynchronised: word2vec's training *is* lock-free racy updates. Mikolov's word2vec.c
//! and gensim's `word2vec_inner.pyx` let every thread read and write the shared weight rows
//! through plain pointers (gensim through BLAS `sdot`/`saxpy`); when two threads touch one row
//! at once, one update may overwrite part of the other, which the algorithm tolerates (Recht et
//! al., "Hogwild!", 2011) and which is rare because rows are sparse. Relaxed atomics give the
//! same results with defined behaviour, but every value then moves through a scalar atomic
//! load or store, which stops the dot products and axpys from vectorising: with two `f32`s per
//! `AtomicU64` the trainer took 1.33× gensim's time at two threads, and the same loops over
//! plain rows run at gensim's speed or better (docs/results.md, word2vec).
//!
//! What makes the races harmless here: the element type is `f32`, whose aligned 4-byte stores
//! are never torn on x86-64 (nor on AArch64), so a reader sees some value that was written,
//! never a mix of two; no value is a pointer, index or length, so a stale or lost update can
//! change only the numbers, never memory safety of anything else; the matrix never grows,
//! shrinks or moves while shared (`&self` methods only touch elements inside it, bounds
//! checked). With one thread there is no race at all and results are bit-for-bit deterministic.
//!
//! Every operation is one method here that works on a short-lived slice of one row, so the
//! callers stay safe code. The kernels use eight lanes in a fixed order, and on x86-64 they are
//! compiled twice, plainly and with AVX2 (chosen at run time): AVX2 changes the width of the
//! instructions, never the order of the additions, so both give the same bits.

use std::cell::UnsafeCell;

/// A `rows × cols` matrix of `f32` shared between threads that update it without locks (see the
/// module docs for why that is the algorithm, and why it is sound enough on our targets).
pub struct HogwildMatrix {
    data: Box<[UnsafeCell<f32>]>,
    rows: usize,
    cols: usize,
}

// SAFETY: sharing is the point (see the module docs): concurrent accesses are racy `f32` loads
// and stores inside a buffer that never moves or changes size while shared; they can change the
// numbers only, as in word2vec.c and gensim.
#[allow(unsafe_code)]
unsafe impl Sync for HogwildMatrix {}

impl HogwildMatrix {
    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        let n = rows.checked_mul(cols).expect("HogwildMatrix::zeros: rows × cols overflows usize");
        Self { data: (0..n).map(|_| UnsafeCell::new(0.0)).collect(), rows, cols }
    }

    /// A matrix holding `values` (row-major, `rows × cols` of them).
    pub fn from_vec(values: Vec<f32>, cols: usize) -> Self {
        let rows = values.len().checked_div(cols).unwrap_or(0);
        assert_eq!(rows * cols, values.len(), "HogwildMatrix::from_vec: not a whole number of rows");
        Self { data: values.into_iter().map(UnsafeCell::new).collect(), rows, cols }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Copies row `i` into `out` (`cols` long).
    pub fn copy_row(&self, i: usize, out: &mut [f32]) {
        out.copy_from_slice(self.row(i));
    }

    /// `row_i · x`.
    #[inline]
    pub fn dot(&self, i: usize, x: &[f32]) -> f32 {
        dot(self.row(i), x)
    }

    /// `row_i += a · x`.
    #[inline]
    pub fn axpy(&self, i: usize, a: f32, x: &[f32]) {
        axpy(a, x, self.row_mut(i));
    }

    /// `y += a · row_i`.
    #[inline]
    pub fn axpy_into(&self, i: usize, a: f32, y: &mut [f32]) {
        axpy(a, self.row(i), y);
    }

    /// gensim's negative-sampling update of one output row, fused in one pass:
    /// `work += g · row_i`, then `row_i += g · l1` (each element read before it is written,
    /// as the two `saxpy` calls do).
    #[inline]
    pub fn update_pair(&self, i: usize, g: f32, l1: &[f32], work: &mut [f32]) {
        pair(g, l1, work, self.row_mut(i));
    }

    /// Row `i`, read-only for the moment the caller holds it (other threads may write it:
    /// the Hogwild race, see the module docs).
    #[inline]
    fn row(&self, i: usize) -> &[f32] {
        let cells = &self.data[i * self.cols..(i + 1) * self.cols];
        #[allow(unsafe_code)]
        // SAFETY: `cells` is in bounds (the indexing above checks it) and `UnsafeCell<f32>` has
        // the layout of `f32`. Other threads may write these elements meanwhile: the Hogwild
        // race the algorithm accepts (module docs); `f32` stores are not torn on our targets.
        unsafe {
            std::slice::from_raw_parts(UnsafeCell::raw_get(cells.as_ptr()), self.cols)
        }
    }

    /// Row `i`, writable for the moment the caller holds it (the same race as [`Self::row`]).
    #[inline]
    #[allow(clippy::mut_from_ref)]
    fn row_mut(&self, i: usize) -> &mut [f32] {
        let cells = &self.data[i * self.cols..(i + 1) * self.cols];
        #[allow(unsafe_code)]
        // SAFETY: as in `row`; the slice is private to this module and lives only for one
        // kernel call, and writes go through `UnsafeCell`, so shared `&self` is allowed to
        // mutate. Concurrent writers of one row are the Hogwild race (module docs).
        unsafe {
            std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), self.cols)
        }
    }
}

impl std::fmt::Debug for HogwildMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HogwildMatrix({} × {})", self.rows, self.cols)
    }
}

/// Picks the AVX2 build of a kernel when the CPU has it (the same additions in the same order:
/// the same bits).
macro_rules! dispatch {
    ($plain:ident, $avx2:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                #[allow(unsafe_code)]
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { $avx2($($arg),*) };
            }
        }
        $plain($($arg),*)
    }};
}

/// The dot product, in eight lanes summed at the end (the same order on every build).
#[inline]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    dispatch!(dot_plain, dot_avx2, (x, y))
}

/// `y += a · x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    dispatch!(axpy_plain, axpy_avx2, (a, x, y))
}

/// `work += g · row`, then `row += g · l1`, element by element.
#[inline]
fn pair(g: f32, l1: &[f32], work: &mut [f32], row: &mut [f32]) {
    dispatch!(pair_plain, pair_avx2, (g, l1, work, row))
}

#[inline(always)]
fn dot_plain(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [0.0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for k in 0..8 {
            acc[k] += a[k] * b[k];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (a, b) in xr.iter().zip(yr) {
        sum += a * b;
    }
    sum
}

#[inline(always)]
fn axpy_plain(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline(always)]
fn pair_plain(g: f32, l1: &[f32], work: &mut [f32], row: &mut [f32]) {
    let n = l1.len().min(work.len()).min(row.len());
    let (l1, work, row) = (&l1[..n], &mut work[..n], &mut row[..n]);
    for k in 0..n {
        let r = row[k];
        work[k] += g * r;
        row[k] = r + g * l1[k];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(x: &[f32], y: &[f32]) -> f32 {
    dot_plain(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_plain(a, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pair_avx2(g: f32, l1: &[f32], work: &mut [f32], row: &mut [f32]) {
    pair_plain(g, l1, work, row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_the_plain_loops_at_any_width() {
        for d in [1usize, 5, 8, 13, 100] {
            let x: Vec<f32> = (0..d).map(|k| (k as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..d).map(|k| (k as f32 * 0.11).cos()).collect();
            assert_eq!(dot(&x, &y).to_bits(), dot_plain(&x, &y).to_bits(), "d {d}");
            let mut a = y.clone();
            axpy(0.3, &x, &mut a);
            let want: Vec<f32> = y.iter().zip(&x).map(|(y, x)| y + 0.3 * x).collect();
            assert_eq!(a, want);
        }
    }

    #[test]
    fn rows_are_updated_in_place_and_others_are_untouched() {
        let m = HogwildMatrix::from_vec((0..12).map(|k| k as f32).collect(), 4);
        assert_eq!((m.rows(), m.cols()), (3, 4));
        let l1 = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(m.dot(1, &l1), 4.0 + 10.0 + 18.0 + 28.0);
        let mut work = [0.0; 4];
        m.update_pair(1, 0.5, &l1, &mut work);
        assert_eq!(work, [2.0, 2.5, 3.0, 3.5], "work took the row before its update");
        let mut row = [0.0; 4];
        m.copy_row(1, &mut row);
        assert_eq!(row, [4.5, 6.0, 7.5, 9.0]);
        m.axpy(2, -1.0, &[8.0, 9.0, 10.0, 11.0]);
        m.copy_row(2, &mut row);
        assert_eq!(row, [0.0; 4]);
        m.copy_row(0, &mut row);
        assert_eq!(row, [0.0, 1.0, 2.0, 3.0]);
        let mut y = [1.0; 4];
        m.axpy_into(0, 2.0, &mut y);
        assert_eq!(y, [1.0, 3.0, 5.0, 7.0]);
        assert_eq!(HogwildMatrix::zeros(2, 3).dot(1, &[1.0; 3]), 0.0);
    }

    #[test]
    fn threads_update_one_matrix_without_locks() {
        let m = HogwildMatrix::zeros(64, 8);
        std::thread::scope(|s| {
            for t in 0..2 {
                let m = &m;
                s.spawn(move || {
                    for step in 0..1000 {
                        m.axpy((step * 2 + t) % 64, 1.0, &[1.0; 8]);
                    }
                });
            }
        });
        let mut row = [0.0; 8];
        let total: f32 = (0..64)
            .map(|i| {
                m.copy_row(i, &mut row);
                row.iter().sum::<f32>()
            })
            .sum();
        // Different threads touched different rows (even and odd), so nothing was lost.
        assert_eq!(total, 2.0 * 1000.0 * 8.0);
    }
}
