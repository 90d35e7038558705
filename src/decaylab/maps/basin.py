"""The basin statistic of an lr × λ map: how the best λ moves with the learning rate.

Input: test errors ``E[s, i, j]`` for seed ``s``, learning rate ``lr_i`` (rows) and decay
``λ_j`` (columns), both grids positive (log-spaced in practice, any spacing works).

1. Best λ per learning rate, on the seed-mean map ``Ē[i, j]`` (NaN — a diverged member —
   counts as the worst error, ``+inf``):
   - the minimum ``m_i = min_j Ē[i, j]`` and the *good run*: the contiguous columns around the
     first argmin with ``Ē[i, j] ≤ m_i + tie_tol`` (``tie_tol`` = differences too small to
     tell apart, e.g. seed noise; 1e-12 by default, exact ties only);
   - if the good run is one column ``j``: the vertex of the parabola through
     ``(log λ_{j−1}, Ē), (log λ_j, Ē), (log λ_{j+1}, Ē)`` (sub-grid refinement), clipped to
     the half-way points to the neighbours;
   - if it has several columns (a plateau): the mean of their ``log λ``;
   - the row is *censored* (left out of the fit) when the good run contains the first or last
     column — the best λ may lie outside the grid — or when a wall is missing: both edge
     columns must be worse than ``m_i`` by at least ``min_contrast`` (otherwise the row is
     flat on one side and its argmin is noise);
   - the row is also left out when its best error exceeds the best of the whole map by more
     than ``row_gap`` (training failed at every λ of that lr — e.g. it diverges or stays at
     chance — so the row says nothing about the good region; ``inf`` by default).
2. Slope: ordinary least squares of ``log λ*_i`` on ``log lr_i`` over the rows kept (at least
   two). A slope of −1 is a diagonal basin (λ must fall as lr rises: the product lr·λ is what
   matters); 0 is an axis-aligned basin (λ can be tuned without touching lr).
3. Confidence interval from the seeds: a percentile bootstrap — resample the ``S`` seeds with
   replacement ``n_boot`` times, redo steps 1–2 on each resample's mean map, and take the
   ``(1−confidence)/2`` and ``(1+confidence)/2`` quantiles of the slopes (resamples with fewer
   than two kept rows are dropped and counted). With ``S = 1`` there is no interval (NaN).
   Per-seed slopes (steps 1–2 on each seed alone) are reported beside it with their
   t-interval, ``mean ± t_{k−1}·sd/√k`` over the ``k ≥ 2`` seeds whose own map gives a slope.
   With few seeds the bootstrap interval is too narrow (3 seeds have only 10 distinct
   resamples); :meth:`BasinFit.interval` is the union of the two intervals, the conservative
   choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from decaylab._checks import InputError, check_int, check_real
from decaylab._extras import needs

__all__ = ["BasinFit", "best_log_decay", "fit_basin", "log_slope"]


@dataclass
class BasinFit:
    """The basin statistic of one lr × λ map (see the module docstring for each step)."""

    slope: float                  # d log λ* / d log lr on the seed-mean map
    intercept: float              # log λ* at lr = 1 (natural log)
    ci_low: float                 # bootstrap-over-seeds interval of the slope (NaN with one seed)
    ci_high: float
    confidence: float
    best_decay: np.ndarray        # λ* per lr row of the mean map, NaN where censored
    kept: np.ndarray              # bool per lr row: used in the fit
    seed_slopes: np.ndarray       # the slope of each seed's own map (NaN where < 2 rows kept)
    n_boot: int                   # bootstrap resamples that gave a slope
    n_seeds: int
    notes: list[str] = field(default_factory=list)
    seed_t_low: float = float("nan")   # t-interval of the per-seed slopes (NaN with < 2 of them)
    seed_t_high: float = float("nan")

    def interval(self) -> tuple[float, float]:
        """The union of the bootstrap and per-seed t intervals (NaN where neither exists)."""
        lows = [v for v in (self.ci_low, self.seed_t_low) if np.isfinite(v)]
        highs = [v for v in (self.ci_high, self.seed_t_high) if np.isfinite(v)]
        return (min(lows), max(highs)) if lows and highs else (float("nan"), float("nan"))

    def to_dict(self) -> dict:
        """Plain JSON-ready numbers (NaN becomes None)."""
        def clean(x):
            return None if x is None or not np.isfinite(x) else float(x)

        return {
            "slope": clean(self.slope), "intercept": clean(self.intercept),
            "ci_low": clean(self.ci_low), "ci_high": clean(self.ci_high), "confidence": self.confidence,
            "best_decay": [clean(v) for v in self.best_decay], "kept": [bool(k) for k in self.kept],
            "seed_slopes": [clean(v) for v in self.seed_slopes], "seed_t_low": clean(self.seed_t_low),
            "seed_t_high": clean(self.seed_t_high), "interval": [clean(v) for v in self.interval()],
            "n_boot": self.n_boot,
            "n_seeds": self.n_seeds, "notes": list(self.notes),
        }


def _parabola_vertex(x: np.ndarray, y: np.ndarray) -> float:
    """x of the vertex of the parabola through three points, clipped to the half-way points."""
    (x0, x1, x2), (y0, y1, y2) = x, y
    denom = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if denom == 0 or not np.isfinite(denom):
        return float(x1)
    vertex = x1 - 0.5 * ((x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)) / denom
    return float(np.clip(vertex, (x0 + x1) / 2, (x1 + x2) / 2))


def best_log_decay(errors: np.ndarray, log_decays: np.ndarray, *, min_contrast: float = 0.01,
                   tie_tol: float = 1e-12, row_gap: float = float("inf")) -> np.ndarray:
    """``log λ*`` per row of a 2-D map ``errors[i, j]`` (step 1), NaN for censored rows."""
    errors = np.where(np.isnan(errors), np.inf, errors)
    best = np.full(errors.shape[0], np.nan)
    last = errors.shape[1] - 1
    map_best = errors.min()
    for i, row in enumerate(errors):
        j = int(np.argmin(row))
        low = row[j]
        if not np.isfinite(low) or low - map_best > row_gap or min(row[0], row[last]) - low < min_contrast:
            continue
        start, stop = j, j
        while start > 0 and row[start - 1] <= low + tie_tol:
            start -= 1
        while stop < last and row[stop + 1] <= low + tie_tol:
            stop += 1
        if start == 0 or stop == last:
            continue
        if stop > start:
            best[i] = log_decays[start:stop + 1].mean()
        else:
            best[i] = _parabola_vertex(log_decays[j - 1:j + 2], row[j - 1:j + 2])
    return best


def log_slope(log_lrs: np.ndarray, log_best: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``log_best`` on ``log_lrs`` over finite rows (NaN if < 2)."""
    keep = np.isfinite(log_best)
    if keep.sum() < 2 or np.ptp(log_lrs[keep]) == 0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(log_lrs[keep], log_best[keep], 1)
    return float(slope), float(intercept)


def fit_basin(errors, lrs, decays, *, confidence: float = 0.95, n_boot: int = 2000, min_contrast: float = 0.01,
              tie_tol: float = 1e-12, row_gap: float = float("inf"), seed: int = 0) -> BasinFit:
    """The basin statistic of ``errors`` — shape ``(seeds, len(lrs), len(decays))`` or ``(len(lrs), len(decays))``.

    See the module docstring for the definition of each number. ``min_contrast`` is in units of
    the error (0.01 = one percentage point of test error).
    """
    errors = np.asarray(errors, dtype=float)
    if errors.ndim == 2:
        errors = errors[None]
    lrs = np.asarray(lrs, dtype=float)
    decays = np.asarray(decays, dtype=float)
    if errors.ndim != 3 or errors.shape[1:] != (lrs.size, decays.size):
        raise InputError(f"errors must have shape (seeds, {lrs.size}, {decays.size}) or ({lrs.size}, {decays.size}) "
                         f"for {lrs.size} learning rates and {decays.size} decays, got {errors.shape}")
    for name, grid in (("lrs", lrs), ("decays", decays)):
        if grid.ndim != 1 or grid.size < 3 or not np.all(grid > 0) or not np.all(np.isfinite(grid)):
            raise InputError(f"{name} must be a 1-D grid of at least 3 positive finite values, got {grid.tolist()}")
        if np.any(np.diff(grid) <= 0):
            raise InputError(f"{name} must be strictly increasing, got {grid.tolist()}")
    confidence = check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    n_boot = check_int("n_boot", n_boot, low=1)
    check_real("min_contrast", min_contrast, low=0.0)
    check_real("tie_tol", tie_tol, low=0.0)
    if row_gap != float("inf"):   # inf: no row left out for its level
        check_real("row_gap", row_gap, low=0.0)

    log_lrs, log_decays = np.log(lrs), np.log(decays)

    def slope_of(mean_map: np.ndarray) -> tuple[float, float, np.ndarray]:
        best = best_log_decay(mean_map, log_decays, min_contrast=min_contrast, tie_tol=tie_tol, row_gap=row_gap)
        return (*log_slope(log_lrs, best), best)

    slope, intercept, best = slope_of(_nan_worst_mean(errors))
    seed_slopes = np.array([slope_of(e)[0] for e in errors])

    n_seeds = errors.shape[0]
    notes = []
    ci_low = ci_high = float("nan")
    boot_slopes = np.array([])
    if n_seeds > 1:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        # a resample's mean map depends only on which seeds it drew (not their order): each distinct
        # multiset is fitted once (3 seeds have 10, 5 seeds 126) and its slope reused
        distinct, inverse = np.unique(np.sort(picks, axis=1), axis=0, return_inverse=True)
        distinct_slopes = np.array([slope_of(_nan_worst_mean(errors[p]))[0] for p in distinct])
        boot_slopes = distinct_slopes[np.asarray(inverse).reshape(-1)]
        dropped = int(np.sum(~np.isfinite(boot_slopes)))
        boot_slopes = boot_slopes[np.isfinite(boot_slopes)]
        if dropped:
            notes.append(f"{dropped} of {n_boot} bootstrap resamples kept fewer than 2 rows and were dropped")
        if boot_slopes.size:
            alpha = (1.0 - confidence) / 2.0
            ci_low, ci_high = (float(q) for q in np.quantile(boot_slopes, [alpha, 1.0 - alpha]))
    else:
        notes.append("one seed: no confidence interval")
    kept = np.isfinite(best)
    if kept.sum() < 2:
        notes.append(f"only {int(kept.sum())} of {lrs.size} learning rates have a best λ inside the grid "
                     "with walls on both sides: no slope")
    t_low, t_high = _t_interval(seed_slopes[np.isfinite(seed_slopes)], confidence)
    return BasinFit(slope=slope, intercept=intercept, ci_low=ci_low, ci_high=ci_high, confidence=confidence,
                    best_decay=np.exp(best), kept=kept, seed_slopes=seed_slopes, n_boot=int(boot_slopes.size),
                    n_seeds=n_seeds, notes=notes, seed_t_low=t_low, seed_t_high=t_high)


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """``mean ± t_{k−1}·sd/√k`` of ``k`` values (NaN for fewer than two)."""
    if values.size < 2:
        return float("nan"), float("nan")
    with needs("report", "the basin slope's confidence interval"):
        from scipy.stats import t

    half = t.ppf((1.0 + confidence) / 2.0, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def _nan_worst_mean(errors: np.ndarray) -> np.ndarray:
    """Mean over seeds (axis 0) where a NaN member makes its cell ``+inf`` (diverged = worst)."""
    return np.where(np.isnan(errors).any(axis=0), np.inf, errors.mean(axis=0))
