"""The command line's error policy: bad input exits 2 with one line; a bug exits 1 with its traceback."""

import subprocess
import sys

import pytest

from decaylab import cli
from decaylab._checks import InputError, InputTypeError


@pytest.mark.parametrize("argv, message", [
    (["convert", "0.1", "--from", "nonsense"], "must be one of"),                      # conventions: InputError
    (["convert", "0.1", "--from", "torch-adamw", "--to", "schedule"], "needs"),        # missing context
    (["sweep", "moons", "--lambdas", "1e-4:1e-1:0"], "START:STOP:COUNT"),               # grid: InputError
    (["sweep", "moons", "--epochs", "0"], "epochs must be an integer"),                 # check_int
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    code = cli.main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "sweep" else [])])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def _fake_command(error):
    def register(subparsers):
        parser = subparsers.add_parser("boom")
        parser.set_defaults(func=lambda args: (_ for _ in ()).throw(error))
    return register


@pytest.mark.parametrize("error, code", [
    (InputError("lambdas must be positive, got -1"), 2),
    (InputTypeError("model must be an nn.Module, got int"), 2),
    (cli.UsageError("DATA 'x.csv' is empty"), 2),
    (ValueError("shapes [3, 4] and [5] do not broadcast"), 1),      # a plain ValueError from inside: a bug
    (TypeError("unsupported operand type(s)"), 1),
    (RuntimeError("CUDA error"), 1),
    (KeyError("weight"), 1),
])
def test_input_errors_exit_2_and_everything_else_is_a_bug(monkeypatch, capsys, error, code):
    import importlib

    real_import = importlib.import_module

    def fake_import(name, *a, **k):
        module = real_import(name, *a, **k)
        if name == "decaylab.cli.convert":
            class Both:
                @staticmethod
                def register(subparsers):
                    module.register(subparsers)
                    _fake_command(error)(subparsers)
            return Both
        return module

    monkeypatch.setattr(importlib, "import_module", fake_import)
    assert cli.main(["boom"]) == code
    _, err = capsys.readouterr()
    if code == 2:
        assert err.strip() == f"decaylab boom: error: {error}"
    else:
        assert "Traceback (most recent call last)" in err and type(error).__name__ in err
        assert err.strip().splitlines()[-1] == cli.REPORT_BUG


@pytest.mark.slow  # two fresh interpreters
def test_exit_codes_from_a_real_process(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "decaylab.cli", "convert", "0.1", "--from", "nonsense"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    ok = subprocess.run([sys.executable, "-m", "decaylab.cli", "convert", "0.1", "--from", "torch-adamw", "--lr",
                         "0.01"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    import decaylab.cli.convert as convert_cmd

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_cmd, "run", interrupted)
    assert cli.main(["convert", "0.1", "--from", "torch-adamw"]) == 130
    assert capsys.readouterr().err.strip() == "decaylab convert: interrupted"


def test_every_long_running_subcommand_has_no_progress():
    """Everything that trains (all but ``convert`` and ``scale``, which train nothing) takes ``--no-progress``."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    long_running = {name: p for name, p in subparsers.items() if name not in ("convert", "scale")}
    assert {"demo", "sweep", "repro"} <= set(long_running)
    for name, sub in long_running.items():
        options = {opt for action in sub._actions for opt in action.option_strings}
        nested = [a for a in sub._actions if isinstance(a.choices, dict)]
        for action in nested:                       # repro's studies are sub-sub-commands
            for child in action.choices.values():
                options |= {opt for a in child._actions for opt in a.option_strings}
        assert "--no-progress" in options, name
