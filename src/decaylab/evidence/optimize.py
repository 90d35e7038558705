"""Maximize the Laplace evidence over the prior precisions (and the Gaussian noise σ) with the curvature fixed.

The variables are ``log δ_g`` per prior group and, for mse, ``log σ`` (logs keep them positive and
make the problem well scaled). The objective is :func:`decaylab.evidence.laplace.log_evidence`
with ``θ*`` and the GGN held fixed (``θ*`` is the trained model; Immer et al. 2021 alternate this
step with training, :mod:`.online`). For one global δ and a model linear in θ the maximizer
satisfies MacKay's (1992) fixed point ``δ = γ/‖θ*‖²`` with ``γ = Σ_i h_i/(h_i + δ)``, and with
σ fitted ``σ² = ‖y − f‖²/(N·D − γ)``. It is found with L-BFGS (strong-Wolfe line search) in
float64; log-variables are clipped to ``[−40, 40]``.

Separable case (:func:`maximize_separable`): with σ fixed (cross-entropy, or a given σ) and a
diagonal or Kronecker-factored GGN, the log-determinant is a sum of ``log(h_i + δ_g)`` over the
eigenvalues ``h_i`` of each group's blocks (already scaled by ``1/σ²``), so the evidence is a sum of
one-dimensional functions, one per group, of ``u = log δ_g``:

    f_g(u) = −½·[Σ_{i∈g} log(h_i + e^u) − P_g·u + e^u·‖θ_g‖²],
    f_g′(u) = ½·[γ_g(δ) − δ·‖θ_g‖²],   γ_g(δ) = Σ_{i∈g} h_i/(h_i + δ),
    f_g″(u) = −½·[Σ_{i∈g} h_i·δ/(h_i + δ)² + δ·‖θ_g‖²] < 0.

Each ``f_g`` is strictly concave in ``u``, so its maximum is the one root of ``f_g′`` — MacKay's
fixed point ``δ = γ_g/‖θ_g‖²`` — found by Newton's method on ``f_g′`` kept inside a bracket that
bisection shrinks (a Newton step leaving it is replaced by the midpoint), to ``|Δu| ≤ 1e-12``.
No line search, no autograd; the same maximum L-BFGS finds on this problem.
"""

from __future__ import annotations

import math

import torch

from decaylab._checks import InputError
from decaylab.evidence.curvature import Curvature
from decaylab.evidence.laplace import log_evidence
from decaylab.evidence.likelihood import log_likelihood
from decaylab.evidence.prior import PriorStructure

LOG_BOUND = 40.0


class EvidenceObjective:
    """``log p(D | δ, σ)`` as a function of ``(log δ [groups], log σ)`` for a fixed model and curvature."""

    def __init__(self, curv: Curvature, structure: PriorStructure, kind: str, data_term: float, n_values: int,
                 sq_norms: dict[str, float], fixed_precision: float):
        self.curv, self.structure, self.kind = curv, structure, kind
        self.data_term = torch.tensor(float(data_term), dtype=torch.float64)
        self.n_values = n_values
        self.sq_norms = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in sq_norms.items()}
        self.fixed = torch.tensor(float(fixed_precision), dtype=torch.float64)

    def precisions(self, log_prec: torch.Tensor) -> dict[str, torch.Tensor]:
        index = {g: i for i, g in enumerate(self.structure.groups)}
        prec = torch.exp(log_prec.clamp(-LOG_BOUND, LOG_BOUND))
        return {k: (self.fixed if g is None else prec[index[g]]) for k, g in self.structure.group_of.items()}

    def __call__(self, log_prec: torch.Tensor, log_sigma: torch.Tensor | None) -> torch.Tensor:
        sigma = None if log_sigma is None else torch.exp(log_sigma.clamp(-LOG_BOUND, LOG_BOUND))
        scale = torch.ones((), dtype=torch.float64) if sigma is None else sigma ** -2
        log_lik = log_likelihood(self.kind, self.data_term, self.n_values, sigma)
        return log_evidence(self.curv, log_lik, self.sq_norms, self.precisions(log_prec), scale)


def maximize(objective: EvidenceObjective, log_prec: torch.Tensor, log_sigma: torch.Tensor | None, *,
             max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``(log δ, log σ, log evidence)`` at the maximum found by L-BFGS from the given start."""
    log_prec = log_prec.detach().double().clone().requires_grad_(True)
    variables = [log_prec]
    if log_sigma is not None:
        log_sigma = log_sigma.detach().double().clone().requires_grad_(True)
        variables.append(log_sigma)
    opt = torch.optim.LBFGS(variables, lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -objective(log_prec, log_sigma)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        value = float(objective(log_prec, log_sigma))
    return log_prec.detach(), None if log_sigma is None else log_sigma.detach(), value


def group_eigenvalues(objective: EvidenceObjective, scale: float) -> dict[str, torch.Tensor]:
    """The eigenvalues ``h_i`` (times ``scale = 1/σ²``) of the GGN blocks of each learned prior group, for a
    ``kron`` or ``diag`` curvature: each group's blocks are diagonal in one basis (Kronecker products of
    eigenbases, exact blocks' eigenbases, coordinates), so its log-determinant is ``Σ log(h_i + δ_g)``."""
    curv, structure = objective.curv, objective.structure
    per_tensor: dict[str, torch.Tensor] = {}
    if curv.kind == "diag":
        per_tensor = dict(zip(curv.names, torch.split(curv.diagonal, curv.sizes)))
    else:
        per_tensor.update({k: torch.outer(a, g).reshape(-1) for k, (a, g) in curv.kron_blocks.items()})
        per_tensor.update(curv.exact_blocks)
        per_tensor.update(curv.diagonal_blocks)
    parts: dict[str, list[torch.Tensor]] = {g: [] for g in structure.groups}
    for name, group in structure.group_of.items():
        if group is not None:
            parts[group].append(per_tensor[name].reshape(-1))
    return {g: torch.cat(v).double() * scale for g, v in parts.items()}


def maximize_separable(objective: EvidenceObjective, log_prec: torch.Tensor, log_sigma: torch.Tensor | None,
                       *, max_iter: int = 200) -> tuple[torch.Tensor, float]:
    """``(log δ, log evidence)`` at the maximum over ``log δ`` with σ fixed (``log_sigma``, or none), for a
    ``kron`` or ``diag`` curvature: one safeguarded Newton solve per group (module docstring)."""
    if objective.curv.kind not in ("kron", "diag"):
        raise InputError(f"maximize_separable needs a 'kron' or 'diag' curvature, got {objective.curv.kind!r}")
    scale = 1.0 if log_sigma is None else math.exp(-2.0 * float(log_sigma))
    eigen = group_eigenvalues(objective, scale)
    norms: dict[str, float] = {g: 0.0 for g in objective.structure.groups}
    for name, group in objective.structure.group_of.items():
        if group is not None:
            norms[group] += float(objective.sq_norms[name])
    start = log_prec.detach().double()
    found = [_newton_root(eigen[g], norms[g], float(start[i]), max_iter)
             for i, g in enumerate(objective.structure.groups)]
    result = torch.tensor(found, dtype=torch.float64)
    with torch.no_grad():
        value = float(objective(result, log_sigma))
    return result, value


def _newton_root(h: torch.Tensor, sq_norm: float, u: float, max_iter: int) -> float:
    """The root in ``[−LOG_BOUND, LOG_BOUND]`` of the decreasing ``φ(u) = γ(e^u) − e^u·sq_norm`` (the bound
    if φ keeps its sign there): Newton steps inside a bracket, bisection when a step leaves it."""
    def phi_and_slope(u: float) -> tuple[float, float]:
        delta = math.exp(u)
        ratio = h / (h + delta)                                   # h_i/(h_i + δ)
        phi = float(ratio.sum()) - delta * sq_norm
        slope = -float((ratio * (1.0 - ratio)).sum()) - delta * sq_norm     # h·δ/(h + δ)² = r·(1 − r)
        return phi, slope

    lo, hi = -LOG_BOUND, LOG_BOUND
    if phi_and_slope(hi)[0] >= 0:
        return hi
    if phi_and_slope(lo)[0] <= 0:
        return lo
    u = min(max(u, lo), hi)
    for _ in range(max_iter):
        phi, slope = phi_and_slope(u)
        if phi > 0:
            lo = u
        else:
            hi = u
        step = -phi / slope if slope < 0 else math.inf
        nxt = u + step
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - u) <= 1e-12 or hi - lo <= 1e-12:
            return nxt
        u = nxt
    return u
