"""The generalized Gauss-Newton (GGN) of the negative log-likelihood: full, diagonal and Kronecker-factored.

For outputs ``f_n = f(x_n; θ)`` with per-row Jacobian ``J_n = ∂f_n/∂θ`` (``C × P``) and the
likelihood's output Hessian ``Λ_n = L_n L_nᵀ`` (:mod:`.likelihood`), the GGN is

    G = Σ_n J_nᵀ Λ_n J_n = Σ_n Σ_k v_nk v_nkᵀ,    v_nk = J_nᵀ L_n[:, k].

It equals the Hessian of ``−log p(D | θ)`` for a model linear in θ and drops the terms with the
model's second derivatives otherwise (it is positive semi-definite everywhere).

- ``full``: ``G`` itself (``P × P``): per-row Jacobians by ``torch.func.vmap(torch.func.jacrev(…))``
  over rows, in chunks.
- ``diag``: ``diag(G) = Σ_n Σ_k v_nk²``. For ``Linear``/``Conv2d`` weights and biases from the same
  pullbacks as ``kron`` (below): the weight entry ``(o, i)`` of ``v_nk`` is ``Σ_t S_nkt[o]·a_nt[i]``
  with ``S_nk = B_nᵀ L_n[:, k]`` — exact, one vjp per ``k`` instead of a Jacobian per row; other
  parameters from per-row Jacobians as for ``full``.
- ``kron`` (K-FAC; Martens & Grosse 2015, for convolutions KFC/"K-FAC expand", Grosse & Martens
  2016, Eschenhagen et al. 2023): for a ``Linear`` layer ``s = W a + b`` the GGN block of ``W`` is
  ``Σ_n (a_n a_nᵀ) ⊗ (B_nᵀ Λ_n B_n)`` with ``B_n = ∂f_n/∂s_n``; K-FAC replaces the sum of products
  by the product of sums, ``(1/N)·A ⊗ G`` with ``A = Σ_n a_n a_nᵀ`` and ``G = Σ_n B_nᵀ Λ_n B_n``. For
  a ``Conv2d`` the ``T`` output positions act as extra rows: ``a_nt`` are the unfolded input
  patches and ``(1/(N·T))·(Σ_nt a a ᵀ) ⊗ (Σ_nt B_ntᵀ Λ_n B_nt)``. The block of a bias is kept exact:
  ``Σ_n (Σ_t B_nt)ᵀ Λ_n (Σ_t B_nt)`` (the bias–weight cross terms are dropped). ``B_nᵀ L_n[:, k]``
  comes from one ``torch.func.vjp`` through zero perturbations added to each layer's output,
  vmapped over ``k`` — or, for a plain ReLU MLP, from the same chain rule written out
  (``S ← (S·W)·𝕀(s > 0)`` layer by layer, no hooks or transforms). Every other parameter (norm
  layers, embeddings, a grouped convolution) gets its exact diagonal. K-FAC is exact for one row
  (``N = T = 1``) and for a single ``Linear`` layer under the Gaussian likelihood (``Λ`` constant).

Curvature is computed in evaluation mode (dropout off, batch-norm running statistics) with
the unit-noise Gaussian factor for mse (scale by ``1/σ²`` afterwards): products in the model's
dtype, sums over chunks of rows and everything after them in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, jacrev, vjp, vmap

from decaylab.evidence.likelihood import output_hessian_factor

HESSIANS = ("full", "kron", "diag")


@dataclass
class Curvature:
    """A GGN approximation over the parameters ``names`` (sizes ``sizes``, in that order).

    ``full``: ``matrix`` (``P × P``). ``diag``: ``diagonal`` (``P``). ``kron``: ``kron_blocks``
    ``{weight name: (eigenvalues of A/N, eigenvalues of G)}`` (the block's eigenvalues are all
    products), ``exact_blocks`` ``{bias name: eigenvalues of its exact block}`` and
    ``diagonal_blocks`` ``{name: diagonal}`` for the rest.
    """

    kind: str
    names: list[str]
    sizes: list[int]
    matrix: torch.Tensor | None = None
    diagonal: torch.Tensor | None = None
    kron_blocks: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    exact_blocks: dict[str, torch.Tensor] = field(default_factory=dict)
    diagonal_blocks: dict[str, torch.Tensor] = field(default_factory=dict)


def _outputs_2d(out: torch.Tensor) -> torch.Tensor:
    return out.reshape(out.shape[0], -1)


def per_row_jacobian_products(model: nn.Module, params: dict, buffers: dict, X: torch.Tensor, kind: str,
                              names: list[str]) -> torch.Tensor:
    """``V`` of shape ``[n, K, P]``: ``v_nk = J_nᵀ L_n[:, k]`` for the parameters ``names`` (others fixed)."""
    fixed = {k: v for k, v in params.items() if k not in names}

    def f(p, x):
        return functional_call(model, {**fixed, **p, **buffers}, (x.unsqueeze(0),)).reshape(-1)

    chosen = {k: params[k] for k in names}
    jac = vmap(jacrev(f), in_dims=(None, 0))(chosen, X)          # name -> [n, C, *shape]
    with torch.no_grad():
        out = _outputs_2d(functional_call(model, {**params, **buffers}, (X,)))
    L = output_hessian_factor(kind, out.double())                  # [n, C, K]
    J = torch.cat([jac[k].flatten(2) for k in names], dim=2).double()   # [n, C, P]
    return torch.einsum("ncp,nck->nkp", J, L)


def ggn_full_or_diag(model: nn.Module, X: torch.Tensor, kind: str, which: str, names: list[str],
                     chunk: int = 256) -> torch.Tensor:
    """The full GGN (``which="full"``) or its diagonal (``"diag"``) over ``names``, summed over rows in chunks."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    total = None
    for start in range(0, len(X), chunk):
        V = per_row_jacobian_products(model, params, buffers, X[start:start + chunk], kind, names)
        part = torch.einsum("nkp,nkq->pq", V, V) if which == "full" else V.pow(2).sum((0, 1))
        total = part if total is None else total + part
    return total


def _kron_modules(model: nn.Module, names: set[str]) -> dict[str, nn.Module]:
    """Modules whose weight gets a K-FAC block: ``Linear`` and ungrouped zero-padded ``Conv2d`` layers."""
    found = {}
    for mod_name, m in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if f"{prefix}weight" not in names:
            continue
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros"
                                        and not isinstance(m.padding, str)):
            found[mod_name] = m
    return found


def _layer_inputs(module: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """``[n, T, d]`` rows of the Kronecker factor A: the input (``T = 1``) or the unfolded patches of a conv."""
    if isinstance(module, nn.Linear):
        return a.reshape(a.shape[0], 1, -1)
    patches = nn.functional.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding,
                                   stride=module.stride)                     # [n, d, T]
    return patches.transpose(1, 2)


KRON_CHUNK_ELEMENTS = 2 ** 25    # rows per chunk of kron_factors: about this many elements of S and a at once


def kron_factors(model: nn.Module, X: torch.Tensor, kind: str, names: list[str], chunk: int | None = None,
                 diagonal: bool = False):
    """``(modules, A sums, G sums, bias blocks, T per layer)`` for the ``Linear``/``Conv2d`` layers among
    ``names``; with ``diagonal=True`` the exact GGN diagonals of their weights and biases instead of A, G and
    the bias blocks."""
    modules = _kron_modules(model, set(names))
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    A = {m: 0.0 for m in modules}
    G = {m: 0.0 for m in modules}
    Gb = {m: 0.0 for m in modules}
    positions = {}
    if chunk is None:
        chunk = _rows_per_chunk(model, modules, params, buffers, X)
    relu_layers = _relu_mlp_layers(model, modules)
    for start in range(0, len(X), chunk):
        x = X[start:start + chunk]
        if relu_layers is not None:
            inputs, S = _relu_mlp_pullbacks(relu_layers, x, kind)
        else:
            inputs, S = _pullbacks(model, modules, params, buffers, x, kind)
        for name, m in modules.items():
            a = _layer_inputs(m, inputs[name][0])                            # [n, T, d]
            s = S[name].flatten(3) if S[name].dim() > 3 else S[name].unsqueeze(3)   # [K, n, o, T]
            positions[name] = a.shape[1]
            sb = s.sum(3)                                                    # [K, n, o]
            if diagonal:
                if a.shape[1] == 1:
                    A[name] = A[name] + (sb.pow(2).sum(0).T @ a[:, 0].pow(2)).double()
                else:
                    A[name] = A[name] + torch.einsum("knot,ntd->knod", s, a).pow(2).sum((0, 1)).double()
                Gb[name] = Gb[name] + sb.pow(2).sum((0, 1)).double()
                continue
            a2 = a.reshape(-1, a.shape[2])                                   # rows (n, t)
            s2 = s.permute(0, 1, 3, 2).reshape(-1, s.shape[2])               # rows (k, n, t)
            A[name] = A[name] + (a2.T @ a2).double()
            g = (s2.T @ s2).double()
            G[name] = G[name] + g
            sb2 = sb.reshape(-1, sb.shape[2])
            Gb[name] = Gb[name] + (g if a.shape[1] == 1 else (sb2.T @ sb2).double())   # T = 1: the bias block is G
    return modules, A, G, Gb, positions


def _pullbacks(model, modules, params, buffers, x, kind) -> tuple[dict, dict]:
    """``({layer: (input, output)}, {layer: S})`` with ``S[k] = B_nᵀ L_n[:, k]`` ``[K, n, out, *spatial]``: forward
    hooks record each layer's input and output, one ``torch.func.vjp`` through zero perturbations added to the
    layers' outputs, vmapped over the columns ``k`` of ``L``."""
    inputs, perturb = {}, {}
    handles = [m.register_forward_hook(_recorder(inputs, name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            out = _outputs_2d(functional_call(model, {**params, **buffers}, (x,)))
    finally:
        for h in handles:
            h.remove()
    zeros = {name: torch.zeros_like(inputs[name][1]) for name in modules}
    handles = [m.register_forward_hook(_adder(perturb, name)) for name, m in modules.items()]
    try:
        def forward(z):
            perturb.clear()
            perturb.update(z)
            return _outputs_2d(functional_call(model, {**params, **buffers}, (x,)))
        _, pullback = vjp(forward, zeros)
        L = output_hessian_factor(kind, out.double()).to(out.dtype)     # [n, C, K]
        S = vmap(pullback)(L.permute(2, 0, 1).contiguous())[0]          # name -> [K, n, out, *spatial]
    finally:
        for h in handles:
            h.remove()
        perturb.clear()
    return inputs, S


def _relu_mlp_layers(model: nn.Module, modules: dict[str, nn.Module]) -> list[tuple[str, nn.Linear]] | None:
    """The ``Linear`` layers of a plain ReLU MLP — an ``nn.Sequential`` (or :class:`decaylab.models.MLP`) of
    ``Linear (→ ReLU → Linear)*`` whose every weight has a K-FAC block — else ``None``."""
    from decaylab.models import sequential_layers

    plain = sequential_layers(model)
    if plain is None:
        return None
    layers, prefix = plain
    found = []
    for i, layer in enumerate(layers):
        want = nn.Linear if i % 2 == 0 else nn.ReLU
        if type(layer) is not want:
            return None
        if want is nn.Linear:
            if f"{prefix}{i}" not in modules:
                return None
            found.append((f"{prefix}{i}", layer))
    return found if len(layers) % 2 == 1 and len(found) == len(modules) else None


def _relu_mlp_pullbacks(layers: list[tuple[str, nn.Linear]], x: torch.Tensor, kind: str) -> tuple[dict, dict]:
    """:func:`_pullbacks` of a plain ReLU MLP by hand: forward ``s_i = a_i·W_iᵀ + b_i``, ``a_{i+1} = relu(s_i)``;
    ``S`` of the last layer is ``L`` itself, then ``S_{i−1} = (S_i·W_i)·𝕀(s_{i−1} > 0)``."""
    inputs = {}
    with torch.no_grad():
        h = x
        for i, (name, layer) in enumerate(layers):
            s = nn.functional.linear(h, layer.weight, layer.bias)
            inputs[name] = (h, s)
            h = s.relu() if i + 1 < len(layers) else s
        out = _outputs_2d(h)
        L = output_hessian_factor(kind, out.double()).to(out.dtype)     # [n, C, K]
        pulled = L.permute(2, 0, 1)                                      # [K, n, C]
        S = {}
        for i in range(len(layers) - 1, -1, -1):
            name, layer = layers[i]
            S[name] = pulled
            if i > 0:
                pulled = (pulled @ layer.weight) * (inputs[layers[i - 1][0]][1] > 0)
    return inputs, S


def _rows_per_chunk(model, modules, params, buffers, X) -> int:
    """Rows such that one chunk's pullbacks ``[K, rows, out, T]`` and inputs hold ≤ KRON_CHUNK_ELEMENTS values."""
    seen = {}
    handles = [m.register_forward_hook(_recorder(seen, name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            k = _outputs_2d(functional_call(model, {**params, **buffers}, (X[:1],))).shape[1]
    finally:
        for h in handles:
            h.remove()
    per_row = sum(k * out.numel() + _layer_inputs(modules[name], a).numel() for name, (a, out) in seen.items())
    return max(1, min(len(X), KRON_CHUNK_ELEMENTS // max(per_row, 1)))


def _recorder(store: dict, name: str):
    def hook(module, args, output):
        store[name] = (args[0].detach(), output.detach())
    return hook


def _adder(perturb: dict, name: str):
    def hook(module, args, output):
        return output + perturb[name] if name in perturb else output
    return hook


def compute_curvature(model: nn.Module, X: torch.Tensor, kind: str, hessian: str, names: list[str],
                      chunk: int = 256) -> Curvature:
    """The GGN approximation ``hessian`` (``"full"``, ``"kron"``, ``"diag"``) of ``model`` on rows ``X``."""
    params = dict(model.named_parameters())
    sizes = [params[k].numel() for k in names]
    if hessian == "full":
        return Curvature("full", names, sizes, matrix=ggn_full_or_diag(model, X, kind, "full", names, chunk))
    if hessian == "diag":
        return _diagonal(model, X, kind, names, sizes, chunk)
    curv = Curvature("kron", names, sizes)
    modules, A, G, Gb, positions = kron_factors(model, X, kind, names)
    covered = set()
    n = len(X)
    for mod_name, m in modules.items():
        prefix = f"{mod_name}." if mod_name else ""
        scale = n * positions[mod_name]
        eig_a = torch.linalg.eigvalsh(A[mod_name] / scale).clamp_min(0.0)
        eig_g = torch.linalg.eigvalsh(G[mod_name]).clamp_min(0.0)
        curv.kron_blocks[f"{prefix}weight"] = (eig_a, eig_g)
        covered.add(f"{prefix}weight")
        if m.bias is not None and f"{prefix}bias" in names:
            one_position = positions[mod_name] == 1       # a Linear: the bias block is G itself (same sums)
            curv.exact_blocks[f"{prefix}bias"] = eig_g if one_position else \
                torch.linalg.eigvalsh(Gb[mod_name]).clamp_min(0.0)
            covered.add(f"{prefix}bias")
    rest = [k for k in names if k not in covered]
    if rest:
        diag = ggn_full_or_diag(model, X, kind, "diag", rest, chunk)
        offset = 0
        for k in rest:
            size = params[k].numel()
            curv.diagonal_blocks[k] = diag[offset:offset + size]
            offset += size
    return curv


def _diagonal(model: nn.Module, X: torch.Tensor, kind: str, names: list[str], sizes: list[int],
              chunk: int) -> Curvature:
    """The exact GGN diagonal: layer pullbacks for ``Linear``/``Conv2d``, per-row Jacobians for the rest."""
    modules, W, _, B, _ = kron_factors(model, X, kind, names, diagonal=True)
    parts: dict[str, torch.Tensor] = {}
    for mod_name, m in modules.items():
        prefix = f"{mod_name}." if mod_name else ""
        parts[f"{prefix}weight"] = W[mod_name].reshape(-1)
        if m.bias is not None and f"{prefix}bias" in names:
            parts[f"{prefix}bias"] = B[mod_name].reshape(-1)
    rest = [k for k in names if k not in parts]
    if rest:
        diag = ggn_full_or_diag(model, X, kind, "diag", rest, chunk)
        offset = 0
        for k, size in zip(names, sizes):
            if k in rest:
                parts[k] = diag[offset:offset + size]
                offset += size
    return Curvature("diag", names, sizes, diagonal=torch.cat([parts[k] for k in names]))
