"""The machine-readable twin of a report: ``summary.json``.

It holds the study's own summary dict unchanged in meaning, plus a ``"report"`` entry that
lists, section by section, every text, caption, slider value and table cell the HTML page
shows, so that every number a reader sees can be checked or reused without scraping HTML.

Conversion to JSON (:func:`to_jsonable`): numpy and torch scalars become Python numbers,
arrays and tensors nested lists, tuples lists, paths strings; NaN and ±inf become ``null``
(strict JSON has no such values); dict keys must be strings (ints and floats are turned into
strings, as :mod:`json` does). Anything else is a ``TypeError`` naming where it sits.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from decaylab import __version__
from decaylab._checks import InputError, InputTypeError
from decaylab.report.model import Section


def to_jsonable(value: Any, where: str = "summary") -> Any:
    """Return ``value`` as plain JSON types (see the module docstring for the rules)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays/scalars, torch tensors
        return to_jsonable(value.tolist(), where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, numbers.Real)):
                raise InputTypeError(f"{where} keys must be strings or numbers, got {key!r} ({type(key).__name__})")
            out[str(key)] = to_jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise InputTypeError(f"{where} must hold only numbers, strings, bools, None, lists and dicts, "
                    f"got {type(value).__name__}: {value!r:.80}")


def report_outline(title: str, sections: Sequence[Section], intro: str = "") -> dict:
    """What the HTML page shows, as data: titles, texts, captions, slider values and table cells."""
    outline = []
    for section in sections:
        entry: dict[str, Any] = {
            "key": section.key,
            "title": section.title,
            "text": section.text,
            "figures": [{"name": f.name, "caption": f.caption} for f in section.figures],
            "tables": [{"caption": t.caption, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
                       for t in section.tables],
        }
        if section.slider is not None:
            slider = section.slider
            entry["slider"] = {"label": slider.label, "values": list(slider.values),
                               "frames": [f.name for f in slider.frames],
                               "captions": list(slider.captions) or [f.caption for f in slider.frames]}
        outline.append(entry)
    return {"title": title, "intro": intro, "decaylab_version": __version__, "sections": outline}


def build_summary(title: str, sections: Sequence[Section], summary: Mapping, intro: str = "") -> dict:
    """The dict written to ``summary.json``: ``summary`` plus the ``"report"`` outline."""
    if not isinstance(summary, Mapping):
        raise InputTypeError(f"summary must be a dict, got {type(summary).__name__}")
    if "report" in summary:
        raise InputError("summary must not have a 'report' key (write_report adds it: the page outline), "
                         f"got keys {sorted(map(str, summary))}")
    out = to_jsonable(summary)
    out["report"] = to_jsonable(report_outline(title, sections, intro), "report")
    return out
