//! The update box's laws, as a check any implementation can be run through: the built-ins in
//! this crate's tests, a user's own optimizer in theirs (enable the `testkit` feature).
//!
//! ```ignore
//! #[test]
//! fn my_optimizer_keeps_the_laws() {
//!     stagewise_optimizer::laws::check(|| MySgd::new(0.1), false).unwrap();
//! }
//! ```
//!
//! On arenas of a few tensors, one of them frozen:
//! - it decreases a convex quadratic `f(p) = ½ Σ aᵢ pᵢ²` over 200 steps;
//! - a zero gradient changes nothing, unless the optimizer decays weights (`decays`);
//! - a frozen tensor (`ParamLayout::trainable`) is never changed, weight decay included;
//! - a step with `lr_factor = 0` changes nothing;
//! - every step counts (`OptimizerState::step`), and two threads give the same bits as one.

use crate::{Optimizer, OptimizerState, Update};
use stagewise_core::{Ctx, Dims, Grads, Par, Params, Rng};

/// Runs every law on optimizers made by `make` (a fresh one per law). `decays`: whether it decays
/// weights without a gradient (AdamW, or a weight decay), which exempts it from the zero-gradient
/// law. Returns the first violation, described.
pub fn check<O: Optimizer<f64> + Sync>(make: impl Fn() -> O, decays: bool) -> Result<(), String> {
    let (mut params, frozen_id) = arenas()?;
    let a: Vec<f64> = (0..params.as_slice().len()).map(|i| 0.5 + (i % 7) as f64 * 0.25).collect();
    let f = |p: &Params<f64>| p.as_slice().iter().zip(&a).map(|(x, a)| 0.5 * a * x * x).sum::<f64>();
    let frozen_before = params.get(frozen_id).to_vec();

    // A convex quadratic decreases.
    let (opt, mut state) = prepared(&make, &params)?;
    let start = f(&params);
    let mut grads = Grads::zeros_with_layout(params.layout());
    for step in 0..200 {
        for ((g, x), a) in grads.as_mut_slice().iter_mut().zip(params.as_slice()).zip(&a) {
            *g = a * x;
        }
        opt.run(Update { params: &mut params, grads: &grads, lr_factor: 1.0 }, &mut state, &Ctx::seq())
            .map_err(|e| format!("step {step}: {e}"))?;
    }
    let end = f(&params);
    if !end.is_finite() || end >= start {
        return Err(format!("200 steps on a convex quadratic went from {start} to {end}"));
    }
    if state.step != 200 {
        return Err(format!("200 steps counted as {}", state.step));
    }
    if params.get(frozen_id) != &frozen_before[..] {
        return Err("a frozen tensor was changed".into());
    }

    // A zero gradient, or a zero factor, changes nothing.
    for (label, zero_grad, factor) in [("a zero gradient", true, 1.0), ("lr_factor 0", false, 0.0)] {
        if zero_grad && decays {
            continue;
        }
        let (mut p, _) = arenas()?;
        let before = p.as_slice().to_vec();
        let (opt, mut state) = prepared(&make, &p)?;
        let mut g = Grads::zeros_with_layout(p.layout());
        if !zero_grad {
            g.as_mut_slice().iter_mut().zip(&a).for_each(|(g, a)| *g = *a);
        }
        for _ in 0..3 {
            opt.run(Update { params: &mut p, grads: &g, lr_factor: factor }, &mut state, &Ctx::seq())
                .map_err(|e| format!("{label}: {e}"))?;
        }
        if p.as_slice() != &before[..] {
            return Err(format!("{label} changed the parameters"));
        }
    }

    // Two threads give the same bits as one.
    let run = |par: Par| -> Result<(Vec<u64>, Vec<u64>), String> {
        let (mut p, _) = arenas()?;
        let (opt, mut state) = prepared(&make, &p)?;
        let mut rng = Rng::new(5);
        let mut g = Grads::zeros_with_layout(p.layout());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(stagewise_core::threads_of(par))
            .build()
            .map_err(|e| e.to_string())?;
        for _ in 0..3 {
            g.as_mut_slice().iter_mut().for_each(|x| *x = rng.normal());
            pool.install(|| {
                opt.run(
                    Update { params: &mut p, grads: &g, lr_factor: 0.5 },
                    &mut state,
                    &Ctx { par, ..Ctx::seq() },
                )
            })
            .map_err(|e| e.to_string())?;
        }
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let state_bits = state.buffers().flat_map(|(_, b)| bits(b.as_slice())).collect();
        Ok((bits(p.as_slice()), state_bits))
    };
    if run(Par::Seq)? != run(Par::rayon(2))? {
        return Err("two threads gave other parameters or state than one".into());
    }
    Ok(())
}

/// Parameters of three tensors (a matrix, a vector, and a frozen matrix) long enough to be split
/// across threads, with the frozen one's id.
fn arenas() -> Result<(Params<f64>, stagewise_core::ParamId), String> {
    let mut p = Params::new();
    let mut rng = Rng::new(11);
    let mut declare = |p: &mut Params<f64>, name: &str, shape: &[usize]| {
        let id = p.declare(name, shape).map_err(|e| e.to_string())?;
        for x in p.get_mut(id) {
            *x = rng.normal();
        }
        Ok::<_, String>(id)
    };
    declare(&mut p, "w", &[64, 700])?;
    declare(&mut p, "b", &[300])?;
    let frozen = declare(&mut p, "frozen", &[20, 30])?;
    p.set_trainable(frozen, false);
    Ok((p, frozen))
}

/// An optimizer from `make`, prepared on a fresh state for `params`.
fn prepared<O: Optimizer<f64>>(
    make: &impl Fn() -> O,
    params: &Params<f64>,
) -> Result<(O, OptimizerState<f64>), String> {
    let mut opt = make();
    let mut state = OptimizerState::new(params.layout());
    let dims = Dims { vocab: 2, batch: 1, seq_len: 1, params: params.layout().total() };
    opt.prepare(&dims, &mut state).map_err(|e| format!("prepare: {e}"))?;
    Ok((opt, state))
}
