"""Checks that report building blocks are well formed before anything is rendered.

Every error names where the bad value sits (``sections[2].slider.frames``), the value, and
what is allowed, so that a study author sees at once which object to fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from decaylab._checks import InputError, InputTypeError, check_real
from decaylab.report.model import Figure, Section, Slider, Table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def check_identifier(where: str, value: Any) -> str:
    """A section key or figure name: letters, digits, ``_ . -``, starting with a letter or digit."""
    if not isinstance(value, str):
        raise InputTypeError(f"{where} must be a str, got {value!r} ({type(value).__name__})")
    if not IDENTIFIER.match(value):
        raise InputError(f"{where} must be letters, digits, '_', '.' or '-' (starting with a letter "
                         f"or digit), got {value!r}")
    return value


def check_text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{where} must be a str, got {value!r} ({type(value).__name__})")
    return value


def _check_instance(where: str, value: Any, cls: type) -> None:
    if not isinstance(value, cls):
        raise InputTypeError(f"{where} must be a decaylab.report.model.{cls.__name__}, got {type(value).__name__}")


def _check_unique_identifier(where: str, value: Any, seen: set[str]) -> None:
    """An identifier not seen before in the report (section keys and figure names become HTML ids)."""
    check_identifier(where, value)
    if value in seen:
        raise InputError(f"{where} must be unique within the report, got {value!r} twice")
    seen.add(value)


def _check_figure(where: str, figure: Any, names: set[str]) -> None:
    _check_instance(where, figure, Figure)
    _check_unique_identifier(f"{where}.name", figure.name, names)
    if not isinstance(figure.png, (bytes, bytearray)) or not bytes(figure.png[:8]) == PNG_SIGNATURE:
        got = type(figure.png).__name__ if not isinstance(figure.png, (bytes, bytearray)) else \
            f"bytes starting {bytes(figure.png[:8])!r}"
        raise InputError(f"{where}.png must be PNG image bytes (e.g. from matplotlib savefig(format='png')), "
                         f"got {got}")
    check_text(f"{where}.caption", figure.caption)


def _check_table(where: str, table: Any) -> None:
    _check_instance(where, table, Table)
    columns = list(table.columns)
    for j, column in enumerate(columns):
        check_text(f"{where}.columns[{j}]", column)
    for i, row in enumerate(table.rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise InputTypeError(f"{where}.rows[{i}] must be a sequence of cells, got {type(row).__name__}")
        if len(row) != len(columns):
            raise InputError(f"{where}.rows[{i}] must have {len(columns)} cells (one per column), got {len(row)}")
    check_text(f"{where}.caption", table.caption)


def _check_slider(where: str, slider: Any, names: set[str]) -> None:
    if not isinstance(slider, Slider):
        raise InputTypeError(f"{where} must be a decaylab.report.model.Slider or None, got {type(slider).__name__}")
    check_text(f"{where}.label", slider.label)
    values, frames, captions = list(slider.values), list(slider.frames), list(slider.captions)
    if not frames:
        raise InputError(f"{where}.frames must hold at least one Figure, got 0")
    if len(values) != len(frames):
        raise InputError(f"{where}.values must have one value per frame ({len(frames)}), got {len(values)}")
    if captions and len(captions) != len(frames):
        raise InputError(f"{where}.captions must be empty or one per frame ({len(frames)}), got {len(captions)}")
    for i, value in enumerate(values):
        check_real(f"{where}.values[{i}]", value)
    for i, frame in enumerate(frames):
        _check_figure(f"{where}.frames[{i}]", frame, names)
    for i, caption in enumerate(captions):
        check_text(f"{where}.captions[{i}]", caption)


def check_sections(sections: Any) -> list[Section]:
    """Return ``sections`` as a list after checking every section, figure, table and slider in it."""
    if isinstance(sections, (str, bytes, Section)) or not isinstance(sections, Sequence):
        raise InputTypeError(f"sections must be a list of decaylab.report.model.Section, got {type(sections).__name__}")
    keys: set[str] = set()
    names: set[str] = set()
    for s, section in enumerate(sections):
        where = f"sections[{s}]"
        _check_instance(where, section, Section)
        _check_unique_identifier(f"{where}.key", section.key, keys)
        check_text(f"{where}.title", section.title)
        check_text(f"{where}.text", section.text)
        for i, figure in enumerate(section.figures):
            _check_figure(f"{where}.figures[{i}]", figure, names)
        for i, table in enumerate(section.tables):
            _check_table(f"{where}.tables[{i}]", table)
        if section.slider is not None:
            _check_slider(f"{where}.slider", section.slider, names)
    return list(sections)
