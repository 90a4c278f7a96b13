"""Checks a tokenizer.json Stagewise wrote against the Python `tokenizers` package (and tokie).

    stagewise train-tokenizer --kind bpe --data data/shakespeare.txt --vocab-size 8192 \
        --min-frequency 2 --out /tmp/bpe.json
    stagewise encode --tokenizer /tmp/bpe.json --input data/shakespeare.txt > /tmp/ids.txt
    python benches/reference/check_tokenizer.py --tokenizer /tmp/bpe.json \
        --data data/shakespeare.txt --ids /tmp/ids.txt [--train-bpe 8192 --min-frequency 2]

1. `tokenizers` loads the file and encodes every line of --data to the ids Stagewise wrote
   (--ids, the output of `stagewise encode`); so does tokie if it is installed.
2. With --train-bpe N: `tokenizers`' BpeTrainer, given the same settings (256-byte alphabet,
   `<|endoftext|>`, min_frequency), trains on --data the same vocabulary and merges, in order.

Prints one line per check and exits 1 if any differs.
"""

import argparse
import json
import sys
import tempfile

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--train-bpe", type=int)
    ap.add_argument("--min-frequency", type=int, default=2)
    args = ap.parse_args()
    ok = True

    with open(args.data, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    with open(args.ids, encoding="utf-8") as f:
        ours = [[int(x) for x in line.split()] for line in f.read().split("\n")[: len(lines)]]

    tok = Tokenizer.from_file(args.tokenizer)
    theirs = [e.ids for e in tok.encode_batch(lines)]
    bad = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    same = len(ours) == len(theirs) and not bad
    print(f"tokenizers: {len(lines)} lines, {sum(map(len, theirs))} ids, "
          + ("same ids" if same else f"{len(bad)} lines differ, first line {bad[:1]}"), flush=True)
    ok &= same

    try:
        import tokie
    except ImportError:
        tokie = None
    if tokie is not None:
        t = tokie.Tokenizer.from_json(args.tokenizer)
        ids, lengths = t.encode_batch_flat(lines)
        flat = [i for line in ours for i in line]
        same = list(map(int, ids)) == flat and list(map(int, lengths)) == list(map(len, ours))
        print("tokie: " + ("same ids" if same else "ids differ"))
        ok &= same

    if args.train_bpe:
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.post_processor = processors.ByteLevel(trim_offsets=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=args.train_bpe,
            min_frequency=args.min_frequency,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train([args.data], trainer)
        with tempfile.NamedTemporaryFile("w+", suffix=".json") as f:
            hf.save(f.name)
            hf_model = json.load(open(f.name, encoding="utf-8"))["model"]
        our_model = json.load(open(args.tokenizer, encoding="utf-8"))["model"]
        same_vocab = hf_model["vocab"] == our_model["vocab"]
        same_merges = hf_model["merges"] == our_model["merges"]
        first = next((i for i, (a, b) in enumerate(zip(hf_model["merges"], our_model["merges"])) if a != b), None)
        print(f"BpeTrainer: {len(hf_model['merges'])} merges; vocabulary "
              + ("same" if same_vocab else "differs")
              + ", merges " + ("same, in order" if same_merges else f"differ from merge {first}"))
        ok &= same_vocab and same_merges

    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
