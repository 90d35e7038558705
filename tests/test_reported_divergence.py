"""A member that ends with a finite-but-runaway loss (no batch loss ever ran away) is diverged, on both engines."""

import math

import pytest
import torch
from torch import nn

from decaylab.batched.alone import train_alone
from decaylab.batched.trainer import Member, TrainConfig, train_batched


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, 4, generator=g, dtype=torch.float64)
    return X, X @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)


@pytest.mark.parametrize("train", [train_batched, train_alone], ids=["batched", "alone"])
def test_a_loss_that_runs_away_after_the_last_checked_batch_is_diverged(train):
    # one full-batch SGD step: the batch loss checked before it is ~14 (far under the limit); the step at
    # lr 1e12 leaves finite weights of ~1e13, so the final train loss is ~1e27 — diverged, not converged
    X, y = _data()
    config = TrainConfig.from_options(optimizer="sgd", loss="mse", epochs=1, batch_size=len(X), dtype=torch.float64)
    members = [Member(weight_decay=0.0, lr=1e12, val_index=tuple(range(8))), Member(weight_decay=0.0, lr=0.01)]
    blown, normal = train(lambda: nn.Linear(4, 1), X, y, members, config, eval_sets={"test": (X[:8], y[:8])},
                          device="cpu")
    assert blown.diverged and math.isnan(blown.train_loss) and math.isnan(blown.val_loss)
    assert math.isnan(blown.eval["test"]["loss"]) and blown.steps == 1
    assert not normal.diverged and math.isfinite(normal.train_loss) and normal.train_loss < 1e3


@pytest.mark.parametrize("train", [train_batched, train_alone], ids=["batched", "alone"])
def test_an_evaluation_set_is_judged_at_the_limit_of_its_own_targets(train):
    # evaluation targets a million times larger than the training ones: the loss of a sane model on them is
    # large, but not runaway for those targets, so the member is not diverged
    X, y = _data()
    config = TrainConfig.from_options(optimizer="sgd", loss="mse", epochs=2, batch_size=8, dtype=torch.float64)
    (result,) = train(lambda: nn.Linear(4, 1), X, y, [Member(weight_decay=0.0, lr=0.01)], config,
                      eval_sets={"test": (X[:8], 1e6 * y[:8])}, device="cpu")
    assert not result.diverged and result.eval["test"]["loss"] > 1e6 * max(1.0, float(y.square().mean()))


@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_a_sweep_names_the_member_that_ended_runaway(engine):
    import decaylab

    X, y = _data()
    result = decaylab.sweep("linear", (X, y), [0.0], lr=[0.01, 1e12], folds=2, epochs=1, batch_size=32,
                            optimizer="sgd", loss="mse", engine=engine, dtype=torch.float64)
    assert [r["lr"] for r in result.table if r["diverged"]] == [1e12, 1e12]
    assert result.best_lr == 0.01
    assert result.diverged_members() == "λ=0 lr=1e+12 fold=0 seed=0; λ=0 lr=1e+12 fold=1 seed=0"


def test_the_cli_names_the_members_when_none_is_usable(tmp_path, capsys):
    from decaylab.cli import main

    code = main(["sweep", "moons", "--model", "linear", "--lambdas", "0,1e-3", "--lr", "1e30", "--folds", "2",
                 "--epochs", "1", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1, err
    assert "no usable member: all 4 diverged" in err and "λ=0 lr=1e+30 fold=0 seed=0; " in err
    assert "diverged (NaN or runaway loss): λ=0 lr=1e+30 fold=0 seed=0; λ=0 lr=1e+30 fold=1 seed=0; " in out


@pytest.mark.parametrize("engine", ["batched", "sequential"])
@pytest.mark.parametrize("optimizer", ["adam", "sgdw", "sgd"])
def test_a_step_too_large_for_the_dtype_is_divergence_not_a_crash(engine, optimizer):
    # lr 1e40 is beyond float32's range: torch refuses the step's scalar ("cannot be converted to type float
    # without overflow"); the members taking it are diverged and named, the sweep ends normally
    import decaylab

    X, y = _data()
    result = decaylab.sweep("linear", (X.float(), y.float()), [0.0, 1e-3], lr=1e40, folds=2, epochs=1,
                            batch_size=8, optimizer=optimizer, loss="mse", engine=engine)
    assert [r["diverged"] for r in result.table] == [True] * 4
    assert result.best_lambda is None and result.diverged_members().startswith("λ=0 lr=1e+40 fold=0 seed=0; ")


def test_the_cli_reports_lr_1e40_as_diverged_members(tmp_path, capsys):
    from decaylab.cli import main

    code = main(["sweep", "moons", "--model", "linear", "--lambdas", "0,1e-3", "--lr", "1e40", "--folds", "2",
                 "--epochs", "1", "--optimizer", "adam", "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1, err
    assert "no usable member: all 4 diverged" in err and "lr=1e+40" in err and "bug" not in err
