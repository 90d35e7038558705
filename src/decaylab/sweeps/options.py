"""Every keyword option of :func:`decaylab.sweep`, declared once, and which method uses which.

:data:`SWEEP_OPTIONS` is the optimizer's options (:data:`decaylab.optim.options.OPTIMIZER_OPTIONS`), the
run's (:data:`decaylab.runspec.RUN_OPTIONS`), what decays (:data:`decaylab.runspec.DECAY_OPTIONS`) and the
sweep's own below. ``decaylab.sweep``'s signature takes its defaults from them (:data:`DEFAULTS`), the
command line ``decaylab sweep`` is built from them (:mod:`decaylab.cli.options`), and tests compare both
with these declarations.

A method accepts exactly the options it uses (:data:`USES`) and refuses any other the caller gave, in one
line naming them (:func:`refuse_unused`): the evidence method (``"marglik"``) trains one coupled Adam/SGD
run per (lr, seed) on all rows, so it has no folds, no engine, no λ grid to choose by a metric, no learning
rate schedule and no decoupled-decay, Adam/SGD or Muon tuning options; the grid method has no evidence options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace

from decaylab._checks import InputError
from decaylab._options import Default, Interval, Option, comma_list, declared
from decaylab.evidence.curvature import HESSIANS
from decaylab.optim.options import OPTIMIZER_OPTIONS
from decaylab.runspec import DECAY_OPTIONS, RUN_OPTIONS

__all__ = ["SWEEP_OPTIONS", "OWN_OPTIONS", "DEFAULTS", "USES", "METHODS", "refuse_unused"]

ENGINES = ("auto", "batched", "sequential", "ray")
METHODS = ("grid", "marglik")
MAX_SPLIT_SEED = 2**32 - 1   # numpy's RandomState (scikit-learn's random_state)

#: The sweep's own options (besides the optimizer's, the run's and what decays).
OWN_OPTIONS = declared((
    Option("method", "grid", "grid: cross-validate the λ grid; marglik: one run per (lr, seed) that learns λ "
           "(per layer) from the Laplace evidence (Immer et al. 2021)", kind="choice", choices=METHODS),
    Option("lr", 1e-3, "learning rate(s): a value, a sequence or a grid 'START:STOP:COUNT'", parse=str),
    Option("folds", 5, "K of K-fold cross-validation", kind="int", interval=Interval(2, None), none=True),
    Option("holdout", None, "instead of folds: one random validation split of this fraction", kind="real",
           interval=Interval(0.0, 1.0, low_open=True, high_open=True), none=True),
    Option("split_seed", 0, "seed of the fold split", kind="int", interval=Interval(0, MAX_SPLIT_SEED)),
    Option("metric", None, "what chooses λ (None: accuracy for classification, loss for regression)",
           kind="choice", choices=("accuracy", "loss"), none=True),
    Option("engine", "auto", "batched (all members stacked), sequential (one at a time), ray, or auto",
           kind="choice", choices=ENGINES),
    Option("chunk_size", None, "members stacked per batched chunk (None: as many as fit the memory budget)",
           kind="int", interval=Interval(1, None), none=True),
    Option("workers", 1, "worker processes for the batched and sequential engines", kind="int",
           interval=Interval(1, None)),
    Option("hidden", (64,), "hidden widths of the built-in mlp", parse=comma_list(int)),
    Option("test_data", None, "extra (X, y) every run is evaluated on", none=True),
    Option("model_key", None, "a name for a model factory in store keys, instead of its qualified name",
           none=True, parse=str),
    Option("store", None, "SQLite results file: finished runs are kept, a rerun resumes (None: memory only)",
           none=True, parse=str),
    Option("progress", False, "a progress bar of finished runs on stderr", kind="bool"),
    Option("hessian", "kron", "GGN approximation of the evidence", kind="choice", choices=HESSIANS),
    Option("per_layer", True, "one λ per layer (False: one λ for all layers)", kind="bool"),
    Option("marglik_frequency", 1, "epochs between evidence updates", kind="int", interval=Interval(1, None)),
))

SWEEP_OPTIONS = declared((*OWN_OPTIONS.values(), *RUN_OPTIONS.values(), *OPTIMIZER_OPTIONS,
                          *DECAY_OPTIONS.values()))

#: Each option's declared default, as it stands in ``decaylab.sweep``'s signature.
DEFAULTS = SimpleNamespace(**{name: Default(o.default) for name, o in SWEEP_OPTIONS.items()})

_EVIDENCE_ONLY = frozenset({"hessian", "per_layer", "marglik_frequency"})
USES = {
    "grid": frozenset(SWEEP_OPTIONS) - _EVIDENCE_ONLY,
    "marglik": frozenset({"method", "lr", "seed", "optimizer", "momentum", "epochs", "batch_size", "loss", "dtype",
                          "device", "hidden", "test_data", "model_key", "store", "progress", "standardize",
                          *DECAY_OPTIONS, *_EVIDENCE_ONLY}),
}
WHY = {
    "grid": "the Laplace-evidence options belong to the marglik method",
    "marglik": "it trains one coupled Adam/SGD run per (lr, seed) on all rows and learns λ from the Laplace "
               "evidence, so folds, engines, a metric, lr schedules and decoupled-decay, Adam/SGD or Muon tuning "
               "options have no meaning there; leave them out, or use the grid method",
}


def refuse_unused(method: str, values: Mapping, given, spell: Callable[[str, object], str] | None = None) -> None:
    """Refuse, in one line, the options in ``given`` that ``method`` does not use (module docstring).
    ``spell(name, value)`` writes one (default ``name=value``; the command line writes its flags)."""
    spell = spell or (lambda name, value: f"{name}={value!r}")
    unused = [name for name in SWEEP_OPTIONS if name in given and name not in USES[method]]
    if unused:
        names = ", ".join(spell(name, values[name]) for name in unused)
        verb = "does" if len(unused) == 1 else "do"
        raise InputError(f"{names} {verb} not apply to {spell('method', method)}: {WHY[method]}")


def checked(values: Mapping, names) -> dict:
    """``{name: value}`` for ``names``, each checked by its declaration (names and pairs as tuples)."""
    return {name: SWEEP_OPTIONS[name].check(values[name]) for name in names}
