"""Nothing decaylab runs changes the caller's global torch state: the one place that seeds or forks the RNG
and sets the intra-op thread count.

:func:`isolated` is the rule. On entry it saves torch's global CPU generator and the generator of
every CUDA device that is initialized (or named by ``device``, which is initialized first) —
:func:`torch.random.fork_rng` — and the intra-op thread count (:func:`torch.get_num_threads`). Inside,
it seeds those generators with ``seed`` when one is given (the CPU generator exactly as
``torch.manual_seed(seed)`` does, so results are those of seeding globally; a CUDA device that is not
initialized is not touched, so no seed is queued for it either) and sets ``threads`` when given. On exit
— normally or by an exception — the generators' states and the thread count are put back.

Every site that builds a member's model (the factory draws its initial weights from the global
generator), trains with dropout, or times engines on other thread counts runs inside it; random draws
that need no global generator take one of their own from :func:`seeded_generator`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["isolated", "seeded_generator"]


def _cuda_devices(device) -> list[int]:
    """Indices of the CUDA devices whose generators are forked: all, once CUDA is initialized (``device`` on
    CUDA initializes it first); none otherwise."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.init()
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


@contextlib.contextmanager
def isolated(seed: int | None = None, *, threads: int | None = None, device=None) -> Iterator[None]:
    """Run the block on forked global generators (seeded with ``seed`` if given) and with ``threads`` intra-op
    threads (if given); restore the caller's generator states and thread count afterwards (module docstring).
    ``device``: where the block runs (a CUDA device has its generator forked and seeded too)."""
    before = torch.get_num_threads()
    cuda = _cuda_devices(device)
    try:
        with torch.random.fork_rng(devices=cuda):
            if seed is not None:
                torch.default_generator.manual_seed(seed)
                for index in cuda:
                    torch.cuda.default_generators[index].manual_seed(seed)
            if threads is not None:
                torch.set_num_threads(threads)
            yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def seeded_generator(seed: int, device="cpu") -> torch.Generator:
    """A generator of its own (on ``device``) seeded with ``seed``: a member's batch order, a probe's batches."""
    return torch.Generator(device=device).manual_seed(seed)
