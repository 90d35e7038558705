"""Which implementation runs a step (reference / foreach / fused), and the decay work around torch's kernels.

The fast paths hand the gradient step to torch's own foreach or fused kernels and
do only what the kernel cannot express around it, with foreach ops: a decoupled
decay before the kernel (``w ← (1 − s_t·λ)·w``), the cautious decay's masked
version of it, and the L1 proximal step after it. Where that costs extra passes
and ``fused=True`` was asked for, the ``native`` path runs decaylab's own
single-pass CPU kernel instead (:mod:`._native`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.optimizer import (
    _default_to_fused_or_foreach,
    _device_dtype_check_for_fused,
)

from decaylab.optim import _native
from decaylab.optim._decay import decay_scale
from decaylab.optim.functional import decoupled_decay_foreach_, soft_threshold_foreach_

PATHS = ("reference", "single", "foreach", "fused", "native")


def check_fused_flags(fused: bool | None, foreach: bool | None, differentiable: bool) -> None:
    """Reject the flag combinations torch rejects, with torch's exception type."""
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


def check_fused_device(param: Tensor) -> None:
    """``fused=True`` needs floating-point params on a device with fused kernels (as torch)."""
    _device_dtype_check_for_fused(param)


def select(group: dict, tensors: list[Tensor], *, native_needed: bool) -> str:
    """The path for this group's step: ``reference``, ``foreach``, ``fused``, ``native`` or ``single``.

    The user's ``fused``/``foreach`` choice. Both None: torch's default for the device —
    where that is torch's for-loop (the CPU), the update runs on torch's own single-tensor
    kernel (``single``, λ reparametrized as on the other kernel paths: the same numbers and
    speed as torch's default), or on decaylab's reference loop when no torch kernel
    expresses it (``native_needed``). ``fused`` becomes ``native`` — decaylab's single-pass
    kernel — when the update needs one and the tensors suit it.
    """
    fused, foreach = group["fused"], group["foreach"]
    if fused is None and foreach is None:
        fused, foreach = _default_to_fused_or_foreach(tensors, group["differentiable"],
                                                      use_fused=False)
        if not fused and not foreach and not native_needed:
            return "single"
    if fused and native_needed and _native.eligible(tensors):
        return "native"
    if fused:
        return "fused"
    return "foreach" if foreach else "reference"


def decay_before_kernel(group: dict, params: list[Tensor]) -> None:
    """Decoupled decay ``w ← (1 − s_t·λ)·w`` on all params at once, before a λ = 0 kernel step."""
    decay = decay_scale(group) * group["weight_decay"]
    if decay != 0 and params:
        decoupled_decay_foreach_(params, decay)


def cautious_decay_before_kernel(group: dict, params: list[Tensor], update: list[Tensor]) -> None:
    """Cautious decay ``w ← w − s_t·λ·𝕀(u⊙w ≥ 0)⊙w`` on all params, before a λ = 0 kernel step.

    ``update`` holds the direction u the kernel is about to apply (computed by the
    caller from the same state) and is overwritten."""
    decay = decay_scale(group) * group["weight_decay"]
    if decay != 0 and params:
        decoupled_decay_foreach_(params, decay, update)


def next_adam_moment(group: dict, grads: list[Tensor], exp_avgs: list[Tensor]) -> list[Tensor]:
    """m_t = β₁·m + (1 − β₁)·g (new tensors): the sign of Adam's coming update."""
    g = torch._foreach_neg(grads) if group["maximize"] else grads
    return list(torch._foreach_lerp(exp_avgs, g, 1 - group["betas"][0]))


def next_sgd_direction(group: dict, grads: list[Tensor],
                       momentum_buffers: list[Tensor | None]) -> list[Tensor]:
    """u of SGD's coming update (new tensors): g, or b_t / g + μ·b_t with momentum."""
    g = list(torch._foreach_neg(grads)) if group["maximize"] else [t.clone() for t in grads]
    momentum = group["momentum"]
    if momentum == 0:
        return g
    keep = 1 - group["dampening"]
    nxt = [d.clone() if b is None else torch.mul(b, momentum).add_(d, alpha=keep)
           for b, d in zip(momentum_buffers, g)]
    if group["nesterov"]:
        torch._foreach_add_(g, nxt, alpha=momentum)
        return g
    return nxt


def l1_after_kernel(group: dict, params: list[Tensor]) -> None:
    """Proximal L1 step ``w ← sign(w)·max(|w| − s_t·λ₁, 0)`` after the kernel step."""
    threshold = decay_scale(group) * group["l1_decay"]
    if threshold != 0 and params:
        soft_threshold_foreach_(params, threshold)
