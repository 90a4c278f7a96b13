//! The `classify` task: label texts with the same boxes as the language model.
//!
//! `text -> tokenize -> vectorize -> embed -> forward (layers, pooling over time, head) -> loss
//! -> backward -> update`: the texts of CSV files ([`crate::texts`]) are tokenized one by one,
//! the vocabulary is fitted on the training texts, and batches of `train.batch` texts are laid
//! out as padded windows ([`Model::set_texts`]). The forward box pools each text's states
//! (`forward.pooling`) and its head scores the classes; the loss is the same cross-entropy, one
//! row per text.
//!
//! Every epoch, after training on every training text once (shuffled from the run seed), the
//! whole test file is scored: loss, accuracy and macro-F1 go to the terminal and to
//! `metrics.jsonl`; the checkpoint of the epoch with the lowest test loss is kept as `best.ckpt`
//! beside the last epoch's `model.ckpt`; `confusion.json` holds the confusion matrix and
//! per-class precision, recall and F1 of the last epoch.

use crate::checkpoint::Checkpoint;
use crate::config::{Config, Task};
use crate::model::Model;
use crate::pretrained::load_pretrained;
use crate::run_dir::RunDir;
use crate::texts::{LabelledTexts, class_ids, classes_of, read_csv};
use crate::train::{check_finite, thread_pool};
use serde::Serialize;
use stagewise_core::{Ctx, Error, Mode, Result, Rng, Stage, Tokens, par_for_threads};
use stagewise_optimizer::schedule::Schedule;
use stagewise_tokenizer::TokenizerImpl;
use stagewise_vectorizer::{Vectorizer, VectorizerImpl};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The files a classifier's run directory holds (see [`crate::run_dir`]).
pub const CLASSIFY_FILES: [&str; 6] =
    ["metrics.jsonl", "vocab.json", "model.ckpt", "config.toml", "best.ckpt", "confusion.json"];

/// Texts as ids (each 1 to `data.max_tokens` long) and their class ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// The ids of each text.
    pub texts: Vec<Vec<u32>>,
    /// The class id of each text.
    pub labels: Vec<u32>,
}

/// Both files encoded, with the boxes and classes that did it.
pub struct ClassifyData {
    /// The tokenizer used.
    pub tokenizer: TokenizerImpl,
    /// The vocabulary fitted on the training texts.
    pub vectorizer: VectorizerImpl,
    /// The class labels, sorted: class id `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// The training texts.
    pub train: Encoded,
    /// The test texts.
    pub test: Encoded,
}

/// The ids of `text`: tokenized, vectorized, and cut to its first `max_tokens` ids. `tokens` is
/// scratch.
pub fn encode(
    tokenizer: &TokenizerImpl,
    vectorizer: &VectorizerImpl,
    text: &str,
    max_tokens: usize,
    tokens: &mut Tokens,
) -> Result<Vec<u32>> {
    let cx = Ctx::seq();
    tokenizer.run(text, tokens, &cx)?;
    let mut ids = Vec::new();
    vectorizer.run(tokens, &mut ids, &cx)?;
    ids.truncate(max_tokens);
    Ok(ids)
}

/// Tokenizes every text of `file`, each cut to `max_tokens` tokens; a text with no token is an
/// error naming the file and line.
fn tokenize_all(
    tokenizer: &TokenizerImpl,
    file: &LabelledTexts,
    path: &Path,
    max_tokens: usize,
) -> Result<Vec<Tokens>> {
    let cx = Ctx::seq();
    let mut all = Vec::with_capacity(file.len());
    let mut tokens = Tokens::new();
    for (text, line) in file.texts.iter().zip(&file.lines) {
        tokenizer.run(text, &mut tokens, &cx)?;
        if tokens.is_empty() {
            return Err(Error::data(format!("{}:{line}", path.display()), "the text has no tokens"));
        }
        let mut kept = Tokens::new();
        tokens.iter().take(max_tokens).for_each(|t| kept.push(t));
        all.push(kept);
    }
    Ok(all)
}

/// The CSV file a classify config names under `field` (`data.train`, `data.test`).
fn csv_path<'a>(path: &'a Option<PathBuf>, field: &str) -> Result<&'a Path> {
    path.as_deref().ok_or_else(|| Error::config(field, "the classify task needs it: a CSV file"))
}

/// Reads both CSV files of `config.data`, fits the vocabulary on the training texts and the
/// classes on the training labels, and encodes both files. A test label never seen in training
/// is an error naming it, with its file and line.
pub fn prepare(config: &Config) -> Result<ClassifyData> {
    let d = &config.data;
    let (train_path, test_path) = (csv_path(&d.train, "data.train")?, csv_path(&d.test, "data.test")?);
    let train_file = read_csv(train_path, &d.text_column, &d.label_column)?;
    let test_file = read_csv(test_path, &d.text_column, &d.label_column)?;
    let classes = classes_of(&train_file.labels);
    if classes.len() < 2 {
        return Err(Error::data(
            train_path.display().to_string(),
            format!("{} distinct label: a classifier needs at least 2", classes.len()),
        ));
    }
    let train_labels = class_ids(&train_file, &classes, train_path)?;
    let test_labels = class_ids(&test_file, &classes, test_path)?;
    let tokenizer = config.tokenizer.build()?;
    let train_tokens = tokenize_all(&tokenizer, &train_file, train_path, d.max_tokens)?;
    let test_tokens = tokenize_all(&tokenizer, &test_file, test_path, d.max_tokens)?;
    let vectorizer = config.vectorizer.fit(train_tokens.iter().flat_map(|t| t.iter()))?;
    let cx = Ctx::seq();
    let ids = |all: &[Tokens]| -> Result<Vec<Vec<u32>>> {
        all.iter()
            .map(|t| {
                let mut ids = Vec::with_capacity(t.len());
                vectorizer.run(t, &mut ids, &cx)?;
                Ok(ids)
            })
            .collect()
    };
    let train = Encoded { texts: ids(&train_tokens)?, labels: train_labels };
    let test = Encoded { texts: ids(&test_tokens)?, labels: test_labels };
    Ok(ClassifyData { tokenizer, vectorizer, classes, train, test })
}

/// One epoch's figures; also one line of a classifier's `metrics.jsonl` (keys are a contract).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassifyEpoch {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy per training text over the epoch (nats).
    pub train_loss: f64,
    /// Mean cross-entropy per test text (nats).
    pub test_loss: f64,
    /// Fraction of test texts whose highest-scoring class is their label.
    pub test_acc: f64,
    /// The mean over classes of each class's F1 on the test texts (a class never predicted
    /// nor present scores 0).
    pub macro_f1: f64,
    /// Wall time since training started (seconds).
    pub seconds: f64,
}

/// Precision, recall and F1 of one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassScores {
    /// The class's label.
    pub label: String,
    /// Of the texts predicted as this class, the fraction that are (0 if none is predicted).
    pub precision: f64,
    /// Of the texts of this class, the fraction predicted as it (0 if there is none).
    pub recall: f64,
    /// The harmonic mean of precision and recall (0 if both are 0).
    pub f1: f64,
    /// Texts of this class.
    pub support: u64,
}

/// Counts of (true class, predicted class) over a test pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// The class labels, in id order.
    pub labels: Vec<String>,
    /// `matrix[t][p]`: texts of class `t` predicted as class `p`.
    pub matrix: Vec<Vec<u64>>,
}

impl Confusion {
    /// An empty matrix over `labels`.
    pub fn new(labels: &[String]) -> Self {
        let c = labels.len();
        Confusion { labels: labels.to_vec(), matrix: vec![vec![0; c]; c] }
    }

    /// Counts one text of class `truth` predicted as `predicted`.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.matrix[truth][predicted] += 1;
    }

    /// Texts counted.
    pub fn total(&self) -> u64 {
        self.matrix.iter().flatten().sum()
    }

    /// Fraction on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let hits: u64 = (0..self.labels.len()).map(|i| self.matrix[i][i]).sum();
        hits as f64 / self.total().max(1) as f64
    }

    /// Precision, recall and F1 of every class, in id order.
    pub fn per_class(&self) -> Vec<ClassScores> {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        (0..self.labels.len())
            .map(|i| {
                let hit = self.matrix[i][i];
                let support: u64 = self.matrix[i].iter().sum();
                let predicted: u64 = self.matrix.iter().map(|row| row[i]).sum();
                let (precision, recall) = (ratio(hit, predicted), ratio(hit, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores { label: self.labels[i].clone(), precision, recall, f1, support }
            })
            .collect()
    }

    /// The unweighted mean of the classes' F1.
    pub fn macro_f1(&self) -> f64 {
        let per = self.per_class();
        per.iter().map(|c| c.f1).sum::<f64>() / per.len().max(1) as f64
    }

    /// The matrix and the per-class table as text, for the terminal.
    pub fn render(&self) -> String {
        let w = self.labels.iter().map(|l| l.len()).max().unwrap_or(0).max(9) + 5;
        let mut out = format!("confusion matrix (rows: true label, columns: predicted)\n{:>w$}", "");
        for i in 0..self.labels.len() {
            out.push_str(&format!(" {:>6}", format!("[{i}]")));
        }
        out.push('\n');
        for (i, row) in self.matrix.iter().enumerate() {
            out.push_str(&format!("{:>w$}", format!("[{i}] {}", self.labels[i])));
            for n in row {
                out.push_str(&format!(" {n:>6}"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "{:>w$} {:>9} {:>9} {:>9} {:>7}\n",
            "class", "precision", "recall", "f1", "support"
        ));
        for c in self.per_class() {
            out.push_str(&format!(
                "{:>w$} {:>9.4} {:>9.4} {:>9.4} {:>7}\n",
                c.label, c.precision, c.recall, c.f1, c.support
            ));
        }
        out.push_str(&format!("accuracy {:.4} | macro-F1 {:.4}\n", self.accuracy(), self.macro_f1()));
        out
    }

    /// `confusion.json`: the matrix, the per-class scores, accuracy and macro-F1 of `epoch`.
    pub fn to_json(&self, epoch: usize) -> Result<String> {
        let value = serde_json::json!({
            "epoch": epoch,
            "labels": self.labels,
            "matrix": self.matrix,
            "per_class": self.per_class(),
            "accuracy": self.accuracy(),
            "macro_f1": self.macro_f1(),
        });
        let mut text =
            serde_json::to_string_pretty(&value).map_err(|e| Error::data("confusion.json", e.to_string()))?;
        text.push('\n');
        Ok(text)
    }
}

/// The result of scoring a split.
#[derive(Clone, Debug)]
pub struct ClassEval {
    /// Summed cross-entropy.
    pub nll_sum: f64,
    /// Texts scored.
    pub count: usize,
    /// True against predicted classes.
    pub confusion: Confusion,
}

impl ClassEval {
    /// Mean cross-entropy per text.
    pub fn loss(&self) -> f64 {
        self.nll_sum / self.count.max(1) as f64
    }
}

/// Index of the largest score (the first on ties).
fn argmax(scores: &[f32]) -> usize {
    scores.iter().enumerate().fold(0, |best, (i, &s)| if s > scores[best] { i } else { best })
}

/// Scores every text of `split` in batches of the model's batch size, in order.
pub fn evaluate_texts(
    model: &mut Model<f32>,
    split: &Encoded,
    classes: &[String],
    cx: &Ctx,
) -> Result<ClassEval> {
    let cx = Ctx { mode: Mode::Eval, ..*cx };
    let batch = model.dims.batch;
    let c = classes.len();
    let mut out = ClassEval { nll_sum: 0.0, count: 0, confusion: Confusion::new(classes) };
    let mut texts: Vec<&[u32]> = Vec::with_capacity(batch);
    let mut labels: Vec<u32> = Vec::with_capacity(batch);
    // By length, so that each batch pads little: a text's scores do not depend on its batch.
    let mut order: Vec<usize> = (0..split.texts.len()).collect();
    order.sort_by_key(|&i| split.texts[i].len());
    for chunk in order.chunks(batch) {
        texts.clear();
        labels.clear();
        texts.extend(chunk.iter().map(|&i| split.texts[i].as_slice()));
        labels.extend(chunk.iter().map(|&i| split.labels[i]));
        model.eval_texts(&texts, &labels, &cx)?;
        out.nll_sum += model.loss_out.nll_sum;
        out.count += model.loss_out.count;
        let scores = model.class_scores();
        for (i, &label) in labels.iter().enumerate() {
            out.confusion.add(label as usize, argmax(&scores[i * c..(i + 1) * c]));
        }
    }
    Ok(out)
}

/// The most frequent class of `labels` (the lowest id on ties).
pub fn majority_class(labels: &[u32], classes: usize) -> usize {
    let mut counts = vec![0usize; classes];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    (0..classes).fold(0, |best, i| if counts[i] > counts[best] { i } else { best })
}

/// What a finished classifier run leaves behind.
pub struct ClassifyOutcome {
    /// The model after the last epoch.
    pub model: Model<f32>,
    /// The data and fitted boxes.
    pub data: ClassifyData,
    /// One entry per epoch.
    pub epochs: Vec<ClassifyEpoch>,
    /// The test accuracy of always predicting the training set's most frequent class.
    pub majority_acc: f64,
    /// The epoch with the lowest test loss (`best.ckpt`).
    pub best_epoch: usize,
    /// The last epoch's confusion matrix (`confusion.json`).
    pub confusion: Confusion,
}

/// One epoch's batches of `batch` text indices out of `0..n`: shuffled from `rng`, then (with
/// `bucket` > 1) sorted by length within pools of `bucket` batches, batched, and the batches
/// shuffled. Every text is in exactly one batch.
pub fn epoch_batches(lengths: &[usize], batch: usize, bucket: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    shuffle(&mut order, rng);
    if bucket <= 1 {
        return order.chunks(batch).map(<[usize]>::to_vec).collect();
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks_mut(batch * bucket) {
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch).map(<[usize]>::to_vec));
    }
    let mut perm: Vec<usize> = (0..batches.len()).collect();
    shuffle(&mut perm, rng);
    perm.into_iter().map(|i| std::mem::take(&mut batches[i])).collect()
}

/// Shuffles `order` in place (Fisher–Yates) from `rng`.
fn shuffle(order: &mut [usize], rng: &mut Rng) {
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
}

/// Trains a classifier as `config` describes (its `data.task` must be `classify`) in the run
/// directory `out_dir`, printing the majority-class baseline first, one line per epoch, and the
/// last epoch's confusion matrix and per-class scores at the end; the run directory gets
/// [`CLASSIFY_FILES`] after every epoch.
pub fn train_classifier(config: &Config, out_dir: &Path) -> Result<ClassifyOutcome> {
    if config.data.task != Task::Classify {
        return Err(Error::config("data.task", "train_classifier trains the classify task"));
    }
    let pool = thread_pool(config.train.threads)?;
    let threads = pool.current_num_threads();
    pool.install(|| train_in_pool(config, out_dir, threads))
}

fn train_in_pool(config: &Config, out_dir: &Path, threads: usize) -> Result<ClassifyOutcome> {
    let mut run_dir = RunDir::open(out_dir)?;
    let data = prepare(config)?;
    let classes = data.classes.len();
    let vocab = data.vectorizer.vocab_size();
    let batch = config.train.batch;
    let mut model =
        Model::<f32>::classifier_builder(config, classes)?.build(vocab, batch, config.data.max_tokens)?;
    // The table starts from `[embedding] pretrained`, as the language model's does.
    let pretrained = load_pretrained(&config.embedding, &data.vectorizer, &mut model.tape.params)?;
    let cx = Ctx { par: par_for_threads(threads), mode: Mode::Train, step: 0, seed: config.train.seed };
    let n = data.train.texts.len();
    let batches = match config.train.max_windows {
        0 => n.div_ceil(batch),
        m => m.min(n.div_ceil(batch)),
    };
    println!(
        "data: {} training texts, {} test texts, {classes} classes, vocabulary {vocab}, {} parameters, {batches} batches/epoch, {threads} threads",
        n,
        data.test.texts.len(),
        model.dims.params,
    );
    let majority = majority_class(&data.train.labels, classes);
    let majority_acc = data.test.labels.iter().filter(|&&l| l as usize == majority).count() as f64
        / data.test.labels.len().max(1) as f64;
    println!("majority class `{}`: test acc {majority_acc:.4}", data.classes[majority]);
    if let Some(coverage) = &pretrained {
        println!("{}", coverage.line());
    }

    let (config_toml, vocab_json) = (config.to_toml(), data.vectorizer.to_json());
    let total_steps = (config.train.epochs as u64).saturating_mul(batches as u64);
    let mut schedule = Schedule::new(&config.schedule, config.optimizer.lr(), total_steps)?;
    let started = Instant::now();
    let mut epochs: Vec<ClassifyEpoch> = Vec::new();
    let mut metrics_lines = String::new();
    let lengths: Vec<usize> = data.train.texts.iter().map(Vec::len).collect();
    let mut texts: Vec<&[u32]> = Vec::with_capacity(batch);
    let mut labels: Vec<u32> = Vec::with_capacity(batch);
    let mut best: Option<(usize, f64)> = None;
    let mut last_report = Instant::now();
    let mut confusion = Confusion::new(&data.classes);
    for epoch in 1..=config.train.epochs {
        let mut rng = Rng::stream(config.train.seed, &format!("classify.shuffle.{epoch}"));
        let order = epoch_batches(&lengths, batch, config.data.bucket, &mut rng);
        let (mut nll, mut count) = (0.0, 0usize);
        for (done, chunk) in order.iter().take(batches).enumerate() {
            texts.clear();
            labels.clear();
            texts.extend(chunk.iter().map(|&i| data.train.texts[i].as_slice()));
            labels.extend(chunk.iter().map(|&i| data.train.labels[i]));
            model.lr_factor = schedule.factor(model.opt_state.step);
            let place =
                format!("epoch {epoch}, batch {} of {batches} (step {})", done + 1, model.opt_state.step + 1);
            model.train_texts(&texts, &labels, &cx).map_err(|e| e.context(&place))?;
            check_finite(&model).map_err(|e| e.context(&place))?;
            nll += model.loss_out.nll_sum;
            count += model.loss_out.count;
            if last_report.elapsed().as_secs_f64() >= 10.0 || done + 1 == batches {
                eprintln!("  epoch {epoch}: batch {}/{batches}, loss {:.4}", done + 1, model.loss_out.mean());
                last_report = Instant::now();
            }
        }
        let eval = evaluate_texts(&mut model, &data.test, &data.classes, &cx)
            .map_err(|e| e.context(format!("epoch {epoch}, evaluation")))?;
        let m = ClassifyEpoch {
            epoch,
            train_loss: nll / count.max(1) as f64,
            test_loss: eval.loss(),
            test_acc: eval.confusion.accuracy(),
            macro_f1: eval.confusion.macro_f1(),
            seconds: started.elapsed().as_secs_f64(),
        };
        if let Some((name, v)) = [("train loss", m.train_loss), ("test loss", m.test_loss)]
            .into_iter()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(Error::Numeric {
                stage: "evaluation".into(),
                message: format!("{name} is {v}: the model diverged"),
            }
            .context(format!("epoch {epoch}")));
        }
        schedule.end_epoch(m.test_loss);
        confusion = eval.confusion;
        let is_best = best.is_none_or(|(_, loss)| m.test_loss < loss);
        if is_best {
            best = Some((epoch, m.test_loss));
        }
        let line = serde_json::to_string(&m).map_err(|e| Error::data("metrics", e.to_string()))?;
        metrics_lines.push_str(&line);
        metrics_lines.push('\n');
        let confusion_json = confusion.to_json(epoch)?;
        let previous_best = out_dir.join("best.ckpt");
        run_dir.publish_files(&CLASSIFY_FILES, |dir| {
            let save = |path: &Path| {
                Checkpoint::save_classifier(
                    &model,
                    &config_toml,
                    &vocab_json,
                    &data.classes,
                    epoch as u64,
                    config.train.seed,
                    path,
                )
            };
            save(&dir.join("model.ckpt"))?;
            let best_path = dir.join("best.ckpt");
            if is_best {
                save(&best_path)?;
            } else {
                std::fs::copy(&previous_best, &best_path).map_err(|e| Error::io(&previous_best, e))?;
            }
            data.vectorizer.save(dir.join("vocab.json"))?;
            for (file, text) in [
                ("config.toml", &config_toml),
                ("metrics.jsonl", &metrics_lines),
                ("confusion.json", &confusion_json),
            ] {
                let path = dir.join(file);
                stagewise_core::write_atomically(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
            }
            Ok(())
        })?;
        println!(
            "epoch {}: train loss {:.4} | test loss {:.4} | test acc {:.4} | macro-F1 {:.4} | {:.1} s{}",
            m.epoch,
            m.train_loss,
            m.test_loss,
            m.test_acc,
            m.macro_f1,
            m.seconds,
            if is_best { " | best so far" } else { "" }
        );
        epochs.push(m);
    }
    print!("{}", confusion.render());
    let best_epoch = best.map_or(0, |(e, _)| e);
    println!(
        "wrote {}, {}, {} (epoch {best_epoch}, lowest test loss) and {}",
        out_dir.join("metrics.jsonl").display(),
        out_dir.join("model.ckpt").display(),
        out_dir.join("best.ckpt").display(),
        out_dir.join("confusion.json").display()
    );
    Ok(ClassifyOutcome { model, data, epochs, majority_acc, best_epoch, confusion })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_scores_match_hand_computed_ones() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut c = Confusion::new(&labels);
        // a: 2 right, 1 as b; b: 1 right; c: 1 as a. Nothing predicted as c.
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0)] {
            c.add(t, p);
        }
        assert_eq!(c.total(), 5);
        assert!((c.accuracy() - 0.6).abs() < 1e-12);
        let per = c.per_class();
        let (pa, ra) = (2.0 / 3.0, 2.0 / 3.0);
        assert!((per[0].precision - pa).abs() < 1e-12 && (per[0].recall - ra).abs() < 1e-12);
        assert!((per[1].precision - 0.5).abs() < 1e-12 && (per[1].recall - 1.0).abs() < 1e-12);
        assert_eq!((per[2].precision, per[2].recall, per[2].f1, per[2].support), (0.0, 0.0, 0.0, 1));
        let f1b = 2.0 * 0.5 / 1.5;
        assert!((c.macro_f1() - (2.0 / 3.0 + f1b) / 3.0).abs() < 1e-12);
        let json: serde_json::Value = serde_json::from_str(&c.to_json(4).unwrap()).unwrap();
        assert_eq!(json["matrix"][0], serde_json::json!([2, 1, 0]));
        assert_eq!(json["epoch"], 4);
        assert!(c.render().contains("macro-F1"));
    }

    #[test]
    fn shuffling_is_a_permutation_fixed_by_the_seed() {
        let mut a: Vec<usize> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, &mut Rng::stream(3, "classify.shuffle.1"));
        shuffle(&mut b, &mut Rng::stream(3, "classify.shuffle.1"));
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        a.sort_unstable();
        assert_eq!(a, (0..50).collect::<Vec<_>>());
        assert_eq!(majority_class(&[2, 1, 2, 0, 1], 3), 1, "ties go to the lowest id");
        let lengths: Vec<usize> = (0..50).map(|i| (i * 7) % 13 + 1).collect();
        for bucket in [1, 4] {
            let batches = epoch_batches(&lengths, 4, bucket, &mut Rng::new(1));
            assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 4));
            let mut all: Vec<usize> = batches.concat();
            all.sort_unstable();
            assert_eq!(all, (0..50).collect::<Vec<_>>(), "bucket {bucket}: every text once");
        }
    }
}
