//! Shared setup for the Stagewise criterion benchmarks (`benches/*.rs`, one file per stage).
//!
//! Everything here runs *outside* the timed closures: it reads the bundled corpus, turns it into
//! ids, builds and prepares a model's [`Tape`] for given sizes, and provides the two parallelism
//! settings every stage that reads `cx.par` is measured at. A bench file then only wraps the one
//! call it measures in `b.iter`, on buffers prepared here, so the timed loop allocates nothing the
//! stage itself does not.
//!
//! # Brief overview
//! - [`BenchConfig`], [`config`], [`seed`], [`configs`]: the sizes (E, H, V, B, T) measured, read
//!   from `configs/seed.toml` and `configs/large.toml`.
//! - [`criterion_config`]: the shared, light criterion settings (few samples, short times).
//! - [`Threads`]: `Par::Seq` on the bench thread, or 2 threads (a 2-thread rayon pool with
//!   `Par::rayon(2)` in the [`Ctx`]); [`Threads::install`] runs a bench inside its pool.
//! - [`corpus_text`], [`Corpus`]: `data/shakespeare.txt`, its tokens, a vocabulary of V ids fitted
//!   on them and the id stream; [`Corpus::window`] cuts one `B x T` window of real ids.
//! - [`PreparedModel`]: a tape with the embedding and forward stages prepared and one full
//!   forward, loss and backward pass already run, so every activation, every gradient slot and
//!   the parameter gradients hold real values for the stage benches to start from.

use criterion::Criterion;
use stagewise_backward::ReverseSweep;
use stagewise_core::{Ctx, Dims, Mode, Par, Stage, Tape, Tokens};
use stagewise_embedding::TableEmbedding;
use stagewise_forward::RecurrentForward;
use stagewise_loss::{CrossEntropy, LossInput, LossOutput};
use stagewise_pipeline::Config;
use stagewise_pipeline::data::{Batched, read_corpus};
use stagewise_tokenizer::{Tokenizer, WordTokenizer};
use stagewise_vectorizer::{Vectorizer, VectorizerConfig, VectorizerImpl};
use std::path::PathBuf;
use std::time::Duration;

/// The sizes one benchmark runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    /// Label used in benchmark ids (`"seed"`, `"large"`).
    pub name: &'static str,
    /// Embedding width E.
    pub embed: usize,
    /// Hidden width H.
    pub hidden: usize,
    /// Vocabulary size V.
    pub vocab: usize,
    /// Streams per window B.
    pub batch: usize,
    /// Steps per window T.
    pub seq_len: usize,
}

impl BenchConfig {
    /// The [`Dims`] stages are prepared with (`params` left 0, as before preparation).
    pub fn dims(&self) -> Dims {
        Dims { vocab: self.vocab, batch: self.batch, seq_len: self.seq_len, params: 0 }
    }

    /// Rows (token positions) of one full window: `B * T`.
    pub fn rows(&self) -> usize {
        self.batch * self.seq_len
    }

    /// A short description for group names and logs: `seed(E100,H128,V10000,B32,T64)`.
    pub fn label(&self) -> String {
        format!(
            "{}(E{},H{},V{},B{},T{})",
            self.name, self.embed, self.hidden, self.vocab, self.batch, self.seq_len
        )
    }
}

/// The sizes of `configs/NAME.toml` (the file the pipeline trains from, so the benches measure
/// exactly those sizes and no second copy of them exists).
///
/// # Panics
/// If the file is missing or invalid, or its forward box has no hidden width (the message names
/// the file).
pub fn config(name: &'static str) -> BenchConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/{name}.toml"));
    let c = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("reading the bench configuration: {e}"),
    };
    let vocab = c.vectorizer.max_size();
    BenchConfig {
        name,
        embed: c.embedding.dim(),
        hidden: c.forward.hidden(),
        vocab,
        batch: c.train.batch,
        seq_len: c.train.bptt,
    }
}

/// The seed configuration, `configs/seed.toml` (E = 100, H = 128, V = 10,000, B = 32, T = 64).
pub fn seed() -> BenchConfig {
    config("seed")
}

/// Both measured configurations, `configs/seed.toml` then `configs/large.toml`.
pub fn configs() -> [BenchConfig; 2] {
    [config("seed"), config("large")]
}

/// The criterion settings every bench file starts from: 10 samples, 1 s warm-up, 3 s measurement
/// (criterion's sampling mode stays `Auto`, so slow benchmarks switch to flat sampling on their
/// own). Command-line flags (`--warm-up-time`, `--measurement-time`, `--sample-size`) override
/// these, because `criterion_group!` applies them afterwards.
pub fn criterion_config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// A parallelism setting a stage is measured at.
///
/// [`Threads::Seq`] runs on the bench thread with `Par::Seq`. [`Threads::Two`] owns a 2-thread
/// rayon pool and passes `Par::rayon(2)`: the bench runs inside [`Threads::install`], so both faer's
/// GEMMs and the stages' own `par_chunks` loops use exactly that pool (the machine's global pool is
/// never touched).
#[derive(Debug)]
pub enum Threads {
    /// One thread, `Par::Seq`.
    Seq,
    /// Two threads: a private pool and `Par::rayon(2)`.
    Two(rayon::ThreadPool),
}

impl Threads {
    /// Both settings, sequential first.
    ///
    /// # Panics
    /// If the 2-thread pool cannot be created (the OS refused to spawn threads).
    pub fn both() -> [Threads; 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .thread_name(|i| format!("bench-worker-{i}"))
            .build()
            .expect("building a 2-thread rayon pool");
        [Threads::Seq, Threads::Two(pool)]
    }

    /// The parameter part of a benchmark id: `"seq"` or `"2threads"`.
    pub fn label(&self) -> &'static str {
        match self {
            Threads::Seq => "seq",
            Threads::Two(_) => "2threads",
        }
    }

    /// The `Par` to pass to stages.
    pub fn par(&self) -> Par {
        match self {
            Threads::Seq => Par::Seq,
            Threads::Two(_) => Par::rayon(2),
        }
    }

    /// A context in `mode` (step 0, seed 0) with this setting's [`Par`].
    pub fn ctx(&self, mode: Mode) -> Ctx {
        Ctx { par: self.par(), mode, ..Ctx::seq() }
    }

    /// Runs `f` on this setting's threads: directly for [`Threads::Seq`], inside the pool for
    /// [`Threads::Two`]. Wrap the whole `b.iter(..)` call in it, not each iteration.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Threads::Seq => f(),
            Threads::Two(pool) => pool.install(f),
        }
    }
}

/// Path of the bundled corpus, `data/shakespeare.txt` at the workspace root.
pub fn corpus_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/shakespeare.txt")
}

/// The bundled corpus as text (about 4.8 MiB).
///
/// # Panics
/// If the file is missing or not UTF-8 (the message names the file).
pub fn corpus_text() -> String {
    match read_corpus(&corpus_path()) {
        Ok(text) => text,
        Err(e) => panic!("reading the bench corpus: {e}"),
    }
}

/// The corpus run through the seed's text boxes: tokens, a fitted vocabulary and the id stream.
pub struct Corpus {
    /// The corpus's word tokens ([`WordTokenizer`]), about 905,000.
    pub tokens: Tokens,
    /// The vocabulary fitted on *all* tokens (the pipeline fits on the training split only; for
    /// timing the difference does not matter).
    pub vectorizer: VectorizerImpl,
    /// Every token's id, in corpus order.
    pub ids: Vec<u32>,
}

impl Corpus {
    /// Tokenizes the corpus and fits a vocabulary of `vocab` ids (`<unk>` included) on it.
    ///
    /// # Panics
    /// If the corpus cannot be read, or has fewer than `vocab - 1` distinct words (it has about
    /// 66,000, so any V up to that gives exactly V ids).
    pub fn load(vocab: usize) -> Corpus {
        let text = corpus_text();
        let tokens = WordTokenizer::new().tokenize(&text).expect("the word tokenizer never fails");
        let vectorizer =
            VectorizerConfig::vocab(vocab).fit(&tokens).expect("fitting the vocabulary on the bench corpus");
        assert_eq!(vectorizer.vocab_size(), vocab, "the corpus has too few distinct words");
        let ids = vectorizer.vectorize(&tokens).expect("vectorizing never fails");
        Corpus { tokens, vectorizer, ids }
    }

    /// The window number `index` (wrapping around) of `cfg.seq_len` full steps, with the stream
    /// cut into `cfg.batch` contiguous streams as the pipeline does: `(inputs, targets)`, each
    /// `B * T` ids, time-major.
    ///
    /// # Panics
    /// If the corpus is too short for one full window.
    pub fn window(&self, cfg: &BenchConfig, index: usize) -> (Vec<u32>, Vec<u32>) {
        self.windows(cfg, index + 1).swap_remove(index)
    }

    /// The first `count` full windows (all `T` steps long) of the corpus at `cfg`'s sizes, as
    /// owned `(inputs, targets)` pairs; wraps around if the corpus has fewer.
    ///
    /// # Panics
    /// If the corpus is too short for one full window.
    pub fn windows(&self, cfg: &BenchConfig, count: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
        let batched = Batched::new(&self.ids, cfg.batch, "bench corpus").expect("corpus long enough");
        let full: Vec<_> = batched.windows(cfg.seq_len).filter(|w| w.steps == cfg.seq_len).collect();
        assert!(!full.is_empty(), "the corpus is too short for one {}x{} window", cfg.batch, cfg.seq_len);
        (0..count)
            .map(|i| {
                let w = full[i % full.len()];
                (w.inputs.to_vec(), w.targets.to_vec())
            })
            .collect()
    }
}

/// A model's tape for one configuration, prepared and warmed by one full training pass.
///
/// Built by [`PreparedModel::new`]: the embedding ([`TableEmbedding`], op `"embedding"`) and
/// forward ([`RecurrentForward`], ops `"lstm"` and `"fc"`) stages are prepared on a fresh tape (seed 0
/// initialisation, like the pipeline); then one window of real ids is embedded, run forward,
/// scored by [`CrossEntropy`] and swept back by [`ReverseSweep`], all sequentially. Afterwards
///
/// - every activation slot holds that window's values (the logits are a fresh model's),
/// - every gradient slot holds the gradient that flowed into it (`fc.out` holds the loss's
///   `dlogits`, `lstm.h` what `fc` sent back, `embedding.out` what the LSTM sent back),
/// - [`Tape::grads`] holds the window's parameter gradients,
///
/// so any single op's `forward` or `vjp` can be benchmarked on its own, repeatedly: forwards
/// overwrite their outputs, VJPs overwrite their input gradients and *accumulate* into the
/// parameter gradients, which only makes those grow, harmlessly, over many iterations.
pub struct PreparedModel {
    /// The sizes, with `dims.params` filled in.
    pub dims: Dims,
    /// Parameters, gradients, activations and the ops `embedding`, `lstm`, `fc` (in that order).
    pub tape: Tape<f32>,
    /// The embed stage.
    pub embedding: TableEmbedding<f32>,
    /// The forward stage (LSTM + the `fc` head).
    pub forward: RecurrentForward<f32>,
    /// The window's input ids, `B * T`, time-major.
    pub inputs: Vec<u32>,
    /// The window's target ids, `B * T`, time-major.
    pub targets: Vec<u32>,
}

impl PreparedModel {
    /// Prepares the stages for `cfg` and runs one training pass (without the update) on the
    /// window `(inputs, targets)` (`B * T` ids each, all `< cfg.vocab`).
    ///
    /// # Panics
    /// If a stage rejects the sizes or the ids (a bug in the benchmark setup).
    pub fn new(cfg: &BenchConfig, inputs: Vec<u32>, targets: Vec<u32>) -> PreparedModel {
        let mut dims = cfg.dims();
        let mut tape = Tape::<f32>::new(cfg.batch, cfg.seq_len);
        let mut embedding = TableEmbedding::new(cfg.embed, 0);
        embedding.prepare(&dims, &mut tape).expect("preparing the embedding");
        let mut forward = RecurrentForward::lstm(cfg.hidden, 0).expect("hidden > 0");
        forward.prepare(&dims, &mut tape).expect("preparing the forward stage");
        tape.finish();
        dims.params = tape.params.layout().total();
        let mut backward = ReverseSweep::new();
        backward.prepare(&dims, &mut tape).expect("preparing the backward stage");

        let cx = Ctx::seq();
        embedding.run(&inputs, &mut tape, &cx).expect("embedding the bench window");
        forward.run((), &mut tape, &cx).expect("running the forward stage");
        let mut loss = LossOutput::default();
        let mut ce = CrossEntropy::new();
        ce.prepare(&dims, &mut loss).expect("preparing the loss");
        let logits = tape.output().expect("the forward stage sets the logits slot");
        let saved = tape.acts.slot(logits).value.clone();
        let input = LossInput { logits: tape.acts.slot_mut(logits), targets: &targets };
        ce.run(input, &mut loss, &cx).expect("scoring the bench window");
        // The loss left dL/dlogits in the slot's gradient (its value buffer was scratch): the
        // logits are put back for the benches that read them.
        tape.acts.slot_mut(logits).value = saved;
        backward.run(logits, &mut tape, &cx).expect("the backward sweep");
        PreparedModel { dims, tape, embedding, forward, inputs, targets }
    }

    /// The position in the tape's schedule of the op named `name` (`"embedding"`, `"lstm"`, `"fc"`).
    ///
    /// # Panics
    /// If there is no such op.
    pub fn op_index(&self, name: &str) -> usize {
        match self.tape.ops().iter().position(|op| op.name() == name) {
            Some(i) => i,
            None => panic!("no op named {name:?} on the bench tape"),
        }
    }

    /// Runs op `index`'s forward pass once.
    pub fn op_forward(&mut self, index: usize, par: Par) {
        self.tape.forward_range(index..index + 1, par);
    }

    /// Runs op `index`'s vector–Jacobian product once, from the output gradient already in its
    /// slot.
    pub fn op_vjp(&mut self, index: usize, par: Par) {
        let (ops, params, acts, grads) = self.tape.sweep_parts();
        ops[index].vjp(params, acts, grads, par);
    }

    /// The logits of the prepared window, `[B * T, V]`.
    pub fn logits(&self) -> &[f32] {
        let out = self.tape.output().expect("the forward stage sets the logits slot");
        &self.tape.acts.slot(out).value[..self.tape.acts.rows() * self.dims.vocab]
    }
}
