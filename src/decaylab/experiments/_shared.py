"""What the built-in studies (the demo, the reproductions) share: scoped torch threads (their figures come
from :mod:`decaylab._figures`)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def intra_op_threads(n: int = 1):
    """Run the block with ``n`` intra-op torch threads, then restore the caller's setting.

    The studies' models are tiny: extra threads only add synchronization, and on a busy machine
    they make each step many times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
