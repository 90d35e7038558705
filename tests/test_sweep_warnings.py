"""Warnings a sweep's answer needs: the best λ on the edge of the grid (which edge, and the grid extended that
way) and a flat curve (decay did not matter over this run, with the per-run decay the grid implied), in the
result, on the CLI's stderr and in the HTML report."""

import json
import math

import numpy as np

import decaylab
from decaylab.cli import main
from decaylab.sweeps.select import choice_warnings

FAST = dict(folds=2, batch_size=32, progress=False)


def _regression(seed=1, rows=200, features=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    return X, (X @ rng.normal(size=features)).astype(np.float32)


def _noise_target(rows=120, features=30):
    """A constant target with tiny noise beside 30 useless features: the more decay, the better."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(rows, features))
    return X, (3 + 0.1 * rng.normal(size=rows)).astype(np.float32)


def _means(result):
    return [s["mean"] for s in result.summary]


def test_best_lambda_at_the_smallest_grid_value_says_extend_below():
    result = decaylab.sweep("linear", _regression(), [1e-2, 1e-1, 1.0, 10.0], epochs=20, lr=0.05, **FAST)
    means = _means(result)
    assert result.best_lambda == 1e-2 and means[0] < min(means[1:]) - result.summary[0]["se"], result.summary
    assert result.warnings == ["best λ 0.01 is the smallest of the grid: the best may lie below it; extend the "
                               "grid below, e.g. --lambdas 0.0001:10:6"]
    assert result.to_dict()["warnings"] == result.warnings


def test_best_lambda_at_the_largest_grid_value_says_extend_above():
    result = decaylab.sweep("linear", _noise_target(), [1e-3, 1e-2, 1e-1, 1.0], epochs=20, lr=0.05, **FAST)
    means = _means(result)
    assert result.best_lambda == 1.0 and means[-1] < min(means[:-1]) - result.summary[-1]["se"], result.summary
    assert result.warnings == ["best λ 1 is the largest of the grid: the best may lie above it; extend the grid "
                               "above, e.g. --lambdas 0.001:100:6"]


def test_flat_curve_says_decay_did_not_matter_and_the_per_run_decay():
    result = decaylab.sweep("linear", _regression(), [1e-6, 1e-5, 1e-4], epochs=20, lr=0.05, **FAST)
    best = next(s for s in result.summary if s["lambda"] == result.best_lambda)
    assert all(abs(s["mean"] - best["mean"]) <= best["se"] for s in result.summary), result.summary
    steps = max(r["steps"] for r in result.table)
    assert steps == 80                                   # 20 epochs × 4 batches of 32 of the 100 training rows
    (warning,) = result.warnings
    assert warning.startswith("flat validation curve: every λ from 1e-06 to 0.0001 (lr 0.05) is within one "
                              "standard error")
    assert "decay did not matter over this run" in warning
    low, high = 0.05 * 1e-6 * steps, 0.05 * 1e-4 * steps
    assert f"over its {steps} steps the grid implied a per-run decay lr·λ·steps from {low:.3g} to {high:.3g}" \
        in warning, warning
    assert f"λ ≈ {1 / (0.05 * steps):.3g}" in warning
    assert "is the smallest of the grid" not in warning   # a flat curve's edge is no answer to extend
    assert warning.endswith("widen the grid toward it or train longer")
    # the same data with a grid that reaches lr·λ·steps ≥ 1 at its top and still does not move
    (reaching,) = choice_warnings(result.summary[:2] + [{**result.summary[1], "lambda": 1.0}],
                                  best, False, result.config["train"], steps)
    assert reaching.endswith("the grid reaches lr·λ·steps ≥ 1 and the metric did not move: λ hardly matters here")


def test_choice_warnings_rules():
    def row(lam, mean, se=0.1, lr=1e-3):
        return {"lr": lr, "lambda": lam, "mean": mean, "se": se}

    with_zero = [row(0.0, 2.0), row(1e-3, 1.0), row(1e-1, 3.0)]
    assert choice_warnings(with_zero, with_zero[1], higher_is_better=False) == []      # 0 lies below: interior
    assert choice_warnings(with_zero[:1] + with_zero[2:], with_zero[0], higher_is_better=False) == []  # λ = 0 best
    summary = [row(1e-3, 1.0), row(1e-2, 2.0), row(1e-1, 3.0)]
    assert choice_warnings(summary, summary[0], higher_is_better=False) == [
        "best λ 0.001 is the smallest of the grid: the best may lie below it; extend the grid below, e.g. "
        "--lambdas 1e-05:0.1:5"]
    # higher is better: the largest λ wins
    assert choice_warnings(summary, summary[2], higher_is_better=True) == [
        "best λ 0.1 is the largest of the grid: the best may lie above it; extend the grid above, e.g. "
        "--lambdas 0.001:10:5"]
    assert choice_warnings(summary, summary[1], higher_is_better=False) == []      # interior
    assert choice_warnings(summary[:1], summary[0], higher_is_better=False) == []  # one λ: no curve
    # a diverged λ (NaN mean) is not within one standard error: not flat, so the edge is reported
    flat = [row(1e-3, 1.0, se=0.5), row(1e-2, 1.4), row(1e-1, math.nan)]
    assert choice_warnings(flat, flat[0], higher_is_better=False)[0].startswith("best λ 0.001 is the smallest")
    flat[2]["mean"] = 1.2
    (warning,) = choice_warnings(flat, flat[0], higher_is_better=False, train={"optimizer": "adam"}, steps=100)
    assert warning.startswith("flat validation curve: every λ from 0.001 to 0.1") and "lr·λ·steps" not in warning
    assert warning.endswith("try a wider λ grid or a longer run")        # coupled Adam: no per-run product
    assert choice_warnings(summary, None, higher_is_better=False) == []


def _cli(capsys, tmp_path, data, lambdas, *extra):
    np.savez(tmp_path / "d.npz", X=data[0], y=data[1])
    out_dir = tmp_path / "out"
    code = main(["sweep", str(tmp_path / "d.npz"), "--model", "linear", "--task", "regression", "--lambdas", lambdas,
                 "--folds", "2", "--epochs", "20", "--lr", "0.05", "--batch-size", "32", "--no-progress",
                 "--out", str(out_dir), *extra])
    out, err = capsys.readouterr()
    return code, out, err, out_dir


def test_cli_prints_the_edge_warning_on_stderr_and_in_the_report(tmp_path, capsys):
    code, out, err, out_dir = _cli(capsys, tmp_path, _regression(), "1e-2:10:4")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "warning" in line]
    assert lines == ["decaylab sweep: warning: best λ 0.01 is the smallest of the grid: the best may lie below it; "
                     "extend the grid below, e.g. --lambdas 0.0001:10:6"], err
    assert "warning" not in out
    html = (out_dir / "index.html").read_text()
    assert "Warnings" in html and "is the smallest of the grid" in html and "--lambdas 0.0001:10:6" in html
    assert json.loads((out_dir / "summary.json").read_text())["warnings"] == [lines[0].split("warning: ", 1)[1]]
    assert json.loads((out_dir / "results.json").read_text())["warnings"] == [lines[0].split("warning: ", 1)[1]]


def test_cli_prints_the_flat_curve_warning_and_keeps_exit_0(tmp_path, capsys):
    code, out, err, out_dir = _cli(capsys, tmp_path, _regression(), "1e-6:1e-4:3")
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if "warning" in line]
    assert line.startswith("decaylab sweep: warning: flat validation curve: every λ from 1e-06 to 0.0001")
    assert "decay did not matter over this run" in line and "lr·λ·steps" in line
    assert "decay did not matter over this run" in (out_dir / "index.html").read_text()
