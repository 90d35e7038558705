"""Study 8: too much decay slows convergence — training-loss curves against λ.

One MLP (same initial weights, same batches) trained on the digits images with
``decaylab.optim.AdamW`` (``decay_scaling="lr"``: each step ``w ← w − lr·λ·w`` on every
parameter, then the Adam step) at several λ. Recorded per epoch: the training loss (the data
term alone, the cross-entropy; decay is not part of it). Measured per λ: the first epoch whose
training loss is at or below ``TARGET`` (never, within the budget, if it stays above), the final
training loss and the final validation accuracy.

Why: decay pulls every weight towards zero at rate lr·λ while the gradient pushes the loss down;
the weights settle where the two balance, so the loss stops falling where the pull is strong
enough, and before that every step the decay undoes slows the descent. Small λ changes nothing
visible; large λ takes longer to reach any given loss, or never reaches it.
"""

from __future__ import annotations

import math

from decaylab import data, models
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.optim import AdamW
from decaylab.report.model import Figure, Section, Table
from decaylab.train import fit

from ._common import StudyResult, as_floats, is_monotone, lam_label

FULL = dict(lambdas=(0.0, 0.3, 1.0, 3.0, 10.0), hidden=(64,), epochs=20)
QUICK = dict(lambdas=(0.0, 1.0, 10.0), hidden=(32,), epochs=12)
LR, BATCH = 3e-3, 64
TARGET = 0.2  # training cross-entropy a run must reach to count as converged


def epochs_to_target(epochs, losses, target: float = TARGET) -> int | None:
    """The first epoch whose loss is ≤ ``target``, ``None`` if none is."""
    return next((e for e, loss in zip(epochs, losses) if loss <= target), None)


def run_convergence(quick: bool = False, seed: int = 0, progress: bool = False, *, lambdas=None,
                    epochs: int | None = None, hidden=None) -> StudyResult:
    """Train the digits MLP at each λ and record its training-loss curve."""
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(lambdas=lambdas, epochs=epochs, hidden=hidden).items() if v is not None})
    ds = data.load("digits", seed=seed)
    curves, reach, final, val_acc = [], [], [], []
    for lam in progress_bar(cfg["lambdas"], desc="8 convergence vs λ", enabled=progress):
        model = models.build("mlp", in_features=ds.n_features, out_features=ds.n_classes, hidden=cfg["hidden"],
                             seed=seed)
        history = fit(model, AdamW(model.parameters(), lr=LR, weight_decay=lam), ds, epochs=cfg["epochs"],
                      batch_size=BATCH, seed=seed)
        curves.append(as_floats(history.train_loss))
        reach.append(epochs_to_target(history.epoch, history.train_loss))
        final.append(history.train_loss[-1])
        val_acc.append(history.val_acc[-1])
    never = [math.inf if r is None else r for r in reach]
    summary = {
        "dataset": "digits", "n_train": len(ds.train), "hidden": list(cfg["hidden"]), "epochs": cfg["epochs"],
        "optimizer": "decaylab.optim.AdamW", "decay_scaling": "lr", "lr": LR, "batch_size": BATCH,
        "lambdas": [float(v) for v in cfg["lambdas"]], "target_train_loss": TARGET,
        "train_loss_curves": curves, "epochs_to_target": reach, "final_train_loss": as_floats(final),
        "final_val_acc": as_floats(val_acc),
        # the expected directions: reaching the target never gets faster as λ grows, the largest λ is
        # slower than no decay, and the final loss rises with λ
        "slower_with_more_decay": is_monotone(never, decreasing=False) and never[-1] > never[0],
        "final_loss_rises_with_lambda": is_monotone(final, decreasing=False),
    }
    section = Section(
        key="convergence", title="8. Too much decay slows convergence",
        text=_paragraph(summary),
        figures=[Figure("convergence-curves", _figure_png(summary),
                        caption=f"Training cross-entropy per epoch for each λ (log scale); dashed: the target "
                                f"{TARGET:g}")],
        tables=[Table(columns=["λ", f"epochs to loss ≤ {TARGET:g}", "final train loss", "final val acc"],
                      rows=[[lam, "never" if r is None else r, f, a]
                            for lam, r, f, a in zip(summary["lambdas"], reach, summary["final_train_loss"],
                                                    summary["final_val_acc"])],
                      caption=f"digits ({len(ds.train)} training rows), MLP 64-{'-'.join(map(str, cfg['hidden']))}-10, "
                              f"AdamW lr {LR:g}, batches of {BATCH}, {cfg['epochs']} epochs")],
    )
    slowest = summary["lambdas"][-1]
    return StudyResult.with_headline(
        section, summary, "8 convergence vs λ",
        f"epochs to loss ≤ {TARGET:g}: λ=0 {_epochs_text(reach[0])}, λ={lam_label(slowest)} {_epochs_text(reach[-1])}")


def _epochs_text(epochs: int | None) -> str:
    return "never" if epochs is None else str(epochs)


def _paragraph(s) -> str:
    lams, reach, final = s["lambdas"], s["epochs_to_target"], s["final_train_loss"]
    per_lambda = "; ".join(f"λ={lam_label(lam)}: {_epochs_text(r)}" + ("" if r is None else " epochs")
                           + f", final {f:.3g}" for lam, r, f in zip(lams, reach, final))
    verdict = ("More decay never reached the target sooner and the largest λ was slower than no decay: "
               "each step, decay undoes part of what the gradient did, and where the two balance the loss "
               "stops falling." if s["slower_with_more_decay"] else
               "Here the expected direction did not hold: some larger λ reached the target at least as early "
               "as a smaller one, or the largest λ was not slower than no decay.")
    rising = ("The final training loss rises with λ." if s["final_loss_rises_with_lambda"] else
              "The final training loss does not rise monotonically with λ here.")
    return (f"An MLP on the digits images ({s['n_train']} training rows), AdamW lr {s['lr']:g}, batches of "
            f"{s['batch_size']}, {s['epochs']} epochs, the same initial weights and batch order for every λ. Epochs "
            f"until the training cross-entropy first reaches {s['target_train_loss']:g}, and its final value: "
            f"{per_lambda}. {verdict} {rising} The final validation accuracies are "
            + ", ".join(f"{a:.3f}" for a in s["final_val_acc"]) + " — a small λ costs nothing here; too much "
            "costs training speed first and accuracy next.")


def _figure_png(s) -> bytes:
    fig, ax = new_figure(6.4, 3.6)
    for i, (lam, curve) in enumerate(zip(s["lambdas"], s["train_loss_curves"])):
        ax.plot(range(1, len(curve) + 1), curve, color=f"C{i}", label=f"λ = {lam_label(lam)}")
    ax.axhline(s["target_train_loss"], color="0.4", ls="--", lw=1)
    ax.set(xlabel="epoch", ylabel="training cross-entropy", yscale="log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig_to_png(fig)
