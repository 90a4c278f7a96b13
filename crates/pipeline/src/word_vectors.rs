//! The word-vector commands of the `stagewise` binary: `vectors` (train word2vec on a corpus and
//! write a vector file), `vectors-eval` (Spearman's rho on a word-similarity set) and
//! `neighbors` (nearest words by cosine).

use crate::config::check_threads;
use crate::data::{read_corpus, test_count};
use crate::pretrained::thousands;
use stagewise_core::{Ctx, Error, Result, Stage, Tokens};
use stagewise_tokenizer::TokenizerConfig;
use stagewise_vectorizer::vectors::similarity::{evaluate_pairs, read_pairs};
use stagewise_vectorizer::word2vec::{Word2VecConfig, Word2VecTrainer};
use stagewise_vectorizer::{VectorFormat, Vectors};
use std::path::PathBuf;

/// The flags of `stagewise vectors`.
#[derive(Clone, Debug, clap::Args)]
pub struct VectorsArgs {
    /// The UTF-8 corpus.
    #[arg(long)]
    pub data: PathBuf,
    /// The vector file to write (word2vec text, or binary with --binary).
    #[arg(long)]
    pub out: PathBuf,
    /// Vector width.
    #[arg(long, default_value_t = 100)]
    pub dim: usize,
    /// Largest distance between a word and its context words.
    #[arg(long, default_value_t = 5)]
    pub window: usize,
    /// Negative samples per context word.
    #[arg(long, default_value_t = 5)]
    pub negative: usize,
    /// Fewest occurrences for a word to get a vector.
    #[arg(long, default_value_t = 5)]
    pub min_count: u64,
    /// Passes over the corpus.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Worker threads (0 = all cores; at most 1024). More than one is not reproducible (Hogwild).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// CBOW (predict a word from the mean of its context) instead of skip-gram.
    #[arg(long)]
    pub cbow: bool,
    /// Write the word2vec binary format instead of text.
    #[arg(long)]
    pub binary: bool,
    /// Subsampling threshold for frequent words (0 = none).
    #[arg(long, default_value_t = 1e-3)]
    pub sample: f64,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.025)]
    pub alpha: f64,
    /// Final learning rate (reached linearly at the end of the last epoch).
    #[arg(long, default_value_t = 0.0001)]
    pub min_alpha: f64,
    /// Seed of every random number.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The tokenizer: `word` (lower-cased whitespace split) or `char`.
    #[arg(long, default_value = "word")]
    pub tokenizer: String,
    /// Train on all but the last FRACTION of the tokens (the test split of a `train` run with
    /// `data.test_fraction = FRACTION`), so the vectors never see the test text.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub test_fraction: f64,
    /// Write only the N most frequent words.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Runs `stagewise vectors`: prints the vocabulary, one loss line per epoch and the file written.
pub fn run_vectors(args: &VectorsArgs) -> Result<()> {
    check_threads("--threads", args.threads)?;
    if !(0.0..1.0).contains(&args.test_fraction) {
        return Err(Error::config("--test-fraction", format!("{} is not in [0, 1)", args.test_fraction)));
    }
    let tokenizer = match args.tokenizer.as_str() {
        "word" => TokenizerConfig::Word {},
        "char" => TokenizerConfig::Char {},
        other => {
            return Err(Error::config("--tokenizer", format!("unknown tokenizer `{other}` (word or char)")));
        }
    }
    .build()?;
    let config = Word2VecConfig {
        dim: args.dim,
        window: args.window,
        negative: args.negative,
        min_count: args.min_count,
        epochs: args.epochs,
        threads: args.threads,
        sample: args.sample,
        alpha: args.alpha,
        min_alpha: args.min_alpha,
        cbow: args.cbow,
        seed: args.seed,
    };
    config.validate()?;
    let mut tokens = Tokens::new();
    tokenizer.run(&read_corpus(&args.data)?, &mut tokens, &Ctx::seq())?;
    let n = tokens.len() - test_count(tokens.len(), args.test_fraction);
    let mut trainer = Word2VecTrainer::new(config, tokens.iter().take(n))?;
    drop(tokens);
    let model = if args.cbow { "cbow" } else { "skip-gram" };
    println!(
        "corpus: {} tokens; vocabulary {} words (min count {}); {model}, dim {}, window {}, negative {}",
        thousands(trainer.corpus_len()),
        thousands(trainer.vocab().len()),
        args.min_count,
        args.dim,
        args.window,
        args.negative
    );
    trainer.train(|r| {
        println!(
            "epoch {}: loss {:.4} | {} updates | {:.0} words/s | {:.2} s",
            r.epoch,
            r.loss,
            thousands(r.updates as usize),
            r.words_per_s,
            r.seconds
        )
    })?;
    let vectors = trainer.vectors(args.limit);
    let format = if args.binary { VectorFormat::Word2vecBinary } else { VectorFormat::Word2vec };
    vectors.write(&args.out, format)?;
    println!(
        "wrote {} ({} vectors of dimension {}, {})",
        args.out.display(),
        thousands(vectors.len()),
        vectors.dim(),
        format.name()
    );
    Ok(())
}

/// The flags of `stagewise vectors-eval`.
#[derive(Clone, Debug, clap::Args)]
pub struct VectorsEvalArgs {
    /// A vector file (format detected unless --format is given).
    #[arg(long)]
    pub vectors: PathBuf,
    /// Word pairs with human similarity scores (`word1 word2 score` per line).
    #[arg(long, default_value = "data/wordsim353.tsv")]
    pub pairs: PathBuf,
    /// The vector file's layout: word2vec, word2vec_binary, fasttext or glove.
    #[arg(long)]
    pub format: Option<String>,
}

/// Runs `stagewise vectors-eval`: prints Spearman's rho and the pairs used.
pub fn run_vectors_eval(args: &VectorsEvalArgs) -> Result<()> {
    let format = args.format.as_deref().map(|f| VectorFormat::from_name(f, "--format")).transpose()?;
    let vectors = Vectors::read(&args.vectors, format)?;
    let pairs = read_pairs(&args.pairs)?;
    let e = evaluate_pairs(&vectors, &pairs);
    println!(
        "spearman {:.4} on {} of {} pairs of {} (both words in the vectors' vocabulary)",
        e.spearman,
        e.used,
        e.total,
        args.pairs.display()
    );
    Ok(())
}

/// The flags of `stagewise neighbors`.
#[derive(Clone, Debug, clap::Args)]
pub struct NeighborsArgs {
    /// A vector file (format detected unless --format is given).
    #[arg(long)]
    pub vectors: PathBuf,
    /// The word whose neighbours to list.
    pub word: String,
    /// How many neighbours.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// The vector file's layout: word2vec, word2vec_binary, fasttext or glove.
    #[arg(long)]
    pub format: Option<String>,
}

/// Runs `stagewise neighbors`: one `word similarity` line per neighbour, most similar first.
pub fn run_neighbors(args: &NeighborsArgs) -> Result<()> {
    let format = args.format.as_deref().map(|f| VectorFormat::from_name(f, "--format")).transpose()?;
    let vectors = Vectors::read(&args.vectors, format)?;
    let list = vectors.neighbors(&args.word, args.k).ok_or_else(|| {
        Error::data(args.vectors.display().to_string(), format!("no vector for `{}`", args.word))
    })?;
    let mut text = String::new();
    for (word, sim) in list {
        text.push_str(&format!("{word} {sim:.4}\n"));
    }
    crate::cli::write_stdout(&text)
}
