"""Plain-text tables for the terminal: a list of row dicts as aligned columns."""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

from decaylab.report.html import format_number


def _text(value: Any) -> str:
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        value = value.item()
    if value is None:
        return "-"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return format_number(value)
    return str(value)


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a fixed-width table: a header, a rule, one line per row; numbers right-aligned.

    ``columns`` defaults to every key that appears, in order of first appearance; a row
    without a column shows ``-``.
    """
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{i}] must be a dict, got {type(row).__name__}")
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), numbers.Real) and not isinstance(row.get(c), bool)
                   for row in rows if row.get(c) is not None) for c in columns]
    widths = [max([len(str(c))] + [len(line[j]) for line in cells]) for j, c in enumerate(columns)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line([str(c) for c in columns]), "  ".join("-" * w for w in widths)]
    out.extend(line(values) for values in cells)
    return "\n".join(out)
