"""The grid of a sweep: parsing λ grids, cutting rows into folds, and listing the members.

A member is one (λ, lr, seed, fold) run. Folds are cut once per sweep with ``split_seed``
(stratified by class for classification, as scikit-learn's ``GridSearchCV`` does for
classifiers), so every λ is scored on the same K splits.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from decaylab._checks import InputError, InputTypeError, check_int, check_real
from decaylab._extras import needs

MAX_GRID = 100_000        # values in one λ or lr grid

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LOG_GRID = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*(\d+)\s*$")


def parse_grid(text: str, *, name: str = "grid") -> list[float]:
    """Values from ``"START:STOP:COUNT"`` (COUNT values log-spaced, both ends included) or ``"a,b,c"``.

    ``"1e-6:1e1:16"`` → 16 values from 1e-6 to 10. Log-spaced ends must be positive; a list may
    hold 0 (no decay).
    """
    if not isinstance(text, str):
        raise InputTypeError(f"{name} must be a string like '1e-6:1e1:16' or '0,1e-4,1e-3', got {type(text).__name__}")
    match = _LOG_GRID.match(text)
    if match:
        start, stop, count = float(match.group(1)), float(match.group(2)), int(match.group(3))
        if count > MAX_GRID:
            raise InputError(f"{name} {text!r} asks for {count:,} values; at most {MAX_GRID:,} are allowed")
        if start <= 0 or stop <= 0 or count < 1 or (count == 1 and start != stop):
            raise InputError(f"{name} {text!r}: START:STOP:COUNT needs START > 0, STOP > 0, COUNT ≥ 1 "
                             f"(COUNT = 1 only when START = STOP)")
        # 12 significant digits: 1e-5 rather than 9.999999999999999e-06 (stable keys, tidy tables)
        return [float(f"{v:.12g}") for v in np.logspace(math.log10(start), math.log10(stop), count)]
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{name} must be START:STOP:COUNT (log-spaced, e.g. '1e-6:1e1:16') or a comma "
                         f"list of numbers, got {text!r}") from None
    for v in values:
        check_real(name, v, low=0.0)
    return values


def check_grid(name: str, values, *, low: float = 0.0, low_open: bool = False) -> list[float]:
    """A non-empty list of distinct finite reals ≥ ``low`` from a number or a sequence (or a grid string)."""
    if isinstance(values, str):
        values = parse_grid(values, name=name)
    elif np.ndim(values) == 0:
        values = [values]
    values = [check_real(name, float(v) if isinstance(v, np.floating) else v, low=low, low_open=low_open)
              for v in values]
    if not values:
        raise InputError(f"{name} must hold at least one value, got an empty sequence")
    if len(set(values)) != len(values):
        raise InputError(f"{name} must not repeat values, got {values!r}")
    return values


def fold_splits(y: np.ndarray, *, folds: int | None, holdout: float | None, classification: bool,
                split_seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train_rows, val_rows), …]``: K folds, or one holdout split of fraction ``holdout``."""
    with needs("sweep", "cross-validation folds"):
        from sklearn.model_selection import (
            KFold,
            ShuffleSplit,
            StratifiedKFold,
            StratifiedShuffleSplit,
        )

    n = len(y)
    if (folds is None) == (holdout is None):
        raise InputError(f"give exactly one of folds and holdout, got folds={folds!r}, holdout={holdout!r}")
    if holdout is not None:
        holdout = check_real("holdout", holdout, low=0.0, high=1.0, low_open=True, high_open=True)
        n_val = math.ceil(holdout * n)
        n_classes = len(np.unique(y)) if classification else 1
        if n_val < n_classes or n - n_val < n_classes:
            need = "at least one row" if n_classes == 1 else f"at least {n_classes} rows (one per class)"
            raise InputError(f"holdout={holdout} splits {n} rows into {n - n_val} training and {n_val} validation "
                             f"rows; each side needs {need}")
        stratified = not classification or _stratifiable(y, 2, "holdout")
        splitter = (StratifiedShuffleSplit if classification and stratified else ShuffleSplit)(
            n_splits=1, test_size=n_val, random_state=split_seed)
    else:
        folds = check_int("folds", folds, low=2)
        if folds > n:
            raise InputError(f"folds must be at most the number of samples ({n}), got {folds}")
        stratified = not classification or _stratifiable(y, folds, f"folds={folds}")
        splitter = (StratifiedKFold if classification and stratified else KFold)(
            n_splits=folds, shuffle=True, random_state=split_seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.zeros(n), y)]


def _stratifiable(y: np.ndarray, k: int, split: str) -> bool:
    """Stratify only where every class has at least ``k`` rows; else warn and use plain shuffled folds."""
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() >= k:
        return True
    warnings.warn(f"{split}: class {classes[counts.argmin()]} has only {counts.min()} rows, fewer than the {k} "
                  "splits, so the folds are not stratified (some folds miss that class)", stacklevel=3)
    return False


@dataclass(frozen=True)
class GridPoint:
    """One member of the grid: λ, lr, seed and the fold it holds out."""

    weight_decay: float
    lr: float
    seed: int
    fold: int

    def config(self) -> dict:
        return {"weight_decay": self.weight_decay, "lr": self.lr, "seed": self.seed, "fold": self.fold}


def grid_points(lambdas: Sequence[float], lrs: Sequence[float], seeds: Sequence[int], n_folds: int) -> list[GridPoint]:
    """Every (λ, lr, seed, fold) combination, λ slowest."""
    return [GridPoint(lam, lr, seed, fold)
            for lam, lr, seed, fold in itertools.product(lambdas, lrs, seeds, range(n_folds))]
