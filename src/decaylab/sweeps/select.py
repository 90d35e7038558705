"""Choosing λ from cross-validation scores: per-λ mean and spread, the best λ, and the one-standard-error λ.

For each (lr, λ) the validation metric of its members (folds × seeds) gives a mean, a
standard deviation (ddof = 1) and a standard error ``se = std / √n``. ``best`` is the pair
with the best mean (highest accuracy, lowest loss). The one-standard-error rule (Breiman et al.
1984; glmnet's ``lambda.1se``) then takes, at the best lr, the *largest* λ whose mean is within
one standard error of the best: ``mean ≥ best_mean − se_best`` (or ``≤ best_mean + se_best`` for a
loss) — the most regularized model that is statistically as good as the best.

A λ with any diverged member has a NaN mean and is never chosen.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

HIGHER_IS_BETTER = {"accuracy": True, "loss": False}


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
    within = [s["lambda"] for s in finite
              if s["lr"] == best["lr"] and sign * (s["mean"] - threshold) >= -1e-12 * max(1.0, abs(threshold))]
    return dict(best), max(within)
