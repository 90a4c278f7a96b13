#!/usr/bin/env python3
"""Train the PyTorch reference LSTM LM with the Stagewise protocol.

Example:
    python benches/reference/train_reference.py --data data/shakespeare.txt \
        --epochs 1 --threads 2 --seed 0 --out runs/reference
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lstm_lm import Corpus, LstmLm, batchify, evaluate, num_targets, train_epoch, unigram_ppl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="UTF-8 text corpus")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=64)
    ap.add_argument("--emb", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", default="runs/reference", help="directory for metrics.jsonl")
    args = ap.parse_args()

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    corpus = Corpus(args.data, args.vocab)
    V = len(corpus.vocab)
    train_data = batchify(corpus.train_ids, args.batch)
    test_data = batchify(corpus.test_ids, args.batch)
    print(
        f"torch {torch.__version__} python {platform.python_version()} threads={torch.get_num_threads()} seed={args.seed}"
    )
    print(
        f"data {args.data}: tokens={len(corpus.tokens)} train={len(corpus.train_tokens)} "
        f"test={len(corpus.test_tokens)} vocab={V} "
        f"train_oov={int((corpus.train_ids == 0).sum())} test_oov={int((corpus.test_ids == 0).sum())}"
    )
    print(
        f"batchify B={args.batch}: train {tuple(train_data.shape)} ({num_targets(train_data)} targets), "
        f"test {tuple(test_data.shape)} ({num_targets(test_data)} targets); bptt={args.bptt}"
    )
    base = unigram_ppl(corpus.train_ids, corpus.test_ids, V)
    print(f"unigram baseline (add-one) test ppl = {base:.4f}", flush=True)

    model = LstmLm(V, args.emb, args.hidden)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model V={V} E={args.emb} H={args.hidden} params={n_params}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)

    os.makedirs(args.out, exist_ok=True)
    metrics_path = os.path.join(args.out, "metrics.jsonl")

    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        train_loss, n_tok = train_epoch(model, train_data, opt, args.bptt)
        train_s = time.perf_counter() - t0
        ev = evaluate(model, test_data, args.bptt)
        seconds = time.perf_counter() - t0
        rec = {
            "epoch": epoch,
            "train_loss": train_loss,
            "test_loss": ev["test_loss"],
            "test_ppl": ev["test_ppl"],
            "test_acc": ev["test_acc"],
            "tokens_per_s": n_tok / train_s,
            "seconds": seconds,
        }
        print(
            f"epoch {epoch} train_loss {train_loss:.4f} test_loss {ev['test_loss']:.4f} "
            f"test_ppl {ev['test_ppl']:.2f} test_acc {ev['test_acc']:.4f} "
            f"tokens/s {n_tok / train_s:.0f} train_s {train_s:.1f} seconds {seconds:.1f}",
            flush=True,
        )
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak RSS {rss_kib / 1024:.1f} MiB (ru_maxrss={rss_kib} KiB)")
    print(f"wall time {time.perf_counter() - t_start:.1f} s; metrics appended to {metrics_path}")


if __name__ == "__main__":
    main()
