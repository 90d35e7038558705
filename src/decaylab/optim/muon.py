"""Muon with decaylab's decay options: a drop-in for ``torch.optim.Muon`` (torch 2.13).

Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks")
orthogonalizes the momentum of each weight matrix with a Newton–Schulz iteration and
steps along the result. torch's Muon, op for op (so the numbers are torch's)::

    B ← μ·B + (1 − μ)·g                       (B.lerp_(g, 1 − μ))
    U ← (1 − μ)·g + μ·B  if nesterov, else B   (g.lerp(B, μ))
    O ← NS₅(U)                                 (bfloat16 quintic Newton–Schulz, below)
    W ← W − s_t·λ·W                            (decoupled decay, with the *unadjusted* lr)
    W ← W − lr·ρ(A, B)·O                       (ρ from adjust_lr_fn, A×B the matrix shape)

ρ (``adjust_lr_fn``): ``None``/``"original"`` ρ = √max(1, A/B) (Keller Jordan's);
``"match_rms_adamw"`` ρ = 0.2·√max(A, B) (Moonlight, Liu et al. 2025, "Muon is Scalable for
LLM Training"). decaylab adds ``update_rms=r``: ρ = r·√max(A, B), so that an exactly orthogonal
O (RMS 1/√max(A, B)) moves W by RMS r·lr.

Moonlight's rule, ``W ← W − η(0.2·√max(A,B)·O + λW)``, *is* torch's ``"match_rms_adamw"`` with
decay_scaling ``"lr"``: torch decays with the unadjusted lr η (W·(1 − ηλ)) and steps by
0.2·√max(A,B)·η·O, which is that formula term for term. (Moonlight's momentum is the sum
μB + g, not torch's EMA; the two differ by the factor 1 − μ, which the Newton–Schulz
normalization removes, so the directions agree up to rounding.) ``update_rms=0.2`` and
``adjust_lr_fn="match_rms_adamw"`` give the same numbers, bit for bit.

The Newton–Schulz iteration (torch's ``_zeropower_via_newtonschulz``; a, b, c =
``ns_coefficients``), on X = U in bfloat16 (``ns_dtype``), transposed when A > B,
X ← X/max(‖X‖_F, ε), then ``ns_steps`` times: M = X·Xᵀ, X ← a·X + (b·M + c·M²)·X.

decaylab's options (keyword-only, all per param group):

- ``decay_scaling`` s_t: ``"lr"`` (lr_t, torch), ``"schedule"`` (lr_t/lr_0), ``"corrected"``
  (lr_t²/lr_0) — see :mod:`decaylab.optim._decay`; always the unadjusted lr, as torch;
- ``cautious=True``: ``W ← W − s_t·λ·𝕀(O⊙W ≥ 0)⊙W`` (Chen et al. 2025, cautious weight decay,
  with the orthogonalized update O as the direction);
- ``l1_decay=λ₁``: the proximal step ``W ← sign(W)·max(|W| − s_t·λ₁, 0)`` after the update;
- ``update_rms``: see above (excludes ``adjust_lr_fn``);
- ``flatten=True``: a ≥3-D weight (a conv kernel ``[out, in, kh, kw]``) is orthogonalized as
  the ``[out, in·kh·kw]`` matrix and ρ uses that shape (Keller Jordan's Muon does this; torch
  refuses every parameter that is not 2-D);
- ``ns_dtype``: the dtype the Newton–Schulz iteration runs in, ``torch.bfloat16`` (torch's and
  Keller Jordan's, the default), ``torch.float32``, ``torch.float64`` or ``None`` (the update's
  own dtype). bfloat16 rounds each product to 8 significant bits, so two matmul kernels that sum
  in a different order (a batched ``bmm`` and a 2-D ``mm``) can round an element one bfloat16
  step apart; in a wider dtype they agree to that dtype's precision (how the batched sweep engine
  equals members trained alone, :mod:`decaylab.batched.stacked_muon`).

Differences from torch: a bfloat16 parameter with ``nesterov=False`` keeps its momentum
buffer (torch's ``grad.bfloat16()`` is the buffer itself there, and its in-place
normalization overwrites it); argument errors that torch raises only at ``step()``
(``ns_steps`` ≥ 100, ``ns_coefficients`` not three numbers) are raised at construction,
with torch's message; every argument is checked (torch checks lr, momentum, weight_decay and
adjust_lr_fn), and a parameter that is not 2-D is refused in any group added later too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT, _to_scalar

from decaylab._checks import InputError, InputTypeError, check_choice, check_int, check_real
from decaylab.optim._decay import DecayGroupsMixin, check_as_torch, check_decay_options, decay_scale
from decaylab.optim.functional import decoupled_decay_, soft_threshold_

__all__ = ["Muon", "zeropower_via_newtonschulz", "adjusted_lr", "muon_update_", "ADJUST_LR_FNS"]

#: Keller Jordan's constants, as torch's.
EPS = 1e-7
DEFAULT_A, DEFAULT_B, DEFAULT_C = 3.4445, -4.7750, 2.0315
DEFAULT_NS_STEPS = 5
ADJUST_LR_FNS = ("original", "match_rms_adamw")

#: Param-group keys Muon adds to torch's Muon (besides the decay keys of ``_decay``).
MUON_GROUP_KEYS = ("update_rms", "flatten", "ns_dtype")
#: The dtypes the Newton–Schulz iteration may run in (``ns_dtype``; ``None``: the update's own).
NS_DTYPES = (torch.bfloat16, torch.float32, torch.float64, None)


def zeropower_via_newtonschulz(update: Tensor, ns_coefficients: Sequence[float], ns_steps: int,
                               eps: float, dtype: torch.dtype | None = torch.bfloat16) -> Tensor:
    """O ≈ U·Vᵀ of the 2-D ``update`` = U·S·Vᵀ by ``ns_steps`` quintic Newton–Schulz steps in
    ``dtype`` (``None``: the update's; a new tensor; see the module docstring). The ops are torch's,
    so in bfloat16 the result is bit-identical to ``torch.optim._muon._zeropower_via_newtonschulz``."""
    a, b, c = ns_coefficients
    x = update if dtype is None else update.to(dtype)
    if x is update:  # already in dtype: work on a copy, never on the caller's tensor
        x = update.clone()
    tall = update.size(0) > update.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def adjusted_lr(lr: float | Tensor, adjust_lr_fn: str | None, shape: Sequence[int],
                update_rms: float | None = None) -> float | Tensor:
    """lr·ρ for a matrix of ``shape`` (A, B): ρ = √max(1, A/B) (``None``/``"original"``),
    0.2·√max(A, B) (``"match_rms_adamw"``) or ``update_rms``·√max(A, B) when ``update_rms`` is set;
    another ``adjust_lr_fn`` gives ρ = 1, as in torch."""
    rows, cols = shape[0], shape[1]
    if update_rms is not None:
        ratio = update_rms * math.sqrt(max(rows, cols))
    elif adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


def muon_update_(param: Tensor, grad: Tensor, momentum_buffer: Tensor, *, lr: float | Tensor, weight_decay: float,
                 momentum: float, nesterov: bool, ns_coefficients: Sequence[float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
                 ns_steps: int = DEFAULT_NS_STEPS, eps: float = EPS, adjust_lr_fn: str | None = None,
                 decay_scale: float | Tensor | None = None, cautious: bool = False, l1_decay: float = 0.0,
                 update_rms: float | None = None, flatten: bool = False,
                 ns_dtype: torch.dtype | None = torch.bfloat16) -> None:
    """One Muon step on ``param`` in place (the algorithm of the module docstring).

    ``decay_scale`` is s_t (``None``: s_t = lr, torch's); ``flatten`` orthogonalizes a ≥3-D
    ``param`` as the matrix ``[shape[0], numel/shape[0]]``. ``momentum_buffer`` is updated in place.
    """
    scale = lr if decay_scale is None else decay_scale
    momentum_buffer.lerp_(grad, 1 - momentum)
    update = grad.lerp(momentum_buffer, momentum) if nesterov else momentum_buffer
    if flatten and update.ndim > 2:
        update = update.reshape(len(update), -1)
    ortho = zeropower_via_newtonschulz(update, ns_coefficients, ns_steps, eps, ns_dtype)
    step = adjusted_lr(lr, adjust_lr_fn, ortho.shape, update_rms)
    ortho = ortho.reshape(param.shape)
    if weight_decay != 0:
        decoupled_decay_(param, scale * weight_decay, ortho if cautious else None)
    param.add_(ortho, alpha=-step)
    if l1_decay != 0:
        soft_threshold_(param, scale * l1_decay)


def muon_defaults(lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn,
                  decay_scaling, cautious, l1_decay, update_rms, flatten, ns_dtype) -> dict:
    """Check Muon's arguments (torch's checks and messages first) and return its defaults."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise InputError(f"Tensor lr must be 1-element (lr as a Tensor must have 1 element, got shape "
                         f"{tuple(lr.shape)})")
    check_as_torch(f"Learning rate should be >= 0 but is: {lr}", "lr", lr, low=0.0)
    check_as_torch(f"momentum should be >= 0 but is: {momentum}", "momentum", momentum, low=0.0)
    check_as_torch(f"weight decay should be >= 0 but is: {weight_decay}", "weight_decay", weight_decay, low=0.0)
    defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                "ns_coefficients": ns_coefficients, "eps": eps, "ns_steps": ns_steps,
                "adjust_lr_fn": adjust_lr_fn, "decoupled_weight_decay": True, "decay_scaling": decay_scaling,
                "cautious": cautious, "l1_decay": l1_decay, "update_rms": update_rms, "flatten": flatten,
                "ns_dtype": ns_dtype}
    check_muon_options(defaults)
    return defaults


def check_muon_options(group: dict) -> None:
    """Check a Muon group's own options (constructor defaults or a param-group dict)."""
    fn = group["adjust_lr_fn"]
    if fn is not None and fn not in ADJUST_LR_FNS:
        raise InputError(f"Adjust learning rate function {fn} is not supported (adjust_lr_fn must be None or one of "
                         f"{', '.join(map(repr, ADJUST_LR_FNS))}, got {fn!r})")
    if not isinstance(group["nesterov"], bool):
        raise InputTypeError(f"nesterov must be a bool, got {group['nesterov']!r}")
    coefficients = group["ns_coefficients"]
    if not isinstance(coefficients, Sequence) or len(coefficients) != 3:
        raise InputError(f"Coefficients must be a tuple of exactly 3 values (ns_coefficients must be three "
                         f"numbers (a, b, c), got {coefficients!r})")
    for i, value in enumerate(coefficients):
        check_real(f"ns_coefficients[{i}]", value)
    steps = group["ns_steps"]
    if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 100:
        raise InputError(f"Number of steps must be less than 100 for computational efficiency (ns_steps must be "
                         f"an integer in [0, 99], got {steps!r})")
    check_int("ns_steps", steps, low=0, high=99)
    check_real("eps", group["eps"], low=0.0)
    if group["update_rms"] is not None:
        check_real("update_rms", group["update_rms"], low=0.0, low_open=True)
        if fn is not None:
            raise InputError(f"update_rms sets the update's scale itself: pass adjust_lr_fn=None with it, "
                             f"got adjust_lr_fn={fn!r}")
    if not isinstance(group["flatten"], bool):
        raise InputTypeError(f"flatten must be a bool, got {group['flatten']!r}")
    check_choice("ns_dtype", group["ns_dtype"], NS_DTYPES)
    check_decay_options(group["decay_scaling"], group["cautious"], group["l1_decay"])


def check_muon_params(group: dict) -> None:
    """Every param of a Muon group is a matrix (or, with ``flatten``, ≥2-D); torch's message."""
    for p in group["params"]:
        if p.ndim != 2 and not (group["flatten"] and p.ndim > 2):
            allowed = "2-D or, with flatten=True, >= 2-D" if not group["flatten"] else ">= 2-D (flatten=True)"
            raise InputError(f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()} "
                             f"(Muon's parameters must be {allowed}; give the others to AdamW, e.g. with "
                             "decaylab.optim.MuonAdamW)")


def closure_loss(closure):
    """``closure()`` evaluated with gradients enabled inside a ``no_grad`` step (``None`` without one)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def check_added_muon_group(param_groups: list[dict]) -> None:
    """Check the Muon group just appended to ``param_groups`` (its options and params); a bad one is
    removed again before the error propagates, so the optimizer stays as it was."""
    group = param_groups[-1]
    try:
        check_muon_options(group)
        check_muon_params(group)
    except (ValueError, TypeError):
        param_groups.pop()
        raise


def step_muon_group(state: dict, group: dict) -> None:
    """One Muon step of ``group``'s params that have a gradient; ``state`` is the optimizer's
    per-param state (the momentum buffer is created there on a param's first step)."""
    lr = _to_scalar(group["lr"])  # a tensor lr stays a tensor, as in torch (its products round as torch's)
    scale = None if group["decay_scaling"] == "lr" else decay_scale(group)
    for p in group["params"]:
        if p.grad is None:
            continue
        if torch.is_complex(p):
            raise RuntimeError("Muon does not support complex parameters")
        if p.grad.is_sparse:
            raise RuntimeError("Muon does not support sparse gradients")
        if p.grad.ndim != 2 and not (group["flatten"] and p.grad.ndim > 2):
            raise ValueError("Param gradient must be a 2D matrix")
        p_state = state[p]
        if "momentum_buffer" not in p_state:
            p_state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
        muon_update_(p, p.grad, p_state["momentum_buffer"], lr=lr, weight_decay=group["weight_decay"],
                     momentum=group["momentum"], nesterov=group["nesterov"],
                     ns_coefficients=group["ns_coefficients"], ns_steps=group["ns_steps"], eps=group["eps"],
                     adjust_lr_fn=group["adjust_lr_fn"], decay_scale=scale, cautious=group["cautious"],
                     l1_decay=group["l1_decay"], update_rms=group["update_rms"], flatten=group["flatten"],
                     ns_dtype=group["ns_dtype"])


class Muon(DecayGroupsMixin, Optimizer):
    r"""Muon: momentum orthogonalized by Newton–Schulz, for the hidden weight matrices of a network.

    The same arguments, defaults, errors, state (``momentum_buffer`` per param) and updates as
    ``torch.optim.Muon`` (torch 2.13): ``params``, ``lr=1e-3``, ``weight_decay=0.1``,
    ``momentum=0.95``, ``nesterov=True``, ``ns_coefficients=(3.4445, -4.7750, 2.0315)``,
    ``eps=1e-7``, ``ns_steps=5``, ``adjust_lr_fn=None``; plus the keyword-only ``decay_scaling``,
    ``cautious``, ``l1_decay``, ``update_rms``, ``flatten`` and ``ns_dtype`` (the module docstring
    gives the algorithm and each option). A state dict saved by ``torch.optim.Muon`` loads and continues
    identically (its λ is in the ``"lr"`` scaling, converted as in :mod:`decaylab.optim._decay`).

    Muon is for 2-D parameters; biases, gains, embeddings and the output head belong to AdamW:
    :class:`decaylab.optim.MuonAdamW` is one optimizer for both, and
    :func:`decaylab.optim.muon_param_groups` splits a model.
    """

    _forced_decoupled = True

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
                 eps: float = EPS, ns_steps: int = DEFAULT_NS_STEPS, adjust_lr_fn: str | None = None, *,
                 decay_scaling: str = "lr", cautious: bool = False, l1_decay: float = 0.0,
                 update_rms: float | None = None, flatten: bool = False,
                 ns_dtype: torch.dtype | None = torch.bfloat16) -> None:
        defaults = muon_defaults(lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps,
                                 adjust_lr_fn, decay_scaling, cautious, l1_decay, update_rms, flatten, ns_dtype)
        Optimizer.__init__(self, params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        check_added_muon_group(self.param_groups)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key in MUON_GROUP_KEYS:
                group.setdefault(key, self.defaults[key])

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            step_muon_group(self.state, group)
        return loss
