"""Times the Python tokenizer libraries on a corpus, for `cargo xtask bench-tokenizers`.

    python benches/reference/bench_tokenizers.py --data data/shakespeare.txt \
        --tokenizer stagewise-trained.json --vocab-size 8192 --min-frequency 2 --threads 2

Prints one JSON object: the best of --repeats in-process times, in seconds, of
- `hf_train`: `tokenizers`' BpeTrainer (byte-level, as Stagewise trains) on the file;
- `spm_train`: SentencePiece BPE training on the file (same vocabulary size);
- `tokie_encode`: tokie loading --tokenizer and encoding every line with `encode_batch_flat`,
  each repeat in a fresh process (cold: nothing loaded or cached before);
- `hf_encode`: `tokenizers` encoding every line with `encode_batch` (the file already loaded).
Thread counts are set with RAYON_NUM_THREADS (both Rust libraries use rayon) and SentencePiece's
`num_threads`. Interpreter start-up and imports are not counted.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def lines_of(path):
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def hf_train(args):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    start = time.perf_counter()
    tok.train([args.data], trainer)
    return time.perf_counter() - start


def spm_train(args):
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        spm.SentencePieceTrainer.train(
            input=args.data,
            model_prefix=os.path.join(tmp, "m"),
            vocab_size=args.vocab_size,
            model_type="bpe",
            num_threads=args.threads,
            minloglevel=2,
        )
        return time.perf_counter() - start


def tokie_encode_once(args):
    """Runs in a fresh process: load, then encode every line once."""
    import tokie

    lines = lines_of(args.data)
    start = time.perf_counter()
    t = tokie.Tokenizer.from_json(args.tokenizer)
    ids, lengths = t.encode_batch_flat(lines)
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "ids": int(len(ids))}))


def tokie_encode(args):
    best, ids = float("inf"), 0
    for _ in range(args.repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--data", args.data, "--tokenizer", args.tokenizer, "--tokie-once"],
            check=True, capture_output=True, text=True,
        ).stdout
        r = json.loads(out)
        best, ids = min(best, r["seconds"]), r["ids"]
    return best, ids


def hf_encode(args):
    from tokenizers import Tokenizer

    lines = lines_of(args.data)
    tok = Tokenizer.from_file(args.tokenizer)
    start = time.perf_counter()
    tok.encode_batch(lines)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--min-frequency", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokie-once", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    if args.tokie_once:
        tokie_encode_once(args)
        return
    import tokenizers
    import sentencepiece
    import tokie

    result = {
        "versions": {
            "tokenizers": tokenizers.__version__,
            "sentencepiece": sentencepiece.__version__,
            "tokie": getattr(tokie, "__version__", None) or _dist_version("tokie"),
        },
        "hf_train": min(hf_train(args) for _ in range(args.repeats)),
        "spm_train": min(spm_train(args) for _ in range(args.repeats)),
    }
    result["tokie_encode"], result["tokie_ids"] = tokie_encode(args)
    result["hf_encode"] = min(hf_encode(args) for _ in range(args.repeats))
    print(json.dumps(result))


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
