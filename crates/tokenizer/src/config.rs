//! The run-time face: the config table that picks a tokenizer, and the enum it builds.

use crate::{CharTokenizer, Tokenizer, WordTokenizer};
use serde::{Deserialize, Serialize};
use stagewise_core::{Result, Tokens};

/// Which tokenizer to use, as written in the config file (`[tokenizer]` table, `kind = "word"`).
///
/// Tagged by `kind` and strict: an unknown `kind` or an unknown key is a deserialisation error
/// that names it, so a typo never silently falls back to a default. The default is `word`, the
/// seed's tokenizer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenizerConfig {
    /// [`WordTokenizer`]: lower-case, split on Unicode whitespace. No settings.
    Word {},
    /// [`CharTokenizer`]: one token per Unicode character, whitespace and case kept (for
    /// character-level models). No settings.
    Char {},
}

impl Default for TokenizerConfig {
    /// `word`, the seed's tokenizer.
    fn default() -> Self {
        TokenizerConfig::Word {}
    }
}

impl TokenizerConfig {
    /// Builds the tokenizer this config describes.
    ///
    /// Fallible because future kinds (a BPE model file, say) will read files or validate
    /// settings; `word` always succeeds.
    pub fn build(&self) -> Result<TokenizerImpl> {
        match self {
            TokenizerConfig::Word {} => Ok(TokenizerImpl::Word(WordTokenizer)),
            TokenizerConfig::Char {} => Ok(TokenizerImpl::Char(CharTokenizer)),
        }
    }
}

/// Every built-in tokenizer, chosen at run time from a [`TokenizerConfig`].
///
/// An enum rather than a trait object, so a call is one `match` and the set of built-ins is
/// visible in one place; it implements [`Tokenizer`] by forwarding to the variant. A Rust user
/// with their own tokenizer uses their type directly through the [`Tokenizer`] trait instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerImpl {
    /// See [`WordTokenizer`].
    Word(WordTokenizer),
    /// See [`CharTokenizer`].
    Char(CharTokenizer),
}

impl Default for TokenizerImpl {
    /// The seed's tokenizer, [`WordTokenizer`], matching [`TokenizerConfig::default`].
    fn default() -> Self {
        TokenizerImpl::Word(WordTokenizer)
    }
}

impl From<WordTokenizer> for TokenizerImpl {
    fn from(t: WordTokenizer) -> Self {
        TokenizerImpl::Word(t)
    }
}

impl From<CharTokenizer> for TokenizerImpl {
    fn from(t: CharTokenizer) -> Self {
        TokenizerImpl::Char(t)
    }
}

stagewise_core::delegate_stage!(impl[] Stage for TokenizerImpl { Word, Char }
    input<'a> = &'a str; output = Tokens;);

impl Tokenizer for TokenizerImpl {
    fn decode(&self, tokens: &Tokens) -> String {
        match self {
            TokenizerImpl::Word(t) => t.decode(tokens),
            TokenizerImpl::Char(t) => t.decode(tokens),
        }
    }

    fn tokenize(&self, text: &str) -> Result<Tokens> {
        match self {
            TokenizerImpl::Word(t) => t.tokenize(text),
            TokenizerImpl::Char(t) => t.tokenize(text),
        }
    }

    fn decode_next(&self, previous: Option<&str>, token: &str) -> String {
        match self {
            TokenizerImpl::Word(t) => t.decode_next(previous, token),
            TokenizerImpl::Char(t) => t.decode_next(previous, token),
        }
    }

    fn token_start(&self, text: &str, index: usize) -> Option<usize> {
        match self {
            TokenizerImpl::Word(t) => t.token_start(text, index),
            TokenizerImpl::Char(t) => t.token_start(text, index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::Stage;

    /// Decoding token by token gives the text of decoding the whole sequence.
    #[test]
    fn tokens_decoded_one_at_a_time_join_into_the_whole_decoding() {
        let t = TokenizerConfig::default().build().expect("word builds");
        let tokens = t.tokenize("to be or not to be").expect("tokenizes");
        let mut streamed = String::new();
        let mut previous = None;
        for token in tokens.iter() {
            streamed.push_str(&t.decode_next(previous, token));
            previous = Some(token);
        }
        assert_eq!(streamed, t.decode(&tokens));
    }

    #[test]
    fn default_is_word() {
        let t = TokenizerConfig::default().build().expect("word builds");
        assert_eq!(t.name(), "word");
        assert_eq!(t, TokenizerImpl::default());
        assert_eq!(TokenizerImpl::from(WordTokenizer), t);
    }

    #[test]
    fn serialises_with_a_kind_tag() {
        let json = serde_json::to_string(&TokenizerConfig::Word {}).expect("serialises");
        assert_eq!(json, r#"{"kind":"word"}"#);
        let back: TokenizerConfig = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, TokenizerConfig::Word {});
    }

    #[test]
    fn reads_a_toml_table() {
        let cfg: TokenizerConfig = toml::from_str("kind = \"word\"\n").expect("valid config");
        assert_eq!(cfg, TokenizerConfig::Word {});
        let cfg: TokenizerConfig = toml::from_str("kind = \"char\"\n").expect("valid config");
        assert_eq!(cfg, TokenizerConfig::Char {});
        let t = cfg.build().expect("char builds");
        assert_eq!((t.name(), t.tokenize("分词").expect("tokenizes").len()), ("char", 2));
        assert_eq!(TokenizerImpl::from(CharTokenizer), t);
    }

    #[test]
    fn rejects_unknown_kinds_and_keys_by_name() {
        let err = toml::from_str::<TokenizerConfig>("kind = \"wrod\"\n").expect_err("unknown kind");
        assert!(err.to_string().contains("wrod"), "{err}");
        let err =
            toml::from_str::<TokenizerConfig>("kind = \"word\"\nlower = false\n").expect_err("unknown key");
        assert!(err.to_string().contains("lower"), "{err}");
        let err = toml::from_str::<TokenizerConfig>("").expect_err("missing kind");
        assert!(err.to_string().contains("kind"), "{err}");
    }
}
