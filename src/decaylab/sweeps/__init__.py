"""Cross-validated λ sweeps: grid × folds → results, with engines and a resumable results store.

The subpackage is called ``sweeps`` (not ``sweep``) because ``decaylab.sweep`` is the public
*function* :func:`decaylab.sweeps.api.sweep`. Modules: :mod:`~decaylab.sweeps.api` (the
function and its grid method), :mod:`~decaylab.sweeps.marglik` (the evidence method),
:mod:`~decaylab.sweeps.options` (every option, declared once, and which method uses which),
:mod:`~decaylab.sweeps.inputs` (the data, model and seeds both methods resolve),
:mod:`~decaylab.sweeps.grid` (grids, folds, members), :mod:`~decaylab.sweeps.engines`
(sequential, batched, ray), :mod:`~decaylab.batched.planning` (auto's choice, chunks),
:mod:`~decaylab.sweeps.store` (SQLite results), :mod:`~decaylab.sweeps.keys` (the store key),
:mod:`~decaylab.sweeps.interrupt` (Ctrl-C), :mod:`~decaylab.sweeps.select` (best λ and the
one-standard-error rule), :mod:`~decaylab.sweeps.result` (the returned table, plot and files).

Names are imported on first use, so the store can be used (e.g. by worker processes)
without importing torch.
"""

import importlib

_HOME = {"sweep": "decaylab.sweeps.api", "parse_grid": "decaylab.sweeps.grid",
         "SweepResult": "decaylab.sweeps.result", "ResultStore": "decaylab.sweeps.store"}

__all__ = list(_HOME)


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'decaylab.sweeps' has no attribute {name!r}")
