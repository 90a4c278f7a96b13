"""PyTorch reference for Stagewise's `classify` task: a text classifier on CSV files.

The program Stagewise's design comes from: nn.Embedding(V, 100) -> nn.LSTM(100, 128) over
packed sequences -> Linear to the classes; cross-entropy, Adam 1e-3, batch 32, 10 epochs; the
vocabulary is the training tokens seen at least twice (others map to <unk>, id 1; <pad> is id 0).
Tokens are Stagewise's `word` tokenizer's (lower-cased whitespace split), each text cut to its
first `--max-tokens` tokens. Pooling `last` is the LSTM's final state of each packed sequence
(the state at the text's last real token); `mean` averages the states over the real tokens.

Prints the majority-class test accuracy first, then one line per epoch (train loss, test loss,
test accuracy, macro-F1, seconds), and the total training time.

    python benches/reference/classify_reference.py --pooling last --threads 2
    python benches/reference/classify_reference.py --pooling mean --threads 2
"""

import argparse
import collections
import csv
import json
import random
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def read(path, text_column, label_column):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r[text_column] for r in rows], [r[label_column] for r in rows]


def tokenize(text, max_tokens):
    return text.lower().split()[:max_tokens]


class Classifier(nn.Module):
    def __init__(self, vocab, classes, dim, hidden, pooling):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)
        self.pooling = pooling

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        if self.pooling == "last":
            pooled = h[-1]
        else:
            padded, _ = pad_packed_sequence(out, batch_first=True)
            pooled = padded.sum(dim=1) / lengths.unsqueeze(1).to(padded.dtype)
        return self.fc(pooled)


def batches(encoded, labels, order, batch):
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        lengths = torch.tensor([len(encoded[j]) for j in idx])
        ids = torch.zeros(len(idx), int(lengths.max()), dtype=torch.long)
        for row, j in enumerate(idx):
            ids[row, : len(encoded[j])] = torch.tensor(encoded[j])
        yield ids, lengths, torch.tensor([labels[j] for j in idx])


def macro_f1(truth, pred, classes):
    f1s = []
    for c in range(classes):
        tp = sum(1 for t, p in zip(truth, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, pred) if t == c and p != c)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(f1s) / classes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default="data/fortunes/train.csv")
    ap.add_argument("--test", default="data/fortunes/test.csv")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--label-column", default="label")
    ap.add_argument("--pooling", choices=["last", "mean"], default="last")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--min-count", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metrics", help="also write one JSON line per epoch to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    train_texts, train_labels = read(args.train, args.text_column, args.label_column)
    test_texts, test_labels = read(args.test, args.text_column, args.label_column)
    classes = sorted(set(train_labels))
    class_id = {c: i for i, c in enumerate(classes)}
    y_train = [class_id[l] for l in train_labels]
    y_test = [class_id[l] for l in test_labels]  # KeyError on a label never seen in training
    train_tokens = [tokenize(t, args.max_tokens) for t in train_texts]
    test_tokens = [tokenize(t, args.max_tokens) for t in test_texts]
    counts = collections.Counter(tok for toks in train_tokens for tok in toks)
    vocab = {"<pad>": 0, "<unk>": 1}
    for tok, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if n >= args.min_count:
            vocab[tok] = len(vocab)
    encode = lambda toks: [vocab.get(t, 1) for t in toks]
    x_train = [encode(t) for t in train_tokens]
    x_test = [encode(t) for t in test_tokens]

    majority = collections.Counter(y_train).most_common(1)[0][0]
    maj_acc = sum(1 for y in y_test if y == majority) / len(y_test)
    print(f"vocabulary {len(vocab)}, {len(classes)} classes, {len(x_train)} train / {len(x_test)} test texts")
    print(f"majority class `{classes[majority]}`: test acc {maj_acc:.4f}")

    model = Classifier(len(vocab), len(classes), args.dim, args.hidden, args.pooling)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    started = time.perf_counter()
    lines = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = list(range(len(x_train)))
        random.shuffle(order)
        total, n = 0.0, 0
        for ids, lengths, y in batches(x_train, y_train, order, args.batch):
            opt.zero_grad()
            loss = loss_fn(model(ids, lengths), y)
            (loss / len(y)).backward()
            opt.step()
            total += loss.item()
            n += len(y)
        model.eval()
        test_loss, pred = 0.0, []
        with torch.no_grad():
            for ids, lengths, y in batches(x_test, y_test, list(range(len(x_test))), args.batch):
                logits = model(ids, lengths)
                test_loss += loss_fn(logits, y).item()
                pred.extend(logits.argmax(dim=1).tolist())
        acc = sum(1 for t, p in zip(y_test, pred) if t == p) / len(y_test)
        m = {
            "epoch": epoch,
            "train_loss": total / n,
            "test_loss": test_loss / len(y_test),
            "test_acc": acc,
            "macro_f1": macro_f1(y_test, pred, len(classes)),
            "seconds": time.perf_counter() - started,
        }
        lines.append(json.dumps(m))
        print(
            f"epoch {epoch}: train loss {m['train_loss']:.4f} | test loss {m['test_loss']:.4f} | "
            f"test acc {acc:.4f} | macro-F1 {m['macro_f1']:.4f} | {m['seconds']:.1f} s"
        )
    print(f"{args.epochs} epochs in {time.perf_counter() - started:.1f} s on {args.threads} threads")
    if args.metrics:
        with open(args.metrics, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
