//! Byte-level BPE against HuggingFace `tokenizers`: the fixture in `fixtures/bpe/` was made by
//! `benches/reference/make_tokenizer_fixture.py` (a tokenizer `tokenizers` trained, and the ids it
//! gives a few hundred lines), so these tests need no Python.

use proptest::prelude::*;
use stagewise_core::{Ctx, Stage};
use stagewise_tokenizer::bpe::{BpeModel, BpeTrainer, Cache, END_OF_TEXT};
use stagewise_tokenizer::{BpeTokenizer, Tokenizer};
use std::path::PathBuf;
use std::sync::OnceLock;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bpe").join(name)
}

fn hf_model() -> &'static BpeModel {
    static MODEL: OnceLock<BpeModel> = OnceLock::new();
    MODEL.get_or_init(|| BpeModel::load(fixture("tokenizer.json")).expect("the fixture loads"))
}

/// `(text, ids)` of every fixture line.
fn fixture_lines() -> Vec<(String, Vec<u32>)> {
    lines_of("ids.jsonl")
}

/// `(text, ids)` of every line of a fixture file of ids.
fn lines_of(name: &str) -> Vec<(String, Vec<u32>)> {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture ids");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let ids =
                v["ids"].as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect();
            (v["text"].as_str().expect("text").to_owned(), ids)
        })
        .collect()
}

#[test]
fn gives_exactly_the_ids_tokenizers_gives() {
    let model = hf_model();
    let lines = fixture_lines();
    assert!(lines.len() > 400, "{} fixture lines", lines.len());
    let mut cache = Cache::default();
    for (text, want) in &lines {
        let mut got = Vec::new();
        model.encode_into(text, &mut cache, &mut got);
        assert_eq!(&got, want, "{text:?}");
        assert_eq!(&model.encode(text), want, "{text:?} without a cache");
        assert_eq!(&model.decode(want).expect("ids in range"), text);
    }
}

#[test]
fn a_prefix_space_and_string_merges_give_the_ids_tokenizers_gives() {
    // The fixture's tokenizer with `add_prefix_space` set and merges as "a b" strings, as
    // GPT-2-style files have them; `tokenizers` made these ids from that file.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer.json")).expect("read"))
            .expect("json");
    doc["pre_tokenizer"]["add_prefix_space"] = serde_json::Value::Bool(true);
    let merges = doc["model"]["merges"].as_array().expect("merges").clone();
    doc["model"]["merges"] = merges
        .iter()
        .map(|m| {
            serde_json::Value::String(format!("{} {}", m[0].as_str().expect("a"), m[1].as_str().expect("b")))
        })
        .collect();
    let model = BpeModel::from_json(&doc.to_string(), "spaced.json").expect("loads");
    let lines = lines_of("ids_prefix_space.jsonl");
    assert!(lines.len() > 400);
    for (text, want) in &lines {
        assert_eq!(&model.encode(text), want, "{text:?}");
        // The space goes before each segment between special tokens; elsewhere only in front.
        if !text.contains(END_OF_TEXT) {
            let back = model.decode(want).expect("in range");
            assert!(back == *text || back == format!(" {text}"), "{text:?} -> {back:?}");
        }
    }
}

#[test]
fn trains_the_merges_tokenizers_trains() {
    // The fixture's tokenizer was trained by `tokenizers`' BpeTrainer on train.txt with these
    // settings (vocabulary 1000, min_frequency 2, the 256-byte alphabet, one special token).
    let text = std::fs::read_to_string(fixture("train.txt")).expect("fixture text");
    let trainer =
        BpeTrainer { vocab_size: 1000, min_frequency: 2, special_tokens: vec![END_OF_TEXT.to_owned()] };
    let ours = trainer.train(&text).expect("trains");
    let theirs = hf_model();
    assert_eq!(ours.len(), theirs.len());
    for id in 0..ours.len() as u32 {
        assert_eq!(ours.token(id), theirs.token(id), "token {id}");
    }
    assert_eq!(ours, *theirs);
    // Saved and loaded back, it is the same tokenizer.
    let again = BpeModel::from_json(&ours.to_json(), "saved").expect("loads");
    assert_eq!(again, ours);
}

#[test]
fn training_is_the_same_at_any_thread_count() {
    let text = std::fs::read_to_string(fixture("train.txt")).expect("fixture text");
    let trainer = BpeTrainer { vocab_size: 700, min_frequency: 2, special_tokens: vec![] };
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        pool.install(|| trainer.train(&text).expect("trains").to_json())
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn parallel_encoding_equals_sequential() {
    let text = std::fs::read_to_string(fixture("train.txt")).expect("fixture text").repeat(12);
    let model = hf_model();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
    assert_eq!(pool.install(|| model.encode_par(&text)), model.encode(&text));
}

#[test]
fn unsupported_files_are_refused_by_name() {
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer.json")).expect("read"))
            .expect("json");
    let cases = [
        ("/normalizer", serde_json::json!({"type": "NFC"}), "`normalizer` is NFC"),
        ("/model/type", serde_json::json!("WordPiece"), "`model` is WordPiece"),
        ("/pre_tokenizer", serde_json::json!({"type": "Whitespace"}), "`pre_tokenizer` is Whitespace"),
        (
            "/post_processor",
            serde_json::json!({"type": "TemplateProcessing"}),
            "`post_processor` is TemplateProcessing",
        ),
        ("/model/byte_fallback", serde_json::json!(true), "byte_fallback"),
        ("/model/dropout", serde_json::json!(0.1), "dropout"),
    ];
    for (pointer, value, named) in cases {
        let mut doc = base.clone();
        *doc.pointer_mut(pointer).expect("field exists") = value;
        let err = BpeModel::from_json(&doc.to_string(), "x.json").expect_err(named).to_string();
        assert!(err.starts_with("x.json: ") && err.contains(named) && !err.contains('\n'), "{err}");
    }
    let err = BpeModel::from_json("{", "bad.json").expect_err("not JSON").to_string();
    assert!(err.contains("bad.json") && err.contains("line 1"), "{err}");
}

#[test]
fn reads_merges_written_as_strings() {
    // Files written before tokenizers 0.20 (GPT-2's own) list merges as "a b" strings.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer.json")).expect("read"))
            .expect("json");
    let merges = doc["model"]["merges"].as_array().expect("merges").clone();
    doc["model"]["merges"] = merges
        .iter()
        .map(|m| {
            serde_json::Value::String(format!("{} {}", m[0].as_str().expect("a"), m[1].as_str().expect("b")))
        })
        .collect();
    let model = BpeModel::from_json(&doc.to_string(), "old.json").expect("loads");
    assert_eq!(&model, hf_model());
}

/// Merge rank of each token pair.
type Ranks = std::collections::HashMap<(String, String), usize>;
/// Id of each token.
type Vocab = std::collections::HashMap<String, u32>;

/// GPT-2's `bpe` loop (encoder.py), written plainly on token strings: the reference the fast
/// encoder (scanning for short pieces, a heap for long ones, a cache) must agree with.
fn naive_encode(text: &str) -> Vec<u32> {
    static RANKS: OnceLock<(Ranks, Vocab)> = OnceLock::new();
    let (ranks, vocab) = RANKS.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer.json")).expect("read"))
                .expect("json");
        let ranks = doc["model"]["merges"]
            .as_array()
            .expect("merges")
            .iter()
            .enumerate()
            .map(|(i, m)| ((m[0].as_str().expect("a").to_owned(), m[1].as_str().expect("b").to_owned()), i))
            .collect();
        let vocab = doc["model"]["vocab"]
            .as_object()
            .expect("vocab")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("id") as u32))
            .collect();
        (ranks, vocab)
    });
    let mut ids = Vec::new();
    for piece in stagewise_tokenizer::bpe::pretokenize::pieces(text) {
        let mut word: Vec<String> =
            piece.bytes().map(|b| stagewise_tokenizer::bpe::byte_char(b).to_string()).collect();
        loop {
            let best = (0..word.len().saturating_sub(1))
                .filter_map(|i| ranks.get(&(word[i].clone(), word[i + 1].clone())).map(|&r| (r, i)))
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", word[i], word[i + 1]);
            word.splice(i..i + 2, [merged]);
        }
        ids.extend(word.iter().map(|t| vocab[t]));
    }
    ids
}

#[test]
fn long_pieces_merge_like_gpt2() {
    // Pieces longer than the scanning limit take the heap path.
    let model = hf_model();
    let word = "abracadabra".repeat(30);
    let spaces = " ".repeat(500);
    let marks = "!?".repeat(100);
    let mixed = format!("{word}{spaces}{marks}x\n\n\n\n");
    for text in [word.as_str(), spaces.as_str(), marks.as_str(), mixed.as_str(), "the thee thee"] {
        assert_eq!(model.encode(text), naive_encode(text), "{text:?}");
    }
}

proptest! {
    /// `decode(encode(s)) == s` for any string, through the tokenize box as well.
    #[test]
    fn decoding_gives_back_any_text(text in any::<String>()) {
        let model = hf_model();
        let ids = model.encode(&text);
        prop_assert_eq!(model.decode(&ids).expect("in range"), text.clone());
        let tokenizer = BpeTokenizer::new(model.clone());
        let tokens = tokenizer.tokenize(&text).expect("never fails");
        prop_assert_eq!(tokens.len(), ids.len());
        prop_assert_eq!(tokenizer.decode(&tokens), text.clone());
        let mut par = stagewise_core::Tokens::new();
        let cx = Ctx { par: stagewise_core::par_for_threads(2), ..Ctx::seq() };
        tokenizer.run(&text, &mut par, &cx).expect("never fails");
        prop_assert_eq!(par, tokens);
        prop_assert_eq!(ids, naive_encode(&text));
    }

    /// `token_start` finds where each token begins in the text: the bytes of the tokens before
    /// it (moved to the next character boundary), rising to the text's length after the last
    /// token; past that there is no token.
    #[test]
    fn token_start_is_where_each_token_begins(text in any::<String>()) {
        let tokenizer = BpeTokenizer::new(hf_model().clone());
        let tokens = tokenizer.tokenize(&text).expect("never fails");
        let mut previous = 0;
        for i in 0..=tokens.len() {
            let at = tokenizer.token_start(&text, i).expect("a token index");
            prop_assert!(text.is_char_boundary(at) && at >= previous, "{} at {}", i, at);
            let before: stagewise_core::Tokens = tokens.iter().take(i).collect();
            let covered = tokenizer.decode(&before);
            if text.is_char_boundary(covered.len()) && text.starts_with(covered.as_str()) {
                prop_assert_eq!(at, covered.len());
            }
            previous = at;
        }
        prop_assert_eq!(tokenizer.token_start(&text, tokens.len()), Some(text.len()));
        prop_assert_eq!(tokenizer.token_start(&text, tokens.len() + 1), None);
    }

    /// Long runs of one class, where the heap path runs, agree with GPT-2's loop.
    #[test]
    fn long_runs_agree_with_gpt2(text in "[a-e]{40,200}|[ !?.]{40,200}|([a-c]{1,3} ?){20,80}") {
        prop_assert_eq!(hf_model().encode(&text), naive_encode(&text));
    }

    /// The same through the special token, and on text made of the fixture's own pieces.
    #[test]
    fn decoding_gives_back_text_with_special_tokens(parts in proptest::collection::vec(
        prop_oneof![Just(END_OF_TEXT.to_owned()), Just(" ".to_owned()), Just("\n".to_owned()),
                    "[a-zA-Z' ]{0,12}", any::<String>()], 0..8)) {
        let text = parts.concat();
        let model = hf_model();
        prop_assert_eq!(model.decode(&model.encode(&text)).expect("in range"), text);
    }
}
