"""Choosing λ from cross-validation scores: per-λ mean and spread, the best λ, and the one-standard-error λ.

For each (lr, λ) the validation metric of its members (folds × seeds) gives a mean, a
standard deviation (ddof = 1) and a standard error ``se = std / √n``. ``best`` is the pair
with the best mean (highest accuracy, lowest loss). The one-standard-error rule (Breiman et al.
1984; glmnet's ``lambda.1se``) then takes, at the best lr, the *largest* λ whose mean is within
one standard error of the best: ``mean ≥ best_mean − se_best`` (or ``≤ best_mean + se_best`` for a
loss) — the most regularized model that is statistically as good as the best.

A λ with any diverged member has a NaN mean and is never chosen.

:func:`choice_warnings` says when the choice needs a word: a *flat* curve (at the best lr, at least two λ and
every λ's mean within one standard error of the best: decay did not matter over this run; the warning gives
the per-run decay the grid implied, lr·λ·steps, for the optimizers whose decay is lr·λ per step at a constant
lr: ``adamw``, ``sgdw``, ``lion`` with ``decay_scaling="lr"``, else the λ range), or else a best λ at the
smallest (positive) or largest value of the grid, with a log-spaced grid extended two decades that way at the
grid's density (a best λ = 0, or a smallest λ that is 0, is no edge to extend).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

HIGHER_IS_BETTER = {"accuracy": True, "loss": False}
#: Optimizers whose decay removes lr·λ of a weight per step under ``decay_scaling="lr"``.
LR_TIMES_LAMBDA = ("adamw", "sgdw", "lion")
EXTEND_DECADES = 2


def summarize(rows: Iterable[Mapping], metric_column: str = "val_metric") -> list[dict]:
    """Per (lr, λ): ``n``, ``n_diverged``, ``mean``, ``std``, ``se`` of ``metric_column``, λ ascending."""
    groups: dict[tuple[float, float], list[Mapping]] = defaultdict(list)
    for row in rows:
        groups[(row["lr"], row["lambda"])].append(row)
    summary = []
    for (lr, lam), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        values = np.array([np.nan if m[metric_column] is None else float(m[metric_column]) for m in members])
        n = len(values)
        std = float(np.std(values, ddof=1)) if n > 1 else 0.0
        summary.append({"lr": lr, "lambda": lam, "n": n,
                        "n_diverged": int(sum(bool(m.get("diverged")) for m in members)),
                        "mean": float(np.mean(values)), "std": std, "se": std / math.sqrt(n)})
    return summary


def choose(summary: Sequence[Mapping], higher_is_better: bool) -> tuple[dict | None, float | None]:
    """``(best summary row, λ of the one-standard-error rule)``; ``(None, None)`` if every mean is NaN."""
    finite = [s for s in summary if math.isfinite(s["mean"])]
    if not finite:
        return None, None
    sign = 1.0 if higher_is_better else -1.0
    best = max(finite, key=lambda s: (sign * s["mean"], -s["lambda"]))   # ties: smaller λ
    threshold = best["mean"] - sign * best["se"]
    within = [s["lambda"] for s in finite if s["lr"] == best["lr"] and _within(s["mean"], threshold, sign)]
    return dict(best), max(within)


def _within(value: float, threshold: float, sign: float) -> bool:
    """Whether a mean is at least as good as ``threshold`` (``sign`` +1: higher is better)."""
    return sign * (value - threshold) >= -1e-12 * max(1.0, abs(threshold))


def choice_warnings(summary: Sequence[Mapping], best: Mapping | None, higher_is_better: bool,
                    train: Mapping | None = None, steps: int | None = None) -> list[str]:
    """The warnings of the module docstring for ``best`` (a row of ``summary``); ``train`` is the sweep's training
    configuration (``optimizer``, ``decay_scaling``, ``lr_schedule``) and ``steps`` the optimizer steps of a
    member at the best lr, for the per-run decay of a flat curve."""
    if best is None:
        return []
    rows = [s for s in summary if s["lr"] == best["lr"]]
    lams = sorted({s["lambda"] for s in rows})
    if len(lams) < 2:
        return []
    sign = 1.0 if higher_is_better else -1.0
    threshold = best["mean"] - sign * best["se"]
    if all(math.isfinite(s["mean"]) and _within(s["mean"], threshold, sign) for s in rows):
        return [_flat_warning(lams, best, train or {}, steps)]
    positive = [lam for lam in lams if lam > 0]
    lam = best["lambda"]
    if len(positive) < 2 or lam not in (lams[0], lams[-1]) or lam <= 0:   # λ = 0 best: nothing lies below
        return []
    lo, hi = positive[0], positive[-1]
    per_decade = (len(positive) - 1) / math.log10(hi / lo)
    if lam == lo:
        new_lo, new_hi, edge, way = lo / 10 ** EXTEND_DECADES, hi, "smallest", "below"
    else:
        new_lo, new_hi, edge, way = lo, hi * 10 ** EXTEND_DECADES, "largest", "above"
    count = round(math.log10(new_hi / new_lo) * per_decade) + 1
    return [f"best λ {lam:g} is the {edge} of the grid: the best may lie {way} it; extend the grid {way}, e.g. "
            f"--lambdas {new_lo:g}:{new_hi:g}:{count}"]


def _flat_warning(lams: Sequence[float], best: Mapping, train: Mapping, steps: int | None) -> str:
    head = (f"flat validation curve: every λ from {lams[0]:g} to {lams[-1]:g} (lr {best['lr']:g}) is within one "
            f"standard error ({best['se']:.3g}) of the best, so decay did not matter over this run")
    per_step = (train.get("optimizer") in LR_TIMES_LAMBDA and train.get("decay_scaling", "lr") == "lr"
                and train.get("lr_schedule", "constant") == "constant")
    if not per_step or not steps:
        return head + "; try a wider λ grid or a longer run"
    low, high = (best["lr"] * lam * steps for lam in (lams[0], lams[-1]))
    implied = (head + f": over its {steps} steps the grid implied a per-run decay lr·λ·steps from {low:.3g} to "
               f"{high:.3g} (decay alone would shrink a weight by {100 * -math.expm1(-low):.3g}% to "
               f"{100 * -math.expm1(-high):.3g}%)")
    if high < 1:
        return implied + (f"; decay acts when lr·λ·steps nears 1, here λ ≈ {1.0 / (best['lr'] * steps):.3g}: widen "
                          "the grid toward it or train longer")
    return implied + "; the grid reaches lr·λ·steps ≥ 1 and the metric did not move: λ hardly matters here"
