"""An evidence run that diverges is reported diverged — by the rule every trainer uses — not as a NaN or tiny λ."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import decaylab
from decaylab.cli import main
from decaylab.evidence.online import train_marglik
from decaylab.models import MLP

ABSURD_LR = 1e6


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def _dropout_net():
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))


@pytest.mark.parametrize("make", [lambda: MLP(3, 2, (4,)), _dropout_net], ids=["one-model-trainer", "torch-epochs"])
def test_online_trainer_stops_a_diverged_run(make):
    X, y = (torch.as_tensor(v) for v in _data())
    torch.manual_seed(0)
    out = train_marglik(make(), (X, y), epochs=4, batch_size=16, lr=ABSURD_LR, eval_sets={"test": (X, y)})
    assert out.diverged and out.final is None
    assert out.epochs_run == 1 and out.steps < 3 and out.history == []      # stopped in its first epoch
    assert math.isnan(out.train_loss) and math.isnan(out.evals["test"]["loss"])
    torch.manual_seed(0)
    fine = train_marglik(make(), (X, y), epochs=2, batch_size=16, lr=1e-2)
    assert not fine.diverged and fine.epochs_run == 2 and math.isfinite(fine.final.log_evidence)


@pytest.mark.parametrize("make", [lambda: MLP(3, 2, (4,)), _dropout_net], ids=["one-model-trainer", "torch-epochs"])
def test_online_trainer_judges_divergence_by_the_trainers_rule(make, monkeypatch):
    """With the runaway limit of :mod:`decaylab.train.divergence` below any loss, a normal run diverges on its
    first batch: the online trainers apply that module's rule, not one of their own."""
    from decaylab.train import divergence

    monkeypatch.setattr(divergence, "RUNAWAY_FACTOR", 1e-9)
    X, y = (torch.as_tensor(v) for v in _data())
    torch.manual_seed(0)
    out = train_marglik(make(), (X, y), epochs=2, batch_size=16, lr=1e-2)
    assert out.diverged and out.epochs_run == 1 and out.steps == 0


def test_marglik_sweep_reports_a_diverged_run_like_the_grid():
    res = decaylab.sweep("mlp", _data(), None, method="marglik", hidden=(4,), epochs=3, batch_size=16,
                         lr=[1e-2, ABSURD_LR])
    good, bad = res.table
    assert not good["diverged"] and good["lambda"] > 0
    assert bad["diverged"] and math.isnan(bad["lambda"]) and math.isnan(bad["val_metric"])
    assert math.isnan(bad["train_loss"]) and bad["epochs_run"] < 3
    assert res.n_diverged == 1 and res.best_lambda == good["lambda"] and res.best_lr == 1e-2
    assert [s["n_diverged"] for s in res.summary] == [0, 1]
    only_bad = decaylab.sweep("mlp", _data(), None, method="marglik", hidden=(4,), epochs=2, batch_size=16,
                              lr=ABSURD_LR)
    assert only_bad.n_diverged == 1 and only_bad.best_lambda is None and only_bad.best_lr is None


def test_cli_marglik_says_every_run_diverged(tmp_path, capsys):
    X, y = _data()
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    code = main(["sweep", str(path), "--method", "marglik", "--hidden", "4", "--epochs", "2", "--batch-size", "16",
                 "--lr", str(ABSURD_LR), "--out", str(tmp_path / "out"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1 and "all 1 diverged" in err and "Traceback" not in err
    assert (tmp_path / "out" / "results.csv").exists()
