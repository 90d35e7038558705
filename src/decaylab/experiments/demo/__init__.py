"""The ten studies of ``decaylab demo``, each a report section with its numbers, and :func:`run_demo`.

1. :mod:`.boundaries` — decision boundaries vs λ (AdamW on noisy two moons)
2. :mod:`.ridge_fit` — a degree-15 polynomial: gradient descent with decay vs closed-form ridge
3. :mod:`.coupling` — coupled vs decoupled: SGD vs SGDW, Adam + L2 vs AdamW
4. :mod:`.sparsity` — L1 (proximal) vs L2: exact zeros
5. :mod:`.dropout` — dropout vs weight decay
6. :mod:`.cross_validation` — choosing λ by 5-fold cross-validation
7. :mod:`.evidence` — choosing λ (per layer) by the Laplace evidence in one run, against 5-fold CV
8. :mod:`.convergence` — too much decay slows convergence: training-loss curves against λ
9. :mod:`.overfitting` — decay fixes flipped labels but not class imbalance
10. :mod:`.muon_lion` — Muon and Lion: λ caps the spectral norm and max|w| at the bounds decay implies

Every study is a function ``run_<study>(quick, seed, progress) -> StudyResult`` (a
:class:`~decaylab.report.model.Section`, a JSON-able summary and terminal-table rows); its
paragraph is written from the numbers it measured. ``quick=True`` uses smaller models, grids
and epoch counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from decaylab._checks import InputError, check_int
from decaylab._figures import fig_to_png
from decaylab.experiments._shared import intra_op_threads
from decaylab.report.model import Section

from ._common import StudyResult

__all__ = ["DemoResult", "STUDIES", "StudyResult", "fig_to_png", "run_demo", "run_study"]

STUDIES = ("boundaries", "ridge", "coupling", "sparsity", "dropout", "cross_validation", "evidence", "convergence",
           "overfitting", "muon_lion")
_RUNNERS = {  # study key: (module, function)
    "boundaries": ("boundaries", "run_boundaries"),
    "ridge": ("ridge_fit", "run_ridge_fit"),
    "coupling": ("coupling", "run_coupling"),
    "sparsity": ("sparsity", "run_sparsity"),
    "dropout": ("dropout", "run_dropout"),
    "cross_validation": ("cross_validation", "run_cross_validation"),
    "evidence": ("evidence", "run_evidence"),
    "convergence": ("convergence", "run_convergence"),
    "overfitting": ("overfitting", "run_overfitting"),
    "muon_lion": ("muon_lion", "run_muon_lion"),
}


@dataclass
class DemoResult:
    """The demo's report sections (in study order), its summary.json content and terminal-table rows."""

    sections: list[Section]
    summary: dict
    rows: list[dict] = field(default_factory=list)


def run_study(key: str, quick: bool = False, seed: int = 0, progress: bool = False, **options) -> StudyResult:
    """Run the study called ``key`` (one of :data:`STUDIES`); ``options`` go to its ``run_*`` function."""
    import importlib

    from decaylab._checks import check_choice

    check_choice("study", key, STUDIES)
    module, function = _RUNNERS[key]
    runner = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return runner(quick=bool(quick), seed=check_int("seed", seed, low=0), progress=bool(progress), **options)


def run_demo(quick: bool = False, seed: int = 0, progress: bool = True, studies=STUDIES, on_study=None) -> DemoResult:
    """Run the demo's studies and collect their sections, summaries and table rows.

    ``summary`` is ``{"studies": {key: study summary}, "checks": {...}, "seconds": {key: s}}``
    where ``checks`` gathers the directions the report's tests look at: weights shrink with λ
    (study 1), the ridge overlay matches (study 2), SGD equals SGDW without momentum and differs
    with it (study 3), L1 gives exact zeros and L2 none (study 4), more decay reaches a training
    loss no sooner (study 8), decay helps flipped labels but not class imbalance (study 9), Muon's
    spectral norms and Lion's max|w| stay within their bounds and saturate them at the largest λ (study 10).
    Checks of studies not run are absent. The studies' tiny models run with one intra-op thread (restored afterwards).
    ``on_study(key, result)``, if given, is called with each study's StudyResult as it finishes.
    """
    from decaylab._progress import progress_bar

    seed = check_int("seed", seed, low=0)
    studies = list(studies)
    for key in studies:
        if key not in STUDIES:
            raise InputError(f"studies must be a subset of {', '.join(map(repr, STUDIES))}, got {key!r}")
    sections, summaries, seconds, rows = [], {}, {}, []
    with intra_op_threads(1):
        for key in progress_bar(studies, desc="decaylab demo", enabled=progress, leave=True, unit="study"):
            start = time.perf_counter()
            result = run_study(key, quick=quick, seed=seed, progress=progress)
            seconds[key] = round(time.perf_counter() - start, 2)
            sections.append(result.section)
            summaries[key] = result.summary
            rows.extend(result.rows)
            if on_study is not None:  # e.g. the CLI keeps finished studies if a later one fails
                on_study(key, result)
    return DemoResult(sections=sections, summary={"studies": summaries, "checks": _checks(summaries),
                                                  "seconds": seconds}, rows=rows)


# check name in the summary -> (study, key in that study's summary); a check is present when its study ran
CHECKS = {
    "weights_shrink_with_lambda": ("boundaries", "weights_shrink_monotonically"),
    "boundary_shortens_with_lambda": ("boundaries", "boundary_shortens_monotonically"),
    "test_acc_rises_then_falls": ("boundaries", "test_acc_rises_then_falls"),
    "ridge_overlay_matches": ("ridge", "ridge_overlay_matches"),
    "ridge_overlay_max_diff": ("ridge", "ridge_overlay_max_diff"),
    "test_mse_u_shaped": ("ridge", "test_mse_u_shaped"),
    "sgd_equals_sgdw_without_momentum": ("coupling", "sgd_equals_sgdw_without_momentum"),
    "sgd_differs_from_sgdw_with_momentum": ("coupling", "sgd_differs_from_sgdw_with_momentum"),
    "l1_gives_zeros": ("sparsity", "l1_gives_zeros"),
    "l2_gives_no_zeros": ("sparsity", "l2_gives_no_zeros"),
    "decay_shrinks_more_than_dropout": ("dropout", "decay_shrinks_more_than_dropout"),
    "evidence_within_1_point_of_cv": ("evidence", "evidence_within_1_point"),
    "more_decay_converges_slower": ("convergence", "slower_with_more_decay"),
    "final_train_loss_rises_with_lambda": ("convergence", "final_loss_rises_with_lambda"),
    "decay_helps_flipped_labels": ("overfitting", "decay_helps_flipped_labels"),
    "decay_does_not_fix_imbalance": ("overfitting", "decay_does_not_fix_imbalance"),
    "muon_within_spectral_bound": ("muon_lion", "muon_within_spectral_bound"),
    "lion_within_linf_bound": ("muon_lion", "lion_within_linf_bound"),
    "largest_lambda_saturates_bounds": ("muon_lion", "largest_lambda_saturates"),
    "spectral_and_linf_norms_fall_with_lambda": ("muon_lion", "norms_fall_with_lambda"),
}


def _checks(s: dict) -> dict:
    return {check: s[study][key] for check, (study, key) in CHECKS.items() if study in s}
