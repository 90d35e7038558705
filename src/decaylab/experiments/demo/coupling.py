"""Study 3: coupled vs decoupled decay — SGD vs SGDW with and without momentum, Adam+L2 vs AdamW.

The same MLP (same initial weights, same batch order) is trained on digits in float64 with:

- ``SGD(weight_decay=λ)`` (coupled: g ← g + λw, then momentum) and ``SGDW(weight_decay=λ)``
  (decoupled, ``decay_scaling="lr"``: w ← w − lr·λ·w outside momentum), without momentum —
  where the two are the same update, so the runs must agree to rounding — and with momentum
  0.9, where coupled decay is carried by the momentum buffer (an effective ≈ λ/(1 − μ)) and the
  runs differ;
- ``Adam(weight_decay=λ)`` (L2 inside the adaptive normalization) and ``AdamW(weight_decay=λ)``
  at the same λ, plus Adam without decay as a reference, and both again over a range of
  matched λ values (final weight norm and test accuracy per λ).

Reported per run: final train loss, test accuracy, weight norm ‖θ‖₂, and for the SGD pairs the
largest difference between their weights and between their loss curves.
"""

from __future__ import annotations

import torch

from decaylab import data, models
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.optim import SGD, SGDW, Adam, AdamW
from decaylab.report.model import Figure, Section, Table
from decaylab.train import fit

from ._common import StudyResult, accuracy, as_floats

SGD_LR, SGD_LAMBDA, MOMENTUM = 0.05, 0.01, 0.9
ADAM_LR, ADAM_LAMBDA = 1e-3, 0.1
HIDDEN = (64,)
EPOCHS = {True: 8, False: 25}
MATCHED_LAMBDAS = {True: (1e-2, 1e-1, 1.0), False: (1e-3, 1e-2, 1e-1, 1.0)}
BATCH = 64
SAME_UPDATE_TOL = 1e-9   # float64: "identical" means equal up to rounding

RUNS = (  # name, optimizer class, keyword arguments
    ("SGD (coupled)", SGD, dict(lr=SGD_LR, weight_decay=SGD_LAMBDA)),
    ("SGDW (decoupled)", SGDW, dict(lr=SGD_LR, weight_decay=SGD_LAMBDA)),
    ("SGD (coupled) + momentum", SGD, dict(lr=SGD_LR, weight_decay=SGD_LAMBDA, momentum=MOMENTUM)),
    ("SGDW (decoupled) + momentum", SGDW, dict(lr=SGD_LR, weight_decay=SGD_LAMBDA, momentum=MOMENTUM)),
    ("Adam + L2 (coupled)", Adam, dict(lr=ADAM_LR, weight_decay=ADAM_LAMBDA)),
    ("AdamW (decoupled)", AdamW, dict(lr=ADAM_LR, weight_decay=ADAM_LAMBDA)),
    ("Adam, no decay", Adam, dict(lr=ADAM_LR, weight_decay=0.0)),
)


def run_coupling(quick: bool = False, seed: int = 0, progress: bool = False, *, epochs: int | None = None
                 ) -> StudyResult:
    """Train the seven runs of :data:`RUNS` and compare coupled with decoupled decay."""
    epochs = epochs or EPOCHS[quick]
    ds = data.load("digits", seed=seed, dtype=torch.float64)
    lambdas = MATCHED_LAMBDAS[quick]
    matched_jobs = [(label, cls, lam) for lam in lambdas for label, cls in (("Adam + L2", Adam), ("AdamW", AdamW))]
    bar = progress_bar(total=len(RUNS) + len(matched_jobs), desc="3 coupled vs decoupled", enabled=progress)
    results = {}
    for name, cls, kwargs in RUNS:
        results[name] = _train(ds, cls, kwargs, epochs, seed)
        bar.update(1)
    matched = {"lambdas": list(lambdas), "lr": ADAM_LR,
               "Adam + L2": {"weight_norm": [], "test_acc": []}, "AdamW": {"weight_norm": [], "test_acc": []}}
    for label, cls, lam in matched_jobs:
        run = _train(ds, cls, dict(lr=ADAM_LR, weight_decay=lam), epochs, seed, eval_every=epochs)
        matched[label]["weight_norm"].append(run["history"].total_weight_norm())
        matched[label]["test_acc"].append(run["test_acc"])
        bar.update(1)
    bar.close()

    summary = {
        "dataset": "digits", "hidden": list(HIDDEN), "epochs": epochs, "batch_size": BATCH, "dtype": "float64",
        "sgd": {"lr": SGD_LR, "weight_decay": SGD_LAMBDA, "momentum": MOMENTUM},
        "adam": {"lr": ADAM_LR, "weight_decay": ADAM_LAMBDA},
        "runs": {name: {"optimizer": f"decaylab.optim.{cls.__name__}", **{k: v for k, v in kw.items()},
                        "train_loss": as_floats(results[name]["history"].train_loss),
                        "weight_norm": as_floats(_norm_curve(results[name]["history"])),
                        "final_train_loss": results[name]["history"].train_loss[-1],
                        "final_weight_norm": results[name]["history"].total_weight_norm(),
                        "test_acc": results[name]["test_acc"]} for name, cls, kw in RUNS},
        "sgd_vs_sgdw_no_momentum": _pair(results, "SGD (coupled)", "SGDW (decoupled)"),
        "sgd_vs_sgdw_momentum": _pair(results, "SGD (coupled) + momentum", "SGDW (decoupled) + momentum"),
        "same_update_tolerance": SAME_UPDATE_TOL,
        "adam_vs_adamw_matched_lambda": matched,
    }
    summary["sgd_equals_sgdw_without_momentum"] = summary["sgd_vs_sgdw_no_momentum"]["identical"]
    summary["sgd_differs_from_sgdw_with_momentum"] = not summary["sgd_vs_sgdw_momentum"]["identical"]
    section = Section(
        key="coupling", title="3. Coupled vs decoupled: SGD vs SGDW, Adam + L2 vs AdamW",
        text=_paragraph(summary),
        figures=[Figure("coupling-curves", _curves_png(summary),
                        caption="Training loss and weight norm per epoch; the two no-momentum SGD curves lie on top "
                                "of each other"),
                 Figure("coupling-matched", _matched_png(matched),
                        caption="Adam + L2 vs AdamW at the same λ: final weight norm and test accuracy")],
        tables=[Table(columns=["run", "train loss", "test acc", "‖θ‖₂"],
                      rows=[[name, r["final_train_loss"], r["test_acc"], r["final_weight_norm"]]
                            for name, r in summary["runs"].items()],
                      caption=f"digits, MLP 64-{HIDDEN[0]}-10, {epochs} epochs, batch {BATCH}, float64; "
                              f"SGD lr {SGD_LR}, λ {SGD_LAMBDA}; Adam lr {ADAM_LR}, λ {ADAM_LAMBDA}")],
    )
    nm, m = summary["sgd_vs_sgdw_no_momentum"], summary["sgd_vs_sgdw_momentum"]
    return StudyResult.with_headline(section, summary, "3 coupled/decoupled",
                                     f"SGD−SGDW max |Δw| {nm['max_abs_weight_diff']:.1e} (no momentum), "
                                     f"{m['max_abs_weight_diff']:.2g} (momentum)")


def _train(ds, cls, kwargs, epochs, seed, eval_every=1) -> dict:
    model = models.build("mlp", in_features=ds.n_features, out_features=ds.n_classes, hidden=HIDDEN, seed=seed,
                         dtype=torch.float64)
    history = fit(model, cls(model.parameters(), **kwargs), ds, epochs=epochs, batch_size=BATCH, seed=seed,
                  eval_every=eval_every)
    return dict(model=model, history=history, test_acc=accuracy(model, ds.test.X, ds.test.y))


def _norm_curve(history) -> list[float]:
    return [history.total_weight_norm(i) for i in range(len(history))]


def _pair(results, a: str, b: str) -> dict:
    pa, pb = results[a]["model"].parameters(), results[b]["model"].parameters()
    weight_diff = max(float((p - q).detach().abs().max()) for p, q in zip(pa, pb))
    loss_diff = max(abs(x - y) for x, y in zip(results[a]["history"].train_loss, results[b]["history"].train_loss))
    return {"runs": [a, b], "max_abs_weight_diff": weight_diff, "max_abs_loss_diff": loss_diff,
            "identical": weight_diff <= SAME_UPDATE_TOL and loss_diff <= SAME_UPDATE_TOL}


def _paragraph(s) -> str:
    runs, nm, m = s["runs"], s["sgd_vs_sgdw_no_momentum"], s["sgd_vs_sgdw_momentum"]
    sgd_m, sgdw_m = runs["SGD (coupled) + momentum"], runs["SGDW (decoupled) + momentum"]
    adam, adamw, plain = runs["Adam + L2 (coupled)"], runs["AdamW (decoupled)"], runs["Adam, no decay"]
    text = (f"Without momentum, SGD with weight_decay={s['sgd']['weight_decay']} and SGDW with the same λ "
            f"{'end with the same weights' if nm['identical'] else 'do NOT end with the same weights'}: the largest "
            f"difference is {nm['max_abs_weight_diff']:.1e} after {s['epochs']} epochs (float64 rounding), because "
            f"w − lr·(g + λw) and (1 − lr·λ)w − lr·g are the same step. With momentum {s['sgd']['momentum']} they "
            f"{'differ' if not m['identical'] else 'still agree'} (max |Δw| {m['max_abs_weight_diff']:.3g}): coupled "
            f"decay goes through the momentum buffer, so it ends with ‖θ‖ {sgd_m['final_weight_norm']:.3g} against "
            f"{sgdw_m['final_weight_norm']:.3g} for SGDW (test accuracy {sgd_m['test_acc']:.3f} vs "
            f"{sgdw_m['test_acc']:.3f}). ")
    text += (f"Adam and AdamW at the same λ={s['adam']['weight_decay']} are different regularizers: Adam's L2 term is "
             f"rescaled by the adaptive step, giving ‖θ‖ {adam['final_weight_norm']:.3g} and test accuracy "
             f"{adam['test_acc']:.3f}, while AdamW shrinks by lr·λ per step, giving ‖θ‖ "
             f"{adamw['final_weight_norm']:.3g} and {adamw['test_acc']:.3f} (Adam without decay: ‖θ‖ "
             f"{plain['final_weight_norm']:.3g}, {plain['test_acc']:.3f}). ")
    mt = s["adam_vs_adamw_matched_lambda"]
    lams, l2, dw = mt["lambdas"], mt["Adam + L2"], mt["AdamW"]
    text += (f"Over λ from {lams[0]:g} to {lams[-1]:g}, Adam + L2 takes ‖θ‖ from {l2['weight_norm'][0]:.3g} to "
             f"{l2['weight_norm'][-1]:.3g} (test accuracy {l2['test_acc'][0]:.3f} → {l2['test_acc'][-1]:.3f}) and "
             f"AdamW from {dw['weight_norm'][0]:.3g} to {dw['weight_norm'][-1]:.3g} ({dw['test_acc'][0]:.3f} → "
             f"{dw['test_acc'][-1]:.3f}): the same number is a different amount of regularization, so a λ tuned "
             "for one does not transfer to the other.")
    return text


def _curves_png(s) -> bytes:
    fig, axes = new_figure(10.5, 6.0, nrows=2, ncols=2, sharex=True)
    groups = (list(s["runs"])[:4], list(s["runs"])[4:])
    styles = ("-", "--", "-", "--", "-", "--", ":")
    for col, names in enumerate(groups):
        for _i, name in enumerate(names):
            run = s["runs"][name]
            k = list(s["runs"]).index(name)
            epochs = range(1, len(run["train_loss"]) + 1)
            kw = dict(ls=styles[k], color=f"C{k // 2 if col == 0 else 2 + k - 4}", lw=2.2 if styles[k] == "-" else 1.4,
                      label=name)
            axes[0, col].plot(epochs, run["train_loss"], **kw)
            axes[1, col].plot(epochs, run["weight_norm"], **kw)
        axes[0, col].set(yscale="log", ylabel="train loss", title=("SGD vs SGDW" if col == 0 else "Adam + L2 vs AdamW"))
        axes[1, col].set(xlabel="epoch", ylabel="‖θ‖₂")
        axes[0, col].legend(fontsize=7)
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    return fig_to_png(fig)


def _matched_png(m) -> bytes:
    fig, axes = new_figure(9.0, 3.0, ncols=2)
    for label, marker, color in (("Adam + L2", "o-", "C2"), ("AdamW", "s--", "C3")):
        axes[0].plot(m["lambdas"], m[label]["weight_norm"], marker, color=color, label=label)
        axes[1].plot(m["lambdas"], m[label]["test_acc"], marker, color=color, label=label)
    axes[0].set(xscale="log", xlabel="λ (weight_decay)", ylabel="final ‖θ‖₂")
    axes[1].set(xscale="log", xlabel="λ (weight_decay)", ylabel="test accuracy")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig_to_png(fig)
