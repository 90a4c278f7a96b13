//! The backward box: the gradient of the loss with respect to the logits in, parameter gradients
//! out.
//!
//! # Brief overview
//! - [`Backward`]: the box's contract, a [`Stage`] that starts from the gradient the loss left in
//!   a slot of the tape (the seed, named by its [`SlotId`]) and fills [`Tape::grads`].
//! - [`ReverseSweep`] (`kind = "reverse"`): runs [`reverse_sweep`], which zeroes the gradients
//!   once and calls every op's VJP in reverse order. Inside a window this is full
//!   back-propagation through time; the recurrent state entering the window is detached.
//! - [`BackwardConfig`] / [`BackwardImpl`]: the config-file face and the run-time enum.
//!
//! This crate never depends on the forward crate: it sees ops only through core's [`Op`](stagewise_core::Op).

use stagewise_core::{Ctx, Dims, Error, Float, Par, Result, SlotId, Stage, Tape};

/// The backward box's contract: the seed slot in (its `grad` holds the gradient of the loss with
/// respect to its `value`, written by the loss box: `dlogits`), the tape's parameter gradients
/// out. Ops accumulate into [`Tape::grads`], so a backward stage zeroes them first.
pub trait Backward<T: Float>: for<'a> Stage<Input<'a> = SlotId, Output = Tape<T>> {}

impl<T: Float, S> Backward<T> for S where S: for<'a> Stage<Input<'a> = SlotId, Output = Tape<T>> {}

/// The exact reverse sweep over the tape.
#[derive(Clone, Debug, Default)]
pub struct ReverseSweep<T>(std::marker::PhantomData<T>);

impl<T> ReverseSweep<T> {
    /// The stage (it has no settings).
    pub fn new() -> Self {
        ReverseSweep(std::marker::PhantomData)
    }
}

impl<T: Float> Stage for ReverseSweep<T> {
    type Input<'a> = SlotId;
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "reverse"
    }

    fn prepare(&mut self, _dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        if tape.output().is_none() || tape.ops().is_empty() {
            return Err(Error::config(
                "backward",
                "the tape has no ops: prepare the embed and forward stages first",
            ));
        }
        Ok(())
    }

    fn run(&self, seed: SlotId, tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        reverse_sweep(seed, tape, cx.par)
    }
}

/// The exact reverse sweep from the gradient in `seed`'s slot: zeroes the parameter gradients
/// once, then calls every op's vector–Jacobian product in reverse order (ops accumulate into
/// [`Tape::grads`]). What [`ReverseSweep`] runs; a backward box of your own (one that clips the
/// gradients afterwards, say) can run it too.
///
/// Fails if the seed slot has no gradient buffer of its value's length.
pub fn reverse_sweep<T: Float>(seed: SlotId, tape: &mut Tape<T>, par: Par) -> Result<()> {
    let slot = tape.acts.slot(seed);
    if slot.grad.len() != slot.value.len() {
        return Err(Error::shape(
            format!("backward seed {} (gradient buffer)", slot.name),
            slot.value.len(),
            slot.grad.len(),
        ));
    }
    tape.grads.fill_zero_par(par);
    let (ops, params, acts, grads) = tape.sweep_parts();
    for op in ops.iter().rev() {
        op.vjp(params, acts, grads, par);
    }
    Ok(())
}

/// The backward box as a config-file table: `[backward] kind = "reverse"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackwardConfig {
    /// [`ReverseSweep`].
    Reverse {},
}

impl Default for BackwardConfig {
    fn default() -> Self {
        BackwardConfig::Reverse {}
    }
}

impl BackwardConfig {
    /// Builds the stage.
    pub fn build<T: Float>(&self) -> BackwardImpl<T> {
        match self {
            BackwardConfig::Reverse {} => BackwardImpl::Reverse(ReverseSweep::new()),
        }
    }
}

/// Every built-in backward stage, chosen at run time; delegates to the variant.
#[derive(Clone, Debug)]
pub enum BackwardImpl<T> {
    /// [`ReverseSweep`].
    Reverse(ReverseSweep<T>),
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for BackwardImpl<T> { Reverse }
    input<'a> = SlotId; output = Tape<T>;);

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::{Activations, Grads, Op, ParamId, Params};

    /// `y = a * x` elementwise with one scalar parameter `a`: small enough to verify by hand.
    struct Scale {
        a: ParamId,
        x: SlotId,
        y: SlotId,
    }

    impl Op<f64> for Scale {
        fn name(&self) -> &str {
            "scale"
        }
        fn forward(&self, params: &Params<f64>, acts: &mut Activations<f64>, _par: Par) {
            let a = params.get(self.a)[0];
            let [x, y] = acts.slots_mut([self.x, self.y]);
            for (o, i) in y.value.iter_mut().zip(&x.value) {
                *o = a * i;
            }
        }
        fn vjp(&self, params: &Params<f64>, acts: &mut Activations<f64>, grads: &mut Grads<f64>, _par: Par) {
            let a = params.get(self.a)[0];
            let [x, y] = acts.slots_mut([self.x, self.y]);
            grads.get_mut(self.a)[0] += y.grad.iter().zip(&x.value).map(|(g, v)| g * v).sum::<f64>();
            for (dx, g) in x.grad.iter_mut().zip(&y.grad) {
                *dx = a * g;
            }
        }
    }

    #[test]
    fn sweep_runs_ops_in_reverse_and_zeroes_parameter_gradients_first() {
        // y = a2 * (a1 * x); dL/dy = seed. With x = [1, 2], a1 = 2, a2 = 3, seed = [1, 1]:
        // dL/da2 = sum(seed * a1 x) = 2 + 4 = 6; dL/da1 = sum(seed * a2 * x) = 3 + 6 = 9.
        let mut tape = Tape::<f64>::new(2, 1);
        let a1 = tape.params.declare("a1", &[1]).unwrap();
        let a2 = tape.params.declare("a2", &[1]).unwrap();
        tape.params.get_mut(a1)[0] = 2.0;
        tape.params.get_mut(a2)[0] = 3.0;
        let x = tape.acts.declare_rows("x", 1, true).unwrap();
        let h = tape.acts.declare_rows("h", 1, true).unwrap();
        let y = tape.acts.declare_rows("y", 1, true).unwrap();
        tape.acts.slot_mut(x).value.copy_from_slice(&[1.0, 2.0]);
        tape.push(Box::new(Scale { a: a1, x, y: h }));
        tape.push(Box::new(Scale { a: a2, x: h, y }));
        tape.set_output(y);
        tape.finish();
        let dims = Dims { vocab: 2, batch: 2, seq_len: 1, params: 2 };
        let mut sweep = ReverseSweep::new();
        sweep.prepare(&dims, &mut tape).unwrap();
        tape.forward_range(0..2, Par::Seq);
        for _ in 0..2 {
            // Twice: the second call must not accumulate onto the first.
            tape.acts.slot_mut(y).grad.copy_from_slice(&[1.0, 1.0]);
            sweep.run(y, &mut tape, &Ctx::seq()).unwrap();
            assert_eq!(tape.grads.as_slice(), &[9.0, 6.0]);
            assert_eq!(tape.acts.slot(x).grad, vec![6.0, 6.0]);
        }
    }

    #[test]
    fn a_seed_without_gradient_is_an_error() {
        let mut tape = Tape::<f64>::new(2, 1);
        let x = tape.acts.declare_rows("x", 1, true).unwrap();
        let y = tape.acts.declare_rows("y", 1, false).unwrap();
        let a = tape.params.declare("a", &[1]).unwrap();
        tape.push(Box::new(Scale { a, x, y }));
        tape.set_output(y);
        tape.finish();
        let err = ReverseSweep::new().run(y, &mut tape, &Ctx::seq()).unwrap_err();
        assert!(err.to_string().contains("backward seed y"), "{err}");
    }

    #[test]
    fn config_is_tagged_by_kind() {
        let c: BackwardConfig = serde_json::from_str(r#"{"kind":"reverse"}"#).unwrap();
        assert_eq!(c, BackwardConfig::Reverse {});
        assert!(serde_json::from_str::<BackwardConfig>(r#"{"kind":"reverse","x":1}"#).is_err());
    }
}
