"""Stagewise PyTorch reference: model and data protocol.

This module is the executable specification that the Rust crates are
compared against.  It is imported by ``train_reference.py``,
``make_parity_fixture.py`` and ``check_fixture.py``.  Nothing in the Rust
build depends on it.

Protocol summary (see README.md for the full text):

* tokenize:   ``text.lower().split()`` on the file decoded as UTF-8
* split:      ``n_test = n // 10``; train = first ``n - n_test`` tokens,
              test = the last ``n_test`` tokens
* vocab:      count TRAIN tokens, sort by (count desc, UTF-8 bytes asc),
              keep the first ``N - 1``; id 0 is ``<unk>``, then ids 1.. in
              that order; unknown tokens map to 0
* batchify:   ``[nb, B]`` time-major, stream ``b`` = b-th contiguous chunk
* windows:    ``for i in range(0, nb - 1, T)``; ``x = data[i:i+L]``,
              ``y = data[i+1:i+1+L]`` with ``L = min(T, nb - 1 - i)``
* state:      (h, c) zero at the start of every epoch / evaluation, carried
              across windows and detached (truncated BPTT)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

UNK = "<unk>"

Hidden = Tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
class LstmLm(nn.Module):
    """Embedding -> 1-layer LSTM (time-major) -> Linear.

    state_dict names (and shapes, with V/E/H the vocab/embedding/hidden sizes):

    ==================  =========
    embedding.weight    [V, E]
    lstm.weight_ih_l0   [4H, E]
    lstm.weight_hh_l0   [4H, H]
    lstm.bias_ih_l0     [4H]
    lstm.bias_hh_l0     [4H]
    fc.weight           [V, H]
    fc.bias             [V]
    ==================  =========

    The 4H rows of the LSTM tensors are the gates in PyTorch order
    ``i, f, g, o`` (input, forget, cell candidate, output):

        gates = x W_ih^T + b_ih + h W_hh^T + b_hh
        i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the 4 H-slices
        c' = f * c + i * g
        h' = o * tanh(c')

    All parameters use PyTorch's default initialisation
    (Embedding: N(0, 1); LSTM: U(-1/sqrt(H), 1/sqrt(H));
    Linear: U(-1/sqrt(H), 1/sqrt(H)) for weight and bias).
    """

    def __init__(self, vocab_size: int, emb: int = 100, hidden: int = 128):
        super().__init__()
        self.vocab_size = vocab_size
        self.emb_size = emb
        self.hidden_size = hidden
        self.embedding = nn.Embedding(vocab_size, emb)
        self.lstm = nn.LSTM(emb, hidden, num_layers=1, batch_first=False)
        self.fc = nn.Linear(hidden, vocab_size)

    def init_hidden(self, batch: int, dtype=None, device=None) -> Hidden:
        """Zero (h, c), each of shape [1, B, H]."""
        p = self.fc.weight
        dtype = dtype or p.dtype
        device = device or p.device
        z = torch.zeros(1, batch, self.hidden_size, dtype=dtype, device=device)
        return (z, z.clone())

    def forward(self, x: torch.Tensor, hidden: Hidden) -> Tuple[torch.Tensor, Hidden]:
        """x: [T, B] int64 -> (logits [T, B, V], (h, c) each [1, B, H])."""
        e = self.embedding(x)  # [T, B, E]
        out, hidden = self.lstm(e, hidden)  # [T, B, H]
        logits = self.fc(out)  # [T, B, V]
        return logits, hidden


class RnnLm(nn.Module):
    """Embedding -> ``layers`` recurrent layers of ``kind`` -> Linear, the models of the Stagewise
    configs (``[forward] kind, hidden, layers, dropout``; ``[embedding] init, freeze, tied``).

    ``kind`` is ``lstm`` (``nn.LSTM``), ``gru`` (``nn.GRU``) or ``rnn_tanh``
    (``nn.RNN(nonlinearity="tanh")``); the recurrent module is named ``lstm``, ``gru`` or ``rnn``, so
    the state_dict names are Stagewise's (``gru.weight_ih_l0``, ``rnn.bias_hh_l1``, ...).
    Dropout is placed as in pytorch/examples' word_language_model: on the embedded input, between
    layers (the module's own ``dropout``) and before the head. ``tied``: the head's weight is the
    embedding table (``fc.weight`` is ``embedding.weight``); ``init="uniform"``: U(-0.1, 0.1)
    for the table; ``freeze``: the table is not trained. With ``kind="lstm"``, one layer and none
    of the extras this is ``LstmLm``.
    """

    MODULES = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn"}

    def __init__(
        self,
        vocab_size: int,
        emb: int = 100,
        hidden: int = 128,
        kind: str = "lstm",
        layers: int = 1,
        dropout: float = 0.0,
        tied: bool = False,
        init: str = "normal",
        freeze: bool = False,
    ):
        super().__init__()
        if kind not in self.MODULES:
            raise ValueError(f"unknown kind {kind!r}")
        self.vocab_size = vocab_size
        self.emb_size = emb
        self.hidden_size = hidden
        self.kind = kind
        self.layers = layers
        self.embedding = nn.Embedding(vocab_size, emb)
        if init == "uniform":
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.embedding.weight.requires_grad_(not freeze)
        self.drop = nn.Dropout(dropout)
        between = dropout if layers > 1 else 0.0
        if kind == "lstm":
            rnn = nn.LSTM(emb, hidden, num_layers=layers, dropout=between)
        elif kind == "gru":
            rnn = nn.GRU(emb, hidden, num_layers=layers, dropout=between)
        else:
            rnn = nn.RNN(emb, hidden, num_layers=layers, nonlinearity="tanh", dropout=between)
        setattr(self, self.MODULES[kind], rnn)
        self.fc = nn.Linear(hidden, vocab_size)
        if tied:
            if hidden != emb:
                raise ValueError("tied needs hidden == emb")
            self.fc.weight = self.embedding.weight

    @property
    def rnn_module(self) -> nn.Module:
        return getattr(self, self.MODULES[self.kind])

    def init_hidden(self, batch: int):
        """Zero state: ``(h, c)`` for the LSTM, ``h`` otherwise, each ``[layers, B, H]``."""
        p = self.fc.bias
        z = torch.zeros(self.layers, batch, self.hidden_size, dtype=p.dtype, device=p.device)
        return (z, z.clone()) if self.kind == "lstm" else z

    def forward(self, x: torch.Tensor, hidden):
        e = self.drop(self.embedding(x))
        out, hidden = self.rnn_module(e, hidden)
        logits = self.fc(self.drop(out))
        return logits, hidden


PARAM_NAMES = (
    "embedding.weight",
    "lstm.weight_ih_l0",
    "lstm.weight_hh_l0",
    "lstm.bias_ih_l0",
    "lstm.bias_hh_l0",
    "fc.weight",
    "fc.bias",
)


def detach_hidden(hidden):
    """Detaches an LSTM's ``(h, c)`` or a GRU's / RNN's ``h``."""
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return (hidden[0].detach(), hidden[1].detach())


# --------------------------------------------------------------------------
# Data protocol
# --------------------------------------------------------------------------
def read_text(path: str) -> str:
    """Read the corpus as UTF-8 (strict)."""
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def tokenize(text: str) -> List[str]:
    """``text.lower().split()``.

    Note for re-implementers: Python's ``str.split()`` splits on runs of
    characters for which ``str.isspace()`` is true; this is Unicode
    White_Space *plus* U+001C..U+001F.  ``str.lower()`` is the full Unicode
    lowercase mapping (including the final-sigma rule).
    """
    return text.lower().split()


def split_train_test(tokens: Sequence[str]) -> Tuple[List[str], List[str]]:
    n = len(tokens)
    n_test = n // 10
    return list(tokens[: n - n_test]), list(tokens[n - n_test :])


class Vocab:
    """id 0 = ``<unk>``; ids 1.. = train tokens by (count desc, UTF-8 asc)."""

    def __init__(self, train_tokens: Sequence[str], max_size: int = 10000):
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        counts = Counter(train_tokens)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode("utf-8")))
        kept = [w for w, _ in ranked[: max_size - 1]]
        self.itos: List[str] = [UNK] + kept
        self.stoi: Dict[str, int] = {}
        for i, w in enumerate(self.itos):
            # A literal "<unk>" in the corpus would get its own id here; it
            # does not occur in the Shakespeare corpus.
            self.stoi.setdefault(w, i)
        self.counts = counts

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> List[int]:
        get = self.stoi.get
        return [get(w, 0) for w in tokens]


def batchify(ids: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """1-D int64 ids -> [nb, B]; column b is the b-th contiguous chunk."""
    nb = ids.numel() // batch
    data = ids[: nb * batch]
    return data.view(batch, nb).t().contiguous()


def windows(data: torch.Tensor, bptt: int = 64) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y), each [L, B], L = min(bptt, nb - 1 - i)."""
    nb = data.size(0)
    for i in range(0, nb - 1, bptt):
        seq_len = min(bptt, nb - 1 - i)
        yield data[i : i + seq_len], data[i + 1 : i + 1 + seq_len]


def num_targets(data: torch.Tensor) -> int:
    """Number of predicted tokens over all windows of ``data``: (nb-1)*B."""
    nb, b = data.shape
    return max(nb - 1, 0) * b


class Corpus:
    """Tokenised, split, vocabularised and encoded corpus."""

    def __init__(self, path: str, vocab_size: int = 10000):
        self.path = path
        text = read_text(path)
        self.tokens = tokenize(text)
        self.train_tokens, self.test_tokens = split_train_test(self.tokens)
        self.vocab = Vocab(self.train_tokens, vocab_size)
        self.train_ids = torch.tensor(self.vocab.encode(self.train_tokens), dtype=torch.long)
        self.test_ids = torch.tensor(self.vocab.encode(self.test_tokens), dtype=torch.long)


# --------------------------------------------------------------------------
# Baseline, training, evaluation
# --------------------------------------------------------------------------
def unigram_ppl(train_ids: torch.Tensor, test_ids: torch.Tensor, vocab_size: int) -> float:
    """Add-one unigram perplexity: p(id) = (count(id) + 1) / (n_train + V).

    Counts come from ALL train ids (OOV tokens counted as id 0); the
    perplexity is over ALL test ids (not the batchify-truncated stream).
    """
    counts = torch.bincount(train_ids, minlength=vocab_size).double()
    logp = torch.log((counts + 1.0) / (train_ids.numel() + vocab_size))
    nll = -logp[test_ids].sum().item() / test_ids.numel()
    return math.exp(nll)


def train_epoch(model: LstmLm, data: torch.Tensor, opt: torch.optim.Optimizer, bptt: int = 64) -> Tuple[float, int]:
    """One epoch of truncated BPTT. Returns (mean NLL per target token, n targets)."""
    model.train()
    vocab = model.vocab_size
    hidden = model.init_hidden(data.size(1))
    total_nll = 0.0
    total_tok = 0
    for x, y in windows(data, bptt):
        hidden = detach_hidden(hidden)
        logits, hidden = model(x, hidden)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n = y.numel()
        total_nll += loss.item() * n
        total_tok += n
    return total_nll / max(total_tok, 1), total_tok


@torch.no_grad()
def evaluate(model: LstmLm, data: torch.Tensor, bptt: int = 64) -> Dict[str, float]:
    """Returns test_loss (summed NLL / n), test_ppl, test_acc, n_tokens."""
    model.eval()
    vocab = model.vocab_size
    hidden = model.init_hidden(data.size(1))
    total_nll = 0.0
    correct = 0
    total_tok = 0
    for x, y in windows(data, bptt):
        logits, hidden = model(x, hidden)
        flat = logits.reshape(-1, vocab)
        yy = y.reshape(-1)
        total_nll += F.cross_entropy(flat, yy, reduction="sum").item()
        correct += (flat.argmax(dim=1) == yy).sum().item()
        total_tok += yy.numel()
    loss = total_nll / max(total_tok, 1)
    return {
        "test_loss": loss,
        "test_ppl": math.exp(loss),
        "test_acc": correct / max(total_tok, 1),
        "n_tokens": total_tok,
    }
