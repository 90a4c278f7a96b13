//! Any HuggingFace `tokenizer.json` (WordPiece, Unigram, BPE with normalizers, ...) through the
//! `tokenizers` crate itself, built without C dependencies (feature `hf`).

use crate::Tokenizer;
use stagewise_core::{Ctx, Error, Result, Stage, Tokens};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A tokenizer loaded by HF's `tokenizers` crate: whatever model, normalizer, pre-tokenizer and
/// decoder the file describes, with exactly `tokenizers`' ids, so a user can bring the tokenizer
/// they already have.
///
/// Tokens are the vocabulary's strings and the run's ids are the file's ids (like `bpe`, see
/// [`HfTokenizer::vocabulary`]). Text is encoded without the post-processor's special tokens
/// (`add_special_tokens = false`): a language model's corpus is one stream, not a sentence with
/// `[CLS]` and `[SEP]` around it. Decoding goes through the file's decoder; whether it gives the
/// text back exactly depends on the tokenizer (a lower-casing normalizer does not).
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    vocabulary: Arc<[String]>,
    path: PathBuf,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer").field("path", &self.path).field("ids", &self.vocabulary.len()).finish()
    }
}

impl PartialEq for HfTokenizer {
    /// The same file's vocabulary: two loads of one file are equal.
    fn eq(&self, other: &Self) -> bool {
        self.vocabulary == other.vocabulary
    }
}

impl Eq for HfTokenizer {}

impl HfTokenizer {
    /// The name this tokenizer reports and the `kind` that selects it in a config file.
    pub const NAME: &'static str = "hf";

    /// Loads a `tokenizer.json`; errors name the file and what `tokenizers` found wrong.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = stagewise_core::read_regular_file(path, crate::bpe::MAX_TOKENIZER_FILE_BYTES)
            .map_err(|e| Error::io(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::data(path.display().to_string(), e.to_string().replace('\n', " ")))?;
        let vocab = inner.get_vocab(true);
        let mut vocabulary = vec![None; vocab.len()];
        for (token, id) in vocab {
            match vocabulary.get_mut(id as usize) {
                Some(slot) => *slot = Some(token),
                None => {
                    return Err(Error::data(
                        path.display().to_string(),
                        format!(
                            "token {token:?} has id {id}, past the {} ids of the vocabulary",
                            vocabulary.len()
                        ),
                    ));
                }
            }
        }
        let vocabulary: Vec<String> = vocabulary.into_iter().map(Option::unwrap_or_default).collect();
        Ok(HfTokenizer { inner: Arc::new(inner), vocabulary: vocabulary.into(), path: path.to_path_buf() })
    }

    /// Every token in id order: the run's vocabulary.
    pub fn vocabulary(&self) -> &[String] {
        &self.vocabulary
    }

    /// The ids `tokenizers` gives `text` (without added special tokens).
    pub fn encode_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids` through the file's decoder (special tokens kept).
    pub fn decode_ids(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| self.error(e))
    }

    fn error(&self, e: tokenizers::Error) -> Error {
        Error::data(self.path.display().to_string(), e.to_string().replace('\n', " "))
    }
}

impl Stage for HfTokenizer {
    type Input<'a> = &'a str;
    type Output = Tokens;

    fn name(&self) -> &str {
        Self::NAME
    }

    /// Clears `out` and appends the token of each id `tokenizers` gives `input`.
    fn run(&self, input: &str, out: &mut Tokens, _cx: &Ctx) -> Result<()> {
        out.clear();
        for id in self.encode_ids(input)? {
            out.push(&self.vocabulary[id as usize]);
        }
        Ok(())
    }
}

impl Tokenizer for HfTokenizer {
    /// The tokens' ids through the file's decoder; a token that is not in the vocabulary (not
    /// one this tokenizer produced) is left out.
    fn decode(&self, tokens: &Tokens) -> String {
        let ids: Vec<u32> = tokens.iter().filter_map(|t| self.inner.token_to_id(t)).collect();
        self.decode_ids(&ids).unwrap_or_default()
    }
}
