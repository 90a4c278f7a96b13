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

/// The most likely id other than `<unk>` (id 0, when the vocabulary has one): a continuation of
/// `<unk>`s says nothing, and an undertrained model predicts `<unk>` (the most frequent id) far
/// more often than any word. A tokenizer's own vocabulary (BPE) has no `<unk>`: every id counts.
fn most_likely_word(logits: &[f32], skip_unk: bool) -> u32 {
    if skip_unk && logits.len() > 1 { argmax(&logits[1..]) as u32 + 1 } else { argmax(logits) as u32 }
}

/// The most tokens one generation may ask for (`--tokens`, `generate.tokens`): generation writes
/// tokens as they come, in constant memory, but a billion tokens already take days on a CPU; a
/// larger count is refused up front rather than run until someone stops it.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// Checks a requested token count against [`MAX_TOKENS`]; `field` names the setting in errors.
pub fn check_token_count(tokens: u64, field: &str) -> Result<()> {
    if tokens > MAX_TOKENS {
        return Err(Error::config(
            field,
            format!("{tokens} tokens is more than the {MAX_TOKENS} one generation may ask for"),
        ));
    }
    Ok(())
}

/// Feeds `prompt` through `model` token by token from a zero state, then generates `tokens`
/// greedy (arg-max, `<unk>` excluded) predictions, each fed back in, handing the text each adds
/// to `emit` as it comes: constant memory for any count (at most [`MAX_TOKENS`]).
///
/// Works on a model built for any batch: every stream is fed the same token and stream 0's
/// prediction is taken (for `B` streams this costs `B` times a one-stream model's work, which is
/// small for the one-step windows of generation). The model's recurrent state is reset first and
/// left wherever generation ends.
pub fn generate<E, F, L, B, O>(
    model: &mut Model<f32, E, F, L, B, O>,
    tokenizer: &impl Tokenizer,
    vectorizer: &impl Vectorizer,
    prompt: &str,
    tokens: u64,
    mut emit: impl FnMut(&str) -> Result<()>,
) -> Result<()>
where
    E: Embedding<f32>,
    F: Forward<f32>,
    L: Loss<f32>,
    B: Backward<f32>,
    O: Optimizer<f32>,
{
    check_token_count(tokens, "generate.tokens")?;
    let cx = Ctx::seq().eval();
    let mut prompt_tokens = Tokens::new();
    tokenizer.run(prompt, &mut prompt_tokens, &cx)?;
    let ids = vectorizer.vectorize(&prompt_tokens)?;
    if ids.is_empty() {
        return Err(Error::config("generate.prompt", "the prompt has no tokens"));
    }
    let (batch, vocab) = (model.dims.batch, model.dims.vocab);
    let skip_unk = vectorizer.unk_id() == Some(0);
    let mut inputs = vec![0u32; batch];
    model.reset_state();
    let mut step = |model: &mut Model<f32, E, F, L, B, O>, id: u32| -> Result<u32> {
        inputs.fill(id);
        let logits = model.predict(&inputs, &cx)?;
        Ok(most_likely_word(&logits[..vocab], skip_unk))
    };
    let mut next = 0;
    for &id in &ids {
        next = step(model, id)?;
    }
    let (mut word, mut previous) = (Tokens::new(), None::<String>);
    for _ in 0..tokens {
        vectorizer.decode(&[next], &mut word)?;
        let token = word.get(0).unwrap_or_default();
        emit(&tokenizer.decode_next(previous.as_deref(), token))?;
        previous = Some(token.to_owned());
        next = step(model, next)?;
    }
    Ok(())
}

/// [`generate`]'s whole continuation as one string (for a short continuation, such as the one a
/// training run prints).
pub fn greedy_continuation<E, F, L, B, O>(
    model: &mut Model<f32, E, F, L, B, O>,
    tokenizer: &impl Tokenizer,
    vectorizer: &impl Vectorizer,
    prompt: &str,
    tokens: u64,
) -> Result<String>
where
    E: Embedding<f32>,
    F: Forward<f32>,
    L: Loss<f32>,
    B: Backward<f32>,
    O: Optimizer<f32>,
{
    let mut text = String::new();
    generate(model, tokenizer, vectorizer, prompt, tokens, |piece| {
        text.push_str(piece);
        Ok(())
    })?;
    Ok(text)
}
