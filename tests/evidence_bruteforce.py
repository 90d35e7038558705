"""Brute-force evidences for tests and benchmarks/evidence_gaps.py: explicit Jacobians, GGNs and Hessians."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call


def flat_params(model: nn.Module) -> tuple[list[str], list[torch.Size], torch.Tensor]:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    return names, shapes, torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])


def _unflatten(names, shapes, theta):
    out, i = {}, 0
    for n, s in zip(names, shapes):
        k = math.prod(s)
        out[n] = theta[i:i + k].reshape(s)
        i += k
    return out


def nll_sum(model, X, y, kind, theta=None, sigma=1.0):
    """−log p(D | θ) as a function of the flat parameters (for the Hessian)."""
    names, shapes, theta0 = flat_params(model)
    theta = theta0 if theta is None else theta
    out = functional_call(model, _unflatten(names, shapes, theta), (X,)).reshape(len(X), -1)
    if kind == "cross_entropy":
        return nn.functional.cross_entropy(out, y, reduction="sum")
    return (out - y).pow(2).sum() / (2 * sigma ** 2) + 0.5 * y.numel() * math.log(2 * math.pi * sigma ** 2)


def hessian(model, X, y, kind, sigma=1.0) -> torch.Tensor:
    _, _, theta = flat_params(model)
    return torch.autograd.functional.hessian(lambda t: nll_sum(model, X, y, kind, t, sigma), theta)


def ggn(model, X, kind, sigma=1.0) -> torch.Tensor:
    """Σ_n J_nᵀ Λ_n J_n with a Python loop over rows and the explicit Λ_n."""
    names, shapes, theta = flat_params(model)
    total = 0.0
    for x in X:
        def f(t):
            return functional_call(model, _unflatten(names, shapes, t), (x.unsqueeze(0),)).reshape(-1)
        J = torch.autograd.functional.jacobian(f, theta)          # [C, P]
        out = f(theta).detach()
        if kind == "cross_entropy":
            p = torch.softmax(out, 0)
            lam = torch.diag(p) - torch.outer(p, p)
        else:
            lam = torch.eye(len(out), dtype=out.dtype) / sigma ** 2
        total = total + J.T @ lam @ J
    return total


def block_mask(model) -> torch.Tensor:
    """1 inside each parameter tensor's own diagonal block, 0 elsewhere."""
    sizes = [p.numel() for p in model.parameters()]
    mask = torch.zeros(sum(sizes), sum(sizes), dtype=torch.float64)
    i = 0
    for s in sizes:
        mask[i:i + s, i:i + s] = 1
        i += s
    return mask


def evidence(model, X, y, kind, H, precisions: torch.Tensor, sigma=1.0) -> float:
    """log p(D|θ) − ½ δ‖θ‖² + ½ Σ log δ − ½ log det(H + diag δ) with an explicit matrix H."""
    _, _, theta = flat_params(model)
    with torch.no_grad():
        log_lik = -float(nll_sum(model, X, y, kind, sigma=sigma))
    sign, logdet = torch.linalg.slogdet(H + torch.diag(precisions))
    assert sign > 0, "H + diag(δ) must be positive definite"
    return log_lik - 0.5 * float((precisions * theta ** 2).sum()) + 0.5 * float(torch.log(precisions).sum()) \
        - 0.5 * float(logdet)


def precision_vector(model, result_groups: dict, precisions: dict, no_decay: float) -> torch.Tensor:
    """The per-entry prior precisions of a MarglikResult-like grouping."""
    parts = []
    for name, p in model.named_parameters():
        g = result_groups[name]
        parts.append(torch.full((p.numel(),), no_decay if g is None else precisions[g], dtype=torch.float64))
    return torch.cat(parts)
