"""What a report is made of: sections of text, figures, tables and λ sliders.

Studies (the demo, sweeps, reproductions) build these plain objects; :mod:`decaylab.report`
renders them into one static, offline ``index.html``. Nothing here knows about HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """One image: PNG bytes (from matplotlib) with a short caption."""

    name: str            # a file-name-safe identifier, unique within the report
    png: bytes
    caption: str = ""


@dataclass
class Slider:
    """Frames over a parameter (usually λ): the page shows one frame and a range input scrubs them."""

    label: str                     # e.g. "λ (weight_decay)"
    values: Sequence[float]        # one value per frame, in slider order
    frames: Sequence[Figure]       # same length as values
    captions: Sequence[str] = ()   # optional per-frame caption (e.g. "test acc 0.87, ‖w‖ 3.2")


@dataclass
class Table:
    """A small table: column names and rows of already formatted or numeric cells."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""


@dataclass
class Section:
    """One section of the report: a title, a plain-language paragraph, and what it shows."""

    key: str                       # identifier, used as the HTML id and in summary.json
    title: str
    text: str                      # one paragraph written from the measured numbers
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    slider: Slider | None = None
