"""Engines that train the pending members of a sweep: ``sequential``, ``batched`` and ``ray``.

Each engine gets the members still missing from the store as ``(key, Member)`` pairs and calls
``on_done([(key, MemberResult), …])`` as members finish — after every member (sequential), after
every chunk of ``chunk_size`` stacked members (batched), or when the Ray Tune run ends (ray, whose
trials write their rows to the store themselves as they finish, so a dead driver loses nothing).

``workers > 1`` (sequential and batched) splits the members into chunks trained by that many
worker processes (:mod:`decaylab._workers`: spawned, each with ``cpu_count // workers`` torch threads,
dying with the sweep, stopped on Ctrl-C), as ``GridSearchCV(n_jobs=…)`` does; the model factory must
then be picklable (a module-level function or class, not a lambda).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from decaylab import _workers
from decaylab._extras import needs
from decaylab._workers import run_in_processes, worker_threads  # noqa: F401 - worker_threads: also the sweeps' name
from decaylab.batched.trainer import (
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


def _in_processes(job: TrainingJob, chunks: Sequence[Sequence], batched: bool, workers: int, on_done: Done) -> None:
    """Train ``chunks`` in ``workers`` worker processes (:func:`decaylab._workers.run_in_processes`: spawned,
    dying with the sweep, stopped on Ctrl-C); ``on_done`` as each chunk finishes, and on Ctrl-C (or any error)
    for every chunk that already finished, so it is stored."""
    try:
        run_in_processes(train_chunk, [(job, list(chunk), batched) for chunk in chunks], workers,
                         lambda _, pairs: on_done(pairs))
    except _workers.WorkerDied as died:
        raise WorkerDied(died.workers, died.finished, died.chunks) from None


class WorkerDied(_workers.WorkerDied):
    """A worker process ended without finishing its chunk (killed for memory, or the calling script re-ran
    its sweep on import because it has no ``if __name__ == "__main__":`` guard, which spawned workers need)."""

    def _message(self) -> str:
        return (f"workers={self.workers}: a worker process died before finishing its members ({self.finished} of "
                f"{self.chunks} chunks finished and were handed on, to the store if one is used); a worker dies "
                f"when it runs out of memory, or when the script that calls decaylab.sweep has no "
                f"`if __name__ == \"__main__\":` guard (spawned workers import it again) — add the guard, lower "
                f"chunk_size, or use workers=1")


def run_sequential(job: TrainingJob, pending: Sequence[tuple[str, Member]], on_done: Done, *,
                   workers: int = 1, **_) -> None:
    """One member at a time with :func:`~decaylab.batched.trainer.train_alone` (any model)."""
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
    with needs("ray", "a Ray Tune trial"):
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
    with needs("ray", "engine='ray' (Ray Tune)"):
        import ray
        from ray import tune
        from ray.util.queue import Queue
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
