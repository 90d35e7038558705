"""A power law fitted to measured runs, with a bootstrap interval: log y = a + b·log x by least squares.

:func:`fit_power_law` takes the point values ``y[i]`` at ``x[i]`` and ``samples[k, i]``, one bootstrap draw of
every point per row (drawn independently per point: each is its own sweep). The exponent b and the prediction
at a new x come with the percentile interval of the fits to the rows. Two points are enough for a line (then
exact) and for an interval (from the draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from decaylab._checks import InputError

__all__ = ["PowerLaw", "fit_power_law", "percentile_interval"]


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``samples`` (finite ones)."""
    finite = samples[np.isfinite(samples)]
    tail = 50.0 * (1.0 - level)
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100.0 - tail))


def _lines(logx: np.ndarray, logy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (intercept, slope) of each row of ``logy`` [k, n] on ``logx`` [n]."""
    xc = logx - logx.mean()
    slope = (logy - logy.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    return logy.mean(axis=1) - slope * logx.mean(), slope


@dataclass(frozen=True)
class PowerLaw:
    """y = coef·x^exponent fitted on the points, with the bootstrap fits (``intercepts``, ``slopes`` in log)."""

    coef: float
    exponent: float
    intercepts: np.ndarray
    slopes: np.ndarray
    level: float

    @property
    def exponent_interval(self) -> tuple[float, float]:
        return percentile_interval(self.slopes, self.level)

    def at(self, x: float) -> float:
        return self.coef * x ** self.exponent

    def samples_at(self, x: float) -> np.ndarray:
        return np.exp(self.intercepts + self.slopes * math.log(x))


def fit_power_law(x, y, samples, level: float = 0.95) -> PowerLaw:
    """Fit y = c·x^b to ``y[i]`` at ``x[i]`` (all > 0, at least two distinct x) and to every bootstrap row of
    ``samples`` [k, n]; see the module docstring."""
    x, y, samples = (np.asarray(a, dtype=float) for a in (x, y, samples))
    if x.ndim != 1 or y.shape != x.shape or samples.ndim != 2 or samples.shape[1] != x.size:
        raise InputError(f"fit_power_law needs x [n], y [n] and samples [k, n], got {x.shape}, {y.shape}, "
                         f"{samples.shape}")
    if (x <= 0).any() or (y <= 0).any() or (samples <= 0).any():
        raise InputError("fit_power_law needs x, y and samples > 0 (a power law is fitted in log–log)")
    if len(np.unique(x)) < 2:
        raise InputError(f"fit_power_law needs two or more distinct x, got {x.tolist()}")
    logx = np.log(x)
    (a,), (b,) = _lines(logx, np.log(y)[None, :])
    intercepts, slopes = _lines(logx, np.log(samples))
    return PowerLaw(float(math.exp(a)), float(b), intercepts, slopes, level)
