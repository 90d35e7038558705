"""The plain training loop: :func:`fit` a model with any torch optimizer and get its :class:`History`.

One epoch is one pass over the training rows in a seeded random order, in batches of
``batch_size`` (``None``: one full batch, in order, i.e. gradient descent). Each step calls
``optimizer.step(closure)`` with a closure that zeroes the gradients, computes the batch loss
and back-propagates it, so closure-based optimizers (LBFGS) work as well. After each epoch the
model is evaluated (``model.eval()``, no gradients) on the whole training split and on the
validation split, and the norm of every named parameter is recorded (every ``eval_every``
epochs and after the last).

Losses: "cross_entropy" (classification: logits ``[n, C]``, labels ``[n]``) and "mse"
(regression: mean of ``(f(x) − y)²``, an output of shape ``[n, 1]`` is compared with ``y`` of
shape ``[n]``), or any callable ``loss(output, y) -> scalar tensor``. Decay applied by the
optimizer (its ``weight_decay``) is not part of the recorded loss.

Determinism: batch order comes from a ``torch.Generator`` seeded with ``seed`` and the global
generator (dropout) is seeded with ``seed`` inside :func:`decaylab._isolation.isolated`, so the same
model, optimizer, data and seed give the same history, and the caller's random state (and thread
count) is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .._checks import InputError, InputTypeError, check_choice, check_int
from .._isolation import isolated, seeded_generator
from .callbacks import EarlyStopping, ProgressBar, TrainState

LOSSES = ("cross_entropy", "mse")
SCHEDULER_INTERVALS = ("epoch", "step")


@dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run (index ``i`` is the end of epoch ``epoch[i]``).

    Accuracies are ``None`` for regression; validation entries are ``None`` without validation
    data. ``weight_norms[name][i]`` is ``‖p‖₂`` of the parameter called ``name`` (as in
    ``model.named_parameters()``) after epoch ``epoch[i]``; ``lr`` is the first parameter
    group's learning rate used during that epoch.
    """

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_acc: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    weight_norms: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.epoch)

    def total_weight_norm(self, index: int = -1) -> float:
        """``‖θ‖₂`` of all recorded parameters together after epoch ``epoch[index]``."""
        return float(sum(v[index] ** 2 for v in self.weight_norms.values()) ** 0.5)

    def to_dict(self) -> dict:
        """Plain lists and numbers, ready for ``json.dumps``."""
        return asdict(self)


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data, *, epochs: int,
        batch_size: int | None = 32, loss: str | Callable = None, scheduler=None,
        scheduler_interval: str = "epoch", callbacks: Sequence = (), progress: bool | str = False,
        early_stopping: int | EarlyStopping | None = None, seed: int = 0, eval_every: int = 1) -> History:
    """Train ``model`` with ``optimizer`` on ``data`` for up to ``epochs`` epochs; return its :class:`History`.

    Args:
        data: a :class:`decaylab.data.Dataset` (its ``train`` and ``val`` splits are used), or a
            tuple ``(X, y)`` or ``(X, y, X_val, y_val)`` of tensors; moved to the device of the
            model's parameters.
        epochs: number of passes over the training rows (≥ 1).
        batch_size: rows per step (≥ 1), or ``None`` for full-batch steps.
        loss: "cross_entropy", "mse" or a callable; default by task (integer ``y``:
            cross-entropy, float ``y``: mean squared error).
        scheduler: a torch LR scheduler, stepped after every epoch (``scheduler_interval="epoch"``)
            or every optimizer step ("step"); ``ReduceLROnPlateau`` is given the validation
            loss (training loss without validation data).
        callbacks: objects with some of the hooks of :mod:`decaylab.train.callbacks`, called
            in the given order.
        progress: show a tqdm bar over epochs (a string is used as its label).
        early_stopping: ``None`` (off), a patience in epochs (stop on validation loss and
            restore the best epoch's weights), or an :class:`EarlyStopping` callback.
        seed: fixes the batch order and dropout.
        eval_every: record metrics (and call ``on_epoch_end``, step an epoch scheduler with a
            metric, let early stopping look) every this many epochs and after the last one;
            ``1`` records every epoch. Larger values save the evaluation passes when only the
            end of training matters.
    """
    epochs = check_int("epochs", epochs, low=1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, low=1)
    check_choice("scheduler_interval", scheduler_interval, SCHEDULER_INTERVALS)
    seed = check_int("seed", seed, low=0)
    eval_every = check_int("eval_every", eval_every, low=1)
    (X, y), val, task = _training_data(data)
    device = next(model.parameters(), torch.empty(0)).device
    X, y = X.to(device), y.to(device)
    val = None if val is None else (val[0].to(device), val[1].to(device))
    loss_fn = _loss_function(loss, task)
    callbacks = list(callbacks)
    if early_stopping is not None:
        callbacks.append(early_stopping if isinstance(early_stopping, EarlyStopping)
                         else EarlyStopping(patience=early_stopping))
    if progress:
        callbacks.append(ProgressBar(epochs, progress if isinstance(progress, str) else "fit"))

    history = History()
    state = TrainState(model=model, optimizer=optimizer, history=history)
    order_generator = seeded_generator(seed)
    with isolated(seed, device=device):
        _call(callbacks, "on_train_begin", state)
        for epoch in range(1, epochs + 1):
            state.epoch = epoch
            lr = float(optimizer.param_groups[0]["lr"])
            model.train()
            for rows in _batches(len(y), batch_size, order_generator):
                state.loss = _train_step(model, optimizer, loss_fn, X[rows], y[rows])
                state.step += 1
                if scheduler is not None and scheduler_interval == "step":
                    _step_scheduler(scheduler, state.loss)
                _call(callbacks, "on_step_end", state)
                if state.stop:
                    break
            recorded = state.stop or epoch % eval_every == 0 or epoch == epochs
            if recorded:
                _record_epoch(history, model, loss_fn, task, (X, y), val, epoch, state.step, lr)
            if scheduler is not None and scheduler_interval == "epoch" and (recorded or not _needs_metric(scheduler)):
                _step_scheduler(scheduler, (history.val_loss if val is not None else history.train_loss)[-1]
                                if recorded else None)
            if recorded:
                _call(callbacks, "on_epoch_end", state)
            if state.stop:
                break
        _call(callbacks, "on_train_end", state)
    return history


def evaluate(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str | Callable = None
             ) -> tuple[float, float | None]:
    """``(mean loss, accuracy)`` of ``model`` on ``(X, y)`` in eval mode (accuracy ``None`` for regression)."""
    task = _task_of(y)
    return _evaluate(model, _loss_function(loss, task), task, X, y)


def _train_step(model, optimizer, loss_fn, X, y) -> float:
    def closure():
        optimizer.zero_grad(set_to_none=True)
        value = loss_fn(model(X), y)
        value.backward()
        return value.detach()

    return float(optimizer.step(closure))


def _batches(n: int, batch_size: int | None, generator: torch.Generator):
    if batch_size is None:
        yield slice(None)
        return
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _record_epoch(history: History, model, loss_fn, task, train, val, epoch: int, step: int, lr: float):
    train_loss, train_acc = _evaluate(model, loss_fn, task, *train)
    val_loss, val_acc = _evaluate(model, loss_fn, task, *val) if val is not None else (None, None)
    history.epoch.append(epoch)
    history.step.append(step)
    history.train_loss.append(train_loss)
    history.train_acc.append(train_acc)
    history.val_loss.append(val_loss)
    history.val_acc.append(val_acc)
    history.lr.append(lr)
    with torch.no_grad():
        for name, p in model.named_parameters():
            history.weight_norms.setdefault(name, []).append(float(p.detach().norm()))


def _evaluate(model, loss_fn, task, X, y) -> tuple[float, float | None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(X)
            value = float(loss_fn(out, y))
            acc = float((out.argmax(dim=1) == y).double().mean()) if task == "classification" else None
    finally:
        model.train(was_training)
    return value, acc


def _mse(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if output.shape != y.shape and output.numel() == y.numel():
        output = output.reshape(y.shape)
    return F.mse_loss(output, y)


def _loss_function(loss, task: str) -> Callable:
    if loss is None:
        loss = "cross_entropy" if task == "classification" else "mse"
    if callable(loss):
        return loss
    check_choice("loss", loss, LOSSES)
    return F.cross_entropy if loss == "cross_entropy" else _mse


def _task_of(y: torch.Tensor) -> str:
    return "regression" if torch.is_floating_point(y) else "classification"


def _training_data(data):
    """``((X, y), (X_val, y_val) or None, task)`` from a Dataset or a tuple of tensors."""
    if hasattr(data, "train") and hasattr(data, "val"):
        train, val = (data.train.X, data.train.y), (data.val.X, data.val.y)
    elif isinstance(data, (tuple, list)) and len(data) in (2, 4) and all(isinstance(t, torch.Tensor) for t in data):
        train = tuple(data[:2])
        val = tuple(data[2:]) if len(data) == 4 else None
    else:
        raise InputTypeError("data must be a decaylab.data.Dataset or a tuple (X, y) or (X, y, X_val, y_val) of "
                        f"tensors, got {type(data).__name__}")
    for name, (X, y) in (("train", train), ("val", val)) if val is not None else (("train", train),):
        if X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise InputError(f"data ({name}) must have as many rows in X as in y (and at least one), "
                             f"got X {tuple(X.shape)} and y {tuple(y.shape)}")
    return train, val, _task_of(train[1])


def _needs_metric(scheduler) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _step_scheduler(scheduler, metric: float | None) -> None:
    if _needs_metric(scheduler):
        scheduler.step(metric)
    else:
        scheduler.step()


def _call(callbacks, hook: str, state: TrainState) -> None:
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(state)
