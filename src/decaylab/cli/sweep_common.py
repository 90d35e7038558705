"""What the two methods of ``decaylab sweep`` share: training, then writing the files, with the exits for Ctrl-C,
a dead worker and a failed write (:func:`train_and_write`)."""

from __future__ import annotations

import sys

from decaylab.cli import RunFailed, UsageError


def train_and_write(train, write, out_dir, store: str, unit: str):
    """``result = train()``, then ``write(result)``; returns the result. Ctrl-C (``SweepInterrupted``) → one line
    on stderr and ``None`` (the caller exits 130); a worker process that died (``WorkerDied``) → a
    :class:`RunFailed` (exit 1) saying what is stored and what to change; a failed write (``OSError``) → a
    :class:`UsageError` (exit 2) saying that the previous files are unchanged and every finished ``unit`` is in
    ``store``."""
    from decaylab.sweeps.engines import WorkerDied
    from decaylab.sweeps.interrupt import SweepInterrupted

    try:
        result = train()
    except SweepInterrupted as stop:
        print(f"decaylab sweep: {stop}", file=sys.stderr)
        return None
    except WorkerDied as died:
        raise RunFailed(f"--workers {died.workers}: a worker process died before finishing its members, most "
                        f"likely out of memory ({died.finished} of {died.chunks} chunks finished and are in the "
                        f"store {store!r}); run the same command again with a smaller --chunk-size or --workers 1 "
                        f"(nothing finished is retrained)") from None
    try:
        write(result)
    except OSError as exc:
        raise UsageError(f"--out {str(out_dir)!r}: writing the results failed ({exc.strerror or exc}); the previous "
                         f"files there are unchanged, and every {unit} is in the store {store!r}: free space or "
                         "choose another --out and run the same command again (nothing is retrained)") from None
    return result
