"""The results store: one SQLite row per finished sweep member, keyed by a hash of its configuration.

A member's key is the SHA-256 of its full configuration (λ, lr, seed, fold, …) joined with the
sweep-level configuration (model, data fingerprint, optimizer, epochs, …) as canonical JSON.
Re-running a sweep looks each key up and trains only the members that are missing, so a killed
sweep resumes and a changed grid trains only what is new.

Safety: the database runs in WAL mode with a busy timeout, every write is one transaction, and
``INSERT OR IGNORE`` on the primary key makes a second writer of the same member a no-op — so
concurrent writers (processes, Ray workers) neither corrupt the file nor duplicate rows. Every
query passes values as SQL parameters, never by string formatting.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from decaylab._checks import InputError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    key        TEXT PRIMARY KEY,
    sweep_key  TEXT NOT NULL,
    config     TEXT NOT NULL,
    result     TEXT NOT NULL,
    finished   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS members_by_sweep ON members (sweep_key);
"""
_COLUMNS = ("key", "sweep_key", "config", "result", "finished")
_SQLITE_HEADER = b"SQLite format 3\x00"
_FIX = "choose another store (--store FILE / store=) or delete this one"


def _check_store_path(path: str) -> None:
    """Refuse, before SQLite touches anything, a store path that is a directory, in a missing
    directory, or an existing file that is not a SQLite database (left untouched)."""
    if os.path.isdir(path):
        raise InputError(f"store {path!r} is a directory; name a file in it instead, e.g. "
                         f"{os.path.join(path, 'sweep.sqlite')!r}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"store must be a file path in an existing directory, got {path!r}")
    if os.path.exists(path):
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise InputError(f"store {path!r} cannot be read ({exc.strerror}): {_FIX}") from None
        if head and head != _SQLITE_HEADER:
            raise InputError(f"store {path!r} is not a SQLite database (it was left untouched): {_FIX}")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"store {path!r} cannot be created: {parent!r} is not writable; {_FIX}")


def _writable(path: str) -> bool:
    """Whether the existing store at ``path`` can be written: the file, and its directory (where SQLite's WAL
    puts its ``-wal`` and ``-shm`` files)."""
    parent = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(parent, os.W_OK | os.X_OK)


def plain_json(value: Any) -> Any:
    """Plain JSON values: tuples → lists, numpy/torch scalars → Python numbers, NaN → None."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces) used for hashing and storage."""
    return json.dumps(plain_json(value), sort_keys=True, separators=(",", ":"))


def config_key(*parts: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the canonical JSON of ``parts`` (e.g. sweep config, member config)."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()


class ResultStore:
    """A SQLite file of finished members. Use as a context manager or call :meth:`close`.

    An existing store that cannot be written (a read-only file or directory) is opened read-only — SQLite's
    ``mode=ro&immutable=1``, which writes nothing beside it (``mode=ro`` when a ``-wal`` file holds results) —
    so its results can be read; :attr:`read_only`
    says so, :meth:`refuse_missing` refuses to train what it lacks, and writing raises :class:`InputError`."""

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0):
        path = os.fspath(path)
        self.path = path
        _check_store_path(path)
        self.read_only = os.path.exists(path) and not _writable(path)
        self._conn = None
        try:
            if self.read_only:
                wal = f"{path}-wal"                  # results a killed writer left in the WAL need SQLite's reader
                mode = "ro" if os.path.exists(wal) and os.path.getsize(wal) else "ro&immutable=1"
                uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"
                self._conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            else:
                self._conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            tables = {name for (name,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "members" not in tables:
                raise InputError(f"store {path!r} is a SQLite database but not a decaylab results store (its tables: "
                                 f"{', '.join(sorted(tables))}); it was left untouched: {_FIX}")
            if self.read_only and not tables:
                raise InputError(f"store {path!r} is read-only and holds no results: {_FIX}")
            if not self.read_only:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
                with self._transaction():
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        self._conn.execute(statement)
            columns = [row[1] for row in self._conn.execute("PRAGMA table_info(members)")]
            if columns != list(_COLUMNS):
                raise InputError(f"store {path!r} has a 'members' table that is not a decaylab store's "
                                 f"(columns {columns}): {_FIX}")
            (verdict,) = self._conn.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {verdict}")
        except sqlite3.DatabaseError as exc:
            self.close()
            fix = "copy it to a writable place and pass the copy as the store" if self.read_only else _FIX
            raise InputError(f"store {path!r} cannot be used ({exc}): {fix}") from None
        except BaseException:
            self.close()
            raise

    def refuse_missing(self, missing: int, total: int, unit: str) -> None:
        """A read-only store serves the results it holds; ``missing`` of ``total`` ``unit`` still to train (and
        store) is an :class:`InputError` saying how to go on with a writable copy."""
        if self.read_only and missing:
            raise InputError(f"store {self.path!r} is read-only and {missing} of {total} {unit} are not in it: copy "
                             f"it to a writable place (e.g. cp {self.path} ./sweep.sqlite) and pass the copy as the "
                             "store (--store FILE / store=); nothing in it is retrained")

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): takes the write lock up front, waits if busy."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def put(self, key: str, sweep_key: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Store one finished member; returns False if ``key`` was already stored (nothing changes)."""
        return self.put_many([(key, sweep_key, config, result)]) == 1

    def put_many(self, rows: Iterable[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]) -> int:
        """Store several finished members in one transaction; returns how many were new."""
        self.refuse_missing(1, 1, "members")
        now = time.time()
        params = [(k, s, canonical_json(c), canonical_json(r), now) for k, s, c, r in rows]
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO members (key, sweep_key, config, result, finished) VALUES (?, ?, ?, ?, ?)",
                params)
            return self._conn.total_changes - before

    def get(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored results among ``keys``: ``{key: {"config": ..., "result": ...}}``."""
        keys = list(keys)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):           # stay under SQLite's parameter limit
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))           # placeholders only; values are parameters
            cur = self._conn.execute(f"SELECT key, config, result FROM members WHERE key IN ({marks})", chunk)
            for key, config, result in cur:
                found[key] = {"config": json.loads(config), "result": json.loads(result)}
        return found

    def rows(self, sweep_key: str | None = None) -> list[dict[str, Any]]:
        """Every stored member (of one sweep configuration if ``sweep_key`` is given), oldest first."""
        if sweep_key is None:
            cur = self._conn.execute("SELECT key, sweep_key, config, result FROM members ORDER BY finished, key")
        else:
            cur = self._conn.execute(
                "SELECT key, sweep_key, config, result FROM members WHERE sweep_key = ? ORDER BY finished, key",
                (sweep_key,))
        return [{"key": k, "sweep_key": s, "config": json.loads(c), "result": json.loads(r)} for k, s, c, r in cur]

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
