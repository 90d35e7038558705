"""One model trained by the batched engine an epoch at a time, its coupled λ per tensor settable between epochs.

For a loop that changes the weight decay as training goes (the online evidence,
:mod:`decaylab.evidence.online`). The model is stacked as the single member of a
:class:`~decaylab.batched.stacked._StackedModel` — so a plain MLP takes the hand-differentiated fast
path of :func:`~decaylab.batched.trainer.train_batched` and a plain ReLU MLP with the cross-entropy
builds no autograd graph — and updated by the batched engine's optimizer (torch's fused Adam/SGD
kernel after the coupled decay ``g ← ∇L + λ_p·w_p``, one λ per parameter tensor).

Each :meth:`OneModelTrainer.epoch` is one epoch as both trainers run it (:mod:`decaylab.batched.epochs`):
the rows in the order of ``randperm`` from a generator seeded with ``seed``, cut into batches of
``batch_size`` (the last one smaller), the batch loss the mean over the batch (cross-entropy, or
torch's ``MSELoss``: the mean over rows and outputs). It is the same update as torch's ``Adam``/``SGD``
with coupled ``weight_decay`` over the same batches, up to float rounding.

Models the batched engine refuses (:func:`~decaylab.batched.stacked.check_batchable`: dropout,
recurrent layers) raise an :class:`~decaylab._checks.InputError`; check first with
:func:`one_model_reason`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
from torch import nn

from decaylab._checks import InputError
from decaylab.batched.epochs import _epoch_order, _padded_epoch, _shuffle_generator, _steps_per_epoch
from decaylab.batched.members import Member, TrainConfig
from decaylab.batched.stacked import _losses_and_grads, _StackedModel, check_batchable
from decaylab.batched.trainer import _BatchedOptimizer
from decaylab.optim.spec import OptimizerSpec
from decaylab.train.divergence import all_finite, diverging, runaway_limit

__all__ = ["OneModelTrainer", "one_model_reason"]


def one_model_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained by :class:`OneModelTrainer` (``None`` if it can)."""
    return check_batchable(model)


class OneModelTrainer:
    """Train a copy of ``model`` on ``(X, y)`` one epoch at a time (module docstring).

    ``optimizer``: ``"adam"`` or ``"sgd"`` (coupled decay), with ``lr`` and, for SGD, ``momentum``.
    ``weight_decay``: the coupled λ of every parameter tensor, by name (a name missing: λ = 0).
    ``loss``: ``"cross_entropy"`` (``y`` class indices) or ``"mse"`` (``y`` shaped like the outputs).
    """

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, optimizer: str, lr: float,
                 momentum: float, batch_size: int, loss: str, seed: int, weight_decay: Mapping[str, float]):
        reason = one_model_reason(model)
        if reason is not None:
            raise InputError(f"model cannot be trained by the batched engine: {reason}")
        dtype = next(iter(model.parameters())).dtype
        self.config = TrainConfig(optimizer=OptimizerSpec(optimizer, momentum=momentum), batch_size=batch_size,
                                  loss=loss, dtype=dtype, epochs=1)
        self.X, self.y = X, y
        self.rows = torch.arange(len(X))
        self.steps_per_epoch = _steps_per_epoch(len(X), batch_size)
        member = Member(weight_decay=0.0, lr=lr, seed=seed)
        self.stacked = _StackedModel(lambda: copy.deepcopy(model), [member], self.config, device=X.device)
        self.optimizer = _BatchedOptimizer(self.stacked, [member], self.config, torch.tensor([0]))
        self.generator = _shuffle_generator(seed)
        self.active = torch.ones(1, dtype=torch.bool)
        self.steps = 0
        self.limit, self.diverged = runaway_limit(loss, y), False
        self.set_weight_decay(weight_decay)

    def set_weight_decay(self, weight_decay: Mapping[str, float]) -> None:
        """The coupled λ of each parameter tensor (by name) from the next step on."""
        self.optimizer.set_tensor_weight_decay([float(weight_decay.get(n, 0.0)) for n in self.stacked.names])

    def epoch(self) -> float:
        """One epoch over all rows (module docstring); the mean over rows of the batch losses. A diverging
        batch (:mod:`decaylab.train.divergence`) takes no step and ends the epoch, as do parameters that are
        not finite after it: ``diverged`` is then set and NaN returned."""
        order = _epoch_order(self.rows, self.generator)
        index, weight = _padded_epoch([order], self.config.batch_size, self.steps_per_epoch)
        index, weight = index.to(self.X.device), weight.to(self.config.dtype).to(self.X.device)
        total = torch.zeros((), dtype=torch.float64)
        for s in range(self.steps_per_epoch):
            losses, grads = _losses_and_grads(self.stacked, self.X, self.y, index[:, s], weight[:, s],
                                              self.config.loss)
            if bool(diverging(losses[0], self.limit)):
                self.diverged = True
                return math.nan
            self.optimizer.step(grads, self.active)
            total += losses[0].double() * min(self.config.batch_size, len(self.X) - s * self.config.batch_size)
            self.steps += 1
        self.diverged = not all_finite(self.stacked.params)
        return math.nan if self.diverged else float(total) / len(self.X)

    def copy_to(self, model: nn.Module) -> None:
        """Write the trained parameters (and buffers, e.g. BatchNorm statistics) into ``model``."""
        with torch.no_grad():
            model.load_state_dict(self.stacked.state_dict(0), strict=True)
