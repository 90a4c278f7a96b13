//! The run configuration: one TOML file, one table per box, strict about unknown keys.
//!
//! Every field has the seed configuration's value as its default, so an empty file (or no file)
//! trains the seed model; `configs/seed.toml` spells every default out.

use serde::{Deserialize, Serialize};
use stagewise_backward::BackwardConfig;
use stagewise_core::{Error, Result};
use stagewise_embedding::EmbeddingConfig;
use stagewise_forward::ForwardConfig;
use stagewise_loss::LossConfig;
use stagewise_optimizer::OptimizerConfig;
use stagewise_optimizer::schedule::ScheduleConfig;
use stagewise_tokenizer::TokenizerConfig;
use stagewise_vectorizer::VectorizerConfig;
use std::path::{Path, PathBuf};

/// What a run trains: the same boxes, fed and scored per task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Predict the next token of a corpus (`path`, split by `test_fraction`).
    #[default]
    LanguageModel,
    /// Label texts: CSV files `train` and `test` of a text and a label column; the forward box
    /// pools each text (`forward.pooling`) and its head scores the labels.
    Classify,
}

impl Task {
    /// The config's name (`language_model`, `classify`).
    pub fn name(self) -> &'static str {
        match self {
            Task::LanguageModel => "language_model",
            Task::Classify => "classify",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "language_model" => Ok(Task::LanguageModel),
            "classify" => Ok(Task::Classify),
            _ => Err(format!("`{s}` is not a task (language_model, classify)")),
        }
    }
}

/// Where the text comes from and how it is split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// What is trained: `language_model` (default) or `classify`.
    #[serde(skip_serializing_if = "is_language_model")]
    pub task: Task,
    /// The UTF-8 corpus, relative to the working directory (language model).
    pub path: PathBuf,
    /// Fraction of the token stream, taken from the end, held out as the test split (language
    /// model).
    pub test_fraction: f64,
    /// The training texts (classify): a CSV file with a header row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    /// The test texts (classify): a CSV file with the same columns; every label must appear in
    /// the training file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    /// The header of the text column (classify).
    pub text_column: String,
    /// The header of the label column (classify); labels are strings, class ids follow their
    /// sorted order.
    pub label_column: String,
    /// Tokens kept of each text, the first ones (classify): longer texts are truncated.
    pub max_tokens: usize,
    /// Length bucketing (classify): each epoch's shuffled texts are cut into pools of `bucket`
    /// batches, sorted by length within a pool, batched, and the batches shuffled, so a batch
    /// pads little. 1 = plain shuffled batches.
    pub bucket: usize,
}

fn is_language_model(task: &Task) -> bool {
    *task == Task::LanguageModel
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            task: Task::LanguageModel,
            path: PathBuf::from("data/shakespeare.txt"),
            test_fraction: 0.1,
            train: None,
            test: None,
            text_column: "text".into(),
            label_column: "label".into(),
            max_tokens: 200,
            bucket: 1,
        }
    }
}

/// How the training loop runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Parallel streams B (pytorch/examples' `batch_size`).
    pub batch: usize,
    /// Window length T of truncated back-propagation through time (pytorch/examples' `bptt`).
    pub bptt: usize,
    /// Run seed: every random number (initialisation) derives from it.
    pub seed: u64,
    /// Worker threads; 0 means every available core; at most [`MAX_THREADS`].
    pub threads: usize,
    /// Stop an epoch after this many windows (0 = the whole split); for quick experiments.
    pub max_windows: usize,
    /// The most memory the run may use (`8G`, `512M`, bytes); unset: what the system has
    /// available when the run starts. A run estimated to need more is refused before it starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    /// Stop after this many epochs in a row without a new best test loss (0 = never stop early).
    /// With patience, the continuation printed after training comes from the best epoch's
    /// weights (`DIR/best.ckpt`).
    pub patience: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch: 32,
            bptt: 64,
            seed: 0,
            threads: 0,
            max_windows: 0,
            max_memory: None,
            patience: 0,
        }
    }
}

/// The most worker threads a run may ask for (`train.threads`, `--threads`). Results are the same
/// at any thread count, so more threads than cores only costs time; but a mistyped count (a
/// million) would spend minutes starting threads before failing, so it is refused at once. Fixed
/// rather than a multiple of the cores, so that a config that is valid on one machine is valid on
/// every machine.
pub const MAX_THREADS: usize = 1024;

/// Checks a thread count against [`MAX_THREADS`] (0, every core, is always fine); `field` names
/// the config key or flag in the error.
pub fn check_threads(field: &str, threads: usize) -> Result<()> {
    if threads > MAX_THREADS {
        return Err(Error::config(
            field,
            format!("{threads} threads is more than the limit of {MAX_THREADS} (0 = every core)"),
        ));
    }
    Ok(())
}

/// What to print after training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateConfig {
    /// Text fed to the model before it continues.
    pub prompt: String,
    /// Tokens to continue with (greedy arg-max).
    pub tokens: u64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig { prompt: "to be or not to be".into(), tokens: 30 }
    }
}

/// The largest config file read (a config is a few hundred bytes; anything this large is another
/// file given by mistake).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The whole run: data, loop, and one table per flowchart box.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[data]`: where the text comes from and how it is split.
    pub data: DataConfig,
    /// `[train]`: how the training loop runs.
    pub train: TrainConfig,
    /// `[tokenizer]`: text -> tokens.
    pub tokenizer: TokenizerConfig,
    /// `[vectorizer]`: tokens -> ids.
    pub vectorizer: VectorizerConfig,
    /// `[embedding]`: ids -> vectors.
    pub embedding: EmbeddingConfig,
    /// `[forward]`: vectors -> logits.
    pub forward: ForwardConfig,
    /// `[loss]`: logits -> loss and dlogits.
    pub loss: LossConfig,
    /// `[backward]`: dlogits -> parameter gradients.
    pub backward: BackwardConfig,
    /// `[optimizer]`: gradients -> updated parameters.
    pub optimizer: OptimizerConfig,
    /// `[schedule]`: the learning rate over the run (default `constant`: the optimizer's `lr`).
    pub schedule: ScheduleConfig,
    /// `[generate]`: the continuation printed after training.
    pub generate: GenerateConfig,
}

impl Config {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            let place = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("{origin}:{line}")
                }
                None => origin.to_owned(),
            };
            Error::config(place, msg)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    ///
    /// Only a regular file of at most [`MAX_CONFIG_BYTES`] is read.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            stagewise_core::read_regular_file(path, MAX_CONFIG_BYTES).map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
            path: path.to_path_buf(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// This config with `overrides` applied, each `section.key=value` (`--set`): the value is read
    /// as TOML (`64`, `0.5`, `true`, `"word"`), or as a string if it is not TOML. The result is
    /// validated like a file. Setting a section's `kind` to another kind starts that section anew
    /// from the keys set for it (the old kind's keys may not apply to the new one).
    pub fn with_overrides(&self, overrides: &[String]) -> Result<Config> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let mut table: toml::Table =
            toml::from_str(&self.to_toml()).map_err(|e| Error::config("--set", e.to_string()))?;
        let mut parsed = Vec::with_capacity(overrides.len());
        for o in overrides {
            let (path, value) = o
                .split_once('=')
                .ok_or_else(|| Error::config("--set", format!("`{o}` is not section.key=value")))?;
            let (section, key) = path
                .trim()
                .split_once('.')
                .ok_or_else(|| Error::config("--set", format!("`{path}` is not section.key")))?;
            let value = value.trim();
            let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_owned()));
            parsed.push((section.to_owned(), key.to_owned(), value));
        }
        for (section, key, value) in &parsed {
            if key == "kind" {
                let fresh: toml::Table = parsed
                    .iter()
                    .filter(|(s, _, _)| s == section)
                    .map(|(_, k, v)| (k.clone(), v.clone()))
                    .collect();
                let same = table.get(section).and_then(|t| t.get("kind")) == Some(value);
                if !same {
                    table.insert(section.clone(), toml::Value::Table(fresh));
                }
            }
        }
        for (section, key, value) in parsed {
            let entry =
                table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                return Err(Error::config("--set", format!("`{section}` is not a table")));
            };
            t.insert(key, value);
        }
        let text = toml::to_string(&table).map_err(|e| Error::config("--set", e.to_string()))?;
        Config::from_toml(&text, "--set")
    }

    /// The config as TOML (stored in checkpoints, so a checkpoint says how it was made).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# config could not be serialised: {e}\n"))
    }

    /// Checks the values serde cannot: sizes that must be positive, fractions in range, a thread
    /// count within [`MAX_THREADS`].
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("train.epochs", self.train.epochs),
            ("train.batch", self.train.batch),
            ("train.bptt", self.train.bptt),
            ("embedding.dim", self.embedding.dim()),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        check_threads("train.threads", self.train.threads)?;
        if !(self.data.test_fraction > 0.0 && self.data.test_fraction < 1.0) {
            return Err(Error::config(
                "data.test_fraction",
                format!("{} is not strictly between 0 and 1", self.data.test_fraction),
            ));
        }
        self.validate_task()?;
        crate::generate::check_token_count(self.generate.tokens, "generate.tokens")?;
        if self.generate.tokens > 0 && self.generate.prompt.trim().is_empty() {
            return Err(Error::config(
                "generate.prompt",
                "is empty: give a prompt, or set generate.tokens = 0",
            ));
        }
        if let Some(m) = &self.train.max_memory {
            crate::memory::parse_bytes(m, "train.max_memory")?;
        }
        self.forward.validate()?;
        self.loss.validate()?;
        self.backward.validate()?;
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.vectorizer.validate()?;
        self.tokenizer.validate()?;
        Ok(())
    }

    /// The checks of one task: a classifier needs its files, a token budget and an untied head;
    /// pooling belongs to a classifier only.
    fn validate_task(&self) -> Result<()> {
        match self.data.task {
            Task::LanguageModel => {
                if self.forward.pooling().is_some() {
                    return Err(Error::config(
                        "forward.pooling",
                        "pools texts for a classifier: it applies to data.task = \"classify\" only",
                    ));
                }
            }
            Task::Classify => {
                for (field, value) in [("data.train", &self.data.train), ("data.test", &self.data.test)] {
                    if value.is_none() {
                        return Err(Error::config(
                            field,
                            "the classify task needs it: a CSV file (or pass --train / --test)",
                        ));
                    }
                }
                for (field, value) in
                    [("data.max_tokens", self.data.max_tokens), ("data.bucket", self.data.bucket)]
                {
                    if value == 0 {
                        return Err(Error::config(field, "must be at least 1"));
                    }
                }
                if self.embedding.tied() {
                    return Err(Error::config(
                        "embedding.tied",
                        "a classifier's head scores classes, not the vocabulary: it cannot be tied",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_any_key_with_the_file_s_validation() {
        let base = Config::default();
        let sets = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let c = base
            .with_overrides(&sets(&["forward.hidden=64", "train.epochs = 3", "data.path=other.txt"]))
            .unwrap();
        assert_eq!((c.forward.hidden(), c.train.epochs), (64, 3));
        assert_eq!(c.data.path, PathBuf::from("other.txt"), "a value that is not TOML is a string");
        assert_eq!(base.with_overrides(&[]).unwrap(), base);
        for (bad, named) in [
            (&["forward.hiden=3"][..], "hiden"),
            (&["train.batch=0"][..], "train.batch"),
            (&["nonsense"][..], "nonsense"),
            (&["forward=3"][..], "forward"),
            (&["forward.kind=transformer9"][..], "transformer9"),
        ] {
            let err = base.with_overrides(&sets(bad)).unwrap_err().to_string();
            assert!(err.contains(named), "{bad:?}: {err}");
        }
    }

    #[test]
    fn empty_file_is_the_seed_configuration() {
        let c = Config::from_toml("", "t.toml").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!((c.train.batch, c.train.bptt, c.embedding.dim(), c.forward.hidden()), (32, 64, 100, 128));
    }

    #[test]
    fn shipped_seed_config_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/seed.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn round_trips_through_toml() {
        let c = Config::default();
        assert_eq!(Config::from_toml(&c.to_toml(), "x").unwrap(), c);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err =
            Config::from_toml("[train]\nepochs = 2\nbatchsize = 4\n", "my.toml").unwrap_err().to_string();
        assert!(err.contains("batchsize") && err.contains("my.toml:3"), "{err}");
    }

    #[test]
    fn unknown_stage_kind_is_named() {
        let err = Config::from_toml("[forward]\nkind = \"rnn_relu\"\n", "my.toml").unwrap_err().to_string();
        assert!(err.contains("rnn_relu") && err.contains("my.toml:"), "{err}");
    }

    #[test]
    fn zero_sizes_are_rejected_with_the_field() {
        for (text, field) in [
            ("[train]\nbatch = 0\n", "train.batch"),
            ("[train]\nbptt = 0\n", "train.bptt"),
            ("[forward]\nkind = \"lstm\"\nhidden = 0\n", "forward.hidden"),
            ("[embedding]\nkind = \"table\"\ndim = 0\n", "embedding.dim"),
            ("[data]\ntest_fraction = 1.5\n", "data.test_fraction"),
        ] {
            let err = Config::from_toml(text, "c.toml").unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
    }

    #[test]
    fn update_boxes_and_the_schedule_parse_and_are_checked_by_field() {
        let text = "[loss]\nkind = \"cross_entropy\"\nlabel_smoothing = 0.1\nignore_index = 0\n\
                    [backward]\nkind = \"numeric\"\nclip = 0.25\n\
                    [optimizer]\nkind = \"sgd\"\nlr = 20.0\nmomentum = 0.9\n\
                    [schedule]\nkind = \"plateau\"\nwarmup = 10\n";
        let c = Config::from_toml(text, "c.toml").unwrap();
        assert_eq!(c.schedule, ScheduleConfig::Plateau { warmup: 10, factor: 0.25, patience: 0 });
        assert_eq!(Config::from_toml(&c.to_toml(), "x").unwrap(), c);
        assert_eq!(Config::default().schedule, ScheduleConfig::Constant { warmup: 0 });
        for (text, field) in [
            ("[loss]\nkind = \"cross_entropy\"\nlabel_smoothing = 2.0\n", "loss.label_smoothing"),
            ("[backward]\nkind = \"reverse\"\nclip = -1.0\n", "backward.clip"),
            ("[optimizer]\nkind = \"sgd\"\nnesterov = true\n", "optimizer.nesterov"),
            ("[schedule]\nkind = \"plateau\"\nfactor = 1.5\n", "schedule.factor"),
            ("[schedule]\nkind = \"step\"\nstep_size = 0\n", "schedule.step_size"),
        ] {
            let err = Config::from_toml(text, "c.toml").unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        let err = Config::from_toml("[schedule]\nkind = \"cosine\"\nmin = 0.1\n", "c.toml").unwrap_err();
        assert!(err.to_string().contains("min") && err.to_string().contains("c.toml:"), "{err}");
    }

    #[test]
    fn absurd_thread_counts_are_refused_with_the_limit() {
        let err = Config::from_toml("[train]\nthreads = 1000000\n", "c.toml").unwrap_err().to_string();
        assert!(err.contains("train.threads") && err.contains("1000000") && err.contains("1024"), "{err}");
        assert!(Config::from_toml("[train]\nthreads = 1024\n", "c.toml").is_ok());
        assert!(check_threads("--threads", 0).is_ok());
    }
}
