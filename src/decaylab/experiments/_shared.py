"""What the built-in studies (the demo, the reproductions) share: figures as PNG bytes and scoped torch threads."""

from __future__ import annotations

import io

from decaylab._extras import needs
from decaylab._isolation import isolated


def new_figure(width: float, height: float, **subplots):
    """A matplotlib figure with Agg-only rendering (no pyplot, no global state) and its axes."""
    with needs("report", "plotting"):
        from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(**subplots) if subplots else fig.subplots()
    return fig, axes


def fig_to_png(fig) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def intra_op_threads(n: int = 1):
    """Run the block with ``n`` intra-op torch threads, then restore the caller's setting (and its global
    generator: :func:`decaylab._isolation.isolated`).

    The studies' models are tiny: extra threads only add synchronization, and on a busy machine
    they make each step many times slower.
    """
    return isolated(threads=n)
