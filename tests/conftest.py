"""Suite-wide test settings and the helpers several test modules share (as fixtures).

Two subsets. ``make test`` (``pytest -n 2 -q``) runs everything. ``make test-fast``
(``pytest -m "not slow" -n 2 -q``, under a minute on two idle cores) leaves out the tests marked
``@pytest.mark.slow``: those that take about 2 s or more on an idle two-core machine, fixture set-up
included (the quick demo run, whole demo studies, lr × λ maps, fresh interpreters and worker
processes, a wheel build, Ray, DDP, 200-step parity runs), and whole modules that are only end to end
(``pytestmark = pytest.mark.slow``). Every module keeps its fast behaviour tests in the fast subset;
a new test that takes 2 s or more gets the mark (``pytest --durations=0`` measures it).
"""

import fcntl
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from decaylab.report import Figure, Section, Slider, Table


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread per test process: the models here are tiny, ``make test`` runs two
    xdist workers on two cores, and two threads each on a busy two-core box run up to ~40× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the quick demo, run once per test session (shared by test_cli_demo and test_browser) -----------

def _quick_demo(tmp_path_factory):
    """One ``decaylab demo --quick`` per test run (it costs ~30 s), shared by every module and xdist worker.

    The first caller runs the command in a subprocess (the real entry point, progress bars on)
    under a file lock; later callers, in this process or another worker, read its record.
    Returns (record of the run: returncode/stdout/stderr, report directory).
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's base directory, common to all workers
    record, report = shared / "quick-demo.json", shared / "quick-demo"
    with open(shared / "quick-demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            proc = subprocess.run([sys.executable, "-m", "decaylab.cli", "demo", "--quick", "--seed", "0",
                                   "--out", str(report)], capture_output=True, text=True, timeout=600)
            record.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout,
                                          "stderr": proc.stderr}))
    return json.loads(record.read_text()), report



@pytest.fixture(scope="session")
def quick_demo_run(tmp_path_factory):
    """(record of one ``decaylab demo --quick`` run, its report directory), shared by the whole session."""
    return _quick_demo(tmp_path_factory)


# --- hand-made report sections (shared by test_report and test_browser) ------------------------------

HOSTILE = '<script>alert(1)</script>"\'&</script><img src=x onerror=alert(2)>'
LAMBDAS = (0.0, 1e-3, 1e-2, 1e-1)


def line_plot_png(slope: float, title: str, *, lam: float | None = None) -> bytes:
    """A small real matplotlib figure: a fitted line whose slope shrinks like a weight under decay."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 2.2), dpi=60)
    x = np.linspace(-1, 1, 20)
    ax.plot(x, slope * x, color="tab:blue")
    ax.scatter(x, np.sin(2 * x), s=6, color="k")
    ax.set_title(title if lam is None else f"{title} λ={lam:g}", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def sample_sections(text: str = "Weights shrink as λ grows.", caption: str = "slope per λ") -> list[Section]:
    """Two hand-made sections: one with a λ slider, figures and a table; one with a figure only."""
    frames = [Figure(f"frame-{i}", line_plot_png(1.0 / (1 + 30 * lam), "fit", lam=lam), caption=f"λ={lam:g}")
              for i, lam in enumerate(LAMBDAS)]
    slider = Slider("λ", LAMBDAS, frames, captions=[f"{caption}: slope {1.0 / (1 + 30 * lam):.3f}" for lam in LAMBDAS])
    table = Table(["λ", "slope", "note"], [[lam, 1.0 / (1 + 30 * lam), caption] for lam in LAMBDAS], caption=caption)
    first = Section("boundaries", "Decision boundaries vs λ", text,
                    figures=[Figure("norms", line_plot_png(0.5, "norms"), caption=caption)],
                    tables=[table], slider=slider)
    second = Section("ridge", "Ridge overlay", text + "\n\nA second paragraph.",
                     figures=[Figure("ridge-fit", line_plot_png(2.0, "ridge"), caption="ridge vs GD")])
    return [first, second]



@pytest.fixture
def hostile():
    """A string that would run script if a page inserted it as HTML."""
    return HOSTILE


@pytest.fixture
def report_lambdas():
    """The λ values of the hand-made sections' slider."""
    return LAMBDAS


@pytest.fixture(scope="session")
def report_sections():
    """The factory of two hand-made report sections: ``report_sections(text=…, caption=…)``."""
    return sample_sections


# --- optimizer checks shared by the optimizer test modules ---------------------------------------------


@pytest.fixture
def spy_paths(monkeypatch):
    """``seen = spy_paths()``: from then on, the paths ``decaylab.optim._paths.select`` picks, in order."""
    from decaylab.optim import _paths

    def start():
        seen = []
        select = _paths.select

        def spy(group, tensors, native_needed):
            seen.append(select(group, tensors, native_needed=native_needed))
            return seen[-1]
        monkeypatch.setattr(_paths, "select", spy)
        return seen
    return start
