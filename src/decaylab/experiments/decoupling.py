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

from decaylab._checks import check_int
from decaylab.maps.basin import BasinFit
from decaylab.maps.lr_map import LrDecayMap, draw_error_map, lr_decay_map, plot_maps
from decaylab.maps.regimes import REGIME_SETUPS, equilibrium_check
from decaylab.maps.theory import predicted_slope
from decaylab.report.model import Figure, Section, Table

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
            raise ValueError(f"regimes must hold only {', '.join(map(repr, setups))}, got {regime!r}")
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
        sections += _sections(setups[regime], arms, m, f, c, setup, pngs[regime])
        rows += _rows(regime, arms, m, f, c)
        summary["regimes"][regime] = _summary(regime, arms, m, f, c, setup)
        summary["cells"] += [dict(cell, regime=regime, arm=arm.key) for arm in arms for cell in m[arm.key].cells()]
    if len(regimes) > 1:
        sections.insert(0, _side_by_side(regimes, setups, arms, maps, fits))
    summary["seconds"] = round(seconds, 2)
    summary["setup"] = {"grid_size": {r: details[r]["grid_size"] for r in regimes}, "seeds": seeds, "quick": quick,
                        "regimes": list(regimes)}
    return DecouplingResult(maps, fits, sections, summary, rows, seconds, checks)


# -- numbers into words -------------------------------------------------------------------------

def _fmt_slope(fit: BasinFit) -> str:
    """``slope [low, high]`` with the union of the bootstrap and per-seed t intervals."""
    if not np.isfinite(fit.slope):
        return "no slope"
    low, high = fit.interval()
    if not np.isfinite(low):
        return f"{fit.slope:+.2f}"
    return f"{fit.slope:+.2f} [{low:+.2f}, {high:+.2f}]"


def _verdict(fit: BasinFit, expected: float | None, source: str = "the paper's") -> str:
    """How the measured slope compares with an expected one (``source``: whose), in words (union interval)."""
    if expected is None:
        return "—"
    if not np.isfinite(fit.slope):
        return "no slope: fewer than two learning rates had an interior best λ"
    low, high = fit.interval()
    if not np.isfinite(low):
        return f"one seed, no interval; {source} {expected:+.0f}"
    if low <= expected <= high:
        others = [f"{v:+.0f}" for v in (-1.0, 0.0, 1.0) if v != expected and low <= v <= high]
        if others:
            return f"inconclusive: the interval holds {source} {expected:+.0f} and {', '.join(others)}"
        return f"agrees with {source} {expected:+.0f}"
    return f"disagrees: the interval excludes {source} {expected:+.0f}"


def _agreement(fit: BasinFit, predicted: float | None) -> str:
    if predicted is None:
        return "no prediction (measured alone)"
    return _verdict(fit, predicted, "the predicted")


def _fmt_check(check: dict | None) -> str:
    """``measured / predicted rad (ratio)`` of an equilibrium check, or a dash."""
    if not check:
        return "—"
    if check["predicted_angle"] is None:
        return f"{check['angle']:.3g} rad (no prediction)"
    return f"{check['angle']:.3g} / {check['predicted_angle']:.3g} rad (×{check['ratio']:.2f})"


def _rows(regime, arms, maps, fits, checks) -> list[dict]:
    rows = []
    for arm in arms:
        fit, m = fits[arm.key], maps[arm.key]
        lr, lam, err = m.best_cell()
        predicted = arm.predicted(regime)
        rows.append({"regime": regime, "optimizer": arm.title,
                     "predicted": "none" if predicted is None else f"{predicted:+.0f}",
                     "slope [95% CI]": _fmt_slope(fit), "agrees": _agreement(fit, predicted),
                     "rows kept": f"{int(fit.kept.sum())}/{len(m.lrs)}",
                     "best cell": f"lr {lr:.3g}, λ {lam:.3g}: {100 * err:.1f} %",
                     "angle measured / predicted": _fmt_check(checks.get(arm.key))})
    return rows


_PICTURES = {-1.0: "diagonal (slope −1)", 0.0: "axis-aligned (slope 0)", 1.0: "rising (slope +1)"}


def _classify(fit: BasinFit) -> str:
    """Which of the pictures −1, 0, +1 the interval holds: one name, "x or y", or "intermediate"."""
    low, high = fit.interval()
    if not np.isfinite(low):
        return "undetermined"
    inside = [name for value, name in _PICTURES.items() if low <= value <= high]
    if not inside:
        return "intermediate (the interval holds none of −1, 0, +1)"
    return " or ".join(inside)


def _main_text(rs, arms, maps, fits, checks, setup) -> str:
    parts = []
    for arm in arms:
        fit, predicted = fits[arm.key], arm.predicted(rs.key)
        word = _agreement(fit, predicted)
        against = "no prediction" if predicted is None else f"{predicted:+.0f}"
        parts.append(f"{arm.title}: {_fmt_slope(fit)} against {against}"
                     f" ({word.split(':')[0]})")
    regime = next(iter(maps.values())).regime
    invariant = [n for n, v in regime["scale_invariant"].items() if v]
    text = (f"Each map trains {setup['grid_size']}×{setup['grid_size']} (lr, λ) cells × {setup['seeds']} seeds "
            f"(initial weights and batch order) on {rs.describe(setup)}. The detector (rescale each decayed weight, "
            f"compare outputs) finds {len(invariant)} scale-invariant decayed weight(s) "
            f"({', '.join(invariant) or 'none'}; "
            f"{100 * regime['invariant_fraction']:.0f} % of the decayed elements): the {regime['regime']} regime. "
            f"Slope of log(best λ) against log(lr), 95 % interval over seeds (bootstrap and per-seed t-interval, "
            f"whichever is wider at each end), against the slope the theory predicts for this regime (dotted line on "
            f"each map): " + "; ".join(parts) + ".")
    if checks:
        close = [f"{k} ×{c['ratio']:.2f}" for k, c in checks.items() if c["ratio"] is not None]
        text += (" Equilibrium check (the best cell of each map retrained alone with DecayMonitor, first "
                 "scale-invariant weight, mean rotation per step over the last quarter of training divided by the "
                 "predicted equilibrium angle): " + (", ".join(close) or "none predicted") + ". A ratio near 1 means "
                 "the weights reached the rotational equilibrium the prediction assumes; far from 1, the runs were "
                 "still in their transient and the equilibrium slope need not apply.")
    return text


def _explanation(arms, fits) -> str:
    """The lr-vs-schedule paragraph, each sentence chosen by the measured intervals."""
    def slopes(keys):
        return ", ".join(f"{fits[k].slope:+.2f}" for k in keys)

    def shows(keys, picture):
        return [k for k in keys if _classify(fits[k]) == picture]

    text = []
    if "adamw" in fits and "adamw-lr" in fits:
        sched, lr = fits["adamw"], fits["adamw-lr"]
        text.append(
            f"decay_scaling=\"lr\" (torch's AdamW) shrinks w by lr_t·λ per step, decay_scaling=\"schedule\" by "
            f"(lr_t/lr_0)·λ. AdamW-schedule at (lr_0, λ) is therefore exactly AdamW-lr at (lr_0, λ/lr_0): the two "
            f"maps hold the same runs with the λ axis sheared by lr_0, and their slopes must differ by exactly 1. "
            f"Measured: schedule {_fmt_slope(sched)}, lr {_fmt_slope(lr)}, difference {sched.slope - lr.slope:+.2f}. "
            f"Which scaling lets λ be tuned without touching lr is the one whose slope is 0; here lr-scaling is "
            f"{_classify(lr)} and schedule-scaling is {_classify(sched)}.")
    coupled = [k for k in ("sgd", "adam") if k in fits and np.isfinite(fits[k].slope)]
    scheduled = [k for k in ("sgdw", "adamw") if k in fits and np.isfinite(fits[k].slope)]
    for keys, picture, template in (
        (coupled, _PICTURES[0.0], "With coupled L2 ({who}: slopes {slopes}) the best λ barely moves with lr: runs "
                                  "that train to (near) equilibrium settle where ∇L + λw ≈ 0, a point that does "
                                  "not depend on lr."),
        (coupled, _PICTURES[-1.0], "With coupled L2 ({who}: slopes {slopes}) the best λ falls as lr rises, the "
                                   "paper's diagonal: what matters is the product lr·λ."),
        (scheduled, _PICTURES[1.0], "With schedule-scaled decoupled decay ({who}: slopes {slopes}) the best λ "
                                    "rises with lr: such runs settle where lr_0·u ≈ −λ·w (u the SGD or Adam "
                                    "step direction), an effective penalty λ/lr_0."),
        (scheduled, _PICTURES[0.0], "With schedule-scaled decoupled decay ({who}: slopes {slopes}) the basin is "
                                    "axis-aligned, as in the paper."),
    ):
        who = shows(keys, picture)
        if who:
            text.append(template.format(who=", ".join(who), slopes=slopes(who)))
    unclear = [k for k in coupled + scheduled if _classify(fits[k]) not in _PICTURES.values()]
    if unclear:
        text.append("Not one of the three pictures: " + "; ".join(
            f"{k} {_fmt_slope(fits[k])}, {_classify(fits[k])}" for k in unclear) + ".")
    if coupled and not shows(coupled, _PICTURES[-1.0]):
        text.append(
            "The paper's diagonal for coupled L2 comes from ResNets whose layers are followed by BatchNorm "
            "(scale-invariant weights, whose dynamics depend on lr·λ) trained for a fixed budget; this small "
            "MLP without normalization does not have that property: the hypothesis that the equilibrium regime "
            "below tests.")
    return " ".join(text)


def _sections(rs, arms, maps, fits, checks, setup, pngs) -> list[Section]:
    figures = []
    for arm in arms:
        figures.append(Figure(name=f"lr-decay-map-{rs.key}-{arm.key}", png=pngs[arm.key],
                              caption=f"{rs.key} regime, {arm.title}: mean test error (best λ per lr: dots; "
                                      f"fitted line dashed; predicted slope dotted) and final train loss; "
                                      f"grey = diverged."))
    table = Table(columns=list(_rows(rs.key, arms, maps, fits, checks)[0]),
                  rows=[list(r.values()) for r in _rows(rs.key, arms, maps, fits, checks)],
                  caption="Basin statistic per optimizer: slope of log(best λ) vs log(lr) on the seed-mean "
                          "map; 95 % interval = union of the percentile bootstrap over seeds and the t-interval "
                          "of the per-seed slopes. Best λ of a row: the mean log λ of the cells "
                          f"within {BASIN['tie_tol']:g} of its lowest error (the parabola vertex when that is one "
                          f"cell); rows kept = learning rates whose good cells are inside the grid with both "
                          f"edges at least {BASIN['min_contrast']:g} worse, and the row's best within "
                          f"{BASIN['row_gap']:g} of the map's best. Predicted: decaylab.maps.theory.")
    sections = [Section(key=f"decoupling-maps-{rs.key}", title=f"Learning rate × weight decay maps — {rs.title}",
                        text=_main_text(rs, arms, maps, fits, checks, setup), figures=figures, tables=[table])]
    explanation = _explanation(arms, fits) if rs.key == "fixed-point" else ""
    if explanation:
        sections.append(Section(key="decoupling-scaling", title="decay_scaling=\"lr\" vs \"schedule\"",
                                text=explanation))
    return sections


def _side_by_side(regimes, setups, arms, maps, fits) -> Section:
    """One figure: a row per arm, a column per regime, each map with its predicted basin line."""
    from decaylab._figures import fig_to_png, new_figure

    fig, axes = new_figure(4.8 * len(regimes), 3.2 * len(arms), nrows=len(arms), ncols=len(regimes), squeeze=False)
    for row, arm in zip(axes, arms):
        for ax, regime in zip(row, regimes):
            draw_error_map(fig, ax, maps[regime][arm.key], fits[regime][arm.key])
            ax.set_title(f"{regime}: {arm.title}", fontsize=9)
    lines = []
    for arm in arms:
        cells = []
        for regime in regimes:
            predicted = arm.predicted(regime)
            cells.append(f"{regime} {_fmt_slope(fits[regime][arm.key])} vs predicted "
                         f"{'none' if predicted is None else f'{predicted:+.0f}'}")
        lines.append(f"{arm.title}: " + ", ".join(cells))
    text = ("The same five optimizers on the same data (two moons, 20 % flipped labels) in both regimes; only "
            "the network differs (" + "; ".join(setups[r].title for r in regimes) + "). Dotted white: the slope "
            "the theory predicts for the regime, drawn through the measured best-λ points; dashed red: the "
            "measured slope. " + ". ".join(lines) + ".")
    figure = Figure(name="lr-decay-maps-both-regimes", png=fig_to_png(fig),
                    caption="Mean test error per (lr, λ) cell, one row per optimizer, one column per regime; "
                            "red dots: best λ per lr; dashed: fitted slope; dotted: predicted slope; grey: diverged.")
    return Section(key="decoupling-both-regimes", title="Both regimes side by side", text=text, figures=[figure])


def _summary(regime, arms, maps, fits, checks, setup) -> dict:
    out = {"setup": {k: (list(v) if isinstance(v, tuple) else v) for k, v in setup.items()}, "arms": {}}
    for arm in arms:
        m, fit = maps[arm.key], fits[arm.key]
        lr, lam, err = m.best_cell()
        predicted = arm.predicted(regime)
        out["arms"][arm.key] = {
            "optimizer": arm.optimizer, "decay_scaling": arm.decay_scaling, "title": arm.title,
            "predicted_slope": predicted, "agreement": _agreement(fit, predicted),
            "paper_slope": arm.paper_slope, "basin": fit.to_dict(), "verdict": _verdict(fit, arm.paper_slope),
            "detected_regime": m.regime, "equilibrium_check": checks.get(arm.key),
            "lrs": m.lrs, "decays": m.decays, "mean_test_error": m.mean_error(),
            "mean_train_loss": m.train_loss.mean(axis=0), "diverged_members": int(m.diverged.sum()),
            "best_cell": {"lr": lr, "weight_decay": lam, "test_error": err}, "seconds": round(m.seconds, 2),
            "settings": m.settings}
    return out
