"""The DATA of ``decaylab sweep`` when it is a file: a CSV with a header row (every column numeric; ``--target``
names the target column) or an NPZ with arrays ``X`` and ``y`` (``--target`` names another target array),
read into feature rows and a target, and the task the target calls for (``--task auto``: integer values are
class labels, anything else values to predict; regression of integers only when asked)."""

from __future__ import annotations

import csv
import os

import numpy as np

from decaylab.cli import UsageError

BUILTIN_DATASETS = ("moons", "poly", "digits", "breast_cancer", "mnist1d")


def _check_readable_text(path: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    for magic, kind in ((b"\x1f\x8b", "gzip-compressed"), (b"PK\x03\x04", "a zip archive"),
                        (b"\x93NUMPY", "a .npy array")):
        if head.startswith(magic):
            raise UsageError(f"DATA {path!r} is named .csv but is {kind}: decompress it or give it its real "
                             "extension (.csv text or .npz)")


def load_csv(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Features and target of a CSV with a header row; every cell must be a finite number.

    A UTF-8 byte-order mark is ignored; header names must be distinct.
    """
    if target is None:
        raise UsageError(f"DATA {path!r} is a CSV: name its target column with --target")
    _check_readable_text(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise UsageError(f"DATA {path!r} is not UTF-8 text (byte {exc.start}): a CSV must be plain text") from None
    except csv.Error as exc:
        raise UsageError(f"DATA {path!r} is not a readable CSV: {exc}") from None
    if not rows or not rows[0]:
        raise UsageError(f"DATA {path!r} is empty: a CSV needs a header row and data rows")
    header, body = [h.strip() for h in rows[0]], [(n, r) for n, r in enumerate(rows[1:], start=2)
                                                  if any(c.strip() for c in r)]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise UsageError(f"DATA {path!r} repeats the column name(s) {', '.join(map(repr, repeated))} in its header")
    if target not in header:
        raise UsageError(f"--target {target!r} is not a column of {path!r}; columns are {', '.join(header)}")
    if len(header) < 2:
        raise UsageError(f"DATA {path!r} needs at least one feature column besides the target")
    table = np.empty((len(body), len(header)))
    for i, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise UsageError(f"DATA {path!r} line {line} has {len(row)} cells, the header has {len(header)}")
        for col, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise UsageError(f"DATA {path!r} column {header[col]!r} is not numeric: line {line} holds "
                                 f"{cell!r}") from None
            if not np.isfinite(value):
                raise UsageError(f"DATA {path!r} column {header[col]!r} line {line} holds {cell.strip()!r}: "
                                 "every value must be a finite number (drop or fill that row)")
            table[i, col] = value
    t = header.index(target)
    return np.delete(table, t, axis=1), table[:, t]


def load_npz(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``X`` (rows × features…, its shape and dtype as stored) and ``y`` (or ``target``, as float) of an
    NPZ archive; numeric, no pickles."""
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises OSError, ValueError, zipfile.BadZipFile, EOFError … for bad bytes
        raise UsageError(f"DATA {path!r} is not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UsageError(f"DATA {path!r} holds a single .npy array, not an .npz archive: save X and y with "
                         "numpy.savez(path, X=X, y=y)")
    y_key = target or "y"
    with archive:
        missing = [k for k in ("X", y_key) if k not in archive.files]
        if missing:
            raise UsageError(f"DATA {path!r} has no array {missing[0]!r}; it holds {', '.join(archive.files)}")
        try:
            X, y = archive["X"], archive[y_key]
        except Exception as exc:  # object arrays (pickles) are refused here, as is a damaged member
            raise UsageError(f"DATA {path!r}: X and {y_key!r} cannot be read as plain numeric arrays ({exc})") from None
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise UsageError(f"DATA {path!r}: X and {y_key} must be numeric arrays, got {X.dtype} and {y.dtype}")
    if X.ndim == 0 or y.ndim == 0:
        raise UsageError(f"DATA {path!r}: X and {y_key} must be arrays of rows, got shapes {X.shape} and {y.shape}")
    if len(X) != len(y):
        raise UsageError(f"DATA {path!r}: X has {len(X)} rows but {y_key} has {len(y)}")
    if len(X) < 2 or X[0].size == 0:
        raise UsageError(f"DATA {path!r} needs at least 2 rows and 1 feature, got X of shape {X.shape}")
    for name, values in (("X", X), (y_key, y)):
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise UsageError(f"DATA {path!r}: {name} row {int(np.argmax(bad))} holds NaN or infinity "
                             f"({int(bad.sum())} such rows); every value must be finite")
    return X, y.astype(float)


def prepare_file_data(path: str, target: str | None, task: str, as_stored: bool = False):
    """``((X, y), task)`` from a CSV/NPZ: float64 feature rows, flattened, for the built-in models (the sweep
    standardizes them per member, ``standardize=True``; ``as_stored``: X as the file holds it, for the user's own
    model — shape kept, integers as int64, floats as float32), integer classes or float targets. ``task``
    ``"auto"`` is classification when every target value is an integer (of at most 2**53, float64's exact
    integers), as ``decaylab.sweep`` takes integer targets for classes, else regression."""
    if os.path.isdir(path):
        raise UsageError(f"DATA {path!r} is a directory: give a .csv or .npz file, or a built-in dataset "
                         f"({', '.join(BUILTIN_DATASETS)})")
    if not os.path.isfile(path):
        raise UsageError(f"DATA {path!r}: no such built-in dataset or file (built-ins: {', '.join(BUILTIN_DATASETS)})")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".csv":
            X, y = load_csv(path, target)
        elif ext == ".npz":
            X, y = load_npz(path, target)
        else:
            raise UsageError(f"DATA {path!r}: files must end in .csv or .npz, got {ext or 'no extension'!r}")
    except OSError as exc:
        raise UsageError(f"DATA {path!r} cannot be read: {exc.strerror or exc}") from None
    if len(X) < 2:
        raise UsageError(f"DATA {path!r} needs at least 2 rows, got {len(X)}")
    values = np.unique(y)
    if task == "auto":                               # integers are class labels, as in decaylab.sweep
        integers = np.all(values == np.round(values)) and np.abs(values).max() <= 2.0 ** 53
        task = "classification" if integers else "regression"
    if as_stored:
        X = X.astype(np.int64) if X.dtype.kind in "biu" else X.astype(np.float32)
    else:
        X = X.reshape(len(X), -1).astype(float)
    if task == "classification":
        if not np.all(values == np.round(values)):
            raise UsageError(f"--task classification needs integer class labels in the target, got {values[:5]}")
        return (X, np.searchsorted(values, y).astype(np.int64)), task
    peak = float(np.abs(y).max())
    if peak > float(np.finfo(np.float32).max):
        raise UsageError(f"DATA {path!r}: the target --target reaches {peak:.3g}, beyond float32's range "
                         f"(±{np.finfo(np.float32).max:.3g}) that training uses: rescale the target")
    return (X, y.astype(np.float32)), task
