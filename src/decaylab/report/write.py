"""Write a report to disk: ``index.html`` and ``summary.json``, never half a report.

Both files are rendered in memory first (so a bad section raises before anything is
touched), written to temporary files in the output directory, and then moved over the old
ones with :func:`os.replace`. A failure at any point leaves the previous report as it was;
other files in the directory are never touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from decaylab._checks import InputError, InputTypeError
from decaylab._files import replace_atomically
from decaylab.report.html import render_html
from decaylab.report.model import Section
from decaylab.report.summary import build_summary

REPORT_FILES = ("index.html", "summary.json")


def check_out_dir(out_dir, name: str = "out_dir") -> Path:
    """Return ``out_dir`` as a Path if it is a directory, or can be created as one, and is writable.

    ``name`` is how errors call the argument (``--out`` on the command line).
    """
    if isinstance(out_dir, bool) or not isinstance(out_dir, (str, os.PathLike)):
        raise InputTypeError(f"{name} must be a path (str or os.PathLike), got {out_dir!r} ({type(out_dir).__name__})")
    path = Path(out_dir)
    if str(out_dir) == "":
        raise InputError(f"{name} must be a directory path, got ''")
    existing = next(parent for parent in (path.absolute(), *path.absolute().parents) if parent.exists())
    if not existing.is_dir():
        raise InputError(f"{name} must be a directory (or not exist yet), got {str(out_dir)!r}: "
                         f"{str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{name} must be a directory you can write to, got {str(out_dir)!r}: "
                         f"{str(existing)!r} is not writable")
    return path


def write_report(out_dir, title: str, sections: Sequence[Section], summary: Mapping, intro: str = "") -> Path:
    """Render ``sections`` into ``out_dir/index.html`` and write ``out_dir/summary.json``.

    ``summary`` is the study's own JSON-able dict of numbers (see
    :func:`decaylab.report.summary.build_summary` for what is added and how values convert).
    Creates ``out_dir`` (and its parents) if needed and returns the path of ``index.html``.
    """
    path = check_out_dir(out_dir)
    files = render_report(title, sections, summary, intro)
    path.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, files)
    return path / "index.html"


def render_report(title: str, sections: Sequence[Section], summary: Mapping, intro: str = "") -> dict[str, str]:
    """``{"summary.json": …, "index.html": …}`` rendered in memory (for writing with other files at once)."""
    page = render_html(title, sections, intro)
    data = json.dumps(build_summary(title, sections, summary, intro), indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"
    return {"summary.json": data, "index.html": page}
