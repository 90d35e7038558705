"""Kills and Ctrl-C: worker processes never outlive the sweep (or the lr × λ maps of ``decaylab repro``), and
an interrupt stores every finished member, prints one line and exits 130."""

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

    from decaylab._workers import _quiet_fd_sharer_on_stop

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


# -- the lr × λ maps' workers (decaylab repro decoupling) ---------------------------------------------------

REPRO = ["repro", "decoupling", "--quick", "--seeds", "1", "--epochs", "20000", "--workers", "2", "--no-progress"]


def ignores_sigint(pid):
    """Whether ``pid`` ignores SIGINT (``SigIgn`` of /proc/PID/status): a worker set up to be stopped by its parent."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            ignored = next(line for line in fh if line.startswith("SigIgn:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(ignored, 16) & (1 << (signal.SIGINT - 1)))


def set_up_workers(proc, count=2, timeout=240):
    """The PIDs of ``proc``'s spawned worker processes, once ``count`` of them are set up (they ignore SIGINT,
    which only the worker set-up does: a bare process pool's workers take Ctrl-C themselves)."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        workers = []
        for pid in children(proc.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    spawned = b"spawn_main" in fh.read()
            except OSError:
                continue
            if spawned and ignores_sigint(pid):
                workers.append(pid)
        if len(workers) >= count:
            return workers
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    raise AssertionError(f"no {count} worker processes set up to stop with their parent within {timeout} s")


@pytest.fixture
def repro(tmp_path):
    """Start ``decaylab repro decoupling`` with two workers; whatever the test leaves running is killed after."""
    started = []

    def start_repro(pipes=True):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        output = subprocess.PIPE if pipes else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", "decaylab.cli", *REPRO, "--out", str(tmp_path / "report")],
                                stdout=output, stderr=output, env=env)
        started.append(proc)
        return proc

    yield start_repro
    for proc in started:
        for pid in [*children(proc.pid), proc.pid]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def gone(pids, seconds=5):
    """Whether every process of ``pids`` has ended within ``seconds`` (far less than a map takes)."""
    deadline = time.time() + seconds
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    return not [pid for pid in pids if alive(pid)]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_map_workers_die_with_a_killed_parent(repro):
    proc = repro(pipes=False)
    workers = set_up_workers(proc)                 # each on a map of many seconds
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    survivors = [w for w in workers if not gone([w])]
    for w in survivors:
        os.kill(w, signal.SIGKILL)
    assert not survivors


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_map_workers_with_one_line_and_exit_130(repro, tmp_path):
    proc = repro()
    workers = set_up_workers(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert err.strip() == "decaylab repro: interrupted", err
    assert gone(workers)
    assert not (tmp_path / "report" / "index.html").exists()
