//! Corpus reading, the train/test split, batching into parallel streams and BPTT windows, and the
//! unigram baseline.
//!
//! The protocol is pytorch/examples `word_language_model`'s: the token stream is cut into `B`
//! contiguous streams (`batchify`), laid out time-major, and read in windows of up to `T` steps
//! whose targets are the same streams shifted by one token.

use stagewise_core::{Error, Result};
use std::path::Path;

/// Reads a UTF-8 text file, naming the file and the byte offset of the first invalid byte. Only
/// a regular file is read (a device or a pipe would read forever); its size is bounded by the
/// run's memory estimate, which counts it.
pub fn read_corpus(path: &Path) -> Result<String> {
    let bytes = stagewise_core::read_regular_file(path, u64::MAX).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| Error::InvalidUtf8 { path: path.to_path_buf(), offset: e.utf8_error().valid_up_to() })?;
    if text.trim().is_empty() {
        return Err(Error::data(path.display().to_string(), "the corpus is empty (no tokens)"));
    }
    Ok(text)
}

/// How many of `n` tokens the test split takes: the last `floor(n * test_fraction)`.
pub fn test_count(n: usize, test_fraction: f64) -> usize {
    ((n as f64 * test_fraction).floor() as usize).min(n)
}

/// Splits a token stream into (train, test): the last [`test_count`] tokens are the test split,
/// the rest train.
pub fn split_tokens<T>(tokens: &[T], test_fraction: f64) -> (&[T], &[T]) {
    tokens.split_at(tokens.len() - test_count(tokens.len(), test_fraction))
}

/// A token stream cut into `batch` contiguous streams, stored time-major: element `t * batch + b`
/// is step `t` of stream `b` (pytorch/examples' `batchify(...)`, `[steps, batch]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batched {
    data: Vec<u32>,
    batch: usize,
    steps: usize,
}

/// One window: inputs and targets, each `steps * batch` ids, time-major.
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    /// Steps in this window (`<= T`; the last window of a split may be shorter).
    pub steps: usize,
    /// Input ids.
    pub inputs: &'a [u32],
    /// Target ids: the inputs shifted by one step.
    pub targets: &'a [u32],
}

impl Batched {
    /// Cuts `ids` into `batch` streams of `len / batch` ids, dropping the remainder.
    /// `what` names the split in the error when it is too short for even one window.
    pub fn new(ids: &[u32], batch: usize, what: &str) -> Result<Self> {
        let steps = ids.len() / batch;
        if steps < 2 {
            return Err(Error::data(
                what,
                format!(
                    "{} tokens are too few for one batch: train.batch = {batch} streams need at least {} tokens",
                    ids.len(),
                    2 * batch
                ),
            ));
        }
        let mut data = vec![0; steps * batch];
        for b in 0..batch {
            for t in 0..steps {
                data[t * batch + b] = ids[b * steps + t];
            }
        }
        Ok(Batched { data, batch, steps })
    }

    /// Streams B.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Steps per stream.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Ids that will be predicted in one pass: `(steps − 1) * batch`.
    pub fn target_count(&self) -> usize {
        (self.steps - 1) * self.batch
    }

    /// The windows of at most `bptt` steps, in order (`for i in range(0, steps − 1, bptt)`).
    pub fn windows(&self, bptt: usize) -> impl Iterator<Item = Window<'_>> + '_ {
        let b = self.batch;
        (0..self.steps - 1).step_by(bptt.max(1)).map(move |i| {
            let steps = bptt.min(self.steps - 1 - i);
            Window {
                steps,
                inputs: &self.data[i * b..(i + steps) * b],
                targets: &self.data[(i + 1) * b..(i + 1 + steps) * b],
            }
        })
    }

    /// Number of windows of at most `bptt` steps.
    pub fn window_count(&self, bptt: usize) -> usize {
        (self.steps - 1).div_ceil(bptt.max(1))
    }
}

/// Perplexity of `test` ids under the unigram distribution of `train` ids with add-one smoothing
/// over a vocabulary of `vocab` ids: `p(id) = (count(id) + 1) / (n_train + vocab)`.
/// The model must beat this to have learnt anything beyond word frequencies.
pub fn unigram_perplexity(train: &[u32], test: &[u32], vocab: usize) -> f64 {
    let mut counts = vec![0u64; vocab];
    for &id in train {
        counts[id as usize] += 1;
    }
    let total = (train.len() + vocab) as f64;
    let nll: f64 = test.iter().map(|&id| -((counts[id as usize] + 1) as f64 / total).ln()).sum();
    (nll / test.len().max(1) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn batchify_matches_pytorch_examples() {
        // ids 0..10, B = 3: 3 streams of 3 ([0,1,2], [3,4,5], [6,7,8]), id 9 dropped.
        let b = Batched::new(&(0..10).collect::<Vec<_>>(), 3, "t").unwrap();
        assert_eq!(b.data, vec![0, 3, 6, 1, 4, 7, 2, 5, 8]);
        let w: Vec<_> = b.windows(1).collect();
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].inputs, w[0].targets), (&[0, 3, 6][..], &[1, 4, 7][..]));
        assert_eq!((w[1].inputs, w[1].targets), (&[1, 4, 7][..], &[2, 5, 8][..]));
    }

    proptest! {
        #[test]
        fn windows_cover_every_target_once(n in 2usize..400, batch in 1usize..9, bptt in 1usize..20) {
            let ids: Vec<u32> = (0..n as u32).collect();
            match Batched::new(&ids, batch, "t") {
                Err(_) => prop_assert!(n / batch < 2),
                Ok(b) => {
                    let mut count = 0;
                    for w in b.windows(bptt) {
                        prop_assert!(w.steps >= 1 && w.steps <= bptt);
                        prop_assert_eq!(w.inputs.len(), w.steps * batch);
                        // Within a stream, the target is the next token of the original stream.
                        for (x, y) in w.inputs.iter().zip(w.targets) {
                            prop_assert_eq!(x + 1, *y);
                        }
                        count += w.targets.len();
                    }
                    prop_assert_eq!(count, b.target_count());
                    prop_assert_eq!(b.windows(bptt).count(), b.window_count(bptt));
                }
            }
        }
    }

    #[test]
    fn split_takes_the_last_tenth() {
        let v: Vec<u32> = (0..25).collect();
        let (train, test) = split_tokens(&v, 0.1);
        assert_eq!((train.len(), test), (23, &[23, 24][..]));
    }

    #[test]
    fn unigram_baseline_of_a_uniform_stream_is_the_vocab_size() {
        let ids: Vec<u32> = (0..1000).map(|i| i % 4).collect();
        let ppl = unigram_perplexity(&ids, &ids, 4);
        assert!((ppl - 4.0).abs() < 1e-9, "{ppl}");
    }

    #[test]
    fn bad_corpora_are_named_errors() {
        let dir = std::env::temp_dir().join(format!("stagewise-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.txt");
        assert!(read_corpus(&missing).unwrap_err().to_string().contains("missing.txt"));
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, " \n\t").unwrap();
        assert!(read_corpus(&empty).unwrap_err().to_string().contains("empty"));
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, b"hello \xff world").unwrap();
        let err = read_corpus(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.txt") && err.contains("byte offset 6"), "{err}");
        let short = Batched::new(&[1, 2, 3], 32, "train split").unwrap_err().to_string();
        assert!(short.contains("train split") && short.contains("too few"), "{short}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
