//! The LSTM and Linear ops against their naive references, across windows, thread counts and
//! extreme inputs, plus the VJP conventions (accumulate into parameters, overwrite inputs).

mod common;

use common::{Model, build, fill};
use proptest::prelude::*;
use stagewise_core::{Op, Par, Rng, Tape};
use stagewise_forward::{FC_PREFIX, LinearOp, LstmOp, linear_forward_naive, lstm_forward_naive};
use stagewise_testkit::dims_strategy;

/// Random sizes plus a window length `1..=max_steps` and a seed.
fn case() -> impl Strategy<Value = ((usize, usize, usize, usize, usize), usize, u64)> {
    (dims_strategy(), any::<usize>(), any::<u64>()).prop_map(|(d, s, seed)| (d, 1 + s % d.4, seed))
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// A random output cotangent for the model's current window.
/// `h` and `c` of the window's first `n` rows from the plain-loop reference, for the model's
/// current weights, input and initial state.
fn naive_h_c(m: &Model<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (e, h) = (m.lstm.embed(), m.lstm.hidden());
    let s = m.lstm.slots();
    let acts = &m.tape.acts;
    let (mut hn, mut cn) = (vec![0.0; n * h], vec![0.0; n * h]);
    lstm_forward_naive(
        m.lstm.weights(&m.tape.params),
        &acts.slot(m.x).value[..n * e],
        &acts.slot(s.h0).value,
        &acts.slot(s.c0).value,
        acts.batch(),
        &mut hn,
        &mut cn,
    );
    (hn, cn)
}

fn cotangent<T: stagewise_core::Float>(m: &Model<T>, seed: u64) -> Vec<T> {
    let slot = m.tape.acts.slot(m.output());
    let mut w = vec![T::from_f64(0.0); m.tape.acts.rows() * slot.width];
    fill(&mut w, &mut Rng::new(seed), 1.0);
    w
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The GEMM-based forward equals the plain-loop reference (h and c of every step, logits).
    #[test]
    fn forward_matches_naive(((v, e, h, b, t), steps, seed) in case()) {
        let mut m = build::<f64>(b, t, e, h, Some(v), seed, 1.0, false);
        m.tape.set_steps(steps).unwrap();
        m.forward(Par::Seq);
        let s = m.lstm.slots();
        let acts = &m.tape.acts;
        let n = steps * b;
        let (hn, cn) = naive_h_c(&m, n);
        let dh = max_abs_diff(&acts.slot(s.h).value[..n * h], &hn);
        let dc = max_abs_diff(&acts.slot(s.c).value[..n * h], &cn);
        prop_assert!(dh < 1e-12 && dc < 1e-12, "h diff {dh:e}, c diff {dc:e}");

        let fc = m.fc.as_ref().unwrap();
        let (w, bias) = fc.params();
        let mut y = vec![0.0; n * v];
        linear_forward_naive(&hn, m.tape.params.get(w), m.tape.params.get(bias), &mut y, n, h, v);
        let dy = max_abs_diff(&acts.slot(fc.output()).value[..n * v], &y);
        prop_assert!(dy < 1e-12, "logits diff {dy:e}");
    }

    /// Two windows of `t1` and `t2` steps with `end_window` between give the outputs of one
    /// window of `t1 + t2` steps: the state is carried across (detached).
    #[test]
    fn end_window_carries_state(
        (v, e, h, b, _) in dims_strategy(), t1 in 1usize..5, t2 in 1usize..5, seed in any::<u64>()
    ) {
        let total = t1 + t2;
        let mut whole = build::<f64>(b, total, e, h, Some(v), seed, 1.0, false);
        whole.forward(Par::Seq);
        let out = whole.output();
        let expect = whole.tape.acts.slot(out).value.clone();

        // Same seed, so same parameters, inputs and initial state.
        let mut split = build::<f64>(b, total, e, h, Some(v), seed, 1.0, false);
        let x_all = split.tape.acts.slot(split.x).value.clone();
        let mut got = Vec::new();
        let mut start = 0;
        for steps in [t1, t2] {
            split.tape.set_steps(steps).unwrap();
            let x = &mut split.tape.acts.slot_mut(split.x).value;
            x[..steps * b * e].copy_from_slice(&x_all[start * b * e..(start + steps) * b * e]);
            split.forward(Par::Seq);
            got.extend_from_slice(&split.tape.acts.slot(out).value[..steps * b * v]);
            split.tape.end_window();
            start += steps;
        }
        let d = max_abs_diff(&got, &expect);
        prop_assert!(d < 1e-12, "split vs whole window: {d:e}");
    }

    /// `Par::Seq` and `Par::rayon(2)` give bit-identical outputs and gradients in f32, on sizes
    /// large enough for faer to split its GEMMs across threads.
    #[test]
    fn parallel_is_bit_identical(
        e in 16usize..48, h in 16usize..48, v in 32usize..96, b in 2usize..9, t in 2usize..9,
        seed in any::<u64>()
    ) {
        let run = |par: Par| {
            let mut m = build::<f32>(b, t, e, h, Some(v), seed, 1.0, false);
            m.forward(par);
            let w = cotangent(&m, seed);
            m.backward(&w, par);
            let out = m.tape.acts.slot(m.output()).value.clone();
            let xg = m.tape.acts.slot(m.x).grad.clone();
            (out, xg, m.tape.grads.as_slice().to_vec())
        };
        let seq = run(Par::Seq);
        let par = run(Par::rayon(2));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert!(bits(&seq.0) == bits(&par.0), "logits differ");
        prop_assert!(bits(&seq.1) == bits(&par.1), "input gradients differ");
        prop_assert!(bits(&seq.2) == bits(&par.2), "parameter gradients differ");
    }

    /// Inputs up to |x| = 50 saturate every gate; nothing may become NaN or infinite, in f32
    /// or f64, forwards or backwards.
    #[test]
    fn large_inputs_stay_finite(((v, e, h, b, t), steps, seed) in case()) {
        fn check<T: stagewise_core::Float>(mut m: Model<T>, steps: usize, seed: u64) -> Result<(), TestCaseError> {
            let mut rng = Rng::new(seed);
            for x in &mut m.tape.acts.slot_mut(m.x).value {
                *x = T::from_f64(rng.uniform_in(-50.0, 50.0));
            }
            m.tape.set_steps(steps).unwrap();
            m.forward(Par::Seq);
            let w = cotangent(&m, seed);
            m.backward(&w, Par::Seq);
            let n = m.tape.acts.rows();
            for slot in m.tape.acts.slots() {
                let used = if slot.width == 0 { slot.value.len() } else { n * slot.width };
                prop_assert!(slot.value[..used].iter().all(|x| x.is_finite()), "{} value", slot.name);
                if !slot.grad.is_empty() {
                    prop_assert!(slot.grad[..used].iter().all(|x| x.is_finite()), "{} grad", slot.name);
                }
            }
            prop_assert!(m.tape.grads.as_slice().iter().all(|x| x.is_finite()), "parameter grads");
            Ok(())
        }
        check(build::<f32>(b, t, e, h, Some(v), seed, 1.0, false), steps, seed)?;
        check(build::<f64>(b, t, e, h, Some(v), seed, 1.0, false), steps, seed)?;
    }

    /// Every parameter scalar receives a non-zero gradient (a frozen bias or a gate block that
    /// never gets a gradient must fail here), and the VJP conventions hold: a second VJP doubles
    /// parameter gradients (`+=`) but leaves the input gradient as it was (overwrite).
    #[test]
    fn every_parameter_gets_a_gradient(((v, e, h, b, t), steps, seed) in case()) {
        let mut m = build::<f64>(b, t, e, h, Some(v), seed, 1.0, false);
        m.tape.set_steps(steps).unwrap();
        m.forward(Par::Seq);
        let w = cotangent(&m, seed);
        m.backward(&w, Par::Seq);
        for entry in m.tape.grads.layout().entries() {
            let id = m.tape.grads.layout().find(&entry.name).unwrap();
            let g = m.tape.grads.get(id);
            let zeros = g.iter().filter(|&&x| x == 0.0).count();
            prop_assert!(zeros == 0, "{}: {zeros} of {} gradient entries are zero", entry.name, g.len());
        }
        let once = m.tape.grads.as_slice().to_vec();
        let xg = m.tape.acts.slot(m.x).grad.clone();
        {
            let (ops, params, acts, grads) = m.tape.sweep_parts();
            for op in ops.iter().rev() {
                op.vjp(params, acts, grads, Par::Seq);
            }
        }
        let twice = m.tape.grads.as_slice();
        prop_assert!(once.iter().zip(twice).all(|(a, b)| (2.0 * a - b).abs() <= 1e-12 * a.abs().max(1.0)));
        prop_assert!(m.tape.acts.slot(m.x).grad == xg, "input gradient must be overwritten, not accumulated");
    }

    /// A zero output gradient gives exactly zero gradients everywhere (PyTorch's
    /// `test_backward_mul_by_grad_output`): nothing leaks in from stale buffers.
    #[test]
    fn zero_cotangent_gives_zero_gradients(((v, e, h, b, t), steps, seed) in case()) {
        let mut m = build::<f64>(b, t, e, h, Some(v), seed, 1.0, false);
        // Dirty every gradient buffer first with a real backward pass over the full window.
        m.forward(Par::Seq);
        let w = cotangent(&m, seed);
        m.backward(&w, Par::Seq);
        m.tape.set_steps(steps).unwrap();
        m.forward(Par::Seq);
        let zero = vec![0.0; m.tape.acts.rows() * v];
        m.backward(&zero, Par::Seq);
        prop_assert!(m.tape.grads.as_slice().iter().all(|&g| g == 0.0));
        let n = m.tape.acts.rows();
        prop_assert!(m.tape.acts.slot(m.x).grad[..n * e].iter().all(|&g| g == 0.0));
    }
}

/// `reset_state` zeroes `h0`/`c0`; `end_window` copies the last step of a *shorter* window.
#[test]
fn reset_and_end_window_use_the_current_window() {
    let mut m = build::<f64>(2, 5, 3, 4, None, 11, 1.0, false);
    let s = m.lstm.slots();
    m.tape.set_steps(3).unwrap();
    m.forward(Par::Seq);
    let last = m.tape.acts.slot(s.h).value[2 * 8..3 * 8].to_vec();
    let last_c = m.tape.acts.slot(s.c).value[2 * 8..3 * 8].to_vec();
    m.tape.end_window();
    assert_eq!(m.tape.acts.slot(s.h0).value, last);
    assert_eq!(m.tape.acts.slot(s.c0).value, last_c);
    m.tape.reset_state();
    assert!(m.tape.acts.slot(s.h0).value.iter().all(|&x| x == 0.0));
    assert!(m.tape.acts.slot(s.c0).value.iter().all(|&x| x == 0.0));
}

/// One step of a one-unit LSTM against numbers worked out by hand.
#[test]
fn single_step_literal() {
    // E = H = B = T = 1, x = 2, h0 = -1, c0 = 1. Gate pre-activations
    // a = W_ih·x + W_hh·h0 + b_ih + b_hh, gate order (i, f, g, o):
    //   W_ih·x       = [ln3, -ln3, ln2, ln4]          (W_ih = [ln3/2, -ln3/2, ln2/2, ln2])
    //   W_hh·h0      = [-0.5, -0.25, 0.5, -1.0]      (W_hh = [0.5, 0.25, -0.5, 1.0])
    //   b_ih + b_hh  = [0.5, 0.25, -0.5, 1.0]        (b_ih = [0.25, 0.5, -0.25, 0.5],
    //                                                 b_hh = [0.25, -0.25, -0.25, 0.5])
    //   a            = [ln3, -ln3, ln2, ln4]
    // i = σ(ln3) = 3/(3+1) = 0.75;  f = σ(-ln3) = 1/(1+3) = 0.25;
    // g = tanh(ln2) = (2 - 1/2)/(2 + 1/2) = 0.6;  o = σ(ln4) = 4/(4+1) = 0.8.
    // c = f·c0 + i·g = 0.25·1 + 0.75·0.6 = 0.7
    // h = o·tanh(c) = 0.8·tanh(0.7) = 0.8·0.6043677771171636 = 0.4834942216937309
    let (ln2, ln3) = (2f64.ln(), 3f64.ln());
    let mut tape = Tape::<f64>::new(1, 1);
    let x = tape.acts.declare_rows("x", 1, true).unwrap();
    let lstm = LstmOp::declare(&mut tape, x, 1, 0).unwrap();
    let p = lstm.params();
    tape.params.get_mut(p.w_ih).copy_from_slice(&[ln3 / 2.0, -ln3 / 2.0, ln2 / 2.0, ln2]);
    tape.params.get_mut(p.w_hh).copy_from_slice(&[0.5, 0.25, -0.5, 1.0]);
    tape.params.get_mut(p.b_ih).copy_from_slice(&[0.25, 0.5, -0.25, 0.5]);
    tape.params.get_mut(p.b_hh).copy_from_slice(&[0.25, -0.25, -0.25, 0.5]);
    tape.acts.slot_mut(x).value[0] = 2.0;
    let s = lstm.slots();
    tape.acts.slot_mut(s.h0).value[0] = -1.0;
    tape.acts.slot_mut(s.c0).value[0] = 1.0;
    tape.push(Box::new(lstm) as Box<dyn Op<f64>>);
    tape.forward_range(0..1, Par::Seq);
    let gates = &tape.acts.slot(s.gates).value;
    for (got, want) in gates.iter().zip([0.75, 0.25, 0.6, 0.8]) {
        assert!((got - want).abs() < 1e-15, "gates {gates:?}");
    }
    assert!((tape.acts.slot(s.c).value[0] - 0.7).abs() < 1e-15);
    assert!((tape.acts.slot(s.h).value[0] - 0.4834942216937309).abs() < 1e-15);
}

/// PyTorch's names, shapes and init ranges, and reproducible draws from the named streams.
#[test]
fn parameters_follow_pytorch() {
    let (e, h, v) = (3, 5, 7);
    let build_tape = |seed| {
        let mut tape = Tape::<f64>::new(2, 3);
        let x = tape.acts.declare_rows("x", e, true).unwrap();
        let lstm = LstmOp::declare(&mut tape, x, h, seed).unwrap();
        LinearOp::declare(&mut tape, FC_PREFIX, lstm.output(), v, seed).unwrap();
        tape
    };
    let tape = build_tape(42);
    let layout = tape.params.layout();
    let expect: [(&str, Vec<usize>, f64); 6] = [
        ("lstm.weight_ih_l0", vec![4 * h, e], 1.0 / (h as f64).sqrt()),
        ("lstm.weight_hh_l0", vec![4 * h, h], 1.0 / (h as f64).sqrt()),
        ("lstm.bias_ih_l0", vec![4 * h], 1.0 / (h as f64).sqrt()),
        ("lstm.bias_hh_l0", vec![4 * h], 1.0 / (h as f64).sqrt()),
        ("fc.weight", vec![v, h], 1.0 / (h as f64).sqrt()),
        ("fc.bias", vec![v], 1.0 / (h as f64).sqrt()),
    ];
    assert_eq!(layout.entries().len(), expect.len());
    for (entry, (name, shape, bound)) in layout.entries().iter().zip(expect) {
        assert_eq!((entry.name.as_str(), &entry.shape), (name, &shape));
        let id = layout.find(name).unwrap();
        let vals = tape.params.get(id);
        assert!(vals.iter().all(|x| x.abs() < bound), "{name} outside ±{bound}");
        assert!(vals.iter().any(|&x| x != 0.0), "{name} left at zero");
    }
    assert_eq!(tape.params.as_slice(), build_tape(42).params.as_slice());
    assert_ne!(tape.params.as_slice(), build_tape(43).params.as_slice());
}

/// Vector-shaped products (one stream, one row, or width 1) at the default width: faer's
/// column-major matrix–vector kernel splits its reduction across threads, which would change
/// the last bits with the thread count; the ops must still be bit-identical.
#[test]
fn parallel_is_bit_identical_for_vector_shapes() {
    for (b, t, e, h, v) in
        [(1, 3, 16, 128, 300), (1, 1, 16, 128, 300), (2, 2, 1, 128, 1), (1, 2, 300, 128, 1)]
    {
        let run = |par: Par| {
            let mut m = build::<f32>(b, t, e, h, Some(v), 5, 1.0, false);
            m.forward(par);
            let w = cotangent(&m, 5);
            m.backward(&w, par);
            let mut all = m.tape.acts.slot(m.output()).value.to_vec();
            all.extend_from_slice(&m.tape.acts.slot(m.x).grad);
            all.extend_from_slice(m.tape.grads.as_slice());
            all.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        assert!(run(Par::Seq) == run(Par::rayon(2)), "B={b} T={t} E={e} H={h} V={v}");
    }
}

/// Steps large enough to be split by hidden units across threads (`B·4H² ≥ 1 Mi`), with widths
/// that do and do not divide evenly into 16-unit blocks, on 2 and 3 threads: outputs, input and
/// parameter gradients are bit-identical to one thread.
#[test]
fn parallel_is_bit_identical_when_steps_split_by_units() {
    for (b, t, e, h, v) in [(20, 3, 24, 120, 50), (8, 2, 16, 200, 40), (5, 3, 10, 256, 30)] {
        assert!(b * 4 * h * h >= 1 << 20, "B={b} H={h} must be large enough to split");
        let run = |par: Par| {
            let mut m = build::<f32>(b, t, e, h, Some(v), 11, 1.0, false);
            m.forward(par);
            let w = cotangent(&m, 11);
            m.backward(&w, par);
            let mut all = m.tape.acts.slot(m.output()).value.to_vec();
            all.extend_from_slice(&m.tape.acts.slot(m.x).grad);
            all.extend_from_slice(m.tape.grads.as_slice());
            all.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        let seq = run(Par::Seq);
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let par = pool.install(|| run(Par::rayon(threads)));
            assert!(seq == par, "B={b} T={t} E={e} H={h} V={v}, {threads} threads");
        }
    }
}

/// The one-thread recurrence reads a cached `W_hhᵀ`: after the weights change (as after an
/// optimizer step), the next forward pass must use the new weights, checked against the plain
/// loops each time.
#[test]
fn cached_recurrent_weights_follow_parameter_changes() {
    let (b, t, h) = (3, 4, 6);
    let mut m = build::<f64>(b, t, 5, h, None, 21, 1.0, false);
    let n = b * t;
    for round in 0..3 {
        m.forward(Par::Seq);
        let (hn, _) = naive_h_c(&m, n);
        let dh = max_abs_diff(&m.tape.acts.slot(m.lstm.slots().h).value[..n * h], &hn);
        assert!(dh < 1e-12, "round {round}: h diff {dh:e}");
        m.tape.params.get_mut(m.lstm.params().w_hh)[round * 7] += 0.3;
    }
}
