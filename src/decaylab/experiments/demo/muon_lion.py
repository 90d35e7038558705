"""Study 10: Muon and Lion with decay — λ caps the weights' spectral norm and ℓ∞ norm at a bound.

One MLP (64-32-32-10) on the digits images, trained at several λ two ways:

- Muon: :class:`decaylab.optim.MuonAdamW` with :func:`~decaylab.optim.muon_param_groups` — Muon
  (lr 0.02, torch's defaults otherwise) for the two hidden matrices, AdamW (lr 3e-3, fixed λ 0.01)
  for the output head and the biases; λ is the Muon half's. Decoupled decay bounds each Muon matrix
  ‖W‖₂ ≤ ρ·s_max/λ (Chen, Li & Liu 2025; ρ = √max(1, A/B) the lr ratio, s_max ≈ 1.2024 the largest
  singular value Newton–Schulz outputs);
- Lion: :class:`decaylab.optim.Lion` (lr 3e-3) on every parameter; decoupled decay bounds every
  weight |w| ≤ 1/λ (Lion-𝒦, Chen et al. 2024).

The bounds come from :mod:`decaylab.diagnostics.bounds`, read by a :class:`~decaylab.DecayMonitor`
attached to each run (which also flags a tensor that saturates its bound); the norms are measured
exactly at the end (``torch.linalg.matrix_norm(ord=2)`` of each Muon matrix, max|w| over all Lion
parameters). Measured per λ: the largest norm/bound ratio, how many Lion weights sit at the bound
(|w| ≥ (1 − 10⁻³)/λ), how many tensors the monitor flags, and test accuracy.

Why: decay shrinks the weights by s_t·λ per step while each update moves them by a fixed amount
(lr per coordinate for Lion, lr·ρ·σ(O) along each singular direction for Muon), so the norm can
only grow until the two balance, at the bound. With a small λ the bound lies beyond anywhere
training goes; with a large one the weights press against it and the bound decides their size.
"""

from __future__ import annotations

import torch

from decaylab import data, models
from decaylab._figures import fig_to_png, new_figure
from decaylab._progress import progress_bar
from decaylab.diagnostics.bounds import ABOVE_RTOL, SATURATED_RTOL, ns_output_sup
from decaylab.diagnostics.monitor import DecayMonitor
from decaylab.diagnostics.monitor_views import flags
from decaylab.optim import Lion, MuonAdamW, muon_param_groups
from decaylab.report.model import Figure, Section, Table
from decaylab.train import fit

from ._common import StudyResult, accuracy, as_floats, is_monotone, lam_label

FULL = dict(muon_lambdas=(0.1, 0.3, 1.0, 3.0, 10.0), lion_lambdas=(0.3, 1.0, 3.0, 10.0, 30.0), epochs=20)
QUICK = dict(muon_lambdas=(0.1, 1.0, 10.0), lion_lambdas=(0.3, 3.0, 30.0), epochs=6)
HIDDEN, BATCH = (32, 32), 64
MUON_LR, ADAMW_LR, ADAMW_DECAY, LION_LR = 0.02, 3e-3, 0.01, 3e-3
AT_BOUND = 1e-3  # a Lion weight within this fraction of 1/λ counts as at the bound


def run_muon_lion(quick: bool = False, seed: int = 0, progress: bool = False, *, muon_lambdas=None,
                  lion_lambdas=None, epochs: int | None = None) -> StudyResult:
    """Train the digits MLP with Muon (+AdamW) and with Lion at each λ; measure norms against bounds."""
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(muon_lambdas=muon_lambdas, lion_lambdas=lion_lambdas, epochs=epochs).items()
                if v is not None})
    ds = data.load("digits", seed=seed)
    jobs = [("muon", lam) for lam in cfg["muon_lambdas"]] + [("lion", lam) for lam in cfg["lion_lambdas"]]
    runs = {"muon": [], "lion": []}
    for kind, lam in progress_bar(jobs, desc="10 Muon & Lion bounds", enabled=progress):
        runs[kind].append(_train(kind, lam, ds, cfg["epochs"], seed))
    muon, lion = runs["muon"], runs["lion"]
    summary = {
        "dataset": "digits", "n_train": len(ds.train), "hidden": list(HIDDEN), "epochs": cfg["epochs"],
        "batch_size": BATCH, "steps": muon[0]["steps"],
        "muon": "decaylab.optim.MuonAdamW: Muon lr 0.02 (hidden matrices, λ varied), AdamW lr 3e-3 λ 0.01 (rest)",
        "lion": "decaylab.optim.Lion lr 3e-3 on every parameter (λ varied)",
        "ns_output_sup": ns_output_sup(),
        "muon_lambdas": [float(v) for v in cfg["muon_lambdas"]],
        "lion_lambdas": [float(v) for v in cfg["lion_lambdas"]],
        "muon_spectral_norm": as_floats(r["norm"] for r in muon),
        "muon_spectral_bound": as_floats(r["bound"] for r in muon),
        "muon_bound_ratio": as_floats(r["ratio"] for r in muon),
        "muon_test_acc": as_floats(r["test_acc"] for r in muon), "muon_flagged_at_bound": [r["at"] for r in muon],
        "lion_max_abs": as_floats(r["norm"] for r in lion), "lion_max_abs_bound": as_floats(r["bound"] for r in lion),
        "lion_bound_ratio": as_floats(r["ratio"] for r in lion), "lion_at_bound": [r["count"] for r in lion],
        "lion_test_acc": as_floats(r["test_acc"] for r in lion), "lion_flagged_at_bound": [r["at"] for r in lion],
        "n_lion_weights": lion[0]["numel"], "n_muon_matrices": muon[0]["numel"],
        "bound_tolerance": ABOVE_RTOL, "saturated_within": SATURATED_RTOL,
    }
    # the expected directions: no run above its bound; the norms fall as λ grows; the largest λ saturates its bound
    summary["muon_within_spectral_bound"] = max(summary["muon_bound_ratio"]) <= 1 + ABOVE_RTOL
    summary["lion_within_linf_bound"] = max(summary["lion_bound_ratio"]) <= 1 + ABOVE_RTOL
    summary["norms_fall_with_lambda"] = (is_monotone(summary["muon_spectral_norm"], decreasing=True)
                                         and is_monotone(summary["lion_max_abs"], decreasing=True))
    summary["largest_lambda_saturates"] = (summary["muon_bound_ratio"][-1] >= 1 - SATURATED_RTOL
                                           and summary["lion_bound_ratio"][-1] >= 1 - AT_BOUND)
    section = Section(
        key="muon_lion", title="10. Muon and Lion: decay as a norm bound",
        text=_paragraph(summary),
        figures=[Figure("muon-lion-bounds", _figure_png(summary),
                        caption="Measured norms (dots) against the bounds decoupled decay implies (dashed) as λ grows: "
                                "left the spectral norm of the Muon matrix nearest its bound and ρ·s_max/λ, right "
                                "Lion's max|w| and 1/λ")],
        tables=[Table(columns=["optimizer", "λ", "norm", "bound", "norm/bound", "test acc", "flagged at bound"],
                      rows=[[name, lam_label(lam), r["norm"], r["bound"], r["ratio"], r["test_acc"], r["at"]]
                            for name, lams, rs in (("Muon ‖W‖₂", cfg["muon_lambdas"], muon),
                                                   ("Lion max|w|", cfg["lion_lambdas"], lion))
                            for lam, r in zip(lams, rs)],
                      caption=f"digits MLP 64-{'-'.join(map(str, HIDDEN))}-10, {summary['steps']} steps of batch "
                              f"{BATCH}; "
                              f"'flagged': tensors the DecayMonitor marks as within {SATURATED_RTOL:.0%} of a bound")],
    )
    return StudyResult.with_headline(
        section, summary, "10 Muon & Lion bounds",
        f"at λ={lam_label(summary['muon_lambdas'][-1])} Muon's ‖W‖₂ is {summary['muon_bound_ratio'][-1]:.2f} of its "
        f"bound; at λ={lam_label(summary['lion_lambdas'][-1])} Lion's max|w| {summary['lion_bound_ratio'][-1]:.4f} "
        f"of 1/λ")


def _train(kind: str, lam: float, ds, epochs: int, seed: int) -> dict:
    """One run: the model trained at ``lam``, its norm against its bound, and what the monitor flags."""
    model = models.build("mlp", in_features=ds.n_features, out_features=ds.n_classes, hidden=HIDDEN, seed=seed)
    if kind == "muon":
        optimizer = MuonAdamW(muon_param_groups(model), muon=dict(lr=MUON_LR, weight_decay=lam),
                              adamw=dict(lr=ADAMW_LR, weight_decay=ADAMW_DECAY))
        watched = [p for g in optimizer.param_groups if g["use_muon"] for p in g["params"]]
    else:
        optimizer = Lion(model.parameters(), lr=LION_LR, weight_decay=lam)
        watched = list(model.parameters())
    monitor = DecayMonitor()
    fit(model, optimizer, ds, epochs=epochs, batch_size=BATCH, seed=seed, eval_every=epochs, callbacks=[monitor])
    names = {id(p): n for n, p in model.named_parameters()}
    watched_names = [names[id(p)] for p in watched]
    latest = monitor.latest()
    with torch.no_grad():
        if kind == "muon":
            norms = [float(torch.linalg.matrix_norm(p, ord=2)) for p in watched]
        else:
            norms = [float(p.abs().max()) for p in watched]
    bounds = [latest[name]["spectral_bound" if kind == "muon" else "max_abs_bound"] for name in watched_names]
    ratios = [n / b for n, b in zip(norms, bounds)]
    worst = max(range(len(ratios)), key=ratios.__getitem__)
    flagged = sum(any(f.startswith("at ") for f in flags(row, latest[row["param"]]))
                  for row in monitor.summary() if row["param"] in watched_names)
    flat = torch.cat([p.detach().abs().flatten() for p in watched])
    return {"norm": norms[worst], "bound": bounds[worst], "ratio": ratios[worst], "at": flagged,
            "count": int((flat >= (1 - AT_BOUND) / lam).sum()), "test_acc": accuracy(model, ds.test.X, ds.test.y),
            "steps": monitor.steps_seen, "numel": len(flat) if kind == "lion" else len(watched)}


def _paragraph(s) -> str:
    mu, li = s["muon_lambdas"], s["lion_lambdas"]
    ratio = s["muon_spectral_bound"][0] * mu[0] / s["ns_output_sup"]
    muon_runs = "; ".join(f"λ={lam_label(lam)}: ‖W‖₂ {n:.3g} of bound {b:.3g} ({r:.2f})"
                          for lam, n, b, r in zip(mu, s["muon_spectral_norm"], s["muon_spectral_bound"],
                                                  s["muon_bound_ratio"]))
    lion_runs = "; ".join(f"λ={lam_label(lam)}: max|w| {n:.3g} of {b:.3g} ({c} weights at it)"
                          for lam, n, b, c in zip(li, s["lion_max_abs"], s["lion_max_abs_bound"], s["lion_at_bound"]))
    held = ("No run ended above its bound" if s["muon_within_spectral_bound"] and s["lion_within_linf_bound"] else
            "Some run ended above its bound (more than the stated tolerance), which the derivation says cannot happen")
    falls = ("both norms fall as λ grows" if s["norms_fall_with_lambda"] else
             "the norms do not fall at every λ step here")
    saturated = ("at the largest λ both sit at their bound: the bound, not the data, sets the weights' size there"
                 if s["largest_lambda_saturates"] else "at the largest λ the weights did not reach their bound")
    return (f"The digits MLP ({s['n_train']} training rows, {s['steps']} steps of batch {s['batch_size']}) was trained "
            f"with Muon on its {s['n_muon_matrices']} hidden matrices (AdamW for the head and biases) and with Lion on "
            f"all {s['n_lion_weights']} parameters. Decoupled decay predicts a bound for each: ‖W‖₂ ≤ ρ·s_max/λ for "
            f"Muon (ρ = √max(1, A/B) = {ratio:.3g} here, s_max = {s['ns_output_sup']:.4f} the largest singular value "
            f"Newton–Schulz can output) and |w| ≤ 1/λ for Lion. Muon, the matrix nearest its bound: {muon_runs}. Lion: "
            f"{lion_runs}. {held}; {falls}; {saturated}. Test accuracy: Muon "
            + ", ".join(f"{a:.3f}" for a in s["muon_test_acc"]) + "; Lion "
            + ", ".join(f"{a:.3f}" for a in s["lion_test_acc"]) + f". The DecayMonitor flags "
            f"{s['muon_flagged_at_bound'][-1]} of {s['n_muon_matrices']} Muon matrices and "
            f"{s['lion_flagged_at_bound'][-1]} Lion tensors as at their bound at the largest λ.")


def _figure_png(s) -> bytes:
    fig, axes = new_figure(9.6, 3.4, ncols=2)
    panels = ((axes[0], s["muon_lambdas"], s["muon_spectral_norm"], s["muon_spectral_bound"], "C0",
               "Muon: ‖W‖₂ nearest its bound", "ρ·s_max/λ"),
              (axes[1], s["lion_lambdas"], s["lion_max_abs"], s["lion_max_abs_bound"], "C3", "Lion: max|w|", "1/λ"))
    for ax, lams, norms, bound, color, label, bound_label in panels:
        ax.plot(lams, bound, ls="--", color="0.4", label=f"bound {bound_label}")
        ax.plot(lams, norms, "o-", color=color, label=label)
        ax.set(xscale="log", yscale="log", xlabel="λ", ylabel=label.split(": ")[1])
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig_to_png(fig)
