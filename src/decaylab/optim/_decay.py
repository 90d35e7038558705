"""Decoupled-decay options shared by SGD/SGDW and Adam/AdamW: checks, s_t, group keys, timescales.

Decay scalings (the factor s_t in ``w ← w − s_t·λ·w``):

- ``"lr"``:        s_t = lr_t                    (torch.optim.AdamW, optax, Keras)
- ``"schedule"``:  s_t = lr_t / lr_0             (Loshchilov & Hutter 2019, Composer)
- ``"corrected"``: s_t = lr_t² / lr_0            (AdamC / SGDC, Defazio 2025,
  arXiv:2506.02285, with lr_0 the schedule's peak lr; meant for layers followed
  by normalization, so give those their own param group)

lr_0 is stored in each param group under ``"decay_reference_lr"`` (default: the
group's lr when the group is added to the optimizer). It travels with the
optimizer's state_dict.

Loading a state dict (one rule): the optimizer keeps its own ``decay_scaling``, and the
saved λ is converted from the saved state's convention into it, so the run continues
exactly as the saved optimizer would have. A state without ``decay_scaling`` (saved by
``torch.optim.AdamW``/``SGD``) is in the ``"lr"`` convention. lr_0 is the saved
``decay_reference_lr``, else the saved ``initial_lr`` (set by torch's LR schedulers), else
the value this optimizer already had. ``lr`` ↔ ``schedule`` convert exactly
(λ_schedule = lr_0·λ_lr); a conversion to or from ``corrected`` (not a constant multiple
of the others) raises ``ValueError`` before anything is loaded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import _use_grad_for_differentiable

from decaylab._checks import InputError, check_choice, check_int, check_real
from decaylab.optim.options import DECAY_SCALINGS, OPTIONS, check_decoupled_only

#: Param-group keys that decaylab adds to torch's, with their meaning.
DECAY_GROUP_KEYS = ("decoupled_weight_decay", "decay_scaling", "decay_reference_lr",
                    "cautious", "l1_decay")


def check_as_torch(torch_message: str, name: str, value: Any, **interval: Any) -> float:
    """:func:`check_real` whose ``ValueError`` starts with torch's own message for the same input
    (``"Invalid learning rate: -1.0 (lr must be in [0.0, inf), got -1.0)"``), so code matching
    torch's errors matches decaylab's too; the detail in parentheses says what is allowed."""
    try:
        return check_real(name, float(value) if isinstance(value, Tensor) else value, **interval)
    except InputError as exc:
        raise InputError(f"{torch_message} ({exc})") from None


def check_lr(lr: Any) -> float | Tensor:
    """Check a learning rate: a finite float >= 0 or a 1-element tensor holding one."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise InputError(f"Tensor lr must be 1-element (lr as a Tensor must have 1 element, got shape "
                             f"{tuple(lr.shape)})")
        check_as_torch(f"Invalid learning rate: {lr}", "lr", lr, low=0.0)
        return lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        return check_real("lr", lr, low=0.0)
    return check_as_torch(f"Invalid learning rate: {lr}", "lr", lr, low=0.0)


def check_decay_options(decay_scaling: Any, cautious: Any, l1_decay: Any) -> None:
    """Check the decoupled-decay options of SGDW/AdamW and their param groups (their declarations in
    :mod:`decaylab.optim.options`)."""
    for name, value in (("decay_scaling", decay_scaling), ("cautious", cautious), ("l1_decay", l1_decay)):
        OPTIONS[name].check(value)


def check_group_decay(group: dict) -> None:
    """Check one param group's decay keys once it is complete (called by add_param_group)."""
    check_decoupled_only(group["decoupled_weight_decay"], group["decay_scaling"], group["cautious"],
                         group["l1_decay"], who="a coupled (SGD/Adam) param group")
    ref = group["decay_reference_lr"]
    check_real("decay_reference_lr", float(ref), low=0.0)
    if group["decay_scaling"] != "lr" and float(ref) == 0.0:
        raise ValueError(f"decay_scaling={group['decay_scaling']!r} divides by the initial lr "
                         "(decay_reference_lr), which must be > 0, got 0.0")


def scale_for(decay_scaling: str, lr, reference_lr):
    """s_t of ``w ← w − s_t·λ·w`` for ``decay_scaling`` at learning rate ``lr`` (= lr_t) with
    ``reference_lr`` (= lr_0): ``lr_t``, ``lr_t/lr_0`` or ``lr_t²/lr_0``. The one place s_t is chosen:
    the optimizers (per group) and the batched trainer (per member, on tensors) call it."""
    if decay_scaling == "lr":
        return lr
    ratio = lr / reference_lr
    return ratio if decay_scaling == "schedule" else lr * ratio


def scale_of_reading(decay_scaling: str, lr: float, reference_lr: float) -> float:
    """:func:`scale_for` on numbers read from any optimizer's param group (see
    :func:`decaylab.diagnostics.optimizer_decay.group_decay`): 0.0 where s_t would divide by lr_0 = 0 (a group whose
    initial lr was 0, under ``"schedule"``/``"corrected"``: it decays nothing)."""
    if reference_lr == 0 and decay_scaling != "lr":
        return 0.0
    return scale_for(decay_scaling, lr, reference_lr)


def peak_lr_per_scale(decay_scaling: str, reference_lr: float) -> float:
    """lr_0/s_0, with s_0 = :func:`scale_for` at the peak lr (lr_t = lr_0): 1 for ``"lr"`` and ``"corrected"``
    (s_0 = lr_0), lr_0 for ``"schedule"`` (s_0 = 1), and its limit 1, 0, 1 at lr_0 = 0. A λ in
    ``decay_scaling`` divided by it is the λ of torch's convention (``"lr"``) that shrinks the weights as much
    at the peak lr."""
    if reference_lr == 0:
        return 0.0 if decay_scaling == "schedule" else 1.0
    return reference_lr / scale_for(decay_scaling, reference_lr, reference_lr)


def decay_scale(group: dict) -> float:
    """The factor s_t of the decoupled decay ``w ← w − s_t·λ·w`` for this group now."""
    return scale_for(group["decay_scaling"], float(group["lr"]), float(group["decay_reference_lr"]))


def kernel_weight_decay(group: dict) -> float:
    """λ' with lr_t·λ' = s_t·λ: the weight_decay to hand a torch kernel that computes lr·λ'.

    This is how ``schedule``/``corrected`` scalings (and SGDW without momentum) run
    on torch's own fused/foreach kernels: a per-step reparametrization of λ.
    """
    lam = group["weight_decay"]
    if group["decay_scaling"] == "lr":
        return lam
    lr = float(group["lr"])
    return 0.0 if lr == 0 else decay_scale(group) * lam / lr


def convert_decoupled_weight_decay(lam, from_scaling: str, to_scaling: str, lr_0: float):
    """λ in ``to_scaling`` giving the same decoupled shrink s_t·λ as ``lam`` in ``from_scaling``.

    ``lr`` → ``schedule``: λ·lr_0; ``schedule`` → ``lr``: λ/lr_0 (exact at every step, since
    s_t differs by the constant factor lr_0). ``corrected`` converts only to itself.
    """
    if from_scaling == to_scaling:
        return lam
    if {from_scaling, to_scaling} == {"lr", "schedule"}:
        if lr_0 <= 0:
            raise ValueError(f"converting decay_scaling {from_scaling!r} → {to_scaling!r} needs lr_0 > 0, got {lr_0}")
        return lam * lr_0 if to_scaling == "schedule" else lam / lr_0
    raise ValueError(f"decay_scaling {from_scaling!r} cannot be converted to {to_scaling!r}")


def timescale_weight_decay(lr: Any, tau_epochs: Any, steps_per_epoch: Any,
                           decay_scaling: str = "lr") -> float:
    """λ giving an EMA timescale of ``tau_epochs`` epochs (Wang & Aitchison 2024).

    Decoupled decay makes the weights an exponential moving average of the updates
    with timescale τ_iter = 1/(s_0·λ) iterations, s_0 the decay scale at the initial
    lr. With τ_iter = τ_epochs·steps_per_epoch:
    ``lr`` and ``corrected`` scalings (s_0 = lr): λ = 1/(lr·τ_iter);
    ``schedule`` scaling (s_0 = 1): λ = 1/τ_iter (s_0 from :func:`scale_for` at lr_t = lr_0 = lr).
    """
    lr = check_real("lr", lr, low=0.0, low_open=True)
    tau_epochs = check_real("tau_epochs", tau_epochs, low=0.0, low_open=True)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, low=1)
    check_choice("decay_scaling", decay_scaling, DECAY_SCALINGS)
    tau_iter = tau_epochs * steps_per_epoch
    s0 = scale_for(decay_scaling, lr, lr)
    return 1.0 / (s0 * tau_iter)


class DecayGroupsMixin:
    """Optimizer behaviour common to the four classes: the decay keys of each param group.

    - every group gets ``decay_reference_lr`` (its own lr) when it is added, and is checked;
    - ``__setstate__`` (used by ``load_state_dict`` and unpickling) fills keys missing
      from an older or torch-saved state from the defaults;
    - ``load_state_dict`` keeps this optimizer's lr_0 for groups whose saved state has none.
    """

    #: Set by SGDW/AdamW: the decay is decoupled whatever a loaded state dict says.
    _forced_decoupled: bool | None = None

    def add_param_group(self, param_group: dict) -> None:
        params = param_group.get("params") if isinstance(param_group, dict) else None
        if params is not None and not isinstance(params, (Tensor, set)):
            param_group["params"] = params = list(params)
            for p in params:
                tensor = p[1] if isinstance(p, tuple) and len(p) == 2 else p
                if not isinstance(tensor, Tensor):
                    raise TypeError("params must contain only torch.Tensor or (name, Tensor) "
                                    f"pairs, got {p!r} ({type(p).__name__})")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if self._forced_decoupled is not None:
            group["decoupled_weight_decay"] = self._forced_decoupled
        group.setdefault("decay_reference_lr", float(group["lr"]))
        for key in ("lr", "weight_decay"):
            value = group[key]
            check_real(key, float(value) if isinstance(value, Tensor) else value, low=0.0)
        check_group_decay(group)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key in DECAY_GROUP_KEYS:
                if key != "decay_reference_lr":
                    group.setdefault(key, self.defaults[key])
            group.setdefault("decay_reference_lr", float(group.get("initial_lr", group["lr"])))
            if self._forced_decoupled is not None:
                group["decoupled_weight_decay"] = self._forced_decoupled

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, then the saved λ converted into this optimizer's
        ``decay_scaling`` (see the module docstring: the one rule for loading)."""
        mine = [(group.get("decay_scaling", "lr"), group.get("decay_reference_lr")) for group in self.param_groups]
        saved_groups = state_dict["param_groups"]
        for (scaling, _), saved in zip(mine, saved_groups):
            theirs = saved.get("decay_scaling", "lr")
            if scaling != theirs and "corrected" in (scaling, theirs) and float(saved.get("weight_decay", 0)) != 0:
                raise ValueError(f"cannot load a state dict with decay_scaling={theirs!r} into an optimizer with "
                                 f"decay_scaling={scaling!r}: 'corrected' is not a constant multiple of the other "
                                 f"scalings; construct the optimizer with decay_scaling={theirs!r}")
        super().load_state_dict(state_dict)
        for group, saved, (scaling, prev) in zip(self.param_groups, saved_groups, mine):
            ref = saved.get("decay_reference_lr", saved.get("initial_lr", prev))
            if ref is not None:
                group["decay_reference_lr"] = float(ref)
            theirs = saved.get("decay_scaling", "lr")
            if theirs != scaling and group["decoupled_weight_decay"]:
                group["weight_decay"] = convert_decoupled_weight_decay(
                    group["weight_decay"], theirs, scaling, float(group["decay_reference_lr"]))
            group["decay_scaling"] = scaling

    @_use_grad_for_differentiable
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        if "capturable" in self.defaults:
            self._accelerator_graph_capture_health_check()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    @classmethod
    def from_timescale(cls, params, lr: float, tau_epochs: float, steps_per_epoch: int,
                       **kwargs):
        """Build the optimizer with λ set from an EMA timescale of ``tau_epochs`` epochs.

        Parameter groups (e.g. from :func:`decaylab.param_groups`) keep ``weight_decay=0``
        where they have it; every other group decays with the timescale's λ.

        τ_iter = tau_epochs·steps_per_epoch; λ = 1/(lr·τ_iter) for ``decay_scaling="lr"``
        (and ``"corrected"``), λ = 1/τ_iter for ``"schedule"`` (Wang & Aitchison 2024,
        "How to set AdamW's weight decay as you scale model and dataset size").
        """
        if not cls._forced_decoupled:
            raise TypeError(f"{cls.__name__}.from_timescale: the EMA timescale is a property "
                            "of decoupled decay; use SGDW or AdamW")
        if "weight_decay" in kwargs:
            raise TypeError("from_timescale sets weight_decay from tau_epochs; "
                            "do not pass weight_decay too")
        scaling = kwargs.get("decay_scaling", "lr")
        lam = timescale_weight_decay(lr, tau_epochs, steps_per_epoch, scaling)
        return cls(_with_decay(params, lam), lr=lr, weight_decay=lam, **kwargs)


def _with_decay(params, lam: float):
    """``params`` with every parameter group that decays (``weight_decay`` absent or non-zero)
    set to ``lam``; plain tensors and named parameters pass through unchanged."""
    params = list(params)
    if not params or not isinstance(params[0], dict):
        return params
    return [group if group.get("weight_decay", None) == 0 else {**group, "weight_decay": lam}
            for group in params]
