"""Single-tensor update math of SGD/SGDW and Adam/AdamW, as plain in-place functions.

These are the readable reference updates: the optimizer classes' reference path
calls them once per parameter, their fast paths are tested against them, and the
batched sweep trainer calls them on stacked parameters of G model copies.

Conventions (every function):

- ``weight_decay`` is λ. Coupled decay adds λ·w to the gradient (the gradient of
  the penalty (λ/2)·Σw²); decoupled decay shrinks the weights directly,
  ``w ← w − s_t·λ·w``, with ``s_t = decay_scale`` (``None`` means ``s_t = lr``,
  which is torch.optim.AdamW's convention; the optimizers' ``decay_scaling``
  passes lr_t, lr_t/lr_0 or lr_t²/lr_0 for "lr", "schedule", "corrected").
- ``lr``, ``weight_decay``, ``decay_scale`` and ``l1_decay`` may be Python floats
  or tensors broadcastable to ``param`` (e.g. shape ``[G, 1, 1]`` for G stacked
  members of shape ``[G, out, in]``), so each member can have its own values.
- Operations follow torch 2.13's single-tensor SGD/Adam op for op, so with float
  hyperparameters a coupled update is bit-identical to torch's for-loop path.

Variants (decoupled only):

- ``cautious=True`` — cautious weight decay (Chen et al. 2025, "Cautious Weight
  Decay", arXiv:2510.12402, Algorithm 1): ``w ← w − lr·u − s_t·λ·𝕀(u⊙w ≥ 0)⊙w``,
  where ``u`` is the optimizer's update direction (``w ← w − lr·u``). Decay acts
  only on coordinates where it pulls the same way as the update.
- ``l1_decay=λ₁`` — decoupled L1 as a proximal step after the update:
  ``w ← sign(w)·max(|w| − s_t·λ₁, 0)`` (soft threshold, the proximal operator of
  s_t·λ₁·‖w‖₁), so small weights become exactly zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

Scalar = float | Tensor


def _add_scaled(target: Tensor, x: Tensor, alpha: Scalar) -> Tensor:
    """Return ``target + alpha·x`` (new tensor); ``alpha`` a float or a broadcastable tensor."""
    if isinstance(alpha, Tensor):
        return torch.addcmul(target, x, alpha)
    return target.add(x, alpha=alpha)


def _add_scaled_(target: Tensor, x: Tensor, alpha: Scalar) -> Tensor:
    """``target += alpha·x`` in place; ``alpha`` a float or a broadcastable tensor."""
    if isinstance(alpha, Tensor):
        return target.addcmul_(x, alpha)
    return target.add_(x, alpha=alpha)


def decoupled_decay_(param: Tensor, decay: Scalar, update: Tensor | None = None) -> Tensor:
    """Shrink ``param`` in place: ``w ← w − decay·w`` with ``decay = s_t·λ``.

    With ``update`` given (cautious weight decay), only coordinates where
    ``update⊙w ≥ 0`` are shrunk: ``w ← w − decay·𝕀(u⊙w ≥ 0)⊙w`` (complex tensors:
    per real and imaginary part).
    """
    if update is None:
        return param.mul_(1 - decay)
    real, update = _as_real(param), _as_real(update)
    same_sign = (update * real >= 0).to(real.dtype)
    real.mul_(1 - decay * same_sign)
    return param


def soft_threshold_(param: Tensor, threshold: Scalar) -> Tensor:
    """Proximal step of ``threshold·‖w‖₁`` in place: ``w ← sign(w)·max(|w| − threshold, 0)``.

    Computed as ``w − clamp(w, −threshold, threshold)``: the same numbers, exact
    zeros inside the threshold, and a NaN stays NaN (complex tensors: per real and
    imaginary part).
    """
    real = _as_real(param)
    if isinstance(threshold, Tensor):
        real.sub_(torch.clamp(real, -threshold, threshold))
    else:
        real.sub_(real.clamp(-threshold, threshold))
    return param


def decoupled_decay_foreach_(params: list[Tensor], decay: float, update: list[Tensor] | None = None) -> None:
    """:func:`decoupled_decay_` on a list of tensors at once (``torch._foreach_*``), ``decay`` a float.

    Cautious (``update`` given, overwritten): five foreach passes u⊙w, sign, +1, min(·, 1) → 𝕀(u⊙w ≥ 0),
    then ``w − decay·𝕀⊙w``."""
    if update is None:
        torch._foreach_mul_(params, 1 - decay)
        return
    params, update = _real_views(params), _real_views(update)
    torch._foreach_mul_(update, params)
    torch._foreach_sign_(update)
    torch._foreach_add_(update, 1.0)
    torch._foreach_clamp_max_(update, 1.0)
    torch._foreach_addcmul_(params, params, update, value=-decay)


def soft_threshold_foreach_(params: list[Tensor], threshold: float) -> None:
    """:func:`soft_threshold_` on a list of tensors at once: ``w − clamp(w, −t, t)``."""
    views = _real_views(params)
    clipped = torch._foreach_clamp_max(views, threshold)
    torch._foreach_clamp_min_(clipped, -threshold)
    torch._foreach_sub_(views, clipped)


def sgd_update_(param: Tensor, grad: Tensor, momentum_buffer: Tensor | None, *, lr: Scalar,
                weight_decay: Scalar, momentum: float = 0.0, dampening: float = 0.0,
                nesterov: bool = False, maximize: bool = False, decoupled: bool = False,
                decay_scale: Scalar | None = None, first_step: bool = False,
                cautious: bool = False, l1_decay: Scalar = 0.0) -> Tensor | None:
    """One SGD (coupled) or SGDW (``decoupled=True``) step on ``param``, in place.

    Algorithm (g the gradient, μ momentum, τ dampening, λ weight_decay)::

        g ← −g                         if maximize
        g ← g + λ·w                    if coupled
        b ← g                          on the first step (buffer None or first_step)
        b ← μ·b + (1 − τ)·g            afterwards
        u ← g + μ·b  (nesterov)   or   u ← b          (if μ ≠ 0; else u ← g)
        w ← w − s_t·λ·w                if decoupled (masked by 𝕀(u⊙w ≥ 0) if cautious)
        w ← w − lr·u
        w ← soft_threshold(w, s_t·λ₁)  if l1_decay

    Returns the momentum buffer (created on the first step when ``momentum_buffer``
    is None; ``None`` when ``momentum == 0``).
    """
    scale = lr if decay_scale is None else decay_scale
    d_p = -grad if maximize else grad
    if not decoupled and _nonzero(weight_decay):
        d_p = _add_scaled(d_p, param, weight_decay)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = d_p.detach().clone()
        elif first_step:
            buf.copy_(d_p)
        else:
            buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
        d_p = d_p.add(buf, alpha=momentum) if nesterov else buf
    if decoupled and _nonzero(weight_decay):
        decoupled_decay_(param, scale * weight_decay, d_p if cautious else None)
    _add_scaled_(param, d_p, -lr)
    if _nonzero(l1_decay):
        soft_threshold_(param, scale * l1_decay)
    return buf


def adam_update_(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                 max_exp_avg_sq: Tensor | None, step: int | Tensor, *, lr: Scalar, beta1: float,
                 beta2: float, eps: float, weight_decay: Scalar, amsgrad: bool = False,
                 maximize: bool = False, decoupled: bool = False,
                 decay_scale: Scalar | None = None, cautious: bool = False,
                 l1_decay: Scalar = 0.0, differentiable: bool = False) -> None:
    """One Adam (coupled) or AdamW (``decoupled=True``) step on ``param``, in place.

    ``step`` is the 1-based count of this update (bias corrections use it): an int,
    or a tensor broadcastable to ``param`` when stacked members are at different counts.
    Algorithm (Kingma & Ba 2015; Loshchilov & Hutter 2019, Algorithm 2)::

        g ← −g                               if maximize
        g ← g + λ·w                          if coupled
        m ← β₁·m + (1 − β₁)·g ;  v ← β₂·v + (1 − β₂)·g²
        v_max ← max(v_max, v)                if amsgrad (and v_max replaces v below)
        u ← (m / (1 − β₁^t)) / (√(v / (1 − β₂^t)) + ε)
        w ← w − s_t·λ·w                      if decoupled (masked by 𝕀(u⊙w ≥ 0) if cautious)
        w ← w − lr·u
        w ← soft_threshold(w, s_t·λ₁)        if l1_decay

    The decay uses the weights before the gradient step, exactly as torch's AdamW
    (which shrinks first); cautious decay needs sign(u) = sign(m) first, hence
    the moments are updated before the decay here. ``differentiable=True`` keeps
    the autograd graph valid across steps (the moments are read through copies,
    as torch does), for differentiating through the optimizer.
    """
    scale = lr if decay_scale is None else decay_scale
    g = -grad if maximize else grad
    if not decoupled and _nonzero(weight_decay):
        g = _add_scaled(g, param, weight_decay)
    if torch.is_complex(param):
        param, g = torch.view_as_real(param), torch.view_as_real(g)
        exp_avg, exp_avg_sq = torch.view_as_real(exp_avg), torch.view_as_real(exp_avg_sq)
        if max_exp_avg_sq is not None:
            max_exp_avg_sq = torch.view_as_real(max_exp_avg_sq)

    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    if decoupled and _nonzero(weight_decay):
        decoupled_decay_(param, scale * weight_decay, exp_avg if cautious else None)

    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    second_moment = exp_avg_sq
    if amsgrad and differentiable:
        max_exp_avg_sq.copy_(torch.maximum(max_exp_avg_sq.clone(), exp_avg_sq))
        second_moment = max_exp_avg_sq
    elif amsgrad:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second_moment = max_exp_avg_sq
    denom = (second_moment.sqrt() / bias_correction2_sqrt).add_(eps)
    step_size = lr / bias_correction1
    first_moment = exp_avg.clone() if differentiable else exp_avg
    if isinstance(step_size, Tensor):
        param.addcmul_(first_moment / denom, step_size, value=-1)
    else:
        param.addcdiv_(first_moment, denom, value=-step_size)
    if _nonzero(l1_decay):
        soft_threshold_(param, scale * l1_decay)


def _as_real(t: Tensor) -> Tensor:
    """A real view of ``t`` (``[..., 2]`` for complex tensors), ``t`` itself otherwise."""
    return torch.view_as_real(t) if torch.is_complex(t) else t


def _real_views(tensors: list[Tensor]) -> list[Tensor]:
    return [_as_real(t) for t in tensors]


def _nonzero(value: Scalar) -> bool:
    """True unless ``value`` is a float/int zero (tensors always count as nonzero)."""
    return isinstance(value, Tensor) or value != 0
