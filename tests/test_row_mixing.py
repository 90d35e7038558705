"""Models whose forward mixes the rows of a batch give the same numbers on every engine: evaluation passes hold
one member's rows of one set, and training never shows such a model a padding row."""

import numpy as np
import pytest
import torch
from torch import nn

import decaylab
from decaylab.batched.trainer import Member, TrainConfig, train_alone, train_batched


class Centered(nn.Module):
    """``x − x.mean(0)``: every output depends on every row of the batch."""

    def forward(self, x):
        return x - x.mean(0)


def batchnorm_net():
    return nn.Sequential(nn.Linear(8, 12), nn.BatchNorm1d(12, track_running_stats=False), nn.ReLU(), nn.Linear(12, 3))


def centered_net():
    return nn.Sequential(nn.Linear(8, 12), Centered(), nn.Tanh(), nn.Linear(12, 3))


def _data(n=187):
    gen = np.random.default_rng(0)
    X = gen.normal(size=(n, 8))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def _numbers(result):
    return np.array([[r["train_loss"], r["val_loss"], r["val_accuracy"], r["test_loss"]] for r in result.table])


@pytest.mark.parametrize("factory", [batchnorm_net, centered_net])
def test_row_mixing_models_equal_on_every_engine(factory):
    # 187 rows in 3 folds (62/62/63 validation rows): training batches of 16 end short and differ in
    # length across members, validation passes too; the test set (37 rows) ends short
    X, y = _data()
    test = _data(37)
    runs = {engine: decaylab.sweep(factory, (X, y), [1e-3, 0.1], folds=3, epochs=2, batch_size=16, lr=0.05,
                                   dtype=torch.float64, engine=engine, test_data=test)
            for engine in ("sequential", "batched", "auto")}
    sequential = _numbers(runs["sequential"])
    assert np.isfinite(sequential).all()
    for engine in ("batched", "auto"):
        np.testing.assert_allclose(_numbers(runs[engine]), sequential, rtol=1e-10, atol=1e-12, err_msg=engine)


def test_evaluation_passes_of_a_row_mixing_model_hold_one_members_rows_of_one_set():
    # the batched trainer's validation numbers are those of batch_size passes over the member's own rows
    X, y = _data(50)
    members = [Member(0.01, 0.05, seed=0, train_index=tuple(range(0, 30)), val_index=tuple(range(30, 50))),
               Member(0.01, 0.05, seed=1, train_index=tuple(range(20, 50)), val_index=tuple(range(0, 13)))]
    config = TrainConfig.from_options(optimizer="sgd", epochs=1, batch_size=8, dtype=torch.float64)
    batched = train_batched(centered_net, X, y, members, config, keep_weights=True)
    alone = train_alone(centered_net, X, y, members, config)
    for b, a, member in zip(batched, alone, members):
        model = centered_net().double()
        model.load_state_dict(b.state_dict)
        rows = torch.tensor(member.val_index)
        with torch.no_grad():
            out = torch.cat([model(torch.as_tensor(X)[rows[i:i + 8]]) for i in range(0, len(rows), 8)])
        expected = float(torch.nn.functional.cross_entropy(out, torch.as_tensor(y)[rows]))
        assert b.val_loss == pytest.approx(expected, rel=1e-12)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-10)
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-10)
