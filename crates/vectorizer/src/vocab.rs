//! The vocabulary: an ordered token list, its hash index, and its versioned JSON file.

use serde::{Deserialize, Serialize};
use stagewise_core::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// The token that stands for every token the vocabulary does not contain. Always at id 0.
///
/// A literal `<unk>` in the text is therefore indistinguishable from an unknown word: it maps to
/// id 0 and the trainer never ranks it as a word of its own.
pub const UNK: &str = "<unk>";

/// The id of [`UNK`].
pub const UNK_ID: u32 = 0;

/// The padding token, a special a config may ask for (`specials = ["<pad>"]`).
pub const PAD: &str = "<pad>";

/// The beginning-of-sequence token, a special a config may ask for.
pub const BOS: &str = "<bos>";

/// The end-of-sequence token, a special a config may ask for.
pub const EOS: &str = "<eos>";

/// The special tokens a vocabulary may hold besides [`UNK`], which is always there at id 0.
/// Configured ones take ids 1, 2, … in the order the config lists them, before every corpus
/// token; a vocabulary without them has none (the seed's).
pub const SPECIALS: [&str; 3] = [PAD, BOS, EOS];

/// The version of the vocabulary file format this build writes. Version 2 added `specials`;
/// version 1 files (no specials) are still read.
pub const VOCAB_FILE_VERSION: u64 = 2;

/// The `kind` a vocabulary file declares, so a file meant for another vectorizer is refused.
const VOCAB_FILE_KIND: &str = "vocab";

/// A fixed mapping between tokens and dense ids `0..len()`, with [`UNK`] at id 0 and the
/// special tokens asked for ([`SPECIALS`]) at ids `1..=specials().len()`.
///
/// Immutable once built, and always valid: every constructor checks that `<unk>` is at id 0,
/// that no token appears twice and that ids fit in `u32`, so a stage holding a `Vocab` never
/// meets a half-built or inconsistent one. The token-to-id index is a `HashMap` built once here,
/// so encoding is one hash lookup per token.
///
/// Built by [`VocabTrainer`](crate::VocabTrainer) from a corpus, by [`Vocab::new`] from a list, or
/// read back with [`Vocab::load`].
#[derive(Clone, Debug)]
pub struct Vocab {
    tokens: Vec<String>,
    /// How many tokens after `<unk>` are specials (`tokens[1..=specials]`).
    specials: usize,
    counts: Option<Vec<u64>>,
    index: HashMap<String, u32>,
    /// A tokenizer's own vocabulary (BPE): no `<unk>`, every id a real token, and a token
    /// outside it an error rather than id 0.
    closed: bool,
}

impl PartialEq for Vocab {
    /// Equal when the token lists, specials and counts are; the index is derived from the tokens.
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens
            && self.specials == other.specials
            && self.counts == other.counts
            && self.closed == other.closed
    }
}

impl Eq for Vocab {}

/// The on-disk layout, read side: every field named, unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    #[allow(dead_code)] // checked before this struct is parsed, kept so the field is not "unknown"
    version: u64,
    kind: String,
    /// Absent in version 1 files, which had no specials.
    #[serde(default)]
    specials: Vec<String>,
    tokens: Vec<String>,
    #[serde(default)]
    counts: Option<Vec<u64>>,
    #[serde(default)]
    closed: bool,
}

/// The on-disk layout, write side: borrows instead of cloning the token list.
#[derive(Serialize)]
struct VocabFileRef<'a> {
    version: u64,
    kind: &'a str,
    specials: &'a [String],
    tokens: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    counts: Option<&'a [u64]>,
    #[serde(skip_serializing_if = "is_false")]
    closed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Vocab {
    /// Builds a vocabulary from its ordered token list (`tokens[0]` must be [`UNK`]) and, if
    /// known, the training count of each token (same length; `counts[0]` is the number of
    /// training tokens that mapped to `<unk>`).
    ///
    /// Errors ([`Error::Data`]) if `<unk>` is not at id 0, a token appears twice, the counts do
    /// not match the tokens one to one, or there are more tokens than `u32` ids.
    ///
    /// The vocabulary has no specials: a `"<pad>"` in `tokens` is an ordinary token.
    pub fn new(tokens: Vec<String>, counts: Option<Vec<u64>>) -> Result<Self> {
        Self::validated(tokens, 0, counts, "vocabulary")
    }

    /// Like [`Vocab::new`], with `tokens[1..=specials]` the special tokens (each one of
    /// [`SPECIALS`]); errors if one is not.
    pub fn with_specials(tokens: Vec<String>, specials: usize, counts: Option<Vec<u64>>) -> Result<Self> {
        Self::validated(tokens, specials, counts, "vocabulary")
    }

    /// A closed vocabulary: a tokenizer's own token list in id order (a BPE vocabulary), with no
    /// `<unk>` (id 0 is whatever token the tokenizer gives id 0) and no specials of its own.
    /// Vectorizing a token outside it is an error, since the tokenizer never produces one.
    ///
    /// Errors ([`Error::Data`]) if the list is empty, a token appears twice, or there are more
    /// tokens than `u32` ids.
    pub fn closed(tokens: Vec<String>) -> Result<Self> {
        Self::checked(tokens, 0, None, true, "tokenizer vocabulary")
    }

    /// [`Vocab::with_specials`] with `context` (a file name, usually) at the front of every error.
    pub(crate) fn validated(
        tokens: Vec<String>,
        specials: usize,
        counts: Option<Vec<u64>>,
        context: &str,
    ) -> Result<Self> {
        Self::checked(tokens, specials, counts, false, context)
    }

    /// Every check of the constructors: `<unk>` at id 0 (unless `closed`), specials known,
    /// counts one per token, no duplicate, ids within `u32`.
    fn checked(
        tokens: Vec<String>,
        specials: usize,
        counts: Option<Vec<u64>>,
        closed: bool,
        context: &str,
    ) -> Result<Self> {
        match tokens.first() {
            Some(_) if closed => {}
            Some(first) if first == UNK => {}
            Some(first) => {
                return Err(Error::data(context, format!("{UNK:?} must be at id 0, found {first:?} there")));
            }
            None => {
                return Err(Error::data(
                    context,
                    format!("the token list is empty; {UNK:?} must be at id 0"),
                ));
            }
        }
        if u32::try_from(tokens.len() - 1).is_err() {
            return Err(Error::data(
                context,
                format!("{} tokens do not fit in u32 ids (at most 2^32)", tokens.len()),
            ));
        }
        if specials >= tokens.len() {
            return Err(Error::data(
                context,
                format!("{specials} specials do not fit in {} tokens after {UNK:?}", tokens.len() - 1),
            ));
        }
        if let Some((id, token)) =
            (1u32..).zip(&tokens[1..=specials]).find(|(_, t)| !SPECIALS.contains(&t.as_str()))
        {
            return Err(Error::data(
                context,
                format!("special id {id} is {token:?}, not one of {SPECIALS:?}"),
            ));
        }
        let counts_len = counts.as_ref().map_or(tokens.len(), Vec::len);
        if counts_len != tokens.len() {
            return Err(Error::data(
                context,
                format!("`counts` has {counts_len} entries but `tokens` has {}", tokens.len()),
            ));
        }
        let mut index = HashMap::with_capacity(tokens.len());
        for (id, token) in (0u32..).zip(&tokens) {
            if let Some(first) = index.insert(token.clone(), id) {
                return Err(Error::data(
                    context,
                    format!("duplicate token {token:?} at ids {first} and {id}"),
                ));
            }
        }
        Ok(Vocab { tokens, specials, counts, index, closed })
    }

    /// The number of ids V, `<unk>` included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always `false`: a vocabulary holds at least `<unk>`. Here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `token`, [`UNK_ID`] if the vocabulary does not contain it (a literal `"<unk>"`
    /// is id 0 too).
    pub fn id_of(&self, token: &str) -> u32 {
        self.index.get(token).copied().unwrap_or(UNK_ID)
    }

    /// The token with id `id`, or `None` if `id >= len()`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of `token`, `None` if the vocabulary does not contain it.
    pub fn get(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    /// Whether this is a tokenizer's own vocabulary, without `<unk>` ([`Vocab::closed`]).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// All tokens in id order (`tokens()[0] == UNK` unless the vocabulary is closed).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The special tokens after `<unk>` (ids `1..=specials().len()`), empty unless configured.
    pub fn specials(&self) -> &[String] {
        &self.tokens[1..=self.specials]
    }

    /// Training counts in id order, if the vocabulary was trained (or loaded with counts):
    /// useful for reports and for frequency-based sampling later.
    pub fn counts(&self) -> Option<&[u64]> {
        self.counts.as_deref()
    }

    /// The vocabulary as a JSON document: `version` (2), `kind` (`"vocab"`), `specials` (the
    /// special tokens after `<unk>`, possibly none), `tokens` in id order (`<unk>` and the
    /// specials included) and, if known, `counts`. This is the file format of [`Vocab::save`], exposed so a
    /// checkpoint can embed it.
    pub fn to_json(&self) -> String {
        let file = VocabFileRef {
            version: VOCAB_FILE_VERSION,
            kind: VOCAB_FILE_KIND,
            specials: self.specials(),
            tokens: &self.tokens,
            counts: self.counts.as_deref(),
            closed: self.closed,
        };
        serde_json::to_string_pretty(&file).expect("serialising strings and integers to a String cannot fail")
    }

    /// Parses the document [`Vocab::to_json`] writes. `context` (usually the file name) starts
    /// every error message.
    ///
    /// Errors ([`Error::Data`]) name what is wrong: invalid JSON (with line and column), a
    /// missing or unsupported `version`, a missing or unknown field, a wrong `kind`, `specials`
    /// that are not the tokens after `<unk>`, and every check of [`Vocab::with_specials`] (`<unk>`
    /// not at id 0, an unknown special, duplicate token, counts mismatch). Version 1 files (no
    /// `specials`) are read as vocabularies without specials.
    pub fn from_json(text: &str, context: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::data(context, format!("not valid JSON: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(Error::data(context, "expected a JSON object with `version`, `kind` and `tokens`"));
        };
        // The version is checked first: a future version may lay out the other fields differently.
        let version = match object.get("version") {
            None => return Err(Error::data(context, "missing field `version`")),
            Some(v) => match v.as_u64() {
                Some(n @ 1..=VOCAB_FILE_VERSION) => n,
                _ => {
                    return Err(Error::data(
                        context,
                        format!(
                            "unsupported `version` {v}; this build reads versions 1 to {VOCAB_FILE_VERSION}"
                        ),
                    ));
                }
            },
        };
        if version == 1 && object.contains_key("specials") {
            return Err(Error::data(context, "`specials` needs `version` 2 or later"));
        }
        let file: VocabFile =
            serde_json::from_value(value).map_err(|e| Error::data(context, e.to_string()))?;
        if file.kind != VOCAB_FILE_KIND {
            return Err(Error::data(
                context,
                format!("`kind` is {:?}, expected {VOCAB_FILE_KIND:?}", file.kind),
            ));
        }
        let specials = file.specials.len();
        if file.tokens.get(1..=specials).is_some_and(|s| s != file.specials.as_slice()) {
            return Err(Error::data(
                context,
                format!("`specials` {:?} are not the tokens after {UNK:?}, in order", file.specials),
            ));
        }
        Self::checked(file.tokens, specials, file.counts, file.closed, context)
    }

    /// Writes the vocabulary to `path` as JSON ([`Vocab::to_json`]), atomically
    /// ([`stagewise_core::write_atomically`]): a crash never leaves a truncated vocabulary behind.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        stagewise_core::write_atomically(path, self.to_json().as_bytes()).map_err(|e| Error::io(path, e))
    }

    /// Reads a vocabulary written by [`Vocab::save`]. Every error names the file and what is
    /// wrong with it (see [`Vocab::from_json`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Only a regular file (a device would read forever); a vocabulary of a million words is
        // a few megabytes, so a gigabyte is another file given by mistake.
        let bytes = stagewise_core::read_regular_file(path, 1 << 30).map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
            path: path.to_owned(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        Self::from_json(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|t| t.to_string()).collect()
    }

    fn data_message(err: Error) -> String {
        match err {
            Error::Data { context, message } => format!("{context}: {message}"),
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    #[test]
    fn new_checks_unk_duplicates_and_counts() {
        let v = Vocab::new(strings(&["<unk>", "a", "b"]), Some(vec![0, 2, 1])).expect("valid");
        assert_eq!((v.len(), v.id_of("b"), v.id_of("zzz"), v.id_of("<unk>")), (3, 2, 0, 0));
        assert_eq!(v.token(1), Some("a"));
        assert_eq!(v.token(3), None);
        assert!(!v.is_empty());

        let msg = data_message(Vocab::new(strings(&["a", "<unk>"]), None).expect_err("unk not first"));
        assert!(msg.contains("must be at id 0") && msg.contains("\"a\""), "{msg}");
        let msg = data_message(Vocab::new(vec![], None).expect_err("empty"));
        assert!(msg.contains("empty"), "{msg}");
        let msg = data_message(Vocab::new(strings(&["<unk>", "a", "b", "a"]), None).expect_err("dup"));
        assert!(msg.contains("duplicate token \"a\" at ids 1 and 3"), "{msg}");
        let msg = data_message(Vocab::new(strings(&["<unk>", "a", "<unk>"]), None).expect_err("dup unk"));
        assert!(msg.contains("duplicate token \"<unk>\" at ids 0 and 2"), "{msg}");
        let msg = data_message(Vocab::new(strings(&["<unk>", "a"]), Some(vec![1])).expect_err("counts"));
        assert!(msg.contains("`counts` has 1 entries but `tokens` has 2"), "{msg}");
    }

    #[test]
    fn json_round_trips_with_and_without_counts_and_specials() {
        for counts in [None, Some(vec![7, 3, 3, 0])] {
            let v = Vocab::new(strings(&["<unk>", "é\"quoted\"", "tab\there", "<pad>"]), counts.clone())
                .expect("valid");
            assert_eq!(v.specials(), &[] as &[String]);
            assert_eq!(Vocab::from_json(&v.to_json(), "mem").expect("round trip"), v);
            let v =
                Vocab::with_specials(strings(&["<unk>", "<eos>", "<pad>", "a"]), 2, counts).expect("valid");
            assert_eq!(v.specials(), strings(&["<eos>", "<pad>"]));
            let back = Vocab::from_json(&v.to_json(), "mem").expect("round trip");
            assert_eq!((&back, back.specials()), (&v, v.specials()));
        }
        // The same tokens with and without specials are different vocabularies.
        let plain = Vocab::new(strings(&["<unk>", "<eos>"]), None).expect("valid");
        assert_ne!(plain, Vocab::with_specials(strings(&["<unk>", "<eos>"]), 1, None).expect("valid"));
    }

    #[test]
    fn version_1_files_are_read_without_specials() {
        let v =
            Vocab::from_json(r#"{"version": 1, "kind": "vocab", "tokens": ["<unk>", "<eos>", "a"]}"#, "old")
                .expect("version 1 is still read");
        assert_eq!((v.len(), v.specials().len(), v.id_of("<eos>")), (3, 0, 1));
        assert!(v.to_json().contains("\"version\": 2"), "{}", v.to_json());
    }

    #[test]
    fn from_json_names_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("{", "not valid JSON"),
            ("[1, 2]", "expected a JSON object"),
            (r#"{"kind": "vocab", "tokens": ["<unk>"]}"#, "missing field `version`"),
            (r#"{"version": 3, "kind": "vocab", "tokens": ["<unk>"]}"#, "unsupported `version` 3"),
            (r#"{"version": 0, "kind": "vocab", "tokens": ["<unk>"]}"#, "unsupported `version` 0"),
            (
                r#"{"version": 1, "kind": "vocab", "specials": [], "tokens": ["<unk>"]}"#,
                "`specials` needs `version` 2",
            ),
            (
                r#"{"version": 2, "kind": "vocab", "specials": ["<eos>"], "tokens": ["<unk>", "a", "<eos>"]}"#,
                "are not the tokens after",
            ),
            (
                r#"{"version": 2, "kind": "vocab", "specials": ["<eos>"], "tokens": ["<unk>"]}"#,
                "1 specials do not fit",
            ),
            (
                r#"{"version": 2, "kind": "vocab", "specials": ["a"], "tokens": ["<unk>", "a"]}"#,
                "special id 1 is \"a\", not one of",
            ),
            (
                r#"{"version": 2, "kind": "vocab", "specials": ["<eos>"], "tokens": ["<unk>", "<eos>", "<eos>"]}"#,
                "duplicate token \"<eos>\" at ids 1 and 2",
            ),
            (r#"{"version": "1", "kind": "vocab", "tokens": ["<unk>"]}"#, "unsupported `version` \"1\""),
            (r#"{"version": 1, "kind": "vocab"}"#, "missing field `tokens`"),
            (r#"{"version": 1, "tokens": ["<unk>"]}"#, "missing field `kind`"),
            (
                r#"{"version": 1, "kind": "bpe", "tokens": ["<unk>"]}"#,
                "`kind` is \"bpe\", expected \"vocab\"",
            ),
            (r#"{"version": 1, "kind": "vocab", "tokens": ["<unk>"], "extra": 1}"#, "unknown field `extra`"),
            (r#"{"version": 1, "kind": "vocab", "tokens": ["<unk>", 3]}"#, "invalid type"),
            (r#"{"version": 1, "kind": "vocab", "tokens": ["the", "<unk>"]}"#, "must be at id 0"),
            (r#"{"version": 1, "kind": "vocab", "tokens": ["<unk>", "a", "a"]}"#, "duplicate token \"a\""),
        ];
        for (text, expected) in cases {
            let msg = data_message(Vocab::from_json(text, "v.json").expect_err(text));
            assert!(msg.starts_with("v.json: ") && msg.contains(expected), "{text} gave {msg}");
        }
    }
}
