"""Which engine and chunk size a sweep uses, and one line saying which path the model took and why.

``engine="auto"``: a model the batched trainer cannot take (dropout, recurrent layers) goes to the
sequential engine, with the layer named; a plain MLP takes the batched fast path (batched matmuls,
hand-written backward: always faster); any other model (conv, BatchNorm, embeddings, attention: the
vmap path) is timed both ways in a short probe — ``PROBE_STEPS`` training steps of up to
``PROBE_MEMBERS`` members, stacked and one at a time — and the faster engine per member-step wins.
The batched engine's chunk size comes from :mod:`decaylab.train.chunking` (a stated memory budget).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from decaylab.train.batched import (
    CHECK_ROWS,
    Member,
    TrainConfig,
    _StackedModel,
    check_batchable,
    train_alone,
    train_batched,
)
from decaylab.train.chunking import (
    member_bytes,
    memory_budget,
    optimizer_state_count,
    plan_chunks,
)
from decaylab.train.devices import resolve_device

PROBE_STEPS = 3
PROBE_MEMBERS = 8


@dataclass(frozen=True)
class SweepPlan:
    """The engine to run, the members per batched chunk (``None``: not batched) and the path report."""

    engine: str
    chunk_size: int | None
    report: str


def plan_sweep(model_factory, X: torch.Tensor, y: torch.Tensor, config: TrainConfig, members: Sequence[Member],
               engine: str, chunk_size: int | None, device=None, budget: int | None = None) -> SweepPlan:
    """Resolve ``engine`` (``auto`` → batched or sequential) and the batched chunk size; see the module docstring."""
    device = resolve_device(device)
    torch.manual_seed(0)
    probe = model_factory()
    reason = check_batchable(probe)
    if engine == "sequential":
        return SweepPlan("sequential", None, "sequential: engine='sequential' was asked for")
    if reason is not None:
        if engine == "auto":
            return SweepPlan("sequential", None, f"sequential: {reason}")
        return SweepPlan(engine, chunk_size, f"{engine}: cannot batch this model ({reason})")
    path = _StackedModel(model_factory, members[:2], config, "cpu", sample=X[:CHECK_ROWS]).path
    plan = _chunk_plan(probe, X, config, len(members), chunk_size, device, budget)
    if engine != "auto":
        return SweepPlan(engine, plan.size, f"{engine}, {path} — {plan.describe()}")
    if path.path == "fast":
        return SweepPlan("batched", plan.size, f"auto → batched, {path} — {plan.describe()}")
    stacked, alone = probe_seconds(model_factory, X, y, config, members[:min(plan.size, PROBE_MEMBERS)], device)
    if stacked <= alone:
        return SweepPlan("batched", plan.size, f"auto → batched, {path}; {alone / stacked:.2f}× faster than "
                                               f"sequential in a {PROBE_STEPS}-step probe — {plan.describe()}")
    return SweepPlan("sequential", None, f"auto → sequential: the batched {path.path} path was {stacked / alone:.2f}× "
                                         f"slower than sequential in a {PROBE_STEPS}-step probe")


def _chunk_plan(model, X, config: TrainConfig, n_members: int, chunk_size, device, budget):
    batch = X[:config.batch_size]
    batch = batch.to(config.dtype) if batch.is_floating_point() else batch.long()
    model = model.to(config.dtype)
    per_member = member_bytes(model, batch, optimizer_state_count(config))
    return plan_chunks(n_members, per_member, memory_budget(device) if budget is None else budget, chunk_size)


def probe_seconds(model_factory, X, y, config: TrainConfig, members: Sequence[Member], device) -> tuple[float, float]:
    """Seconds per member of ``PROBE_STEPS`` training steps, stacked and one at a time (each run once
    untimed first, so one-time costs do not decide)."""
    rows = min(len(X), PROBE_STEPS * config.batch_size)
    short = [Member(m.weight_decay, m.lr, m.seed) for m in members]
    probe_config = TrainConfig(**{**config.__dict__, "epochs": 1})
    times = []
    for train in (train_batched, train_alone):
        train(model_factory, X[:rows], y[:rows], short[:1], probe_config, device=device)
        start = time.perf_counter()
        train(model_factory, X[:rows], y[:rows], short, probe_config, device=device)
        times.append(time.perf_counter() - start)
    return times[0], times[1]
