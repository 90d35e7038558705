"""The decoupling study: lr × λ maps for SGD, SGDW, Adam and AdamW (Loshchilov & Hutter 2019, Fig. 2).

The paper's claim: with coupled L2 decay (SGD with momentum, Adam: ``g ← ∇L + λw``) the good
(lr, λ) settings lie on a diagonal — λ must be retuned whenever lr changes — while with
decoupled decay scaled by the schedule (SGDW, AdamW with ``w ← w − (lr_t/lr_0)·λ·w``) the good
region is aligned with the axes. Measured here by the basin statistic
(:mod:`decaylab.maps.basin`): the slope of log(best λ) against log(lr), −1 for a
diagonal, 0 for axis-aligned. AdamW with torch's scaling (``w ← w − lr_t·λ·w``) is measured too:
``λ_lr = λ_schedule / lr_0`` gives exactly the same run, so its slope is the schedule-scaled
slope minus one, whatever the task.

The task (chosen with data, see :data:`TASK`): two moons with 20 % of the training labels
flipped, 100 training points, a 2-64-64-2 ReLU MLP trained full-batch for 1000 steps with a
cosine schedule (weights decayed, biases not). Without decay the mid-to-large-lr runs fit the
flipped labels (test error ~17–23 %) and the best λ brings them to ~11–12 %; the smallest
learning rates underfit and reach ~10 % with or without decay (their rows have no interior
best λ and are left out of the slope). Every member of every grid is trained by the batched
engine (:func:`decaylab.maps.lr_map.lr_decay_map`).

That task is the *fixed-point* regime. The same five arms are mapped in the *equilibrium*
regime too (:mod:`decaylab.maps.regimes`: the same data, a LayerNorm MLP whose hidden
weights are scale-invariant, mini-batches, constant lr), and every arm's measured slope is
compared with the slope :mod:`decaylab.maps.theory` predicts for its regime (none for
Adam with coupled L2 at equilibrium). In the equilibrium regime the best cell of each map is
retrained alone with a :class:`~decaylab.diagnostics.monitor.DecayMonitor` to check that its first
scale-invariant weight did reach the predicted equilibrium rotation. The ten maps are shared
out over worker processes (one torch thread each); one figure shows both regimes side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from decaylab._checks import InputError, check_int
from decaylab.experiments.decoupling_text import report_sections, side_by_side_section, study_summary, table_rows
from decaylab.maps.basin import BasinFit
from decaylab.maps.lr_map import LrDecayMap, lr_decay_map, plot_maps
from decaylab.maps.regimes import REGIME_SETUPS, equilibrium_check
from decaylab.maps.theory import predicted_slope
from decaylab.report.model import Section

__all__ = ["ARMS", "Arm", "BASIN", "DecouplingResult", "TASK", "run_decoupling"]

TASK = REGIME_SETUPS[0].task     # the fixed-point regime's task (the original study)


# The basin statistic's tolerances, in units of test error: cells within half a point of a row's
# best are one good run (the binomial standard error of a ~10 % error on 1000 test points is ~1
# point); both ends of a kept row must be at least one point worse than its best; and a row whose
# best is more than 5 points worse than the map's best (a learning rate where training fails at
# every λ: divergence, chance level) is not part of any basin and is left out.
BASIN = dict(tie_tol=0.005, min_contrast=0.01, row_gap=0.05)


@dataclass(frozen=True)
class Arm:
    """One optimizer of the study and the paper's expected slope (grids: per regime, in
    :data:`decaylab.maps.regimes.REGIME_SETUPS`)."""

    key: str
    optimizer: str
    decay_scaling: str | None
    paper_slope: float | None      # −1 coupled, 0 schedule-scaled; None where the paper has no panel

    def predicted(self, regime: str) -> float | None:
        """The theory's slope in ``regime`` (:func:`decaylab.maps.theory.predicted_slope`)."""
        return predicted_slope(self.optimizer, self.decay_scaling, regime)

    @property
    def title(self) -> str:
        names = {"sgd": "SGD + momentum, coupled L2", "sgdw": "SGDW", "adam": "Adam, coupled L2", "adamw": "AdamW"}
        scaling = "" if self.decay_scaling is None else f' (decay_scaling="{self.decay_scaling}")'
        return names[self.optimizer] + scaling


ARMS = (
    Arm("sgd", "sgd", None, -1.0),
    Arm("sgdw", "sgdw", "schedule", 0.0),
    Arm("adam", "adam", None, -1.0),
    Arm("adamw", "adamw", "schedule", 0.0),
    Arm("adamw-lr", "adamw", "lr", None),
)


@dataclass
class DecouplingResult:
    """Per regime and arm: the maps, their basin statistics and (equilibrium regime) the angle
    check; the report sections, the JSON summary and terminal rows."""

    maps: dict[str, dict[str, LrDecayMap]]
    fits: dict[str, dict[str, BasinFit]]
    sections: list[Section]
    summary: dict
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    checks: dict[str, dict[str, dict]] = field(default_factory=dict)


def _grid(log10_range: tuple[float, float], size: int) -> np.ndarray:
    return 10.0 ** np.linspace(log10_range[0], log10_range[1], size)


def _map_arm(regime: str, arm: Arm, *, size: int, n_epochs: int, seeds: int, n_boot: int):
    """One arm's map in one regime, its basin statistic, (equilibrium regime) the equilibrium check
    and the map's figure as PNG bytes (test error and train loss, :func:`plot_maps`).

    A job of :func:`run_decoupling`, run in a worker process (or in-process with one worker): it
    rebuilds the regime's data and model from :data:`REGIME_SETUPS` and uses one torch thread."""
    from decaylab.experiments._shared import intra_op_threads

    rs = next(r for r in REGIME_SETUPS if r.key == regime)
    task = rs.task
    with intra_op_threads(1):   # tiny models: extra threads only add synchronization
        dataset = rs.dataset()
        factory = rs.model_factory(dataset)
        lr_range, decay_range = rs.ranges[arm.key]
        m = lr_decay_map(
            factory, dataset.train, dataset.test, optimizer=arm.optimizer,
            lrs=_grid(lr_range, size), decays=_grid(decay_range, size),
            seeds=tuple(range(seeds)), decay_scaling=arm.decay_scaling or "lr", epochs=n_epochs,
            batch_size=task["batch_size"], lr_schedule=task["lr_schedule"], momentum=task["momentum"])
        fit = m.basin(n_boot=n_boot, **BASIN)
        check = None
        if m.regime["regime"] == "equilibrium":
            lr, lam, _ = m.best_cell()
            invariant = next(n for n, v in m.regime["scale_invariant"].items() if v)
            check = equilibrium_check(
                factory, dataset.train, optimizer=arm.optimizer, decay_scaling=arm.decay_scaling, lr=lr,
                decay=lam, epochs=n_epochs, batch_size=task["batch_size"], momentum=task["momentum"],
                param=invariant, decay_rule=m.decay_rule)
    from decaylab._figures import fig_to_png

    return m, fit, check, fig_to_png(plot_maps([m], [fit]))


def _map_job(regime: str, arm: Arm, options: dict):
    """:func:`_map_arm` of one job ``(regime, arm, options)`` (a module-level function, for worker processes)."""
    return _map_arm(regime, arm, **options)


def _run_jobs(jobs: list[tuple[str, Arm, dict]], workers: int, progress: bool) -> list:
    """``_map_arm(regime, arm, **options)`` for every job ``(regime, arm, options)``, results in job
    order; ``workers`` > 1: that many worker processes of one thread each
    (:func:`decaylab._workers.run_in_processes`: they die with this process and stop on Ctrl-C), the jobs
    handed out in the given order as workers free up."""
    from decaylab._progress import progress_bar
    from decaylab._workers import run_in_processes

    bar = progress_bar(total=len(jobs), desc="decoupling maps", enabled=progress, unit="map")
    results: list = [None] * len(jobs)

    def done(i: int, result) -> None:
        results[i] = result
        bar.update()

    try:
        if workers == 1:
            for i, job in enumerate(jobs):
                done(i, _map_job(*job))
        else:
            run_in_processes(_map_job, jobs, workers, done, threads=1)
    finally:
        bar.close()
    return results


def run_decoupling(*, quick: bool = False, seeds: int | None = None, epochs: int | None = None,
                   grid_size: int | None = None, arms: tuple[Arm, ...] = ARMS,
                   regimes: tuple[str, ...] = ("fixed-point", "equilibrium"), progress: bool = False,
                   n_boot: int = 2000, workers: int | None = None) -> DecouplingResult:
    """Train every arm's lr × λ grid in each regime for ``seeds`` seeds and build the report.

    ``quick``: each task's ``quick_grid_size`` (5 × 5) over the same ranges, its ``quick_epochs`` and 3
    seeds; otherwise its ``grid_size`` (8 × 8 fixed-point, 7 × 7 equilibrium), ``epochs`` and 5 seeds
    (3 seeds leave the SGD intervals too wide to tell −1, 0 and +1 apart). ``seeds``, ``epochs`` and
    ``grid_size`` override either, in both regimes. Each map's seeds × lrs × λs are trained together
    by the batched engine (:func:`~decaylab.maps.lr_map.lr_decay_map`); the maps (one per
    regime and arm) are shared out over ``workers`` processes of one thread each (default: 2, or 1
    on a one-core machine) — the same numbers whatever the count.
    """
    import os

    seeds = check_int("seeds", seeds if seeds is not None else (3 if quick else 5), low=1)
    if epochs is not None:
        epochs = check_int("epochs", epochs, low=1)
    if grid_size is not None:
        grid_size = check_int("grid_size", grid_size, low=3)
    workers = check_int("workers", workers if workers is not None else min(2, os.cpu_count() or 1), low=1)
    setups = {r.key: r for r in REGIME_SETUPS}
    for regime in regimes:
        if regime not in setups:
            raise InputError(f"regimes must hold only {', '.join(map(repr, setups))}, got {regime!r}")
    start = time.perf_counter()
    details, options = {}, {}
    for regime in regimes:
        task = setups[regime].task
        n_epochs = epochs if epochs is not None else task["quick_epochs" if quick else "epochs"]
        size = grid_size if grid_size is not None else task["quick_grid_size" if quick else "grid_size"]
        options[regime] = dict(size=size, n_epochs=n_epochs, seeds=seeds, n_boot=n_boot)
        dataset = setups[regime].dataset()
        n_train = len(dataset.train.X)
        details[regime] = dict(task, epochs=n_epochs, grid_size=size, seeds=seeds, quick=quick,
                               n_train_rows=n_train, n_test_rows=len(dataset.test.X),
                               steps=n_epochs * -(-n_train // task["batch_size"]))
    jobs = [(regime, arm, options[regime]) for regime in regimes for arm in arms]
    done = _run_jobs(jobs, min(workers, len(jobs)), progress)
    maps = {r: {} for r in regimes}
    fits = {r: {} for r in regimes}
    checks = {r: {} for r in regimes}
    pngs = {r: {} for r in regimes}
    for (regime, arm, _), (m, fit, check, png) in zip(jobs, done):
        maps[regime][arm.key], fits[regime][arm.key], pngs[regime][arm.key] = m, fit, png
        if check is not None:
            checks[regime][arm.key] = check
    seconds = time.perf_counter() - start
    sections, rows, summary = [], [], {"regimes": {}, "basin_settings": BASIN, "cells": []}
    for regime in regimes:
        m, f, c, setup = maps[regime], fits[regime], checks[regime], details[regime]
        sections += report_sections(setups[regime], arms, m, f, c, setup, pngs[regime], BASIN)
        rows += table_rows(regime, arms, m, f, c)
        summary["regimes"][regime] = study_summary(regime, arms, m, f, c, setup)
        summary["cells"] += [dict(cell, regime=regime, arm=arm.key) for arm in arms for cell in m[arm.key].cells()]
    if len(regimes) > 1:
        sections.insert(0, side_by_side_section(regimes, setups, arms, maps, fits))
    summary["seconds"] = round(seconds, 2)
    summary["setup"] = {"grid_size": {r: details[r]["grid_size"] for r in regimes}, "seeds": seeds, "quick": quick,
                        "regimes": list(regimes)}
    return DecouplingResult(maps, fits, sections, summary, rows, seconds, checks)
