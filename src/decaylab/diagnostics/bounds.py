"""What decoupled weight decay predicts and bounds under Muon and Lion, per param group and tensor.

Notation: d = s_t·λ is the fraction of the weights one step's decay removes (s_t the factor of
``decay_scaling``, :mod:`decaylab.optim._decay`; Muon decays with the *unadjusted* lr, as torch);
lr_t/s_t is the lr per decay scale (1 for ``"lr"``, lr_0 for ``"schedule"``, lr_0/lr_t for
``"corrected"``). Muon steps ``W ← (1 − d)·W − u·O`` with u = lr_t·ρ, ρ the lr ratio of
``adjust_lr_fn`` for the A×B matrix (:func:`decaylab.optim.muon.adjusted_lr`: √max(1, A/B) for
``None``/``"original"``, 0.2·√max(A, B) for ``"match_rms_adamw"``, r·√max(A, B) for
``update_rms=r``) and O the Newton–Schulz output of the momentum; Lion steps
``w ← (1 − d)·w − lr_t·sign(c)``.

**The Newton–Schulz output's range.** NS normalizes U by ‖U‖_F, so every singular value x of the
input is in (0, 1], and maps it to p^∘n(x), p(x) = a·x + b·x³ + c·x⁵ (n = ``ns_steps``). So
σ_max(O) ≤ s_max = sup_{x ∈ (0, 1]} p^∘n(x) (:func:`ns_output_sup`, on a grid refined around
its maximum; Keller Jordan's coefficients, 5 steps: s_max = 1.2024, reached at x ≈ 0.004, i.e. by
singular values far below the largest; the singular values of U near the largest land in about
[0.68, 1.14]). The bfloat16 arithmetic of the iteration adds rounding: on Gaussian 16×32 to
512×512 inputs the largest measured σ_max(O) was 1.2026. ‖O‖_F = σ_rms·√min(A, B), with σ_rms
the RMS of p^∘n over the singular values of a Gaussian A×B matrix (the Marchenko–Pastur law,
:func:`ns_output_rms`; 0.85–0.94 for Keller's coefficients on shapes from 16×32 to 512×512; the mean
over 20 Gaussian inputs measured within 0.005 of it from 16×32 to 256×64, single small draws scatter
by up to 0.04).

**1. Muon's equilibrium on a scale-invariant matrix** (one followed by a normalization, e.g. a
bias-free Linear before a LayerNorm: L(cW) = L(W), so the gradient is orthogonal to W). The
update has a fixed size, u·‖O‖_F, however large the gradient (the orthogonalization sets it). In
the noise-dominated regime (Kosson et al. 2024, "Rotational equilibrium", their random-walk
argument) the updates have no mean radial part beyond their own correlation, and a sum of them
over many steps grows ‖W‖² by u²·‖O‖_F²·K per step, K = Σ_k corr(O_t, O_{t+k}) over all lags. The
orthogonalized input U_t = Σ_j w_j·g_{t−j} (white gradients, Σ_j w_j = 1; w_j = (1 − μ)·μʲ for the
heavy-ball buffer, w₀ = 1 − μ², w_j = (1 − μ)·μ^(j+1) with ``nesterov``) has lag-k correlation
ρ_k = Σ_j w_j·w_{j+k}/Σ_j w_j² = C·μᵏ (C = 1, or the constant of :func:`momentum_correlation`).
Newton–Schulz maps correlated inputs to less correlated outputs, as a sign does: for a sign of
Gaussians the output correlation is (2/π)·arcsin(ρ) (the arcsine law, Van Vleck 1943), and NS on
Gaussian 64×64 matrices measured within 0.06 of it (tall 32×16 and 128×32 inputs: between it and ρ
itself). With the arcsine law, K = 1 + (4/π)·Σ_{k≥1} arcsin(ρ_k) (μ = 0.95: 22.3 with Nesterov,
27.1 without; 1/Σw², the linear correlation's K, is 32.9 and 39). The decay removes 2d·‖W‖² per
step (to first order), so at equilibrium

    ‖W‖_F* = u·σ_rms·√min(A, B)·√(K/(2d)),     θ* = u·‖O‖_F/‖W‖_F* = √(2d/K) per step.

With decay_scaling ``"lr"`` that is ‖W‖* = ρ·‖O‖_F·√(lr·K/(2λ)) and θ* = √(2·lr·λ/K); the angle
does not depend on ρ or ‖O‖_F. Measured/predicted angle, batch 16, μ ∈ {0.9, 0.95} with and without
Nesterov: one matrix (32×32, 64×32 or 32×64) before a LayerNorm without affine and a readout to 32
random classes, 0.88–0.98 (‖W‖ 0.99–1.02 of its prediction in the tests' setting); the two hidden
matrices of a LayerNorm MLP on 2 random classes, 0.87–0.91 (the first) and 1.02–1.09 (the second).
Where a few directions dominate the gradient (few classes, large batches) NS does not keep the
gradient's orthogonality to W, ⟨O, W⟩ ≠ 0, and the angle was measured at 0.36–0.77× of the
prediction (2 or 8 classes or batch 64, without momentum). ``None`` (no prediction) with
``cautious`` or ``l1_decay`` (another decay) or d > 1.

**2. Lion's ℓ∞ bound** (Lion-𝒦, Chen et al. 2024, "Lion secretly solves constrained optimization:
as Lyapunov predicts"): every coordinate moves by lr_t·sign(c) and decays by d·w, so
|w| ≤ B ⇒ |w'| ≤ (1 − d)·B + lr_t = B for B = (lr_t/s_t)/λ (d ≤ 1), and |w| − B contracts by 1 − d per
step from outside. In decaylab's scalings: ‖w‖∞ ≤ 1/λ (``"lr"``, λ in torch's convention), lr_0/λ
(``"schedule"``), lr_0/(lr_t·λ) (``"corrected"``, at the current lr). With ``l1_decay`` λ₁ the
proximal step removes s_t·λ₁ more: B = (lr_t/s_t − λ₁)/λ. ``cautious`` decays only where
sign(c)·w ≥ 0, the others move outwards undecayed: no bound. The ball is attained: a coordinate
whose update sign stays the same converges to ±B.

**3. Muon's spectral-norm bound** (Chen, Li & Liu 2025, "Muon optimizes under spectral norm
constraints"): ‖W'‖₂ ≤ (1 − d)·‖W‖₂ + u·σ_max(O), so the ball ‖W‖₂ ≤ B is invariant and
attracting for

    B = (lr_t/s_t)·ρ·s_max/λ      (= ρ·s_max/λ with decay_scaling ``"lr"``),

the lr ratio ρ = u/lr_t as above for each ``adjust_lr_fn`` (a ``flatten``-ed kernel uses its
[out, in·k…] matrix); s_max = 1 for an exactly orthogonal O. The bound holds up to the bfloat16
rounding of O (measured: 0.02 % above s_max). ``None`` with ``cautious`` (masked decay) or
``l1_decay`` (an elementwise shrink, which does not bound the spectral norm).

A measured value *violates* a bound when it is more than :data:`ABOVE_RTOL` above it and
*saturates* it within :data:`SATURATED_RTOL` below (:func:`bound_status`).

Which rule a group runs is read by :func:`optimizer_kind`, the one place this module looks at
optimizer types.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from decaylab.diagnostics.optimizer_decay import GroupDecay, group_decay
from decaylab.optim._decay import scale_of_reading
from decaylab.optim.muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, DEFAULT_NS_STEPS, adjusted_lr

__all__ = ["GroupBounds", "group_bounds", "optimizer_kind", "tensor_predictions", "bound_status", "ns_output_sup",
           "ns_output_rms", "momentum_correlation", "PREDICTIONS", "ABOVE_RTOL", "SATURATED_RTOL"]

#: the per-tensor predictions :func:`tensor_predictions` returns, in its column order
PREDICTIONS = ("predicted_angle", "max_abs_bound", "predicted_norm", "spectral_bound")
#: a measured value more than this fraction above its bound violates it (rounding: bfloat16 NS, float32 steps)
ABOVE_RTOL = 0.01
#: a measured value within this fraction below its bound saturates it
SATURATED_RTOL = 0.1



def optimizer_kind(optimizer: torch.optim.Optimizer, group: dict, decay: GroupDecay | None = None) -> str | None:
    """``"muon"``, ``"lion"`` or ``None``: which update rule ``group`` (one of ``optimizer.param_groups``)
    runs, read from the one table of optimizers (:func:`decaylab.diagnostics.optimizer_decay.group_decay`:
    decaylab's and torch's ``Muon``, a :class:`~decaylab.optim.MuonAdamW` group with ``use_muon=True``,
    decaylab's ``Lion``); anything else ``None``."""
    family = (decay or group_decay(optimizer, group)).family      # ``decay``: the group's reading, if read
    return family if family in ("muon", "lion") else None


def momentum_correlation(momentum: float, nesterov: bool) -> float:
    """K = 1 + (4/π)·Σ_{k≥1} arcsin(ρ_k): the growth factor of a random walk whose steps are the
    orthogonalized momentum (module docstring, section 1), ρ_k = C·μᵏ the lag-k correlation of the
    buffer on white gradients (C = 1, or C = (1 − μ)·μ·(1 − μ² + μ³/(1 + μ))/Σw² with ``nesterov``);
    1 at μ = 0, ``inf`` at μ ≥ 1."""
    mu = float(momentum)
    if mu >= 1:
        return math.inf
    if mu == 0:
        return 1.0
    c = 1.0
    if nesterov:
        c = (1 - mu) * mu * (1 - mu * mu + mu ** 3 / (1 + mu)) / ((1 - mu) / (1 + mu) * ((1 - mu) * (1 + mu) ** 3
                                                                                          + mu ** 4))
    lags = np.arange(1, int(math.log(1e-12) / math.log(mu)) + 2)
    return float(1 + 4 / math.pi * np.arcsin(np.minimum(c * mu ** lags, 1.0)).sum())


def _ns_map(x: np.ndarray, coefficients: Sequence[float], steps: int) -> np.ndarray:
    a, b, c = coefficients
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            x = a * x + b * x ** 3 + c * x ** 5
    return x


@lru_cache(maxsize=64)
def ns_output_sup(coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
                  steps: int = DEFAULT_NS_STEPS) -> float:
    """s_max = sup_{x ∈ (0, 1]} p^∘steps(x), the largest singular value Newton–Schulz can output in
    exact arithmetic (p(x) = a·x + b·x³ + c·x⁵): the maximum on a log grid of (1e-12, 1], refined
    on a fine grid around it; ``inf`` where the iteration diverges."""
    x = np.concatenate([np.logspace(-12, 0, 20001), np.linspace(0, 1, 20001)[1:]])
    y = np.abs(_ns_map(x, coefficients, steps))
    if not np.all(np.isfinite(y)):
        return math.inf
    k = int(np.argmax(y))
    xs = np.sort(x)
    i = int(np.searchsorted(xs, x[k]))
    fine = np.linspace(xs[max(i - 2, 0)], xs[min(i + 2, len(xs) - 1)], 20001)
    return float(max(y[k], np.abs(_ns_map(fine, coefficients, steps)).max()))


@lru_cache(maxsize=256)
def ns_output_rms(rows: int, cols: int, coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
                  steps: int = DEFAULT_NS_STEPS) -> float:
    """σ_rms of the Newton–Schulz output for a Gaussian ``rows``×``cols`` input: the RMS of
    p^∘steps(x) over x = σ/‖U‖_F, the singular values σ² = max·λ (λ ~ Marchenko–Pastur with ratio
    q = min/max, mean 1) over ‖U‖_F = √(rows·cols), integrated in s = √λ (x clipped to 1)."""
    m, big = min(rows, cols), max(rows, cols)
    if m == 1:
        return float(abs(_ns_map(np.array(1.0), coefficients, steps)))
    q = m / big
    lo, hi = 1 - math.sqrt(q), 1 + math.sqrt(q)
    s = np.linspace(lo, hi, 4097)
    density = np.sqrt(np.clip((hi ** 2 - s * s) * (s * s - lo ** 2), 0, None)) / (np.pi * q * np.maximum(s, 1e-300))
    values = _ns_map(np.minimum(s / math.sqrt(m), 1.0), coefficients, steps) ** 2
    return float(math.sqrt(np.trapezoid(values * density, s) / np.trapezoid(density, s)))


@dataclass(frozen=True)
class GroupBounds:
    """The decay of one Muon or Lion param group and what it predicts and bounds (the formulas of the
    module docstring); ``kind`` is ``"muon"`` or ``"lion"``, the Muon fields are unused for Lion."""

    kind: str
    lr: float
    peak_lr: float
    weight_decay: float
    decay_scaling: str = "lr"
    cautious: bool = False
    l1_decay: float = 0.0
    momentum: float = 0.95
    nesterov: bool = True
    adjust_lr_fn: str | None = None
    update_rms: float | None = None
    ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C)
    ns_steps: int = DEFAULT_NS_STEPS
    flatten: bool = False

    @property
    def step_decay(self) -> float:
        """d = s_t·λ, the fraction of the weights one step's decay removes (the unadjusted lr's s_t)."""
        return scale_of_reading(self.decay_scaling, self.lr, self.peak_lr) * self.weight_decay

    @property
    def lr_per_scale(self) -> float | None:
        """lr_t/s_t: 1 (``"lr"``), lr_0 (``"schedule"``), lr_0/lr_t (``"corrected"``); ``None`` when s_t = 0."""
        scale = scale_of_reading(self.decay_scaling, self.lr, self.peak_lr)
        return self.lr / scale if scale > 0 else None

    def _plain_decay(self) -> bool:
        """Decoupled L2 decay alone, with 0 < d ≤ 1: the setting of every formula here."""
        return not self.cautious and self.l1_decay == 0 and 0 < self.step_decay <= 1

    @property
    def equilibrium_angle(self) -> float | None:
        """Muon: θ* = √(2d/K) per step (0 without decay); ``None`` for Lion, cautious or L1 decay, d > 1."""
        if self.kind != "muon" or self.cautious or self.l1_decay != 0 or self.step_decay > 1:
            return None
        return math.sqrt(2 * self.step_decay / momentum_correlation(self.momentum, self.nesterov))

    @property
    def max_abs_bound(self) -> float | None:
        """Lion: B = (lr_t/s_t − λ₁)/λ, the ℓ∞ ball; ``None`` for Muon, cautious, no decay or d > 1."""
        if self.kind != "lion" or self.cautious or not 0 < self.step_decay <= 1:
            return None
        scale = scale_of_reading(self.decay_scaling, self.lr, self.peak_lr)
        return max(self.lr_per_scale - self.l1_decay, 0.0) / self.weight_decay if scale > 0 else None

    def matrix_shape(self, shape: Sequence[int]) -> tuple[int, int] | None:
        """The A×B matrix Muon orthogonalizes for a parameter of ``shape`` (``flatten``: [out, in·k…])."""
        if len(shape) == 2 or (self.flatten and len(shape) > 2):
            return int(shape[0]), int(math.prod(shape[1:]))
        return None

    def lr_ratio(self, shape: Sequence[int]) -> float | None:
        """ρ = u/lr_t for a Muon parameter of ``shape``, from ``adjust_lr_fn``/``update_rms``."""
        matrix = self.matrix_shape(shape)
        return None if self.kind != "muon" or matrix is None else adjusted_lr(1.0, self.adjust_lr_fn, matrix,
                                                                              self.update_rms)

    def spectral_bound(self, shape: Sequence[int]) -> float | None:
        """Muon: B = (lr_t/s_t)·ρ·s_max/λ, the spectral-norm ball; ``None`` where it does not apply."""
        ratio = self.lr_ratio(shape)
        if ratio is None or not self._plain_decay():
            return None
        bound = self.lr_per_scale * ratio * ns_output_sup(tuple(map(float, self.ns_coefficients)), self.ns_steps)
        return bound / self.weight_decay if math.isfinite(bound) else None

    def equilibrium_norm(self, shape: Sequence[int]) -> float | None:
        """Muon: ‖W‖_F* = u·σ_rms·√min(A, B)·√(K/(2d)) of a scale-invariant matrix of ``shape``."""
        ratio = self.lr_ratio(shape)
        if ratio is None or not self._plain_decay():
            return None
        rows, cols = self.matrix_shape(shape)
        rms = ns_output_rms(rows, cols, tuple(map(float, self.ns_coefficients)), self.ns_steps)
        k = momentum_correlation(self.momentum, self.nesterov)
        return self.lr * ratio * rms * math.sqrt(min(rows, cols) * k / (2 * self.step_decay))


def group_bounds(optimizer: torch.optim.Optimizer, group: dict, decay: GroupDecay | None = None) -> GroupBounds | None:
    """The :class:`GroupBounds` of a Muon or Lion ``group`` of ``optimizer``; ``None`` for other rules.
    A group without decaylab's keys (torch's Muon) decays with decay_scaling ``"lr"``."""
    kind = optimizer_kind(optimizer, group, decay)
    if kind is None:
        return None
    lr = float(group.get("lr", 0.0))
    common = dict(kind=kind, lr=lr, peak_lr=float(group.get("decay_reference_lr", group.get("initial_lr", lr))),
                  weight_decay=float(group.get("weight_decay", 0.0)),
                  decay_scaling=group.get("decay_scaling", "lr"), cautious=bool(group.get("cautious", False)),
                  l1_decay=float(group.get("l1_decay", 0.0)))
    if kind == "lion":
        return GroupBounds(**common)
    coefficients = group.get("ns_coefficients", (DEFAULT_A, DEFAULT_B, DEFAULT_C))
    return GroupBounds(**common, momentum=float(group.get("momentum", 0.95)),
                       nesterov=bool(group.get("nesterov", True)), adjust_lr_fn=group.get("adjust_lr_fn"),
                       update_rms=group.get("update_rms"), ns_coefficients=tuple(float(c) for c in coefficients),
                       ns_steps=int(group.get("ns_steps", DEFAULT_NS_STEPS)), flatten=bool(group.get("flatten", False)))


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def tensor_predictions(optimizer: torch.optim.Optimizer, group: dict, shapes: Sequence[Sequence[int]],
                       decay: GroupDecay | None = None) -> np.ndarray:
    """The :data:`PREDICTIONS` for parameters of ``shapes`` in ``group``, one row each (NaN: none).

    Muon groups: the equilibrium angle and norm and the spectral bound (section 1 and 3 of the module
    docstring); Lion groups: the ℓ∞ bound (section 2; no angle: Lion's sign of a two-β interpolation
    has no equilibrium-angle derivation here); other groups: the equilibrium angle and AdamW's 1/λ
    bound of :class:`decaylab.diagnostics.optimizer_decay.GroupDecay` (``decay``: the group's reading, if the
    caller has it; else it is read here, once).
    """
    out = np.full((len(shapes), len(PREDICTIONS)), np.nan)
    decay = decay or group_decay(optimizer, group)
    bounds = group_bounds(optimizer, group, decay)
    if bounds is None:
        out[:, 0], out[:, 1] = _or_nan(decay.equilibrium_angle), _or_nan(decay.max_abs_bound)
    elif bounds.kind == "lion":
        out[:, 1] = _or_nan(bounds.max_abs_bound)
    else:
        out[:, 0] = _or_nan(bounds.equilibrium_angle)
        for i, shape in enumerate(shapes):
            out[i, 2], out[i, 3] = _or_nan(bounds.equilibrium_norm(shape)), _or_nan(bounds.spectral_bound(shape))
    return out


def bound_status(value: float | None, bound: float | None) -> str | None:
    """``"above"`` when ``value`` exceeds ``bound`` by more than :data:`ABOVE_RTOL`, ``"at"`` when it is
    within :data:`SATURATED_RTOL` below it (or above by less than ABOVE_RTOL), else ``None`` (also
    when either is missing or NaN)."""
    if value is None or bound is None or value != value or bound != bound:
        return None
    if value > bound * (1 + ABOVE_RTOL):
        return "above"
    return "at" if value >= bound * (1 - SATURATED_RTOL) else None
