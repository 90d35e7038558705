"""Study 5: dropout vs weight decay — both regularize, only decay shrinks the weights.

The MLP of study 1 on the same noisy two-moons data (so it can overfit), four ways, all with
full-batch ``decaylab.optim.AdamW`` and the same initial weights: no regularization,
dropout only (``p`` after every hidden layer), decay only (``weight_decay=λ``, decoupled:
``w ← w − lr·λ·w`` per step), and both. Measured: train/test accuracy, the norm of every
layer's weight matrix and of all parameters, and validation accuracy per epoch.
"""

from __future__ import annotations

import torch

from decaylab import data, models
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.optim import AdamW
from decaylab.report.model import Figure, Section, Table
from decaylab.train import fit

from ._common import StudyResult, accuracy, as_floats

DROPOUT, LAMBDA, LR = 0.5, 3.0, 0.01
EVAL_EVERY = 10  # epochs between validation points of the curve
FULL = dict(hidden=(128, 128), epochs=400)
QUICK = dict(hidden=(64, 64), epochs=250)
CONFIGS = (("neither", 0.0, 0.0), ("dropout only", DROPOUT, 0.0), ("decay only", 0.0, LAMBDA),
           ("dropout + decay", DROPOUT, LAMBDA))


def run_dropout(quick: bool = False, seed: int = 0, progress: bool = False, *, epochs: int | None = None,
                hidden=None) -> StudyResult:
    """Train the four configurations and compare accuracy and weight norms."""
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(epochs=epochs, hidden=hidden).items() if v is not None})
    ds = data.load("moons", seed=seed)
    runs = {}
    for name, p, lam in progress_bar(CONFIGS, desc="5 dropout vs decay", enabled=progress):
        model = models.build("mlp", in_features=ds.n_features, out_features=ds.n_classes, hidden=cfg["hidden"],
                             dropout=p, seed=seed)
        history = fit(model, AdamW(model.parameters(), lr=LR, weight_decay=lam), ds, epochs=cfg["epochs"],
                      batch_size=None, seed=seed, eval_every=EVAL_EVERY)
        layer_norms = [float(m.weight.detach().norm()) for m in model.modules() if isinstance(m, torch.nn.Linear)]
        runs[name] = {"dropout": p, "weight_decay": lam, "train_acc": history.train_acc[-1],
                      "test_acc": accuracy(model, ds.test.X, ds.test.y), "weight_norm": models.weight_norm(model),
                      "layer_weight_norms": as_floats(layer_norms), "val_acc": as_floats(history.val_acc),
                      "val_epochs": history.epoch}

    base = runs["neither"]["weight_norm"]
    summary = {
        "dataset": "moons", "n_train": len(ds.train), "label_noise": ds.meta["label_noise"],
        "hidden": list(cfg["hidden"]), "epochs": cfg["epochs"],
        "optimizer": "decaylab.optim.AdamW", "lr": LR, "batch_size": None, "dropout": DROPOUT, "weight_decay": LAMBDA,
        "runs": runs,
        "weight_norm_ratio_dropout": runs["dropout only"]["weight_norm"] / base,
        "weight_norm_ratio_decay": runs["decay only"]["weight_norm"] / base,
    }
    summary["decay_shrinks_more_than_dropout"] = (summary["weight_norm_ratio_decay"]
                                                  < summary["weight_norm_ratio_dropout"])
    section = Section(
        key="dropout", title="5. Dropout vs weight decay",
        text=_paragraph(summary),
        figures=[Figure("dropout-norms", _figure_png(summary),
                        caption="Per-layer weight norms (left) and validation accuracy per epoch (right)")],
        tables=[Table(columns=["configuration", "train acc", "test acc", "‖θ‖₂"],
                      rows=[[name, r["train_acc"], r["test_acc"], r["weight_norm"]] for name, r in runs.items()],
                      caption=f"two moons ({len(ds.train)} training points), MLP {'-'.join(map(str, cfg['hidden']))}, "
                              f"AdamW lr {LR}, {cfg['epochs']} full-batch epochs; dropout p={DROPOUT}, λ={LAMBDA}")],
    )
    return StudyResult.with_headline(section, summary, "5 dropout vs decay",
                                     f"‖θ‖ vs none: dropout ×{summary['weight_norm_ratio_dropout']:.2f}, "
                                     f"decay ×{summary['weight_norm_ratio_decay']:.2f}")


def _paragraph(s) -> str:
    r = s["runs"]
    best = max(r, key=lambda k: r[k]["test_acc"])
    return (f"A {'-'.join(map(str, s['hidden']))} MLP trained on {s['n_train']} noisy two-moons points reaches train "
            f"accuracy {r['neither']['train_acc']:.3f} and test accuracy {r['neither']['test_acc']:.3f} without "
            f"regularization. Dropout (p={s['dropout']}) gives test accuracy {r['dropout only']['test_acc']:.3f}, "
            f"weight decay (AdamW λ={s['weight_decay']:g}) {r['decay only']['test_acc']:.3f}, both "
            f"{r['dropout + decay']['test_acc']:.3f}; the best here is {best}. On the weights they act differently: "
            f"with dropout the weight norm is ×{s['weight_norm_ratio_dropout']:.2f} that of the unregularized model "
            f"({r['dropout only']['weight_norm']:.3g} vs {r['neither']['weight_norm']:.3g}), with decay "
            f"×{s['weight_norm_ratio_decay']:.2f} ({r['decay only']['weight_norm']:.3g}). "
            + ("Decay pulls the weights towards zero directly; dropout regularizes through noise on the activations "
               "and shrinks them much less." if s["decay_shrinks_more_than_dropout"] else
               "Here dropout shrank the weights at least as much as decay did."))


def _figure_png(s) -> bytes:
    fig, axes = new_figure(10.0, 3.4, ncols=2)
    names = list(s["runs"])
    n_layers = len(s["runs"][names[0]]["layer_weight_norms"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        run = s["runs"][name]
        axes[0].bar([j + (i - (len(names) - 1) / 2) * width for j in range(n_layers)], run["layer_weight_norms"],
                    width=width, color=f"C{i}", label=name)
        axes[1].plot(run["val_epochs"], run["val_acc"], color=f"C{i}", label=name)
    axes[0].set_xticks(range(n_layers), [f"layer {j + 1}" for j in range(n_layers)])
    axes[0].set(ylabel="‖W‖ (Frobenius)")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig_to_png(fig)
