"""Immer et al. (2021, Algorithm 1): train once and learn the weight decay — global or per layer — from the evidence.

    for epoch = 1 … T:
        one epoch of minibatch steps on  mean loss + Σ_g (λ_g/2)·‖θ_g‖²   (coupled decay, λ_g from δ_g)
        stop if the run diverged (a runaway or non-finite batch loss, non-finite parameters:
            :mod:`decaylab.train.divergence`, as every trainer) — reported ``diverged``, no evidence
        if epoch > burnin and (epoch − burnin) % frequency == 0 (and always after the last epoch):
            fit the Laplace approximation at the current θ (GGN on all training rows, :mod:`.curvature`)
            δ, σ ← argmax log p(D | δ, σ) with that curvature fixed (L-BFGS, :mod:`.optimize`)
            λ_g ← δ_g/N (cross-entropy) or 2σ²δ_g/(N·D) (mse), written into the optimizer's groups

The paper takes ``K`` Adam steps on the hyperparameters per update; maximizing with L-BFGS from the
previous values reaches the same fixed-curvature optimum. The training loss is the mean
cross-entropy or torch's ``MSELoss``; parameters :func:`decaylab.param_groups` does not decay keep
their broad prior's tiny λ₀ = δ₀/N. The update is Adam or SGD with coupled ``weight_decay`` per
parameter tensor (the prior is a coupled penalty). Minibatches: a ``randperm`` per epoch from a
generator seeded with ``seed``. The epochs run on the batched engine's one-model trainer
(:mod:`decaylab.batched.one_model`: a plain MLP is differentiated by hand, no autograd graph) when it
takes the model, else (dropout) on torch's ``Adam``/``SGD`` (:class:`TorchEpochs`) — the same batches
and update, up to float rounding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from decaylab._checks import InputTypeError, check_choice, check_int, check_real
from decaylab._isolation import seeded_generator
from decaylab.evidence.api import MarglikResult, _as_tensors, _eval_mode, marglik, precision_to_weight_decay
from decaylab.evidence.curvature import HESSIANS
from decaylab.evidence.likelihood import check_targets, resolve_loss
from decaylab.evidence.prior import prior_structure
from decaylab.optim.options import OPTIONS
from decaylab.train.divergence import all_finite, diverging, runaway_limit

OPTIMIZERS = ("adam", "sgd")


@dataclass
class OnlineResult:
    """The trained ``model``, the evidence ``history`` (one dict per update: ``epoch``, ``log_evidence``,
    ``weight_decay`` per group, ``sigma``, ``train_loss``), the ``final`` :class:`MarglikResult`, the
    learned coupled ``weight_decay`` per group, ``evals`` ``{name: {"loss", "accuracy"}}``, the wall time,
    the optimizer steps and the epochs run.

    ``diverged``: training diverged (:mod:`decaylab.train.divergence`, the rule of every trainer) in epoch
    ``epochs_run`` and stopped there; ``final`` is then ``None`` (no evidence of a diverged model),
    ``train_loss`` and ``evals`` are NaN, ``weight_decay`` the λ it was training with and ``history`` the
    updates before."""

    model: nn.Module
    history: list[dict]
    final: MarglikResult | None
    weight_decay: dict[str, float]
    train_loss: float
    evals: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_time: float = 0.0
    steps: int = 0
    diverged: bool = False
    epochs_run: int = 0


def _batch_loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "cross_entropy":
        return nn.functional.cross_entropy(out, y)
    return nn.functional.mse_loss(out.reshape(y.shape), y)


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, kind: str) -> dict[str, float]:
    """Mean loss (and accuracy for classification) of ``model`` on ``(X, y)`` in evaluation mode."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(X).reshape(len(X), -1)
        y = check_targets(kind, y, out.shape[1]) if kind == "mse" else y.long()
        result = {"loss": float(_batch_loss(kind, out, y))}
        if kind == "cross_entropy":
            result["accuracy"] = float((out.argmax(1) == y).double().mean())
    model.train(was)
    return result


def train_marglik(model: nn.Module, data, *, hessian: str = "kron", per_layer: bool = True, loss=None,
                  epochs: int = 20, batch_size: int = 64, lr: float = 1e-3, optimizer: str = "adam",
                  momentum: float = 0.0, weight_decay: float | None = None, frequency: int = 1, burnin: int = 0,
                  seed: int = 0, no_decay_precision: float = 1e-4,
                  eval_sets: Mapping[str, tuple] | None = None, **group_options) -> OnlineResult:
    """Train ``model`` on ``data`` (``(X, y)``) for ``epochs`` epochs, updating the prior precision (weight
    decay) from the Laplace evidence every ``frequency`` epochs after ``burnin`` (module docstring).

    ``weight_decay``: the starting coupled λ (default: δ = 1, Immer et al.'s start). ``hessian``,
    ``per_layer``, ``loss``, ``no_decay_precision`` and ``group_options`` are those of
    :func:`decaylab.marglik`. ``eval_sets``: extra ``{name: (X, y)}`` evaluated at the end.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_choice("hessian", hessian, HESSIANS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    epochs = check_int("epochs", epochs, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    frequency = check_int("frequency", frequency, low=1)
    burnin = check_int("burnin", burnin, low=0)
    seed = check_int("seed", seed, low=0)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    OPTIONS["momentum"].check(momentum)                # the optimizers' own rule
    structure = prior_structure(model, per_layer, **group_options)
    X, y = _as_tensors(data, next(iter(model.parameters())).dtype, model)
    kind = resolve_loss(loss, y)
    with _eval_mode(model), torch.no_grad():           # a one-row probe: no batch statistics touched
        n_out = model(X[:1]).reshape(1, -1).shape[1]
    y = check_targets(kind, y, n_out)
    n = len(X)
    sigma = 1.0
    lam0 = precision_to_weight_decay(no_decay_precision, kind, n, n_out, sigma)
    start = precision_to_weight_decay(1.0, kind, n, n_out, sigma) if weight_decay is None else \
        check_real("weight_decay", weight_decay, low=0.0, low_open=True)
    wd = {g: start for g in structure.groups}
    start_time = time.perf_counter()
    trainer = _trainer(model, X, y, kind, structure, optimizer, lr, momentum, batch_size, seed)
    trainer.set_weight_decay(_tensor_weight_decay(structure, wd, lam0))
    history: list[dict] = []
    final = None
    for epoch in range(1, epochs + 1):
        train_loss = trainer.epoch()
        if trainer.diverged:
            return _diverged(model, trainer, history, wd, kind, eval_sets, epoch, time.perf_counter() - start_time)
        if (epoch > burnin and (epoch - burnin) % frequency == 0) or epoch == epochs:
            trainer.copy_to(model)
            final = marglik(model, (X, y), hessian=hessian, per_layer=per_layer, loss=kind, weight_decay=wd,
                            no_decay_precision=no_decay_precision, **group_options)
            wd = dict(final.weight_decay)
            sigma = final.sigma or 1.0
            trainer.set_weight_decay(_tensor_weight_decay(
                structure, wd, precision_to_weight_decay(no_decay_precision, kind, n, n_out, sigma)))
            history.append({"epoch": epoch, "log_evidence": final.log_evidence, "weight_decay": dict(wd),
                            "sigma": final.sigma, "train_loss": train_loss})
    y_batch = y.reshape(-1) if kind == "cross_entropy" else y
    dtype = next(iter(model.parameters())).dtype
    evals = {name: evaluate(model, *_as_tensors(xy, dtype, model), kind) for name, xy in (eval_sets or {}).items()}
    return OnlineResult(model=model, history=history, final=final, weight_decay=wd,
                        train_loss=evaluate(model, X, y_batch, kind)["loss"], evals=evals,
                        wall_time=time.perf_counter() - start_time, steps=trainer.steps, epochs_run=epochs)


def _diverged(model, trainer, history, wd, kind: str, eval_sets, epoch: int, seconds: float) -> OnlineResult:
    """The result of a run that diverged in ``epoch`` (:class:`OnlineResult`): NaN losses, no final evidence."""
    trainer.copy_to(model)
    nan = {"loss": math.nan, **({"accuracy": math.nan} if kind == "cross_entropy" else {})}
    return OnlineResult(model=model, history=history, final=None, weight_decay=wd, train_loss=math.nan,
                        evals={name: dict(nan) for name in (eval_sets or {})}, wall_time=seconds, steps=trainer.steps,
                        diverged=True, epochs_run=epoch)


def _tensor_weight_decay(structure, wd: Mapping[str, float], lam0: float) -> dict[str, float]:
    """Coupled λ per parameter tensor: its prior group's λ, or the broad prior's λ₀ for no-decay parameters."""
    return {name: lam0 if g is None else wd[g] for name, g in structure.group_of.items()}


def _trainer(model, X, y, kind, structure, optimizer, lr, momentum, batch_size, seed):
    """The batched engine's one-model trainer (:mod:`decaylab.batched.one_model`) when it takes the model,
    else :class:`TorchEpochs` (a plain torch loop: the same batches and update)."""
    from decaylab.batched.one_model import OneModelTrainer, one_model_reason

    y_train = y.reshape(-1) if kind == "cross_entropy" else y
    cls = OneModelTrainer if one_model_reason(model) is None else TorchEpochs
    return cls(model, X, y_train, optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch_size,
               loss=kind, seed=seed, weight_decay={name: 0.0 for name in structure.names})


class TorchEpochs:
    """Epochs of torch's ``Adam``/``SGD`` (coupled ``weight_decay`` per parameter tensor, fused kernels) on the
    model itself, for models the batched engine refuses (dropout); the interface of
    :class:`~decaylab.batched.one_model.OneModelTrainer`."""

    def __init__(self, model: nn.Module, X, y, *, optimizer, lr, momentum, batch_size, loss, seed, weight_decay):
        self.model, self.X, self.y, self.kind, self.batch_size = model, X, y, loss, batch_size
        groups = [{"params": [p], "weight_decay": float(weight_decay.get(name, 0.0)), "name": name}
                  for name, p in model.named_parameters() if p.requires_grad]
        self.opt = (torch.optim.Adam(groups, lr=lr, fused=True) if optimizer == "adam"
                    else torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True))
        self.generator = seeded_generator(seed)
        self.steps = 0
        self.limit, self.diverged = runaway_limit(loss, y), False

    def set_weight_decay(self, weight_decay: Mapping[str, float]) -> None:
        for group in self.opt.param_groups:
            group["weight_decay"] = float(weight_decay.get(group["name"], 0.0))

    def epoch(self) -> float:
        """One epoch (as :meth:`OneModelTrainer.epoch <decaylab.batched.one_model.OneModelTrainer.epoch>`, the
        same divergence rule)."""
        self.model.train()
        total = 0.0
        for idx in torch.randperm(len(self.X), generator=self.generator).split(self.batch_size):
            self.opt.zero_grad(set_to_none=True)
            batch_loss = _batch_loss(self.kind, self.model(self.X[idx]).reshape(len(idx), -1), self.y[idx])
            if bool(diverging(batch_loss.detach(), self.limit)):
                self.diverged = True
                return math.nan
            batch_loss.backward()
            self.opt.step()
            total += float(batch_loss.detach()) * len(idx)
            self.steps += 1
        self.diverged = not all_finite(self.model.parameters())
        return math.nan if self.diverged else total / len(self.X)

    def copy_to(self, model: nn.Module) -> None:
        """Nothing to copy: this trainer updates ``model`` itself."""
