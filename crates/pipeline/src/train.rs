//! The training run: text -> tokens -> ids -> batches, then epochs of cycles with an evaluation of
//! the whole test split after each, reported to observers.

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::data::{Batched, read_corpus, test_count, unigram_perplexity};
use crate::memory;
use crate::model::{CYCLE_STAGES, Model, ModelBuilder};
use crate::pretrained::{Coverage, load_pretrained};
use crate::run_dir::RunDir;
use rayon::prelude::*;
use serde::Serialize;
use stagewise_backward::{Backward, BackwardImpl};
use stagewise_core::{Ctx, Error, Float, Mode, ParamLayout, Result, Stage, Tokens, par_for_threads};
use stagewise_embedding::{Embedding, EmbeddingImpl};
use stagewise_forward::{Forward, ForwardImpl};
use stagewise_loss::{Loss, LossImpl};
use stagewise_optimizer::schedule::Schedule;
use stagewise_optimizer::{Optimizer, OptimizerImpl};
use stagewise_tokenizer::{Tokenizer, TokenizerConfig, TokenizerImpl};
use stagewise_vectorizer::{Vectorizer, VectorizerImpl, Vocab, VocabVectorizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One epoch's figures; also one line of `metrics.jsonl` (keys are a contract: add, never rename).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean NLL per training target token over the epoch (nats).
    pub train_loss: f64,
    /// Mean NLL per test target token (nats).
    pub test_loss: f64,
    /// `exp(test_loss)`.
    pub test_ppl: f64,
    /// Fraction of test targets that are the arg-max of the logits.
    pub test_acc: f64,
    /// The test loss per character of the test text rather than per token, so that tokenizers
    /// can be compared on one scale: `test_loss × test tokens / test characters`, the characters
    /// counted from the start of the test split's first token to the end of the corpus,
    /// whitespace included (docs/evaluation.md). Equal to `test_loss` for the `char` tokenizer.
    /// Absent if the tokenizer cannot say where its tokens start
    /// ([`Tokenizer::token_start`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_nats_per_char: Option<f64>,
    /// Training target tokens per second of this epoch's training time.
    pub tokens_per_s: f64,
    /// Wall time since training started (seconds).
    pub seconds: f64,
    /// Seconds spent in each box of the cycle this epoch: embed, forward, loss, backward, update.
    pub stage_seconds: [f64; 5],
    /// The learning rate of the epoch's last step: the config's optimizer rate times the
    /// schedule's factor (`[schedule]`).
    pub lr: f64,
    /// Mean over the epoch's windows of the gradient norm the backward box measured, before any
    /// clipping (absent if it measured none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// The epoch with the lowest test loss so far, this one included (the earliest on ties): the
    /// one `DIR/best.ckpt` holds.
    pub best_epoch: usize,
    /// That epoch's test loss.
    pub best_test_loss: f64,
}

/// Aggregate of an evaluation pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalStats {
    /// Summed NLL.
    pub nll_sum: f64,
    /// Targets scored.
    pub count: usize,
    /// Arg-max hits.
    pub correct: usize,
}

impl EvalStats {
    /// Mean NLL.
    pub fn loss(&self) -> f64 {
        self.nll_sum / self.count.max(1) as f64
    }
    /// `exp(loss)`.
    pub fn perplexity(&self) -> f64 {
        self.loss().exp()
    }
    /// Hit rate.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }
}

/// Facts about the run known before the first epoch.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Tokens in the corpus.
    pub tokens: usize,
    /// Tokens in the train / test splits.
    pub train_tokens: usize,
    /// Tokens in the test split.
    pub test_tokens: usize,
    /// Vocabulary size V.
    pub vocab: usize,
    /// Scalar parameters.
    pub params: usize,
    /// Windows per training epoch.
    pub windows: usize,
    /// Unigram-baseline test perplexity.
    pub unigram_ppl: f64,
    /// Worker threads.
    pub threads: usize,
    /// How much of the vocabulary `[embedding] pretrained` covered, if the table started from a
    /// vector file.
    pub pretrained: Option<Coverage>,
}

/// Receives progress, like ripgrep's `Sink`: every method has a no-op default.
pub trait Observer: Send {
    /// Before the first epoch.
    fn on_start(&mut self, _info: &RunInfo) -> Result<()> {
        Ok(())
    }
    /// After each training window; return `false` to end the epoch early.
    fn on_window(&mut self, _epoch: usize, _done: usize, _total: usize, _loss: f64) -> bool {
        true
    }
    /// After each epoch's evaluation.
    fn on_epoch(&mut self, _metrics: &EpochMetrics) -> Result<()> {
        Ok(())
    }
}

/// Text turned into ids, with the boxes that did it.
pub struct PreparedData {
    /// The tokenizer used.
    pub tokenizer: TokenizerImpl,
    /// The vocabulary fitted on the training split.
    pub vectorizer: VectorizerImpl,
    /// Training ids.
    pub train_ids: Vec<u32>,
    /// Test ids.
    pub test_ids: Vec<u32>,
    /// Tokens in the corpus.
    pub tokens: usize,
    /// Characters (Unicode scalar values) of the corpus text from the start of the test split's
    /// first token to the end, whitespace included; `None` if the tokenizer cannot say where
    /// its tokens start.
    pub test_chars: Option<usize>,
}

impl PreparedData {
    /// `loss` (nats per test token) as nats per test character: the test split's total NLL,
    /// every test token counted at the mean `loss`, over [`PreparedData::test_chars`].
    pub fn nats_per_char(&self, loss: f64) -> Option<f64> {
        self.test_chars.map(|chars| loss * self.test_ids.len() as f64 / chars.max(1) as f64)
    }
}

/// Reads, tokenizes, splits, fits the vocabulary on the training split and encodes both splits.
pub fn prepare_data(config: &Config) -> Result<PreparedData> {
    prepare_data_with(config, None)
}

/// Like [`prepare_data`], but with an already fitted vocabulary when `vectorizer` is given (to
/// evaluate a checkpoint on exactly the ids it was trained with).
///
/// The corpus goes through each box once: the tokenizer writes every token into one compact
/// [`Tokens`] buffer (not a `String` each), the vocabulary is fitted on the first tokens (the
/// training split), the vectorizer turns them all into ids, and the text and tokens are dropped
/// before the model is built.
///
/// A tokenizer that defines its own ids (`bpe`) fixes the vocabulary instead: the vectorizer is
/// its token list in id order ([`Vocab::closed`]), so every id is the tokenizer's own, and the
/// `[vectorizer]` settings are not used. A `bpe` tokenizer that trains (`vocab_size`) is trained
/// first, on [`tokenizer_training_text`], on the current thread pool.
pub fn prepare_data_with(config: &Config, vectorizer: Option<VectorizerImpl>) -> Result<PreparedData> {
    let cx = Ctx { par: par_for_threads(rayon::current_num_threads()), ..Ctx::seq() };
    let text = read_corpus(&config.data.path)?;
    let tokenizer = match config.tokenizer.trainer() {
        Some(_) => config.tokenizer.train(tokenizer_training_text(&text, config.data.test_fraction))?,
        None => config.tokenizer.build()?,
    };
    let mut tokens = Tokens::new();
    tokenizer.run(&text, &mut tokens, &cx)?;
    let count = tokens.len();
    let n_test = test_count(count, config.data.test_fraction);
    if n_test == 0 {
        return Err(Error::data(
            config.data.path.display().to_string(),
            format!(
                "{count} tokens leave an empty test split at test_fraction {}",
                config.data.test_fraction
            ),
        ));
    }
    let n_train = count - n_test;
    let test_chars = tokenizer.token_start(&text, n_train).map(|at| text[at..].chars().count());
    drop(text);
    let vectorizer = match (vectorizer, tokenizer.vocabulary()) {
        (Some(VectorizerImpl::Vocab(v)), Some(own)) if v.vocab().tokens() != own => {
            return Err(Error::data(
                "vocabulary",
                format!(
                    "the saved vocabulary ({} ids) is not the tokenizer's own ({} ids): the tokenizer \
                     file changed since the model was trained",
                    v.vocab_size(),
                    own.len()
                ),
            ));
        }
        (Some(v), _) => v,
        (None, Some(own)) => VectorizerImpl::Vocab(VocabVectorizer::new(Vocab::closed(own.to_vec())?)),
        (None, None) => config.vectorizer.fit(tokens.iter().take(n_train))?,
    };
    let mut train_ids = Vec::new();
    vectorizer.run(&tokens, &mut train_ids, &cx)?;
    drop(tokens);
    let test_ids = train_ids.split_off(n_train);
    train_ids.shrink_to_fit();
    Ok(PreparedData { tokenizer, vectorizer, train_ids, test_ids, tokens: count, test_chars })
}

/// The text a tokenizer trained at the start of a run learns from: the corpus's whole lines
/// before its last `test_fraction` of bytes, so it has not seen (most of) the test split, which
/// is the last `test_fraction` of the tokens.
pub fn tokenizer_training_text(text: &str, test_fraction: f64) -> &str {
    let mut cut = ((text.len() as f64 * (1.0 - test_fraction)).floor() as usize).min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    match text[..cut].rfind('\n') {
        Some(i) => &text[..=i],
        None => &text[..cut],
    }
}

/// The file a BPE run saves its tokenizer to, in the run directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The config a run records (in `config.toml` and the checkpoint): `config` itself, except that a
/// `bpe` tokenizer trained at the start of the run is recorded as loaded from the run directory's
/// `tokenizer.json`, so `generate` and `eval` use the very tokenizer the model was trained with.
pub fn recorded_config(config: &Config, out_dir: &Path) -> Config {
    let mut recorded = config.clone();
    if let TokenizerConfig::Bpe { path: path @ None, vocab_size: vocab_size @ Some(_), .. } =
        &mut recorded.tokenizer
    {
        *path = Some(out_dir.join(TOKENIZER_FILE));
        *vocab_size = None;
    }
    recorded
}

/// Scores every window of `split` with the state reset first (the evaluation protocol of
/// docs/evaluation.md), for any model.
pub fn evaluate<T, E, F, L, B, O>(
    model: &mut Model<T, E, F, L, B, O>,
    split: &Batched,
    bptt: usize,
    cx: &Ctx,
) -> Result<EvalStats>
where
    T: Float,
    E: Embedding<T>,
    F: Forward<T>,
    L: Loss<T>,
    B: Backward<T>,
    O: Optimizer<T>,
{
    let cx = Ctx { mode: Mode::Eval, ..*cx };
    model.reset_state();
    let mut stats = EvalStats::default();
    for w in split.windows(bptt) {
        model.eval_window(w, &cx)?;
        stats.nll_sum += model.loss_out.nll_sum;
        stats.count += model.loss_out.count;
        stats.correct += model.loss_out.correct;
    }
    Ok(stats)
}

/// What a finished run leaves behind.
pub struct TrainOutcome<
    E = EmbeddingImpl<f32>,
    F = ForwardImpl<f32>,
    L = LossImpl<f32>,
    B = BackwardImpl<f32>,
    O = OptimizerImpl<f32>,
> {
    /// The trained model: with `train.patience` > 0, holding the best epoch's parameters (those of
    /// `best.ckpt`; its optimizer state stays the last epoch's); otherwise the last epoch's.
    pub model: Model<f32, E, F, L, B, O>,
    /// Data and fitted boxes.
    pub data: PreparedData,
    /// One entry per epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Unigram-baseline test perplexity.
    pub unigram_ppl: f64,
    /// Files written.
    pub checkpoint: PathBuf,
    /// The epoch with the lowest test loss (the earliest on ties), whose checkpoint is
    /// `DIR/best.ckpt`.
    pub best_epoch: usize,
    /// That epoch's test loss.
    pub best_test_loss: f64,
    /// Whether `train.patience` ended the run before `train.epochs`.
    pub stopped_early: bool,
}

/// Builds a rayon pool of `threads` threads (0 = all cores) for the whole run.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    let threads =
        if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::config("train.threads", format!("cannot start {threads} threads: {e}")))
}

/// Runs the whole training job described by `config` on the model `builder` makes (the config's
/// boxes, or any of them replaced by your own type: see [`Model::builder`]), in the run directory
/// `out_dir` (see [`crate::run_dir`]): it is locked for the run, and at the end of every epoch a
/// consistent `metrics.jsonl`, `vocab.json`, `model.ckpt`, `config.toml` (the effective config) and
/// `best.ckpt` (the checkpoint of the epoch with the lowest test loss so far) are published there
/// together.
///
/// With `train.patience = N > 0` the run stops after `N` epochs in a row without a new lowest
/// test loss, and the returned model holds the best epoch's parameters.
///
/// A non-finite loss, gradient or parameter stops the run with an error naming the epoch, window
/// and step, the box and the first non-finite tensor; metrics never hold a non-finite number; and
/// the last published set stays as it was.
pub fn train<E, F, L, B, O>(
    config: &Config,
    builder: ModelBuilder<f32, E, F, L, B, O>,
    out_dir: &Path,
    observers: &mut [&mut dyn Observer],
) -> Result<TrainOutcome<E, F, L, B, O>>
where
    E: Embedding<f32> + Send,
    F: Forward<f32> + Send,
    L: Loss<f32> + Send,
    B: Backward<f32> + Send,
    O: Optimizer<f32> + Send,
{
    let pool = thread_pool(config.train.threads)?;
    let threads = pool.current_num_threads();
    pool.install(|| train_in_pool(config, builder, out_dir, observers, threads))
}

fn train_in_pool<E, F, L, B, O>(
    config: &Config,
    builder: ModelBuilder<f32, E, F, L, B, O>,
    out_dir: &Path,
    observers: &mut [&mut dyn Observer],
    threads: usize,
) -> Result<TrainOutcome<E, F, L, B, O>>
where
    E: Embedding<f32>,
    F: Forward<f32>,
    L: Loss<f32>,
    B: Backward<f32>,
    O: Optimizer<f32>,
{
    let mut run_dir = RunDir::open(out_dir)?;
    check_memory(config, builder.config_boxes())?;
    let data = prepare_data(config)?;
    let vocab = data.vectorizer.vocab_size();
    let (batch, bptt) = (config.train.batch, config.train.bptt);
    let corpus = config.data.path.display();
    let train_split = Batched::new(&data.train_ids, batch, &format!("{corpus} (train split)"))?;
    let test_split = Batched::new(&data.test_ids, batch, &format!("{corpus} (test split)"))?;
    let unigram_ppl = unigram_perplexity(&data.train_ids, &data.test_ids, vocab);
    let table_from_config = builder.config_boxes()[0];
    let mut model = builder.build(vocab, batch, bptt)?;
    // A table of the config's own starts from `pretrained` (a box of the caller's is theirs).
    let pretrained = if table_from_config {
        load_pretrained(&config.embedding, &data.vectorizer, &mut model.tape.params)?
    } else {
        None
    };
    let cx = Ctx { par: par_for_threads(threads), mode: Mode::Train, step: 0, seed: config.train.seed };
    let total = match config.train.max_windows {
        0 => train_split.window_count(bptt),
        n => n.min(train_split.window_count(bptt)),
    };
    let info = RunInfo {
        tokens: data.tokens,
        train_tokens: data.train_ids.len(),
        test_tokens: data.test_ids.len(),
        vocab,
        params: model.dims.params,
        windows: total,
        unigram_ppl,
        threads,
        pretrained,
    };
    for o in observers.iter_mut() {
        o.on_start(&info)?;
    }
    let (config_toml, vocab_json) = (recorded_config(config, out_dir).to_toml(), data.vectorizer.to_json());
    let tokenizer_json = match &data.tokenizer {
        TokenizerImpl::Bpe(t) => Some(t.model().to_json()),
        _ => None,
    };
    let total_steps = (config.train.epochs as u64).saturating_mul(total as u64);
    let mut schedule = Schedule::new(&config.schedule, config.optimizer.lr(), total_steps)?;
    let started = Instant::now();
    let mut epochs = Vec::new();
    let mut metrics_lines = String::new();
    let patience = config.train.patience;
    // The best epoch so far and, with patience, a copy of its parameters to finish with.
    let (mut best_epoch, mut best_test_loss) = (0, f64::INFINITY);
    let mut best_params: Vec<f32> = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=config.train.epochs {
        model.reset_state();
        model.clock.reset();
        let epoch_start = Instant::now();
        let (mut nll, mut count) = (0.0, 0usize);
        let (mut norm_sum, mut norms) = (0.0, 0usize);
        for (done, w) in train_split.windows(bptt).take(total).enumerate() {
            model.lr_factor = schedule.factor(model.opt_state.step);
            let place =
                format!("epoch {epoch}, window {} of {total} (step {})", done + 1, model.opt_state.step + 1);
            model.train_window(w, &cx).map_err(|e| e.context(&place))?;
            check_finite(&model).map_err(|e| e.context(&place))?;
            if let Some(norm) = model.tape.grad_norm {
                norm_sum += norm;
                norms += 1;
            }
            nll += model.loss_out.nll_sum;
            count += model.loss_out.count;
            let mut go_on = true;
            for o in observers.iter_mut() {
                go_on &= o.on_window(epoch, done + 1, total, model.loss_out.mean());
            }
            if !go_on {
                break;
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let stage_seconds = model.clock.spent.map(|d| d.as_secs_f64());
        let eval = evaluate(&mut model, &test_split, bptt, &cx)
            .map_err(|e| e.context(format!("epoch {epoch}, evaluation")))?;
        let test_loss = eval.loss();
        let improved = test_loss < best_test_loss;
        if improved {
            (best_epoch, best_test_loss) = (epoch, test_loss);
            if patience > 0 {
                best_params.clear();
                best_params.extend_from_slice(model.tape.params.as_slice());
            }
        }
        let m = EpochMetrics {
            epoch,
            train_loss: nll / count.max(1) as f64,
            test_loss: eval.loss(),
            test_ppl: eval.perplexity(),
            test_acc: eval.accuracy(),
            test_nats_per_char: data.nats_per_char(eval.loss()),
            tokens_per_s: count as f64 / train_seconds.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
            stage_seconds,
            lr: config.optimizer.lr() * model.lr_factor,
            grad_norm: (norms > 0).then(|| norm_sum / norms as f64),
            best_epoch,
            best_test_loss,
        };
        m.check_finite()?;
        schedule.end_epoch(m.test_loss);
        let line = serde_json::to_string(&m).map_err(|e| Error::data("metrics", e.to_string()))?;
        metrics_lines.push_str(&line);
        metrics_lines.push('\n');
        let previous_best = out_dir.join("best.ckpt");
        run_dir.publish(|dir| {
            let ckpt = dir.join("model.ckpt");
            Checkpoint::save_model(
                &model,
                &config_toml,
                &vocab_json,
                epoch as u64,
                config.train.seed,
                &ckpt,
            )?;
            if improved {
                // The same state as model.ckpt: link it rather than write it twice.
                link_or_copy(&ckpt, &dir.join("best.ckpt"))?;
            } else {
                // Still the earlier epoch's: the published generation's file carries over.
                link_or_copy(&previous_best, &dir.join("best.ckpt"))?;
            }
            data.vectorizer.save(dir.join("vocab.json"))?;
            if let Some(text) = &tokenizer_json {
                let path = dir.join(TOKENIZER_FILE);
                stagewise_core::write_atomically(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
            }
            for (file, text) in [("config.toml", &config_toml), ("metrics.jsonl", &metrics_lines)] {
                let path = dir.join(file);
                stagewise_core::write_atomically(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
            }
            Ok(())
        })?;
        for o in observers.iter_mut() {
            o.on_epoch(&m)?;
        }
        epochs.push(m);
        if patience > 0 && epoch - best_epoch >= patience && epoch < config.train.epochs {
            stopped_early = true;
            break;
        }
    }
    if patience > 0 && best_params.len() == model.tape.params.as_slice().len() {
        model.tape.params.as_mut_slice().copy_from_slice(&best_params);
    }
    let checkpoint = out_dir.join("model.ckpt");
    Ok(TrainOutcome {
        model,
        data,
        epochs,
        unigram_ppl,
        checkpoint,
        best_epoch,
        best_test_loss,
        stopped_early,
    })
}

/// Makes `to` the same file as `from` (a fresh, unpublished path): a hard link of the file
/// `from` resolves to, or, where links cannot be made, a copy written atomically
/// ([`stagewise_core::write_atomically`]).
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    let source = std::fs::canonicalize(from).map_err(|e| Error::io(from, e))?;
    if std::fs::hard_link(&source, to).is_ok() {
        return Ok(());
    }
    let bytes = std::fs::read(&source).map_err(|e| Error::io(&source, e))?;
    stagewise_core::write_atomically(to, &bytes).map_err(|e| Error::io(to, e))
}

/// Refuses a run whose estimated memory ([`crate::memory`]) exceeds `train.max_memory`, or what
/// the system has available, before any data is read or any tensor allocated.
fn check_memory(config: &Config, boxes: [bool; 5]) -> Result<()> {
    let (limit, source) = match &config.train.max_memory {
        Some(m) => {
            (memory::parse_bytes(m, "train.max_memory")? as f64, "allowed by train.max_memory (--max-memory)")
        }
        None => match memory::available_bytes() {
            Some(bytes) => (bytes, "available"),
            None => return Ok(()),
        },
    };
    let max_size = config.vectorizer.max_size();
    let corpus_bytes = std::fs::metadata(&config.data.path).map_or(0, |m| m.len());
    memory::check(&memory::estimate(config, max_size, corpus_bytes, boxes), limit, source)
}

/// Stops a run whose last window left a non-finite loss, gradient or parameter, naming the box
/// and the first non-finite tensor. The parameters are checked every window (one pass over the
/// arena, a fraction of a percent of a window); the gradients only to say which box went first.
pub(crate) fn check_finite<E, F, L, B, O>(model: &Model<f32, E, F, L, B, O>) -> Result<()>
where
    E: Embedding<f32>,
    F: Forward<f32>,
    L: Loss<f32>,
    B: Backward<f32>,
    O: Optimizer<f32>,
{
    let [_, _, loss, backward, update] = model.stage_names();
    let out = &model.loss_out;
    if !out.nll_sum.is_finite() {
        return Err(Error::Numeric { stage: loss, message: format!("the loss is {}", out.nll_sum) });
    }
    let layout = model.tape.params.layout();
    let Some(param) = first_non_finite(layout, model.tape.params.as_slice()) else {
        return Ok(());
    };
    let (stage, what, tensor) = match first_non_finite(layout, model.tape.grads.as_slice()) {
        Some(grad) => (backward, "gradient", grad),
        None => (update, "parameter", param),
    };
    Err(Error::Numeric { stage, message: format!("non-finite {what} in {tensor}") })
}

/// The name of the first tensor of `layout` holding a non-finite value of `data`, if any.
fn first_non_finite<'a>(layout: &'a ParamLayout, data: &[f32]) -> Option<&'a str> {
    const CHUNK: usize = 1 << 16;
    if !data.par_chunks(CHUNK).any(|c| c.iter().any(|x| !x.is_finite())) {
        return None;
    }
    let first = data.iter().position(|x| !x.is_finite())?;
    layout.entries().iter().find(|e| (e.offset..e.offset + e.len()).contains(&first)).map(|e| e.name.as_str())
}

impl EpochMetrics {
    /// Fails, naming the figure, if any figure is not finite (a diverged model's perplexity
    /// overflows): `metrics.jsonl` never holds one.
    fn check_finite(&self) -> Result<()> {
        let figures = [
            ("train loss", self.train_loss),
            ("test loss", self.test_loss),
            ("test perplexity", self.test_ppl),
            ("test accuracy", self.test_acc),
            ("test nats per character", self.test_nats_per_char.unwrap_or(0.0)),
            ("learning rate", self.lr),
            ("gradient norm", self.grad_norm.unwrap_or(0.0)),
        ];
        match figures.iter().find(|(_, v)| !v.is_finite()) {
            None => Ok(()),
            Some((name, v)) => Err(Error::Numeric {
                stage: "evaluation".into(),
                message: format!("{name} is {v} (test loss {}): the model diverged", self.test_loss),
            }
            .context(format!("epoch {}", self.epoch))),
        }
    }
}

/// Appends one JSON object per epoch to a file of your choice, in the format of
/// `metrics.jsonl` (the run directory's own `metrics.jsonl` is written by [`train`]).
///
/// The file is (re)started only in [`Observer::on_start`], i.e. once the data and the model are
/// ready: a run that fails on bad input leaves the previous file untouched.
pub struct MetricsFile {
    path: PathBuf,
}

impl MetricsFile {
    /// An observer that will write `path` (one run, one file: an existing file is replaced when
    /// training starts).
    pub fn create(path: PathBuf) -> Result<Self> {
        Ok(MetricsFile { path })
    }
}

impl Observer for MetricsFile {
    fn on_start(&mut self, _info: &RunInfo) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(&self.path, "").map_err(|e| Error::io(&self.path, e))
    }

    fn on_epoch(&mut self, m: &EpochMetrics) -> Result<()> {
        use std::io::Write;
        let line = serde_json::to_string(m).map_err(|e| Error::data("metrics", e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(f, "{line}").map_err(|e| Error::io(&self.path, e))
    }
}

/// Prints the run to the terminal: the baseline first, progress on stderr, one line per epoch.
#[derive(Default)]
pub struct Console {
    last_report: Option<Instant>,
}

impl Observer for Console {
    fn on_start(&mut self, info: &RunInfo) -> Result<()> {
        println!(
            "corpus: {} tokens (train {}, test {}), vocabulary {}, {} parameters, {} windows/epoch, {} threads",
            info.tokens,
            info.train_tokens,
            info.test_tokens,
            info.vocab,
            info.params,
            info.windows,
            info.threads
        );
        println!("unigram baseline: test ppl {:.2}", info.unigram_ppl);
        if let Some(coverage) = &info.pretrained {
            println!("{}", coverage.line());
        }
        Ok(())
    }

    fn on_window(&mut self, epoch: usize, done: usize, total: usize, loss: f64) -> bool {
        let due = self.last_report.is_none_or(|t| t.elapsed().as_secs_f64() >= 10.0);
        if due || done == total {
            eprintln!("  epoch {epoch}: window {done}/{total}, loss {loss:.4}");
            self.last_report = Some(Instant::now());
        }
        true
    }

    fn on_epoch(&mut self, m: &EpochMetrics) -> Result<()> {
        let per_char = m.test_nats_per_char.map(|x| format!(" | test nats/char {x:.4}")).unwrap_or_default();
        println!(
            "epoch {}: train loss {:.4} | test loss {:.4} | test ppl {:.2} | test acc {:.4}{per_char} | {:.0} tokens/s | {:.1} s",
            m.epoch, m.train_loss, m.test_loss, m.test_ppl, m.test_acc, m.tokens_per_s, m.seconds
        );
        let total: f64 = m.stage_seconds.iter().sum::<f64>().max(1e-9);
        let split: Vec<String> = CYCLE_STAGES
            .iter()
            .zip(m.stage_seconds)
            .map(|(name, s)| format!("{name} {s:.1}s ({:.0}%)", 100.0 * s / total))
            .collect();
        println!("  time per box: {}", split.join(", "));
        match m.grad_norm {
            Some(norm) => {
                println!("  learning rate {:e} | gradient norm {norm:.4} (mean, before clipping)", m.lr)
            }
            None => println!("  learning rate {:e}", m.lr),
        }
        Ok(())
    }
}
