"""What the demo's studies share: the study result type, figures as PNG bytes, and small helpers."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import torch

from decaylab.report.model import Section


@dataclass
class StudyResult:
    """One study's report section, its numbers (JSON-able) and its lines for the terminal table."""

    section: Section
    summary: dict
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def with_headline(cls, section: Section, summary: dict, study: str, headline: str) -> "StudyResult":
        """A result whose terminal table gets the one row ``{"study": study, "result": headline}``."""
        return cls(section, summary, [{"study": study, "result": headline}])


def new_figure(width: float, height: float, **subplots):
    """A matplotlib figure with Agg-only rendering (no pyplot, no global state) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(**subplots) if subplots else fig.subplots()
    return fig, axes


def fig_to_png(fig) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@contextlib.contextmanager
def intra_op_threads(n: int = 1):
    """Run the block with ``n`` intra-op torch threads, then restore the caller's setting.

    The demo's models are tiny: extra threads only add synchronization, and on a busy machine
    they make each step many times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max output is the label (model in eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(X).argmax(dim=1) == y).double().mean())
    model.train(was_training)
    return acc


def lam_label(lam: float) -> str:
    """λ as a short label with 3 significant digits: ``0``, ``0.00316``, ``1e-05``, ``30``."""
    return f"{lam:.3g}"


def is_monotone(values, *, decreasing: bool, tol: float = 0.0) -> bool:
    """Whether ``values`` never go the wrong way by more than ``tol``."""
    sign = -1.0 if decreasing else 1.0
    return all(sign * (b - a) >= -tol for a, b in zip(values, values[1:]))


def as_floats(values, digits: int = 6) -> list[float]:
    """Plain floats rounded to ``digits`` significant digits (for summary.json)."""
    return [float(f"{float(v):.{digits}g}") for v in values]
