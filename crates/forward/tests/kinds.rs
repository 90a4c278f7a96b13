//! The GRU and Elman RNN ops, and stacks of layers of every kind: VJPs against finite differences
//! in f64, forward passes against the plain-loop references, the state carried between windows,
//! bit-identity across thread counts, PyTorch's names, shapes and initialisation.

mod common;

use common::stack::{Stack, build, naive_outputs};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use stagewise_core::{Op, Par, Rng, Tape};
use stagewise_forward::{GruOp, Layer, RecurrentKind, RnnTanhOp};
use stagewise_testkit::{check_tape_gradients, dims_strategy};

/// The gradient-check tolerance (see `gradients.rs` for why random directions, not coordinates).
const TOL: f64 = 1e-6;
const DIRECTIONS: usize = 6;
const KINDS: [RecurrentKind; 3] = [RecurrentKind::Gru, RecurrentKind::RnnTanh, RecurrentKind::Lstm];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x6752_5553),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `(vocab, embed, hidden, batch, max_steps)`.
type Sizes = (usize, usize, usize, usize, usize);

/// Random sizes, a window length `1..=max_steps`, a layer count 1 or 2, a kind and a seed.
fn case() -> impl Strategy<Value = (Sizes, usize, usize, RecurrentKind, u64)> {
    (dims_strategy(), any::<usize>(), 1usize..3, 0usize..3, any::<u64>())
        .prop_map(|(d, s, layers, k, seed)| (d, 1 + s % d.4, layers, KINDS[k], seed))
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(config(64))]

    /// Every layer's VJP (and the head's) against central finite differences, with random initial
    /// states, one or two layers, windows shorter than the buffers.
    #[test]
    fn vjp_matches_finite_differences(((v, e, h, b, t), steps, layers, kind, seed) in case()) {
        let mut s = build::<f64>(kind, layers, b, t, e, h, Some(v), seed, false);
        s.tape.set_steps(steps).unwrap();
        let out = s.output();
        let r = check_tape_gradients(&mut s.tape, &[s.x], out, seed, DIRECTIONS, 0);
        prop_assert!(r.max_rel_err < TOL, "{kind:?} x{layers} V={v} E={e} H={h} B={b} T={steps}/{t}: {} ({})", r.max_rel_err, r.worst);
    }

    /// The layer ops alone (no head): the gradient through the recurrence only.
    #[test]
    fn layer_vjp_matches_finite_differences(((_, e, h, b, t), steps, layers, kind, seed) in case()) {
        let mut s = build::<f64>(kind, layers, b, t, e, h, None, seed, false);
        s.tape.set_steps(steps).unwrap();
        let out = s.output();
        let r = check_tape_gradients(&mut s.tape, &[s.x], out, seed, DIRECTIONS, 0);
        prop_assert!(r.max_rel_err < TOL, "{kind:?} x{layers} E={e} H={h} B={b} T={steps}/{t}: {} ({})", r.max_rel_err, r.worst);
    }

    /// Every layer's output equals the plain-loop reference applied layer by layer.
    #[test]
    fn forward_matches_naive(((v, e, h, b, t), steps, layers, kind, seed) in case()) {
        let mut s = build::<f64>(kind, layers, b, t, e, h, Some(v), seed, false);
        s.tape.set_steps(steps).unwrap();
        s.forward(Par::Seq);
        let n = steps * b;
        let want = naive_outputs(&s, n);
        for (l, (layer, want)) in s.layers.iter().zip(&want).enumerate() {
            let got = &s.tape.acts.slot(layer.output()).value[..n * h];
            let d = max_abs_diff(got, want);
            prop_assert!(d < 1e-12, "{kind:?} layer {l}: {d:e}");
        }
    }

    /// Two windows of `t1` and `t2` steps with `end_window` between give the outputs of one window
    /// of `t1 + t2` steps: every layer's state is carried across (detached).
    #[test]
    fn end_window_carries_every_layer_s_state(
        (v, e, h, b, _) in dims_strategy(), t1 in 1usize..5, t2 in 1usize..5, layers in 1usize..3,
        k in 0usize..3, seed in any::<u64>()
    ) {
        let kind = KINDS[k];
        let total = t1 + t2;
        let mut whole = build::<f64>(kind, layers, b, total, e, h, Some(v), seed, false);
        whole.forward(Par::Seq);
        let out = whole.output();
        let expect = whole.tape.acts.slot(out).value.clone();
        let mut split = build::<f64>(kind, layers, b, total, e, h, Some(v), seed, false);
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
        prop_assert!(d < 1e-12, "{kind:?} x{layers}: split vs whole window: {d:e}");
    }

    /// Every parameter scalar receives a non-zero gradient, a second VJP doubles parameter
    /// gradients (`+=`) and leaves the input gradient as it was (overwrite).
    #[test]
    fn every_parameter_gets_a_gradient(((v, e, h, b, t), steps, layers, kind, seed) in case()) {
        let mut s = build::<f64>(kind, layers, b, t, e, h, Some(v), seed, false);
        s.tape.set_steps(steps).unwrap();
        s.forward(Par::Seq);
        let w = s.cotangent(seed);
        s.backward(&w, Par::Seq);
        for entry in s.tape.grads.layout().entries() {
            let id = s.tape.grads.layout().find(&entry.name).unwrap();
            let zeros = s.tape.grads.get(id).iter().filter(|&&x| x == 0.0).count();
            prop_assert!(zeros == 0, "{}: {zeros} of {} gradient entries are zero", entry.name, entry.len());
        }
        let once = s.tape.grads.as_slice().to_vec();
        let xg = s.tape.acts.slot(s.x).grad.clone();
        {
            let (ops, params, acts, grads) = s.tape.sweep_parts();
            for op in ops.iter().rev() {
                op.vjp(params, acts, grads, Par::Seq);
            }
        }
        let twice = s.tape.grads.as_slice();
        prop_assert!(once.iter().zip(twice).all(|(a, b)| (2.0 * a - b).abs() <= 1e-12 * a.abs().max(1.0)));
        prop_assert!(s.tape.acts.slot(s.x).grad == xg, "input gradient must be overwritten");
    }

    /// `Par::Seq` and `Par::rayon(2)` give bit-identical outputs and gradients in f32.
    #[test]
    fn parallel_is_bit_identical(
        e in 16usize..48, h in 16usize..48, v in 32usize..96, b in 2usize..9, t in 2usize..9,
        layers in 1usize..3, k in 0usize..3, seed in any::<u64>()
    ) {
        let run = |par: Par| {
            let mut s = build::<f32>(KINDS[k], layers, b, t, e, h, Some(v), seed, false);
            s.forward(par);
            let w = s.cotangent(seed);
            s.backward(&w, par);
            let mut all = s.tape.acts.slot(s.output()).value.to_vec();
            all.extend_from_slice(&s.tape.acts.slot(s.x).grad);
            all.extend_from_slice(s.tape.grads.as_slice());
            bits(&all)
        };
        prop_assert!(run(Par::Seq) == run(Par::rayon(2)));
    }

    /// Inputs up to |x| = 50 saturate every gate; nothing may become NaN or infinite.
    #[test]
    fn large_inputs_stay_finite(((v, e, h, b, t), steps, layers, kind, seed) in case()) {
        let mut s = build::<f32>(kind, layers, b, t, e, h, Some(v), seed, false);
        let mut rng = Rng::new(seed);
        for x in &mut s.tape.acts.slot_mut(s.x).value {
            *x = rng.uniform_in(-50.0, 50.0) as f32;
        }
        s.tape.set_steps(steps).unwrap();
        s.forward(Par::Seq);
        let w = s.cotangent(seed);
        s.backward(&w, Par::Seq);
        let n = s.tape.acts.rows();
        for slot in s.tape.acts.slots() {
            let used = if slot.width == 0 { slot.value.len() } else { n * slot.width };
            prop_assert!(slot.value[..used].iter().all(|x| x.is_finite()), "{} value", slot.name);
            if !slot.grad.is_empty() {
                prop_assert!(slot.grad[..used].iter().all(|x| x.is_finite()), "{} grad", slot.name);
            }
        }
        prop_assert!(s.tape.grads.as_slice().iter().all(|x| x.is_finite()), "parameter grads");
    }
}

/// A longer window than `dims_strategy` draws, two layers, where errors through the recurrence
/// compound.
#[test]
fn long_window_gradients() {
    for kind in KINDS {
        let mut s = build::<f64>(kind, 2, 3, 12, 5, 7, Some(11), 99, false);
        s.tape.set_steps(10).unwrap();
        let out = s.output();
        let r = check_tape_gradients(&mut s.tape, &[s.x], out, 7, 16, 0);
        assert!(r.max_rel_err < TOL, "{kind:?}: {} ({})", r.max_rel_err, r.worst);
    }
}

/// Steps large enough to be split by hidden units across threads (`B·G·H² ≥ 4 Mi`), with widths
/// that do and do not divide into 16-unit blocks, on 2 and 3 threads: outputs, input and parameter
/// gradients are bit-identical to one thread.
#[test]
fn parallel_is_bit_identical_when_steps_split_by_units() {
    for (kind, b, t, e, h, v) in [
        (RecurrentKind::Gru, 20, 3, 24, 280, 50),
        (RecurrentKind::Gru, 8, 2, 16, 424, 40),
        (RecurrentKind::RnnTanh, 20, 3, 24, 460, 50),
        (RecurrentKind::RnnTanh, 16, 2, 10, 520, 30),
    ] {
        assert!(b * kind.gates() * h * h >= 4 << 20, "{kind:?} B={b} H={h} must be large enough to split");
        let run = |par: Par| {
            let mut s = build::<f32>(kind, 2, b, t, e, h, Some(v), 11, false);
            s.forward(par);
            let w = s.cotangent(11);
            s.backward(&w, par);
            let mut all = s.tape.acts.slot(s.output()).value.to_vec();
            all.extend_from_slice(&s.tape.acts.slot(s.x).grad);
            all.extend_from_slice(s.tape.grads.as_slice());
            bits(&all)
        };
        let seq = run(Par::Seq);
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let par = pool.install(|| run(Par::rayon(threads)));
            assert!(seq == par, "{kind:?} B={b} T={t} E={e} H={h} V={v}, {threads} threads");
        }
    }
}

/// The one-thread recurrence reads a cached `W_hhᵀ`: after the weights change, the next forward
/// pass uses the new weights.
#[test]
fn cached_recurrent_weights_follow_parameter_changes() {
    for kind in [RecurrentKind::Gru, RecurrentKind::RnnTanh] {
        let (b, t, h) = (3, 4, 6);
        let mut s: Stack<f64> = build(kind, 1, b, t, 5, h, None, 21, false);
        let n = b * t;
        for round in 0..3 {
            s.forward(Par::Seq);
            let want = naive_outputs(&s, n);
            let d = max_abs_diff(&s.tape.acts.slot(s.layers[0].output()).value[..n * h], &want[0]);
            assert!(d < 1e-12, "{kind:?} round {round}: {d:e}");
            let w_hh = match &s.layers[0] {
                Layer::Gru(op) => op.params().w_hh,
                Layer::RnnTanh(op) => op.params().w_hh,
                Layer::Lstm(op) => op.params().w_hh,
            };
            s.tape.params.get_mut(w_hh)[round * 7] += 0.3;
        }
    }
}

/// `reset_state` zeroes `h0`; `end_window` copies the last step of a shorter window.
#[test]
fn reset_and_end_window_use_the_current_window() {
    for kind in [RecurrentKind::Gru, RecurrentKind::RnnTanh] {
        let mut s: Stack<f64> = build(kind, 2, 2, 5, 3, 4, None, 11, false);
        s.tape.set_steps(3).unwrap();
        s.forward(Par::Seq);
        let last: Vec<Vec<f64>> =
            s.layers.iter().map(|l| s.tape.acts.slot(l.output()).value[2 * 8..3 * 8].to_vec()).collect();
        s.tape.end_window();
        for (layer, last) in s.layers.iter().zip(&last) {
            assert_eq!(&s.tape.acts.slot(layer.h0()).value[..], &last[..], "{kind:?}");
        }
        s.tape.reset_state();
        for layer in &s.layers {
            assert!(s.tape.acts.slot(layer.h0()).value.iter().all(|&x| x == 0.0), "{kind:?}");
        }
    }
}

/// One step of a one-unit GRU against numbers worked out by hand, `b_hn` inside the reset
/// product as in PyTorch.
#[test]
fn single_gru_step_literal() {
    // E = H = B = T = 1, x = 2, h0 = 0.5. Rows r, z, n.
    //   input side  x·W_ih + b_ih = [2·0.5 + 0.1, 2·(−0.25) + 0.2, 2·1 − 0.5] = [1.1, −0.3, 1.5]
    //   hidden side h·W_hh + b_hh = [0.5·0.4 − 0.2, 0.5·0.8 + 0.3, 0.5·(−2) + 0.25] = [0, 0.7, −0.75]
    //   r = σ(1.1 + 0) = σ(1.1);  z = σ(−0.3 + 0.7) = σ(0.4)
    //   n = tanh(1.5 + r·(−0.75));  h = (1 − z)·n + z·0.5
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let (r, z) = (sig(1.1), sig(0.4));
    let n = (1.5 - 0.75 * r).tanh();
    let want = (1.0 - z) * n + z * 0.5;
    let mut tape = Tape::<f64>::new(1, 1);
    let x = tape.acts.declare_rows("x", 1, true).unwrap();
    let gru = GruOp::declare(&mut tape, x, 1, 0).unwrap();
    let p = gru.params();
    tape.params.get_mut(p.w_ih).copy_from_slice(&[0.5, -0.25, 1.0]);
    tape.params.get_mut(p.b_ih).copy_from_slice(&[0.1, 0.2, -0.5]);
    tape.params.get_mut(p.w_hh).copy_from_slice(&[0.4, 0.8, -2.0]);
    tape.params.get_mut(p.b_hh).copy_from_slice(&[-0.2, 0.3, 0.25]);
    tape.acts.slot_mut(x).value[0] = 2.0;
    tape.acts.slot_mut(gru.slots().h0).value[0] = 0.5;
    tape.push(Box::new(gru.clone()) as Box<dyn Op<f64>>);
    tape.forward_range(0..1, Par::Seq);
    let gates = &tape.acts.slot(gru.slots().gates).value;
    for (got, want) in gates.iter().zip([r, z, n]) {
        assert!((got - want).abs() < 1e-15, "gates {gates:?}");
    }
    let got = tape.acts.slot(gru.output()).value[0];
    assert!((got - want).abs() < 1e-15, "h = {got}, want {want}");
}

/// One step of a one-unit Elman RNN against a hand computation.
#[test]
fn single_rnn_step_literal() {
    // h = tanh(x·W_ih + b_ih + h0·W_hh + b_hh) = tanh(2·0.5 + 0.1 + 0.5·(−0.4) + 0.3) = tanh(1.2)
    let mut tape = Tape::<f64>::new(1, 1);
    let x = tape.acts.declare_rows("x", 1, true).unwrap();
    let rnn = RnnTanhOp::declare(&mut tape, x, 1, 0).unwrap();
    let p = rnn.params();
    for (id, v) in [(p.w_ih, 0.5), (p.b_ih, 0.1), (p.w_hh, -0.4), (p.b_hh, 0.3)] {
        tape.params.get_mut(id)[0] = v;
    }
    tape.acts.slot_mut(x).value[0] = 2.0;
    tape.acts.slot_mut(rnn.slots().h0).value[0] = 0.5;
    tape.push(Box::new(rnn.clone()) as Box<dyn Op<f64>>);
    tape.forward_range(0..1, Par::Seq);
    let got = tape.acts.slot(rnn.output()).value[0];
    assert!((got - 1.2f64.tanh()).abs() < 1e-15, "{got}");
}

/// PyTorch's names and shapes for every layer of every kind, in PyTorch's order, drawn
/// U(−1/√H, 1/√H) from one stream per module, reproducibly.
#[test]
fn parameters_follow_pytorch() {
    let (e, h, v) = (3, 5, 7);
    for (kind, prefix, g) in
        [(RecurrentKind::Lstm, "lstm", 4), (RecurrentKind::Gru, "gru", 3), (RecurrentKind::RnnTanh, "rnn", 1)]
    {
        let tape = |seed| build::<f64>(kind, 2, 2, 3, e, h, Some(v), seed, true).tape;
        let t = tape(42);
        let layout = t.params.layout();
        let mut expect = Vec::new();
        for l in 0..2 {
            let input = if l == 0 { e } else { h };
            expect.push((format!("{prefix}.weight_ih_l{l}"), vec![g * h, input]));
            expect.push((format!("{prefix}.weight_hh_l{l}"), vec![g * h, h]));
            expect.push((format!("{prefix}.bias_ih_l{l}"), vec![g * h]));
            expect.push((format!("{prefix}.bias_hh_l{l}"), vec![g * h]));
        }
        expect.push(("fc.weight".into(), vec![v, h]));
        expect.push(("fc.bias".into(), vec![v]));
        let got: Vec<_> = layout.entries().iter().map(|en| (en.name.clone(), en.shape.clone())).collect();
        assert_eq!(got, expect, "{kind:?}");
        let bound = 1.0 / (h as f64).sqrt();
        for en in layout.entries() {
            let vals = t.params.get(layout.find(&en.name).unwrap());
            assert!(vals.iter().all(|x| x.abs() < bound), "{} outside ±{bound}", en.name);
            assert!(vals.iter().any(|&x| x != 0.0), "{} left at zero", en.name);
        }
        assert_eq!(t.params.as_slice(), tape(42).params.as_slice());
        assert_ne!(t.params.as_slice(), tape(43).params.as_slice());
        // The second layer continues the first one's stream (PyTorch's order), so the one-layer
        // model's tensors are the two-layer model's first four.
        let one = build::<f64>(kind, 1, 2, 3, e, h, None, 42, true).tape;
        let first_layer = one.params.as_slice();
        assert_eq!(&t.params.as_slice()[..first_layer.len()], first_layer, "{kind:?}");
    }
}
