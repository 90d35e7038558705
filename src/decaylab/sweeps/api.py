"""``decaylab.sweep``: choose λ by cross-validating a grid (λ × lr × seed × fold) or by the Laplace evidence.

Its keyword options are declared once in :mod:`decaylab.sweeps.options` (the signature's defaults are those
declarations); a method accepts exactly the options it uses and refuses any other the caller gave, in one
line. The grid method is here; the evidence method is :mod:`decaylab.sweeps.marglik`; the inputs both
resolve (data, model, seeds) are :mod:`decaylab.sweeps.inputs`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from decaylab._checks import InputError
from decaylab._isolation import isolated
from decaylab._options import given_values
from decaylab._progress import progress_bar
from decaylab.batched.planning import plan_sweep
from decaylab.batched.trainer import Member, MemberResult, TrainConfig, check_batchable
from decaylab.optim.options import OPTIMIZER_OPTIONS, refuse_inapplicable
from decaylab.optim.spec import OptimizerSpec
from decaylab.runspec import DECAY_OPTIONS, TrainSpec, decay_rule
from decaylab.sweeps.engines import RUNNERS, TrainingJob
from decaylab.sweeps.grid import check_grid, fold_splits, grid_points
from decaylab.sweeps.inputs import check_values_fit, resolve_data, resolve_model
from decaylab.sweeps.interrupt import SweepInterrupted
from decaylab.sweeps.keys import STORE_FORMAT, train_key
from decaylab.sweeps.marglik import marglik_sweep
from decaylab.sweeps.options import DEFAULTS as D
from decaylab.sweeps.options import SWEEP_OPTIONS, checked, refuse_unused
from decaylab.sweeps.result import SweepResult
from decaylab.sweeps.select import HIGHER_IS_BETTER, choice_warnings, choose, summarize
from decaylab.sweeps.store import ResultStore, config_key
from decaylab.train.devices import resolve_device

__all__ = ["sweep", "SweepInterrupted", "STORE_FORMAT", "MAX_MEMBERS"]

MAX_MEMBERS = 100_000     # members (λ × lr × seed × fold) in one sweep


@isolated()              # nothing a sweep runs changes the caller's global generator or thread count
def sweep(model: str | Callable[[], nn.Module], data: Any, lambdas, *, lr: float | Sequence[float] | str = D.lr,
          seed: int | Sequence[int] = D.seed, folds: int | None = D.folds, holdout: float | None = D.holdout,
          optimizer: str = D.optimizer, decay_scaling: str = D.decay_scaling, momentum: float = D.momentum,
          betas: tuple[float, float] = D.betas, eps: float = D.eps, lr_schedule: str = D.lr_schedule,
          epochs: int = D.epochs, batch_size: int = D.batch_size, decay_biases: bool = D.decay_biases,
          loss: str | None = D.loss, metric: str | None = D.metric, engine: str = D.engine, store: str | None = D.store,
          chunk_size: int | None = D.chunk_size, split_seed: int = D.split_seed, dtype: torch.dtype = D.dtype,
          hidden: Sequence[int] = D.hidden, test_data: Any = D.test_data, model_key: str | None = D.model_key,
          workers: int = D.workers, dampening: float = D.dampening, nesterov: bool = D.nesterov,
          amsgrad: bool = D.amsgrad, cautious: bool = D.cautious, l1_decay: float = D.l1_decay,
          no_decay_types: Sequence[type] | None = D.no_decay_types, no_decay_names: Sequence[str] = D.no_decay_names,
          decay_names: Sequence[str] = D.decay_names, decay_embeddings: bool = D.decay_embeddings,
          progress: bool = D.progress, device=D.device, method: str = D.method, hessian: str = D.hessian,
          per_layer: bool = D.per_layer, marglik_frequency: int = D.marglik_frequency, ns_steps: int = D.ns_steps,
          ns_coefficients: tuple[float, float, float] = D.ns_coefficients, adjust_lr_fn: str | None = D.adjust_lr_fn,
          ns_dtype: torch.dtype = D.ns_dtype, flatten: bool = D.flatten, muon_names: Sequence[str] = D.muon_names,
          adamw_names: Sequence[str] = D.adamw_names, head_names: Sequence[str] | None = D.head_names,
          adamw_lr_ratio: float = D.adamw_lr_ratio, adamw_betas: tuple[float, float] = D.adamw_betas,
          adamw_eps: float = D.adamw_eps, adamw_weight_decay: float | None = D.adamw_weight_decay,
          standardize: bool = D.standardize) -> SweepResult:
    """Train every (λ, lr, seed, fold) member, score λ by cross-validation, choose λ (``method="grid"``); or
    learn λ from the Laplace evidence in one run per (lr, seed) (``method="marglik"``).

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
            the optimizer of every member, with every option its decaylab class takes (an
            :class:`decaylab.optim.spec.OptimizerSpec`, checked by the classes' own rules; λ is its
            ``weight_decay``: coupled ``g + λw`` for sgd/adam, decoupled ``w − s_t λ w`` for sgdw/adamw,
            muon and lion). An option the optimizer does not take is refused in one line.
        ns_steps, ns_coefficients, adjust_lr_fn, ns_dtype, flatten, muon_names, adamw_names, head_names,
            adamw_lr_ratio, adamw_betas, adamw_eps, adamw_weight_decay: ``optimizer="muon"`` only —
            :class:`decaylab.optim.MuonAdamW`, Muon (with ``momentum``, ``nesterov``, ``eps``: Muon's own
            defaults 0.95, True, 1e-7 when left out) for the parameters :class:`decaylab.optim.MuonRule` gives
            it and AdamW for the rest, at ``adamw_lr_ratio`` × the member's lr; the member's λ decays the Muon
            matrices, and the companion's parameters too unless ``adamw_weight_decay`` sets one λ for them
            (:mod:`decaylab.optim.options`). ``optimizer="lion"``: :class:`decaylab.optim.Lion` with ``betas``
            (its default 0.9, 0.99).
        no_decay_types, no_decay_names, decay_names, decay_embeddings, decay_biases: what decays — one
            :class:`decaylab.groups.DecayRule` with these overrides (``decay_biases=True``: everything,
            :meth:`~decaylab.groups.DecayRule.everything`).
        lr_schedule, epochs, batch_size, dtype, device: the run (:class:`decaylab.runspec.TrainSpec`;
            ``device=None``: CUDA when available, else the CPU).
        loss: ``"cross_entropy"`` (default for integer targets) or ``"mse"`` (float targets).
        metric: what chooses λ: ``"accuracy"`` (default for classification) or ``"loss"``.
        engine: ``"batched"`` (all members stacked), ``"sequential"`` (one at a time, any model),
            ``"ray"`` (Ray Tune trials: batched chunks, or single members for a model the batched trainer
            cannot take), or ``"auto"`` (sequential for a model the batched trainer cannot take; batched
            for a plain MLP; else whichever is faster in a short timed probe, :mod:`decaylab.batched.planning`).
        store: path of a SQLite results file; finished members are written as they finish and
            reused on the next call with the same configuration (resume; a changed grid trains
            only what is new). ``None``: keep results in memory only.
        chunk_size: members stacked per batched chunk (``None``: as many as fit the memory budget of
            :mod:`decaylab.batched.chunking`; a larger value is split to fit; the store is written after each
            chunk). ``result.path`` says in one line which path the model took (fast path, vmap,
            sequential), why, and the chunks.
        split_seed: seed of the fold split (the same for every member).
        test_data: extra ``(X, y)`` to evaluate every member on (reported as ``test_*``).
        model_key: a name for a factory ``model`` used in store keys instead of its qualified name.
        workers: worker processes for the batched and sequential engines (1: train in this
            process); each gets ``cpu_count // workers`` torch threads and an equal share of members.
            Workers die with this process, and ignore Ctrl-C (this process stops them).
        progress: show a progress bar of finished members on stderr.
        method: ``"grid"`` (cross-validate the λ grid) or ``"marglik"``: one run per (lr, seed) that learns λ
            (per layer) from the Laplace evidence — :mod:`decaylab.sweeps.marglik`, with ``hessian``,
            ``per_layer`` and ``marglik_frequency``; ``lambdas`` is then ``None`` or one starting λ, the
            optimizer defaults to ``"adam"`` (the evidence's λ is a coupled prior precision: ``"sgd"`` is the
            other choice, a decoupled one is refused), and ``store`` keeps each finished (lr, seed) run.
        standardize: standardize every member's features with the mean and standard deviation of its own
            training rows (float64 statistics; constant features to 0), applied to its validation rows and to
            ``test_data`` with the same member statistics (:mod:`decaylab.batched.standardization`): no
            validation row takes part. With ``method="marglik"`` a run's training rows are all rows.
    Returns:
        :class:`~decaylab.sweeps.result.SweepResult`.
    Raises:
        SweepInterrupted: (a ``KeyboardInterrupt``) on Ctrl-C, after every finished member is stored;
            the same call resumes from the store.

    Refused: an option the method does not use (the evidence method's: ``lr``, ``seed``, ``optimizer``,
    ``momentum``, ``epochs``, ``batch_size``, ``loss``, ``dtype``, ``device`` (the CPU), ``hidden``,
    ``test_data``, ``model_key``, ``store``, ``progress``, what decays, ``hessian``, ``per_layer``,
    ``marglik_frequency``; the grid's: all but the last three), repeated λ, lr or seeds (they would be counted
    twice), a grid over ``MAX_MEMBERS`` members, a single-class target, values that overflow ``dtype``, and —
    with a ``store`` — a factory without a stable name (a lambda or a local function) and no ``model_key``.

    Member identity (the store key, :mod:`decaylab.sweeps.keys`): SHA-256 of the member's (λ, lr, seed, fold)
    together with the sweep configuration — model spec, a fingerprint of the data rows, folds/holdout, split
    seed, the optimizer, run and what-decays specifications — but not the engine, whose results are
    interchangeable. A factory's spec is its qualified name and parameter shapes: pass a new ``model_key`` when
    its code changes in a way those do not show.
    """
    arguments = dict(locals())
    values, given = given_values({name: arguments[name] for name in SWEEP_OPTIONS})
    method = SWEEP_OPTIONS["method"].check(values["method"])
    refuse_unused(method, values, given)
    if method == "marglik":
        return marglik_sweep(model, data, lambdas, values, given)
    return _grid_sweep(model, data, lambdas, values, given)


def _grid_sweep(model, data, lambdas, values: Mapping, given) -> SweepResult:
    """The grid method of :func:`sweep` (its docstring), on the option values by name; ``given``: the names the
    caller gave (an optimizer option left out takes the optimizer's own default)."""
    start = time.perf_counter()
    lambdas = check_grid("lambdas", lambdas)
    lrs = check_grid("lr", values["lr"], low_open=True)
    run = TrainSpec.from_options(values)
    sweep_options = checked(values, ("engine", "chunk_size", "workers", "split_seed", "folds", "holdout",
                                     "metric", "progress", "store"))
    engine, chunk_size, workers, split_seed, folds, holdout, metric, progress, store = sweep_options.values()
    device = resolve_device(run.device)
    refuse_inapplicable(values["optimizer"], values, given)
    optimizer = OptimizerSpec.from_options(values["optimizer"], **{o.name: values[o.name] for o in OPTIMIZER_OPTIONS
                                                                   if o.name in given and o.name != "optimizer"})
    decay_values = checked(values, DECAY_OPTIONS)
    decay = decay_rule(**decay_values)
    if holdout is not None:
        folds = None

    X, y, eval_sets, data_spec = resolve_data(data, values["test_data"])
    config = TrainConfig(optimizer=optimizer, decay=decay, **run.shared(y))
    classification = config.loss == "cross_entropy"
    check_values_fit(X, y, eval_sets, config.dtype, features=not config.standardize)
    if classification and len(torch.unique(y)) < 2:
        raise InputError(f"data has a single class ({int(y[0])}) in y: every member would score 1.0 at every λ; "
                         "cross-validating λ needs at least 2 classes")
    metric = SWEEP_OPTIONS["metric"].check(metric if metric is not None else
                                           ("accuracy" if classification else "loss"))
    if metric == "accuracy" and not classification:
        raise InputError(f"metric='accuracy' needs a classification loss, got loss={config.loss!r}")
    model_factory, model_spec = resolve_model(model, X, y, classification, values["hidden"], values["model_key"],
                                              keyed=store is not None, dtype=config.dtype)
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
                    "holdout": holdout, "split_seed": split_seed,
                    "train": train_key(config, {**values, **decay_values})}
    sweep_key = config_key(sweep_config)
    n_members = len(lambdas) * len(lrs) * len(run.seeds) * len(splits)
    if n_members > MAX_MEMBERS:
        raise InputError(f"the grid has {n_members:,} members ({len(lambdas)} λ × {len(lrs)} lr × {len(run.seeds)} "
                         f"seeds × {len(splits)} folds); at most {MAX_MEMBERS:,} are allowed in one sweep: use a "
                         "coarser grid or split it into several sweeps on one store")
    points = grid_points(lambdas, lrs, run.seeds, len(splits))
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
        if db is not None:
            db.refuse_missing(len(pending), len(members), "members")

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
    steps = max((int(r["steps"]) for r in table if best is not None and r["lr"] == best["lr"]
                 and isinstance(r["steps"], (int, float)) and math.isfinite(r["steps"])), default=None)
    notes = choice_warnings(summary, best, HIGHER_IS_BETTER[metric], sweep_config["train"], steps)
    return SweepResult(table=table, summary=summary, best_lambda=None if best is None else best["lambda"],
                       best_lr=None if best is None else best["lr"], lambda_1se=lambda_1se, metric=metric,
                       config=sweep_config, engine=engine, wall_time=time.perf_counter() - start,
                       trained=len(fresh), path=path, warnings=notes)



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
