//! The numeric backward box against the reverse sweep on a small LSTM model (the built-in
//! forward stage), in `f64`: the same gradients to 1e-6, the same activations and carried state
//! afterwards, the same clipping, and the same bits at any thread count.

use stagewise_backward::{BackwardConfig, NumericSweep, ReverseSweep};
use stagewise_core::{Ctx, Dims, Par, Rng, SlotId, Stage, Tape};
use stagewise_forward::{LstmSlots, RecurrentForward};

/// A tape holding a stand-in for the embedding's output (`[T·B, E]`), an LSTM of `hidden` units
/// and the head to `vocab` scores, run forwards once from a random non-zero state, with a random
/// cotangent in the logits' gradient (the seed). Everything is drawn from `seed`, so two calls
/// build identical tapes.
fn model(
    seed: u64,
    vocab: usize,
    embed: usize,
    hidden: usize,
    batch: usize,
    steps: usize,
) -> (Tape<f64>, RecurrentForward<f64>, SlotId, Dims) {
    let mut dims = Dims { vocab, batch, seq_len: steps, params: 0 };
    let mut tape = Tape::new(batch, steps);
    let x = tape.acts.declare_rows("embedding.out", embed, true).expect("input slot");
    tape.set_output(x);
    let mut forward = RecurrentForward::lstm(hidden, seed).expect("stage");
    forward.prepare(&dims, &mut tape).expect("prepare");
    tape.finish();
    dims.params = tape.params.layout().total();
    let mut rng = Rng::new(seed ^ 0x5EED);
    for v in tape.acts.slot_mut(x).value.iter_mut() {
        *v = rng.normal();
    }
    let LstmSlots { h0, c0, .. } = forward.lstm_slots().expect("prepared");
    for s in [h0, c0] {
        for v in tape.acts.slot_mut(s).value.iter_mut() {
            *v = 0.5 * rng.normal();
        }
    }
    forward.run((), &mut tape, &Ctx::seq()).expect("forward");
    let logits = forward.logits().expect("prepared");
    for g in tape.acts.slot_mut(logits).grad.iter_mut() {
        *g = rng.normal() / (batch * steps) as f64;
    }
    (tape, forward, logits, dims)
}

/// Runs a backward stage on the tape, then carries the state on as a training cycle does.
fn backward<S>(mut stage: S, tape: &mut Tape<f64>, logits: SlotId, dims: &Dims, par: Par) -> Vec<f64>
where
    S: for<'a> Stage<Input<'a> = SlotId, Output = Tape<f64>>,
{
    stage.prepare(dims, tape).expect("prepare backward");
    stage.run(logits, tape, &Ctx { par, ..Ctx::seq() }).expect("backward");
    tape.end_window();
    tape.grads.as_slice().to_vec()
}

fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / scale).fold(0.0, f64::max)
}

#[test]
fn numeric_agrees_with_reverse_and_leaves_the_activations_of_a_plain_forward() {
    for (seed, vocab, embed, hidden, batch, steps) in [(1, 7, 3, 4, 2, 3), (2, 11, 5, 6, 3, 4)] {
        let (mut a, fwd, logits, dims) = model(seed, vocab, embed, hidden, batch, steps);
        let (mut b, _, _, _) = model(seed, vocab, embed, hidden, batch, steps);
        let reverse = backward(ReverseSweep::new(), &mut a, logits, &dims, Par::Seq);
        let numeric = backward(NumericSweep::clipped(0.0), &mut b, logits, &dims, Par::Seq);
        let err = max_rel_diff(&numeric, &reverse);
        assert!(err < 1e-6, "seed {seed}: numeric and reverse differ by {err:e} of the largest gradient");
        assert!(reverse.iter().any(|&g| g.abs() > 1e-3), "a gradient worth checking");
        // The forward pass after the sweep ran at exactly the original parameters.
        assert_eq!(a.params.as_slice(), b.params.as_slice());
        assert_eq!(a.acts.slot(logits).grad, b.acts.slot(logits).grad, "the seed is left as it was");
        let s = fwd.lstm_slots().expect("prepared");
        for slot in [s.h, s.c, s.h0, s.c0] {
            assert_eq!(a.acts.slot(slot).value, b.acts.slot(slot).value, "{}", a.acts.slot(slot).name);
        }
        let (na, nb) = (a.grad_norm.expect("measured"), b.grad_norm.expect("measured"));
        assert!((na - nb).abs() < 1e-6 * na, "{na} vs {nb}");
    }
}

#[test]
fn both_kinds_clip_alike_and_numeric_is_the_same_at_any_thread_count() {
    let (mut a, _, logits, dims) = model(3, 9, 4, 5, 2, 3);
    let reverse = backward(ReverseSweep::new(), &mut a, logits, &dims, Par::Seq);
    let norm = reverse.iter().map(|g| g * g).sum::<f64>().sqrt();
    assert_eq!(a.grad_norm.map(|n| (n - norm).abs() < 1e-12 * norm), Some(true));
    let clip = norm / 3.0;
    let mut outs = Vec::new();
    for (kind, par) in [
        (BackwardConfig::Reverse { clip }, Par::Seq),
        (BackwardConfig::Numeric { clip }, Par::Seq),
        (BackwardConfig::Numeric { clip }, Par::rayon(2)),
    ] {
        let (mut t, _, _, _) = model(3, 9, 4, 5, 2, 3);
        let g = backward(kind.build::<f64>(), &mut t, logits, &dims, par);
        let clipped = g.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!((clipped - clip).abs() < 1e-6 * clip, "{kind:?}: {clipped} vs {clip}");
        let pre = t.grad_norm.expect("measured");
        assert!((pre - norm).abs() < 1e-6 * norm, "{kind:?}: the norm before clipping, {pre} vs {norm}");
        outs.push((g, pre));
    }
    assert!(max_rel_diff(&outs[1].0, &outs[0].0) < 1e-6);
    assert_eq!(outs[1].0, outs[2].0, "numeric: bit-identical on two threads");
    assert_eq!(outs[1].1.to_bits(), outs[2].1.to_bits());
}
