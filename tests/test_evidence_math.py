"""The Laplace evidence against closed forms and brute force: Bayesian linear regression, sklearn's
BayesianRidge, and the full / kron / diag GGN evidences against explicit GGNs and Hessians."""

import math

import pytest
import torch
from evidence_bruteforce import block_mask, evidence, ggn, hessian, precision_vector
from torch import nn

import decaylab
from decaylab.evidence.api import marglik


def _regression(n=60, d=5, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = X @ w + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def _linear(coef) -> nn.Linear:
    model = nn.Linear(len(coef), 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(coef, dtype=torch.float64).reshape(1, -1))
    return model


def _blr_log_evidence(X, y, delta, sigma):
    """log N(y; 0, σ² I + X Xᵀ/δ): Bayesian linear regression's evidence in closed form."""
    cov = sigma ** 2 * torch.eye(len(y), dtype=torch.float64) + X @ X.T / delta
    return float(torch.distributions.MultivariateNormal(torch.zeros(len(y), dtype=torch.float64), cov).log_prob(y))


@pytest.mark.parametrize("hessian_kind", ["full", "kron"])
def test_linear_model_evidence_equals_bayesian_linear_regression(hessian_kind):
    X, y = _regression()
    delta, sigma = 2.5, 0.4
    # the MAP of BLR: ridge with penalty δσ²
    coef = torch.linalg.solve(X.T @ X + delta * sigma ** 2 * torch.eye(X.shape[1], dtype=torch.float64), X.T @ y)
    lam = decaylab.evidence.precision_to_weight_decay(delta, "mse", len(y), 1, sigma)
    res = marglik(_linear(coef), (X, y), hessian=hessian_kind, loss="mse", weight_decay=lam, sigma=sigma,
                  optimize=False)
    assert res.log_evidence == pytest.approx(_blr_log_evidence(X, y, delta, sigma), rel=1e-10, abs=1e-9)
    assert res.prior_precision["decayed"] == pytest.approx(delta, rel=1e-12)


@pytest.mark.parametrize("hessian_kind", ["full", "kron"])
def test_linear_model_matches_sklearn_bayesian_ridge(hessian_kind):
    from sklearn.linear_model import BayesianRidge

    X, y = _regression(n=80, d=6, noise=0.5, seed=1)
    br = BayesianRidge(fit_intercept=False, alpha_1=0.0, alpha_2=0.0, lambda_1=0.0, lambda_2=0.0, tol=1e-12,
                       max_iter=100000, compute_score=True).fit(X.numpy(), y.numpy())
    # at BayesianRidge's fixed point, the evidence maximized with θ* held at its posterior mean lands on the
    # same hyperparameters: α (noise precision) = 1/σ², λ (weight precision) = δ
    res = marglik(_linear(br.coef_), (X, y), hessian=hessian_kind, loss="mse")
    assert res.prior_precision["decayed"] == pytest.approx(br.lambda_, rel=1e-5)
    assert 1 / res.sigma ** 2 == pytest.approx(br.alpha_, rel=1e-5)
    assert res.log_evidence == pytest.approx(_blr_log_evidence(X, y, br.lambda_, br.alpha_ ** -0.5), rel=1e-7)
    assert res.log_evidence == pytest.approx(br.scores_[-1], rel=1e-6)
    # MacKay's fixed point: δ = γ/‖θ‖²
    assert res.prior_precision["decayed"] == pytest.approx(res.effective_parameters / float((br.coef_ ** 2).sum()),
                                                           rel=1e-5)
    # and the coupled weight_decay that gives this MAP under torch's MSELoss (mean) is 2σ²δ/N
    assert res.lambda_ == pytest.approx(2 * res.sigma ** 2 * br.lambda_ / len(y), rel=1e-5)


def _tiny_mlp(seed=0, n_in=3, hidden=4, n_out=3, act=nn.Tanh):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), act(), nn.Linear(hidden, n_out)).double()


def _classification(n=24, n_in=3, n_out=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_in, generator=g, dtype=torch.float64)
    y = torch.arange(n) % n_out
    return X, y


def _brute(model, X, y, kind, H, res):
    prec = precision_vector(model, res.groups, res.prior_precision, res.no_decay_precision)
    return evidence(model, X, y, kind, H, prec, sigma=res.sigma or 1.0)


@pytest.mark.parametrize("per_layer", [False, True])
def test_full_and_diag_equal_brute_force_ggn(per_layer):
    model = _tiny_mlp()
    X, y = _classification()
    G = ggn(model, X, "cross_entropy")
    for kind, H in (("full", G), ("diag", torch.diag(torch.diagonal(G)))):
        res = marglik(model, (X, y), hessian=kind, per_layer=per_layer, weight_decay=0.05)
        assert res.log_evidence == pytest.approx(_brute(model, X, y, "cross_entropy", H, res), rel=1e-9)
        assert res.log_evidence >= res.log_evidence_start - 1e-9


def _assert_kron_log_det_equals_block_ggn(model, X, first_precision):
    """The kron curvature's log det(GGN + diag(δ)) equals the block-diagonal GGN's by brute force, with a
    different δ per tensor (first_precision, +1, +2, …); returns the curvature."""
    from decaylab.evidence.curvature import compute_curvature
    from decaylab.evidence.laplace import log_det_posterior

    names = [n for n, _ in model.named_parameters()]
    curv = compute_curvature(model.eval(), X, "cross_entropy", "kron", names)
    G = ggn(model, X, "cross_entropy") * block_mask(model)
    prec = {n: torch.tensor(first_precision + i, dtype=torch.float64) for i, n in enumerate(names)}
    full_prec = torch.cat([prec[n].expand(p.numel()) for n, p in model.named_parameters()])
    expected = float(torch.linalg.slogdet(G + torch.diag(full_prec))[1])
    assert float(log_det_posterior(curv, prec, torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(
        expected, rel=1e-10)
    return curv


def test_kron_equals_block_diagonal_ggn_for_one_row():
    model = _tiny_mlp(seed=1)
    X, y = _classification(n=1)
    y = y[:1]
    # cross-entropy needs two classes in the data: evaluate the single-row kron against its brute force directly
    _assert_kron_log_det_equals_block_ggn(model, X, first_precision=0.7)


def test_kron_is_exact_for_a_linear_layer_under_mse():
    X, y = _regression(n=30, d=4)
    model = nn.Linear(4, 2).double()         # two outputs, with a bias (its block is exact, cross terms dropped)
    Y = torch.stack([y, -0.5 * y + 0.1], 1)
    res = marglik(model, (X, Y), hessian="kron", loss="mse", weight_decay=0.01, sigma=0.5, optimize=False)
    G = ggn(model, X, "mse", sigma=0.5) * block_mask(model)
    assert res.log_evidence == pytest.approx(_brute(model, X, Y, "mse", G, res), rel=1e-10)


def test_kron_for_conv_layers_equals_block_diagonal_ggn_for_one_position():
    torch.manual_seed(0)
    # a 3×3 kernel on a 3×3 input without padding has one output position: K-FAC is exact for one row
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Tanh(), nn.Linear(3, 2)).double()
    X = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    curv = _assert_kron_log_det_equals_block_ggn(model, X, first_precision=0.3)
    assert set(curv.kron_blocks) == {"0.weight", "3.weight"}


def test_every_approximation_against_the_brute_force_hessian_at_zero_residual():
    """Targets the network fits exactly: the Hessian of the Gaussian NLL then *is* the GGN, so full equals the
    exact Hessian evidence, diag its diagonal version and (one row) kron its block-diagonal version."""
    model = _tiny_mlp(seed=2, n_out=2)
    X, _ = _classification(n=12, n_out=2)
    with torch.no_grad():
        Y = model(X)
    sigma = 0.3
    H = hessian(model, X, Y, "mse", sigma)
    assert torch.allclose(H, ggn(model, X, "mse", sigma), atol=1e-9)
    for kind, Hk in (("full", H), ("diag", torch.diag(torch.diagonal(H)))):
        res = marglik(model, (X, Y), hessian=kind, loss="mse", sigma=sigma, weight_decay=1e-3, optimize=False)
        assert res.log_evidence == pytest.approx(_brute(model, X, Y, "mse", Hk, res), rel=1e-9)
    x1, y1 = X[:1], Y[:1]
    H1 = hessian(model, x1, y1, "mse", sigma) * block_mask(model)
    res = marglik(model, (x1, y1), hessian="kron", loss="mse", sigma=sigma, weight_decay=1e-3, optimize=False)
    assert res.log_evidence == pytest.approx(_brute(model, x1, y1, "mse", H1, res), rel=1e-9)


def test_gaps_to_the_exact_hessian_evidence_on_a_trained_tiny_mlp(capsys):
    """A trained tiny classifier (GGN ≠ Hessian): each approximation's evidence against the exact Hessian's,
    at the training λ (printed; benchmarks/evidence_gaps.py prints the same table). Where the gaps are known
    they are checked: full is the exact GGN evidence, so its gap to the Hessian's is ½ log det(H + D) −
    ½ log det(G + D) by brute force; diag drops G's off-diagonal entries, so by Hadamard's inequality
    (det M ≤ Π M_ii for M positive definite) its evidence is at most the full GGN's."""
    model = _tiny_mlp(seed=3)
    X, y = _classification(n=30)
    lam = 0.02
    opt = torch.optim.LBFGS(model.parameters(), max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y) + 0.5 * lam * sum(
            p.pow(2).sum() for n, p in model.named_parameters() if n.endswith("weight"))
        loss.backward()
        return loss
    opt.step(closure)
    H, G = hessian(model, X, y, "cross_entropy"), ggn(model, X, "cross_entropy")
    assert float((H - G).abs().max()) > 1e-3     # the Hessian is not the GGN here
    results = {kind: marglik(model, (X, y), hessian=kind, weight_decay=lam, optimize=False)
               for kind in ("full", "kron", "diag")}
    gaps = {kind: res.log_evidence - _brute(model, X, y, "cross_entropy", H, res) for kind, res in results.items()}
    print("evidence gaps to the exact Hessian:", {k: round(v, 4) for k, v in gaps.items()})
    full = results["full"]
    D = torch.diag(precision_vector(model, full.groups, full.prior_precision, full.no_decay_precision))
    assert gaps["full"] == pytest.approx(0.5 * float(torch.linalg.slogdet(H + D)[1] - torch.linalg.slogdet(G + D)[1]),
                                         rel=1e-8, abs=1e-9)
    assert abs(gaps["full"]) > 1e-3                                         # the gap is there to measure
    assert results["diag"].log_evidence <= full.log_evidence + 1e-9
    assert math.isfinite(gaps["kron"])


def test_diag_for_conv_layers_with_many_positions_equals_the_ggn_diagonal():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 3, 2, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 5 * 5, 2),
                          nn.LayerNorm(2)).double()       # LayerNorm: neither Linear nor Conv (per-row Jacobians)
    X = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 1])
    from decaylab.evidence.curvature import compute_curvature

    names = [n for n, _ in model.named_parameters()]
    curv = compute_curvature(model.eval(), X, "cross_entropy", "diag", names)
    assert torch.allclose(curv.diagonal, torch.diagonal(ggn(model, X, "cross_entropy")), rtol=1e-10, atol=1e-12)
    res = marglik(model, (X, y), hessian="kron", weight_decay=0.1, optimize=False)   # conv K-FAC + LayerNorm diag
    assert math.isfinite(res.log_evidence)


def test_kron_factors_do_not_depend_on_how_rows_are_chunked():
    from decaylab.evidence.curvature import kron_factors

    model = _tiny_mlp(seed=4).eval()
    X, _ = _classification(n=23)
    names = [n for n, _ in model.named_parameters()]
    _, A1, G1, B1, _ = kron_factors(model, X, "cross_entropy", names)
    _, A2, G2, B2, _ = kron_factors(model, X, "cross_entropy", names, chunk=5)
    for one, two in ((A1, A2), (G1, G2), (B1, B2)):
        assert all(torch.allclose(one[k], two[k], rtol=1e-12, atol=1e-12) for k in one)
