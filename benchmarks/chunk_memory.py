"""Does a batched chunk stay within the memory the plan states? The measured peak of one chunk's training
against the plan's estimate (members × bytes per member), on a few large models, each in a fresh process.

    PYTHONPATH=src python benchmarks/chunk_memory.py [--scale 1.0] [--members 4] [--optimizer adamw]

Each child process builds the data and the model, asks the plan (:func:`decaylab.batched.chunking.plan_for_model`)
for the bytes one member needs, then resets the kernel's resident-set high-water mark (``/proc/self/clear_refs``)
and trains ``--members`` members in one chunk with :func:`decaylab.batched.trainer.train_batched`; the peak is
``VmHWM`` minus the resident memory just before training (an upper bound of what training allocated: freed pages
the allocator keeps count too). Linux only. Prints one row per model: parameters, the estimate, the peak, and
their ratio (≤ 1: within the stated budget).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MODELS = ("mlp", "conv", "layernorm")


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def build(name: str, scale: float):
    """``(factory, X, y)`` of a large model: a wide MLP (fast path), a conv net (folded), a LayerNorm MLP with a
    custom layer (vmap)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    if name == "conv":
        c = max(8, int(64 * scale))
        X = torch.randn(256, 3, 32, 32, generator=gen)

        def factory():
            return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                 nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                 nn.Linear(16 * c, 16 * c), nn.ReLU(), nn.Linear(16 * c, 10))
    else:
        width = max(64, int(2048 * scale))
        X = torch.randn(512, 512, generator=gen)

        class Scale(nn.Module):
            def forward(self, x):
                return 0.5 * x

        def factory():
            if name == "mlp":
                return nn.Sequential(nn.Linear(512, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                     nn.Linear(width, 10))
            return nn.Sequential(nn.Linear(512, width), nn.LayerNorm(width), Scale(), nn.ReLU(),
                                 nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    y = torch.randint(0, 10, (len(X),), generator=gen)
    return factory, X, y


def child(name: str, scale: float, members: int, optimizer: str) -> dict:
    import gc

    import torch

    from decaylab.batched.chunking import plan_for_model
    from decaylab.batched.trainer import Member, TrainConfig, train_batched

    torch.set_num_threads(1)
    factory, X, y = build(name, scale)
    config = TrainConfig.from_options(optimizer=optimizer, epochs=1, batch_size=64)
    plan = plan_for_model(factory(), X, config, members, budget=1 << 40)
    # folds of different sizes: the last steps have idle members and short batches
    rows = [tuple(range(0, len(X) - 40 * g)) for g in range(members)]
    grid = [Member(10.0 ** -g, 1e-3, seed=g, train_index=r, val_index=tuple(range(len(X) - 40, len(X))))
            for g, r in enumerate(rows)]
    gc.collect()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")                                  # reset VmHWM to the current resident set
    train_batched(factory, X, y, grid, config, device="cpu")
    peak = _status("VmHWM") - before
    params = sum(p.numel() for p in factory().parameters())
    return {"model": name, "params": params, "members": members, "estimate": plan.member_bytes * members,
            "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.scale, args.members, args.optimizer)))
        return
    print(f"{'model':<10} {'params':>10} {'members':>7} {'estimate MiB':>12} {'peak MiB':>9} {'peak/estimate':>13}")
    for name in args.models.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", name, "--scale", str(args.scale), "--members",
                              str(args.members), "--optimizer", args.optimizer], capture_output=True, text=True,
                             check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{row['model']:<10} {row['params']:>10} {row['members']:>7} {row['estimate'] / 2**20:>12.1f} "
              f"{row['peak'] / 2**20:>9.1f} {row['peak'] / row['estimate']:>13.2f}")


if __name__ == "__main__":
    main()
