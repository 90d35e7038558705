"""Watch what weight decay does to each parameter tensor, step by step, against what theory predicts.

For every monitored parameter ``w`` (one record per recorded optimizer step) :class:`DecayMonitor`
measures, with ``w⁻`` the tensor before the step and ``g`` its gradient:

- ``weight_norm`` ‖w‖, ``grad_norm`` ‖g‖, ``max_abs`` max|w|;
- ``spectral_norm`` ‖w‖₂, the largest singular value, of the matrices of Muon groups only (NaN for the
  others): a power iteration with one persistent vector per matrix (:func:`.tensor_measures.spectral_norms`),
  20 iterations on its first record, 2 on each later one, so 5 matrix–vector products per matrix and
  recorded step (an SVD, ``torch.linalg.matrix_norm(ord=2)``, would cost O(A·B·min(A, B))); the estimate
  never exceeds ‖w‖₂ (tested against ``matrix_norm`` after training);
- ``update_ratio`` ‖w − w⁻‖ / ‖w⁻‖;
- ``angle`` the rotation of the step in radians, ∠(w⁻, w), from the three norms ‖w‖, ‖w⁻‖ and
  ‖w − w⁻‖ by Kahan's formula for the angle of a needle-like triangle, which stays accurate for
  small angles (unlike arccos of the cosine): with float32 norms, relative error ~1e-7 for a
  tangential step and ~1e-4 for a 1e-3 rad rotation beside an equal shrinkage (tested); NaN for
  a one-element tensor such as a scalar gain (it has no direction, and no predicted angle);

and puts beside them what the parameter's optimizer group predicts (see
:class:`decaylab.diagnostics.optimizer_decay.GroupDecay`):

- ``predicted_angle``: the equilibrium rotation of a *scale-invariant* weight (one followed by a
  normalization, e.g. a bias-free Linear before ``LayerNorm``), where the gradient's growth of ‖w‖
  balances the decay's shrinkage (Kosson et al. 2024, "Rotational equilibrium"):
  √(2·lr·λ·(1−β₁)/(1+β₁)) for AdamW, √(2·lr·λ/(1+μ)) for SGD with momentum μ and coupled decay,
  and, by the same random-walk argument, √(2·lr·λ·(1−μ)/(1+μ)) for SGDW (checked in the tests);
  for weights that are not scale-invariant it is only a reference line;
- ``max_abs_bound``: 1/λ, the ℓ∞ ball that AdamW with a constant lr converges inside (Xie & Li
  2024, "Implicit bias of AdamW: ℓ∞-norm constrained optimization"): every update
  coordinate is at most ~lr in size, and decay removes lr·λ·|w| per step;

and for Muon and Lion groups the predictions of :mod:`decaylab.diagnostics.bounds` instead: Muon's
equilibrium ``predicted_angle`` √(2·s_t·λ/K) and ``predicted_norm`` (‖w‖ of a scale-invariant matrix
at equilibrium) and its ``spectral_bound`` (lr_t/s_t)·ρ·s_max/λ; Lion's ``max_abs_bound``
(lr_t/s_t)/λ (no ``predicted_angle`` for Lion). ``print(monitor)`` flags a tensor above a bound or
saturating it (:func:`decaylab.diagnostics.bounds.bound_status`).

Use it in any training loop (it attaches itself with the optimizer's step hooks)::

    mon = DecayMonitor(model, optimizer)
    for x, y in batches:
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
    print(mon); mon.plot(); mon.log(summary_writer)

or as a callback: ``decaylab.train.fit(model, opt, data, epochs=5, callbacks=[DecayMonitor()])``
(Lightning and transformers: :mod:`decaylab.integrations`). With ``attach=False`` call
``mon.step()`` after each ``optimizer.step()`` instead.

Groups added during training (``optimizer.add_param_group``, e.g. unfreezing a backbone) are
watched too: before each step the monitor compares the groups' sizes with those it last read and,
when they differ, appends the new parameters to its watch list (those already watched keep their
history). Attached, it records them from the first step after the group was added; with
``attach=False`` from the step after that (the weights before a step are snapshot at the previous
``mon.step()``).

Cost. A recorded step snapshots the watched weights before the step (one copy of them, freed
after the step) and measures every tensor at once with ``torch._foreach_*`` kernels (5 norms, one
subtraction; plus the spectral norms of Muon matrices, above), keeping the results on the weights'
device; they are copied to the host in batches of up to 64 records (one synchronization each),
never per tensor. Steps that are not recorded cost one Python comparison and one of the groups'
sizes. By default (``every=None``) the monitor records every step of the first 50, then every 10th:
the early transient in full, then ~1/10 of the steps (measured in ``benchmarks/monitor_overhead.py``).

Memory. The history is a :class:`decaylab.diagnostics._thinned.ThinnedHistory`: at most ``max_records + 1``
records per tensor (about 280 bytes each; ≈145 KB per tensor with the default 512), whatever the
run's length. When it fills, every other record is dropped, so the kept series always start at the
first recorded step and end at the newest, evenly spaced over the whole run; the means, maxima and
minima of :meth:`summary` stay exact over every recorded step (up to the granularity of one
kept record when ``last < 1``).

Length: over 400 lines because it is one class whose methods all share its recording state (the
watch list, the snapshot before a step, the records pending on the device, the history); what can
stand apart does: the table and figure (:mod:`.monitor_views`), the batched measurements
(:mod:`.tensor_measures`), the record fields (:mod:`.monitor_fields`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from decaylab._checks import InputError, InputTypeError, check_choice, check_int
from decaylab.diagnostics._thinned import ThinnedHistory
from decaylab.diagnostics.bounds import PREDICTIONS, optimizer_kind, tensor_predictions
from decaylab.diagnostics.monitor_fields import FIELDS, METRICS
from decaylab.diagnostics.optimizer_decay import group_decay
from decaylab.diagnostics.tensor_measures import (
    kahan_angle,
    spectral_norms,
    tensor_differences,
    tensor_max_abs,
    tensor_norms,
)

__all__ = ["DecayMonitor", "METRICS", "FIELDS"]

_GROUP_FIELDS = FIELDS[len(METRICS):]
_DENSE_STEPS, _SPARSE_EVERY = 50, 10    # the default schedule: steps 1…50, then every 10th
_PENDING = 64                           # records held on the device before one copy to the host
_FIRST_ITERATIONS, _ITERATIONS = 20, 2  # power iterations of a Muon matrix's first record, then each later one
_PREDICTED = [FIELDS.index(f) for f in ("lr", "weight_decay", *PREDICTIONS)]  # group columns, in their order


class DecayMonitor:
    """Per-parameter weight norm, gradient norm, relative update, rotation angle, max|w| and (Muon
    matrices) spectral norm over training, with the predicted equilibrium angle and norm and the
    max|w| and spectral-norm bounds beside them.

    Args:
        model, optimizer: what to watch; give both, or neither when the monitor is a
            :func:`decaylab.train.fit` callback (it then binds to the run's model and optimizer).
        every: record every ``every``-th optimizer step (≥ 1); ``None`` (default): steps 1…50, then
            every 10th step.
        include: glob patterns (:func:`fnmatch.fnmatchcase`) of parameter names to watch; default
            all parameters the optimizer updates, including those of groups added during training
            (``optimizer.add_param_group``), from the first step the monitor sees them in.
        attach: register optimizer step pre/post hooks (default); ``False``: call :meth:`step`
            after each ``optimizer.step()``.
        max_records: records kept per tensor (≥ 2; the history thins itself by 2 when full, see
            the module docstring).

    :attr:`history` is a list of tidy records, one per kept (step, parameter): ``step``,
    ``param``, ``group`` and the :data:`FIELDS` (the :data:`METRICS`, ``lr``, ``weight_decay``,
    ``predicted_angle``, ``max_abs_bound``, ``predicted_norm``, ``spectral_bound``; the last four
    ``None`` where no prediction applies).

    As a callback it follows the protocol of :mod:`decaylab.train.callbacks` by duck typing (this
    module sits below ``train/`` and does not import it).
    """

    def __init__(self, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                 *, every: int | None = None, include: Iterable[str] | None = None, attach: bool = True,
                 max_records: int = 512):
        self.every = None if every is None else check_int("every", every, low=1)
        self.max_records = check_int("max_records", max_records, low=2)
        if isinstance(include, str):
            include = (include,)
        self.include = None if include is None else tuple(include)
        if not isinstance(attach, bool):
            raise InputTypeError(f"attach must be a bool, got {attach!r}")
        if (model is None) != (optimizer is None):
            raise InputTypeError("model and optimizer must be given together, or neither when the monitor "
                            "is a decaylab.train.fit callback")
        self.attach = attach
        self.model = self.optimizer = None
        self._handles: list = []
        self._tracked: list[tuple[str, torch.Tensor, int]] = []
        self._group_sizes: tuple[int, ...] = ()
        self._steps = 0
        self._before: list[torch.Tensor] | None = None
        self._pending: list = []
        self._store: ThinnedHistory | None = None
        self._bound_by_fit = False
        if model is not None:
            self._bind(model, optimizer)

    # --- binding and hooks ------------------------------------------------------------------
    def _bind(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(model, torch.nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InputTypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.model, self.optimizer = model, optimizer
        self._tracked = []  # (name, parameter, group index)
        self._store = ThinnedHistory(0, FIELDS, capacity=self.max_records, stride=self.every or 1,
                                     maxima=("max_abs", "spectral_norm"), minima=("max_abs_bound", "spectral_bound"))
        self._vectors: dict[int, torch.Tensor] = {}  # each Muon matrix's power-iteration vector
        self._watch()
        if not self._tracked:
            raise InputError(f"include must match at least one parameter of the optimizer, got {self.include!r}")
        if self.attach:
            self._handles = [optimizer.register_step_pre_hook(lambda *_: self._before_step()),
                             optimizer.register_step_post_hook(lambda *_: self._after_step())]
        else:
            self._before_step()

    @property
    def group_sizes(self) -> tuple[int, ...]:
        """How many parameters each of the optimizer's groups held when the monitor last read them
        (at binding, and again whenever the sizes change: see :meth:`_watch`)."""
        return self._group_sizes

    def _watch(self) -> None:
        """Read the optimizer's groups into the watch list. Tensors already watched keep their
        place and history (their group index is re-read; one no longer in any group is not measured
        again); tensors new to the optimizer — a group added with ``add_param_group`` during
        training, a parameter appended to a group — that ``include`` matches are appended, with no
        records before the first step they are watched from. Run at binding, and before and after
        any step at which the groups' sizes differ from :attr:`group_sizes`: a newcomer is recorded
        from the first step whose starting weights the monitor snapshot (attached: the first step
        after it joined; ``attach=False``: the one after that), and a tensor that left is not
        measured at the step it left at."""
        self._flush()  # pending records were measured over the old watch list
        groups = self.optimizer.param_groups
        self._group_sizes = tuple(len(group["params"]) for group in groups)
        place = {}
        for gi, group in enumerate(groups):
            for p in group["params"]:
                place.setdefault(id(p), gi)
        names = {id(p): n for n, p in self.model.named_parameters()}
        tracked = [(name, p, place.get(id(p), -1)) for name, p, _ in self._tracked]
        watched = {id(p) for _, p, _ in tracked}
        for gi, group in enumerate(groups):
            for pi, p in enumerate(group["params"]):
                name = names.get(id(p), f"group{gi}.param{pi}")
                if id(p) not in watched and (self.include is None
                                             or any(fnmatch.fnmatchcase(name, pat) for pat in self.include)):
                    tracked.append((name, p, gi))
                    watched.add(id(p))
        meta = [name for name, p, _ in tracked[len(self._tracked):] if p.is_meta]
        if meta:
            raise InputError(f"model has parameters on the 'meta' device, which hold no values to watch (e.g. "
                             f"{meta[0]!r}): materialize it first (model.to_empty(device=...) and initialize it)")
        self._store.add_tensors(len(tracked) - len(self._tracked))
        self._tracked = tracked
        self._group_of = np.array([gi for _, _, gi in tracked], dtype=np.int64)
        self._directional = np.array([p.numel() > 1 for _, p, _ in tracked], dtype=bool)
        self._shapes = [tuple(p.shape) for _, p, _ in tracked]
        muon_groups = {gi for gi, group in enumerate(groups) if optimizer_kind(self.optimizer, group) == "muon"}
        self._spectral = {i for i, (_, p, gi) in enumerate(tracked) if gi in muon_groups and p.ndim >= 2}
        by_device: dict[torch.device, list[int]] = {}
        for i, (_, p, gi) in enumerate(tracked):
            if gi >= 0:
                by_device.setdefault(p.device, []).append(i)
        self._by_device = list(by_device.items())

    def detach(self) -> None:
        """Remove the optimizer hooks (recording stops); :attr:`history` stays."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def records_step(self, step: int) -> bool:
        """Whether optimizer step ``step`` (1-based) is recorded."""
        if self.every is None:
            return step <= _DENSE_STEPS or step % _SPARSE_EVERY == 0
        return step % self.every == 0

    @torch.no_grad()
    def _before_step(self) -> None:
        """Re-read the optimizer's groups if their sizes changed, then snapshot the weights if the
        coming step is recorded."""
        self._rewatch_if_groups_changed()
        if self.records_step(self._steps + 1):
            self._before = [p.detach().clone() for _, p, _ in self._tracked]
        else:
            self._before = None

    def _rewatch_if_groups_changed(self) -> None:
        if tuple(len(group["params"]) for group in self.optimizer.param_groups) != self._group_sizes:
            self._watch()

    def _after_step(self) -> None:
        self._steps += 1
        if self._before is not None:
            self._rewatch_if_groups_changed()  # a group changed during the step: newcomers have no snapshot
            self._measure()
            self._before = None

    def step(self) -> None:
        """Record the step just taken (only with ``attach=False``; attached monitors record via hooks)."""
        if self._handles:
            return
        if self.model is None:
            raise RuntimeError("DecayMonitor.step() needs a model and optimizer: pass them to DecayMonitor(...)")
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
    def _measure(self) -> None:
        """Measure the norms of every watched tensor that has a gradient; they stay on their device
        until :meth:`_flush` copies them to the host and derives the ratio and the angle."""
        parts = []
        for device, indices in self._by_device:
            # others: not updated, or joined after the snapshot
            idx = [i for i in indices if i < len(self._before) and self._tracked[i][1].grad is not None]
            if not idx:
                continue
            after = [self._tracked[i][1].detach() for i in idx]
            before = [self._before[i] for i in idx]
            delta = tensor_differences(after, before)
            norms = tensor_norms([*after, *before, *delta, *(self._tracked[i][1].grad for i in idx)])
            if all(t.numel() for t in after):
                max_abs = torch.stack(tensor_max_abs(after))
            else:
                nonempty = [j for j, t in enumerate(after) if t.numel()]
                max_abs = torch.zeros(len(after), dtype=norms.dtype, device=device)
                if nonempty:
                    max_abs[nonempty] = torch.stack(tensor_max_abs([after[j] for j in nonempty])).to(norms.dtype)
            parts.append((idx, torch.cat([norms, max_abs, self._spectral_norms(idx, after, norms.dtype)])))
        predicted = np.full((len(self._tracked), len(_PREDICTED)), np.nan)  # lr, λ, then the PREDICTIONS
        for gi, group in enumerate(self.optimizer.param_groups):
            rows = np.flatnonzero(self._group_of == gi)
            if len(rows):
                d = group_decay(self.optimizer, group)
                predicted[rows, :2] = d.lr, d.weight_decay
                predicted[rows, 2:] = tensor_predictions(self.optimizer, group, [self._shapes[i] for i in rows], d)
        self._pending.append((self._steps, parts, predicted))
        if len(self._pending) >= _PENDING:
            self._flush()

    def _spectral_norms(self, idx: list[int], after: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """‖w‖₂ of the Muon matrices among ``idx`` (power iteration, persistent vectors), NaN for the others."""
        out = torch.full((len(idx),), math.nan, dtype=dtype, device=after[0].device)
        chosen = [j for j, i in enumerate(idx) if i in self._spectral]
        if chosen:
            vectors = [self._vectors.get(idx[j]) for j in chosen]
            iterations = _ITERATIONS if all(v is not None for v in vectors) else _FIRST_ITERATIONS
            norms, vectors = spectral_norms([after[j] for j in chosen], vectors, iterations)
            self._vectors.update((idx[j], v) for j, v in zip(chosen, vectors))
            out[chosen] = norms.to(dtype)
        return out

    def _flush(self) -> None:
        """Copy the pending records to the host and into the history."""
        n = len(self._tracked)
        for step, parts, predicted in self._pending:
            values = np.full((n, len(FIELDS)), np.nan)
            present = np.zeros(n, dtype=bool)
            for idx, raw in parts:
                w, b, d, g, max_abs, spectral = raw.cpu().numpy().astype(np.float64).reshape(6, len(idx))
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = np.where(b > 0, d / b, np.nan)
                    angle = np.where(self._directional[idx] & (b > 0) & (w > 0), kahan_angle(w, b, d), np.nan)
                values[idx, :len(METRICS)] = np.stack([w, g, ratio, angle, max_abs, spectral], axis=1)
                present[idx] = True
            values[:, _PREDICTED] = predicted
            values[~self._directional, FIELDS.index("predicted_angle")] = np.nan
            self._store.add(step, values, present)
        self._pending = []

    def _history(self) -> ThinnedHistory | None:
        if self._pending:
            self._flush()
        return self._store

    # --- reading the results ----------------------------------------------------------------
    @property
    def history(self) -> list[dict]:
        """The kept records as dicts, oldest step first, parameters in optimizer order (built on
        each access from the bounded history; at most ``max_records + 1`` steps per parameter)."""
        store = self._history()
        if store is None:
            return []
        out = []
        metric_count = len(METRICS)
        for step, row, present in zip(store.steps.tolist(), store.samples.tolist(), store.present.tolist()):
            for i, (name, _, gi) in enumerate(self._tracked):
                if not present[i]:
                    continue
                values = row[i]
                record = {"step": step, "param": name, "group": gi}
                for k, field in enumerate(FIELDS):
                    v = values[k]
                    if v != v:  # NaN: the metrics say math.nan, a missing prediction says None
                        v = math.nan if k < metric_count else None
                    record[field] = v
                out.append(record)
        return out

    @property
    def params(self) -> list[str]:
        """Names of the parameters with records, in optimizer order."""
        store = self._history()
        if store is None:
            return []
        seen = store.present.any(axis=0)
        return [name for (name, _, _), s in zip(self._tracked, seen) if s]

    @property
    def last_recorded_step(self) -> int:
        """The step of the newest record (0 before any), without copying anything to the host."""
        if self._pending:
            return self._pending[-1][0]
        store = self._store
        return int(store.steps[-1]) if store is not None and store.rows else 0

    @property
    def steps_seen(self) -> int:
        """Optimizer steps taken since the monitor attached."""
        return self._steps

    def _index(self, param: str) -> int:
        names = self.params
        if param not in names:
            raise InputError(f"param must be one of {', '.join(names)}, got {param!r}")
        return next(i for i, (name, _, _) in enumerate(self._tracked) if name == param)

    def series(self, param: str, metric: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one field (a metric, or ``lr``/``predicted_angle``/...) for one
        parameter over the kept records (``None`` where no prediction applies)."""
        i = self._index(param)
        check_choice("metric", metric, FIELDS)
        store = self._store
        rows = store.present[:, i]
        values = store.samples[rows, i, FIELDS.index(metric)].tolist()
        if metric in _GROUP_FIELDS:
            values = [None if v != v else v for v in values]
        return store.steps[rows].tolist(), values

    def summary(self, last: float = 0.25) -> list[dict]:
        """Per parameter over the last ``last`` fraction of the run (its records after step
        (1 − ``last``)·s, s the newest recorded step; exact means over every recorded step there, to
        the granularity of one kept record): mean ``angle`` and mean ``predicted_angle``, their ratio
        ``angle_ratio``, mean ``weight_norm`` and mean ``predicted_norm``, the largest ``max_abs`` and
        ``spectral_norm`` and the smallest ``max_abs_bound`` and ``spectral_bound`` (``None`` where not
        predicted or, for ``spectral_norm``, not measured); ``steps``: how many records."""
        if isinstance(last, bool) or not (isinstance(last, (int, float)) and 0 < last <= 1):
            raise InputError(f"last must be a fraction in (0, 1], got {last!r}")
        store = self._history()
        if store is None or store.rows == 0:
            return []
        tail = store.since((1 - last) * int(store.steps[-1]))
        mean = {f: tail["mean"][:, FIELDS.index(f)] for f in ("angle", "predicted_angle", "weight_norm",
                                                                 "predicted_norm")}
        out = []
        for i, (name, _, _) in enumerate(self._tracked):
            if tail["count"][i] == 0:
                continue
            pred = _nan_to_none(mean["predicted_angle"][i])
            angle = float(mean["angle"][i])
            out.append({"param": name, "steps": int(tail["count"][i]), "angle": angle, "predicted_angle": pred,
                        "angle_ratio": angle / pred if pred else None, "weight_norm": float(mean["weight_norm"][i]),
                        "predicted_norm": _nan_to_none(mean["predicted_norm"][i]),
                        "max_abs": float(tail["max"][i, 0]), "max_abs_bound": _nan_to_none(tail["min"][i, 0]),
                        "spectral_norm": _nan_to_none(tail["max"][i, 1]),
                        "spectral_bound": _nan_to_none(tail["min"][i, 1])})
        return out

    def latest(self) -> dict[str, dict]:
        """The newest record of each parameter (``{param: record}``, records as in :attr:`history`)."""
        store = self._history()
        out = {}
        if store is None:
            return out
        for i, (name, _, gi) in enumerate(self._tracked):
            rows = np.flatnonzero(store.present[:, i])
            if len(rows):
                r = rows[-1]
                values = store.samples[r, i].tolist()
                out[name] = {"step": int(store.steps[r]), "param": name, "group": gi,
                             **{f: (_nan_to_none(v) if f in _GROUP_FIELDS else v) for f, v in zip(FIELDS, values)}}
        return out

    def __str__(self) -> str:
        """A per-parameter table over the last quarter of the run (:func:`.monitor_views.table`): ‖w‖,
        ‖Δw‖/‖w‖, the measured and predicted rotation angles, max|w| and (Muon) ‖w‖₂ against their
        bounds, and flags a person should look at."""
        from decaylab.diagnostics.monitor_views import table

        return table(self)

    # --- scalars for loggers ----------------------------------------------------------------
    def scalars(self, metrics: Sequence[str] = (*METRICS, "predicted_angle")) -> dict[str, float]:
        """``{"decay_<field>/<param>": value}`` from each parameter's newest record, for any logger
        that takes a flat dict of numbers (Lightning's ``log_metrics``, transformers' ``logs``);
        undefined values (a scalar's angle, a missing prediction) are left out."""
        for m in metrics:
            check_choice("metrics", m, FIELDS)
        out = {}
        for name, record in self.latest().items():
            for m in metrics:
                v = record[m]
                if v is not None and v == v:
                    out[f"decay_{m}/{name}"] = float(v)
        return out

    def log(self, writer: Any, step: int | None = None,
            metrics: Sequence[str] = (*METRICS, "predicted_angle")) -> dict[str, float]:
        """Write :meth:`scalars` with ``writer.add_scalar(tag, value, step)`` — a
        ``torch.utils.tensorboard.SummaryWriter`` or anything with that method (one chart per
        tensor, grouped by field in TensorBoard); ``step`` defaults to the optimizer steps taken.
        Returns what was written."""
        if not callable(getattr(writer, "add_scalar", None)):
            raise InputTypeError(f"writer must have an add_scalar(tag, value, step) method (e.g. a "
                            f"torch.utils.tensorboard.SummaryWriter), got {type(writer).__name__}")
        step = self._steps if step is None else check_int("step", step, low=0)
        values = self.scalars(metrics)
        for tag, value in values.items():
            writer.add_scalar(tag, value, step)
        return values

    # --- plotting ---------------------------------------------------------------------------
    def plot(self, metrics: Sequence[str] = ("angle", "weight_norm", "update_ratio", "max_abs"),
             params: Sequence[str] | None = None, top: int | None = 8):
        """A matplotlib ``Figure`` with one panel per metric over steps (:func:`.monitor_views.plot`: the
        ``top`` largest tensors one line each with their predictions dashed, the rest one grey band)."""
        from decaylab.diagnostics.monitor_views import plot

        return plot(self, metrics, params, top)


def _nan_to_none(value: float) -> float | None:
    value = float(value)
    return None if value != value else value
