"""SGD with coupled L2 decay and SGDW with decoupled decay: one update, one flag apart.

SGD is a drop-in for ``torch.optim.SGD`` (same arguments, defaults, state and
updates). SGDW is the same optimizer with ``decoupled_weight_decay=True``
(Loshchilov & Hutter 2019, Algorithm 1).
"""

from __future__ import annotations

from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT
from torch.optim.sgd import sgd as _torch_sgd

from decaylab.optim import _native, _paths
from decaylab.optim._decay import (
    DecayGroupsMixin,
    check_decay_options,
    check_lr,
    decay_scale,
    kernel_weight_decay,
)
from decaylab.optim.functional import sgd_update_
from decaylab.optim.options import OPTIONS, check_nesterov


class SGD(DecayGroupsMixin, Optimizer):
    r"""Stochastic gradient descent (optionally with momentum) with coupled L2 decay.

    The same updates as ``torch.optim.SGD`` (penalty (λ/2)·Σw², gradient λ·w)::

        g ← ∇f(w) (−∇f if maximize) + λ·w
        b ← g on the first step, else b ← μ·b + (1 − τ)·g     (if μ ≠ 0)
        u ← g + μ·b if nesterov else b                        (if μ ≠ 0, else u ← g)
        w ← w − lr·u

    Args match torch 2.13: ``params`` (tensors, dicts of param groups or
    ``named_parameters()``), ``lr=1e-3``, ``momentum=0``, ``dampening=0``,
    ``weight_decay=0`` (λ), ``nesterov=False`` and keyword-only ``maximize``,
    ``foreach``, ``differentiable``, ``fused``. ``foreach``/``fused`` select torch's
    multi-tensor/fused kernels; ``None`` for both picks torch's default for the
    device (the for-loop reference path on CPU).

    A step with a NaN/inf gradient behaves as in torch: it is not skipped; the
    non-finite value flows into that coordinate's momentum buffer and weight,
    every other coordinate and parameter is updated normally. (Use
    ``torch.amp.GradScaler`` or check gradients to skip such steps; GradScaler
    unscales the gradients itself and skips the whole step on an inf/NaN.)
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float | Tensor = 0,
                 nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        defaults = _sgd_defaults(lr, momentum, dampening, weight_decay, nesterov, maximize,
                                 foreach, differentiable, fused, decoupled=False)
        Optimizer.__init__(self, params, defaults)
        _paths.check_fused_flags(fused, foreach, differentiable)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)

    def _init_group(self, group: dict, params: list, grads: list, momentum_buffers: list) -> bool:
        """Collect the params that have a gradient (others are skipped) and their buffers."""
        has_sparse_grad = False
        for p in group["params"]:
            if p.grad is None:
                continue
            if group["fused"]:
                _paths.check_fused_device(p)
            params.append(p)
            grads.append(p.grad)
            has_sparse_grad |= p.grad.is_sparse
            if group["momentum"] != 0:
                momentum_buffers.append(self.state[p].get("momentum_buffer"))
        return has_sparse_grad

    def _step_group(self, group: dict) -> None:
        """Gather the group's tensors, run its path, store the momentum buffers."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        momentum_buffers: list[Tensor | None] = []
        has_sparse_grad = self._init_group(group, params, grads, momentum_buffers)
        if not params:  # no gradients in this group: nothing to do
            return
        decoupled = group["decoupled_weight_decay"]
        native_needed = decoupled and (group["cautious"] or group["l1_decay"] != 0
                                       or group["momentum"] != 0 and group["weight_decay"] != 0)
        tensors = params + grads + [b for b in momentum_buffers if b is not None]
        path = _paths.select(group, tensors, native_needed=native_needed and not has_sparse_grad)
        if path == "reference" or has_sparse_grad and decoupled:
            _reference_sgd(group, params, grads, momentum_buffers)
        elif path == "native":
            scale = decay_scale(group)
            _native.sgdw_step(params, grads, momentum_buffers, lr=float(group["lr"]),
                              momentum=group["momentum"], dampening=group["dampening"],
                              decay=scale * group["weight_decay"],
                              threshold=scale * group["l1_decay"], nesterov=group["nesterov"],
                              maximize=group["maximize"], cautious=group["cautious"])
        else:
            _kernel_sgd(group, params, grads, momentum_buffers, path, has_sparse_grad)
        if group["momentum"] != 0:
            for p, buf in zip(params, momentum_buffers):
                self.state[p]["momentum_buffer"] = buf


class SGDW(SGD):
    r"""SGD with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 1).

    The decay acts on the weights, outside momentum::

        b, u as in SGD, from the gradient alone (no λ·w in g)
        w ← w − s_t·λ·w
        w ← w − lr·u

    ``decay_scaling`` picks s_t: ``"lr"`` (default, s_t = lr_t, so λ means what it
    means in torch.optim.AdamW), ``"schedule"`` (s_t = lr_t/lr_0, the paper's
    convention: λ is a fraction of the weights removed per step at peak lr, so
    typical values are ~lr·λ_lr, e.g. 1e-4, not 1e-2), or ``"corrected"``
    (s_t = lr_t²/lr_0, SGDC of Defazio 2025). lr_0 is the group's initial lr,
    stored as ``group["decay_reference_lr"]`` and saved in the state dict.

    Without momentum, SGDW with ``decay_scaling="lr"`` is the same update as SGD's
    coupled decay (the tutorial's w ← w − η∇L − ηλw); with momentum they differ.

    Variants (Chen et al. 2025; proximal L1) — see :mod:`decaylab.optim.functional`:
    ``cautious=True`` decays only where 𝕀(u⊙w ≥ 0); ``l1_decay=λ₁`` applies
    ``w ← sign(w)·max(|w| − s_t·λ₁, 0)`` after the step (exact zeros).
    ``weight_decay`` defaults to 0 as in SGD (SGDW then equals SGD).
    """

    _forced_decoupled = True

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float | Tensor = 0,
                 nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None, decay_scaling: str = "lr", cautious: bool = False,
                 l1_decay: float = 0.0) -> None:
        defaults = _sgd_defaults(lr, momentum, dampening, weight_decay, nesterov, maximize,
                                 foreach, differentiable, fused, decoupled=True,
                                 decay_scaling=decay_scaling, cautious=cautious,
                                 l1_decay=l1_decay)
        Optimizer.__init__(self, params, defaults)
        _paths.check_fused_flags(fused, foreach, differentiable)


def _sgd_defaults(lr, momentum, dampening, weight_decay, nesterov, maximize, foreach,
                  differentiable, fused, *, decoupled, decay_scaling="lr", cautious=False,
                  l1_decay=0.0) -> dict:
    """Check SGD/SGDW arguments with their declarations (:mod:`decaylab.optim.options`; each error names the
    argument) and return the defaults."""
    check_lr(lr)
    for name, value in (("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)):
        OPTIONS[name].check(value)
    check_decay_options(decay_scaling, cautious, l1_decay)
    check_nesterov(nesterov, momentum, dampening)
    return {"lr": lr, "momentum": momentum, "dampening": dampening,
            "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
            "foreach": foreach, "differentiable": differentiable, "fused": fused,
            "decoupled_weight_decay": decoupled, "decay_scaling": decay_scaling,
            "cautious": cautious, "l1_decay": l1_decay}


def _reference_sgd(group: dict, params: list, grads: list, momentum_buffers: list) -> None:
    """The readable path: :func:`sgd_update_` on each parameter."""
    lr = group["lr"]
    if isinstance(lr, Tensor) and not lr.requires_grad:
        lr = lr.item()
    momentum = group["momentum"]
    for i, (param, grad) in enumerate(zip(params, grads)):
        buf = sgd_update_(
            param, grad, momentum_buffers[i] if momentum != 0 else None,
            lr=lr, weight_decay=group["weight_decay"], momentum=momentum,
            dampening=group["dampening"], nesterov=group["nesterov"],
            maximize=group["maximize"], decoupled=group["decoupled_weight_decay"],
            decay_scale=decay_scale(group), cautious=group["cautious"],
            l1_decay=group["l1_decay"])
        if momentum != 0:
            momentum_buffers[i] = buf


def _kernel_sgd(group: dict, params: list, grads: list, momentum_buffers: list, path: str,
                has_sparse_grad: bool) -> None:
    """The fast path: torch's foreach/fused SGD kernel with λ reparametrized per step.

    - coupled: the kernel as is;
    - decoupled without momentum: w − lr·(g + λ'w) with λ' = s_t·λ/lr_t, the same update;
    - decoupled with momentum: ``_foreach_mul_(w, 1 − s_t·λ)`` then the kernel with λ = 0;
    - cautious: the masked decay from the direction u the kernel will apply, then λ = 0.
    """
    decoupled = group["decoupled_weight_decay"]
    kernel_decay = group["weight_decay"]
    if decoupled and group["cautious"]:
        kernel_decay = 0.0
        _paths.cautious_decay_before_kernel(
            group, params, _paths.next_sgd_direction(group, grads, momentum_buffers))
    elif decoupled and group["momentum"] == 0:
        kernel_decay = kernel_weight_decay(group)
    elif decoupled:
        kernel_decay = 0.0
        _paths.decay_before_kernel(group, params)
    _torch_sgd(params, grads, momentum_buffers, has_sparse_grad=has_sparse_grad,
               foreach=path == "foreach", fused=path == "fused",
               weight_decay=kernel_decay, momentum=group["momentum"], lr=group["lr"],
               dampening=group["dampening"], nesterov=group["nesterov"],
               maximize=group["maximize"])
    _paths.l1_after_kernel(group, params)
