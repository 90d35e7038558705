"""Progress bars on stderr, shared by the studies, the sweeps and the command line.

One place decides how decaylab shows progress: tqdm on ``sys.stderr`` (so stdout stays
clean for tables and pipes), switched off entirely with ``enabled=False`` (tests, library
use), and bars that disappear when done unless ``leave=True``. tqdm is optional (an extra):
without it there is no bar, and nothing else changes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class _Silent:
    """What a disabled bar is: iterates and accepts ``update``/``set_postfix``/``close``, prints nothing."""

    def __init__(self, iterable: Iterable | None = None):
        self.iterable = iterable
        self.n = 0

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(iterable: Iterable[T] | None = None, *, desc: str | None = None,
                 total: int | None = None, enabled: bool = True, leave: bool = False,
                 unit: str = "it"):
    """Wrap ``iterable`` (or count ``total`` manual ``update()`` calls) in a tqdm bar on stderr.

    With ``enabled=False`` (or without tqdm installed) the returned object iterates and accepts
    ``update``/``set_postfix`` exactly the same way but prints nothing.
    """
    if not enabled:
        return _Silent(iterable)
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError:
        return _Silent(iterable)
    return tqdm(iterable, desc=desc, total=total, leave=leave, unit=unit, file=sys.stderr, dynamic_ncols=True)
