//! The built-in forward stage: LSTM followed by the Linear head.

use std::marker::PhantomData;
use std::ops::Range;

use stagewise_core::{Ctx, Dims, Error, Float, Result, SlotId, Stage, Tape};

use crate::{LinearOp, LstmOp, LstmSlots};

/// Name prefix of the Linear head's parameters (`fc.weight`, `fc.bias`) and its RNG stream.
pub const FC_PREFIX: &str = "fc";

/// What `prepare` fixed: the schedule positions and the handles callers may need.
#[derive(Clone, Debug)]
struct Prepared {
    ops: (usize, usize),
    /// Copies of the two ops pushed onto the tape (sizes and handles only): the source of the
    /// slot handles.
    lstm_op: LstmOp,
    fc_op: LinearOp,
}

/// The forward box "lstm": embedded vectors `[T·B, E]` -> LSTM `[T·B, H]` -> Linear -> logits
/// `[T·B, V]`.
///
/// Built from a hidden width and the run seed; `prepare` declares and initialises the parameters
/// (so a prepared stage is never half-initialised) and pushes the two ops onto the tape; `run`
/// replays them. The input is the tape itself: `prepare` reads the previous stage's output slot
/// from [`Tape::output`] and leaves the logits slot there for the loss.
#[derive(Debug)]
pub struct LstmForward<T> {
    hidden: usize,
    seed: u64,
    prepared: Option<Prepared>,
    _float: PhantomData<fn() -> T>,
}

impl<T: Float> LstmForward<T> {
    /// A stage with hidden width `hidden` whose parameters will be drawn from the `"lstm"` and
    /// `"fc"` streams of run seed `seed`. Fails on `hidden == 0`.
    pub fn new(hidden: usize, seed: u64) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::config("forward.hidden", "must be at least 1"));
        }
        Ok(LstmForward { hidden, seed, prepared: None, _float: PhantomData })
    }

    /// Hidden width H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The LSTM's slots (state `h0`/`c0`, output `h`, ...), once prepared.
    pub fn lstm_slots(&self) -> Option<LstmSlots> {
        self.prepared.as_ref().map(|p| p.lstm_op.slots())
    }

    /// The logits slot `[T·B, V]`, once prepared.
    pub fn logits(&self) -> Option<SlotId> {
        self.prepared.as_ref().map(|p| p.fc_op.output())
    }

    /// Positions of this stage's ops in the tape's schedule, once prepared.
    pub fn op_range(&self) -> Option<Range<usize>> {
        self.prepared.as_ref().map(|p| p.ops.0..p.ops.1)
    }
}

impl<T: Float> Stage for LstmForward<T> {
    type Input<'a>
        = ()
    where
        Self: 'a;
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "lstm"
    }

    /// Reads the embedding's output slot from `tape.output()` (its width is the LSTM's input
    /// width E), declares the LSTM and `fc` parameters and slots, pushes both ops and sets the
    /// logits slot (width `dims.vocab`) as the tape's output.
    ///
    /// Fails (without touching the tape) if no stage has set an output slot, if that slot is not
    /// laid out by rows, or if the tape was built for another `dims.batch` / `dims.seq_len`; and,
    /// touching it, if called twice (the parameter names would clash).
    fn prepare(&mut self, dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        if self.prepared.is_some() {
            return Err(Error::config("forward", "stage \"lstm\" prepared twice"));
        }
        let input = tape.output().ok_or_else(|| {
            Error::shape("forward input (tape output)", "a slot written by the embedding stage", "none")
        })?;
        if tape.acts.slot(input).width == 0 {
            let name = tape.acts.slot(input).name.clone();
            return Err(Error::shape(
                format!("forward input {name}"),
                "a row slot of width E > 0",
                "a flat slot",
            ));
        }
        if tape.acts.batch() != dims.batch || tape.acts.max_steps() != dims.seq_len {
            return Err(Error::shape(
                "tape (batch, max steps)",
                (dims.batch, dims.seq_len),
                (tape.acts.batch(), tape.acts.max_steps()),
            ));
        }
        let lstm = LstmOp::declare(tape, input, self.hidden, self.seed)?;
        let fc = LinearOp::declare(tape, FC_PREFIX, lstm.output(), dims.vocab, self.seed)?;
        let logits = fc.output();
        let (lstm_op, fc_op) = (lstm.clone(), fc.clone());
        let first = tape.push(Box::new(lstm));
        let last = tape.push(Box::new(fc));
        tape.set_output(logits);
        self.prepared = Some(Prepared { ops: (first, last + 1), lstm_op, fc_op });
        Ok(())
    }

    /// Runs the LSTM and the head over the current window (`tape.acts.steps()` steps). On several
    /// threads the tape overlaps the head's product with the recurrence where that pays (see
    /// `stagewise_core::tape`): the LSTM is a recurrence op and the head a row-wise one.
    fn run(&self, _input: (), tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        let p = self
            .prepared
            .as_ref()
            .ok_or_else(|| Error::config("forward", "stage \"lstm\" run before prepare"))?;
        tape.forward_range(p.ops.0..p.ops.1, cx.par);
        Ok(())
    }
}
