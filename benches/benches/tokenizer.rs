//! The tokenize box: [`WordTokenizer`] over the whole bundled corpus (`data/shakespeare.txt`),
//! reported in bytes of text per second.
//!
//! The stage lower-cases each word straight into the arena of a [`Tokens`] list that is reused
//! across iterations (cleared, capacity kept), so a warm iteration allocates nothing: what is
//! measured is the split, the lower-casing and the copy into the arena.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use stagewise_benches::{corpus_text, criterion_config};
use stagewise_core::{Ctx, Stage, Tokens};
use stagewise_tokenizer::WordTokenizer;
use std::hint::black_box;

fn tokenizer(c: &mut Criterion) {
    let text = corpus_text();
    let tokenizer = WordTokenizer::new();
    let cx = Ctx::seq();
    let mut out = Tokens::new();
    // Warm the output list to its final capacity, outside the measurement.
    tokenizer.run(&text, &mut out, &cx).expect("the word tokenizer never fails");

    let mut group = c.benchmark_group("tokenizer");
    group.throughput(Throughput::Bytes(text.len() as u64));
    // Iterations take milliseconds to seconds: the same count per sample, not 1, 2, .., 10.
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("word/corpus", |b| {
        b.iter(|| {
            tokenizer.run(black_box(&text), &mut out, &cx).expect("the word tokenizer never fails");
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = tokenizer
}
criterion_main!(benches);
