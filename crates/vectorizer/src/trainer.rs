//! Fitting a vocabulary to a corpus.

use crate::{UNK, Vocab, VocabVectorizer};
use stagewise_core::{Error, Result};
use std::collections::HashMap;

/// Builds a [`VocabVectorizer`] from training tokens: the trainer is separate from the stage so a
/// stage is never half-initialised (it exists only once its vocabulary does).
///
/// [`fit`](VocabTrainer::fit) counts every training token, sorts by count descending then by
/// token bytes ascending, keeps the first `max_size - 1` and puts [`UNK`] in front at id 0. The
/// sort makes the result deterministic: it depends only on the multiset of tokens, not on their
/// order or on hash-map iteration. With fewer distinct tokens than `max_size - 1`, the vocabulary
/// is smaller: V = distinct + 1.
///
/// A literal `"<unk>"` in the training tokens is treated as unknown: it is not ranked, and its
/// occurrences count towards `<unk>` (id 0), as do those of the tokens cut by `max_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VocabTrainer {
    /// Most ids the vocabulary may have, `<unk>` included. At least 2 (`<unk>` and one word).
    pub max_size: usize,
}

impl VocabTrainer {
    /// The default `max_size`, the seed's 10 000 ids.
    pub const DEFAULT_MAX_SIZE: usize = 10_000;

    /// A trainer keeping at most `max_size` ids; checked when fitting.
    pub fn new(max_size: usize) -> Self {
        VocabTrainer { max_size }
    }

    /// Errors ([`Error::Config`] on `vectorizer.max_size`) if `max_size < 2`: a vocabulary of
    /// `<unk>` alone would map every token to the same id.
    pub fn validate(&self) -> Result<()> {
        if self.max_size < 2 {
            return Err(Error::config(
                "vectorizer.max_size",
                format!("must be at least 2 (<unk> and one token), got {}", self.max_size),
            ));
        }
        Ok(())
    }

    /// Fits the vocabulary to `tokens` (the *training* split only, so validation words stay
    /// unknown as they would be in deployment) and returns the stage that uses it.
    ///
    /// An empty corpus gives the vocabulary `[<unk>]`; rejecting a corpus too small to train on
    /// is the pipeline's job, which knows the batch and window sizes.
    pub fn fit(&self, tokens: &[String]) -> Result<VocabVectorizer> {
        self.validate()?;
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let mut unk_count = 0u64;
        for token in tokens {
            if token == UNK {
                unk_count += 1;
            } else {
                *counts.entry(token.as_str()).or_insert(0) += 1;
            }
        }
        let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
        // Keys are distinct, so the order is total and an unstable sort is deterministic.
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
        let keep = ranked.len().min(self.max_size - 1);
        unk_count += ranked[keep..].iter().map(|&(_, c)| c).sum::<u64>();
        ranked.truncate(keep);

        let mut vocab_tokens = Vec::with_capacity(keep + 1);
        let mut vocab_counts = Vec::with_capacity(keep + 1);
        vocab_tokens.push(UNK.to_owned());
        vocab_counts.push(unk_count);
        for (token, count) in ranked {
            vocab_tokens.push(token.to_owned());
            vocab_counts.push(count);
        }
        Ok(VocabVectorizer::new(Vocab::new(vocab_tokens, Some(vocab_counts))?))
    }
}

impl Default for VocabTrainer {
    /// `max_size` = [`VocabTrainer::DEFAULT_MAX_SIZE`].
    fn default() -> Self {
        VocabTrainer { max_size: Self::DEFAULT_MAX_SIZE }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn ranks_by_count_then_token_bytes() {
        // Counts: b 3, a 2, c 2, B 2, é 2, z 1, <unk> 1 (literal, not ranked).
        let corpus = words("c a b é b B z c a b B <unk> é");
        let v = VocabTrainer::new(100).fit(&corpus).expect("fits");
        // Ties at count 2 in byte order: "B" (0x42) < "a" < "c" < "é" (0xC3 0xA9).
        assert_eq!(v.vocab().tokens(), words("<unk> b B a c é z"));
        assert_eq!(v.vocab().counts(), Some(&[1, 3, 2, 2, 2, 2, 1][..]));
    }

    #[test]
    fn cut_tokens_and_literal_unk_count_towards_unk() {
        let corpus = words("c a b é b B z c a b B <unk> é");
        let v = VocabTrainer::new(4).fit(&corpus).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> b B a"));
        // 1 literal <unk> + c 2 + é 2 + z 1.
        assert_eq!(v.vocab().counts(), Some(&[6, 3, 2, 2][..]));
    }

    #[test]
    fn small_corpora_give_small_vocabularies() {
        let v = VocabTrainer::default().fit(&words("x y x")).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> x y"));
        let v = VocabTrainer::default().fit(&[]).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk>"));
        let v = VocabTrainer::new(2).fit(&words("<unk> <unk>")).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk>"));
    }

    #[test]
    fn max_size_below_two_is_a_config_error() {
        for max_size in [0, 1] {
            match VocabTrainer::new(max_size).fit(&words("a b")) {
                Err(Error::Config { field, message }) => {
                    assert_eq!(field, "vectorizer.max_size");
                    assert!(message.contains("at least 2"), "{message}");
                }
                other => panic!("expected a config error, got {other:?}"),
            }
        }
        assert!(VocabTrainer::new(2).validate().is_ok());
    }
}
