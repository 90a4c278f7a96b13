#!/usr/bin/env python3
"""Re-verify a stagewise-parity-v1 fixture.

Loads the file, rebuilds the model from the stored float32 initial
parameters, and recomputes loss, gradients and the Adam trajectory

* in float32 (what a float32 implementation such as Stagewise should match,
  within --tol), and
* in float64 (should reproduce the stored values up to float32 rounding).

Prints the max absolute deviation per group and exits non-zero if the float32
loss/grad deviation exceeds --tol.

Example:
    python benches/reference/check_fixture.py \
        crates/pipeline/tests/fixtures/parity_small.safetensors
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Tuple

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lstm_lm import PARAM_NAMES, LstmLm  # noqa: E402
from make_parity_fixture import FORMAT, loss_fn  # noqa: E402


def load(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


def recompute(t: Dict[str, torch.Tensor], lr: float, steps: int, dtype: torch.dtype):
    V, E = t["embedding.weight"].shape
    H = t["lstm.weight_hh_l0"].shape[1]
    model = LstmLm(V, E, H).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(t[name].to(dtype))
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    loss0 = None
    grads = {}
    traj = {}
    for k in range(1, max(steps, 1) + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, t["inputs"], t["targets"])
        loss.backward()
        if k == 1:
            loss0 = loss.detach().reshape(1).clone()
            grads = {n: params[n].grad.detach().clone() for n in PARAM_NAMES}
        if steps == 0:
            break
        opt.step()
        for n in PARAM_NAMES:
            traj[f"step{k}.{n}"] = params[n].detach().clone()
    return loss0, grads, traj


def maxdev(a: torch.Tensor, b: torch.Tensor) -> Tuple[float, float]:
    a = a.double()
    b = b.double()
    d = (a - b).abs()
    rel = d / b.abs().clamp_min(1e-6)
    return d.max().item(), rel.max().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--tol", type=float, default=1e-5, help="max abs deviation allowed for float32 loss/grads")
    args = ap.parse_args()

    torch.set_num_threads(1)
    t, meta = load(args.path)
    if meta.get("format") != FORMAT:
        sys.exit(f"unexpected format {meta.get('format')!r}")
    lr = float(meta["lr"])
    steps = int(meta["adam_steps"])
    print(f"{args.path}: {os.path.getsize(args.path)} bytes, metadata {meta}")
    for k in sorted(t):
        print(f"  {k:28s} {str(t[k].dtype):14s} {list(t[k].shape)}")

    # Sanity: ids in range, hidden state etc.
    V = t["embedding.weight"].shape[0]
    assert t["inputs"].dtype == torch.int64 and t["targets"].dtype == torch.int64
    assert int(t["inputs"].max()) < V and int(t["targets"].max()) < V

    ok = True
    for dtype in (torch.float32, torch.float64):
        loss, grads, traj = recompute(t, lr, steps, dtype)
        label = str(dtype).replace("torch.", "")
        a, r = maxdev(loss, t["loss"])
        g_abs = 0.0
        g_rel = 0.0
        for n in PARAM_NAMES:
            ga, gr = maxdev(grads[n], t[f"grad.{n}"])
            g_abs = max(g_abs, ga)
            g_rel = max(g_rel, gr)
        s_abs = {}
        for k in range(1, steps + 1):
            s_abs[k] = max(maxdev(traj[f"step{k}.{n}"], t[f"step{k}.{n}"])[0] for n in PARAM_NAMES)
        print(
            f"[{label}] loss |d|={a:.3e} (rel {r:.3e}); grads max|d|={g_abs:.3e} (max rel, denom>=1e-6: {g_rel:.3e}); "
            + "; ".join(f"step{k} max|d|={v:.3e}" for k, v in s_abs.items())
        )
        if dtype == torch.float32 and (a > args.tol or g_abs > args.tol):
            ok = False

    # Informational: gradient magnitudes (Adam is ill-conditioned where |g| ~ eps).
    nz = torch.cat([t[f"grad.{n}"].abs().flatten() for n in PARAM_NAMES])
    nz = nz[nz > 0]
    print(
        f"grad stats: max|g|={nz.max().item():.3e}, min nonzero |g|={nz.min().item():.3e}, "
        f"exact zeros={sum(int((t[f'grad.{n}'] == 0).sum()) for n in PARAM_NAMES)}"
    )
    print("OK" if ok else f"FAIL: float32 deviation above tol {args.tol}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
