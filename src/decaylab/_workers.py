"""Worker processes: the one place decaylab starts processes (the sweeps' workers, the lr × λ maps' workers).

:func:`run_in_processes` calls ``fn(*args)`` for every ``args`` of ``calls`` in ``workers`` spawned processes
(``multiprocessing``'s ``spawn`` context: ``fn`` and its arguments must be picklable, a module-level function,
and the calling script needs an ``if __name__ == "__main__":`` guard) and hands each result to
``on_done(index, result)`` in the parent as it finishes. Each worker:

- has ``threads`` torch threads (default :func:`worker_threads`: ``cpu_count // workers``, at least 1), so
  workers × threads ≤ cores;
- ignores Ctrl-C (SIGINT): the parent stops it after handing on what finished;
- never outlives the parent: on Linux the kernel kills it when the parent dies (``PR_SET_PDEATHSIG``), even
  by SIGKILL; elsewhere (and as a second guard) a watchdog thread exits once the parent is gone.

On Ctrl-C (or any error) in the parent, the calls that already finished are still handed to ``on_done``, the
rest are cancelled and the workers are terminated before the error is re-raised; a worker that died before
finishing its call (killed for memory, a missing main guard) raises :class:`WorkerDied`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["WorkerDied", "run_in_processes", "worker_threads"]


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its call (killed for memory, or the calling script re-ran
    itself on import because it has no ``if __name__ == "__main__":`` guard, which spawned workers need)."""

    def __init__(self, workers: int, finished: int, chunks: int):
        self.workers, self.finished, self.chunks = workers, finished, chunks
        super().__init__(self._message())

    def _message(self) -> str:
        return (f"workers={self.workers}: a worker process died before finishing its work ({self.finished} of "
                f"{self.chunks} jobs finished and were handed on); a worker dies when it runs out of memory, or "
                f"when the calling script has no `if __name__ == \"__main__\":` guard (spawned workers import it "
                f"again) — add the guard, or use workers=1")


def worker_threads(workers: int) -> int:
    """Torch threads of each of ``workers`` worker processes: ``cpu_count // workers``, at least 1."""
    return max(1, (os.cpu_count() or 1) // workers)


def run_in_processes(fn: Callable, calls: Sequence[tuple], workers: int, on_done: Callable[[int, Any], None], *,
                     threads: int | None = None) -> None:
    """``fn(*calls[i])`` for every ``i`` in ``workers`` spawned processes, ``on_done(i, result)`` in the parent
    as each finishes (in the order they finish); see the module docstring for Ctrl-C, errors and dead workers."""
    threads = worker_threads(workers) if threads is None else threads
    context = multiprocessing.get_context("spawn")
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                               initargs=(threads, os.getpid()))
    futures = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
    handed: set = set()
    try:
        for future in as_completed(futures):
            handed.add(future)
            on_done(futures[future], future.result())
    except BaseException as error:
        _quiet_fd_sharer_on_stop()
        for future, i in futures.items():      # hand on what finished while we were stopping
            if future not in handed and future.done() and not future.cancelled() and future.exception() is None:
                handed.add(future)
                on_done(i, future.result())
        pool.shutdown(wait=False, cancel_futures=True)
        for child in set(multiprocessing.active_children()) - before:
            child.terminate()
            child.join(5)
        if isinstance(error, BrokenProcessPool):
            raise WorkerDied(workers, len(handed), len(futures)) from None
        raise
    pool.shutdown(wait=True)


def _worker_init(threads: int, parent_pid: int) -> None:
    """Set up a worker process: Ctrl-C ignored, dying with the parent, its torch threads."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent_pid:           # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    torch.set_num_threads(threads)      # this worker process's own setting: workers × threads ≤ cores


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)         # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):                # no prctl: the watchdog still applies
        pass


def _watch_parent(parent_pid: int, period: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(period)
    os._exit(1)


def _quiet_fd_sharer_on_stop() -> None:
    """After a Ctrl-C the workers are terminated, possibly while one is fetching a tensor's file descriptor
    from the parent (torch's ``file_descriptor`` sharing runs multiprocessing's ``resource_sharer`` thread
    here): that thread then dies with a ConnectionError and would print a traceback under the one-line
    message. Silence exactly that (a ConnectionError in a ``resource_sharer`` thread); anything else still
    goes to the previous hook."""
    previous = threading.excepthook

    def hook(args):
        frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback is not None else []
        if issubclass(args.exc_type, ConnectionError) and any("resource_sharer" in f.filename for f in frames):
            return
        previous(args)

    threading.excepthook = hook
