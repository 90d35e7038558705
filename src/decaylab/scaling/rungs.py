"""A measured rung: one sweep's validation curve over λ, its best λ and the bootstrap of that best λ over replicates.

A :class:`Rung` holds the run's :class:`~decaylab.scaling.settings.RunSettings`, the positive λ of its grid
(λ = 0 has no place on the log scale the rules work on and is left out) and ``values[λ, replicate]``, the
validation score of every member (a replicate is one (seed, fold); lower is better: a loss, or minus an
accuracy). A diverged member scores worse than every finite one.

Best λ (:func:`best_lambda`): the grid point of the lowest mean, refined by the vertex of the parabola through it
and its two neighbours in log λ (kept between the neighbours); a best λ on the grid's edge stays there. The
bootstrap resamples the replicates with replacement (the same draw for every λ, since a seed's members share its
initialization) and takes the best λ of each resampled mean curve.

Read from: a :class:`~decaylab.sweeps.result.SweepResult` or its ``results.json`` (:func:`rung_from_result`; the
members at its best lr), or a results store, one rung per sweep configuration in it
(:func:`rungs_from_store`; validation loss). Settings the result records: batch and epochs (``config["train"]``),
lr (the best lr), convention (the optimizer and its ``decay_scaling``), width and P for the built-in MLP
(``config["model"]``), rows N estimated as steps per epoch × B (each member's ``steps``/``epochs_run``: the true
N is at most that and more than B less; give ``rows=`` to be exact). Explicit settings replace recorded ones.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decaylab._checks import InputError, InputTypeError
from decaylab.scaling.settings import RunSettings, apply_settings, convention_of, parse_settings

__all__ = ["Rung", "best_lambda", "rung_from_result", "rungs_from_store", "rungs_from_path"]

MIN_LAMBDAS = 3          # positive λ a rung's curve needs for a best λ with neighbours


@dataclass
class Rung:
    """One measured run of a ladder (module docstring): settings, λ grid, ``values[λ, replicate]`` (lower is
    better), where it came from (``source``) and which settings were estimated rather than recorded."""

    settings: RunSettings
    lambdas: np.ndarray
    values: np.ndarray
    source: str = ""
    estimated: tuple[str, ...] = ()
    label: str = field(default="")

    def __post_init__(self):
        lam = np.asarray(self.lambdas, dtype=float)
        vals = np.asarray(self.values, dtype=float)
        if lam.ndim != 1 or vals.ndim != 2 or vals.shape[0] != lam.size:
            raise InputError(f"a rung needs values of shape [λ, replicate] matching its {lam.size} λ, got "
                             f"{vals.shape}")
        keep = lam > 0
        lam, vals = lam[keep], vals[keep]
        order = np.argsort(lam)
        lam, vals = lam[order], vals[order]
        if lam.size < MIN_LAMBDAS or len(np.unique(lam)) != lam.size:
            raise InputError(f"rung {self.source or self.label!r}: its grid needs at least {MIN_LAMBDAS} distinct "
                             f"λ > 0, got {lam.tolist()}")
        finite = vals[np.isfinite(vals)]
        if finite.size == 0:
            raise InputError(f"rung {self.source or self.label!r}: every member diverged, so it has no best λ")
        worst = finite.max() + abs(finite.max()) + 1.0
        self.lambdas, self.values = lam, np.where(np.isfinite(vals), vals, worst)

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean(axis=1)

    @property
    def se(self) -> np.ndarray:
        """Standard error of each λ's mean over replicates (0 with one replicate)."""
        r = self.values.shape[1]
        return self.values.std(axis=1, ddof=1) / math.sqrt(r) if r > 1 else np.zeros(len(self.lambdas))

    @property
    def best(self) -> float:
        return float(best_lambda(self.lambdas, self.mean[None, :])[0])

    def bootstrap(self, n_boot: int, rng: np.random.Generator) -> np.ndarray:
        """``n_boot`` best λ of mean curves over replicates resampled with replacement."""
        r = self.values.shape[1]
        draws = rng.integers(0, r, size=(n_boot, r))
        curves = self.values[:, draws].mean(axis=2).T                 # [boot, λ]
        return best_lambda(self.lambdas, curves)

    def loss_at(self, lam: float) -> float:
        """The mean curve at ``lam``, linear in log λ between grid points (the edge value outside the grid)."""
        return float(np.interp(math.log(lam), np.log(self.lambdas), self.mean))


def best_lambda(lambdas: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Per row of ``curves`` [n, λ]: the λ of the lowest value, refined by the parabola through it and its
    neighbours in log λ (vertex clipped to the neighbours); an edge minimum stays at the edge."""
    x = np.log(lambdas)
    i = np.argmin(curves, axis=1)
    out = x[i].copy()
    inner = (i > 0) & (i < len(x) - 1)
    j = i[inner]
    rows = np.nonzero(inner)[0]
    x0, x1, x2 = x[j - 1], x[j], x[j + 1]
    y0, y1, y2 = curves[rows, j - 1], curves[rows, j], curves[rows, j + 1]
    # vertex of the parabola through (x0,y0), (x1,y1), (x2,y2)
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = x1 - 0.5 * num / den
    vertex = np.where(np.isfinite(vertex), np.clip(vertex, x0, x2), x1)
    out[rows] = vertex
    return np.exp(out)


def _plain(value) -> float:
    return math.nan if value is None else float(value)


def _builtin_mlp(model: Mapping) -> tuple[int | None, int | None]:
    """(width, parameter count) of a built-in MLP spec ``{"builtin", "in", "out", "hidden"}``; width = the widest
    hidden layer."""
    if model.get("builtin") not in ("mlp", "linear"):
        return None, None
    sizes = [int(model["in"]), *map(int, model.get("hidden") or []), int(model["out"])]
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    return (max(sizes[1:-1]) if len(sizes) > 2 else None), params


def _settings_from(config: Mapping, lr: float | None, steps_per_epoch: float | None) -> tuple[RunSettings, list]:
    train = config.get("train") or {}
    batch = train.get("batch_size")
    width, params = _builtin_mlp(config.get("model") or {})
    rows = None if steps_per_epoch is None or batch is None else int(round(steps_per_epoch)) * int(batch)
    settings = RunSettings(rows=rows, width=width, batch=batch, epochs=train.get("epochs"), lr=lr, params=params,
                           convention=convention_of(train.get("optimizer", "adamw"), train.get("decay_scaling")))
    return settings, (["rows"] if rows is not None else [])


def _steps_per_epoch(rows: Sequence[Mapping]) -> float | None:
    per = [float(r["steps"]) / float(r["epochs_run"]) for r in rows
           if r.get("steps") and r.get("epochs_run") and not r.get("diverged")]
    return float(np.median(per)) if per else None


def _grid(rows: Sequence[Mapping], value_key: str, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """λ grid and values [λ, replicate] from member rows with ``lambda``, ``seed``, ``fold``."""
    lambdas = sorted({float(r["lambda"]) for r in rows})
    reps = sorted({(r["seed"], r["fold"]) for r in rows})
    values = np.full((len(lambdas), len(reps)), np.nan)
    li = {v: i for i, v in enumerate(lambdas)}
    ri = {v: i for i, v in enumerate(reps)}
    for r in rows:
        values[li[float(r["lambda"])], ri[(r["seed"], r["fold"])]] = sign * _plain(r.get(value_key))
    return np.array(lambdas), values


def rung_from_result(result: Any, source: str = "", **given) -> Rung:
    """A rung from a :class:`~decaylab.sweeps.result.SweepResult`, its ``to_dict()`` or a ``results.json`` path;
    ``given``: settings that replace or complete the recorded ones (``rows=…``, ``width=…``, ``steps=…``, …)."""
    if isinstance(result, (str, os.PathLike)):
        source = source or str(result)
        result = _read_json(Path(result))
    if hasattr(result, "to_dict"):
        result = result.to_dict()
    if not isinstance(result, Mapping) or "table" not in result or "config" not in result:
        raise InputTypeError(f"a rung must be a SweepResult, its to_dict() or a results.json path, got "
                             f"{type(result).__name__}")
    if result.get("best_lr") is None:
        raise InputError(f"sweep {source!r} has no best λ (every member diverged)")
    lr = float(result["best_lr"])
    rows = [r for r in result["table"] if float(r["lr"]) == lr]
    sign = -1.0 if result.get("metric") == "accuracy" else 1.0
    lambdas, values = _grid(rows, "val_metric", sign)
    settings, estimated = _settings_from(result["config"], lr, _steps_per_epoch(rows))
    return _with_given(Rung(settings, lambdas, values, source=source, estimated=tuple(estimated)), given)


def _with_given(rung: Rung, given: Mapping) -> Rung:
    if not given:
        return rung
    given = parse_settings(given, name=f"settings of {rung.source or 'the run'}")
    rung.settings = apply_settings(rung.settings, given)
    rung.estimated = tuple(e for e in rung.estimated if e not in given)
    return rung


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{str(path)!r} is not JSON ({exc.msg}, line {exc.lineno})") from None


def rungs_from_store(path: str | os.PathLike, **given) -> list[Rung]:
    """One rung per sweep configuration in the results store at ``path`` (validation loss; at each
    configuration's lr of lowest best loss when it holds several lrs)."""
    from decaylab.sweeps.store import ResultStore

    with ResultStore(path) as store:
        stored = store.rows()
    by_sweep: dict[str, list[dict]] = {}
    configs: dict[str, dict] = {}
    for row in stored:
        cfg, res = row["config"], row["result"]
        if "weight_decay" not in cfg or "fold" not in cfg:
            continue                                   # an evidence run, not a grid member
        configs[row["sweep_key"]] = cfg.get("sweep", {})
        by_sweep.setdefault(row["sweep_key"], []).append(
            {"lambda": cfg["weight_decay"], "lr": cfg["lr"], "seed": cfg["seed"], "fold": cfg["fold"],
             "val_loss": res.get("val_loss"), "steps": res.get("steps"), "epochs_run": res.get("epochs_run"),
             "diverged": res.get("diverged")})
    rungs = []
    for key, rows in by_sweep.items():
        best_lr, best_loss = None, math.inf
        for lr in sorted({r["lr"] for r in rows}):
            lam, vals = _grid([r for r in rows if r["lr"] == lr], "val_loss", 1.0)
            mean = np.nanmean(np.where(np.isfinite(vals), vals, np.nan), axis=1) if np.isfinite(vals).any() else None
            if mean is not None and np.nanmin(mean) < best_loss:
                best_lr, best_loss = lr, float(np.nanmin(mean))
        if best_lr is None:
            continue
        at = [r for r in rows if r["lr"] == best_lr]
        lambdas, values = _grid(at, "val_loss", 1.0)
        settings, estimated = _settings_from(configs[key], float(best_lr), _steps_per_epoch(at))
        rungs.append(_with_given(Rung(settings, lambdas, values, source=f"{path}#{key[:8]}",
                                      estimated=tuple(estimated)), given))
    if not rungs:
        raise InputError(f"store {str(path)!r} holds no finished grid sweep")
    return rungs


def rungs_from_path(path: str | os.PathLike, **given) -> list[Rung]:
    """The rungs at ``path``: a ``results.json``, a results store (``.sqlite``/``.db``), or a directory holding
    ``results.json`` (one rung) or else ``sweep.sqlite`` (every sweep in it)."""
    p = Path(path)
    if p.is_dir():
        if (p / "results.json").is_file():
            return [rung_from_result(p / "results.json", source=str(p), **given)]
        if (p / "sweep.sqlite").is_file():
            return rungs_from_store(p / "sweep.sqlite", **given)
        raise InputError(f"run directory {str(p)!r} holds neither results.json nor sweep.sqlite (what decaylab sweep "
                         "--out writes)")
    if not p.exists():
        raise InputError(f"run {str(p)!r} does not exist")
    if p.suffix == ".json":
        return [rung_from_result(p, **given)]
    return rungs_from_store(p, **given)
