"""The named rules that carry a λ from a measured run to a larger one, each as the timescale it holds.

Every rule is stated as how the EMA timescale τ_iter = 1/(η·λ) steps (Wang & Aitchison; ``decaylab.conventions``'
``tau-iter``, λ in torch's AdamW convention, η the peak lr) changes from the source run s to the target t; a λ
in any convention meets it through :func:`decaylab.conventions.convert` (at each run's own lr, batch and N), so
a rule applies to ``torch-adamw``, ``schedule`` or ``coupled`` values alike (for coupled L2 under Adam only as far
as its per-step decay goes: see the conventions' "Exact or not"). Symbols: N rows, B batch, d width, η peak lr,
S = epochs·N/B steps, D = epochs·N examples processed (Power Lines' tokens), P parameters.

==================  ====================================================  ===========================  ============
rule                holds                                                 τ_iter,t / τ_iter,s            covers
==================  ====================================================  ===========================  ============
``keep``            λ itself, in the runs' convention (the baseline)      whatever convert gives       everything
``wang-aitchison``  τ_epoch = B/(η·λ·N), constant                          (N_t/N_s)·(B_s/B_t)          N, B, d, η,
                                                                                                       epochs
``power-lines``     τ = B/(η·λ·D) = τ_iter/S, constant (fixed D/P)         S_t/S_s                      B, η
``power-lines-fit`` τ = c·(D/P)^m, m fitted on the measured runs          (S_t/S_s)·(TPP_t/TPP_s)^m    N, d, B, η,
                                                                                                       epochs
``qiu-width``       per-step (independent) decay η·λ ∝ 1/d                 d_t/d_s                      d
``fan-width``       gain √(η/λ)·d^0.75 constant: λ ∝ η·d^1.5              (η_s/η_t)²·(d_s/d_t)^1.5     d, η
``adamc``           steady norm √(η/λ) constant: λ ∝ η (decay ∝ η²/step)   (η_s/η_t)²                   η
==================  ====================================================  ===========================  ============

Sources and what is implemented:

- ``wang-aitchison``: Wang & Aitchison 2025, "How to set AdamW's weight decay as you scale model and dataset
  size" (ICML; arXiv:2405.13698): AdamW's weights are an EMA of recent updates with timescale τ_iter = 1/(ηλ);
  the optimal τ_epoch = τ_iter·B/N is roughly constant across dataset and model size. Hence λ ∝ B/(η·N): λ ∝ 1/N
  at fixed η and B, and λ ∝ d when μP sets η ∝ 1/d.
- ``power-lines``: Bergsma et al. 2025, "Power Lines: scaling laws for weight decay and batch size in LLM
  pre-training" (NeurIPS; arXiv:2505.13738): τ = B/(ηλD), the timescale as a fraction of the run's tokens D
  (τ_iter/S); at fixed model and data λ_opt ∝ B (their verified consequence of a constant τ).
- ``power-lines-fit``: the same paper's power law τ_opt = c·TPP^m in tokens per parameter TPP = D/P (they fit
  m < 0: τ_opt falls as TPP grows). Here the exponent m is fitted on the user's measured runs (least squares of
  log(τ_iter,best/S) on log(D/P), bootstrap over replicates), with examples in place of tokens; it needs runs at
  two or more D/P (a data, epochs or width ladder). The tokens-per-parameter ladder of a language model needs
  next-token sweeps, which decaylab does not run yet.
- ``qiu-width``: independent (lr-free) decay ∝ 1/width, as Qiu et al. 2026 is summarized in the issue this module
  answers (the paper itself was not in the sources consulted): the per-step decay η·λ = λ_independent ∝ 1/d,
  so τ_iter ∝ d whatever η does (λ_torch ∝ 1/(η·d); constant under μP's η ∝ 1/d).
- ``fan-width``: Fan et al. 2025, "Robust layerwise scaling rules by proper weight decay tuning"
  (arXiv:2510.15262): a matrix's top singular value scales as √(η/λ)·d^0.75; holding it fixed gives
  λ ∝ η·d^1.5, which under μP's η ∝ 1/d is their λ ∝ √d for matrix parameters. Applied to every decayed
  parameter here (decaylab's sweeps decay matrices only by default: biases and norms have λ = 0, as theirs).
- ``adamc``: Defazio 2025, "Why gradients rapidly increase near the end of training" (arXiv:2506.02285): for
  normalized layers the steady-state norm is ∝ √(η/λ), so AdamC multiplies the decay by γ_t/γ_max (decaylab's
  ``decay_scaling="corrected"``: s_t = lr_t²/lr_0), making the per-step decay ∝ γ_t². Carried across runs of
  different peak lr the same argument keeps λ_torch ∝ η (per-step decay ∝ η²); across N, B or width it says
  nothing.
- ``keep``: the baseline, "keep the small run's λ" (in the runs' own convention).

A rule predicts a target only when every variable in which the target differs from the source run is one it
covers; otherwise it is reported as not applicable, naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from decaylab._checks import InputError
from decaylab.scaling.settings import RunSettings

__all__ = ["Rule", "RULES", "tau_ratio"]


@dataclass(frozen=True)
class Rule:
    """One rule: ``name``, what it ``holds``, its ``formula`` (τ_iter,t/τ_iter,s), ``source``, the variables it
    ``covers`` and the settings it ``needs`` of both runs; ``ratio(s, t, m)`` is τ_iter,t/τ_iter,s (``m``: the
    fitted Power Lines exponent, used by ``power-lines-fit`` only). ``ratio`` is ``None`` for ``keep``."""

    name: str
    holds: str
    formula: str
    source: str
    covers: frozenset[str]
    needs: tuple[str, ...]
    ratio: Callable[[RunSettings, RunSettings, float], float] | None


def _wang_aitchison(s: RunSettings, t: RunSettings, m: float) -> float:
    return (t.rows / s.rows) * (s.batch / t.batch)


def _power_lines(s: RunSettings, t: RunSettings, m: float) -> float:
    return t.steps / s.steps


def _power_lines_fit(s: RunSettings, t: RunSettings, m: float) -> float:
    return (t.steps / s.steps) * (t.per_param / s.per_param) ** m


def _qiu(s: RunSettings, t: RunSettings, m: float) -> float:
    return t.width / s.width


def _fan(s: RunSettings, t: RunSettings, m: float) -> float:
    return (s.lr / t.lr) ** 2 * (s.width / t.width) ** 1.5


def _adamc(s: RunSettings, t: RunSettings, m: float) -> float:
    return (s.lr / t.lr) ** 2


_ALL = frozenset(("rows", "width", "batch", "epochs", "lr"))
RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("keep", "λ in the runs' convention", "λ_t = λ_s", "the baseline: keep the small run's λ", _ALL, ("lr",),
         None),
    Rule("wang-aitchison", "τ_epoch = B/(η·λ·N) constant", "τ_t/τ_s = (N_t/N_s)·(B_s/B_t)",
         "Wang & Aitchison 2025 (ICML), arXiv:2405.13698", _ALL, ("rows", "batch", "lr"), _wang_aitchison),
    Rule("power-lines", "τ = B/(η·λ·D) constant", "τ_t/τ_s = S_t/S_s",
         "Bergsma et al. 2025, Power Lines (NeurIPS), arXiv:2505.13738", frozenset(("batch", "lr")),
         ("rows", "batch", "epochs", "lr"), _power_lines),
    Rule("power-lines-fit", "τ = c·(D/P)^m, m fitted", "τ_t/τ_s = (S_t/S_s)·(TPP_t/TPP_s)^m",
         "Bergsma et al. 2025, Power Lines (NeurIPS), arXiv:2505.13738; m from the measured runs", _ALL,
         ("rows", "batch", "epochs", "lr", "params"), _power_lines_fit),
    Rule("qiu-width", "η·λ ∝ 1/width (independent decay)", "τ_t/τ_s = d_t/d_s",
         "Qiu et al. 2026, as summarized in decaylab issue 23", frozenset(("width",)), ("width", "lr"), _qiu),
    Rule("fan-width", "√(η/λ)·d^0.75 constant (λ ∝ √d under η ∝ 1/d)", "τ_t/τ_s = (η_s/η_t)²·(d_s/d_t)^1.5",
         "Fan et al. 2025, arXiv:2510.15262", frozenset(("width", "lr")), ("width", "lr"), _fan),
    Rule("adamc", "√(η/λ) constant: λ ∝ η (AdamC's decay ∝ lr²)", "τ_t/τ_s = (η_s/η_t)²",
         "Defazio 2025, arXiv:2506.02285", frozenset(("lr",)), ("lr",), _adamc),
)}


def tau_ratio(rule: Rule, source: RunSettings, target: RunSettings, m: float = 0.0) -> float:
    """τ_iter,t/τ_iter,s under ``rule`` (not for ``keep``, which holds λ instead)."""
    if rule.ratio is None:
        raise InputError("rule 'keep' holds λ, not τ: it has no τ ratio")
    return float(rule.ratio(source, target, m))
