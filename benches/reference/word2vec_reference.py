"""gensim word2vec with the settings of `cargo xtask vectors`, for the quality and speed comparison.

Trains gensim's Word2Vec on the same tokens as `stagewise vectors` (the `word` tokenizer: the
corpus lower-cased and split on whitespace, cut into sentences of 10,000 tokens, the unit of work
both tools use), with the same settings and threads, and prints the training time and the Spearman
correlation on WordSim-353 pairs whose words are in the vocabulary (gensim's
`evaluate_word_pairs`). With --ours FILE it also scores another vector file the same way, so both
numbers come from one evaluator.

    python benches/reference/word2vec_reference.py --epochs 10 --threads 2 [--ours vectors.txt]
"""

import argparse
import time

from gensim.models import KeyedVectors, Word2Vec

p = argparse.ArgumentParser()
p.add_argument("--data", default="data/shakespeare.txt")
p.add_argument("--pairs", default="data/wordsim353.tsv")
p.add_argument("--dim", type=int, default=100)
p.add_argument("--window", type=int, default=5)
p.add_argument("--negative", type=int, default=5)
p.add_argument("--min-count", type=int, default=5)
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--cbow", action="store_true")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--out", help="also save gensim's vectors (word2vec text)")
p.add_argument("--ours", help="a vector file to score with gensim's evaluator too")
args = p.parse_args()

with open(args.data, encoding="utf-8") as f:
    tokens = f.read().lower().split()
sentences = [tokens[i:i + 10000] for i in range(0, len(tokens), 10000)]

model = Word2Vec(
    vector_size=args.dim, window=args.window, negative=args.negative, hs=0,
    min_count=args.min_count, sg=0 if args.cbow else 1, workers=args.threads, seed=args.seed,
    sample=1e-3, alpha=0.025, min_alpha=0.0001,
)
model.build_vocab(sentences)
start = time.perf_counter()
model.train(sentences, total_examples=len(sentences), epochs=args.epochs)
seconds = time.perf_counter() - start
pearson, (rho, _), oov = model.wv.evaluate_word_pairs(args.pairs)
print(f"gensim: {len(tokens)} tokens, vocabulary {len(model.wv)}, train {seconds:.2f} s "
      f"({len(tokens) * args.epochs / seconds:.0f} words/s)")
print(f"gensim: spearman {rho:.4f} (oov {oov:.1f} %)")
if args.out:
    model.wv.save_word2vec_format(args.out)
if args.ours:
    kv = KeyedVectors.load_word2vec_format(args.ours, binary=args.ours.endswith(".bin"))
    pearson, (rho, _), oov = kv.evaluate_word_pairs(args.pairs)
    print(f"ours (gensim's evaluator): spearman {rho:.4f} (oov {oov:.1f} %)")
