//! The forward box as a `Stage`: prepare's checks, the schedule it builds, the config faces.

use stagewise_core::{Ctx, Dims, Error, Par, Rng, Stage, Tape};
use stagewise_forward::{DEFAULT_HIDDEN, Forward, ForwardConfig, ForwardImpl, RecurrentForward};

/// The sizes of a test case: what the box shares ([`Dims`]) and the widths of the model.
#[derive(Clone, Copy)]
struct Sizes {
    d: Dims,
    embed: usize,
}

fn dims(vocab: usize, embed: usize, _hidden: usize, batch: usize, seq_len: usize) -> Sizes {
    Sizes { d: Dims { vocab, batch, seq_len, params: 0 }, embed }
}

/// A tape with a stand-in for the embedding's output (`[T·B, E]`, with grad) as its output.
fn tape_with_input(s: &Sizes, seed: u64) -> Tape<f64> {
    let mut tape = Tape::new(s.d.batch, s.d.seq_len);
    let x = tape.acts.declare_rows("embedding.out", s.embed, true).expect("declare the input");
    let mut rng = Rng::new(seed);
    for v in &mut tape.acts.slot_mut(x).value {
        *v = rng.normal();
    }
    tape.set_output(x);
    tape
}

/// Any `Forward` implementation can be driven generically: this is how the pipeline sees it.
fn prepare_and_run<S: Forward<f64>>(stage: &mut S, s: &Sizes, tape: &mut Tape<f64>) -> Vec<f64> {
    stage.prepare(&s.d, tape).expect("prepare");
    tape.finish();
    stage.run((), tape, &Ctx::seq()).expect("run");
    let out = tape.output().expect("logits slot");
    tape.acts.slot(out).value.to_vec()
}

#[test]
fn prepare_builds_the_schedule_and_sets_the_logits_slot() {
    let d = dims(11, 4, 6, 3, 5);
    let mut tape = tape_with_input(&d, 1);
    let mut stage = RecurrentForward::<f64>::lstm(6, 7).unwrap();
    assert_eq!(stage.name(), "lstm");
    let logits = prepare_and_run(&mut stage, &d, &mut tape);
    let out = tape.output().unwrap();
    assert_eq!(Some(out), stage.logits());
    let slot = tape.acts.slot(out);
    assert_eq!(slot.width, d.d.vocab);
    assert_eq!(slot.grad.len(), slot.value.len(), "logits need a gradient buffer for the loss");
    assert_eq!(stage.op_range(), Some(0..2));
    assert_eq!(tape.ops().iter().map(|op| op.name()).collect::<Vec<_>>(), ["lstm", "fc"]);
    let names: Vec<_> = tape.params.layout().entries().iter().map(|e| e.name.clone()).collect();
    assert_eq!(
        names,
        [
            "lstm.weight_ih_l0",
            "lstm.weight_hh_l0",
            "lstm.bias_ih_l0",
            "lstm.bias_hh_l0",
            "fc.weight",
            "fc.bias"
        ]
    );
    assert!(logits.iter().all(|x| x.is_finite()) && logits.iter().any(|&x| x != 0.0));

    // Running again (same window, same state) reproduces the logits; a shorter window works.
    stage.run((), &mut tape, &Ctx::seq()).unwrap();
    assert_eq!(tape.acts.slot(out).value, logits);
    tape.set_steps(2).unwrap();
    stage.run((), &mut tape, &Ctx { par: Par::rayon(2), ..Ctx::seq() }).unwrap();
    let short = &tape.acts.slot(out).value[..2 * 3 * 11];
    assert!(short.iter().zip(&logits).all(|(a, b)| (a - b).abs() < 1e-12));
}

#[test]
fn config_face_matches_the_type_face() {
    let d = dims(9, 3, 5, 2, 4);
    let cfg = ForwardConfig::lstm(5);
    let mut by_config = ForwardImpl::<f64>::from_config(&cfg, false, 21).unwrap();
    assert_eq!(by_config.name(), "lstm");
    let mut by_type = RecurrentForward::<f64>::lstm(5, 21).unwrap();
    let a = prepare_and_run(&mut by_config, &d, &mut tape_with_input(&d, 2));
    let b = prepare_and_run(&mut by_type, &d, &mut tape_with_input(&d, 2));
    assert_eq!(a, b);
}

#[test]
fn prepare_rejects_bad_wiring() {
    let d = dims(9, 3, 5, 2, 4);
    let prepare =
        |tape: &mut Tape<f64>, d: &Dims| RecurrentForward::<f64>::lstm(5, 0).unwrap().prepare(d, tape);

    // Nothing upstream wrote an output slot.
    let err = prepare(&mut Tape::new(2, 4), &d.d).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");

    // The upstream slot is not laid out by rows.
    let mut flat = Tape::<f64>::new(2, 4);
    let x = flat.acts.declare_flat("embedding.out", &[24], true).unwrap();
    flat.set_output(x);
    let err = prepare(&mut flat, &d.d).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }) && err.to_string().contains("embedding.out"), "{err}");

    // Dims disagree with the tape's sizes.
    let err = prepare(&mut tape_with_input(&dims(9, 3, 5, 3, 4), 0), &d.d).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");

    // Running before preparing is an error, not a silent no-op.
    let stage = RecurrentForward::<f64>::lstm(5, 0).unwrap();
    assert!(stage.run((), &mut tape_with_input(&d, 0), &Ctx::seq()).is_err());

    // Preparing twice would declare the parameters twice.
    let mut stage = RecurrentForward::<f64>::lstm(5, 0).unwrap();
    let mut tape = tape_with_input(&d, 0);
    stage.prepare(&d.d, &mut tape).unwrap();
    assert!(stage.prepare(&d.d, &mut tape).is_err());
}

#[test]
fn zero_hidden_is_a_config_error_naming_the_field() {
    for err in [
        RecurrentForward::<f32>::lstm(0, 0).unwrap_err(),
        ForwardImpl::<f32>::from_config(&ForwardConfig::lstm(0), false, 0).unwrap_err(),
        ForwardConfig::lstm(0).validate().unwrap_err(),
    ] {
        assert!(matches!(&err, Error::Config { field, .. } if field == "forward.hidden"), "{err}");
    }
}

#[test]
fn config_parses_from_toml() {
    let cfg: ForwardConfig = toml::from_str("kind = \"lstm\"").unwrap();
    assert_eq!(cfg, ForwardConfig::lstm(DEFAULT_HIDDEN));
    assert_eq!(cfg, ForwardConfig::default());
    let cfg: ForwardConfig = toml::from_str("kind = \"lstm\"\nhidden = 64").unwrap();
    assert_eq!(cfg.hidden(), 64);
    assert_eq!(toml::from_str::<ForwardConfig>(&toml::to_string(&cfg).unwrap()).unwrap(), cfg);

    let err = toml::from_str::<ForwardConfig>("kind = \"lstm\"\nhiden = 64").unwrap_err().to_string();
    assert!(err.contains("hiden"), "{err}");
    let err = toml::from_str::<ForwardConfig>("kind = \"transformer\"").unwrap_err().to_string();
    assert!(err.contains("transformer"), "{err}");
    assert!(toml::from_str::<ForwardConfig>("hidden = 64").is_err(), "kind is required");
}

/// On several threads the tape overlaps the head's product with the recurrence (when a step is
/// too small to split by hidden units); every buffer it writes — logits, the LSTM's saved
/// intermediates, the head's packed weights — must equal the one-thread schedule bit for bit,
/// over consecutive windows (state carried), with and without the folded bias (`H < 256`, `H ≥ 256`).
#[test]
fn overlapped_schedule_is_bit_identical_to_one_thread() {
    // The first two take the overlapped schedule (folded bias, then not; a sabotaged schedule
    // fails them); the last two are too small for it (a single stream; two-row pieces) and must
    // fall back to the plain one.
    for (v, e, h, b, t, overlaps) in [
        (1000, 16, 128, 8, 9, true),
        (2000, 8, 260, 8, 6, true),
        (33, 5, 7, 1, 3, false),
        (50, 12, 40, 3, 2, false),
    ] {
        let d = dims(v, e, h, b, t).d;
        let run = |par: Par| {
            let mut tape = Tape::<f32>::new(b, t);
            let x = tape.acts.declare_rows("embedding.out", e, true).unwrap();
            tape.set_output(x);
            let mut stage = RecurrentForward::<f32>::lstm(h, 5).unwrap();
            stage.prepare(&d, &mut tape).unwrap();
            tape.finish();
            let cx = Ctx { par, ..Ctx::seq() };
            let mut rng = Rng::new(8);
            let mut seen = Vec::new();
            for steps in [t, t, 1, t] {
                tape.set_steps(steps).unwrap();
                for v in &mut tape.acts.slot_mut(x).value {
                    *v = rng.normal() as f32;
                }
                stage.run((), &mut tape, &cx).unwrap();
                // Every slot but the head's left operand: with the packed kernel it is laid out in
                // tiles per piece of the window, so the overlapped schedule (two pieces) places
                // rows differently; the logits computed from it are compared.
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
            assert!(one == many, "V={v} E={e} H={h} B={b} T={t}, {threads} threads");
            // Three of the four windows have several steps; the one-step window never overlaps.
            assert_eq!(
                overlapped,
                if overlaps { 3 } else { 0 },
                "V={v} H={h} B={b} T={t}, {threads} threads"
            );
        }
    }
}
