//! Test helpers shared by the Stagewise crates.
//!
//! - [`check_tape_gradients`]: the finite-difference check every op's VJP must pass, in `f64`.
//! - [`dims_strategy`]: small random model sizes for property tests.
//! - [`alloc`]: a counting global allocator, for the "a warm step allocates nothing" tests.

/// The counting global allocator (it lives in `stagewise-kernels`, with every `unsafe` block).
pub use stagewise_kernels::counting_alloc as alloc;

use proptest::prelude::*;
use stagewise_core::{Par, Rng, SlotId, Tape};

/// What a gradient check measured.
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Largest relative error over the checked directions and coordinates.
    pub max_rel_err: f64,
    /// A description of the worst case, for the assertion message.
    pub worst: String,
}

/// Scalar loss `L = <w, out[..rows*width]>` for the tape's forward pass.
fn probe_loss(tape: &mut Tape<f64>, output: SlotId, w: &[f64]) -> f64 {
    let n = tape.ops().len();
    tape.forward_range(0..n, Par::Seq);
    let out = &tape.acts.slot(output).value;
    w.iter().zip(out).map(|(a, b)| a * b).sum()
}

/// Relative error with two floors in the denominator, because a central difference cannot resolve
/// a directional derivative much smaller than its own round-off:
/// - `terms`, `Σ|gᵢuᵢ|`: a direction whose terms cancel to a small sum is judged against the size of
///   the terms (the sum is still checked to ~1e-6 of that size);
/// - `loss_scale`, `Σ|wᵢ·outᵢ|`: `L(x ± εu)` carries ~1e-16·|L| of round-off, i.e. ~1e-10·|L| in
///   the quotient at ε = 1e-6, so derivatives below 1e-4·|L| are judged against that floor.
fn rel_err(analytic: f64, numeric: f64, terms: f64, loss_scale: f64) -> f64 {
    (analytic - numeric).abs()
        / analytic.abs().max(numeric.abs()).max(terms).max(1e-4 * loss_scale).max(1e-12)
}

/// `Σ|wᵢ·outᵢ|`, the magnitude the probe loss is computed at.
fn probe_scale(tape: &Tape<f64>, output: SlotId, w: &[f64]) -> f64 {
    w.iter().zip(&tape.acts.slot(output).value).map(|(a, b)| (a * b).abs()).sum()
}

/// Checks the tape's reverse sweep against central finite differences in `f64`.
///
/// The probe loss is `L = <w, output>` for a random cotangent `w`. The analytic gradient comes from
/// seeding `output.grad = w` and running every op's `vjp` in reverse; the numeric one from
/// `(L(x + εu) − L(x − εu)) / 2ε`. Checked: `directions` random directions `u` over all parameters
/// and the value of every slot in `inputs` at once (JAX's `check_vjp` dot-product test), plus
/// `coords` single coordinates (rust-autograd's per-element test). Only the first
/// `rows * width` values of row-laid-out slots are perturbed.
pub fn check_tape_gradients(
    tape: &mut Tape<f64>,
    inputs: &[SlotId],
    output: SlotId,
    seed: u64,
    directions: usize,
    coords: usize,
) -> GradCheck {
    let mut rng = Rng::new(seed);
    let eps = 1e-6;
    let rows = tape.acts.rows();
    let used = |tape: &Tape<f64>, s: SlotId| {
        let slot = tape.acts.slot(s);
        if slot.width == 0 { slot.value.len() } else { rows * slot.width }
    };
    let out_len = used(tape, output);
    let w: Vec<f64> = (0..out_len).map(|_| rng.normal()).collect();

    // Analytic gradients.
    probe_loss(tape, output, &w);
    let loss_scale = probe_scale(tape, output, &w);
    tape.grads.fill_zero();
    tape.acts.slot_mut(output).grad[..out_len].copy_from_slice(&w);
    {
        let (ops, params, acts, grads) = tape.sweep_parts();
        for op in ops.iter().rev() {
            op.vjp(params, acts, grads, Par::Seq);
        }
    }
    let param_grad = tape.grads.as_slice().to_vec();
    let input_grads: Vec<Vec<f64>> =
        inputs.iter().map(|&s| tape.acts.slot(s).grad[..used(tape, s)].to_vec()).collect();

    // Perturbs parameters and inputs by `scale * u`.
    let shift = |tape: &mut Tape<f64>, up: &[f64], ui: &[Vec<f64>], scale: f64| {
        for (p, d) in tape.params.as_mut_slice().iter_mut().zip(up) {
            *p += scale * d;
        }
        for (&s, d) in inputs.iter().zip(ui) {
            for (x, dx) in tape.acts.slot_mut(s).value.iter_mut().zip(d) {
                *x += scale * dx;
            }
        }
    };
    let mut report = GradCheck { max_rel_err: 0.0, worst: String::from("nothing checked") };
    let mut check = |tape: &mut Tape<f64>, up: Vec<f64>, ui: Vec<Vec<f64>>, label: String| {
        let products = param_grad
            .iter()
            .zip(&up)
            .chain(input_grads.iter().zip(&ui).flat_map(|(g, u)| g.iter().zip(u)))
            .map(|(g, u)| g * u);
        let (analytic, terms) = products.fold((0.0, 0.0), |(s, a), p| (s + p, a + p.abs()));
        shift(tape, &up, &ui, eps);
        let plus = probe_loss(tape, output, &w);
        shift(tape, &up, &ui, -2.0 * eps);
        let minus = probe_loss(tape, output, &w);
        shift(tape, &up, &ui, eps);
        let numeric = (plus - minus) / (2.0 * eps);
        let e = rel_err(analytic, numeric, terms, loss_scale);
        if e >= report.max_rel_err {
            report.max_rel_err = e;
            report.worst = format!("{label}: analytic {analytic:e} vs numeric {numeric:e}");
        }
    };
    let n_params = param_grad.len();
    let input_lens: Vec<usize> = input_grads.iter().map(Vec::len).collect();
    for d in 0..directions {
        let up: Vec<f64> = (0..n_params).map(|_| rng.normal()).collect();
        let ui: Vec<Vec<f64>> = input_lens.iter().map(|&n| (0..n).map(|_| rng.normal()).collect()).collect();
        check(tape, up, ui, format!("random direction {d}"));
    }
    let total = n_params + input_lens.iter().sum::<usize>();
    for _ in 0..coords {
        let mut k = rng.below(total as u64) as usize;
        let mut up = vec![0.0; n_params];
        let mut ui: Vec<Vec<f64>> = input_lens.iter().map(|&n| vec![0.0; n]).collect();
        let label;
        if k < n_params {
            up[k] = 1.0;
            label = format!("parameter scalar {k}");
        } else {
            k -= n_params;
            let mut which = 0;
            while k >= input_lens[which] {
                k -= input_lens[which];
                which += 1;
            }
            ui[which][k] = 1.0;
            label = format!("input {} element {k}", tape.acts.slot(inputs[which]).name);
        }
        check(tape, up, ui, label);
    }
    report
}

/// Small model sizes `(vocab, embed, hidden, batch, steps)` for property tests: big enough to
/// cross GEMM kernel-tile edges, small enough for finite differences.
pub fn dims_strategy() -> impl Strategy<Value = (usize, usize, usize, usize, usize)> {
    (2usize..24, 1usize..9, 1usize..9, 1usize..5, 1usize..6)
}
