//! The run takes any model: a user's box gets the same files as a built-in, its optimizer state
//! is saved by name (whatever it declared, nothing included), and the command line refuses a
//! checkpoint whose boxes it cannot build with an error naming the box.

use crate::util::{TempDir, corpus, stagewise, texts, tiny_config};
use stagewise_core::{Ctx, Dims, Result, Stage};
use stagewise_optimizer::{OptimizerState, Update};
use stagewise_pipeline::Model;
use stagewise_pipeline::checkpoint::Checkpoint;
use stagewise_pipeline::train::train;

/// Plain SGD: `p ← p − lr·g` (`lr` times the step's factor), with no state at all.
#[derive(Clone, Copy, Debug)]
struct PlainSgd {
    lr: f32,
}

impl Stage for PlainSgd {
    type Input<'a> = Update<'a, f32>;
    type Output = OptimizerState<f32>;

    fn name(&self) -> &str {
        "plain_sgd"
    }

    fn prepare(&mut self, _dims: &Dims, _state: &mut OptimizerState<f32>) -> Result<()> {
        Ok(())
    }

    fn run(&self, up: Update<'_, f32>, state: &mut OptimizerState<f32>, _cx: &Ctx) -> Result<()> {
        let lr = (f64::from(self.lr) * up.lr_factor) as f32;
        for (p, &g) in up.params.as_mut_slice().iter_mut().zip(up.grads.as_slice()) {
            *p -= lr * g;
        }
        state.step += 1;
        Ok(())
    }
}

#[test]
fn a_stateless_optimizer_trains_and_checkpoints_no_state() {
    let dir = TempDir::new("generic-run");
    std::fs::write(dir.join("corpus.txt"), corpus(110)).unwrap();
    let config = tiny_config(dir.join("corpus.txt"));
    let out = dir.join("run");
    let builder = Model::builder(&config).unwrap().optimizer(PlainSgd { lr: 0.5 });
    let outcome = train(&config, builder, &out, &mut []).unwrap();
    assert_eq!(outcome.epochs.len(), 3);
    assert!(outcome.epochs[2].train_loss < outcome.epochs[0].train_loss, "{:?}", outcome.epochs);
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count(), 3);

    let path = out.join("model.ckpt");
    let ck = Checkpoint::load(&path).unwrap();
    assert_eq!(ck.stages, ["table", "lstm", "cross_entropy", "reverse", "plain_sgd"]);
    assert!(ck.optimizer_state.is_empty(), "plain SGD declared no buffer");
    assert_eq!(ck.params, outcome.model.tape.params.as_slice());

    // Restored into the same kind of model: parameters and step.
    let vocab = outcome.model.dims.vocab;
    let mut same =
        Model::builder(&config).unwrap().optimizer(PlainSgd { lr: 0.5 }).build(vocab, 4, 8).unwrap();
    ck.restore(&mut same, true, &path).unwrap();
    assert_eq!(same.tape.params.as_slice(), &ck.params[..]);
    assert_eq!(same.opt_state.step, ck.step);

    // Into a model whose optimizer keeps other state: refused, naming both; parameters alone load.
    let mut adam = Model::<f32>::from_config(&config, vocab, 4, 8).unwrap();
    let err = ck.restore(&mut adam, true, &path).unwrap_err().to_string();
    assert!(err.contains("plain_sgd") && err.contains("exp_avg") && err.contains("model.ckpt"), "{err}");
    assert_ne!(adam.tape.params.as_slice(), &ck.params[..], "a refused restore changes nothing");
    ck.restore(&mut adam, false, &path).unwrap();
    assert_eq!(adam.tape.params.as_slice(), &ck.params[..]);
}

/// A checkpoint made with a forward box the `stagewise` command does not build is refused by
/// `generate` and `eval` with an error that names the box.
#[test]
fn the_command_names_a_box_it_cannot_build() {
    let dir = TempDir::new("foreign-box");
    std::fs::write(dir.join("corpus.txt"), corpus(110)).unwrap();
    let config = tiny_config(dir.join("corpus.txt"));
    let out = dir.join("run");
    train(&config, Model::builder(&config).unwrap(), &out, &mut []).unwrap();
    let path = out.join("model.ckpt");
    let mut ck = Checkpoint::load(&path).unwrap();
    ck.stages[1] = "elman".into();
    ck.save(&path).unwrap();
    for command in ["generate", "eval"] {
        let run = stagewise(dir.path(), &[command, "--checkpoint", path.to_str().unwrap()]);
        let (stdout, stderr) = texts(&run);
        assert!(!run.status.success(), "{command}: {stdout}");
        assert!(
            stderr.contains("forward box `elman`") && stderr.contains("model.ckpt"),
            "{command}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{command}: one line: {stderr}");
    }
}

/// `--set section.key=value` overrides the config file; the run directory's `config.toml` and the
/// checkpoint hold the effective config.
#[test]
fn set_overrides_reach_the_model_the_config_file_and_the_checkpoint() {
    let dir = TempDir::new("set-overrides");
    std::fs::write(dir.join("corpus.txt"), corpus(110)).unwrap();
    std::fs::write(dir.join("tiny.toml"), crate::util::TINY_TOML).unwrap();
    let args =
        ["train", "--config", "tiny.toml", "--epochs", "1", "--out", "run", "--set", "forward.hidden=12"];
    let run = stagewise(dir.path(), &args);
    assert!(run.status.success(), "{:?}", texts(&run));
    let written = std::fs::read_to_string(dir.join("run/config.toml")).unwrap();
    let effective = stagewise_pipeline::Config::from_toml(&written, "config.toml").unwrap();
    assert_eq!(effective.forward.hidden(), 12);
    let ck = Checkpoint::load(&dir.join("run/model.ckpt")).unwrap();
    assert_eq!(ck.config_toml, written);
    let hh = ck.layout.entries().iter().find(|e| e.name == "lstm.weight_hh_l0").unwrap();
    assert_eq!(hh.shape, [48, 12]);
}

/// The `[schedule]` reaches the optimizer through the run: a step schedule halves the learning
/// rate every epoch, and metrics.jsonl reports it.
#[test]
fn the_schedule_sets_each_epoch_s_learning_rate() {
    let dir = TempDir::new("schedule");
    std::fs::write(dir.join("corpus.txt"), corpus(110)).unwrap();
    let sets: Vec<String> = ["schedule.kind=\"step\"", "schedule.step_size=1", "schedule.gamma=0.5"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let config = crate::util::tiny_config(dir.join("corpus.txt")).with_overrides(&sets).unwrap();
    let outcome = train(&config, Model::builder(&config).unwrap(), &dir.join("run"), &mut []).unwrap();
    let lrs: Vec<f64> = outcome.epochs.iter().map(|m| m.lr).collect();
    let base = config.optimizer.lr();
    assert_eq!(lrs, [base, base * 0.5, base * 0.25]);
    assert!(outcome.epochs.iter().all(|m| m.grad_norm.is_some_and(f64::is_finite)));
}
