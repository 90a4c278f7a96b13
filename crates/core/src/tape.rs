//! The tape: the static list of ops that the forward stages write and the backward stage reads.
//!
//! The graph of a Stagewise model is fixed by its config, so it is built once, while stages are
//! prepared: each differentiable stage declares its parameters in [`Tape::params`], its activation
//! buffers as [`Slot`]s and pushes its [`Op`]s. A training cycle then replays the list forwards and
//! the backward stage walks it in reverse. Nothing is recorded per step, so nothing is allocated.
//!
//! # One schedule, cut into pieces on several threads
//! The list of ops is the only schedule: the forward pass runs it in order and the backward pass
//! walks exactly it in reverse. On several threads the tape may run two neighbouring ops
//! *overlapped*, when they say how their work can be cut ([`Op::pieces`]): a recurrence
//! ([`StepOp`], sequential over the steps of the window) followed by a row-wise op that reads its
//! output ([`RowOp`], each output row depending only on the same input row). While one thread
//! runs the recurrence over the later steps, another runs the row-wise op over the rows of the
//! steps already finished:
//!
//! ```text
//! begin     every thread: the recurrence's non-sequential work (e.g. all input projections)
//! phase 0   thread 1: steps [0, S)            thread 2: the row-wise op's own preparation
//! phase 1   thread 1: steps [S, T)            thread 2: the row-wise op over the rows of [0, S)
//! phase 2   every thread: the row-wise op over the rows of [S, T)
//! ```
//!
//! It applies only when a step of the recurrence runs on one thread (a step large enough to split
//! across threads keeps them busy already), when the row-wise op's work is large enough to be
//! worth a second thread (`tuning::SEQUENTIAL_BELOW_MACS`), and when it says that cutting its rows
//! at `S` changes no bit of its result ([`RowOp::splits_exactly`]). Any forward stage built from
//! such ops gets it; the result is bit-identical to running the ops one after the other.

use std::ops::Range;

use crate::{Error, Float, Grads, Params, Result};
use stagewise_kernels::memory::AlignedVec;
use stagewise_kernels::tuning::{SEQUENTIAL_BELOW_MACS, STEALABLE_BLOCKS};
use stagewise_kernels::{Par, threads_of};

/// A handle to one activation buffer of [`Activations`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotId(usize);

/// One activation buffer and, if it is differentiable, its gradient.
#[derive(Clone, Debug)]
pub struct Slot<T> {
    /// A name for debugging and error messages (`"lstm.h"`, `"fc.logits"`, ...).
    pub name: String,
    /// Forward values. Sized once for the longest window; ops use the prefix for the current one.
    /// Starts on a 64-byte boundary (see [`AlignedVec`]), as does `grad`.
    pub value: AlignedVec<T>,
    /// Gradient of the loss with respect to `value` (same size), or empty for saved intermediates
    /// that nothing differentiates through. Ops *overwrite* input gradients.
    pub grad: AlignedVec<T>,
    /// Scalars per row (per token position), or 0 for a buffer not laid out by rows (e.g. a
    /// recurrent state of `[B, H]`).
    pub width: usize,
}

/// All activation buffers of a model plus the integer input of the current window.
#[derive(Clone, Debug)]
pub struct Activations<T> {
    slots: Vec<Slot<T>>,
    /// Token ids of the current window, time-major: row `t * batch + b` is step `t` of stream `b`.
    pub ids: Vec<u32>,
    /// Real steps of each stream in the current window (`batch` entries), for ops that read a
    /// batch of padded texts (pooling over time): stream `b`'s steps `lengths[b]..` are padding.
    /// Set by the caller before the forward pass; a language model's contiguous streams leave it
    /// at the longest window, and no op of theirs reads it.
    pub lengths: Vec<usize>,
    batch: usize,
    max_steps: usize,
    steps: usize,
}

impl<T> Slot<T> {
    /// An empty slot, holding no memory (what a moved-out slot leaves behind).
    fn placeholder() -> Self {
        Slot { name: String::new(), value: AlignedVec::default(), grad: AlignedVec::default(), width: 0 }
    }
}

impl<T: Float> Activations<T> {
    /// Streams per window.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Steps in the current window (`<= max_steps`).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Longest window the buffers were sized for.
    pub fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// Rows of the longest window: `max_steps * batch` (what row slots are sized for; the tape
    /// checked when it was made that this product fits).
    pub fn max_rows(&self) -> usize {
        self.max_steps * self.batch
    }

    /// Rows in the current window: `steps * batch`.
    pub fn rows(&self) -> usize {
        self.steps * self.batch
    }

    /// Declares a buffer of `max_steps * batch` rows of `width` scalars, with a gradient buffer if
    /// `with_grad`. Allocates: call only while preparing. Fails, naming the slot and its size,
    /// if the size overflows or the system will not allocate it.
    pub fn declare_rows(&mut self, name: &str, width: usize, with_grad: bool) -> Result<SlotId> {
        let len = self.max_rows().checked_mul(width);
        let len = len.ok_or_else(|| {
            Error::memory(format!("{name} [{}, {width}]", self.max_rows()), None, std::mem::size_of::<T>())
        })?;
        self.declare(name, len, width, with_grad)
    }

    /// Declares a buffer not laid out by rows (recurrent state, scratch) of `shape`'s product of
    /// scalars, e.g. `&[batch, hidden]`. Fails like [`Activations::declare_rows`].
    pub fn declare_flat(&mut self, name: &str, shape: &[usize], with_grad: bool) -> Result<SlotId> {
        let len = checked_size(name, shape)?;
        self.declare(name, len, 0, with_grad)
    }

    fn declare(&mut self, name: &str, len: usize, width: usize, with_grad: bool) -> Result<SlotId> {
        let buffer = |len: usize| {
            AlignedVec::try_zeroed(len).map_err(|_| {
                Error::memory(format!("{name} ({len} scalars)"), Some(len), std::mem::size_of::<T>())
            })
        };
        let value = buffer(len)?;
        let grad = buffer(if with_grad { len } else { 0 })?;
        self.slots.push(Slot { name: name.to_owned(), value, grad, width });
        Ok(SlotId(self.slots.len() - 1))
    }

    /// One slot.
    pub fn slot(&self, id: SlotId) -> &Slot<T> {
        &self.slots[id.0]
    }

    /// One slot, writable.
    pub fn slot_mut(&mut self, id: SlotId) -> &mut Slot<T> {
        &mut self.slots[id.0]
    }

    /// Several distinct slots at once, writable (an op reads one and writes another).
    ///
    /// # Panics
    /// If two ids are equal: that is a wiring bug in an op, not a data error.
    pub fn slots_mut<const N: usize>(&mut self, ids: [SlotId; N]) -> [&mut Slot<T>; N] {
        match self.slots.get_disjoint_mut(ids.map(|s| s.0)) {
            Ok(s) => s,
            Err(e) => panic!("slots_mut({ids:?}): {e}"),
        }
    }

    /// The ids of the current window together with one writable slot (the embedding gather reads
    /// the former and writes the latter).
    pub fn ids_and_slot_mut(&mut self, id: SlotId) -> (&[u32], &mut Slot<T>) {
        let rows = self.rows();
        (&self.ids[..rows], &mut self.slots[id.0])
    }

    /// Finds a slot by name.
    pub fn find(&self, name: &str) -> Option<SlotId> {
        self.slots.iter().position(|s| s.name == name).map(SlotId)
    }

    /// Every slot, in declaration order (for memory reports and tests).
    pub fn slots(&self) -> &[Slot<T>] {
        &self.slots
    }

    /// Moves the value buffer of `id` out, leaving an empty one (no data moves, nothing is
    /// allocated), so that a caller can hand it to an op beside `&mut self`. Put it back with
    /// [`Activations::put_value`].
    pub fn take_value(&mut self, id: SlotId) -> AlignedVec<T> {
        std::mem::take(&mut self.slots[id.0].value)
    }

    /// Returns a value buffer taken with [`Activations::take_value`].
    pub fn put_value(&mut self, id: SlotId, value: AlignedVec<T>) {
        self.slots[id.0].value = value;
    }

    /// Swaps slot `id` with the same slot of `other` (whole slots: names, buffers, widths).
    fn swap_slot(&mut self, other: &mut Activations<T>, id: SlotId) {
        std::mem::swap(&mut self.slots[id.0], &mut other.slots[id.0]);
    }
}

/// A differentiable piece of work: a forward pass and its vector–Jacobian product side by side.
///
/// Ops hold only their configuration (sizes, [`ParamId`](crate::ParamId)s, [`SlotId`]s); all
/// storage lives in the tape, so `&self` suffices and the hot path allocates nothing.
/// Conventions: `vjp` *accumulates* (`+=`) into parameter gradients and *overwrites* the gradients
/// of its input slots.
pub trait Op<T: Float>: Send + Sync {
    /// A short name for timings and errors.
    fn name(&self) -> &str;

    /// Computes the op's output slot(s) from its input slot(s) for the current window.
    fn forward(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par);

    /// Given the gradient of its output slot(s), accumulates parameter gradients into `grads` and
    /// writes the gradients of its input slot(s).
    fn vjp(&self, params: &Params<T>, acts: &mut Activations<T>, grads: &mut Grads<T>, par: Par);

    /// Called after a window is finished (after backward, when training): a recurrent op copies its
    /// final state into its initial state here, detached from the graph (truncated BPTT).
    fn end_window(&self, _acts: &mut Activations<T>) {}

    /// Called at the start of an epoch or an evaluation: a recurrent op zeroes its state here.
    fn reset_state(&self, _acts: &mut Activations<T>) {}

    /// How the tape may cut this op's forward pass to overlap it with a neighbour on several
    /// threads (see the module docs). The default, [`Pieces::Whole`], always runs `forward`.
    fn pieces(&self) -> Pieces<'_, T> {
        Pieces::Whole
    }
}

/// What an op offers the tape's overlapped schedule ([`Op::pieces`]).
pub enum Pieces<'a, T> {
    /// The op runs whole.
    Whole,
    /// A recurrence over the steps of the window, runnable a range of steps at a time.
    Steps(&'a dyn StepOp<T>),
    /// A row-wise op, runnable a range of rows at a time.
    Rows(&'a dyn RowOp<T>),
}

/// A recurrence: an op whose forward pass is sequential over the window's steps, writing one
/// block of `B` rows of its output slot per step.
///
/// Its `Op::forward` must equal [`run_steps_whole`]: `begin`, then every step in one run.
pub trait StepOp<T: Float>: Sync {
    /// The row slot the steps write (`[T·B, width]`), which a following row-wise op may read.
    fn output(&self) -> SlotId;

    /// How many threads one step uses under `par`. The tape overlaps the recurrence with the
    /// following op only when this is 1 (a step too small to split across threads).
    fn step_threads(&self, par: Par) -> usize;

    /// The cost of one step for one stream, in multiply-adds at a large product's rate (weighted
    /// for a step's lower efficiency): the tape balances the phases with it.
    fn step_cost(&self) -> f64;

    /// Everything of the forward pass that is not sequential over steps (e.g. every step's input
    /// projection), run once before the first step on every thread of `par`.
    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par);

    /// Runs the steps of `steps` (after `begin` and after every earlier step), writing their
    /// output rows into `out` (`[steps.len()·B, width]`). `prev` holds the output rows of the step
    /// before `steps.start` (empty when it is 0, where the recurrence starts from its initial
    /// state). The output slot is not in `acts` during the call (its buffer is `prev` and `out`).
    fn run_steps(
        &self,
        params: &Params<T>,
        acts: &mut Activations<T>,
        prev: &[T],
        out: &mut [T],
        steps: Range<usize>,
        par: Par,
    );
}

/// A row-wise op: output row `r` depends only on input row `r` (a Linear layer, an element-wise
/// function), so its rows can be computed a range at a time.
///
/// Its `Op::forward` must equal [`run_rows_whole`]: `begin`, then every row in one run.
pub trait RowOp<T: Float>: Sync {
    /// The row slot it reads.
    fn input(&self) -> SlotId;

    /// Every slot its forward pass writes or reads other than its input (output, scratch): the
    /// tape moves them aside while the op runs beside the recurrence.
    fn own_slots(&self) -> &[SlotId];

    /// The cost of one row, in multiply-adds: the tape balances the phases with it.
    fn row_cost(&self) -> f64;

    /// Whether computing the first `first` of `rows` rows and the rest separately gives every
    /// output bit-identical to computing all `rows` at once (a kernel may round a short block of
    /// rows differently).
    fn splits_exactly(&self, first: usize, rows: usize) -> bool;

    /// Work that depends on the parameters only (e.g. a packed copy of the weights), run once
    /// before the first rows.
    fn begin(&self, params: &Params<T>, acts: &mut Activations<T>, par: Par);

    /// Computes the output rows `rows` from `input` (the input slot's rows `rows`, `[rows.len(),
    /// in]`), after `begin`. The input slot is not in `acts` during the call, and beside a
    /// recurrence `acts` holds only the op's [`RowOp::own_slots`] (and the window's sizes, not its
    /// ids). The tape runs a window's rows in at most two runs, `0..r` then `r..N`.
    fn run_rows(
        &self,
        params: &Params<T>,
        acts: &mut Activations<T>,
        input: &[T],
        rows: Range<usize>,
        par: Par,
    );
}

/// A recurrence's whole forward pass (its `Op::forward`): `begin`, then every step of the current
/// window in one run.
pub fn run_steps_whole<T: Float>(
    op: &dyn StepOp<T>,
    params: &Params<T>,
    acts: &mut Activations<T>,
    par: Par,
) {
    let out_id = op.output();
    op.begin(params, acts, par);
    let mut out = acts.take_value(out_id);
    let rows = acts.rows();
    let width = acts.slot(out_id).width;
    op.run_steps(params, acts, &[], &mut out[..rows * width], 0..acts.steps(), par);
    acts.put_value(out_id, out);
}

/// A row-wise op's whole forward pass (its `Op::forward`): `begin`, then every row of the current
/// window in one run.
pub fn run_rows_whole<T: Float>(op: &dyn RowOp<T>, params: &Params<T>, acts: &mut Activations<T>, par: Par) {
    let in_id = op.input();
    op.begin(params, acts, par);
    let input = acts.take_value(in_id);
    let rows = acts.rows();
    let width = acts.slot(in_id).width;
    op.run_rows(params, acts, &input[..rows * width], 0..rows, par);
    acts.put_value(in_id, input);
}

/// The model's storage and its static schedule of ops.
pub struct Tape<T: Float> {
    /// Parameters, declared by the stages while they are prepared.
    pub params: Params<T>,
    /// Parameter gradients, sized by [`Tape::finish`].
    pub grads: Grads<T>,
    /// Activation buffers.
    pub acts: Activations<T>,
    /// The gradient norm the last backward pass measured, before clipping: the 2-norm over the
    /// trainable tensors' gradients (PyTorch's `clip_grad_norm_` total), so a run can report how
    /// large its gradients are whether or not it clips. `None` until a backward box that measures
    /// it has run (a box of your own may leave it unset).
    pub grad_norm: Option<f64>,
    ops: Vec<Box<dyn Op<T>>>,
    output: Option<SlotId>,
    /// Where a row-wise op's own slots go while it runs beside a recurrence (same slot indices,
    /// empty placeholders elsewhere; sized on first use, reused after).
    side: Activations<T>,
    overlapped: u64,
}

impl<T: Float> Tape<T> {
    /// An empty tape for windows of up to `max_steps` steps of `batch` streams.
    ///
    /// # Panics
    /// If `batch * max_steps` overflows or cannot be allocated (for tests and tools with sizes of
    /// their own; a model built from user input uses [`Tape::try_new`]).
    pub fn new(batch: usize, max_steps: usize) -> Self {
        match Self::try_new(batch, max_steps) {
            Ok(tape) => tape,
            Err(e) => panic!("Tape::new({batch}, {max_steps}): {e}"),
        }
    }

    /// An empty tape for windows of up to `max_steps` steps of `batch` streams; fails, naming the
    /// sizes, if either is zero, if `batch * max_steps` overflows or if its id buffer cannot be
    /// allocated.
    pub fn try_new(batch: usize, max_steps: usize) -> Result<Self> {
        if batch == 0 || max_steps == 0 {
            return Err(crate::Error::shape(
                "tape (batch, window steps)",
                "both at least 1",
                (batch, max_steps),
            ));
        }
        let rows = batch.checked_mul(max_steps);
        let what = format!("window ids [{max_steps}, {batch}]");
        let rows = rows.ok_or_else(|| Error::memory(what.clone(), None, 4))?;
        stagewise_kernels::memory::can_allocate::<u32>(rows)
            .map_err(|_| Error::memory(what, Some(rows), 4))?;
        Ok(Tape {
            params: Params::new(),
            grads: Grads::zeros_with_layout(&Default::default()),
            acts: Activations {
                slots: Vec::new(),
                ids: vec![0; rows],
                lengths: vec![max_steps; batch],
                batch,
                max_steps,
                steps: max_steps,
            },
            grad_norm: None,
            ops: Vec::new(),
            output: None,
            side: Activations {
                slots: Vec::new(),
                ids: Vec::new(),
                lengths: Vec::new(),
                batch,
                max_steps,
                steps: max_steps,
            },
            overlapped: 0,
        })
    }

    /// Appends an op to the schedule and returns its position.
    pub fn push(&mut self, op: Box<dyn Op<T>>) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// The slot the last stage wrote, which the next stage reads (embedding -> forward -> loss).
    pub fn output(&self) -> Option<SlotId> {
        self.output
    }

    /// Marks `slot` as the current end of the chain.
    pub fn set_output(&mut self, slot: SlotId) {
        self.output = Some(slot);
    }

    /// Sizes the gradient arena to the declared parameters. Call once all stages are prepared.
    ///
    /// # Panics
    /// If the arena cannot be allocated (a model built from user input uses
    /// [`Tape::try_finish`]).
    pub fn finish(&mut self) {
        if let Err(e) = self.try_finish() {
            panic!("Tape::finish: {e}");
        }
    }

    /// Like [`Tape::finish`], with an allocation the system refuses as an error naming it.
    pub fn try_finish(&mut self) -> Result<()> {
        self.grads = Grads::try_zeros_with_layout(self.params.layout())?;
        Ok(())
    }

    /// Sets the length of the current window.
    pub fn set_steps(&mut self, steps: usize) -> Result<()> {
        if steps == 0 || steps > self.acts.max_steps {
            return Err(crate::Error::shape("window steps", format!("1..={}", self.acts.max_steps), steps));
        }
        self.acts.steps = steps;
        Ok(())
    }

    /// The schedule, in forward order.
    pub fn ops(&self) -> &[Box<dyn Op<T>>] {
        &self.ops
    }

    /// Runs ops `range` forwards, overlapping a recurrence with the row-wise op after it where
    /// the module docs say it applies. The results are the same bits either way.
    pub fn forward_range(&mut self, range: Range<usize>, par: Par) {
        let mut i = range.start;
        while i < range.end {
            if i + 1 < range.end && self.forward_overlapped(i, par) {
                i += 2;
            } else {
                self.ops[i].forward(&self.params, &mut self.acts, par);
                i += 1;
            }
        }
    }

    /// Runs every op's VJP in reverse order, accumulating into [`Tape::grads`] and overwriting
    /// input gradients as each op's contract says; the caller seeds the output's gradient and
    /// zeroes the arena first when it wants a fresh sweep.
    pub fn backward_all(&mut self, par: Par) {
        let (ops, params, acts, grads) = self.sweep_parts();
        for op in ops.iter().rev() {
            op.vjp(params, acts, grads, par);
        }
    }

    /// How many times [`Tape::forward_range`] has run a pair of ops overlapped: a diagnostic for
    /// tests and benchmarks.
    pub fn overlapped_runs(&self) -> u64 {
        self.overlapped
    }

    /// Runs ops `i` and `i + 1` overlapped if they allow it and it pays; returns whether it did.
    fn forward_overlapped(&mut self, i: usize, par: Par) -> bool {
        let (Pieces::Steps(rec), Pieces::Rows(row)) = (self.ops[i].pieces(), self.ops[i + 1].pieces()) else {
            return false;
        };
        let (batch, steps) = (self.acts.batch, self.acts.steps);
        let out_id = rec.output();
        if row.input() != out_id || threads_of(par) < 2 || rec.step_threads(par) != 1 || steps < 2 {
            return false;
        }
        let first = first_run_steps(steps, rec.step_cost(), row.row_cost());
        let rows = steps * batch;
        if (rows as f64) * row.row_cost() < SEQUENTIAL_BELOW_MACS as f64
            || !row.splits_exactly(first * batch, rows)
        {
            return false;
        }
        if self.side.slots.len() < self.acts.slots.len() {
            // Sized once, on the first overlapped run: placeholders allocate nothing.
            self.side.slots.resize_with(self.acts.slots.len(), Slot::placeholder);
        }
        self.side.steps = steps;
        for &id in row.own_slots() {
            self.acts.swap_slot(&mut self.side, id);
        }
        let width = self.acts.slot(out_id).width;
        let (params, acts, side) = (&self.params, &mut self.acts, &mut self.side);
        rec.begin(params, acts, par);
        let mut out = acts.take_value(out_id);
        let (done, later) = out[..rows * width].split_at_mut(first * batch * width);
        let stealable = Par::rayon(STEALABLE_BLOCKS);
        rayon::join(
            || rec.run_steps(params, acts, &[], done, 0..first, Par::Seq),
            || row.begin(params, side, par),
        );
        let done: &[T] = done;
        let last_done = &done[(first - 1) * batch * width..];
        rayon::join(
            || rec.run_steps(params, acts, last_done, later, first..steps, Par::Seq),
            || row.run_rows(params, side, done, 0..first * batch, stealable),
        );
        row.run_rows(params, side, later, first * batch..rows, par);
        acts.put_value(out_id, out);
        for &id in row.own_slots() {
            self.acts.swap_slot(&mut self.side, id);
        }
        self.overlapped += 1;
        true
    }

    /// The parts a reverse sweep needs, borrowed disjointly: ops, params, activations, grads.
    #[allow(clippy::type_complexity)]
    pub fn sweep_parts(&mut self) -> (&[Box<dyn Op<T>>], &Params<T>, &mut Activations<T>, &mut Grads<T>) {
        (&self.ops, &self.params, &mut self.acts, &mut self.grads)
    }

    /// Tells every op the window is finished (carries recurrent state forward, detached).
    pub fn end_window(&mut self) {
        for op in &self.ops {
            op.end_window(&mut self.acts);
        }
    }

    /// Zeroes every op's recurrent state.
    pub fn reset_state(&mut self) {
        for op in &self.ops {
            op.reset_state(&mut self.acts);
        }
    }
}

/// The product of `shape`, or an error naming `what` and the shape if it overflows: every size a
/// stage computes from user-given widths goes through this (or another checked product).
pub fn checked_size(what: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::memory(format!("{what} {shape:?}"), None, 4))
}

/// Steps `S` of the recurrence's first run (see the module docs): the row-wise op over the rows of
/// `S` steps should cost about as much as the recurrence over the other `T − S`; in `1..T`, so
/// both runs have work.
fn first_run_steps(steps: usize, step_cost: f64, row_cost: f64) -> usize {
    let s = (steps as f64 * step_cost / (step_cost + row_cost).max(f64::MIN_POSITIVE)).round() as usize;
    s.clamp(1, steps - 1)
}
