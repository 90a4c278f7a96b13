//! The byte-level BPE model: vocabulary, ranked merges, added tokens, and the encoder.

use super::bytes::{byte_char, byte_level_to_bytes};
use super::hash::FxHashMap;
use super::pretokenize::pieces;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A token added on top of the model's vocabulary (HF `added_tokens`): matched in the raw text
/// before pre-tokenization, so `<|endoftext|>` is one id wherever it appears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedToken {
    /// Its id (in the model's vocabulary or past it).
    pub id: u32,
    /// Its text, matched exactly.
    pub content: String,
    /// Whether it is a special token (HF's `special`; kept for the file, encoding treats every
    /// added token alike).
    pub special: bool,
}

/// The options of HF's `ByteLevel` pre-tokenizer and BPE model that change ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BpeOptions {
    /// `pre_tokenizer.add_prefix_space`: a space is put before every text segment that does not
    /// start with one (so a first word is encoded like one after a space).
    pub add_prefix_space: bool,
    /// `pre_tokenizer.use_regex`: split with GPT-2's pattern (true for every GPT-2-style file);
    /// false encodes each segment as one piece.
    pub use_regex: bool,
    /// `model.ignore_merges`: a piece that is itself a vocabulary token is that token.
    pub ignore_merges: bool,
    /// `model.unk_token`'s id: stands for a byte with no token (none in a byte-level vocabulary
    /// that holds all 256 bytes).
    pub unk: Option<u32>,
    /// `model.fuse_unk`: consecutive unknowns become one `unk`.
    pub fuse_unk: bool,
}

/// A byte-level BPE tokenizer's data: immutable once built, shared between threads.
#[derive(Clone, Debug)]
pub struct BpeModel {
    /// Token text by id (byte-level form, `Ġthe`; added tokens as written).
    pub(crate) tokens: Vec<String>,
    /// The bytes each id decodes to.
    pub(crate) token_bytes: Vec<Box<[u8]>>,
    /// Token text to id, model vocabulary and added tokens.
    pub(crate) index: FxHashMap<String, u32>,
    /// The raw bytes of each vocabulary token to its id (for `ignore_merges`).
    raw_index: FxHashMap<Box<[u8]>, u32>,
    /// Merges in rank order (rank = position).
    pub(crate) merges: Vec<(u32, u32)>,
    /// `(left, right)` packed in a `u64` to `(rank, merged id)`.
    merge_map: FxHashMap<u64, (u32, u32)>,
    /// The id of each byte's one-character token, `u32::MAX` if the vocabulary lacks it.
    byte_ids: [u32; 256],
    /// Added tokens, as in the file.
    pub(crate) added: Vec<AddedToken>,
    /// For each first byte, the added tokens starting with it, longest first.
    added_by_byte: Vec<Vec<u32>>,
    /// How many ids the model's own vocabulary has (added tokens may go past it).
    pub(crate) model_len: usize,
    /// The options.
    pub(crate) options: BpeOptions,
}

impl PartialEq for BpeModel {
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens
            && self.merges == other.merges
            && self.added == other.added
            && self.options == other.options
    }
}

impl Eq for BpeModel {}

/// `(a, b)` as one map key.
#[inline]
fn pair_key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

impl BpeModel {
    /// Builds a model from the vocabulary in id order (`vocab[id]` = token text, byte-level),
    /// merges in rank order as token pairs, and added tokens. Errors (one line) name the first
    /// inconsistency: a duplicate token, a merge of unknown tokens or whose result is not in the
    /// vocabulary.
    pub fn new(
        vocab: Vec<String>,
        merges: &[(String, String)],
        added: Vec<AddedToken>,
        options: BpeOptions,
    ) -> Result<Self, String> {
        let model_len = vocab.len();
        let mut index = FxHashMap::default();
        index.reserve(vocab.len());
        for (id, token) in (0u32..).zip(&vocab) {
            if let Some(first) = index.insert(token.clone(), id) {
                return Err(format!("token {token:?} has two ids, {first} and {id}"));
            }
        }
        let mut merge_ids = Vec::with_capacity(merges.len());
        let mut merge_map = FxHashMap::default();
        merge_map.reserve(merges.len());
        for (rank, (a, b)) in (0u32..).zip(merges) {
            let id = |t: &str| {
                index
                    .get(t)
                    .copied()
                    .ok_or_else(|| format!("merge {rank} ({a:?} {b:?}): {t:?} is not in the vocabulary"))
            };
            let (ia, ib) = (id(a)?, id(b)?);
            let merged = id(&format!("{a}{b}"))?;
            merge_ids.push((ia, ib));
            // The first (lowest) rank of a pair wins, as in HF's map built in rank order.
            merge_map.entry(pair_key(ia, ib)).or_insert((rank, merged));
        }
        let mut tokens = vocab;
        for t in &added {
            let id = t.id as usize;
            if id < tokens.len() {
                if tokens[id] != t.content {
                    return Err(format!(
                        "added token {:?} has id {id}, which the vocabulary gives to {:?}",
                        t.content, tokens[id]
                    ));
                }
            } else if id == tokens.len() {
                tokens.push(t.content.clone());
                index.insert(t.content.clone(), t.id);
            } else {
                return Err(format!(
                    "added token {:?} has id {id}, leaving ids {}..{id} without a token",
                    t.content,
                    tokens.len()
                ));
            }
            if t.content.is_empty() {
                return Err("an added token is empty".to_owned());
            }
        }
        let token_bytes: Vec<Box<[u8]>> = tokens
            .iter()
            .map(|t| byte_level_to_bytes(t).unwrap_or_else(|| t.as_bytes().to_vec()).into_boxed_slice())
            .collect();
        let mut raw_index = FxHashMap::default();
        if options.ignore_merges {
            for (id, t) in (0u32..).zip(&tokens[..model_len]) {
                if let Some(bytes) = byte_level_to_bytes(t) {
                    raw_index.entry(bytes.into_boxed_slice()).or_insert(id);
                }
            }
        }
        let mut byte_ids = [u32::MAX; 256];
        let mut utf8 = [0u8; 4];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let c = byte_char(b as u8).encode_utf8(&mut utf8);
            if let Some(&id) = index.get(&*c).filter(|&&id| (id as usize) < model_len) {
                *slot = id;
            }
        }
        let mut added_by_byte = vec![Vec::new(); 256];
        let mut by_length: Vec<&AddedToken> = added.iter().collect();
        by_length.sort_by_key(|t| Reverse(t.content.len()));
        for t in by_length {
            added_by_byte[t.content.as_bytes()[0] as usize].push(t.id);
        }
        Ok(BpeModel {
            tokens,
            token_bytes,
            index,
            raw_index,
            merges: merge_ids,
            merge_map,
            byte_ids,
            added,
            added_by_byte,
            model_len,
            options,
        })
    }

    /// The number of ids, added tokens included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no ids at all.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The text of token `id` (byte-level form), if there is one.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token's text (byte-level form), if it has one.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// The bytes token `id` stands for.
    pub fn bytes_of(&self, id: u32) -> Option<&[u8]> {
        self.token_bytes.get(id as usize).map(|b| &**b)
    }

    /// Appends the ids of `text` to `out`, using and filling `cache`.
    pub fn encode_into(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) {
        if self.added.is_empty() {
            self.encode_segment(text, cache, out);
            return;
        }
        let bytes = text.as_bytes();
        let (mut segment_start, mut i) = (0, 0);
        while i < bytes.len() {
            let candidates = &self.added_by_byte[bytes[i] as usize];
            let found =
                candidates.iter().copied().find(|&id| bytes[i..].starts_with(self.token_bytes_raw(id)));
            match found {
                Some(id) => {
                    self.encode_segment(&text[segment_start..i], cache, out);
                    out.push(id);
                    i += self.tokens[id as usize].len();
                    segment_start = i;
                }
                None => i += 1,
            }
        }
        self.encode_segment(&text[segment_start..], cache, out);
    }

    /// An added token's text as bytes (its content, not its byte-level decoding).
    #[inline]
    fn token_bytes_raw(&self, id: u32) -> &[u8] {
        self.tokens[id as usize].as_bytes()
    }

    /// Encodes text with no added token in it: pre-tokenize, then each piece from the cache or
    /// by merging.
    fn encode_segment(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        if self.options.add_prefix_space && !text.starts_with(' ') {
            let spaced = format!(" {text}");
            return self.encode_pieces(&spaced, cache, out);
        }
        self.encode_pieces(text, cache, out);
    }

    fn encode_pieces(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) {
        if self.options.use_regex {
            for piece in pieces(text) {
                self.encode_piece(piece.as_bytes(), cache, out);
            }
        } else {
            self.encode_piece(text.as_bytes(), cache, out);
        }
    }

    /// The ids of one pre-tokenized piece.
    #[inline]
    pub(crate) fn encode_piece(&self, piece: &[u8], cache: &mut Cache, out: &mut Vec<u32>) {
        if piece.len() == 1 && self.byte_ids[piece[0] as usize] != u32::MAX {
            out.push(self.byte_ids[piece[0] as usize]);
            return;
        }
        if let Some(&(start, len)) = cache.map.get(piece) {
            out.extend_from_slice(&cache.ids[start as usize..(start + len) as usize]);
            return;
        }
        let before = out.len();
        self.merge_piece(piece, &mut cache.work, out);
        if cache.map.len() < cache.capacity && piece.len() <= MAX_CACHED_BYTES {
            let start = cache.ids.len() as u32;
            cache.ids.extend_from_slice(&out[before..]);
            cache.map.insert(piece.into(), (start, (out.len() - before) as u32));
        }
    }

    /// Byte ids of `piece`, then merges by rank, lowest first, leftmost among equals (what HF's
    /// heap of `(rank, position)` and GPT-2's `bpe` loop both do).
    fn merge_piece(&self, piece: &[u8], work: &mut Work, out: &mut Vec<u32>) {
        if self.options.ignore_merges
            && let Some(&id) = self.raw_index.get(piece)
        {
            out.push(id);
            return;
        }
        let symbols = &mut work.symbols;
        symbols.clear();
        let mut last_unk = false;
        for &b in piece {
            let id = self.byte_ids[b as usize];
            if id != u32::MAX {
                symbols.push(id);
                last_unk = false;
            } else if let Some(unk) = self.options.unk {
                if !(self.options.fuse_unk && last_unk) {
                    symbols.push(unk);
                }
                last_unk = true;
            }
        }
        if symbols.len() <= SCAN_MERGE_MAX {
            self.merge_by_scanning(symbols);
            out.extend_from_slice(symbols);
        } else {
            self.merge_with_heap(work, out);
        }
    }

    /// Quadratic but branch-light: fastest for the short pieces that make up nearly all text.
    fn merge_by_scanning(&self, symbols: &mut Vec<u32>) {
        while symbols.len() > 1 {
            let mut best = (u32::MAX, 0usize, 0u32);
            for i in 0..symbols.len() - 1 {
                if let Some(&(rank, id)) = self.merge_map.get(&pair_key(symbols[i], symbols[i + 1]))
                    && rank < best.0
                {
                    best = (rank, i, id);
                }
            }
            if best.0 == u32::MAX {
                break;
            }
            symbols[best.1] = best.2;
            symbols.remove(best.1 + 1);
        }
    }

    /// `n log n` for long pieces (a run of ten thousand spaces): symbols in a linked list, the
    /// candidate merges in a heap of `(rank, position)`, stale entries skipped when popped.
    fn merge_with_heap(&self, work: &mut Work, out: &mut Vec<u32>) {
        let Work { symbols, prev, next, heap } = work;
        let n = symbols.len();
        prev.clear();
        next.clear();
        prev.extend((0..n).map(|i| i.wrapping_sub(1)));
        next.extend(1..=n);
        heap.clear();
        let rank_at = |symbols: &[u32], i: usize, j: usize| {
            self.merge_map.get(&pair_key(symbols[i], symbols[j])).copied()
        };
        for i in 0..n - 1 {
            if let Some((rank, _)) = rank_at(symbols, i, i + 1) {
                heap.push(Reverse((rank, i, symbols[i], symbols[i + 1])));
            }
        }
        const GONE: u32 = u32::MAX;
        while let Some(Reverse((rank, i, left, right))) = heap.pop() {
            let j = next[i];
            // Stale: the left symbol merged away or changed, or its right neighbour did.
            if symbols[i] != left || j >= n || symbols[j] != right {
                continue;
            }
            let Some((r, merged)) = rank_at(symbols, i, j) else { continue };
            if r != rank {
                continue;
            }
            symbols[i] = merged;
            symbols[j] = GONE;
            let after = next[j];
            next[i] = after;
            if after < n {
                prev[after] = i;
            }
            let before = prev[i];
            if before < n
                && let Some((rank, _)) = rank_at(symbols, before, i)
            {
                heap.push(Reverse((rank, before, symbols[before], symbols[i])));
            }
            if after < n
                && let Some((rank, _)) = rank_at(symbols, i, after)
            {
                heap.push(Reverse((rank, i, symbols[i], symbols[after])));
            }
        }
        let mut i = 0;
        while i < n {
            out.push(symbols[i]);
            i = next[i];
        }
    }

    /// Appends the bytes of `ids` to `out`; errors with the first id out of range.
    pub fn decode_into(&self, ids: &[u32], out: &mut Vec<u8>) -> Result<(), u32> {
        for &id in ids {
            out.extend_from_slice(self.token_bytes.get(id as usize).ok_or(id)?);
        }
        Ok(())
    }
}

/// Pieces up to this many symbols are merged by scanning, longer ones with a heap.
const SCAN_MERGE_MAX: usize = 48;

/// Pieces longer than this are not cached (they are rare, and would fill the cache).
const MAX_CACHED_BYTES: usize = 64;

/// Scratch buffers of the merge loop, reused from piece to piece.
#[derive(Debug, Default)]
pub(crate) struct Work {
    symbols: Vec<u32>,
    prev: Vec<usize>,
    next: Vec<usize>,
    heap: BinaryHeap<Reverse<(u32, usize, u32, u32)>>,
}

/// The encoder's memory of pieces it has merged (HF's BPE cache): text is mostly the same few
/// thousand words, so after the first occurrences a piece costs one hash lookup. One per thread;
/// never shared, so no lock.
#[derive(Debug)]
pub struct Cache {
    map: FxHashMap<Box<[u8]>, (u32, u32)>,
    ids: Vec<u32>,
    capacity: usize,
    work: Work,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::with_capacity(Cache::DEFAULT_CAPACITY)
    }
}

impl Cache {
    /// Pieces remembered by default (HF's default cache holds 10,000 words; a few hundred
    /// thousand cost a few tens of megabytes at most and cover a book's vocabulary).
    pub const DEFAULT_CAPACITY: usize = 262_144;

    /// A cache that remembers at most `capacity` pieces (0: none).
    pub fn with_capacity(capacity: usize) -> Self {
        Cache { map: FxHashMap::default(), ids: Vec::new(), capacity, work: Work::default() }
    }
}
