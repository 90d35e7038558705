"""What the demo's studies share: the study result type and small numeric and label helpers."""

from __future__ import annotations

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
    def with_headline(cls, section: Section, summary: dict, study: str, headline: str) -> StudyResult:
        """A result whose terminal table gets the one row ``{"study": study, "result": headline}``."""
        return cls(section, summary, [{"study": study, "result": headline}])


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
