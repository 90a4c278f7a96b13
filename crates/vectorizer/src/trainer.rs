//! Fitting a vocabulary to a corpus.

use crate::{SPECIALS, UNK, VectorizerTrainer, Vocab, VocabVectorizer};
use stagewise_core::{Error, Result};
use std::collections::HashMap;

/// Builds a [`VocabVectorizer`] from training tokens, fed in one call or many
/// ([`VectorizerTrainer`]).
///
/// [`feed`](VectorizerTrainer::feed) counts every token;
/// [`finish`](VectorizerTrainer::finish) drops the tokens seen fewer than `min_count` times,
/// sorts the rest by count descending then by token bytes ascending, keeps the first
/// `max_size - 1 - specials.len()` and puts [`UNK`] in front at id 0, then the `specials` at
/// ids 1, 2, … in the order given. The sort makes the result deterministic: it depends only on
/// the multiset of tokens fed, not on their order, on how they were split across `feed` calls,
/// or on hash-map iteration. With fewer tokens left than that, the vocabulary is smaller:
/// V = 1 + specials + tokens kept.
///
/// With the defaults (`min_count` 1, no specials) this is the seed's vocabulary: `<unk>`, then
/// the `max_size - 1` most frequent training tokens.
///
/// A literal `"<unk>"` in the training tokens is treated as unknown: it is not ranked, and its
/// occurrences count towards `<unk>` (id 0), as do those of the tokens cut by `min_count` or
/// `max_size`. A literal configured special (`"<eos>"` with `specials = ["<eos>"]`) is not ranked
/// either: its occurrences are that special's count, so a special never collides with a corpus
/// token. A special that is not configured is an ordinary token.
///
/// Memory: one owned copy of each *distinct* token (made when it is first seen) and its count,
/// so feeding a million-token corpus costs its vocabulary, not its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocabTrainer {
    /// Most ids the vocabulary may have, `<unk>` and the specials included. At least 2 plus the
    /// number of specials (`<unk>`, the specials and one word).
    pub max_size: usize,
    /// Fewest training occurrences a token needs for an id of its own (at least 1; 1 keeps
    /// every token `max_size` leaves room for).
    pub min_count: u64,
    /// Special tokens placed after `<unk>`, in this order: each one of
    /// [`SPECIALS`](crate::SPECIALS), none twice.
    pub specials: Vec<String>,
    /// Occurrences of each distinct token fed so far, literal `<unk>` excluded (literal
    /// specials are set apart by `finish`, so the specials may be set at any time).
    counts: HashMap<String, u64>,
    /// Occurrences of literal `<unk>` fed so far.
    unk_count: u64,
}

impl VocabTrainer {
    /// The default `max_size`, the seed's 10 000 ids.
    pub const DEFAULT_MAX_SIZE: usize = 10_000;

    /// The default `min_count`: every token counts.
    pub const DEFAULT_MIN_COUNT: u64 = 1;

    /// A trainer keeping at most `max_size` ids, every token seen at least once, no specials,
    /// with nothing fed yet; the settings are checked by [`validate`](VocabTrainer::validate),
    /// which `feed` and `finish` call.
    pub fn new(max_size: usize) -> Self {
        VocabTrainer {
            max_size,
            min_count: Self::DEFAULT_MIN_COUNT,
            specials: Vec::new(),
            counts: HashMap::new(),
            unk_count: 0,
        }
    }

    /// This trainer keeping only the tokens seen at least `min_count` times.
    pub fn with_min_count(mut self, min_count: u64) -> Self {
        self.min_count = min_count;
        self
    }

    /// This trainer placing `specials` after `<unk>`, in this order.
    pub fn with_specials(mut self, specials: Vec<String>) -> Self {
        self.specials = specials;
        self
    }

    /// Errors ([`Error::Config`] naming the key) if `max_size` leaves no room for one corpus
    /// token (a vocabulary of `<unk>` and specials alone would map every word to the same id),
    /// if `min_count` is 0, or if a special is not one of [`SPECIALS`](crate::SPECIALS) or is
    /// listed twice.
    pub fn validate(&self) -> Result<()> {
        for (i, special) in self.specials.iter().enumerate() {
            if special == UNK {
                return Err(Error::config(
                    "vectorizer.specials",
                    format!("{UNK:?} is always id 0 and need not be listed; the specials are {SPECIALS:?}"),
                ));
            }
            if !SPECIALS.contains(&special.as_str()) {
                return Err(Error::config(
                    "vectorizer.specials",
                    format!("{special:?} is not a special token; choose from {SPECIALS:?}"),
                ));
            }
            if self.specials[..i].contains(special) {
                return Err(Error::config("vectorizer.specials", format!("{special:?} is listed twice")));
            }
        }
        let least = 2 + self.specials.len();
        if self.max_size < least {
            let what = match self.specials.len() {
                0 => String::from("<unk> and one token"),
                n => format!("<unk>, {n} specials and one token"),
            };
            return Err(Error::config(
                "vectorizer.max_size",
                format!("must be at least {least} ({what}), got {}", self.max_size),
            ));
        }
        if self.min_count == 0 {
            return Err(Error::config("vectorizer.min_count", "must be at least 1 (1 keeps every token)"));
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
    fn finish(mut self) -> Result<VocabVectorizer> {
        self.validate()?;
        let specials = self.specials.len();
        let mut vocab_tokens = Vec::with_capacity(self.max_size.min(self.counts.len() + 1 + specials));
        let mut vocab_counts = Vec::with_capacity(vocab_tokens.capacity());
        vocab_tokens.push(UNK.to_owned());
        vocab_counts.push(self.unk_count);
        for special in &self.specials {
            vocab_counts.push(self.counts.remove(special).unwrap_or(0));
            vocab_tokens.push(special.clone());
        }
        let mut ranked: Vec<(String, u64)> = self.counts.into_iter().collect();
        // Keys are distinct, so the order is total and an unstable sort is deterministic.
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
        let frequent = ranked.partition_point(|&(_, c)| c >= self.min_count);
        let keep = frequent.min(self.max_size - 1 - specials);
        vocab_counts[0] += ranked[keep..].iter().map(|&(_, c)| c).sum::<u64>();
        ranked.truncate(keep);
        for (token, count) in ranked {
            vocab_tokens.push(token);
            vocab_counts.push(count);
        }
        Ok(VocabVectorizer::new(Vocab::with_specials(vocab_tokens, specials, Some(vocab_counts))?))
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
    fn min_count_cuts_rare_tokens_into_unk() {
        // Counts: b 3, a 2, c 2, B 2, é 2, z 1, <unk> 1.
        let corpus = words("c a b é b B z c a b B <unk> é");
        let v = VocabTrainer::new(100).with_min_count(2).fit(corpus.clone()).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> b B a c é"));
        assert_eq!(v.vocab().counts(), Some(&[2, 3, 2, 2, 2, 2][..]));
        let v = VocabTrainer::new(100).with_min_count(3).fit(corpus.clone()).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> b"));
        assert_eq!(v.vocab().counts(), Some(&[10, 3][..]));
        // Both limits: min_count keeps 5 tokens, max_size 4 ids keeps 3 of them.
        let v = VocabTrainer::new(4).with_min_count(2).fit(corpus.clone()).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> b B a"));
        let v = VocabTrainer::new(100).with_min_count(4).fit(corpus).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk>"));
    }

    #[test]
    fn specials_follow_unk_in_order_and_never_collide_with_corpus_tokens() {
        let specials = |s: &str| words(s).into_iter().map(String::from).collect::<Vec<_>>();
        // "<eos>" appears in the text twice; "<pad>" is not configured, so it is a word.
        let corpus = words("a <eos> b a <pad> <eos> <pad> <pad>");
        let v =
            VocabTrainer::new(100).with_specials(specials("<eos> <bos>")).fit(corpus.clone()).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> <eos> <bos> <pad> a b"));
        assert_eq!(v.vocab().specials(), specials("<eos> <bos>"));
        assert_eq!(v.vocab().counts(), Some(&[0, 2, 0, 3, 2, 1][..]));
        // max_size counts the specials: 5 ids leave room for one word.
        let v = VocabTrainer::new(5).with_specials(specials("<pad> <bos> <eos>")).fit(corpus).expect("fits");
        assert_eq!(v.vocab().tokens(), words("<unk> <pad> <bos> <eos> a"));
        assert_eq!(v.vocab().counts(), Some(&[1, 3, 0, 2, 2][..]));
        // Setting the specials after feeding gives the same vocabulary.
        let mut late = VocabTrainer::new(5);
        late.feed(words("a <eos> b a <pad> <eos> <pad> <pad>")).expect("valid");
        let late = late.with_specials(specials("<pad> <bos> <eos>")).finish().expect("fits");
        assert_eq!(late.vocab().tokens(), words("<unk> <pad> <bos> <eos> a"));
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
