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

from decaylab._checks import InputError


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


class EarlyStopping(Callback):
    """Stop when a validation metric has not improved for ``patience`` epochs.

    ``monitor`` is a :class:`~decaylab.train.fit.History` series: "val_loss" (lower is better)
    or "val_acc" (higher is better). An epoch improves on the best so far when it beats it by
    more than ``min_delta`` (with ``fit(eval_every=k)`` patience counts evaluations, every k
    epochs). With ``restore_best`` the model gets the parameters (and buffers)
    of the best epoch back when training ends; ``history.best_epoch`` and
    ``history.stopped_epoch`` record what happened (``stopped_epoch`` is None if it never fired).
    """

    MODES = {"val_loss": "min", "val_acc": "max", "train_loss": "min", "train_acc": "max"}

    def __init__(self, patience: int = 10, *, monitor: str = "val_loss", min_delta: float = 0.0,
                 restore_best: bool = True):
        from .._checks import check_choice, check_int, check_real

        self.patience = check_int("patience", patience, low=1)
        self.monitor = check_choice("monitor", monitor, tuple(self.MODES))
        self.min_delta = check_real("min_delta", min_delta, low=0.0)
        self.restore_best = bool(restore_best)

    def on_train_begin(self, state: TrainState) -> None:
        self.best: float | None = None
        self.best_epoch = 0
        self.best_state = None
        self.bad_epochs = 0

    def on_epoch_end(self, state: TrainState) -> None:
        value = getattr(state.history, self.monitor)[-1]
        if value is None:
            raise InputError(f"EarlyStopping monitor={self.monitor!r} needs that metric, but fit did not record it "
                             "(no validation data, or accuracy on a regression task)")
        sign = 1.0 if self.MODES[self.monitor] == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, state.epoch, 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                state.stop = True
                state.history.stopped_epoch = state.epoch
        state.history.best_epoch = self.best_epoch

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_state is not None:
            state.model.load_state_dict(self.best_state)


class ProgressBar(Callback):
    """A tqdm bar over epochs on stderr, showing the latest train/val loss and accuracy."""

    def __init__(self, epochs: int, desc: str = "fit"):
        self.epochs, self.desc = epochs, desc

    def on_train_begin(self, state: TrainState) -> None:
        from .._progress import progress_bar

        self.bar = progress_bar(total=self.epochs, desc=self.desc, unit="epoch")

    def on_epoch_end(self, state: TrainState) -> None:
        h = state.history
        shown = {k: getattr(h, k)[-1] for k in ("train_loss", "val_loss", "val_acc")}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if v is not None}, refresh=False)
        self.bar.update(state.epoch - self.bar.n)

    def on_train_end(self, state: TrainState) -> None:
        self.bar.close()
