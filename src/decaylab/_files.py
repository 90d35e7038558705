"""Writing files so that a failure never leaves half a file or a mixed set of old and new ones.

Every file is first written whole to a temporary file in its target directory; only when all of
them are written (a full disk or any other error stops here, before anything is replaced) are
they moved over the old ones with :func:`os.replace`, an atomic rename. A failure therefore
leaves the previous files exactly as they were, and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def replace_atomically(directory: str | os.PathLike, files: Mapping[str, str | bytes]) -> None:
    """Write ``{name: text or bytes}`` into ``directory``, all or (on any error) none of them."""
    directory = Path(directory)
    temps: dict[str, str] = {}
    try:
        for name, data in files.items():
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
            temps[name] = temp
            with os.fdopen(fd, "wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
        for name, temp in temps.items():
            os.replace(temp, directory / name)
    finally:
        for temp in temps.values():
            if os.path.exists(temp):
                os.unlink(temp)


def write_atomically(path: str | os.PathLike, data: str | bytes) -> None:
    """Write one file whole or not at all (the old file stays on failure)."""
    path = Path(path)
    replace_atomically(path.parent if str(path.parent) else ".", {path.name: data})
