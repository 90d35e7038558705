import subprocess
import sys

import pytest

import decaylab
from decaylab._checks import check_choice, check_int, check_real


def test_version_is_the_one_pyproject_declares():
    import re
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()   # tomllib is 3.11+
    assert decaylab.__version__ == re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_check_real_rejects(value):
    with pytest.raises(ValueError, match="lr"):
        check_real("lr", value, low=0.0)


def test_check_real_type():
    with pytest.raises(TypeError, match="lr must be a real number"):
        check_real("lr", "0.1")
    with pytest.raises(TypeError):
        check_real("lr", True)


def test_check_int_and_choice():
    assert check_int("folds", 5, low=2) == 5
    with pytest.raises(ValueError, match=r"folds must be an integer in \[2, inf\], got 1"):
        check_int("folds", 1, low=2)
    with pytest.raises(ValueError, match="decay_scaling must be one of 'lr', 'schedule', got 'x'"):
        check_choice("decay_scaling", "x", ("lr", "schedule"))


@pytest.mark.slow
def test_cli_bad_command_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "decaylab.cli", "no-such-command"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a fresh interpreter
def test_subpackages_are_attributes_after_a_light_import():
    import subprocess
    import sys

    script = ("import sys, decaylab; assert 'torch' not in sys.modules, 'import decaylab imported torch'; "
              "print(decaylab.optim.AdamW.__name__, decaylab.sweeps.sweep.__name__, decaylab.conventions.__name__, "
              "'optim' in dir(decaylab), decaylab.integrations.DecayDoctorWarning.__name__, "
              "[m for m in ('lightning', 'transformers', 'tensorboard') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # the integrations package is an attribute too, and does not import the frameworks
    assert out.stdout.split() == ["AdamW", "sweep", "decaylab.conventions", "True", "DecayDoctorWarning", "[]"]
