import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import LeaveOneOut, cross_val_score

from decaylab import ridge_path
from decaylab.ridge import alpha_from_mse_lambda

LAMBDAS = np.logspace(-4, 3, 40)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


def test_chosen_alpha_matches_ridgecv(diabetes):
    X, y = diabetes
    path = ridge_path(X, y, LAMBDAS)
    cv = RidgeCV(alphas=LAMBDAS).fit(X, y)
    assert path.best_lambda == cv.alpha_
    # sklearn's best_score_ is the negative LOO mean squared error at the chosen alpha
    assert -cv.best_score_ == pytest.approx(path.loo_mse.min(), rel=1e-9)


def test_every_solution_matches_ridge(diabetes):
    X, y = diabetes
    path = ridge_path(X, y, LAMBDAS[::8])
    for i, lam in enumerate(LAMBDAS[::8]):
        ref = Ridge(alpha=lam, solver="svd").fit(X, y)
        np.testing.assert_allclose(path.coef[i], ref.coef_, rtol=1e-9, atol=1e-9)
        assert path.intercept[i] == pytest.approx(ref.intercept_, rel=1e-10)
        np.testing.assert_allclose(path.predict(X[:5], i), ref.predict(X[:5]), rtol=1e-10)


def test_loo_is_exact_against_brute_force(diabetes):
    X, y = diabetes
    X, y = X[:60], y[:60]
    lams = [0.01, 1.0]
    path = ridge_path(X, y, lams)
    for i, lam in enumerate(lams):
        scores = cross_val_score(Ridge(alpha=lam), X, y, cv=LeaveOneOut(), scoring="neg_mean_squared_error")
        assert path.loo_mse[i] == pytest.approx(-scores.mean(), rel=1e-9)


def test_gcv_and_dof_against_the_explicit_hat_matrix(diabetes):
    X, y = diabetes
    Y = np.stack([y, 2 * y + 1], axis=1)
    path = ridge_path(X, Y, [0.5, 5.0])
    one = ridge_path(X, y, [0.5, 5.0])
    np.testing.assert_allclose(path.coef[:, :, 0], one.coef, rtol=1e-12)
    np.testing.assert_allclose(path.coef[:, :, 1], 2 * one.coef, rtol=1e-12)
    # brute force: H = 11ᵀ/n + Xc (XcᵀXc + λI)⁻¹ Xcᵀ built as an n × n matrix, no SVD
    n, p = X.shape
    Xc = X - X.mean(axis=0)
    for i, lam in enumerate([0.5, 5.0]):
        H = np.full((n, n), 1.0 / n) + Xc @ np.linalg.solve(Xc.T @ Xc + lam * np.eye(p), Xc.T)
        resid = y - H @ y
        np.testing.assert_allclose(H @ y, X @ one.coef[i] + one.intercept[i], rtol=1e-10)
        assert one.dof[i] == pytest.approx(np.trace(H) - 1, rel=1e-10)       # the intercept's 1 left out
        assert one.gcv[i] == pytest.approx(np.mean(resid ** 2) / (1 - np.trace(H) / n) ** 2, rel=1e-10)
    assert one.dof[0] > one.dof[1] > 0  # more decay, fewer effective parameters


def test_mse_convention_conversion_gives_the_minimizer_of_the_mean_squared_error_penalty(diabetes):
    # λ on the mean squared error: argmin ‖y − Xw − b‖²/n + λ‖w‖², solved in closed form on centred data
    X, y = diabetes
    n, p = X.shape
    lam = 0.01
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    w = np.linalg.solve(Xc.T @ Xc / n + lam * np.eye(p), Xc.T @ yc / n)
    ridge = Ridge(alpha=alpha_from_mse_lambda(lam, n), solver="svd").fit(X, y)
    np.testing.assert_allclose(ridge.coef_, w, rtol=1e-9)
    assert not np.allclose(Ridge(alpha=lam, solver="svd").fit(X, y).coef_, w, rtol=1e-2)   # unconverted: another fit


@pytest.mark.parametrize("lambdas, match", [([0.0], "lambdas"), ([], "lambdas"), ([float("nan")], "lambdas")])
def test_bad_lambdas(diabetes, lambdas, match):
    X, y = diabetes
    with pytest.raises(ValueError, match=match):
        ridge_path(X, y, lambdas)


def test_bad_shapes(diabetes):
    X, y = diabetes
    with pytest.raises(ValueError, match="y must have one row per row of X"):
        ridge_path(X, y[:-1], [1.0])
    with pytest.raises(ValueError, match="X must have 2 dimensions"):
        ridge_path(y, y, [1.0])
