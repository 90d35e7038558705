"""Nothing decaylab runs changes the caller's global torch state: the RNG and the intra-op thread count.

Each test sets a thread count other than the suite's and a known RNG state, runs one entry point with
the smallest settings it takes, and compares both afterwards.
"""

import ast
import pathlib

import numpy as np
import pytest
import torch
from torch import nn

import decaylab
from decaylab import data, models

THREADS = 2          # the suite runs with 1 (conftest): a setting the library must leave as it found it
SRC = pathlib.Path(decaylab.__file__).parent


def _leaves_global_state(run):
    """Run ``run()`` with THREADS threads and a known RNG state; both must be unchanged afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        torch.manual_seed(12345)
        state = torch.random.get_rng_state()
        result = run()
        assert torch.get_num_threads() == THREADS
        assert torch.equal(torch.random.get_rng_state(), state), "the global torch RNG state changed"
    finally:
        torch.set_num_threads(threads)
    return result


def _xy(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


class LayerNormNet(nn.Module):
    """Batchable but not a plain MLP: engine='auto' times both engines (the probe) before choosing."""

    def __init__(self):
        super().__init__()
        self.inp, self.norm, self.out = nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.relu(self.norm(self.inp(x))))


class DropoutNet(nn.Module):
    """Not batchable (dropout draws from the global RNG while it trains)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("engine, model", [("batched", "mlp"), ("sequential", "mlp"), ("auto", LayerNormNet),
                                           ("auto", DropoutNet)], ids=["batched", "sequential", "auto-probe",
                                                                       "auto-dropout"])
def test_grid_sweep_leaves_global_state(engine, model):
    result = _leaves_global_state(lambda: decaylab.sweep(model, _xy(), [1e-4, 1e-2], folds=2, epochs=1,
                                                         batch_size=16, hidden=(4,), engine=engine))
    assert len(result.table) == 4


def test_probe_with_workers_restores_the_thread_count():
    from decaylab.batched.members import Member, TrainConfig
    from decaylab.batched.planning import plan_sweep

    X, y = (torch.as_tensor(v) for v in _xy())
    members = [Member(1e-3, 1e-2, seed=s) for s in range(2)]
    plan = _leaves_global_state(lambda: plan_sweep(LayerNormNet, X, y, TrainConfig(epochs=1, batch_size=16),
                                                   members, "auto", None, "cpu", workers=2))
    assert plan.engine in ("batched", "sequential")


def test_marglik_sweep_leaves_global_state():
    result = _leaves_global_state(lambda: decaylab.sweep("mlp", _xy(), None, method="marglik", hidden=(4,),
                                                         epochs=1, batch_size=16, lr=0.01))
    assert len(result.table) == 1


def test_lr_decay_map_leaves_global_state():
    from decaylab.maps.lr_map import lr_decay_map

    moons = data.load("moons", seed=0, n_train=40)
    m = _leaves_global_state(lambda: lr_decay_map(lambda: models.MLP(2, 2, (4,)), moons.train, moons.test,
                                                  lrs=[1e-3, 1e-2, 1e-1], decays=[1e-4, 1e-3, 1e-2], seeds=(0,),
                                                  epochs=1, batch_size=20))
    assert m.test_error.shape == (1, 3, 3)


def test_equilibrium_check_leaves_global_state():
    from decaylab.maps.regimes import equilibrium_check

    moons = data.load("moons", seed=0, n_train=40)
    row = _leaves_global_state(lambda: equilibrium_check(lambda: models.MLP(2, 2, (4,)), moons.train,
                                                         optimizer="adamw", decay_scaling="lr", lr=1e-2, decay=1e-2,
                                                         epochs=1, batch_size=20, momentum=0.0, seed=3))
    assert row["lr"] == 1e-2


def test_marglik_and_doctor_leave_global_state():
    torch.manual_seed(0)
    model = models.MLP(3, 2, (4,))
    X, y = (torch.as_tensor(v) for v in _xy())
    result = _leaves_global_state(lambda: decaylab.marglik(model, (X, y)))
    assert np.isfinite(result.log_evidence)
    optimizer = torch.optim.AdamW(decaylab.param_groups(model, 0.1), lr=1e-3)
    findings = _leaves_global_state(lambda: decaylab.doctor(model, optimizer, total_steps=1000, steps_per_epoch=10))
    assert isinstance(findings.codes, list)


def test_train_batched_and_alone_leave_global_state():
    from decaylab.batched.alone import train_alone
    from decaylab.batched.members import Member, TrainConfig
    from decaylab.batched.trainer import train_batched

    X, y = _xy()
    members = [Member(1e-3, 1e-2, seed=1), Member(1e-2, 1e-2, seed=2)]
    config = TrainConfig(epochs=1, batch_size=16)
    _leaves_global_state(lambda: train_batched(lambda: models.MLP(3, 2, (4,)), X, y, members, config))
    _leaves_global_state(lambda: train_alone(DropoutNet, X, y, members, config))


STUDIES = {
    "boundaries": dict(lambdas=(0.0, 1.0), epochs=2, hidden=(4,)),
    "ridge": dict(quick=True, fit_lambdas=(1e-3,)),
    "coupling": dict(epochs=1),
    "sparsity": dict(lambdas=(1e-2,), epochs=1),
    "dropout": dict(epochs=2, hidden=(4, 4)),
    "cross_validation": dict(lambdas=(0.01, 1.0), epochs=1, hidden=(4,)),
    "evidence": dict(quick=True, lambdas=(1e-4, 1e-2), epochs=1, hidden=(4,)),
    "convergence": dict(quick=True, lambdas=(0.0, 1.0), epochs=1),
    "overfitting": dict(quick=True, lambdas=(0.0, 1.0), epochs=1, hidden=(4,)),
}


@pytest.mark.slow
@pytest.mark.parametrize("key", list(STUDIES))
def test_demo_study_leaves_global_state(key):
    from decaylab.experiments.demo import run_study

    result = _leaves_global_state(lambda: run_study(key, seed=1, **STUDIES[key]))
    assert result.section.key == key


def _calls(path: pathlib.Path, names: set[str]) -> list[str]:
    """``module.attr`` calls in ``path`` whose dotted name ends in one of ``names`` (e.g. ``torch.manual_seed``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func
            dotted = [target.attr]
            while isinstance(target.value, ast.Attribute):
                target = target.value
                dotted.append(target.attr)
            if isinstance(target.value, ast.Name):
                dotted.append(target.value.id)
            name = ".".join(reversed(dotted))
            if name in names:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {name}")
    return found


def test_global_state_is_set_in_one_module_only():
    """Seeding or forking the global RNG and setting the thread count happen in ``decaylab._isolation`` only
    (a spawned worker sets its own process's threads once, in ``decaylab._workers``)."""
    names = {"torch.manual_seed", "torch.seed", "torch.random.fork_rng", "torch.random.manual_seed",
             "torch.cuda.manual_seed", "torch.cuda.manual_seed_all", "np.random.seed", "numpy.random.seed",
             "torch.set_num_threads"}
    allowed = {"_isolation.py", "_workers.py"}
    found = [c for path in sorted(SRC.rglob("*.py")) for c in _calls(path, names)
             if str(path.relative_to(SRC)) not in allowed]
    assert found == []
    workers = _calls(SRC / "_workers.py", names)
    assert [c.split()[1] for c in workers] == ["torch.set_num_threads"]     # the worker's own process only
