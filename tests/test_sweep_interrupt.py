"""Kills and Ctrl-C: worker processes never outlive the sweep, and an interrupt stores every
finished member, prints one line and exits 130."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

SWEEP = ["sweep", "digits", "--lambdas", "1e-6:1:8", "--folds", "2", "--epochs", "60", "--hidden", "32",
         "--chunk-size", "2", "--no-progress"]


def children(pid):
    """PIDs of the live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stored(path):
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]
    except sqlite3.Error:
        return 0


def start(tmp_path, *extra, pipes=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    output = subprocess.PIPE if pipes else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "decaylab.cli", *SWEEP, "--out", str(tmp_path), *extra],
                            stdout=output, stderr=output, env=env)


def wait_for_rows(proc, store, rows, timeout=240):
    deadline = time.time() + timeout
    while stored(store) < rows and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    assert stored(store) >= rows


@pytest.mark.slow  # a real sweep process, killed or interrupted
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_a_killed_parent(tmp_path, sig):
    proc = start(tmp_path, "--workers", "2", "--epochs", "1000", pipes=False)      # chunks of many seconds
    wait_for_rows(proc, tmp_path / "sweep.sqlite", 1)    # the workers are set up and on their next chunks
    workers = children(proc.pid)
    assert len(workers) >= 3                       # two workers + multiprocessing's resource tracker
    proc.send_signal(sig)
    proc.wait()
    deadline = time.time() + 5                     # far less than a chunk: they did not finish it
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    survivors = [w for w in workers if alive(w)]
    for w in survivors:
        os.kill(w, signal.SIGKILL)
    assert not survivors


@pytest.mark.slow  # a real sweep process, killed or interrupted
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stores_what_finished_and_exits_130(tmp_path, workers):
    store = tmp_path / "sweep.sqlite"
    proc = start(tmp_path, "--workers", workers)
    wait_for_rows(proc, store, 2)
    spawned = children(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    match = re.search(r"interrupted: (\d+) of 16 members finished, stored in (\S+); run the same sweep again", err)
    assert match, err
    assert int(match.group(1)) == stored(store) >= 2          # everything finished was stored
    deadline = time.time() + 5                     # multiprocessing's resource tracker exits on its own
    while any(alive(w) for w in spawned) and time.time() < deadline:
        time.sleep(0.1)
    assert not [w for w in spawned if alive(w)]
    assert not (tmp_path / "results.json").exists()


def test_a_reset_fd_sharer_connection_prints_nothing_after_ctrl_c(monkeypatch):
    """Workers terminated while fetching a tensor's fd kill multiprocessing's resource_sharer thread with a
    ConnectionError: silenced after a stop; any other thread error still prints."""
    import multiprocessing.resource_sharer
    import threading

    from decaylab.sweeps.engines import _quiet_fd_sharer_on_stop

    reached = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reached.append(str(args.exc_value)))
    _quiet_fd_sharer_on_stop()
    inside = {}
    exec(compile("def serve():\n    raise ConnectionResetError(104, 'reset')\n",
                 multiprocessing.resource_sharer.__file__, "exec"), inside)

    def elsewhere():
        raise ConnectionResetError(104, "reset elsewhere")

    for target in (inside["serve"], elsewhere):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert reached == ["[Errno 104] reset elsewhere"]
