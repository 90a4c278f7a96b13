//! The vectorize box: [`VocabVectorizer`](stagewise_vectorizer::VocabVectorizer) encoding every
//! token of the bundled corpus, reported in tokens per second.
//!
//! The vocabulary (V = 10,000) is fitted once on the corpus's tokens (a
//! [`Tokens`](stagewise_core::Tokens) list), outside the measurement; the id vector is reused, so
//! the timed loop is one slice of the token arena and one hash lookup per token.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use stagewise_benches::{Corpus, criterion_config, seed};
use stagewise_core::{Ctx, Stage};
use std::hint::black_box;

fn vectorizer(c: &mut Criterion) {
    let Corpus { tokens, vectorizer, .. } = Corpus::load(seed().vocab);
    let cx = Ctx::seq();
    let mut ids = Vec::with_capacity(tokens.len());

    let mut group = c.benchmark_group("vectorizer");
    group.throughput(Throughput::Elements(tokens.len() as u64));
    // Iterations take milliseconds to seconds: the same count per sample, not 1, 2, .., 10.
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("vocab_encode/corpus", |b| {
        b.iter(|| {
            vectorizer.run(black_box(&tokens), &mut ids, &cx).expect("vectorizing never fails");
            black_box(ids.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = vectorizer
}
criterion_main!(benches);
