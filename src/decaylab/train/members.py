"""The sweep vocabulary: a :class:`Member` (one run), the :class:`TrainConfig` all members share, the
:class:`MemberResult` each ends with, and the losses both trainers compute.

Losses, per row: ``cross_entropy`` = ``logsumexp(z) − z_y`` (logits ``z``, class ``y``);
``mse`` = the mean over outputs of ``(f(x) − y)²``. λ is the optimizers' ``weight_decay``: coupled
``+λ·w`` is the gradient of the penalty ``(λ/2)·Σw²``, so decaylab's penalty form ``L + λ'·Σw²`` is
``weight_decay = 2λ'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from decaylab.groups import DEFAULT_NO_DECAY_NAMES, classify_parameters
from decaylab.optim._decay import DECAY_SCALINGS
from decaylab.optim.spec import OPTIMIZER_NAMES as OPTIMIZERS
from decaylab.optim.spec import OptimizerSpec

LR_SCHEDULES = ("constant", "cosine")
LOSSES = ("cross_entropy", "mse")

__all__ = ["Member", "TrainConfig", "MemberResult", "OPTIMIZERS", "DECAY_SCALINGS", "LR_SCHEDULES", "LOSSES",
           "lr_multiplier"]


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
    """What every member shares: optimizer and its options, what decays, schedule, epochs, batches, loss.

    Optimizer: ``optimizer`` ∈ {sgd, sgdw, adam, adamw} with every option its decaylab class takes —
    ``momentum``/``dampening``/``nesterov`` (SGDs), ``betas``/``eps``/``amsgrad`` (Adams), and for the
    decoupled ones ``decay_scaling`` ∈ {lr, schedule, corrected}, ``cautious``, ``l1_decay`` — checked
    once by :class:`decaylab.optim.spec.OptimizerSpec` (``config.spec``).

    What decays: :func:`decaylab.param_groups`' rule (weights decay; biases, norms, embeddings and 0-/1-D
    free parameters do not), with its overrides ``no_decay_types``, ``no_decay_names``, ``decay_names``,
    ``decay_embeddings``; ``decay_biases=True`` decays every parameter (``decay_names=("*",)``).

    ``lr_schedule`` ∈ {constant, cosine}; ``loss`` ∈ {cross_entropy, mse}; ``dtype`` of parameters and data.
    ``standardize``: each member's features standardized with the statistics of its own training rows, applied
    to its validation rows and the evaluation sets too (:mod:`decaylab.train.standardization`).
    """

    optimizer: str = "adamw"
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    decay_scaling: str = "lr"
    lr_schedule: str = "constant"
    loss: str = "cross_entropy"
    decay_biases: bool = False
    dtype: torch.dtype = torch.float32
    cautious: bool = False
    l1_decay: float = 0.0
    no_decay_types: tuple | None = None
    no_decay_names: tuple[str, ...] = DEFAULT_NO_DECAY_NAMES
    decay_names: tuple[str, ...] = ()
    decay_embeddings: bool = False
    standardize: bool = False

    def __post_init__(self):
        spec = self.spec                                   # checks the optimizer and its options
        object.__setattr__(self, "betas", spec.betas)
        object.__setattr__(self, "l1_decay", spec.l1_decay)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("loss", self.loss, LOSSES)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_choice("dtype", self.dtype, (torch.float32, torch.float64))
        for name in ("no_decay_names", "decay_names"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if self.no_decay_types is not None:
            object.__setattr__(self, "no_decay_types", tuple(self.no_decay_types))
        if not isinstance(self.standardize, bool):
            raise InputTypeError(f"standardize must be True or False, got {self.standardize!r}")

    @property
    def spec(self) -> OptimizerSpec:
        """The optimizer every member uses (its λ and lr come from the :class:`Member`)."""
        return OptimizerSpec(name=self.optimizer, decay_scaling=self.decay_scaling, cautious=self.cautious,
                             l1_decay=self.l1_decay, momentum=self.momentum, dampening=self.dampening,
                             nesterov=self.nesterov, betas=self.betas, eps=self.eps, amsgrad=self.amsgrad)

    @property
    def decoupled(self) -> bool:
        return self.optimizer in ("sgdw", "adamw")

    @property
    def is_adam(self) -> bool:
        return self.optimizer in ("adam", "adamw")

    def decayed_names(self, model: nn.Module) -> dict[str, bool]:
        """Parameter name → whether it decays, by :func:`decaylab.groups.classify_parameters`' rule."""
        decisions = classify_parameters(
            model, no_decay_types=self.no_decay_types, no_decay_names=self.no_decay_names,
            decay_names=("*",) if self.decay_biases else self.decay_names, decay_embeddings=self.decay_embeddings)
        return {d.name: d.decay for d in decisions}


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

