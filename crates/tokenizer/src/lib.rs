//! The *tokenize* box of Stagewise: `text -> tokens`.
//!
//! Tokenizing runs once over the corpus (and once over a prompt at generation time), not in the
//! training cycle, so tokens are owned `String`s and a call may allocate freely. Decoding is the
//! flowchart's *output* box seen from this side: it turns generated tokens back into text.
//!
//! # Brief overview
//! - [`Tokenizer`]: the compile-time face, a [`Stage`] whose input is `&str` and whose output is a
//!   `Vec<String>`, plus [`Tokenizer::decode`]. Implement it for your own type to plug it in.
//! - [`WordTokenizer`] (`"word"`): lower-cases with [`str::to_lowercase`] and splits on Unicode
//!   whitespace, like torchtext's `Field(lower=True)` or Python's `text.lower().split()`.
//! - [`TokenizerConfig`]: the serialisable choice (`kind = "word"`) read from the config file;
//!   [`TokenizerConfig::build`] turns it into a [`TokenizerImpl`], the run-time face, an enum of the
//!   built-ins that forwards every call with one `match`.
//!
//! # Example
//! ```
//! use stagewise_tokenizer::{Tokenizer, TokenizerConfig};
//!
//! let config: TokenizerConfig = serde_json::from_str(r#"{ "kind": "word" }"#)?;
//! let tokenizer = config.build()?;
//! let tokens = tokenizer.tokenize("The  cat\tSAT.\n")?;
//! assert_eq!(tokens, ["the", "cat", "sat."]);
//! assert_eq!(tokenizer.decode(&tokens), "the cat sat.");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod word;

pub use config::{TokenizerConfig, TokenizerImpl};
pub use word::WordTokenizer;

use stagewise_core::{Ctx, Result, Stage};

/// The contract of the tokenize box: a [`Stage`] from text to tokens, plus the inverse direction.
///
/// `run` must clear `out` and push the tokens of `input` in order; `prepare` has nothing to size
/// (the token count depends on the text), so implementations usually accept any
/// [`Dims`](stagewise_core::Dims) and leave `out` alone. Because this box runs once over the corpus and
/// not per training cycle, `run` may allocate (each token is an owned `String`).
///
/// Required: [`Stage`]'s methods and [`decode`](Tokenizer::decode); [`tokenize`](Tokenizer::tokenize)
/// has a default built on `run`.
pub trait Tokenizer: for<'a> Stage<Input<'a> = &'a str, Output = Vec<String>> {
    /// Turns tokens back into text, for the output box (generation) and for round-trip tests.
    ///
    /// `decode(tokenize(text))` need not give `text` back (a lossy tokenizer such as
    /// [`WordTokenizer`] loses case and spacing), but it must be text that tokenizes to the same
    /// tokens.
    fn decode(&self, tokens: &[String]) -> String;

    /// Tokenizes `text` into a fresh vector: the convenient form of `run` for one-off calls (a
    /// prompt, a test) where there is no buffer to reuse.
    ///
    /// Returns a `Result` because `run` does: a user's tokenizer may reject its input.
    fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.run(text, &mut out, &Ctx::seq())?;
        Ok(out)
    }
}
