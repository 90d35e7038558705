"""The evidence's fast paths equal their references: the separable Newton solve equals L-BFGS, and the
one-model batched trainer equals torch's Adam/SGD over the same batches."""

import math

import pytest
import torch
from torch import nn

from decaylab._checks import InputError
from decaylab.batched.one_model import OneModelTrainer
from decaylab.evidence.api import marglik
from decaylab.evidence.curvature import compute_curvature
from decaylab.evidence.likelihood import neg_log_lik_sum
from decaylab.evidence.online import TorchEpochs, train_marglik
from decaylab.evidence.optimize import EvidenceObjective, maximize, maximize_separable
from decaylab.evidence.prior import prior_structure


def _data(n=80, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long() + (X[:, 2] > 1).long() * (classes - 2)
    return X, y


def _mlp(d=5, out=3, seed=0, second=nn.Tanh):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 12), nn.ReLU(), nn.Linear(12, 8), second(), nn.Linear(8, out))


def _objective(model, X, y, hessian, per_layer):
    structure = prior_structure(model, per_layer)
    with torch.no_grad():
        out = model(X)
    curv = compute_curvature(model, X, "cross_entropy", hessian, structure.names)
    sq = {k: float(p.detach().double().pow(2).sum()) for k, p in model.named_parameters()}
    return EvidenceObjective(curv, structure, "cross_entropy", float(neg_log_lik_sum("cross_entropy", out.double(), y)),
                             len(X) * out.shape[1], sq, 1e-4)


@pytest.mark.parametrize("hessian", ["kron", "diag"])
@pytest.mark.parametrize("per_layer", [False, True])
def test_separable_newton_finds_the_lbfgs_maximum(hessian, per_layer):
    X, y = _data()
    model = _mlp()
    objective = _objective(model, X, y, hessian, per_layer)
    start = torch.full((len(objective.structure.groups),), math.log(3.0), dtype=torch.float64)
    log_prec_lbfgs, _, value_lbfgs = maximize(objective, start, None)
    log_prec, value = maximize_separable(objective, start, None)
    assert len(log_prec) == (3 if per_layer else 1)
    assert torch.allclose(log_prec, log_prec_lbfgs, atol=1e-6)
    assert value == pytest.approx(value_lbfgs, abs=1e-9)
    assert value >= value_lbfgs - 1e-12
    # the gradient of the evidence in log δ vanishes there
    variable = log_prec.clone().requires_grad_(True)
    objective(variable, None).backward()
    assert float(variable.grad.abs().max()) < 1e-8


def test_separable_newton_with_a_fixed_sigma_matches_lbfgs():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = X[:, :1] - X[:, 1:2] + 0.2 * torch.randn(50, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    fast = marglik(model, (X, y), hessian="kron", per_layer=True, sigma=0.3)
    structure = prior_structure(model, True)
    curv = compute_curvature(model, X, "mse", "kron", structure.names)
    with torch.no_grad():
        data_term = float(neg_log_lik_sum("mse", model(X), y))
    sq = {k: float(p.detach().pow(2).sum()) for k, p in model.named_parameters()}
    objective = EvidenceObjective(curv, structure, "mse", data_term, len(X), sq, 1e-4)
    log_sigma = torch.tensor(math.log(0.3), dtype=torch.float64)

    class FixedSigma:
        def __call__(self, log_prec, _):
            return objective(log_prec, log_sigma)

    log_prec, _, value = maximize(FixedSigma(), torch.zeros(2, dtype=torch.float64), None)
    assert fast.log_evidence == pytest.approx(value, abs=1e-8)
    assert [math.log(v) for v in fast.prior_precision.values()] == pytest.approx(log_prec.tolist(), abs=1e-6)


def test_separable_newton_stops_at_the_bound_when_the_weights_are_zero():
    X, y = _data()
    model = _mlp()
    with torch.no_grad():
        model[4].weight.zero_()
    objective = _objective(model, X, y, "kron", True)
    log_prec, _ = maximize_separable(objective, torch.zeros(3, dtype=torch.float64), None)
    assert float(log_prec[2]) == 40.0 and float(log_prec[0]) < 40.0


def test_full_curvature_is_not_separable():
    X, y = _data(n=20)
    model = _mlp()
    objective = _objective(model, X, y, "full", False)
    with pytest.raises(ValueError, match="'kron' or 'diag'"):
        maximize_separable(objective, torch.zeros(1, dtype=torch.float64), None)


@pytest.mark.parametrize("optimizer,momentum", [("adam", 0.0), ("sgd", 0.9)])
@pytest.mark.parametrize("kind,second", [("cross_entropy", nn.ReLU), ("cross_entropy", nn.Tanh), ("mse", nn.Tanh)])
def test_one_model_trainer_equals_torch_optimizers_over_the_same_batches(optimizer, momentum, kind, second):
    """ReLU MLP + cross-entropy: differentiated by hand; otherwise autograd through the stacked layers."""
    X, y = _data(n=70)
    if kind == "mse":
        y = torch.stack([X[:, 0] - X[:, 1], X[:, 2]], 1)
    out = 3 if kind == "cross_entropy" else 2
    model = _mlp(out=out, second=second)
    names = [n for n, _ in model.named_parameters()]
    wd = {n: (0.01 * (i + 1) if n.endswith("weight") else 1e-5) for i, n in enumerate(names)}
    options = dict(optimizer=optimizer, lr=0.01, momentum=momentum, batch_size=16, loss=kind, seed=5)
    reference = _mlp(out=out, second=second)
    fast, slow = OneModelTrainer(model, X, y, weight_decay=wd, **options), TorchEpochs(reference, X, y,
                                                                                   weight_decay=wd, **options)
    losses = []
    for epoch in range(3):
        if epoch == 2:                                   # λ changes between epochs
            wd = {n: 3 * v for n, v in wd.items()}
            fast.set_weight_decay(wd)
            slow.set_weight_decay(wd)
        losses.append((fast.epoch(), slow.epoch()))
    fast.copy_to(model)
    for a, b in losses:
        assert a == pytest.approx(b, rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=2e-6), name
    assert fast.steps == slow.steps == 15
    # the trainer trained a copy: the model changed only through copy_to
    assert not torch.equal(next(_mlp(out=out, second=second).parameters()), next(model.parameters()))


def test_one_model_trainer_leaves_the_global_random_state_alone():
    X, y = _data()
    model = _mlp()
    state = torch.get_rng_state()
    OneModelTrainer(model, X, y, optimizer="adam", lr=1e-3, momentum=0.0, batch_size=16, loss="cross_entropy",
                    seed=7, weight_decay={})
    assert torch.equal(torch.get_rng_state(), state)


def test_online_evidence_trains_a_dropout_model_with_torch_and_an_mlp_with_the_batched_engine():
    X, y = _data(n=60)
    torch.manual_seed(0)
    dropout = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 3))
    out = train_marglik(dropout, (X, y), epochs=2, frequency=1, batch_size=20)
    assert out.steps == 6 and len(out.history) == 2
    a = train_marglik(_mlp(), (X, y), epochs=4, frequency=2, batch_size=20, seed=1)
    assert a.steps == 12
    for h in a.history:
        assert math.isfinite(h["log_evidence"])
    # the model handed in holds the trained weights the final evidence was computed at
    again = marglik(a.model, (X, y), per_layer=True, weight_decay=a.weight_decay, optimize=False)
    assert again.log_evidence == pytest.approx(a.final.log_evidence, abs=1e-9)


@pytest.mark.parametrize("hessian", ["kron", "diag", "full"])
def test_refit_with_another_prior_structure_equals_a_fresh_marglik(hessian):
    X, y = _data(n=40)
    model = _mlp()
    per_layer = marglik(model, (X, y), hessian=hessian, per_layer=True)
    refit = per_layer.refit(model, per_layer=False, weight_decay=0.01)
    fresh = marglik(model, (X, y), hessian=hessian, per_layer=False, weight_decay=0.01)
    assert refit.log_evidence == pytest.approx(fresh.log_evidence, abs=1e-9)
    assert refit.lambda_ == pytest.approx(fresh.lambda_, rel=1e-9)
    assert refit.effective_parameters == pytest.approx(fresh.effective_parameters, rel=1e-9)
    with pytest.raises(InputError, match="model must be the one"):
        per_layer.refit(nn.Sequential(nn.Linear(5, 3)), per_layer=False)


class _NotPlain(nn.Sequential):
    """The same layers, but not recognised as a plain MLP: kron_factors takes the vjp path."""


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("kind", ["cross_entropy", "mse"])
def test_relu_mlp_pullbacks_by_hand_equal_the_vjp_path(diagonal, kind):
    from decaylab.evidence.curvature import _relu_mlp_layers, kron_factors

    X, y = _data(n=50)
    torch.manual_seed(2)
    layers = [nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)]
    plain, other = nn.Sequential(*layers).double(), _NotPlain(*layers).double()
    names = [n for n, _ in plain.named_parameters()]
    assert _relu_mlp_layers(plain, {"0": 0, "2": 0, "4": 0}) is not None
    assert _relu_mlp_layers(other, {"0": 0, "2": 0, "4": 0}) is None
    fast = kron_factors(plain, X.double(), kind, names, chunk=20, diagonal=diagonal)
    slow = kron_factors(other, X.double(), kind, names, chunk=20, diagonal=diagonal)
    for part in ((1, 3) if diagonal else (1, 2, 3)):          # diagonal: weight and bias diagonals
        for layer in ("0", "2", "4"):
            assert torch.allclose(fast[part][layer], slow[part][layer], rtol=1e-10, atol=1e-12), (part, layer)
    assert fast[4] == slow[4]


def test_a_relu_mlp_with_a_layer_left_out_of_the_kron_blocks_takes_the_vjp_path():
    from decaylab.evidence.curvature import _relu_mlp_layers

    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    assert _relu_mlp_layers(model, {"2": 0}) is None
    assert _relu_mlp_layers(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)), {"0": 0, "2": 0}) is None


def test_one_model_trainer_keeps_batchnorm_statistics_like_torch():
    X, y = _data(n=70)                                   # the last batch of each epoch has 6 rows

    def model():            # no bias before the norm: its gradient is rounding noise that Adam would amplify
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    fast_model, slow_model = model(), model()
    options = dict(optimizer="adam", lr=0.01, momentum=0.0, batch_size=16, loss="cross_entropy", seed=2,
                   weight_decay={"0.weight": 0.01, "3.weight": 0.02})
    fast, slow = OneModelTrainer(fast_model, X, y, **options), TorchEpochs(slow_model, X, y, **options)
    for _ in range(2):
        assert fast.epoch() == pytest.approx(slow.epoch(), rel=1e-5)
    fast.copy_to(fast_model)
    for (name, a), b in zip(fast_model.state_dict().items(), slow_model.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), atol=2e-6), name
    assert int(fast_model[1].num_batches_tracked) == 10


def test_online_evidence_probes_the_output_size_without_touching_batch_statistics():
    X, y = _data(n=40)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    out = train_marglik(model, (X, y), epochs=1, frequency=1, batch_size=20)
    assert int(model[1].num_batches_tracked) == 2 == out.steps
