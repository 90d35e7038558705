"""decaylab.marglik at the public edge: bad input, conventions, per-layer results and the online loop."""

import math

import pytest
import torch
from torch import nn

import decaylab
from decaylab._checks import InputError, InputTypeError
from decaylab.evidence.online import train_marglik


def _data(n=40, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    return X, torch.arange(n) % classes


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_a_model_without_decayed_parameters_is_refused():
    model = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 3, bias=True))
    with pytest.raises(InputError, match="at least one decayed parameter"):
        decaylab.marglik(model, _data(), no_decay_names=("*",))
    with pytest.raises(InputError, match="at least one decayed parameter"):
        train_marglik(model, _data(), no_decay_names=("*",))


@pytest.mark.parametrize("loss", [nn.L1Loss(), "hinge", nn.NLLLoss(), 3])
def test_a_loss_other_than_cross_entropy_or_mse_is_refused(loss):
    with pytest.raises(InputError, match="loss must be 'cross_entropy' or 'mse'"):
        decaylab.marglik(_mlp(), _data(), loss=loss)


def test_data_of_one_class_is_refused():
    X, _ = _data()
    with pytest.raises(InputError, match="at least 2 classes.*only class 2"):
        decaylab.marglik(_mlp(), (X, torch.full((len(X),), 2)))


def test_other_bad_input_names_the_argument():
    X, y = _data()
    with pytest.raises(InputError, match="hessian must be one of"):
        decaylab.marglik(_mlp(), (X, y), hessian="lowrank")
    with pytest.raises(InputError, match=r"class labels in \[0, 2\]"):
        decaylab.marglik(_mlp(), (X, y + 1))
    with pytest.raises(InputError, match="max_full_parameters"):
        decaylab.marglik(_mlp(), (X, y), hessian="full", max_full_parameters=10)
    with pytest.raises(InputTypeError, match="model must be a torch.nn.Module"):
        decaylab.marglik(lambda x: x, (X, y))
    with pytest.raises(InputTypeError, match="data must be an"):
        decaylab.marglik(_mlp(), X)
    with pytest.raises(InputError, match="no_decay_precision"):
        decaylab.marglik(_mlp(), (X, y), no_decay_precision=0.0)
    with pytest.raises(InputError, match="weight_decay"):
        decaylab.marglik(_mlp(), (X, y), weight_decay=-1.0)


def test_prior_precision_is_weight_decay_times_n_in_every_convention():
    X, y = _data()
    res = decaylab.marglik(_mlp(), (X, y), hessian="diag")
    delta = res.prior_precision["decayed"]
    assert res.lambda_ == pytest.approx(delta / len(X), rel=1e-12)
    assert decaylab.convert(delta, "prior-precision", "coupled", dataset_size=len(X)) == pytest.approx(res.lambda_)
    assert res.convert("penalty") == pytest.approx(res.lambda_ / 2)
    assert res.convert("torch-adamw") == pytest.approx(res.lambda_)     # same per-step decay at plain SGD
    # biases are not decayed by param_groups: they carry the broad prior δ₀, i.e. λ₀ = δ₀/N
    assert res.groups["0.bias"] is None and res.parameter_weight_decay["0.bias"] == pytest.approx(1e-4 / len(X))


def test_per_layer_gives_one_lambda_per_decayed_layer_and_param_groups():
    X, y = _data()
    model = _mlp()
    res = decaylab.marglik(model, (X, y), per_layer=True)
    assert set(res.weight_decay) == {"0.weight", "2.weight"}
    with pytest.raises(InputError, match="one λ per layer"):
        res.lambda_
    groups = res.param_groups(model)
    assert sorted(g["weight_decay"] for g in groups) == sorted([0.0, *res.weight_decay.values()])
    torch.optim.Adam(groups)     # usable as is
    # per-layer evidence is at least that of the best single λ (it contains it)
    single = decaylab.marglik(model, (X, y))
    assert res.log_evidence >= single.log_evidence - 1e-6


def test_mse_returns_sigma_and_the_sigma_dependent_coupled_lambda():
    X, _ = _data()
    y = X[:, :1] * 2 + 0.1 * torch.randn(len(X), 1)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1))
    res = decaylab.marglik(model, (X, y))
    assert res.loss == "mse" and res.sigma > 0
    assert res.lambda_ == pytest.approx(2 * res.sigma ** 2 * res.prior_precision["decayed"] / len(X), rel=1e-12)


def test_online_training_learns_lambda_and_records_the_evidence_curve():
    X, y = _data(n=90)
    model = _mlp()
    X_test, y_test = _data(n=30, seed=1)
    out = train_marglik(model, (X, y), epochs=6, frequency=2, per_layer=True, batch_size=30,
                        eval_sets={"test": (X_test, y_test)})
    assert [h["epoch"] for h in out.history] == [2, 4, 6]
    assert all(math.isfinite(h["log_evidence"]) for h in out.history)
    assert set(out.weight_decay) == {"0.weight", "2.weight"}
    # the optimizer ended with the learned λ as its coupled weight_decay
    assert out.final.weight_decay == out.weight_decay
    assert out.steps == 18
    # the test accuracy is the trained model's on the test rows
    with torch.no_grad():
        predicted = out.model(X_test).argmax(1)
    assert out.evals["test"]["accuracy"] == pytest.approx(float((predicted == y_test).double().mean()), abs=1e-12)


class _TokenModel(nn.Module):
    """Token ids → embedding → linear: its input must stay integer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.out = nn.Linear(4 * 5, 2)

    def forward(self, x):
        return self.out(self.embed(x).flatten(1))


def test_integer_token_ids_stay_integers_for_a_model_that_embeds_them():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 7, (60, 5), generator=g)
    y = (tokens[:, 0] > tokens[:, 1]).long()
    torch.manual_seed(0)
    out = train_marglik(_TokenModel(), (tokens, y), epochs=2, batch_size=20, eval_sets={"test": (tokens, y)})
    assert math.isfinite(out.final.log_evidence) and "out.weight" in out.weight_decay
    assert math.isfinite(decaylab.marglik(out.model, (tokens.numpy(), y)).log_evidence)
    result = decaylab.sweep(_TokenModel, (tokens, y), None, method="marglik", epochs=2, batch_size=20)
    assert result.best_lambda > 0
    # integer features for a model without an embedding are still cast to its float dtype
    assert math.isfinite(decaylab.marglik(_mlp(), (torch.randint(0, 5, (40, 4)), torch.arange(40) % 3)).log_evidence)


def test_the_evidence_sweep_casts_integer_features_for_a_model_without_an_embedding():
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 5, (40, 4), generator=g)
    y = torch.arange(40) % 3
    result = decaylab.sweep(_mlp, (X, y), None, method="marglik", epochs=2, batch_size=20)
    as_floats = decaylab.sweep(_mlp, (X.float(), y), None, method="marglik", epochs=2, batch_size=20)
    assert result.best_lambda > 0
    assert result.best_lambda == pytest.approx(as_floats.best_lambda, rel=1e-6)     # the same run as float input
    assert result.table[0]["log_evidence"] == pytest.approx(as_floats.table[0]["log_evidence"], rel=1e-6)
