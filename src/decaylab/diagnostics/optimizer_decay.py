"""How one optimizer parameter group decays, read from the optimizer and the group: coupled or
decoupled, its s_t, λ and momentum, and what that predicts (step decay, timescale, equilibrium angle,
the ℓ∞ bound). The doctor and the monitor read every optimizer through :func:`group_decay`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from decaylab.optim._decay import peak_lr_per_scale, scale_of_reading


@dataclass(frozen=True)
class GroupDecay:
    """The decay one optimizer parameter group applies, read from the optimizer and the group.

    ``kind`` is ``"coupled"`` (a gradient term, ``g ← g + λw``) or ``"decoupled"``
    (``w ← w − s_t·λ·w``); ``family`` is ``"adam"`` (has ``betas``), ``"sgd"`` or ``"other"``;
    ``decay_scaling`` is ``"lr"``, ``"schedule"`` or ``"corrected"`` (decaylab's s_t = lr_t,
    lr_t/lr_0, lr_t²/lr_0); ``beta`` is β₁ for Adam, the momentum for SGD.
    """

    kind: str
    family: str
    optimizer: str
    weight_decay: float
    lr: float
    peak_lr: float
    decay_scaling: str
    beta: float
    dampening: float = 0.0

    def at_peak(self) -> GroupDecay:
        """The same group at its peak (initial) lr, e.g. before a warm-up scheduler raises it."""
        return dataclasses.replace(self, lr=self.peak_lr)

    @property
    def step_decay(self) -> float | None:
        """Fraction of the weights the decay removes per step at the current lr: s_t·λ for
        decoupled decay (s_t from :func:`decaylab.optim._decay.scale_for`), lr·λ·(1−dampening)/(1−momentum)
        (the equilibrium of the momentum buffer) for coupled SGD; ``None`` for coupled Adam-like
        optimizers, where λw is divided by √v̂ and has no fixed rate."""
        if self.kind == "decoupled":
            return scale_of_reading(self.decay_scaling, self.lr, self.peak_lr) * self.weight_decay
        if self.family == "sgd" and self.beta < 1:
            return self.lr * self.weight_decay * (1 - self.dampening) / (1 - self.beta)
        return None

    @property
    def timescale_iters(self) -> float | None:
        """τ_iter = 1/step_decay (``inf`` without decay, ``None`` where no rate exists)."""
        d = self.step_decay
        return None if d is None else (math.inf if d == 0 else 1.0 / d)

    @property
    def equilibrium_angle(self) -> float | None:
        """Predicted per-step rotation (radians) of a scale-invariant weight at equilibrium
        (Kosson et al. 2024, "Rotational equilibrium"), with η·λ the per-step decay d:
        AdamW and SGDW √(2·d·(1−β)/(1+β)); SGD with coupled decay √(2·d·(1−μ)/(1+μ)) with
        d = lr·λ/(1−μ), i.e. √(2·lr·λ/(1+μ)). ``None`` for coupled Adam and other optimizers."""
        d = self.step_decay
        if d is None or self.family not in ("adam", "sgd"):
            return None
        return math.sqrt(2 * d * (1 - self.beta) / (1 + self.beta))

    @property
    def max_abs_bound(self) -> float | None:
        """Xie & Li 2024: AdamW converges inside ‖w‖_∞ ≤ 1/λ (λ in the ``torch-adamw``
        convention, i.e. lr_0/λ for ``schedule``); ``None`` where the result does not apply."""
        if self.kind != "decoupled" or self.family != "adam" or self.weight_decay == 0:
            return None
        return peak_lr_per_scale(self.decay_scaling, self.peak_lr) / self.weight_decay


def group_decay(optimizer: torch.optim.Optimizer, group: dict) -> GroupDecay:
    """Read the decay of ``group`` (one of ``optimizer.param_groups``) for torch's and decaylab's
    optimizers: decoupled when the group says ``decoupled_weight_decay=True`` (torch AdamW, Adam/
    NAdam/RAdam with that flag, decaylab SGDW/AdamW) or the optimizer is a ``torch.optim.AdamW``."""
    name = type(optimizer).__name__
    decoupled = bool(group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW)))
    if "betas" in group:
        family, beta = "adam", float(group["betas"][0])
    elif "SGD" in name.upper() and "momentum" in group:
        family, beta = "sgd", float(group["momentum"])
    else:
        family, beta = "other", float(group.get("momentum", 0.0))
    lr = float(group.get("lr", 0.0))
    peak = float(group.get("decay_reference_lr", group.get("initial_lr", lr)))
    return GroupDecay(kind="decoupled" if decoupled else "coupled", family=family, optimizer=name,
                      weight_decay=float(group.get("weight_decay", 0.0)), lr=lr, peak_lr=peak,
                      decay_scaling=group.get("decay_scaling", "lr") if decoupled else "lr",
                      beta=beta, dampening=float(group.get("dampening", 0.0)))
