"""Progress bars on stderr, shared by the studies, the sweeps and the command line.

One place decides how decaylab shows progress: tqdm on ``sys.stderr`` (so stdout stays
clean for tables and pipes), switched off entirely with ``enabled=False`` (tests, library
use), and bars that disappear when done unless ``leave=True``.
"""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, desc: str | None = None,
                 total: int | None = None, enabled: bool = True, leave: bool = False,
                 unit: str = "it") -> tqdm:
    """Wrap ``iterable`` (or count ``total`` manual ``update()`` calls) in a tqdm bar on stderr.

    With ``enabled=False`` the returned object iterates and accepts ``update``/``set_postfix``
    exactly the same way but prints nothing.
    """
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=leave,
                unit=unit, file=sys.stderr, dynamic_ncols=True)
