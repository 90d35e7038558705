"""Adam with coupled L2 decay and AdamW with decoupled decay: one update, one flag apart.

Adam is a drop-in for ``torch.optim.Adam`` and AdamW for ``torch.optim.AdamW``
(same arguments, defaults, state and updates); AdamW adds the decay scalings
and the decay variants of :mod:`decaylab.optim._decay`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.adam import adam as _torch_adam
from torch.optim.optimizer import Optimizer, ParamsT, _get_scalar_dtype, _to_scalar

from decaylab._checks import InputError
from decaylab.optim import _native, _paths
from decaylab.optim._decay import (
    DecayGroupsMixin,
    check_decay_options,
    check_lr,
    decay_scale,
    kernel_weight_decay,
)
from decaylab.optim.functional import adam_update_
from decaylab.optim.options import OPTIONS


class Adam(DecayGroupsMixin, Optimizer):
    r"""Adam with coupled L2 decay: the same updates as ``torch.optim.Adam``.

    Algorithm (Kingma & Ba 2015; λ enters the gradient, penalty (λ/2)·Σw²)::

        g ← ∇f(w) (−∇f if maximize) + λ·w
        m ← β₁·m + (1 − β₁)·g ;  v ← β₂·v + (1 − β₂)·g²   (v_max ← max(v_max, v) if amsgrad)
        w ← w − lr·(m/(1 − β₁^t)) / (√(v/(1 − β₂^t)) + ε)

    Because λ·w passes through the adaptive denominator, coupled decay in Adam
    is weak on weights with large gradients: usually AdamW is what is meant.

    Args match torch 2.13: ``params`` (tensors, param-group dicts or
    ``named_parameters()``), ``lr=1e-3``, ``betas=(0.9, 0.999)``, ``eps=1e-8``,
    ``weight_decay=0``, ``amsgrad=False`` and keyword-only ``foreach``, ``maximize``,
    ``capturable``, ``differentiable``, ``fused``, ``decoupled_weight_decay``
    (True makes it AdamW with ``decay_scaling="lr"``). ``foreach``/``fused`` select
    torch's multi-tensor/fused kernels; ``None`` for both picks torch's default
    for the device (the for-loop reference path on CPU).

    A step with a NaN/inf gradient behaves as in torch: it is not skipped; the
    step count of every parameter advances, the non-finite value flows into that
    coordinate's moments and weight, every other coordinate is updated normally.
    ``torch.amp.GradScaler`` unscales the gradients itself and skips a step with
    an inf/NaN as a whole (all step counts and moments stay as they were).
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3,
                 betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False) -> None:
        defaults = _adam_defaults(lr, betas, eps, weight_decay, amsgrad, foreach, maximize,
                                  capturable, differentiable, fused,
                                  decoupled=decoupled_weight_decay)
        Optimizer.__init__(self, params, defaults)
        _paths.check_fused_flags(fused, foreach, differentiable)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in (("amsgrad", False), ("maximize", False), ("foreach", None),
                               ("capturable", False), ("differentiable", False),
                               ("fused", None)):
                group.setdefault(key, value)
            on_device = group["capturable"] or group["fused"]
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if p_state and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = torch.tensor(
                        float(p_state["step"]), dtype=_get_scalar_dtype(is_fused=group["fused"]),
                        device=p.device if on_device else None)

    def _init_group(self, group: dict, params: list, grads: list, exp_avgs: list,
                    exp_avg_sqs: list, max_exp_avg_sqs: list, state_steps: list) -> bool:
        """Collect the params that have a gradient, creating their state lazily; return has_complex."""
        has_complex = False
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Adam does not support sparse gradients, "
                                   "please consider SparseAdam instead")
            has_complex |= torch.is_complex(p)
            params.append(p)
            grads.append(p.grad)
            state = self.state[p]
            if len(state) == 0:
                if group["fused"]:
                    _paths.check_fused_device(p)
                # step lives on the param's device only for capturable/fused (as in torch)
                on_device = group["capturable"] or group["fused"]
                state["step"] = torch.zeros(
                    (), dtype=_get_scalar_dtype(is_fused=group["fused"]),
                    device=p.device if on_device else "cpu")
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            state_steps.append(state["step"])
        return has_complex

    def _step_group(self, group: dict) -> None:
        """Gather the group's tensors (creating state lazily) and run its path."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        exp_avgs: list[Tensor] = []
        exp_avg_sqs: list[Tensor] = []
        max_exp_avg_sqs: list[Tensor] = []
        state_steps: list[Tensor] = []
        has_complex = self._init_group(group, params, grads, exp_avgs, exp_avg_sqs,
                                       max_exp_avg_sqs, state_steps)
        if not params:  # no gradients in this group: nothing to do
            return
        native_needed = group["decoupled_weight_decay"] and (group["cautious"]
                                                             or group["l1_decay"] != 0)
        path = _paths.select(group, params + grads + exp_avgs + exp_avg_sqs + max_exp_avg_sqs,
                             native_needed=native_needed)
        if path == "native":
            beta1, beta2 = group["betas"]
            scale = decay_scale(group)
            _native.adamw_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                               state_steps, lr=float(group["lr"]), beta1=beta1, beta2=beta2,
                               eps=group["eps"], decay=scale * group["weight_decay"],
                               threshold=scale * group["l1_decay"], maximize=group["maximize"],
                               cautious=group["cautious"])
        elif path == "reference":
            _reference_adam(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                            state_steps)
        else:
            _kernel_adam(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                         state_steps, path, has_complex)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2).

    With the defaults, the same updates as ``torch.optim.AdamW`` (weight_decay=1e-2)::

        m, v from the gradient alone (no λ·w in g), as in Adam
        w ← w − s_t·λ·w
        w ← w − lr·(m/(1 − β₁^t)) / (√(v/(1 − β₂^t)) + ε)

    ``decay_scaling`` picks s_t:

    - ``"lr"`` (default): s_t = lr_t, torch/optax/Keras. The weights are an EMA of
      the updates with timescale τ_iter = 1/(lr·λ) steps.
    - ``"schedule"``: s_t = lr_t/lr_0 (the AdamW paper's and Composer's
      DecoupledAdamW convention): λ is the fraction of each weight removed per
      step at peak lr and does not move when the peak lr does. The same decay
      as ``"lr"`` needs λ_schedule = lr_0·λ_lr — typically ~1e-5..1e-4, not 1e-2.
    - ``"corrected"``: s_t = lr_t²/lr_0, AdamC (Defazio 2025, "Why Gradients
      Rapidly Increase Near the End of Training", arXiv:2506.02285), for weights
      followed by a normalization layer; put those in their own param group.

    lr_0 is the group's lr when the group was added (``group["decay_reference_lr"]``;
    set it in a param-group dict to use another peak lr); it survives state_dict
    round trips and loading a state dict saved by ``torch.optim.AdamW``.

    Variants (see :mod:`decaylab.optim.functional` for the formulas):

    - ``cautious=True``: cautious weight decay (Chen et al. 2025,
      arXiv:2510.12402): ``w ← w − s_t·λ·𝕀(u⊙w ≥ 0)⊙w`` with u the Adam update.
    - ``l1_decay=λ₁``: decoupled L1, the proximal step
      ``w ← sign(w)·max(|w| − s_t·λ₁, 0)`` after each update (exact zeros).

    ``AdamW.from_timescale(params, lr, tau_epochs, steps_per_epoch)`` sets λ from
    an EMA timescale in epochs (Wang & Aitchison 2024).
    """

    _forced_decoupled = True

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3,
                 betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decay_scaling: str = "lr", cautious: bool = False,
                 l1_decay: float = 0.0) -> None:
        defaults = _adam_defaults(lr, betas, eps, weight_decay, amsgrad, foreach, maximize,
                                  capturable, differentiable, fused, decoupled=True,
                                  decay_scaling=decay_scaling, cautious=cautious,
                                  l1_decay=l1_decay)
        Optimizer.__init__(self, params, defaults)
        _paths.check_fused_flags(fused, foreach, differentiable)


def _adam_defaults(lr, betas, eps, weight_decay, amsgrad, foreach, maximize, capturable,
                   differentiable, fused, *, decoupled, decay_scaling="lr", cautious=False,
                   l1_decay=0.0) -> dict:
    """Check Adam/AdamW arguments with their declarations (:mod:`decaylab.optim.options`; each error names the
    argument) and return the defaults. Tensor ``lr``/``betas`` are refused where torch refuses them, with its
    message: with ``foreach=True`` and not ``capturable``, and betas mixing a float and a Tensor."""
    foreach_needs_floats = bool(foreach) and not capturable
    if isinstance(lr, Tensor) and foreach_needs_floats:
        raise InputError("lr as a Tensor is not supported for capturable=False and foreach=True")
    check_lr(lr)
    for name, value in (("betas", betas), ("eps", eps), ("weight_decay", weight_decay), ("amsgrad", amsgrad)):
        OPTIONS[name].check(value)
    if isinstance(betas[0], Tensor) != isinstance(betas[1], Tensor):
        raise InputError("betas must be either both floats or both Tensors")
    for i, beta in enumerate(betas):
        if isinstance(beta, Tensor) and foreach_needs_floats:
            raise InputError(f"betas[{i}] as a Tensor is not supported for capturable=False and foreach=True")
    check_decay_options(decay_scaling, cautious, l1_decay)
    return {"lr": lr, "betas": tuple(map(_to_scalar, betas)), "eps": eps,
            "weight_decay": weight_decay, "amsgrad": amsgrad, "maximize": maximize,
            "foreach": foreach, "capturable": capturable, "differentiable": differentiable,
            "fused": fused, "decoupled_weight_decay": decoupled,
            "decay_scaling": decay_scaling, "cautious": cautious, "l1_decay": l1_decay}


def _reference_adam(group: dict, params: list, grads: list, exp_avgs: list, exp_avg_sqs: list,
                    max_exp_avg_sqs: list, state_steps: list) -> None:
    """The readable path: :func:`adam_update_` on each parameter."""
    beta1, beta2 = group["betas"]
    lr = group["lr"]
    if isinstance(lr, Tensor) and not lr.requires_grad:
        lr = lr.item()
    amsgrad = group["amsgrad"]
    for i, param in enumerate(params):
        state_steps[i] += 1
        adam_update_(
            param, grads[i], exp_avgs[i], exp_avg_sqs[i],
            max_exp_avg_sqs[i] if amsgrad else None, int(state_steps[i].item()),
            lr=lr, beta1=beta1, beta2=beta2, eps=group["eps"],
            weight_decay=group["weight_decay"], amsgrad=amsgrad, maximize=group["maximize"],
            decoupled=group["decoupled_weight_decay"], decay_scale=decay_scale(group),
            cautious=group["cautious"], l1_decay=group["l1_decay"],
            differentiable=group["differentiable"])


def _kernel_adam(group: dict, params: list, grads: list, exp_avgs: list, exp_avg_sqs: list,
                 max_exp_avg_sqs: list, state_steps: list, path: str, has_complex: bool) -> None:
    """The fast path: torch's foreach/fused Adam(W) kernel, λ reparametrized per step.

    Decoupled decay with any scaling is torch's AdamW with λ' = s_t·λ/lr_t (the
    kernel computes w·(1 − lr_t·λ')); cautious decay is applied before a λ = 0
    kernel from the moment m_t the kernel will compute (sign(u) = sign(m_t)); the
    L1 proximal step follows the kernel.
    """
    decoupled = group["decoupled_weight_decay"]
    beta1, beta2 = group["betas"]
    kernel_decay = kernel_weight_decay(group) if decoupled else group["weight_decay"]
    if group["cautious"]:
        _paths.cautious_decay_before_kernel(group, params,
                                            _paths.next_adam_moment(group, grads, exp_avgs))
        kernel_decay = 0.0
    _torch_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                foreach=path == "foreach", capturable=group["capturable"],
                differentiable=group["differentiable"], fused=path == "fused",
                has_complex=has_complex, decoupled_weight_decay=decoupled,
                amsgrad=group["amsgrad"], beta1=beta1, beta2=beta2, lr=group["lr"],
                weight_decay=kernel_decay, eps=group["eps"], maximize=group["maximize"])
    _paths.l1_after_kernel(group, params)
