//! The seed's tokenizer: lower-case, then split on whitespace.

use crate::Tokenizer;
use stagewise_core::{Ctx, Result, Stage, Tokens};

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
    type Output = Tokens;

    fn name(&self) -> &str {
        Self::NAME
    }

    /// Clears `out` and appends the lower-cased whitespace-separated words of `input`. Never fails.
    ///
    /// Gives exactly `input.to_lowercase().split_whitespace()`, without lower-casing the whole
    /// text into a copy first: it splits `input` itself and lower-cases each word into `out`'s
    /// arena. The two agree because lower-casing maps whitespace to itself and nothing else to
    /// whitespace, and because the one context-sensitive mapping (a capital sigma becomes `ς` at
    /// the end of a word) looks only across letters and case-ignorable characters, never across
    /// whitespace; the tests check both over every `char`.
    fn run(&self, input: &str, out: &mut Tokens, _cx: &Ctx) -> Result<()> {
        out.clear();
        for word in input.split_whitespace() {
            if word.is_ascii() {
                out.push_with(|arena| {
                    let start = arena.len();
                    arena.push_str(word);
                    arena[start..].make_ascii_lowercase();
                });
            } else if word.contains(CAPITAL_SIGMA) {
                // `str::to_lowercase` knows the final-sigma rule; `char::to_lowercase` does not.
                // Rare enough (Greek capitals) that the temporary `String` does not matter.
                out.push(&word.to_lowercase());
            } else {
                out.push_with(|arena| arena.extend(word.chars().flat_map(char::to_lowercase)));
            }
        }
        Ok(())
    }
}

/// The only character [`str::to_lowercase`] maps depending on its neighbours (`ς` at a word's
/// end, `σ` elsewhere).
const CAPITAL_SIGMA: char = '\u{3a3}';

impl Tokenizer for WordTokenizer {
    /// Where the `index`-th whitespace-separated word of `text` begins: lower-casing never moves
    /// whitespace, so the tokens are `text`'s non-whitespace runs in order.
    fn token_start(&self, text: &str, index: usize) -> Option<usize> {
        let mut words = 0;
        let mut in_word = false;
        for (at, c) in text.char_indices() {
            if c.is_whitespace() {
                in_word = false;
            } else if !in_word {
                if words == index {
                    return Some(at);
                }
                words += 1;
                in_word = true;
            }
        }
        (words == index).then_some(text.len())
    }

    fn decode(&self, tokens: &Tokens) -> String {
        let mut text = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum());
        for (i, token) in tokens.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(token);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        WordTokenizer.tokenize(text).expect("word tokenizer never fails").to_vec()
    }

    #[test]
    fn token_start_finds_each_word_in_the_original_text() {
        let text = "  The  Cat\tsat\u{3000}Été.\n";
        let starts: Vec<Option<usize>> = (0..6).map(|i| WordTokenizer.token_start(text, i)).collect();
        assert_eq!(starts, [Some(2), Some(7), Some(11), Some(17), Some(text.len()), None]);
        assert_eq!(WordTokenizer.token_start("", 0), Some(0));
        assert_eq!(WordTokenizer.token_start(" \n", 0), Some(2));
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
        // A case-ignorable character (U+0027 apostrophe, U+00AD soft hyphen) does not hide the
        // letters after a sigma; U+0130 lower-cases to two chars.
        assert_eq!(
            words("A\u{3a3}'A A\u{3a3}\u{ad} \u{130}X"),
            ["a\u{3c3}'a", "a\u{3c2}\u{ad}", "i\u{307}x"]
        );
    }

    #[test]
    fn lower_casing_never_creates_moves_or_removes_whitespace() {
        // What makes splitting before lower-casing equal to splitting after: checked over every
        // char, so a Unicode update in `std` that broke it would fail here.
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let lower: String = c.to_lowercase().collect();
            if c.is_whitespace() {
                assert_eq!(lower, c.to_string(), "whitespace {c:?} changes when lower-cased");
                // The final-sigma context stops at whitespace: it is neither cased nor
                // case-ignorable, so a sigma on one side of it never sees the other side.
                let after_word = format!("A{c}\u{3a3}").to_lowercase();
                assert_eq!(after_word, format!("a{c}\u{3c3}"), "{c:?}");
                let before_word = format!("A\u{3a3}{c}A").to_lowercase();
                assert_eq!(before_word, format!("a\u{3c2}{c}a"), "{c:?}");
            } else {
                assert!(!lower.chars().any(char::is_whitespace), "{c:?} lower-cases to whitespace");
            }
        }
    }

    #[test]
    fn matches_lower_casing_the_whole_text() {
        let text =
            "\u{3a3}\u{3a3} A\u{3a3} \u{3a3}A\u{3a3}\u{2028}X\u{3a3}\u{300} \u{10400}\u{3a3}\tÉ\u{3a3}É";
        let whole: Vec<String> = text.to_lowercase().split_whitespace().map(String::from).collect();
        assert_eq!(words(text), whole);
    }

    #[test]
    fn run_clears_the_output_buffer() {
        let mut out = Tokens::from(&["stale"][..]);
        WordTokenizer.run("fresh words", &mut out, &Ctx::seq()).expect("never fails");
        assert_eq!(out.to_vec(), ["fresh", "words"]);
    }

    #[test]
    fn decode_joins_with_single_spaces() {
        let tokens = WordTokenizer.tokenize("Hello,\t\tWorld !").expect("never fails");
        assert_eq!(WordTokenizer.decode(&tokens), "hello, world !");
        assert_eq!(WordTokenizer.decode(&Tokens::new()), "");
        assert_eq!(WordTokenizer.decode(&Tokens::from(&["", "a", ""][..])), " a ");
        assert_eq!(WordTokenizer.name(), "word");
    }
}
