"""A model factory that builds a different architecture on another call is refused in one line, on both engines."""

import pytest
import torch
from torch import nn

import decaylab
from decaylab._checks import InputError
from decaylab.batched.alone import train_alone
from decaylab.batched.trainer import Member, TrainConfig, train_batched


class WidthPerSeed:
    """A factory whose hidden width follows the global generator: members of other seeds differ in shape."""

    def __call__(self):
        width = 4 + int(torch.randint(0, 100, ()))
        return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))


class WidthPerCall:
    """A factory whose hidden width grows with every call."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return nn.Sequential(nn.Linear(3, 4 * self.calls), nn.ReLU(), nn.Linear(4 * self.calls, 2))


def _data():
    X = torch.randn(24, 3, generator=torch.Generator().manual_seed(0))
    return X, (X[:, 0] > 0).long()


@pytest.mark.parametrize("train", [train_batched, train_alone], ids=["batched", "alone"])
def test_the_trainers_refuse_members_of_different_shapes(train):
    X, y = _data()
    config = TrainConfig.from_options(optimizer="sgd", epochs=1, batch_size=8)
    members = [Member(weight_decay=0.0, lr=0.1, seed=s) for s in (0, 1)]
    with pytest.raises(InputError, match=r"model factory 'WidthPerSeed' builds a different architecture.*"
                                         r"0\.weight \(\d+, 3\) then \(\d+, 3\)"):
        train(WidthPerSeed(), X, y, members, config, device="cpu")


@pytest.mark.parametrize("train", [train_batched, train_alone], ids=["batched", "alone"])
def test_one_architecture_of_several_seeds_trains(train):
    X, y = _data()
    config = TrainConfig.from_options(optimizer="sgd", epochs=1, batch_size=8)
    members = [Member(weight_decay=0.0, lr=0.1, seed=s) for s in (0, 1)]
    results = train(lambda: nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), X, y, members, config,
                    device="cpu")
    assert [r.diverged for r in results] == [False, False]


@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_a_sweep_refuses_a_factory_of_a_new_architecture_per_call(engine):
    X, y = _data()
    with pytest.raises(InputError, match=r"'WidthPerCall' builds a different architecture on another call: "
                                         r"parameter shapes 0\.bias \(4,\) then \(8,\)"):
        decaylab.sweep(WidthPerCall(), (X, y), [0.0, 1e-3], folds=2, epochs=1, engine=engine, model_key="w")


def test_the_cli_refuses_such_a_factory_in_one_line(tmp_path, capsys):
    from decaylab.cli import main

    net = tmp_path / "net.py"
    net.write_text("import torch\nfrom torch import nn\n\n\n"
                   "class Net(nn.Module):\n"
                   "    calls = 0\n\n"
                   "    def __init__(self):\n"
                   "        super().__init__()\n"
                   "        Net.calls += 1\n"
                   "        self.body = nn.Linear(2, 2 * Net.calls)\n\n"
                   "    def forward(self, x):\n"
                   "        return self.body(x)\n")
    code = main(["sweep", "moons", "--model", f"{net}:Net", "--lambdas", "0,1e-3", "--folds", "2", "--epochs", "1",
                 "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and "'Net' builds a different architecture" in lines[0] and "body.weight" in lines[0]
