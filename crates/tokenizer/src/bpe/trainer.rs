//! The BPE trainer: counts GPT-2 pieces, then merges the most frequent pair until the vocabulary
//! is full, exactly as HF's `BpeTrainer` (with the 256-byte alphabet) does.

use super::bytes::byte_char;
use super::hash::FxHashMap;
use super::model::{AddedToken, BpeModel, BpeOptions};
use super::pretokenize::pieces;
use rayon::prelude::*;
use std::collections::BinaryHeap;

/// Settings of a BPE training run; [`BpeTrainer::train`] makes the model.
///
/// The vocabulary is HF's layout: the special tokens (ids `0..k`), the 256 byte tokens in code
/// point order, then one token per merge. Merges are chosen like HF's `BpeTrainer`: the pair
/// with the highest count over all words, ties to the smaller `(left id, right id)`; training
/// stops when the vocabulary has `vocab_size` tokens or the best count is below `min_frequency`.
/// The text is read line by line (each line with its newline), as `tokenizers` reads training
/// files, so the same file gives the same merges there.
///
/// Deterministic: counts are integer sums and every tie has one winner, so the result does not
/// depend on the thread count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpeTrainer {
    /// Tokens in the finished vocabulary, specials and the 256 bytes included.
    pub vocab_size: usize,
    /// A pair seen fewer times than this is never merged.
    pub min_frequency: u64,
    /// Tokens put first in the vocabulary and matched whole when encoding (`<|endoftext|>`).
    pub special_tokens: Vec<String>,
}

impl BpeTrainer {
    /// Default `min_frequency` (what HF's `ByteLevelBPETokenizer.train` uses).
    pub const DEFAULT_MIN_FREQUENCY: u64 = 2;

    /// Checks the settings: the vocabulary must hold the specials and the 256 bytes.
    pub fn validate(&self) -> Result<(), String> {
        let least = self.special_tokens.len() + 256;
        if self.vocab_size < least {
            return Err(format!(
                "vocab_size {} is too small: the 256 byte tokens and {} special token(s) need {least}",
                self.vocab_size,
                self.special_tokens.len()
            ));
        }
        if let Some(t) = self.special_tokens.iter().find(|t| t.is_empty()) {
            return Err(format!("special token {t:?} is empty"));
        }
        if u32::try_from(self.vocab_size).is_err() {
            return Err(format!("vocab_size {} does not fit in u32 ids", self.vocab_size));
        }
        Ok(())
    }

    /// Trains on `text`, on the current rayon pool's threads.
    pub fn train(&self, text: &str) -> Result<BpeModel, String> {
        self.validate()?;
        self.train_counts(count_pieces(text))
    }

    /// Trains on counted pieces (raw bytes of each GPT-2 piece and its count).
    pub fn train_counts(&self, counts: FxHashMap<&str, u64>) -> Result<BpeModel, String> {
        self.validate()?;
        let mut words: Vec<(&str, u64)> = counts.into_iter().collect();
        words.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let mut tokens: Vec<String> = Vec::with_capacity(self.vocab_size);
        let mut index: FxHashMap<String, u32> = FxHashMap::default();
        for t in &self.special_tokens {
            if !index.contains_key(t) {
                index.insert(t.clone(), tokens.len() as u32);
                tokens.push(t.clone());
            }
        }
        let mut alphabet: Vec<char> = (0..=255u8).map(byte_char).collect();
        alphabet.sort_unstable();
        let mut byte_id = [0u32; 256];
        for c in alphabet {
            let s = c.to_string();
            let id = *index.entry(s.clone()).or_insert_with(|| {
                tokens.push(s);
                tokens.len() as u32 - 1
            });
            if let Some(b) = super::bytes::char_byte(c) {
                byte_id[b as usize] = id;
            }
        }

        let mut symbols: Vec<Vec<u32>> =
            words.par_iter().map(|(w, _)| w.bytes().map(|b| byte_id[b as usize]).collect()).collect();
        let counts: Vec<i64> = words.iter().map(|&(_, c)| c as i64).collect();

        let mut pair_counts: FxHashMap<u64, i64> = FxHashMap::default();
        let mut places: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
        for (w, word) in symbols.iter().enumerate() {
            for p in word.windows(2) {
                let key = key(p[0], p[1]);
                *pair_counts.entry(key).or_insert(0) += counts[w];
                let at = places.entry(key).or_default();
                if at.last() != Some(&(w as u32)) {
                    at.push(w as u32);
                }
            }
        }
        let mut queue: BinaryHeap<(i64, std::cmp::Reverse<u64>)> =
            pair_counts.iter().filter(|&(_, &c)| c > 0).map(|(&k, &c)| (c, std::cmp::Reverse(k))).collect();

        let mut merges: Vec<(String, String)> = Vec::new();
        let mut changes: Vec<(u64, i64)> = Vec::new();
        let mut touched: Vec<u64> = Vec::new();
        while tokens.len() < self.vocab_size {
            let Some((count, std::cmp::Reverse(pair))) = queue.pop() else { break };
            let current = pair_counts.get(&pair).copied().unwrap_or(0);
            if count != current {
                if current > 0 {
                    queue.push((current, std::cmp::Reverse(pair)));
                }
                continue;
            }
            if count < 1 || (count as u64) < self.min_frequency {
                break;
            }
            let (a, b) = ((pair >> 32) as u32, pair as u32);
            let (ta, tb) = (&tokens[a as usize], &tokens[b as usize]);
            merges.push((ta.clone(), tb.clone()));
            let merged = format!("{ta}{tb}");
            let new_id = match index.get(&merged) {
                Some(&id) => id,
                None => {
                    let id = tokens.len() as u32;
                    index.insert(merged.clone(), id);
                    tokens.push(merged);
                    id
                }
            };
            pair_counts.insert(pair, 0);
            let at = places.remove(&pair).unwrap_or_default();
            touched.clear();
            for &w in &at {
                changes.clear();
                merge_word(&mut symbols[w as usize], a, b, new_id, &mut changes);
                for &(p, change) in &changes {
                    *pair_counts.entry(p).or_insert(0) += change * counts[w as usize];
                    if change > 0 {
                        let list = places.entry(p).or_default();
                        if list.last() != Some(&w) {
                            list.push(w);
                        }
                        touched.push(p);
                    }
                }
            }
            touched.sort_unstable();
            touched.dedup();
            for &p in &touched {
                let c = pair_counts[&p];
                if c > 0 {
                    queue.push((c, std::cmp::Reverse(p)));
                }
            }
        }

        let mut added: Vec<AddedToken> = Vec::new();
        for t in &self.special_tokens {
            let id = index[t];
            if !added.iter().any(|a| a.id == id) {
                added.push(AddedToken { id, content: t.clone(), special: true });
            }
        }
        BpeModel::new(tokens, &merges, added, BpeOptions { use_regex: true, ..BpeOptions::default() })
    }
}

/// `(a, b)` as one key; its order is `(a, b)`'s, which is HF's tie-break.
#[inline]
fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Replaces every `a b` in `word` (left to right, not overlapping) by `new_id` and records how
/// the counts of neighbouring pairs change, as HF's `Word::merge` does (its -1 and +1 per side).
fn merge_word(word: &mut Vec<u32>, a: u32, b: u32, new_id: u32, changes: &mut Vec<(u64, i64)>) {
    let mut i = 0;
    while i + 1 < word.len() {
        if word[i] == a && word[i + 1] == b {
            if i > 0 {
                changes.push((key(word[i - 1], a), -1));
                changes.push((key(word[i - 1], new_id), 1));
            }
            word[i] = new_id;
            word.remove(i + 1);
            if i + 1 < word.len() {
                changes.push((key(b, word[i + 1]), -1));
                changes.push((key(new_id, word[i + 1]), 1));
            }
        }
        i += 1;
    }
}

/// The GPT-2 pieces of `text`, counted line by line (each line keeps its newline), in parallel
/// over blocks of lines.
pub fn count_pieces(text: &str) -> FxHashMap<&str, u64> {
    line_blocks(text, 1 << 16)
        .into_par_iter()
        .map(|block| {
            let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
            for line in block.split_inclusive('\n') {
                for piece in pieces(line) {
                    *counts.entry(piece).or_insert(0) += 1;
                }
            }
            counts
        })
        .reduce(FxHashMap::default, |mut a, b| {
            if a.len() < b.len() {
                return merge_counts(b, a);
            }
            for (k, v) in b {
                *a.entry(k).or_insert(0) += v;
            }
            a
        })
}

fn merge_counts<'a>(mut a: FxHashMap<&'a str, u64>, b: FxHashMap<&'a str, u64>) -> FxHashMap<&'a str, u64> {
    for (k, v) in b {
        *a.entry(k).or_insert(0) += v;
    }
    a
}

/// `text` cut into blocks of about `size` bytes, each ending after a newline (or at the end).
pub(crate) fn line_blocks(text: &str, size: usize) -> Vec<&str> {
    let mut blocks = Vec::with_capacity(text.len() / size + 1);
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(size);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let end = match rest[cut..].find('\n') {
            Some(i) if cut < rest.len() => cut + i + 1,
            _ => rest.len(),
        };
        blocks.push(&rest[..end]);
        rest = &rest[end..];
    }
    blocks
}
