//! Every op's VJP against central finite differences in f64 (`check_tape_gradients`), on small
//! random sizes, multi-step windows shorter than the buffers, and a non-zero initial state.

mod common;

use common::build;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use stagewise_core::{Op, Rng, Tape};
use stagewise_forward::{FC_PREFIX, LinearOp};
use stagewise_testkit::{check_tape_gradients, dims_strategy};

/// The gradient-check tolerance the brief asks for.
const TOL: f64 = 1e-6;

/// Random directions per case (JAX's `check_vjp` dot-product test).
///
/// No single coordinates (`coords = 0`): with the checker's fixed `ε = 1e-6`, a central difference
/// carries ~1e-10 of absolute round-off, so any coordinate whose true gradient is below ~1e-4
/// "fails" a 1e-6 relative bound even for the exactly linear `fc` op (measured: analytic
/// 1.5048122808794528e-5 vs numeric 1.5047962875769372e-5). A random direction sums every
/// coordinate, so its derivative is O(1) and the bound measures the VJP, not the round-off.
const DIRECTIONS: usize = 6;

/// Cases per property, drawn from a fixed seed: a random direction can still cancel to a tiny
/// derivative by chance (the same round-off problem, rarely), so a fixed seed keeps the suite
/// reproducible; raise `cases` locally to explore further.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x5747_A6E5),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Random sizes plus a window length `1..=max_steps` and a seed.
fn case() -> impl Strategy<Value = ((usize, usize, usize, usize, usize), usize, u64)> {
    (dims_strategy(), any::<usize>(), any::<u64>()).prop_map(|(d, s, seed)| {
        let steps = 1 + s % d.4;
        (d, steps, seed)
    })
}

/// Prints the largest error of a test family once, so runs can report it (`--nocapture`).
fn report(label: &str, errs: &std::sync::Mutex<f64>, e: f64) {
    let mut m = errs.lock().expect("error log poisoned");
    if e > *m {
        *m = e;
        eprintln!("{label}: max relative error so far {e:e}");
    }
}

static LSTM_MAX: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);
static LINEAR_MAX: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);
static CHAIN_MAX: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lstm_vjp_matches_finite_differences(((_, e, h, b, t), steps, seed) in case()) {
        let mut m = build::<f64>(b, t, e, h, None, seed, 1.0, false);
        m.tape.set_steps(steps).unwrap();
        let out = m.output();
        let r = check_tape_gradients(&mut m.tape, &[m.x], out, seed, DIRECTIONS, 0);
        report("lstm", &LSTM_MAX, r.max_rel_err);
        prop_assert!(r.max_rel_err < TOL, "E={e} H={h} B={b} T={steps}/{t}: {} ({})", r.max_rel_err, r.worst);
    }

    #[test]
    fn linear_vjp_matches_finite_differences(((v, e, _, b, t), steps, seed) in case()) {
        let mut tape = Tape::<f64>::new(b, t);
        let x = tape.acts.declare_rows("x", e, true).unwrap();
        let fc = LinearOp::declare(&mut tape, FC_PREFIX, x, v, seed).unwrap();
        let out = fc.output();
        tape.push(Box::new(fc) as Box<dyn Op<f64>>);
        tape.finish();
        common::fill(&mut tape.acts.slot_mut(x).value, &mut Rng::new(seed), 1.0);
        tape.set_steps(steps).unwrap();
        let r = check_tape_gradients(&mut tape, &[x], out, seed, DIRECTIONS, 0);
        report("linear", &LINEAR_MAX, r.max_rel_err);
        prop_assert!(r.max_rel_err < TOL, "V={v} E={e} B={b} T={steps}/{t}: {} ({})", r.max_rel_err, r.worst);
    }

    #[test]
    fn lstm_then_linear_vjp_matches_finite_differences(((v, e, h, b, t), steps, seed) in case()) {
        let mut m = build::<f64>(b, t, e, h, Some(v), seed, 1.0, false);
        m.tape.set_steps(steps).unwrap();
        let out = m.output();
        let r = check_tape_gradients(&mut m.tape, &[m.x], out, seed, DIRECTIONS, 0);
        report("lstm->linear", &CHAIN_MAX, r.max_rel_err);
        prop_assert!(r.max_rel_err < TOL, "V={v} E={e} H={h} B={b} T={steps}/{t}: {} ({})", r.max_rel_err, r.worst);
    }
}

/// A longer window than `dims_strategy` draws, where errors through the recurrence compound.
#[test]
fn long_window_gradients() {
    let mut m = build::<f64>(3, 12, 5, 7, Some(11), 99, 1.0, false);
    m.tape.set_steps(10).unwrap();
    let out = m.output();
    let r = check_tape_gradients(&mut m.tape, &[m.x], out, 7, 16, 0);
    eprintln!("long window: max relative error {:e} ({})", r.max_rel_err, r.worst);
    assert!(r.max_rel_err < TOL, "{} ({})", r.max_rel_err, r.worst);
}
