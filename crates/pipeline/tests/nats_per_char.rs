//! `test_nats_per_char`: the test loss on a per-character scale, in `metrics.jsonl` and on the
//! epoch line, computed independently here from the corpus text.

use crate::util::{TempDir, corpus, stagewise, texts, tiny_config};
use stagewise_pipeline::Model;
use stagewise_pipeline::data::test_count;
use stagewise_pipeline::train::train;
use stagewise_tokenizer::TokenizerConfig;

/// The `key` figure of every line of `DIR/metrics.jsonl`.
fn metric(out: &std::path::Path, key: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value[key].as_f64().unwrap_or_else(|| panic!("`{key}` missing from {line}"))
        })
        .collect()
}

#[test]
fn for_characters_it_is_the_per_token_test_loss() {
    let dir = TempDir::new("npc-char");
    std::fs::write(dir.join("corpus.txt"), corpus(40)).unwrap();
    let mut config = tiny_config(dir.join("corpus.txt"));
    config.tokenizer = TokenizerConfig::Char {};
    config.train.epochs = 2;
    let out = dir.join("run");
    let outcome = train(&config, Model::builder(&config).unwrap(), &out, &mut []).unwrap();
    // The grammar's 20-odd characters are all in the training split: no <unk> in the test split.
    assert!(!outcome.data.test_ids.contains(&0));
    let (losses, per_char) = (metric(&out, "test_loss"), metric(&out, "test_nats_per_char"));
    assert_eq!(losses.len(), 2);
    for (loss, nats) in losses.iter().zip(&per_char) {
        assert!((loss - nats).abs() <= 1e-12 * loss, "test loss {loss} but {nats} nats per char");
    }
    for m in &outcome.epochs {
        assert_eq!(m.test_nats_per_char, Some(m.test_loss));
    }
}

#[test]
fn for_words_it_spreads_the_test_split_s_nll_over_its_characters() {
    let dir = TempDir::new("npc-word");
    // Runs of spaces and newlines, which the characters count and the tokens do not.
    let text = corpus(60).replace(" . ", " .  \n ");
    std::fs::write(dir.join("corpus.txt"), &text).unwrap();
    std::fs::write(dir.join("run.toml"), crate::util::TINY_TOML).unwrap();

    // The characters from the first test word to the end, found here by slicing the text.
    let words: Vec<&str> = text.split_whitespace().collect();
    let n_test = test_count(words.len(), 0.1);
    let first = words[words.len() - n_test];
    let start = first.as_ptr() as usize - text.as_ptr() as usize;
    let chars = text[start..].chars().count();
    assert!(chars > n_test * 3, "{chars} characters for {n_test} words");

    let out = stagewise(
        dir.path(),
        &["train", "--config", "run.toml", "--out", "run", "--set", "generate.tokens=0"],
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let (losses, per_char) =
        (metric(&dir.join("run"), "test_loss"), metric(&dir.join("run"), "test_nats_per_char"));
    for (loss, nats) in losses.iter().zip(&per_char) {
        let want = loss * n_test as f64 / chars as f64;
        assert!((nats - want).abs() <= 1e-12 * want, "{nats} nats per char, expected {want}");
        assert!(stdout.contains(&format!("| test nats/char {nats:.4} |")), "{stdout}");
    }
}
