//! The run-time face: the config table that picks a vectorizer, and the enum it produces.

use crate::{Vectorizer, Vocab, VocabTrainer, VocabVectorizer};
use serde::{Deserialize, Serialize};
use stagewise_core::{Result, Tokens};
use std::path::Path;

/// Which vectorizer to use and how to fit it, as written in the config file (`[vectorizer]`
/// table, e.g. `kind = "vocab"`, `max_size = 10000`, `min_count = 2`,
/// `specials = ["<pad>", "<bos>", "<eos>"]`).
///
/// Tagged by `kind` and strict: an unknown `kind` or key is a deserialisation error that names
/// it. The default is `vocab` with `max_size = 10000`, `min_count = 1` and no specials, the
/// seed's setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VectorizerConfig {
    /// The training split's most frequent tokens (ties by bytes), `<unk>` at id 0 for the rest.
    ///
    /// [`VocabVectorizer`] fitted by [`VocabTrainer`]: `<unk>` at id 0, the `specials` at ids
    /// 1, 2, … in the order listed, then the most frequent training tokens seen at least
    /// `min_count` times, up to `max_size` ids in all.
    Vocab {
        /// Most ids, `<unk>` and specials included (default 10000; at least 2 plus the specials).
        #[serde(default = "default_max_size")]
        max_size: usize,
        /// Fewest training occurrences a token needs for an id of its own (default 1: all).
        #[serde(default = "default_min_count")]
        min_count: u64,
        /// Special tokens after `<unk>`, in this order: any of `"<pad>"`, `"<bos>"`, `"<eos>"`.
        #[serde(default)]
        specials: Vec<String>,
    },
}

fn default_max_size() -> usize {
    VocabTrainer::DEFAULT_MAX_SIZE
}

fn default_min_count() -> u64 {
    VocabTrainer::DEFAULT_MIN_COUNT
}

impl Default for VectorizerConfig {
    /// `vocab` with `max_size = 10000`, `min_count = 1`, no specials.
    fn default() -> Self {
        Self::vocab(VocabTrainer::DEFAULT_MAX_SIZE)
    }
}

impl VectorizerConfig {
    /// `vocab` with `max_size` and the other keys at their defaults (`min_count = 1`, no
    /// specials).
    pub fn vocab(max_size: usize) -> Self {
        VectorizerConfig::Vocab { max_size, min_count: VocabTrainer::DEFAULT_MIN_COUNT, specials: Vec::new() }
    }

    /// The most ids the fitted vectorizer may have (to size memory estimates before fitting).
    pub fn max_size(&self) -> usize {
        match self {
            VectorizerConfig::Vocab { max_size, .. } => *max_size,
        }
    }

    /// The trainer these settings describe, with nothing fed.
    fn vocab_trainer(max_size: usize, min_count: u64, specials: &[String]) -> VocabTrainer {
        VocabTrainer::new(max_size).with_min_count(min_count).with_specials(specials.to_vec())
    }

    /// Checks the settings without fitting, so a bad config fails before the corpus is read.
    pub fn validate(&self) -> Result<()> {
        match self {
            VectorizerConfig::Vocab { max_size, min_count, specials } => {
                Self::vocab_trainer(*max_size, *min_count, specials).validate()
            }
        }
    }

    /// Fits the configured vectorizer to the training tokens (a `&Tokens`, or any iterator of
    /// `&str`, such as the first part of a token list) and returns it ready to run. The settings
    /// are checked before any token is read.
    pub fn fit<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) -> Result<VectorizerImpl> {
        match self {
            VectorizerConfig::Vocab { max_size, min_count, specials } => {
                Self::vocab_trainer(*max_size, *min_count, specials).fit(tokens).map(VectorizerImpl::Vocab)
            }
        }
    }

    /// Loads a vectorizer of the configured kind saved with [`VectorizerImpl::save`] (to generate
    /// from, or resume with, a trained model). Fitting settings such as `max_size`, `min_count`
    /// and `specials` are not re-applied: the saved vocabulary (its specials included) is the one
    /// the model was trained with.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<VectorizerImpl> {
        match self {
            VectorizerConfig::Vocab { .. } => VocabVectorizer::load(path).map(VectorizerImpl::Vocab),
        }
    }

    /// Like [`VectorizerConfig::load`], from the file's text (e.g. the copy a checkpoint embeds);
    /// `context` names where the text came from in errors.
    pub fn from_json(&self, text: &str, context: &str) -> Result<VectorizerImpl> {
        match self {
            VectorizerConfig::Vocab { .. } => {
                Vocab::from_json(text, context).map(|v| VectorizerImpl::Vocab(VocabVectorizer::new(v)))
            }
        }
    }
}

/// Every built-in vectorizer, chosen at run time from a [`VectorizerConfig`].
///
/// An enum rather than a trait object, so a call is one `match` and the built-ins are listed in
/// one place; it implements [`Vectorizer`] by forwarding to the variant. A Rust user with their
/// own vectorizer uses their type directly through the [`Vectorizer`] trait instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VectorizerImpl {
    /// See [`VocabVectorizer`].
    Vocab(VocabVectorizer),
}

impl VectorizerImpl {
    /// Saves what was fitted, atomically, so [`VectorizerConfig::load`] can restore it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        match self {
            VectorizerImpl::Vocab(v) => v.save(path),
        }
    }

    /// The text [`VectorizerImpl::save`] writes, for embedding in a checkpoint.
    pub fn to_json(&self) -> String {
        match self {
            VectorizerImpl::Vocab(v) => v.vocab().to_json(),
        }
    }
}

impl From<VocabVectorizer> for VectorizerImpl {
    fn from(v: VocabVectorizer) -> Self {
        VectorizerImpl::Vocab(v)
    }
}

stagewise_core::delegate_stage!(impl[] Stage for VectorizerImpl { Vocab }
    input<'a> = &'a Tokens; output = Vec<u32>;);

impl Vectorizer for VectorizerImpl {
    fn decode(&self, ids: &[u32], out: &mut Tokens) -> Result<()> {
        match self {
            VectorizerImpl::Vocab(v) => v.decode(ids, out),
        }
    }

    fn vocab_size(&self) -> usize {
        match self {
            VectorizerImpl::Vocab(v) => v.vocab_size(),
        }
    }

    fn id_of(&self, token: &str) -> u32 {
        match self {
            VectorizerImpl::Vocab(v) => v.id_of(token),
        }
    }

    fn unk_id(&self) -> Option<u32> {
        match self {
            VectorizerImpl::Vocab(v) => v.unk_id(),
        }
    }

    fn vectorize(&self, tokens: &Tokens) -> Result<Vec<u32>> {
        match self {
            VectorizerImpl::Vocab(v) => v.vectorize(tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagewise_core::Error;
    use stagewise_core::Stage;

    #[test]
    fn reads_toml_with_defaults() {
        let cfg: VectorizerConfig = toml::from_str("kind = \"vocab\"\n").expect("valid");
        assert_eq!(cfg, VectorizerConfig::default());
        let cfg: VectorizerConfig = toml::from_str("kind = \"vocab\"\nmax_size = 50\n").expect("valid");
        assert_eq!(cfg, VectorizerConfig::vocab(50));
        let json = serde_json::to_string(&cfg).expect("serialises");
        assert_eq!(json, r#"{"kind":"vocab","max_size":50,"min_count":1,"specials":[]}"#);
        let text = "kind = \"vocab\"\nmin_count = 3\nspecials = [\"<pad>\", \"<eos>\"]\n";
        let cfg: VectorizerConfig = toml::from_str(text).expect("valid");
        let specials = vec!["<pad>".to_owned(), "<eos>".to_owned()];
        assert_eq!(cfg, VectorizerConfig::Vocab { max_size: 10_000, min_count: 3, specials });
        let json = serde_json::to_string(&cfg).expect("serialises");
        assert_eq!(json, r#"{"kind":"vocab","max_size":10000,"min_count":3,"specials":["<pad>","<eos>"]}"#);
        assert_eq!(serde_json::from_str::<VectorizerConfig>(&json).expect("round trip"), cfg);
    }

    #[test]
    fn rejects_unknown_kinds_and_keys_by_name() {
        let err = toml::from_str::<VectorizerConfig>("kind = \"vocabulary\"\n").expect_err("kind");
        assert!(err.to_string().contains("vocabulary"), "{err}");
        let err = toml::from_str::<VectorizerConfig>("kind = \"vocab\"\nmax_sise = 5\n").expect_err("key");
        assert!(err.to_string().contains("max_sise"), "{err}");
    }

    #[test]
    fn validate_and_fit_reject_a_tiny_max_size() {
        let cfg = VectorizerConfig::vocab(1);
        assert!(matches!(cfg.validate(), Err(Error::Config { .. })));
        assert!(matches!(cfg.fit(&Tokens::new()), Err(Error::Config { .. })));
        assert!(VectorizerConfig::default().validate().is_ok());
    }

    #[test]
    fn validate_names_the_bad_key() {
        let specials = |s: &[&str]| s.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let cases = [
            (
                VectorizerConfig::Vocab {
                    max_size: 3,
                    min_count: 1,
                    specials: specials(&["<pad>", "<bos>"]),
                },
                "vectorizer.max_size",
                "at least 4",
            ),
            (
                VectorizerConfig::Vocab { max_size: 10, min_count: 0, specials: vec![] },
                "vectorizer.min_count",
                "at least 1",
            ),
            (
                VectorizerConfig::Vocab { max_size: 10, min_count: 1, specials: specials(&["<sep>"]) },
                "vectorizer.specials",
                "\"<sep>\" is not a special token",
            ),
            (
                VectorizerConfig::Vocab { max_size: 10, min_count: 1, specials: specials(&["<unk>"]) },
                "vectorizer.specials",
                "always id 0",
            ),
            (
                VectorizerConfig::Vocab {
                    max_size: 10,
                    min_count: 1,
                    specials: specials(&["<eos>", "<eos>"]),
                },
                "vectorizer.specials",
                "listed twice",
            ),
        ];
        for (cfg, key, words) in cases {
            match cfg.validate() {
                Err(Error::Config { field, message }) => {
                    assert_eq!(field, key, "{cfg:?}");
                    assert!(message.contains(words), "{cfg:?}: {message}");
                }
                other => panic!("{cfg:?}: expected a config error, got {other:?}"),
            }
        }
        let ok =
            VectorizerConfig::Vocab { max_size: 4, min_count: 2, specials: specials(&["<pad>", "<bos>"]) };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.max_size(), 4);
    }

    #[test]
    fn fit_forwards_to_the_trainer() {
        let tokens: Tokens = "b a b".split(' ').collect();
        let v = VectorizerConfig::default().fit(&tokens).expect("fits");
        assert_eq!((v.name(), v.vocab_size(), v.id_of("b"), v.id_of("a")), ("vocab", 3, 1, 2));
        let direct = VocabTrainer::default().fit(&tokens).expect("fits");
        assert_eq!(v, VectorizerImpl::from(direct));
    }

    #[test]
    fn json_text_round_trips_and_bad_text_names_its_source() {
        let tokens: Tokens = "b a b c".split(' ').collect();
        let config = VectorizerConfig::default();
        let v = config.fit(&tokens).expect("fits");
        assert_eq!(config.from_json(&v.to_json(), "ckpt").expect("parses"), v);
        let err = config.from_json("{not json", "model.ckpt (embedded vocabulary)").unwrap_err().to_string();
        assert!(err.contains("model.ckpt (embedded vocabulary)"), "{err}");
    }
}
