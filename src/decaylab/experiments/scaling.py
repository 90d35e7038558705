"""The scaling study: do the λ scaling rules hold here? Ladders swept by the batched engine, the largest held out.

Three ladders on MNIST-1D (generated locally: ``mnist1d.data.make_dataset(get_dataset_args())`` through
:mod:`decaylab.data`), each varying one thing of an MLP 40-w-10 (one hidden ReLU layer) trained with torch-convention
AdamW (``decay_scaling="lr"``, lr 3e-3, constant) for 100 epochs, λ on a log grid 1e-2 … 1e2 (13 values;
quick: 9):

- ``rows``: training rows N = 125 × 1, 2, 4, 8, 16 (quick: × 1, 2, 4) at width 128, batch 32;
- ``width``: hidden widths 64 … 1024 (quick: 64 … 256) at 4× the base N, batch 32;
- ``batch``: batch sizes 16 … 256 (quick: 32 … 128) at 8× the base N, width 128.

Every rung is one :func:`decaylab.sweep` (engine ``"batched"``: the λ grid × seeds in one stacked model; ``metric=
"loss"``) on N training rows plus a validation holdout of :data:`VAL_ROWS` rows drawn from one fixed permutation of
MNIST-1D's 4000 training rows (the rows of a smaller rung are a subset of a larger one's). For each ladder the rules
and the fitted power law (:func:`decaylab.scaling.predict`) are fitted on every rung but the largest and predict
the largest; its measured curve then scores each prediction by |log10 λ_pred − log10 λ_best| and the regret:
validation loss at λ_pred (trained there: one more sweep of the largest rung at the predicted λ, the same seeds
and holdout) minus the grid's lowest mean, against the standard error over seeds at that best grid point. The
tokens-per-parameter ladder of a small GPT (Power Lines' own setting) needs next-token sweeps, which decaylab
does not run yet; the report says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from decaylab._checks import check_int
from decaylab.report.model import Figure, Section, Table

__all__ = ["LADDERS", "Ladder", "ScalingStudy", "run_scaling", "ladder_scores", "VAL_ROWS"]

VAL_ROWS = 500
BASE = dict(rows=125, width=128, batch=32, lr=3e-3)
TOKEN_LADDER = ("The tokens-per-parameter ladder on the small GPT (Power Lines' own setting, τ_opt as a power law in "
                "D/P) needs next-token sweeps, which decaylab does not run yet: it is not measured here. "
                "power-lines-fit is fitted on examples per parameter where a ladder varies D/P (rows, width).")


@dataclass(frozen=True)
class Ladder:
    """One ladder: the ``vary``-ing variable's ``values`` (``quick`` ones for ``--quick``) around ``base``."""

    key: str
    vary: str
    values: tuple[int, ...]
    quick: tuple[int, ...]
    base: dict

    def settings(self, value: int) -> dict:
        return {**self.base, self.vary: value}


LADDERS = (
    Ladder("rows", "rows", tuple(BASE["rows"] * k for k in (1, 2, 4, 8, 16)),
           tuple(BASE["rows"] * k for k in (1, 2, 4)), BASE),
    Ladder("width", "width", (64, 128, 256, 512, 1024), (64, 128, 256), {**BASE, "rows": 4 * BASE["rows"]}),
    Ladder("batch", "batch", (16, 32, 64, 128, 256), (32, 64, 128), {**BASE, "rows": 8 * BASE["rows"]}),
)


@dataclass
class ScalingStudy:
    """Per ladder: the rungs, the prediction for the largest from the others, and its scores; the report."""

    rungs: dict[str, list]
    predictions: dict[str, object]
    scores: dict[str, list[dict]]
    sections: list[Section]
    summary: dict
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _pool():
    from decaylab import data

    pool = data.load("mnist1d", seed=0).train_and_val()
    order = np.random.default_rng(0).permutation(len(pool.y))
    return pool.X[order], pool.y[order]


def _sweep(X, y, s: dict, lambdas, seeds: int, epochs: int):
    """The sweep of ``lambdas`` × seeds on the first ``rows`` rows plus the validation rows (the same holdout split
    for every call on the same rung)."""
    import decaylab

    n = s["rows"] + VAL_ROWS
    return decaylab.sweep("mlp", (X[:n], y[:n]), lambdas, lr=s["lr"], seed=list(range(seeds)),
                          holdout=VAL_ROWS / n, optimizer="adamw", epochs=epochs, batch_size=s["batch"],
                          hidden=(s["width"],), metric="loss", engine="batched")


def _sweep_rung(X, y, s: dict, lambdas, seeds: int, epochs: int):
    """One rung: :func:`_sweep` as a :class:`~decaylab.scaling.rungs.Rung`."""
    from decaylab.scaling.rungs import rung_from_result

    return rung_from_result(_sweep(X, y, s, lambdas, seeds, epochs), source=f"{s}", rows=s["rows"])


def _train_at(X, y, s: dict, lambdas, seeds: int, epochs: int) -> dict[float, float]:
    """Mean validation loss over seeds at each λ of ``lambdas``, trained on the rung ``s`` (the regret's λ_pred)."""
    result = _sweep(X, y, s, sorted(set(lambdas)), seeds, epochs)
    return {row["lambda"]: row["mean"] for row in result.summary}


def _rounded(lam: float) -> float:
    return float(f"{lam:.6g}")


def ladder_scores(prediction, held_out, trained: dict[float, float] | None = None) -> list[dict]:
    """Per rule that applies: predicted λ, |Δlog10| from the held-out rung's best λ, the regret — validation loss
    at λ_pred (``trained[λ_pred]``, the mean over seeds of runs at that λ; without it, the measured curve linear
    in log λ) minus the grid's lowest mean —, the standard error of that lowest mean over seeds and whether the
    regret is within one standard error."""
    best = held_out.best
    i = int(np.argmin(held_out.mean))
    floor, se = float(held_out.mean[i]), float(held_out.se[i])
    out = []
    for r in prediction.rules:
        if r.lam is None:
            continue
        at = trained.get(_rounded(r.lam)) if trained is not None else None
        regret = (held_out.loss_at(r.lam) if at is None else at) - floor
        out.append({"rule": r.rule, "predicted": r.lam, "low": r.low, "high": r.high, "best": best,
                    "dlog10": abs(math.log10(r.lam) - math.log10(best)), "regret": regret, "se": se,
                    "within_se": bool(regret <= se), "consistent": r.consistent,
                    "outside_grid": bool(r.lam < held_out.lambdas[0] or r.lam > held_out.lambdas[-1])})
    return out


def _figure(ladder: Ladder, rungs, scores, prediction) -> bytes:
    from decaylab._figures import fig_to_png, new_figure

    fig, ax = new_figure(7.0, 4.2, feature="the scaling report's figures")
    for k, rung in enumerate(rungs):
        last = k == len(rungs) - 1
        colour = "tab:blue" if last else str(round(0.75 - 0.45 * k / max(1, len(rungs) - 2), 3))   # greys: fitted
        ax.errorbar(rung.lambdas, rung.mean, yerr=rung.se, marker="o", ms=3, capsize=2, color=colour,
                    lw=2.2 if last else 1.0, label=f"{ladder.vary} = {rung.settings.value(ladder.vary):g}"
                    + (" (held out)" if last else " (fitted)"))
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (1, 1)), (0, (3, 1, 1, 1))]
    for j, s in enumerate(scores):
        ax.axvline(s["predicted"], color=f"C{j + 1}", ls=styles[j % len(styles)], lw=1.2,
                   label=f"{s['rule']}: λ {s['predicted']:.3g}")
    ax.axvline(rungs[-1].best, color="black", lw=1.5, label=f"measured best λ {rungs[-1].best:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("λ (torch AdamW weight_decay)")
    ax.set_ylabel("validation loss (mean ± SE over seeds)")
    ax.set_title(f"{ladder.key} ladder: predicted λ on the held-out rung")
    ax.legend(fontsize=6.5, ncol=2)
    return fig_to_png(fig)


def _section(ladder: Ladder, rungs, prediction, scores, png: bytes) -> Section:
    best = rungs[-1].best
    rows = [[s["rule"], f"{s['predicted']:.3g}", f"{s['low']:.3g} … {s['high']:.3g}", f"{s['dlog10']:.2f}",
             f"{s['regret']:+.4f}", f"{s['se']:.4f}", "yes" if s["within_se"] else "no",
             {None: "", True: "yes", False: "no"}[s["consistent"]]] for s in scores]
    inside = [s for s in scores if s["dlog10"] <= 0.3 and s["within_se"]]
    keep = next((s for s in scores if s["rule"] == "keep"), None)
    top = min(scores, key=lambda s: s["regret"]) if scores else None
    text = (f"Fitted on {ladder.vary} = {', '.join(f'{r.settings.value(ladder.vary):g}' for r in rungs[:-1])}; "
            f"held out {ladder.vary} = {rungs[-1].settings.value(ladder.vary):g} "
            f"({prediction.distance_text}), whose measured best λ is {best:.3g}. The fitted exponent of λ_best in "
            f"{ladder.vary} is {prediction.exponent:+.2f} [{prediction.exponent_interval[0]:+.2f}, "
            f"{prediction.exponent_interval[1]:+.2f}]. "
            + (f"Within a factor of 2 and one standard error: {', '.join(s['rule'] for s in inside)}. " if inside else
               "No rule is within a factor of 2 of the best λ with a regret under one standard error. ")
            + (f"The lowest regret is {top['rule']}'s ({top['regret']:+.4f}); keeping the small run's λ costs "
               f"{keep['regret']:+.4f}." if top and keep else ""))
    return Section(key=f"ladder-{ladder.key}", title=f"{ladder.key} ladder", text=text,
                   figures=[Figure(name=f"scaling_{ladder.key}", png=png,
                                   caption=f"Validation loss against λ on every rung of the {ladder.key} ladder; "
                                           "vertical lines: each rule's λ for the held-out rung, and its best λ")],
                   tables=[Table(columns=["rule", "λ predicted", "95% interval", "|Δlog10 λ|", "regret", "SE",
                                          "regret ≤ SE", "fitted rungs consistent"], rows=rows,
                                 caption=f"Predictions for the held-out {ladder.vary} rung")])


def run_scaling(*, quick: bool = False, seeds: int | None = None, epochs: int | None = None,
                ladders: tuple[Ladder, ...] = LADDERS, lambdas=None, progress: bool = False) -> ScalingStudy:
    """Sweep every rung of every ladder, predict each ladder's largest rung from the others and score it (module
    docstring). ``quick``: three rungs a ladder, 9 λ, 2 seeds; else five rungs, 13 λ, 4 seeds; 100 epochs both.
    ``seeds``, ``epochs`` and ``lambdas`` (torch-AdamW λ grid) override either."""
    from decaylab._progress import progress_bar
    from decaylab.scaling import predict

    seeds = check_int("seeds", seeds if seeds is not None else (2 if quick else 4), low=2, high=100)
    epochs = check_int("epochs", epochs if epochs is not None else 100, low=1, high=100_000)
    grid = list(lambdas) if lambdas is not None else \
        [float(f"{v:.6g}") for v in np.logspace(-2, 2, 9 if quick else 13)]
    start = time.perf_counter()
    X, y = _pool()
    values = {lad.key: (lad.quick if quick else lad.values) for lad in ladders}
    bar = progress_bar(total=sum(len(v) for v in values.values()), desc="scaling rungs", unit="rung",
                       enabled=progress)
    rungs, predictions, scores, sections, rows = {}, {}, {}, [], []
    try:
        for lad in ladders:
            rungs[lad.key] = []
            for v in values[lad.key]:
                rungs[lad.key].append(_sweep_rung(X, y, lad.settings(v), grid, seeds, epochs))
                bar.update()
    finally:
        bar.close()
    for lad in ladders:
        fit_on, held = rungs[lad.key][:-1], rungs[lad.key][-1]
        target = {lad.vary: held.settings.value(lad.vary)}
        p = predict(fit_on, target, vary=lad.vary)
        trained = _train_at(X, y, lad.settings(held.settings.value(lad.vary)),
                            [_rounded(r.lam) for r in p.rules if r.lam is not None], seeds, epochs)
        predictions[lad.key], scores[lad.key] = p, ladder_scores(p, held, trained)
        sections.append(_section(lad, rungs[lad.key], p, scores[lad.key], _figure(lad, rungs[lad.key],
                                                                                 scores[lad.key], p)))
        rows += [{"ladder": lad.key, "rule": s["rule"], "λ pred": f"{s['predicted']:.3g}", "λ best": f"{s['best']:.3g}",
                  "|Δlog10|": f"{s['dlog10']:.2f}", "regret": f"{s['regret']:+.4f}", "SE": f"{s['se']:.4f}"}
                 for s in scores[lad.key]]
    sections.append(Section(key="token-ladder", title="tokens-per-parameter ladder", text=TOKEN_LADDER))
    seconds = time.perf_counter() - start
    summary = {"setup": {"quick": quick, "seeds": seeds, "epochs": epochs, "lambdas": grid, "val_rows": VAL_ROWS,
                         "ladders": {k: list(v) for k, v in values.items()}, "base": BASE},
               "ladders": {k: {"prediction": predictions[k].to_dict(), "scores": scores[k],
                               "rungs": [{"settings": r.settings.as_dict(), "lambdas": r.lambdas.tolist(),
                                          "mean": r.mean.tolist(), "se": r.se.tolist(), "best": r.best}
                                         for r in rungs[k]]} for k in rungs},
               "token_ladder": TOKEN_LADDER, "seconds": round(seconds, 2)}
    return ScalingStudy(rungs, predictions, scores, sections, summary, rows, seconds)
