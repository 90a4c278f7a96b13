//! The backward box: the gradient of the loss with respect to the logits in, parameter gradients
//! out.
//!
//! # Brief overview
//! - [`Backward`]: the box's contract, a [`Stage`] that starts from the gradient the loss left in
//!   a slot of the tape (the seed, named by its [`SlotId`]) and fills [`Tape::grads`].
//! - [`ReverseSweep`] (`kind = "reverse"`): runs [`reverse_sweep`], which zeroes the gradients
//!   once and calls every op's VJP in reverse order. Inside a window this is full
//!   back-propagation through time; the recurrent state entering the window is detached.
//! - [`NumericSweep`] (`kind = "numeric"`): the same gradient by central differences of the
//!   forward pass, one parameter at a time: slow, independent of every VJP, for checking a model
//!   end to end (refused above [`NUMERIC_MAX_PARAMS`] parameters).
//! - [`GradClip`]: both kinds measure the global gradient norm into [`Tape::grad_norm`] and, with
//!   `clip > 0`, clip it as PyTorch's `clip_grad_norm_(max_norm = clip)` does.
//! - [`BackwardConfig`] / [`BackwardImpl`]: the config-file face and the run-time enum.
//! - `laws` (feature `testkit`): the box's laws as a check any implementation can be run through.
//!
//! This crate never depends on the forward crate: it sees ops only through core's [`Op`](stagewise_core::Op).

use rayon::prelude::*;
#[cfg(any(test, feature = "testkit"))]
pub mod laws;

use stagewise_core::{Ctx, Dims, Error, Float, Par, ParamLayout, Result, SlotId, Stage, Tape};
use std::ops::Range;
use std::sync::Mutex;

/// The backward box's contract: the seed slot in (its `grad` holds the gradient of the loss with
/// respect to its `value`, written by the loss box: `dlogits`), the tape's parameter gradients
/// out. Ops accumulate into [`Tape::grads`], so a backward stage zeroes them first.
///
/// A backward stage may also record the gradient norm it measured in [`Tape::grad_norm`] (the
/// built-ins do); [`reverse_sweep`] resets it to `None`.
pub trait Backward<T: Float>: for<'a> Stage<Input<'a> = SlotId, Output = Tape<T>> {}

impl<T: Float, S> Backward<T> for S where S: for<'a> Stage<Input<'a> = SlotId, Output = Tape<T>> {}

/// The exact reverse sweep over the tape, then the gradient norm measured (and clipped).
#[derive(Clone, Debug, Default)]
pub struct ReverseSweep<T> {
    /// Measures the gradient norm and, if its `max_norm` is positive, clips it.
    pub clip: GradClip,
    _float: std::marker::PhantomData<T>,
}

impl<T> ReverseSweep<T> {
    /// The sweep without clipping (it still measures the gradient norm).
    pub fn new() -> Self {
        Self::clipped(0.0)
    }

    /// The sweep, then the global gradient norm clipped to `max_norm` (0: no clipping).
    pub fn clipped(max_norm: f64) -> Self {
        ReverseSweep { clip: GradClip::new(max_norm), _float: std::marker::PhantomData }
    }
}

/// Refuses a tape with no ops (the embed and forward stages were not prepared).
fn check_tape_has_ops<T: Float>(tape: &Tape<T>) -> Result<()> {
    if tape.output().is_none() || tape.ops().is_empty() {
        return Err(Error::config(
            "backward",
            "the tape has no ops: prepare the embed and forward stages first",
        ));
    }
    Ok(())
}

impl<T: Float> Stage for ReverseSweep<T> {
    type Input<'a> = SlotId;
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "reverse"
    }

    fn prepare(&mut self, _dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        check_tape_has_ops(tape)?;
        self.clip.prepare(tape.params.layout())
    }

    fn run(&self, seed: SlotId, tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        reverse_sweep(seed, tape, cx.par)?;
        self.clip.apply(tape, cx.par);
        Ok(())
    }
}

/// The exact reverse sweep from the gradient in `seed`'s slot: zeroes the parameter gradients
/// once, then calls every op's vector–Jacobian product in reverse order (ops accumulate into
/// [`Tape::grads`]). What [`ReverseSweep`] runs; a backward box of your own (one that clips the
/// gradients afterwards, say) can run it too. Resets [`Tape::grad_norm`] to `None`: the norm of
/// the previous gradients no longer applies.
///
/// Fails if the seed slot has no gradient buffer of its value's length.
pub fn reverse_sweep<T: Float>(seed: SlotId, tape: &mut Tape<T>, par: Par) -> Result<()> {
    check_seed(seed, tape)?;
    tape.grad_norm = None;
    tape.grads.fill_zero_par(par);
    tape.backward_all(par);
    Ok(())
}

/// Refuses a seed slot without a gradient buffer of its value's length.
fn check_seed<T: Float>(seed: SlotId, tape: &Tape<T>) -> Result<()> {
    let slot = tape.acts.slot(seed);
    if slot.grad.len() != slot.value.len() {
        return Err(Error::shape(
            format!("backward seed {} (gradient buffer)", slot.name),
            slot.value.len(),
            slot.grad.len(),
        ));
    }
    Ok(())
}

/// The largest model [`NumericSweep`] accepts: it runs the whole forward pass twice per
/// parameter, so 20,000 parameters already cost 40,000 forward passes per step.
pub const NUMERIC_MAX_PARAMS: usize = 20_000;

/// The gradient by central differences of the forward pass, one parameter at a time.
///
/// With only the tape and the seed slot at hand, the loss's own function is not available, but
/// its gradient with respect to the seed's value is (the seed's `grad`, `w`). By the chain rule
/// the parameter gradient is the gradient of `⟨w, output(θ)⟩`, which this stage differentiates
/// numerically: for each parameter `θᵢ`, `(⟨w, out(θ + hᵢ)⟩ − ⟨w, out(θ − hᵢ)⟩) / 2hᵢ`, each
/// forward pass replaying the whole tape ([`Tape::forward_range`]), each inner product summed in
/// `f64` in index order. The step is `hᵢ = ∛ε_T · max(1, |θᵢ|)` (`ε_T` the type's machine epsilon,
/// the step that balances truncation and round-off), and the quotient divides by the steps as
/// actually represented in `T`. In `f64` it agrees with [`ReverseSweep`] to about 1e-10 of the
/// largest gradient on a small LSTM (the test asks for 1e-6); in `f32` the step is about 5e-3 and
/// the agreement only coarse.
///
/// Afterwards every parameter holds exactly its original value and the forward pass is run once
/// more at those values, so the activations (and the recurrent state `end_window` carries on) are
/// what a plain forward pass leaves. Then the norm is measured and clipped like [`ReverseSweep`].
/// Independent of the thread count: the forward pass is, and the parameters are visited in
/// order. Refuses a model of more than [`NUMERIC_MAX_PARAMS`] parameters.
#[derive(Clone, Debug, Default)]
pub struct NumericSweep<T> {
    /// Measures the gradient norm and, if its `max_norm` is positive, clips it.
    pub clip: GradClip,
    _float: std::marker::PhantomData<T>,
}

impl<T> NumericSweep<T> {
    /// Central differences, then the global gradient norm clipped to `max_norm` (0: none).
    pub fn clipped(max_norm: f64) -> Self {
        NumericSweep { clip: GradClip::new(max_norm), _float: std::marker::PhantomData }
    }
}

/// Refuses a model too large for central differences, naming its size and the limit.
fn check_numeric_size(params: usize) -> Result<()> {
    if params > NUMERIC_MAX_PARAMS {
        return Err(Error::config(
            "backward.kind",
            format!(
                "\"numeric\" runs the forward pass twice per parameter: the model has {params} \
                 parameters, more than the limit of {NUMERIC_MAX_PARAMS} (use \"reverse\")"
            ),
        ));
    }
    Ok(())
}

/// The gap between 1 and the next number of `T` (2⁻²³ for `f32`, 2⁻⁵² for `f64`).
fn machine_epsilon<T: Float>() -> f64 {
    let mut eps = 1.0f64;
    while T::from_f64(1.0 + eps / 2.0) != T::from_f64(1.0) {
        eps /= 2.0;
    }
    eps
}

/// `⟨seed.grad, seed.value⟩` over the current window after a forward pass of every op, summed in
/// `f64` in index order.
fn probe<T: Float>(seed: SlotId, tape: &mut Tape<T>, par: Par) -> f64 {
    let ops = tape.ops().len();
    tape.forward_range(0..ops, par);
    let slot = tape.acts.slot(seed);
    let n = if slot.width == 0 { slot.value.len() } else { tape.acts.rows() * slot.width };
    slot.value[..n].iter().zip(&slot.grad[..n]).map(|(&y, &w)| y.to_f64() * w.to_f64()).sum()
}

impl<T: Float> Stage for NumericSweep<T> {
    type Input<'a> = SlotId;
    type Output = Tape<T>;

    fn name(&self) -> &str {
        "numeric"
    }

    fn prepare(&mut self, _dims: &Dims, tape: &mut Tape<T>) -> Result<()> {
        check_tape_has_ops(tape)?;
        check_numeric_size(tape.params.layout().total())?;
        self.clip.prepare(tape.params.layout())
    }

    fn run(&self, seed: SlotId, tape: &mut Tape<T>, cx: &Ctx) -> Result<()> {
        let n = tape.params.layout().total();
        check_numeric_size(n)?;
        check_seed(seed, tape)?;
        if tape.grads.as_slice().len() != n {
            return Err(Error::shape("numeric backward gradients", n, tape.grads.as_slice().len()));
        }
        tape.grad_norm = None;
        let step_scale = machine_epsilon::<T>().cbrt();
        for i in 0..n {
            let original = tape.params.as_slice()[i];
            let h = step_scale * original.to_f64().abs().max(1.0);
            let plus = T::from_f64(original.to_f64() + h);
            let minus = T::from_f64(original.to_f64() - h);
            tape.params.as_mut_slice()[i] = plus;
            let up = probe(seed, tape, cx.par);
            tape.params.as_mut_slice()[i] = minus;
            let down = probe(seed, tape, cx.par);
            tape.params.as_mut_slice()[i] = original;
            let width = plus.to_f64() - minus.to_f64();
            tape.grads.as_mut_slice()[i] = T::from_f64((up - down) / width);
        }
        let ops = tape.ops().len();
        tape.forward_range(0..ops, cx.par);
        self.clip.apply(tape, cx.par);
        Ok(())
    }
}

/// Elements of one partial sum of squares in [`GradClip`]: part of the definition of the norm
/// (each tensor's sum of squares is the sum, in order, of its chunks' sums), so it is fixed,
/// never tuned, and the norm is the same at any thread count.
pub const NORM_CHUNK: usize = 1 << 14;

/// The global gradient norm, measured and clipped as PyTorch's
/// `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` does.
///
/// Over the trainable tensors (a frozen tensor, like a PyTorch parameter without a gradient, is
/// neither measured nor scaled): `total = ‖(‖g₁‖₂, …, ‖gₙ‖₂)‖₂`, then with `max_norm > 0` every
/// gradient is multiplied by `min(1, max_norm / (total + 1e-6))`. Computed in `f64`: each
/// tensor's sum of squares is the sum of its [`NORM_CHUNK`]-element chunks' sums in order (the
/// chunks summed in parallel into a buffer sized by [`GradClip::prepare`]), so the result is the
/// same at any thread count. `total` goes into [`Tape::grad_norm`] whether or not it clips.
#[derive(Debug, Default)]
pub struct GradClip {
    /// The largest global norm the gradients keep (PyTorch's `max_norm`); 0 measures only.
    pub max_norm: f64,
    /// The layout `prepare` saw (names, shapes, offsets).
    layout: ParamLayout,
    /// Every chunk of that layout: its tensor's index and its arena range.
    chunks: Vec<(usize, Range<usize>)>,
    /// One partial sum of squares per chunk (locked only for the moment of a measurement).
    partials: Mutex<Vec<f64>>,
}

impl Clone for GradClip {
    fn clone(&self) -> Self {
        let partials = self.partials.lock().map(|p| p.clone()).unwrap_or_default();
        GradClip {
            max_norm: self.max_norm,
            layout: self.layout.clone(),
            chunks: self.chunks.clone(),
            partials: Mutex::new(partials),
        }
    }
}

impl GradClip {
    /// Clipping to `max_norm` (0: measure only); [`GradClip::prepare`] it before use.
    pub fn new(max_norm: f64) -> Self {
        GradClip { max_norm, ..Default::default() }
    }

    /// Checks `max_norm` and sizes the per-chunk buffer for `layout` (the only allocation).
    pub fn prepare(&mut self, layout: &ParamLayout) -> Result<()> {
        check_clip(self.max_norm)?;
        self.chunks.clear();
        for (t, e) in layout.entries().iter().enumerate() {
            let end = e.offset + e.len();
            self.chunks
                .extend((e.offset..end).step_by(NORM_CHUNK).map(|s| (t, s..(s + NORM_CHUNK).min(end))));
        }
        self.partials = Mutex::new(vec![0.0; self.chunks.len()]);
        self.layout = layout.clone();
        Ok(())
    }

    /// Measures the global norm of `tape.grads` (recorded in [`Tape::grad_norm`] and returned)
    /// and, with a positive `max_norm`, scales the trainable gradients down to it. Allocates
    /// nothing. Without a matching `prepare` the sums run on one thread (same result).
    pub fn apply<T: Float>(&self, tape: &mut Tape<T>, par: Par) -> f64 {
        let total = self.measure(tape, par);
        tape.grad_norm = Some(total);
        let coef = self.max_norm / (total + 1e-6);
        if self.max_norm > 0.0 && coef < 1.0 {
            let coef = T::from_f64(coef);
            let layout = tape.params.layout();
            let grads = tape.grads.as_mut_slice();
            for run in layout.trainable_runs() {
                let scale = |g: &mut [T]| g.iter_mut().for_each(|g| *g *= coef);
                match par {
                    Par::Seq => scale(&mut grads[run]),
                    Par::Rayon(_) => grads[run].par_chunks_mut(NORM_CHUNK).for_each(scale),
                }
            }
        }
        total
    }

    /// `‖(‖g₁‖₂, …, ‖gₙ‖₂)‖₂` over the trainable tensors.
    fn measure<T: Float>(&self, tape: &Tape<T>, par: Par) -> f64 {
        let layout = tape.params.layout();
        let g = tape.grads.as_slice();
        let trainable = |t: usize| layout.entries()[t].trainable;
        let mut partials = match par {
            Par::Rayon(_) if &self.layout == layout && g.len() == layout.total() => self.partials.lock().ok(),
            _ => None,
        };
        if let Some(partials) = partials.as_deref_mut() {
            self.chunks.par_iter().zip(partials.par_iter_mut()).for_each(|((t, r), out)| {
                *out = if trainable(*t) { sum_of_squares(&g[r.clone()]) } else { 0.0 };
            });
        }
        let mut total_sq = 0.0;
        for (t, e) in layout.entries().iter().enumerate() {
            if !e.trainable {
                continue;
            }
            let mut tensor_sq = 0.0;
            match partials.as_deref() {
                Some(p) => {
                    let first = self.chunks.partition_point(|(c, _)| *c < t);
                    let count = e.len().div_ceil(NORM_CHUNK);
                    for &s in &p[first..first + count] {
                        tensor_sq += s;
                    }
                }
                None => {
                    for chunk in g[e.offset..e.offset + e.len()].chunks(NORM_CHUNK) {
                        tensor_sq += sum_of_squares(chunk);
                    }
                }
            }
            let norm = tensor_sq.sqrt();
            total_sq += norm * norm;
        }
        total_sq.sqrt()
    }
}

/// `Σ g²` of one chunk in `f64`, over four lanes in a fixed order.
fn sum_of_squares<T: Float>(g: &[T]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = g.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            let v = c[l].to_f64();
            lanes[l] += v * v;
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        lanes[l] += v.to_f64() * v.to_f64();
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// `clip` finite and non-negative, or a config error naming the field.
fn check_clip(clip: f64) -> Result<()> {
    if !(clip >= 0.0 && clip.is_finite()) {
        return Err(Error::config(
            "backward.clip",
            format!("{clip} is not a finite number >= 0 (0 = no clipping)"),
        ));
    }
    Ok(())
}

/// The backward box as a config-file table: `[backward] kind = "reverse"  clip = 0.25`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackwardConfig {
    /// Back-propagation: one reverse sweep of the tape, each op's exact VJP (PyTorch's autograd).
    ///
    /// [`ReverseSweep`].
    Reverse {
        /// PyTorch's `clip_grad_norm_(max_norm = clip)` after the sweep; 0 (the default): none.
        #[serde(default)]
        clip: f64,
    },
    /// Central finite differences through forward and loss, for checking small models.
    ///
    /// [`NumericSweep`].
    Numeric {
        /// As for `reverse`.
        #[serde(default)]
        clip: f64,
    },
}

impl Default for BackwardConfig {
    fn default() -> Self {
        BackwardConfig::Reverse { clip: 0.0 }
    }
}

impl BackwardConfig {
    /// Builds the stage.
    pub fn build<T: Float>(&self) -> BackwardImpl<T> {
        match *self {
            BackwardConfig::Reverse { clip } => BackwardImpl::Reverse(ReverseSweep::clipped(clip)),
            BackwardConfig::Numeric { clip } => BackwardImpl::Numeric(NumericSweep::clipped(clip)),
        }
    }

    /// Checks the settings without building the stage, so a bad config fails before the corpus
    /// is read; the error names the field.
    pub fn validate(&self) -> Result<()> {
        match *self {
            BackwardConfig::Reverse { clip } | BackwardConfig::Numeric { clip } => check_clip(clip),
        }
    }

    /// The global norm the gradients are clipped to (0: none), for a caller that needs the
    /// gradient before clipping too (the PyTorch parity check compares it).
    pub fn clip(&self) -> f64 {
        match *self {
            BackwardConfig::Reverse { clip } | BackwardConfig::Numeric { clip } => clip,
        }
    }
}

/// Every built-in backward stage, chosen at run time; delegates to the variant.
#[derive(Clone, Debug)]
pub enum BackwardImpl<T> {
    /// [`ReverseSweep`].
    Reverse(ReverseSweep<T>),
    /// [`NumericSweep`].
    Numeric(NumericSweep<T>),
}

stagewise_core::delegate_stage!(impl[T: Float] Stage for BackwardImpl<T> { Reverse, Numeric }
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
            assert_eq!(tape.grad_norm, Some((81.0f64 + 36.0).sqrt()));
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
        assert_eq!(c, BackwardConfig::Reverse { clip: 0.0 });
        assert!(serde_json::from_str::<BackwardConfig>(r#"{"kind":"reverse","x":1}"#).is_err());
        let c: BackwardConfig = toml::from_str("kind = \"numeric\"\nclip = 0.25\n").unwrap();
        assert_eq!(c, BackwardConfig::Numeric { clip: 0.25 });
        assert_eq!(c.build::<f64>().name(), "numeric");
        for bad in [-1.0, f64::INFINITY, f64::NAN] {
            let err = BackwardConfig::Reverse { clip: bad }.validate().unwrap_err().to_string();
            assert!(err.contains("backward.clip"), "{err}");
        }
    }

    /// A tape with hand-set gradients: `w1` `[2, 3]`, `b1` `[4]` (frozen), `w2` `[5]`.
    fn clip_example() -> Tape<f64> {
        let mut tape = Tape::<f64>::new(1, 1);
        tape.params.declare("w1", &[2, 3]).unwrap();
        let b1 = tape.params.declare("b1", &[4]).unwrap();
        tape.params.declare("w2", &[5]).unwrap();
        tape.params.set_trainable(b1, false);
        tape.finish();
        tape.grads.as_mut_slice().copy_from_slice(&[
            0.5, -1.25, 2.0, 0.75, 0.0, -0.375, // w1
            9.0, 9.0, 9.0, 9.0, // b1: frozen, neither measured nor scaled
            1.5, -0.5, 0.25, -2.25, 1.0, // w2
        ]);
        tape
    }

    /// `torch.nn.utils.clip_grad_norm_([w1, b1, w2], max_norm)` in float64, torch 2.15, with the
    /// gradients of [`clip_example`] (`b1` has `requires_grad=False`).
    #[test]
    fn clip_matches_pytorch_clip_grad_norm() {
        let total = 3.891095604068345;
        let clipped = [
            0.06424924010845989,
            -0.16062310027114973,
            0.25699696043383957,
            0.09637386016268984,
            0.0,
            -0.04818693008134492,
            9.0,
            9.0,
            9.0,
            9.0,
            0.19274772032537968,
            -0.06424924010845989,
            0.032124620054229946,
            -0.2891215804880695,
            0.12849848021691979,
        ];
        for par in [Par::Seq, Par::rayon(2)] {
            let mut tape = clip_example();
            let before = tape.grads.as_slice().to_vec();
            let mut clip = GradClip::new(0.5);
            clip.prepare(tape.params.layout()).unwrap();
            let measured = clip.apply(&mut tape, par);
            assert!((measured - total).abs() < 1e-15, "{measured}");
            assert_eq!(tape.grad_norm, Some(measured));
            for (k, (a, b)) in tape.grads.as_slice().iter().zip(&clipped).enumerate() {
                assert!((a - b).abs() < 1e-16, "element {k}: {a} vs {b}");
            }
            // Above the norm nothing changes; 0 only measures.
            for max_norm in [10.0, 0.0] {
                let mut tape = clip_example();
                let mut clip = GradClip::new(max_norm);
                clip.prepare(tape.params.layout()).unwrap();
                assert_eq!(clip.apply(&mut tape, par), measured);
                assert_eq!(tape.grads.as_slice(), &before[..]);
            }
        }
    }

    #[test]
    fn the_norm_is_the_same_at_any_thread_count_and_without_prepare() {
        let mut tape = Tape::<f32>::new(1, 1);
        for (name, len) in
            [("a", 3 * NORM_CHUNK + 17), ("b", 5), ("c", NORM_CHUNK), ("d", 2 * NORM_CHUNK - 1)]
        {
            tape.params.declare(name, &[len]).unwrap();
        }
        tape.finish();
        let mut rng = stagewise_core::Rng::new(7);
        for g in tape.grads.as_mut_slice() {
            *g = rng.normal() as f32;
        }
        let start = tape.grads.clone();
        let exact = start.as_slice().iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>().sqrt();
        let mut results = Vec::new();
        for (par, prepared) in
            [(Par::Seq, true), (Par::rayon(2), true), (Par::rayon(3), true), (Par::rayon(2), false)]
        {
            tape.grads = start.clone();
            let mut clip = GradClip::new(1.0);
            if prepared {
                clip.prepare(tape.params.layout()).unwrap();
            }
            let norm = clip.apply(&mut tape, par);
            assert!((norm - exact).abs() < 1e-12 * exact, "{norm} vs {exact}");
            results.push((norm.to_bits(), tape.grads.clone()));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "bit-identical at every thread count");
        let clipped =
            results[0].1.as_slice().iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>().sqrt();
        assert!((clipped - 1.0).abs() < 1e-5, "{clipped}");
    }

    #[test]
    fn a_model_too_large_for_central_differences_is_refused_naming_its_size() {
        let mut tape = Tape::<f64>::new(2, 1);
        let a = tape.params.declare("a", &[NUMERIC_MAX_PARAMS + 1]).unwrap();
        let x = tape.acts.declare_rows("x", 1, true).unwrap();
        let y = tape.acts.declare_rows("y", 1, true).unwrap();
        tape.push(Box::new(Scale { a, x, y }));
        tape.set_output(y);
        tape.finish();
        let dims = Dims { vocab: 2, batch: 2, seq_len: 1, params: NUMERIC_MAX_PARAMS + 1 };
        let err = BackwardConfig::Numeric { clip: 0.0 }.build::<f64>().prepare(&dims, &mut tape).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("backward.kind") && err.contains("20001") && err.contains("20000"), "{err}");
    }
}

#[cfg(test)]
mod law_tests {
    use super::*;

    #[test]
    fn the_built_ins_keep_the_laws() {
        laws::check(ReverseSweep::<f64>::new).unwrap();
        laws::check(|| ReverseSweep::<f64>::clipped(0.01)).unwrap();
        laws::check(|| NumericSweep::<f64>::clipped(0.0)).unwrap();
        laws::check(|| NumericSweep::<f64>::clipped(0.5)).unwrap();
    }

    /// A sweep that forgets to zero the gradients first: the kit must catch it.
    struct Accumulating;

    impl Stage for Accumulating {
        type Input<'a> = SlotId;
        type Output = Tape<f64>;
        fn name(&self) -> &str {
            "accumulating"
        }
        fn run(&self, _seed: SlotId, tape: &mut Tape<f64>, cx: &Ctx) -> Result<()> {
            let (ops, params, acts, grads) = tape.sweep_parts();
            for op in ops.iter().rev() {
                op.vjp(params, acts, grads, cx.par);
            }
            Ok(())
        }
    }

    #[test]
    fn the_kit_catches_accumulated_gradients() {
        let err = laws::check(|| Accumulating).unwrap_err();
        assert!(err.contains("second call"), "{err}");
    }
}
