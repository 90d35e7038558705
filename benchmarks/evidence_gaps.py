"""How far the full / kron / diag Laplace evidences are from the exact (brute-force) ones on tiny networks.

For a tiny tanh MLP (3-4-3, cross-entropy, 30 rows; and 3-4-2 with mse) trained to a mode of
``mean loss + (λ/2)‖w‖²`` by L-BFGS, prints each approximation's log evidence at that λ next to

- the exact-GGN evidence (explicit ``J_nᵀ Λ_n J_n`` per row): the GGN approximations' own target;
- the exact-Hessian evidence (``torch.autograd.functional.hessian`` of the summed NLL): Laplace proper.

The brute-force code is ``tests/evidence_bruteforce.py`` (the tests check the exact cases: full = GGN
always, kron = GGN for one row or one linear layer, everything = Hessian at zero residual).

    python benchmarks/evidence_gaps.py
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from evidence_bruteforce import block_mask, evidence, ggn, hessian, precision_vector  # noqa: E402


def trained(kind: str, lam: float, seed: int = 3):
    torch.manual_seed(seed)
    n_out = 3 if kind == "cross_entropy" else 2
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, n_out)).double()
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = torch.arange(30) % 3 if kind == "cross_entropy" else torch.stack([X[:, 0].sin(), X[:, 1] * X[:, 2]], 1)
    loss_fn = nn.functional.cross_entropy if kind == "cross_entropy" else nn.functional.mse_loss
    opt = torch.optim.LBFGS(model.parameters(), max_iter=1000, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(X), y) + 0.5 * lam * sum(p.pow(2).sum() for n, p in model.named_parameters()
                                                       if n.endswith("weight"))
        loss.backward()
        return loss
    opt.step(closure)
    return model, X, y


def main() -> None:
    import decaylab

    for kind, lam in (("cross_entropy", 0.02), ("mse", 0.01)):
        model, X, y = trained(kind, lam)
        sigma = 0.3 if kind == "mse" else 1.0
        H = hessian(model, X, y, kind, sigma)
        G = ggn(model, X, kind, sigma)
        print(f"\n{kind}: tiny MLP {[p.shape for p in model.parameters()][0][1]}-4-{len(model(X[:1])[0])}, "
              f"{len(X)} rows, λ = {lam}" + (f", σ = {sigma}" if kind == "mse" else "")
              + f"; max |Hessian − GGN| = {float((H - G).abs().max()):.3g}")
        print(f"{'approximation':>14} {'log evidence':>13} {'− exact GGN':>12} {'− exact Hessian':>16}")
        for approx in ("full", "kron", "diag"):
            res = decaylab.marglik(model, (X, y), hessian=approx, loss=kind, weight_decay=lam,
                                   sigma=sigma if kind == "mse" else None, optimize=False)
            prec = precision_vector(model, res.groups, res.prior_precision, res.no_decay_precision)
            exact_ggn = evidence(model, X, y, kind, G, prec, sigma)
            exact_h = evidence(model, X, y, kind, H, prec, sigma)
            print(f"{approx:>14} {res.log_evidence:13.4f} {res.log_evidence - exact_ggn:+12.4f} "
                  f"{res.log_evidence - exact_h:+16.4f}")
        prec = precision_vector(model, res.groups, res.prior_precision, res.no_decay_precision)
        print(f"{'block-diag GGN':>14} {evidence(model, X, y, kind, G * block_mask(model), prec, sigma):13.4f}  "
              f"(what kron approximates per layer)")


if __name__ == "__main__":
    main()
