//! The update box: parameters and their gradients in, updated parameters out.
//!
//! # Brief overview
//! - [`Optimizer`]: the box's contract, a [`Stage`] reading [`Update`] (params to change, grads to
//!   follow) and keeping its state in an [`OptimizerState`] the caller owns (and checkpoints):
//!   the named buffers the optimizer declared in `prepare` (none for plain SGD, two for Adam).
//! - [`Adam`] (`kind = "adam"`): PyTorch's `torch.optim.Adam` (β 0.9/0.999, ε 1e-8, bias
//!   correction, no weight decay by default), one fused pass over the flat arena.
//! - [`OptimizerConfig`] / [`OptimizerImpl`]: the config-file face and the run-time enum.

use rayon::prelude::*;
use stagewise_core::{Ctx, Dims, Error, Float, Grads, Moments, Par, ParamLayout, Params, Result, Stage};
use stagewise_kernels::tuning::OPTIMIZER_CHUNK;

/// What an optimizer reads: the parameters to update in place and their gradients.
#[derive(Debug)]
pub struct Update<'a, T: Float> {
    /// Updated in place.
    pub params: &'a mut Params<T>,
    /// Gradients of the loss, same layout.
    pub grads: &'a Grads<T>,
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

/// Adam as PyTorch implements it (`_single_tensor_adam`, non-capturable):
/// `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
/// `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)`; with `weight_decay`, `g ← g + wd·p` first.
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

/// Adam's settings in range, or a config error naming the first that is not: a positive finite
/// learning rate, betas in `[0, 1)`, a positive `eps`, a non-negative weight decay.
fn check_adam_settings(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Result<()> {
    for (field, value, ok) in [
        ("optimizer.lr", lr, lr > 0.0 && lr.is_finite()),
        ("optimizer.beta1", beta1, (0.0..1.0).contains(&beta1)),
        ("optimizer.beta2", beta2, (0.0..1.0).contains(&beta2)),
        ("optimizer.eps", eps, eps > 0.0 && eps.is_finite()),
        ("optimizer.weight_decay", weight_decay, weight_decay >= 0.0 && weight_decay.is_finite()),
    ] {
        if !ok {
            return Err(Error::config(field, format!("{value} is out of range")));
        }
    }
    Ok(())
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
    wd: T,
}

impl<T: Float> AdamStep<T> {
    /// The fused update of one contiguous run of the arena.
    fn apply(&self, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
        let AdamStep { b1, b2, one, step_size, inv_bias2_sqrt, eps, wd } = *self;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g + wd * *p;
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            let denom = v.sqrt() * inv_bias2_sqrt + eps;
            *p -= step_size * *m / denom;
        }
    }
}

impl<T: Float> Stage for Adam<T> {
    type Input<'a> = Update<'a, T>;
    type Output = OptimizerState<T>;

    fn name(&self) -> &str {
        "adam"
    }

    fn prepare(&mut self, dims: &Dims, state: &mut OptimizerState<T>) -> Result<()> {
        check_adam_settings(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)?;
        if state.layout().total() != dims.params {
            return Err(Error::shape("optimizer state layout", dims.params, state.layout().total()));
        }
        self.moments = Some((state.declare("exp_avg")?, state.declare("exp_avg_sq")?));
        Ok(())
    }

    fn run(&self, up: Update<'_, T>, state: &mut OptimizerState<T>, cx: &Ctx) -> Result<()> {
        let (m_id, v_id) =
            self.moments.ok_or_else(|| Error::config("optimizer", "stage \"adam\" run before prepare"))?;
        let n = up.params.as_slice().len();
        if up.grads.as_slice().len() != n || state.layout().total() != n {
            return Err(Error::shape("adam arenas", n, (up.grads.as_slice().len(), state.layout().total())));
        }
        state.step += 1;
        let t = state.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let c = |x: f64| T::from_f64(x);
        let (b1, b2, one) = (c(self.beta1), c(self.beta2), c(1.0));
        let (step_size, inv_bias2_sqrt, eps, wd) =
            (c(self.lr / bias1), c(1.0 / bias2_sqrt), c(self.eps), c(self.weight_decay));
        let step = AdamStep { b1, b2, one, step_size, inv_bias2_sqrt, eps, wd };
        let (p, g) = (up.params.as_mut_slice(), up.grads.as_slice());
        let [m, v] = state.get_disjoint_mut([m_id, v_id]);
        let (m, v) = (m.as_mut_slice(), v.as_mut_slice());
        match cx.par {
            Par::Seq => step.apply(p, g, m, v),
            Par::Rayon(_) => p
                .par_chunks_mut(OPTIMIZER_CHUNK)
                .zip(g.par_chunks(OPTIMIZER_CHUNK))
                .zip(m.par_chunks_mut(OPTIMIZER_CHUNK))
                .zip(v.par_chunks_mut(OPTIMIZER_CHUNK))
                .for_each(|(((p, g), m), v)| step.apply(p, g, m, v)),
        }
        Ok(())
    }
}

/// The update box as a config-file table: `[optimizer] kind = "adam"  lr = 1e-3`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
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
        /// L2 penalty (PyTorch `weight_decay`).
        #[serde(default)]
        weight_decay: f64,
    },
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
                OptimizerImpl::Adam(Adam { beta1, beta2, eps, weight_decay, ..Adam::new(lr) })
            }
        }
    }

    /// Checks the settings without building the stage, so a bad config fails before the corpus
    /// is read.
    pub fn validate(&self) -> Result<()> {
        match *self {
            OptimizerConfig::Adam { lr, beta1, beta2, eps, weight_decay } => {
                check_adam_settings(lr, beta1, beta2, eps, weight_decay)
            }
        }
    }

    /// Overrides the learning rate (the `--lr` flag).
    pub fn set_lr(&mut self, value: f64) {
        match self {
            OptimizerConfig::Adam { lr, .. } => *lr = value,
        }
    }
}

/// Every built-in optimizer, chosen at run time; delegates to the variant.
#[derive(Clone, Debug)]
pub enum OptimizerImpl<T> {
    /// [`Adam`].
    Adam(Adam<T>),
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for OptimizerImpl<T> { Adam }
    input<'a> = Update<'a, T>; output = OptimizerState<T>;);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{ProptestConfig, prop, prop_assert, proptest};

    fn arenas(p: &[f64], g: &[f64]) -> (Params<f64>, Grads<f64>, OptimizerState<f64>) {
        let mut params = Params::new();
        let id = params.declare("w", &[p.len()]).unwrap();
        params.get_mut(id).copy_from_slice(p);
        let mut grads = Grads::zeros_with_layout(params.layout());
        grads.as_mut_slice().copy_from_slice(g);
        let state = OptimizerState::new(params.layout());
        (params, grads, state)
    }

    fn dims(params: usize) -> Dims {
        Dims { vocab: 2, batch: 1, seq_len: 1, params }
    }

    /// Adam at `lr`, prepared on `state` (which gets its two moments).
    fn prepared(lr: f64, state: &mut OptimizerState<f64>) -> Adam<f64> {
        let mut adam = Adam::new(lr);
        adam.prepare(&dims(state.layout().total()), state).unwrap();
        adam
    }

    #[test]
    fn matches_a_hand_computed_step() {
        // Step 1 with g = 0.5, p = 1, lr = 0.1:
        // m = 0.1 * 0.5 = 0.05; v = 0.001 * 0.25 = 0.00025;
        // m̂ = 0.05 / 0.1 = 0.5; v̂ = 0.00025 / 0.001 = 0.25; p = 1 − 0.1 * 0.5 / (0.5 + 1e-8) = 0.9 + 2e-9.
        // Step 2 with g = −1: m = 0.9*0.05 − 0.1 = −0.055; v = 0.999*0.00025 + 0.001 = 0.00124975;
        // m̂ = −0.055 / 0.19; v̂ = 0.00124975 / (1 − 0.999²) = 0.00124975 / 0.001999.
        let (mut p, g, mut s) = arenas(&[1.0], &[0.5]);
        let adam = prepared(0.1, &mut s);
        let names: Vec<&str> = s.buffers().map(|(name, _)| name).collect();
        assert_eq!(names, ["exp_avg", "exp_avg_sq"], "PyTorch's names for Adam's state");
        adam.run(Update { params: &mut p, grads: &g }, &mut s, &Ctx::seq()).unwrap();
        let p1 = 1.0 - 0.1 * 0.5 / (0.5 + 1e-8);
        assert!((p.as_slice()[0] - p1).abs() < 1e-15);
        let g2 = arenas(&[0.0], &[-1.0]).1;
        adam.run(Update { params: &mut p, grads: &g2 }, &mut s, &Ctx::seq()).unwrap();
        let (m_hat, v_hat): (f64, f64) = (-0.055 / 0.19, 0.00124975 / 0.001999);
        let p2 = p1 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((p.as_slice()[0] - p2).abs() < 1e-12, "{} vs {p2}", p.as_slice()[0]);
        assert_eq!(s.step, 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn first_step_moves_each_weight_by_about_lr_against_its_gradient(
            p in prop::collection::vec(-3.0f64..3.0, 1..50),
            g in prop::collection::vec(-3.0f64..3.0, 50),
        ) {
            let g = &g[..p.len()];
            let (mut params, grads, mut state) = arenas(&p, g);
            prepared(1e-3, &mut state).run(Update { params: &mut params, grads: &grads }, &mut state, &Ctx::seq()).unwrap();
            for ((new, old), g) in params.as_slice().iter().zip(&p).zip(g) {
                prop_assert!(new.is_finite());
                let expected = -1e-3 * g / (g.abs() + 1e-8);
                prop_assert!((new - old - expected).abs() < 1e-12);
            }
        }

        #[test]
        fn parallel_equals_sequential(p in prop::collection::vec(-3.0f64..3.0, 40_000), seed in 0u64..100) {
            let mut rng = stagewise_core::Rng::new(seed);
            let g: Vec<f64> = (0..p.len()).map(|_| rng.normal()).collect();
            let (mut pa, ga, mut sa) = arenas(&p, &g);
            let (mut pb, gb, mut sb) = arenas(&p, &g);
            let adam = prepared(1e-3, &mut sa);
            prepared(1e-3, &mut sb);
            for _ in 0..3 {
                adam.run(Update { params: &mut pa, grads: &ga }, &mut sa, &Ctx::seq()).unwrap();
                adam.run(Update { params: &mut pb, grads: &gb }, &mut sb, &Ctx { par: Par::rayon(2), ..Ctx::seq() }).unwrap();
            }
            prop_assert!(pa == pb && sa == sb);
        }
    }

    #[test]
    fn bad_hyperparameters_are_config_errors() {
        let (mut p, g, mut s) = arenas(&[1.0], &[1.0]);
        let err = Adam::<f64>::new(-1.0).prepare(&dims(1), &mut s).unwrap_err().to_string();
        assert!(err.contains("optimizer.lr"), "{err}");
        let err = Adam::<f64>::new(0.1).run(Update { params: &mut p, grads: &g }, &mut s, &Ctx::seq());
        assert!(err.unwrap_err().to_string().contains("before prepare"));
        let c: std::result::Result<OptimizerConfig, _> =
            serde_json::from_str(r#"{"kind":"adam","learning_rate":0.1}"#);
        assert!(c.is_err());
    }
}
