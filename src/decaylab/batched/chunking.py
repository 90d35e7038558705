"""How many members one batched chunk stacks: each member's memory, measured, against a stated budget.

A member's bytes (:func:`member_bytes`) = its parameters × (1 + 1 gradient + the optimizer's S state
tensors: 2 for Adam, 3 with AMSGrad, 1 for SGD with momentum, 0 without, 1 for Lion, 2 for Muon — its
matrices hold 1, the AdamW companion's parameters 2: the larger is counted) + its parameters × (1 + S)
again (the copy of parameters and state the trainer keeps at a step where some members are idle) +
``UPDATE_TEMPORARIES`` × its largest parameter tensor (the update's temporaries) + its buffers + the
activations autograd saves for one training batch of ``batch_size`` rows (measured on one copy with
``torch.autograd.graph.saved_tensors_hooks``, each storage counted once) + that batch's output.
``benchmarks/chunk_memory.py`` measures a chunk's peak resident memory against this estimate.
The budget (:func:`memory_budget`, unless given): on CUDA 80% of the device's free memory; on the CPU
a quarter of the available memory (``/proc/meminfo``'s MemAvailable), at most 4 GiB.
A chunk holds ``⌊budget / member bytes⌋`` members (at least 1); a requested ``chunk_size`` that would
not fit is split into chunks that do (:func:`plan_chunks`), never run into an out-of-memory error.
:func:`plan_for_model` measures a model on its first training batch and plans: the one chunk plan of the
sweeps and the lr × λ maps.
With ``workers`` processes training chunks at once, each gets ``budget / workers`` and the members are
shared out: a chunk holds at most ``⌈members / workers⌉``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CPU_BUDGET_CAP = 4 << 30
UPDATE_TEMPORARIES = 4     # tensors of one stacked tensor's size an update step allocates (Adam: g + λw, √v, …)
CPU_BUDGET_FRACTION = 0.25
CUDA_BUDGET_FRACTION = 0.8


@dataclass(frozen=True)
class ChunkPlan:
    """Members per chunk, how many chunks, and what that was computed from."""

    size: int
    chunks: int
    member_bytes: int
    budget: int
    requested: int | None = None      # the chunk_size asked for, if any
    workers: int = 1                  # processes training chunks at once, ``budget`` is each one's

    @property
    def split(self) -> bool:
        """Whether a requested chunk size was cut down to fit the budget."""
        return self.requested is not None and self.size < self.requested

    def describe(self) -> str:
        budget = _mib(self.budget) + (f" per worker, {self.workers} worker processes" if self.workers > 1 else "")
        text = (f"{self.chunks} chunk{'s' if self.chunks != 1 else ''} of ≤ {self.size} members "
                f"(≈ {_mib(self.member_bytes)} each, budget {budget})")
        if self.split:
            text += f"; chunk_size={self.requested} would not fit and was split"
        return text


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def memory_budget(device: torch.device) -> int:
    """Bytes one chunk may use on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(CUDA_BUDGET_FRACTION * free)
    available = _available_host_memory()
    return int(min(CPU_BUDGET_CAP, CPU_BUDGET_FRACTION * available)) if available else CPU_BUDGET_CAP


def _available_host_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def member_bytes(model: torch.nn.Module, x_batch: torch.Tensor, optimizer_states: int) -> int:
    """Bytes one member needs in a chunk: state (parameters, gradients, optimizer, buffers) and the
    activations saved by one forward/backward on ``x_batch`` (a training batch of one member)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    largest = max((p.numel() * p.element_size() for p in model.parameters()), default=0)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x_batch)
    activations = sum(seen.values()) + out.numel() * out.element_size()
    # parameters, gradients and optimizer state; the copy of parameters and state kept for idle members
    # (a step where some members' epoch is over); the update's temporaries, UPDATE_TEMPORARIES of the
    # largest tensor
    held = params * (2 + optimizer_states) + params * (1 + optimizer_states)
    return held + UPDATE_TEMPORARIES * largest + buffers + activations


def optimizer_state_count(config) -> int:
    """State tensors per parameter of ``config``'s optimizer (a :class:`~decaylab.batched.trainer.TrainConfig`)."""
    spec = config.optimizer
    if spec.is_adam:
        return 3 if spec.amsgrad else 2
    return {"muon": 2, "lion": 1}.get(spec.name, 1 if spec.momentum else 0)


def plan_chunks(n_members: int, per_member: int, budget: int, chunk_size: int | None = None,
                workers: int = 1) -> ChunkPlan:
    """Members per chunk: ``chunk_size`` if given and it fits, else as many as fit in ``budget``; with
    ``workers`` processes, each has ``budget // workers`` and at most ``⌈n_members / workers⌉`` members."""
    each = budget // workers
    fit = max(1, each // max(1, per_member))
    size = min(-(-n_members // workers), fit if chunk_size is None else min(chunk_size, fit))
    return ChunkPlan(size, -(-n_members // size), per_member, each, chunk_size, workers)


def plan_for_model(model: torch.nn.Module, X, config, n_members: int, chunk_size: int | None = None, device=None,
                   budget: int | None = None, workers: int = 1) -> ChunkPlan:
    """The chunk plan of ``n_members`` copies of ``model`` (a fresh copy, moved to ``config.dtype`` here)
    trained with ``config`` on ``X`` (its first ``config.batch_size`` rows are the measured batch: floats in
    ``config.dtype``, anything else as token ids): :func:`member_bytes` against :func:`memory_budget` of
    ``device`` (``None``: CUDA when available, else the CPU) or ``budget``, then :func:`plan_chunks`."""
    from decaylab.train.devices import resolve_device

    batch = torch.as_tensor(X[:config.batch_size])
    batch = batch.to(config.dtype) if batch.is_floating_point() else batch.long()
    per_member = member_bytes(model.to(config.dtype), batch, optimizer_state_count(config))
    if budget is None:
        budget = memory_budget(resolve_device(device))
    return plan_chunks(n_members, per_member, budget, chunk_size, workers)
