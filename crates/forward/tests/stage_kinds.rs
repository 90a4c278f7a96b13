//! The forward stage over every kind, with layers, dropout and a head tied to the embedding table:
//! the config face, PyTorch's names, bit-identity across thread counts with the overlapped
//! schedule taken, dropout in training and evaluation, and the tied head's gradients.

// Test helpers outside `#[test]` functions: clippy.toml only exempts the latter.
#![allow(clippy::unwrap_used)]

use stagewise_core::{Ctx, Dims, Error, Float, Mode, Par, Rng, SlotId, Stage, Tape};
use stagewise_embedding::{EmbeddingInit, TableEmbedding};
use stagewise_forward::{ForwardConfig, ForwardImpl, Layer, RecurrentForward, RecurrentKind, RecurrentSpec};
use stagewise_testkit::check_tape_gradients;

fn spec(kind: RecurrentKind, hidden: usize, layers: usize, dropout: f64, tied: bool) -> RecurrentSpec {
    RecurrentSpec { kind, hidden, layers, dropout, tied }
}

/// A tape with a random stand-in for the embedding's output (`[T·B, E]`, with grad) and the stage
/// prepared on it.
fn stage_on_input<T: Float>(
    spec: RecurrentSpec,
    d: Dims,
    embed: usize,
    seed: u64,
) -> (Tape<T>, RecurrentForward<T>, SlotId) {
    let mut tape = Tape::<T>::new(d.batch, d.seq_len);
    let x = tape.acts.declare_rows("embedding.out", embed, true).unwrap();
    let mut rng = Rng::new(seed);
    for v in &mut tape.acts.slot_mut(x).value {
        *v = T::from_f64(rng.normal());
    }
    tape.set_output(x);
    let mut stage = RecurrentForward::<T>::new(spec, seed).unwrap();
    stage.prepare(&d, &mut tape).unwrap();
    tape.finish();
    (tape, stage, x)
}

/// A tape with the table embedding and the stage prepared on it, and a window of random ids.
fn stage_on_table<T: Float>(
    spec: RecurrentSpec,
    d: Dims,
    embed: usize,
    freeze: bool,
    seed: u64,
) -> (Tape<T>, TableEmbedding<T>, RecurrentForward<T>, Vec<u32>) {
    let mut tape = Tape::<T>::new(d.batch, d.seq_len);
    let mut table = TableEmbedding::new(embed, seed).with_init(EmbeddingInit::Uniform).with_freeze(freeze);
    table.prepare(&d, &mut tape).unwrap();
    let mut stage = RecurrentForward::<T>::new(spec, seed).unwrap();
    stage.prepare(&d, &mut tape).unwrap();
    tape.finish();
    let mut rng = Rng::new(seed ^ 5);
    let ids = (0..d.batch * d.seq_len).map(|_| rng.below(d.vocab as u64) as u32).collect();
    (tape, table, stage, ids)
}

fn dims(vocab: usize, batch: usize, seq_len: usize) -> Dims {
    Dims { vocab, batch, seq_len, params: 0 }
}

fn names<T: Float>(tape: &Tape<T>) -> Vec<String> {
    tape.params.layout().entries().iter().map(|e| e.name.clone()).collect()
}

#[test]
fn config_parses_every_kind_and_validates_naming_the_field() {
    let cfg: ForwardConfig = toml::from_str("kind = \"gru\"").unwrap();
    assert_eq!(cfg, ForwardConfig::new(RecurrentKind::Gru, 128));
    assert_eq!((cfg.kind(), cfg.hidden(), cfg.layers(), cfg.dropout()), (RecurrentKind::Gru, 128, 1, 0.0));
    let cfg: ForwardConfig =
        toml::from_str("kind = \"rnn_tanh\"\nhidden = 64\nlayers = 3\ndropout = 0.25").unwrap();
    assert_eq!(cfg, ForwardConfig::with(RecurrentKind::RnnTanh, 64, 3, 0.25));
    assert_eq!(toml::from_str::<ForwardConfig>(&toml::to_string(&cfg).unwrap()).unwrap(), cfg);
    let cfg: ForwardConfig = toml::from_str("kind = \"lstm\"\nlayers = 2").unwrap();
    assert_eq!(cfg, ForwardConfig::with(RecurrentKind::Lstm, 128, 2, 0.0));
    let err = toml::from_str::<ForwardConfig>("kind = \"gru\"\nlayer = 2").unwrap_err().to_string();
    assert!(err.contains("layer"), "{err}");
    let err = toml::from_str::<ForwardConfig>("kind = \"rnn_relu\"").unwrap_err().to_string();
    assert!(err.contains("rnn_relu"), "{err}");

    for (cfg, field) in [
        (ForwardConfig::with(RecurrentKind::Gru, 0, 1, 0.0), "forward.hidden"),
        (ForwardConfig::with(RecurrentKind::Gru, 8, 0, 0.0), "forward.layers"),
        (ForwardConfig::with(RecurrentKind::RnnTanh, 8, 1, 1.0), "forward.dropout"),
        (ForwardConfig::with(RecurrentKind::Lstm, 8, 1, -0.1), "forward.dropout"),
        (ForwardConfig::with(RecurrentKind::Lstm, 8, 1, f64::NAN), "forward.dropout"),
    ] {
        for err in [cfg.validate().unwrap_err(), ForwardImpl::<f32>::from_config(&cfg, false, 0).unwrap_err()]
        {
            assert!(matches!(&err, Error::Config { field: f, .. } if f == field), "{cfg:?}: {err}");
            assert_eq!(err.to_string().lines().count(), 1, "{err}");
        }
    }
}

/// The stage is named after its kind (what checkpoints record), and declares PyTorch's names in
/// PyTorch's order, every layer's ops, then the head.
#[test]
fn stage_names_parameters_and_ops() {
    let d = dims(11, 2, 3);
    for (kind, name, prefix) in [
        (RecurrentKind::Lstm, "lstm", "lstm"),
        (RecurrentKind::Gru, "gru", "gru"),
        (RecurrentKind::RnnTanh, "rnn_tanh", "rnn"),
    ] {
        let (tape, stage, _) = stage_on_input::<f64>(spec(kind, 6, 2, 0.0, false), d, 4, 1);
        assert_eq!(stage.name(), name);
        let mut want = Vec::new();
        for l in 0..2 {
            for t in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
                want.push(format!("{prefix}.{t}_l{l}"));
            }
        }
        want.extend(["fc.weight".to_owned(), "fc.bias".to_owned()]);
        assert_eq!(names(&tape), want);
        let ops: Vec<_> = tape.ops().iter().map(|op| op.name().to_owned()).collect();
        assert_eq!(ops, [prefix.to_owned(), format!("{prefix}_l1"), "fc".to_owned()]);
        assert_eq!(stage.op_range(), Some(0..3));

        let (tape, stage, _) = stage_on_input::<f64>(spec(kind, 6, 2, 0.3, false), d, 4, 1);
        let ops: Vec<_> = tape.ops().iter().map(|op| op.name().to_owned()).collect();
        assert_eq!(
            ops,
            [format!("{prefix}.dropout_in"), prefix.to_owned(), format!("{prefix}_l1"), "fc".to_owned()]
        );
        assert_eq!(stage.dropout_masks().len(), 3, "input, after layer 0, after layer 1");
        assert_eq!(names(&tape).len(), 10, "dropout adds no parameter");
    }
}

/// One stage run per window over several windows (state carried, a short window among them), in
/// training and evaluation, on 1, 2 and 3 threads: every slot's value bit-identical, and the tape
/// overlaps the head with the last layer's recurrence on several threads (with dropout too).
#[test]
fn stages_are_bit_identical_across_thread_counts_with_the_overlap_taken() {
    let cases = [
        (spec(RecurrentKind::Gru, 128, 1, 0.0, false), 16),
        (spec(RecurrentKind::Gru, 96, 2, 0.0, false), 16),
        (spec(RecurrentKind::RnnTanh, 128, 2, 0.0, false), 16),
        (spec(RecurrentKind::Lstm, 64, 2, 0.4, false), 16),
        (spec(RecurrentKind::Gru, 48, 2, 0.2, true), 48),
    ];
    for (spec, embed) in cases {
        let (v, b, t) = (3000, 8, 9);
        let run = |par: Par| {
            let (mut tape, table, stage, ids) = stage_on_table::<f32>(spec, dims(v, b, t), embed, false, 5);
            let mut seen = Vec::new();
            for (step, (steps, mode)) in
                [(t, Mode::Train), (t, Mode::Eval), (1, Mode::Train), (t, Mode::Train)]
                    .into_iter()
                    .enumerate()
            {
                let cx = Ctx { par, mode, step: step as u64, seed: 5 };
                tape.set_steps(steps).unwrap();
                table.run(&ids[..steps * b], &mut tape, &cx).unwrap();
                stage.run((), &mut tape, &cx).unwrap();
                // Every slot but the head's packed left operand, laid out per piece of the window.
                for slot in
                    tape.acts.slots().iter().filter(|s| !matches!(s.name.as_str(), "fc.x1" | "fc.x_tiles"))
                {
                    seen.extend(slot.value.iter().map(|v| v.to_bits()));
                }
                tape.end_window();
            }
            (seen, tape.overlapped_runs())
        };
        let (one, none) = run(Par::Seq);
        assert_eq!(none, 0, "one thread never overlaps");
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (many, overlapped) = pool.install(|| run(Par::rayon(threads)));
            assert!(one == many, "{spec:?}, {threads} threads");
            assert_eq!(overlapped, 3, "{spec:?}, {threads} threads: the one-step window never overlaps");
        }
    }
}

/// The VJPs of a stack with dropout (masks drawn in training mode, then held), against finite
/// differences, for every kind.
#[test]
fn dropout_vjp_matches_finite_differences() {
    for kind in [RecurrentKind::Lstm, RecurrentKind::Gru, RecurrentKind::RnnTanh] {
        let (mut tape, stage, x) = stage_on_input::<f64>(spec(kind, 5, 2, 0.3, false), dims(7, 3, 4), 4, 9);
        tape.set_steps(3).unwrap();
        stage.run((), &mut tape, &Ctx { step: 4, ..Ctx::seq() }).unwrap();
        let masks = stage.dropout_masks();
        let zeros: usize =
            masks.iter().map(|&m| tape.acts.slot(m).value.iter().filter(|&&v| v == 0.0).count()).sum();
        assert!(zeros > 0, "{kind:?}: some units dropped");
        let out = tape.output().unwrap();
        let r = check_tape_gradients(&mut tape, &[x], out, 3, 8, 0);
        assert!(r.max_rel_err < 1e-6, "{kind:?}: {} ({})", r.max_rel_err, r.worst);
    }
}

/// Dropout: in evaluation the stage is bit-identical to the same stage without dropout (same
/// seed, so the same parameters), even after training windows; in training a fraction near `p`
/// of a layer's outputs is zeroed and the rest scaled by `1/(1 − p)`, the masks the same for the
/// same seed and step and different for another step.
#[test]
fn dropout_is_off_in_evaluation_and_scales_in_training() {
    let (d, e, p) = (dims(300, 16, 20), 32, 0.3);
    for kind in [RecurrentKind::Lstm, RecurrentKind::Gru, RecurrentKind::RnnTanh] {
        let (mut plain, plain_stage, _) = stage_on_input::<f32>(spec(kind, 64, 2, 0.0, false), d, e, 3);
        let (mut dropped, stage, _) = stage_on_input::<f32>(spec(kind, 64, 2, p, false), d, e, 3);
        assert_eq!(plain.params.as_slice(), dropped.params.as_slice(), "dropout changes no parameter");
        let train = Ctx { step: 7, ..Ctx::seq() };
        stage.run((), &mut dropped, &train).unwrap();

        // Training: each layer's dropped output is its output times the mask.
        let layers = stage.layers().to_vec();
        let masks = stage.dropout_masks();
        assert_eq!(masks.len(), 3);
        let keep = (1.0 / (1.0 - p)) as f32;
        for (l, layer) in layers.iter().enumerate() {
            let n = dropped.acts.rows() * 64;
            let h = &dropped.acts.slot(layer.output()).value[..n];
            let mask = &dropped.acts.slot(masks[l + 1]).value[..n];
            let zeroed = mask.iter().filter(|&&m| m == 0.0).count() as f64 / n as f64;
            assert!((zeroed - p).abs() < 0.03, "{kind:?} layer {l}: {zeroed} zeroed");
            assert!(mask.iter().all(|&m| m == 0.0 || m == keep), "{kind:?}: mask values");
            let next = if l + 1 < layers.len() {
                match &layers[l + 1] {
                    Layer::Lstm(op) => op.slots().input,
                    Layer::Gru(op) => op.slots().input,
                    Layer::RnnTanh(op) => op.slots().input,
                }
            } else {
                stage.head_input().unwrap()
            };
            let out = &dropped.acts.slot(next).value[..n];
            for ((o, h), m) in out.iter().zip(h).zip(mask) {
                assert_eq!(o.to_bits(), (h * m).to_bits(), "{kind:?} layer {l}");
            }
        }
        // The same seed and step draw the same masks; another step others.
        let first: Vec<f32> = masks.iter().flat_map(|&m| dropped.acts.slot(m).value.to_vec()).collect();
        stage.run((), &mut dropped, &Ctx { step: 8, ..Ctx::seq() }).unwrap();
        let other: Vec<f32> = masks.iter().flat_map(|&m| dropped.acts.slot(m).value.to_vec()).collect();
        assert_ne!(first, other, "{kind:?}: a new step draws new masks");
        let (mut again, again_stage, _) = stage_on_input::<f32>(spec(kind, 64, 2, p, false), d, e, 3);
        again_stage.run((), &mut again, &train).unwrap();
        let same: Vec<f32> = masks.iter().flat_map(|&m| again.acts.slot(m).value.to_vec()).collect();
        assert_eq!(first, same, "{kind:?}: same seed and step, same masks");

        // Evaluation: the logits of the model without dropout, bit for bit, window after window.
        for round in 0..2 {
            dropped.reset_state();
            plain.reset_state();
            stage.run((), &mut dropped, &Ctx::seq().eval()).unwrap();
            plain_stage.run((), &mut plain, &Ctx::seq().eval()).unwrap();
            let (a, b) = (dropped.output().unwrap(), plain.output().unwrap());
            let bits = |t: &Tape<f32>, s: SlotId| {
                t.acts.slot(s).value.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert!(bits(&dropped, a) == bits(&plain, b), "{kind:?} round {round}");
            stage.run((), &mut dropped, &train).unwrap();
        }
    }
}

/// A tied head: no `fc.weight`; the head's weight is `embedding.weight`; the gradient of the table
/// is the sum of the gather's and the head's shares, checked against finite differences.
#[test]
fn tied_head_shares_the_table_and_its_gradient() {
    for kind in [RecurrentKind::Lstm, RecurrentKind::Gru, RecurrentKind::RnnTanh] {
        let (d, e) = (dims(13, 3, 4), 6);
        let (mut tape, table, stage, ids) =
            stage_on_table::<f64>(spec(kind, e, 2, 0.0, true), d, e, false, 4);
        let names = names(&tape);
        assert!(!names.iter().any(|n| n == "fc.weight"), "{names:?}");
        assert_eq!(names.first().map(String::as_str), Some("embedding.weight"));
        assert_eq!(names.last().map(String::as_str), Some("fc.bias"));
        let table_id = tape.params.layout().find("embedding.weight").unwrap();
        assert_eq!(stage.head().unwrap().params().0, table_id);

        tape.set_steps(3).unwrap();
        let cx = Ctx::seq();
        table.run(&ids[..3 * d.batch], &mut tape, &cx).unwrap();
        stage.run((), &mut tape, &cx).unwrap();
        let out = tape.output().unwrap();
        let r = check_tape_gradients(&mut tape, &[], out, 11, 8, 0);
        assert!(r.max_rel_err < 1e-6, "{kind:?}: {} ({})", r.max_rel_err, r.worst);

        // Both shares land in the one gradient: the head's share (its VJP alone) plus the
        // gather's (the embedding output's gradient scattered by id) is the whole.
        table.run(&ids[..3 * d.batch], &mut tape, &cx).unwrap();
        stage.run((), &mut tape, &cx).unwrap();
        let mut rng = Rng::new(2);
        for g in &mut tape.acts.slot_mut(out).grad {
            *g = rng.normal();
        }
        let (ops, params, acts, grads) = tape.sweep_parts();
        grads.fill_zero();
        for op in ops.iter().rev() {
            op.vjp(params, acts, grads, Par::Seq);
        }
        let total = grads.get(table_id).to_vec();
        let emb = acts.find("embedding.out").unwrap();
        let mut gather = vec![0.0; total.len()];
        for (row, &id) in acts.slot(emb).grad[..3 * d.batch * e].chunks_exact(e).zip(&ids) {
            let id = id as usize;
            gather[id * e..(id + 1) * e].iter_mut().zip(row).for_each(|(g, r)| *g += r);
        }
        grads.fill_zero();
        ops[ops.len() - 1].vjp(params, acts, grads, Par::Seq);
        let head = grads.get(table_id).to_vec();
        assert!(head.iter().any(|&g| g != 0.0) && gather.iter().any(|&g| g != 0.0), "{kind:?}");
        for ((t, h), g) in total.iter().zip(&head).zip(&gather) {
            assert!((t - (h + g)).abs() <= 1e-12 * t.abs().max(1.0), "{kind:?}: {t} vs {h} + {g}");
        }
    }
}

/// A tied head needs the table's width to be the last layer's; without a table, or with another
/// width, the stage fails naming `embedding.tied`.
#[test]
fn tied_head_needs_a_table_of_the_hidden_width() {
    let d = dims(13, 2, 3);
    let mut tape = Tape::<f64>::new(2, 3);
    let mut table = TableEmbedding::<f64>::new(6, 0);
    table.prepare(&d, &mut tape).unwrap();
    let mut stage = RecurrentForward::<f64>::new(spec(RecurrentKind::Gru, 8, 1, 0.0, true), 0).unwrap();
    let err = stage.prepare(&d, &mut tape).unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "embedding.tied"), "{err}");
    assert!(
        err.to_string().contains("forward.hidden (8)") && err.to_string().contains("embedding.dim (6)"),
        "{err}"
    );

    let mut tape = Tape::<f64>::new(2, 3);
    let x = tape.acts.declare_rows("embedding.out", 8, true).unwrap();
    tape.set_output(x);
    let mut stage = RecurrentForward::<f64>::new(spec(RecurrentKind::Lstm, 8, 1, 0.0, true), 0).unwrap();
    let err = stage.prepare(&d, &mut tape).unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "embedding.tied"), "{err}");

    // The config face passes `tied` through.
    let mut tape = Tape::<f64>::new(2, 3);
    let mut table = TableEmbedding::<f64>::new(8, 0);
    table.prepare(&d, &mut tape).unwrap();
    let cfg = ForwardConfig::with(RecurrentKind::RnnTanh, 8, 2, 0.1);
    let mut stage = ForwardImpl::<f64>::from_config(&cfg, true, 0).unwrap();
    stage.prepare(&d, &mut tape).unwrap();
    assert!(tape.params.layout().find("fc.weight").is_none());
}

/// A frozen table, tied or not, gets no gradient from either path (optimizers skip it anyway); the
/// head's bias and the layers still get theirs.
#[test]
fn frozen_table_gets_no_gradient() {
    for tied in [false, true] {
        let (d, e) = (dims(13, 3, 4), 6);
        let (mut tape, table, stage, ids) =
            stage_on_table::<f64>(spec(RecurrentKind::Gru, e, 1, 0.0, tied), d, e, true, 4);
        let table_id = tape.params.layout().find("embedding.weight").unwrap();
        assert!(!tape.params.layout().trainable(table_id));
        table.run(&ids, &mut tape, &Ctx::seq()).unwrap();
        stage.run((), &mut tape, &Ctx::seq()).unwrap();
        let out = tape.output().unwrap();
        tape.acts.slot_mut(out).grad.fill(0.5);
        let (ops, params, acts, grads) = tape.sweep_parts();
        grads.fill_zero();
        for op in ops.iter().rev() {
            op.vjp(params, acts, grads, Par::Seq);
        }
        assert!(tape.grads.get(table_id).iter().all(|&g| g == 0.0), "tied = {tied}");
        let bias = tape.params.layout().find("fc.bias").unwrap();
        assert!(tape.grads.get(bias).iter().all(|&g| g != 0.0), "tied = {tied}");
        let w_ih = tape.params.layout().find("gru.weight_ih_l0").unwrap();
        assert!(tape.grads.get(w_ih).iter().any(|&g| g != 0.0), "tied = {tied}");
    }
}
