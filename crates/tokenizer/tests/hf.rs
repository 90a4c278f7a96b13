//! `kind = "hf"` (feature `hf`): any tokenizer.json through the `tokenizers` crate, with its ids.
#![cfg(feature = "hf")]

use stagewise_tokenizer::bpe::BpeModel;
use stagewise_tokenizer::{HfTokenizer, Tokenizer, TokenizerConfig};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bpe").join(name)
}

#[test]
fn the_bpe_fixture_gives_the_same_ids_through_tokenizers_and_bpe() {
    let hf = HfTokenizer::load(fixture("tokenizer.json")).expect("loads");
    let bpe = BpeModel::load(fixture("tokenizer.json")).expect("loads");
    let text = std::fs::read_to_string(fixture("ids.jsonl")).expect("fixture");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let text = v["text"].as_str().expect("text");
        let want: Vec<u32> =
            v["ids"].as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect();
        assert_eq!(hf.encode_ids(text).expect("encodes"), want, "{text:?}");
        assert_eq!(bpe.encode(text), want, "{text:?}");
    }
    let tokens = hf.tokenize("Grüße, world!").expect("tokenizes");
    assert_eq!(hf.decode(&tokens), "Grüße, world!");
    assert_eq!(hf.vocabulary().len(), bpe.len());
}

/// A small WordPiece tokenizer with BERT's normalizer and pre-tokenizer: what `bpe` refuses and
/// `hf` loads.
fn wordpiece_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = [
        "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "##s", "un", "##believ", "##able", ".",
        ",",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| (t.to_string(), serde_json::json!(i)))
    .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

#[test]
fn a_wordpiece_tokenizer_loads_with_hf_and_is_refused_by_bpe() {
    let dir = std::env::temp_dir().join(format!("stagewise-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("wordpiece.json");
    std::fs::write(&path, wordpiece_json()).expect("write");
    let err = BpeModel::load(&path).expect_err("not byte-level BPE").to_string();
    assert!(err.contains("BertNormalizer") && err.contains("kind = \"hf\""), "{err}");

    let config: TokenizerConfig =
        toml::from_str(&format!("kind = \"hf\"\npath = {:?}\n", path.display().to_string())).expect("config");
    let t = config.build().expect("builds");
    let tokens = t.tokenize("The cats sat on the MAT, unbelievable.").expect("tokenizes");
    // Lower-cased by the normalizer, split by WordPiece, no [CLS]/[SEP] added.
    assert_eq!(
        tokens.to_vec(),
        ["the", "cat", "##s", "sat", "on", "the", "mat", ",", "un", "##believ", "##able", "."]
    );
    assert_eq!(t.decode(&tokens), "the cats sat on the mat, unbelievable.");
    assert_eq!(t.vocabulary().map(<[String]>::len), Some(14));
    let missing = std::fs::write(dir.join("broken.json"), "{\"model\": 3}");
    assert!(missing.is_ok());
    let err = HfTokenizer::load(dir.join("broken.json")).expect_err("not a tokenizer").to_string();
    assert!(err.contains("broken.json") && !err.contains('\n'), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
