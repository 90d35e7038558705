"""Figures: the one place decaylab creates a matplotlib figure and renders it to PNG.

Every figure is a ``matplotlib.figure.Figure`` object, never made through pyplot: it draws on its own Agg
canvas, belongs to no pyplot figure manager and leaves the user's backend (``matplotlib.get_backend()``) and
their open figures (``matplotlib.pyplot.get_fignums()``) as they were — a notebook keeps its inline or widget
backend — and it is freed like any other object once nothing refers to it. Shown in a notebook, a returned
``Figure`` displays itself; ``fig.savefig(path)`` writes it like any matplotlib figure.
"""

from __future__ import annotations

import io

from decaylab._extras import needs

__all__ = ["fig_to_png", "new_figure"]


def new_figure(width: float, height: float, *, extra: str = "report", feature: str = "plotting",
               dpi: float | None = 100, layout: str | None = "constrained", **subplots):
    """``(figure, axes)``: a ``Figure`` of ``width`` × ``height`` inches (``dpi``: ``None`` for matplotlib's
    default; ``layout``: ``"constrained"``, or ``None`` for none, e.g. to call ``tight_layout`` later) and its
    axes from ``figure.subplots(**subplots)``. A missing matplotlib raises ``MissingExtra`` naming ``feature``
    and the extra ``extra`` that brings it."""
    with needs(extra, feature):
        from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    return fig, fig.subplots(**subplots)


def fig_to_png(fig) -> bytes:
    """The figure rendered as PNG bytes (written to files by the caller, e.g. with
    :func:`decaylab._files.replace_atomically`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
