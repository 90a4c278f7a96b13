//! Property tests of the tokenize box, run against every built-in through the run-time enum.

use proptest::prelude::*;
use stagewise_core::{Ctx, Stage, Tokens};
use stagewise_tokenizer::{Tokenizer, TokenizerConfig, TokenizerImpl, WordTokenizer};

/// Every built-in, so each property is checked for all of them.
fn all_tokenizers() -> Vec<TokenizerImpl> {
    vec![TokenizerConfig::Word {}.build().expect("word builds")]
}

/// The normal form of text under the word tokenizer, written independently of its implementation:
/// lower-cased, every run of whitespace collapsed to one space, ends trimmed.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in text.to_lowercase().chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Text that exercises what matters: mixed case (including non-ASCII and context-sensitive
/// letters), ASCII and Unicode whitespace runs, punctuation; plus arbitrary Unicode strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .,!'\t\n\r\u{a0}\u{3000}\u{2028}\u{85}ÄäÉéßẞΣσςİıŉ\u{307}\u{200b}<>-]{0,60}",
        any::<String>(),
    ]
}

proptest! {
    /// `token_start` of token `i` starts text that tokenizes to exactly the tokens from `i` on,
    /// for every built-in (the pipeline counts a split's characters with it).
    #[test]
    fn each_token_start_begins_the_rest_of_the_tokens(text in text()) {
        let builtins = [TokenizerConfig::Word {}.build()?, TokenizerConfig::Char {}.build()?];
        for tokenizer in builtins {
            let tokens = tokenizer.tokenize(&text)?.to_vec();
            for i in 0..=tokens.len() {
                let start = tokenizer.token_start(&text, i);
                prop_assert!(start.is_some(), "{} token {i} of {text:?}", tokenizer.name());
                let rest = tokenizer.tokenize(&text[start.unwrap_or_default()..])?.to_vec();
                prop_assert_eq!(&rest[..], &tokens[i..]);
            }
            prop_assert_eq!(tokenizer.token_start(&text, tokens.len() + 1), None);
        }
    }

    #[test]
    fn tokens_are_non_empty_and_contain_no_whitespace(text in text()) {
        for t in all_tokenizers() {
            for token in &t.tokenize(&text)? {
                prop_assert!(!token.is_empty(), "{}: empty token", t.name());
                prop_assert!(!token.chars().any(char::is_whitespace), "{}: {:?}", t.name(), token);
            }
        }
    }

    #[test]
    fn decode_of_encode_is_the_normalised_text(text in text()) {
        let word = WordTokenizer;
        prop_assert_eq!(word.decode(&word.tokenize(&text)?), normalise(&text));
    }

    #[test]
    fn encoding_is_idempotent_on_decoded_output(text in text()) {
        for t in all_tokenizers() {
            let tokens = t.tokenize(&text)?;
            prop_assert_eq!(t.tokenize(&t.decode(&tokens))?, tokens, "{}", t.name());
        }
    }

    #[test]
    fn matches_lower_casing_then_splitting_the_whole_text(text in text()) {
        let expected: Vec<String> = text.to_lowercase().split_whitespace().map(String::from).collect();
        prop_assert_eq!(WordTokenizer.tokenize(&text)?.to_vec(), expected);
    }

    #[test]
    fn run_into_a_reused_buffer_matches_tokenize(a in text(), b in text()) {
        for t in all_tokenizers() {
            let mut out = Tokens::new();
            t.run(&a, &mut out, &Ctx::seq())?;
            t.run(&b, &mut out, &Ctx::seq())?;
            prop_assert_eq!(out, t.tokenize(&b)?, "{}", t.name());
        }
    }
}

#[test]
fn tokens_match_python_lower_split_on_literal_examples() {
    // Expected values are Python's `text.lower().split()`.
    let cases: &[(&str, &[&str])] = &[
        ("Hello World", &["hello", "world"]),
        ("  tabs\tand\nnewlines\r\n\n", &["tabs", "and", "newlines"]),
        ("Ünïcödé ÀND\u{a0}Straße", &["ünïcödé", "ànd", "straße"]),
        ("<unk> is a TOKEN", &["<unk>", "is", "a", "token"]),
    ];
    for (text, expected) in cases {
        assert_eq!(WordTokenizer.tokenize(text).expect("never fails").to_vec(), *expected, "{text:?}");
    }
}
