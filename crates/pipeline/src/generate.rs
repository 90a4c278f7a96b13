//! The output box: greedy continuation of a prompt by a trained model.

use crate::config::Config;
use crate::model::Model;
use stagewise_core::{Ctx, Error, Params, Result};
use stagewise_tokenizer::Tokenizer;
use stagewise_vectorizer::Vectorizer;

/// Index of the largest value (the first on ties).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// The most likely id other than `<unk>` (id 0): a continuation of `<unk>`s says nothing, and an
/// undertrained model predicts `<unk>` (the most frequent id) far more often than any word.
fn most_likely_word(logits: &[f32]) -> u32 {
    if logits.len() > 1 { argmax(&logits[1..]) as u32 + 1 } else { 0 }
}

/// Feeds `prompt` through a one-stream copy of the model token by token, then appends `tokens`
/// greedy (arg-max, `<unk>` excluded) predictions, each fed back in. Returns the continuation
/// only, detokenized.
pub fn greedy_continuation(
    config: &Config,
    params: &Params<f32>,
    tokenizer: &impl Tokenizer,
    vectorizer: &impl Vectorizer,
    prompt: &str,
    tokens: usize,
) -> Result<String> {
    let ids = vectorizer.vectorize(&tokenizer.tokenize(prompt)?)?;
    if ids.is_empty() {
        return Err(Error::config("generate.prompt", "the prompt has no tokens"));
    }
    let mut model = Model::<f32>::from_config(config, vectorizer.vocab_size(), 1, 1)?;
    if model.tape.params.layout() != params.layout() {
        return Err(Error::shape("generation model parameters", "the trained layout", "a different layout"));
    }
    model.tape.params.as_mut_slice().copy_from_slice(params.as_slice());
    model.reset_state();
    let cx = Ctx::seq().eval();
    let mut next = 0;
    for &id in &ids {
        next = most_likely_word(model.predict(&[id], &cx)?);
    }
    let mut out = Vec::with_capacity(tokens);
    for _ in 0..tokens {
        out.push(next);
        next = most_likely_word(model.predict(&[next], &cx)?);
    }
    Ok(tokenizer.decode(&vectorizer.decode(&out)?))
}
