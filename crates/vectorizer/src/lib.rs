//! The *vectorize* box of Stagewise: `tokens -> ids`.
//!
//! A vocabulary maps each token to a dense integer id that the embedding box looks up. Id 0 is
//! always [`UNK`] (`<unk>`), the id of every token the vocabulary does not know; the special
//! tokens a config asks for ([`SPECIALS`]: `<pad>`, `<bos>`, `<eos>`) come next, in its order. Like tokenizing,
//! vectorizing runs once over the corpus (and over a prompt), not in the training cycle. Tokens
//! come in as a [`Tokens`] list, the tokenize box's output.
//!
//! # Brief overview
//! - [`Vectorizer`]: the compile-time face, a [`Stage`] from [`Tokens`] to `Vec<u32>`, plus
//!   [`decode`](Vectorizer::decode) (ids back to tokens), [`vocab_size`](Vectorizer::vocab_size)
//!   and [`id_of`](Vectorizer::id_of).
//! - [`VectorizerTrainer`]: what fits a vectorizer: [`feed`](VectorizerTrainer::feed) it the
//!   training tokens, in as many calls as convenient, then [`finish`](VectorizerTrainer::finish)
//!   it into the stage (HF tokenizers' `Trainer` shape), so there is never a half-initialised
//!   stage.
//! - [`Vocab`]: the ordered token list with a hash index built once, saved and loaded as
//!   versioned JSON ([`Vocab::save`], [`Vocab::load`]).
//! - [`VocabTrainer`]: counts training tokens and keeps the most frequent (ties by token bytes)
//!   seen at least `min_count` times, up to `max_size` ids with `<unk>` and the specials, so the
//!   vocabulary is deterministic. It produces a [`VocabVectorizer`] (`"vocab"`).
//! - [`VectorizerConfig`]: the serialisable choice (`kind = "vocab"`, `max_size`, `min_count`,
//!   `specials`) read from the
//!   config file; [`VectorizerConfig::fit`] or [`VectorizerConfig::load`] give a
//!   [`VectorizerImpl`], the run-time face, an enum of the built-ins that forwards with one `match`.
//!
//! # Example
//! ```
//! use stagewise_core::Tokens;
//! use stagewise_vectorizer::{Vectorizer, VectorizerConfig};
//!
//! let words = |s: &str| s.split(' ').collect::<Tokens>();
//! let config = VectorizerConfig::vocab(3);
//! let vectorizer = config.fit(&words("the cat and the dog and the end"))?;
//! // "the" (3) then "and" (2); the rest are cut to fit max_size = 3 ids, <unk> included.
//! assert_eq!(vectorizer.vocab_size(), 3);
//! let ids = vectorizer.vectorize(&words("the dog and"))?;
//! assert_eq!(ids, [1, 0, 2]);
//! let mut decoded = Tokens::new();
//! vectorizer.decode(&ids, &mut decoded)?;
//! assert_eq!(decoded.to_vec(), ["the", "<unk>", "and"]);
//! # Ok::<(), stagewise_core::Error>(())
//! ```
//!
//! Fitting on a corpus too large to tokenize at once, with a trainer fed piece by piece:
//! ```
//! use stagewise_vectorizer::{Vectorizer, VectorizerTrainer, VocabTrainer};
//!
//! let mut trainer = VocabTrainer::new(10);
//! for line in ["a b", "b c", "b"] {
//!     trainer.feed(line.split(' '))?;
//! }
//! let vectorizer = trainer.finish()?;
//! assert_eq!(vectorizer.vocab().tokens(), ["<unk>", "b", "a", "c"]);
//! assert_eq!(vectorizer.id_of("c"), 3);
//! # Ok::<(), stagewise_core::Error>(())
//! ```
//!
//! Special tokens and a minimum count:
//! ```
//! use stagewise_core::Tokens;
//! use stagewise_vectorizer::{Vectorizer, VectorizerConfig};
//!
//! let config: VectorizerConfig = toml::from_str(
//!     "kind = \"vocab\"\nmin_count = 2\nspecials = [\"<bos>\", \"<eos>\"]\n",
//! )?;
//! let tokens: Tokens = "b a b c a b".split(' ').collect();
//! let vectorizer = config.fit(&tokens)?;
//! // "c" is seen once, fewer than min_count = 2 times: it is <unk>.
//! assert_eq!(vectorizer.vocab_size(), 5);
//! assert_eq!([vectorizer.id_of("<bos>"), vectorizer.id_of("<eos>")], [1, 2]);
//! assert_eq!([vectorizer.id_of("b"), vectorizer.id_of("a"), vectorizer.id_of("c")], [3, 4, 0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod trainer;
pub mod vectors;
mod vocab;
mod vocab_vectorizer;
pub mod word2vec;

pub use config::{VectorizerConfig, VectorizerImpl};
pub use trainer::VocabTrainer;
pub use vectors::{VectorFormat, Vectors};
pub use vocab::{BOS, EOS, PAD, SPECIALS, UNK, UNK_ID, VOCAB_FILE_VERSION, Vocab};
pub use vocab_vectorizer::VocabVectorizer;

use stagewise_core::{Ctx, Result, Stage, Tokens};

/// The contract of the vectorize box: a [`Stage`] from [`Tokens`] to ids, plus the inverse
/// direction and the vocabulary size the embedding and output layers are sized by.
///
/// `run` must clear `out` and push one id per input token, in order; ids are dense in
/// `0..vocab_size()` and id [`UNK_ID`] (0) stands for every unknown token. There is nothing to
/// `prepare` (the id count is the token count): keep [`Stage::prepare`]'s default; the pipeline
/// checks the vocabulary size against the model itself. `run` may allocate (it runs once over
/// the corpus, not per training cycle).
///
/// Required: [`Stage`]'s `name` and `run`, [`decode`](Vectorizer::decode),
/// [`vocab_size`](Vectorizer::vocab_size) and [`id_of`](Vectorizer::id_of);
/// [`vectorize`](Vectorizer::vectorize) has a default built on `run`.
pub trait Vectorizer: for<'a> Stage<Input<'a> = &'a Tokens, Output = Vec<u32>> {
    /// Clears `out` and writes the token of each id into it, for the output box (generation) and
    /// for round-trip tests. `out` is the caller's, so decoding step after step reuses one list.
    ///
    /// Id 0 decodes to [`UNK`]. An id `>= vocab_size()` is an error, not `<unk>`: it can only
    /// come from a model or file built for a different vocabulary, and hiding that would turn a
    /// size mismatch into silently wrong text.
    fn decode(&self, ids: &[u32], out: &mut Tokens) -> Result<()>;

    /// The number of ids V, `<unk>` included: the row count of the embedding table and the width
    /// of the output layer.
    fn vocab_size(&self) -> usize;

    /// The id of one token, [`UNK_ID`] (0) if the vocabulary does not contain it.
    fn id_of(&self, token: &str) -> u32;

    /// The id standing for unknown tokens, which generation never picks: [`UNK_ID`] by default,
    /// `None` for a tokenizer's own (closed) vocabulary, where every id is a real token.
    fn unk_id(&self) -> Option<u32> {
        Some(UNK_ID)
    }

    /// Vectorizes `tokens` into a fresh vector: the convenient form of `run` for one-off calls (a
    /// prompt, a test) where there is no buffer to reuse.
    fn vectorize(&self, tokens: &Tokens) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.run(tokens, &mut out, &Ctx::seq())?;
        Ok(out)
    }
}

/// What fits a [`Vectorizer`] to a corpus: [`feed`](VectorizerTrainer::feed) it the training
/// tokens, in one call or many, then [`finish`](VectorizerTrainer::finish) it into the stage.
///
/// The trainer is separate from the stage so a stage is never half-initialised (it exists only
/// once what it learned does), and feeding in pieces lets a caller fit on a corpus it never
/// holds whole, like HF tokenizers' `Trainer::feed` and `train`. The result must depend only on
/// the tokens fed, not on how they were split across calls.
pub trait VectorizerTrainer {
    /// The stage this trainer produces.
    type Vectorizer: Vectorizer;

    /// Takes in training tokens (the *training* split only, so validation words stay unknown as
    /// they would be in deployment). Errors if the trainer's settings are invalid, before
    /// reading any token.
    fn feed<'a>(&mut self, tokens: impl IntoIterator<Item = &'a str>) -> Result<()>;

    /// Builds the stage from everything fed so far (possibly nothing).
    fn finish(self) -> Result<Self::Vectorizer>;
}
