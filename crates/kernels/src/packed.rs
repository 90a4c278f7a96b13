//! Products with a right-hand side packed once into column panels: the head's forward GEMM.
//!
//! The head's product `[N, in (+1)]·[in (+1), V]` is most of an inference window (three
//! quarters at the seed size). Through faer it ran at 138–144 GFLOP/s per core on the project's
//! machine, against an AVX-512 register peak of about 210. Two things cost it: faer packs the
//! 5 MB right-hand side again on every call, though the weights change at most once per step;
//! and its kernel for this shape (depth 129) spends a large share of its time storing the 80 MB
//! output. This module packs the right-hand side once (the caller caches it, refilled when the
//! weights change) into panels of [`PANEL_COLS`] columns, and multiplies with a 14×32 AVX-512
//! kernel that walks the output row by row in cache-sized blocks of columns. Measured on
//! `[2016, 129]×[129, 9984]`, one thread, output 64-byte aligned on huge pages: 158 GFLOP/s
//! against faer's 142.
//!
//! # Why the results are faer's, bit for bit
//! Every output element is one chain of fused multiply-adds over `k` in order, starting from
//! zero, then stored: `c = fma(a[k−1], b[k−1], … fma(a[0], b[0], 0))`. faer's kernel computes the
//! same chain whenever it does not cut the sum over `k` into blocks, which it does not up to a
//! depth of 512 on the project's machines (checked against faer on the model's shapes by the
//! tests below; at 513 it cuts). faer sizes its blocks from the caches it detects, so on a
//! processor with a smaller L1 it may cut earlier; the kernel's own results do not depend on
//! that. The kernel is used only up to [`MAX_DEPTH`], and a model trained with it has the same
//! bits as with faer here — and the same at any thread count, since threads split columns, never
//! `k`.
//!
//! On a machine without AVX-512, or for `f64`, [`kernel_applies`] is false and callers keep
//! faer's product; [`gemm_packed`] still computes the same chain in portable code if called.

use std::sync::OnceLock;

use faer::{MatMut, Par};

use crate::Float;
use crate::tuning::{PARALLEL_PACK_BELOW, SEQUENTIAL_BELOW_MACS};

/// Rows of the left-hand side per tile: the kernel keeps a `14 × 32` block of the output in 28
/// of the 32 AVX-512 registers (14×32 and 12×32 measured fastest of 6×64 … 14×32).
pub const TILE_ROWS: usize = 14;

/// Columns of the right-hand side per panel: two AVX-512 vectors of `f32`.
pub const PANEL_COLS: usize = 32;

/// The deepest product the kernel takes (see the module docs: faer's sum over `k` is one chain
/// up to here).
pub const MAX_DEPTH: usize = 512;

/// Whether [`gemm_packed`] runs the AVX-512 kernel for scalars `T` and depth `k` on this machine
/// and gives there exactly faer's bits ([`faer_chains_depth`]). Callers pack for it only then,
/// and use `matrix::gemm` otherwise, so a model's numbers never depend on which product ran.
pub fn kernel_applies<T: Float>(k: usize) -> bool {
    (1..=MAX_DEPTH).contains(&k) && T::as_f32s(&[]).is_some() && has_avx512() && faer_chains_depth(k)
}

/// Whether faer's `f32` product of depth `k` (`k <=` [`MAX_DEPTH`]) computes every output as one
/// chain of fused multiply-adds over `k` in order from zero — the packed kernel's arithmetic — on
/// this machine.
///
/// faer cuts the sum over `k` into blocks sized from the caches it detects: on the project's
/// machines not below a depth of 512, but a processor with smaller caches may cut earlier, and
/// then the two products round differently. So it is not assumed but measured, once per depth
/// (and cached): faer's product of a random `[64, k]×[k, 256]` (a shape of its main kernel, like
/// the head's) against the same chains in portable code; random operands make any other order of
/// additions show in some output.
pub fn faer_chains_depth(k: usize) -> bool {
    static PROBED: [OnceLock<bool>; MAX_DEPTH + 1] = [const { OnceLock::new() }; MAX_DEPTH + 1];
    if !(1..=MAX_DEPTH).contains(&k) {
        return false;
    }
    *PROBED[k].get_or_init(|| probe_faer_chains(k))
}

fn probe_faer_chains(k: usize) -> bool {
    let (rows, n) = (4 * TILE_ROWS + 8, 8 * PANEL_COLS);
    // A small generator of its own: the operands only need to be varied, not reproducible.
    let mut state = 0x2545_F491_4F6C_DD1Du64 ^ k as u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..rows * k).map(|_| next()).collect();
    let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
    let mut faer_out = vec![0.0f32; rows * n];
    crate::matrix::gemm(
        crate::matrix::mat_mut(&mut faer_out, rows, n),
        false,
        crate::matrix::mat(&x, rows, k),
        crate::matrix::mat(&w, n, k).transpose(),
        Par::Seq,
    );
    let (mut a, mut b) = (vec![0.0; lhs_len(rows, k)], vec![0.0; rhs_len(k, n)]);
    pack_lhs(&mut a, &x, rows, k, false, Par::Seq);
    pack_transposed_rhs(&mut b, &w, n, k, None, Par::Seq);
    let mut chains = vec![0.0f32; rows * n];
    portable_block(crate::matrix::mat_mut(&mut chains, rows, n), &a, k, &b, None);
    faer_out.iter().zip(&chains).all(|(p, q)| p.to_bits() == q.to_bits())
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Scalars of a packed `[k, n]` right-hand side: whole panels, the last one padded with zeros.
pub fn rhs_len(k: usize, n: usize) -> usize {
    blocks_len(n, k, PANEL_COLS)
}

/// Scalars of a packed `[rows, k]` left-hand side: whole tiles, the last one padded with zeros.
pub fn lhs_len(rows: usize, k: usize) -> usize {
    blocks_len(rows, k, TILE_ROWS)
}

/// Scalars of `rows` rows of depth `k` packed in whole blocks of `block` rows.
fn blocks_len(rows: usize, k: usize, block: usize) -> usize {
    rows.div_ceil(block) * block * k
}

/// Packs `B = [Wᵀ; last_row]` for [`gemm_packed`], from `w` `[n, kw]` row-major (a PyTorch-layout
/// weight, so `B` is `[kw, n]`, or `[kw + 1, n]` with `last_row` `[n]`, a bias folded in).
///
/// Panel `p` holds columns `[32p, 32p + 32)` of `B` as a row-major `[k, 32]` block: row `j` of it
/// is read from column `j` of 32 consecutive rows of `w`. Columns past `n` are zeros. Panels are
/// filled in parallel under `par`.
pub fn pack_transposed_rhs<T: Float>(
    dst: &mut [T],
    w: &[T],
    n: usize,
    kw: usize,
    last_row: Option<&[T]>,
    par: Par,
) {
    assert!(last_row.is_none_or(|r| r.len() >= n), "pack_transposed_rhs: last row too short");
    let extra = last_row.map_or(Extra::Nothing, Extra::Values);
    pack_row_blocks(dst, w, n, kw, PANEL_COLS, extra, par);
}

/// Packs the left-hand side `A = [x | 1]` (`ones`) or `A = x` for [`gemm_packed`], from `x`
/// `[rows, width]` row-major, so `k = width + ones`.
///
/// Tile `t` holds rows `[14t, 14t + 14)` of `A` as `[k, 14]` (column-major within the tile): the
/// kernel reads the 14 values it broadcasts for one step of `k` from one cache line. Rows past
/// `rows` in the last tile are zeros. Tiles are filled in parallel under `par`.
pub fn pack_lhs<T: Float>(dst: &mut [T], x: &[T], rows: usize, width: usize, ones: bool, par: Par) {
    let extra = if ones { Extra::Ones } else { Extra::Nothing };
    pack_row_blocks(dst, x, rows, width, TILE_ROWS, extra, par);
}

/// What [`pack_row_blocks`] appends after each row's `width` values.
#[derive(Clone, Copy)]
enum Extra<'a, T> {
    Nothing,
    /// A 1 (a column of ones: the left-hand side of a folded bias).
    Ones,
    /// `values[row]` (a last row of `B`: the folded bias itself).
    Values(&'a [T]),
}

/// Both packings are one operation: blocks of `block` consecutive rows of `src` (`[rows, width]`
/// row-major), each stored transposed as `[k, block]` with `k = width (+ 1 for the extra)`, the
/// rows past `rows` in the last block zeros.
fn pack_row_blocks<T: Float>(
    dst: &mut [T],
    src: &[T],
    rows: usize,
    width: usize,
    block: usize,
    extra: Extra<'_, T>,
    par: Par,
) {
    let k = width + usize::from(!matches!(extra, Extra::Nothing));
    let len = blocks_len(rows, k, block);
    assert!(src.len() >= rows * width && dst.len() >= len, "packing: buffers too short");
    let (zero, one) = (T::from_f64(0.0), T::from_f64(1.0));
    let fill = |(b, out): (usize, &mut [T])| {
        for i in 0..block {
            let row = b * block + i;
            if row < rows {
                for (kk, &v) in src[row * width..(row + 1) * width].iter().enumerate() {
                    out[kk * block + i] = v;
                }
                match extra {
                    Extra::Nothing => {}
                    Extra::Ones => out[width * block + i] = one,
                    Extra::Values(values) => out[width * block + i] = values[row],
                }
            } else {
                for kk in 0..k {
                    out[kk * block + i] = zero;
                }
            }
        }
    };
    let blocks = &mut dst[..len];
    match par {
        Par::Rayon(_) if rows * k >= PARALLEL_PACK_BELOW => {
            use rayon::prelude::*;
            blocks.par_chunks_exact_mut(k * block).enumerate().for_each(fill);
        }
        _ => blocks.chunks_exact_mut(k * block).enumerate().for_each(fill),
    }
}

/// `dst = A·B` for `A` packed by [`pack_lhs`] (`[rows, k]`, `rows = dst.nrows()`) and `B` packed
/// by [`pack_transposed_rhs`] (`[k, n]`, `n = dst.ncols()`); `dst` must be row-major (column
/// stride 1). With `bias` (`[n]`), `dst = A·B + bias` on every row: the bias is added to each
/// finished dot product before it is stored, which rounds exactly like a separate pass over `dst`
/// afterwards, without that pass (4 ms over the large configuration's 160 MB of logits).
///
/// On several threads (`par`) and a product of at least `tuning::SEQUENTIAL_BELOW_MACS`
/// multiply-adds, the columns are cut into `threads` blocks of whole panels, run under
/// `rayon::join`; each element is computed the same way whichever block it falls in.
pub fn gemm_packed<T: Float>(
    dst: MatMut<'_, T>,
    a_tiles: &[T],
    k: usize,
    b_panels: &[T],
    bias: Option<&[T]>,
    par: Par,
) {
    let (rows, n) = (dst.nrows(), dst.ncols());
    assert!(dst.col_stride() == 1 || n <= 1, "gemm_packed: dst must be row-major");
    assert!(
        a_tiles.len() >= lhs_len(rows, k) && b_panels.len() >= rhs_len(k, n),
        "gemm_packed: packed operands too short for [{rows}, {k}]·[{k}, {n}]"
    );
    assert!(bias.is_none_or(|b| b.len() >= n), "gemm_packed: bias shorter than {n}");
    let parts = match par {
        Par::Rayon(threads) if rows * n * k >= SEQUENTIAL_BELOW_MACS => threads.get(),
        _ => 1,
    };
    split_columns(Block { dst, a_tiles, k, b_panels, bias }, parts);
}

/// A block of columns of the output with its operands.
struct Block<'a, T> {
    dst: MatMut<'a, T>,
    a_tiles: &'a [T],
    k: usize,
    b_panels: &'a [T],
    bias: Option<&'a [T]>,
}

/// Halves `block` at a panel boundary until `parts` blocks remain, the halves under `rayon::join`.
fn split_columns<T: Float>(block: Block<'_, T>, parts: usize) {
    let panels = block.dst.ncols().div_ceil(PANEL_COLS);
    if parts <= 1 || panels < 2 {
        product_block(block);
        return;
    }
    let left_parts = parts / 2;
    let cut = panels * left_parts / parts * PANEL_COLS;
    let Block { dst, a_tiles, k, b_panels, bias } = block;
    let (d1, d2) = dst.split_at_col_mut(cut);
    let (b1, b2) = b_panels.split_at(cut * k);
    let (bias1, bias2) = bias.map(|b| b.split_at(cut)).unzip();
    rayon::join(
        || split_columns(Block { dst: d1, a_tiles, k, b_panels: b1, bias: bias1 }, left_parts),
        || split_columns(Block { dst: d2, a_tiles, k, b_panels: b2, bias: bias2 }, parts - left_parts),
    );
}

/// One block of columns on this thread: the AVX-512 kernel for `f32` where it applies, else the
/// same chains of fused multiply-adds in portable code.
fn product_block<T: Float>(block: Block<'_, T>) {
    let Block { dst, a_tiles, k, b_panels, bias } = block;
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(a), Some(b), Some(bias)) = (
        kernel_applies::<T>(k),
        T::as_f32s(a_tiles),
        T::as_f32s(b_panels),
        bias.map_or(Some(None), |v| T::as_f32s(v).map(Some)),
    ) {
        let (rows, n, ldc) = (dst.nrows(), dst.ncols(), dst.row_stride());
        // `T` is `f32` (only `f32` has `as_f32s`), so this cast only names the type.
        let c = dst.as_ptr_mut() as *mut f32;
        #[allow(unsafe_code)]
        // SAFETY: `kernel_applies` checked AVX-512F. `c` is `dst`'s first element; `dst` is
        // `rows × n` with column stride 1 (asserted by `gemm_packed`) and row stride `ldc`, so
        // every `c + i·ldc + j` the kernel writes (`i < rows`, `j < n`) is an element of `dst`,
        // which this function borrows exclusively. The operands' lengths were asserted against
        // `lhs_len` / `rhs_len`, and the kernel reads no further.
        unsafe {
            avx512::product_block(c, ldc as usize, rows, n, a, k, b, bias);
        }
        return;
    }
    portable_block(dst, a_tiles, k, b_panels, bias);
}

/// The kernel's arithmetic in plain Rust: per element, `k` fused multiply-adds in order from zero,
/// then `+ bias[j]`.
fn portable_block<T: Float>(
    mut dst: MatMut<'_, T>,
    a_tiles: &[T],
    k: usize,
    b_panels: &[T],
    bias: Option<&[T]>,
) {
    for i in 0..dst.nrows() {
        let tile = &a_tiles[i / TILE_ROWS * TILE_ROWS * k..];
        for j in 0..dst.ncols() {
            let panel = &b_panels[j / PANEL_COLS * PANEL_COLS * k..];
            let mut acc = T::from_f64(0.0);
            for kk in 0..k {
                acc = tile[kk * TILE_ROWS + i % TILE_ROWS]
                    .mul_add(panel[kk * PANEL_COLS + j % PANEL_COLS], acc);
            }
            dst[(i, j)] = match bias {
                Some(b) => acc + b[j],
                None => acc,
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PANEL_COLS, TILE_ROWS};
    use crate::tuning::PACKED_BLOCK_BYTES;

    /// AVX-512 vectors per panel row.
    const VECTORS: usize = PANEL_COLS / 16;

    /// `c[rows, n] = A·B` (row stride `ldc`) from packed `a` and `b` of depth `k`: for each block
    /// of panels that fits [`PACKED_BLOCK_BYTES`], every tile of rows against every panel of the block.
    ///
    /// `bias` (`[n]`), if given, is added to every row before it is stored.
    ///
    /// # Safety
    /// AVX-512F must be available; `c + i·ldc + j` must be writable for `i < rows`, `j < n`; `a`
    /// and `b` must hold `lhs_len(rows, k)` and `rhs_len(k, n)` scalars.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product_block(
        c: *mut f32,
        ldc: usize,
        rows: usize,
        n: usize,
        a: &[f32],
        k: usize,
        b: &[f32],
        bias: Option<&[f32]>,
    ) {
        let (tiles, panels) = (rows.div_ceil(TILE_ROWS), n.div_ceil(PANEL_COLS));
        let block = (PACKED_BLOCK_BYTES / (k * PANEL_COLS * 4)).max(1);
        for first in (0..panels).step_by(block) {
            for t in 0..tiles {
                let tile_rows = (rows - t * TILE_ROWS).min(TILE_ROWS);
                let tile = &a[t * TILE_ROWS * k..][..TILE_ROWS * k];
                for p in first..(first + block).min(panels) {
                    let cols = (n - p * PANEL_COLS).min(PANEL_COLS);
                    let panel = &b[p * PANEL_COLS * k..][..PANEL_COLS * k];
                    // The panel's bias, zero-padded past `n` (those columns are never stored).
                    let panel_bias = bias.map(|v| {
                        let mut row = [0.0f32; PANEL_COLS];
                        row[..cols].copy_from_slice(&v[p * PANEL_COLS..][..cols]);
                        row
                    });
                    // SAFETY: AVX-512F is the caller's promise; the tile and panel are slices of
                    // the lengths the kernel reads; the `tile_rows × cols` block of `c` starting
                    // at row `14t`, column `32p` lies inside the `rows × n` output.
                    unsafe {
                        let corner = c.add(t * TILE_ROWS * ldc + p * PANEL_COLS);
                        let panel_bias = panel_bias.as_ref();
                        tile_times_panel(
                            k,
                            tile.as_ptr(),
                            panel.as_ptr(),
                            panel_bias,
                            corner,
                            ldc,
                            tile_rows,
                            cols,
                        );
                    }
                }
            }
        }
    }

    /// `c[..rows, ..cols] = tile·panel (+ bias)`: a `[14, k]` tile (packed `[k, 14]`) times a
    /// `[k, 32]` panel, the 14×32 result in registers, each element one chain of FMAs over `k` in
    /// order, then one addition of its column's bias if given.
    ///
    /// # Safety
    /// AVX-512F; `a` readable for `14k`, `b` for `32k` scalars; `c + i·ldc + j` writable for
    /// `i < rows ≤ 14`, `j < cols ≤ 32`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_times_panel(
        k: usize,
        a: *const f32,
        b: *const f32,
        bias: Option<&[f32; PANEL_COLS]>,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); VECTORS]; TILE_ROWS];
        // SAFETY: every pointer below stays inside the bounds the caller guarantees (`p < k`,
        // `i < 14`, `v·16 + 16 ≤ 32`; stores only for `i < rows`, masked to `j < cols`).
        unsafe {
            for p in 0..k {
                let bv: [__m512; VECTORS] =
                    std::array::from_fn(|v| _mm512_loadu_ps(b.add(p * PANEL_COLS + v * 16)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(p * TILE_ROWS + i));
                    for (v, x) in row.iter_mut().enumerate() {
                        *x = _mm512_fmadd_ps(av, bv[v], *x);
                    }
                }
            }
            if let Some(bias) = bias {
                let bias: [__m512; VECTORS] =
                    std::array::from_fn(|v| _mm512_loadu_ps(bias.as_ptr().add(v * 16)));
                for row in &mut acc {
                    for (x, b) in row.iter_mut().zip(&bias) {
                        *x = _mm512_add_ps(*x, *b);
                    }
                }
            }
            if rows == TILE_ROWS && cols == PANEL_COLS {
                for (i, row) in acc.iter().enumerate() {
                    for (v, x) in row.iter().enumerate() {
                        _mm512_storeu_ps(c.add(i * ldc + v * 16), *x);
                    }
                }
            } else {
                let masks: [__mmask16; VECTORS] = std::array::from_fn(|v| {
                    let left = cols.saturating_sub(v * 16).min(16);
                    ((1u32 << left) - 1) as __mmask16
                });
                for (i, row) in acc.iter().enumerate().take(rows) {
                    for (v, x) in row.iter().enumerate() {
                        _mm512_mask_storeu_ps(c.add(i * ldc + v * 16), masks[v], *x);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{mat, mat_mut};
    use crate::test_rng::TestRng as Rng;
    use faer::Accum;
    use proptest::prelude::*;

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.normal() as f32).collect()
    }

    /// `[rows, k]·[k, n]` with `B = Wᵀ` (`W` `[n, k]`) through the packed kernel.
    fn packed_product(x: &[f32], w: &[f32], rows: usize, k: usize, n: usize, par: Par) -> Vec<f32> {
        let (mut a, mut b) = (vec![f32::NAN; lhs_len(rows, k)], vec![f32::NAN; rhs_len(k, n)]);
        pack_lhs(&mut a, x, rows, k, false, par);
        pack_transposed_rhs(&mut b, w, n, k, None, par);
        let mut y = vec![f32::NAN; rows * n];
        gemm_packed(mat_mut(&mut y, rows, n), &a, k, &b, None, par);
        y
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The kernel against faer's product of the same operands, bit for bit, at depths up to
    /// `MAX_DEPTH` (the seed head's 129, the large one's 512), with rows and columns that do and
    /// do not fill whole tiles and panels. This is what keeps a model's numbers unchanged. (A
    /// single row is left out: faer multiplies it with a matrix–vector kernel that sums in
    /// another order; the packed kernel treats it like any other row.)
    ///
    /// On a machine where faer cuts a depth's sum into blocks ([`faer_chains_depth`] is false),
    /// the kernel is not used for that depth (`kernel_applies` is false), which is what keeps the
    /// model's numbers equal to faer's there; the comparison is then skipped for that depth, and
    /// the kernel is still checked against the portable chains.
    #[test]
    fn packed_product_is_bit_identical_to_faer() {
        let mut rng = Rng::new(3);
        for &(rows, k, n) in
            &[(200, 129, 1000), (45, 512, 300), (100, 101, 333), (17, 5, 70), (30, 1, 33), (14, 64, 32)]
        {
            let (x, w) = (random(&mut rng, rows * k), random(&mut rng, n * k));
            let mut want = vec![0.0f32; rows * n];
            faer::linalg::matmul::matmul(
                mat_mut(&mut want, rows, n),
                Accum::Replace,
                mat(&x, rows, k),
                mat(&w, n, k).transpose(),
                1.0f32,
                Par::Seq,
            );
            let got = packed_product(&x, &w, rows, k, n, Par::Seq);
            let (mut a, mut b) = (vec![0.0; lhs_len(rows, k)], vec![0.0; rhs_len(k, n)]);
            pack_lhs(&mut a, &x, rows, k, false, Par::Seq);
            pack_transposed_rhs(&mut b, &w, n, k, None, Par::Seq);
            let mut chains = vec![0.0f32; rows * n];
            portable_block(mat_mut(&mut chains, rows, n), &a, k, &b, None);
            assert!(bits(&got) == bits(&chains), "kernel vs chains, [{rows}, {k}]·[{k}, {n}]");
            if faer_chains_depth(k) {
                assert!(bits(&got) == bits(&want), "[{rows}, {k}]·[{k}, {n}]");
            } else {
                assert!(!kernel_applies::<f32>(k), "faer cuts depth {k}: the kernel must not be used");
            }
        }
        // Beyond the kernel's depth there is nothing to probe.
        assert!(!faer_chains_depth(MAX_DEPTH + 1) && !faer_chains_depth(0));
    }

    /// The portable code computes exactly the kernel's chains (so a machine without AVX-512
    /// would train to the same numbers if it took this path).
    #[test]
    fn portable_block_matches_the_kernel() {
        let mut rng = Rng::new(4);
        let (rows, k, n) = (31, 77, 70);
        let (x, w) = (random(&mut rng, rows * k), random(&mut rng, n * k));
        let (mut a, mut b) = (vec![0.0; lhs_len(rows, k)], vec![0.0; rhs_len(k, n)]);
        pack_lhs(&mut a, &x, rows, k, false, Par::Seq);
        pack_transposed_rhs(&mut b, &w, n, k, None, Par::Seq);
        let mut y = vec![0.0f32; rows * n];
        portable_block(mat_mut(&mut y, rows, n), &a, k, &b, None);
        assert!(bits(&y) == bits(&packed_product(&x, &w, rows, k, n, Par::Seq)));
    }

    /// Split into column blocks on 2 and 3 threads, every element keeps its bits.
    #[test]
    fn parallel_blocks_are_bit_identical_to_one_thread() {
        let mut rng = Rng::new(5);
        let (rows, k, n) = (300, 129, 700);
        assert!(rows * k * n >= SEQUENTIAL_BELOW_MACS / 2, "large enough to be split");
        let (x, w) = (random(&mut rng, rows * k), random(&mut rng, n * k));
        let one = bits(&packed_product(&x, &w, rows, k, n, Par::Seq));
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            let split = pool.install(|| {
                let mut y = vec![0.0f32; rows * n];
                let (mut a, mut b) = (vec![0.0; lhs_len(rows, k)], vec![0.0; rhs_len(k, n)]);
                pack_lhs(&mut a, &x, rows, k, false, Par::rayon(threads));
                pack_transposed_rhs(&mut b, &w, n, k, None, Par::rayon(threads));
                // Force the split even below the size threshold.
                let block = Block { dst: mat_mut(&mut y, rows, n), a_tiles: &a, k, b_panels: &b, bias: None };
                split_columns(block, threads);
                y
            });
            assert!(bits(&split) == one, "{threads} threads");
        }
    }

    /// Folding, `[x | 1]·[Wᵀ; b]`, and the bias epilogue, `x·Wᵀ + b` before the store (kernel
    /// and portable code), all equal `x·Wᵀ` then a separate `+ b` pass, bit for bit (the bias is
    /// the last multiply-add of each chain, and `fma(1, b, s)` rounds like `s + b`).
    #[test]
    fn folded_bias_and_bias_epilogue_equal_product_then_add() {
        let mut rng = Rng::new(6);
        let (rows, k, n) = (29, 40, 50);
        let (x, w, bias) = (random(&mut rng, rows * k), random(&mut rng, n * k), random(&mut rng, n));
        let (mut a, mut b) = (vec![0.0; lhs_len(rows, k + 1)], vec![0.0; rhs_len(k + 1, n)]);
        pack_lhs(&mut a, &x, rows, k, true, Par::Seq);
        pack_transposed_rhs(&mut b, &w, n, k, Some(&bias), Par::Seq);
        let mut folded = vec![0.0f32; rows * n];
        gemm_packed(mat_mut(&mut folded, rows, n), &a, k + 1, &b, None, Par::Seq);
        let mut plain = packed_product(&x, &w, rows, k, n, Par::Seq);
        for row in plain.chunks_exact_mut(n) {
            for (y, b) in row.iter_mut().zip(&bias) {
                *y += *b;
            }
        }
        assert!(bits(&folded) == bits(&plain));
        let (mut a, mut b) = (vec![0.0; lhs_len(rows, k)], vec![0.0; rhs_len(k, n)]);
        pack_lhs(&mut a, &x, rows, k, false, Par::Seq);
        pack_transposed_rhs(&mut b, &w, n, k, None, Par::Seq);
        let mut epilogue = vec![0.0f32; rows * n];
        gemm_packed(mat_mut(&mut epilogue, rows, n), &a, k, &b, Some(&bias), Par::Seq);
        assert!(bits(&epilogue) == bits(&plain));
        let mut portable = vec![0.0f32; rows * n];
        portable_block(mat_mut(&mut portable, rows, n), &a, k, &b, Some(&bias));
        assert!(bits(&portable) == bits(&plain));
    }

    #[test]
    fn kernel_applies_only_to_f32_up_to_the_maximum_depth() {
        assert!(!kernel_applies::<f64>(100));
        assert!(!kernel_applies::<f32>(0));
        assert!(!kernel_applies::<f32>(MAX_DEPTH + 1));
        assert_eq!(kernel_applies::<f32>(MAX_DEPTH), has_avx512());
    }

    proptest! {
        /// Packing puts every element where the kernel reads it and zeros in the padding, even
        /// over a buffer that held other values.
        #[test]
        fn packing_places_every_element(rows in 1usize..40, n in 1usize..80, kw in 1usize..20, ones in any::<bool>(), seed in 0u64..1000) {
            let mut rng = Rng::new(seed);
            let (x, w, last) = (random(&mut rng, rows * kw), random(&mut rng, n * kw), random(&mut rng, n));
            let k = kw + usize::from(ones);
            let mut a = vec![f32::NAN; lhs_len(rows, k)];
            pack_lhs(&mut a, &x, rows, kw, ones, Par::Seq);
            let mut b = vec![f32::NAN; rhs_len(k, n)];
            pack_transposed_rhs(&mut b, &w, n, kw, ones.then_some(&last[..]), Par::Seq);
            for i in 0..lhs_len(rows, k) / k {
                for kk in 0..k {
                    let v = a[i / TILE_ROWS * TILE_ROWS * k + kk * TILE_ROWS + i % TILE_ROWS];
                    let want = if i >= rows { 0.0 } else if kk == kw { 1.0 } else { x[i * kw + kk] };
                    prop_assert_eq!(v.to_bits(), want.to_bits());
                }
            }
            for j in 0..rhs_len(k, n) / k {
                for kk in 0..k {
                    let v = b[j / PANEL_COLS * PANEL_COLS * k + kk * PANEL_COLS + j % PANEL_COLS];
                    let want = if j >= n { 0.0 } else if kk == kw { last[j] } else { w[j * kw + kk] };
                    prop_assert_eq!(v.to_bits(), want.to_bits());
                }
            }
        }
    }
}
