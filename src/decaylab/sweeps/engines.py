"""Engines that train the pending members of a sweep: ``sequential``, ``batched`` and ``ray``.

Each engine gets the members still missing from the store as ``(key, Member)`` pairs and calls
``on_done([(key, MemberResult), …])`` as members finish — after every member (sequential), after
every chunk of ``chunk_size`` stacked members (batched), or when the Ray Tune run ends (ray, whose
trials write their rows to the store themselves as they finish, so a dead driver loses nothing).

``workers > 1`` (sequential and batched) splits the members into chunks trained by that many
worker processes (spawned, each with ``cpu_count // workers`` torch threads), as
``GridSearchCV(n_jobs=…)`` does; the model factory must then be picklable (a module-level
function or class, not a lambda).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from decaylab._extras import MissingExtra
from decaylab.train.batched import (
    Member,
    MemberResult,
    TrainConfig,
    train_alone,
    train_batched,
)

Done = Callable[[list[tuple[str, MemberResult]]], None]


@dataclass
class TrainingJob:
    """Everything the members of one sweep share."""

    model_factory: Callable
    X: object
    y: object
    config: TrainConfig
    eval_sets: Mapping[str, tuple] | None = None
    device: object = None                  # None: CUDA when available, else the CPU


def _chunks(pending: Sequence, size: int | None) -> list[Sequence]:
    size = len(pending) if not size else size
    return [pending[i:i + size] for i in range(0, len(pending), size)]


def train_chunk(job: TrainingJob, chunk: Sequence[tuple[str, Member]], batched: bool,
                on_member_end: Callable | None = None) -> list[tuple[str, MemberResult]]:
    """Train one chunk of members (stacked, or one at a time) and pair each result with its key."""
    members = [m for _, m in chunk]
    if batched:
        results = train_batched(job.model_factory, job.X, job.y, members, job.config, eval_sets=job.eval_sets,
                                device=job.device)
    else:
        results = train_alone(job.model_factory, job.X, job.y, members, job.config, eval_sets=job.eval_sets,
                              on_member_end=on_member_end, device=job.device)
    return [(k, r) for (k, _), r in zip(chunk, results)]


def _worker_init(threads: int, parent_pid: int) -> None:
    """Set up a worker process: its torch threads, and never outliving the sweep's process.

    Ctrl-C is ignored here (the parent stops the workers after storing what finished). On Linux
    the kernel kills the worker when the parent dies (``PR_SET_PDEATHSIG``), even by SIGKILL;
    elsewhere (and as a second guard) a watchdog thread exits once the parent is gone.
    """
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


def worker_threads(workers: int) -> int:
    """Torch threads of each of ``workers`` worker processes: ``cpu_count // workers``, at least 1."""
    return max(1, (os.cpu_count() or 1) // workers)


def _in_processes(job: TrainingJob, chunks: Sequence[Sequence], batched: bool, workers: int, on_done: Done) -> None:
    """Train ``chunks`` in ``workers`` spawned processes; ``on_done`` as each chunk finishes.

    On Ctrl-C (or any error) the chunks that already finished are still handed to ``on_done``
    (so they are stored), the rest are cancelled and the workers are stopped before re-raising.
    """
    threads = worker_threads(workers)
    context = multiprocessing.get_context("spawn")
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                               initargs=(threads, os.getpid()))
    futures = [pool.submit(train_chunk, job, list(chunk), batched) for chunk in chunks]
    handed: set = set()
    try:
        for future in as_completed(futures):
            handed.add(future)
            on_done(future.result())
    except BaseException as error:
        _quiet_fd_sharer_on_stop()
        for future in futures:                # store what finished while we were stopping
            if future not in handed and future.done() and not future.cancelled() and future.exception() is None:
                handed.add(future)
                on_done(future.result())
        pool.shutdown(wait=False, cancel_futures=True)
        for child in set(multiprocessing.active_children()) - before:
            child.terminate()
            child.join(5)
        if isinstance(error, BrokenProcessPool):
            raise WorkerDied(workers, len(handed), len(futures)) from None
        raise
    pool.shutdown(wait=True)


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its chunk (killed for memory, or the calling script re-ran
    its sweep on import because it has no ``if __name__ == "__main__":`` guard, which spawned workers need)."""

    def __init__(self, workers: int, finished: int, chunks: int):
        self.workers, self.finished, self.chunks = workers, finished, chunks
        super().__init__(
            f"workers={workers}: a worker process died before finishing its members ({finished} of {chunks} chunks "
            f"finished and were handed on, to the store if one is used); a worker dies when it runs out of memory, "
            f"or when the script that calls decaylab.sweep has no `if __name__ == \"__main__\":` guard (spawned "
            f"workers import it again) — add the guard, lower chunk_size, or use workers=1")


def run_sequential(job: TrainingJob, pending: Sequence[tuple[str, Member]], on_done: Done, *,
                   workers: int = 1, **_) -> None:
    """One member at a time with :func:`~decaylab.train.batched.train_alone` (any model)."""
    if workers > 1:
        _in_processes(job, _chunks(pending, -(-len(pending) // (4 * workers))), False, workers, on_done)
        return
    keys = [k for k, _ in pending]
    train_alone(job.model_factory, job.X, job.y, [m for _, m in pending], job.config, eval_sets=job.eval_sets,
                on_member_end=lambda i, result: on_done([(keys[i], result)]), device=job.device)


def run_batched(job: TrainingJob, pending: Sequence[tuple[str, Member]], on_done: Done, *,
                chunk_size: int | None = None, workers: int = 1, **_) -> None:
    """Chunks of ``chunk_size`` members (default: all, or an equal share per worker) with :func:`train_batched`."""
    if workers > 1:
        _in_processes(job, _chunks(pending, chunk_size or -(-len(pending) // workers)), True, workers, on_done)
        return
    for chunk in _chunks(pending, chunk_size):
        on_done(train_chunk(job, chunk, batched=True))


def _ray_chunk(job: TrainingJob, chunk, batched: bool, store_path: str | None, rows_of: Callable | None):
    """A Ray task: train one chunk, write its rows to the store (if any), return the results."""
    pairs = train_chunk(job, chunk, batched)
    if store_path is not None and rows_of is not None:
        from decaylab.sweeps.store import ResultStore

        with ResultStore(store_path) as store:
            store.put_many(rows_of(pairs))
    return pairs


def _tune_trial(config: dict, job: TrainingJob, chunks: list, batched: bool, store_path: str | None,
                rows_of: Callable | None, results) -> None:
    """A Ray Tune trial: train chunk ``config["chunk"]``, store its rows, hand the results back."""
    from ray import tune

    pairs = _ray_chunk(job, chunks[config["chunk"]], batched, store_path, rows_of)
    results.put(pairs)
    tune.report({"members": len(pairs)})


def run_ray(job: TrainingJob, pending: Sequence[tuple[str, Member]], on_done: Done, *,
            chunk_size: int | None = None, batched: bool = True, store_path: str | None = None,
            rows_of: Callable | None = None, **_) -> None:
    """Ray Tune: one trial per chunk (batched chunks, or single members when ``batched=False``).

    Connects to a running Ray (``ray.init()`` done by the caller, e.g. ``address="auto"``) or
    starts a local one, then runs a ``tune.Tuner`` whose grid is the chunk index, one CPU per
    trial. Each trial writes its rows to the SQLite store at ``store_path`` itself as it
    finishes (the store's transactions make concurrent writers safe; a killed driver loses no
    finished chunk) and puts its results on a Ray queue that the driver drains.
    """
    try:
        import ray
        from ray import tune
        from ray.util.queue import Queue
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise MissingExtra("engine='ray' needs Ray Tune: pip install 'decaylab[ray]'") from exc
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    if chunk_size is None:
        workers = max(1, int(ray.available_resources().get("CPU", 1)))
        chunk_size = -(-len(pending) // workers) if batched else 1
    chunks = [list(chunk) for chunk in _chunks(list(pending), chunk_size)]
    store_path = None if store_path is None else os.path.abspath(store_path)
    results = Queue()
    trial = tune.with_parameters(_tune_trial, job=job, chunks=chunks, batched=batched,
                                 store_path=store_path, rows_of=rows_of, results=results)
    with tempfile.TemporaryDirectory(prefix="decaylab-tune-") as storage:
        tuner = tune.Tuner(tune.with_resources(trial, {"cpu": 1}),
                           param_space={"chunk": tune.grid_search(list(range(len(chunks))))},
                           run_config=tune.RunConfig(name="decaylab-sweep", storage_path=storage,
                                                     verbose=0))
        grid = tuner.fit()
    try:
        finished = [results.get() for _ in range(results.qsize())]
    finally:
        results.shutdown()
    for pairs in finished:
        on_done(pairs)
    if grid.errors:
        raise RuntimeError(f"engine='ray': {len(grid.errors)} of {len(chunks)} Tune trials failed; "
                           f"first error: {grid.errors[0]}")


RUNNERS = {"sequential": run_sequential, "batched": run_batched, "ray": run_ray}
