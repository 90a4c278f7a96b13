#!/usr/bin/env python3
"""Write the Stagewise parity fixtures: the seed model's, or one per model configuration.

The computation is done in float64 with initial parameters that are first
rounded to float32, so the stored float32 initial values are exactly what the
computation used.  Outputs are cast to float32 for storage, or, with
``--dtype float64``, stored in float64 as computed: ``stagewise parity`` then
runs the whole check in f64 and should agree to about 1e-12.

Without ``--case`` / ``--all`` it writes the seed model's fixture (format
stagewise-parity-v1) to ``--out``.  Tensors (V=vocab, E=emb, H=hidden,
B=batch, T=bptt; "float" is float32, or float64 with ``--dtype float64``):

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

With ``--case NAME`` (repeatable) or ``--all`` it writes, for each case of
CASES, ``parity_<case>.safetensors`` and the Stagewise config that describes
the model, ``parity_<case>.toml``, into ``--dir`` (format
stagewise-parity-v2): the same tensors for the case's model (its state_dict
names: ``gru.weight_ih_l1``, no ``fc.weight`` when the head is tied to the
embedding, no ``grad.embedding.weight`` when the table is frozen), computed
with the case's loss (label smoothing, ignore_index), gradient clipping
(``torch.nn.utils.clip_grad_norm_``) and optimizer, plus

    grad_norm         float    [1]     total gradient norm before clipping

``grad.<name>`` is the gradient before clipping; a step is zero_grad,
forward from a zero state, loss, backward, clip, optimizer step.
Metadata: lr, steps, case, config (the TOML), format, dtype, sizes, seed.

Examples (the committed fixtures):
    python benches/reference/make_parity_fixture.py \
        --out crates/pipeline/tests/fixtures/parity_small.safetensors
    python benches/reference/make_parity_fixture.py --dtype float64 \
        --out crates/pipeline/tests/fixtures/parity_small_f64.safetensors
    python benches/reference/make_parity_fixture.py --all
    python benches/reference/make_parity_fixture.py --case gru --case clip
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
from lstm_lm import PARAM_NAMES, LstmLm, RnnLm  # noqa: E402

FORMAT = "stagewise-parity-v1"
CASE_FORMAT = "stagewise-parity-v2"
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "pipeline", "tests", "fixtures")

# Every case starts from BASE (the seed model at fixture size) and changes what its name says.
# Optimizer settings not given take PyTorch's defaults.
BASE = dict(
    kind="lstm", layers=1, tied=False, init="normal", freeze=False,
    vocab=50, emb=8, hidden=12, batch=3, bptt=5, steps=3, seed=0,
    label_smoothing=0.0, ignore_index=None, clip=0.0,
    optimizer=dict(kind="adam", lr=1e-3),
)
CASES = {
    "gru": dict(kind="gru"),
    "rnn_tanh": dict(kind="rnn_tanh"),
    "lstm_2layers": dict(layers=2),
    "gru_2layers": dict(kind="gru", layers=2),
    "rnn_tanh_2layers": dict(kind="rnn_tanh", layers=2),
    # The head's weight is the table, so hidden = emb; U(-0.1, 0.1) as the word-language-model ties it.
    "tied": dict(tied=True, init="uniform", emb=12),
    "frozen": dict(freeze=True),
    "adamw": dict(optimizer=dict(kind="adamw", lr=1e-2, weight_decay=0.1)),
    "adamw_matrices": dict(optimizer=dict(kind="adamw", lr=1e-2, weight_decay=0.1, decay_all=False)),
    "sgd_nesterov": dict(optimizer=dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "sgd_dampening": dict(optimizer=dict(kind="sgd", lr=0.1, momentum=0.5, dampening=0.3)),
    # Plain SGD, whose step is proportional to the gradient, so the clipping shows in every step
    # (Adam's step hardly depends on the gradient's scale). The script checks that it clips.
    "clip": dict(clip=0.1, optimizer=dict(kind="sgd", lr=0.5)),
    "label_smoothing": dict(label_smoothing=0.1),
    "ignore_index": dict(ignore_index=0),
    # Everything at once. Adam's step is lr·m/(sqrt(v) + eps): where a (clipped) gradient is near
    # eps = 1e-8, as a few of this model's are, a float32 rounding of 1e-11 in it moves the step by
    # about 1e-5 at lr 1e-2 (PyTorch's own float32 run is 9e-6 off there), so this case steps at
    # 1e-3 to be checked at 1e-5 in float32. Its float64 file (--dtype float64) is exact to ~1e-15.
    "combined": dict(
        kind="gru", layers=2, tied=True, init="uniform", emb=12, label_smoothing=0.2, ignore_index=0,
        clip=0.1, optimizer=dict(kind="adamw", lr=1e-3, weight_decay=0.1, decay_all=False),
    ),
}

OPTIMIZER_DEFAULTS = {
    "adam": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
    "adamw": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decay_all=True),
    "sgd": dict(lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0),
}


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


def case_spec(name: str) -> dict:
    """The case's full settings: BASE, the case's changes, and every optimizer key."""
    spec = {**BASE, **CASES[name]}
    opt = spec["optimizer"]
    spec["optimizer"] = {"kind": opt["kind"], **OPTIMIZER_DEFAULTS[opt["kind"]], **opt}
    return spec


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def case_toml(name: str, spec: dict) -> str:
    """The Stagewise config of the case's model (sizes included, though the check reads them from
    the fixture)."""
    loss = {"kind": "cross_entropy", "label_smoothing": spec["label_smoothing"]}
    if spec["ignore_index"] is not None:
        loss["ignore_index"] = spec["ignore_index"]
    tables = [
        ("embedding", {"kind": "table", "dim": spec["emb"], "init": spec["init"],
                       "freeze": spec["freeze"], "tied": spec["tied"]}),
        ("forward", {"kind": spec["kind"], "hidden": spec["hidden"], "layers": spec["layers"], "dropout": 0.0}),
        ("loss", loss),
        ("backward", {"kind": "reverse", "clip": spec["clip"]}),
        ("optimizer", spec["optimizer"]),
    ]
    lines = [
        f"# Parity case `{name}`: the model of parity_{name}.safetensors, written with it by",
        "# benches/reference/make_parity_fixture.py. Check it with",
        f"#   cargo xtask parity crates/pipeline/tests/fixtures/parity_{name}.safetensors \\",
        f"#       --config crates/pipeline/tests/fixtures/parity_{name}.toml --steps {spec['steps']}",
    ]
    for table, keys in tables:
        lines.append("")
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in keys.items())
    return "\n".join(lines) + "\n"


def make_optimizer(model: RnnLm, opt: dict) -> torch.optim.Optimizer:
    """PyTorch's optimizer for the settings; AdamW with decay_all = false decays only the tensors
    of two or more dimensions (two parameter groups)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kind = opt["kind"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=opt["lr"], momentum=opt["momentum"], dampening=opt["dampening"],
                               weight_decay=opt["weight_decay"], nesterov=opt["nesterov"])
    betas = (opt["beta1"], opt["beta2"])
    if kind == "adam":
        return torch.optim.Adam(params, lr=opt["lr"], betas=betas, eps=opt["eps"],
                                weight_decay=opt["weight_decay"])
    groups = [{"params": params}]
    if not opt["decay_all"]:
        groups = [
            {"params": [p for p in params if p.dim() >= 2]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
    return torch.optim.AdamW(groups, lr=opt["lr"], betas=betas, eps=opt["eps"],
                             weight_decay=opt["weight_decay"])


def build_case(spec: dict, store: torch.dtype) -> Dict[str, torch.Tensor]:
    torch.manual_seed(spec["seed"])
    model = RnnLm(spec["vocab"], spec["emb"], spec["hidden"], kind=spec["kind"], layers=spec["layers"],
                  tied=spec["tied"], init=spec["init"], freeze=spec["freeze"])
    model = model.double()
    if spec["tied"]:
        assert model.fc.weight is model.embedding.weight
    V, B, T = spec["vocab"], spec["batch"], spec["bptt"]
    inputs = torch.randint(0, V, (B, T), dtype=torch.long)
    targets = torch.randint(0, V, (B, T), dtype=torch.long)
    ignore = spec["ignore_index"]
    if ignore is not None:
        # Four of the fifteen targets are ignored: a whole column and one more.
        targets[:, 1] = ignore
        targets[0, 3] = ignore
    params = dict(model.named_parameters())  # a tied head's weight appears once, as embedding.weight
    for name, p in params.items():
        assert torch.equal(p.detach().float().double(), p.detach()), name

    def loss_of() -> torch.Tensor:
        x = inputs.t().contiguous()
        y = targets.t().contiguous()
        logits, _ = model(x, model.init_hidden(x.size(1)))
        return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), label_smoothing=spec["label_smoothing"],
                               ignore_index=-100 if ignore is None else ignore)

    out: Dict[str, torch.Tensor] = {}
    for name, p in params.items():
        out[name] = p.detach().to(store).clone().contiguous()
    out["inputs"] = inputs.contiguous()
    out["targets"] = targets.contiguous()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(model, spec["optimizer"])
    clip = spec["clip"]
    for k in range(1, spec["steps"] + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        if k == 1:
            out["loss"] = loss.detach().reshape(1).to(store).clone()
            for name, p in params.items():
                if p.grad is not None:
                    out[f"grad.{name}"] = p.grad.detach().to(store).clone().contiguous()
        norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm=clip if clip > 0 else float("inf"))
        if k == 1:
            out["grad_norm"] = norm.detach().reshape(1).to(store).clone()
        if clip > 0:
            assert norm > clip, f"step {k}: the gradient norm {norm:.4f} is not above clip {clip}: it does not clip"
        opt.step()
        for name, p in params.items():
            out[f"step{k}.{name}"] = p.detach().to(store).clone().contiguous()
    return out


def write_case(name: str, directory: str, dtype: str) -> None:
    spec = case_spec(name)
    store = torch.float64 if dtype == "float64" else torch.float32
    tensors = build_case(spec, store)
    config = case_toml(name, spec)
    suffix = "_f64" if dtype == "float64" else ""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"parity_{name}{suffix}.safetensors")
    meta = {
        "lr": str(spec["optimizer"]["lr"]),
        "steps": str(spec["steps"]),
        "format": CASE_FORMAT,
        "case": name,
        "config": config,
        "vocab": str(spec["vocab"]),
        "emb": str(spec["emb"]),
        "hidden": str(spec["hidden"]),
        "batch": str(spec["batch"]),
        "bptt": str(spec["bptt"]),
        "seed": str(spec["seed"]),
        "dtype": dtype,
        "generator": f"make_parity_fixture.py (torch {torch.__version__}, float64 compute)",
    }
    save_file(tensors, path, metadata=meta)
    with open(os.path.join(directory, f"parity_{name}.toml"), "w", encoding="utf-8") as f:
        f.write(config)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors) and parity_{name}.toml: "
          f"loss={tensors['loss'].item():.8f} grad_norm={tensors['grad_norm'].item():.6f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="the seed model's fixture (without --case / --all)")
    ap.add_argument("--case", action="append", choices=sorted(CASES), default=[],
                    help="write parity_<case>.safetensors and parity_<case>.toml into --dir (repeatable)")
    ap.add_argument("--all", action="store_true", help="write every case")
    ap.add_argument("--dir", default=os.path.normpath(FIXTURES),
                    help="where the cases go (default: crates/pipeline/tests/fixtures)")
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
    if args.case or args.all:
        for name in (sorted(CASES) if args.all else args.case):
            write_case(name, args.dir, args.dtype)
        return
    if not args.out:
        ap.error("give --out (the seed model's fixture), --case NAME or --all")
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
