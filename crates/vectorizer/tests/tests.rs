//! Property tests of the vectorize box, and file round trips and errors.

mod vectors;

use proptest::prelude::*;
use stagewise_core::{Ctx, Error, Stage, Tokens};
use stagewise_vectorizer::{
    SPECIALS, UNK, Vectorizer, VectorizerConfig, VectorizerTrainer, Vocab, VocabTrainer, VocabVectorizer,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh path in the system temp directory, unique per process and call.
fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("stagewise-vectorizer-{}-{n}-{name}", std::process::id()))
}

/// Training tokens from a small alphabet, so counts tie often; includes literal `<unk>`s and
/// non-ASCII tokens so byte order matters.
fn corpus() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop_oneof![8 => "[a-dA-Dé]{1,2}", 1 => Just(UNK.to_owned())], 0..300)
}

/// The arena form of a token list.
fn tokens_of(list: &[String]) -> Tokens {
    list.iter().map(String::as_str).collect()
}

fn fit(tokens: &[String], max_size: usize) -> Result<VocabVectorizer, TestCaseError> {
    Ok(VocabTrainer::new(max_size).fit(&tokens_of(tokens))?)
}

/// Decodes into a fresh list.
fn decode(v: &impl Vectorizer, ids: &[u32]) -> stagewise_core::Result<Tokens> {
    let mut out = Tokens::new();
    v.decode(ids, &mut out)?;
    Ok(out)
}

/// The vocabulary the spec describes, computed the slow obvious way with ordered maps.
fn reference_vocab(tokens: &[String], max_size: usize) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for t in tokens.iter().filter(|t| t.as_str() != UNK) {
        *counts.entry(t).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
    // Stable sort on count only: BTreeMap order is already byte order for ties.
    ranked.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    std::iter::once(UNK).chain(ranked.into_iter().map(|(t, _)| t)).take(max_size).map(String::from).collect()
}

/// Training tokens as [`corpus`], with literal specials mixed in.
fn corpus_with_specials() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![8 => "[a-dA-Dé]{1,2}", 1 => Just(UNK.to_owned()), 1 => prop::sample::select(&SPECIALS[..]).prop_map(String::from)],
        0..300,
    )
}

/// Some of the specials, in any order, none twice.
fn specials() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(&SPECIALS[..], 0..=3)
        .prop_shuffle()
        .prop_map(|s| s.into_iter().map(String::from).collect())
}

/// The vocabulary with `min_count` and `specials`, the slow obvious way: `<unk>`, the specials,
/// then the reference ranking of the other tokens seen at least `min_count` times.
fn reference_vocab_with(
    tokens: &[String],
    max_size: usize,
    min_count: u64,
    specials: &[String],
) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for t in tokens.iter().filter(|t| t.as_str() != UNK && !specials.contains(t)) {
        *counts.entry(t).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().filter(|&(_, c)| c >= min_count).collect();
    ranked.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    std::iter::once(UNK)
        .chain(specials.iter().map(String::as_str))
        .chain(ranked.into_iter().map(|(t, _)| t))
        .take(max_size)
        .map(String::from)
        .collect()
}

proptest! {
    #[test]
    fn options_match_the_reference_and_keep_the_invariants(
        tokens in corpus_with_specials(),
        extra in 0usize..30,
        min_count in 1u64..5,
        specials in specials(),
    ) {
        let max_size = 2 + specials.len() + extra;
        let trainer = VocabTrainer::new(max_size).with_min_count(min_count).with_specials(specials.clone());
        let v = trainer.fit(&tokens_of(&tokens))?;
        let vocab = v.vocab();
        prop_assert_eq!(vocab.tokens(), reference_vocab_with(&tokens, max_size, min_count, &specials));
        // Specials get ids 1.. in the order given, whatever the corpus holds.
        prop_assert_eq!(vocab.specials(), &specials[..]);
        for (id, special) in (1u32..).zip(&specials) {
            prop_assert_eq!(v.id_of(special), id);
        }
        // Every id is used once (dense), every count is accounted for.
        prop_assert!(v.vocab_size() <= max_size);
        let ids = v.vectorize(&tokens_of(vocab.tokens()))?;
        prop_assert_eq!(ids, (0..v.vocab_size() as u32).collect::<Vec<_>>());
        let counts = vocab.counts().expect("trained vocabularies keep counts");
        prop_assert_eq!(counts.iter().sum::<u64>(), tokens.len() as u64);
        // Every corpus token kept was seen at least min_count times.
        prop_assert!(counts[1 + specials.len()..].iter().all(|&c| c >= min_count));
        // Deterministic, independent of order, and round-trips through its file.
        let mut shuffled = tokens.clone();
        shuffled.reverse();
        prop_assert_eq!(&trainer.fit(&tokens_of(&shuffled))?, &v);
        let path = temp_path("options.json");
        v.save(&path)?;
        let loaded = VocabVectorizer::load(&path);
        std::fs::remove_file(&path).ok();
        let loaded = loaded?;
        prop_assert_eq!(loaded.vocab().specials(), &specials[..]);
        prop_assert_eq!(loaded, v);
    }

    #[test]
    fn default_options_are_the_plain_trainer(tokens in corpus_with_specials(), max_size in 2usize..30) {
        let config = VectorizerConfig::Vocab { max_size, min_count: 1, specials: vec![] };
        let plain = fit(&tokens, max_size)?;
        prop_assert_eq!(plain.vocab().tokens(), reference_vocab(&tokens, max_size));
        prop_assert_eq!(config.fit(&tokens_of(&tokens))?, plain.into());
    }

    #[test]
    fn matches_the_reference_ranking(tokens in corpus(), max_size in 2usize..30) {
        let v = fit(&tokens, max_size)?;
        prop_assert_eq!(v.vocab().tokens(), reference_vocab(&tokens, max_size));
        let counts = v.vocab().counts().expect("trained vocabularies keep counts");
        prop_assert_eq!(counts.iter().sum::<u64>(), tokens.len() as u64);
    }

    #[test]
    fn size_is_at_most_max_size_and_ids_are_dense(tokens in corpus(), max_size in 2usize..30) {
        let v = fit(&tokens, max_size)?;
        let distinct = tokens.iter().filter(|t| t.as_str() != UNK).collect::<BTreeSet<_>>().len();
        prop_assert_eq!(v.vocab_size(), (distinct + 1).min(max_size));
        let ids = v.vectorize(&tokens_of(v.vocab().tokens()))?;
        prop_assert_eq!(ids, (0..v.vocab_size() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn decode_then_encode_is_the_identity_on_in_vocab_ids(
        tokens in corpus(),
        max_size in 2usize..30,
        raw in prop::collection::vec(any::<u32>(), 0..50),
    ) {
        let v = fit(&tokens, max_size)?;
        let ids: Vec<u32> = raw.iter().map(|&i| i % v.vocab_size() as u32).collect();
        let decoded = decode(&v, &ids)?;
        prop_assert_eq!(decoded.len(), ids.len());
        prop_assert_eq!(v.vectorize(&decoded)?, ids);
    }

    #[test]
    fn unknown_tokens_map_to_zero(tokens in corpus(), max_size in 2usize..30, unseen in "[x-z]{1,3}") {
        let v = fit(&tokens, max_size)?;
        prop_assert_eq!(v.id_of(&unseen), 0);
        prop_assert_eq!(v.id_of(UNK), 0);
        // Every training token either keeps its own id or, if cut by max_size, maps to 0.
        for (token, id) in tokens.iter().zip(v.vectorize(&tokens_of(&tokens))?) {
            let kept = v.vocab().tokens().iter().position(|t| t == token);
            prop_assert_eq!(id as usize, kept.unwrap_or(0));
        }
    }

    #[test]
    fn training_is_deterministic(tokens in corpus(), max_size in 2usize..30) {
        prop_assert_eq!(fit(&tokens, max_size)?, fit(&tokens, max_size)?);
    }

    #[test]
    fn training_ignores_token_order(
        (tokens, shuffled) in corpus().prop_flat_map(|t| (Just(t.clone()), Just(t).prop_shuffle())),
        max_size in 2usize..30,
    ) {
        prop_assert_eq!(fit(&tokens, max_size)?, fit(&shuffled, max_size)?);
    }

    #[test]
    fn feeding_in_pieces_in_any_order_gives_the_same_vocabulary(
        (tokens, shuffled) in corpus().prop_flat_map(|t| (Just(t.clone()), Just(t).prop_shuffle())),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        max_size in 2usize..30,
    ) {
        // The shuffled multiset, cut at arbitrary points (empty pieces included) and fed piece
        // by piece, some pieces as a `Tokens`, others as plain `&str` iterators.
        let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(shuffled.len() + 1)).collect();
        bounds.push(0);
        bounds.push(shuffled.len());
        bounds.sort_unstable();
        let mut trainer = VocabTrainer::new(max_size);
        for (n, pair) in bounds.windows(2).enumerate() {
            let piece = &shuffled[pair[0]..pair[1]];
            if n % 2 == 0 {
                trainer.feed(&tokens_of(piece))?;
            } else {
                trainer.feed(piece.iter().map(String::as_str))?;
            }
        }
        prop_assert_eq!(trainer.finish()?, fit(&tokens, max_size)?);
    }

    #[test]
    fn save_then_load_round_trips(tokens in corpus(), max_size in 2usize..30) {
        let v = fit(&tokens, max_size)?;
        let path = temp_path("vocab.json");
        v.save(&path)?;
        let loaded = VocabVectorizer::load(&path);
        std::fs::remove_file(&path).ok();
        prop_assert_eq!(loaded?, v);
    }

    #[test]
    fn run_into_a_reused_buffer_matches_vectorize(tokens in corpus(), a in corpus(), b in corpus()) {
        let v = fit(&tokens, 10)?;
        let mut out = Vec::new();
        v.run(&tokens_of(&a), &mut out, &Ctx::seq())?;
        v.run(&tokens_of(&b), &mut out, &Ctx::seq())?;
        prop_assert_eq!(out, v.vectorize(&tokens_of(&b))?);
        let mut decoded = tokens_of(&a);
        v.decode(&v.vectorize(&tokens_of(&b))?, &mut decoded)?;
        prop_assert_eq!(decoded, decode(&v, &v.vectorize(&tokens_of(&b))?)?);
    }
}

#[test]
fn config_fit_save_and_load_round_trip() {
    let tokens: Tokens = "to be or not to be".split(' ').collect();
    let cfg = VectorizerConfig::vocab(4);
    let v = cfg.fit(&tokens).expect("fits");
    let path = temp_path("config.json");
    v.save(&path).expect("saves");
    let loaded = cfg.load(&path).expect("loads");
    let text = std::fs::read_to_string(&path).expect("readable");
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded, v);
    assert_eq!(decode(&loaded, &[0, 1, 2, 3]).expect("in range").to_vec(), ["<unk>", "be", "to", "not"]);
    // Fitting on the first part of a token list (a training split) needs no copy of it.
    let prefix = cfg.fit(tokens.iter().take(4)).expect("fits");
    assert_eq!(prefix, cfg.fit(&Tokens::from(&["to", "be", "or", "not"][..])).expect("fits"));
    // The file is self-describing and its version comes first.
    assert!(text.trim_start().starts_with("{\n  \"version\": 2,\n  \"kind\": \"vocab\""), "{text}");
}

#[test]
fn save_replaces_an_existing_file_and_leaves_no_temporary() {
    let path = temp_path("replace.json");
    std::fs::write(&path, "old contents").expect("writable");
    let v = VocabVectorizer::new(Vocab::new(vec![UNK.into(), "x".into()], None).expect("valid"));
    v.save(&path).expect("saves");
    assert_eq!(VocabVectorizer::load(&path).expect("loads"), v);
    let dir = path.parent().expect("has a parent");
    let name = path.file_name().expect("has a name").to_string_lossy().into_owned();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("readable dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&name) && *n != name)
        .collect();
    std::fs::remove_file(&path).ok();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn load_errors_name_the_file_and_the_problem() {
    let cases: &[(&[u8], &str)] = &[
        (b"{\"version\": 1, \"kind\": \"vocab\"}", "missing field `tokens`"),
        (b"{\"kind\": \"vocab\", \"tokens\": [\"<unk>\"]}", "missing field `version`"),
        (b"{\"version\": 7, \"kind\": \"vocab\", \"tokens\": [\"<unk>\"]}", "unsupported `version` 7"),
        (
            b"{\"version\": 2, \"kind\": \"vocab\", \"specials\": [\"<bos>\"], \"tokens\": [\"<unk>\", \"<eos>\"]}",
            "are not the tokens after",
        ),
        (
            b"{\"version\": 1, \"kind\": \"vocab\", \"tokens\": [\"<unk>\", \"a\", \"a\"]}",
            "duplicate token \"a\"",
        ),
        (
            b"{\"version\": 1, \"kind\": \"vocab\", \"tokens\": [\"a\", \"<unk>\"]}",
            "\"<unk>\" must be at id 0",
        ),
        (b"{\"version\": 1,\n \"kind\": \"vocab\",\n \"tokens\": [\"<unk>\",]}", "line 3"),
    ];
    for (contents, expected) in cases {
        let path = temp_path("bad.json");
        std::fs::write(&path, contents).expect("writable");
        let result = VocabVectorizer::load(&path);
        std::fs::remove_file(&path).ok();
        let msg = result.expect_err(expected).to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains(expected), "expected {expected:?} in {msg}");
    }

    let path = temp_path("missing.json");
    match VocabVectorizer::load(&path) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected an io error, got {other:?}"),
    }

    let path = temp_path("latin1.json");
    std::fs::write(&path, b"{\"tokens\": [\"caf\xe9\"]}").expect("writable");
    let result = VocabVectorizer::load(&path);
    std::fs::remove_file(&path).ok();
    match result {
        Err(Error::InvalidUtf8 { path: p, offset }) => assert_eq!((p, offset), (path, 16)),
        other => panic!("expected an invalid UTF-8 error, got {other:?}"),
    }
}

#[test]
fn save_into_a_missing_directory_names_the_path() {
    let path = temp_path("no-such-dir").join("vocab.json");
    let v = VocabVectorizer::new(Vocab::new(vec![UNK.into()], None).expect("valid"));
    match v.save(&path) {
        Err(Error::Io { path: p, .. }) => assert!(p.starts_with(path.parent().expect("parent")), "{p:?}"),
        other => panic!("expected an io error, got {other:?}"),
    }
}
