"""What the built-in studies (the demo, the reproductions) share: scoped torch threads (their figures come
from :mod:`decaylab._figures`)."""

from __future__ import annotations

from decaylab._isolation import isolated


def intra_op_threads(n: int = 1):
    """Run the block with ``n`` intra-op torch threads, then restore the caller's setting (and its global
    generator: :func:`decaylab._isolation.isolated`).

    The studies' models are tiny: extra threads only add synchronization, and on a busy machine
    they make each step many times slower.
    """
    return isolated(threads=n)
