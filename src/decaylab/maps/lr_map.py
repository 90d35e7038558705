"""The learning rate × weight decay map of a model on its data: every cell trained, batched.

:func:`lr_decay_map` trains one member per (seed, lr, λ) with the batched engine
(:func:`decaylab.batched.trainer.train_batched`: G stacked copies of the model, each with its
own lr, λ and seed; member g equals the same run trained alone) — all seeds × lrs × λs in one
stacked model when they fit the memory budget of :mod:`decaylab.batched.chunking`, else in as
few chunks as do — and records, per cell, the
final training loss and the test error (1 − accuracy for classification, the test loss for
regression). Seeds change the initial weights and the batch order; every cell of one seed
starts from the same weights and sees the same batches, so differences across a row or a
column are the optimizer's, not the draw's.

The result's :meth:`LrDecayMap.basin` is the basin statistic of
:mod:`decaylab.maps.basin` (slope of log best-λ against log lr, with a bootstrap
interval over seeds), and :meth:`LrDecayMap.plot` draws test error and train loss side by
side with the best λ of each lr and the fitted line. ``regime`` says whether the model's
decayed weights — those the trainer decayed, by the map's ``decay_rule`` — are scale-invariant
(:func:`decaylab.maps.theory.detect_regime`) and ``predicted_slope`` is the theory's slope
there, drawn dotted over the map.

Example::

    import numpy as np, decaylab
    from decaylab import data, models

    ds = data.load("moons", seed=0, label_noise=0.2)
    m = decaylab.lr_decay_map(lambda: models.MLP(2, 2, (64, 64)), ds.train, ds.test, optimizer="adamw",
                              decay_scaling="schedule", lrs=np.logspace(-4, -1, 8),
                              decays=np.logspace(-4, 0, 8), seeds=(0, 1, 2), epochs=200)
    fit = m.basin()            # fit.slope, fit.interval(), fit.best_decay
    m.regime["regime"], m.predicted_slope   # "fixed-point" (no scale-invariant weights), 0.0
    m.plot().savefig("map.png")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from decaylab._checks import InputError, InputTypeError, check_choice, check_int
from decaylab._extras import needs
from decaylab._isolation import isolated
from decaylab.groups import DecayRule
from decaylab.maps.basin import BasinFit, fit_basin

__all__ = ["LrDecayMap", "draw_error_map", "lr_decay_map", "plot_maps"]


@dataclass
class LrDecayMap:
    """Per-cell results of an lr × λ grid; arrays are ``[seed, lr, λ]``."""

    optimizer: str
    decay_scaling: str | None         # None for the coupled optimizers (sgd, adam)
    lrs: np.ndarray
    decays: np.ndarray
    seeds: tuple[int, ...]
    test_error: np.ndarray            # NaN where the member diverged
    train_loss: np.ndarray            # NaN where the member diverged
    metric: str                       # "test error" (classification) or "test loss" (regression)
    seconds: float
    settings: dict = field(default_factory=dict)
    regime: dict | None = None        # :func:`decaylab.maps.theory.detect_regime` of the model
    decay_rule: DecayRule = field(default_factory=DecayRule)   # what the trainer decayed (and the regime saw)

    @property
    def predicted_slope(self) -> float | None:
        """The theory's basin slope for this optimizer in the model's regime (``None`` if none)."""
        from decaylab.maps.theory import predicted_slope

        if self.regime is None:
            return None
        return predicted_slope(self.optimizer, self.decay_scaling, self.regime["regime"])

    @property
    def label(self) -> str:
        names = {"sgd": "SGD (coupled L2)", "adam": "Adam (coupled L2)", "sgdw": "SGDW", "adamw": "AdamW"}
        name = names.get(self.optimizer, self.optimizer)
        return name if self.decay_scaling is None else f"{name}, decay_scaling={self.decay_scaling!r}"

    @property
    def diverged(self) -> np.ndarray:
        return np.isnan(self.train_loss)

    def mean_error(self) -> np.ndarray:
        """Test error averaged over seeds, NaN where any seed diverged."""
        return self.test_error.mean(axis=0)

    def basin(self, **kwargs: Any) -> BasinFit:
        """The basin statistic of the test-error map (keyword arguments go to :func:`fit_basin`)."""
        return fit_basin(self.test_error, self.lrs, self.decays, **kwargs)

    def best_cell(self) -> tuple[float, float, float]:
        """``(lr, λ, mean test error)`` of the best cell of the seed-mean map."""
        mean = np.where(np.isnan(self.mean_error()), np.inf, self.mean_error())
        i, j = np.unravel_index(np.argmin(mean), mean.shape)
        return float(self.lrs[i]), float(self.decays[j]), float(mean[i, j])

    def cells(self) -> list[dict]:
        """Every member as a flat record (JSON-ready; NaN becomes None)."""
        def num(x):
            return None if not np.isfinite(x) else float(x)

        return [{"optimizer": self.optimizer, "decay_scaling": self.decay_scaling, "seed": seed,
                 "lr": float(lr), "weight_decay": float(lam), "test_error": num(self.test_error[s, i, j]),
                 "train_loss": num(self.train_loss[s, i, j]), "diverged": bool(self.diverged[s, i, j])}
                for s, seed in enumerate(self.seeds) for i, lr in enumerate(self.lrs)
                for j, lam in enumerate(self.decays)]

    def plot(self, fit: BasinFit | None = None):
        """A matplotlib figure: mean test error and mean final train loss over the grid."""
        return plot_maps([self], [fit if fit is not None else self.basin()])


def _xy(split) -> tuple[Any, Any]:
    if hasattr(split, "X") and hasattr(split, "y"):
        return split.X, split.y
    if isinstance(split, (tuple, list)) and len(split) == 2:
        return split[0], split[1]
    raise InputTypeError(f"train and test must be (X, y) pairs or objects with .X and .y, got {type(split).__name__}")


def _grid(name: str, values) -> np.ndarray:
    grid = np.asarray(values, dtype=float)
    if grid.ndim != 1 or grid.size < 3 or not np.all(np.isfinite(grid)) or not np.all(grid > 0):
        raise InputError(f"{name} must be at least 3 positive finite values, got {np.asarray(values).tolist()}")
    if np.any(np.diff(grid) <= 0):
        raise InputError(f"{name} must be strictly increasing, got {grid.tolist()}")
    return grid


@isolated()              # the factory's probes draw from the global generator: the caller's is kept
def lr_decay_map(model_factory: Callable[[], torch.nn.Module], train, test, *, optimizer: str = "adamw",
                 lrs: Sequence[float], decays: Sequence[float], seeds: Sequence[int] = (0, 1, 2),
                 decay_scaling: str = "schedule", epochs: int = 100, batch_size: int = 64,
                 lr_schedule: str = "cosine", momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                 loss: str = "cross_entropy", decay_biases: bool = False, dtype: torch.dtype = torch.float32,
                 progress: bool = False, dampening: float = 0.0, nesterov: bool = False, eps: float = 1e-8,
                 amsgrad: bool = False, cautious: bool = False, l1_decay: float = 0.0,
                 no_decay_types: Sequence[type] | None = None, decay_names: Sequence[str] = (),
                 decay_embeddings: bool = False, chunk_size: int | None = None) -> LrDecayMap:
    """Train ``model_factory()`` at every (lr, λ, seed) of the grid and return the map.

    Args:
        model_factory: builds one model (on the global generator seeded with the member's seed); no
            BatchNorm or dropout (see :func:`decaylab.batched.trainer.check_batchable`).
        train, test: ``(X, y)`` pairs (or objects with ``.X``/``.y``, e.g. ``decaylab.data`` splits).
        optimizer: ``"sgd"`` / ``"adam"`` (coupled L2: ``g ← ∇L + λw``) or ``"sgdw"`` /
            ``"adamw"`` (decoupled: ``w ← w − s_t·λ·w``).
        lrs, decays: increasing grids (≥ 3 values each; log-spaced for the basin statistic).
        decay_scaling, cautious, l1_decay: for sgdw/adamw (ignored for sgd/adam), ``s_t = lr_t/lr_0``
            (``"schedule"``), ``lr_t`` (``"lr"``) or ``lr_t²/lr_0`` (``"corrected"``); cautious masking;
            the L1 soft threshold — every decoupled option of :class:`decaylab.optim.spec.OptimizerSpec`.
        momentum, dampening, nesterov (SGDs), betas, eps, amsgrad (Adams): the other optimizer options.
        no_decay_types, decay_names, decay_embeddings, decay_biases: what decays (param_groups' rule); the
            trainer's :class:`~decaylab.groups.DecayRule` for them is the result's ``decay_rule``, and the
            regime (hence the predicted slope) is that of the parameters it decays.
        epochs, batch_size, lr_schedule, loss, dtype: as :class:`decaylab.batched.members.TrainConfig`.
        chunk_size: members trained together (``None``: every seed × lr × λ member at once, or as many
            as fit the memory budget of :mod:`decaylab.batched.chunking`; a larger value is split to fit).
        progress: a progress bar over the chunks on stderr.
    """
    from decaylab._progress import progress_bar
    from decaylab.batched.chunking import plan_for_model
    from decaylab.batched.trainer import Member, TrainConfig, train_batched
    from decaylab.optim.spec import OptimizerSpec
    from decaylab.runspec import decay_rule

    check_choice("optimizer", optimizer, ("sgd", "sgdw", "adam", "adamw"))
    lr_grid, decay_grid = _grid("lrs", lrs), _grid("decays", decays)
    seeds = tuple(check_int(f"seeds[{i}]", s, low=0) for i, s in enumerate(seeds))
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, low=1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct non-negative integers (at least one), got {list(seeds)}")
    decoupled = optimizer in ("sgdw", "adamw")
    adam = optimizer.startswith("adam")
    sgd_options = dict(momentum=0.0, dampening=0.0, nesterov=False) if adam else \
        dict(momentum=momentum, dampening=dampening, nesterov=nesterov)
    decay_options = dict(decay_scaling=decay_scaling, cautious=cautious, l1_decay=l1_decay) if decoupled else {}
    config = TrainConfig(optimizer=OptimizerSpec(optimizer, betas=betas, eps=eps, amsgrad=amsgrad, **sgd_options,
                                                 **decay_options),
                         decay=decay_rule(decay_biases, no_decay_types=no_decay_types, decay_names=decay_names,
                                          decay_embeddings=decay_embeddings),
                         epochs=epochs, batch_size=batch_size, lr_schedule=lr_schedule, loss=loss, dtype=dtype)
    X, y = _xy(train)
    X_test, y_test = _xy(test)
    decay_rule = config.decay             # the trainer's rule: the regime sees what was decayed
    regime = _regime(model_factory, X, seeds[0], decay_rule, dtype)
    shape = (len(seeds), lr_grid.size, decay_grid.size)
    test_error, train_loss = np.full(shape, np.nan), np.full(shape, np.nan)
    cells = [(s, i, j) for s in range(len(seeds)) for i in range(lr_grid.size) for j in range(decay_grid.size)]
    members = [Member(weight_decay=float(decay_grid[j]), lr=float(lr_grid[i]), seed=seeds[s]) for s, i, j in cells]
    plan = plan_for_model(model_factory(), X, config, len(members), chunk_size)
    start = time.perf_counter()
    for first in progress_bar(range(0, len(members), plan.size), desc=f"{optimizer} lr×λ", enabled=progress,
                              unit="chunk"):
        chunk = members[first:first + plan.size]
        results = train_batched(model_factory, X, y, chunk, config, eval_sets={"test": (X_test, y_test)})
        for (s, i, j), r in zip(cells[first:first + plan.size], results):
            if r.diverged:
                continue
            train_loss[s, i, j] = r.train_loss
            test = r.eval["test"]
            test_error[s, i, j] = 1.0 - test["accuracy"] if loss == "cross_entropy" else test["loss"]
    settings = dict(epochs=epochs, batch_size=batch_size, lr_schedule=lr_schedule, loss=loss,
                    decay_biases=decay_biases, momentum=None if adam else momentum, chunks=plan.chunks,
                    betas=list(betas) if adam else None, **({"cautious": cautious, "l1_decay": l1_decay}
                                                           if decoupled and (cautious or l1_decay) else {}))
    return LrDecayMap(optimizer=optimizer, decay_scaling=decay_scaling if decoupled else None, lrs=lr_grid,
                      decays=decay_grid, seeds=seeds, test_error=test_error, train_loss=train_loss,
                      metric="test error" if loss == "cross_entropy" else "test loss",
                      seconds=time.perf_counter() - start, settings=settings, regime=regime, decay_rule=decay_rule)


def _regime(model_factory, X, seed: int, decay_rule: DecayRule, dtype: torch.dtype) -> dict:
    """Which regime the parameters ``decay_rule`` decays are in, probed on the first 64 training inputs."""
    from decaylab.maps.theory import detect_regime

    with isolated(seed):
        model = model_factory()
    return detect_regime(model, torch.as_tensor(X[:64]).to(dtype), decay_rule=decay_rule)


def _log_edges(grid: np.ndarray) -> np.ndarray:
    """Cell edges in log space for pcolormesh (midpoints, extended half a step at both ends)."""
    logs = np.log10(grid)
    mids = (logs[1:] + logs[:-1]) / 2
    return 10 ** np.concatenate([[logs[0] - (mids[0] - logs[0])], mids, [logs[-1] + (logs[-1] - mids[-1])]])


def _draw_predicted_line(ax, m: LrDecayMap, fit: BasinFit) -> None:
    """The theory's basin line (slope from the model's regime) through the kept best-λ points."""
    from decaylab.maps.theory import predicted_line

    line = predicted_line(m.predicted_slope, m.lrs, fit.best_decay, fit.kept)
    if line is not None:
        ax.plot(line, m.lrs, ":", color="white", lw=1.5,
                label=f"predicted ({m.regime['regime']}): slope {m.predicted_slope:+.0f}")


def draw_error_map(fig, ax, m: LrDecayMap, fit: BasinFit, *, legend: bool = True) -> None:
    """The seed-mean test-error map of ``m`` on ``ax``: best λ per lr (dots), the fitted line
    (dashed, with its interval) and the theory's predicted line (dotted), grey where diverged."""
    x_edges, y_edges = _log_edges(m.decays), _log_edges(m.lrs)
    err = np.ma.masked_invalid(m.mean_error())
    mesh = ax.pcolormesh(x_edges, y_edges, err, cmap="viridis_r", shading="flat")
    ax.set_facecolor("0.85")   # diverged cells: grey
    fig.colorbar(mesh, ax=ax, label=f"{m.metric} (mean of {len(m.seeds)} seeds)")
    kept = fit.kept
    ax.plot(fit.best_decay[kept], m.lrs[kept], "o", color="red", ms=4, label="best λ per lr")
    if np.isfinite(fit.slope):
        span = m.lrs[kept]
        line = np.exp(fit.intercept) * span ** fit.slope
        ax.plot(line, span, "--", color="red", lw=1,
                label="slope {:+.2f} [{:+.2f}, {:+.2f}]".format(fit.slope, *fit.interval()))
    _draw_predicted_line(ax, m, fit)
    ax.set_xlim(x_edges[0], x_edges[-1])
    ax.set_ylim(y_edges[0], y_edges[-1])
    if legend:
        ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
    _log_axes(ax, m)


def _log_axes(ax, m: LrDecayMap) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight decay λ")
    ax.set_ylabel("learning rate lr_0")
    ax.set_title(m.label, fontsize=9)


def plot_maps(maps: Sequence[LrDecayMap], fits: Sequence[BasinFit]):
    """One row per map: mean test error (best λ per lr as dots, the fitted line dashed) | mean train loss."""
    from decaylab._figures import new_figure

    with needs("report", "plotting an lr × λ map"):
        from matplotlib.colors import LogNorm

    fig, axes = new_figure(9.5, 3.4 * len(maps), feature="plotting an lr × λ map", nrows=len(maps), ncols=2,
                           squeeze=False)
    for (ax_err, ax_loss), m, fit in zip(axes, maps, fits):
        draw_error_map(fig, ax_err, m, fit)
        x_edges, y_edges = _log_edges(m.decays), _log_edges(m.lrs)
        loss = np.ma.masked_invalid(m.train_loss.mean(axis=0))
        positive = loss.compressed()[loss.compressed() > 0]
        spread = positive.size and positive.min() < positive.max()
        norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if spread else None
        mesh = ax_loss.pcolormesh(x_edges, y_edges, loss, cmap="magma_r", shading="flat", norm=norm)
        ax_loss.set_facecolor("0.85")
        fig.colorbar(mesh, ax=ax_loss, label="final train loss (mean)")
        _log_axes(ax_loss, m)
    return fig
