"""A run's settings as the scaling rules read them: rows N, width, batch B, epochs, lr, parameters and the λ convention.

:class:`RunSettings` holds one run's values; ``None`` means not recorded. Derived: ``steps = epochs·N/B``
(optimizer steps; fractional steps of a last partial batch are not rounded), ``samples = epochs·N`` (D, the
examples the run processes, Power Lines' "tokens") and ``per_param = D/P`` (tokens per parameter; examples per
parameter here). :func:`parse_settings` reads ``"rows=16000,width=64,batch=32,lr=1e-3"`` (also ``steps=…``,
turned into epochs = steps·B/N, and ``params=…``); :func:`ladder_variable` says which one variable a list of
runs differs in, refusing runs that differ in more.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from decaylab._checks import InputError, InputTypeError, check_int, check_real
from decaylab.conventions import get_convention

__all__ = ["RunSettings", "VARIABLES", "KEYS", "parse_settings", "apply_settings", "differing", "ladder_variable",
           "convention_of"]

#: what a ladder may vary (the rungs must agree on every other one)
VARIABLES = ("rows", "width", "batch", "epochs", "lr")
#: what a settings string may name: the variables, ``steps`` (read as epochs = steps·B/N) and ``params``
KEYS = (*VARIABLES, "steps", "params")
_INTEGERS = ("rows", "width", "batch", "params")
_MEANING = {"rows": "training rows N per run", "width": "hidden width", "batch": "batch size B",
            "epochs": "epochs (passes over the N rows)", "lr": "peak learning rate η",
            "steps": "optimizer steps (epochs = steps·B/N)", "params": "parameter count P"}


@dataclass(frozen=True)
class RunSettings:
    """One run: ``rows`` N, ``width``, ``batch`` B, ``epochs``, ``lr`` η (the peak), ``params`` P and the
    ``convention`` its λ is written in (a :mod:`decaylab.conventions` name: ``"torch-adamw"`` for torch's AdamW,
    ``"schedule"``, ``"coupled"`` for SGD/Adam's L2, …). ``None``: not recorded."""

    rows: int | None = None
    width: int | None = None
    batch: int | None = None
    epochs: float | None = None
    lr: float | None = None
    params: int | None = None
    convention: str = "torch-adamw"

    def __post_init__(self):
        for name in _INTEGERS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_int(name, value, low=1))
        for name in ("epochs", "lr"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_real(name, value, low=0.0, low_open=True))
        object.__setattr__(self, "convention", get_convention(self.convention, "convention").name)

    @property
    def steps(self) -> float | None:
        """Optimizer steps of the run, epochs·N/B."""
        if None in (self.epochs, self.rows, self.batch):
            return None
        return self.epochs * self.rows / self.batch

    @property
    def samples(self) -> float | None:
        """D = epochs·N, the examples the run processes (Power Lines' tokens D)."""
        return None if None in (self.epochs, self.rows) else self.epochs * self.rows

    @property
    def per_param(self) -> float | None:
        """D/P, examples per parameter (Power Lines' tokens per parameter)."""
        return None if self.samples is None or self.params is None else self.samples / self.params

    def value(self, name: str) -> float | None:
        return getattr(self, name)

    def replace(self, **changes) -> RunSettings:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "steps": self.steps, "samples": self.samples}


def convention_of(optimizer: str, decay_scaling: str | None) -> str:
    """The :mod:`decaylab.conventions` name of a decaylab optimizer's λ: ``"coupled"`` for sgd/adam (L2 in the
    gradient), ``"schedule"`` for decoupled decay with ``decay_scaling="schedule"``, else ``"torch-adamw"``
    (decoupled lr-scaled decay; ``"corrected"`` equals it at the peak lr, where s_0 = lr_0)."""
    if optimizer in ("sgd", "adam"):
        return "coupled"
    return "schedule" if decay_scaling == "schedule" else "torch-adamw"


def _number(key: str, text: str, name: str):
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{name}: {key}={text!r} is not a number") from None
    if key in _INTEGERS:
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"{name}: {key} must be a whole number ({_MEANING[key]}), got {text!r}")
        return check_int(f"{name} {key}", int(value), low=1)
    return check_real(f"{name} {key}", value, low=0.0, low_open=True)


def parse_settings(text: str | Mapping[str, Any], name: str = "settings") -> dict[str, Any]:
    """``{"rows": 16000, "lr": 0.001, …}`` from ``"rows=16000,lr=1e-3"`` (or a mapping, checked the same way):
    keys from :data:`KEYS`, each once; integers for rows, width, batch, params; reals > 0 otherwise."""
    if isinstance(text, Mapping):
        pairs = [(str(k), v) for k, v in text.items()]
    elif isinstance(text, str):
        if not text.strip():
            raise InputError(f"{name} must be KEY=VALUE pairs like 'rows=16000,width=64', got {text!r}")
        pairs = []
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise InputError(f"{name} must be KEY=VALUE pairs like 'rows=16000,width=64', got {part.strip()!r}")
            pairs.append((key.strip(), value.strip()))
    else:
        raise InputTypeError(f"{name} must be a string like 'rows=16000,width=64' or a mapping, got "
                             f"{type(text).__name__}")
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in KEYS:
            raise InputError(f"{name}: unknown key {key!r}; allowed: {', '.join(KEYS)}")
        if key in out:
            raise InputError(f"{name}: {key} is given twice")
        out[key] = _number(key, value, name) if isinstance(value, str) else (
            check_int(f"{name} {key}", value, low=1) if key in _INTEGERS else
            check_real(f"{name} {key}", value, low=0.0, low_open=True))
    return out


def apply_settings(base: RunSettings, given: Mapping[str, Any]) -> RunSettings:
    """``base`` with the parsed ``given`` values; ``steps`` becomes epochs = steps·B/N (B, N from ``given`` or
    ``base``)."""
    given = dict(given)
    steps = given.pop("steps", None)
    out = base.replace(**given)
    if steps is not None:
        if out.rows is None or out.batch is None:
            raise InputError("steps=… needs rows and batch (epochs = steps·batch/rows): give them too")
        out = out.replace(epochs=steps * out.batch / out.rows)
    return out


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9)


def differing(runs: Sequence[RunSettings]) -> list[str]:
    """The :data:`VARIABLES` whose values are not the same in every run."""
    return [v for v in VARIABLES if any(not _same(r.value(v), runs[0].value(v)) for r in runs[1:])]


def ladder_variable(runs: Sequence[RunSettings], vary: str | None = None) -> str:
    """The one variable the ``runs`` differ in (``vary``, when declared, must be it): at least two runs with
    distinct values of it and the same value of every other variable and the same convention."""
    if len(runs) < 2:
        raise InputError(f"a scaling fit needs measured runs at two or more values of what changes, got {len(runs)} "
                         "run")
    if vary is not None and vary not in VARIABLES:
        raise InputError(f"vary must be one of {', '.join(VARIABLES)}, got {vary!r}")
    conventions = sorted({r.convention for r in runs})
    if len(conventions) > 1:
        raise InputError(f"the runs' λ are in different conventions ({', '.join(conventions)}): convert them to one "
                         "(decaylab convert) first")
    diff = differing(runs)
    if vary is not None:
        missing = [i for i, r in enumerate(runs) if r.value(vary) is None]
        if missing:
            raise InputError(f"run {missing[0] + 1} does not record {vary} ({_MEANING[vary]}): give it explicitly")
        others = [d for d in diff if d != vary]
        if others:
            raise InputError(f"the runs differ in {', '.join(others)} besides the declared {vary}: a ladder varies one "
                             "thing at a time")
        if vary not in diff:
            raise InputError(f"every run has the same {vary} ({runs[0].value(vary):g}): a ladder needs two or more "
                             "values of it")
        return vary
    if not diff:
        raise InputError("the runs do not differ in any of " + ", ".join(VARIABLES) + ": a ladder needs two or more "
                         "values of one of them (give the settings explicitly where the runs do not record them)")
    if len(diff) > 1:
        raise InputError(f"the runs differ in {', '.join(diff)}: a ladder varies one thing at a time (declare it with "
                         "vary= to see which others differ)")
    if any(r.value(diff[0]) is None for r in runs):
        raise InputError(f"some runs do not record {diff[0]} ({_MEANING[diff[0]]}): give it explicitly")
    return diff[0]
