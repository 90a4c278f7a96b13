//! The run-time face: the config table that picks a tokenizer, and the enum it builds.

use crate::bpe::{BpeModel, BpeTokenizer, BpeTrainer};
use crate::{CharTokenizer, Tokenizer, WordTokenizer};
use serde::{Deserialize, Serialize};
use stagewise_core::{Ctx, Error, Result, Stage, Tokens};
use std::path::PathBuf;

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
    /// [`BpeTokenizer`]: byte-level BPE as GPT-2 and HuggingFace `tokenizers` define it,
    /// loaded from a `tokenizer.json` (`path`) or trained on the training split at the start
    /// of the run (`vocab_size`) and saved to the run directory as `tokenizer.json`.
    ///
    /// Ids are the tokenizer's own: the vectorizer of a BPE run is its vocabulary in id order.
    Bpe {
        /// A HuggingFace `tokenizer.json` holding a byte-level BPE (GPT-2 style) to load.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
        /// Train a vocabulary of this many tokens (the 256 bytes and the special tokens
        /// included) when the run starts, instead of loading `path`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vocab_size: Option<usize>,
        /// When training: pairs seen fewer times are never merged (default 2).
        #[serde(default = "default_min_frequency")]
        min_frequency: u64,
        /// When training: tokens put first in the vocabulary and matched whole in any text
        /// (default `["<|endoftext|>"]`).
        #[serde(default = "default_special_tokens")]
        special_tokens: Vec<String>,
    },
    /// Any HuggingFace `tokenizer.json` (WordPiece, Unigram, BPE, normalizers, ...) through the
    /// `tokenizers` crate, with exactly its ids; needs the cargo feature `hf`.
    ///
    /// Ids are the file's (like `bpe`); text is encoded without the post-processor's special
    /// tokens.
    Hf {
        /// The `tokenizer.json` to load.
        path: PathBuf,
    },
}

fn default_min_frequency() -> u64 {
    BpeTrainer::DEFAULT_MIN_FREQUENCY
}

fn default_special_tokens() -> Vec<String> {
    vec![crate::bpe::END_OF_TEXT.to_owned()]
}

impl Default for TokenizerConfig {
    /// `word`, the seed's tokenizer.
    fn default() -> Self {
        TokenizerConfig::Word {}
    }
}

impl TokenizerConfig {
    /// Builds the tokenizer this config describes: `bpe` reads its `path`. A `bpe` config that
    /// trains (`vocab_size`, no `path`) is built by [`TokenizerConfig::train`] instead.
    pub fn build(&self) -> Result<TokenizerImpl> {
        match self {
            TokenizerConfig::Word {} => Ok(TokenizerImpl::Word(WordTokenizer)),
            TokenizerConfig::Char {} => Ok(TokenizerImpl::Char(CharTokenizer)),
            TokenizerConfig::Bpe { path: Some(path), .. } => {
                Ok(TokenizerImpl::Bpe(BpeTokenizer::new(BpeModel::load(path)?)))
            }
            #[cfg(feature = "hf")]
            TokenizerConfig::Hf { path } => Ok(TokenizerImpl::Hf(crate::HfTokenizer::load(path)?)),
            #[cfg(not(feature = "hf"))]
            TokenizerConfig::Hf { .. } => Err(Error::config(
                "tokenizer.kind",
                "\"hf\" needs the cargo feature `hf` (build with `--features hf`); a byte-level BPE \
                 file also loads with kind = \"bpe\"",
            )),
            TokenizerConfig::Bpe { path: None, .. } => Err(Error::config(
                "tokenizer.vocab_size",
                "a bpe tokenizer that is not trained yet cannot be built: give `path`, or train it",
            )),
        }
    }

    /// Checks the settings without reading anything: `bpe` needs exactly one of `path` and
    /// `vocab_size`, and a trainable vocabulary size.
    pub fn validate(&self) -> Result<()> {
        match self {
            TokenizerConfig::Bpe { path, vocab_size, min_frequency, special_tokens } => {
                match (path, vocab_size) {
                    (Some(_), Some(_)) => Err(Error::config(
                        "tokenizer.vocab_size",
                        "give either `path` (load) or `vocab_size` (train), not both",
                    )),
                    (None, None) => Err(Error::config(
                        "tokenizer.path",
                        "a bpe tokenizer needs `path` (a tokenizer.json) or `vocab_size` (train one)",
                    )),
                    (None, Some(v)) => BpeTrainer {
                        vocab_size: *v,
                        min_frequency: *min_frequency,
                        special_tokens: special_tokens.clone(),
                    }
                    .validate()
                    .map_err(|m| Error::config("tokenizer.vocab_size", m)),
                    (Some(_), None) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// The trainer of a `bpe` config that trains (`vocab_size` set, no `path`), else `None`.
    pub fn trainer(&self) -> Option<BpeTrainer> {
        match self {
            TokenizerConfig::Bpe { path: None, vocab_size: Some(v), min_frequency, special_tokens } => {
                Some(BpeTrainer {
                    vocab_size: *v,
                    min_frequency: *min_frequency,
                    special_tokens: special_tokens.clone(),
                })
            }
            _ => None,
        }
    }

    /// Trains the tokenizer of a `bpe` config that trains on `text` (on the current rayon
    /// pool), or builds any other config as [`TokenizerConfig::build`] does.
    pub fn train(&self, text: &str) -> Result<TokenizerImpl> {
        match self.trainer() {
            Some(trainer) => trainer
                .train(text)
                .map(|m| TokenizerImpl::Bpe(BpeTokenizer::new(m)))
                .map_err(|m| Error::config("tokenizer.vocab_size", m)),
            None => self.build(),
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
    /// See [`BpeTokenizer`].
    Bpe(BpeTokenizer),
    /// See `HfTokenizer` (feature `hf`).
    #[cfg(feature = "hf")]
    Hf(crate::HfTokenizer),
}

impl TokenizerImpl {
    /// The tokenizer's own vocabulary in id order, for tokenizers that define ids (`bpe`): the
    /// vectorizer must then be this list, not one fitted by frequency. `None` for `word` and
    /// `char`, whose ids the vectorizer chooses.
    pub fn vocabulary(&self) -> Option<&[String]> {
        match self {
            TokenizerImpl::Bpe(t) => Some(t.vocabulary()),
            #[cfg(feature = "hf")]
            TokenizerImpl::Hf(t) => Some(t.vocabulary()),
            TokenizerImpl::Word(_) | TokenizerImpl::Char(_) => None,
        }
    }
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

impl From<BpeTokenizer> for TokenizerImpl {
    fn from(t: BpeTokenizer) -> Self {
        TokenizerImpl::Bpe(t)
    }
}

/// Forwards to the variant (written out rather than with `delegate_stage!`, because the `hf`
/// variant exists only with its feature).
impl Stage for TokenizerImpl {
    type Input<'a> = &'a str;
    type Output = Tokens;

    fn name(&self) -> &str {
        match self {
            TokenizerImpl::Word(t) => t.name(),
            TokenizerImpl::Char(t) => t.name(),
            TokenizerImpl::Bpe(t) => t.name(),
            #[cfg(feature = "hf")]
            TokenizerImpl::Hf(t) => t.name(),
        }
    }

    fn run(&self, input: &str, out: &mut Tokens, cx: &Ctx) -> Result<()> {
        match self {
            TokenizerImpl::Word(t) => t.run(input, out, cx),
            TokenizerImpl::Char(t) => t.run(input, out, cx),
            TokenizerImpl::Bpe(t) => t.run(input, out, cx),
            #[cfg(feature = "hf")]
            TokenizerImpl::Hf(t) => t.run(input, out, cx),
        }
    }
}

impl Tokenizer for TokenizerImpl {
    fn decode(&self, tokens: &Tokens) -> String {
        match self {
            TokenizerImpl::Word(t) => t.decode(tokens),
            TokenizerImpl::Char(t) => t.decode(tokens),
            TokenizerImpl::Bpe(t) => t.decode(tokens),
            #[cfg(feature = "hf")]
            TokenizerImpl::Hf(t) => t.decode(tokens),
        }
    }

    fn tokenize(&self, text: &str) -> Result<Tokens> {
        match self {
            TokenizerImpl::Word(t) => t.tokenize(text),
            TokenizerImpl::Char(t) => t.tokenize(text),
            TokenizerImpl::Bpe(t) => t.tokenize(text),
            #[cfg(feature = "hf")]
            TokenizerImpl::Hf(t) => t.tokenize(text),
        }
    }

    fn decode_next(&self, previous: Option<&str>, token: &str) -> String {
        match self {
            TokenizerImpl::Word(t) => t.decode_next(previous, token),
            TokenizerImpl::Char(t) => t.decode_next(previous, token),
            TokenizerImpl::Bpe(t) => t.decode_next(previous, token),
            #[cfg(feature = "hf")]
            TokenizerImpl::Hf(t) => t.decode_next(previous, token),
        }
    }

    fn token_start(&self, text: &str, index: usize) -> Option<usize> {
        match self {
            TokenizerImpl::Word(t) => t.token_start(text, index),
            TokenizerImpl::Char(t) => t.token_start(text, index),
            TokenizerImpl::Bpe(t) => t.token_start(text, index),
            #[cfg(feature = "hf")]
            TokenizerImpl::Hf(t) => t.token_start(text, index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "hf"))]
    #[test]
    fn hf_without_its_feature_is_a_clear_error() {
        let cfg: TokenizerConfig =
            toml::from_str("kind = \"hf\"\npath = \"t.json\"\n").expect("valid config");
        let err = cfg.build().expect_err("no hf feature").to_string();
        assert!(err.contains("--features hf") && err.contains("tokenizer.kind"), "{err}");
    }

    #[test]
    fn bpe_needs_a_path_or_a_vocabulary_size() {
        for (text, field) in [
            ("kind = \"bpe\"\n", "tokenizer.path"),
            ("kind = \"bpe\"\npath = \"a.json\"\nvocab_size = 300\n", "tokenizer.vocab_size"),
            ("kind = \"bpe\"\nvocab_size = 100\n", "tokenizer.vocab_size"),
        ] {
            let cfg: TokenizerConfig = toml::from_str(text).expect("parses");
            let err = cfg.validate().expect_err(text).to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        let cfg: TokenizerConfig = toml::from_str("kind = \"bpe\"\nvocab_size = 300\n").expect("parses");
        cfg.validate().expect("valid");
        assert!(cfg.build().is_err(), "a tokenizer to train is built by `train`");
        let t = cfg.train("to be or not to be, that is the question\n").expect("trains");
        let size = t.vocabulary().map_or(0, <[String]>::len);
        assert!(t.name() == "bpe" && size > 257 && size < 300, "{size}");
        let missing: TokenizerConfig =
            toml::from_str("kind = \"bpe\"\npath = \"no/such.json\"\n").expect("parses");
        assert!(missing.build().expect_err("no file").to_string().contains("no/such.json"));
    }

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
