//! `train-tokenizer` and `encode`: tokenizers as HuggingFace `tokenizer.json` files.
//!
//! - `bpe` is written and read as `tokenizers` writes a byte-level BPE (see
//!   [`stagewise_tokenizer::bpe`]): the same ids in both.
//! - `word` and `char` vocabularies are written as HF `WordLevel` models, which `tokenizers`
//!   loads: `word` with the `Lowercase` normalizer and the `WhitespaceSplit` pre-tokenizer,
//!   `char` with a `Split` pre-tokenizer isolating every character and the `Fuse` decoder. Their
//!   vocabulary is the `vocab` vectorizer's (`<unk>` at id 0, then by count, ties by bytes). This
//!   reader loads exactly these two layouts back.

use crate::data::read_corpus;
use rayon::prelude::*;
use serde_json::{Value, json};
use stagewise_core::{Error, Result, Tokens};
use stagewise_tokenizer::bpe::{BpeModel, BpeTrainer, Cache, END_OF_TEXT};
use stagewise_tokenizer::{CharTokenizer, Tokenizer, WordTokenizer};
use stagewise_vectorizer::{UNK, VocabTrainer};
use std::collections::HashMap;
use std::path::Path;

/// Which tokenizer `train-tokenizer` trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenizerKind {
    /// Byte-level BPE (GPT-2 / HF `tokenizers`).
    Bpe,
    /// One token per character (an HF `WordLevel` over characters).
    Char,
    /// Lower-cased whitespace-separated words (an HF `WordLevel`).
    Word,
}

/// The `Split` pre-tokenizer pattern that isolates every character (one `char` per match).
const CHAR_PATTERN: &str = "[\\s\\S]";

/// Trains a tokenizer of `kind` on the file `data` (on the current rayon pool) and returns its
/// `tokenizer.json` text. `min_frequency` defaults to 2 for `bpe` and 1 (keep every token that
/// fits) for `char` and `word`.
pub fn train_tokenizer(
    kind: TokenizerKind,
    data: &Path,
    vocab_size: usize,
    min_frequency: Option<u64>,
) -> Result<String> {
    let text = read_corpus(data)?;
    match kind {
        TokenizerKind::Bpe => {
            let trainer = BpeTrainer {
                vocab_size,
                min_frequency: min_frequency.unwrap_or(BpeTrainer::DEFAULT_MIN_FREQUENCY),
                special_tokens: vec![END_OF_TEXT.to_owned()],
            };
            let model = trainer.train(&text).map_err(|m| Error::config("--vocab-size", m))?;
            Ok(model.to_json())
        }
        TokenizerKind::Char | TokenizerKind::Word => {
            let tokens = if kind == TokenizerKind::Word {
                WordTokenizer.tokenize(&text)?
            } else {
                CharTokenizer.tokenize(&text)?
            };
            let trainer = VocabTrainer::new(vocab_size);
            trainer.validate().map_err(|e| Error::config("--vocab-size", e.to_string()))?;
            let vocab = trainer.fit(tokens.iter())?.into_vocab();
            let least = min_frequency.unwrap_or(1);
            let counts = vocab.counts().unwrap_or(&[]);
            let kept: Vec<&String> = vocab
                .tokens()
                .iter()
                .enumerate()
                .filter(|&(i, _)| i == 0 || counts.get(i).is_none_or(|&c| c >= least))
                .map(|(_, t)| t)
                .collect();
            Ok(word_level_json(kind, &kept))
        }
    }
}

/// An HF `WordLevel` `tokenizer.json` for a `word` or `char` vocabulary (`<unk>` first).
fn word_level_json(kind: TokenizerKind, tokens: &[&String]) -> String {
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        vocab.insert((*t).clone(), json!(id));
    }
    let (normalizer, pre_tokenizer, decoder) = match kind {
        TokenizerKind::Word => {
            (json!({"type": "Lowercase"}), json!({"type": "WhitespaceSplit"}), Value::Null)
        }
        _ => (
            Value::Null,
            json!({"type": "Split", "pattern": {"Regex": CHAR_PATTERN}, "behavior": "Isolated", "invert": false}),
            json!({"type": "Fuse"}),
        ),
    };
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": 0, "content": UNK, "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": decoder,
        "model": {"type": "WordLevel", "vocab": Value::Object(vocab), "unk_token": UNK},
    });
    let mut text = serde_json::to_string_pretty(&doc).expect("serialising JSON values cannot fail");
    text.push('\n');
    text
}

/// A `tokenizer.json` loaded for `encode`: a byte-level BPE, or a `word`/`char` `WordLevel` as
/// `train-tokenizer` writes them.
#[derive(Debug)]
pub enum TokenizerFile {
    /// A byte-level BPE (boxed: the model holds its byte table inline).
    Bpe(Box<BpeModel>),
    /// A word-level vocabulary over `word` or `char` tokens.
    WordLevel {
        /// `word` (lower-cased words, decoded joined by spaces) or `char`.
        kind: TokenizerKind,
        /// Tokens in id order.
        tokens: Vec<String>,
        /// Token to id.
        index: HashMap<String, u32>,
        /// The id of unknown tokens.
        unk: u32,
    },
}

impl TokenizerFile {
    /// Reads `path`; errors name the file and what it holds that cannot be read.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            stagewise_core::read_regular_file(path, stagewise_tokenizer::bpe::MAX_TOKENIZER_FILE_BYTES)
                .map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
            path: path.to_path_buf(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        let context = path.display().to_string();
        let root: Value =
            serde_json::from_str(&text).map_err(|e| Error::data(&context, format!("not valid JSON: {e}")))?;
        if root.pointer("/model/type").and_then(Value::as_str) != Some("WordLevel") {
            return BpeModel::from_json(&text, &context).map(|m| TokenizerFile::Bpe(Box::new(m)));
        }
        let kind = match (root.pointer("/pre_tokenizer/type").and_then(Value::as_str), root.get("normalizer"))
        {
            (Some("WhitespaceSplit"), Some(n))
                if n.get("type").and_then(Value::as_str) == Some("Lowercase") =>
            {
                TokenizerKind::Word
            }
            (Some("Split"), Some(Value::Null))
                if root.pointer("/pre_tokenizer/pattern/Regex").and_then(Value::as_str)
                    == Some(CHAR_PATTERN) =>
            {
                TokenizerKind::Char
            }
            _ => {
                return Err(Error::data(
                    context,
                    "a WordLevel model whose normalizer and pre-tokenizer are not the ones \
                     `train-tokenizer --kind word|char` writes; load it with kind = \"hf\"",
                ));
            }
        };
        let vocab = root
            .pointer("/model/vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::data(&context, "`model.vocab` is missing"))?;
        let mut tokens = vec![String::new(); vocab.len()];
        let mut index = HashMap::with_capacity(vocab.len());
        for (t, id) in vocab {
            let id = id.as_u64().filter(|&i| (i as usize) < vocab.len()).ok_or_else(|| {
                Error::data(&context, format!("`model.vocab`: the id of {t:?} is not in 0..{}", vocab.len()))
            })?;
            tokens[id as usize] = t.clone();
            index.insert(t.clone(), id as u32);
        }
        let unk_token = root.pointer("/model/unk_token").and_then(Value::as_str).unwrap_or(UNK);
        let unk = *index.get(unk_token).ok_or_else(|| {
            Error::data(&context, format!("`model.unk_token` {unk_token:?} is not in the vocabulary"))
        })?;
        Ok(TokenizerFile::WordLevel { kind, tokens, index, unk })
    }

    /// The ids of every line of `text` (without its newline), as decimal numbers separated by
    /// spaces, one output line per input line, on the current rayon pool.
    pub fn encode_lines(&self, text: &str) -> Vec<u8> {
        let blocks = line_blocks(text, 1 << 16);
        let parts: Vec<Vec<u8>> = blocks
            .par_chunks(blocks.len().div_ceil(rayon::current_num_threads() * 8).max(1))
            .map(|group| {
                let mut out = Vec::with_capacity(group.iter().map(|b| b.len()).sum::<usize>() * 2);
                let (mut cache, mut ids, mut tokens) = (Cache::default(), Vec::new(), Tokens::new());
                for block in group {
                    for line in block.split_terminator('\n') {
                        ids.clear();
                        self.encode_line(line, &mut cache, &mut tokens, &mut ids);
                        write_ids(&ids, &mut out);
                    }
                }
                out
            })
            .collect();
        parts.concat()
    }

    fn encode_line(&self, line: &str, cache: &mut Cache, tokens: &mut Tokens, ids: &mut Vec<u32>) {
        match self {
            TokenizerFile::Bpe(model) => model.encode_into(line, cache, ids),
            TokenizerFile::WordLevel { kind, index, unk, .. } => {
                let cx = stagewise_core::Ctx::seq();
                let ran = match kind {
                    TokenizerKind::Word => stagewise_core::Stage::run(&WordTokenizer, line, tokens, &cx),
                    _ => stagewise_core::Stage::run(&CharTokenizer, line, tokens, &cx),
                };
                if ran.is_ok() {
                    ids.extend(tokens.iter().map(|t| index.get(t).copied().unwrap_or(*unk)));
                }
            }
        }
    }

    /// Turns lines of ids (as [`TokenizerFile::encode_lines`] writes them) back into text, one
    /// line each; `origin` names the input in errors, which give the line number.
    pub fn decode_lines(&self, text: &str, origin: &str) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len());
        let mut ids = Vec::new();
        for (n, line) in text.split_terminator('\n').enumerate() {
            ids.clear();
            for word in line.split_ascii_whitespace() {
                let id = word.parse::<u32>().map_err(|_| {
                    Error::data(format!("{origin}:{}", n + 1), format!("`{word}` is not a token id"))
                })?;
                ids.push(id);
            }
            let bad = |id: u32, len: usize| {
                Error::data(
                    format!("{origin}:{}", n + 1),
                    format!("id {id} is out of range for a vocabulary of {len} ids"),
                )
            };
            match self {
                TokenizerFile::Bpe(model) => {
                    model.decode_into(&ids, &mut out).map_err(|id| bad(id, model.len()))?
                }
                TokenizerFile::WordLevel { kind, tokens, .. } => {
                    for (i, &id) in ids.iter().enumerate() {
                        let t = tokens.get(id as usize).ok_or_else(|| bad(id, tokens.len()))?;
                        if i > 0 && *kind == TokenizerKind::Word {
                            out.push(b' ');
                        }
                        out.extend_from_slice(t.as_bytes());
                    }
                }
            }
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// `text` cut into blocks of whole lines of about `size` bytes.
fn line_blocks(text: &str, size: usize) -> Vec<&str> {
    let mut blocks = Vec::with_capacity(text.len() / size.max(1) + 1);
    let mut rest = text;
    while !rest.is_empty() {
        let end = match rest.as_bytes().get(size..).and_then(|tail| tail.iter().position(|&b| b == b'\n')) {
            Some(i) => size + i + 1,
            None => rest.len(),
        };
        blocks.push(&rest[..end]);
        rest = &rest[end..];
    }
    blocks
}

/// Appends `ids` as decimal numbers separated by single spaces, then a newline.
fn write_ids(ids: &[u32], out: &mut Vec<u8>) {
    let mut digits = [0u8; 10];
    for (i, &id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let mut n = id;
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[at..]);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_decimal_lines() {
        let mut out = Vec::new();
        write_ids(&[0, 7, 10, 4_294_967_295], &mut out);
        write_ids(&[], &mut out);
        assert_eq!(out, b"0 7 10 4294967295\n\n");
    }

    #[test]
    fn line_blocks_keep_whole_lines() {
        let text = "ab\ncd\n\nef";
        for size in 0..12 {
            let blocks = line_blocks(text, size);
            assert_eq!(blocks.concat(), text);
            assert!(blocks[..blocks.len() - 1].iter().all(|b| b.ends_with('\n')), "{size}: {blocks:?}");
        }
    }
}
