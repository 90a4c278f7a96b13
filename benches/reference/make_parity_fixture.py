#!/usr/bin/env python3
"""Write the Stagewise gradient/Adam parity fixture (format stagewise-parity-v1).

The computation is done in float64 with initial parameters that are first
rounded to float32, so the stored float32 initial values are exactly what the
computation used.  Outputs are cast to float32 for storage, or, with
``--dtype float64``, stored in float64 as computed: ``stagewise parity`` then
runs the whole check in f64 and should agree to about 1e-12.

Tensors in the file (V=vocab, E=emb, H=hidden, B=batch, T=bptt; "float"
is float32, or float64 with ``--dtype float64``):

    <name>            float    initial parameter, for each state_dict name
    inputs            int64    [B, T]  (batch-first; transpose -> [T, B])
    targets           int64    [B, T]
    loss              float    [1]     mean CE over all B*T tokens
    grad.<name>       float    d loss / d <name> at the initial parameters
    step{k}.<name>    float    parameters after k Adam steps, k = 1..adam_steps
                               (each step: zero hidden, forward, loss, backward
                               on the same batch, then Adam)

Metadata: lr, adam_steps, format = "stagewise-parity-v1", dtype (plus the
sizes and seed, for information).

Examples (the two committed fixtures):
    python benches/reference/make_parity_fixture.py \
        --out crates/pipeline/tests/fixtures/parity_small.safetensors
    python benches/reference/make_parity_fixture.py --dtype float64 \
        --out crates/pipeline/tests/fixtures/parity_small_f64.safetensors
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lstm_lm import PARAM_NAMES, LstmLm  # noqa: E402

FORMAT = "stagewise-parity-v1"


def loss_fn(model: LstmLm, inputs_bt: torch.Tensor, targets_bt: torch.Tensor) -> torch.Tensor:
    """Mean CE over all B*T tokens, zero initial hidden state."""
    x = inputs_bt.t().contiguous()  # [T, B]
    y = targets_bt.t().contiguous()
    logits, _ = model(x, model.init_hidden(x.size(1)))
    return F.cross_entropy(logits.reshape(-1, model.vocab_size), y.reshape(-1))


def build(args) -> Dict[str, torch.Tensor]:
    torch.manual_seed(args.seed)
    # Default-initialise in float32, then promote: the float64 parameters are
    # exactly representable in float32.
    model = LstmLm(args.vocab, args.emb, args.hidden)
    model = model.double()
    inputs = torch.randint(0, args.vocab, (args.batch, args.bptt), dtype=torch.long)
    targets = torch.randint(0, args.vocab, (args.batch, args.bptt), dtype=torch.long)

    params = dict(model.named_parameters())
    assert tuple(params) == PARAM_NAMES, tuple(params)
    for name, p in params.items():
        assert torch.equal(p.detach().float().double(), p.detach()), name

    store = torch.float64 if args.dtype == "float64" else torch.float32
    out: Dict[str, torch.Tensor] = {}
    for name in PARAM_NAMES:
        out[name] = params[name].detach().to(store).clone().contiguous()
    out["inputs"] = inputs.contiguous()
    out["targets"] = targets.contiguous()

    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    for k in range(1, args.adam_steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, inputs, targets)
        loss.backward()
        if k == 1:
            out["loss"] = loss.detach().reshape(1).to(store).clone()
            for name in PARAM_NAMES:
                out[f"grad.{name}"] = params[name].grad.detach().to(store).clone().contiguous()
        opt.step()
        for name in PARAM_NAMES:
            out[f"step{k}.{name}"] = params[name].detach().to(store).clone().contiguous()

    if args.adam_steps == 0:
        loss = loss_fn(model, inputs, targets)
        loss.backward()
        out["loss"] = loss.detach().reshape(1).to(store).clone()
        for name in PARAM_NAMES:
            out[f"grad.{name}"] = params[name].grad.detach().to(store).clone().contiguous()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=50)
    ap.add_argument("--emb", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=12)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--bptt", type=int, default=5)
    ap.add_argument("--adam-steps", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="how the tensors are stored (the computation is float64 either way)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    tensors = build(args)
    meta = {
        "lr": str(args.lr),
        "adam_steps": str(args.adam_steps),
        "format": FORMAT,
        "vocab": str(args.vocab),
        "emb": str(args.emb),
        "hidden": str(args.hidden),
        "batch": str(args.batch),
        "bptt": str(args.bptt),
        "seed": str(args.seed),
        "dtype": args.dtype,
        "generator": f"make_parity_fixture.py (torch {torch.__version__}, float64 compute)",
    }
    d = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(d, exist_ok=True)
    save_file(tensors, args.out, metadata=meta)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes), loss={tensors['loss'].item():.8f}")
    for name, t in tensors.items():
        print(f"  {name:28s} {str(t.dtype):14s} {list(t.shape)}")


if __name__ == "__main__":
    main()
