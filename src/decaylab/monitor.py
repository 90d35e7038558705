"""Watch what weight decay does to each parameter tensor, step by step, against what theory predicts.

For every monitored parameter ``w`` (one record per recorded optimizer step) :class:`DecayMonitor`
measures, with ``w⁻`` the tensor before the step and ``g`` its gradient:

- ``weight_norm`` ‖w‖, ``grad_norm`` ‖g‖, ``max_abs`` max|w|;
- ``update_ratio`` ‖w − w⁻‖ / ‖w⁻‖;
- ``angle`` the rotation of the step in radians, ∠(w⁻, w) = 2·atan2(‖ŵ⁻ − ŵ‖, ‖ŵ⁻ + ŵ‖) with
  ŵ = w/‖w‖ (accurate for small angles, unlike arccos of the cosine); NaN for a one-element
  tensor such as a scalar gain (it has no direction, and no predicted angle);

and puts beside them what the parameter's optimizer group predicts (see
:class:`decaylab.conventions.GroupDecay`):

- ``predicted_angle``: the equilibrium rotation of a *scale-invariant* weight (one followed by a
  normalization, e.g. a bias-free Linear before ``LayerNorm``), where the gradient's growth of ‖w‖
  balances the decay's shrinkage (Kosson et al. 2024, "Rotational equilibrium"):
  √(2·lr·λ·(1−β₁)/(1+β₁)) for AdamW, √(2·lr·λ/(1+μ)) for SGD with momentum μ and coupled decay,
  and, by the same random-walk argument, √(2·lr·λ·(1−μ)/(1+μ)) for SGDW (checked in the tests);
  for weights that are not scale-invariant it is only a reference line;
- ``max_abs_bound``: 1/λ, the ℓ∞ ball that AdamW with a constant lr converges inside (Xie & Li
  2024, "Implicit bias of AdamW: ℓ∞-norm constrained optimization"): every update
  coordinate is at most ~lr in size, and decay removes lr·λ·|w| per step.

Use it in any training loop (it attaches itself with the optimizer's step hooks)::

    mon = DecayMonitor(model, optimizer)
    for x, y in batches:
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
    mon.plot()

or as a callback: ``decaylab.train.fit(model, opt, data, epochs=5, callbacks=[DecayMonitor()])``.
With ``attach=False`` call ``mon.step()`` after each ``optimizer.step()`` instead. Recording clones
the monitored weights once per recorded step; ``every=k`` records every k-th step only.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from decaylab._checks import check_choice, check_int
from decaylab._extras import needs
from decaylab.conventions import group_decay

__all__ = ["DecayMonitor", "METRICS"]

METRICS = ("weight_norm", "grad_norm", "update_ratio", "angle", "max_abs")


def _norm(t: torch.Tensor) -> float:
    """‖t‖₂ of a dense or sparse tensor."""
    return float(torch.linalg.vector_norm(t.coalesce().values() if t.is_sparse else t))


def _angle(before: torch.Tensor, after: torch.Tensor) -> float:
    """Angle in radians between two tensors seen as vectors (nan if either is zero)."""
    nb, na = torch.linalg.vector_norm(before), torch.linalg.vector_norm(after)
    if nb == 0 or na == 0:
        return math.nan
    u, v = before / nb, after / na
    return 2.0 * math.atan2(float(torch.linalg.vector_norm(u - v)), float(torch.linalg.vector_norm(u + v)))


class DecayMonitor:
    """Per-parameter weight norm, gradient norm, relative update, rotation angle and max|w| over
    training, with the predicted equilibrium angle and AdamW's max|w| bound beside them.

    Args:
        model, optimizer: what to watch; give both, or neither when the monitor is a
            :func:`decaylab.train.fit` callback (it then binds to the run's model and optimizer).
        every: record every ``every``-th optimizer step (≥ 1).
        include: glob patterns (:func:`fnmatch.fnmatchcase`) of parameter names to watch; default
            all parameters the optimizer updates.
        attach: register optimizer step pre/post hooks (default); ``False``: call :meth:`step`
            after each ``optimizer.step()``.

    ``history`` is a list of tidy records, one per (step, parameter): ``step``, ``param``,
    ``group``, the :data:`METRICS`, ``lr``, ``weight_decay``, ``predicted_angle`` and
    ``max_abs_bound`` (``None`` where no prediction applies).

    As a callback it follows the protocol of :mod:`decaylab.train.callbacks` by duck typing (this
    module sits below ``train/`` and does not import it).
    """

    def __init__(self, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                 *, every: int = 1, include: Iterable[str] | None = None, attach: bool = True):
        self.every = check_int("every", every, low=1)
        if isinstance(include, str):
            include = (include,)
        self.include = None if include is None else tuple(include)
        if not isinstance(attach, bool):
            raise TypeError(f"attach must be a bool, got {attach!r}")
        if (model is None) != (optimizer is None):
            raise TypeError("model and optimizer must be given together, or neither when the monitor "
                            "is a decaylab.train.fit callback")
        self.attach = attach
        self.history: list[dict] = []
        self.model = self.optimizer = None
        self._handles: list = []
        self._steps = 0
        self._before: dict[int, torch.Tensor] | None = None
        self._decay: list = []
        self._bound_by_fit = False
        if model is not None:
            self._bind(model, optimizer)

    # --- binding and hooks ------------------------------------------------------------------
    def _bind(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        names = {id(p): n for n, p in model.named_parameters()}
        self.model, self.optimizer = model, optimizer
        self._tracked = []  # (name, parameter, group index)
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                name = names.get(id(p), f"group{gi}.param{pi}")
                if self.include is None or any(fnmatch.fnmatchcase(name, pat) for pat in self.include):
                    self._tracked.append((name, p, gi))
        if not self._tracked:
            raise ValueError(f"include must match at least one parameter of the optimizer, got {self.include!r}")
        meta = [name for name, p, _ in self._tracked if p.is_meta]
        if meta:
            raise ValueError(f"model has parameters on the 'meta' device, which hold no values to watch (e.g. "
                             f"{meta[0]!r}): materialize it first (model.to_empty(device=...) and initialize it)")
        if self.attach:
            self._handles = [optimizer.register_step_pre_hook(lambda *_: self._before_step()),
                             optimizer.register_step_post_hook(lambda *_: self._after_step())]
        else:
            self._before_step()

    def detach(self) -> None:
        """Remove the optimizer hooks (recording stops); :attr:`history` stays."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _before_step(self) -> None:
        """Snapshot the weights and the groups' decay settings if the coming step is recorded."""
        if (self._steps + 1) % self.every == 0:
            self._before = {id(p): p.detach().clone() for _, p, _ in self._tracked}
            self._decay = [group_decay(self.optimizer, g) for g in self.optimizer.param_groups]
        else:
            self._before = None

    def _after_step(self) -> None:
        self._steps += 1
        if self._before is not None:
            self._record()
            self._before = None

    def step(self) -> None:
        """Record the step just taken (only with ``attach=False``; attached monitors record via hooks)."""
        if self._handles:
            return
        if self.model is None:
            raise RuntimeError("DecayMonitor.step() needs a model and optimizer: pass them to DecayMonitor(...)")
        self._decay = [group_decay(self.optimizer, g) for g in self.optimizer.param_groups]
        self._after_step()
        self._before_step()

    # --- the fit callback protocol ----------------------------------------------------------
    def on_train_begin(self, state: Any) -> None:
        if self.model is None:
            self._bound_by_fit = True
            self._bind(state.model, state.optimizer)

    def on_step_end(self, state: Any) -> None:
        if not self.attach:
            self.step()

    def on_train_end(self, state: Any) -> None:
        if self._bound_by_fit:
            self.detach()

    # --- measuring --------------------------------------------------------------------------
    @torch.no_grad()
    def _record(self) -> None:
        for name, p, gi in self._tracked:
            if p.grad is None:  # not updated this step (frozen or unused)
                continue
            before, after = self._before[id(p)], p.detach()
            w_norm = float(torch.linalg.vector_norm(after))
            before_norm = float(torch.linalg.vector_norm(before))
            update = float(torch.linalg.vector_norm(after - before))
            decay = self._decay[gi]
            directional = p.numel() > 1      # a scalar has no direction: no angle, no equilibrium
            self.history.append({
                "step": self._steps, "param": name, "group": gi,
                "weight_norm": w_norm, "grad_norm": _norm(p.grad),
                "update_ratio": update / before_norm if before_norm > 0 else math.nan,
                "angle": _angle(before, after) if directional else math.nan,
                "max_abs": float(after.abs().max()) if after.numel() else 0.0,
                "lr": decay.lr, "weight_decay": decay.weight_decay,
                "predicted_angle": decay.equilibrium_angle if directional else None,
                "max_abs_bound": decay.max_abs_bound,
            })

    # --- reading the results ----------------------------------------------------------------
    @property
    def params(self) -> list[str]:
        """Names of the parameters with records, in optimizer order."""
        seen = dict.fromkeys(r["param"] for r in self.history)
        return list(seen)

    def series(self, param: str, metric: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one metric (or ``lr``/``predicted_angle``/...) for one parameter."""
        rows = [r for r in self.history if r["param"] == param]
        if not rows:
            raise ValueError(f"param must be one of {', '.join(self.params)}, got {param!r}")
        check_choice("metric", metric, tuple(k for k in rows[0] if k not in ("step", "param", "group")))
        return [r["step"] for r in rows], [r[metric] for r in rows]

    def __str__(self) -> str:
        """A per-parameter table over the last quarter of the records: ‖w‖, ‖Δw‖/‖w‖, the measured and
        predicted rotation angles, max|w| against AdamW's 1/λ bound, and flags a person should look at."""
        if not self.history:
            return f"DecayMonitor: nothing recorded yet ({len(getattr(self, '_tracked', []))} tensors watched)"
        last = {}
        for r in self.history:
            last[r["param"]] = r
        head = ("param", "‖w‖", "Δw/w", "angle", "predicted", "max|w|", "bound", "flags")
        rows = []
        for s in self.summary():
            r = last[s["param"]]
            flags = []
            if s["angle_ratio"] is not None and not 0.5 <= s["angle_ratio"] <= 2:
                flags.append(f"angle ×{s['angle_ratio']:.2g} of equilibrium")
            if s["max_abs_bound"] is not None and s["max_abs"] > s["max_abs_bound"]:
                flags.append("above 1/λ bound")
            if r["weight_norm"] == 0:
                flags.append("all zero")
            rows.append((s["param"], f"{r['weight_norm']:.3g}", f"{r['update_ratio']:.2g}", f"{s['angle']:.2g}",
                         "—" if s["predicted_angle"] is None else f"{s['predicted_angle']:.2g}",
                         f"{s['max_abs']:.3g}", "—" if s["max_abs_bound"] is None else f"{s['max_abs_bound']:.3g}",
                         ", ".join(flags)))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        lines = [f"DecayMonitor: {len(rows)} tensors, step {self._steps} (means over the last quarter of records)",
                 "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
        lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(lines)

    def summary(self, last: float = 0.25) -> list[dict]:
        """Per parameter over the last ``last`` fraction of its records: mean ``angle`` and the mean
        ``predicted_angle``, their ratio ``angle_ratio``, the largest ``max_abs`` and the smallest
        ``max_abs_bound`` (``None`` where not predicted)."""
        if not (isinstance(last, (int, float)) and 0 < last <= 1):
            raise ValueError(f"last must be a fraction in (0, 1], got {last!r}")
        out = []
        for name in self.params:
            rows = [r for r in self.history if r["param"] == name]
            rows = rows[len(rows) - max(1, int(round(last * len(rows)))):]
            angle = sum(r["angle"] for r in rows) / len(rows)
            preds = [r["predicted_angle"] for r in rows if r["predicted_angle"] is not None]
            bounds = [r["max_abs_bound"] for r in rows if r["max_abs_bound"] is not None]
            pred = sum(preds) / len(preds) if preds else None
            out.append({"param": name, "steps": len(rows), "angle": angle, "predicted_angle": pred,
                        "angle_ratio": angle / pred if pred else None,
                        "max_abs": max(r["max_abs"] for r in rows), "max_abs_bound": min(bounds) if bounds else None})
        return out

    def plot(self, metrics: Sequence[str] = ("angle", "weight_norm", "update_ratio", "max_abs"),
             params: Sequence[str] | None = None):
        """A matplotlib ``Figure`` with one panel per metric over steps, one line per parameter;
        dashed lines of the same colour show ``predicted_angle`` (angle panel) and ``max_abs_bound``
        (max_abs panel). ``params`` (default all) picks the parameters by name."""
        with needs("report", "DecayMonitor.plot"):
            from matplotlib.figure import Figure

        for m in metrics:
            check_choice("metrics", m, METRICS)
        params = self.params if params is None else list(params)
        for name in params:
            if name not in self.params:
                raise ValueError(f"params must be among {', '.join(self.params) or '(none recorded)'}, got {name!r}")
        fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        predictions = {"angle": "predicted_angle", "max_abs": "max_abs_bound"}
        for ax, metric in zip(axes, metrics):
            for _i, name in enumerate(params):
                steps, values = self.series(name, metric)
                (line,) = ax.plot(steps, values, lw=1, label=name)
                if metric in predictions:
                    _, pred = self.series(name, predictions[metric])
                    if any(v is not None for v in pred):
                        ax.plot(steps, [math.nan if v is None else v for v in pred], ls="--", lw=1,
                                color=line.get_color())
            ax.set_xlabel("step")
            ax.set_title(metric.replace("_", " ") + (" (dashed: predicted)" if metric in predictions else ""))
            if metric in ("weight_norm", "update_ratio", "angle", "grad_norm"):
                ax.set_yscale("log")
        axes[0].legend(fontsize="x-small")
        return fig
