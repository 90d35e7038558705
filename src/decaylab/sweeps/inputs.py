"""Shared input resolution of both sweep methods: the data, the model, the seeds, the values' range.

- :func:`resolve_data`: a built-in dataset name (its train+val rows; its test split evaluated), ``(X, y)``
  arrays or tensors, or a torch ``Dataset`` of ``(x, y)`` items → ``(X, y, eval_sets, spec)``, with
  ``spec`` a fingerprint of the rows (SHA-256 of shapes, dtypes and bytes) for the store key;
- :func:`resolve_model`: a built-in name (``"mlp"`` with ``hidden`` widths, ``"linear"``) or a zero-argument
  factory → ``(factory, spec)``; a factory is run once on two rows (:func:`check_forward`) so a wrong output
  shape is bad input before anything trains, and needs a stable name (or ``model_key``) when results are stored;
- :func:`check_values_fit`: features and targets must fit the training ``dtype``;
- :func:`check_seeds` (:mod:`decaylab.runspec`): distinct seeds in torch's range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from decaylab._checks import InputError, InputTypeError, check_choice, check_int, error_line
from decaylab.batched.members import check_same_architecture, parameter_shapes
from decaylab.runspec import check_seeds

__all__ = ["BUILTIN_MODELS", "ModelOutputError", "resolve_data", "resolve_model", "check_values_fit", "check_forward",
           "check_seeds", "fingerprint"]

BUILTIN_MODELS = ("mlp", "linear")


def fingerprint(*arrays: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().contiguous()
        digest.update(str((tuple(a.shape), str(a.dtype))).encode())
        digest.update(a.numpy().tobytes())
    return digest.hexdigest()


def check_values_fit(X: torch.Tensor, y: torch.Tensor, eval_sets: Mapping, dtype: torch.dtype,
                     features: bool = True) -> None:
    """Refuse features or targets whose magnitude overflows the training ``dtype`` (``features=False``: the
    targets only — standardized features are scaled before they are cast)."""
    largest = torch.finfo(dtype).max
    named = [("data X", X), ("data y", y)] + [(f"{name} {part}", t) for name, pair in eval_sets.items()
                                              for part, t in zip("Xy", pair)]
    named = [(name, t) for name, t in named if features or not name.endswith("X")]
    for name, values in named:
        if torch.is_floating_point(values) and values.numel():
            peak = float(values.detach().abs().max())
            if peak > largest:
                raise InputError(f"{name} holds values up to {peak:.3g}, beyond {dtype}'s range (±{largest:.3g}): "
                                 "rescale it (e.g. standardize) or pass dtype=torch.float64")


def _as_xy(name: str, value) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(value, torch.utils.data.Dataset):
        items = [value[i] for i in range(len(value))]
        if not items:
            raise InputError(f"{name} must not be empty")
        X = torch.stack([torch.as_tensor(x) for x, _ in items])
        y = torch.stack([torch.as_tensor(t) for _, t in items])
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        X, y = (torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v for v in value)
    else:
        raise InputTypeError(f"{name} must be a dataset name, an (X, y) pair or a torch Dataset, got "
                        f"{type(value).__name__}")
    if X.dim() < 2 or len(X) != len(y):
        raise InputError(f"{name} must have X of shape [n, …] and y with n entries, got X {tuple(X.shape)}, "
                         f"y {tuple(y.shape)}")
    if len(X) < 2:
        raise InputError(f"{name} must have at least 2 rows, got {len(X)}")
    if torch.is_floating_point(X) and not bool(torch.isfinite(X).all()):   # integer X (token ids) stays integer
        raise InputError(f"{name} X must contain only finite numbers")
    if not torch.is_floating_point(y):
        if y.dim() != 1 or bool((y < 0).any()):
            raise InputError(f"{name} class labels y must be a 1-D array of integers ≥ 0")
        y = y.long()
    return X, y


def resolve_data(data, test_data):
    """``(X, y, eval_sets, spec)`` for a dataset name, an (X, y) pair or a torch Dataset."""
    eval_sets = {}
    if isinstance(data, str):
        from decaylab import data as datasets

        loaded = datasets.load(data, seed=0)
        rows = loaded.train_and_val()
        X, y = rows.X, rows.y
        eval_sets["test"] = (loaded.test.X, loaded.test.y)
        spec = {"dataset": data, "rows": fingerprint(X, y)}
    else:
        X, y = _as_xy("data", data)
        spec = {"rows": fingerprint(X, y)}
    if test_data is not None:
        eval_sets["test"] = _as_xy("test_data", test_data)
        spec["test"] = fingerprint(*eval_sets["test"])
    return X, y, eval_sets, spec


def resolve_model(model, X, y, classification: bool, hidden, model_key, keyed: bool = False,
                  dtype: torch.dtype | None = None):
    """``(factory, spec)``: a built-in name or a user factory (its spec names it and its parameter shapes); a
    factory is checked (:func:`check_forward`) in ``dtype``, the sweep's training dtype."""
    if isinstance(model, str):
        check_choice("model", model, BUILTIN_MODELS)

        widths = [] if model == "linear" else [check_int("hidden", h, low=1) for h in hidden]
        n_in = int(np.prod(X.shape[1:]))
        n_out = int(y.max()) + 1 if classification else (1 if y.dim() == 1 else int(y.shape[1]))
        factory = _BuiltinFactory(n_in, n_out, tuple(widths))
        return factory, {"builtin": model, "in": n_in, "out": n_out, "hidden": widths}
    if isinstance(model, nn.Module) or not callable(model):
        raise InputTypeError("model must be a built-in name ('mlp', 'linear') or a zero-argument factory returning a "
                        f"fresh nn.Module (so each seed gets its own initialization), got {type(model).__name__}")
    probe = model()
    if not isinstance(probe, nn.Module):
        raise InputTypeError(f"model factory must return an nn.Module, got {type(probe).__name__}")
    name = model_key or f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', type(model).__name__)}"
    if keyed and model_key is None and ("<lambda>" in name or "<locals>" in name):
        raise InputError(f"model factory {name!r} has no stable name, so two different factories would share "
                         "results in the store: pass model_key='a name for this model' (change it when the "
                         "model's code changes), or define the factory at module level")
    check_forward(probe, name, X, y, classification, dtype)
    shapes = parameter_shapes(probe)
    check_same_architecture(model, shapes, model())      # a factory of a new architecture per call is refused
    return model, {"factory": name, "parameters": {n: list(s) for n, s in shapes.items()}}


class ModelOutputError(InputError):
    """The user's model returns outputs of a shape the loss cannot use: ``shape`` (its output's shape on ``rows``
    rows) and ``task`` (``"classification"`` or ``"regression"``, the one it was checked for) say which."""

    def __init__(self, message: str, shape: tuple[int, ...], rows: int, task: str):
        super().__init__(message)
        self.shape, self.rows, self.task = shape, rows, task


def check_forward(probe: nn.Module, name: str, X: torch.Tensor, y: torch.Tensor, classification: bool,
                  dtype: torch.dtype | None = None) -> None:
    """The user's model runs on two rows of the data and returns what the loss needs — ``(rows, classes)``
    logits covering every class in ``y``, or ``(rows, targets per row)`` for mse — else an :class:`InputError`
    saying so before anything trains (not a torch error from deep inside a training step).

    Model and floating rows are cast to ``dtype`` (the sweep's training dtype; ``None``: torch's default), as
    training casts them; integer rows (token ids) stay integers."""
    dtype = dtype or torch.get_default_dtype()
    probe = probe.to(dtype)
    rows = X[:2].to(dtype) if X.is_floating_point() else X[:2]
    try:
        with torch.no_grad():
            out = probe.eval()(rows)
    except Exception as exc:  # noqa: BLE001 - any error of the user's forward is reported as bad input
        raise InputError(f"model {name!r} fails on 2 rows of the data (shape {tuple(rows.shape)}, {rows.dtype}): "
                         f"{error_line(exc)}") from None
    if not isinstance(out, torch.Tensor):
        raise InputError(f"model {name!r} returns {type(out).__name__}, not a tensor of outputs")
    if classification:
        classes = int(y.max()) + 1
        if out.dim() != 2 or out.shape[0] != len(rows) or out.shape[1] < classes:
            raise ModelOutputError(f"model {name!r} returns shape {tuple(out.shape)} for {len(rows)} rows; "
                                   f"cross-entropy needs ({len(rows)}, classes) logits with at least {classes} "
                                   f"classes (y holds 0…{classes - 1})", tuple(out.shape), len(rows), "classification")
        return
    per_row = int(np.prod(y.shape[1:]))
    if out.dim() != 2 or tuple(out.shape) != (len(rows), per_row):
        raise ModelOutputError(f"model {name!r} returns shape {tuple(out.shape)} for {len(rows)} rows; mse needs "
                               f"({len(rows)}, {per_row}): one output per target value of a row", tuple(out.shape),
                               len(rows), "regression")


class _BuiltinFactory:
    """``MLP(n_in, n_out, hidden)`` from :mod:`decaylab.models` (picklable, unlike a lambda)."""

    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...]):
        self.n_in, self.n_out, self.hidden = n_in, n_out, hidden

    def __call__(self) -> nn.Module:
        from decaylab.models import MLP

        return MLP(self.n_in, self.n_out, self.hidden)
