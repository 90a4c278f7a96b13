//! Every built-in keeps the forward box's laws, and the kit catches boxes that break them.

use crate::{
    EMBEDDING_WEIGHT, FC_PREFIX, ForwardConfig, ForwardImpl, LinearOp, LstmOp, RecurrentForward,
    RecurrentKind, RecurrentSpec, laws,
};
use stagewise_core::{
    Activations, Ctx, Dims, Error, Grads, Op, Par, ParamId, Params, Result, Rng, SlotId, Stage, Tape,
    threads_of,
};
use std::ops::Range;

const KINDS: [RecurrentKind; 3] = [RecurrentKind::Lstm, RecurrentKind::Gru, RecurrentKind::RnnTanh];

/// Every kind, one layer and two, with dropout, with a head tied to the table (frozen in the
/// kit's second case), and the run-time enum.
#[test]
fn the_built_ins_keep_the_laws() {
    for kind in KINDS {
        for (hidden, layers, dropout, tied) in [(4, 1, 0.0, false), (4, 2, 0.3, false), (3, 2, 0.0, true)] {
            let spec = RecurrentSpec { kind, hidden, layers, dropout, tied };
            let embed = if tied { hidden } else { 3 };
            laws::check(|| RecurrentForward::<f64>::new(spec, 7).unwrap(), embed)
                .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        }
    }
    let config = ForwardConfig::with(RecurrentKind::Gru, 4, 2, 0.2);
    laws::check(|| ForwardImpl::<f64>::from_config(&config, true, 3).unwrap(), 4).unwrap();
}

/// What a broken op gets wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    /// Its VJP scales the input's gradient by 1.5.
    ScaledGradient,
    /// Its VJP adds to the input's gradient instead of overwriting it.
    AccumulatesInputGradient,
    /// Its forward pass depends on the thread count (by 1e-13).
    ThreadDependent,
    /// Its VJP writes into the table's gradient even when the table is frozen.
    IgnoresFreeze,
}

/// `y = x + W[0, 0]` (`W` the embedding table) over the window's rows, with one fault.
struct Shim {
    x: SlotId,
    y: SlotId,
    width: usize,
    table: ParamId,
    fault: Fault,
}

impl Op<f64> for Shim {
    fn name(&self) -> &str {
        "shim"
    }

    fn forward(&self, params: &Params<f64>, acts: &mut Activations<f64>, par: Par) {
        let n = acts.rows() * self.width;
        let mut shift = params.get(self.table)[0];
        if self.fault == Fault::ThreadDependent {
            shift += 1e-13 * (threads_of(par) - 1) as f64;
        }
        let [x, y] = acts.slots_mut([self.x, self.y]);
        for (y, x) in y.value[..n].iter_mut().zip(&x.value[..n]) {
            *y = *x + shift;
        }
    }

    fn vjp(&self, params: &Params<f64>, acts: &mut Activations<f64>, grads: &mut Grads<f64>, _par: Par) {
        let n = acts.rows() * self.width;
        let [x, y] = acts.slots_mut([self.x, self.y]);
        if params.layout().trainable(self.table) || self.fault == Fault::IgnoresFreeze {
            grads.get_mut(self.table)[0] += y.grad[..n].iter().sum::<f64>();
        }
        let factor = if self.fault == Fault::ScaledGradient { 1.5 } else { 1.0 };
        for (dx, dy) in x.grad[..n].iter_mut().zip(&y.grad[..n]) {
            if self.fault == Fault::AccumulatesInputGradient {
                *dx += dy;
            } else {
                *dx = factor * dy;
            }
        }
    }
}

/// The built-in LSTM box reading the embedding through a [`Shim`].
struct Shimmed {
    inner: RecurrentForward<f64>,
    fault: Fault,
    shim: usize,
}

impl Stage for Shimmed {
    type Input<'a> = ();
    type Output = Tape<f64>;

    fn name(&self) -> &str {
        "shimmed"
    }

    fn prepare(&mut self, dims: &Dims, tape: &mut Tape<f64>) -> Result<()> {
        let x = tape.output().ok_or_else(|| Error::config("forward", "no input"))?;
        let table = tape
            .params
            .layout()
            .find(EMBEDDING_WEIGHT)
            .ok_or_else(|| Error::config("forward", "no table"))?;
        let width = tape.acts.slot(x).width;
        let y = tape.acts.declare_rows("shim.out", width, true)?;
        self.shim = tape.push(Box::new(Shim { x, y, width, table, fault: self.fault }));
        tape.set_output(y);
        self.inner.prepare(dims, tape)
    }

    fn run(&self, _input: (), tape: &mut Tape<f64>, cx: &Ctx) -> Result<()> {
        tape.forward_range(self.shim..self.shim + 1, cx.par);
        self.inner.run((), tape, cx)
    }
}

fn shimmed(fault: Fault) -> impl Fn() -> Shimmed {
    move || Shimmed { inner: RecurrentForward::lstm(4, 1).unwrap(), fault, shim: 0 }
}

#[test]
fn the_kit_passes_a_sound_shim() {
    laws::check(shimmed(Fault::None), 3).unwrap();
}

#[test]
fn the_kit_catches_a_scaled_gradient() {
    let err = laws::check(shimmed(Fault::ScaledGradient), 3).unwrap_err();
    assert!(
        err.contains("gradient of the input embedding.out") && err.contains("finite differences"),
        "{err}"
    );
}

#[test]
fn the_kit_catches_an_accumulated_input_gradient() {
    let err = laws::check(shimmed(Fault::AccumulatesInputGradient), 3).unwrap_err();
    assert!(err.contains("not overwritten"), "{err}");
}

#[test]
fn the_kit_catches_logits_that_depend_on_the_thread_count() {
    let err = laws::check(shimmed(Fault::ThreadDependent), 3).unwrap_err();
    assert!(err.contains("two threads"), "{err}");
}

#[test]
fn the_kit_catches_a_gradient_written_into_a_frozen_table() {
    let err = laws::check(shimmed(Fault::IgnoresFreeze), 3).unwrap_err();
    assert!(err.contains("frozen table") && err.contains("frozen tensor embedding.weight"), "{err}");
}

/// An LSTM layer that does not carry its state to the next window.
struct Forgetful(LstmOp);

impl Op<f64> for Forgetful {
    fn name(&self) -> &str {
        "forgetful"
    }

    fn forward(&self, params: &Params<f64>, acts: &mut Activations<f64>, par: Par) {
        self.0.forward(params, acts, par);
    }

    fn vjp(&self, params: &Params<f64>, acts: &mut Activations<f64>, grads: &mut Grads<f64>, par: Par) {
        self.0.vjp(params, acts, grads, par);
    }

    fn reset_state(&self, acts: &mut Activations<f64>) {
        self.0.reset_state(acts);
    }
}

/// A [`Forgetful`] layer and the head.
struct ForgetfulLstm {
    ops: Range<usize>,
}

impl Stage for ForgetfulLstm {
    type Input<'a> = ();
    type Output = Tape<f64>;

    fn name(&self) -> &str {
        "forgetful"
    }

    fn prepare(&mut self, dims: &Dims, tape: &mut Tape<f64>) -> Result<()> {
        let x = tape.output().ok_or_else(|| Error::config("forward", "no input"))?;
        let lstm = LstmOp::declare_layer(tape, x, 4, 0, &mut Rng::new(1))?;
        let fc = LinearOp::declare(tape, FC_PREFIX, lstm.output(), dims.vocab, 1)?;
        tape.set_output(fc.output());
        let first = tape.push(Box::new(Forgetful(lstm)));
        self.ops = first..tape.push(Box::new(fc)) + 1;
        Ok(())
    }

    fn run(&self, _input: (), tape: &mut Tape<f64>, cx: &Ctx) -> Result<()> {
        tape.forward_range(self.ops.clone(), cx.par);
        Ok(())
    }
}

#[test]
fn the_kit_catches_a_state_not_carried_across_windows() {
    let err = laws::check(|| ForgetfulLstm { ops: 0..0 }, 3).unwrap_err();
    assert!(err.contains("end_window between differ"), "{err}");
}
