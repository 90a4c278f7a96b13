//! The forward box's overlapped schedule: the head's product over finished steps runs on a second
//! thread while the LSTM recurrence goes on.
//!
//! The recurrence is sequential: when a step's product is too small to split across threads
//! (the seed's `[32, 128]×[128, 512]`), one thread runs it while the others wait, and at the seed
//! size that was a sixth of a forward pass. The head `fc` only needs `h` of finished steps, so:
//!
//! ```text
//! phase 0   thread 1: recurrence of steps [0, S)     thread 2: fills [W | b] for the head
//! phase 1   thread 1: recurrence of steps [S, T)     thread 2: head over the rows of [0, S)
//! phase 2   every thread: head over the rows of [S, T) (the GEMM split of core::matrix)
//! ```
//!
//! `S` balances phase 1: the head's rows of `S` steps should take as long as `T − S` steps of the
//! recurrence. Every row is computed by the same arithmetic as in the plain schedule, so the
//! results are bit-identical (tested in `tests/stage.rs`). Only borrows are split; nothing is
//! allocated and no lock is taken.

use stagewise_core::{Activations, Float, Par, Params};

use crate::LinearOp;
use crate::lstm::{LstmOp, StepsMut};

/// How much longer one recurrence step takes than its multiply-adds alone at the head's GEMM
/// rate, for the cell pass and the small product's lower efficiency. Measured at the seed size on
/// the project's machine: a step (2.1 M multiply-adds) took about 55 µs, against 30 µs at the
/// head's 137 GFLOP/s per core; a sweep of `S` from 3 to 8 steps found 6 (this rule's choice) as
/// fast as any.
const RECURRENCE_COST_FACTOR: f64 = 2.0;

/// Blocks the head's product of phase 1 is cut into, so the thread that finishes the recurrence
/// first can take some over (rayon's work stealing).
const STEALABLE_BLOCKS: usize = 16;

/// Steps `S` of the first run of the recurrence (see the module docs): chosen so that the head
/// over `S` steps' rows costs about as much as the recurrence over the other `T − S` steps; in
/// `1..T`, so both runs have work.
pub(crate) fn head_steps(steps: usize, hidden: usize, vocab: usize) -> usize {
    let recurrence = RECURRENCE_COST_FACTOR * (4 * hidden * hidden) as f64;
    let head = ((hidden + 1) * vocab) as f64;
    let s = (steps as f64 * recurrence / (recurrence + head)).round() as usize;
    s.clamp(1, steps.saturating_sub(1).max(1))
}

/// Rows and multiply-adds below which a piece of a product is not cut off: faer multiplies a
/// single row with a matrix–vector kernel and products of at most `16³` multiply-adds with
/// another small kernel, and either may round differently from the row of a larger product. With
/// at least 16 rows and 64 Ki multiply-adds in every piece, every piece runs the same kernel as
/// the whole, so the results stay bit-identical (and smaller windows gain nothing anyway).
const MIN_PIECE_ROWS: usize = 16;
const MIN_PIECE_MACS: usize = 1 << 16;

/// Whether the overlapped schedule applies to a window of `steps` steps of `batch` streams (see
/// [`MIN_PIECE_ROWS`]): both runs of steps must be large products in their own right.
pub(crate) fn overlap_applies(steps: usize, batch: usize, embed: usize, hidden: usize, vocab: usize) -> bool {
    if steps < 2 || embed < 2 || hidden < 2 {
        return false;
    }
    let head = head_steps(steps, hidden, vocab);
    let rows = [head * batch, (steps - head) * batch];
    rows.iter().all(|&r| {
        r >= MIN_PIECE_ROWS
            && r * 4 * hidden * embed >= MIN_PIECE_MACS
            && r * hidden * vocab >= MIN_PIECE_MACS
    })
}

/// Runs `lstm` then `fc` over the current window in the overlapped schedule, on rayon's threads
/// (`par` is the whole run's setting; phases 0 and 1 use two threads, phase 2 all of them).
///
/// The caller checks that it applies ([`overlap_applies`]) and pays (two threads or more, a step
/// too small to split by hidden units). Results equal `lstm.forward` then `fc.forward`, bit for bit.
pub(crate) fn forward_overlapped<T: Float>(
    lstm: &LstmOp,
    fc: &LinearOp,
    params: &Params<T>,
    acts: &mut Activations<T>,
    par: Par,
) {
    let steps = acts.steps();
    let s = lstm.slots();
    lstm.fill_w_hh_t(params, &mut acts.slot_mut(s.w_hh_t).value);
    let ids = [s.input, s.gates, s.c, s.tanh_c, s.h, s.h0, s.c0, fc.output()];
    match fc.operands() {
        Some((left, right)) => {
            let [x, gates, c, tanh_c, h, h0, c0, y, left, right, w_hh_t] = acts.slots_mut([
                ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6], ids[7], left, right, s.w_hh_t,
            ]);
            let bufs = [&mut gates.value[..], &mut c.value, &mut tanh_c.value, &mut h.value, &mut y.value];
            let state = (&h0.value[..], &c0.value[..]);
            let operands = Some((&mut left.value[..], &mut right.value[..]));
            run_phases(lstm, fc, params, (&x.value, &w_hh_t.value), bufs, state, operands, steps, par);
        }
        None => {
            let [x, gates, c, tanh_c, h, h0, c0, y, w_hh_t] =
                acts.slots_mut([ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6], ids[7], s.w_hh_t]);
            let bufs = [&mut gates.value[..], &mut c.value, &mut tanh_c.value, &mut h.value, &mut y.value];
            let state = (&h0.value[..], &c0.value[..]);
            run_phases(lstm, fc, params, (&x.value, &w_hh_t.value), bufs, state, None, steps, par);
        }
    }
}

/// The three phases over the window's input `x` (with `W_hhᵀ` beside it, `inputs = (x, w_hh_t)`)
/// and buffers `[gates, c, tanh_c, h, y]`, with the head's own `(left, right)` operand buffers if
/// it has them (`LinearOp::operands`).
#[allow(clippy::too_many_arguments)]
fn run_phases<'a, T: Float>(
    lstm: &LstmOp,
    fc: &LinearOp,
    params: &Params<T>,
    inputs: (&[T], &[T]),
    bufs: [&'a mut [T]; 5],
    state: (&[T], &[T]),
    operands: Option<(&'a mut [T], &mut [T])>,
    steps: usize,
    par: Par,
) {
    let (embed, hd) = (lstm.embed(), lstm.hidden());
    let bsz = state.0.len() / hd;
    let (x, w_hh_t) = inputs;
    let vocab = fc.out();
    let head = head_steps(steps, hd, vocab);
    let (rows, head_rows) = (steps * bsz, head * bsz);
    let [gates, c, tanh_c, h, y] = bufs;
    // Every buffer cut after the first `head` steps (rows `head·B`).
    let cut = |v: &'a mut [T], width: usize| v[..rows * width].split_at_mut(head_rows * width);
    let (g1, g2) = cut(gates, 4 * hd);
    let (c1, c2) = cut(c, hd);
    let (t1, t2) = cut(tanh_c, hd);
    let (h1, h2) = cut(h, hd);
    let (ya, yb) = cut(y, vocab);
    let (xa, xb) = x[..rows * embed].split_at(head_rows * embed);
    // The head's left operand: each piece in its own part (`LinearOp::left_offset`).
    let (left, mut right) =
        operands.map(|(left, right)| (left.split_at_mut(fc.left_offset(head_rows)), right)).unzip();
    let (mut left_a, mut left_b) = left.unzip();
    let blocks = Par::rayon(STEALABLE_BLOCKS);

    // Phase 0: the first steps' input projection and recurrence here; on another thread, the
    // other steps' input projection and [W | b]ᵀ for the head, in blocks this thread takes over
    // when its own work is done.
    rayon::join(
        || {
            lstm.input_projection(params, xa, &mut *g1, head_rows, Par::Seq);
            lstm.recurrence(
                params,
                w_hh_t,
                state,
                StepsMut { gates: g1, c: &mut *c1, tanh_c: t1, h: &mut *h1 },
                1,
                Par::Seq,
            );
            if let Some(left_a) = left_a.as_deref_mut() {
                fc.fill_left(h1, left_a, Par::Seq);
            }
        },
        || {
            rayon::join(
                || lstm.input_projection(params, xb, &mut *g2, rows - head_rows, blocks),
                || {
                    if let Some(right) = right.as_deref_mut() {
                        fc.fill_right(params, right, par);
                    }
                },
            )
        },
    );
    let (h1, c1): (&[T], &[T]) = (h1, c1);
    let right = right.as_deref();
    let operands_a = left_a.as_deref().zip(right);

    // Phase 1: the other steps here, the head over the first steps' rows on another thread, cut
    // into blocks of columns (independent products, see `core::matrix::gemm`) so that this
    // thread, once its steps are done, takes over the blocks not yet started instead of waiting.
    let carried = (&h1[(head - 1) * bsz * hd..], &c1[(head - 1) * bsz * hd..]);
    rayon::join(
        || {
            lstm.recurrence(
                params,
                w_hh_t,
                carried,
                StepsMut { gates: g2, c: c2, tanh_c: t2, h: &mut *h2 },
                1,
                Par::Seq,
            );
            if let Some(left_b) = left_b.as_deref_mut() {
                fc.fill_left(h2, left_b, Par::Seq);
            }
        },
        || fc.product_rows(params, operands_a, h1, ya, blocks),
    );

    // Phase 2: the head over the remaining rows, on every thread.
    let operands_b = left_b.as_deref().zip(right);
    fc.product_rows(params, operands_b, h2, yb, par);
}
