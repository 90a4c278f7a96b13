//! Adam and AdamW, as PyTorch's `_single_tensor_adam` computes them (non-capturable, no amsgrad).

use crate::{
    OptimizerState, StateId, Update, check_non_negative, check_positive, check_state_layout, check_update,
    for_each_trainable_run,
};
use stagewise_core::{Ctx, Dims, Error, Float, ParamEntry, Result, Stage};

/// Adam as PyTorch implements it (`_single_tensor_adam`, non-capturable):
/// `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
/// `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)`; with `weight_decay`, `g ← g + wd·p` first.
/// `lr` is scaled by [`Update::lr_factor`]; frozen tensors are skipped (moments included).
#[derive(Clone, Debug, PartialEq)]
pub struct Adam<T> {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// L2 penalty added to the gradient (PyTorch's `weight_decay`, not AdamW's).
    pub weight_decay: f64,
    /// `(exp_avg, exp_avg_sq)`, once prepared.
    moments: Option<(StateId, StateId)>,
    _float: std::marker::PhantomData<T>,
}

impl<T: Float> Adam<T> {
    /// PyTorch's defaults at learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            moments: None,
            _float: std::marker::PhantomData,
        }
    }
}

/// AdamW as PyTorch implements it (`torch.optim.AdamW`, i.e. `_single_tensor_adam` with
/// `decoupled_weight_decay`): first `p ← p·(1 − lr·wd)`, then the Adam step of [`Adam`] on the
/// undecayed gradient. With `decay_all = false` only tensors of two or more dimensions are
/// decayed (nanoGPT's parameter groups: weights decay, biases and other vectors do not); every
/// trainable tensor still gets the Adam step. `lr` is scaled by [`Update::lr_factor`], in the
/// decay too; frozen tensors are skipped entirely.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW<T> {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Decoupled weight decay (PyTorch's default 0.01).
    pub weight_decay: f64,
    /// Decay every tensor (`true`, PyTorch's default) or only those of two or more dimensions.
    pub decay_all: bool,
    /// `(exp_avg, exp_avg_sq)`, once prepared.
    moments: Option<(StateId, StateId)>,
    _float: std::marker::PhantomData<T>,
}

impl<T: Float> AdamW<T> {
    /// PyTorch's defaults at learning rate `lr` (weight decay 0.01 on every tensor).
    pub fn new(lr: f64) -> Self {
        AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay_all: true,
            moments: None,
            _float: std::marker::PhantomData,
        }
    }
}

/// Adam's settings in range, or a config error naming the first that is not: a positive finite
/// learning rate, betas in `[0, 1)`, a positive `eps`, a non-negative weight decay.
pub(crate) fn check_settings(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Result<()> {
    check_positive("optimizer.lr", lr)?;
    for (field, beta) in [("optimizer.beta1", beta1), ("optimizer.beta2", beta2)] {
        if !(0.0..1.0).contains(&beta) {
            return Err(Error::config(field, format!("{beta} is out of range [0, 1)")));
        }
    }
    check_positive("optimizer.eps", eps)?;
    check_non_negative("optimizer.weight_decay", weight_decay)
}

/// One Adam update's constants, already cast to `T`.
#[derive(Clone, Copy)]
struct AdamStep<T> {
    b1: T,
    b2: T,
    one: T,
    step_size: T,
    inv_bias2_sqrt: T,
    eps: T,
    /// L2 penalty added to the gradient (Adam).
    wd: T,
    /// Factor `1 − lr·wd` the parameters are multiplied by first (AdamW's decayed runs).
    decay: T,
}

impl<T: Float> AdamStep<T> {
    /// The fused update of one contiguous run of the arena, with the gradient's L2 term (Adam).
    fn apply(&self, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
        let AdamStep { b1, b2, one, step_size, inv_bias2_sqrt, eps, wd, .. } = *self;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g + wd * *p;
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            let denom = v.sqrt() * inv_bias2_sqrt + eps;
            *p -= step_size * *m / denom;
        }
    }

    /// The fused update of one contiguous run, the parameters decayed first (AdamW).
    fn apply_decoupled(&self, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], decayed: bool) {
        let AdamStep { b1, b2, one, step_size, inv_bias2_sqrt, eps, decay, .. } = *self;
        let decay = if decayed { decay } else { one };
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *p *= decay;
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            let denom = v.sqrt() * inv_bias2_sqrt + eps;
            *p -= step_size * *m / denom;
        }
    }
}

/// Adam's settings, shared by both stages.
struct Settings {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

/// Declares PyTorch's two moment buffers after checking the settings and the state's layout.
fn prepare_moments<T: Float>(
    s: &Settings,
    dims: &Dims,
    state: &mut OptimizerState<T>,
) -> Result<(StateId, StateId)> {
    check_settings(s.lr, s.beta1, s.beta2, s.eps, s.weight_decay)?;
    check_state_layout(dims, state)?;
    Ok((state.declare("exp_avg")?, state.declare("exp_avg_sq")?))
}

/// One step of Adam (`decoupled = None`) or AdamW (`Some(decay_all)`) over the trainable runs.
fn adam_run<T: Float>(
    s: &Settings,
    decoupled: Option<bool>,
    moments: Option<(StateId, StateId)>,
    name: &str,
    up: Update<'_, T>,
    state: &mut OptimizerState<T>,
    cx: &Ctx,
) -> Result<()> {
    let (m_id, v_id) =
        moments.ok_or_else(|| Error::config("optimizer", format!("stage \"{name}\" run before prepare")))?;
    check_update(&up, state, name)?;
    state.step += 1;
    let t = state.step as i32;
    let lr = s.lr * up.lr_factor;
    let bias1 = 1.0 - s.beta1.powi(t);
    let bias2_sqrt = (1.0 - s.beta2.powi(t)).sqrt();
    let c = |x: f64| T::from_f64(x);
    let l2 = if decoupled.is_some() { 0.0 } else { s.weight_decay };
    let step = AdamStep {
        b1: c(s.beta1),
        b2: c(s.beta2),
        one: c(1.0),
        step_size: c(lr / bias1),
        inv_bias2_sqrt: c(1.0 / bias2_sqrt),
        eps: c(s.eps),
        wd: c(l2),
        decay: c(1.0 - lr * s.weight_decay),
    };
    let [m, v] = state.get_disjoint_mut([m_id, v_id]);
    let (layout, p) = up.params.layout_and_mut_slice();
    let arenas = (p, up.grads.as_slice(), m.as_mut_slice(), v.as_mut_slice());
    match decoupled {
        None => {
            for_each_trainable_run(layout, |_| (), cx.par, arenas, |(), p, g, m, v| step.apply(p, g, m, v))
        }
        Some(decay_all) => {
            // PyTorch decays a tensor only if its weight decay is non-zero: a decay of 0 leaves it.
            let decayed = |e: &ParamEntry| s.weight_decay != 0.0 && (decay_all || e.shape.len() >= 2);
            for_each_trainable_run(layout, decayed, cx.par, arenas, |d, p, g, m, v| {
                step.apply_decoupled(p, g, m, v, d)
            })
        }
    }
    Ok(())
}

impl<T: Float> Adam<T> {
    fn settings(&self) -> Settings {
        Settings {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

impl<T: Float> AdamW<T> {
    fn settings(&self) -> Settings {
        Settings {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

impl<T: Float> Stage for Adam<T> {
    type Input<'a> = Update<'a, T>;
    type Output = OptimizerState<T>;

    fn name(&self) -> &str {
        "adam"
    }

    /// Checks the settings and declares `exp_avg` and `exp_avg_sq`.
    fn prepare(&mut self, dims: &Dims, state: &mut OptimizerState<T>) -> Result<()> {
        self.moments = Some(prepare_moments(&self.settings(), dims, state)?);
        Ok(())
    }

    /// One step over the trainable runs of the arena; allocates nothing.
    fn run(&self, up: Update<'_, T>, state: &mut OptimizerState<T>, cx: &Ctx) -> Result<()> {
        adam_run(&self.settings(), None, self.moments, "adam", up, state, cx)
    }
}

impl<T: Float> Stage for AdamW<T> {
    type Input<'a> = Update<'a, T>;
    type Output = OptimizerState<T>;

    fn name(&self) -> &str {
        "adamw"
    }

    /// Checks the settings and declares `exp_avg` and `exp_avg_sq`.
    fn prepare(&mut self, dims: &Dims, state: &mut OptimizerState<T>) -> Result<()> {
        self.moments = Some(prepare_moments(&self.settings(), dims, state)?);
        Ok(())
    }

    /// One step over the trainable runs of the arena; allocates nothing.
    fn run(&self, up: Update<'_, T>, state: &mut OptimizerState<T>, cx: &Ctx) -> Result<()> {
        adam_run(&self.settings(), Some(self.decay_all), self.moments, "adamw", up, state, cx)
    }
}
