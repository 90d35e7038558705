"""Is AdamW's per-coordinate bound what stops the weights at the fixed-point regime's best cells?

The fixed-point theory behind the decoupling study's predictions for AdamW (slope +1 with the paper's
schedule-scaled decay, 0 with torch's lr-scaled decay) reads the best λ off the constraint AdamW's fixed
point puts on each weight: at a fixed point ``lr_t·u = s_t·λ·w`` with the normalized step
``u = m̂/(√v̂ + ε)``, ``|u| ≲ 1``, so ``|w| ≲ lr_0/λ`` (schedule: ``s_t = lr_t/lr_0``) or ``|w| ≲ 1/λ``
(torch: ``s_t = lr_t``). That constraint can only pick λ where it binds. This script retrains, for each
AdamW arm of the fixed-point regime, the best cell of every row a ``decaylab repro decoupling`` run kept
(its ``summary.json``), and prints per decayed layer ``max|w|`` at the end against that bound, and the
mean of ``‖s_t·λ·w‖ / ‖lr_t·u‖`` over the last 10% of steps (≈ 1 where decay and the normalized step
balance, as at a fixed point; ≪ 1 where the decay is too small to hold the weights).

Last, the slope of log(best λ) on log(lr) over all kept rows (the study's statistic, unweighted here) and over
the rows whose bound lies within 1.5× of the median row's — where the best cells hold the weights at one
bound, the constraint picture predicts +1 (schedule) and 0 (lr) for exactly those rows.

Each cell is trained as the maps train it (2-64-64-2 ReLU MLP, 100 training points of two moons with 20%
flipped labels, full batch, 1000 steps of a cosine schedule, weights decayed, biases not; seed 0), with
``decaylab.optim.AdamW`` and torch's ``LambdaLR``.

    python benchmarks/adamw_bound.py --summary DIR/summary.json   # DIR from `decaylab repro decoupling --out DIR`
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
from torch import nn

from decaylab.maps.regimes import REGIME_SETUPS
from decaylab.optim import AdamW

ARMS = {"adamw": "schedule", "adamw-lr": "lr"}


def train_cell(factory, train, lr: float, lam: float, scaling: str, steps: int, seed: int = 0):
    """The cell's decayed weights after ``steps`` full-batch steps, and the mean decay-to-step norm ratio per
    layer over the last 10% of them."""
    torch.manual_seed(seed)
    model = factory()
    weights = {n: p for n, p in model.named_parameters() if p.dim() >= 2}
    others = [p for p in model.parameters() if p.dim() < 2]
    opt = AdamW([{"params": list(weights.values())}, {"params": others, "weight_decay": 0.0}], lr=lr,
                weight_decay=lam, decay_scaling=scaling)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: (1 + math.cos(math.pi * t / steps)) / 2)
    ratios = {n: [] for n in weights}
    for step in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.X), train.y).backward()
        if step >= 0.9 * steps:
            lr_t = opt.param_groups[0]["lr"]
            scale = lr_t / lr if scaling == "schedule" else lr_t
            before = {n: p.detach().clone() for n, p in weights.items()}
        opt.step()
        sched.step()
        if step >= 0.9 * steps:
            for n, p in weights.items():
                decay = scale * lam * before[n]
                step_u = (before[n] - p.detach()) - decay               # w ← w − s_t·λ·w − lr_t·u
                ratios[n].append(float(decay.norm() / step_u.norm().clamp_min(1e-30)))
    return weights, {n: float(np.mean(r)) for n, r in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", required=True, help="summary.json of `decaylab repro decoupling --out DIR`")
    args = parser.parse_args()
    torch.set_num_threads(1)
    summary = json.load(open(args.summary, encoding="utf-8"))["regimes"]["fixed-point"]
    rs = next(r for r in REGIME_SETUPS if r.key == "fixed-point")
    dataset = rs.dataset()
    factory = rs.model_factory(dataset)
    steps = summary["setup"]["steps"]
    size = summary["setup"]["grid_size"]
    for arm, scaling in ARMS.items():
        basin = summary["arms"][arm]["basin"]
        lrs = 10.0 ** np.linspace(*rs.ranges[arm][0], size)
        print(f"\n== AdamW, decay_scaling={scaling!r}: bound |w| ≤ {'lr_0/λ' if scaling == 'schedule' else '1/λ'}")
        print(f"   {'lr':>9s} {'best λ':>9s} {'bound':>9s}   max|w| ÷ bound per layer   "
              f"‖decay‖ ÷ ‖lr_t·u‖ (last 10%) per layer")
        rows = [(lr, lam) for lr, lam, kept in zip(lrs, basin["best_decay"], basin["kept"]) if kept]
        bounds = []
        for lr, lam in rows:
            bound = (lr if scaling == "schedule" else 1.0) / lam
            bounds.append(bound)
            weights, ratio = train_cell(factory, dataset.train, lr, lam, scaling, steps)
            fill = "  ".join(f"{float(p.detach().abs().max()) / bound:6.3f}" for p in weights.values())
            used = "  ".join(f"{ratio[n]:6.3f}" for n in weights)
            print(f"   {lr:9.3g} {lam:9.3g} {bound:9.3g}   {fill}     {used}")
        log_lr, log_lam = np.log10([r[0] for r in rows]), np.log10([r[1] for r in rows])
        at_one = np.abs(np.log(np.array(bounds) / np.median(bounds))) <= math.log(1.5)
        print(f"   slope of log best λ on log lr: all {len(rows)} kept rows {np.polyfit(log_lr, log_lam, 1)[0]:+.2f}; "
              f"the {int(at_one.sum())} rows at one bound (within 1.5× of the median, lr "
              f"{10 ** log_lr[at_one].min():.3g}–{10 ** log_lr[at_one].max():.3g}) "
              f"{np.polyfit(log_lr[at_one], log_lam[at_one], 1)[0]:+.2f}")


if __name__ == "__main__":
    main()
