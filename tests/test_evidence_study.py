"""Demo study 7 (evidence vs 5-fold CV): its section, numbers and figure."""

from decaylab.experiments.demo import STUDIES, evidence, run_demo


def test_evidence_study_reports_both_choices_and_the_per_layer_lambda():
    r = evidence.run_evidence(quick=True, seed=0, epochs=10, lambdas=(1e-4, 1e-2, 1.0))
    s = r.summary
    assert "evidence" in STUDIES and r.section.key == "evidence"
    assert s["cv_lambda"] in (1e-4, 1e-2, 1.0) and len(s["cv_mean"]) == 3
    assert s["evidence_lambda"] > 0 and set(s["evidence_layer_lambdas"]) == {"layers.0.weight", "layers.2.weight"}
    assert [p["epoch"] for p in s["evidence_path"]] == [5, 10]
    assert 0.5 < s["cv_test_acc"] <= 1 and 0.5 < s["evidence_test_acc"] <= 1
    assert s["time_ratio"] == __import__("pytest").approx(s["evidence_seconds"] / s["cv_seconds"], rel=0.02)
    assert s["evidence_within_1_point"] == (s["evidence_test_acc"] >= s["cv_test_acc"] - 0.01)
    assert r.section.figures[0].png.startswith(b"\x89PNG")
    table = r.section.tables[0]
    assert len(table.rows) == 2 + 2 and f"{s['cv_lambda']:.3g}" in table.rows[0][1]
    assert f"{s['evidence_lambda']:.3g}" in r.section.text
    # breast cancer's 114 test rows: one row is 0.88 points, so the 1-point check allows one more wrong row
    assert s["n_test"] == 114 and "one of the 114 test rows is 0.88 points" in r.section.text
    assert "at most 1 more wrong row(s)" in r.section.text


def test_run_demo_gathers_the_evidence_check():
    out = run_demo(quick=True, progress=False, studies=["evidence"])
    assert out.summary["checks"]["evidence_within_1_point_of_cv"] == out.summary["studies"]["evidence"][
        "evidence_within_1_point"]
