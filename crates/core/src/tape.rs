//! The tape: the static list of ops that the forward stages write and the backward stage reads.
//!
//! The graph of a Stagewise model is fixed by its config, so it is built once, while stages are
//! prepared: each differentiable stage declares its parameters in [`Tape::params`], its activation
//! buffers as [`Slot`]s and pushes its [`Op`]s. A training cycle then replays the list forwards and
//! the backward stage walks it in reverse. Nothing is recorded per step, so nothing is allocated.

use crate::{Float, Grads, Params, Result};
use faer::Par;
use stagewise_kernels::memory::AlignedVec;

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
    batch: usize,
    max_steps: usize,
    steps: usize,
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

    /// Rows of the longest window: `max_steps * batch` (what row slots are sized for).
    pub fn max_rows(&self) -> usize {
        self.max_steps * self.batch
    }

    /// Rows in the current window: `steps * batch`.
    pub fn rows(&self) -> usize {
        self.steps * self.batch
    }

    /// Declares a buffer of `max_steps * batch` rows of `width` scalars, with a gradient buffer if
    /// `with_grad`. Allocates: call only while preparing.
    pub fn declare_rows(&mut self, name: &str, width: usize, with_grad: bool) -> SlotId {
        self.declare(name, self.max_steps * self.batch * width, width, with_grad)
    }

    /// Declares a buffer of `len` scalars not laid out by rows (recurrent state, scratch).
    pub fn declare_flat(&mut self, name: &str, len: usize, with_grad: bool) -> SlotId {
        self.declare(name, len, 0, with_grad)
    }

    fn declare(&mut self, name: &str, len: usize, width: usize, with_grad: bool) -> SlotId {
        self.slots.push(Slot {
            name: name.to_owned(),
            value: AlignedVec::zeroed(len),
            grad: AlignedVec::zeroed(if with_grad { len } else { 0 }),
            width,
        });
        SlotId(self.slots.len() - 1)
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
}

/// The model's storage and its static schedule of ops.
pub struct Tape<T: Float> {
    /// Parameters, declared by the stages while they are prepared.
    pub params: Params<T>,
    /// Parameter gradients, sized by [`Tape::finish`].
    pub grads: Grads<T>,
    /// Activation buffers.
    pub acts: Activations<T>,
    ops: Vec<Box<dyn Op<T>>>,
    output: Option<SlotId>,
}

impl<T: Float> Tape<T> {
    /// An empty tape for windows of up to `max_steps` steps of `batch` streams.
    pub fn new(batch: usize, max_steps: usize) -> Self {
        Tape {
            params: Params::new(),
            grads: Grads::zeros_with_layout(&Default::default()),
            acts: Activations {
                slots: Vec::new(),
                ids: vec![0; batch * max_steps],
                batch,
                max_steps,
                steps: max_steps,
            },
            ops: Vec::new(),
            output: None,
        }
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
    pub fn finish(&mut self) {
        self.grads = Grads::zeros_with_layout(self.params.layout());
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

    /// Runs ops `range` forwards.
    pub fn forward_range(&mut self, range: std::ops::Range<usize>, par: Par) {
        for op in &self.ops[range] {
            op.forward(&self.params, &mut self.acts, par);
        }
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
