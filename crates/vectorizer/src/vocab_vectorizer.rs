//! The built-in vectorizer: one hash lookup per token in a fitted [`Vocab`].

use crate::{Vectorizer, Vocab};
use stagewise_core::{Ctx, Dims, Error, Result, Stage};
use std::path::Path;

/// Maps each token to its id in a [`Vocab`], unknown tokens to [`UNK_ID`](crate::UNK_ID) (0).
///
/// Made by [`VocabTrainer::fit`](crate::VocabTrainer::fit) from the training tokens, or from a
/// saved vocabulary with [`VocabVectorizer::load`]; it cannot exist without its vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocabVectorizer {
    vocab: Vocab,
}

impl VocabVectorizer {
    /// The name this vectorizer reports and the `kind` that selects it in a config file.
    pub const NAME: &'static str = "vocab";

    /// The vectorizer for an existing vocabulary (hand-built, or from a checkpoint).
    pub fn new(vocab: Vocab) -> Self {
        VocabVectorizer { vocab }
    }

    /// The vocabulary, to save it, report its size or read its counts.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Gives the vocabulary back, for callers that only needed the stage to build it.
    pub fn into_vocab(self) -> Vocab {
        self.vocab
    }

    /// Saves the vocabulary atomically as versioned JSON; see [`Vocab::save`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.vocab.save(path)
    }

    /// Loads a vocabulary saved by [`VocabVectorizer::save`]; see [`Vocab::load`] for the errors.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Vocab::load(path).map(Self::new)
    }
}

impl From<Vocab> for VocabVectorizer {
    fn from(vocab: Vocab) -> Self {
        Self::new(vocab)
    }
}

impl Stage for VocabVectorizer {
    type Input<'a> = &'a [String];
    type Output = Vec<u32>;

    fn name(&self) -> &str {
        Self::NAME
    }

    /// Nothing to size (the id count is the token count), but checks `dims.vocab` against the
    /// vocabulary: the embedding and output layers are sized by it, and a mismatch would make
    /// ids index the wrong rows.
    fn prepare(&mut self, dims: &Dims, _out: &mut Vec<u32>) -> Result<()> {
        if dims.vocab != self.vocab.len() {
            return Err(Error::shape("dims.vocab (vocabulary size)", self.vocab.len(), dims.vocab));
        }
        Ok(())
    }

    /// Clears `out` and pushes the id of each token of `input`, 0 for unknown ones. Never fails.
    fn run(&self, input: &[String], out: &mut Vec<u32>, _cx: &Ctx) -> Result<()> {
        out.clear();
        out.extend(input.iter().map(|token| self.vocab.id_of(token)));
        Ok(())
    }
}

impl Vectorizer for VocabVectorizer {
    fn decode(&self, ids: &[u32]) -> Result<Vec<String>> {
        ids.iter()
            .map(|&id| {
                self.vocab.token(id).map(str::to_owned).ok_or_else(|| {
                    Error::data(
                        "vectorizer \"vocab\": decode",
                        format!("id {id} is out of range for a vocabulary of {} ids", self.vocab.len()),
                    )
                })
            })
            .collect()
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn id_of(&self, token: &str) -> u32 {
        self.vocab.id_of(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectorizer() -> VocabVectorizer {
        let tokens = ["<unk>", "the", "cat"].map(String::from).to_vec();
        VocabVectorizer::new(Vocab::new(tokens, None).expect("valid"))
    }

    #[test]
    fn encodes_unknown_tokens_and_literal_unk_as_zero() {
        let v = vectorizer();
        let ids = v.vectorize(&["cat", "dog", "the", "<unk>"].map(String::from)).expect("never fails");
        assert_eq!(ids, [2, 0, 1, 0]);
        assert_eq!(v.decode(&ids).expect("in range"), ["cat", "<unk>", "the", "<unk>"]);
        assert_eq!(v.name(), "vocab");
    }

    #[test]
    fn decoding_an_out_of_range_id_is_an_error() {
        let err = vectorizer().decode(&[1, 3]).expect_err("3 >= V");
        assert!(err.to_string().contains("id 3 is out of range for a vocabulary of 3 ids"), "{err}");
    }

    #[test]
    fn prepare_checks_the_vocabulary_size() {
        let mut v = vectorizer();
        let mut dims = Dims { vocab: 3, embed: 4, hidden: 4, batch: 2, seq_len: 5, params: 0 };
        v.prepare(&dims, &mut Vec::new()).expect("sizes agree");
        dims.vocab = 4;
        assert!(matches!(v.prepare(&dims, &mut Vec::new()), Err(Error::Shape { .. })));
    }
}
