//! The *vectorize* box of Stagewise: `tokens -> ids`.
//!
//! A vocabulary maps each token to a dense integer id that the embedding box looks up. Id 0 is
//! always [`UNK`] (`<unk>`), the id of every token the vocabulary does not know. Like tokenizing,
//! vectorizing runs once over the corpus (and over a prompt), not in the training cycle.
//!
//! # Brief overview
//! - [`Vectorizer`]: the compile-time face, a [`Stage`] from `&[String]` to `Vec<u32>`, plus
//!   [`decode`](Vectorizer::decode) (ids back to tokens), [`vocab_size`](Vectorizer::vocab_size)
//!   and [`id_of`](Vectorizer::id_of).
//! - [`Vocab`]: the ordered token list with a hash index built once, saved and loaded as
//!   versioned JSON ([`Vocab::save`], [`Vocab::load`]).
//! - [`VocabTrainer`]: counts training tokens and keeps the `max_size - 1` most frequent (ties by
//!   token bytes), so the vocabulary is deterministic. It *produces* a [`VocabVectorizer`]
//!   (`"vocab"`), so there is never a half-initialised stage.
//! - [`VectorizerConfig`]: the serialisable choice (`kind = "vocab"`, `max_size`) read from the
//!   config file; [`VectorizerConfig::fit`] or [`VectorizerConfig::load`] give a
//!   [`VectorizerImpl`], the run-time face, an enum of the built-ins that forwards with one `match`.
//!
//! # Example
//! ```
//! use stagewise_vectorizer::{Vectorizer, VectorizerConfig};
//!
//! let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
//! let config = VectorizerConfig::Vocab { max_size: 3 };
//! let vectorizer = config.fit(&words("the cat and the dog and the end"))?;
//! // "the" (3) then "and" (2); the rest are cut to fit max_size = 3 ids, <unk> included.
//! assert_eq!(vectorizer.vocab_size(), 3);
//! let ids = vectorizer.vectorize(&words("the dog and"))?;
//! assert_eq!(ids, [1, 0, 2]);
//! assert_eq!(vectorizer.decode(&ids)?, ["the", "<unk>", "and"]);
//! # Ok::<(), stagewise_core::Error>(())
//! ```

mod config;
mod trainer;
mod vocab;
mod vocab_vectorizer;

pub use config::{VectorizerConfig, VectorizerImpl};
pub use trainer::VocabTrainer;
pub use vocab::{UNK, UNK_ID, VOCAB_FILE_VERSION, Vocab};
pub use vocab_vectorizer::VocabVectorizer;

use stagewise_core::{Ctx, Result, Stage};

/// The contract of the vectorize box: a [`Stage`] from tokens to ids, plus the inverse direction
/// and the vocabulary size the embedding and output layers are sized by.
///
/// `run` must clear `out` and push one id per input token, in order; ids are dense in
/// `0..vocab_size()` and id [`UNK_ID`] (0) stands for every unknown token. `run` may allocate
/// (it runs once over the corpus, not per training cycle).
///
/// Required: [`Stage`]'s methods, [`decode`](Vectorizer::decode),
/// [`vocab_size`](Vectorizer::vocab_size) and [`id_of`](Vectorizer::id_of);
/// [`vectorize`](Vectorizer::vectorize) has a default built on `run`.
pub trait Vectorizer: for<'a> Stage<Input<'a> = &'a [String], Output = Vec<u32>> {
    /// Turns ids back into tokens, for the output box (generation) and for round-trip tests.
    ///
    /// Id 0 decodes to [`UNK`]. An id `>= vocab_size()` is an error, not `<unk>`: it can only
    /// come from a model or file built for a different vocabulary, and hiding that would turn a
    /// size mismatch into silently wrong text.
    fn decode(&self, ids: &[u32]) -> Result<Vec<String>>;

    /// The number of ids V, `<unk>` included: the row count of the embedding table and the width
    /// of the output layer.
    fn vocab_size(&self) -> usize;

    /// The id of one token, [`UNK_ID`] (0) if the vocabulary does not contain it.
    fn id_of(&self, token: &str) -> u32;

    /// Vectorizes `tokens` into a fresh vector: the convenient form of `run` for one-off calls (a
    /// prompt, a test) where there is no buffer to reuse.
    fn vectorize(&self, tokens: &[String]) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.run(tokens, &mut out, &Ctx::seq())?;
        Ok(out)
    }
}
