"""How one optimizer parameter group decays, read from one explicit table: coupled or decoupled and in
which form, its s_t, λ and momentum, and what that predicts (step decay, timescale, equilibrium angle,
the ℓ∞ bound). The doctor, the monitor, the maps' theory and the framework callbacks read every
optimizer through :func:`group_decay` (or, for a decaylab optimizer named in a sweep, :func:`class_decay`).

The table, :data:`OPTIMIZER_DECAY`, has one row per optimizer class, read from each one's source
(torch 2.13's ``torch/optim/*.py``, decaylab's ``decaylab/optim/*.py``); the *form* is one of
:data:`FORMS`:

=====================  ===========================  ========================================================
optimizer              form                         the decay in its step
=====================  ===========================  ========================================================
torch SGD              coupled                      ``grad = grad.add(param, alpha=weight_decay)``, then
                                                    momentum
torch Adam             coupled, or ``decoupled``    ``grad.add(param, alpha=wd)``, or with
                       with its flag                ``decoupled_weight_decay=True`` ``param.mul_(1 - lr*wd)``
torch AdamW            decoupled                    Adam with the flag forced on
torch NAdam, RAdam     coupled, or ``decoupled``    as Adam, by their ``decoupled_weight_decay`` flag
                       with the flag
torch Adamax           coupled                      ``grad.add(param, alpha=wd)``, divided by max|g|
torch Adagrad          coupled                      ``grad.add(param, alpha=wd)``, divided by √(Σg²)
torch RMSprop          coupled                      ``grad.add(param, alpha=wd)``, divided by √(EMA g²)
torch Adadelta         coupled                      ``grad.add(param, alpha=wd)``, scaled by √(E[Δ²])/√(E[g²])
torch ASGD             coupled (+ ``lambd``)        ``grad.add(param, alpha=wd)`` into a momentum-free
                                                    step, and ``param.mul_(1 - lambd*eta)`` always:
                                                    per step η_t·(λ + lambd), η_0 = lr
torch Adafactor        decoupled-relative-step      ``param.mul_(1 - lr*wd)`` with the plain lr, while the
                                                    update's size is the relative step
                                                    max(ε₂, RMS(w))·min(lr, 1/√t)
torch Muon             decoupled-unadjusted-lr      ``param.mul_(1 - lr*wd)``, then the update at
                                                    ``adjusted_lr`` = lr·ρ(A, B)
torch Rprop, LBFGS,    none                         no weight_decay option
SparseAdam
decaylab SGD/SGDW,     coupled / decoupled          by the group's ``decoupled_weight_decay`` (SGDW/AdamW:
Adam/AdamW                                          always), s_t by its ``decay_scaling``
decaylab Muon          decoupled-unadjusted-lr      s_t·λ with the unadjusted lr, any ``decay_scaling``
decaylab Lion          decoupled                    s_t·λ, any ``decay_scaling``
decaylab MuonAdamW     per group                    ``use_muon=True``: Muon's row; ``False``: AdamW's
schedule-free (duck    decoupled-at-y               ``schedulefree``'s optimizers add λ·y to the (normalized)
typed)                 (``-at-z`` with              step of z: z ← z − lr_t·(u + λ·y), lr-scaled, y the
                       ``decay_at_z``)              gradient point (the reference AdamW's ``decay_at_z``:
                                                    λ·z)
=====================  ===========================  ========================================================

A class is found by its method resolution order: a subclass reads as the table's class only if it
keeps that class's ``step`` (one that defines its own ``step`` may decay differently). Schedule-free
optimizers are recognized by their param-group keys (``k``, ``weight_sum``, ``lr_max``,
``weight_lr_power``), since the package is optional and has several classes. Anything else is
``"unknown"``: no prediction, and no advice from the doctor.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from decaylab import optim as dl_optim
from decaylab._checks import InputError
from decaylab.optim._decay import peak_lr_per_scale, scale_of_reading
from decaylab.optim.muon import adjusted_lr

__all__ = ["GroupDecay", "group_decay", "class_decay", "DecayForm", "FORMS", "OptimizerDecay", "OPTIMIZER_DECAY",
           "table_row", "matrix_shape"]


@dataclass(frozen=True)
class DecayForm:
    """One way an optimizer applies ``weight_decay``: its coarse ``kind`` and the update ``rule``."""

    name: str
    kind: str  # "coupled", "decoupled", "none" or "unknown"
    rule: str


#: The forms of decay the table knows, by name.
FORMS: dict[str, DecayForm] = {f.name: f for f in (
    DecayForm("coupled", "coupled", "g ← g + λ·w: an L2 term of the gradient, before momentum and any "
                                    "per-coordinate normalization"),
    DecayForm("decoupled", "decoupled", "w ← w − s_t·λ·w beside the update (s_t = lr_t in torch; decaylab's "
                                        "decay_scaling)"),
    DecayForm("decoupled-unadjusted-lr", "decoupled",
              "w ← w − s_t·λ·w with the unadjusted lr, while the update steps lr·ρ(A, B)·O (Muon)"),
    DecayForm("decoupled-relative-step", "decoupled",
              "w ← w − lr·λ·w with the plain lr, while the update's size is the relative step "
              "max(ε₂, RMS(w))·min(lr, 1/√t) (Adafactor)"),
    DecayForm("decoupled-at-y", "decoupled",
              "z ← z − lr_t·(u + λ·y): the decay of the base sequence z, evaluated at the gradient point y, "
              "lr-scaled, after any normalization (schedule-free)"),
    DecayForm("decoupled-at-z", "decoupled", "z ← z − lr_t·λ·z beside the step of z (schedule-free, decay_at_z)"),
    DecayForm("none", "none", "no weight_decay option"),
    DecayForm("unknown", "unknown", "not in decaylab's table: how weight_decay acts is not known"),
)}

_VALUES = ("the value does not carry over exactly; torch-AdamW values are typically 0.01–0.1, or set it from "
           "a timescale with `decaylab convert TAU --from tau-epoch --to torch-adamw ...`")


def _no_decoupled_option(name: str) -> str:
    return (f"torch's {name} has no decoupled option: set weight_decay=0 and shrink the weights outside the "
            "optimizer after each step (`p.mul_(1 - lr*λ)`: decoupled decay), or use an optimizer with "
            "decoupled decay such as torch.optim.AdamW")


@dataclass(frozen=True)
class OptimizerDecay:
    """One row of :data:`OPTIMIZER_DECAY`: how an optimizer class applies ``weight_decay``.

    ``form`` is the reading without ``flag`` (a param-group key; ``True`` there gives ``flag_form``);
    ``family`` groups the update rules the predictions know (``"sgd"``, ``"adam"``, ``"muon"``,
    ``"lion"``, …); ``source`` the lines of its step that decay; ``normalizer`` what a coupled λ·w is
    divided by (coupled decay then has no fixed rate) and ``fix`` the doctor's advice for coupled decay
    in this optimizer; ``implicit_key`` a group key of decay applied whatever ``weight_decay`` is (ASGD's
    ``lambd``)."""

    cls: type
    form: str
    family: str
    source: str
    flag: str | None = None
    flag_form: str = "decoupled"
    normalizer: str | None = None
    fix: str | None = None
    implicit_key: str | None = None

    @property
    def name(self) -> str:
        module = self.cls.__module__.split(".")[0]
        return f"{module}.{self.cls.__name__}"


def _adam_flag(cls: type, source: str, fix: str | None = None) -> OptimizerDecay:
    """The row of an Adam whose ``decoupled_weight_decay`` group key switches coupled → decoupled."""
    return OptimizerDecay(cls, "coupled", "adam", source, flag="decoupled_weight_decay", normalizer="√v̂", fix=fix)


_FLAG_SOURCE = ("if decoupled_weight_decay: param.mul_(1 - lr * weight_decay) "
                "else: grad = grad.add(param, alpha=weight_decay)")
_COUPLED_SOURCE = "grad = grad.add(param, alpha=weight_decay)"

#: The table: every optimizer class whose decay decaylab reads (see the module docstring).
OPTIMIZER_DECAY: tuple[OptimizerDecay, ...] = (
    OptimizerDecay(torch.optim.SGD, "coupled", "sgd", f"sgd.py: {_COUPLED_SOURCE}, then momentum"),
    OptimizerDecay(torch.optim.AdamW, "decoupled", "adam",
                   f"adamw.py: Adam with decoupled_weight_decay=True (forced): {_FLAG_SOURCE}",
                   flag="decoupled_weight_decay"),
    _adam_flag(torch.optim.Adam, f"adam.py: {_FLAG_SOURCE}",
               fix=f"pass decoupled_weight_decay=True (torch's Adam then is AdamW), or use torch.optim.AdamW or "
                   f"decaylab.AdamW ({_VALUES})"),
    _adam_flag(torch.optim.NAdam, f"nadam.py: {_FLAG_SOURCE}",
               fix=f"pass decoupled_weight_decay=True (NAdam then decays w ← w − lr·λ·w; {_VALUES})"),
    _adam_flag(torch.optim.RAdam, f"radam.py: {_FLAG_SOURCE}",
               fix=f"pass decoupled_weight_decay=True (RAdam then decays w ← w − lr·λ·w; {_VALUES})"),
    OptimizerDecay(torch.optim.Adamax, "coupled", "adam", f"adamax.py: {_COUPLED_SOURCE}, then divided by exp_inf",
                   normalizer="the running max of |g|", fix=_no_decoupled_option("Adamax")),
    OptimizerDecay(torch.optim.Adagrad, "coupled", "adagrad",
                   f"adagrad.py: {_COUPLED_SOURCE}, then the step lr/(1 + (t−1)·lr_decay) divided by √(Σg²) + ε",
                   normalizer="√(Σg²)", fix=_no_decoupled_option("Adagrad")),
    OptimizerDecay(torch.optim.RMSprop, "coupled", "rmsprop", f"rmsprop.py: {_COUPLED_SOURCE}, then divided by "
                   "√(square_avg) + ε", normalizer="√(EMA of g²)", fix=_no_decoupled_option("RMSprop")),
    OptimizerDecay(torch.optim.Adadelta, "coupled", "adadelta", f"adadelta.py: {_COUPLED_SOURCE}, then scaled by "
                   "√(acc_delta + ε)/√(square_avg + ε)", normalizer="√(E[g²] + ε) (times √(E[Δw²] + ε))",
                   fix=_no_decoupled_option("Adadelta")),
    OptimizerDecay(torch.optim.ASGD, "coupled", "sgd",
                   f"asgd.py: {_COUPLED_SOURCE}; param.mul_(1 - lambd * eta); param.add_(grad, alpha=-eta), "
                   "eta = lr/(1 + lambd·lr·t)^alpha", implicit_key="lambd"),
    OptimizerDecay(torch.optim.Adafactor, "decoupled-relative-step", "adafactor",
                   "_adafactor.py: param.mul_(1 - lr * weight_decay), then param.add_(update, alpha=-alpha/denom) "
                   "with alpha = max(eps2, RMS(param))·min(lr, 1/√t)"),
    OptimizerDecay(torch.optim.Muon, "decoupled-unadjusted-lr", "muon",
                   "_muon.py: param.mul_(1 - lr * weight_decay); param.add_(update, alpha=-adjusted_lr)"),
    OptimizerDecay(torch.optim.Rprop, "none", "other", "rprop.py: no weight_decay"),
    OptimizerDecay(torch.optim.LBFGS, "none", "other", "lbfgs.py: no weight_decay"),
    OptimizerDecay(torch.optim.SparseAdam, "none", "other", "sparse_adam.py: no weight_decay"),
    OptimizerDecay(dl_optim.SGDW, "decoupled", "sgd", "sgd.py: decoupled_decay_(w, s_t·λ) (flag always on)",
                   flag="decoupled_weight_decay"),
    OptimizerDecay(dl_optim.SGD, "coupled", "sgd", "sgd.py: torch's SGD, or with the flag w ← w − s_t·λ·w",
                   flag="decoupled_weight_decay"),
    OptimizerDecay(dl_optim.AdamW, "decoupled", "adam", "adam.py: decoupled_decay_(w, s_t·λ) (flag always on)",
                   flag="decoupled_weight_decay"),
    _adam_flag(dl_optim.Adam, "adam.py: torch's Adam, or with the flag w ← w − s_t·λ·w",
               fix=f"use decaylab.AdamW (decoupled, with decay_scaling) or decoupled_weight_decay=True ({_VALUES})"),
    OptimizerDecay(dl_optim.Muon, "decoupled-unadjusted-lr", "muon",
                   "muon.py: decoupled_decay_(param, s_t·λ) with the unadjusted lr; param.add_(O, alpha=-lr·ρ)"),
    OptimizerDecay(dl_optim.Lion, "decoupled", "lion", "lion.py: decoupled_decay_(param, s_t·λ); "
                   "param.add_(sign(u), alpha=-lr)"),
)
_BY_CLASS = {row.cls: row for row in OPTIMIZER_DECAY}
#: optimizers with one row per group: group key -> (row class when True, when False)
_HALVES = {dl_optim.MuonAdamW: ("use_muon", dl_optim.Muon, dl_optim.AdamW)}
#: what every param group of a schedule-free optimizer (the ``schedulefree`` package) holds
SCHEDULE_FREE_KEYS = ("k", "weight_sum", "lr_max", "weight_lr_power", "weight_decay")
_SCHEDULE_FREE = OptimizerDecay(torch.optim.Optimizer, "decoupled-at-y", "schedulefree",
                                "schedulefree/*.py: grad.add_(y, alpha=decay) into z.sub_(grad, alpha=lr)")


def _same_step(cls: type, base: type) -> bool:
    """Whether ``cls`` runs ``base``'s ``step`` (torch wraps each class's step for profiling: compare the
    functions inside)."""
    return inspect.unwrap(cls.step) is inspect.unwrap(base.step)


def table_row(optimizer: torch.optim.Optimizer | type, group: dict | None = None) -> OptimizerDecay | None:
    """The row of :data:`OPTIMIZER_DECAY` that describes ``optimizer`` (an instance, or a class), or
    ``None`` when decaylab does not know it; ``group`` picks MuonAdamW's half and finds schedule-free
    optimizers (by their group keys)."""
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    for base in cls.__mro__:
        if base in _HALVES and _same_step(cls, base):
            key, when_true, when_false = _HALVES[base]
            if group is None or key not in group:
                return None
            return _BY_CLASS[when_true if group[key] else when_false]
        if base in _BY_CLASS:
            return _BY_CLASS[base] if _same_step(cls, base) else None
    if group is not None and all(k in group for k in SCHEDULE_FREE_KEYS):
        return _SCHEDULE_FREE
    return None


def matrix_shape(param: torch.Tensor, flatten: bool = False) -> tuple[int, int] | None:
    """The (A, B) a Muon update of ``param`` is orthogonalized as: its shape when 2-D, ``[shape[0],
    numel/shape[0]]`` for a ≥3-D one with ``flatten``; ``None`` otherwise."""
    if param.ndim == 2:
        return int(param.shape[0]), int(param.shape[1])
    if flatten and param.ndim > 2:
        return int(param.shape[0]), int(param.numel() // max(param.shape[0], 1))
    return None


@dataclass(frozen=True)
class GroupDecay:
    """The decay one optimizer parameter group applies, read from the optimizer and the group.

    ``kind`` is ``"coupled"`` (a gradient term, ``g ← g + λw``), ``"decoupled"`` (``w ← w − s_t·λ·w``),
    ``"none"`` (the optimizer has no decay) or ``"unknown"`` (not in the table); ``form`` is the exact
    rule, a name in :data:`FORMS`; ``family`` is the update rule (``"adam"``, ``"sgd"``, ``"muon"``,
    ``"lion"``, ``"adagrad"``, ``"rmsprop"``, ``"adadelta"``, ``"adafactor"``, ``"schedulefree"``,
    ``"other"``); ``decay_scaling`` is ``"lr"``, ``"schedule"`` or ``"corrected"`` (decaylab's s_t = lr_t,
    lr_t/lr_0, lr_t²/lr_0); ``beta`` is β₁ for Adam, the momentum for SGD; ``implicit_decay`` a
    decoupled rate applied whatever ``weight_decay`` is (ASGD's ``lambd``, at its η_t); ``adjust_lr_fn``
    and ``update_rms`` are a Muon group's (ρ of :func:`decaylab.optim.muon.adjusted_lr`); ``entry`` is
    the table's row (``None`` when unknown).
    """

    kind: str
    family: str
    optimizer: str
    weight_decay: float
    lr: float
    peak_lr: float
    decay_scaling: str
    beta: float
    dampening: float = 0.0
    form: str | None = None
    implicit_decay: float = 0.0
    adjust_lr_fn: str | None = None
    update_rms: float | None = None
    entry: OptimizerDecay | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.form is None:
            object.__setattr__(self, "form", self.kind)

    def at_peak(self) -> GroupDecay:
        """The same group at its peak (initial) lr, e.g. before a warm-up scheduler raises it."""
        return dataclasses.replace(self, lr=self.peak_lr)

    @property
    def known(self) -> bool:
        """Whether the table knows this optimizer (``kind`` is not ``"unknown"``)."""
        return self.kind != "unknown"

    @property
    def step_decay(self) -> float | None:
        """Fraction of the weights the decay removes per step at the current lr: s_t·λ for
        decoupled decay (s_t from :func:`decaylab.optim._decay.scale_for`), lr·λ·(1−dampening)/(1−momentum)
        (the equilibrium of the momentum buffer) for coupled SGD, plus lr·``implicit_decay``; 0 for an
        optimizer without decay; ``None`` for coupled Adam-like optimizers, where λw is divided by a
        running gradient scale and has no fixed rate, and for an unknown optimizer."""
        if self.kind == "none":
            return 0.0
        if self.kind == "decoupled":
            return scale_of_reading(self.decay_scaling, self.lr, self.peak_lr) * self.weight_decay
        if self.kind == "coupled" and self.family == "sgd" and self.beta < 1:
            return (self.lr * self.weight_decay * (1 - self.dampening) / (1 - self.beta)
                    + self.lr * self.implicit_decay)
        return None

    @property
    def timescale_iters(self) -> float | None:
        """τ_iter = 1/step_decay (``inf`` without decay, ``None`` where no rate exists)."""
        d = self.step_decay
        return None if d is None else (math.inf if d == 0 else 1.0 / d)

    @property
    def equilibrium_angle(self) -> float | None:
        """Predicted per-step rotation (radians) of a scale-invariant weight at equilibrium
        (Kosson et al. 2024, "Rotational equilibrium"), with η·λ the per-step decay d:
        AdamW and SGDW √(2·d·(1−β)/(1+β)); SGD with coupled decay √(2·d·(1−μ)/(1+μ)) with
        d = lr·λ/(1−μ), i.e. √(2·lr·λ/(1+μ)). ``None`` for coupled Adam and other optimizers."""
        d = self.step_decay
        if d is None or self.family not in ("adam", "sgd"):
            return None
        return math.sqrt(2 * d * (1 - self.beta) / (1 + self.beta))

    @property
    def max_abs_bound(self) -> float | None:
        """Xie & Li 2024: AdamW converges inside ‖w‖_∞ ≤ 1/λ (λ in the ``torch-adamw``
        convention, i.e. lr_0/λ for ``schedule``); ``None`` where the result does not apply."""
        if self.kind != "decoupled" or self.family != "adam" or self.weight_decay == 0:
            return None
        return peak_lr_per_scale(self.decay_scaling, self.peak_lr) / self.weight_decay

    def update_rms_per_lr(self, shape: Sequence[int]) -> float | None:
        """The RMS of one update of a matrix of ``shape`` (A, B) per unit lr: Muon ρ/√max(A, B) (its
        orthogonalized O has RMS 1/√max(A, B); ρ from the group's ``adjust_lr_fn``/``update_rms``), so
        √max(1, A/B)/√max(A, B) = 1/√B under ``"original"`` and 0.2 under ``"match_rms_adamw"``; Lion 1
        (every coordinate moves ±lr); ``None`` for other optimizers, whose update size depends on the
        gradients."""
        if self.family == "muon":
            rows, cols = int(shape[0]), int(shape[1])
            return adjusted_lr(1.0, self.adjust_lr_fn, (rows, cols), self.update_rms) / math.sqrt(max(rows, cols))
        if self.family == "lion":
            return 1.0
        return None


def _reading(row: OptimizerDecay | None, group: dict) -> tuple[str, str]:
    """(form, decay_scaling) of ``group`` under ``row``."""
    if row is None:
        return "unknown", "lr"
    form = row.form
    if row.flag is not None and group.get(row.flag, False):
        form = row.flag_form
    if form == "decoupled-at-y" and group.get("decay_at_z", False):
        form = "decoupled-at-z"
    decoupled = FORMS[form].kind == "decoupled"
    return form, (group.get("decay_scaling", "lr") if decoupled else "lr")


def _float(value, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def group_decay(optimizer: torch.optim.Optimizer, group: dict) -> GroupDecay:
    """Read the decay of ``group`` (one of ``optimizer.param_groups``) from :data:`OPTIMIZER_DECAY`
    (see the module docstring): torch 2.13's optimizers, decaylab's (MuonAdamW per group) and the
    schedule-free ones; ``kind="unknown"`` for any other."""
    row = table_row(optimizer, group)
    form, scaling = _reading(row, group)
    name = type(optimizer).__name__
    if "betas" in group and row is not None and row.family in ("adam", "lion", "schedulefree"):
        beta = float(group["betas"][0])
    else:
        beta = _float(group.get("momentum", 0.0))
    lr = _float(group.get("lr", 0.0))
    peak = _float(group.get("decay_reference_lr", group.get("initial_lr", lr)), lr)
    return GroupDecay(kind=FORMS[form].kind, form=form, family=row.family if row is not None else "other",
                      optimizer=name, weight_decay=_float(group.get("weight_decay", 0.0)), lr=lr, peak_lr=peak,
                      decay_scaling=scaling, beta=beta, dampening=_float(group.get("dampening", 0.0)),
                      implicit_decay=_float(group.get(row.implicit_key, 0.0)) if row and row.implicit_key else 0.0,
                      adjust_lr_fn=group.get("adjust_lr_fn") if row is not None and row.family == "muon" else None,
                      update_rms=group.get("update_rms") if row is not None and row.family == "muon" else None,
                      entry=row)


def class_decay(cls: type) -> tuple[str, str]:
    """(kind, family) of a decaylab optimizer class as constructed, from its row of the table (e.g.
    ``SGDW`` → ``("decoupled", "sgd")``; ``MuonAdamW`` → its Muon half's, the matrices a sweep's λ decays):
    what :mod:`decaylab.maps.theory` reads for a sweep's optimizer."""
    if cls in _HALVES:
        cls = _HALVES[cls][1]
    row = table_row(cls)
    if row is None:
        raise InputError(f"{cls.__name__} is not in decaylab's table of optimizers (OPTIMIZER_DECAY)")
    return FORMS[row.form].kind, row.family
