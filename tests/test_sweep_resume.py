"""A sweep killed with SIGKILL resumes from its store: nothing retrained, lost or duplicated."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import decaylab

pytestmark = pytest.mark.slow  # a sweep in a child process, killed and resumed (~8 s each)

LAMBDAS = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def data():
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=240, noise=0.2, random_state=0)
    return X.astype(np.float32), y


def run_sweep(store, engine, lambdas=LAMBDAS):
    return decaylab.sweep("mlp", data(), lambdas, folds=2, epochs=15, batch_size=16, hidden=(16,), lr=0.01,
                          engine=engine, chunk_size=1, store=store)


def stored_rows(path):
    if not os.path.exists(path):
        return 0
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:      # table not created yet
        return 0


@pytest.mark.parametrize("engine", ["sequential", "batched"])
def test_resume_after_sigkill(tmp_path, engine):
    store = str(tmp_path / "sweep.sqlite")
    child = textwrap.dedent(f"""
        import sys, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_sweep_resume import run_sweep
        run_sweep({store!r}, {engine!r})
        print("finished")
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    total = len(LAMBDAS) * 2
    deadline = time.time() + 120
    while stored_rows(store) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert b"finished" not in out
    before = stored_rows(store)
    assert 2 <= before < total

    result = run_sweep(store, engine)
    assert result.trained == total - before                   # finished members were not retrained
    assert sum(r["from_store"] for r in result.table) == before
    assert stored_rows(store) == total                        # nothing lost, nothing duplicated
    assert len({r["key"] for r in result.table}) == total
    assert all(np.isfinite(r["val_metric"]) for r in result.table)

    again = run_sweep(store, engine)                           # a finished sweep trains nothing
    assert again.trained == 0
    assert [r["val_loss"] for r in again.table] == [r["val_loss"] for r in result.table]

    grown = run_sweep(store, engine, LAMBDAS + [3.0])          # a changed grid trains only what is new
    assert grown.trained == 2
    assert stored_rows(store) == total + 2
