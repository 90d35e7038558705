"""Study 2: a degree-15 polynomial fitted to ~20 noisy points — gradient descent with decay equals ridge.

Convention: the penalized objective is the tutorial's ``F(w) = mean((Φw − y)²) + λ‖w‖²`` on
Legendre features ``Φ`` (the constant feature included in ``w``). Its minimizer is the
closed-form ridge solution ``w* = (ΦᵀΦ/n + λI)⁻¹ Φᵀy/n`` (scikit-learn ``Ridge(alpha=n·λ,
fit_intercept=False)``). The gradient-trained fit uses the update of ``decaylab.optim.SGD`` with
*coupled* decay ``weight_decay = 2λ`` (the gradient of λ‖w‖² is 2λw) on the plain mean squared
error, full batch, in float64, all λ at once as the rows of one weight matrix. The step is the
optimal constant heavy-ball step for a quadratic (Polyak 1964): with ``L, μ`` the largest and
smallest Hessian eigenvalue (``2(ΦᵀΦ/n + λI)``, over all λ), ``lr = 4/(√L + √μ)²`` and
``momentum = ((√L − √μ)/(√L + √μ))²``. Training stops once ``‖∇F(w)‖ ≤ μ_λ·tol`` for every λ,
which bounds ``‖w − w*‖ ≤ tol`` by strong convexity — the overlay's agreement is measured,
not assumed.
"""

from __future__ import annotations

import math

import torch

from decaylab import data
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.models import polynomial_features
from decaylab.optim.functional import sgd_update_
from decaylab.report.model import Figure, Section, Table

from ._common import StudyResult, as_floats, is_monotone, lam_label

DEGREE = 15
FIT_LAMBDAS = (1e-5, 1e-3, 1e-1, 1.0)
FULL_GRID = tuple(10.0 ** (k / 2) for k in range(-16, 3))   # 1e-8 … 10, 19 values
QUICK_GRID = tuple(10.0 ** k for k in range(-8, 2))          # 1e-8 … 10, 10 values
TOL = 1e-9              # guaranteed ‖w − w*‖₂ bound at the stop
MAX_STEPS = 200_000
AGREEMENT = 1e-4        # what "the overlay matches" means, on weights and on the fitted curve


def ridge_solution(Phi: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """``argmin_w mean((Φw − y)²) + λ‖w‖²`` = ``(ΦᵀΦ/n + λI)⁻¹ Φᵀy/n`` (least squares at λ = 0)."""
    n, p = Phi.shape
    if lam == 0:
        return torch.linalg.lstsq(Phi, y[:, None]).solution[:, 0]
    return torch.linalg.solve(Phi.T @ Phi / n + lam * torch.eye(p, dtype=Phi.dtype), Phi.T @ y / n)


def gradient_fit(Phi: torch.Tensor, y: torch.Tensor, lambdas, *, tol: float = TOL, max_steps: int = MAX_STEPS):
    """Minimize ``mean((Φw − y)²) + λ‖w‖²`` for every λ at once with coupled-decay heavy-ball SGD.

    The rows of ``W`` ([len(lambdas), p]) are the fits; one call of
    :func:`decaylab.optim.functional.sgd_update_` (the update of ``decaylab.optim.SGD``) steps
    them all, row g with ``weight_decay = 2·λ_g``, on the data gradient ``2(ΦW_g − y)ᵀΦ/n``.
    The step and momentum are Polyak's for the spectrum range of all rows' Hessians
    ``[2(e_min + λ_min), 2(e_max + λ_max)]`` (e the eigenvalues of ΦᵀΦ/n).
    Returns ``(W, steps taken)``; raises ``RuntimeError`` if some row has not met the stopping
    rule ``‖∇F(W_g)‖ ≤ μ_g·tol`` after ``max_steps``.
    """
    n, p = Phi.shape
    lam = torch.tensor([float(v) for v in lambdas], dtype=Phi.dtype)[:, None]
    eigs = torch.linalg.eigvalsh(Phi.T @ Phi / n).clamp(min=0)
    mu = 2 * (eigs[0] + lam[:, 0])
    rl, rm = math.sqrt(2 * (float(eigs[-1]) + float(lam.max()))), math.sqrt(float(mu.min()))
    lr, momentum = 4 / (rl + rm) ** 2, ((rl - rm) / (rl + rm)) ** 2
    W = torch.zeros(len(lam), p, dtype=Phi.dtype)
    data_term_hessian, data_term_target = 2 * Phi.T @ Phi / n, 2 * Phi.T @ y / n
    buf = None
    for step in range(max_steps + 1):
        grad = W @ data_term_hessian - data_term_target
        if step % 50 == 0 and bool(((grad + 2 * lam * W).norm(dim=1) <= mu * tol).all()):
            return W, step
        if step == max_steps:
            break
        buf = sgd_update_(W, grad, buf, lr=lr, weight_decay=2 * lam, momentum=momentum)
    raise RuntimeError(f"gradient descent did not reach ‖w − w*‖ ≤ {tol:g} within max_steps={max_steps}")


def run_ridge_fit(quick: bool = False, seed: int = 0, progress: bool = False, *, fit_lambdas=FIT_LAMBDAS,
                  grid=None) -> StudyResult:
    """Fit the polynomial by heavy-ball SGD and in closed form; train/test error over a λ grid."""
    grid = tuple(grid if grid is not None else (QUICK_GRID if quick else FULL_GRID))
    ds = data.load("poly", seed=seed, dtype=torch.float64)
    feats = lambda X: polynomial_features(X, DEGREE, "legendre")  # noqa: E731
    Phi, y = feats(ds.train.X), ds.train.y
    Phi_test, y_test = feats(ds.test.X), ds.test.y
    x_plot = torch.linspace(-1, 1, 401, dtype=torch.float64)
    Phi_plot = feats(x_plot)

    bar = progress_bar(total=2, desc="2 ridge overlay", enabled=progress)
    trained, steps = gradient_fit(Phi, y, fit_lambdas)
    bar.update(1)
    closed = torch.stack([ridge_solution(Phi, y, lam) for lam in fit_lambdas])
    weight_diff = (trained - closed).abs().amax(dim=1)
    curve_diff = (Phi_plot @ (trained - closed).T).abs().amax(dim=0)

    def mse(P, t, w):
        return float(((P @ w - t) ** 2).mean())

    grid_w = [ridge_solution(Phi, y, lam) for lam in grid]
    train_mse = [mse(Phi, y, w) for w in grid_w]
    test_mse = [mse(Phi_test, y_test, w) for w in grid_w]
    bar.update(1)
    bar.close()
    best = min(range(len(grid)), key=lambda i: test_mse[i])
    summary = {
        "degree": DEGREE, "basis": "legendre", "n_train": len(y), "n_test": len(y_test), "noise": ds.meta["noise"],
        "penalty": "mean((Φw−y)²) + λ‖w‖²; SGD weight_decay = 2λ; sklearn Ridge alpha = n·λ",
        "optimizer": "decaylab.optim.functional.sgd_update_ (SGD, coupled, heavy-ball, full batch, float64)",
        "fit_lambdas": list(fit_lambdas), "gd_steps": steps,
        "max_abs_weight_diff": as_floats(weight_diff), "max_abs_curve_diff": as_floats(curve_diff),
        "ridge_overlay_max_diff": float(max(weight_diff.max(), curve_diff.max())),
        "ridge_overlay_matches": bool(max(weight_diff.max(), curve_diff.max()) <= AGREEMENT),
        "agreement_tolerance": AGREEMENT,
        "lambdas": list(grid), "train_mse": as_floats(train_mse), "test_mse": as_floats(test_mse),
        "best_lambda": grid[best], "best_test_mse": test_mse[best],
        "test_mse_u_shaped": 0 < best < len(grid) - 1,
        "weight_norm_fit": as_floats(trained.norm(dim=1)),
    }
    section = Section(
        key="ridge", title="2. Fitting noise: a degree-15 polynomial, gradient descent vs closed-form ridge",
        text=_paragraph(summary),
        figures=[Figure("ridge-fits", _fits_png(ds, x_plot, Phi_plot, trained, closed, fit_lambdas),
                        caption="Gradient-trained fits (solid) with the closed-form ridge solution (dashed) on top"),
                 Figure("ridge-errors", _errors_png(summary),
                        caption="Train and test mean squared error of the ridge solution against λ")],
        tables=[Table(columns=["λ", "‖w‖₂", "max |w_GD − w_ridge|", "max |f_GD − f_ridge| on [-1, 1]"],
                      rows=[[lam_label(lam), n, wd, cd] for lam, n, wd, cd in
                            zip(fit_lambdas, summary["weight_norm_fit"], summary["max_abs_weight_diff"],
                                summary["max_abs_curve_diff"])],
                      caption=f"Gradient descent ran {steps} full-batch steps (all λ together)")],
    )
    return StudyResult.with_headline(section, summary, "2 ridge",
                                     f"GD vs closed form max diff {summary['ridge_overlay_max_diff']:.1e}; "
                                     f"best test MSE {summary['best_test_mse']:.3f} at λ={summary['best_lambda']:.3g}")


def _paragraph(s) -> str:
    lams, test, train = s["lambdas"], s["test_mse"], s["train_mse"]
    match = "agree" if s["ridge_overlay_matches"] else "do NOT agree"
    return (f"A degree-{s['degree']} polynomial has {s['degree'] + 1} coefficients for {s['n_train']} noisy samples "
            f"of sin(πx): without decay it threads every point. Gradient descent with coupled weight decay "
            f"(weight_decay = 2λ on the mean squared error) and the closed-form ridge solution {match}: the largest "
            f"difference over the fitted λ values is {s['ridge_overlay_max_diff']:.1e} (weights and curve; "
            f"tolerance {s['agreement_tolerance']:g}) after {s['gd_steps']} steps. Training error "
            f"{'grows steadily' if is_monotone(train, decreasing=False) else 'changes'} with λ, from "
            f"{train[0]:.3g} at λ={lams[0]:g} to {train[-1]:.3g} at λ={lams[-1]:g}, while test error "
            f"{'falls from' if s['best_test_mse'] < test[0] else 'starts at'} {test[0]:.3g} to a minimum of "
            f"{s['best_test_mse']:.3g} at λ={s['best_lambda']:.3g} and rises again to {test[-1]:.3g}"
            + (" — the U shape of too little vs too much decay." if s["test_mse_u_shaped"] else "."))


def _fits_png(ds, x_plot, Phi_plot, trained, closed, lambdas) -> bytes:
    fig, ax = new_figure(6.0, 4.0)
    x = x_plot.numpy()
    ax.plot(x, data.poly_target(x), color="0.6", lw=2, label="sin(πx) (truth)")
    for i, lam in enumerate(lambdas):
        ax.plot(x, (Phi_plot @ trained[i]).numpy(), color=f"C{i}", lw=1.8, label=f"λ={lam_label(lam)}")
        ax.plot(x, (Phi_plot @ closed[i]).numpy(), color="k", lw=0.8, ls="--")
    ax.plot([], [], color="k", lw=0.8, ls="--", label="closed-form ridge")
    ax.scatter(ds.train.X[:, 0].numpy(), ds.train.y.numpy(), color="k", s=18, zorder=5, label="training points")
    ax.set(ylim=(-2.5, 2.5), xlabel="x", ylabel="y")
    ax.legend(fontsize=7, ncols=2, loc="upper left")
    return fig_to_png(fig)


def _errors_png(s) -> bytes:
    fig, ax = new_figure(5.0, 3.6)
    ax.plot(s["lambdas"], s["train_mse"], "o-", ms=3, label="train")
    ax.plot(s["lambdas"], s["test_mse"], "s-", ms=3, label="test")
    ax.axvline(s["best_lambda"], color="0.5", ls=":", label=f"best λ={s['best_lambda']:.2g}")
    ax.set(xscale="log", yscale="log", xlabel="λ", ylabel="mean squared error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig_to_png(fig)
