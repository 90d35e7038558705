"""``decaylab.sweep(..., method="marglik")``: choose λ by the Laplace evidence in one training run per seed.

Instead of training every (λ, fold) member, each (lr, seed) trains one model on all rows with
Immer et al.'s (2021) online evidence maximization (:func:`decaylab.evidence.online.train_marglik`):
the prior precision — one per decayed layer with ``per_layer=True`` (default), else one — is
refitted from the Laplace evidence every ``marglik_frequency`` epochs and fed back as coupled
``weight_decay``. The prior is a coupled penalty, so the update is Adam (the default here) or SGD with
coupled decay; a decoupled optimizer is refused, saying why. What decays (``decay_biases`` and the
overrides: one :class:`~decaylab.groups.DecayRule`) decides the prior groups and so the tensors the trainer
decays. The method takes exactly the options it uses (:data:`decaylab.sweeps.options.USES`) and refuses
any other the caller gave, in one line.

The result is a :class:`MarglikSweepResult` — a :class:`~decaylab.sweeps.result.SweepResult` whose
table has one row per (lr, seed) with ``lambda`` the single global λ that maximizes the evidence of
the final model (a ``per_layer=False`` refit, so the number is comparable with a grid's λ),
``val_metric`` the final log evidence (metric ``"evidence"``, higher is better; there are no
validation rows, so ``val_loss``/``val_accuracy`` are empty), plus ``evidence_curve`` (the evidence
and λ per layer at every update) and ``layer_weight_decay`` (the final λ per layer and seed).
With a ``store`` each finished run is written to the results store as it finishes (keyed by its
(lr, seed) and the whole configuration, ``method: "marglik"`` included, so the file can be shared
with grid sweeps); a rerun reads finished runs back instead of training them again, and Ctrl-C
keeps them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from decaylab._checks import InputError
from decaylab._isolation import isolated
from decaylab._progress import progress_bar
from decaylab.batched.standardization import Standardization
from decaylab.optim.options import OPTIONS
from decaylab.runspec import DECAY_OPTIONS, TrainSpec, decay_rule
from decaylab.sweeps.grid import check_grid
from decaylab.sweeps.inputs import resolve_data, resolve_model
from decaylab.sweeps.interrupt import SweepInterrupted
from decaylab.sweeps.keys import STORE_FORMAT, changed, decay_key
from decaylab.sweeps.options import checked
from decaylab.sweeps.result import SweepResult
from decaylab.sweeps.select import summarize
from decaylab.sweeps.store import ResultStore, config_key, plain_json
from decaylab.train.devices import resolve_device

COUPLED = ("adam", "sgd")


@dataclass
class MarglikSweepResult(SweepResult):
    """A :class:`SweepResult` from the evidence, with the evidence curve and the per-layer λ."""

    evidence_curve: list[dict] = field(default_factory=list)
    layer_weight_decay: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(plain_json({"method": "marglik", "lambda_1se": None, "evidence_curve": self.evidence_curve,
                               "layer_weight_decay": self.layer_weight_decay}))
        return out

    def plot(self, ax=None):
        """Two panels: the log evidence over training, and λ per layer over training (log scale)."""
        from decaylab._figures import new_figure

        fig, (ax_ev, ax_wd) = new_figure(9.6, 3.8, extra="sweep", feature="plotting an evidence curve", layout=None,
                                         ncols=2)
        runs = sorted({(c["lr"], c["seed"]) for c in self.evidence_curve})
        for lr, seed in runs:
            rows = [c for c in self.evidence_curve if (c["lr"], c["seed"]) == (lr, seed)]
            label = f"seed {seed}" + (f", lr {lr:g}" if len({r[0] for r in runs}) > 1 else "")
            ax_ev.plot([r["epoch"] for r in rows], [r["log_evidence"] for r in rows], marker="o", ms=3, label=label)
            for layer in rows[0]["weight_decay"]:
                ax_wd.plot([r["epoch"] for r in rows], [r["weight_decay"][layer] for r in rows], marker=".",
                           label=f"{layer} ({label})" if len(runs) > 1 else layer)
        ax_ev.set(xlabel="epoch", ylabel="log evidence (Laplace)", title="Evidence during training")
        ax_wd.set(xlabel="epoch", ylabel="λ (coupled weight_decay)", yscale="log", title="λ per layer")
        if self.best_lambda is not None:
            ax_wd.axhline(self.best_lambda, color="k", ls=":", lw=1, label=f"global λ = {self.best_lambda:.3g}")
        for a in (ax_ev, ax_wd):
            a.grid(alpha=0.3)
            a.legend(fontsize=7)
        fig.tight_layout()
        return fig


def _factory_embeds_ids(model) -> bool:
    """Whether a user's factory builds a model with an embedding (a built-in name, or anything but a factory,
    is left to the model checks: no)."""
    from torch import nn

    from decaylab.evidence.api import _embeds_ids

    if isinstance(model, (str, nn.Module)) or not callable(model):
        return False
    probe = model()
    return isinstance(probe, nn.Module) and _embeds_ids(probe)


def marglik_sweep(model, data, lambdas, values: Mapping, given=frozenset()) -> MarglikSweepResult:
    """One evidence-trained model per (lr, seed) (module docstring), on the option values of
    :func:`decaylab.sweep` by name (``given``: the names the caller gave). ``lambdas``: ``None`` (start at
    δ = 1, i.e. λ = 1/N) or one starting λ. ``store``: a results store (:mod:`decaylab.sweeps.store`) — each
    finished run is written as it finishes and read back instead of retrained; Ctrl-C raises
    :class:`~decaylab.sweeps.interrupt.SweepInterrupted` after the finished runs are stored. ``standardize``: the
    features standardized with the statistics of the runs' training rows — all rows
    (:class:`~decaylab.batched.standardization.Standardization`), applied to ``test_data`` too."""
    start = time.perf_counter()
    optimizer = _coupled_optimizer(values["optimizer"] if "optimizer" in given else "adam")
    if "device" in given and resolve_device(values["device"]).type != "cpu":
        raise InputError(f"device={values['device']!r} does not apply to method='marglik': the Laplace evidence "
                         "runs on the CPU (leave device out, or give 'cpu')")
    own = checked(values, ("hessian", "per_layer", "marglik_frequency", "momentum", "progress", "store"))
    hessian, per_layer, frequency, momentum, progress, store = own.values()
    run = TrainSpec.from_options(values, device="cpu")
    decay_values = checked(values, DECAY_OPTIONS)
    rule = decay_rule(**decay_values)
    group_options = {f.name: getattr(rule, f.name) for f in fields(rule)}
    start_lambda = None
    if lambdas is not None:
        lambda_values = check_grid("lambdas", lambdas, low=0.0, low_open=True)
        if len(lambda_values) != 1:
            raise InputError(f"lambdas must be one starting λ (or None) for method='marglik', which learns λ; "
                             f"got {len(lambda_values)} values")
        start_lambda = lambda_values[0]
    lrs = check_grid("lr", values["lr"], low_open=True)
    X, y, eval_sets, data_spec = resolve_data(data, values["test_data"])
    loss, dtype = run.resolved_loss(y), run.dtype
    if not X.is_floating_point() and not _factory_embeds_ids(model):    # token ids stay integers, as in marglik()
        X = X.to(dtype)
    if values["standardize"]:
        scaler = Standardization.fit(X)
        X = scaler.apply(X).to(dtype)
        eval_sets = {name: (scaler.apply(torch.as_tensor(ex)).to(dtype), ey) for name, (ex, ey) in eval_sets.items()}
    factory, model_spec = resolve_model(model, X, y, loss == "cross_entropy", values["hidden"], values["model_key"],
                                        keyed=store is not None, dtype=dtype)
    X = X.to(dtype) if X.is_floating_point() else X
    y = y.to(dtype) if torch.is_floating_point(y) else y
    shown = decay_key(decay_values)
    # format 2's key: "requested_optimizer" is the optimizer argument as given, 'adamw' when left out (then the
    # default, trained as Adam as now); what decays enters only where it is not the default
    config = {"method": "marglik", "format": STORE_FORMAT, "model": model_spec, "data": data_spec,
              "hessian": hessian, "per_layer": per_layer, "marglik_frequency": frequency,
              "train": {"optimizer": optimizer, "requested_optimizer": values["optimizer"], "momentum": momentum,
                        "epochs": run.epochs, "batch_size": run.batch_size, "loss": loss, "dtype": str(dtype),
                        "start_lambda": start_lambda, **({"standardize": True} if values["standardize"] else {}),
                        **{name: shown[name] for name in changed(DECAY_OPTIONS.values(), decay_values)}}}
    runs = [(lr_value, s) for lr_value in lrs for s in run.seeds]
    keys = [config_key(config, {"lr": lr_value, "seed": s}) for lr_value, s in runs]
    sweep_key = config_key(config)
    finished: dict[str, dict] = {}
    db = ResultStore(store) if store is not None else None
    try:
        if db is not None:
            finished.update({k: v["result"] for k, v in db.get(keys).items()})
        pending = [(k, one) for k, one in zip(keys, runs) if k not in finished]
        if db is not None:
            db.refuse_missing(len(pending), len(runs), "runs")
        bar = progress_bar(total=len(pending), desc="marglik", unit="run", enabled=progress and bool(pending))
        trained = 0
        with bar:
            for key, (lr_value, s) in pending:
                try:
                    record = _train_one(factory, X, y, eval_sets, dtype, lr_value, s, key, hessian=hessian,
                                        per_layer=per_layer, loss=loss, epochs=run.epochs, batch_size=run.batch_size,
                                        optimizer=optimizer, momentum=momentum, start_lambda=start_lambda,
                                        frequency=frequency, group_options=group_options)
                except KeyboardInterrupt:
                    raise SweepInterrupted(trained, len(pending), store, unit="runs") from None
                if db is not None:
                    db.put(key, sweep_key, {"lr": lr_value, "seed": s, "sweep": config}, record)
                finished[key] = plain_json(record)
                trained += 1
                bar.update(1)
    finally:
        if db is not None:
            db.close()
    fresh = {k for k, _ in pending}
    table, curve, layers = [], [], []
    for key in keys:
        record = finished[key]
        table.append({**{k: math.nan if v is None else v for k, v in record["row"].items()},
                      "from_store": key not in fresh})
        curve.extend(record["curve"])
        layers.append(record["layers"])
    summary = summarize(table)
    usable = [r for r in table if math.isfinite(r["val_metric"])]        # none if every run diverged
    best_row = max(usable, key=lambda r: r["val_metric"]) if usable else {"lambda": None, "lr": None}
    return MarglikSweepResult(table=table, summary=summary, best_lambda=best_row["lambda"], best_lr=best_row["lr"],
                              lambda_1se=None, metric="evidence", config=config, engine="marglik",
                              wall_time=time.perf_counter() - start, trained=trained, evidence_curve=curve,
                              layer_weight_decay=layers)


def _coupled_optimizer(optimizer) -> str:
    """``optimizer`` if it is coupled (``adam``, ``sgd``), else the one-line refusal saying why."""
    OPTIONS["optimizer"].check(optimizer)
    if optimizer not in COUPLED:
        raise InputError(f"optimizer={optimizer!r} does not apply to method='marglik': the evidence's λ is a "
                         "coupled prior precision (the penalty (λ/2)·‖w‖², gradient λ·w), which a decoupled "
                         "optimizer's λ (w ← w − s_t·λ·w) is not; use optimizer='adam' (the default here) or 'sgd'")
    return optimizer


def _train_one(factory, X, y, eval_sets, dtype, lr_value: float, seed: int, key: str, *, hessian, per_layer, loss,
               epochs, batch_size, optimizer, momentum, start_lambda, frequency, group_options) -> dict:
    """One evidence-trained run: its table row, its evidence curve and its final λ per layer (JSON-able). A run
    that diverged (:attr:`OnlineResult.diverged <decaylab.evidence.online.OnlineResult>`) is a ``diverged``
    row with NaN λ, losses and evidence, as a diverged grid member."""
    from decaylab.evidence.online import train_marglik

    with isolated(seed):                 # the initial weights and dropout; the caller's generator is kept
        net = factory().to(dtype)
        t0 = time.perf_counter()
        run = train_marglik(net, (X, y), hessian=hessian, per_layer=per_layer, loss=loss, epochs=epochs,
                            batch_size=batch_size, lr=lr_value, optimizer=optimizer, momentum=momentum,
                            weight_decay=start_lambda, frequency=frequency, seed=seed, eval_sets=eval_sets,
                            **group_options)
    nan = math.nan
    single = run.final if run.diverged or not per_layer else run.final.refit(
        net, per_layer=False, **group_options,
        weight_decay=math.exp(sum(map(math.log, run.weight_decay.values())) / len(run.weight_decay)))
    wall = time.perf_counter() - t0
    test = run.evals.get("test", {})
    norm = nan if run.diverged else math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in net.parameters()))
    evidence, global_evidence = (nan, nan) if run.diverged else (run.final.log_evidence, single.log_evidence)
    row = {"lambda": nan if run.diverged else single.lambda_, "lr": lr_value, "seed": seed, "fold": -1,
           "train_loss": run.train_loss, "val_loss": nan, "val_accuracy": nan, "val_metric": evidence,
           "weight_norm": norm, "epochs_run": run.epochs_run, "steps": run.steps, "diverged": run.diverged,
           "wall_time": wall, "test_loss": test.get("loss", nan), "test_accuracy": test.get("accuracy", nan),
           "key": key, "log_evidence": evidence, "log_evidence_global": global_evidence}
    return {"row": row, "curve": [{"lr": lr_value, "seed": seed, **h} for h in run.history],
            "layers": {"lr": lr_value, "seed": seed, "weight_decay": {} if run.diverged else dict(run.weight_decay),
                       "sigma": None if run.diverged else run.final.sigma}}
