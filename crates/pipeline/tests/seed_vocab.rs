//! The seed configuration's vocabulary, pinned: `<unk>` at id 0, then the 9,999 most frequent
//! training words of `data/shakespeare.txt`, ties by bytes. Options added to `[vectorizer]` must
//! leave it exactly as it is.

use stagewise_pipeline::Config;
use stagewise_pipeline::train::prepare_data;
use stagewise_vectorizer::Vectorizer;

/// FNV-1a over the tokens in id order, each followed by a newline: one number for 10,000 ids.
fn fingerprint(tokens: &[String]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tokens.iter().flat_map(|t| t.bytes().chain(std::iter::once(b'\n'))) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[test]
fn the_seed_vocabulary_is_unchanged() {
    let mut config = Config::default();
    config.data.path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/shakespeare.txt");
    let data = prepare_data(&config).unwrap();
    let v = &data.vectorizer;
    let json: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
    let tokens: Vec<String> = serde_json::from_value(json["tokens"].clone()).unwrap();
    // Values recorded from the vocabulary before `min_count` and `specials` existed.
    assert_eq!(tokens.len(), 10_000);
    assert_eq!(tokens[..12], ["<unk>", "the", "and", "to", "i", "of", "a", "my", "in", "that", "you", "is"]);
    assert_eq!(fingerprint(&tokens), 0xa097_297a_dbfd_9326);
    assert_eq!(["the", "king", "love", "thou", "zounds"].map(|w| v.id_of(w)), [1, 61, 89, 24, 0]);
    assert_eq!(data.train_ids[..10], [2158, 107, 9, 2501, 107, 29, 1014, 1942, 2810, 6142]);
    assert_eq!(data.test_ids[..10], [762, 4388, 41, 15, 0, 2416, 801, 6, 0, 0]);
    assert!(v.to_json().contains("\"specials\": []"), "no specials unless configured");
}
