"""The Laplace approximation of the log evidence (log marginal likelihood) for full, Kronecker and diagonal GGNs.

With a Gaussian prior ``θ_p ~ N(0, 1/δ_p)`` (one precision per parameter tensor, shared within a
group) and the mode ``θ*`` of ``log p(D | θ) + log p(θ)``, Laplace's method (MacKay 1992;
Immer et al. 2021, eq. 3) gives

    log p(D | δ) ≈ log p(D | θ*) − ½·Σ_p δ_p θ*_p² − ½·[log det(H + diag δ) − Σ_p log δ_p]

(the ``(P/2)·log 2π`` of the prior and of the Gaussian integral cancel), with ``H`` the GGN of
``−log p(D | θ)`` (:mod:`.curvature`; for mse ``H = G_unit/σ²``). The log-determinant is

- ``full``: ``2·Σ log diag(chol(G/σ² + diag δ))``;
- ``diag``: ``Σ_p log(g_p/σ² + δ_p)``;
- ``kron``: per K-FAC block with eigenvalues ``α_i`` of ``A/N`` and ``γ_j`` of ``G``, and one
  precision δ for the whole weight tensor, ``Σ_ij log(α_i γ_j/σ² + δ)`` (the eigenvalues of
  ``A ⊗ G + δ I`` are ``α_i γ_j + δ``); exact bias blocks ``Σ_j log(e_j/σ² + δ)``; diagonal blocks
  as ``diag``.

Every function here is differentiable in the precisions and σ (the curvature is fixed), which is
what :mod:`.optimize` maximizes over.
"""

from __future__ import annotations

import torch

from decaylab.evidence.curvature import Curvature


def expand(values: dict[str, torch.Tensor], names: list[str], sizes: list[int]) -> torch.Tensor:
    """One value per parameter tensor → one per parameter entry (concatenated in ``names`` order)."""
    return torch.cat([values[k].reshape(1).expand(s) for k, s in zip(names, sizes)])


def log_det_posterior(curv: Curvature, precision: dict[str, torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """``log det(scale·GGN + diag δ)`` for the approximation in ``curv`` (``scale = 1/σ²`` or 1)."""
    if curv.kind == "full":
        matrix = curv.matrix * scale + torch.diag(expand(precision, curv.names, curv.sizes))
        return 2.0 * torch.log(torch.diagonal(torch.linalg.cholesky(matrix))).sum()
    if curv.kind == "diag":
        return torch.log(curv.diagonal * scale + expand(precision, curv.names, curv.sizes)).sum()
    total = torch.zeros((), dtype=torch.float64)
    for name, (eig_a, eig_g) in curv.kron_blocks.items():
        total = total + torch.log(torch.outer(eig_a, eig_g) * scale + precision[name]).sum()
    for name, eig in curv.exact_blocks.items():
        total = total + torch.log(eig * scale + precision[name]).sum()
    for name, diag in curv.diagonal_blocks.items():
        total = total + torch.log(diag * scale + precision[name]).sum()
    return total


def log_evidence(curv: Curvature, log_lik: torch.Tensor, sq_norms: dict[str, torch.Tensor],
                 precision: dict[str, torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """The Laplace log evidence ``log p(D | θ*) − ½(log det ratio + scatter)`` (module docstring)."""
    log_det_prior = sum(s * torch.log(precision[k]) for k, s in zip(curv.names, curv.sizes))
    scatter = sum(precision[k] * sq_norms[k] for k in curv.names)
    return log_lik - 0.5 * (log_det_posterior(curv, precision, scale) - log_det_prior + scatter)


def effective_parameters(curv: Curvature, precision: dict[str, torch.Tensor], scale: torch.Tensor) -> float:
    """MacKay's effective number of parameters ``γ = tr((H + D)⁻¹ H)`` — how many parameters the data
    determine — i.e. ``Σ_i h_i/(h_i + δ_i)`` over the eigenvalues of each block (``kron``) or the diagonal
    entries (``diag``); ``full`` takes the trace itself."""
    with torch.no_grad():
        if curv.kind == "full":
            H = curv.matrix * scale
            D = torch.diag(expand(precision, curv.names, curv.sizes))
            return float(torch.trace(torch.linalg.solve(H + D, H)))
        if curv.kind == "diag":
            h = curv.diagonal * scale
            return float((h / (h + expand(precision, curv.names, curv.sizes))).sum())
        total = 0.0
        for name, (eig_a, eig_g) in curv.kron_blocks.items():
            h = torch.outer(eig_a, eig_g) * scale
            total += float((h / (h + precision[name])).sum())
        for blocks in (curv.exact_blocks, curv.diagonal_blocks):
            for name, eig in blocks.items():
                h = eig * scale
                total += float((h / (h + precision[name])).sum())
        return total
