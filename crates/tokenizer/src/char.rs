//! Character-level tokens: every Unicode scalar value of the text, as it is.

use crate::Tokenizer;
use stagewise_core::{Ctx, Result, Stage, Tokens};

/// One token per Unicode scalar value (`char`) of the text, whitespace and newlines included, with
/// no normalisation and no lower-casing: the tokenizer of character-level language models
/// (Karpathy's char-rnn, nanoGPT's `shakespeare_char`). Correct on any script, CJK included,
/// because it never splits inside a `char`.
///
/// [`decode`](Tokenizer::decode) concatenates the tokens, so `decode(tokenize(text)) == text` for
/// every string. The vocabulary the `vocab` vectorizer fits on these tokens is the training
/// split's characters, plus `<unk>` for characters first seen in the test split or a prompt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CharTokenizer;

impl CharTokenizer {
    /// The name this tokenizer reports and the `kind` that selects it in a config file.
    pub const NAME: &'static str = "char";
}

impl Stage for CharTokenizer {
    type Input<'a> = &'a str;
    type Output = Tokens;

    fn name(&self) -> &str {
        Self::NAME
    }

    /// Clears `out` and appends each `char` of `input` as one token. Never fails.
    fn run(&self, input: &str, out: &mut Tokens, _cx: &Ctx) -> Result<()> {
        out.clear();
        let mut utf8 = [0u8; 4];
        for c in input.chars() {
            out.push(c.encode_utf8(&mut utf8));
        }
        Ok(())
    }
}

impl Tokenizer for CharTokenizer {
    fn decode(&self, tokens: &Tokens) -> String {
        let mut text = String::with_capacity(tokens.iter().map(str::len).sum());
        for token in tokens.iter() {
            text.push_str(token);
        }
        text
    }

    /// Where the `index`-th `char` begins.
    fn token_start(&self, text: &str, index: usize) -> Option<usize> {
        text.char_indices().map(|(at, _)| at).chain(std::iter::once(text.len())).nth(index)
    }

    /// The token itself: characters are written next to each other, with nothing between.
    fn decode_next(&self, _previous: Option<&str>, token: &str) -> String {
        token.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chars(text: &str) -> Vec<String> {
        CharTokenizer.tokenize(text).expect("char tokenizer never fails").to_vec()
    }

    #[test]
    fn every_char_is_a_token_whitespace_and_case_kept() {
        assert_eq!(chars("Hi, A\tb\n"), ["H", "i", ",", " ", "A", "\t", "b", "\n"]);
        assert_eq!(chars(""), Vec::<String>::new());
        // CJK, a combining accent (its own scalar value) and a character outside the BMP.
        assert_eq!(chars("分词é\u{301}𝄞"), ["分", "词", "é", "\u{301}", "𝄞"]);
        assert_eq!(CharTokenizer.name(), "char");
    }

    #[test]
    fn token_start_is_each_char_s_offset() {
        let text = "a分\n𝄞";
        let starts: Vec<Option<usize>> = (0..6).map(|i| CharTokenizer.token_start(text, i)).collect();
        assert_eq!(starts, [Some(0), Some(1), Some(4), Some(5), Some(9), None]);
    }

    #[test]
    fn run_clears_the_output_buffer() {
        let mut out = Tokens::from(&["stale"][..]);
        CharTokenizer.run("ab", &mut out, &Ctx::seq()).expect("never fails");
        assert_eq!(out.to_vec(), ["a", "b"]);
    }

    proptest! {
        /// Decoding gives back the text exactly, token by token as well as at once, for any
        /// string; every token is one `char`.
        #[test]
        fn decoding_gives_back_any_text(text in any::<String>()) {
            let tokens = CharTokenizer.tokenize(&text).expect("never fails");
            prop_assert_eq!(tokens.len(), text.chars().count());
            prop_assert!(tokens.iter().all(|t| t.chars().count() == 1));
            prop_assert_eq!(CharTokenizer.decode(&tokens), text.clone());
            let mut streamed = String::new();
            let mut previous = None;
            for token in tokens.iter() {
                streamed.push_str(&CharTokenizer.decode_next(previous, token));
                previous = Some(token);
            }
            prop_assert_eq!(streamed, text);
        }
    }
}
