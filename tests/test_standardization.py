"""Feature standardization fitted on each member's own training rows (``sweep(standardize=True)``, the CLI)."""

import csv

import numpy as np
import pytest
import torch
from torch import nn

import decaylab
from decaylab._checks import InputError
from decaylab.batched.members import Member, TrainConfig
from decaylab.batched.standardization import MemberFeatures, Standardization
from decaylab.cli import main
from decaylab.sweeps.grid import fold_splits

FAST = dict(lambdas=[1e-4, 1e-2], folds=3, epochs=3, batch_size=16, hidden=(4,), lr=1e-2)



def standardize_all_rows(X):
    """``X`` standardized with the statistics of all its rows (what the CLI did before per-member standardization)."""
    import torch

    from decaylab.batched.standardization import Standardization

    X = torch.as_tensor(np.asarray(X, dtype=float))
    return Standardization.fit(X).apply(X).numpy().astype(np.float32)

def _data(n=60, seed=0):
    """Features on very different scales and offsets (standardization matters), a linear class boundary."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -3.0]
    y = (X[:, 0] + X[:, 1] / 10 > 0.5).astype(np.int64)
    return X, y


def _with_outlier(X, row):
    out = X.copy()
    out[row] = [1e6, -1e6, 1e7]
    return out


def _fold0_validation_row(y, folds=3):
    _, val = fold_splits(y, folds=folds, holdout=None, classification=True, split_seed=0)[0]
    return int(val[0])


def _fold(result, fold):
    return [(r["lambda"], r["train_loss"], r["weight_norm"]) for r in result.table if r["fold"] == fold]


@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_a_folds_standardization_uses_no_validation_row(engine):
    X, y = _data()
    row = _fold0_validation_row(y)
    normal = decaylab.sweep("mlp", (X, y), engine=engine, standardize=True, **FAST)
    outlier = decaylab.sweep("mlp", (_with_outlier(X, row), y), engine=engine, standardize=True, **FAST)
    # fold 0 validates on the outlier row: its members train exactly as before
    assert _fold(outlier, 0) == _fold(normal, 0)
    assert _fold(outlier, 1) != _fold(normal, 1)          # the row trains fold 1: that fold sees it
    # the former global standardization (all rows, before the folds) moved fold 0's training too
    globally = [decaylab.sweep("mlp", (standardize_all_rows(Xv), y), engine=engine, **FAST)
                for Xv in (X, _with_outlier(X, row))]
    assert _fold(globally[1], 0) != _fold(globally[0], 0)


def test_member_features_are_standardized_with_their_training_rows():
    X, y = _data(30)
    X[:, 2] = 7.0                                     # constant: 0 after standardization
    members = [Member(0.0, 1e-2, train_index=range(0, 20), val_index=range(20, 30)),
               Member(0.0, 1e-2, train_index=range(10, 30), val_index=range(0, 10)),
               Member(1e-3, 1e-2, train_index=range(0, 20), val_index=range(20, 30))]
    features = MemberFeatures(X, members, TrainConfig(dtype=torch.float64, standardize=True))
    assert features.blocks == 2 and len(features.X) == 60        # one copy per distinct training-row set
    for g, member in enumerate(members):
        own = features.member_block(features.X, g)
        train = own[list(member.train_index)]
        torch.testing.assert_close(train.mean(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
        torch.testing.assert_close(train.std(0, correction=0), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64),
                                   rtol=0, atol=1e-12)
        expected = (X - X[list(member.train_index)].mean(0)) / np.where(X[list(member.train_index)].std(0) > 0,
                                                                        X[list(member.train_index)].std(0), 1.0)
        np.testing.assert_allclose(own.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(features.member_block(features.X, 0), features.member_block(features.X, 2))
    assert not torch.equal(features.member_block(features.X, 0), features.member_block(features.X, 1))


def test_standardization_divides_by_the_peak_first():
    rng = np.random.default_rng(1)
    small = torch.as_tensor(rng.normal(size=(40, 2)))
    huge = small.clone()
    huge[:, 1] *= 1e307                               # squares overflow float64
    a, b = (Standardization.fit(t[:30]).apply(t) for t in (small, huge))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert bool(torch.isfinite(b).all()) and float(b[:30, 1].std(correction=0)) == pytest.approx(1.0)


def layernorm_net():
    """Not a plain MLP: the batched engine's folded/vmap paths, which must read each member's own rows."""
    return nn.Sequential(nn.Linear(3, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 2))


class WithToken(nn.Module):
    """A parameter expanded to the batch (the folded forward refuses it): the batched engine's vmap path."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, 3))
        self.inner, self.out = nn.Linear(3, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = torch.cat([self.token.expand(len(x), -1, -1), x.view(len(x), 1, 3)], 1)
        return self.out(torch.tanh(self.inner(h)).mean(1))


@pytest.mark.parametrize("model, path", [("mlp", "fast"), (layernorm_net, "folded"), (WithToken, "vmap")],
                         ids=["fast", "folded", "vmap"])
def test_batched_equals_sequential_with_standardization_in_float64(model, path):
    X, y = _data()
    test = _data(20, seed=3)
    kwargs = dict(FAST, standardize=True, dtype=torch.float64, test_data=test, seed=[0, 1])
    batched = decaylab.sweep(model, (X, y), engine="batched", **kwargs)
    alone = decaylab.sweep(model, (X, y), engine="sequential", **kwargs)
    assert batched.engine == "batched" and alone.engine == "sequential" and batched.path.startswith(f"batched, {path}")
    for b, a in zip(batched.table, alone.table):
        for column in ("train_loss", "val_loss", "val_accuracy", "weight_norm", "test_loss", "test_accuracy"):
            assert b[column] == pytest.approx(a[column], rel=1e-9, abs=1e-12), column
    plain = decaylab.sweep(model, (X, y), engine="batched", **{**kwargs, "standardize": False})
    assert [r["val_loss"] for r in plain.table] != [r["val_loss"] for r in batched.table]


@pytest.mark.slow
def test_workers_standardize_like_one_process():
    X, y = _data()
    one = decaylab.sweep("mlp", (X, y), standardize=True, engine="sequential", **FAST)
    two = decaylab.sweep("mlp", (X, y), standardize=True, engine="sequential", workers=2, **FAST)
    assert [r["val_loss"] for r in two.table] == [r["val_loss"] for r in one.table]


def test_store_keys_tell_standardized_members_apart(tmp_path):
    X, y = _data()
    store = str(tmp_path / "s.sqlite")
    first = decaylab.sweep("mlp", (X, y), store=store, **FAST)
    assert "standardize" not in first.config["train"]            # keys of stores written before it: unchanged
    again = decaylab.sweep("mlp", (X, y), store=store, standardize=True, **FAST)
    assert again.config["train"]["standardize"] is True and again.trained == len(again.table)


def test_integer_features_of_a_factory_are_not_standardized():
    tokens = torch.randint(0, 5, (30, 4), generator=torch.Generator().manual_seed(0))
    y = torch.arange(30) % 2

    def bag():
        return nn.Sequential(nn.EmbeddingBag(5, 4), nn.Linear(4, 2))

    with pytest.raises(InputError, match="standardize=True needs floating-point features"):
        decaylab.sweep(bag, (tokens, y), [1e-3], folds=2, epochs=1, standardize=True)
    with pytest.raises(TypeError, match="standardize must be a bool"):
        decaylab.sweep("mlp", _data(), [1e-3], folds=2, epochs=1, standardize="yes")


def test_marglik_standardizes_with_its_training_rows_all_rows():
    X, y = _data()
    test = _data(20, seed=3)
    kwargs = dict(method="marglik", hidden=(4,), epochs=2, batch_size=16, lr=1e-2)
    on = decaylab.sweep("mlp", (X, y), None, standardize=True, test_data=test, **kwargs)
    scaler = Standardization.fit(torch.as_tensor(X))
    by_hand = decaylab.sweep("mlp", (scaler.apply(torch.as_tensor(X)).numpy(), y), None,
                             test_data=(scaler.apply(torch.as_tensor(test[0])).numpy(), test[1]), **kwargs)
    assert on.table[0]["lambda"] == pytest.approx(by_hand.table[0]["lambda"], rel=1e-6)
    assert on.table[0]["test_loss"] == pytest.approx(by_hand.table[0]["test_loss"], rel=1e-6)
    assert on.config["train"]["standardize"] is True and "standardize" not in by_hand.config["train"]


def test_cli_standardizes_each_fold_on_its_training_rows(tmp_path, capsys):
    X, y = _data()
    row = _fold0_validation_row(y, folds=5)
    rows = {}
    for name, values in (("normal", X), ("outlier", _with_outlier(X, row))):
        path = tmp_path / f"{name}.npz"
        np.savez(path, X=values, y=y)
        code = main(["sweep", str(path), "--lambdas", "1e-4,1e-2", "--hidden", "4", "--epochs", "3",
                     "--batch-size", "16", "--lr", "0.01", "--out", str(tmp_path / name), "--no-progress"])
        assert code == 0, capsys.readouterr().err
        table = list(csv.DictReader(open(tmp_path / name / "results.csv")))
        rows[name] = {fold: [(r["lambda"], r["train_loss"], r["weight_norm"]) for r in table if r["fold"] == fold]
                      for fold in ("0", "1")}
    assert rows["outlier"]["0"] == rows["normal"]["0"]      # fold 0 validates on the outlier: trained the same
    assert rows["outlier"]["1"] != rows["normal"]["1"]
    capsys.readouterr()
