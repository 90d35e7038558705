"""When a training run counts as diverged: a non-finite loss, or a runaway one — for every trainer.

A run (a grid member, batched or alone; an online evidence run) diverges on the first batch whose mean
loss is NaN/±inf or exceeds ``RUNAWAY_FACTOR × max(1, reference)``, where ``reference`` is the loss of
a model that knows nothing: ``ln K`` for a K-class cross-entropy, ``mean(y²)`` (predicting 0) for the
MSE, or at the end of an epoch whose parameters are not all finite. A loss a million times that is not
training any more (lr = 1000 reaches 1e35 within a few steps); it is stopped before it overflows (that
batch takes no step), and reported as diverged. The losses a trainer reports at the end (train, validation,
evaluation sets) pass the same rule (:func:`reported_diverging`): a member that ends with a non-finite or
runaway loss on any of them is reported as diverged too. A step whose size does not fit the parameters'
dtype (``lr = 1e40`` on float32: torch refuses the scalar, "value cannot be converted to type float without
overflow") is divergence as well (:func:`overflowing_step`): the members taking it are reported diverged.
"""

from __future__ import annotations

import math

import torch

RUNAWAY_FACTOR = 1e6


def runaway_limit(kind: str, y: torch.Tensor) -> float:
    """The largest batch loss still counted as training, for loss ``kind`` on targets ``y``."""
    if kind == "cross_entropy":
        reference = math.log(max(2, int(y.max()) + 1)) if y.numel() else 1.0
    else:
        reference = float(y.double().square().mean()) if y.numel() else 1.0
    return RUNAWAY_FACTOR * max(1.0, reference)


def diverging(loss: torch.Tensor, limit: float) -> torch.Tensor:
    """Elementwise: is this loss non-finite or above ``limit``? (A bool tensor of ``loss``'s shape.)"""
    return ~torch.isfinite(loss) | (loss > limit)


def reported_diverging(losses, limit: float) -> bool:
    """Is any of the final reported ``losses`` (floats; give only those of rows that exist) non-finite or above
    ``limit``? The end-of-run form of :func:`diverging`."""
    return any(not math.isfinite(loss) or loss > limit for loss in losses)


def all_finite(parameters) -> bool:
    """Are all of one model's ``parameters`` finite? (A run whose parameters are not has diverged.)"""
    return all(bool(torch.isfinite(p.detach()).all()) for p in parameters)


def overflowing_step(error: BaseException) -> bool:
    """Is ``error`` torch refusing an optimizer step's scalar (lr, lr·λ, Adam's lr/(1 − β₁ᵗ)) that overflows the
    parameters' dtype? Such a step cannot be taken: the trainers count it as divergence."""
    text = str(error)
    return isinstance(error, RuntimeError) and "cannot be converted to type" in text and "without overflow" in text
