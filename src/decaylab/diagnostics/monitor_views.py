"""How a :class:`~decaylab.diagnostics.monitor.DecayMonitor` shows what it recorded: the per-parameter
table of ``print(monitor)`` and the figure of ``monitor.plot()`` (the largest tensors one line each, the
rest one band)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from decaylab._checks import InputError, check_choice, check_int
from decaylab.diagnostics.bounds import bound_status
from decaylab.diagnostics.monitor_fields import FIELDS, METRICS

_MATRIX_COLUMNS = ("spectral_norm", "spectral_bound", "predicted_norm")


def flags(summary: dict, latest: dict) -> list[str]:
    """What a person should look at in one tensor's :meth:`~.monitor.DecayMonitor.summary` row (and its
    newest record ``latest``): an angle off its equilibrium by more than ×2; max|w| or ‖w‖₂ above its
    bound (``"above 1/λ bound"``, ``"above spectral bound"``) or saturating it (``"at 1/λ bound"``,
    ``"at spectral bound"``; :func:`decaylab.diagnostics.bounds.bound_status`); all weights zero."""
    out = []
    if summary["angle_ratio"] is not None and not 0.5 <= summary["angle_ratio"] <= 2:
        out.append(f"angle ×{summary['angle_ratio']:.2g} of equilibrium")
    for value, bound, name in (("max_abs", "max_abs_bound", "1/λ"), ("spectral_norm", "spectral_bound", "spectral")):
        status = bound_status(summary[value], summary[bound])
        if status is not None:
            out.append(f"{status} {name} bound")
    if latest["weight_norm"] == 0:
        out.append("all zero")
    return out


def _number(value: float | None, digits: str = ".3g") -> str:
    return "—" if value is None else format(value, digits)


def table(monitor) -> str:
    """A per-parameter table over the last quarter of the run: ‖w‖, ‖Δw‖/‖w‖, the measured and
    predicted rotation angles, max|w| against its bound (AdamW's and Lion's 1/λ), and :func:`flags`;
    when Muon matrices are watched also their ‖w‖₂, its spectral bound and the predicted equilibrium ‖w‖."""
    latest = monitor.latest()
    if not latest:
        return f"DecayMonitor: nothing recorded yet ({len(monitor._tracked)} tensors watched)"
    summaries = monitor.summary()
    matrices = any(s[c] is not None for s in summaries for c in _MATRIX_COLUMNS)
    head = ("param", "‖w‖", "Δw/w", "angle", "predicted", "max|w|", "bound",
            *(("‖w‖₂", "bound₂", "‖w‖ predicted") if matrices else ()), "flags")
    rows = []
    for s in summaries:
        r = latest[s["param"]]
        rows.append((s["param"], f"{r['weight_norm']:.3g}", f"{r['update_ratio']:.2g}", f"{s['angle']:.2g}",
                     _number(s["predicted_angle"], ".2g"), f"{s['max_abs']:.3g}", _number(s["max_abs_bound"]),
                     *((_number(s[c]) for c in _MATRIX_COLUMNS) if matrices else ()), ", ".join(flags(s, r))))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = [f"DecayMonitor: {len(rows)} tensors, step {monitor._steps} (means over the last quarter of the run)",
             "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def plot(monitor, metrics: Sequence[str] = ("angle", "weight_norm", "update_ratio", "max_abs"),
         params: Sequence[str] | None = None, top: int | None = 8):
    """A matplotlib ``Figure`` with one panel per metric over steps.

    The ``top`` largest tensors (most elements; ties in optimizer order) among ``params``
    (default: all recorded) are drawn one line each, with dashed lines of the same colour for
    ``predicted_angle`` (angle panel), ``max_abs_bound`` (max_abs panel), ``predicted_norm``
    (weight_norm panel) and ``spectral_bound`` (spectral_norm panel), where predicted; the rest are one
    grey band per panel (their per-step minimum to maximum) with their median as a grey line.
    So a panel has at most 2·``top`` + 1 lines and ``top`` + 1 legend entries however many
    tensors the model has. ``top=None`` draws every tensor as a line.
    """
    from decaylab._figures import new_figure

    for m in metrics:
        check_choice("metrics", m, METRICS)
    if top is not None:
        top = check_int("top", top, low=1)
    recorded = monitor.params
    params = recorded if params is None else list(params)
    for name in params:
        if name not in recorded:
            raise InputError(f"params must be among {', '.join(recorded) or '(none recorded)'}, got {name!r}")
    numel = {name: p.numel() for name, p, _ in monitor._tracked}
    order = sorted(range(len(params)), key=lambda k: -numel[params[k]])
    shown = params if top is None or len(params) <= top else [params[k] for k in sorted(order[:top])]
    rest = [name for name in params if name not in shown]

    fig, axes = new_figure(4.2 * len(metrics), 3.4, feature="DecayMonitor.plot", dpi=None, nrows=1,
                           ncols=len(metrics), squeeze=False)
    axes = axes[0]
    predictions = {"angle": "predicted_angle", "max_abs": "max_abs_bound", "weight_norm": "predicted_norm",
                   "spectral_norm": "spectral_bound"}
    for ax, metric in zip(axes, metrics):
        for name in shown:
            steps, values = monitor.series(name, metric)
            (line,) = ax.plot(steps, values, lw=1, label=name)
            if metric in predictions:
                _, pred = monitor.series(name, predictions[metric])
                if any(v is not None for v in pred):
                    ax.plot(steps, [math.nan if v is None else v for v in pred], ls="--", lw=1,
                            color=line.get_color())
        if rest:
            _band(monitor, ax, metric, rest)
        ax.set_xlabel("step")
        ax.set_title(metric.replace("_", " ") + (" (dashed: predicted)" if metric in predictions else ""))
        if metric in ("weight_norm", "update_ratio", "angle", "grad_norm"):
            ax.set_yscale("log")
    axes[0].legend(fontsize="x-small")
    return fig

def _band(monitor, ax, metric: str, names: list[str]) -> None:
    """Grey min–max band and median line of ``metric`` over the tensors ``names``, per kept step."""
    store = monitor._store
    cols = [monitor._index(name) for name in names]
    values = store.samples[:, cols, FIELDS.index(metric)]
    rows = ~np.isnan(values).all(axis=1)
    if not rows.any():
        return
    steps, values = store.steps[rows], values[rows]
    ax.fill_between(steps, np.nanmin(values, axis=1), np.nanmax(values, axis=1), color="0.6", alpha=0.3, lw=0,
                    label=f"other {len(names)} tensors (min–max, median)")
    ax.plot(steps, np.nanmedian(values, axis=1), color="0.45", lw=1)
