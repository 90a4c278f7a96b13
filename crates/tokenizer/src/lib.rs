//! The *tokenize* box of Stagewise: `text -> tokens`.
//!
//! Tokenizing runs once over the corpus (and once over a prompt at generation time), not in the
//! training cycle. Tokens go into a [`Tokens`] list, one text arena with end offsets, rather than
//! one `String` per token: a corpus has about a million tokens, and the small allocations would
//! cost ten times the text and stay with the process after they are freed. Decoding is the
//! flowchart's *output* box seen from this side: it turns generated tokens back into text.
//!
//! # Brief overview
//! - [`Tokenizer`]: the compile-time face, a [`Stage`] whose input is `&str` and whose output is
//!   [`Tokens`], plus [`Tokenizer::decode`]. Implement it for your own type to plug it in.
//! - [`WordTokenizer`] (`"word"`): lower-cases with [`str::to_lowercase`] and splits on Unicode
//!   whitespace, like torchtext's `Field(lower=True)` or Python's `text.lower().split()`, writing
//!   each word straight into the arena.
//! - [`CharTokenizer`] (`"char"`): one token per Unicode scalar value, whitespace and case kept,
//!   for character-level models; `decode(tokenize(text)) == text`.
//! - [`BpeTokenizer`] (`"bpe"`): byte-level BPE as GPT-2 and HuggingFace `tokenizers` define it,
//!   reading and writing `tokenizer.json` (same ids as `tokenizers`), with its trainer
//!   [`BpeTrainer`]; `decode(tokenize(text)) == text`.
//! - `HfTokenizer` (`"hf"`, cargo feature `hf`): any HuggingFace `tokenizer.json` (WordPiece,
//!   Unigram, normalizers, ...) through the `tokenizers` crate, built without C dependencies.
//! - [`TokenizerConfig`]: the serialisable choice (`kind = "word"`, `"char"` or `"bpe"`) read from the config file;
//!   [`TokenizerConfig::build`] turns it into a [`TokenizerImpl`], the run-time face, an enum of the
//!   built-ins that forwards every call with one `match`.
//!
//! # Example
//! ```
//! use stagewise_core::{Ctx, Stage, Tokens};
//! use stagewise_tokenizer::{Tokenizer, TokenizerConfig};
//!
//! let config: TokenizerConfig = serde_json::from_str(r#"{ "kind": "word" }"#)?;
//! let tokenizer = config.build()?;
//! let tokens = tokenizer.tokenize("The  cat\tSAT.\n")?;
//! assert_eq!(tokens.to_vec(), ["the", "cat", "sat."]);
//! assert_eq!(tokenizer.decode(&tokens), "the cat sat.");
//!
//! // `run` reuses one buffer: it clears it and keeps its capacity.
//! let mut out = Tokens::new();
//! tokenizer.run("One line", &mut out, &Ctx::seq())?;
//! tokenizer.run("ANOTHER", &mut out, &Ctx::seq())?;
//! assert_eq!(out.to_vec(), ["another"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bpe;
mod char;
mod config;
#[cfg(feature = "hf")]
mod hf;
mod word;

pub use bpe::{BpeModel, BpeTokenizer, BpeTrainer};
pub use char::CharTokenizer;
pub use config::{TokenizerConfig, TokenizerImpl};
#[cfg(feature = "hf")]
pub use hf::HfTokenizer;
pub use word::WordTokenizer;

use stagewise_core::{Ctx, Result, Stage, Tokens};

/// The contract of the tokenize box: a [`Stage`] from text to [`Tokens`], plus the inverse
/// direction.
///
/// `run` must clear `out` and append the tokens of `input` in order. There is nothing to
/// `prepare` (the token count depends on the text): keep [`Stage::prepare`]'s default. This box
/// runs once over the corpus, not per training cycle, so `run` may allocate, but writing
/// into `out`'s arena (with [`Tokens::push_with`]) rather than building a `String` per token
/// keeps the corpus's tokens in a few large buffers.
///
/// Required: [`Stage`]'s `name` and `run`, and [`decode`](Tokenizer::decode);
/// [`tokenize`](Tokenizer::tokenize) has a default built on `run`.
pub trait Tokenizer: for<'a> Stage<Input<'a> = &'a str, Output = Tokens> {
    /// Turns tokens back into text, for the output box (generation) and for round-trip tests.
    ///
    /// `decode(tokenize(text))` need not give `text` back (a lossy tokenizer such as
    /// [`WordTokenizer`] loses case and spacing), but it must be text that tokenizes to the same
    /// tokens.
    fn decode(&self, tokens: &Tokens) -> String;

    /// Tokenizes `text` into a fresh list: the convenient form of `run` for one-off calls (the
    /// corpus, a prompt, a test) where there is no buffer to reuse.
    ///
    /// Returns a `Result` because `run` does: a user's tokenizer may reject its input.
    fn tokenize(&self, text: &str) -> Result<Tokens> {
        let mut out = Tokens::new();
        self.run(text, &mut out, &Ctx::seq())?;
        Ok(out)
    }

    /// The byte offset in `text` at which token `index` of `tokenize(text)` starts (`text.len()`
    /// for `index` equal to the token count), or `None` if the tokenizer cannot tell (the
    /// default) or there is no such token.
    ///
    /// The pipeline uses it to count the characters a split covers, from its first token's start
    /// to the end of the text, so losses can be given per character, a scale every tokenizer
    /// shares (`test_nats_per_char`). Tokenizers whose tokens are pieces of the text in order
    /// should override it; the built-ins do.
    fn token_start(&self, text: &str, index: usize) -> Option<usize> {
        let _ = (text, index);
        None
    }

    /// The text one more token adds after `previous` (the token before it, if any), so that
    /// generated text can be written as it comes, in constant memory.
    ///
    /// The default decodes `previous` alone and the pair, and returns what the pair adds; that is
    /// exact for every tokenizer whose decoding of a sequence begins with the decoding of its
    /// prefix (the word tokenizer's `" token"`). Override it where that does not hold.
    fn decode_next(&self, previous: Option<&str>, token: &str) -> String {
        let Some(previous) = previous else {
            return self.decode(&Tokens::from_iter([token]));
        };
        let before = self.decode(&Tokens::from_iter([previous]));
        let both = self.decode(&Tokens::from_iter([previous, token]));
        match both.strip_prefix(&before) {
            Some(added) => added.to_owned(),
            None => self.decode(&Tokens::from_iter([token])),
        }
    }
}
