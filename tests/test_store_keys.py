"""Store keys stay byte-identical to format 2's, so every store written before the run specifications resumes.

The expected digests below were computed with decaylab at commit 7a57c61 (before ``OptimizerSpec``,
``TrainSpec`` and ``DecayRule`` became the sweep's specification), by running each case of ``CASES``
and taking ``config_key(result.config)`` (the sweep's key) and the SHA-256 of its members' keys joined
in table order; the two CLI cases ran ``decaylab sweep moons --epochs 1 --hidden 4 --out DIR
--no-progress`` with the arguments shown and read DIR/results.json. Do not update them to make a test
pass: a changed key means stores of that configuration retrain.
"""

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

import decaylab
from decaylab.cli import main
from decaylab.sweeps.store import config_key

X = np.stack([np.linspace(-1.0, 1.0, 24), np.cos(np.arange(24.0))], 1).astype(np.float32)
Y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(np.int64)
Y_REG = (2.0 * X[:, 0]).astype(np.float32)


def tiny_factory():
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))


CASES = {
    "defaults": (lambda: decaylab.sweep("linear", (X, Y), [1e-3, 1e-2], folds=2, epochs=1),
                 "477b7687724da64c275ca0673719cfaf605c10931e0e623cd31b29a812b3ce7e",
                 "9806b4b5c03f546c45ef8e113c464b353ced308c3bc2142d909dd36b1007385e"),
    "decoupled": (lambda: decaylab.sweep(
        "mlp", (X, Y), [1e-4, 1e-2], hidden=(4,), optimizer="sgdw", momentum=0.9, nesterov=True,
        decay_scaling="schedule", cautious=True, l1_decay=1e-4, lr_schedule="cosine", lr=[1e-2, 1e-1], seed=[0, 1],
        holdout=0.25, split_seed=3, epochs=1, batch_size=8, dtype=torch.float64, no_decay_names=("*bias", "net.0.*"),
        decay_names=("x*",), decay_embeddings=True, metric="loss"),
        "edb8f959257c0349197258332d3c562b5d8f0fbb1b03f2ab6af0a422b738ec6a",
        "cefae69c888f53dea6d1fbc6eb2760e62b02284f94c7410e5fa5281578cc848b"),
    "coupled": (lambda: decaylab.sweep(
        "linear", (X, Y_REG), [0.0, 0.1], folds=2, optimizer="adam", betas=(0.8, 0.99), eps=1e-7, amsgrad=True,
        momentum=0, decay_biases=True, no_decay_types=(nn.LayerNorm,), epochs=1),
        "1fb533fb8d623e11c27b5277019f364291776ecd7e8abdc096316c96d829e474",
        "beda386c73cf91e266ed3a75e784c6c3324550f2ac9ef769ad229611dc6c1a3f"),
    "factory": (lambda: decaylab.sweep(
        tiny_factory, (X, Y), [1e-3], folds=2, model_key="tiny", epochs=1, dampening=0.5, optimizer="sgd",
        test_data=(X[:5], Y[:5])),
        "ffc1a5d79ac306a6458b3140bd8e0efd5076eb98bb92903c5148e1559fbfe952",
        "d045cd389bf251a2571b86a9f091329a08cf0d374f8b7abec88ad4bf2217a999"),
    # the evidence method: format 2 recorded the optimizer as given ('adamw' when left out) under
    # "requested_optimizer"; the run itself was Adam then as it is now
    "marglik": (lambda: decaylab.sweep("linear", (X, Y), None, method="marglik", epochs=1),
                "d8d2f11996adbaac9930f2e4e1329d0270c5cbe835d81228d9a5d72aec6a895d",
                "502343bf3eebfc1a0cf4bb0c297e7541c0a138a11daa8023ce61152a3dbc32d9"),
    "marglik_sgd": (lambda: decaylab.sweep(
        "mlp", (X, Y), 1e-3, method="marglik", optimizer="sgd", momentum=0.5, lr=[1e-2], seed=[0, 2], hidden=(4,),
        hessian="diag", per_layer=False, epochs=2),
        "1adf33d4b506a57ec519b72ff77cbf9d3c9237abd48ca3b19575e54374e5fcc8",
        "40818775cce24665b004af03d75f101c3793eacc250c5fa5399f4a1bfefcf31b"),
}


def _digests(config, table) -> tuple[str, str]:
    return config_key(config), hashlib.sha256("".join(r["key"] for r in table).encode()).hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_keys_are_those_of_format_2(case):
    run, sweep_key, member_keys = CASES[case]
    result = run()
    assert _digests(result.config, result.table) == (sweep_key, member_keys)


@pytest.mark.parametrize("args, sweep_key, member_keys", [
    (["--folds", "2", "--lambdas", "1e-3,1e-2"], "b3efd1f777e22453453a9ea6732585473cef9ac35ac33f892666bba38b215c02",
     "c7f503d68ed18efc1b51f26ef4b89f8f0353773f344e24ddfaa4ff9dac927949"),
    (["--method", "marglik"], "6ca6aef387999ac89b5741b68f0b58e48ab7b0144e7cc8057e21694c3e5bafe9",
     "5eef53e127ab3a49896f0657e064a7c923f5dbfd7f1eebaaf9fc83919c0324d4"),
])
def test_cli_keys_are_those_of_format_2(tmp_path, capsys, args, sweep_key, member_keys):
    out = tmp_path / "out"
    assert main(["sweep", "moons", "--epochs", "1", "--hidden", "4", "--out", str(out), "--no-progress", *args]) == 0
    capsys.readouterr()
    result = json.loads((out / "results.json").read_text())
    assert _digests(result["config"], result["table"]) == (sweep_key, member_keys)


def test_an_option_added_later_enters_a_key_only_away_from_its_default():
    from decaylab._options import Option
    from decaylab.sweeps.keys import changed

    added = [Option("standardize", False, "", kind="bool"), Option("width", (64,), "")]
    assert changed(added, {"standardize": False, "width": (64,)}) == []
    assert changed(added, {"standardize": True, "width": (64,)}) == ["standardize"]
