//! The built-in vectorizer: one hash lookup per token in a fitted [`Vocab`].

use crate::{Vectorizer, Vocab};
use stagewise_core::{Ctx, Error, Result, Stage, Tokens};
use std::path::Path;

/// Maps each token to its id in a [`Vocab`], unknown tokens to [`UNK_ID`](crate::UNK_ID) (0).
///
/// Made by a [`VocabTrainer`](crate::VocabTrainer) from the training tokens, or from a saved
/// vocabulary with [`VocabVectorizer::load`]; it cannot exist without its vocabulary.
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
    type Input<'a> = &'a Tokens;
    type Output = Vec<u32>;

    fn name(&self) -> &str {
        Self::NAME
    }

    /// Clears `out` and pushes the id of each token of `input`, 0 for unknown ones. Fails only
    /// for a closed vocabulary ([`Vocab::closed`]) given a token outside it.
    fn run(&self, input: &Tokens, out: &mut Vec<u32>, _cx: &Ctx) -> Result<()> {
        out.clear();
        if self.vocab.is_closed() {
            out.reserve(input.len());
            for (i, token) in input.iter().enumerate() {
                let id = self.vocab.get(token).ok_or_else(|| {
                    Error::data(
                        "vectorizer \"vocab\"",
                        format!("token {i} ({token:?}) is not in the tokenizer's vocabulary"),
                    )
                })?;
                out.push(id);
            }
            return Ok(());
        }
        out.extend(input.iter().map(|token| self.vocab.id_of(token)));
        Ok(())
    }
}

impl Vectorizer for VocabVectorizer {
    /// On error `out` is left empty rather than half decoded.
    fn decode(&self, ids: &[u32], out: &mut Tokens) -> Result<()> {
        out.clear();
        for &id in ids {
            let Some(token) = self.vocab.token(id) else {
                out.clear();
                return Err(Error::data(
                    "vectorizer \"vocab\": decode",
                    format!("id {id} is out of range for a vocabulary of {} ids", self.vocab.len()),
                ));
            };
            out.push(token);
        }
        Ok(())
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn id_of(&self, token: &str) -> u32 {
        self.vocab.id_of(token)
    }

    fn unk_id(&self) -> Option<u32> {
        (!self.vocab.is_closed()).then_some(crate::UNK_ID)
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
        let ids = v.vectorize(&Tokens::from(&["cat", "dog", "the", "<unk>"][..])).expect("never fails");
        assert_eq!(ids, [2, 0, 1, 0]);
        let mut out = Tokens::from(&["stale"][..]);
        v.decode(&ids, &mut out).expect("in range");
        assert_eq!(out.to_vec(), ["cat", "<unk>", "the", "<unk>"]);
        assert_eq!(v.name(), "vocab");
    }

    #[test]
    fn a_closed_vocabulary_has_no_unk_and_refuses_unknown_tokens() {
        let tokens = ["!", "the", "Ġcat"].map(String::from).to_vec();
        let v = VocabVectorizer::new(Vocab::closed(tokens).expect("valid"));
        assert_eq!(v.vectorize(&Tokens::from(&["Ġcat", "!", "the"][..])).expect("known"), [2, 0, 1]);
        assert_eq!(v.unk_id(), None);
        assert_eq!(vectorizer().unk_id(), Some(0));
        let err = v.vectorize(&Tokens::from(&["the", "dog"][..])).expect_err("unknown").to_string();
        assert!(err.contains("token 1") && err.contains("dog"), "{err}");
        let back = Vocab::from_json(&v.vocab().to_json(), "v.json").expect("reads back");
        assert_eq!(&back, v.vocab());
        assert!(back.is_closed() && back.to_json().contains("\"closed\": true"));
        assert!(Vocab::closed(Vec::new()).is_err());
        assert!(Vocab::closed(["a", "a"].map(String::from).to_vec()).is_err());
    }

    #[test]
    fn decoding_an_out_of_range_id_is_an_error_and_leaves_the_output_empty() {
        let mut out = Tokens::from(&["stale"][..]);
        let err = vectorizer().decode(&[1, 3], &mut out).expect_err("3 >= V");
        assert!(err.to_string().contains("id 3 is out of range for a vocabulary of 3 ids"), "{err}");
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn run_reuses_the_output_buffer() {
        let v = vectorizer();
        let mut out = vec![7, 7, 7, 7, 7];
        v.run(&Tokens::from(&["the", "cat"][..]), &mut out, &Ctx::seq()).expect("never fails");
        assert_eq!(out, [1, 2]);
        v.run(&Tokens::new(), &mut out, &Ctx::seq()).expect("never fails");
        assert!(out.is_empty());
    }
}
