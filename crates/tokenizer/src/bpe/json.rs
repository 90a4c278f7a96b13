//! HuggingFace's `tokenizer.json` for byte-level BPE: read (refusing what it cannot reproduce
//! exactly, by name) and written (so `tokenizers` loads it and gives the same ids).

use super::model::{AddedToken, BpeModel, BpeOptions};
use serde::Serialize;
use serde_json::Value;

/// Reads a `tokenizer.json` document. Errors are one line saying which field holds what this
/// reader does not support (another model, a normalizer, a post-processor that adds tokens, ...),
/// so the user knows to use `kind = "hf"` instead.
pub fn from_json(text: &str) -> Result<BpeModel, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let root = root.as_object().ok_or("expected a JSON object (a tokenizer.json)")?;
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).unwrap_or("?").to_owned();
    for key in ["truncation", "padding"] {
        if root.get(key).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "`{key}` is set; the bpe tokenizer supports tokenizer.json files without it"
            ));
        }
    }
    if let Some(n) = root.get("normalizer").filter(|v| !v.is_null()) {
        return Err(format!(
            "`normalizer` is {}; the bpe tokenizer supports none (byte-level BPE as GPT-2), use kind = \"hf\"",
            kind(n)
        ));
    }
    let mut options = BpeOptions { use_regex: true, ..BpeOptions::default() };
    match root.get("pre_tokenizer").filter(|v| !v.is_null()) {
        Some(p) if kind(p) == "ByteLevel" => {
            options.add_prefix_space = flag(p, "add_prefix_space", false)?;
            options.use_regex = flag(p, "use_regex", true)?;
        }
        Some(p) => {
            return Err(format!(
                "`pre_tokenizer` is {}; the bpe tokenizer supports ByteLevel, use kind = \"hf\"",
                kind(p)
            ));
        }
        None => return Err("`pre_tokenizer` is missing; the bpe tokenizer needs ByteLevel".to_owned()),
    }
    for key in ["post_processor", "decoder"] {
        if let Some(p) = root.get(key).filter(|v| !v.is_null())
            && kind(p) != "ByteLevel"
        {
            return Err(format!(
                "`{key}` is {}; the bpe tokenizer supports ByteLevel or none, use kind = \"hf\"",
                kind(p)
            ));
        }
    }
    let model = root.get("model").and_then(Value::as_object).ok_or("`model` is missing")?;
    let model_kind = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if model_kind != "BPE" {
        return Err(format!(
            "`model` is {model_kind}; the bpe tokenizer reads BPE models, use kind = \"hf\""
        ));
    }
    if model.get("dropout").is_some_and(|v| !v.is_null() && v.as_f64() != Some(0.0)) {
        return Err("`model.dropout` is set; the bpe tokenizer encodes deterministically".to_owned());
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if model.get(key).is_some_and(|v| !v.is_null() && v.as_str() != Some("")) {
            return Err(format!(
                "`model.{key}` is set; the bpe tokenizer supports byte-level BPE without it"
            ));
        }
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(
            "`model.byte_fallback` is true; the bpe tokenizer supports byte-level BPE, use kind = \"hf\""
                .to_owned(),
        );
    }
    let vocab_map = model.get("vocab").and_then(Value::as_object).ok_or("`model.vocab` is missing")?;
    let mut vocab: Vec<Option<String>> = vec![None; vocab_map.len()];
    for (token, id) in vocab_map {
        let id =
            id.as_u64().ok_or_else(|| format!("`model.vocab`: the id of {token:?} is not an integer"))?;
        let slot = vocab.get_mut(id as usize).ok_or_else(|| {
            format!("`model.vocab`: {token:?} has id {id}, but ids must be 0..{}", vocab_map.len())
        })?;
        if let Some(other) = slot.replace(token.clone()) {
            return Err(format!("`model.vocab`: id {id} is given to both {other:?} and {token:?}"));
        }
    }
    let vocab: Vec<String> = vocab.into_iter().map(|t| t.unwrap_or_default()).collect();
    let merges_value = model.get("merges").and_then(Value::as_array).ok_or("`model.merges` is missing")?;
    let mut merges = Vec::with_capacity(merges_value.len());
    for (i, m) in merges_value.iter().enumerate() {
        let pair = match m {
            Value::String(s) => s.split_once(' ').filter(|(_, b)| !b.contains(' ')),
            Value::Array(a) if a.len() == 2 => a[0].as_str().zip(a[1].as_str()),
            _ => None,
        };
        let (a, b) = pair.ok_or_else(|| format!("`model.merges[{i}]` is not a pair of tokens: {m}"))?;
        merges.push((a.to_owned(), b.to_owned()));
    }
    options.ignore_merges = model.get("ignore_merges").and_then(Value::as_bool).unwrap_or(false);
    options.fuse_unk = model.get("fuse_unk").and_then(Value::as_bool).unwrap_or(false);
    if let Some(unk) = model.get("unk_token").and_then(Value::as_str) {
        let id = vocab_map.get(unk).and_then(Value::as_u64);
        options.unk =
            Some(id.ok_or_else(|| format!("`model.unk_token` {unk:?} is not in the vocabulary"))? as u32);
    }
    let mut added = Vec::new();
    for (i, t) in root.get("added_tokens").and_then(Value::as_array).map_or(&[][..], |v| v).iter().enumerate()
    {
        let field = |name: &str| t.get(name);
        for name in ["single_word", "lstrip", "rstrip"] {
            if field(name).and_then(Value::as_bool) == Some(true) {
                return Err(format!(
                    "`added_tokens[{i}].{name}` is true; the bpe tokenizer supports exact matches only"
                ));
            }
        }
        let id = field("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`added_tokens[{i}].id` is missing"))?;
        let content = field("content")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("`added_tokens[{i}].content` is missing"))?;
        let special = field("special").and_then(Value::as_bool).unwrap_or(false);
        added.push(AddedToken { id: id as u32, content: content.to_owned(), special });
    }
    added.sort_by_key(|t| t.id);
    BpeModel::new(vocab, &merges, added, options)
}

/// Reads a boolean option that may be absent.
fn flag(v: &Value, name: &str, default: bool) -> Result<bool, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("`pre_tokenizer.{name}` is {other}, expected true or false")),
    }
}

/// The layout `tokenizers` writes, field for field (version 1.0).
#[derive(Serialize)]
struct File<'a> {
    version: &'a str,
    truncation: Option<()>,
    padding: Option<()>,
    added_tokens: Vec<AddedTokenFile<'a>>,
    normalizer: Option<()>,
    pre_tokenizer: ByteLevelFile,
    post_processor: ByteLevelFile,
    decoder: ByteLevelFile,
    model: ModelFile<'a>,
}

#[derive(Serialize)]
struct AddedTokenFile<'a> {
    id: u32,
    content: &'a str,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
    normalized: bool,
    special: bool,
}

#[derive(Serialize)]
struct ByteLevelFile {
    #[serde(rename = "type")]
    kind: &'static str,
    add_prefix_space: bool,
    trim_offsets: bool,
    use_regex: bool,
}

#[derive(Serialize)]
struct ModelFile<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dropout: Option<()>,
    unk_token: Option<&'a str>,
    continuing_subword_prefix: Option<()>,
    end_of_word_suffix: Option<()>,
    fuse_unk: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    vocab: OrderedVocab<'a>,
    merges: Vec<[&'a str; 2]>,
}

/// The vocabulary as a JSON object in id order (a `HashMap` would write it in random order).
struct OrderedVocab<'a>(&'a [String]);

impl Serialize for OrderedVocab<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (id, token) in self.0.iter().enumerate() {
            map.serialize_entry(token, &id)?;
        }
        map.end()
    }
}

/// Writes `model` as `tokenizers` would (pretty-printed, vocabulary in id order, merges as
/// pairs), so `Tokenizer.from_file` reads it and encodes to the same ids.
pub fn to_json(model: &BpeModel) -> String {
    let o = &model.options;
    let byte_level = |trim_offsets| ByteLevelFile {
        kind: "ByteLevel",
        add_prefix_space: o.add_prefix_space,
        trim_offsets,
        use_regex: o.use_regex,
    };
    let file = File {
        version: "1.0",
        truncation: None,
        padding: None,
        added_tokens: model
            .added
            .iter()
            .map(|t| AddedTokenFile {
                id: t.id,
                content: &t.content,
                single_word: false,
                lstrip: false,
                rstrip: false,
                normalized: false,
                special: t.special,
            })
            .collect(),
        normalizer: None,
        pre_tokenizer: byte_level(true),
        post_processor: byte_level(false),
        decoder: byte_level(true),
        model: ModelFile {
            kind: "BPE",
            dropout: None,
            unk_token: o.unk.map(|id| model.tokens[id as usize].as_str()),
            continuing_subword_prefix: None,
            end_of_word_suffix: None,
            fuse_unk: o.fuse_unk,
            byte_fallback: false,
            ignore_merges: o.ignore_merges,
            vocab: OrderedVocab(&model.tokens[..model.model_len]),
            merges: model
                .merges
                .iter()
                .map(|&(a, b)| [model.tokens[a as usize].as_str(), model.tokens[b as usize].as_str()])
                .collect(),
        },
    };
    let mut text =
        serde_json::to_string_pretty(&file).expect("serialising strings, integers and booleans cannot fail");
    text.push('\n');
    text
}
