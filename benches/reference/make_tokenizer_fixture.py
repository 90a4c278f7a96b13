"""Makes the byte-level BPE fixture Stagewise's tokenizer tests compare against.

Trains a byte-level BPE with the Python `tokenizers` package (the same settings Stagewise's
trainer uses: GPT-2 pre-tokenization without a prefix space, the whole 256-byte alphabet,
`min_frequency` 2, one special token) on the first lines of data/shakespeare.txt plus some
multilingual, emoji and whitespace-edge lines, and writes into
crates/tokenizer/tests/fixtures/bpe/:

- train.txt: the training text (so the Rust test needs no Python and no slicing rules);
- tokenizer.json: the tokenizer `tokenizers` trained and saved;
- ids.jsonl: one {"text": ..., "ids": [...]} object per line of a few hundred lines (training
  lines, unseen Shakespeare lines and the edge lines), the ids `tokenizers` gives;
- ids_prefix_space.jsonl: the same lines' ids from the same tokenizer with the pre-tokenizer's
  `add_prefix_space` set (as some GPT-2-style files have it) and its merges written as "a b"
  strings (the layout of files made before tokenizers 0.20, GPT-2's among them).

Run from the repository root: `python benches/reference/make_tokenizer_fixture.py`.
"""

import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
OUT = os.path.join(ROOT, "crates", "tokenizer", "tests", "fixtures", "bpe")
TRAIN_LINES = 1500
VOCAB_SIZE = 1000

EDGE_LINES = [
    "Grüße aus Köln, naïve café — déjà vu.",
    "分词是自然语言处理的第一步。",
    "日本語のテキスト、カタカナとひらがな。",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "🙂🙃 emoji 👩‍👩‍👧‍👦 family 🇫🇷 flag",
    "tabs\tand\t\ttwo tabs",
    "   leading spaces and trailing spaces   ",
    "multiple    inner     spaces",
    "numbers 12345 3.14159 1,000,000 ٣٤٥ Ⅻ",
    "contractions: don't can't I'm we've they'll she'd it's 'tis O'er",
    "CAPS'S and 'RE and ''quoted''",
    "symbols !!! ??? ... --- +++ @#$%^&*()",
    "no\u00a0break\u2003em space\u3000ideographic",
    "zero\u200bwidth joiner\u200d",
    "combining e\u0301 a\u0308 o\u0302",
    "<|endoftext|> is special, <|endoftext|>twice<|endoftext|>",
    "\u0000control\u0007chars\u007f",
    " ",
    "",
    "x",
]


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(ROOT, "data", "shakespeare.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    train_text = "\n".join(lines[:TRAIN_LINES] + EDGE_LINES) + "\n"
    train_path = os.path.join(OUT, "train.txt")
    with open(train_path, "w", encoding="utf-8", newline="") as f:
        f.write(train_text)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([train_path], trainer)
    tok.save(os.path.join(OUT, "tokenizer.json"))

    sample = lines[:200] + lines[20000:20200] + EDGE_LINES
    with open(os.path.join(OUT, "ids.jsonl"), "w", encoding="utf-8") as f:
        for text in sample:
            ids = tok.encode(text).ids
            assert tok.decode(ids, skip_special_tokens=False) == text, text
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")
    doc = json.loads(tok.to_str())
    doc["pre_tokenizer"]["add_prefix_space"] = True
    doc["model"]["merges"] = [f"{a} {b}" for a, b in doc["model"]["merges"]]
    spaced = Tokenizer.from_str(json.dumps(doc))
    with open(os.path.join(OUT, "ids_prefix_space.jsonl"), "w", encoding="utf-8") as f:
        for text in sample:
            f.write(json.dumps({"text": text, "ids": spaced.encode(text).ids}, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(sample)} lines, vocabulary {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
