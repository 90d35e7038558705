"""``decaylab demo``: argument errors, and one quick end-to-end run checked through its summary.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from decaylab.cli import main


def run_cli(argv, capsys):
    """Run ``decaylab ARGV`` in-process; return (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_options(capsys):
    code, out, err = run_cli(["demo", "--help"], capsys)
    assert code == 0 and err == ""
    for option in ("--out DIR", "--quick", "--seed N", "--study KEY", "--no-progress"):
        assert option in out


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-3"], "argument --seed: must be an integer in [0, 4294967295], got -3"),
    (["--seed", "1.5"], "argument --seed: must be an integer in [0, 4294967295], got '1.5'"),
    (["--seed", str(2**32)], "argument --seed: must be an integer in [0, 4294967295], got 4294967296"),
    (["--quick", "extra"], "unrecognized arguments: extra"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    code, out, err = run_cli(["demo", *argv], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_out_pointing_at_a_file_is_refused_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    for out in (a_file, a_file / "sub"):
        code, stdout, err = run_cli(["demo", "--out", str(out), "--no-progress"], capsys)
        assert code == 2 and stdout == ""
        assert err.strip() == (f"decaylab demo: error: --out must be a directory (or not exist yet), "
                               f"got {str(out)!r}: {str(a_file)!r} is a file")
    assert a_file.read_text() == "keep me"


@pytest.mark.slow
def test_console_script_entry_point_parses_demo():
    proc = subprocess.run([sys.executable, "-m", "decaylab.cli", "demo", "--seed", "-3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "decaylab demo: error: argument --seed: must be an integer in [0, 4294967295], got -3"]


@pytest.fixture(scope="module")
def demo(quick_demo_run):
    run, report = quick_demo_run
    assert run["returncode"] == 0, run["stderr"][-3000:]
    return run, report, json.loads((report / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.slow  # needs the quick demo run (~20 s)
def test_quick_demo_writes_a_complete_report(demo):
    run, report, summary = demo
    assert sorted(p.name for p in report.iterdir()) == ["index.html", "summary.json"]
    outline = summary["report"]["sections"]
    assert len(outline) == 10
    page = (report / "index.html").read_text(encoding="utf-8")
    for section in outline:
        assert f'<section class="study" id="{section["key"]}">' in page
        assert len(section["text"]) > 80  # a paragraph written from the numbers
        assert section["figures"] or section.get("slider")
        for figure in section["figures"]:
            assert f'id="fig-{figure["name"]}"' in page
    slider = outline[0]["slider"]
    assert len(slider["values"]) >= 6 and slider["values"][0] == 0 and slider["values"] == sorted(slider["values"])
    assert page.count("data:image/png;base64,") == sum(len(s["figures"]) for s in outline) + len(slider["values"]) + 1
    assert summary["run"]["quick"] is True and summary["run"]["seed"] == 0
    # the terminal: a results table and where the report went on stdout, progress bars on stderr
    assert "report: " + str(report / "index.html") in run["stdout"]
    verdicts = [v for v in summary["checks"].values() if isinstance(v, bool)]
    assert f"checks: {sum(verdicts)} of {len(verdicts)} expected directions hold" in run["stdout"]
    assert len(run["stdout"].strip().splitlines()) >= 4
    assert "it/s" in run["stderr"] or "s/it" in run["stderr"]


@pytest.mark.slow  # needs the quick demo run (~20 s)
def test_quick_demo_summary_shows_the_expected_directions(demo):
    """Checked on the measured numbers themselves, not only on the studies' own verdicts."""
    _, _, summary = demo
    studies, checks = summary["studies"], summary["checks"]
    assert list(studies) == ["boundaries", "ridge", "coupling", "sparsity", "dropout", "cross_validation", "evidence",
                             "convergence", "overfitting", "muon_lion"]
    # 1. weights shrink as λ grows (AdamW on two moons), and the boundary gets shorter
    b = studies["boundaries"]
    assert b["lambdas"] == sorted(b["lambdas"]) and len(b["lambdas"]) >= 6 and b["lambdas"][0] == 0
    assert all(later < earlier for earlier, later in zip(b["weight_norm"], b["weight_norm"][1:]))
    assert b["boundary_flips"][-1] < b["boundary_flips"][0]
    assert checks["weights_shrink_with_lambda"] is True
    # 2. gradient descent with decay lands on the closed-form ridge solution
    r = studies["ridge"]
    assert max(r["max_abs_weight_diff"]) <= 1e-4 and max(r["max_abs_curve_diff"]) <= 1e-4
    assert checks["ridge_overlay_matches"] is True and checks["ridge_overlay_max_diff"] <= 1e-4
    # 3. SGD == SGDW without momentum; they differ with momentum
    c = studies["coupling"]
    assert c["sgd_vs_sgdw_no_momentum"]["max_abs_weight_diff"] <= 1e-10
    assert c["sgd_vs_sgdw_no_momentum"]["max_abs_loss_diff"] <= 1e-10
    assert c["sgd_vs_sgdw_momentum"]["max_abs_weight_diff"] > 1e-3
    assert checks["sgd_equals_sgdw_without_momentum"] is True
    assert checks["sgd_differs_from_sgdw_with_momentum"] is True
    # 4. L1 (proximal) gives exact zeros, more as λ grows; L2 none
    s = studies["sparsity"]
    assert s["l1_zeros"][-1] > 0 and s["l1_zeros"] == sorted(s["l1_zeros"])
    assert s["l2_zeros"] == [0] * len(s["lambdas"])
    assert checks["l1_gives_zeros"] is True and checks["l2_gives_no_zeros"] is True
    # 8. more decay reaches the target training loss no sooner; the largest λ never does in the budget
    conv = studies["convergence"]
    assert conv["epochs_to_target"][0] is not None and conv["epochs_to_target"][-1] is None
    assert checks["more_decay_converges_slower"] is True
    # 9. decay lifts the flipped-labels case and never the minority class's recall
    over = studies["overfitting"]["cases"]
    assert max(over["flipped labels"]["balanced_acc"]) > over["flipped labels"]["balanced_acc"][0]
    assert max(over["class imbalance"]["recall_class_1"]) == over["class imbalance"]["recall_class_1"][0]
    assert checks["decay_helps_flipped_labels"] is True and checks["decay_does_not_fix_imbalance"] is True
    # 10. Muon's ‖W‖₂ and Lion's max|w| never above their bounds, at them for the largest λ
    ml = studies["muon_lion"]
    assert max(ml["muon_bound_ratio"]) <= 1.01 and max(ml["lion_bound_ratio"]) <= 1.01
    assert ml["muon_bound_ratio"][-1] >= 0.9 and ml["lion_at_bound"][-1] > 0 == ml["lion_at_bound"][0]
    assert checks["muon_within_spectral_bound"] is True and checks["largest_lambda_saturates_bounds"] is True
    # the terminal table: a header, a rule of dashes, at least one line per study
    run, _, _ = demo
    table = run["stdout"].split("\n\n")[0].splitlines()
    assert set(table[1]) == {"-", " "} and len(table) - 2 >= len(studies)


@pytest.mark.slow
def test_a_failing_study_keeps_the_previous_report_and_saves_the_finished_ones(tmp_path, capsys, monkeypatch):
    """Fault injection: the second study raises; the first one's section lands in DIR/partial/."""
    import decaylab.experiments.demo as demo_module

    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("previous report")
    real_run_study = demo_module.run_study

    def run_study_failing_on_coupling(key, **kwargs):
        if key == "coupling":
            raise RuntimeError("injected failure")
        return real_run_study(key, **kwargs)

    monkeypatch.setattr(demo_module, "run_study", run_study_failing_on_coupling)
    argv = ["demo", "--quick", "--no-progress", "--out", str(out), "--study", "ridge", "--study", "coupling"]
    assert main(argv) == 1                  # not the user's input: exit 1, traceback and a request to report it
    err = capsys.readouterr().err
    assert "RuntimeError: injected failure" in err and "report" in err
    assert f"RuntimeError after 1 of 2 studies; the finished ones are in {out / 'partial' / 'index.html'}" in err
    assert (out / "index.html").read_text() == "previous report"
    partial = json.loads((out / "partial" / "summary.json").read_text())
    assert list(partial["studies"]) == ["ridge"] and partial["incomplete"]["missing"] == ["coupling"]
    assert partial["incomplete"]["error"] == "RuntimeError: injected failure"
    assert max(partial["studies"]["ridge"]["max_abs_weight_diff"]) <= 1e-4
    assert [s["key"] for s in partial["report"]["sections"]] == ["ridge"]

    monkeypatch.setattr(demo_module, "run_study", real_run_study)
    assert main(["demo", "--quick", "--no-progress", "--out", str(out), "--study", "ridge", "--study", "ridge"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "summary.json"]  # partial/ cleaned up
    assert [s["key"] for s in json.loads((out / "summary.json").read_text())["report"]["sections"]] == ["ridge"]


def test_unknown_study_is_a_one_line_error(tmp_path, capsys):
    code, out, err = run_cli(["demo", "--out", str(tmp_path), "--study", "nope"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "studies must be a subset of 'boundaries'" in err and "got 'nope'" in err
    assert not list(tmp_path.iterdir())


def test_checks_line_names_what_failed():
    from decaylab.cli.demo import checks_line

    assert checks_line({"a": True, "b": True, "max_diff": 1e-9}).strip() == "checks: 2 of 2 expected directions hold"
    assert checks_line({"a": True, "b": False}).strip() == "checks: 1 of 2 expected directions hold; NOT: b"
