"""Test loss of a BPE run in nats per character, from its test loss in nats per token.

    python benches/reference/nats_per_char.py --run runs/bpe-shakespeare

Reads the run's tokenizer.json, config.toml and metrics.jsonl, tokenizes the corpus as the run did
(the whole text at once; `tokenizers` gives the same ids as Stagewise), takes the test split (the
last floor(n * test_fraction) ids), cuts it into `train.batch` streams as the run does
(`batchify`, the remainder dropped) and counts the characters of the tokens the model predicted
(each stream's ids after its first). Then nats per character = test_loss * targets / characters,
the total test NLL over the characters of the text it predicted.
"""

import argparse
import json
import os
import tomllib

from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.run, "config.toml"), "rb") as f:
        config = tomllib.load(f)
    with open(os.path.join(args.run, "metrics.jsonl"), encoding="utf-8") as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    tok = Tokenizer.from_file(os.path.join(args.run, "tokenizer.json"))
    with open(config["data"]["path"], encoding="utf-8", newline="") as f:
        text = f.read()
    ids = tok.encode(text, add_special_tokens=False).ids
    n_test = int(len(ids) * config["data"]["test_fraction"])
    test = ids[len(ids) - n_test:]
    batch = config["train"]["batch"]
    steps = len(test) // batch
    targets, chars = 0, 0
    for b in range(batch):
        stream = test[b * steps:(b + 1) * steps]
        targets += len(stream) - 1
        chars += len(tok.decode(stream[1:], skip_special_tokens=False))
    nll = last["test_loss"] * targets
    print(json.dumps({
        "epoch": last["epoch"], "test_loss_per_token": last["test_loss"], "targets": targets,
        "characters": chars, "chars_per_token": chars / targets, "test_nats_per_char": nll / chars,
    }))


if __name__ == "__main__":
    main()
