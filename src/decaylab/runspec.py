"""The specification of a training run: the run itself (:class:`TrainSpec`) and what decays, declared once.

A run is the optimizer (:class:`decaylab.optim.spec.OptimizerSpec`), what decays
(:class:`decaylab.groups.DecayRule`) and the run's own options, :data:`RUN_OPTIONS`:

- ``epochs`` ≥ 1, ``batch_size`` ≥ 1, ``lr_schedule`` ∈ {constant, cosine};
- ``loss`` ∈ {cross_entropy, mse} or ``None`` (cross-entropy for integer targets, mse for float ones);
- ``dtype`` ∈ {torch.float32, torch.float64} of parameters and data;
- ``device`` (``None``: CUDA when available, else the CPU) and ``seed`` (one seed or several, distinct,
  in ``[0, 2**63 − 1]``, torch's range);
- ``standardize``: each member's features standardized with the mean and standard deviation of its own
  training rows (:mod:`decaylab.batched.standardization`; never the validation rows).

What decays is given as :data:`DECAY_OPTIONS` — ``decay_biases`` (every parameter decays:
:meth:`DecayRule.everything`) or :class:`~decaylab.groups.DecayRule`'s overrides — and becomes one rule
with :func:`decay_rule`. :class:`TrainSpec` holds a run's options, checked; the batched and sequential
trainers take the part every member shares as :class:`decaylab.batched.members.TrainConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from decaylab._checks import InputError, check_int
from decaylab._options import Interval, Option, comma_list, declared
from decaylab.groups import DEFAULT_NO_DECAY_NAMES, DecayRule
from decaylab.train.devices import resolve_device

__all__ = ["RUN_OPTIONS", "DECAY_OPTIONS", "TrainSpec", "decay_rule", "check_seeds", "MAX_SEED"]

MAX_SEED = 2**63 - 1      # torch.manual_seed's range
AT_LEAST_1 = Interval(1, None)

RUN_OPTIONS = declared((
    Option("epochs", 20, "epochs of training", kind="int", interval=AT_LEAST_1),
    Option("batch_size", 64, "rows per minibatch", kind="int", interval=AT_LEAST_1),
    Option("lr_schedule", "constant", "learning-rate schedule over the run", kind="choice",
           choices=("constant", "cosine")),
    Option("loss", None, "training loss (None: cross_entropy for integer targets, mse for float targets)",
           kind="choice", choices=("cross_entropy", "mse"), none=True),
    Option("dtype", torch.float32, "dtype of parameters and data", kind="choice",
           choices=(torch.float32, torch.float64)),
    Option("device", None, "where it trains (None: CUDA when available, else the CPU)", none=True, parse=str),
    Option("seed", 0, "seed(s): one or several, comma separated", parse=comma_list(int)),
    Option("standardize", False, "standardize each member's features with its own training rows' statistics",
           kind="bool"),
))

DECAY_OPTIONS = declared((
    Option("decay_biases", False, "every parameter decays, biases and norms too", kind="bool"),
    Option("no_decay_types", None, "module classes whose parameters do not decay, besides norms and embeddings",
           none=True),
    Option("no_decay_names", DEFAULT_NO_DECAY_NAMES, "name patterns that do not decay", kind="names",
           parse=comma_list(str)),
    Option("decay_names", (), "name patterns that decay whatever else says", kind="names", parse=comma_list(str)),
    Option("decay_embeddings", False, "embeddings decay (norms still do not)", kind="bool"),
))


def decay_rule(decay_biases: bool = False, **overrides) -> DecayRule:
    """The one rule of what decays for :data:`DECAY_OPTIONS`: :meth:`DecayRule.everything` with
    ``decay_biases=True`` (its ``"*"`` wins over every override), else ``DecayRule(**overrides)``."""
    DECAY_OPTIONS["decay_biases"].check(decay_biases)
    for name, value in overrides.items():
        DECAY_OPTIONS[name].check(value)
    rule = DecayRule(**overrides)                    # checks the overrides even where everything decays
    return DecayRule.everything() if decay_biases else rule


def check_seeds(seed) -> tuple[int, ...]:
    """Distinct seeds in ``[0, MAX_SEED]`` from one seed or a sequence (at least one)."""
    values = list(seed) if isinstance(seed, (list, tuple, range, np.ndarray)) else [seed]
    values = [check_int("seed", int(s) if isinstance(s, np.integer) else s, low=0, high=MAX_SEED) for s in values]
    if not values:
        raise InputError("seed must hold at least one value, got an empty sequence")
    if len(set(values)) != len(values):
        raise InputError(f"seed must not repeat values (a repeated seed trains the same member twice and counts it "
                         f"twice), got {values!r}")
    return tuple(values)


@dataclass(frozen=True)
class TrainSpec:
    """One training run's options (:data:`RUN_OPTIONS`), checked at construction; ``seeds`` from ``seed``; a run
    trains inside :meth:`isolated` (the caller's RNG and threads untouched)."""

    epochs: int = RUN_OPTIONS["epochs"].default
    batch_size: int = RUN_OPTIONS["batch_size"].default
    lr_schedule: str = RUN_OPTIONS["lr_schedule"].default
    loss: str | None = RUN_OPTIONS["loss"].default
    dtype: torch.dtype = RUN_OPTIONS["dtype"].default
    device: str | torch.device | None = RUN_OPTIONS["device"].default
    seeds: tuple[int, ...] = (RUN_OPTIONS["seed"].default,)
    standardize: bool = RUN_OPTIONS["standardize"].default

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_schedule", "loss", "dtype", "standardize"):
            RUN_OPTIONS[name].check(getattr(self, name))
        resolve_device(self.device)                                  # refuses a bad device now
        object.__setattr__(self, "seeds", check_seeds(self.seeds))

    @classmethod
    def from_options(cls, options: Mapping, **changes) -> TrainSpec:
        """The spec from option values by name (``seed`` for ``seeds``); ``changes`` replace some."""
        values = {**{name: options[name] for name in RUN_OPTIONS if name in options}, **changes}
        if "seed" in values:
            values["seeds"] = values.pop("seed")
        return cls(**values)

    def resolved_loss(self, y: torch.Tensor) -> str:
        """``loss``, or for ``None`` the one the targets call for (integer: cross_entropy; float: mse)."""
        return self.loss or ("mse" if torch.is_floating_point(y) else "cross_entropy")

    def shared(self, y: torch.Tensor) -> dict:
        """What every member of the run shares (:class:`~decaylab.batched.members.TrainConfig`'s run fields),
        the loss resolved for the targets ``y``."""
        return dict(epochs=self.epochs, batch_size=self.batch_size, lr_schedule=self.lr_schedule,
                    loss=self.resolved_loss(y), dtype=self.dtype, standardize=self.standardize)

    @staticmethod
    def isolated(seed: int | None = None):
        """The context every run trains in: the caller's RNG forked (seeded with ``seed`` if given) and its
        thread count restored on exit (:func:`decaylab._isolation.isolated`), so nothing a run does changes
        the caller's global torch state."""
        from decaylab._isolation import isolated

        return isolated(seed)
