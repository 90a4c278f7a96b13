//! The whole model's gradient (embedding + LSTM + fc + mean cross-entropy, exactly as
//! [`Model::train_window`](stagewise_pipeline::Model::train_window) computes it before the update)
//! against finite differences of the mean loss, in `f64`, for every parameter scalar.

use stagewise_core::{Ctx, Mode, Rng, Stage};
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::ForwardConfig;
use stagewise_loss::LossInput;
use stagewise_pipeline::{Config, Model};

const V: usize = 7;
const E: usize = 3;
const H: usize = 4;
const B: usize = 2;
const T: usize = 3;

/// Step of the finite-difference stencil.
const STEP: f64 = 1e-3;
/// Largest accepted relative error.
const TOL: f64 = 1e-6;
/// Absolute floor of the relative error's denominator.
///
/// The mean loss (≈ ln V ≈ 2) is computed row by row as `lse − x[t]`, a difference of O(1)
/// numbers, so every evaluation carries an absolute rounding error of a few ulp(2) ≈ 1e-15 however
/// small the derivative is: that cancellation does not shrink with the gradient. The stencil below
/// divides it by ~`STEP`, leaving ~1e-13 of absolute noise in the numeric derivative (measured
/// ≤ 5e-13 here; a plain `(L(x+ε) − L(x−ε)) / 2ε` at ε = 1e-5 leaves ~4e-11, too much for this
/// tolerance). A derivative below `noise / TOL` ≈ 1e-6 cannot be resolved to a relative `TOL`,
/// so it is judged against this floor instead, i.e. to an absolute 1e-12.
const FLOOR: f64 = 1e-6;

/// Forward and loss over one window from a zero recurrent state; returns the mean NLL.
fn mean_loss(model: &mut Model<f64>, ids: &[u32], targets: &[u32], cx: &Ctx) -> f64 {
    model.reset_state();
    model.tape.set_steps(T).unwrap();
    model.embedding.run(ids, &mut model.tape, cx).unwrap();
    model.forward.run((), &mut model.tape, cx).unwrap();
    let out = model.tape.output().unwrap();
    let logits = model.tape.acts.slot_mut(out);
    model.loss.run(LossInput { logits, targets }, &mut model.loss_out, cx).unwrap();
    model.loss_out.mean()
}

#[test]
fn full_model_gradient_matches_finite_differences_of_the_mean_loss() {
    let mut config =
        Config { embedding: EmbeddingConfig::table(E), forward: ForwardConfig::lstm(H), ..Config::default() };
    config.train.seed = 11;
    let mut model = Model::<f64>::from_config(&config, V, B, T).unwrap();
    let n = model.tape.params.as_slice().len();
    assert_eq!(n, model.dims.params);
    assert_eq!(n, V * E + 4 * H * (E + H + 2) + V * H + V, "embedding, 4 LSTM tensors, fc");

    let mut rng = Rng::new(99);
    let ids: Vec<u32> = (0..T * B).map(|_| rng.below(V as u64) as u32).collect();
    let targets: Vec<u32> = (0..T * B).map(|_| rng.below(V as u64) as u32).collect();
    // Perturb every parameter, so the check does not rest on the initialisation's particular values.
    for p in model.tape.params.as_mut_slice() {
        *p += 0.1 * rng.normal();
    }

    // Analytic: forward, loss in train mode (writes dlogits of the mean), backward; no update.
    let cx = Ctx { mode: Mode::Train, ..Ctx::seq() };
    let loss = mean_loss(&mut model, &ids, &targets, &cx);
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    // In training the loss left dL/dlogits in the logits slot's gradient: the backward seed.
    let out = model.tape.output().unwrap();
    model.backward.run(out, &mut model.tape, &cx).unwrap();
    let analytic = model.tape.grads.as_slice().to_vec();
    assert!(analytic.iter().map(|g| g * g).sum::<f64>().sqrt() > 1e-3, "gradient is (almost) zero");

    // Numeric: the fourth-order central difference
    // (8·(L(x+h) − L(x−h)) − (L(x+2h) − L(x−2h))) / 12h, each evaluation from a zero state.
    let eval = cx.eval();
    let layout = model.tape.params.layout().clone();
    let mut worst = (0.0f64, String::from("nothing checked"));
    for (i, &a) in analytic.iter().enumerate() {
        let orig = model.tape.params.as_slice()[i];
        let mut at = |x: f64| {
            model.tape.params.as_mut_slice()[i] = x;
            mean_loss(&mut model, &ids, &targets, &eval)
        };
        let near = at(orig + STEP) - at(orig - STEP);
        let far = at(orig + 2.0 * STEP) - at(orig - 2.0 * STEP);
        model.tape.params.as_mut_slice()[i] = orig;
        let numeric = (8.0 * near - far) / (12.0 * STEP);
        let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(FLOOR);
        if rel >= worst.0 {
            let entry =
                layout.entries().iter().find(|e| (e.offset..e.offset + e.len()).contains(&i)).unwrap();
            worst =
                (rel, format!("{}[{}]: analytic {a:e} vs numeric {numeric:e}", entry.name, i - entry.offset));
        }
    }
    assert!(worst.0 < TOL, "worst relative error {:e} at {}", worst.0, worst.1);
}
