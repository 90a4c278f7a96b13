//! Byte-level BPE as GPT-2 and HuggingFace `tokenizers` define it, reading and writing HF's
//! `tokenizer.json`.
//!
//! - [`pretokenize`]: GPT-2's pre-tokenization regex, hand-written.
//! - [`BpeModel`]: vocabulary, ranked merges, added tokens; the encoder (with a [`Cache`]) and
//!   decoder.
//! - [`BpeTrainer`]: HF's `BpeTrainer` over the 256-byte alphabet.
//! - [`BpeTokenizer`]: the tokenize box built on them.

mod bytes;
mod hash;
mod json;
mod model;
pub mod pretokenize;
mod trainer;

pub use bytes::{byte_char, char_byte};
pub use model::{AddedToken, BpeModel, BpeOptions, Cache};
pub use trainer::{BpeTrainer, count_pieces};

use crate::Tokenizer;
use rayon::prelude::*;
use stagewise_core::{Ctx, Error, Result, Stage, Tokens};
use std::path::Path;
use std::sync::Arc;

/// GPT-2's end-of-text token, the default special token of a trained vocabulary.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The most bytes of a `tokenizer.json` read (GPT-2's is 1.4 MB; larger vocabularies reach tens
/// of megabytes).
pub const MAX_TOKENIZER_FILE_BYTES: u64 = 1 << 30;

impl BpeModel {
    /// Reads a HuggingFace `tokenizer.json` holding a byte-level BPE; errors name the file and
    /// what it holds that this reader does not support.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = stagewise_core::read_regular_file(path, MAX_TOKENIZER_FILE_BYTES)
            .map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
            path: path.to_path_buf(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// [`BpeModel::load`] from the file's text; `context` names it in errors.
    pub fn from_json(text: &str, context: &str) -> Result<Self> {
        json::from_json(text).map_err(|m| Error::data(context, m))
    }

    /// The model as a `tokenizer.json` document `tokenizers` loads.
    pub fn to_json(&self) -> String {
        json::to_json(self)
    }

    /// Writes [`BpeModel::to_json`] to `path`, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        stagewise_core::write_atomically(path, self.to_json().as_bytes()).map_err(|e| Error::io(path, e))
    }

    /// The ids of `text`, with a fresh cache (for one-off calls).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, &mut Cache::default(), &mut out);
        out
    }

    /// The ids of `text` on the current rayon pool: the text is cut at line starts (where
    /// GPT-2's pattern always starts a piece), each block encoded with its own cache, and the
    /// ids joined in order, so the result is [`BpeModel::encode`]'s exactly.
    pub fn encode_par(&self, text: &str) -> Vec<u32> {
        let blocks = safe_blocks(text, 1 << 18);
        if blocks.len() < 2
            || self.added.iter().any(|t| t.content.contains('\n'))
            || rayon::current_num_threads() < 2
        {
            return self.encode(text);
        }
        let parts: Vec<Vec<u32>> = blocks
            .par_chunks(blocks.len().div_ceil(rayon::current_num_threads() * 4))
            .map(|group| {
                let mut cache = Cache::default();
                let mut out = Vec::new();
                for block in group {
                    self.encode_into(block, &mut cache, &mut out);
                }
                out
            })
            .collect();
        parts.concat()
    }

    /// The text of `ids`; bytes that are not valid UTF-8 on their own (a token may end inside
    /// a character) become U+FFFD. Errors name an id out of range.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        self.decode_into(ids, &mut bytes).map_err(|id| {
            Error::data(
                "bpe decode",
                format!("id {id} is out of range for a vocabulary of {} ids", self.len()),
            )
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// `text` cut into blocks of about `size` bytes, each cut just after a newline that an ASCII
/// non-space follows: no GPT-2 piece crosses such a cut (a piece spanning a newline is a
/// whitespace run, and the optional space before a word is a space, not a newline). Only an
/// added token containing a newline could; [`BpeModel::encode_par`] does not cut text for a
/// model with one.
fn safe_blocks(text: &str, size: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut cut = (start + size).min(text.len());
        while cut < text.len() {
            if bytes[cut - 1] == b'\n' && !bytes[cut].is_ascii_whitespace() && bytes[cut] < 0x80 {
                break;
            }
            cut += 1;
        }
        blocks.push(&text[start..cut]);
        start = cut;
    }
    blocks
}

/// Byte-level BPE as the tokenize box: tokens are the vocabulary's strings (byte-level form,
/// `Ġthe`), so the vectorizer built from [`BpeTokenizer::vocabulary`] gives each the tokenizer's
/// own id; [`Tokenizer::decode`] gives the text back exactly (`decode(tokenize(s)) == s` for
/// every string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpeTokenizer {
    model: Arc<BpeModel>,
}

impl BpeTokenizer {
    /// The name this tokenizer reports and the `kind` that selects it in a config file.
    pub const NAME: &'static str = "bpe";

    /// The tokenizer of a model.
    pub fn new(model: BpeModel) -> Self {
        BpeTokenizer { model: Arc::new(model) }
    }

    /// The model, to encode to ids directly or save it.
    pub fn model(&self) -> &BpeModel {
        &self.model
    }

    /// Every token in id order: what the vectorizer of a BPE run is built from.
    pub fn vocabulary(&self) -> &[String] {
        &self.model.tokens
    }
}

impl Stage for BpeTokenizer {
    type Input<'a> = &'a str;
    type Output = Tokens;

    fn name(&self) -> &str {
        Self::NAME
    }

    /// Clears `out` and appends the token of each id of `input` (in parallel over line blocks
    /// when `cx` allows threads). Never fails.
    fn run(&self, input: &str, out: &mut Tokens, cx: &Ctx) -> Result<()> {
        out.clear();
        let ids = if stagewise_core::threads_of(cx.par) > 1 {
            self.model.encode_par(input)
        } else {
            self.model.encode(input)
        };
        for id in ids {
            out.push(&self.model.tokens[id as usize]);
        }
        Ok(())
    }
}

impl Tokenizer for BpeTokenizer {
    /// Joins the bytes the tokens stand for; bytes that are not UTF-8 become U+FFFD (only a
    /// sequence cut inside a character, never the tokens of a whole text).
    fn decode(&self, tokens: &Tokens) -> String {
        let mut bytes = Vec::new();
        for t in tokens.iter() {
            token_bytes(t, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The byte offset where token `index` starts: the bytes of the tokens before it, summed
    /// (a byte-level token stands for bytes of the text in order), moved forward to the next
    /// character boundary when a token ends inside a character. `None` for a model that adds a
    /// prefix space (its first token covers a byte the text does not have).
    fn token_start(&self, text: &str, index: usize) -> Option<usize> {
        if self.model.options.add_prefix_space {
            return None;
        }
        let ids = self.model.encode(text);
        if index > ids.len() {
            return None;
        }
        let mut bytes = Vec::new();
        let mut at = 0;
        for &id in &ids[..index] {
            bytes.clear();
            token_bytes(&self.model.tokens[id as usize], &mut bytes);
            at += bytes.len();
        }
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at += 1;
        }
        Some(at)
    }

    /// The bytes `token` adds after `previous`, as text: when `previous` ends inside a
    /// character, the character is completed here.
    fn decode_next(&self, previous: Option<&str>, token: &str) -> String {
        let mut before = Vec::new();
        if let Some(p) = previous {
            token_bytes(p, &mut before);
        }
        // Bytes of an unfinished character at the end of `previous` belong to this token's text.
        let tail = incomplete_tail(&before);
        let mut bytes = before[before.len() - tail..].to_vec();
        token_bytes(token, &mut bytes);
        let keep = bytes.len() - incomplete_tail(&bytes);
        String::from_utf8_lossy(&bytes[..keep]).into_owned()
    }
}

/// Appends the bytes a token's text stands for (its own UTF-8 if it is not byte-level, as HF's
/// `ByteLevel` decoder does).
fn token_bytes(token: &str, out: &mut Vec<u8>) {
    let start = out.len();
    for c in token.chars() {
        match char_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.truncate(start);
                out.extend_from_slice(token.as_bytes());
                return;
            }
        }
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is not finished.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0xc0 != 0x80 {
            let need = match b {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            return if need > back { back } else { 0 };
        }
    }
    0
}
