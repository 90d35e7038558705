"""Study 1: decision boundaries of an MLP on noisy two-moons as the AdamW decay λ grows.

For each λ the same MLP (same initial weights, same data) is trained full-batch with
``decaylab.optim.AdamW`` (decoupled decay, ``decay_scaling="lr"``: each step
``w ← w − lr·λ·w`` on every parameter, then the Adam step). Measured per λ: train and
(clean-label) test accuracy, the weight norm ‖θ‖₂ of all parameters, and the boundary
length as the number of sign flips of the predicted class between neighbouring cells of a
``grid×grid`` lattice over the input square (horizontal plus vertical neighbours).
"""

from __future__ import annotations

import torch

from decaylab import data, models
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.optim import AdamW
from decaylab.report.model import Figure, Section, Slider, Table
from decaylab.train import fit

from ._common import StudyResult, accuracy, as_floats, is_monotone, lam_label

FULL = dict(lambdas=(0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), hidden=(128, 128), epochs=400)
QUICK = dict(lambdas=(0.0, 0.3, 1.0, 3.0, 10.0, 100.0), hidden=(64, 64), epochs=250)
LR = 0.01
GRID = 160
EXTENT = 2.75  # the plotted square is [-EXTENT, EXTENT]² in standardized coordinates


def grid_points(grid: int = GRID, extent: float = EXTENT) -> torch.Tensor:
    """The ``grid²`` lattice points of ``[-extent, extent]²``, row-major (y outer, x inner)."""
    axis = torch.linspace(-extent, extent, grid)
    return torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)


def boundary_flips(labels: torch.Tensor) -> int:
    """Number of neighbouring cell pairs (horizontal + vertical) of a 2-D label map with different labels."""
    return int((labels[1:, :] != labels[:-1, :]).sum() + (labels[:, 1:] != labels[:, :-1]).sum())


def run_boundaries(quick: bool = False, seed: int = 0, progress: bool = False, *, lambdas=None,
                   epochs: int | None = None, hidden=None) -> StudyResult:
    """Train the two-moons MLP at each λ and measure accuracy, ‖θ‖ and boundary length."""
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(lambdas=lambdas, epochs=epochs, hidden=hidden).items() if v is not None})
    ds = data.load("moons", seed=seed)
    points = grid_points()
    runs = []
    for lam in progress_bar(cfg["lambdas"], desc="1 boundaries vs λ", enabled=progress):
        model = models.build("mlp", in_features=2, out_features=2, hidden=cfg["hidden"], seed=seed)
        history = fit(model, AdamW(model.parameters(), lr=LR, weight_decay=lam), ds, epochs=cfg["epochs"],
                      batch_size=None, seed=seed, eval_every=cfg["epochs"])
        model.eval()
        with torch.no_grad():
            prob = torch.softmax(model(points), dim=1)[:, 1].reshape(GRID, GRID)
        runs.append(dict(lam=float(lam), train_acc=history.train_acc[-1],
                         test_acc=accuracy(model, ds.test.X, ds.test.y),
                         weight_norm=models.weight_norm(model), flips=boundary_flips(prob > 0.5), prob=prob))

    summary = _summary(runs, cfg, ds)
    frames = [Figure(f"boundary-{i}", _boundary_png(run, ds), caption=_frame_caption(run))
              for i, run in enumerate(runs)]
    section = Section(
        key="boundaries", title="1. Decision boundaries vs λ (AdamW on noisy two moons)",
        text=_paragraph(summary, cfg, ds),
        figures=[Figure("boundaries-curves", _curves_png(summary),
                        caption="Train/test accuracy, weight norm and boundary length against λ")],
        tables=[Table(columns=["λ", "train acc", "test acc", "‖θ‖₂", "boundary flips"],
                      rows=[[lam_label(r["lam"]), r["train_acc"], r["test_acc"], r["weight_norm"], r["flips"]]
                            for r in runs],
                      caption=f"AdamW, lr {LR}, {cfg['epochs']} full-batch epochs; flips on a {GRID}×{GRID} grid")],
        slider=Slider(label="λ (AdamW weight_decay)", values=[r["lam"] for r in runs], frames=frames,
                      captions=[_frame_caption(r) for r in runs]),
    )
    return StudyResult.with_headline(section, summary, "1 boundaries",
                                     f"best test acc {summary['best_test_acc']:.3f} at λ={summary['best_lambda']:g}; "
                                     f"‖θ‖ {summary['weight_norm'][0]:.3g} → {summary['weight_norm'][-1]:.3g}")


def _summary(runs, cfg, ds) -> dict:
    test = [r["test_acc"] for r in runs]
    norms = [r["weight_norm"] for r in runs]
    flips = [r["flips"] for r in runs]
    best = max(range(len(runs)), key=lambda i: test[i])
    return {
        "optimizer": "decaylab.optim.AdamW", "decay_scaling": "lr", "lr": LR, "epochs": cfg["epochs"],
        "hidden": list(cfg["hidden"]), "n_train": len(ds.train), "n_test": len(ds.test),
        "label_noise": ds.meta["label_noise"], "grid": GRID,
        "lambdas": [r["lam"] for r in runs],
        "train_acc": as_floats(r["train_acc"] for r in runs), "test_acc": as_floats(test),
        "weight_norm": as_floats(norms), "boundary_flips": flips,
        "best_lambda": runs[best]["lam"], "best_test_acc": test[best],
        "weights_shrink_monotonically": is_monotone(norms, decreasing=True),
        "boundary_shortens_monotonically": is_monotone(flips, decreasing=True),
        "test_acc_rises_then_falls": 0 < best < len(runs) - 1 and test[best] > test[0] and test[best] > test[-1],
    }


def _frame_caption(run) -> str:
    return (f"λ = {lam_label(run['lam'])}: train acc {run['train_acc']:.3f}, test acc {run['test_acc']:.3f}, "
            f"‖θ‖ {run['weight_norm']:.3g}, boundary flips {run['flips']}")


def _paragraph(s, cfg, ds) -> str:
    lams, test, norms, flips = s["lambdas"], s["test_acc"], s["weight_norm"], s["boundary_flips"]
    shape = ("rises from" if s["best_test_acc"] > test[0] else "does not improve on")
    text = (f"The same MLP ({'×'.join(map(str, cfg['hidden']))} hidden units) was trained with AdamW "
            f"(lr {LR}, {cfg['epochs']} full-batch steps) on {s['n_train']} two-moons points, "
            f"{s['label_noise']:.0%} of whose labels are flipped, once per λ. Test accuracy {shape} "
            f"{test[0]:.3f} at λ={lams[0]:g} to a peak of {s['best_test_acc']:.3f} at λ={s['best_lambda']:g} "
            f"and ends at {test[-1]:.3f} at λ={lams[-1]:g}, where train accuracy is {s['train_acc'][-1]:.3f}: "
            f"too much decay underfits. ")
    text += (f"The weight norm goes from {norms[0]:.3g} to {norms[-1]:.3g}"
             + (", shrinking at every step up in λ" if s["weights_shrink_monotonically"]
                else ", though not at every step")
             + f", and the boundary gets {'shorter' if flips[-1] < flips[0] else 'no shorter'}: {flips[0]} sign flips "
             f"on the {GRID}×{GRID} grid at λ={lams[0]:g}, {flips[-1]} at λ={lams[-1]:g}"
             + ("" if s["boundary_shortens_monotonically"] else " (not monotonically)") + ". "
             "Move the slider to see the boundary smooth out as the weights shrink.")
    return text


def _boundary_png(run, ds) -> bytes:
    fig, ax = new_figure(4.2, 4.0)
    axis, prob = torch.linspace(-EXTENT, EXTENT, GRID).numpy(), run["prob"].numpy()
    ax.imshow(prob, origin="lower", extent=(-EXTENT, EXTENT, -EXTENT, EXTENT), cmap="RdBu_r", vmin=0, vmax=1,
              alpha=0.75, interpolation="bilinear")
    ax.contour(axis, axis, prob, levels=[0.5], colors="k", linewidths=1.2)
    X, y = ds.train.X.numpy(), ds.train.y.numpy()
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", edgecolors="k", linewidths=0.5, s=16, vmin=-0.2, vmax=1.2)
    ax.set(xlim=(-EXTENT, EXTENT), ylim=(-EXTENT, EXTENT), xticks=[], yticks=[],
           title=f"λ = {lam_label(run['lam'])}   test acc {run['test_acc']:.3f}   ‖θ‖ {run['weight_norm']:.3g}")
    ax.title.set_fontsize(9)
    return fig_to_png(fig)


def _curves_png(s) -> bytes:
    fig, axes = new_figure(10.5, 3.0, ncols=3)
    x = list(range(len(s["lambdas"])))
    labels = [lam_label(v) for v in s["lambdas"]]
    axes[0].plot(x, s["train_acc"], "o-", label="train")
    axes[0].plot(x, s["test_acc"], "s-", label="test")
    axes[0].set(ylabel="accuracy")
    axes[0].legend()
    axes[1].plot(x, s["weight_norm"], "o-", color="C2")
    axes[1].set(ylabel="‖θ‖₂", yscale="log")
    axes[2].plot(x, s["boundary_flips"], "o-", color="C3")
    axes[2].set(ylabel=f"boundary flips ({GRID}×{GRID} grid)")
    for ax in axes:
        ax.set_xticks(x, labels)
        ax.set_xlabel("λ")
        ax.grid(alpha=0.3)
    return fig_to_png(fig)
