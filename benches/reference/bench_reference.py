#!/usr/bin/env python3
"""Throughput of the PyTorch reference, measured like ``stagewise bench-run``.

Prepares the corpus with the reference protocol (``lstm_lm.Corpus``: tokenizer,
train/test split, vocabulary; ``batchify`` of the training split into B
streams; ``windows`` of T steps), builds the config's model (``LstmLm`` for the
seed's one LSTM layer; ``RnnLm`` for ``[forward] kind = "gru" | "rnn_tanh"``,
several ``layers``, ``dropout`` or a ``tied``, ``uniform`` or frozen
``[embedding]``), runs ``--warmup``
windows, then times ``--windows`` more, in order from the start of the
training split with the recurrent state carried and detached between windows
(restarting from a zero state if the split runs out):

* ``train``: forward, cross-entropy, backward and an Adam step per window
  (exactly ``lstm_lm.train_epoch``'s loop body);
* ``infer``: forward to the logits under ``torch.no_grad()``.

Prints one JSON line (the keys of ``stagewise bench-run``)::

    {"impl": "pytorch", "config": "seed", "threads": 2, "mode": "train",
     "tokens_per_s": ..., "peak_rss_mb": ..., ...}

``tokens_per_s`` counts target tokens (B x steps per window) of the timed
windows per wall second; ``peak_rss_mb`` is ``ru_maxrss`` of this process
(KiB on Linux) in MiB.

Example (from the repository root)::

    python benches/reference/bench_reference.py --config large --threads 2 \\
        --mode train --windows 10 --warmup 2 --data data/shakespeare.txt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    raise SystemExit(
        "error: bench_reference.py reads the sizes from configs/*.toml and needs Python >= 3.11 "
        f"(tomllib); this is Python {sys.version.split()[0]}"
    ) from None

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lstm_lm import Corpus, LstmLm, RnnLm, batchify, detach_hidden, windows  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))


def load_config(spec: str) -> tuple[str, dict]:
    """``seed``/``large`` (configs/NAME.toml) or a path to a Stagewise TOML config -> (name, sizes)."""
    path = spec if spec.endswith(".toml") else os.path.join(ROOT, "configs", spec + ".toml")
    name = os.path.splitext(os.path.basename(path))[0]
    with open(path, "rb") as f:
        c = tomllib.load(f)
    # Defaults are the seed configuration's, as in crates/pipeline/src/config.rs.
    train = c.get("train", {})
    opt = c.get("optimizer", {})
    fwd = c.get("forward", {})
    emb = c.get("embedding", {})
    sizes = {
        "emb": emb.get("dim", 100),
        "hidden": fwd.get("hidden", 128),
        "kind": fwd.get("kind", "lstm"),
        "layers": fwd.get("layers", 1),
        "dropout": fwd.get("dropout", 0.0),
        "tied": emb.get("tied", False),
        "init": emb.get("init", "normal"),
        "freeze": emb.get("freeze", False),
        "batch": train.get("batch", 32),
        "bptt": train.get("bptt", 64),
        "vocab": c.get("vectorizer", {}).get("max_size", 10000),
        "lr": opt.get("lr", 1e-3),
        "seed": train.get("seed", 0),
        "data": c.get("data", {}).get("path"),
    }
    test_fraction = c.get("data", {}).get("test_fraction", 0.1)
    if test_fraction != 0.1:
        raise SystemExit(f"error: {path}: the reference protocol holds out n // 10 tokens, not {test_fraction}")
    return name, sizes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="seed", help="seed | large | path/to/config.toml")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--mode", choices=("train", "infer"), default="train")
    ap.add_argument("--windows", type=int, default=10, help="timed windows")
    ap.add_argument("--warmup", type=int, default=2, help="untimed windows first")
    ap.add_argument("--data", default=None, help="UTF-8 corpus (default: the config's data.path)")
    args = ap.parse_args()
    if args.windows < 1 or args.warmup < 0 or args.threads < 1:
        raise SystemExit("error: --windows and --threads must be at least 1, --warmup at least 0")

    name, c = load_config(args.config)
    data_path = args.data or c["data"] or os.path.join(ROOT, "data", "shakespeare.txt")

    torch.set_num_threads(args.threads)
    torch.manual_seed(c["seed"])
    corpus = Corpus(data_path, c["vocab"])
    vocab = len(corpus.vocab)
    data = batchify(corpus.train_ids, c["batch"])
    del corpus
    extras = (c["layers"], c["dropout"], c["tied"], c["init"], c["freeze"]) != (1, 0.0, False, "normal", False)
    if c["kind"] == "lstm" and not extras:
        model = LstmLm(vocab, c["emb"], c["hidden"])
    else:
        model = RnnLm(
            vocab,
            c["emb"],
            c["hidden"],
            kind=c["kind"],
            layers=c["layers"],
            dropout=c["dropout"],
            tied=c["tied"],
            init=c["init"],
            freeze=c["freeze"],
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=c["lr"], betas=(0.9, 0.999), eps=1e-8)

    if args.mode == "train":
        model.train()

        def step(x: torch.Tensor, y: torch.Tensor, hidden):
            hidden = detach_hidden(hidden)
            logits, hidden = model(x, hidden)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return hidden

    else:
        model.eval()

        @torch.no_grad()
        def step(x: torch.Tensor, y: torch.Tensor, hidden):
            _logits, hidden = model(x, hidden)
            return hidden

    batch = data.size(1)
    it = windows(data, c["bptt"])
    hidden = model.init_hidden(batch)

    def next_window():
        nonlocal it, hidden
        w = next(it, None)
        if w is None:  # end of the split: start again from a zero state, as an epoch would
            it = windows(data, c["bptt"])
            hidden = model.init_hidden(batch)
            w = next(it)
        return w

    for _ in range(args.warmup):
        x, y = next_window()
        hidden = step(x, y, hidden)
    tokens = 0
    t0 = time.perf_counter()
    for _ in range(args.windows):
        x, y = next_window()
        hidden = step(x, y, hidden)
        tokens += y.numel()
    seconds = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "impl": "pytorch",
                "config": name,
                "threads": torch.get_num_threads(),
                "mode": args.mode,
                "tokens_per_s": tokens / max(seconds, 1e-12),
                "peak_rss_mb": peak_rss_mb(),
                "windows": args.windows,
                "warmup": args.warmup,
                "tokens": tokens,
                "seconds": seconds,
                "embed": c["emb"],
                "hidden": c["hidden"],
                "kind": c["kind"],
                "layers": c["layers"],
                "vocab": vocab,
                "batch": batch,
                "bptt": c["bptt"],
                "torch": torch.__version__,
            },
            separators=(",", ":"),
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
