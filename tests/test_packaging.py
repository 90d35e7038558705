"""A wheel and an sdist build, and the wheel installs into a clean virtual environment with only the
core dependencies (torch, numpy), where the optimizers and the command line work."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and an sdist and installs into a new venv (~80 s)

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, **kwargs):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=900, **kwargs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_wheel_and_sdist_build_and_the_wheel_installs_lean(tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", dist, ROOT)
    wheel, = dist.glob("decaylab-*.whl")
    sdist, = dist.glob("decaylab-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "decaylab/optim/adam.py" in names and "decaylab/report/html.py" in names
    assert not any(n.startswith("tests/") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    core = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(line.split()[1].split(">")[0] for line in core) == ["numpy", "torch"]
    assert sdist.stat().st_size > 0

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel)
    out = run(python, "-c", "import decaylab, torch, importlib.util as u; "
                            "p = torch.nn.Parameter(torch.ones(3)); o = decaylab.optim.AdamW([p], lr=0.1); "
                            "p.grad = torch.ones(3); o.step(); "
                            "print(round(float(p[0]), 6), u.find_spec('sklearn') is None, "
                            "u.find_spec('matplotlib') is None)")
    assert out.split() == [str(round(1 - 0.1 * 0.01 - 0.1, 6)), "True", "True"]
    assert run(venv / "bin" / "decaylab", "convert", "0.05", "--from", "torch-adamw", "--to", "schedule",
               "--lr", "1e-3").splitlines()[0] == "5e-05"
