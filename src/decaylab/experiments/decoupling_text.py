"""The decoupling study's numbers in words: the table rows, each arm's verdict against the paper's and the
predicted slope, the paragraphs, the summary and the report sections of
:func:`decaylab.experiments.decoupling.run_decoupling`. Every sentence is chosen from the measured intervals."""

from __future__ import annotations

import numpy as np

from decaylab.maps.basin import BasinFit
from decaylab.maps.lr_map import draw_error_map
from decaylab.report.model import Figure, Section, Table


def slope_text(fit: BasinFit) -> str:
    """``slope [low, high]`` with the union of the bootstrap and per-seed t intervals."""
    if not np.isfinite(fit.slope):
        return "no slope"
    low, high = fit.interval()
    if not np.isfinite(low):
        return f"{fit.slope:+.2f}"
    return f"{fit.slope:+.2f} [{low:+.2f}, {high:+.2f}]"


def verdict_text(fit: BasinFit, expected: float | None, source: str = "the paper's") -> str:
    """How the measured slope compares with an expected one (``source``: whose), in words (union interval)."""
    if expected is None:
        return "—"
    if not np.isfinite(fit.slope):
        return "no slope: fewer than two learning rates had an interior best λ"
    low, high = fit.interval()
    if not np.isfinite(low):
        return f"one seed, no interval; {source} {expected:+.0f}"
    if low <= expected <= high:
        others = [f"{v:+.0f}" for v in (-1.0, 0.0, 1.0) if v != expected and low <= v <= high]
        if others:
            return f"inconclusive: the interval holds {source} {expected:+.0f} and {', '.join(others)}"
        return f"agrees with {source} {expected:+.0f}"
    return f"disagrees: the interval excludes {source} {expected:+.0f}"


def agreement_text(fit: BasinFit, predicted: float | None) -> str:
    if predicted is None:
        return "no prediction (measured alone)"
    return verdict_text(fit, predicted, "the predicted")


def check_text(check: dict | None) -> str:
    """``measured / predicted rad (ratio)`` of an equilibrium check, or a dash."""
    if not check:
        return "—"
    if check["predicted_angle"] is None:
        return f"{check['angle']:.3g} rad (no prediction)"
    return f"{check['angle']:.3g} / {check['predicted_angle']:.3g} rad (×{check['ratio']:.2f})"


def table_rows(regime, arms, maps, fits, checks) -> list[dict]:
    rows = []
    for arm in arms:
        fit, m = fits[arm.key], maps[arm.key]
        lr, lam, err = m.best_cell()
        predicted = arm.predicted(regime)
        rows.append({"regime": regime, "optimizer": arm.title,
                     "predicted": "none" if predicted is None else f"{predicted:+.0f}",
                     "slope [95% CI]": slope_text(fit), "agrees": agreement_text(fit, predicted),
                     "rows kept": f"{int(fit.kept.sum())}/{len(m.lrs)}",
                     "best cell": f"lr {lr:.3g}, λ {lam:.3g}: {100 * err:.1f} %",
                     "angle measured / predicted": check_text(checks.get(arm.key))})
    return rows


_PICTURES = {-1.0: "diagonal (slope −1)", 0.0: "axis-aligned (slope 0)", 1.0: "rising (slope +1)"}


def picture_of(fit: BasinFit) -> str:
    """Which of the pictures −1, 0, +1 the interval holds: one name, "x or y", or "intermediate"."""
    low, high = fit.interval()
    if not np.isfinite(low):
        return "undetermined"
    inside = [name for value, name in _PICTURES.items() if low <= value <= high]
    if not inside:
        return "intermediate (the interval holds none of −1, 0, +1)"
    return " or ".join(inside)


def main_paragraph(rs, arms, maps, fits, checks, setup) -> str:
    parts = []
    for arm in arms:
        fit, predicted = fits[arm.key], arm.predicted(rs.key)
        word = agreement_text(fit, predicted)
        against = "no prediction" if predicted is None else f"{predicted:+.0f}"
        parts.append(f"{arm.title}: {slope_text(fit)} against {against}"
                     f" ({word.split(':')[0]})")
    regime = next(iter(maps.values())).regime
    invariant = [n for n, v in regime["scale_invariant"].items() if v]
    text = (f"Each map trains {setup['grid_size']}×{setup['grid_size']} (lr, λ) cells × {setup['seeds']} seeds "
            f"(initial weights and batch order) on {rs.describe(setup)}. The detector (rescale each decayed weight, "
            f"compare outputs) finds {len(invariant)} scale-invariant decayed weight(s) "
            f"({', '.join(invariant) or 'none'}; "
            f"{100 * regime['invariant_fraction']:.0f} % of the decayed elements): the {regime['regime']} regime. "
            f"Slope of log(best λ) against log(lr), 95 % interval over seeds (bootstrap and per-seed t-interval, "
            f"whichever is wider at each end), against the slope the theory predicts for this regime (dotted line on "
            f"each map): " + "; ".join(parts) + ".")
    if checks:
        close = [f"{k} ×{c['ratio']:.2f}" for k, c in checks.items() if c["ratio"] is not None]
        text += (" Equilibrium check (the best cell of each map retrained alone with DecayMonitor, first "
                 "scale-invariant weight, mean rotation per step over the last quarter of training divided by the "
                 "predicted equilibrium angle): " + (", ".join(close) or "none predicted") + ". A ratio near 1 means "
                 "the weights reached the rotational equilibrium the prediction assumes; far from 1, the runs were "
                 "still in their transient and the equilibrium slope need not apply.")
    return text


def scaling_explanation(arms, fits) -> str:
    """The lr-vs-schedule paragraph, each sentence chosen by the measured intervals."""
    def slopes(keys):
        return ", ".join(f"{fits[k].slope:+.2f}" for k in keys)

    def shows(keys, picture):
        return [k for k in keys if picture_of(fits[k]) == picture]

    text = []
    if "adamw" in fits and "adamw-lr" in fits:
        sched, lr = fits["adamw"], fits["adamw-lr"]
        text.append(
            f"decay_scaling=\"lr\" (torch's AdamW) shrinks w by lr_t·λ per step, decay_scaling=\"schedule\" by "
            f"(lr_t/lr_0)·λ. AdamW-schedule at (lr_0, λ) is therefore exactly AdamW-lr at (lr_0, λ/lr_0): the two "
            f"maps hold the same runs with the λ axis sheared by lr_0, and their slopes must differ by exactly 1. "
            f"Measured: schedule {slope_text(sched)}, lr {slope_text(lr)}, difference {sched.slope - lr.slope:+.2f}. "
            f"Which scaling lets λ be tuned without touching lr is the one whose slope is 0; here lr-scaling is "
            f"{picture_of(lr)} and schedule-scaling is {picture_of(sched)}.")
    coupled = [k for k in ("sgd", "adam") if k in fits and np.isfinite(fits[k].slope)]
    scheduled = [k for k in ("sgdw", "adamw") if k in fits and np.isfinite(fits[k].slope)]
    for keys, picture, template in (
        (coupled, _PICTURES[0.0], "With coupled L2 ({who}: slopes {slopes}) the best λ barely moves with lr: runs "
                                  "that train to (near) equilibrium settle where ∇L + λw ≈ 0, a point that does "
                                  "not depend on lr."),
        (coupled, _PICTURES[-1.0], "With coupled L2 ({who}: slopes {slopes}) the best λ falls as lr rises, the "
                                   "paper's diagonal: what matters is the product lr·λ."),
        (scheduled, _PICTURES[1.0], "With schedule-scaled decoupled decay ({who}: slopes {slopes}) the best λ "
                                    "rises with lr: such runs settle where lr_0·u ≈ −λ·w (u the SGD or Adam "
                                    "step direction), an effective penalty λ/lr_0."),
        (scheduled, _PICTURES[0.0], "With schedule-scaled decoupled decay ({who}: slopes {slopes}) the basin is "
                                    "axis-aligned, as in the paper."),
    ):
        who = shows(keys, picture)
        if who:
            text.append(template.format(who=", ".join(who), slopes=slopes(who)))
    unclear = [k for k in coupled + scheduled if picture_of(fits[k]) not in _PICTURES.values()]
    if unclear:
        text.append("Not one of the three pictures: " + "; ".join(
            f"{k} {slope_text(fits[k])}, {picture_of(fits[k])}" for k in unclear) + ".")
    if coupled and not shows(coupled, _PICTURES[-1.0]):
        text.append(
            "The paper's diagonal for coupled L2 comes from ResNets whose layers are followed by BatchNorm "
            "(scale-invariant weights, whose dynamics depend on lr·λ) trained for a fixed budget; this small "
            "MLP without normalization does not have that property: the hypothesis that the equilibrium regime "
            "below tests.")
    return " ".join(text)


def report_sections(rs, arms, maps, fits, checks, setup, pngs, basin: dict) -> list[Section]:
    figures = []
    for arm in arms:
        figures.append(Figure(name=f"lr-decay-map-{rs.key}-{arm.key}", png=pngs[arm.key],
                              caption=f"{rs.key} regime, {arm.title}: mean test error (best λ per lr: dots; "
                                      f"fitted line dashed; predicted slope dotted) and final train loss; "
                                      f"grey = diverged."))
    table = Table(columns=list(table_rows(rs.key, arms, maps, fits, checks)[0]),
                  rows=[list(r.values()) for r in table_rows(rs.key, arms, maps, fits, checks)],
                  caption="Basin statistic per optimizer: slope of log(best λ) vs log(lr) on the seed-mean "
                          "map; 95 % interval = union of the percentile bootstrap over seeds and the t-interval "
                          "of the per-seed slopes. Best λ of a row: the mean log λ of the cells "
                          f"within {basin['tie_tol']:g} of its lowest error (the parabola vertex when that is one "
                          f"cell); rows kept = learning rates whose good cells are inside the grid with both "
                          f"edges at least {basin['min_contrast']:g} worse, and the row's best within "
                          f"{basin['row_gap']:g} of the map's best. Predicted: decaylab.maps.theory.")
    sections = [Section(key=f"decoupling-maps-{rs.key}", title=f"Learning rate × weight decay maps — {rs.title}",
                        text=main_paragraph(rs, arms, maps, fits, checks, setup), figures=figures, tables=[table])]
    explanation = scaling_explanation(arms, fits) if rs.key == "fixed-point" else ""
    if explanation:
        sections.append(Section(key="decoupling-scaling", title="decay_scaling=\"lr\" vs \"schedule\"",
                                text=explanation))
    return sections


def side_by_side_section(regimes, setups, arms, maps, fits) -> Section:
    """One figure: a row per arm, a column per regime, each map with its predicted basin line."""
    from decaylab._figures import fig_to_png, new_figure

    fig, axes = new_figure(4.8 * len(regimes), 3.2 * len(arms), nrows=len(arms), ncols=len(regimes), squeeze=False)
    for row, arm in zip(axes, arms):
        for ax, regime in zip(row, regimes):
            draw_error_map(fig, ax, maps[regime][arm.key], fits[regime][arm.key])
            ax.set_title(f"{regime}: {arm.title}", fontsize=9)
    lines = []
    for arm in arms:
        cells = []
        for regime in regimes:
            predicted = arm.predicted(regime)
            cells.append(f"{regime} {slope_text(fits[regime][arm.key])} vs predicted "
                         f"{'none' if predicted is None else f'{predicted:+.0f}'}")
        lines.append(f"{arm.title}: " + ", ".join(cells))
    text = ("The same five optimizers on the same data (two moons, 20 % flipped labels) in both regimes; only "
            "the network differs (" + "; ".join(setups[r].title for r in regimes) + "). Dotted white: the slope "
            "the theory predicts for the regime, drawn through the measured best-λ points; dashed red: the "
            "measured slope. " + ". ".join(lines) + ".")
    figure = Figure(name="lr-decay-maps-both-regimes", png=fig_to_png(fig),
                    caption="Mean test error per (lr, λ) cell, one row per optimizer, one column per regime; "
                            "red dots: best λ per lr; dashed: fitted slope; dotted: predicted slope; grey: diverged.")
    return Section(key="decoupling-both-regimes", title="Both regimes side by side", text=text, figures=[figure])


def study_summary(regime, arms, maps, fits, checks, setup) -> dict:
    out = {"setup": {k: (list(v) if isinstance(v, tuple) else v) for k, v in setup.items()}, "arms": {}}
    for arm in arms:
        m, fit = maps[arm.key], fits[arm.key]
        lr, lam, err = m.best_cell()
        predicted = arm.predicted(regime)
        out["arms"][arm.key] = {
            "optimizer": arm.optimizer, "decay_scaling": arm.decay_scaling, "title": arm.title,
            "predicted_slope": predicted, "agreement": agreement_text(fit, predicted),
            "paper_slope": arm.paper_slope, "basin": fit.to_dict(), "verdict": verdict_text(fit, arm.paper_slope),
            "detected_regime": m.regime, "equilibrium_check": checks.get(arm.key),
            "lrs": m.lrs, "decays": m.decays, "mean_test_error": m.mean_error(),
            "mean_train_loss": m.train_loss.mean(axis=0), "diverged_members": int(m.diverged.sum()),
            "best_cell": {"lr": lr, "weight_decay": lam, "test_error": err}, "seconds": round(m.seconds, 2),
            "settings": m.settings}
    return out
