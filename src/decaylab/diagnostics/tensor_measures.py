"""The per-tensor measurements the monitor takes, batched: norms and max|w| of many tensors with as few
kernel launches as torch allows (``torch._foreach_*``), and the rotation angle between two vectors from
their three norms by Kahan's formula (accurate for tiny angles, unlike arccos of the cosine)."""

from __future__ import annotations

import numpy as np
import torch


def kahan_angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Angle between two vectors of norms ``a`` and ``b`` whose difference has norm ``c`` (elementwise
    over arrays of norms), by Kahan's stable formula ("Miscalculating area and angles of a
    needle-like triangle", 2014): accurate to rounding even when the angle is tiny."""
    big, small = np.maximum(a, b), np.minimum(a, b)
    mu = np.where(small >= c, c - (big - small), small - (big - c))
    num = ((big - small) + c) * mu
    den = (big + (small + c)) * ((big - c) + small)
    return 2.0 * np.arctan2(np.sqrt(np.clip(num, 0, None)), np.sqrt(np.clip(den, 0, None)))


def tensor_max_abs(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """max|t| of each (non-empty) tensor, with as few kernel launches as torch allows."""
    if hasattr(torch, "_foreach_max"):
        return list(torch._foreach_max(torch._foreach_abs(tensors)))
    return [t.abs().max() for t in tensors]


_HALF = (torch.float16, torch.bfloat16)


def tensor_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """‖t‖₂ of each tensor, stacked: dense ones in one foreach call, in their own precision (half
    precision ones accumulated and returned in float32), sparse ones one by one."""
    out: list[torch.Tensor | None] = [None] * len(tensors)
    plain = [i for i, t in enumerate(tensors) if not t.is_sparse and t.dtype not in _HALF]
    for i, norm in zip(plain, torch._foreach_norm([tensors[i] for i in plain]) if plain else ()):
        out[i] = norm
    for i, t in enumerate(tensors):
        if out[i] is None:
            t = t.coalesce().values() if t.is_sparse else t
            out[i] = torch.linalg.vector_norm(t, dtype=torch.float32 if t.dtype in _HALF else None)
    return torch.stack(out)


def tensor_differences(after: list[torch.Tensor], before: list[torch.Tensor]) -> list[torch.Tensor]:
    """``after[i] − before[i]`` for each pair, in one foreach call."""
    return list(torch._foreach_sub(after, before))


def spectral_norms(matrices: list[torch.Tensor], vectors: list[torch.Tensor | None],
                   iterations: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Power-iteration estimates of ‖M‖₂ for each matrix (≥2-D tensors as ``[shape[0], -1]``), computed in
    float32 (float64 for float64 matrices) and stacked, with their right vectors to start from next time.

    From ``vectors[i]`` (``None``: a Gaussian start from a generator seeded 0), ``iterations`` steps of
    v ← Mᵀ(M·v)/‖Mᵀ(M·v)‖, then the estimate ‖M·v‖. It never exceeds ‖M‖₂ (v is a unit vector) and its
    error shrinks like (σ₂/σ₁)^(2k) after k steps in all; a persistent vector keeps those steps across
    calls while M changes slowly. When σ₂ ≈ σ₁ the vector converges slowly but the estimate, between
    σ₂ and σ₁, is close anyway; a zero matrix keeps its vector. Cost: 2·``iterations`` + 1
    matrix–vector products per matrix (a few kernels each, no synchronization with the host)."""
    norms, out = [], []
    for matrix, v in zip(matrices, vectors):
        m = matrix.detach().reshape(len(matrix), -1)
        m = m if m.dtype == torch.float64 else m.float()
        if v is None:
            generator = torch.Generator(device=m.device).manual_seed(0)
            v = torch.randn(m.shape[1], generator=generator, device=m.device, dtype=m.dtype)
            v = v / v.norm()
        for _ in range(iterations):  # a zero matrix keeps the vector it had (no division by 0)
            w = m.T @ (m @ v)
            norm = torch.linalg.vector_norm(w)
            v = torch.where(norm > 0, w / norm.clamp(min=torch.finfo(m.dtype).tiny), v)
        norms.append(torch.linalg.vector_norm(m @ v))
        out.append(v)
    return torch.stack(norms), out
