"""Predict the λ of a run too large to sweep from measured smaller runs, under each rule and a fitted power law.

:func:`predict_lambda` (``decaylab.scaling.predict``) takes two or more measured rungs — runs that differ in one
variable (:func:`~decaylab.scaling.settings.ladder_variable`) — and the target's settings (those it does not give
are the nearest rung's). Then:

1. each rung's best λ and its bootstrap over replicates (:mod:`decaylab.scaling.rungs`);
2. the fitted power law λ_best = c·x^b over the rungs' values x of the ladder variable
   (:mod:`decaylab.scaling.fit`), evaluated at the target's x — rule ``power-law``;
3. every named rule (:mod:`decaylab.scaling.rules`) carried from the rung nearest the target (in log x): its best λ
   and each bootstrap draw mapped through the rule's τ_iter ratio and :func:`decaylab.conventions.convert` at the
   two runs' own lr; ``power-lines-fit`` with its exponent m fitted on the rungs (log(τ_iter,best/S) on log(D/P));
4. per rule: λ in the runs' convention with its ``level`` interval (bootstrap percentiles), τ_iter and τ_epoch
   (:func:`~decaylab.conventions.convert`), and whether the rungs are consistent with it: its slope d log λ/d log x
   between the smallest and largest rung lies in the fitted exponent's interval;
5. the extrapolation distance: the target's x against the measured range ("8× the largest measured rows").

Bad input is refused in one line (:class:`~decaylab._checks.InputError`): one rung, rungs that differ in more than
the ladder variable (or in their convention), a target that does not set the ladder variable or names an unknown
key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decaylab._checks import InputError, InputTypeError, check_int, check_real
from decaylab.conventions import convert
from decaylab.scaling.fit import fit_power_law, percentile_interval
from decaylab.scaling.rules import RULES, Rule, tau_ratio
from decaylab.scaling.rungs import Rung, rung_from_result
from decaylab.scaling.settings import RunSettings, apply_settings, differing, ladder_variable, parse_settings

__all__ = ["predict_lambda", "ScalingPrediction", "RulePrediction", "extrapolation", "carry_lambda", "FITTED"]

FITTED = "power-law"


@dataclass
class RulePrediction:
    """One rule's answer: λ (in ``convention``) with its interval, τ_iter, τ_epoch, its slope along the ladder and
    whether the rungs are consistent with it; ``note`` says why a rule does not apply (then λ is ``None``)."""

    rule: str
    holds: str
    formula: str
    source: str
    lam: float | None = None
    low: float | None = None
    high: float | None = None
    tau_iter: float | None = None
    tau_epoch: float | None = None
    slope: float | None = None
    consistent: bool | None = None
    note: str = ""


@dataclass
class ScalingPrediction:
    """What :func:`predict_lambda` returns (module docstring); ``str()`` is the printed table."""

    vary: str
    convention: str
    target: RunSettings
    source: str
    measured: list[dict]
    distance: float
    distance_text: str
    exponent: float
    exponent_interval: tuple[float, float]
    level: float
    rules: list[RulePrediction] = field(default_factory=list)
    tpp_exponent: float | None = None

    def rule(self, name: str) -> RulePrediction:
        return next(r for r in self.rules if r.rule == name)

    def to_dict(self) -> dict[str, Any]:
        from decaylab.sweeps.store import plain_json

        return plain_json({"vary": self.vary, "convention": self.convention, "target": self.target.as_dict(),
                           "source": self.source, "measured": self.measured, "distance": self.distance,
                           "extrapolation": self.distance_text, "exponent": self.exponent,
                           "exponent_interval": list(self.exponent_interval), "level": self.level,
                           "tpp_exponent": self.tpp_exponent, "rules": [vars(r) for r in self.rules]})

    def __str__(self) -> str:
        from decaylab.report import text_table

        lo, hi = self.exponent_interval
        pct = f"{100 * self.level:g}%"
        rows = [{"rule": r.rule, f"λ ({self.convention})": "n/a" if r.lam is None else f"{r.lam:.3g}",
                 f"{pct} interval": "" if r.low is None else f"{r.low:.3g} … {r.high:.3g}",
                 "τ_iter": "" if r.tau_iter is None else f"{r.tau_iter:.3g}",
                 "τ_epoch": "" if r.tau_epoch is None else f"{r.tau_epoch:.3g}",
                 "consistent": {None: "", True: "yes", False: "no"}[r.consistent],
                 "note": r.note or r.holds} for r in self.rules]
        measured = ", ".join(f"{m['x']:g} → λ {m['best_lambda']:.3g}" for m in self.measured)
        return "\n".join([f"ladder: {self.vary}; measured best λ: {measured}",
                          f"fitted λ ∝ {self.vary}^b: b = {self.exponent:+.3f} [{lo:+.3f}, {hi:+.3f}] ({pct})",
                          f"target: {self.vary} = {self.target.value(self.vary):g}, {self.distance_text}", "",
                          text_table(rows)])


def extrapolation(x: float, measured: Sequence[float], name: str) -> tuple[float, str]:
    """(factor, words): how far ``x`` lies beyond the measured values of ``name`` — the ratio to the largest
    (> 1 beyond it), to the smallest (< 1 below it), or 1 inside the range."""
    top, bottom = max(measured), min(measured)
    if x > top * (1 + 1e-9):
        return x / top, f"{x / top:.3g}× the largest measured {name} ({top:g})"
    if x < bottom * (1 - 1e-9):
        return x / bottom, f"1/{bottom / x:.3g} of the smallest measured {name} ({bottom:g})"
    return 1.0, f"inside the measured {name} ({bottom:g} … {top:g}): interpolation"


def _as_rungs(rungs) -> list[Rung]:
    if isinstance(rungs, (Rung, str)) or not isinstance(rungs, Sequence):
        raise InputTypeError(f"rungs must be a list of measured runs (Rung, SweepResult, results.json path), got "
                             f"{type(rungs).__name__}")
    return [r if isinstance(r, Rung) else rung_from_result(r) for r in rungs]


def _context(s: RunSettings) -> dict[str, float]:
    return {k: v for k, v in (("lr", s.lr), ("batch_size", s.batch), ("dataset_size", s.rows),
                              ("epochs", s.epochs)) if v is not None}


def _tau(lam: float, s: RunSettings, to: str = "tau-iter") -> float | None:
    try:
        return convert(lam, s.convention, to, **_context(s))
    except InputError:
        return None          # the run does not record what the conversion needs


def _lambda_factor(rule: Rule, s: RunSettings, t: RunSettings, m: float) -> float:
    """λ_t/λ_s under ``rule`` in the runs' convention (every convention is a power law, so a factor)."""
    if rule.ratio is None:
        return 1.0
    tau_s = convert(1.0, s.convention, "tau-iter", **_context(s))
    return convert(tau_s * tau_ratio(rule, s, t, m), "tau-iter", t.convention, **_context(t))


def carry_lambda(rule: str | Rule, lam: float, source: RunSettings, target: RunSettings, m: float = 0.0) -> float:
    """``lam`` (in ``source.convention``) carried from the run ``source`` to ``target`` by ``rule`` (a name in
    :data:`~decaylab.scaling.rules.RULES`), in ``target.convention``'s units; ``m``: Power Lines' exponent for
    ``power-lines-fit``."""
    if not isinstance(rule, Rule):
        if rule not in RULES:
            raise InputError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
        rule = RULES[rule]
    missing = _missing(rule, [source, target])
    if missing:
        raise InputError(f"rule {rule.name!r} {missing}")
    return check_real("lam", lam, low=0.0) * _lambda_factor(rule, source, target, m)


def _missing(rule: Rule, runs: Sequence[RunSettings]) -> str | None:
    for name in rule.needs:
        if any(r.value(name) is None for r in runs):
            return f"needs {name} (not recorded: give {name}=…)"
    return None


def predict_lambda(rungs, target: str | Mapping | RunSettings, *, vary: str | None = None, n_boot: int = 1000,
                   level: float = 0.95, seed: int = 0) -> ScalingPrediction:
    """λ for ``target`` from the measured ``rungs`` under every rule and the fitted power law (module docstring).

    ``rungs``: :class:`~decaylab.scaling.rungs.Rung` objects, :class:`~decaylab.sweeps.result.SweepResult` s or
    ``results.json`` paths (at least two, differing in one variable: ``vary``, or found). ``target``: settings as
    ``"rows=16000,lr=1e-3"``, a mapping, or a :class:`RunSettings`; it must set the ladder variable. ``n_boot``
    bootstrap draws (seeded with ``seed``) give the ``level`` intervals."""
    rungs = _as_rungs(rungs)
    n_boot = check_int("n_boot", n_boot, low=10, high=1_000_000)
    level = check_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    settings = [r.settings for r in rungs]
    vary = ladder_variable(settings, vary)
    xs = np.array([s.value(vary) for s in settings], dtype=float)
    if isinstance(target, RunSettings):
        given = {k: target.value(k) for k in ("rows", "width", "batch", "epochs", "lr", "params")
                 if target.value(k) is not None}
    else:
        given = parse_settings(target, name="target")
    if vary not in given:
        raise InputError(f"the target must set {vary}, the variable the measured runs differ in; got "
                         f"{', '.join(f'{k}={v:g}' for k, v in given.items()) or 'nothing'}")
    x_t = float(given[vary])
    nearest = int(np.argmin(np.abs(np.log(xs) - math.log(x_t))))
    source = rungs[nearest]
    tgt = apply_settings(source.settings, given)
    if tgt.params is None or vary == "width":
        tgt = _with_params(tgt, settings, given)
    distance, words = extrapolation(x_t, xs.tolist(), vary)

    rng = np.random.default_rng(seed)
    best = np.array([r.best for r in rungs])
    boots = np.stack([r.bootstrap(n_boot, rng) for r in rungs], axis=1)         # [boot, rung]
    law = fit_power_law(xs, best, boots, level)
    lo_b, hi_b = law.exponent_interval
    m, m_samples = _tpp_exponent(rungs, best, boots, level)

    out = []
    fitted = RulePrediction(FITTED, f"λ_best ∝ {vary}^b fitted on the measured runs", "λ = c·x^b",
                            "the measured runs (least squares in log–log, bootstrap over replicates)")
    _fill(fitted, law.at(x_t), law.samples_at(x_t), tgt, level)
    fitted.slope, fitted.consistent = law.exponent, True
    out.append(fitted)
    small, large = int(np.argmin(xs)), int(np.argmax(xs))
    changed = differing([source.settings, tgt])
    for rule in RULES.values():
        r = RulePrediction(rule.name, rule.holds, rule.formula, rule.source)
        out.append(r)
        uncovered = [v for v in [*changed, vary] if v not in rule.covers]
        if uncovered:
            r.note = f"does not cover {uncovered[0]}"
            continue
        note = _missing(rule, [*settings, tgt])
        if note is None and rule.name == "power-lines-fit" and m is None:
            note = "D/P is the same on every measured run: its exponent cannot be fitted"
        if note:
            r.note = note
            continue
        ms = m_samples if rule.name == "power-lines-fit" else np.zeros(n_boot)
        mm = m if rule.name == "power-lines-fit" else 0.0
        factor = _lambda_factor(rule, source.settings, tgt, mm)
        samples = boots[:, nearest] * np.array([_lambda_factor(rule, source.settings, tgt, float(k)) for k in ms]) \
            if rule.name == "power-lines-fit" else boots[:, nearest] * factor
        _fill(r, best[nearest] * factor, samples, tgt, level)
        down = _lambda_factor(rule, settings[large], settings[small], mm)
        r.slope = math.log(best[large] / (best[large] * down)) / math.log(xs[large] / xs[small])
        r.consistent = bool(lo_b <= r.slope <= hi_b)
        if rule.name == "power-lines-fit":
            r.note = f"m = {m:+.3f} fitted"
    measured = [{"x": float(x), "best_lambda": float(b), "source": r.source} for x, b, r in zip(xs, best, rungs)]
    return ScalingPrediction(vary, tgt.convention, tgt, source.source or f"rung {nearest + 1}", measured, distance,
                             words, law.exponent, (lo_b, hi_b), level, out, m)


def _fill(r: RulePrediction, lam: float, samples: np.ndarray, tgt: RunSettings, level: float) -> None:
    r.lam = float(lam)
    r.low, r.high = percentile_interval(samples, level)
    r.tau_iter, r.tau_epoch = _tau(lam, tgt), _tau(lam, tgt, "tau-epoch")


def _with_params(tgt: RunSettings, runs: Sequence[RunSettings], given: Mapping) -> RunSettings:
    """The target's P when not given: on a width ladder the log–log line of the rungs' P against width (exact for
    a power law in width, close for an MLP's mix of d and d²); else the nearest rung's."""
    if "params" in given:
        return tgt
    known = [(r.width, r.params) for r in runs if r.width is not None and r.params is not None]
    if tgt.width is None or len({w for w, _ in known}) < 2:
        return tgt
    w = np.log([k[0] for k in known])
    p = np.log([k[1] for k in known])
    slope, intercept = np.polyfit(w, p, 1)
    return tgt.replace(params=max(1, int(round(math.exp(intercept + slope * math.log(tgt.width))))))


def _tpp_exponent(rungs: Sequence[Rung], best: np.ndarray, boots: np.ndarray, level: float):
    """Power Lines' m in τ_iter,best/S = c·(D/P)^m over the rungs (and per bootstrap draw), or (None, None) when
    D/P is not recorded or the same on every rung."""
    s = [r.settings for r in rungs]
    tpp = [x.per_param for x in s]
    if any(v is None for v in tpp) or any(x.lr is None or x.steps is None for x in s) or \
            len({round(math.log(v), 9) for v in tpp}) < 2:
        return None, None
    try:
        tau = np.array([[convert(lam, x.convention, "tau-iter", **_context(x)) / x.steps for lam, x in zip(row, s)]
                        for row in np.vstack([best[None, :], boots])])
    except InputError:
        return None, None
    law = fit_power_law(np.array(tpp), tau[0], tau[1:], level)
    return law.exponent, law.slopes
