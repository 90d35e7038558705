"""Study 6: choosing λ by 5-fold cross-validation — the CV curve, the best λ and the one-standard-error λ.

The train+validation rows of the noisy two-moons data (the data of studies 1 and 5) are split
into 5 stratified folds; for each of ≥ 12 λ values an MLP is trained with AdamW
(``weight_decay=λ``, all parameters decayed) on 4 folds and scored by accuracy on the fifth.
All λ × fold members are trained together by :func:`decaylab.sweep` (the batched engine: the
members are stacked into one model; each equals the same run trained alone). Reported: mean ±
standard deviation of the validation accuracy per λ, the best λ (highest mean), the
one-standard-error λ (the largest λ whose mean is within one standard error ``std/√5`` of the
best), and the test accuracy (clean labels) of the five fold models at each λ, mean ± std.
"""

from __future__ import annotations

import numpy as np

from decaylab import data
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.report.model import Figure, Section, Table

from ._common import StudyResult, as_floats, lam_label

LAMBDAS = tuple(float(v) for v in np.logspace(-2, 2, 12))   # 0.01 … 100
FOLDS, LR = 5, 0.01
FULL = dict(hidden=(32, 32), epochs=200)
QUICK = dict(hidden=(16, 16), epochs=120)


def run_cross_validation(quick: bool = False, seed: int = 0, progress: bool = False, *, lambdas=LAMBDAS,
                         epochs: int | None = None, hidden=None) -> StudyResult:
    """Cross-validate λ with :func:`decaylab.sweep` and report the CV curve and the chosen λ."""
    from decaylab.sweeps.api import sweep

    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(epochs=epochs, hidden=hidden).items() if v is not None})
    ds = data.load("moons", seed=seed)
    rows = ds.train_and_val()
    bar = progress_bar(total=1, desc="6 cross-validation", enabled=progress)
    result = sweep("mlp", (rows.X, rows.y), list(lambdas), lr=LR, seed=seed, folds=FOLDS, optimizer="adamw",
                   epochs=cfg["epochs"], batch_size=len(rows.y), hidden=cfg["hidden"], decay_biases=True,
                   split_seed=seed, test_data=(ds.test.X, ds.test.y))
    bar.update(1)
    bar.close()
    per_lambda = result.summary
    test = {lam: [r["test_accuracy"] for r in result.table if r["lambda"] == lam] for lam in lambdas}
    lam_values = [s["lambda"] for s in per_lambda]
    summary = {
        "dataset": "moons (train+val rows)", "n_rows": len(rows.y), "folds": FOLDS,
        "optimizer": "decaylab AdamW update (decaylab.sweep)",
        "engine": result.engine, "lr": LR, "epochs": cfg["epochs"], "hidden": list(cfg["hidden"]),
        "lambdas": lam_values,
        "cv_mean": as_floats(s["mean"] for s in per_lambda), "cv_std": as_floats(s["std"] for s in per_lambda),
        "cv_se": as_floats(s["se"] for s in per_lambda),
        "test_acc_mean": as_floats(np.mean(test[lam]) for lam in lam_values),
        "test_acc_std": as_floats(np.std(test[lam], ddof=1) for lam in lam_values),
        "best_lambda": result.best_lambda, "lambda_1se": result.lambda_1se,
        "sweep_seconds": round(result.wall_time, 2),
    }
    for key, lam in (("best", result.best_lambda), ("1se", result.lambda_1se)):
        i = lam_values.index(lam)
        summary[f"cv_acc_{key}"] = summary["cv_mean"][i]
        summary[f"test_acc_{key}"] = summary["test_acc_mean"][i]
        summary[f"test_acc_std_{key}"] = summary["test_acc_std"][i]
    section = Section(
        key="cross_validation", title="6. Choosing λ by 5-fold cross-validation",
        text=_paragraph(summary),
        figures=[Figure("cv-curve", _curve_png(summary),
                        caption="Validation accuracy (mean ± std over 5 folds) and test accuracy of the fold models "
                                "against λ")],
        tables=[Table(columns=["λ", "CV acc mean", "CV acc std", "test acc (fold models)"],
                      rows=[[lam_label(lam), m, sd, t] for lam, m, sd, t in
                            zip(lam_values, summary["cv_mean"], summary["cv_std"], summary["test_acc_mean"])],
                      caption=f"AdamW lr {LR}, {cfg['epochs']} full-batch epochs, MLP "
                              f"{'-'.join(map(str, cfg['hidden']))}, {result.engine} engine")],
    )
    return StudyResult.with_headline(section, summary, "6 cross-validation",
                                     f"best λ={summary['best_lambda']:.3g}, 1-SE λ={summary['lambda_1se']:.3g}, "
                                     f"test acc {summary['test_acc_best']:.3f} / {summary['test_acc_1se']:.3f}")


def _paragraph(s) -> str:
    lams, cv = s["lambdas"], s["cv_mean"]
    same = s["best_lambda"] == s["lambda_1se"]
    text = (f"Each of {len(lams)} λ values from {lams[0]:g} to {lams[-1]:g} was trained on 4 of {s['folds']} folds of "
            f"{s['n_rows']} noisy two-moons points and scored on the fifth ({len(lams) * s['folds']} models, trained "
            f"together in {s['sweep_seconds']:.1f} s by the {s['engine']} sweep engine). Mean validation accuracy goes "
            f"from {cv[0]:.3f} at λ={lams[0]:g} to a best of {s['cv_acc_best']:.3f} at λ={s['best_lambda']:.3g} and "
            f"down to {cv[-1]:.3f} at λ={lams[-1]:g}. ")
    if same:
        text += (f"The one-standard-error rule picks the same λ, since no larger λ is within one standard error of "
                 f"the best. Its fold models reach test accuracy {s['test_acc_best']:.3f} ± "
                 f"{s['test_acc_std_best']:.3f}.")
    else:
        text += (f"The one-standard-error rule picks the larger λ={s['lambda_1se']:.3g} (CV accuracy "
                 f"{s['cv_acc_1se']:.3f}, within one standard error of the best): the simplest model that is "
                 f"statistically as good. Test accuracy of the fold models: {s['test_acc_best']:.3f} ± "
                 f"{s['test_acc_std_best']:.3f} at the best λ, {s['test_acc_1se']:.3f} ± {s['test_acc_std_1se']:.3f} "
                 f"at the one-standard-error λ.")
    return text


def _curve_png(s) -> bytes:
    fig, ax = new_figure(6.4, 3.8)
    ax.errorbar(s["lambdas"], s["cv_mean"], yerr=s["cv_std"], marker="o", ms=3, capsize=2,
                label="validation accuracy (5-fold mean ± std)")
    ax.plot(s["lambdas"], s["test_acc_mean"], "s--", ms=3, color="C2", label="test accuracy (mean of fold models)")
    ax.axvline(s["best_lambda"], color="C3", ls="--", label=f"best λ = {s['best_lambda']:.3g}")
    ax.axvline(s["lambda_1se"], color="C1", ls=":", lw=2, label=f"one-standard-error λ = {s['lambda_1se']:.3g}")
    ax.set(xscale="log", xlabel="λ (AdamW weight_decay)", ylabel="accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return fig_to_png(fig)
