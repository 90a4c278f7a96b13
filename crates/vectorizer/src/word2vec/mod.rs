//! word2vec: skip-gram (or CBOW) with negative sampling, as Mikolov et al.'s word2vec.c and
//! gensim's `word2vec_inner.pyx` define it. The flowchart's vectorize box, `v_w = Word2Vec(w)`,
//! fitted on a corpus by [`Word2VecTrainer`] and written as a vector file
//! ([`crate::vectors`]).
//!
//! What each part does, with gensim's definitions:
//! - Vocabulary ([`W2vVocab`]): words seen at least `min_count` times, most frequent first.
//! - Subsampling (`sample`, default 1e-3): a word of count v is kept with probability
//!   `(sqrt(v / t) + 1) * t / v`, t = `sample` × the kept words' total.
//! - Negatives: drawn from unigram^0.75 by bisection of a cumulative table (gensim's
//!   `cum_table`), skipped when they hit the word being predicted.
//! - Window shrinking: each position draws b uniform in `0..window` and uses `window - b` words
//!   on each side, within its sentence, after subsampled and unknown words were removed.
//! - Learning rate: linear from `alpha` (0.025) to `min_alpha` (0.0001) over all epochs,
//!   updated per job (a sentence of at most 10,000 tokens, gensim's `MAX_WORDS_IN_BATCH`).
//! - Sigmoid: gensim's table of 1,000 values over (−6, 6); an update whose dot product is outside
//!   it is skipped, as in gensim.
//! - Skip-gram predicts the centre word from each context word's input vector (gensim's
//!   `fast_sentence_sg_neg(word=i, word2=j)`); CBOW predicts it from the mean of the context
//!   vectors and adds the same error to each of them (`cbow_mean = 1`).
//! - Threads: Hogwild, as in gensim and word2vec.c: threads take jobs in turn and update the
//!   shared weights without locks, through plain `f32` rows
//!   ([`stagewise_kernels::hogwild::HogwildMatrix`], whose docs say why that is the algorithm
//!   and how it stays sound: one update may overwrite part of another, which Hogwild accepts),
//!   so the dot products and axpys vectorise like gensim's BLAS calls; with more than one
//!   thread the result depends on timing and is not reproducible. With one thread it is
//!   deterministic: every random number comes from the seed, the epoch and the job index.
//!
//! The loss reported per epoch is really computed: for every update, `−ln σ(v·u⁺) − Σ ln σ(−v·u⁻)`
//! over the positive and negative targets (from a table of ln σ inside (−6, 6), exactly
//! outside), summed over the epoch and divided by the number of updates (skip-gram: one per
//! centre-context pair; CBOW: one per centre word).

mod vocab;

pub use vocab::{CUM_TABLE_DOMAIN, W2vVocab};

use crate::vectors::Vectors;
use stagewise_core::{Error, Result, Rng};
use stagewise_kernels::hogwild::HogwildMatrix;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Tokens per job (sentence), gensim's `MAX_WORDS_IN_BATCH`.
pub const JOB_TOKENS: usize = 10_000;
/// The sigmoid table's range (gensim's `MAX_EXP`).
const MAX_EXP: f32 = 6.0;
/// The sigmoid table's size (gensim's `EXP_TABLE_SIZE`).
const EXP_TABLE_SIZE: usize = 1000;
/// gensim's 48-bit linear congruential generator.
const LCG_MUL: u64 = 25_214_903_917;
const LCG_MASK: u64 = (1 << 48) - 1;

/// The settings of a word2vec run (defaults: gensim's, skip-gram).
#[derive(Clone, Debug, PartialEq)]
pub struct Word2VecConfig {
    /// Vector width.
    pub dim: usize,
    /// Largest distance between centre and context words.
    pub window: usize,
    /// Negative samples per positive one (at least 1).
    pub negative: usize,
    /// Fewest occurrences for a word to be kept.
    pub min_count: u64,
    /// Passes over the corpus.
    pub epochs: usize,
    /// Worker threads (0 = every core).
    pub threads: usize,
    /// Subsampling threshold (0 = none).
    pub sample: f64,
    /// Initial learning rate.
    pub alpha: f64,
    /// Final learning rate.
    pub min_alpha: f64,
    /// CBOW instead of skip-gram.
    pub cbow: bool,
    /// Seed of every random number.
    pub seed: u64,
}

impl Default for Word2VecConfig {
    fn default() -> Self {
        Word2VecConfig {
            dim: 100,
            window: 5,
            negative: 5,
            min_count: 5,
            epochs: 5,
            threads: 0,
            sample: 1e-3,
            alpha: 0.025,
            min_alpha: 0.0001,
            cbow: false,
            seed: 1,
        }
    }
}

impl Word2VecConfig {
    /// Checks the settings, naming the flag at fault.
    pub fn validate(&self) -> Result<()> {
        for (flag, v) in [
            ("--dim", self.dim),
            ("--window", self.window),
            ("--negative", self.negative),
            ("--epochs", self.epochs),
        ] {
            if v == 0 {
                return Err(Error::config(flag, "must be at least 1"));
            }
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::config("--alpha", format!("{} is not a positive number", self.alpha)));
        }
        if !(self.min_alpha.is_finite() && (0.0..=self.alpha).contains(&self.min_alpha)) {
            return Err(Error::config(
                "--min-alpha",
                format!("{} is not between 0 and alpha", self.min_alpha),
            ));
        }
        if !(self.sample.is_finite() && self.sample >= 0.0) {
            return Err(Error::config("--sample", format!("{} is not a number of at least 0", self.sample)));
        }
        Ok(())
    }
}

/// One epoch's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean negative-sampling loss per update (nats).
    pub loss: f64,
    /// Updates made (skip-gram: pairs; CBOW: centre words).
    pub updates: u64,
    /// Corpus tokens per second.
    pub words_per_s: f64,
    /// Seconds this epoch took.
    pub seconds: f64,
}

/// Trains word vectors: [`Word2VecTrainer::new`] builds the vocabulary and initial weights from
/// the tokens, [`Word2VecTrainer::train`] runs the epochs, [`Word2VecTrainer::vectors`] gives
/// the result (never a half-fitted stage: the vectors exist once trained).
pub struct Word2VecTrainer {
    config: Word2VecConfig,
    vocab: W2vVocab,
    /// Token ids of the corpus (`u32::MAX`: a word not kept).
    corpus: Vec<u32>,
    /// Input vectors, one row per word, shared by the threads without locks.
    syn0: HogwildMatrix,
    /// Output vectors, as `syn0`.
    syn1neg: HogwildMatrix,
    exp_table: Vec<f32>,
    log_table: Vec<f32>,
}

impl Word2VecTrainer {
    /// Counts `tokens`, builds the vocabulary and the initial weights: input vectors uniform in
    /// ±0.5 / dim, output vectors zero (gensim's and word2vec.c's initialisation).
    pub fn new<'a>(
        config: Word2VecConfig,
        tokens: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<Self> {
        config.validate()?;
        let vocab = W2vVocab::build(tokens.clone(), config.min_count, config.sample)?;
        let corpus: Vec<u32> = tokens.into_iter().map(|t| vocab.id_of(t).unwrap_or(u32::MAX)).collect();
        let n =
            vocab.len().checked_mul(config.dim).ok_or_else(|| Error::memory("word2vec weights", None, 4))?;
        let mut rng = Rng::stream(config.seed, "word2vec init");
        let scale = 1.0 / config.dim as f64;
        let init: Vec<f32> = (0..n).map(|_| ((rng.uniform() - 0.5) * scale) as f32).collect();
        let syn0 = HogwildMatrix::from_vec(init, config.dim);
        let syn1neg = HogwildMatrix::zeros(vocab.len(), config.dim);
        let exp_table: Vec<f32> = (0..EXP_TABLE_SIZE)
            .map(|i| {
                let e = ((i as f64 / EXP_TABLE_SIZE as f64 * 2.0 - 1.0) * MAX_EXP as f64).exp();
                (e / (e + 1.0)) as f32
            })
            .collect();
        let log_table = exp_table.iter().map(|&s| s.ln()).collect();
        Ok(Word2VecTrainer { config, vocab, corpus, syn0, syn1neg, exp_table, log_table })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &W2vVocab {
        &self.vocab
    }

    /// Tokens in the corpus.
    pub fn corpus_len(&self) -> usize {
        self.corpus.len()
    }

    /// The learning rate of a job starting after `done` of `total` tokens of epoch `epoch`
    /// (0-based): linear from `alpha` to `min_alpha` over all epochs (gensim's `_get_next_alpha`).
    pub fn alpha_at(&self, epoch: usize, done: usize, total: usize) -> f32 {
        let c = &self.config;
        let progress = (epoch as f64 + done as f64 / total.max(1) as f64) / c.epochs as f64;
        (c.alpha - (c.alpha - c.min_alpha) * progress).max(c.min_alpha) as f32
    }

    /// Runs every epoch, calling `on_epoch` after each.
    pub fn train(&mut self, mut on_epoch: impl FnMut(&EpochReport)) -> Result<()> {
        let threads = match self.config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let jobs = self.corpus.len().div_ceil(JOB_TOKENS);
        for epoch in 0..self.config.epochs {
            let started = Instant::now();
            let next = AtomicUsize::new(0);
            let this = &*self;
            let totals: Vec<(f64, u64)> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads.min(jobs.max(1)))
                    .map(|_| {
                        s.spawn(|| {
                            let mut worker = Worker::new(this.config.dim);
                            loop {
                                let job = next.fetch_add(1, Ordering::Relaxed);
                                if job >= jobs {
                                    break;
                                }
                                this.run_job(epoch, job, &mut worker);
                            }
                            (worker.loss, worker.updates)
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap_or((f64::NAN, 0))).collect()
            });
            let (loss, updates) = totals.iter().fold((0.0, 0), |(l, u), &(a, b)| (l + a, u + b));
            if !loss.is_finite() {
                return Err(Error::Numeric {
                    stage: "word2vec".into(),
                    message: format!("epoch {}: the loss is {loss}", epoch + 1),
                });
            }
            let seconds = started.elapsed().as_secs_f64();
            on_epoch(&EpochReport {
                epoch: epoch + 1,
                loss: loss / updates.max(1) as f64,
                updates,
                words_per_s: self.corpus.len() as f64 / seconds.max(1e-9),
                seconds,
            });
        }
        Ok(())
    }

    /// The trained input vectors, most frequent word first (`limit`: only the first `limit`).
    pub fn vectors(&self, limit: Option<usize>) -> Vectors {
        let dim = self.config.dim;
        let n = limit.unwrap_or(usize::MAX).min(self.vocab.len());
        let mut out = Vectors::new(dim);
        let mut row = vec![0.0; dim];
        for (i, word) in self.vocab.words.iter().take(n).enumerate() {
            self.syn0.copy_row(i, &mut row);
            out.push(word, &row);
        }
        out
    }

    /// Trains on job `job` of epoch `epoch` (0-based): one sentence of up to [`JOB_TOKENS`].
    fn run_job(&self, epoch: usize, job: usize, w: &mut Worker) {
        let start = job * JOB_TOKENS;
        let end = (start + JOB_TOKENS).min(self.corpus.len());
        let alpha = self.alpha_at(epoch, start, self.corpus.len());
        let mut rng =
            Rng::new(self.config.seed ^ ((epoch as u64) << 40) ^ (job as u64).wrapping_mul(0x9E37_79B9));
        let mut next_random = rng.next_u64() & LCG_MASK;
        let random_int32 = |state: &mut u64| {
            let r = *state >> 16;
            *state = state.wrapping_mul(LCG_MUL).wrapping_add(11) & LCG_MASK;
            r
        };
        w.sentence.clear();
        for &id in &self.corpus[start..end] {
            if id == u32::MAX {
                continue;
            }
            if u64::from(self.vocab.sample_int[id as usize]) < random_int32(&mut next_random) {
                continue;
            }
            w.sentence.push(id);
        }
        let window = self.config.window;
        let len = w.sentence.len();
        for i in 0..len {
            let b = (random_int32(&mut next_random) % window as u64) as usize;
            let lo = (i + b).saturating_sub(window);
            let hi = (i + window + 1 - b).min(len);
            let word = w.sentence[i];
            if self.config.cbow {
                next_random = self.cbow(w, word, i, lo, hi, alpha, next_random);
            } else {
                for j in lo..hi {
                    if j != i {
                        let context = w.sentence[j];
                        next_random = self.skip_gram(w, word, context, alpha, next_random);
                    }
                }
            }
        }
    }

    /// One skip-gram update: predict `word` from `context`'s input vector.
    fn skip_gram(&self, w: &mut Worker, word: u32, context: u32, alpha: f32, next_random: u64) -> u64 {
        self.syn0.copy_row(context as usize, &mut w.l1);
        w.work.fill(0.0);
        let next_random = self.negatives(w, word, alpha, next_random);
        self.syn0.axpy(context as usize, 1.0, &w.work);
        next_random
    }

    /// One CBOW update: predict `sentence[i]` from the mean of `sentence[lo..hi]` but `i`.
    #[allow(clippy::too_many_arguments)]
    fn cbow(
        &self,
        w: &mut Worker,
        word: u32,
        i: usize,
        lo: usize,
        hi: usize,
        alpha: f32,
        next_random: u64,
    ) -> u64 {
        w.l1.fill(0.0);
        let mut count = 0usize;
        for m in (lo..hi).filter(|&m| m != i) {
            self.syn0.axpy_into(w.sentence[m] as usize, 1.0, &mut w.l1);
            count += 1;
        }
        // With an empty context gensim still trains the output side on a zero input vector.
        if count > 0 {
            let inv = 1.0 / count as f32;
            w.l1.iter_mut().for_each(|x| *x *= inv);
        }
        w.work.fill(0.0);
        let next_random = self.negatives(w, word, alpha, next_random);
        for m in (lo..hi).filter(|&m| m != i) {
            self.syn0.axpy(w.sentence[m] as usize, 1.0, &w.work);
        }
        next_random
    }

    /// The positive and `negative` negative targets for input `w.l1`: updates their output
    /// vectors, accumulates the input's error in `w.work` and the loss in `w`.
    fn negatives(&self, w: &mut Worker, word: u32, alpha: f32, mut next_random: u64) -> u64 {
        let mut loss = 0.0f64;
        for d in 0..=self.config.negative {
            let (target, label) = if d == 0 {
                (word, 1.0f32)
            } else {
                let t = self.vocab.negative(next_random);
                next_random = next_random.wrapping_mul(LCG_MUL).wrapping_add(11) & LCG_MASK;
                if t == word {
                    continue;
                }
                (t, 0.0)
            };
            let f_dot = self.syn1neg.dot(target as usize, &w.l1);
            let signed = if d == 0 { f_dot } else { -f_dot };
            loss -= f64::from(self.log_sigmoid(signed));
            if f_dot <= -MAX_EXP || f_dot >= MAX_EXP {
                continue;
            }
            let f = self.exp_table[((f_dot + MAX_EXP) * (EXP_TABLE_SIZE as f32 / MAX_EXP / 2.0)) as usize];
            let g = (label - f) * alpha;
            self.syn1neg.update_pair(target as usize, g, &w.l1, &mut w.work);
        }
        w.loss += loss;
        w.updates += 1;
        next_random
    }

    /// ln σ(x): gensim's table inside (−6, 6), exact outside.
    fn log_sigmoid(&self, x: f32) -> f32 {
        if x > -MAX_EXP && x < MAX_EXP {
            self.log_table[((x + MAX_EXP) * (EXP_TABLE_SIZE as f32 / MAX_EXP / 2.0)) as usize]
        } else {
            -((-x).exp().ln_1p())
        }
    }
}

/// One thread's scratch rows and running totals.
struct Worker {
    sentence: Vec<u32>,
    l1: Vec<f32>,
    work: Vec<f32>,
    loss: f64,
    updates: u64,
}

impl Worker {
    fn new(dim: usize) -> Self {
        Worker {
            sentence: Vec::with_capacity(JOB_TOKENS),
            l1: vec![0.0; dim],
            work: vec![0.0; dim],
            loss: 0.0,
            updates: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_kernels::hogwild::dot;

    /// A corpus where `cat`/`dog` and `red`/`blue` are interchangeable.
    fn corpus() -> Vec<String> {
        let mut rng = Rng::new(5);
        let mut out = Vec::new();
        let pick = |rng: &mut Rng, xs: &[&str]| xs[rng.below(xs.len() as u64) as usize].to_owned();
        for _ in 0..3000 {
            out.push(pick(&mut rng, &["the", "a"]));
            out.push(pick(&mut rng, &["red", "blue"]));
            out.push(pick(&mut rng, &["cat", "dog"]));
            out.push(pick(&mut rng, &["runs", "sleeps", "eats"]));
        }
        out
    }

    fn config(threads: usize, seed: u64, cbow: bool) -> Word2VecConfig {
        Word2VecConfig {
            dim: 16,
            window: 2,
            epochs: 3,
            threads,
            seed,
            cbow,
            min_count: 1,
            ..Word2VecConfig::default()
        }
    }

    fn train(c: Word2VecConfig) -> (Vectors, Vec<EpochReport>) {
        let words = corpus();
        let mut t = Word2VecTrainer::new(c, words.iter().map(String::as_str)).unwrap();
        let mut reports = Vec::new();
        t.train(|r| reports.push(*r)).unwrap();
        (t.vectors(None), reports)
    }

    fn cos(v: &Vectors, a: &str, b: &str) -> f32 {
        let (x, y) = (v.get(a).unwrap(), v.get(b).unwrap());
        dot(x, y) / (dot(x, x).sqrt() * dot(y, y).sqrt())
    }

    #[test]
    fn one_thread_is_deterministic_from_the_seed() {
        for cbow in [false, true] {
            let (a, ra) = train(config(1, 7, cbow));
            let (b, rb) = train(config(1, 7, cbow));
            let bits = |v: &Vectors| v.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b));
            assert_eq!(
                ra.iter().map(|r| r.loss.to_bits()).collect::<Vec<_>>(),
                rb.iter().map(|r| r.loss.to_bits()).collect::<Vec<_>>()
            );
            let (c, _) = train(config(1, 8, cbow));
            assert_ne!(bits(&a), bits(&c), "another seed, other vectors");
        }
    }

    #[test]
    fn the_loss_falls_and_interchangeable_words_end_up_close() {
        for (threads, cbow) in [(1, false), (2, false), (1, true)] {
            let (v, reports) = train(Word2VecConfig { epochs: 5, ..config(threads, 3, cbow) });
            let losses: Vec<f64> = reports.iter().map(|r| r.loss).collect();
            // At the start every dot product is 0: the loss is (1 + negative) ln 2 = 4.16.
            assert!(losses[0] < 6.0 * std::f64::consts::LN_2 && losses[4] < losses[0], "{losses:?}");
            assert!(reports.iter().all(|r| r.updates > 0));
            assert!(cos(&v, "cat", "dog") > cos(&v, "cat", "red"), "threads {threads} cbow {cbow}");
            assert!(cos(&v, "red", "blue") > cos(&v, "red", "runs"), "threads {threads} cbow {cbow}");
        }
    }

    #[test]
    fn odd_widths_train() {
        let (a, _) = train(Word2VecConfig { dim: 5, ..config(1, 2, false) });
        assert_eq!(a.dim(), 5);
    }

    #[test]
    fn alpha_decays_linearly_over_all_epochs() {
        let words = corpus();
        let t = Word2VecTrainer::new(config(1, 1, false), words.iter().map(String::as_str)).unwrap();
        assert_eq!(t.alpha_at(0, 0, 100), 0.025);
        let mid = t.alpha_at(1, 50, 100);
        assert!((mid - (0.025 - 0.0249 * 0.5)).abs() < 1e-7, "{mid}");
        assert!((t.alpha_at(3, 0, 100) - 0.0001).abs() < 1e-9);
    }

    #[test]
    fn bad_settings_name_their_flag() {
        for (c, flag) in [
            (Word2VecConfig { dim: 0, ..Word2VecConfig::default() }, "--dim"),
            (Word2VecConfig { window: 0, ..Word2VecConfig::default() }, "--window"),
            (Word2VecConfig { alpha: -1.0, ..Word2VecConfig::default() }, "--alpha"),
            (Word2VecConfig { sample: f64::NAN, ..Word2VecConfig::default() }, "--sample"),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }
}
