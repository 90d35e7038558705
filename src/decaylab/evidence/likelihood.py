"""The two likelihoods the evidence knows: categorical (cross-entropy) and Gaussian (mean-squared error).

For a model with outputs ``f = f(x; θ)`` (``C`` logits, or ``D`` regression outputs):

- ``cross_entropy``: ``−log p(y | x, θ) = logsumexp(f) − f_y``. Its Hessian with respect to the
  logits is ``Λ = diag(p) − p pᵀ`` (``p = softmax(f)``), factored as ``Λ = L Lᵀ`` with
  ``L = diag(√p) − p √pᵀ`` (check: ``(D − p sᵀ)(D − s pᵀ) = diag(p) − 2ppᵀ + p(sᵀs)pᵀ`` with
  ``D = diag(s)``, ``s = √p``, ``sᵀs = 1``).
- ``mse``: ``y ~ N(f, σ² I_D)``, ``−log p(y | x, θ) = ‖y − f‖²/(2σ²) + (D/2)·log(2πσ²)``; its
  Hessian with respect to ``f`` is ``I/σ²``: the factor returned is ``L = I`` ("unit noise"), and
  the caller scales the curvature by ``1/σ²``.

A mean training loss over ``N`` rows (``reduction="mean"``) relates to the log-likelihood as
``N·CE_mean = −log p(D | θ)`` and ``N·D·MSE_mean/(2σ²) = −log p(D | θ) − (N·D/2)·log(2πσ²)``
(torch's ``MSELoss`` averages over all ``N·D`` elements).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from decaylab._checks import InputError, InputTypeError

LOSSES = ("cross_entropy", "mse")


def resolve_loss(loss, y: torch.Tensor) -> str:
    """``"cross_entropy"`` or ``"mse"`` from a name, a torch loss module, or ``None`` (integer targets →
    cross-entropy, float targets → mse); anything else is an :class:`InputError`."""
    if loss is None:
        return "mse" if torch.is_floating_point(y) else "cross_entropy"
    if isinstance(loss, nn.CrossEntropyLoss):
        return "cross_entropy"
    if isinstance(loss, nn.MSELoss):
        return "mse"
    if isinstance(loss, str) and loss.lower().replace("-", "_") in ("cross_entropy", "crossentropy", "ce"):
        return "cross_entropy"
    if isinstance(loss, str) and loss.lower() in ("mse", "mse_loss", "mseloss"):
        return "mse"
    shown = type(loss).__name__ if isinstance(loss, nn.Module) else repr(loss)
    raise InputError(f"loss must be 'cross_entropy' or 'mse' (or an nn.CrossEntropyLoss / nn.MSELoss): the "
                     f"Laplace evidence needs a likelihood, and only these two are one; got {shown}")


def check_targets(kind: str, y: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """Targets as the likelihood needs them: class indices (≥ 2 classes present, each < ``n_outputs``) or
    float targets of shape ``[N, D]`` matching the model's ``D`` outputs."""
    if kind == "cross_entropy":
        if torch.is_floating_point(y) or y.dim() != 1:
            raise InputTypeError(f"y must be a 1-D tensor of integer class labels for loss='cross_entropy', got "
                                 f"dtype {y.dtype} and shape {tuple(y.shape)}")
        y = y.long()
        classes = torch.unique(y)
        if len(classes) < 2:
            raise InputError(f"y must hold at least 2 classes for loss='cross_entropy', got only class "
                             f"{int(classes[0]) if len(classes) else 'none'}: with one class every λ explains the "
                             f"data perfectly and the evidence has no maximum")
        if int(y.min()) < 0 or int(y.max()) >= n_outputs:
            raise InputError(f"y must hold class labels in [0, {n_outputs - 1}] (the model has {n_outputs} "
                             f"outputs), got labels from {int(y.min())} to {int(y.max())}")
        return y
    y = y.to(torch.get_default_dtype()) if not torch.is_floating_point(y) else y
    y = y.reshape(len(y), -1)
    if y.shape[1] != n_outputs:
        raise InputError(f"y must have {n_outputs} target column(s) to match the model's outputs for loss='mse', "
                         f"got shape {tuple(y.shape)}")
    return y


def neg_log_lik_sum(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Σ_n CE_n`` for cross-entropy; the sum of squared errors ``Σ_n ‖y_n − f_n‖²`` for mse (no σ)."""
    if kind == "cross_entropy":
        return nn.functional.cross_entropy(out, y, reduction="sum")
    return (out - y).pow(2).sum()


def log_likelihood(kind: str, data_term: torch.Tensor, n_values: int, sigma: torch.Tensor | None) -> torch.Tensor:
    """``log p(D | θ)`` from :func:`neg_log_lik_sum`'s value; ``n_values = N·D`` for mse."""
    if kind == "cross_entropy":
        return -data_term
    return -data_term / (2 * sigma ** 2) - 0.5 * n_values * torch.log(2 * math.pi * sigma ** 2)


def output_hessian_factor(kind: str, out: torch.Tensor) -> torch.Tensor:
    """``L`` with ``Λ_n = L_n L_nᵀ`` per row: shape ``[n, C, C]`` (``I`` for mse, unit noise)."""
    n, c = out.shape
    if kind == "mse":
        return torch.eye(c, dtype=out.dtype).expand(n, c, c)
    p = torch.softmax(out, dim=1)
    s = p.sqrt()
    return torch.diag_embed(s) - p.unsqueeze(2) * s.unsqueeze(1)
