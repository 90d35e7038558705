"""``decaylab demo``: argument errors, and one quick end-to-end run checked through its summary.json."""

from __future__ import annotations

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
    for option in ("--out DIR", "--quick", "--seed N", "--no-progress"):
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


def test_console_script_entry_point_parses_demo():
    proc = subprocess.run([sys.executable, "-m", "decaylab.cli", "demo", "--seed", "-3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "decaylab demo: error: argument --seed: must be an integer in [0, 4294967295], got -3"]

