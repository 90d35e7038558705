"""The declarations (decaylab._options), the run specification (TrainSpec, what decays) and TrainConfig built
from an OptimizerSpec and a DecayRule."""

import pytest
import torch
from torch import nn

from decaylab._checks import InputError, InputTypeError
from decaylab._options import Default, Interval, Option, given_values
from decaylab.batched.members import TrainConfig
from decaylab.groups import DecayRule
from decaylab.optim.spec import OptimizerSpec
from decaylab.runspec import DECAY_OPTIONS, RUN_OPTIONS, TrainSpec, decay_rule


@pytest.mark.parametrize("option, value, error, message", [
    (Option("rate", 0.1, "", kind="real", interval=Interval(0.0, 1.0, high_open=True)), 1.0, InputError,
     r"^rate must be in \[0.0, 1.0\), got 1.0$"),
    (Option("rate", 0.1, "", kind="real"), "0.1", InputTypeError, "^rate must be a real number, got '0.1'"),
    (Option("count", 1, "", kind="int", interval=Interval(0, None, low_open=True)), 0, InputError,
     r"^count must be an integer in \[1, inf\], got 0$"),
    (Option("flag", False, "", kind="bool"), 1, InputTypeError, r"^flag must be a bool, got 1 \(int\)$"),
    (Option("mode", "a", "", kind="choice", choices=("a", "b")), "c", InputError,
     "^mode must be one of 'a', 'b', got 'c'$"),
    (Option("pair", (0.1, 0.2), "", kind="pair", interval=Interval(0.0, 1.0)), (0.1, 2.0), InputError,
     r"^pair\[1\] must be in \[0.0, 1.0\], got 2.0$"),
    (Option("pair", (0.1, 0.2), "", kind="pair"), 0.1, InputTypeError, r"^pair must be a pair"),
    (Option("names", (), "", kind="names"), ["a", 1], InputTypeError, r"^names must be strings, got 1 \(int\)$"),
    (Option("m", 0.0, "", kind="real", interval=Interval(0.0, None), torch_message="Invalid m value: {value}"),
     -1, InputError, r"^Invalid m value: -1 \(m must be in \[0.0, inf\), got -1.0\)$"),
])
def test_a_declaration_refuses_naming_the_parameter_the_value_and_what_is_allowed(option, value, error, message):
    with pytest.raises(error, match=message):
        option.check(value)


def test_a_declaration_accepts_and_normalizes():
    assert Option("n", (), "", kind="names").check("w*") == ("w*",)
    assert Option("p", (0.1, 0.2), "", kind="pair").check([torch.tensor(0.5), 1]) == (0.5, 1.0)
    assert Option("x", None, "", kind="real", none=True).check(None) is None
    assert Option("m", 0.0, "", kind="real").check(0) == 0 and type(Option("m", 0.0, "", kind="real").check(0)) is int
    with pytest.raises(InputError, match="choices go with kind 'choice'"):
        Option("bad", 1, "", kind="int", choices=(1, 2))


def test_given_values_tell_what_the_caller_gave():
    values, given = given_values({"a": Default(1), "b": 2, "c": Default(None)})
    assert values == {"a": 1, "b": 2, "c": None} and given == {"b"}
    assert repr(Default((64,))) == "(64,)"


def test_train_spec_checks_its_options_and_resolves_the_loss():
    spec = TrainSpec.from_options({"epochs": 3, "seed": [2, 0], "device": "cpu", "unrelated": 1})
    assert (spec.epochs, spec.seeds, spec.batch_size) == (3, (2, 0), RUN_OPTIONS["batch_size"].default)
    assert spec.resolved_loss(torch.zeros(3)) == "mse" and spec.resolved_loss(torch.zeros(3, dtype=torch.long)) == \
        "cross_entropy"
    assert spec.shared(torch.zeros(3))["loss"] == "mse"
    for bad, message in [(dict(epochs=0), "epochs must be an integer"), (dict(seeds=(1, 1)), "seed must not repeat"),
                         (dict(loss="hinge"), "loss must be one of"), (dict(device="warp"), "device must name"),
                         (dict(dtype=torch.float16), "dtype must be one of")]:
        with pytest.raises(InputError, match=message):
            TrainSpec(**bad)


class _Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 2)


def test_what_decays_is_one_rule_and_train_config_asks_it():
    assert decay_rule(decay_biases=True) == DecayRule.everything()
    assert decay_rule(decay_biases=True, no_decay_names=("head.*",)) == DecayRule.everything()
    with pytest.raises(InputTypeError, match="no_decay_names must be strings"):
        decay_rule(decay_biases=True, no_decay_names=(3,))                # checked even where everything decays
    model = _Embedder()
    assert TrainConfig().decayed_names(model) == {"emb.weight": False, "head.weight": True, "head.bias": False}
    rule = DecayRule(decay_embeddings=True)
    assert TrainConfig(decay=rule).decayed_names(model) == rule.decays(model)
    assert all(TrainConfig.from_options(decay_biases=True).decayed_names(model).values())


def test_train_config_holds_an_optimizer_spec_and_a_decay_rule():
    config = TrainConfig.from_options(optimizer="sgd", momentum=0.9, decay_names=("emb.*",), epochs=3)
    assert config.optimizer == OptimizerSpec("sgd", momentum=0.9) and config.decay == DecayRule(decay_names=("emb.*",))
    assert config.epochs == 3 and not config.decoupled and not config.is_adam
    assert set(DECAY_OPTIONS) == {"decay_biases", "no_decay_types", "no_decay_names", "decay_names",
                                  "decay_embeddings"}
    with pytest.raises(InputTypeError, match="optimizer must be an OptimizerSpec"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(TypeError, match="unexpected keyword argument 'weight_decays'"):
        TrainConfig.from_options(weight_decays=1.0)
