//! The output box: greedy continuation of a prompt by a trained model, any model.

use crate::model::Model;
use stagewise_backward::Backward;
use stagewise_core::{Ctx, Error, Result, Tokens};
use stagewise_embedding::Embedding;
use stagewise_forward::Forward;
use stagewise_loss::Loss;
use stagewise_optimizer::Optimizer;
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

/// Feeds `prompt` through `model` token by token from a zero state, then appends `tokens` greedy
/// (arg-max, `<unk>` excluded) predictions, each fed back in. Returns the continuation only,
/// detokenized.
///
/// Works on a model built for any batch: every stream is fed the same token and stream 0's
/// prediction is taken (for `B` streams this costs `B` times a one-stream model's work, which is
/// small for the one-step windows of generation). The model's recurrent state is reset first and
/// left wherever generation ends.
pub fn greedy_continuation<E, F, L, B, O>(
    model: &mut Model<f32, E, F, L, B, O>,
    tokenizer: &impl Tokenizer,
    vectorizer: &impl Vectorizer,
    prompt: &str,
    tokens: usize,
) -> Result<String>
where
    E: Embedding<f32>,
    F: Forward<f32>,
    L: Loss<f32>,
    B: Backward<f32>,
    O: Optimizer<f32>,
{
    let cx = Ctx::seq().eval();
    let mut prompt_tokens = Tokens::new();
    tokenizer.run(prompt, &mut prompt_tokens, &cx)?;
    let ids = vectorizer.vectorize(&prompt_tokens)?;
    if ids.is_empty() {
        return Err(Error::config("generate.prompt", "the prompt has no tokens"));
    }
    let (batch, vocab) = (model.dims.batch, model.dims.vocab);
    model.reset_state();
    let step = |model: &mut Model<f32, E, F, L, B, O>, id: u32| -> Result<u32> {
        let logits = model.predict(&vec![id; batch], &cx)?;
        Ok(most_likely_word(&logits[..vocab]))
    };
    let mut next = 0;
    for &id in &ids {
        next = step(model, id)?;
    }
    let mut out = Vec::with_capacity(tokens);
    for _ in 0..tokens {
        out.push(next);
        next = step(model, next)?;
    }
    let mut words = Tokens::new();
    vectorizer.decode(&out, &mut words)?;
    Ok(tokenizer.decode(&words))
}
