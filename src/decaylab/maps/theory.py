"""Which regime a model's weights are in, and the lr × λ basin slope the theory predicts there.

Two regimes (the basin slope is d log λ* / d log lr, λ* the best decay at a learning rate):

**Fixed point** (weights *not* scale-invariant, trained to convergence). The run ends near a
stationary point of its update, so the best λ is the one whose stationary point generalizes
best, and the slope is how λ enters that point:

- SGD + momentum μ, coupled (``b ← μb + ∇L + λw``, ``w ← w − η·b``): stationary where
  ∇L + λw = 0, the minimum of L + (λ/2)‖w‖², whatever η → slope **0**.
- Adam, coupled (``g = ∇L + λw`` into the moments): the update m̂/(√v̂+ε) vanishes only where
  m̂ = 0, i.e. again ∇L + λw = 0 → slope **0**.
- SGDW, ``decay_scaling="schedule"`` (``w ← w − η_t·b − (η_t/η_0)·λ·w``): with b = ∇L/(1−μ) at
  rest, stationary where ∇L + (1−μ)(λ/η_0)·w = 0, an L2 of strength ∝ λ/η_0 → slope **+1**.
- AdamW, ``"schedule"``: stationary where η_0·u = −λ·w with u = m̂/(√v̂+ε), each |u_i| ≤ 1: the
  runs settle in ‖w‖_∞ ≤ η_0/λ (Xie & Li 2024), a constraint set by λ/η_0 → slope **+1**.
- AdamW, ``"lr"`` (torch): the same with λ_lr = λ_schedule/η_0, ‖w‖_∞ ≤ 1/λ → slope **0**.
- Lion, ``"lr"`` (the paper's ``w ← w − η(sign(c) + λw)``): the update is u = sign(c), every |u_i| ≤ 1 as
  Adam's but exactly 1 wherever c ≠ 0; stationary where η·u = −η·λ·w, and from |w| ≤ 1/λ a step gives
  |w'| ≤ (1 − ηλ)/λ + η = 1/λ: the runs settle in ‖w‖_∞ ≤ 1/λ (Lion-𝒦, Chen et al. 2024: Lion with decoupled
  decay solves min L(w) s.t. ‖w‖_∞ ≤ 1/λ), a set fixed by λ alone → slope **0**.
- Lion, ``"schedule"`` (``w ← w − η_t·u − (η_t/η_0)·λ·w``): stationary where η_0·u = −λ·w, the set
  ‖w‖_∞ ≤ η_0/λ, fixed by λ/η_0 → slope **+1**.
- Muon, ``"lr"`` (torch: ``W ← W − η·λ·W − η·ρ·O``, the decay with the *unadjusted* lr η and the step with
  ρ·η, ρ = ``adjust_lr_fn``'s ratio of the matrix shape, O the Newton–Schulz output with singular values near
  1): stationary where ρ·O = −λ·W, and as for Lion a step keeps ‖W‖₂ ≤ ρ·σ_max(O)/λ once there (the spectral
  norm is a norm: ‖W'‖₂ ≤ (1 − ηλ)‖W‖₂ + ηρσ_max(O)). The runs settle in that spectral-norm ball (Chen, Li &
  Liu 2025, "Muon optimizes under spectral norm constraints"), fixed by λ (ρ is the shape's, not η's) →
  slope **0**.
- Muon, ``"schedule"``: ``W ← W − η_t·ρ·O − (η_t/η_0)·λ·W``, the ball ‖W‖₂ ≤ η_0·ρ·σ_max(O)/λ, fixed by
  λ/η_0 → slope **+1**. (The AdamW companion of a Muon run has AdamW's slopes, the same numbers; with
  ``adamw_weight_decay`` set its λ does not move with the cell, and the basin is the Muon matrices'.)

**Equilibrium** (scale-invariant weights: f(c·w) = f(w) for c > 0, e.g. a bias-free Linear
followed by BatchNorm or an affine-free LayerNorm). Then ∇L ⊥ w and ‖∇L‖ = G/‖w‖ (G the
gradient norm at ‖w‖ = 1): only the direction ŵ matters, and its per-step rotation is
η‖u‖/‖w‖. The gradient step grows ‖w‖² by η²‖u‖² (Pythagoras, u ⊥ w); decay shrinks it by
2·d·‖w‖² with d the per-step decay. The norm settles where they balance (Van Laarhoven 2017;
Zhang et al. 2019; Kosson et al. 2024 "Rotational equilibrium"), and the equilibrium angle is
then a function of (η, λ) alone; the best λ keeps that angle fixed:

- SGD coupled: ‖u‖ = G/‖w‖, d = ηλ: ‖w‖⁴ = ηG²/(2λ), angle = ηG/‖w‖² = √(2ηλ) (√(2ηλ/(1+μ))
  with momentum) → depends on ηλ → slope **−1**.
- SGDW ``"schedule"``: d = λ (at constant lr): ‖w‖⁴ = η²G²/(2λ), angle = √(2λ) (×√((1−μ)/(1+μ)))
  → independent of η → slope **0**.
- AdamW ``"lr"``: Adam's u has a size √C set by the element count C, not by G: ‖w‖² = ηC/(2λ),
  angle = √(2ηλ) (×√((1−β₁)/(1+β₁))) → slope **−1**.
- AdamW ``"schedule"``: d = λ: ‖w‖² = η²C/(2λ), angle = √(2λ) → slope **0**.
- Lion: u = sign(c) has ‖u‖² = C (every coordinate ±1) whatever G and ‖w‖, as Adam's u in size: with the
  same balance (u taken tangential, as for Adam), ``"lr"``: d = ηλ, ‖w‖² = ηC/(2λ), angle = η√C/‖w‖ = √(2ηλ)
  → slope **−1**; ``"schedule"``: d = λ, ‖w‖² = η²C/(2λ), angle = √(2λ) → slope **0**. (Consecutive signs
  of Lion's interpolated momentum are correlated, which changes the angle by a constant factor that depends
  on β₁, β₂ and not on η or λ, so not the slope.)
- Muon: the orthogonalization fixes the update's size: u = ρ·O with ‖O‖_F² ≈ k = min(A, B) (k singular
  values near 1) whatever G and ‖W‖, so ‖u‖² = ρ²k. Decay with the unadjusted lr (``"lr"``): d = ηλ, the
  balance η²ρ²k = 2ηλ‖W‖² gives ‖W‖² = ηρ²k/(2λ) and angle = ηρ√k/‖W‖ = √(2ηλ) → slope **−1** (ρ cancels:
  ``adjust_lr_fn`` moves the equilibrium norm, not the angle); ``"schedule"``: d = λ, ‖W‖² = η²ρ²k/(2λ),
  angle = √(2λ) → slope **0**.
- Adam coupled: **no clean number.** The decay enters v̂ beside the gradient, so the decay's
  share of the normalized step is λ‖w‖/(G/‖w‖ + λ‖w‖)-like and depends on G, which is a
  property of the loss that changes during training. In the gradient-dominated limit
  (λ‖w‖² ≪ G) the per-step shrink is ≈ ηλ‖w‖·√C/G, giving ‖w‖³ ∝ ηG/λ and angle ∝
  (η²λ/G)^{1/3} (slope −2 if G were fixed); in the decay-dominated limit the update is
  sign-like along w and the gradient is suppressed. Which limit holds moves with (η, λ) and G,
  so the measured slope is reported alone.

Which case an optimizer is in — coupled or decoupled, SGD or an adaptive update — is read from decaylab's
one table of optimizers (:func:`decaylab.diagnostics.optimizer_decay.class_decay` on the class the sweep's
optimizer name builds), so a name the sweeps take is classified as the doctor and the monitor classify it.

:func:`scale_invariant_params` tests each parameter numerically (rescale it, compare outputs);
:func:`detect_regime` turns that into a regime for the decayed weights (those the trainers' rule,
:class:`decaylab.groups.DecayRule`, decays); :func:`predicted_slope`
gives the numbers above (``None`` where there are none), and :func:`predicted_line` the line of
that slope through the measured best-λ points (the theory fixes the slope, not the intercept).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from decaylab._checks import InputError, InputTypeError, check_choice
from decaylab.groups import DecayRule, as_decay_rule

__all__ = ["REGIMES", "detect_regime", "predicted_line", "predicted_slope", "scale_invariant_params"]

REGIMES = ("fixed-point", "equilibrium")

# (kind, update or decay_scaling) → slope: coupled SGD or adaptive, decoupled by its decay_scaling.
_SLOPES = {
    "fixed-point": {("coupled", "sgd"): 0.0, ("coupled", "adaptive"): 0.0, ("decoupled", "schedule"): 1.0,
                    ("decoupled", "lr"): 0.0},
    "equilibrium": {("coupled", "sgd"): -1.0, ("coupled", "adaptive"): None, ("decoupled", "schedule"): 0.0,
                    ("decoupled", "lr"): -1.0},
}


def predicted_slope(optimizer: str, decay_scaling: str | None, regime: str) -> float | None:
    """The predicted basin slope d log λ*/d log lr (see the module docstring) for the decaylab optimizer
    a sweep names ``optimizer``, ``None`` where the theory gives no clean number (Adam with coupled L2
    in the equilibrium regime). ``decay_scaling`` is ignored for the coupled optimizers (``"sgd"``,
    ``"adam"``): how the optimizer decays is read from the table of
    :mod:`decaylab.diagnostics.optimizer_decay`."""
    from decaylab.diagnostics.optimizer_decay import class_decay
    from decaylab.optim.spec import OptimizerSpec

    kind, family = class_decay(OptimizerSpec(name=optimizer).optimizer_class())
    check_choice("regime", regime, REGIMES)
    if kind == "coupled":
        case = (kind, "sgd" if family == "sgd" else "adaptive")
    else:
        case = (kind, check_choice("decay_scaling", decay_scaling, ("lr", "schedule")))
    return _SLOPES[regime][case]


def scale_invariant_params(model: torch.nn.Module, example: torch.Tensor, *, scale: float = 3.0,
                           rtol: float = 1e-3) -> dict[str, bool]:
    """Per parameter name: is the model's output unchanged when that tensor alone is scaled by
    ``scale`` (and by 1/``scale``)? Tested on ``example`` (a batch of inputs) in float64 on a copy
    of the model in training mode (BatchNorm uses batch statistics, as in training; its running
    buffers on the copy are discarded). Normalization epsilons make invariance approximate:
    relative change ≤ ``rtol`` counts as invariant."""
    if not isinstance(example, torch.Tensor):
        raise InputTypeError(f"example must be a tensor batch of inputs, got {type(example).__name__}")
    if not scale > 0 or scale == 1:
        raise InputError(f"scale must be positive and not 1, got {scale!r}")
    probe = copy.deepcopy(model).double().train()
    x = example.double()
    params = dict(probe.named_parameters())
    buffers = {k: v.clone() for k, v in probe.named_buffers()}

    def output(overrides: dict) -> torch.Tensor:
        state = {**params, **{k: v.clone() for k, v in buffers.items()}, **overrides}
        with torch.no_grad():
            return torch.func.functional_call(probe, state, (x,))

    base = output({})
    size = base.abs().max().clamp_min(1e-12)
    result = {}
    for name, p in params.items():
        result[name] = all(float((output({name: p.detach() * c}) - base).abs().max() / size) <= rtol
                           for c in (scale, 1.0 / scale))
    return result


def detect_regime(model: torch.nn.Module, example: torch.Tensor, *, decay_biases: bool = False,
                  decay_rule: DecayRule | None = None) -> dict:
    """The regime of the decayed parameters: ``"equilibrium"`` when the scale-invariant ones hold most of
    the decayed elements, else ``"fixed-point"``. Returns ``{"regime", "scale_invariant": {name: bool},
    "invariant_fraction"}`` (the fraction by element count; ``scale_invariant`` over the decayed parameters).

    Which parameters decayed is ``decay_rule``'s decision (:class:`decaylab.groups.DecayRule`, the
    trainers' rule; pass the rule the model was trained with, e.g. the ``decay`` field of
    its ``TrainConfig``); without one, ``DecayRule()`` (the default of every trainer), or
    :meth:`DecayRule.everything` with ``decay_biases=True``."""
    rule = _decay_rule(decay_biases, decay_rule)
    invariant = scale_invariant_params(model, example)
    decayed = {d.name: d.param.numel() for d in rule.classify(model) if d.decay}
    total = sum(decayed.values())
    fraction = sum(c for n, c in decayed.items() if invariant[n]) / total if total else 0.0
    return {"regime": "equilibrium" if fraction > 0.5 else "fixed-point",
            "scale_invariant": {n: invariant[n] for n in decayed}, "invariant_fraction": fraction}


def _decay_rule(decay_biases: bool, decay_rule: DecayRule | None) -> DecayRule:
    """``decay_rule``, else the rule ``decay_biases`` names; both at once are refused."""
    if not isinstance(decay_biases, bool):
        raise InputTypeError(f"decay_biases must be a bool, got {decay_biases!r}")
    if decay_rule is None:
        from decaylab.runspec import decay_rule as rule_of_options

        return rule_of_options(decay_biases)
    decay_rule = as_decay_rule(decay_rule)
    if decay_biases:
        raise InputError("decay_biases must be False when decay_rule is given (the rule says what decays; "
                         "DecayRule.everything() decays every parameter), got decay_biases=True")
    return decay_rule


def predicted_line(slope: float | None, lrs: Sequence[float], best_decays: Sequence[float],
                   kept: Sequence[bool]) -> np.ndarray | None:
    """λ along the predicted basin line at ``lrs``: log λ = log λ̄ + slope·(log lr − log lr̄), through
    the geometric mean (lr̄, λ̄) of the kept best-λ points. ``None`` without a slope or kept rows."""
    kept = np.asarray(kept, dtype=bool)
    if slope is None or not kept.any():
        return None
    lrs, best = np.log(np.asarray(lrs, float)), np.log(np.asarray(best_decays, float))
    centre_lr, centre_decay = lrs[kept].mean(), best[kept].mean()
    return np.exp(centre_decay + slope * (lrs - centre_lr))
