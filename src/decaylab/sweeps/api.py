"""``decaylab.sweep``: cross-validate a grid of λ (× lr × seed) and choose λ, resuming from a results store."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from decaylab._checks import InputError, InputTypeError, check_choice, check_int, error_line
from decaylab._isolation import isolated
from decaylab._progress import progress_bar
from decaylab.groups import DEFAULT_NO_DECAY_NAMES
from decaylab.sweeps.engines import ENGINES, RUNNERS, TrainingJob
from decaylab.sweeps.grid import check_grid, fold_splits, grid_points
from decaylab.sweeps.planning import plan_sweep
from decaylab.sweeps.result import SweepResult
from decaylab.sweeps.select import HIGHER_IS_BETTER, choose, summarize
from decaylab.sweeps.store import ResultStore, config_key
from decaylab.train.batched import Member, MemberResult, TrainConfig, check_batchable
from decaylab.train.devices import resolve_device

BUILTIN_MODELS = ("mlp", "linear")
STORE_FORMAT = 2          # part of every key: bump when the meaning of a stored row changes
#                           (2: what decays follows param_groups' rule; optimizer options cautious/l1_decay/…)
MAX_MEMBERS = 100_000     # members (λ × lr × seed × fold) in one sweep
MAX_SEED = 2**63 - 1      # the range of a torch generator's seed
MAX_SPLIT_SEED = 2**32 - 1   # numpy's RandomState (scikit-learn's random_state)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep, raised after every finished member (or evidence run: ``unit="runs"``) was stored
    (``stored`` of ``pending``)."""

    def __init__(self, stored: int, pending: int, store: str | None, unit: str = "members"):
        self.stored, self.pending, self.store = stored, pending, store
        where = f"stored in {store}; run the same sweep again to resume" if store else "not stored (no store)"
        super().__init__(f"interrupted: {stored} of {pending} {unit} finished, {where}")


@isolated()              # nothing a sweep runs changes the caller's global generator or thread count
def sweep(model: str | Callable[[], nn.Module], data: Any, lambdas, *, lr=1e-3, seed=0, folds: int | None = 5,
          holdout: float | None = None, optimizer: str = "adamw", decay_scaling: str = "lr", momentum: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, lr_schedule: str = "constant",
          epochs: int = 20, batch_size: int = 64, decay_biases: bool = False, loss: str | None = None,
          metric: str | None = None, engine: str = "auto", store: str | None = None, chunk_size: int | None = None,
          split_seed: int = 0, dtype: torch.dtype = torch.float32, hidden: Sequence[int] = (64,),
          test_data: Any = None, model_key: str | None = None, workers: int = 1, dampening: float = 0.0,
          nesterov: bool = False, amsgrad: bool = False, cautious: bool = False, l1_decay: float = 0.0,
          no_decay_types: Sequence[type] | None = None, no_decay_names: Sequence[str] = DEFAULT_NO_DECAY_NAMES,
          decay_names: Sequence[str] = (), decay_embeddings: bool = False,
          progress: bool = False, device=None, method: str = "grid", hessian: str = "kron",
          per_layer: bool = True, marglik_frequency: int = 1, standardize: bool = False) -> SweepResult:
    """Train every (λ, lr, seed, fold) member, score λ by cross-validation, choose λ.

    Args:
        model: a built-in name (``"mlp"`` with ``hidden`` widths, ``"linear"``) or a zero-argument
            factory returning a fresh ``nn.Module`` (called on the global generator seeded with the member's
            seed; the caller's generator and thread count are left as they were).
        data: a built-in dataset name (``decaylab.data``; its train+val rows are cross-validated
            and its test split is evaluated), ``(X, y)`` arrays/tensors, or a torch ``Dataset`` of
            ``(x, y)`` items.
        lambdas: λ values (``weight_decay``, ≥ 0) — a sequence or a grid string ``"1e-6:1e1:16"``.
        lr, seed: a value or a sequence of values (the grid is λ × lr × seed × fold).
        folds / holdout: K-fold cross-validation (stratified for classification) or one random
            holdout split of this fraction; give one of them (``holdout`` overrides ``folds``).
        optimizer, decay_scaling, momentum, dampening, nesterov, betas, eps, amsgrad, cautious, l1_decay:
            the optimizer of every member, with every option its decaylab class takes (checked by
            :class:`decaylab.optim.spec.OptimizerSpec`; λ is its ``weight_decay``: coupled ``g + λw`` for
            sgd/adam, decoupled ``w − s_t λ w`` for sgdw/adamw).
        no_decay_types, no_decay_names, decay_names, decay_embeddings, decay_biases: what decays —
            :func:`decaylab.param_groups`' rule with the same overrides (``decay_biases=True``: everything).
        lr_schedule, epochs, batch_size, dtype: see :class:`decaylab.train.members.TrainConfig`.
        loss: ``"cross_entropy"`` (default for integer targets) or ``"mse"`` (float targets).
        metric: what chooses λ: ``"accuracy"`` (default for classification) or ``"loss"``.
        engine: ``"batched"`` (all members stacked), ``"sequential"`` (one at a time, any model),
            ``"ray"`` (Ray Tune trials: batched chunks, or single members for a model the batched trainer
            cannot take), or ``"auto"`` (sequential for a model the batched trainer cannot take; batched
            for a plain MLP; else whichever is faster in a short timed probe, :mod:`decaylab.sweeps.planning`).
        store: path of a SQLite results file; finished members are written as they finish and
            reused on the next call with the same configuration (resume; a changed grid trains
            only what is new). ``None``: keep results in memory only.
        chunk_size: members stacked per batched chunk (``None``: as many as fit the memory budget of
            :mod:`decaylab.train.chunking`; a larger value is split to fit; the store is written after each
            chunk). ``result.path`` says in one line which path the model took (fast path, vmap,
            sequential), why, and the chunks.
        split_seed: seed of the fold split (the same for every member).
        test_data: extra ``(X, y)`` to evaluate every member on (reported as ``test_*``).
        model_key: a name for a factory ``model`` used in store keys instead of its qualified name.
        workers: worker processes for the batched and sequential engines (1: train in this
            process); each gets ``cpu_count // workers`` torch threads and an equal share of members.
            Workers die with this process, and ignore Ctrl-C (this process stops them).
        progress: show a progress bar of finished members on stderr.
        device: where members train (``None``: CUDA when available, else the CPU).
        method: ``"grid"`` (cross-validate the λ grid) or ``"marglik"``: one run per (lr, seed) that learns λ
            (per layer) from the Laplace evidence — :mod:`decaylab.sweeps.marglik`, with ``hessian``,
            ``per_layer`` and ``marglik_frequency``; ``lambdas`` is then ``None`` or one starting λ; ``store``
            keeps each finished (lr, seed) run.
        standardize: standardize every member's features with the mean and standard deviation of its own
            training rows (float64 statistics; constant features to 0), applied to its validation rows and to
            ``test_data`` with the same member statistics (:mod:`decaylab.train.standardization`): no
            validation row takes part. With ``method="marglik"`` a run's training rows are all rows.
    Returns:
        :class:`~decaylab.sweeps.result.SweepResult`.
    Raises:
        SweepInterrupted: (a ``KeyboardInterrupt``) on Ctrl-C, after every finished member is stored;
            the same call resumes from the store.

    Refused: repeated λ, lr or seeds (they would be counted twice), a grid over ``MAX_MEMBERS``
    members, a single-class target, values that overflow ``dtype``, and — with a ``store`` — a
    factory without a stable name (a lambda or a local function) and no ``model_key``.

    Member identity (the store key): SHA-256 of the member's (λ, lr, seed, fold) together with the
    sweep configuration — model spec, a fingerprint of the data rows, folds/holdout, split seed,
    training configuration — but not the engine, whose results are interchangeable. A factory's
    spec is its qualified name and parameter shapes: pass a new ``model_key`` when its code changes
    in a way those do not show.
    """
    if check_choice("method", method, ("grid", "marglik")) == "marglik":
        from decaylab.sweeps.marglik import marglik_sweep

        return marglik_sweep(model, data, lambdas, lr=lr, seed=seed, optimizer=optimizer, momentum=momentum,
                             epochs=epochs, batch_size=batch_size, loss=loss, dtype=dtype, hidden=hidden,
                             test_data=test_data, model_key=model_key, hessian=hessian, per_layer=per_layer,
                             marglik_frequency=marglik_frequency, store=store, standardize=standardize)
    start = time.perf_counter()
    lambdas = check_grid("lambdas", lambdas)
    lrs = check_grid("lr", lr, low_open=True)
    seeds = _check_seeds(seed)
    engine = check_choice("engine", engine, ENGINES)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, low=1)
    workers = check_int("workers", workers, low=1)
    device = resolve_device(device)
    split_seed = check_int("split_seed", split_seed, low=0, high=MAX_SPLIT_SEED)
    if holdout is not None:
        folds = None

    X, y, eval_sets, data_spec = _resolve_data(data, test_data)
    if loss is None:
        loss = "cross_entropy" if not torch.is_floating_point(y) else "mse"
    check_choice("loss", loss, ("cross_entropy", "mse"))
    classification = loss == "cross_entropy"
    _check_values_fit(X, y, eval_sets, dtype, features=not standardize)
    if classification and len(torch.unique(y)) < 2:
        raise InputError(f"data has a single class ({int(y[0])}) in y: every member would score 1.0 at every λ; "
                         "cross-validating λ needs at least 2 classes")
    metric = check_choice("metric", metric if metric is not None else ("accuracy" if classification else "loss"),
                          tuple(HIGHER_IS_BETTER))
    if metric == "accuracy" and not classification:
        raise InputError(f"metric='accuracy' needs a classification loss, got loss={loss!r}")
    config = TrainConfig(optimizer=optimizer, epochs=epochs, batch_size=batch_size, momentum=momentum,
                         dampening=dampening, nesterov=nesterov, betas=tuple(betas), eps=eps, amsgrad=amsgrad,
                         decay_scaling=decay_scaling, cautious=cautious, l1_decay=l1_decay, lr_schedule=lr_schedule,
                         loss=loss, decay_biases=decay_biases, dtype=dtype, no_decay_types=no_decay_types,
                         no_decay_names=no_decay_names, decay_names=decay_names, decay_embeddings=decay_embeddings,
                         standardize=standardize)
    model_factory, model_spec = _resolve_model(model, X, y, classification, hidden, model_key,
                                               keyed=store is not None)
    if isinstance(model, str):                      # built-in MLPs take features: integer X becomes float
        X = X if torch.is_floating_point(X) else X.to(torch.float64)
        eval_sets = {k: (torch.as_tensor(ex).to(torch.float64), ey) for k, (ex, ey) in eval_sets.items()}
    batchable = check_batchable(model_factory()) is None
    requested, path = engine, "nothing to train: every member came from the store"
    if engine == "auto":
        engine = "batched" if batchable else "sequential"

    splits = fold_splits(y.numpy(), folds=folds, holdout=holdout, classification=classification,
                         split_seed=split_seed)
    sweep_config = {"format": STORE_FORMAT, "model": model_spec, "data": data_spec, "folds": folds,
                    "holdout": holdout, "split_seed": split_seed, "train": _config_dict(config)}
    sweep_key = config_key(sweep_config)
    n_members = len(lambdas) * len(lrs) * len(seeds) * len(splits)
    if n_members > MAX_MEMBERS:
        raise InputError(f"the grid has {n_members:,} members ({len(lambdas)} λ × {len(lrs)} lr × {len(seeds)} seeds "
                         f"× {len(splits)} folds); at most {MAX_MEMBERS:,} are allowed in one sweep: use a coarser "
                         "grid or split it into several sweeps on one store")
    points = grid_points(lambdas, lrs, seeds, len(splits))
    keys = [config_key(sweep_config, p.config()) for p in points]
    members = {k: Member(p.weight_decay, p.lr, p.seed, tuple(splits[p.fold][0]), tuple(splits[p.fold][1]))
               for k, p in zip(keys, points)}
    rows_of = _StoreRows(sweep_key, {k: {**p.config(), "sweep": sweep_config} for k, p in zip(keys, points)})

    found: dict[str, dict] = {}
    fresh: set[str] = set()
    db = ResultStore(store) if store is not None else None
    try:
        if db is not None:
            found.update({k: v["result"] for k, v in db.get(keys).items()})
        pending = [(k, members[k]) for k in dict.fromkeys(keys) if k not in found]

        bar = progress_bar(total=len(pending), desc="sweep", unit="member", enabled=progress and bool(pending))

        def on_done(pairs: list[tuple[str, MemberResult]]) -> None:
            if db is not None:
                db.put_many(rows_of(pairs))
            for k, r in pairs:
                found[k] = result_dict(r)
                fresh.add(k)
            bar.update(len(pairs))

        if pending:
            if requested != "ray":                  # issue 11: auto's choice, chunks from a memory budget, path report
                plan = plan_sweep(model_factory, X, y, config, [m for _, m in pending], requested, chunk_size, device,
                                  workers=workers)
                engine, path, chunk_size = plan.engine, plan.report, plan.chunk_size
            else:
                path = ("ray: one Ray Tune trial per chunk of members trained batched" if batchable else
                        "ray: one Ray Tune trial per member, trained alone (the model cannot be batched)")
            job = TrainingJob(model_factory, X, y, config, eval_sets, device=device)
            try:
                RUNNERS[engine](job, pending, on_done, chunk_size=chunk_size, workers=workers, batched=batchable,
                                store_path=store if engine == "ray" else None, rows_of=rows_of)
            except KeyboardInterrupt:
                raise SweepInterrupted(len(fresh), len(pending), store) from None
            finally:
                bar.close()
    finally:
        if db is not None:
            db.close()

    table = [_table_row(p, k, found[k], metric, from_store=k not in fresh) for p, k in zip(points, keys)]
    summary = summarize(table)
    best, lambda_1se = choose(summary, HIGHER_IS_BETTER[metric])
    return SweepResult(table=table, summary=summary, best_lambda=None if best is None else best["lambda"],
                       best_lr=None if best is None else best["lr"], lambda_1se=lambda_1se, metric=metric,
                       config=sweep_config, engine=engine, wall_time=time.perf_counter() - start,
                       trained=len(fresh), path=path)


def result_dict(result: MemberResult) -> dict:
    """The stored form of a member's result (no weights)."""
    out = dataclasses.asdict(dataclasses.replace(result, state_dict=None))
    out.pop("state_dict")
    return out


class _StoreRows:
    """Turns ``(key, MemberResult)`` pairs into store rows (picklable, for Ray workers)."""

    def __init__(self, sweep_key: str, configs: Mapping[str, dict]):
        self.sweep_key = sweep_key
        self.configs = dict(configs)

    def __call__(self, pairs):
        return [(k, self.sweep_key, self.configs[k], result_dict(r)) for k, r in pairs]


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _table_row(point, key: str, result: Mapping, metric: str, from_store: bool) -> dict:
    test = (result.get("eval") or {}).get("test", {})
    row = {"lambda": point.weight_decay, "lr": point.lr, "seed": point.seed, "fold": point.fold,
           "train_loss": _nan(result["train_loss"]), "val_loss": _nan(result["val_loss"]),
           "val_accuracy": _nan(result["val_accuracy"]), "weight_norm": _nan(result["weight_norm"]),
           "epochs_run": result["epochs_run"], "steps": result["steps"], "diverged": bool(result["diverged"]),
           "wall_time": result["wall_time"], "test_loss": _nan(test.get("loss")),
           "test_accuracy": _nan(test.get("accuracy")), "from_store": from_store, "key": key}
    row["val_metric"] = row["val_accuracy"] if metric == "accuracy" else row["val_loss"]
    return row


def _config_dict(config: TrainConfig) -> dict:
    """The training configuration as it enters the store key (``standardize`` only when on, so the keys of
    stores written before it existed still match)."""
    out = dataclasses.asdict(config)
    if not config.standardize:
        out.pop("standardize")
    out["dtype"] = str(config.dtype)
    if config.no_decay_types is not None:
        out["no_decay_types"] = [f"{t.__module__}.{t.__qualname__}" for t in config.no_decay_types]
    return out


def _fingerprint(*arrays: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        a = a.detach().cpu().contiguous()
        digest.update(str((tuple(a.shape), str(a.dtype))).encode())
        digest.update(a.numpy().tobytes())
    return digest.hexdigest()


def _check_seeds(seed) -> list[int]:
    """A non-empty list of distinct seeds in ``[0, MAX_SEED]`` from one seed or a sequence."""
    values = list(seed) if isinstance(seed, (list, tuple, range, np.ndarray)) else [seed]
    values = [check_int("seed", int(s) if isinstance(s, np.integer) else s, low=0, high=MAX_SEED) for s in values]
    if not values:
        raise InputError("seed must hold at least one value, got an empty sequence")
    if len(set(values)) != len(values):
        raise InputError(f"seed must not repeat values (a repeated seed trains the same member twice and counts it "
                         f"twice), got {values!r}")
    return values


def _check_values_fit(X: torch.Tensor, y: torch.Tensor, eval_sets: Mapping, dtype: torch.dtype,
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


def _resolve_data(data, test_data):
    """``(X, y, eval_sets, spec)`` for a dataset name, an (X, y) pair or a torch Dataset."""
    eval_sets = {}
    if isinstance(data, str):
        from decaylab import data as datasets

        loaded = datasets.load(data, seed=0)
        rows = loaded.train_and_val()
        X, y = rows.X, rows.y
        eval_sets["test"] = (loaded.test.X, loaded.test.y)
        spec = {"dataset": data, "rows": _fingerprint(X, y)}
    else:
        X, y = _as_xy("data", data)
        spec = {"rows": _fingerprint(X, y)}
    if test_data is not None:
        eval_sets["test"] = _as_xy("test_data", test_data)
        spec["test"] = _fingerprint(*eval_sets["test"])
    return X, y, eval_sets, spec


def _resolve_model(model, X, y, classification: bool, hidden, model_key, keyed: bool = False):
    """``(factory, spec)``: a built-in name or a user factory (its spec names it and its parameter shapes)."""
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
    _check_forward(probe, name, X, y, classification)
    shapes = {n: list(p.shape) for n, p in probe.named_parameters()}
    return model, {"factory": name, "parameters": shapes}


def _check_forward(probe: nn.Module, name: str, X: torch.Tensor, y: torch.Tensor, classification: bool) -> None:
    """The user's model runs on two rows of the data and returns what the loss needs — ``(rows, classes)``
    logits covering every class in ``y``, or ``(rows, targets per row)`` for mse — else an :class:`InputError`
    saying so before anything trains (not a torch error from deep inside a training step)."""
    rows = X[:2].to(torch.get_default_dtype()) if X.is_floating_point() else X[:2]
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
            raise InputError(f"model {name!r} returns shape {tuple(out.shape)} for {len(rows)} rows; cross-entropy "
                             f"needs ({len(rows)}, classes) logits with at least {classes} classes (y holds 0…"
                             f"{classes - 1})")
        return
    per_row = int(np.prod(y.shape[1:]))
    if out.dim() != 2 or tuple(out.shape) != (len(rows), per_row):
        raise InputError(f"model {name!r} returns shape {tuple(out.shape)} for {len(rows)} rows; mse needs "
                         f"({len(rows)}, {per_row}): one output per target value of a row")


class _BuiltinFactory:
    """``MLP(n_in, n_out, hidden)`` from :mod:`decaylab.models` (picklable, unlike a lambda)."""

    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...]):
        self.n_in, self.n_out, self.hidden = n_in, n_out, hidden

    def __call__(self) -> nn.Module:
        from decaylab.models import MLP

        return MLP(self.n_in, self.n_out, self.hidden)
