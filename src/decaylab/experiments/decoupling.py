"""The decoupling study: lr × λ maps for SGD, SGDW, Adam and AdamW (Loshchilov & Hutter 2019, Fig. 2).

The paper's claim: with coupled L2 decay (SGD with momentum, Adam: ``g ← ∇L + λw``) the good
(lr, λ) settings lie on a diagonal — λ must be retuned whenever lr changes — while with
decoupled decay scaled by the schedule (SGDW, AdamW with ``w ← w − (lr_t/lr_0)·λ·w``) the good
region is aligned with the axes. Measured here by the basin statistic
(:mod:`decaylab.experiments.basin`): the slope of log(best λ) against log(lr), −1 for a
diagonal, 0 for axis-aligned. AdamW with torch's scaling (``w ← w − lr_t·λ·w``) is measured too:
``λ_lr = λ_schedule / lr_0`` gives exactly the same run, so its slope is the schedule-scaled
slope minus one, whatever the task.

The task (chosen with data, see :data:`TASK`): two moons with 20 % of the training labels
flipped, 100 training points, a 2-64-64-2 ReLU MLP trained full-batch for 1000 steps with a
cosine schedule (weights decayed, biases not). Without decay the mid-to-large-lr runs fit the
flipped labels (test error ~17–23 %) and the best λ brings them to ~11–12 %; the smallest
learning rates underfit and reach ~10 % with or without decay (their rows have no interior
best λ and are left out of the slope). Every member of every grid is trained by the batched
engine (:func:`decaylab.experiments.lr_map.lr_decay_map`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from decaylab._checks import check_int
from decaylab.experiments.basin import BasinFit
from decaylab.experiments.lr_map import LrDecayMap, lr_decay_map, plot_maps
from decaylab.report.model import Figure, Section, Table

__all__ = ["ARMS", "Arm", "BASIN", "DecouplingResult", "TASK", "run_decoupling"]

TASK = dict(dataset="moons", n_train=100, noise=0.2, label_noise=0.2, n_test=1000, hidden=(64, 64),
            batch_size=100, epochs=1000, quick_epochs=200, lr_schedule="cosine", momentum=0.9)


# The basin statistic's tolerances, in units of test error: cells within half a point of a row's
# best are one good run (the binomial standard error of a ~10 % error on 1000 test points is ~1
# point); both ends of a kept row must be at least one point worse than its best; and a row whose
# best is more than 5 points worse than the map's best (a learning rate where training fails at
# every λ: divergence, chance level) is not part of any basin and is left out.
BASIN = dict(tie_tol=0.005, min_contrast=0.01, row_gap=0.05)


@dataclass(frozen=True)
class Arm:
    """One optimizer of the study with its grid (log10 ranges) and the paper's expected slope."""

    key: str
    optimizer: str
    decay_scaling: str | None
    log10_lrs: tuple[float, float]
    log10_decays: tuple[float, float]
    paper_slope: float | None      # −1 coupled, 0 schedule-scaled; None where the paper has no panel

    @property
    def title(self) -> str:
        names = {"sgd": "SGD + momentum, coupled L2", "sgdw": "SGDW", "adam": "Adam, coupled L2", "adamw": "AdamW"}
        scaling = "" if self.decay_scaling is None else f' (decay_scaling="{self.decay_scaling}")'
        return names[self.optimizer] + scaling


# Ranges chosen in trial runs so that each map has its good region inside: lr from where a run
# starts to overfit without decay up to divergence, λ from no effect to underfitting.
ARMS = (
    Arm("sgd", "sgd", None, (-2.0, 0.5), (-4.5, -1.0), -1.0),
    Arm("sgdw", "sgdw", "schedule", (-2.0, 0.5), (-4.0, -0.5), 0.0),
    Arm("adam", "adam", None, (-4.0, -0.5), (-4.5, -1.0), -1.0),
    Arm("adamw", "adamw", "schedule", (-4.0, -0.5), (-3.5, 0.0), 0.0),
    Arm("adamw-lr", "adamw", "lr", (-4.0, -0.5), (-1.5, 2.0), None),
)


@dataclass
class DecouplingResult:
    """The maps, their basin statistics, the report sections, the JSON summary and terminal rows."""

    maps: dict[str, LrDecayMap]
    fits: dict[str, BasinFit]
    sections: list[Section]
    summary: dict
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _grid(log10_range: tuple[float, float], size: int) -> np.ndarray:
    return 10.0 ** np.linspace(log10_range[0], log10_range[1], size)


def run_decoupling(*, quick: bool = False, seeds: int | None = None, epochs: int | None = None,
                   grid_size: int | None = None,
                   arms: tuple[Arm, ...] = ARMS, layer_norm: bool = False, progress: bool = False,
                   n_boot: int = 2000) -> DecouplingResult:
    """Train every arm's lr × λ grid for ``seeds`` seeds and build the report.

    ``quick``: 5 × 5 grids over the same ranges, :data:`TASK`'s ``quick_epochs`` and 3 seeds;
    otherwise 8 × 8, ``TASK["epochs"]`` and 5 seeds (3 seeds leave the SGD intervals too wide to
    tell −1, 0 and +1 apart). ``seeds``, ``epochs`` and ``grid_size`` override either. ``layer_norm``
    puts a LayerNorm after each hidden Linear layer (its weights then scale-invariant, as with
    the paper's BatchNorm ResNets).
    """
    from decaylab import data, models
    from decaylab.experiments._shared import intra_op_threads

    seeds = check_int("seeds", seeds if seeds is not None else (3 if quick else 5), low=1)
    epochs = check_int("epochs", epochs if epochs is not None else TASK["quick_epochs" if quick else "epochs"], low=1)
    grid_size = check_int("grid_size", grid_size if grid_size is not None else (5 if quick else 8), low=3)
    dataset = data.load(TASK["dataset"], seed=0, n_train=TASK["n_train"], n_test=TASK["n_test"],
                        noise=TASK["noise"], label_noise=TASK["label_noise"])

    def model_factory():
        return models.MLP(dataset.n_features, dataset.n_classes, TASK["hidden"], layer_norm=layer_norm)

    start = time.perf_counter()
    maps, fits = {}, {}
    with intra_op_threads(1):   # tiny models: extra threads only add synchronization
        for arm in arms:
            maps[arm.key] = lr_decay_map(
                model_factory, dataset.train, dataset.test, optimizer=arm.optimizer,
                lrs=_grid(arm.log10_lrs, grid_size), decays=_grid(arm.log10_decays, grid_size),
                seeds=tuple(range(seeds)), decay_scaling=arm.decay_scaling or "lr", epochs=epochs,
                batch_size=TASK["batch_size"], lr_schedule=TASK["lr_schedule"], momentum=TASK["momentum"],
                progress=progress)
            fits[arm.key] = maps[arm.key].basin(n_boot=n_boot, **BASIN)
    seconds = time.perf_counter() - start
    setup = dict(TASK, epochs=epochs, grid_size=grid_size, seeds=seeds, quick=quick, layer_norm=layer_norm)
    return DecouplingResult(maps, fits, _sections(arms, maps, fits, setup), _summary(arms, maps, fits, setup, seconds),
                            _rows(arms, maps, fits), seconds)


# -- numbers into words -------------------------------------------------------------------------

def _fmt_slope(fit: BasinFit) -> str:
    """``slope [low, high]`` with the union of the bootstrap and per-seed t intervals."""
    if not np.isfinite(fit.slope):
        return "no slope"
    low, high = fit.interval()
    if not np.isfinite(low):
        return f"{fit.slope:+.2f}"
    return f"{fit.slope:+.2f} [{low:+.2f}, {high:+.2f}]"


def _verdict(fit: BasinFit, expected: float | None) -> str:
    """How the measured slope compares with the paper's, in words (union interval)."""
    if expected is None:
        return "—"
    if not np.isfinite(fit.slope):
        return "no slope: fewer than two learning rates had an interior best λ"
    low, high = fit.interval()
    if not np.isfinite(low):
        return f"one seed, no interval; paper {expected:+.0f}"
    if low <= expected <= high:
        others = [f"{v:+.0f}" for v in (-1.0, 0.0, 1.0) if v != expected and low <= v <= high]
        if others:
            return f"inconclusive: the interval holds the paper's {expected:+.0f} and {', '.join(others)}"
        return f"agrees with the paper's {expected:+.0f}"
    return f"disagrees: the interval excludes the paper's {expected:+.0f}"


def _rows(arms, maps, fits) -> list[dict]:
    rows = []
    for arm in arms:
        fit, m = fits[arm.key], maps[arm.key]
        lr, lam, err = m.best_cell()
        rows.append({"optimizer": arm.title, "slope [95% CI]": _fmt_slope(fit),
                     "rows kept": f"{int(fit.kept.sum())}/{len(m.lrs)}", "paper": _verdict(fit, arm.paper_slope),
                     "best cell": f"lr {lr:.3g}, λ {lam:.3g}: {100 * err:.1f} %"})
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


def _main_text(arms, maps, fits, setup) -> str:
    parts = []
    for arm in arms:
        fit = fits[arm.key]
        parts.append(f"{arm.title}: {_fmt_slope(fit)}, {_classify(fit)}")
    coupled = [a for a in arms if a.paper_slope == -1.0]
    scheduled = [a for a in arms if a.paper_slope == 0.0]
    agree = [a.title for a in coupled + scheduled if _verdict(fits[a.key], a.paper_slope).startswith("agrees")]
    disagree = [a.title for a in coupled + scheduled if _verdict(fits[a.key], a.paper_slope).startswith("disagrees")]
    summary = (f"Agreeing with the paper: {', '.join(agree) or 'none'}. "
               f"Disagreeing: {', '.join(disagree) or 'none'}.")
    return (f"Each map trains {setup['grid_size']}×{setup['grid_size']} (lr, λ) cells × {setup['seeds']} seeds "
            f"(initial weights and batch order) on two moons with {100 * setup['label_noise']:.0f} % flipped "
            f"training labels ({setup['n_train']} training points, {setup['n_test']} clean test points), a 2-"
            f"{'-'.join(map(str, setup['hidden']))}-2 ReLU MLP{' with LayerNorm' if setup['layer_norm'] else ''}, "
            f"full-batch, {setup['epochs']} steps of a cosine "
            f"schedule. The basin statistic is the least-squares slope of log(best λ) against log(lr), with a 95 % "
            f"interval over seeds (bootstrap and per-seed t-interval, whichever is wider at each end); the "
            f"paper's Figure 2 corresponds to −1 for coupled L2 and 0 for "
            f"schedule-scaled decoupled decay. Learning rates whose best λ is not inside the grid with a wall on "
            f"both sides are left out (at small lr the short run underfits and decay cannot help; at the "
            f"largest lr runs diverge); the table gives how many rows each fit kept. Measured: "
            + "; ".join(parts) + ". " + summary)


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
            "MLP without normalization does not have that property. That is our hypothesis for the difference, "
            "not a measured fact.")
    return " ".join(text)


def _sections(arms, maps, fits, setup) -> list[Section]:
    from decaylab.experiments._shared import fig_to_png

    figures = []
    for arm in arms:
        fig = plot_maps([maps[arm.key]], [fits[arm.key]])
        figures.append(Figure(name=f"lr-decay-map-{arm.key}", png=fig_to_png(fig),
                              caption=f"{arm.title}: mean test error (best λ per lr: dots; fitted line dashed) "
                                      f"and final train loss; grey = diverged."))
    table = Table(columns=["optimizer", "slope [95% CI]", "rows kept", "paper", "best cell"],
                  rows=[list(r.values()) for r in _rows(arms, maps, fits)],
                  caption="Basin statistic per optimizer: slope of log(best λ) vs log(lr) on the seed-mean "
                          "map; 95 % interval = union of the percentile bootstrap over seeds and the t-interval "
                          "of the per-seed slopes. Best λ of a row: the mean log λ of the cells "
                          f"within {BASIN['tie_tol']:g} of its lowest error (the parabola vertex when that is one "
                          f"cell); rows kept = learning rates whose good cells are inside the grid with both "
                          f"edges at least {BASIN['min_contrast']:g} worse, and the row's best within "
                          f"{BASIN['row_gap']:g} of the map's best.")
    sections = [Section(key="decoupling-maps", title="Learning rate × weight decay maps",
                        text=_main_text(arms, maps, fits, setup), figures=figures, tables=[table])]
    explanation = _explanation(arms, fits)
    if explanation:
        sections.append(Section(key="decoupling-scaling", title="decay_scaling=\"lr\" vs \"schedule\"",
                                text=explanation))
    return sections


def _summary(arms, maps, fits, setup, seconds) -> dict:
    out = {"setup": {k: (list(v) if isinstance(v, tuple) else v) for k, v in setup.items()}, "basin_settings": BASIN,
           "arms": {}, "cells": []}
    for arm in arms:
        m, fit = maps[arm.key], fits[arm.key]
        lr, lam, err = m.best_cell()
        out["arms"][arm.key] = {
            "optimizer": arm.optimizer, "decay_scaling": arm.decay_scaling, "title": arm.title,
            "paper_slope": arm.paper_slope, "basin": fit.to_dict(), "verdict": _verdict(fit, arm.paper_slope),
            "lrs": m.lrs, "decays": m.decays, "mean_test_error": m.mean_error(),
            "mean_train_loss": m.train_loss.mean(axis=0), "diverged_members": int(m.diverged.sum()),
            "best_cell": {"lr": lr, "weight_decay": lam, "test_error": err}, "seconds": round(m.seconds, 2),
            "settings": m.settings}
        out["cells"].extend(dict(c, arm=arm.key) for c in m.cells())
    out["seconds"] = round(seconds, 2)
    return out

