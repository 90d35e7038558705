"""The callback protocol of :func:`decaylab.train.fit`.

A callback is any object with some of these methods; each receives the live
:class:`TrainState` (model, optimizer, epoch, global step, history so far).

- ``on_train_begin(state)``
- ``on_step_end(state)``    after ``optimizer.step()``; ``state.loss`` is the batch loss
- ``on_epoch_end(state)``   after validation metrics for the epoch are in ``state.history``
- ``on_train_end(state)``

Setting ``state.stop = True`` from any hook ends training after the current step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TrainState:
    """What a callback sees: the objects being trained and where training is."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    step: int = 0
    loss: float | None = None
    history: Any = None
    stop: bool = False
    extra: dict = field(default_factory=dict)


class Callback:
    """Base class with no-op hooks; subclass and override what you need."""

    def on_train_begin(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass
