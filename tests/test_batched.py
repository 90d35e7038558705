"""The batched trainer equals members trained alone; folds, divergence and argument checks."""

import math

import pytest
import torch
from torch import nn

from decaylab.batched.stacked import _member_losses, _relu_mlp_losses_and_grads, _StackedModel
from decaylab.batched.trainer import (
    Member,
    TrainConfig,
    _BatchedOptimizer,
    check_batchable,
    lr_multiplier,
    train_alone,
    train_batched,
)
from decaylab.models import MLP


def make_data(n=60, d=5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=dtype)
    y = ((X[:, 0] + 0.5 * X[:, 1] ** 2) > 0.3).long()
    return X, y


def mlp():
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 2))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, 2))


def members_of_different_folds(n):
    # different λ, lr, seed, and training sets of different sizes (so some members idle at epoch ends)
    return [Member(1e-3, 0.05, seed=1, train_index=range(0, 48), val_index=range(48, n)),
            Member(3e-2, 0.02, seed=2, train_index=range(12, n), val_index=range(0, 12)),
            Member(0.0, 0.08, seed=3, train_index=range(0, n, 2), val_index=range(1, n, 2))]


def max_weight_gap(alone, batched):
    return max(float((a.state_dict[k] - b.state_dict[k]).abs().max())
               for a, b in zip(alone, batched) for k in a.state_dict)


OPTIMIZER_SETUPS = [
    dict(optimizer="sgd", momentum=0.9),
    dict(optimizer="sgdw", momentum=0.9, nesterov=True, lr_schedule="cosine", decay_scaling="schedule"),
    dict(optimizer="adam"),
    dict(optimizer="adamw", lr_schedule="cosine", decay_scaling="lr"),
]


@pytest.mark.parametrize("setup", OPTIMIZER_SETUPS, ids=lambda s: s["optimizer"])
def test_float64_mlp_matches_alone_after_200_steps(setup):
    X, y = make_data()
    members = members_of_different_folds(len(X))
    # 5 steps per epoch for the 48- and 48-row members, 4 for the 30-row one: ≥ 200 steps each
    config = TrainConfig.from_options(epochs=50, batch_size=10, dtype=torch.float64, **setup)
    alone = train_alone(mlp, X, y, members, config, keep_weights=True)
    batched = train_batched(mlp, X, y, members, config, keep_weights=True)
    assert [r.steps for r in batched] == [r.steps for r in alone] == [250, 250, 150]
    assert min(r.steps for r in alone) >= 150 and max(r.steps for r in alone) >= 200
    assert max_weight_gap(alone, batched) < 1e-8
    for a, b in zip(alone, batched):
        assert not b.diverged
        assert b.val_accuracy == a.val_accuracy
        assert b.train_loss == pytest.approx(a.train_loss, abs=1e-9)
        assert b.weight_norm == pytest.approx(a.weight_norm, rel=1e-9)


def test_float32_mlp_matches_alone_after_20_steps():
    X, y = make_data(dtype=torch.float32)
    members = members_of_different_folds(len(X))[:2]
    members.append(Member(0.1, 0.01, seed=3, train_index=[i for i in range(60) if i % 3], val_index=range(0, 60, 3)))
    config = TrainConfig.from_options(optimizer="adamw", epochs=5, batch_size=12, dtype=torch.float32)
    alone = train_alone(mlp, X, y, members, config, keep_weights=True)
    batched = train_batched(mlp, X, y, members, config, keep_weights=True)
    assert [r.steps for r in batched] == [20, 20, 20]
    assert max_weight_gap(alone, batched) < 1e-5


def test_float64_cnn_matches_alone_after_200_steps():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(24, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = (X[:, 0, :3].mean((1, 2)) > 0).long()
    members = [Member(1e-2, 0.05, seed=5, train_index=range(0, 16), val_index=range(16, 24)),
               Member(1e-4, 0.1, seed=6, train_index=range(8, 24), val_index=range(0, 8))]
    config = TrainConfig.from_options(optimizer="sgdw", momentum=0.9, epochs=50, batch_size=4, dtype=torch.float64)
    alone = train_alone(cnn, X, y, members, config, keep_weights=True)
    batched = train_batched(cnn, X, y, members, config, keep_weights=True)
    assert [r.steps for r in batched] == [200, 200]
    assert max_weight_gap(alone, batched) < 1e-8


FAST_SETUPS = OPTIMIZER_SETUPS + [dict(optimizer="adam", amsgrad=True, lr_schedule="cosine"),
                                  dict(optimizer="sgdw", decay_scaling="schedule", lr_schedule="cosine")]


@pytest.mark.parametrize("setup", FAST_SETUPS, ids=lambda s: "-".join(map(str, s.values())))
def test_fused_step_equals_reference_update(setup):
    # members sharing lr take torch's fused kernel; the same steps through decaylab.optim.functional
    config = TrainConfig.from_options(dtype=torch.float64, **setup)
    members = [Member(wd, 0.05, seed=s) for s, wd in enumerate((0.0, 1e-2, 0.3))]
    fast_model, ref_model = (_StackedModel(mlp, members, config) for _ in range(2))
    totals = torch.tensor([12, 12, 12])
    fast = _BatchedOptimizer(fast_model, members, config, totals)
    ref = _BatchedOptimizer(ref_model, members, config, totals)
    ref.uniform_steps = None                      # forces the reference path
    initial = [p.detach().clone() for p in fast_model.params]
    gen = torch.Generator().manual_seed(0)
    active = torch.ones(3, dtype=torch.bool)
    for _ in range(6):
        grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in fast_model.params]
        fast.step([g.clone() for g in grads], active)
        ref.step(grads, active)
    assert fast.uniform_steps == 6 and ref.uniform_steps is None
    assert fast.step_count.tolist() == ref.step_count.tolist() == [6, 6, 6]
    for a, b, start in zip(fast_model.params, ref_model.params, initial):
        assert float((a - b).detach().abs().max()) < 1e-13
        assert float((a - start).detach().abs().max()) > 1e-3          # the steps did move every tensor


@pytest.mark.slow  # 200 steps × 3 members, alone and batched
@pytest.mark.parametrize("setup", FAST_SETUPS, ids=lambda s: "-".join(map(str, s.values())))
def test_shared_lr_fast_path_matches_alone_after_200_steps(setup):
    # one lr for all: the fused update runs until the 30-row member idles, then the reference path takes over
    X, y = make_data()
    members = [Member(m.weight_decay, 0.05, m.seed, m.train_index, m.val_index)
               for m in members_of_different_folds(len(X))]
    config = TrainConfig.from_options(epochs=50, batch_size=10, dtype=torch.float64, **setup)
    alone = train_alone(mlp, X, y, members, config, keep_weights=True)
    batched = train_batched(mlp, X, y, members, config, keep_weights=True)
    assert [r.steps for r in batched] == [250, 250, 150]
    assert max_weight_gap(alone, batched) < 1e-8
    same_rows = [Member(m.weight_decay, 0.05, m.seed, range(0, 48)) for m in members]
    alone = train_alone(mlp, X, y, same_rows, config, keep_weights=True)
    batched = train_batched(mlp, X, y, same_rows, config, keep_weights=True)
    assert max_weight_gap(alone, batched) < 1e-8


@pytest.mark.parametrize("factory", [mlp, lambda: MLP(5, 3, (7, 6), activation="gelu", bias=False),
                                     lambda: MLP(5, 2, (8,)), lambda: MLP(5, 2, (8, 4), activation="sigmoid"),
                                     lambda: MLP(5, 2, (), activation="silu")],
                         ids=["sequential-tanh", "gelu-no-bias", "relu", "sigmoid", "linear"])
def test_linear_stack_forward_equals_vmapped_functional_call(factory):
    config = TrainConfig(dtype=torch.float64)
    stacked = _StackedModel(factory, [Member(0.0, 0.1, seed=s) for s in range(4)], config)
    assert stacked.linear_stack is not None
    x = torch.randn(4, 9, 5, dtype=torch.float64)
    fast, fast_shared = stacked.forward(x), stacked.forward(x[0], shared_input=True)
    fast_grads = torch.autograd.grad(fast.square().sum(), stacked.params)
    stacked.linear_stack = None
    assert torch.allclose(fast, stacked.forward(x), rtol=0, atol=1e-13)
    for a, b in zip(fast_grads, torch.autograd.grad(stacked.forward(x).square().sum(), stacked.params)):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert torch.allclose(fast_shared, stacked.forward(x[0], shared_input=True), rtol=0, atol=1e-13)
    assert fast.shape == fast_shared.shape == (4, 9, fast.shape[-1])


@pytest.mark.parametrize("factory", [lambda: MLP(5, 3, (8, 6)), lambda: MLP(5, 3, (7,), bias=False),
                                     lambda: MLP(5, 3, ())], ids=["two-hidden", "no-bias", "linear"])
def test_hand_written_relu_mlp_gradient_equals_autograd(factory):
    config = TrainConfig(dtype=torch.float64)
    stacked = _StackedModel(factory, [Member(0.0, 0.1, seed=s) for s in range(3)], config)
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=gen)
    idx = torch.randint(0, 20, (3, 6), generator=gen)
    weight = torch.tensor([[1 / 6] * 6, [1 / 4] * 4 + [0.0] * 2, [1.0] + [0.0] * 5], dtype=torch.float64)
    with torch.no_grad():
        losses, grads = _relu_mlp_losses_and_grads(stacked.linear_stack, stacked.params, X[idx], y[idx], weight)
    expected = _member_losses(stacked, X, y, idx, weight, "cross_entropy")
    expected_grads = torch.autograd.grad(expected.sum(), stacked.params)
    assert torch.allclose(losses, expected.detach(), rtol=0, atol=1e-14)
    for a, b in zip(grads, expected_grads):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=1e-14)
        assert float(b.abs().max()) > 1e-3


@pytest.mark.slow  # 200 steps × 3 members, alone and batched
@pytest.mark.parametrize("setup", OPTIMIZER_SETUPS, ids=lambda s: s["optimizer"])
def test_float64_relu_mlp_matches_alone_after_200_steps(setup):
    X, y = make_data()
    config = TrainConfig.from_options(epochs=50, batch_size=10, dtype=torch.float64, **setup)
    members = members_of_different_folds(len(X))
    factory = lambda: MLP(5, 2, (12,))       # noqa: E731  (ReLU: the hand-written forward and backward)
    alone = train_alone(factory, X, y, members, config, keep_weights=True)
    batched = train_batched(factory, X, y, members, config, keep_weights=True)
    assert max_weight_gap(alone, batched) < 1e-8
    # the sweep's common case: one lr for all, so the fused update runs on the hand-written gradients
    shared_lr = [Member(m.weight_decay, 0.05, m.seed, range(0, 48)) for m in members]
    alone = train_alone(factory, X, y, shared_lr, config, keep_weights=True)
    batched = train_batched(factory, X, y, shared_lr, config, keep_weights=True)
    assert max_weight_gap(alone, batched) < 1e-8


def test_other_models_keep_the_vmap_forward():
    config = TrainConfig(dtype=torch.float64)
    assert _StackedModel(cnn, [Member(0.0, 0.1)], config).linear_stack is None
    assert _StackedModel(lambda: MLP(5, 2, (4,), layer_norm=True), [Member(0.0, 0.1)], config).linear_stack is None


def relu_regressor():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))


def test_diverged_member_is_reported_and_others_unaffected():
    X, _ = make_data()
    y = 2.0 * X[:, 0] - X[:, 1]
    good = members_of_different_folds(len(X))[:2]
    exploding = Member(0.0, 1e60, seed=4, train_index=range(0, 40), val_index=range(40, 60))
    config = TrainConfig.from_options(optimizer="sgd", momentum=0.9, loss="mse", epochs=4, batch_size=10,
                                      dtype=torch.float64)
    batched = train_batched(relu_regressor, X, y, [good[0], exploding, good[1]], config, keep_weights=True)
    alone = train_alone(relu_regressor, X, y, good, config, keep_weights=True)
    assert batched[1].diverged and math.isnan(batched[1].val_loss) and math.isnan(batched[1].train_loss)
    assert batched[1].steps < 16
    ref_alone = train_alone(relu_regressor, X, y, [exploding], config)[0]
    assert ref_alone.diverged and ref_alone.steps == batched[1].steps and ref_alone.epochs_run == batched[1].epochs_run
    assert not batched[0].diverged and not batched[2].diverged
    assert max_weight_gap(alone, [batched[0], batched[2]]) < 1e-12


def test_validation_rows_never_train_their_member():
    X, y = make_data()
    member = Member(1e-2, 0.05, seed=7, train_index=range(0, 40), val_index=range(40, 60))
    config = TrainConfig.from_options(optimizer="adamw", epochs=6, batch_size=8, dtype=torch.float64)
    poisoned_X, poisoned_y = X.clone(), y.clone()
    poisoned_X[40:] = 1e6 * torch.randn(20, 5, dtype=torch.float64)
    poisoned_y[40:] = 1 - poisoned_y[40:]
    clean = train_batched(mlp, X, y, [member], config, keep_weights=True)[0]
    poisoned = train_batched(mlp, poisoned_X, poisoned_y, [member], config, keep_weights=True)[0]
    for k in clean.state_dict:
        assert torch.equal(clean.state_dict[k], poisoned.state_dict[k])
    # and training on rows 0..39 of X is exactly training on the 40-row subset alone
    subset = train_alone(mlp, X[:40], y[:40], [Member(1e-2, 0.05, seed=7)], config, keep_weights=True)[0]
    assert max_weight_gap([subset], [clean]) < 1e-12
    assert clean.val_loss != poisoned.val_loss  # validation does see the (changed) held-out rows


def test_eval_sets_are_each_members_own_predictions():
    X, y = make_data()
    X_test, y_test = make_data(n=30, seed=9)
    members = members_of_different_folds(len(X))
    config = TrainConfig.from_options(optimizer="adam", epochs=3, batch_size=16, dtype=torch.float64)
    results = train_batched(mlp, X, y, members, config, eval_sets={"test": (X_test, y_test)}, keep_weights=True)
    for r in results:
        model = mlp().double()
        model.load_state_dict(r.state_dict)
        with torch.no_grad():
            out = model(X_test)
        assert r.eval["test"]["loss"] == pytest.approx(float(nn.functional.cross_entropy(out, y_test)), rel=1e-9)
        assert r.eval["test"]["accuracy"] == pytest.approx(float((out.argmax(1) == y_test).double().mean()))


def test_regression_loss_is_mean_squared_error():
    X, _ = make_data()
    y = X[:, 0] * 2.0 - 1.0
    config = TrainConfig.from_options(optimizer="sgd", loss="mse", epochs=30, batch_size=60, dtype=torch.float64)
    results = train_batched(lambda: nn.Linear(5, 1), X, y, [Member(0.0, 0.2, seed=0)], config, keep_weights=True)
    assert results[0].train_loss < 1e-3
    assert math.isnan(results[0].val_accuracy)


def test_cosine_multiplier():
    assert lr_multiplier("constant", 7, 10) == 1.0
    assert lr_multiplier("cosine", 0, 10) == 1.0
    assert lr_multiplier("cosine", 5, 10) == pytest.approx(0.5)
    steps = torch.tensor([0, 5, 10])
    assert torch.allclose(lr_multiplier("cosine", steps, torch.tensor([10, 10, 10])),
                          torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))


def test_unbatchable_models_are_refused():
    assert check_batchable(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))) is None    # per-member statistics
    assert "Dropout" in check_batchable(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)))
    assert check_batchable(mlp()) is None
    X, y = make_data()
    with pytest.raises(ValueError, match="engine='sequential'"):
        train_batched(lambda: nn.Sequential(nn.Linear(5, 2), nn.Dropout(0.5)), X, y, [Member(0.0, 0.1)],
                      TrainConfig(epochs=1))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
    (dict(decay_scaling="cubic"), ValueError, "decay_scaling must be one of"),
    (dict(optimizer="adam", cautious=True), ValueError, "need decoupled weight decay"),
    (dict(lr_schedule="step"), ValueError, "lr_schedule must be one of"),
    (dict(epochs=0), ValueError, "epochs must be an integer"),
    (dict(momentum=-0.5), ValueError, "momentum must be in"),          # the optimizer classes' rule: ≥ 0
    (dict(betas=(0.9,)), TypeError, "betas must be a pair"),           # as the Adam classes
])
def test_bad_config(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig.from_options(**kwargs)


def test_bad_members():
    with pytest.raises(ValueError, match="weight_decay must be in"):
        Member(-1.0, 0.1)
    with pytest.raises(ValueError, match="lr must be in"):
        Member(0.0, 0.0)
    with pytest.raises(ValueError, match="train_index must name at least one row"):
        Member(0.0, 0.1, train_index=[])
    X, y = make_data()
    with pytest.raises(ValueError, match="train_index must name rows in"):
        train_batched(mlp, X, y, [Member(0.0, 0.1, train_index=[0, 99])], TrainConfig(epochs=1))
    with pytest.raises(TypeError, match="members must be Member objects"):
        train_batched(mlp, X, y, [(0.0, 0.1)], TrainConfig(epochs=1))
