"""The sweep vocabulary: a :class:`Member` (one run), the :class:`TrainConfig` all members share, the
:class:`MemberResult` each ends with, and the losses both trainers compute; also the two end rules both
trainers share: :func:`judged` (a final reported loss that is non-finite or runaway makes the member diverged)
and :func:`check_same_architecture` (every member's build has the parameter shapes of the first).

Losses, per row: ``cross_entropy`` = ``logsumexp(z) − z_y`` (logits ``z``, class ``y``);
``mse`` = the mean over outputs of ``(f(x) − y)²``. λ is the optimizers' ``weight_decay``: coupled
``+λ·w`` is the gradient of the penalty ``(λ/2)·Σw²``, so decaylab's penalty form ``L + λ'·Σw²`` is
``weight_decay = 2λ'``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from decaylab._checks import (
    InputError,
    InputTypeError,
    check_choice,
    check_int,
    check_real,
)
from decaylab.groups import DecayRule
from decaylab.optim.options import DECAY_SCALINGS, OPTIMIZER_OPTIONS
from decaylab.optim.options import OPTIMIZER_NAMES as OPTIMIZERS
from decaylab.optim.spec import OptimizerSpec
from decaylab.runspec import DECAY_OPTIONS, RUN_OPTIONS, decay_rule

LR_SCHEDULES = RUN_OPTIONS["lr_schedule"].choices
LOSSES = RUN_OPTIONS["loss"].choices
OPTIMIZER_OPTION_NAMES = tuple(o.name for o in OPTIMIZER_OPTIONS)

__all__ = ["Member", "TrainConfig", "MemberResult", "judged", "diverged_result", "parameter_shapes",
           "check_same_architecture", "OPTIMIZERS", "DECAY_SCALINGS", "LR_SCHEDULES", "LOSSES", "lr_multiplier"]


@dataclass(frozen=True)
class Member:
    """One training run: its decay λ, learning rate, seed, and which rows of X it trains / validates on."""

    weight_decay: float
    lr: float
    seed: int = 0
    train_index: tuple[int, ...] | None = None   # rows of X that train it (None: every row)
    val_index: tuple[int, ...] | None = None     # rows of X it is validated on (None: none)

    def __post_init__(self):
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_int("seed", self.seed, low=0)
        for name in ("train_index", "val_index"):
            rows = getattr(self, name)
            if rows is not None:
                object.__setattr__(self, name, tuple(int(i) for i in rows))
        if self.train_index is not None and len(self.train_index) == 0:
            raise InputError("train_index must name at least one row, got an empty sequence")


@dataclass(frozen=True)
class TrainConfig:
    """What every member shares: the optimizer, what decays, and the run's epochs, batches, schedule, loss, dtype.

    - ``optimizer``: an :class:`~decaylab.optim.spec.OptimizerSpec` (sgd, sgdw, adam, adamw, muon — Muon with
      its AdamW companion — or lion, with every option its decaylab class takes, checked by the classes' own
      rules);
    - ``decay``: a :class:`~decaylab.groups.DecayRule`, the one rule of what decays (default: weights decay;
      biases, norms, embeddings and 0-/1-D free parameters do not; a sweep's ``decay_biases=True`` is
      :meth:`DecayRule.everything`);
    - ``epochs``, ``batch_size``, ``lr_schedule`` ∈ {constant, cosine}, ``loss`` ∈ {cross_entropy, mse} and
      ``dtype`` of parameters and data: :data:`decaylab.runspec.RUN_OPTIONS`, with their checks and defaults
      (``loss`` here is resolved: a :class:`~decaylab.runspec.TrainSpec`'s ``None`` is decided by the targets).

    - ``standardize``: each member's features standardized with the statistics of its own training rows,
      applied to its validation rows and the evaluation sets too (:mod:`decaylab.batched.standardization`).

    :meth:`from_options` builds one from today's flat keywords (``optimizer="sgd", momentum=0.9,
    decay_biases=True, epochs=5``).
    """

    optimizer: OptimizerSpec = OptimizerSpec()
    decay: DecayRule = DecayRule()
    epochs: int = RUN_OPTIONS["epochs"].default
    batch_size: int = RUN_OPTIONS["batch_size"].default
    lr_schedule: str = RUN_OPTIONS["lr_schedule"].default
    loss: str = "cross_entropy"
    dtype: torch.dtype = RUN_OPTIONS["dtype"].default
    standardize: bool = RUN_OPTIONS["standardize"].default

    def __post_init__(self):
        if not isinstance(self.optimizer, OptimizerSpec):
            raise InputTypeError(f"optimizer must be an OptimizerSpec (TrainConfig.from_options takes a name and its "
                                 f"options), got {self.optimizer!r}")
        if not isinstance(self.decay, DecayRule):
            raise InputTypeError(f"decay must be a decaylab.groups.DecayRule, got {self.decay!r}")
        for name in ("epochs", "batch_size", "lr_schedule", "dtype", "standardize"):
            RUN_OPTIONS[name].check(getattr(self, name))
        check_choice("loss", self.loss, LOSSES)

    @classmethod
    def from_options(cls, **options) -> TrainConfig:
        """A config from the flat option names of :func:`decaylab.sweep`: the optimizer's
        (:data:`decaylab.optim.options.OPTIMIZER_OPTIONS`), what decays (:data:`decaylab.runspec.DECAY_OPTIONS`)
        and the run fields; anything else is refused by name."""
        optimizer = {k: options.pop(k) for k in OPTIMIZER_OPTION_NAMES if k in options}
        decay = {k: options.pop(k) for k in DECAY_OPTIONS if k in options}
        return cls(optimizer=OptimizerSpec.from_options(**optimizer), decay=decay_rule(**decay), **options)

    @property
    def decoupled(self) -> bool:
        return self.optimizer.decoupled

    @property
    def is_adam(self) -> bool:
        return self.optimizer.is_adam

    def decayed_names(self, model: nn.Module) -> dict[str, bool]:
        """Parameter name → whether it decays, by the config's :class:`~decaylab.groups.DecayRule` (the one rule)."""
        return self.decay.decays(model)


@dataclass
class MemberResult:
    """What one member ended with. Losses are means over the rows named; NaN where diverged or absent."""

    train_loss: float
    val_loss: float
    val_accuracy: float
    weight_norm: float                 # ‖w‖₂ over the decayed parameters
    epochs_run: int
    steps: int
    diverged: bool
    wall_time: float                   # seconds; batched: the chunk's time divided by its members
    eval: dict[str, dict[str, float]] = field(default_factory=dict)   # name → {"loss", "accuracy"}
    state_dict: dict[str, torch.Tensor] | None = None                 # final weights if asked for


def diverged_result(epochs_run: int, steps: int, eval_names) -> MemberResult:
    """The result of a member that diverged: NaN losses, accuracies and norm, no weights."""
    nan = float("nan")
    return MemberResult(nan, nan, nan, nan, epochs_run, steps, True, 0.0,
                        {name: {"loss": nan, "accuracy": nan} for name in eval_names})


def judged(result: MemberResult, member: Member, kind: str, y: torch.Tensor,
           evals: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> MemberResult:
    """``result``, or :func:`diverged_result` if a loss it reports is non-finite or runaway
    (:func:`decaylab.train.divergence.reported_diverging`): the train loss and the validation loss (when
    ``member`` has validation rows) at the runaway limit of the targets ``y``, each evaluation set's loss (when
    it has rows) at that of its own targets. Both trainers end with it."""
    from decaylab.train.divergence import reported_diverging, runaway_limit

    losses = [result.train_loss] + ([result.val_loss] if member.val_index else [])
    bad = reported_diverging(losses, runaway_limit(kind, y)) or any(
        reported_diverging([result.eval[name]["loss"]], runaway_limit(kind, ey))
        for name, (_, ey) in evals.items() if len(ey))
    return diverged_result(result.epochs_run, result.steps, result.eval) if bad and not result.diverged else result


def parameter_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Parameter name → shape: a model's architecture as the trainers compare it."""
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def check_same_architecture(model_factory, first: Mapping[str, tuple[int, ...]], model: nn.Module) -> None:
    """Refuse a factory whose build ``model`` has other parameter shapes than its first build's ``first``
    (:func:`parameter_shapes`): every member of a sweep trains the same architecture."""
    first, shapes = {n: tuple(shape) for n, shape in first.items()}, parameter_shapes(model)
    if shapes == first:
        return
    differ = [f"{n} {first.get(n, 'absent')} then {shapes.get(n, 'absent')}"
              for n in sorted(set(first) | set(shapes)) if first.get(n) != shapes.get(n)]
    name = getattr(model_factory, "__qualname__", type(model_factory).__name__)
    raise InputError(f"model factory {name!r} builds a different architecture on another call: parameter shapes "
                     f"{'; '.join(differ[:3])}{' …' if len(differ) > 3 else ''}; every member must be the same model")


def lr_multiplier(schedule: str, step: int | torch.Tensor, total_steps: int | torch.Tensor):
    """``m(t)`` of ``lr_t = lr·m(t)``: 1 (constant) or ``(1 + cos(π t/T))/2`` (cosine); works on tensors."""
    if schedule == "constant":
        return torch.ones_like(step, dtype=torch.float64) if torch.is_tensor(step) else 1.0
    if torch.is_tensor(step):
        return (1.0 + torch.cos(math.pi * step.double() / total_steps)) / 2.0
    return (1.0 + math.cos(math.pi * step / total_steps)) / 2.0


def _per_sample_loss(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss of each sample, shape ``out.shape[:-1]`` (the last dim of ``out`` is the output); both trainers use it."""
    if kind == "cross_entropy":
        # −log softmax(out)[target] = logsumexp(out) − out[target]; ~3× faster than F.cross_entropy for
        # few classes on CPU, and the same (stable) value
        return out.logsumexp(-1) - out.gather(-1, target.reshape(*out.shape[:-1], 1)).squeeze(-1)
    return ((out - target.reshape(out.shape)) ** 2).mean(-1)


def _accuracy(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of argmax hits per member, shape ``out.shape[:-2]`` (NaN for regression)."""
    if kind != "cross_entropy":
        return torch.full(out.shape[:-2], float("nan"), dtype=torch.float64)
    return (out.argmax(-1) == target).double().mean(-1)

def _as_tensors(X, y, config: TrainConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.as_tensor(X)
    X = X.to(config.dtype) if X.is_floating_point() else X.long()    # token ids / indices stay integers
    y = torch.as_tensor(y)
    if device is not None:
        X, y = X.to(device), y.to(device)
    y = y.long() if config.loss == "cross_entropy" else y.to(config.dtype)
    if len(X) != len(y):
        raise InputError(f"y must have one entry per row of X ({len(X)}), got {len(y)}")
    return X, y


def _check_members(members: Sequence[Member]) -> list[Member]:
    members = list(members)
    if not members:
        raise InputError("members must contain at least one Member, got none")
    for m in members:
        if not isinstance(m, Member):
            raise InputTypeError(f"members must be Member objects, got {type(m).__name__}")
    return members

