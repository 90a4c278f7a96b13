//! Fitting a vocabulary to a corpus.

use crate::{UNK, VectorizerTrainer, Vocab, VocabVectorizer};
use stagewise_core::{Error, Result};
use std::collections::HashMap;

/// Builds a [`VocabVectorizer`] from training tokens, fed in one call or many
/// ([`VectorizerTrainer`]).
///
/// [`feed`](VectorizerTrainer::feed) counts every token;
/// [`finish`](VectorizerTrainer::finish) sorts by count descending then by token bytes
/// ascending, keeps the first `max_size - 1` and puts [`UNK`] in front at id 0. The sort makes
/// the result deterministic: it depends only on the multiset of tokens fed, not on their order,
/// on how they were split across `feed` calls, or on hash-map iteration. With fewer distinct
/// tokens than `max_size - 1`, the vocabulary is smaller: V = distinct + 1.
///
/// A literal `"<unk>"` in the training tokens is treated as unknown: it is not ranked, and its
/// occurrences count towards `<unk>` (id 0), as do those of the tokens cut by `max_size`.
///
/// Memory: one owned copy of each *distinct* token (made when it is first seen) and its count,
/// so feeding a million-token corpus costs its vocabulary, not its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocabTrainer {
    /// Most ids the vocabulary may have, `<unk>` included. At least 2 (`<unk>` and one word).
    pub max_size: usize,
    /// Occurrences of each distinct token fed so far, literal `<unk>` excluded.
    counts: HashMap<String, u64>,
    /// Occurrences of literal `<unk>` fed so far.
    unk_count: u64,
}

impl VocabTrainer {
    /// The default `max_size`, the seed's 10 000 ids.
    pub const DEFAULT_MAX_SIZE: usize = 10_000;

    /// A trainer keeping at most `max_size` ids, with nothing fed yet; `max_size` is checked by
    /// [`validate`](VocabTrainer::validate), which `feed` and `finish` call.
    pub fn new(max_size: usize) -> Self {
        VocabTrainer { max_size, counts: HashMap::new(), unk_count: 0 }
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

    /// Fits a vocabulary to what was fed so far plus `tokens`, leaving this trainer as it was:
    /// the one-call form of `feed` then `finish` (it clones the counts fed so far, none for a
    /// fresh trainer).
    ///
    /// `tokens` is the *training* split only. An empty corpus gives the vocabulary `[<unk>]`;
    /// rejecting a corpus too small to train on is the pipeline's job, which knows the batch and
    /// window sizes.
    pub fn fit<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) -> Result<VocabVectorizer> {
        let mut trainer = self.clone();
        trainer.feed(tokens)?;
        trainer.finish()
    }
}

impl VectorizerTrainer for VocabTrainer {
    type Vectorizer = VocabVectorizer;

    /// Counts `tokens`; allocates only for a token not seen before.
    fn feed<'a>(&mut self, tokens: impl IntoIterator<Item = &'a str>) -> Result<()> {
        self.validate()?;
        for token in tokens {
            if token == UNK {
                self.unk_count += 1;
            } else if let Some(count) = self.counts.get_mut(token) {
                *count += 1;
            } else {
                self.counts.insert(token.to_owned(), 1);
            }
        }
        Ok(())
    }

    /// Ranks the counted tokens and builds the vocabulary (see [`VocabTrainer`]).
    fn finish(self) -> Result<VocabVectorizer> {
        self.validate()?;
        let mut ranked: Vec<(String, u64)> = self.counts.into_iter().collect();
        // Keys are distinct, so the order is total and an unstable sort is deterministic.
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
        let keep = ranked.len().min(self.max_size - 1);
        let unk_count = self.unk_count + ranked[keep..].iter().map(|&(_, c)| c).sum::<u64>();
        ranked.truncate(keep);

        let mut vocab_tokens = Vec::with_capacity(keep + 1);
        let mut vocab_counts = Vec::with_capacity(keep + 1);
        vocab_tokens.push(UNK.to_owned());
        vocab_counts.push(unk_count);
        for (token, count) in ranked {
            vocab_tokens.push(token);
            vocab_counts.push(count);
        }
        Ok(VocabVectorizer::new(Vocab::new(vocab_tokens, Some(vocab_counts))?))
    }
}

impl Default for VocabTrainer {
    /// `max_size` = [`VocabTrainer::DEFAULT_MAX_SIZE`], nothing fed.
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn ranks_by_count_then_token_bytes() {
        // Counts: b 3, a 2, c 2, B 2, é 2, z 1, <unk> 1 (literal, not ranked).
        let corpus = words("c a b é b B z c a b B <unk> é");
        let v = VocabTrainer::new(100).fit(corpus).expect("fits");
        // Ties at count 2 in byte order: "B" (0x42) < "a" < "c" < "é" (0xC3 0xA9).
        assert_eq!(v.vocab().tokens(), words("<unk> b B a c é z"));
        assert_eq!(v.vocab().counts(), Some(&[1, 3, 2, 2, 2, 2, 1][..]));
    }

    #[test]
    fn cut_tokens_and_literal_unk_count_towards_unk() {
        let corpus = words("c a b é b B z c a b B <unk> é");
        let v = VocabTrainer::new(4).fit(corpus).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> b B a"));
        // 1 literal <unk> + c 2 + é 2 + z 1.
        assert_eq!(v.vocab().counts(), Some(&[6, 3, 2, 2][..]));
    }

    #[test]
    fn small_corpora_give_small_vocabularies() {
        let v = VocabTrainer::default().fit(words("x y x")).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> x y"));
        let v = VocabTrainer::default().fit([]).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk>"));
        let v = VocabTrainer::default().finish().expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk>"));
        let v = VocabTrainer::new(2).fit(words("<unk> <unk>")).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk>"));
        assert_eq!(v.vocab().counts(), Some(&[2][..]));
    }

    #[test]
    fn feeding_in_pieces_equals_fitting_at_once_and_fit_leaves_the_trainer_alone() {
        let mut trainer = VocabTrainer::new(4);
        trainer.feed(words("c a b é")).expect("valid");
        let before = trainer.clone();
        // `fit` counts what was fed plus its argument, without consuming the trainer.
        let fitted = trainer.fit(words("b B z c a b B <unk> é")).expect("fits");
        assert_eq!(trainer, before);
        trainer.feed(words("b B z")).expect("valid");
        trainer.feed([]).expect("valid");
        trainer.feed(words("c a b B <unk> é")).expect("valid");
        let fed = trainer.finish().expect("fits");
        assert_eq!(fed, fitted);
        assert_eq!(fed, VocabTrainer::new(4).fit(words("c a b é b B z c a b B <unk> é")).expect("fits"));
    }

    #[test]
    fn max_size_below_two_is_a_config_error() {
        for max_size in [0, 1] {
            let results = [
                VocabTrainer::new(max_size).fit(words("a b")).map(drop),
                VocabTrainer::new(max_size).feed(words("a b")),
                VocabTrainer::new(max_size).finish().map(drop),
            ];
            for result in results {
                match result {
                    Err(Error::Config { field, message }) => {
                        assert_eq!(field, "vectorizer.max_size");
                        assert!(message.contains("at least 2"), "{message}");
                    }
                    other => panic!("expected a config error, got {other:?}"),
                }
            }
        }
        assert!(VocabTrainer::new(2).validate().is_ok());
    }
}
