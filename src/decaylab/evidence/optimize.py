"""Maximize the Laplace evidence over the prior precisions (and the Gaussian noise σ) with the curvature fixed.

The variables are ``log δ_g`` per prior group and, for mse, ``log σ`` (logs keep them positive and
make the problem well scaled). The objective is :func:`decaylab.evidence.laplace.log_evidence`
with ``θ*`` and the GGN held fixed (``θ*`` is the trained model; Immer et al. 2021 alternate this
step with training, :mod:`.online`). For one global δ and a model linear in θ the maximizer
satisfies MacKay's (1992) fixed point ``δ = γ/‖θ*‖²`` with ``γ = Σ_i h_i/(h_i + δ)``, and with
σ fitted ``σ² = ‖y − f‖²/(N·D − γ)``. It is found with L-BFGS (strong-Wolfe line search) in
float64; log-variables are clipped to ``[−40, 40]``.
"""

from __future__ import annotations

import torch

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
