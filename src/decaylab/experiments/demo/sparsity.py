"""Study 4: L1 vs L2 — only L1 (with a proximal soft-threshold step) makes weights exactly zero.

A softmax-regression model (``MLP`` with no hidden layer) on digits is trained at increasing λ
with minibatch SGD, two ways:

- L1: ``SGDW(weight_decay=0, l1_decay=λ)`` — after each gradient step the proximal operator of
  ``lr·λ·‖w‖₁``, ``w ← sign(w)·max(|w| − lr·λ, 0)``, sets every weight within ``lr·λ`` of zero
  to exactly 0 (the penalty is λ‖w‖₁);
- L2: ``SGD(weight_decay=λ)`` — coupled decay ``g ← g + λw`` (the penalty (λ/2)‖w‖²), which
  multiplies weights towards zero but never reaches it.

Counted per run: parameters that are exactly ``0.0`` (weights and biases), test accuracy, and
the weight histograms.
"""

from __future__ import annotations

import torch

from decaylab import data, models
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.optim import SGD, SGDW
from decaylab.report.model import Figure, Section, Table
from decaylab.train import fit

from ._common import StudyResult, accuracy, is_monotone, lam_label

LAMBDAS = {False: (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), True: (1e-3, 1e-2, 1e-1)}
EPOCHS = {False: 20, True: 8}
LR, BATCH = 0.1, 64


def run_sparsity(quick: bool = False, seed: int = 0, progress: bool = False, *, lambdas=None,
                 epochs: int | None = None) -> StudyResult:
    """Train the L1 and L2 models at each λ and count exact zeros."""
    lambdas = tuple(lambdas or LAMBDAS[quick])
    epochs = epochs or EPOCHS[quick]
    ds = data.load("digits", seed=seed)
    runs = {"L1": [], "L2": []}
    jobs = [(kind, lam) for lam in lambdas for kind in ("L1", "L2")]
    for kind, lam in progress_bar(jobs, desc="4 L1 vs L2", enabled=progress):
        model = models.build("mlp", in_features=ds.n_features, out_features=ds.n_classes, hidden=(), seed=seed)
        optimizer = (SGDW(model.parameters(), lr=LR, weight_decay=0.0, l1_decay=lam) if kind == "L1"
                     else SGD(model.parameters(), lr=LR, weight_decay=lam))
        fit(model, optimizer, ds, epochs=epochs, batch_size=BATCH, seed=seed, eval_every=epochs)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        runs[kind].append(dict(lam=lam, zeros=int((flat == 0).sum()), weights=model.layers[0].weight.detach().flatten(),
                               test_acc=accuracy(model, ds.test.X, ds.test.y), weight_norm=float(flat.norm())))

    n_params = sum(p.numel() for p in model.parameters())
    summary = {
        "dataset": "digits", "model": "softmax regression (64×10 weights + 10 biases)", "n_params": n_params,
        "lr": LR, "epochs": epochs, "batch_size": BATCH, "lambdas": list(lambdas),
        "l1": "decaylab.optim.SGDW(weight_decay=0, l1_decay=λ): proximal soft-threshold, penalty λ‖w‖₁",
        "l2": "decaylab.optim.SGD(weight_decay=λ): coupled, penalty (λ/2)‖w‖²",
        "l1_zeros": [r["zeros"] for r in runs["L1"]], "l2_zeros": [r["zeros"] for r in runs["L2"]],
        "l1_test_acc": [r["test_acc"] for r in runs["L1"]], "l2_test_acc": [r["test_acc"] for r in runs["L2"]],
        "l1_weight_norm": [r["weight_norm"] for r in runs["L1"]],
        "l2_weight_norm": [r["weight_norm"] for r in runs["L2"]],
    }
    summary["l1_gives_zeros"] = summary["l1_zeros"][-1] > 0
    summary["l2_gives_no_zeros"] = all(z == 0 for z in summary["l2_zeros"])
    summary["l1_zeros_grow_with_lambda"] = is_monotone(summary["l1_zeros"], decreasing=False)
    section = Section(
        key="sparsity", title="4. L1 vs L2: exact zeros",
        text=_paragraph(summary),
        figures=[Figure("sparsity-histograms", _histograms_png(runs, lambdas),
                        caption="Weight histograms (log count); the bar at 0 for L1 is the exact zeros"),
                 Figure("sparsity-counts", _counts_png(summary), caption="Exact zeros and test accuracy against λ")],
        tables=[Table(columns=["λ", "L1 zeros", "L2 zeros", "L1 test acc", "L2 test acc"],
                      rows=[[lam_label(lam), a, b, c, d] for lam, a, b, c, d in
                            zip(lambdas, summary["l1_zeros"], summary["l2_zeros"], summary["l1_test_acc"],
                                summary["l2_test_acc"])],
                      caption=f"of {n_params} parameters; SGD lr {LR}, {epochs} epochs, batch {BATCH}")],
    )
    return StudyResult.with_headline(section, summary, "4 L1 vs L2",
                                     f"exact zeros at λ={lambdas[-1]:g}: L1 {summary['l1_zeros'][-1]}/"
                                     f"{n_params}, L2 {summary['l2_zeros'][-1]}")


def _paragraph(s) -> str:
    lams, z1, z2, n = s["lambdas"], s["l1_zeros"], s["l2_zeros"], s["n_params"]
    text = (f"The same softmax-regression model on digits ({n} parameters) was trained with L1 (a proximal "
            f"soft-threshold step after each SGD step) and with L2 (coupled weight decay) at λ from {lams[0]:g} to "
            f"{lams[-1]:g}. L1 leaves {z1[0]} parameters exactly zero at λ={lams[0]:g} and {z1[-1]} "
            f"({z1[-1] / n:.0%}) at λ={lams[-1]:g}, with test accuracy {s['l1_test_acc'][0]:.3f} → "
            f"{s['l1_test_acc'][-1]:.3f}. ")
    if s["l2_gives_no_zeros"]:
        text += ("L2 leaves no parameter exactly zero at any λ: it shrinks weights in proportion to their size, so "
                 f"they get small (‖w‖ {s['l2_weight_norm'][0]:.3g} → {s['l2_weight_norm'][-1]:.3g}) but never vanish.")
    else:
        text += f"L2 leaves {max(z2)} parameters exactly zero at most (weights that underflowed)."
    return text


def _histograms_png(runs, lambdas) -> bytes:
    fig, axes = new_figure(2.3 * len(lambdas), 4.2, nrows=2, ncols=len(lambdas), sharey="row", squeeze=False)
    for j, lam in enumerate(lambdas):
        for i, kind in enumerate(("L1", "L2")):
            run = runs[kind][j]
            w = run["weights"]
            limit = max(float(w.abs().max()), 1e-12)
            ax = axes[i, j]
            ax.hist(w.numpy(), bins=41, range=(-limit, limit), color="C3" if kind == "L1" else "C0", log=True)
            ax.set_title(f"{kind}, λ={lam_label(lam)}: {run['zeros']} zeros", fontsize=8)
            ax.tick_params(labelsize=7)
    return fig_to_png(fig)


def _counts_png(s) -> bytes:
    fig, axes = new_figure(9.0, 3.0, ncols=2)
    axes[0].plot(s["lambdas"], s["l1_zeros"], "o-", color="C3", label="L1 (proximal)")
    axes[0].plot(s["lambdas"], s["l2_zeros"], "s-", color="C0", label="L2 (coupled decay)")
    axes[0].set(xscale="log", xlabel="λ", ylabel=f"exactly zero (of {s['n_params']})")
    axes[1].plot(s["lambdas"], s["l1_test_acc"], "o-", color="C3", label="L1")
    axes[1].plot(s["lambdas"], s["l2_test_acc"], "s-", color="C0", label="L2")
    axes[1].set(xscale="log", xlabel="λ", ylabel="test accuracy")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig_to_png(fig)
