//! The classify task: a text's pooled vector and gradients are the same alone or padded in a
//! batch; a run through `stagewise train --task classify` writes its files; `stagewise classify`
//! labels texts with its checkpoint.

use crate::util::{TempDir, stagewise, texts};
use proptest::prelude::*;
use stagewise_core::{Ctx, Rng};
use stagewise_forward::{ForwardConfig, Pooling, RecurrentKind};
use stagewise_pipeline::{Config, Model};

/// A CSV file of `rows` labelled texts: the label is the topic its words come from, so a small
/// model can learn it. `salt` varies the texts.
pub fn labelled_csv(rows: usize, salt: u64) -> String {
    const TOPICS: [(&str, [&str; 4]); 3] = [
        ("animals", ["cat", "dog", "bird", "horse"]),
        ("food", ["bread", "apple", "soup", "cheese"]),
        ("weather", ["rain", "snow", "wind", "sun"]),
    ];
    let mut rng = Rng::new(7 + salt);
    let mut out = String::from("text,label\n");
    for i in 0..rows {
        let (label, words) = TOPICS[i % 3];
        let n = 2 + rng.below(6) as usize;
        let text: Vec<&str> =
            (0..n).map(|k| if k % 3 == 2 { "the" } else { words[rng.below(4) as usize] }).collect();
        // Some texts hold a comma and quotes, which the CSV quotes.
        let text =
            if i % 5 == 0 { format!("\"{}, \"\"so\"\" it is\"", text.join(" ")) } else { text.join(" ") };
        out.push_str(&format!("{text},{label}\n"));
    }
    out
}

/// A small classifier config in f64 (E = 4, H = 5) with `pooling`.
fn config(kind: RecurrentKind, pooling: Pooling) -> Config {
    let mut c = Config::default();
    c.data.task = stagewise_pipeline::config::Task::Classify;
    c.embedding = stagewise_embedding::EmbeddingConfig::table(4);
    c.forward = ForwardConfig::with(kind, 5, 1, 0.0).with_pooling(Some(pooling));
    c.train.seed = 3;
    c
}

/// The pooled vector `[H]` of stream `b` and the parameter gradients after one training step on
/// `texts` with a model of `batch` streams.
fn run(c: &Config, texts: &[Vec<u32>], labels: &[u32], batch: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut m = Model::<f64>::classifier_builder(c, 3).unwrap().build(12, batch, 7).unwrap();
    let refs: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
    let cx = Ctx::seq();
    m.eval_texts(&refs, labels, &cx).unwrap();
    let pooled_slot = m.tape.acts.find(&format!("{}.pool.out", c.forward.kind().prefix())).unwrap();
    let value = &m.tape.acts.slot(pooled_slot).value;
    let pooled = (0..texts.len()).map(|b| value[b * 5..(b + 1) * 5].to_vec()).collect();
    m.train_texts(&refs, labels, &cx).unwrap();
    (pooled, m.tape.grads.as_slice().to_vec())
}

fn case() -> impl Strategy<Value = (usize, usize, Vec<Vec<u32>>, Vec<u32>)> {
    (0usize..3, 0usize..3, 1usize..4)
        .prop_flat_map(|(k, p, n)| {
            let text = proptest::collection::vec(0u32..12, 1..=7);
            (Just(k), Just(p), proptest::collection::vec(text, n), proptest::collection::vec(0u32..3, n))
        })
        .prop_map(|(k, p, texts, labels)| (k, p, texts, labels))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Each text alone (a batch of one, no padding) gives the pooled vector it gets in a padded
    /// batch of 3 streams (some perhaps unused), and the batch's gradient of the mean loss is the
    /// mean of the texts' gradients alone.
    #[test]
    fn padding_changes_no_pooled_vector_and_no_gradient((k, p, texts, labels) in case()) {
        let kind = [RecurrentKind::Lstm, RecurrentKind::Gru, RecurrentKind::RnnTanh][k];
        let pooling = [Pooling::Last, Pooling::Mean, Pooling::Max][p];
        let c = config(kind, pooling);
        let (pooled, grads) = run(&c, &texts, &labels, 3);
        let mut sum = vec![0.0; grads.len()];
        for (i, text) in texts.iter().enumerate() {
            let (alone, g) = run(&c, std::slice::from_ref(text), &labels[i..=i], 1);
            for (a, b) in alone[0].iter().zip(&pooled[i]) {
                prop_assert!((a - b).abs() <= 1e-12, "{kind:?} {pooling:?} text {i}: {a} vs {b}");
            }
            sum.iter_mut().zip(&g).for_each(|(s, g)| *s += g);
        }
        let n = texts.len() as f64;
        for (j, (s, g)) in sum.iter().zip(&grads).enumerate() {
            prop_assert!((s / n - g).abs() <= 1e-10 * (1.0 + g.abs()), "{kind:?} {pooling:?} param {j}: {} vs {g}", s / n);
        }
    }
}

#[test]
fn a_run_writes_its_files_and_classify_labels_texts_with_its_checkpoint() {
    let dir = TempDir::new("classify");
    std::fs::write(dir.join("train.csv"), labelled_csv(90, 0)).unwrap();
    std::fs::write(dir.join("test.csv"), labelled_csv(30, 1)).unwrap();
    let args = [
        "train",
        "--task",
        "classify",
        "--train",
        "train.csv",
        "--test",
        "test.csv",
        "--epochs",
        "6",
        "--threads",
        "1",
        "--out",
        "run",
        "--set",
        "embedding.dim=8",
        "--set",
        "forward.hidden=12",
        "--set",
        "train.batch=8",
        "--set",
        "forward.pooling=\"mean\"",
        "--set",
        "optimizer.lr=0.02",
    ];
    let result = stagewise(dir.path(), &args);
    let (stdout, stderr) = texts(&result);
    assert!(result.status.success(), "{stderr}\n{stdout}");
    assert!(stdout.contains("majority class `animals`: test acc 0.3333"), "{stdout}");
    assert!(stdout.contains("confusion matrix") && stdout.contains("precision"), "{stdout}");
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    for line in &lines {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["epoch", "train_loss", "test_loss", "test_acc", "macro_f1", "seconds"]);
    }
    let last = &lines[5];
    assert!(last["test_acc"].as_f64().unwrap() > 0.8, "the topics are learnt: {metrics}");
    let confusion: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/confusion.json")).unwrap()).unwrap();
    assert_eq!(confusion["labels"], serde_json::json!(["animals", "food", "weather"]));
    let total: u64 = confusion["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 30);
    assert!(dir.join("run/best.ckpt").is_file());

    std::fs::write(dir.join("input.txt"), "rain snow wind\n\nbread soup the cheese\n").unwrap();
    for ckpt in ["run/model.ckpt", "run/best.ckpt"] {
        let out = stagewise(
            dir.path(),
            &["classify", "--checkpoint", ckpt, "cat dog the horse", "--input", "input.txt"],
        );
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        let rows: Vec<&str> = stdout.lines().collect();
        assert_eq!(rows.len(), 3, "the argument, then the two non-blank lines: {stdout}");
        if ckpt == "run/model.ckpt" {
            let predicted: Vec<&str> = rows.iter().map(|r| r.split('\t').next().unwrap()).collect();
            assert_eq!(predicted, ["animals", "weather", "food"], "{stdout}");
        }
        for row in rows {
            let probs: f64 = row
                .split('\t')
                .nth(1)
                .unwrap()
                .split(' ')
                .map(|kv| kv.split('=').nth(1).unwrap().parse::<f64>().unwrap())
                .sum();
            assert!((probs - 1.0).abs() < 1e-3, "{row}");
        }
    }

    // A test label never seen in training is named, with its file and line.
    std::fs::write(dir.join("odd.csv"), "text,label\ncat dog,animals\nrain,climate\n").unwrap();
    let out = stagewise(
        dir.path(),
        &["train", "--task", "classify", "--train", "train.csv", "--test", "odd.csv", "--out", "r2"],
    );
    let (_, stderr) = texts(&out);
    assert!(
        !out.status.success() && stderr.contains("odd.csv:3") && stderr.contains("`climate`"),
        "{stderr}"
    );
    // A language model's checkpoint is not a classifier.
    let out = stagewise(dir.path(), &["classify", "--checkpoint", "nope.ckpt", "x"]);
    assert!(!out.status.success() && texts(&out).1.contains("nope.ckpt"));
}
