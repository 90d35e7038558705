"""Benchmark: a Muon λ sweep, 8 λ × 4 folds = 32 members, batched vs sequential in the same run.

Task (issue 21): digits (1797 images 8×8, 10 classes, pixels scaled to [0, 1]), ``optimizer="muon"`` (Muon for
the hidden matrices, the AdamW companion at ``adamw_lr_ratio`` 0.1 for the rest), lr 0.02, λ log-spaced over
[1e-4, 1], 4 stratified folds, batch 64, ``--epochs`` epochs (default 3), float32, on the CPU (or ``--device``).
Models (``--models``):

- ``mlp``: Linear(64→128) · ReLU · Linear(128→128) · ReLU · Linear(128→10): two Muon matrices (128×64 and
  128×128), the batched fast path;
- ``conv``: Conv(1→16, 3×3) · ReLU · MaxPool · Conv(16→32) · ReLU · MaxPool · Linear(128→10), with ``flatten``
  (the conv kernels are Muon's, as [16, 9] and [32, 144] matrices): the folded path.

For each model, in one process, after an untimed warm-up sweep of each engine: ``decaylab.sweep(engine=
"batched")`` then ``engine="sequential"`` on the same members; printed: wall seconds of each, the ratio
sequential / batched (the target: ≥ 1, the batched engine never slower) and the mean CV accuracy per λ of
both (they train the same members: ``ns_dtype`` None, the parameters' dtype, in which the engines agree;
``--ns-dtype bfloat16`` times torch's Newton–Schulz, where a member follows its run alone only to bfloat16
rounding, :mod:`decaylab.batched.stacked_muon`).

    python benchmarks/sweep_muon.py [--quick] [--epochs 3] [--models mlp,conv] [--device cpu] [--threads T]
                                    [--ns-dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import decaylab

LAMBDAS = list(np.logspace(-4, 0, 8))
FOLDS, BATCH, LR, ADAMW_LR_RATIO = 4, 64, 0.02, 0.1


def digits(rows: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = torch.as_tensor(X / 16, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    return (X, y) if rows is None else (X[:rows], y[:rows])


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


class Conv(nn.Module):
    """Two conv · ReLU · pool blocks and a linear head (digits 8×8)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, 8, 8)).flatten(1))


MODELS = {"mlp": (mlp, {}), "conv": (Conv, {"flatten": True})}


def run_sweep(factory, X, y, epochs: int, engine: str, device: str, ns_dtype, options: dict):
    start = time.perf_counter()
    result = decaylab.sweep(factory, (X, y), LAMBDAS, lr=LR, folds=FOLDS, optimizer="muon", epochs=epochs,
                            batch_size=BATCH, engine=engine, device=device, split_seed=0, ns_dtype=ns_dtype,
                            adamw_lr_ratio=ADAMW_LR_RATIO, **options)
    return time.perf_counter() - start, result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch on the first 400 rows (a check that it runs)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 3; --quick 1)")
    p.add_argument("--models", default="mlp,conv", help="comma-separated: mlp, conv")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--ns-dtype", choices=("float32", "bfloat16"), default=None,
                   help="the Newton–Schulz dtype (default: the parameters', float32)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = args.epochs or (1 if args.quick else 3)
    ns_dtype = None if args.ns_dtype is None else getattr(torch, args.ns_dtype)
    X, y = digits(400 if args.quick else None)
    print(f"Muon sweep: {len(LAMBDAS)} λ × {FOLDS} folds = {len(LAMBDAS) * FOLDS} members, {len(X)} rows, "
          f"{epochs} epochs, batch {BATCH}, lr {LR} (AdamW companion ×{ADAMW_LR_RATIO}), ns_dtype {ns_dtype}, "
          f"device {args.device}, {torch.get_num_threads()} threads")
    for name in args.models.split(","):
        factory, options = MODELS[name]
        for engine in ("batched", "sequential"):          # untimed warm-up: first-call costs hit neither engine
            decaylab.sweep(factory, (X[:128], y[:128]), LAMBDAS[:2], folds=2, epochs=1, optimizer="muon",
                           engine=engine, device=args.device, ns_dtype=ns_dtype, **options)
        batched_s, batched = run_sweep(factory, X, y, epochs, "batched", args.device, ns_dtype, options)
        sequential_s, sequential = run_sweep(factory, X, y, epochs, "sequential", args.device, ns_dtype, options)
        ratio = sequential_s / batched_s
        print(f"\n{name}: {batched.path}")
        print(f"   batched {batched_s:8.2f} s   sequential {sequential_s:8.2f} s   sequential / batched {ratio:.2f}× "
              f"({'batched not slower' if ratio >= 1 else 'BATCHED SLOWER than sequential'})")
        accuracy = {s["lambda"]: s["mean"] for s in batched.summary}
        alone = {s["lambda"]: s["mean"] for s in sequential.summary}
        print("   λ          CV accuracy batched   sequential")
        for lam in LAMBDAS:
            print(f"   {lam:9.2e}  {accuracy[lam]:.4f}                {alone[lam]:.4f}")


if __name__ == "__main__":
    main()
