"""decaylab.sweep: grids, folds, the 1-SE rule, engines agreeing, results, and bad input."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import decaylab
from decaylab import ridge_path
from decaylab.batched.trainer import Member, TrainConfig, train_batched
from decaylab.sweeps.grid import fold_splits, parse_grid
from decaylab.sweeps.select import choose, summarize


def moons(n=160):
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=0.25, random_state=1)
    return X, y


# -- grids and folds -------------------------------------------------------------------------

def test_parse_grid():
    grid = parse_grid("1e-6:1e1:16")
    assert len(grid) == 16 and grid[0] == 1e-6 and grid[-1] == 10.0
    assert math.isclose(grid[6], 10 ** (-6 + 6 * 7 / 15), rel_tol=1e-11)
    assert all(b / a == pytest.approx(10 ** (7 / 15)) for a, b in zip(grid, grid[1:]))
    assert parse_grid("0, 1e-3,0.1") == [0.0, 1e-3, 0.1]
    assert parse_grid("1e-3:1e-3:1") == [1e-3]


@pytest.mark.parametrize("text", ["1e-6:1e1", "a:b:3", "0:1:4", "1e-6:1e1:0", "1,x", "-1,2", "1e-3:1:1"])
def test_parse_grid_rejects(text):
    with pytest.raises(ValueError, match="grid"):
        parse_grid(text)


def test_folds_partition_rows_and_stratify():
    X, y = moons(101)
    splits = fold_splits(y, folds=5, holdout=None, classification=True, split_seed=0)
    assert len(splits) == 5
    val = np.concatenate([v for _, v in splits])
    assert sorted(val) == list(range(101))                      # every row validated exactly once
    for train, v in splits:
        assert not set(train) & set(v) and len(train) + len(v) == 101
        assert abs(y[v].mean() - y.mean()) < 0.06               # stratified
    (train, v), = fold_splits(y, folds=None, holdout=0.25, classification=True, split_seed=0)
    assert len(v) == 26 and not set(train) & set(v)
    with pytest.raises(ValueError, match=r"folds must be at most the number of samples \(101\), got 200"):
        fold_splits(y, folds=200, holdout=None, classification=True, split_seed=0)


# -- the one-standard-error rule -----------------------------------------------------------------

def test_one_standard_error_rule_on_hand_made_curve():
    # fold accuracies per λ: best mean at λ=1e-3 (0.90, se = 0.02); λ=1e-2 (0.885) is within one se,
    # λ=1e-1 (0.85) is not; so best = 1e-3 and λ_1se = 1e-2.
    folds = {1e-4: [0.86, 0.88, 0.84, 0.86], 1e-3: [0.94, 0.90, 0.86, 0.90],
             1e-2: [0.885, 0.885, 0.885, 0.885], 1e-1: [0.85, 0.85, 0.85, 0.85]}
    rows = [{"lr": 0.1, "lambda": lam, "val_metric": acc, "diverged": False}
            for lam, accs in folds.items() for acc in accs]
    summary = summarize(rows)
    best_row = next(s for s in summary if s["lambda"] == 1e-3)
    assert best_row["mean"] == pytest.approx(0.90)
    assert best_row["se"] == pytest.approx(np.std([0.94, 0.90, 0.86, 0.90], ddof=1) / 2)
    best, lam_1se = choose(summary, higher_is_better=True)
    assert best["lambda"] == 1e-3 and lam_1se == 1e-2
    # as a loss (lower is better) the same numbers pick the smallest mean and go up within one se
    losses = [{**r, "val_metric": 1 - r["val_metric"]} for r in rows]
    best, lam_1se = choose(summarize(losses), higher_is_better=False)
    assert best["lambda"] == 1e-3 and lam_1se == 1e-2
    # a λ with a diverged member is never chosen
    rows[4] = {**rows[4], "val_metric": float("nan"), "diverged": True}
    best, lam_1se = choose(summarize(rows), higher_is_better=True)
    assert best["lambda"] == 1e-2 and lam_1se == 1e-2


# -- engines agree, results are complete ------------------------------------------------------

@pytest.mark.slow  # ≥ 2 s: 72 members, or worker processes
def test_batched_and_sequential_sweeps_agree():
    kwargs = dict(folds=3, epochs=8, batch_size=16, hidden=(8,), lr=[0.01, 0.03], seed=[0, 1],
                  optimizer="sgdw", momentum=0.9, dtype=torch.float64)
    lambdas = [0.0, 1e-3, 1e-1]
    batched = decaylab.sweep("mlp", moons(), lambdas, engine="batched", **kwargs)
    sequential = decaylab.sweep("mlp", moons(), lambdas, engine="sequential", **kwargs)
    assert len(batched.table) == 3 * 2 * 2 * 3
    for a, b in zip(batched.table, sequential.table):
        assert (a["lambda"], a["lr"], a["seed"], a["fold"]) == (b["lambda"], b["lr"], b["seed"], b["fold"])
        assert a["key"] == b["key"]                              # the engine is not part of a member's identity
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-9)
        assert a["val_accuracy"] == b["val_accuracy"]
        assert a["weight_norm"] == pytest.approx(b["weight_norm"], rel=1e-9)
    assert (batched.best_lambda, batched.best_lr, batched.lambda_1se) == \
        (sequential.best_lambda, sequential.best_lr, sequential.lambda_1se)
    assert len(batched.summary) == 6 and all(s["n"] == 6 for s in batched.summary)
    # every row of the data is validated once per (λ, lr, seed): the folds partition the data
    per_config = {}
    for row in batched.table:
        per_config.setdefault((row["lambda"], row["lr"], row["seed"]), []).append(row["fold"])
    assert all(sorted(f) == [0, 1, 2] for f in per_config.values())


@pytest.mark.slow
def test_float32_full_runs_agree_on_validation_accuracy():
    # float32 rounding differs between stacked and lone runs, so over a full run compare what a user
    # reads: each member's final validation accuracy, within 0.5 points
    kwargs = dict(folds=2, epochs=40, batch_size=16, hidden=(16,), lr=0.01, optimizer="adamw")
    batched = decaylab.sweep("mlp", moons(), [0.0, 1e-2, 1.0], engine="batched", **kwargs)
    sequential = decaylab.sweep("mlp", moons(), [0.0, 1e-2, 1.0], engine="sequential", **kwargs)
    for a, b in zip(batched.table, sequential.table):
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 0.005
    assert batched.best_lambda == sequential.best_lambda


@pytest.mark.slow  # ≥ 2 s: 72 members, or worker processes
def test_worker_processes_give_the_same_results():
    kwargs = dict(folds=2, epochs=3, batch_size=16, hidden=(8,), lr=0.01, dtype=torch.float64)
    alone = decaylab.sweep("mlp", moons(), [0.0, 1e-2, 1.0], engine="batched", **kwargs)
    pooled = decaylab.sweep("mlp", moons(), [0.0, 1e-2, 1.0], engine="batched", workers=2, **kwargs)
    assert [r["key"] for r in pooled.table] == [r["key"] for r in alone.table]
    assert [r["val_loss"] for r in pooled.table] == pytest.approx([r["val_loss"] for r in alone.table], abs=1e-12)
    assert pooled.trained == 6
    assert "2 chunks of ≤ 3 members" in pooled.path and "2 worker processes" in pooled.path


def test_builtin_dataset_custom_factory_and_files(tmp_path):
    def factory():
        return nn.Sequential(nn.Linear(30, 8), nn.ReLU(), nn.Linear(8, 2))

    result = decaylab.sweep(factory, "breast_cancer", "1e-4:1e-1:3", folds=2, epochs=3, batch_size=32, lr=1e-2)
    assert result.engine == "batched" and result.metric == "accuracy"
    assert [s["lambda"] for s in result.summary] == [1e-4, 0.00316227766017, 1e-1]
    best = max(result.summary, key=lambda s: s["mean"])
    assert result.best_lambda == best["lambda"]
    assert all(0.5 < r["test_accuracy"] <= 1 for r in result.table)      # the built-in test split is evaluated
    assert result.lambda_1se >= result.best_lambda
    csv_text = result.to_csv(tmp_path / "t.csv")
    assert csv_text.splitlines()[0].startswith("lambda,lr,seed,fold,train_loss")
    assert len(csv_text.splitlines()) == 1 + 6
    payload = json.loads(result.to_json(tmp_path / "r.json"))
    assert payload["best_lambda"] == result.best_lambda and len(payload["table"]) == 6
    png = result.plot_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_auto_engine_trains_unbatchable_models_one_at_a_time():
    def with_dropout():
        return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))

    result = decaylab.sweep(with_dropout, moons(), [1e-3, 1e-1], folds=2, epochs=2, batch_size=32, lr=1e-2)
    assert result.engine == "sequential" and len(result.table) == 4
    with pytest.raises(ValueError, match="Dropout.*use engine='sequential'"):
        decaylab.sweep(with_dropout, moons(), [1e-3], folds=2, epochs=1, engine="batched")


def _float64_net():
    return nn.Sequential(nn.Linear(2, 8, dtype=torch.float64), nn.ReLU(), nn.Linear(8, 2, dtype=torch.float64))


@pytest.mark.parametrize("method", ["grid", "marglik"])
def test_a_float64_model_is_checked_in_the_sweeps_dtype(method):
    grid = [1e-3, 1e-1] if method == "grid" else None
    extra = {"folds": 2} if method == "grid" else {}
    result = decaylab.sweep(_float64_net, moons(), grid, method=method, epochs=2, batch_size=32, lr=1e-2,
                            dtype=torch.float64, **extra)
    assert result.config["train"]["dtype"] == "torch.float64"


def test_regression_sweep_on_torch_dataset_chooses_by_loss():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(80, 4, generator=gen)
    y = X @ torch.tensor([1.0, -2.0, 0.0, 0.5]) + 0.1 * torch.randn(80, generator=gen)
    dataset = torch.utils.data.TensorDataset(X, y)
    result = decaylab.sweep("linear", dataset, [1e-4, 1e-1, 10.0], folds=4, epochs=20, batch_size=20,
                            lr=0.05, optimizer="adam")
    assert result.metric == "loss"
    assert result.best_lambda == 1e-4                    # heavy decay underfits a noiseless-ish linear target
    assert all(math.isnan(r["val_accuracy"]) for r in result.table)


def test_diverged_members_are_reported_not_dropped():
    result = decaylab.sweep("linear", (moons()[0], moons()[0][:, 0] * 3.0), [0.0, 1e-3], folds=2, epochs=3,
                            batch_size=40, lr=[1e-2, 1e60], optimizer="sgd", momentum=0.9, dtype=torch.float64)
    diverged = [r for r in result.table if r["diverged"]]
    assert len(diverged) == 4 and all(r["lr"] == 1e60 for r in diverged)
    assert result.n_diverged == 4 and len(result.table) == 8
    assert result.best_lr == 1e-2


@pytest.mark.slow
def test_gradient_descent_sweep_reaches_the_ridge_path():
    # Full-batch GD on the mean squared error with coupled decay wd converges to ridge with
    # sklearn alpha = n·wd/2 (penalty (wd/2)‖w‖² on (1/n)‖r‖²; the bias is not decayed).
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([1.5, -1.0, 0.5], dtype=torch.float64) + 0.3 + 0.2 * torch.randn(50, generator=gen,
                                                                                              dtype=torch.float64)
    wds = [1e-3, 0.1, 1.0]
    config = TrainConfig.from_options(optimizer="sgd", loss="mse", epochs=600, batch_size=50, dtype=torch.float64)
    results = train_batched(lambda: nn.Linear(3, 1), X, y, [Member(wd, 0.2, seed=0) for wd in wds], config,
                            keep_weights=True)
    path = ridge_path(X.numpy(), y.numpy(), [50 * wd / 2 for wd in wds])
    for i, r in enumerate(results):
        np.testing.assert_allclose(r.state_dict["weight"][0].numpy(), path.coef[i], atol=1e-8)
        assert float(r.state_dict["bias"][0]) == pytest.approx(path.intercept[i], abs=1e-8)


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(model=nn.Linear(2, 2)), TypeError, "model must be a built-in name"),
    (dict(model="resnet"), ValueError, "model must be one of 'mlp', 'linear'"),
    (dict(engine="spark"), ValueError, "engine must be one of"),
    (dict(lambdas=[-1.0]), ValueError, "lambdas must be in"),
    (dict(lambdas=[]), ValueError, "lambdas must hold at least one value"),
    (dict(lambdas="1e-3:1e-1"), ValueError, "lambdas must be START:STOP:COUNT"),
    (dict(folds=1000), ValueError, r"folds must be at most the number of samples \(160\)"),
    (dict(folds=1), ValueError, "folds must be an integer in"),
    (dict(metric="accuracy", loss="mse"), ValueError, "metric='accuracy' needs a classification loss"),
    (dict(data="nosuchset"), ValueError, "name must be one of"),
    (dict(data=[1, 2, 3]), TypeError, "data must be a dataset name"),
    (dict(model=lambda: nn.Linear(3, 2)), ValueError, r"fails on 2 rows of the data \(shape \(2, 2\), torch.float32\): "
                                                       r"RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    (dict(model=lambda: nn.Linear(2, 1)), ValueError, r"returns shape \(2, 1\) for 2 rows; cross-entropy needs "
                                                       r"\(2, classes\) logits with at least 2 classes"),
    (dict(model=lambda: nn.Sequential(nn.Linear(2, 2), nn.Flatten(0))), ValueError, r"returns shape \(4,\)"),
    (dict(model=lambda: nn.LSTM(2, 2, batch_first=True)), ValueError, "returns tuple, not a tensor of outputs"),
    (dict(model=lambda: nn.Linear(2, 3), loss="mse", data=(np.ones((8, 2), np.float32), np.arange(8.0))),
     ValueError, r"returns shape \(2, 3\) for 2 rows; mse needs \(2, 1\): one output per target value"),
])
def test_bad_input(kwargs, error, match):
    args = dict(model="mlp", data=moons(), lambdas=[1e-3], epochs=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        decaylab.sweep(args.pop("model"), args.pop("data"), args.pop("lambdas"), **args)


class DiesInAWorker(torch.nn.Module):
    """A model whose construction kills a spawned worker process (as the kernel's out-of-memory killer would)."""

    def __init__(self):
        import multiprocessing
        import os

        super().__init__()
        if multiprocessing.parent_process() is not None:
            os._exit(1)
        self.out = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.out(x)


@pytest.mark.slow  # ≥ 2 s: 72 members, or worker processes
def test_a_worker_that_dies_is_named_with_what_to_do():
    from decaylab.sweeps.engines import WorkerDied

    with pytest.raises(WorkerDied, match=r"workers=2: a worker process died before finishing its members .*"
                                         r"if __name__ == \"__main__\":"):
        decaylab.sweep(DiesInAWorker, moons(), [0.0, 1e-2], folds=2, epochs=1, batch_size=16, engine="batched",
                       workers=2)
