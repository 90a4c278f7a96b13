//! Learning-rate schedules: the factor on the optimizer's learning rate at each step.
//!
//! A run holds one [`Schedule`], built from the config's `[schedule]` table ([`ScheduleConfig`]),
//! the optimizer's base learning rate and the run's total number of optimizer steps. Before each
//! optimizer step it asks [`Schedule::factor`] for that step's factor (which goes into
//! [`Update::lr_factor`](crate::Update::lr_factor)); after each epoch's evaluation it reports the
//! test loss to [`Schedule::end_epoch`]. What the schedule remembers between epochs is
//! [`ScheduleState`], plain data a checkpoint can save and restore.
//!
//! Each kind is PyTorch's scheduler of the same purpose, stepped as PyTorch's examples step them:
//!
//! | kind | factor at step `s` (0-based) after `e` epochs | PyTorch |
//! |---|---|---|
//! | `constant` | 1 | — |
//! | `step` | `gamma^⌊e / step_size⌋` | `StepLR(step_size, gamma)`, stepped per epoch |
//! | `cosine` | `(min_lr + (lr − min_lr)·(1 + cos(π·s/S))/2) / lr`, `S` the total steps | `CosineAnnealingLR(T_max = S, eta_min = min_lr)`, stepped per step |
//! | `plateau` | multiplied by `factor` after an epoch that brings the bad-epoch count above `patience` | `ReduceLROnPlateau(mode = "min", factor, patience, threshold = 0)`, stepped per epoch with the test loss |
//!
//! With `warmup = W > 0` the factor is further multiplied by `min(1, (s + 1)/W)`: a linear ramp
//! from 0 that reaches the full rate at step `W − 1` (PyTorch's `LinearLR(start_factor = 1/W,
//! total_iters = W − 1)` chained with the kind's scheduler).

use stagewise_core::{Error, Result};

/// PyTorch's `ReduceLROnPlateau` leaves the learning rate alone once a reduction would change it
/// by no more than this (its `eps`), in units of the learning rate itself.
pub const PLATEAU_MIN_CHANGE: f64 = 1e-8;

fn default_gamma() -> f64 {
    0.1
}
fn default_step_size() -> u64 {
    1
}
fn default_plateau_factor() -> f64 {
    0.25
}

/// The `[schedule]` table of a config file, e.g. `kind = "cosine"  warmup = 100  min_lr = 1e-5`.
/// Every key has a default, and the table itself defaults to `constant` (no schedule).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// The optimizer's learning rate throughout (after the warmup).
    Constant {
        /// Optimizer steps of linear warmup (default 0).
        #[serde(default)]
        warmup: u64,
    },
    /// Multiplied by `gamma` every `step_size` epochs (PyTorch's `StepLR`).
    Step {
        /// Optimizer steps of linear warmup (default 0).
        #[serde(default)]
        warmup: u64,
        /// Epochs between two decays (default 1).
        #[serde(default = "default_step_size")]
        step_size: u64,
        /// The factor of each decay (default 0.1).
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// Half a cosine from the learning rate down to `min_lr` over the run's total steps
    /// (PyTorch's `CosineAnnealingLR`).
    Cosine {
        /// Optimizer steps of linear warmup (default 0).
        #[serde(default)]
        warmup: u64,
        /// The learning rate the cosine ends at (default 0).
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiplied by `factor` when the test loss stops improving (PyTorch's `ReduceLROnPlateau`,
    /// the word-language-model example's `lr /= 4`).
    Plateau {
        /// Optimizer steps of linear warmup (default 0).
        #[serde(default)]
        warmup: u64,
        /// The factor of each reduction, in `(0, 1)` (default 0.25).
        #[serde(default = "default_plateau_factor")]
        factor: f64,
        /// Epochs without improvement tolerated before a reduction (default 0).
        #[serde(default)]
        patience: u64,
    },
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig::Constant { warmup: 0 }
    }
}

impl ScheduleConfig {
    /// Checks the values serde cannot, naming the field: a positive `step_size`, a finite positive
    /// `gamma`, a finite non-negative `min_lr`, a `factor` strictly between 0 and 1.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ScheduleConfig::Constant { .. } => Ok(()),
            ScheduleConfig::Step { step_size, gamma, .. } => {
                if step_size == 0 {
                    return Err(Error::config("schedule.step_size", "must be at least 1 (epochs)"));
                }
                if !(gamma > 0.0 && gamma.is_finite()) {
                    return Err(Error::config(
                        "schedule.gamma",
                        format!("{gamma} is not a finite number > 0"),
                    ));
                }
                Ok(())
            }
            ScheduleConfig::Cosine { min_lr, .. } => {
                if !(min_lr >= 0.0 && min_lr.is_finite()) {
                    return Err(Error::config(
                        "schedule.min_lr",
                        format!("{min_lr} is not a finite number >= 0"),
                    ));
                }
                Ok(())
            }
            ScheduleConfig::Plateau { factor, .. } => {
                if !(factor > 0.0 && factor < 1.0) {
                    return Err(Error::config(
                        "schedule.factor",
                        format!("{factor} is not strictly between 0 and 1"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Optimizer steps of linear warmup.
    pub fn warmup(&self) -> u64 {
        match *self {
            ScheduleConfig::Constant { warmup }
            | ScheduleConfig::Step { warmup, .. }
            | ScheduleConfig::Cosine { warmup, .. }
            | ScheduleConfig::Plateau { warmup, .. } => warmup,
        }
    }
}

/// What a schedule remembers between epochs: plain data, so a checkpoint can save it and a
/// resumed run continue with the same learning rates.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleState {
    /// Epochs ended so far ([`Schedule::end_epoch`] calls).
    pub epochs: u64,
    /// The lowest test loss reported so far (`plateau`; `None` before the first epoch ends).
    pub best: Option<f64>,
    /// Epochs since the last improvement or reduction (`plateau`).
    pub bad_epochs: u64,
    /// The product of the reductions so far (`plateau`; 1 otherwise).
    pub factor: f64,
}

impl Default for ScheduleState {
    fn default() -> Self {
        ScheduleState { epochs: 0, best: None, bad_epochs: 0, factor: 1.0 }
    }
}

/// A learning-rate schedule for one run: the config, the optimizer's base learning rate, the
/// run's total optimizer steps and the state (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    config: ScheduleConfig,
    base_lr: f64,
    total_steps: u64,
    /// What the schedule remembers between epochs (save it with a checkpoint, set it to resume).
    pub state: ScheduleState,
}

impl Schedule {
    /// The schedule `config` describes for an optimizer of learning rate `base_lr` in a run of
    /// `total_steps` optimizer steps (epochs × windows per epoch; the cosine spans them).
    ///
    /// Fails, naming the field, on a setting out of range, a base learning rate that is not a
    /// finite positive number, or a cosine over zero steps.
    pub fn new(config: &ScheduleConfig, base_lr: f64, total_steps: u64) -> Result<Self> {
        config.validate()?;
        if !(base_lr > 0.0 && base_lr.is_finite()) {
            return Err(Error::config("optimizer.lr", format!("{base_lr} is not a finite number > 0")));
        }
        if matches!(config, ScheduleConfig::Cosine { .. }) && total_steps == 0 {
            return Err(Error::config(
                "schedule.kind",
                "\"cosine\" needs a run of at least one optimizer step",
            ));
        }
        Ok(Schedule { config: config.clone(), base_lr, total_steps, state: ScheduleState::default() })
    }

    /// The factor on the base learning rate for optimizer step `step` (0-based: the number of
    /// steps taken before it, `OptimizerState::step`), given the epochs ended so far.
    pub fn factor(&self, step: u64) -> f64 {
        let kind = match self.config {
            ScheduleConfig::Constant { .. } => 1.0,
            ScheduleConfig::Step { step_size, gamma, .. } => {
                gamma.powf((self.state.epochs / step_size) as f64)
            }
            ScheduleConfig::Cosine { min_lr, .. } => {
                let phase = std::f64::consts::PI * step as f64 / self.total_steps as f64;
                (min_lr + (self.base_lr - min_lr) * (1.0 + phase.cos()) / 2.0) / self.base_lr
            }
            ScheduleConfig::Plateau { .. } => self.state.factor,
        };
        let warmup = self.config.warmup();
        if step < warmup { kind * (step + 1) as f64 / warmup as f64 } else { kind }
    }

    /// The learning rate of step `step`: the base learning rate times [`Schedule::factor`].
    pub fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.factor(step)
    }

    /// Ends an epoch whose evaluation gave `test_loss`: counts the epoch (for `step`) and, for
    /// `plateau`, applies PyTorch's rule — a loss below the best so far is an improvement, any
    /// other (a NaN included) a bad epoch, and once the bad epochs exceed `patience` the factor
    /// is multiplied by `factor` (unless that changes the learning rate by no more than
    /// [`PLATEAU_MIN_CHANGE`]) and the count starts again.
    pub fn end_epoch(&mut self, test_loss: f64) {
        let s = &mut self.state;
        s.epochs += 1;
        if let ScheduleConfig::Plateau { factor, patience, .. } = self.config {
            if test_loss < s.best.unwrap_or(f64::INFINITY) {
                s.best = Some(test_loss);
                s.bad_epochs = 0;
            } else {
                s.bad_epochs += 1;
            }
            if s.bad_epochs > patience {
                let old = self.base_lr * s.factor;
                if old - old * factor > PLATEAU_MIN_CHANGE {
                    s.factor *= factor;
                }
                s.bad_epochs = 0;
            }
        }
    }

    /// The config this schedule follows.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The learning rate of every step of a run of `steps` steps with `per_epoch` steps per epoch,
    /// the test losses `losses` reported at each epoch's end.
    fn lrs(config: &ScheduleConfig, base_lr: f64, steps: u64, per_epoch: u64, losses: &[f64]) -> Vec<f64> {
        let mut s = Schedule::new(config, base_lr, steps).unwrap();
        (0..steps)
            .map(|step| {
                if step > 0 && step % per_epoch == 0 {
                    s.end_epoch(losses.get((step / per_epoch - 1) as usize).copied().unwrap_or(0.0));
                }
                s.lr(step)
            })
            .collect()
    }

    fn assert_close(name: &str, ours: &[f64], torch: &[f64]) {
        assert_eq!(ours.len(), torch.len(), "{name}");
        for (k, (a, b)) in ours.iter().zip(torch).enumerate() {
            assert!((a - b).abs() <= 1e-15 * b.abs().max(1e-300) * 8.0, "{name} step {k}: {a} vs {b}");
        }
    }

    /// Name, config, base lr, steps, steps per epoch, test losses, PyTorch's learning rates.
    type Case = (&'static str, ScheduleConfig, f64, u64, u64, &'static [f64], &'static [f64]);

    const LOSSES: [f64; 11] = [5.0, 4.0, 4.5, 4.2, 3.9, 3.9, 4.1, 4.0, 3.8, 3.85, 3.9];

    /// The learning rate of every step in torch 2.15, from a one-parameter SGD whose schedulers
    /// are stepped after each `optimizer.step()` (per-step ones) or before the first step of each
    /// new epoch (`StepLR.step()`, `ReduceLROnPlateau.step(test_loss)`), reading
    /// `param_groups[0]["lr"]` before each step. Warmup is `LinearLR(start_factor=1/W,
    /// end_factor=1, total_iters=W-1)` stepped per step alongside the kind's scheduler.
    #[test]
    fn every_kind_follows_pytorch() {
        use ScheduleConfig::*;
        #[rustfmt::skip]
        let cases: [Case; 8] = [
            ("step", Step { warmup: 0, step_size: 2, gamma: 0.5 }, 0.1, 15, 3, &[], &[
                0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]),
            ("cosine", Cosine { warmup: 0, min_lr: 0.01 }, 0.1, 10, 5, &[], &[
                0.1, 0.09779754323328192, 0.09140576474687263, 0.08145033635316129, 0.06890576474687264,
                0.05500000000000001, 0.04109423525312737, 0.028549663646838717, 0.01859423525312737,
                0.012202456766718092]),
            ("plateau patience 0", Plateau { warmup: 0, factor: 0.25, patience: 0 }, 0.1, 33, 3, &LOSSES, &[
                0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.025, 0.025, 0.025, 0.00625, 0.00625, 0.00625,
                0.00625, 0.00625, 0.00625, 0.0015625, 0.0015625, 0.0015625, 0.000390625, 0.000390625,
                0.000390625, 9.765625e-05, 9.765625e-05, 9.765625e-05, 9.765625e-05, 9.765625e-05,
                9.765625e-05, 2.44140625e-05, 2.44140625e-05, 2.44140625e-05]),
            ("plateau patience 1", Plateau { warmup: 0, factor: 0.5, patience: 1 }, 0.1, 33, 3, &LOSSES, &[
                0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05,
                0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025,
                0.025, 0.025, 0.025]),
            ("plateau eps", Plateau { warmup: 0, factor: 0.25, patience: 0 }, 1e-7, 33, 3, &[5.0; 11], &[
                1e-07, 1e-07, 1e-07, 1e-07, 1e-07, 1e-07, 2.5e-08, 2.5e-08, 2.5e-08, 6.25e-09, 6.25e-09,
                6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09,
                6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09,
                6.25e-09, 6.25e-09, 6.25e-09, 6.25e-09]),
            ("warmup cosine", Cosine { warmup: 4, min_lr: 0.0 }, 0.1, 12, 4, &[], &[
                0.025, 0.04914814565722671, 0.06997595264191647, 0.08535533905932739, 0.07500000000000002,
                0.06294095225512607, 0.050000000000000024, 0.03705904774487399, 0.025000000000000022,
                0.014644660940672634, 0.006698729810778068, 0.0017037086855465908]),
            ("warmup plateau", Plateau { warmup: 5, factor: 0.25, patience: 0 }, 0.1, 12, 2,
                &[5.0, 5.5, 4.0, 4.0, 3.0, 3.5], &[
                0.020000000000000004, 0.04000000000000001, 0.06000000000000001, 0.08000000000000002,
                0.025000000000000005, 0.025000000000000005, 0.025000000000000005, 0.025000000000000005,
                0.006250000000000001, 0.006250000000000001, 0.006250000000000001, 0.006250000000000001]),
            ("warmup step", Step { warmup: 2, step_size: 1, gamma: 0.1 }, 0.1, 12, 3, &[], &[
                0.05, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.010000000000000002,
                0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002,
                0.00010000000000000003, 0.00010000000000000003, 0.00010000000000000003]),
        ];
        for (name, config, base, steps, per_epoch, losses, torch) in cases {
            assert_close(name, &lrs(&config, base, steps, per_epoch, losses), torch);
        }
        assert!(lrs(&ScheduleConfig::default(), 0.3, 7, 2, &[]).iter().all(|&lr| lr == 0.3));
    }

    #[test]
    fn the_state_is_plain_data_that_resumes_the_schedule() {
        let config = ScheduleConfig::Plateau { warmup: 0, factor: 0.5, patience: 0 };
        let mut a = Schedule::new(&config, 0.1, 100).unwrap();
        for loss in [3.0, 2.0, 2.5] {
            a.end_epoch(loss);
        }
        assert_eq!(a.state, ScheduleState { epochs: 3, best: Some(2.0), bad_epochs: 0, factor: 0.5 });
        let saved = serde_json::to_string(&a.state).unwrap();
        let mut b = Schedule::new(&config, 0.1, 100).unwrap();
        b.state = serde_json::from_str(&saved).unwrap();
        for loss in [2.2, 1.0, f64::NAN] {
            a.end_epoch(loss);
            b.end_epoch(loss);
            assert_eq!((a.factor(40), a.state.bad_epochs), (b.factor(40), b.state.bad_epochs));
        }
        assert_eq!(a.factor(40), 0.125, "2.2 and the NaN were bad epochs");
    }

    #[test]
    fn config_parses_with_defaults_and_refuses_bad_values_by_name() {
        let c: ScheduleConfig = toml::from_str("kind = \"plateau\"\n").unwrap();
        assert_eq!(c, ScheduleConfig::Plateau { warmup: 0, factor: 0.25, patience: 0 });
        let c: ScheduleConfig = toml::from_str("kind = \"step\"\nwarmup = 10\n").unwrap();
        assert_eq!(c, ScheduleConfig::Step { warmup: 10, step_size: 1, gamma: 0.1 });
        let c: ScheduleConfig = toml::from_str("kind = \"cosine\"\nmin_lr = 1e-5\n").unwrap();
        assert_eq!(c, ScheduleConfig::Cosine { warmup: 0, min_lr: 1e-5 });
        assert_eq!(toml::from_str::<ScheduleConfig>(&toml::to_string(&c).unwrap()).unwrap(), c);
        let err =
            toml::from_str::<ScheduleConfig>("kind = \"cosine\"\ngamma = 0.5\n").unwrap_err().to_string();
        assert!(err.contains("gamma"), "{err}");
        assert!(toml::from_str::<ScheduleConfig>("kind = \"linear\"\n").is_err());
        for (bad, field) in [
            (ScheduleConfig::Step { warmup: 0, step_size: 0, gamma: 0.1 }, "schedule.step_size"),
            (ScheduleConfig::Step { warmup: 0, step_size: 1, gamma: -1.0 }, "schedule.gamma"),
            (ScheduleConfig::Cosine { warmup: 0, min_lr: f64::NAN }, "schedule.min_lr"),
            (ScheduleConfig::Plateau { warmup: 0, factor: 1.0, patience: 0 }, "schedule.factor"),
            (ScheduleConfig::Plateau { warmup: 0, factor: 0.0, patience: 0 }, "schedule.factor"),
        ] {
            let err = Schedule::new(&bad, 0.1, 10).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let err = Schedule::new(&ScheduleConfig::Cosine { warmup: 0, min_lr: 0.0 }, 0.1, 0).unwrap_err();
        assert!(err.to_string().contains("schedule.kind"), "{err}");
        let err = Schedule::new(&ScheduleConfig::default(), 0.0, 10).unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"), "{err}");
    }
}
