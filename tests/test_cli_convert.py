import subprocess
import sys

import pytest

from decaylab.cli import main
from decaylab.conventions import CONVENTIONS


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_prints_value_and_formula(capsys):
    code, out, err = run(capsys, "convert", "0.05", "--from", "torch-adamw", "--to", "schedule", "--lr", "1e-3")
    assert code == 0 and err == ""
    value, line = out.splitlines()
    assert float(value) == pytest.approx(5e-5)
    assert line.startswith("wd_sched = wd_adamw·lr") and "exact" in line


def test_cross_family_conversion_says_plain_sgd_only(capsys):
    code, out, _ = run(capsys, "convert", "1e4", "--from", "tau-iter", "--to", "coupled", "--lr", "0.1")
    assert code == 0
    assert float(out.splitlines()[0]) == pytest.approx(1e-3)
    assert "plain SGD without momentum only" in out


def test_without_to_lists_every_convention_with_value_or_what_is_missing(capsys):
    code, out, _ = run(capsys, "convert", "0.05", "--from", "adamw", "--lr", "1e-3", "--batch-size", "128")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert set(rows) == set(CONVENTIONS) - {"torch-adamw"}
    assert float(rows["tau-iter"].split()[1]) == pytest.approx(2e4)
    assert float(rows["mlp-alpha"].split()[1]) == pytest.approx(6.4)
    assert "needs --dataset-size, --epochs" in rows["normalized"]


def test_list(capsys):
    code, out, _ = run(capsys, "convert", "--list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert names == list(CONVENTIONS)


@pytest.mark.parametrize("argv,message", [
    (["0.05", "--from", "torch-adamw", "--to", "schedule"], "needs --lr"),
    (["0.1", "--from", "tau-epoch", "--to", "normalized", "--lr", "1"], "needs --batch-size, --dataset-size, --epochs"),
    (["nan", "--from", "penalty", "--to", "coupled"], "value must be finite"),
    (["0.1", "--from", "adam-w", "--to", "coupled"], "--from must be one of"),
    (["0.1", "--to", "coupled"], "--from is required"),
    (["--from", "penalty", "--to", "coupled"], "VALUE is required"),
    (["0.1", "--from", "coupled", "--to", "tau-iter", "--lr", "-1"], "lr must be in (0.0, inf), got -1.0"),
    (["abc", "--from", "coupled"], "invalid float value"),
])
def test_bad_input_exit_2_one_line(capsys, argv, message):
    code, out, err = run(capsys, "convert", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.slow  # a fresh interpreter
def test_entry_point_subprocess():
    proc = subprocess.run([sys.executable, "-m", "decaylab.cli", "convert", "0.01", "--from", "penalty",
                           "--to", "coupled"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.splitlines()[0]) == pytest.approx(0.02)


def test_mlp_alpha_says_what_it_assumes_of_the_batches(capsys):
    code, out, _ = run(capsys, "convert", "1e-4", "--from", "mlp-alpha", "--to", "coupled", "--batch-size", "200")
    assert code == 0 and float(out.splitlines()[0]) == pytest.approx(5e-7)
    assert "exact only with full batches: assumes every sklearn batch has b = 200 rows" in out
    code, out, _ = run(capsys, "convert", "1e-4", "--from", "mlp-alpha", "--to", "coupled", "--batch-size", "200",
                       "--dataset-size", "1437")
    assert code == 0 and float(out.splitlines()[0]) == pytest.approx(5e-7 * 1.5507, rel=1e-4)
    assert "not exact: the epoch-average decay per step: sklearn's last batch has 37 of 1437 rows" in out
    assert "1.55×" in out
