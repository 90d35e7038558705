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
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from decaylab._checks import InputError, InputTypeError, check_int
from decaylab._extras import needs
from decaylab._isolation import isolated
from decaylab._options import Default, given_values
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
        names = {"sgd": "SGD (coupled L2)", "adam": "Adam (coupled L2)", "sgdw": "SGDW", "adamw": "AdamW",
                 "muon": "Muon (+ AdamW)", "lion": "Lion"}
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


#: The map's defaults where they differ from the optimizer options' declared ones.
MAP_DEFAULTS = {"decay_scaling": "schedule", "momentum": 0.9}


def _defaults():
    """Each optimizer option's default in :func:`lr_decay_map`'s signature (the declared one, or the map's)."""
    from decaylab.optim.options import OPTIONS

    return SimpleNamespace(**{name: Default(MAP_DEFAULTS.get(name, option.default)) for name, option in OPTIONS.items()
                              if name not in ("optimizer", "weight_decay")})


D = _defaults()


@isolated()              # the factory's probes draw from the global generator: the caller's is kept
def lr_decay_map(model_factory: Callable[[], torch.nn.Module], train, test, *, optimizer: str = "adamw",
                 lrs: Sequence[float], decays: Sequence[float], seeds: Sequence[int] = (0, 1, 2),
                 decay_scaling: str = D.decay_scaling, epochs: int = 100, batch_size: int = 64,
                 lr_schedule: str = "cosine", momentum: float = D.momentum, betas: tuple[float, float] = D.betas,
                 loss: str = "cross_entropy", decay_biases: bool = False, dtype: torch.dtype = torch.float32,
                 progress: bool = False, dampening: float = D.dampening, nesterov: bool = D.nesterov,
                 eps: float = D.eps, amsgrad: bool = D.amsgrad, cautious: bool = D.cautious,
                 l1_decay: float = D.l1_decay, no_decay_types: Sequence[type] | None = None,
                 decay_names: Sequence[str] = (), decay_embeddings: bool = False, chunk_size: int | None = None,
                 ns_steps: int = D.ns_steps, ns_coefficients: tuple[float, float, float] = D.ns_coefficients,
                 adjust_lr_fn: str | None = D.adjust_lr_fn, ns_dtype: torch.dtype | None = D.ns_dtype,
                 flatten: bool = D.flatten, muon_names: Sequence[str] = D.muon_names,
                 adamw_names: Sequence[str] = D.adamw_names, head_names: Sequence[str] | None = D.head_names,
                 adamw_lr_ratio: float = D.adamw_lr_ratio, adamw_betas: tuple[float, float] = D.adamw_betas,
                 adamw_eps: float = D.adamw_eps, adamw_weight_decay: float | None = D.adamw_weight_decay) -> LrDecayMap:
    """Train ``model_factory()`` at every (lr, λ, seed) of the grid and return the map.

    Args:
        model_factory: builds one model (on the global generator seeded with the member's seed); no
            BatchNorm or dropout (see :func:`decaylab.batched.trainer.check_batchable`).
        train, test: ``(X, y)`` pairs (or objects with ``.X``/``.y``, e.g. ``decaylab.data`` splits).
        optimizer: ``"sgd"`` / ``"adam"`` (coupled L2: ``g ← ∇L + λw``), ``"sgdw"`` / ``"adamw"``
            (decoupled: ``w ← w − s_t·λ·w``), ``"muon"`` (Muon for the hidden matrices with the AdamW
            companion for the rest, :class:`decaylab.optim.MuonAdamW`) or ``"lion"`` (decoupled too).
        lrs, decays: increasing grids (≥ 3 values each; log-spaced for the basin statistic).
        decay_scaling, cautious, l1_decay: for the decoupled optimizers (ignored for sgd/adam),
            ``s_t = lr_t/lr_0`` (``"schedule"``, the map's default), ``lr_t`` (``"lr"``) or ``lr_t²/lr_0``
            (``"corrected"``); cautious masking; the L1 soft threshold — every decoupled option of
            :class:`decaylab.optim.spec.OptimizerSpec`.
        momentum, dampening, nesterov (SGDs; momentum 0.9 here), betas, eps, amsgrad (Adams): the other
            optimizer options. muon: ``momentum``, ``nesterov``, ``eps`` (Muon's own defaults when left out),
            ``ns_steps``, ``ns_coefficients``, ``adjust_lr_fn``, ``ns_dtype``, ``flatten``, ``muon_names``,
            ``adamw_names``, ``head_names`` and the companion's ``adamw_lr_ratio``, ``adamw_betas``,
            ``adamw_eps``, ``adamw_weight_decay`` (λ: the cell's, for both halves unless that sets the
            companion's; :mod:`decaylab.optim.options`); lion: ``betas`` (its own default when left out).
            An option the optimizer does not take, given, is refused in one line (sgd, sgdw, adam and adamw
            ignore the others' options of format 2, as before).
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
    from decaylab.optim.options import FORMAT_2_OPTIMIZERS, OPTIONS, refuse_inapplicable
    from decaylab.runspec import decay_rule

    arguments = dict(locals())
    values, given = given_values({name: arguments[name] for name in vars(D)})
    OPTIONS["optimizer"].check(optimizer)
    refuse_inapplicable(optimizer, values, given)
    lr_grid, decay_grid = _grid("lrs", lrs), _grid("decays", decays)
    seeds = tuple(check_int(f"seeds[{i}]", s, low=0) for i, s in enumerate(seeds))
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, low=1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct non-negative integers (at least one), got {list(seeds)}")
    spec = _optimizer_spec(optimizer, values, given, FORMAT_2_OPTIMIZERS)
    config = TrainConfig(optimizer=spec,
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
                    decay_biases=decay_biases, chunks=plan.chunks, **_optimizer_settings(spec))
    return LrDecayMap(optimizer=optimizer, decay_scaling=spec.decay_scaling if spec.decoupled else None, lrs=lr_grid,
                      decays=decay_grid, seeds=seeds, test_error=test_error, train_loss=train_loss,
                      metric="test error" if loss == "cross_entropy" else "test loss",
                      seconds=time.perf_counter() - start, settings=settings, regime=regime, decay_rule=decay_rule)


def _optimizer_spec(optimizer: str, values: dict, given, format_2: Sequence[str]):
    """The map's :class:`~decaylab.optim.spec.OptimizerSpec`: sgd/sgdw/adam/adamw as the map always built them
    (the SGD options for the SGDs only, the decoupled ones for the decoupled only); muon and lion with the map's
    ``decay_scaling`` and the options given (the others take the optimizer's own defaults)."""
    from decaylab.optim.spec import OptimizerSpec

    if optimizer not in format_2:
        return OptimizerSpec.from_options(optimizer, decay_scaling=values["decay_scaling"],
                                          **{k: values[k] for k in given if k != "decay_scaling"})
    adam = optimizer.startswith("adam")
    sgd_options = dict(momentum=0.0, dampening=0.0, nesterov=False) if adam else \
        {k: values[k] for k in ("momentum", "dampening", "nesterov")}
    decay_options = {k: values[k] for k in ("decay_scaling", "cautious", "l1_decay")} \
        if optimizer in ("sgdw", "adamw") else {}
    return OptimizerSpec(optimizer, betas=values["betas"], eps=values["eps"], amsgrad=values["amsgrad"],
                         **sgd_options, **decay_options)


def _optimizer_settings(spec) -> dict:
    """What a map's ``settings`` record of its optimizer: momentum (SGDs, Muon), betas (Adams, Lion), cautious
    and l1_decay where on; muon: also its other options (as store keys hold them)."""
    out = dict(momentum=spec.momentum if spec.name in ("sgd", "sgdw", "muon") else None,
               betas=list(spec.betas) if spec.is_adam or spec.name == "lion" else None)
    if spec.decoupled and (spec.cautious or spec.l1_decay):
        out.update(cautious=spec.cautious, l1_decay=spec.l1_decay)
    if spec.name == "muon":
        out["muon"] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.as_dict().items()
                       if k not in ("optimizer", "momentum", "cautious", "l1_decay", "decay_scaling")}
    return out


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
