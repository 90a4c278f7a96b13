//! The update box: parameters and their gradients in, updated parameters out.
//!
//! # Brief overview
//! - [`Optimizer`]: the box's contract, a [`Stage`] reading [`Update`] (params to change, grads to
//!   follow, the learning-rate factor of this step) and keeping its state in an
//!   [`OptimizerState`] the caller owns (and checkpoints): the named buffers the optimizer
//!   declared in `prepare` (none for plain SGD, `momentum_buffer` with momentum, two for Adam).
//! - [`Adam`] (`kind = "adam"`): PyTorch's `torch.optim.Adam` (β 0.9/0.999, ε 1e-8, bias
//!   correction, L2 weight decay 0 by default).
//! - [`AdamW`] (`kind = "adamw"`): PyTorch's `torch.optim.AdamW` (decoupled weight decay 0.01,
//!   applied before the Adam step), optionally only to tensors of two or more dimensions.
//! - [`Sgd`] (`kind = "sgd"`): PyTorch's `torch.optim.SGD` (momentum, dampening, Nesterov, L2
//!   weight decay).
//! - Every optimizer leaves frozen tensors ([`ParamLayout::trainable`]) untouched and makes one
//!   fused pass over each contiguous run of trainable tensors, in fixed chunks on several threads.
//! - [`schedule`]: learning-rate schedules (constant, step, cosine, plateau, with linear warmup)
//!   that give the factor [`Update::lr_factor`] carries.
//! - [`OptimizerConfig`] / [`OptimizerImpl`]: the config-file face and the run-time enum.

use rayon::iter::Either;
use rayon::prelude::*;
use stagewise_core::{
    Dims, Error, Float, Grads, Moments, Par, ParamEntry, ParamLayout, Params, Result, Stage,
};
use stagewise_kernels::tuning::OPTIMIZER_CHUNK;

mod adam;
#[cfg(any(test, feature = "testkit"))]
pub mod laws;
pub mod schedule;
mod sgd;

pub use adam::{Adam, AdamW};
pub use sgd::Sgd;

/// What an optimizer reads: the parameters to update in place, their gradients, and this step's
/// learning-rate factor.
#[derive(Debug)]
pub struct Update<'a, T: Float> {
    /// Updated in place.
    pub params: &'a mut Params<T>,
    /// Gradients of the loss, same layout.
    pub grads: &'a Grads<T>,
    /// The schedule's factor on the optimizer's own learning rate for this step; 1.0 without a
    /// schedule. The optimizer steps with `lr · lr_factor` (what a PyTorch scheduler does by
    /// rewriting the group's `lr`), so its settings stay what the config says.
    pub lr_factor: f64,
}

/// A handle to one buffer of an [`OptimizerState`], returned by [`OptimizerState::declare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateId(usize);

/// An optimizer's state: the buffers it declared in `prepare`, each named (PyTorch's names:
/// `exp_avg`, `exp_avg_sq`, `momentum_buffer`) and laid out like the parameters, and the step
/// count. Owned by the caller like every stage's output, and saved in checkpoints by name.
///
/// Plain SGD declares nothing, momentum one buffer, Adam two.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<T> {
    layout: ParamLayout,
    names: Vec<String>,
    buffers: Vec<Moments<T>>,
    /// Updates applied so far.
    pub step: u64,
}

impl<T: Float> OptimizerState<T> {
    /// An empty state (no buffers, step 0) for parameters of `layout`.
    pub fn new(layout: &ParamLayout) -> Self {
        OptimizerState { layout: layout.clone(), names: Vec::new(), buffers: Vec::new(), step: 0 }
    }

    /// Adds a zeroed buffer named `name` in the parameters' layout. Allocates: call it from
    /// `prepare`. Fails on a name declared twice.
    pub fn declare(&mut self, name: &str) -> Result<StateId> {
        if self.names.iter().any(|n| n == name) {
            return Err(Error::config("optimizer", format!("state buffer `{name}` declared twice")));
        }
        self.buffers.push(Moments::try_zeros_with_layout(&self.layout)?);
        self.names.push(name.to_owned());
        Ok(StateId(self.buffers.len() - 1))
    }

    /// The parameters' layout the buffers follow.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// One buffer.
    pub fn get(&self, id: StateId) -> &Moments<T> {
        &self.buffers[id.0]
    }

    /// One buffer, writable.
    pub fn get_mut(&mut self, id: StateId) -> &mut Moments<T> {
        &mut self.buffers[id.0]
    }

    /// Several distinct buffers at once, writable (Adam updates both moments in one pass).
    ///
    /// # Panics
    /// If two ids are equal: a wiring bug in the optimizer, not a data error.
    pub fn get_disjoint_mut<const N: usize>(&mut self, ids: [StateId; N]) -> [&mut Moments<T>; N] {
        match self.buffers.get_disjoint_mut(ids.map(|s| s.0)) {
            Ok(b) => b,
            Err(e) => panic!("OptimizerState::get_disjoint_mut({ids:?}): {e}"),
        }
    }

    /// Finds a buffer by name.
    pub fn find(&self, name: &str) -> Option<StateId> {
        self.names.iter().position(|n| n == name).map(StateId)
    }

    /// Every buffer with its name, in declaration order (what a checkpoint saves).
    pub fn buffers(&self) -> impl Iterator<Item = (&str, &Moments<T>)> {
        self.names.iter().map(String::as_str).zip(&self.buffers)
    }
}

/// The update box's contract. A user type implementing it drops into the pipeline.
pub trait Optimizer<T: Float>: for<'a> Stage<Input<'a> = Update<'a, T>, Output = OptimizerState<T>> {}

impl<T: Float, S> Optimizer<T> for S where
    S: for<'a> Stage<Input<'a> = Update<'a, T>, Output = OptimizerState<T>>
{
}

/// Checks what every optimizer's `run` needs: arenas of one size and a usable learning-rate
/// factor. `name` names the optimizer in the error.
fn check_update<T: Float>(up: &Update<'_, T>, state: &OptimizerState<T>, name: &str) -> Result<()> {
    let n = up.params.as_slice().len();
    if up.grads.as_slice().len() != n || state.layout().total() != n {
        return Err(Error::shape(
            format!("{name} arenas (parameters; gradients, state)"),
            n,
            (up.grads.as_slice().len(), state.layout().total()),
        ));
    }
    if !(up.lr_factor >= 0.0 && up.lr_factor.is_finite()) {
        return Err(Error::data(
            format!("{name} update"),
            format!("lr_factor = {} is not a finite number >= 0", up.lr_factor),
        ));
    }
    Ok(())
}

/// Checks the state was made for the model's parameters (what every optimizer's `prepare` does).
fn check_state_layout<T: Float>(dims: &Dims, state: &OptimizerState<T>) -> Result<()> {
    if state.layout().total() != dims.params {
        return Err(Error::shape("optimizer state layout", dims.params, state.layout().total()));
    }
    Ok(())
}

/// `value` positive and finite, or a config error naming `field`.
fn check_positive(field: &str, value: f64) -> Result<()> {
    if !(value > 0.0 && value.is_finite()) {
        return Err(Error::config(field, format!("{value} is out of range (a finite number > 0)")));
    }
    Ok(())
}

/// `value` non-negative and finite, or a config error naming `field`.
fn check_non_negative(field: &str, value: f64) -> Result<()> {
    if !(value >= 0.0 && value.is_finite()) {
        return Err(Error::config(field, format!("{value} is out of range (a finite number >= 0)")));
    }
    Ok(())
}

/// Runs `apply` over every contiguous run of trainable tensors that share a key (see
/// [`ParamLayout::runs`]) with the run's slices of the parameter arena, the gradient arena and
/// two state buffers (an empty buffer, for an optimizer that keeps fewer, gives empty slices):
/// the whole run at once on one thread, in [`OPTIMIZER_CHUNK`]-element pieces on several. Each
/// element's update depends on that element alone, so the result is the same either way; frozen
/// tensors are never visited.
fn for_each_trainable_run<T, K, F>(
    layout: &ParamLayout,
    key: impl Fn(&ParamEntry) -> K,
    par: Par,
    (p, g, a, b): (&mut [T], &[T], &mut [T], &mut [T]),
    apply: F,
) where
    T: Float,
    K: PartialEq + Copy + Send + Sync,
    F: Fn(K, &mut [T], &[T], &mut [T], &mut [T]) + Sync,
{
    for (k, r) in layout.runs(|e| e.trainable.then(|| key(e))) {
        let state = |buf: &mut [T]| if buf.is_empty() { 0..0 } else { r.clone() };
        let (ra, rb) = (state(a), state(b));
        let (p, g, a, b) = (&mut p[r.clone()], &g[r.clone()], &mut a[ra], &mut b[rb]);
        match par {
            Par::Seq => apply(k, p, g, a, b),
            Par::Rayon(_) => {
                let pieces = p.len().div_ceil(OPTIMIZER_CHUNK);
                p.par_chunks_mut(OPTIMIZER_CHUNK)
                    .zip(g.par_chunks(OPTIMIZER_CHUNK))
                    .zip(state_pieces(a, pieces))
                    .zip(state_pieces(b, pieces))
                    .for_each(|(((p, g), a), b)| apply(k, p, g, a, b));
            }
        }
    }
}

/// A state buffer's slice of a run in [`OPTIMIZER_CHUNK`]-element pieces, or `pieces` empty
/// slices for a buffer the optimizer does not keep.
fn state_pieces<T: Float>(buf: &mut [T], pieces: usize) -> impl IndexedParallelIterator<Item = &mut [T]> {
    if buf.is_empty() {
        Either::Left((0..pieces).into_par_iter().map(|_| <&mut [T]>::default()))
    } else {
        Either::Right(buf.par_chunks_mut(OPTIMIZER_CHUNK))
    }
}

fn default_lr() -> f64 {
    1e-3
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_adamw_weight_decay() -> f64 {
    0.01
}
fn default_true() -> bool {
    true
}

/// The update box as a config-file table: `[optimizer] kind = "adam"  lr = 1e-3`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// PyTorch's `torch.optim.Adam`; `weight_decay` is an L2 term added to the gradient.
    ///
    /// [`Adam`].
    Adam {
        /// Learning rate (seed: 1e-3).
        #[serde(default = "default_lr")]
        lr: f64,
        /// First-moment decay.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Second-moment decay.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Denominator guard.
        #[serde(default = "default_eps")]
        eps: f64,
        /// L2 penalty added to the gradient (PyTorch `weight_decay`; default 0).
        #[serde(default)]
        weight_decay: f64,
    },
    /// PyTorch's `torch.optim.AdamW`: Adam with weight decay decoupled from the gradient.
    ///
    /// [`AdamW`].
    #[serde(rename = "adamw")]
    AdamW {
        /// Learning rate.
        #[serde(default = "default_lr")]
        lr: f64,
        /// First-moment decay.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Second-moment decay.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Denominator guard.
        #[serde(default = "default_eps")]
        eps: f64,
        /// Decoupled weight decay `p ← p·(1 − lr·wd)` before the Adam step (default 0.01).
        #[serde(default = "default_adamw_weight_decay")]
        weight_decay: f64,
        /// `true` (default, PyTorch's): decay every tensor; `false`: only tensors of two or more
        /// dimensions (nanoGPT's rule: no decay on biases and other vectors).
        #[serde(default = "default_true")]
        decay_all: bool,
    },
    /// PyTorch's `torch.optim.SGD`, with optional momentum, Nesterov, dampening and L2 decay.
    ///
    /// [`Sgd`].
    Sgd {
        /// Learning rate.
        #[serde(default = "default_lr")]
        lr: f64,
        /// Momentum μ (0: none, no state).
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum (needs momentum > 0 and dampening 0).
        #[serde(default)]
        nesterov: bool,
        /// L2 penalty added to the gradient.
        #[serde(default)]
        weight_decay: f64,
        /// Dampening of the gradient's share in the momentum buffer, in `[0, 1]`.
        #[serde(default)]
        dampening: f64,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam {
            lr: default_lr(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: 0.0,
        }
    }
}

impl OptimizerConfig {
    /// Builds the stage.
    pub fn build<T: Float>(&self) -> OptimizerImpl<T> {
        match *self {
            OptimizerConfig::Adam { lr, beta1, beta2, eps, weight_decay } => {
                let mut adam = Adam::new(lr);
                (adam.beta1, adam.beta2, adam.eps, adam.weight_decay) = (beta1, beta2, eps, weight_decay);
                OptimizerImpl::Adam(adam)
            }
            OptimizerConfig::AdamW { lr, beta1, beta2, eps, weight_decay, decay_all } => {
                let mut adamw = AdamW::new(lr);
                (adamw.beta1, adamw.beta2, adamw.eps) = (beta1, beta2, eps);
                (adamw.weight_decay, adamw.decay_all) = (weight_decay, decay_all);
                OptimizerImpl::AdamW(adamw)
            }
            OptimizerConfig::Sgd { lr, momentum, nesterov, weight_decay, dampening } => {
                let mut sgd = Sgd::new(lr);
                (sgd.momentum, sgd.nesterov, sgd.weight_decay, sgd.dampening) =
                    (momentum, nesterov, weight_decay, dampening);
                OptimizerImpl::Sgd(sgd)
            }
        }
    }

    /// Checks the settings without building the stage, so a bad config fails before the corpus
    /// is read; the error names the field.
    pub fn validate(&self) -> Result<()> {
        match *self {
            OptimizerConfig::Adam { lr, beta1, beta2, eps, weight_decay }
            | OptimizerConfig::AdamW { lr, beta1, beta2, eps, weight_decay, .. } => {
                adam::check_settings(lr, beta1, beta2, eps, weight_decay)
            }
            OptimizerConfig::Sgd { lr, momentum, nesterov, weight_decay, dampening } => {
                sgd::check_settings(lr, momentum, nesterov, weight_decay, dampening)
            }
        }
    }

    /// The learning rate (what a schedule scales).
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::AdamW { lr, .. }
            | OptimizerConfig::Sgd { lr, .. } => lr,
        }
    }

    /// How many state buffers in the parameters' layout the optimizer will declare (Adam and
    /// AdamW 2, SGD with momentum 1, plain SGD 0): what a memory estimate counts.
    pub fn state_buffers(&self) -> usize {
        match *self {
            OptimizerConfig::Adam { .. } | OptimizerConfig::AdamW { .. } => 2,
            OptimizerConfig::Sgd { momentum, .. } => usize::from(momentum > 0.0),
        }
    }

    /// Overrides the learning rate (the `--lr` flag).
    pub fn set_lr(&mut self, value: f64) {
        match self {
            OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::AdamW { lr, .. }
            | OptimizerConfig::Sgd { lr, .. } => *lr = value,
        }
    }
}

/// Every built-in optimizer, chosen at run time; delegates to the variant.
#[derive(Clone, Debug)]
pub enum OptimizerImpl<T> {
    /// [`Adam`].
    Adam(Adam<T>),
    /// [`AdamW`].
    AdamW(AdamW<T>),
    /// [`Sgd`].
    Sgd(Sgd<T>),
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for OptimizerImpl<T> { Adam, AdamW, Sgd }
    input<'a> = Update<'a, T>; output = OptimizerState<T>;);

#[cfg(test)]
mod tests;
