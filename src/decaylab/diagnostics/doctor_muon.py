"""The doctor's checks of Muon and Lion groups: what λ a Muon group and its AdamW companion get relative to
their updates, the mismatches recipes warn about (AdamW's λ copied into Muon under ``"original"``, a
Moonlight-scaled Muon lr far above the AdamW half's, Muon without decay beside a decaying AdamW), and Lion
run with AdamW's values. The codes and their meaning: :mod:`decaylab.diagnostics.doctor`'s table."""

from __future__ import annotations

import math
from collections.abc import Sequence

from decaylab.diagnostics.doctor_setup import Setup
from decaylab.diagnostics.findings import Finding
from decaylab.diagnostics.optimizer_decay import GroupDecay, matrix_shape

__all__ = ["check_muon", "check_lion"]

ADAMW_UPDATE_RMS = 0.2       # AdamW's update RMS per unit lr, as Moonlight measures and matches it
RECIPE_LR_RATIO = 10         # a Muon lr this many times the AdamW half's, with AdamW-matched scaling
LION_ADAMW_LR = 1e-3         # Lion lr at or above this, with λ at or below LION_ADAMW_LAMBDA: AdamW's values
LION_ADAMW_LAMBDA = 0.1


def _span(values: list[float], fmt: str = ".3g") -> str:
    """``'0.05'`` or ``'0.05–0.1'``: the range of ``values``."""
    lo, hi = min(values), max(values)
    return f"{lo:{fmt}}" if math.isclose(lo, hi, rel_tol=1e-6) else f"{lo:{fmt}}–{hi:{fmt}}"


def _muon_scaling(d: GroupDecay) -> tuple[str, str]:
    """(how the group scales its update, the convention of its λ with the flags it needs)."""
    if d.update_rms is not None:
        return f"update_rms={d.update_rms:g}", f"muon-update-rms --update-rms {d.update_rms:g}"
    if d.adjust_lr_fn == "match_rms_adamw":
        return "adjust_lr_fn='match_rms_adamw'", "muon-match-rms"
    return "adjust_lr_fn='original'", "muon-original"


def _muon_matrices(s: Setup, gi: int) -> list[tuple[int, int, int]]:
    """(A, B, numel) of each matrix in Muon group ``gi``, as its update is orthogonalized."""
    g = s.optimizer.param_groups[gi]
    shapes = [(matrix_shape(p, bool(g.get("flatten", False))), p.numel()) for p in g["params"]]
    return [(a, b, n) for shape, n in shapes if shape is not None for a, b in (shape,)]


def _shapes_text(matrices: list[tuple[int, int, int]]) -> str:
    shown = list(dict.fromkeys(f"{a}×{b}" for a, b, _ in matrices))
    return ", ".join(shown[:3]) + (", …" if len(shown) > 3 else "")


def _companion_text(companions: Sequence[tuple[str, GroupDecay]]) -> str:
    decaying = [(label, c) for label, c in companions if c.weight_decay > 0]
    if not decaying:
        return "no AdamW group decays beside it"
    return "; ".join(f"its AdamW companion ({label}) has weight_decay {c.weight_decay:g} at lr {c.lr:g}: "
                     f"{c.step_decay:.3g} per step" for label, c in decaying[:2])


def _muon_decay_fix(d: GroupDecay, convention: str, shape_flag: str) -> str:
    """The muon-decay finding's fix: nothing, and (for torch's lr-scaled λ) the conversion command."""
    if d.decay_scaling != "lr":
        return "nothing to change if intended"
    largest = " for the largest matrix" if shape_flag else ""
    return (f"nothing to change if intended; `decaylab convert {d.weight_decay:g} --from {convention} --to "
            f"torch-adamw{shape_flag}` gives that AdamW λ{largest}, and back")


def _muon_findings(s: Setup, gi: int, d: GroupDecay) -> list[Finding]:
    """What λ Muon group ``gi`` gets beside its AdamW companion, and the recipe mismatches."""
    matrices, names = _muon_matrices(s, gi), s.group_names(gi)
    decaying = [(label, c) for label, c in s.companions if c.weight_decay > 0]
    scaling, convention = _muon_scaling(d)
    if d.weight_decay == 0:
        if not decaying:
            return []
        label, c = decaying[0]
        return [Finding("info", "muon-no-decay", names,
                        f"{d.optimizer} group {gi} (Muon) does not decay while its AdamW companion ({label}) does "
                        f"(weight_decay {c.weight_decay:g}): Moonlight (Liu et al. 2025) found decay essential for "
                        "Muon at scale, where without it the weights' and layer outputs' RMS keep growing",
                        "give the Muon groups a weight_decay for long runs: with adjust_lr_fn='match_rms_adamw' "
                        "AdamW's λ carries over (Moonlight used 0.1); fine as is for short runs")]
    if not matrices or d.lr <= 0:
        return []
    step = d.step_decay
    ks = [d.update_rms_per_lr((a, b)) for a, b, _ in matrices]
    equivalent = [ADAMW_UPDATE_RMS * step / (k * d.lr) for k in ks]
    head = f"{d.optimizer} group {gi} (Muon, {scaling}, lr {d.lr:g}, weight_decay {d.weight_decay:g})"
    largest = max(matrices, key=lambda m: m[2])
    shape_flag = f" --shape {largest[0]},{largest[1]}" if convention == "muon-original" else ""
    out = [Finding("info", "muon-decay", names,
                   f"{head}: decay removes {step:.3g} of each matrix per step (s_t·λ at the unadjusted lr); one "
                   f"update has RMS {_span([k * d.lr for k in ks])} for its {len(matrices)} matrices "
                   f"({_shapes_text(matrices)}), so relative to its update the decay is that of an AdamW λ of "
                   f"{_span(equivalent)} (AdamW's update RMS ≈ 0.2·lr, Moonlight); {_companion_text(s.companions)}",
                   _muon_decay_fix(d, convention, shape_flag))]
    original = convention == "muon-original"
    for label, c in s.companions:
        same = (math.isclose(c.lr, d.lr, rel_tol=1e-9) and math.isclose(c.weight_decay, d.weight_decay, rel_tol=1e-9)
                and c.decay_scaling == d.decay_scaling)
        if original and same:
            factors = [ADAMW_UPDATE_RMS / k for k in ks]        # 0.2·√B
            f = ADAMW_UPDATE_RMS / d.update_rms_per_lr(largest[:2])
            out.append(Finding(
                "warning", "muon-adamw-lambda", names,
                f"{head}: lr and weight_decay are those of its AdamW companion ({label}): the per-step decay "
                f"lr·λ = {step:.3g} is the same, but under adjust_lr_fn='original' a Muon update has RMS lr/√B, "
                f"0.2·√B = {_span(factors)}× smaller than AdamW's ≈ 0.2·lr, so relative to its update the decay is "
                f"{_span(factors)}× stronger (an AdamW λ of {_span(equivalent)})",
                f"adjust_lr_fn='match_rms_adamw' (Moonlight: the update's RMS becomes 0.2·lr, so AdamW's lr and λ "
                f"carry over), or keep 'original' with lr {d.lr * f:.3g} and weight_decay {d.weight_decay / f:.3g} "
                f"for the {largest[0]}×{largest[1]} matrices (AdamW's update RMS and per-step decay: `decaylab "
                f"convert {d.weight_decay:g} --from torch-adamw --to muon-original --shape {largest[0]},{largest[1]} "
                f"--lr {d.lr:g}`), or Keller Jordan's recipe for 'original': lr 0.02, weight_decay 0.01"))
            break
        if not original and c.lr > 0 and d.lr >= RECIPE_LR_RATIO * c.lr:
            ratio = d.lr / c.lr
            faster = (f", and decay {step / c.step_decay:.3g}× faster per step" if c.step_decay else "")
            out.append(Finding(
                "warning", "muon-recipe-mix", names,
                f"{head}: {scaling} gives the update AdamW's RMS (≈ 0.2·lr) so that AdamW's lr and λ carry over "
                f"(Moonlight), but its lr is {ratio:.3g}× that of its AdamW companion ({label}, lr {c.lr:g}; Keller "
                "Jordan's lr 0.02 is for 'original' scaling, whose update is 0.2·√B× smaller): its matrices move "
                f"~{ratio:.3g}× farther per step than the rest{faster}",
                "with this scaling use the AdamW half's lr and λ in the Muon groups (Moonlight), or "
                "adjust_lr_fn='original' for Keller Jordan's lr 0.02 and weight_decay 0.01"))
            break
    return out


def check_muon(s: Setup) -> list[Finding]:
    return [f for gi, d in enumerate(s.decays) if d.family == "muon" and d.kind == "decoupled"
            for f in _muon_findings(s, gi, d)]


def check_lion(s: Setup) -> list[Finding]:
    out = []
    for gi, _, d in s.decayed_groups():
        if d.family != "lion" or d.decay_scaling != "lr" or d.lr < LION_ADAMW_LR or d.weight_decay > LION_ADAMW_LAMBDA:
            continue
        lam, lr = d.weight_decay, d.lr
        out.append(Finding(
            "warning", "lion-adamw-values", s.group_names(gi),
            f"{d.optimizer} group {gi} (lr {lr:g}, weight_decay {lam:g}): Lion's update moves every coordinate by "
            "±lr, about 5× AdamW's update RMS (≈ 0.2·lr), and these are AdamW's usual values: the Lion paper (Chen "
            "et al. 2023) uses an lr 3–10× smaller and a λ 3–10× larger than AdamW's, keeping lr·λ",
            f"if these are AdamW's values: lr {lr / 5:.3g} and weight_decay {lam * 5:.3g} (the update-RMS match, "
            f"`decaylab convert {lam:g} --from torch-adamw --to lion --lr {lr:g}`), or anywhere in the paper's "
            "3–10×"))
    return out
