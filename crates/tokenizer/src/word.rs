//! The seed's tokenizer: lower-case, then split on whitespace.

use crate::Tokenizer;
use stagewise_core::{Ctx, Dims, Result, Stage};

/// Lower-cases the text with [`str::to_lowercase`], then splits it on Unicode whitespace with
/// [`str::split_whitespace`]: exactly what torchtext's `Field(lower=True)` and Python's
/// `text.lower().split()` do, so a vocabulary built here matches one built by the reference
/// PyTorch implementation.
///
/// Punctuation stays attached to words (`"sat."` is one token). No token is empty or contains
/// whitespace. [`decode`](Tokenizer::decode) joins tokens with single spaces, so
/// `decode(tokenize(text))` is `text` lower-cased, with every run of whitespace collapsed to one
/// space and the ends trimmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WordTokenizer;

impl WordTokenizer {
    /// The name this tokenizer reports and the `kind` that selects it in a config file.
    pub const NAME: &'static str = "word";

    /// A word tokenizer; it has no settings, this exists for symmetry with other stages.
    pub fn new() -> Self {
        WordTokenizer
    }
}

impl Stage for WordTokenizer {
    type Input<'a> = &'a str;
    type Output = Vec<String>;

    fn name(&self) -> &str {
        Self::NAME
    }

    /// Nothing to size: the number of tokens depends on the text.
    fn prepare(&mut self, _dims: &Dims, _out: &mut Vec<String>) -> Result<()> {
        Ok(())
    }

    /// Clears `out` and pushes the lower-cased whitespace-separated words of `input`. Never fails.
    fn run(&self, input: &str, out: &mut Vec<String>, _cx: &Ctx) -> Result<()> {
        out.clear();
        // Lower-case the whole text first, as Python does: `to_lowercase` is context sensitive
        // (a final capital sigma becomes `ς`) and lower-casing never creates or removes whitespace.
        out.extend(input.to_lowercase().split_whitespace().map(str::to_owned));
        Ok(())
    }
}

impl Tokenizer for WordTokenizer {
    fn decode(&self, tokens: &[String]) -> String {
        tokens.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        WordTokenizer.tokenize(text).expect("word tokenizer never fails")
    }

    #[test]
    fn lower_cases_and_splits_on_any_whitespace() {
        assert_eq!(words("The  Cat\tsat\non the\r\nMAT.  "), ["the", "cat", "sat", "on", "the", "mat."]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words(" \t\n "), Vec::<String>::new());
    }

    #[test]
    fn handles_non_ascii_text_and_unicode_whitespace() {
        // U+00A0 no-break space and U+3000 ideographic space are Unicode whitespace, as in Python.
        assert_eq!(words("Ça\u{a0}VA\u{3000}Straße ÉTÉ"), ["ça", "va", "straße", "été"]);
        // Context-sensitive lower-casing: a word-final capital sigma becomes a final sigma.
        assert_eq!(
            words("\u{39f}\u{394}\u{39f}\u{3a3} \u{3a3}\u{39f}"),
            ["\u{3bf}\u{3b4}\u{3bf}\u{3c2}", "\u{3c3}\u{3bf}"]
        );
        // U+200B zero-width space is not whitespace (Python agrees), so it stays inside the token.
        assert_eq!(words("a\u{200b}b"), ["a\u{200b}b"]);
    }

    #[test]
    fn run_clears_the_output_buffer() {
        let mut out = vec!["stale".to_owned()];
        WordTokenizer.run("fresh words", &mut out, &Ctx::seq()).expect("never fails");
        assert_eq!(out, ["fresh", "words"]);
    }

    #[test]
    fn decode_joins_with_single_spaces() {
        let tokens = words("Hello,\t\tWorld !");
        assert_eq!(WordTokenizer.decode(&tokens), "hello, world !");
        assert_eq!(WordTokenizer.decode(&[]), "");
        assert_eq!(WordTokenizer.name(), "word");
    }
}
