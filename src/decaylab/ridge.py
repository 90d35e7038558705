"""The exact ridge-regression path: every λ's solution, leave-one-out error and GCV from one SVD.

Convention (sklearn ``Ridge(alpha=λ)``): for each λ, with an unpenalized intercept ``b``,

    minimize  ‖y − X w − b‖² + λ ‖w‖²          (sum of squares, not a mean)

In decaylab's penalty form ``L' = L + λ·Σw²`` this is ``L`` = the *sum* of squared errors.
If your loss is the *mean* squared error, ``L = ‖r‖²/n``, the same solution has
``λ_mean = λ / n`` (see :func:`alpha_from_mse_lambda`); an optimizer with coupled
``weight_decay=wd`` on the mean squared error (gradient term ``wd·w``, i.e. penalty
``(wd/2)‖w‖²``) solves it for ``λ = n·wd/2``.

Algorithm. Center ``X`` and ``y`` (this is how the intercept stays unpenalized, as in
sklearn), take one thin SVD ``Xc = U S Vᵀ``. For every λ:

    w(λ)   = V diag(s / (s² + λ)) Uᵀ yc,        b(λ) = ȳ − x̄ᵀ w(λ)
    H(λ)   = 11ᵀ/n + U diag(s² / (s² + λ)) Uᵀ   (hat matrix, intercept included)
    LOO(λ) = mean_i ( r_i / (1 − H_ii) )²      (exact leave-one-out squared error)
    GCV(λ) = mean_i r_i² / (1 − tr H / n)²

with ``r = y − ŷ`` the in-sample residuals. The cost is one SVD, O(n p min(n, p)), plus
O(n · min(n, p)) per λ. ``best_lambda`` minimizes LOO, which is what
``sklearn.linear_model.RidgeCV(alphas=λs)`` (default ``cv=None``) selects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decaylab._checks import InputError, check_real


@dataclass
class RidgePath:
    """All solutions of a ridge path; arrays are indexed by λ first."""

    lambdas: np.ndarray      # [L] in the order given
    coef: np.ndarray         # [L, p] (or [L, p, k] for a 2-D y)
    intercept: np.ndarray    # [L] (or [L, k])
    loo_mse: np.ndarray      # [L] exact leave-one-out mean squared error (averaged over targets)
    gcv: np.ndarray          # [L] generalized cross-validation score
    dof: np.ndarray          # [L] effective degrees of freedom tr(H) − 1 (intercept excluded)

    @property
    def best_lambda(self) -> float:
        """λ with the smallest leave-one-out error (first one on ties, as RidgeCV)."""
        return float(self.lambdas[int(np.argmin(self.loo_mse))])

    @property
    def best_lambda_gcv(self) -> float:
        """λ with the smallest GCV score."""
        return float(self.lambdas[int(np.argmin(self.gcv))])

    def predict(self, X, lam_index: int) -> np.ndarray:
        """Predictions of the ``lam_index``-th solution for the rows of ``X``."""
        X = np.asarray(X, dtype=float)
        return X @ self.coef[lam_index] + self.intercept[lam_index]


def alpha_from_mse_lambda(lam_mean: float, n_samples: int) -> float:
    """sklearn ``alpha`` (sum-of-squares loss) for a λ applied to the *mean* squared error."""
    return float(lam_mean) * n_samples


def _as_matrix(name: str, value, ndim: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim not in ndim:
        raise InputError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must contain only finite numbers")
    return arr


def ridge_path(X, y, lambdas, *, fit_intercept: bool = True) -> RidgePath:
    """Ridge solutions, exact LOO error and GCV for every λ in ``lambdas`` (see module docstring).

    ``X`` is ``[n, p]``, ``y`` is ``[n]`` or ``[n, k]``, ``lambdas`` positive reals
    (sklearn's ``alpha``: penalty ``λ‖w‖²`` on the *sum* of squared errors).
    """
    X = _as_matrix("X", X, (2,))
    y = _as_matrix("y", y, (1, 2))
    if y.shape[0] != X.shape[0]:
        raise InputError(f"y must have one row per row of X ({X.shape[0]}), got {y.shape[0]}")
    n = X.shape[0]
    if n < 2:
        raise InputError(f"X must have at least 2 rows, got {n}")
    lams = np.atleast_1d(np.asarray(lambdas, dtype=float))
    if lams.ndim != 1 or lams.size == 0:
        raise InputError(f"lambdas must be a non-empty 1-D sequence, got shape {lams.shape}")
    for lam in lams:
        check_real("lambdas", float(lam), low=0.0, low_open=True)

    x_mean = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
    y_mean = y.mean(axis=0) if fit_intercept else np.zeros(y.shape[1:])
    Xc, yc = X - x_mean, y - y_mean
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    Uty = U.T @ yc                                   # [r] or [r, k]
    s2 = s ** 2
    base_leverage = 1.0 / n if fit_intercept else 0.0
    U2 = U ** 2                                      # [n, r]

    coef, intercept, loo, gcv, dof = [], [], [], [], []
    for lam in lams:
        shrink = s / (s2 + lam)                      # filter factors for w
        w = Vt.T @ (shrink[:, None] * Uty if Uty.ndim == 2 else shrink * Uty)
        fitted_frac = s2 / (s2 + lam)
        leverage = base_leverage + U2 @ fitted_frac  # diag(H)
        yhat_c = U @ (fitted_frac[:, None] * Uty if Uty.ndim == 2 else fitted_frac * Uty)
        resid = yc - yhat_c
        denom = (1.0 - leverage) if resid.ndim == 1 else (1.0 - leverage)[:, None]
        trace = base_leverage * n + fitted_frac.sum()
        coef.append(w)
        intercept.append(y_mean - x_mean @ w)
        loo.append(float(np.mean((resid / denom) ** 2)))
        gcv.append(float(np.mean(resid ** 2) / (1.0 - trace / n) ** 2))
        dof.append(float(fitted_frac.sum()))
    return RidgePath(lambdas=lams, coef=np.array(coef), intercept=np.array(intercept),
                     loo_mse=np.array(loo), gcv=np.array(gcv), dof=np.array(dof))
