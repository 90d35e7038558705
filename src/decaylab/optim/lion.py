"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2) with decaylab's decay.

Algorithm 2 of the paper, with decaylab's decay scale s_t (``decay_scaling``)::

    c ← β₁·m + (1 − β₁)·g                  (g ← −g if maximize)
    w ← w − s_t·λ·w                          (decoupled decay, from the weights before the step)
    w ← w − lr·sign(c)
    m ← β₂·m + (1 − β₂)·g

The paper writes the middle lines as one, ``w ← w − η(sign(c) + λw)``: the decay and the
update both use the weights of the previous step, so they are the same update with
s_t = η = lr_t (decay_scaling ``"lr"``, the default). ``"schedule"`` (s_t = lr_t/lr_0) and
``"corrected"`` (s_t = lr_t²/lr_0) are as for AdamW (:mod:`decaylab.optim._decay`).

Variants: ``cautious=True`` decays only where ``sign(c)⊙w ≥ 0`` (Chen et al. 2025, cautious
weight decay); ``l1_decay=λ₁`` applies the proximal step ``w ← sign(w)·max(|w| − s_t·λ₁, 0)``
after the update.

Every update is ±lr per coordinate, so Lion wants a learning rate 3–10× smaller than AdamW's
and a λ 3–10× larger (the paper's advice, keeping lr·λ): the defaults are lr = 1e-4,
betas = (0.9, 0.99), λ = 0. With decay_scaling ``"lr"`` (and lr_t·λ ≤ 1) the weights stay inside
‖w‖∞ ≤ 1/λ once there: |w| ≤ 1/λ gives |w'| ≤ (1 − lr_t·λ)/λ + lr_t = 1/λ.

Conventions of the ``lion-pytorch`` package (``Lion(lr, betas, weight_decay,
decoupled_weight_decay)``): its default decays by ``lr_t·λ`` (decaylab ``"lr"`` with the same λ);
its ``decoupled_weight_decay=True`` decays by ``lr_t·λ/lr_0`` (decaylab ``"schedule"`` with the
same λ). Its state, ``exp_avg`` per param, is this optimizer's: state dicts load either way.
sign(0) = 0 (and sign(NaN) = 0, as torch's ``sign``): a coordinate whose c is 0 is only decayed.
Complex parameters are optimized as pairs of reals (torch's convention for its optimizers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from decaylab.optim import _native, _paths
from decaylab.optim._decay import DecayGroupsMixin, check_as_torch, check_decay_options, check_lr, decay_scale
from decaylab.optim.functional import (
    Scalar,
    _add_scaled_,
    _as_real,
    _nonzero,
    _real_views,
    decoupled_decay_,
    decoupled_decay_foreach_,
    soft_threshold_,
)

__all__ = ["Lion", "lion_update_"]


def lion_update_(param: Tensor, grad: Tensor, exp_avg: Tensor, *, lr: Scalar, beta1: float, beta2: float,
                 weight_decay: Scalar, maximize: bool = False, decay_scale: Scalar | None = None,
                 cautious: bool = False, l1_decay: Scalar = 0.0) -> None:
    """One Lion step on ``param`` in place (the algorithm of the module docstring).

    ``decay_scale`` is s_t (``None``: s_t = lr). The ops are those of ``lion-pytorch``'s
    update (``m·β₁`` then ``add(g, alpha=1 − β₁)``, ``w·(1 − s_t·λ)``, ``add(sign, alpha=−lr)``),
    so with the same hyperparameters the numbers are the same.
    """
    scale = lr if decay_scale is None else decay_scale
    g = -grad if maximize else grad
    param, g, exp_avg = _as_real(param), _as_real(g), _as_real(exp_avg)
    update = exp_avg.mul(beta1).add_(g, alpha=1 - beta1).sign_()
    if _nonzero(weight_decay):
        decoupled_decay_(param, scale * weight_decay, update if cautious else None)
    _add_scaled_(param, update, -lr)
    exp_avg.mul_(beta2).add_(g, alpha=1 - beta2)
    if _nonzero(l1_decay):
        soft_threshold_(param, scale * l1_decay)


class Lion(DecayGroupsMixin, Optimizer):
    r"""Lion, the sign-of-interpolated-momentum optimizer, with decoupled decay in every decaylab scaling.

    ``params``, ``lr=1e-4``, ``betas=(0.9, 0.99)``, ``weight_decay=0`` (λ) and keyword-only
    ``maximize``, ``foreach``, ``differentiable``, ``fused``, ``decay_scaling`` (``"lr"``,
    ``"schedule"``, ``"corrected"``), ``cautious``, ``l1_decay``; the algorithm and each option
    are in the module docstring. State per param: ``exp_avg`` (m). Errors for bad arguments
    start with torch AdamW's messages for the same input.

    Paths: ``foreach=True`` runs the step with torch's multi-tensor ops (the same numbers as the
    for-loop path on the CPU); ``fused=True`` runs decaylab's single-pass CPU kernel (one read of
    w, g, m and one write of w, m per element), falling back to the foreach ops for tensors the
    kernel does not take (not contiguous float32/float64 on the CPU, or no C compiler); neither
    flag: torch's default for the device (the for-loop on the CPU, foreach on CUDA).
    """

    _forced_decoupled = True

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, *, maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None, decay_scaling: str = "lr",
                 cautious: bool = False, l1_decay: float = 0.0) -> None:
        check_lr(lr)
        if not isinstance(betas, Sequence) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            check_as_torch(f"Invalid beta parameter at index {i}: {beta}", f"betas[{i}]", beta,
                           low=0.0, high=1.0, high_open=True)
        check_as_torch(f"Invalid weight_decay value: {weight_decay}", "weight_decay", weight_decay, low=0.0)
        check_decay_options(decay_scaling, cautious, l1_decay)
        _paths.check_fused_flags(fused, foreach, differentiable)
        defaults = {"lr": lr, "betas": tuple(float(b) for b in betas), "weight_decay": weight_decay,
                    "maximize": maximize, "foreach": foreach, "differentiable": differentiable, "fused": fused,
                    "decoupled_weight_decay": True, "decay_scaling": decay_scaling, "cautious": cautious,
                    "l1_decay": l1_decay}
        Optimizer.__init__(self, params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a state saved by lion-pytorch has none of these
            for key in ("maximize", "foreach", "differentiable", "fused"):
                group.setdefault(key, self.defaults[key])

    def _step_group(self, group: dict) -> None:
        """Gather the group's params that have a gradient (creating ``exp_avg`` lazily) and run its path."""
        params, grads, exp_avgs = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Lion does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
        if not params:
            return
        path = ("reference" if group["differentiable"]
                else _paths.select(group, params + grads + exp_avgs, native_needed=True))
        if path == "native":
            _native_lion(group, params, grads, exp_avgs)
        elif path == "reference":
            _reference_lion(group, params, grads, exp_avgs)
        else:  # foreach, or fused on tensors the kernel does not take
            _foreach_lion(group, params, grads, exp_avgs)


def _lr(group: dict) -> Scalar:
    """The group's lr as the paths take it: a float, or a tensor that requires grad (differentiable)."""
    lr = group["lr"]
    return lr.item() if isinstance(lr, Tensor) and not lr.requires_grad else lr


def _reference_lion(group: dict, params: list, grads: list, exp_avgs: list) -> None:
    """The readable path: :func:`lion_update_` on each parameter."""
    beta1, beta2 = group["betas"]
    for p, g, m in zip(params, grads, exp_avgs):
        lion_update_(p, g, m, lr=_lr(group), beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                     maximize=group["maximize"], decay_scale=decay_scale(group), cautious=group["cautious"],
                     l1_decay=group["l1_decay"])


def _foreach_lion(group: dict, params: list, grads: list, exp_avgs: list) -> None:
    """The step with torch's multi-tensor ops, the reference path's ops on all tensors at once."""
    beta1, beta2 = group["betas"]
    lr = float(group["lr"])
    params, exp_avgs = _real_views(params), _real_views(exp_avgs)
    grads = _real_views(torch._foreach_neg(grads) if group["maximize"] else grads)
    updates = torch._foreach_mul(exp_avgs, beta1)
    torch._foreach_add_(updates, grads, alpha=1 - beta1)
    torch._foreach_sign_(updates)
    decay = decay_scale(group) * group["weight_decay"]
    if decay != 0:
        decoupled_decay_foreach_(params, decay, [u.clone() for u in updates] if group["cautious"] else None)
    torch._foreach_add_(params, updates, alpha=-lr)
    torch._foreach_mul_(exp_avgs, beta2)
    torch._foreach_add_(exp_avgs, grads, alpha=1 - beta2)
    _paths.l1_after_kernel(group, params)


def _native_lion(group: dict, params: list, grads: list, exp_avgs: list) -> None:
    """decaylab's single-pass kernel. The decay factor is rounded as the reference path rounds it:
    1 − s_t·λ in double precision, or (cautious, a masked factor) in the tensors' dtype."""
    beta1, beta2 = group["betas"]
    scale = decay_scale(group)
    decay = scale * group["weight_decay"]
    shrink = 1 - decay
    if group["cautious"] and decay != 0:
        shrink = (1 - torch.tensor(decay, dtype=params[0].dtype)).item()
    _native.lion_step(params, grads, exp_avgs, lr=float(group["lr"]), beta1=beta1, beta2=beta2, shrink=shrink,
                      threshold=scale * group["l1_decay"], maximize=group["maximize"], cautious=group["cautious"])
