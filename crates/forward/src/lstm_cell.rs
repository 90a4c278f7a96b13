//! One LSTM step over a block of hidden units: the recurrent product and the fused element-wise
//! pass, forward and backward, and the split of a step's hidden units across threads.
//!
//! # Why split by hidden units
//! A step's work is one `[B, H]×[H, 4H]` product and an element-wise pass over `[B, H]`, and the
//! next step cannot start before both end. Splitting only the product across threads (as
//! [`gemm`] does for a large product) leaves the element-wise pass on one thread and costs two
//! hand-offs per step. Splitting by hidden units keeps each thread's work self-contained: the part
//! that owns units `U` computes the four gate columns of `U` (`i[U], f[U], g[U], o[U]`), then the
//! cell for `U`, which needs nothing else; the threads meet once per step, because the next
//! product needs every unit of `h_t`. The backward step is the mirror image: the part owning `U`
//! computes `dh[:, U] = dGates_{t+1}·W_hh[:, U]` and then the element-wise pass for `U`.
//!
//! Every element is computed by the same arithmetic whatever the split: a product's column block
//! equals the same columns of the whole product, bit for bit (faer never splits the sum over `k`;
//! tested in `core::matrix`), and the element-wise passes are independent per element.

use std::ops::Range;

use stagewise_core::Float;
use stagewise_core::Par;
use stagewise_kernels::matrix::{MatMut, gemm, mat, mat_mut, with_wide_simd};
use stagewise_kernels::tuning::{SPLIT_STEP_MACS, UNIT_ALIGN};

/// How many parts a step of `batch` streams and `hidden` units is split into under `par`: one per
/// thread if the step is large enough, never more than one part per [`UNIT_ALIGN`] units. A single
/// stream is never split: its products are matrix–vector products, whose faer kernel need not
/// round a block of outputs as it rounds the whole.
pub fn unit_parts(par: Par, batch: usize, hidden: usize) -> usize {
    unit_parts_of(par, batch, hidden, 4)
}

/// [`unit_parts`] for a cell of `gates` gate blocks (a step's product is `[B, H]×[H, gates·H]`):
/// LSTM 4, GRU 3, Elman RNN 1.
pub fn unit_parts_of(par: Par, batch: usize, hidden: usize, gates: usize) -> usize {
    match par {
        Par::Seq => 1,
        Par::Rayon(threads) => {
            let macs = batch.saturating_mul(hidden).saturating_mul(gates).saturating_mul(hidden);
            if batch < 2 || macs < SPLIT_STEP_MACS {
                1
            } else {
                threads.get().min(hidden / UNIT_ALIGN).max(1)
            }
        }
    }
}

/// A writable `[B, U]` column block of a row-major buffer, one row at a time.
pub(crate) fn row<'a, T>(m: &'a mut MatMut<'_, T>, b: usize) -> &'a mut [T] {
    m.as_mut()
        .row_mut(b)
        .try_as_row_major_mut()
        .expect("column blocks of row-major buffers have unit column stride")
        .as_slice_mut()
}

/// A `[rows, 0]` view borrowing nothing: what a block taken out of an array leaves behind.
fn empty<'a, T: Float>(rows: usize) -> MatMut<'a, T> {
    MatMut::from_row_major_slice_mut(&mut [], rows, 0)
}

/// The `[B, G·H]` gate buffer of one step as `G` `[B, H]` column blocks (LSTM: i, f, g, o;
/// GRU: r, z, n).
pub(crate) fn gate_blocks<T: Float, const G: usize>(
    g: &mut [T],
    batch: usize,
    hidden: usize,
) -> [MatMut<'_, T>; G] {
    let mut rest = mat_mut(g, batch, G * hidden);
    std::array::from_fn(|_| {
        let all = std::mem::replace(&mut rest, empty(batch));
        let (block, later) = all.split_at_col_mut(hidden);
        rest = later;
        block
    })
}

/// Splits `G` gate blocks at column `at`.
pub(crate) fn split_gates<'a, T: Float, const G: usize>(
    gates: [MatMut<'a, T>; G],
    at: usize,
) -> ([MatMut<'a, T>; G], [MatMut<'a, T>; G]) {
    let mut pairs = gates.map(|m| m.split_at_col_mut(at));
    let firsts = std::array::from_fn(|q| {
        let rows = pairs[q].0.nrows();
        std::mem::replace(&mut pairs[q].0, empty(rows))
    });
    (firsts, pairs.map(|p| p.1))
}

/// What one forward step reads, shared by every part.
#[derive(Clone, Copy)]
pub struct ForwardShared<'a, T> {
    /// `h_{t-1}`, `[B, H]`.
    pub h_prev: &'a [T],
    /// `c_{t-1}`, `[B, H]`.
    pub c_prev: &'a [T],
    /// `weight_hh_l0`, `[4H, H]`.
    pub w_hh: &'a [T],
    /// `bias_ih_l0`, `[4H]`.
    pub b_ih: &'a [T],
    /// `bias_hh_l0`, `[4H]`.
    pub b_hh: &'a [T],
    /// Streams B.
    pub batch: usize,
    /// Hidden width H.
    pub hidden: usize,
}

/// What one forward step writes, for the hidden units `units`: four `[B, U]` gate blocks holding
/// the input projections on entry and the activated gates on exit, and `c_t`, `tanh(c_t)`, `h_t`.
pub struct ForwardPart<'a, T> {
    units: Range<usize>,
    gates: [MatMut<'a, T>; 4],
    c: MatMut<'a, T>,
    tanh_c: MatMut<'a, T>,
    h: MatMut<'a, T>,
}

impl<'a, T: Float> ForwardPart<'a, T> {
    /// The whole step: `g` `[B, 4H]`, `c`, `tanh_c`, `h` `[B, H]`.
    pub fn new(
        g: &'a mut [T],
        c: &'a mut [T],
        tanh_c: &'a mut [T],
        h: &'a mut [T],
        batch: usize,
        hidden: usize,
    ) -> Self {
        ForwardPart {
            units: 0..hidden,
            gates: gate_blocks(g, batch, hidden),
            c: mat_mut(c, batch, hidden),
            tanh_c: mat_mut(tanh_c, batch, hidden),
            h: mat_mut(h, batch, hidden),
        }
    }

    /// The cell alone, for a caller that has already added the recurrent product into the
    /// whole step's gates with one GEMM (the single-part path, where one product beats four).
    pub fn cells_only(mut self, s: &ForwardShared<'_, T>) {
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }

    /// The fused element-wise pass over this part's units, row by row.
    #[inline(always)]
    fn cells(&mut self, s: &ForwardShared<'_, T>) {
        let hd = s.hidden;
        let u = self.units.clone();
        let bias = |q: usize| {
            let r = q * hd + u.start..q * hd + u.end;
            (&s.b_ih[r.clone()], &s.b_hh[r])
        };
        let ((bii, bhi), (bif, bhf), (big, bhg), (bio, bho)) = (bias(0), bias(1), bias(2), bias(3));
        let [gi_m, gf_m, gg_m, go_m] = &mut self.gates;
        for b in 0..s.batch {
            let (gi, gf, gg, go) = (row(gi_m, b), row(gf_m, b), row(gg_m, b), row(go_m, b));
            let cp = &s.c_prev[b * hd + u.start..b * hd + u.end];
            let (ct, tc, ht) = (row(&mut self.c, b), row(&mut self.tanh_c, b), row(&mut self.h, b));
            // Short loops over two or three slices each, rather than one loop over ten: the
            // compiler vectorises a loop only if it can rule out overlap between every pair of
            // slices it touches, and gives up beyond a handful (the ten-slice loop stayed scalar).
            // One row of gates is in L1 cache, so the extra passes cost little.
            // Each activation written out rather than passed as a function pointer, which the
            // compiler did not always inline (and then could not vectorise).
            for (x, (a, b)) in gi.iter_mut().zip(bii.iter().zip(bhi)) {
                *x = (*x + *a + *b).sigmoid_fast();
            }
            for (x, (a, b)) in gf.iter_mut().zip(bif.iter().zip(bhf)) {
                *x = (*x + *a + *b).sigmoid_fast();
            }
            for (x, (a, b)) in gg.iter_mut().zip(big.iter().zip(bhg)) {
                *x = (*x + *a + *b).tanh_fast();
            }
            for (x, (a, b)) in go.iter_mut().zip(bio.iter().zip(bho)) {
                *x = (*x + *a + *b).sigmoid_fast();
            }
            for (c, ((f, cp), (i, g))) in ct.iter_mut().zip(gf.iter().zip(cp).zip(gi.iter().zip(gg.iter()))) {
                *c = *f * *cp + *i * *g;
            }
            for (t, c) in tc.iter_mut().zip(ct.iter()) {
                *t = c.tanh_fast();
            }
            for (h, (o, t)) in ht.iter_mut().zip(go.iter().zip(tc.iter())) {
                *h = *o * *t;
            }
        }
    }
}

/// What one backward step reads, shared by every part.
#[derive(Clone, Copy)]
pub struct BackwardShared<'a, T> {
    /// Pre-activation gradients of step `t + 1`, `[B, 4H]`, or `None` at the window's last step
    /// (where `dh_next` is zero on entry).
    pub dg_next: Option<&'a [T]>,
    /// `weight_hh_l0`, `[4H, H]`.
    pub w_hh: &'a [T],
    /// Activated gates of step `t`, `[B, 4H]`.
    pub gates: &'a [T],
    /// `tanh(c_t)`, `[B, H]`.
    pub tanh_c: &'a [T],
    /// `c_{t-1}`, `[B, H]`.
    pub c_prev: &'a [T],
    /// The loss's gradient of `h_t`, `[B, H]`.
    pub dh_out: &'a [T],
    /// Streams B.
    pub batch: usize,
    /// Hidden width H.
    pub hidden: usize,
}

/// What one backward step writes, for the hidden units `units`: the four `[B, U]` blocks of the
/// pre-activation gradients `dGates_t`, the recurrent gradient `dh` (from step `t + 1`) and the
/// cell gradient `dc` (`dc_t` from step `t + 1` on entry, `dc_{t-1}`'s share on exit).
pub struct BackwardPart<'a, T> {
    units: Range<usize>,
    dgates: [MatMut<'a, T>; 4],
    dh_next: MatMut<'a, T>,
    dc_next: MatMut<'a, T>,
}

impl<'a, T: Float> BackwardPart<'a, T> {
    /// The whole step: `dg` `[B, 4H]`, `dh_next`, `dc_next` `[B, H]`.
    pub fn new(
        dg: &'a mut [T],
        dh_next: &'a mut [T],
        dc_next: &'a mut [T],
        batch: usize,
        hidden: usize,
    ) -> Self {
        BackwardPart {
            units: 0..hidden,
            dgates: gate_blocks(dg, batch, hidden),
            dh_next: mat_mut(dh_next, batch, hidden),
            dc_next: mat_mut(dc_next, batch, hidden),
        }
    }

    /// The element-wise pass alone, for a caller that has already computed the whole `dh_next`
    /// with one GEMM (the single-part path).
    pub fn cells_only(mut self, s: &BackwardShared<'_, T>) {
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }

    /// The fused element-wise pass over this part's units, row by row.
    #[inline(always)]
    fn cells(&mut self, s: &BackwardShared<'_, T>) {
        let (hd, one) = (s.hidden, T::from_f64(1.0));
        let u = self.units.clone();
        let [di_m, df_m, dg_m, do_m] = &mut self.dgates;
        for b in 0..s.batch {
            let gate = |q: usize| &s.gates[b * 4 * hd + q * hd + u.start..b * 4 * hd + q * hd + u.end];
            let (gi, gf, gg, go) = (gate(0), gate(1), gate(2), gate(3));
            let r = b * hd + u.start..b * hd + u.end;
            let (tc, cp, dho) = (&s.tanh_c[r.clone()], &s.c_prev[r.clone()], &s.dh_out[r]);
            let (di, df, dgg, do_) = (row(di_m, b), row(df_m, b), row(dg_m, b), row(do_m, b));
            let (dhn, dcr) = (row(&mut self.dh_next, b), row(&mut self.dc_next, b));
            // Short loops over at most four slices, as in the forward pass, so each vectorises.
            // `do_` holds dh = dh_out + dh_next until its own gradient replaces it, and `dcr`
            // holds dc_t (the cell gradient at this step) until it is scaled into dc_{t-1}'s share.
            for (d, (a, b)) in do_.iter_mut().zip(dho.iter().zip(dhn.iter())) {
                *d = *a + *b;
            }
            for (c, (dh, (o, t))) in dcr.iter_mut().zip(do_.iter().zip(go.iter().zip(tc))) {
                *c += *dh * *o * (one - *t * *t);
            }
            for (d, (dcv, (gv, i))) in di.iter_mut().zip(dcr.iter().zip(gg.iter().zip(gi))) {
                *d = *dcv * *gv * *i * (one - *i);
            }
            for (d, (dcv, (c, f))) in df.iter_mut().zip(dcr.iter().zip(cp.iter().zip(gf))) {
                *d = *dcv * *c * *f * (one - *f);
            }
            for (d, (dcv, (i, gv))) in dgg.iter_mut().zip(dcr.iter().zip(gi.iter().zip(gg))) {
                *d = *dcv * *i * (one - *gv * *gv);
            }
            for (d, (t, o)) in do_.iter_mut().zip(tc.iter().zip(go)) {
                *d = *d * *t * *o * (one - *o);
            }
            for (c, f) in dcr.iter_mut().zip(gf) {
                *c *= *f;
            }
        }
    }
}

/// A step's work that can be cut at a hidden unit into two independent halves.
pub trait SplitByUnits<S: Sync>: Send + Sized {
    /// The hidden units this part owns.
    fn units(&self) -> Range<usize>;
    /// The parts owning `units().start..at` and `at..units().end`.
    fn split_at(self, at: usize) -> (Self, Self);
    /// Does the part's work, reading `shared`.
    fn run_part(self, shared: &S);
}

impl<'a, 's, T: Float> SplitByUnits<ForwardShared<'s, T>> for ForwardPart<'a, T> {
    fn units(&self) -> Range<usize> {
        self.units.clone()
    }
    fn split_at(self, at: usize) -> (Self, Self) {
        let local = at - self.units.start;
        let (g1, g2) = split_gates(self.gates, local);
        let (c1, c2) = self.c.split_at_col_mut(local);
        let (t1, t2) = self.tanh_c.split_at_col_mut(local);
        let (h1, h2) = self.h.split_at_col_mut(local);
        (
            ForwardPart { units: self.units.start..at, gates: g1, c: c1, tanh_c: t1, h: h1 },
            ForwardPart { units: at..self.units.end, gates: g2, c: c2, tanh_c: t2, h: h2 },
        )
    }

    /// The recurrent product for this part's gate columns, then the cell for its units.
    fn run_part(mut self, s: &ForwardShared<'s, T>) {
        let (bsz, hd) = (s.batch, s.hidden);
        let h_prev = mat(s.h_prev, bsz, hd);
        let w_hh = mat(s.w_hh, 4 * hd, hd);
        let (u0, nu) = (self.units.start, self.units.len());
        for (q, gates) in self.gates.iter_mut().enumerate() {
            // gates_q[:, U] += h_{t-1}·W_hh[qH + U, :]ᵀ  ([B, H]×[H, U]).
            let w = w_hh.subrows(q * hd + u0, nu).transpose();
            gemm(gates.as_mut(), true, h_prev, w, Par::Seq);
        }
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

impl<'a, 's, T: Float> SplitByUnits<BackwardShared<'s, T>> for BackwardPart<'a, T> {
    fn units(&self) -> Range<usize> {
        self.units.clone()
    }
    fn split_at(self, at: usize) -> (Self, Self) {
        let local = at - self.units.start;
        let (g1, g2) = split_gates(self.dgates, local);
        let (h1, h2) = self.dh_next.split_at_col_mut(local);
        let (c1, c2) = self.dc_next.split_at_col_mut(local);
        (
            BackwardPart { units: self.units.start..at, dgates: g1, dh_next: h1, dc_next: c1 },
            BackwardPart { units: at..self.units.end, dgates: g2, dh_next: h2, dc_next: c2 },
        )
    }

    /// `dh[:, U] = dGates_{t+1}·W_hh[:, U]`, then the element-wise pass for its units.
    fn run_part(mut self, s: &BackwardShared<'s, T>) {
        let (bsz, hd) = (s.batch, s.hidden);
        if let Some(dg_next) = s.dg_next {
            let w = mat(s.w_hh, 4 * hd, hd).subcols(self.units.start, self.units.len());
            // dh_t[:, U] from the recurrence: dGates_{t+1}·W_hh[:, U]  ([B, 4H]×[4H, U]).
            gemm(self.dh_next.as_mut(), false, mat(dg_next, bsz, 4 * hd), w, Par::Seq);
        }
        with_wide_simd(
            #[inline(always)]
            || self.cells(s),
        );
    }
}

/// Runs `step` as `parts` parts on rayon's threads (cuts at multiples of [`UNIT_ALIGN`] units,
/// halving recursively like `core::matrix`'s GEMM split), or in place for one part.
pub fn run_split<S: Sync, P: SplitByUnits<S>>(step: P, shared: &S, parts: usize) {
    let units = step.units();
    if parts <= 1 || units.len() < 2 * UNIT_ALIGN {
        step.run_part(shared);
        return;
    }
    let first = parts / 2;
    let cut = (units.len() * first / parts).div_ceil(UNIT_ALIGN) * UNIT_ALIGN;
    let at = units.start + cut.clamp(UNIT_ALIGN, units.len() - UNIT_ALIGN);
    let (a, b) = step.split_at(at);
    rayon::join(|| run_split(a, shared, first), || run_split(b, shared, parts - first));
}
