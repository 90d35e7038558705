"""Which engine and chunk size a sweep uses, and one line saying which path the model took and why.

``engine="auto"``: a model the batched trainer cannot take (dropout, recurrent layers) goes to the
sequential engine, with the layer named; a plain MLP takes the batched fast path (batched matmuls,
hand-written backward: always faster). Any other model (the folded or vmap path) is timed both ways
(:func:`probe_times`): training steps on random batches of ``batch_size`` rows, the batched engine at the
real chunk size, the sequential engine's own step (:func:`decaylab.batched.alone.alone_step`) on one member,
each after a warm-up step, ``PROBE_REPEATS`` timings of at least ``PROBE_MIN_SECONDS`` each. The decision
(:func:`choose_engine`) compares the medians as seconds per member-step (per-sample throughput: both
engines' steps have ``batch_size`` rows per member) and prefers the sequential engine — any model, one
thing at a time — unless the batched one is at least ``PROBE_MARGIN`` times faster.
The batched engine's chunk size comes from :mod:`decaylab.batched.chunking` (a stated memory budget).
With ``workers`` processes, each has its share of the budget and of the members, and the probe runs on
the torch threads one worker will have.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from decaylab._isolation import isolated, seeded_generator
from decaylab.batched.chunking import plan_for_model
from decaylab.batched.members import _as_tensors
from decaylab.batched.standardization import MemberFeatures
from decaylab.batched.trainer import (
    CHECK_ROWS,
    Member,
    TrainConfig,
    _StackedModel,
    check_batchable,
)
from decaylab.train.devices import resolve_device

PROBE_REPEATS = 3          # timings per engine; the median decides
PROBE_MIN_SECONDS = 0.05   # each timing runs whole steps until at least this long
PROBE_MARGIN = 1.1         # the batched engine must be this many times faster to be picked


@dataclass(frozen=True)
class ProbeTimes:
    """Seconds per member-step of each engine, one entry per timing (:func:`probe_times`), and the chunk size."""

    batched: tuple[float, ...]
    sequential: tuple[float, ...]
    members: int


def choose_engine(times: ProbeTimes, margin: float = PROBE_MARGIN) -> tuple[str, str]:
    """``("batched" or "sequential", why)``: batched only if its median seconds per member-step is at least
    ``margin`` times below the sequential engine's."""
    batched, sequential = statistics.median(times.batched), statistics.median(times.sequential)
    speedup = sequential / batched
    how = (f"median of {len(times.batched)} timings after a warm-up, {times.members} members "
           f"stacked vs one at a time")
    if speedup >= margin:
        return "batched", f"{speedup:.2f}× the sequential engine's throughput ({how})"
    return "sequential", (f"the batched engine's throughput was {speedup:.2f}× the sequential engine's, "
                          f"below the {margin:g}× it needs ({how})")


@dataclass(frozen=True)
class SweepPlan:
    """The engine to run, the members per batched chunk (``None``: not batched) and the path report."""

    engine: str
    chunk_size: int | None
    report: str


def plan_sweep(model_factory, X: torch.Tensor, y: torch.Tensor, config: TrainConfig, members: Sequence[Member],
               engine: str, chunk_size: int | None, device=None, budget: int | None = None,
               workers: int = 1) -> SweepPlan:
    """Resolve ``engine`` (``auto`` → batched or sequential) and the batched chunk size (each of ``workers``
    processes with its share of the budget and of the members); see the module docstring."""
    device = resolve_device(device)
    with isolated(0):
        probe = model_factory()
    reason = check_batchable(probe)
    if engine == "sequential":
        return SweepPlan("sequential", None, "sequential: engine='sequential' was asked for")
    if reason is not None:
        if engine == "auto":
            return SweepPlan("sequential", None, f"sequential: {reason}")
        return SweepPlan(engine, chunk_size, f"{engine}: cannot batch this model ({reason})")
    if config.standardize:               # the features as the members see them (member 0's standardization)
        X = MemberFeatures(X, members[:1], config).X
    sample, _ = _as_tensors(X[:CHECK_ROWS], y[:CHECK_ROWS], config, "cpu")
    path = _StackedModel(model_factory, members[:2], config, "cpu", sample=sample).path
    plan = plan_for_model(probe, X, config, len(members), chunk_size, device, budget, workers)
    if engine != "auto":
        return SweepPlan(engine, plan.size, f"{engine}, {path} — {plan.describe()}")
    if path.path == "fast":
        return SweepPlan("batched", plan.size, f"auto → batched, {path} — {plan.describe()}")
    from decaylab._workers import worker_threads

    # timed on the torch threads one of the worker processes will have (the caller's setting is restored)
    with isolated(threads=worker_threads(workers) if workers > 1 else None):
        times = probe_times(model_factory, X, y, config, members[:plan.size], device)
    engine, why = choose_engine(times)
    if engine == "batched":
        return SweepPlan("batched", plan.size, f"auto → batched, {path}; {why} — {plan.describe()}")
    return SweepPlan("sequential", None, f"auto → sequential ({path.path} path): {why}")




def probe_times(model_factory, X, y, config: TrainConfig, members: Sequence[Member], device) -> ProbeTimes:
    """Seconds per member-step of the batched engine (all ``members`` stacked: the real chunk) and of the
    sequential engine (member 0 alone), on random batches of ``config.batch_size`` rows; see the module docstring."""
    from decaylab.batched.alone import alone_step, member_optimizer
    from decaylab.train.divergence import runaway_limit

    X, y = _as_tensors(X, y, config, device)
    gen = seeded_generator(0)
    batched_step = stacked_step(model_factory, X, y, config, members, device, gen)
    with isolated(members[0].seed):
        model = model_factory().to(config.dtype).to(device)
    alone_optimizer, _ = member_optimizer(model, members[0], config)
    limit = runaway_limit(config.loss, y)

    def sequential_step():
        rows = torch.randint(0, len(X), (config.batch_size,), generator=gen).to(device)
        alone_step(model, alone_optimizer, X[rows], y[rows], config.loss, limit)

    G = len(members)
    return ProbeTimes(tuple(t / G for t in _step_timings(batched_step)), tuple(_step_timings(sequential_step)), G)


def stacked_step(model_factory, X: torch.Tensor, y: torch.Tensor, config: TrainConfig, members: Sequence[Member],
                 device, generator: torch.Generator | None = None) -> Callable[[], None]:
    """One training step of the batched engine with ``members`` stacked, on a random batch of
    ``config.batch_size`` rows per member (``X``, ``y``: tensors on ``device``), as a closure to time or
    profile."""
    from decaylab.batched.trainer import _BatchedOptimizer, _losses_and_grads, _StackedModel

    G, B = len(members), config.batch_size
    stacked = _StackedModel(model_factory, members, config, device, sample=X[:CHECK_ROWS])
    optimizer = _BatchedOptimizer(stacked, members, config, torch.full((G,), 1 << 20))
    weight = torch.full((G, B), 1.0 / B, dtype=config.dtype, device=device)
    active = torch.ones(G, dtype=torch.bool)

    def step():
        idx = torch.randint(0, len(X), (G, B), generator=generator).to(device)
        optimizer.step(_losses_and_grads(stacked, X, y, idx, weight, config.loss)[1], active)

    return step


def _step_timings(step) -> list[float]:
    """``PROBE_REPEATS`` timings of ``step`` in seconds per step, after one untimed warm-up step; each timing
    runs as many steps as make it last ``PROBE_MIN_SECONDS`` (judged from the warm-up), at least one."""
    start = time.perf_counter()
    step()
    steps = max(1, min(100, math.ceil(PROBE_MIN_SECONDS / max(time.perf_counter() - start, 1e-6))))
    timings = []
    for _ in range(PROBE_REPEATS):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        timings.append((time.perf_counter() - start) / steps)
    return timings
