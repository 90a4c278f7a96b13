//! A tiny training run through the library: it learns, it writes its files, and it is
//! deterministic (run to run, and at one or two threads).

use crate::util::{TempDir, corpus, tiny_config};
use stagewise_pipeline::checkpoint::Checkpoint;
use stagewise_pipeline::train::{EpochMetrics, TrainOutcome, train};
use stagewise_pipeline::{Config, Model};
use std::path::Path;

/// The keys every line of `metrics.jsonl` must have (a contract: added to, never renamed).
const METRIC_KEYS: [&str; 7] =
    ["epoch", "train_loss", "test_loss", "test_ppl", "test_acc", "tokens_per_s", "seconds"];

fn run(config: &Config, out: &Path) -> TrainOutcome {
    train(config, Model::builder(config).unwrap(), out, &mut []).unwrap()
}

/// The figures of an epoch that must reproduce exactly (everything but timings), as bits.
fn reproducible(m: &EpochMetrics) -> (usize, [u64; 4]) {
    (m.epoch, [m.train_loss, m.test_loss, m.test_ppl, m.test_acc].map(f64::to_bits))
}

fn checkpoint_params(out: &Path) -> Vec<f32> {
    Checkpoint::load(&out.join("model.ckpt")).unwrap().params
}

#[test]
fn tiny_run_learns_writes_its_files_and_reproduces() {
    let dir = TempDir::new("e2e");
    let text = corpus(110);
    assert!((500..1000).contains(&text.split_whitespace().count()));
    std::fs::write(dir.join("corpus.txt"), text).unwrap();
    let config = tiny_config(dir.join("corpus.txt"));

    let out = dir.join("run1");
    let outcome = run(&config, &out);
    let epochs = &outcome.epochs;
    assert_eq!(epochs.len(), 3);
    assert!(epochs[2].train_loss < epochs[0].train_loss, "did not learn: {epochs:?}");
    for m in epochs {
        assert!(m.train_loss.is_finite() && m.test_loss.is_finite(), "{m:?}");
        assert!(m.test_ppl.is_finite() && m.test_ppl > 1.0, "{m:?}");
        assert!((0.0..=1.0).contains(&m.test_acc), "{m:?}");
    }
    assert!(outcome.unigram_ppl.is_finite() && outcome.unigram_ppl > 1.0);

    // model.ckpt: loadable, its layout is the model's, its parameters the trained ones.
    assert_eq!(outcome.checkpoint, out.join("model.ckpt"));
    let ck = Checkpoint::load(&outcome.checkpoint).unwrap();
    assert_eq!(ck.layout.total(), outcome.model.dims.params);
    assert_eq!(&ck.layout, outcome.model.tape.params.layout());
    assert_eq!(ck.params, outcome.model.tape.params.as_slice());
    assert_eq!((ck.epoch, ck.seed), (3, config.train.seed));
    assert_eq!(ck.step, outcome.model.opt_state.step);
    assert!(ck.step > 0);
    assert_eq!(Config::from_toml(&ck.config_toml, "embedded").unwrap(), config);
    assert!(out.join("vocab.json").is_file());
    assert_eq!(std::fs::read_to_string(out.join("vocab.json")).unwrap(), ck.vocab_json);

    // metrics.jsonl: one object per epoch with (at least) the contract's keys and the same figures.
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines.len(), 3, "{metrics}");
    for (line, m) in lines.iter().zip(epochs) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let object = value.as_object().unwrap();
        for key in METRIC_KEYS {
            assert!(object.contains_key(key), "`{key}` missing from {line}");
        }
        assert_eq!(object["epoch"].as_u64(), Some(m.epoch as u64));
        assert_eq!(object["lr"].as_f64(), Some(config.optimizer.lr()), "a constant schedule");
        assert!(object["grad_norm"].as_f64().is_some_and(|n| n.is_finite() && n > 0.0), "{line}");
        // serde_json writes floats exactly (ryu) but, without its `float_roundtrip` feature, may
        // read them back one ulp off: compare to a relative 1e-15.
        for (key, want) in
            [("train_loss", m.train_loss), ("test_loss", m.test_loss), ("test_ppl", m.test_ppl)]
        {
            let got = object[key].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-15 * want.abs(), "{key}: {got} in the file, {want} returned");
        }
    }

    // Same config again: identical figures and parameters.
    let again = dir.join("run2");
    let second = run(&config, &again);
    let figures = |o: &TrainOutcome| o.epochs.iter().map(reproducible).collect::<Vec<_>>();
    assert_eq!(figures(&second), figures(&outcome));
    let params = checkpoint_params(&out);
    assert_eq!(checkpoint_params(&again), params);

    // Two threads: bit-identical parameters.
    let two = Config {
        train: stagewise_pipeline::config::TrainConfig { threads: 2, ..config.train.clone() },
        ..config
    };
    let threaded = dir.join("run3");
    let third = run(&two, &threaded);
    assert_eq!(third.epochs.iter().map(reproducible).collect::<Vec<_>>(), figures(&outcome));
    let threaded_params = checkpoint_params(&threaded);
    let same_bits = threaded_params.iter().zip(&params).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same_bits && threaded_params.len() == params.len(), "threads = 2 changed the parameters");
}
