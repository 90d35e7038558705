"""Demo study 7 (evidence vs 5-fold CV): its choices checked against what they must be, and its report."""

import numpy as np
import pytest

from decaylab import data
from decaylab.experiments.demo import STUDIES, evidence, run_demo

LAMBDAS = (1e-4, 1e-2, 1.0)


@pytest.fixture(scope="module")
def study():
    return evidence.run_evidence(quick=True, seed=0, epochs=10, lambdas=LAMBDAS)


def wrong_rows(accuracy: float, n: int) -> int:
    """How many of ``n`` rows an accuracy leaves wrong (an accuracy on n rows is a multiple of 1/n)."""
    wrong = (1.0 - accuracy) * n
    assert wrong == pytest.approx(round(wrong), abs=1e-3), (accuracy, n)
    return round(wrong)


def test_cv_chooses_the_lambda_of_the_best_mean_fold_accuracy(study):
    s = study.summary
    assert "evidence" in STUDIES and study.section.key == "evidence"
    assert s["lambdas"] == list(LAMBDAS) and len(s["cv_mean"]) == len(LAMBDAS)
    assert all(0.5 < m <= 1 for m in s["cv_mean"])
    assert s["cv_lambda"] == LAMBDAS[int(np.argmax(s["cv_mean"]))]      # first maximum: the smaller λ on a tie


def test_both_test_accuracies_are_on_breast_cancers_own_test_rows(study):
    s = study.summary
    n_test = len(data.load("breast_cancer", seed=0).test)
    assert s["n_test"] == n_test == 114
    for key in ("cv_test_acc", "evidence_test_acc"):
        assert 0.5 < s[key] <= 1
        wrong_rows(s[key], n_test)                     # a whole number of the 114 rows is wrong


def test_the_one_point_check_counts_wrong_rows(study):
    # 1 point of 114 rows is 1.14 rows, so "within 1 point" means at most one more wrong row than CV
    s = study.summary
    cv_wrong, ev_wrong = wrong_rows(s["cv_test_acc"], s["n_test"]), wrong_rows(s["evidence_test_acc"], s["n_test"])
    assert s["evidence_within_1_point"] == (ev_wrong <= cv_wrong + 1)


def test_the_evidence_learns_one_lambda_per_decayed_layer_and_ends_on_its_last_refit(study):
    s = study.summary
    assert s["evidence_lambda"] > 0 and np.isfinite(s["log_evidence"])
    assert set(s["evidence_layer_lambdas"]) == {"layers.0.weight", "layers.2.weight"}    # biases are not decayed
    assert all(v > 0 for v in s["evidence_layer_lambdas"].values())
    assert [p["epoch"] for p in s["evidence_path"]] == [5, 10]                           # refitted every 5 epochs
    assert s["evidence_path"][-1]["weight_decay"] == pytest.approx(s["evidence_layer_lambdas"], rel=1e-12)


def test_the_report_shows_the_measured_numbers(study):
    s = study.summary
    assert study.section.figures[0].png.startswith(b"\x89PNG")
    table = study.section.tables[0]
    assert len(table.rows) == 2 + len(s["evidence_layer_lambdas"])       # CV, evidence, then one row per layer
    assert f"{s['cv_lambda']:.3g}" in table.rows[0][1] and f"{s['evidence_lambda']:.3g}" in table.rows[1][1]
    assert table.rows[0][2] == round(s["cv_test_acc"], 4) and table.rows[1][2] == round(s["evidence_test_acc"], 4)
    for quoted in (f"{s['cv_lambda']:.3g}", f"{s['evidence_lambda']:.3g}", f"{s['cv_test_acc']:.3f}",
                   f"{s['evidence_test_acc']:.3f}"):
        assert quoted in study.section.text


def test_run_demo_gathers_the_evidence_check():
    out = run_demo(quick=True, progress=False, studies=["evidence"])
    assert out.summary["checks"]["evidence_within_1_point_of_cv"] == out.summary["studies"]["evidence"][
        "evidence_within_1_point"]
