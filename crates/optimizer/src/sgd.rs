//! SGD as PyTorch's `_single_tensor_sgd` computes it.

use crate::{
    OptimizerState, StateId, Update, check_non_negative, check_positive, check_state_layout, check_update,
    for_each_trainable_run,
};
use stagewise_core::{Ctx, Dims, Error, Float, Result, Stage};

/// Stochastic gradient descent as PyTorch implements it (`torch.optim.SGD`, `_single_tensor_sgd`):
///
/// ```text
/// g ← g + wd·p                                  (if weight_decay ≠ 0)
/// b ← g at the first step, else μ·b + (1 − dampening)·g      (if momentum ≠ 0)
/// g ← g + μ·b if nesterov, else b                            (if momentum ≠ 0)
/// p ← p − lr·g
/// ```
///
/// `lr` is scaled by [`Update::lr_factor`]. The momentum buffer (`momentum_buffer`, declared only
/// when momentum is non-zero) is the gradient itself at the optimizer's first step (PyTorch starts
/// a tensor's buffer at its first step with a gradient; here every trainable tensor has one at
/// every step). Frozen tensors are skipped entirely.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd<T> {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ (0: plain SGD, no state).
    pub momentum: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0, as in PyTorch).
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Dampening: the gradient enters the buffer with weight `1 − dampening`.
    pub dampening: f64,
    /// `momentum_buffer`, once prepared with a non-zero momentum.
    buffer: Option<StateId>,
    /// Whether `prepare` has run (plain SGD declares nothing, so `buffer` cannot say).
    prepared: bool,
    _float: std::marker::PhantomData<T>,
}

impl<T: Float> Sgd<T> {
    /// Plain SGD at learning rate `lr` (PyTorch's defaults: no momentum, dampening or decay).
    pub fn new(lr: f64) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            dampening: 0.0,
            buffer: None,
            prepared: false,
            _float: std::marker::PhantomData,
        }
    }
}

/// SGD's settings in range, or a config error naming the first that is not: a positive finite
/// learning rate, momentum and weight decay finite and non-negative, dampening in `[0, 1]`, and
/// Nesterov only with momentum and no dampening (PyTorch refuses it otherwise).
pub(crate) fn check_settings(
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    dampening: f64,
) -> Result<()> {
    check_positive("optimizer.lr", lr)?;
    check_non_negative("optimizer.momentum", momentum)?;
    check_non_negative("optimizer.weight_decay", weight_decay)?;
    if !(0.0..=1.0).contains(&dampening) {
        return Err(Error::config("optimizer.dampening", format!("{dampening} is out of range [0, 1]")));
    }
    if nesterov && (momentum <= 0.0 || dampening != 0.0) {
        return Err(Error::config(
            "optimizer.nesterov",
            format!(
                "Nesterov momentum needs momentum > 0 and dampening = 0 (momentum {momentum}, dampening {dampening})"
            ),
        ));
    }
    Ok(())
}

/// One SGD update's constants, already cast to `T`.
#[derive(Clone, Copy)]
struct SgdStep<T> {
    lr: T,
    wd: T,
    momentum: T,
    /// `1 − dampening`.
    keep: T,
    with_decay: bool,
    with_momentum: bool,
    nesterov: bool,
    first: bool,
}

impl<T: Float> SgdStep<T> {
    /// The fused update of one contiguous run (`b` is empty without momentum).
    fn apply(&self, p: &mut [T], g: &[T], b: &mut [T]) {
        if !self.with_momentum {
            for (p, &g) in p.iter_mut().zip(g) {
                let g = if self.with_decay { g + self.wd * *p } else { g };
                *p -= self.lr * g;
            }
            return;
        }
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
            let g = if self.with_decay { g + self.wd * *p } else { g };
            *b = if self.first { g } else { self.momentum * *b + self.keep * g };
            let d = if self.nesterov { g + self.momentum * *b } else { *b };
            *p -= self.lr * d;
        }
    }
}

impl<T: Float> Stage for Sgd<T> {
    type Input<'a> = Update<'a, T>;
    type Output = OptimizerState<T>;

    fn name(&self) -> &str {
        "sgd"
    }

    /// Checks the settings and, with momentum, declares `momentum_buffer`.
    fn prepare(&mut self, dims: &Dims, state: &mut OptimizerState<T>) -> Result<()> {
        check_settings(self.lr, self.momentum, self.nesterov, self.weight_decay, self.dampening)?;
        check_state_layout(dims, state)?;
        self.buffer = if self.momentum != 0.0 { Some(state.declare("momentum_buffer")?) } else { None };
        self.prepared = true;
        Ok(())
    }

    /// One step over the trainable runs of the arena; allocates nothing.
    fn run(&self, up: Update<'_, T>, state: &mut OptimizerState<T>, cx: &Ctx) -> Result<()> {
        if !self.prepared || (self.momentum != 0.0) != self.buffer.is_some() {
            return Err(Error::config("optimizer", "stage \"sgd\" run before prepare"));
        }
        check_update(&up, state, "sgd")?;
        let c = |x: f64| T::from_f64(x);
        let step = SgdStep {
            lr: c(self.lr * up.lr_factor),
            wd: c(self.weight_decay),
            momentum: c(self.momentum),
            keep: c(1.0 - self.dampening),
            with_decay: self.weight_decay != 0.0,
            with_momentum: self.buffer.is_some(),
            nesterov: self.nesterov,
            first: state.step == 0,
        };
        state.step += 1;
        let buffer = match self.buffer {
            Some(id) => state.get_mut(id).as_mut_slice(),
            None => &mut [],
        };
        let (layout, p) = up.params.layout_and_mut_slice();
        let arenas = (p, up.grads.as_slice(), buffer, &mut [][..]);
        for_each_trainable_run(layout, |_| (), cx.par, arenas, |(), p, g, b, _| step.apply(p, g, b));
        Ok(())
    }
}
