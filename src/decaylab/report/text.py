"""Plain-text tables for the terminal: a list of row dicts as aligned columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from decaylab._checks import InputTypeError
from decaylab.report.html import format_cell


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a fixed-width table: a header, a rule, one line per row; numbers right-aligned.

    ``columns`` defaults to every key that appears, in order of first appearance; a row
    without a column (or with ``None``) shows ``-``. Numbers use 4 significant digits.
    """
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise InputTypeError(f"rows must be a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputTypeError(f"rows[{i}] must be a dict, got {type(row).__name__}")
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[format_cell(row.get(column), missing="-") for column in columns] for row in rows]
    numeric = [all(line[j][1] for line in cells) for j in range(len(columns))]
    widths = [max([len(str(c))] + [len(line[j][0]) for line in cells]) for j, c in enumerate(columns)]

    def line(texts):
        return "  ".join(t.rjust(w) if num else t.ljust(w) for t, w, num in zip(texts, widths, numeric)).rstrip()

    out = [line([str(c) for c in columns]), "  ".join("-" * w for w in widths)]
    out.extend(line([text for text, _ in cells_of_row]) for cells_of_row in cells)
    return "\n".join(out)
