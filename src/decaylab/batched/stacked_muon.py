"""Muon's step on G stacked members: the Newton–Schulz iteration as batched matmuls over the members.

A stacked Muon tensor is ``[G, A, B]``, member g's matrix ``[A, B]`` (a conv kernel ``[G, out, in, k…]``,
with ``flatten``, is orthogonalized as ``[G, out, in·k…]``). :func:`stacked_muon_update_` is
:func:`decaylab.optim.muon.muon_update_` (torch's Muon, op for op) on every member at once, with each
member's own lr_t, λ and s_t (tensors ``[G, 1, …]``, or numbers the members share)::

    B ← μ·B + (1 − μ)·g ;  U ← (1 − μ)·g + μ·B if nesterov, else B        (elementwise)
    O ← NS(U)                                                              (:func:`stacked_zeropower`)
    W ← W − s_t·λ·W  (only where O⊙W ≥ 0 if cautious) ;  W ← W − lr_t·ρ(A, B)·O ;  L1 soft threshold

NS is torch's ``_zeropower_via_newtonschulz`` applied to each member, with the same coefficients (a, b, c),
transposition and normalization, as one chain of batched matmuls: X = U in ``ns_dtype``, each member
transposed when A > B, X_g ← X_g / max(‖X_g‖_F, ε) (one norm per member), then ``ns_steps`` times
``M = X·Xᵀ`` (one ``bmm``) and ``X ← a·X + (b·M + c·M·M)·X`` (two ``baddbmm``).

How equal to a member's run alone (:class:`decaylab.optim.MuonAdamW`, whose NS is torch's 2-D one): with
``ns_dtype`` ``None`` (the parameters' dtype, the sweeps' default), float32 or float64 the batched and 2-D
matmuls agree to that dtype's rounding, and so do the runs. In bfloat16 (torch's Muon) every product is
rounded to 8 significant bits after summing in float32, and ``bmm`` and ``mm`` may sum in a different order:
on the CPU (torch 2.13) one to two NS calls in a hundred on random matrices have an element one bfloat16
step apart. From that step on the two runs' momenta round differently in bfloat16 at every step, and they
separate (measured on a float64 MLP of two hidden layers, 3 members, 250 steps: weights up to 1.8 apart
with bfloat16 NS, 1e-13 with float64 NS). Each is a run of torch's Muon; they are not the same run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from decaylab.optim.functional import Scalar, _add_scaled_, _nonzero, decoupled_decay_, soft_threshold_
from decaylab.optim.muon import adjusted_lr

__all__ = ["stacked_zeropower", "stacked_muon_update_"]


def stacked_zeropower(update: Tensor, ns_coefficients: Sequence[float], ns_steps: int, eps: float,
                      dtype: torch.dtype | None = torch.bfloat16) -> Tensor:
    """O_g ≈ U_g·V_gᵀ for each member's matrix of ``update`` ``[G, A, B]`` (a new tensor in ``dtype``;
    ``None``: the update's), by ``ns_steps`` quintic Newton–Schulz steps as batched matmuls (module docstring)."""
    a, b, c = ns_coefficients
    x = update if dtype is None else update.to(dtype)
    if x is update:  # already in dtype: work on a copy, never on the caller's tensor
        x = update.clone()
    tall = update.size(-2) > update.size(-1)
    if tall:
        x = x.mT
    x.div_(torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=eps))
    for _ in range(ns_steps):
        gram = torch.bmm(x, x.mT)
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def stacked_muon_update_(param: Tensor, grad: Tensor, momentum_buffer: Tensor, *, lr: Scalar,
                         weight_decay: Scalar, momentum: float, nesterov: bool, ns_coefficients: Sequence[float],
                         ns_steps: int, eps: float, adjust_lr_fn: str | None, ns_dtype: torch.dtype | None,
                         decay_scale: Scalar, cautious: bool = False, l1_decay: Scalar = 0.0) -> None:
    """One Muon step of every member of the stacked ``param`` ``[G, A, B]`` (``[G, out, in, k…]``: flattened)
    in place; ``lr``, ``weight_decay``, ``decay_scale`` (s_t) and ``l1_decay`` are numbers or tensors
    ``[G, 1, …]``; ``momentum_buffer`` is updated in place (module docstring)."""
    momentum_buffer.lerp_(grad, 1 - momentum)
    update = grad.lerp(momentum_buffer, momentum) if nesterov else momentum_buffer
    if update.dim() > 3:
        update = update.reshape(*update.shape[:2], -1)
    ortho = stacked_zeropower(update, ns_coefficients, ns_steps, eps, ns_dtype)
    step = adjusted_lr(lr, adjust_lr_fn, ortho.shape[-2:])
    ortho = ortho.reshape(param.shape)
    if _nonzero(weight_decay):
        decoupled_decay_(param, decay_scale * weight_decay, ortho if cautious else None)
    _add_scaled_(param, ortho, -step)
    if _nonzero(l1_decay):
        soft_threshold_(param, decay_scale * l1_decay)
