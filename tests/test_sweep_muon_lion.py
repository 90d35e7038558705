"""decaylab.sweep, decaylab sweep and lr_decay_map take optimizer="muon" (with the AdamW companion) and "lion":
every engine gives the same members, their options enter the store keys, and an option the optimizer does not
take is refused in one line."""

import inspect
import json

import numpy as np
import pytest
import torch

import decaylab
from decaylab import data, models
from decaylab.batched.trainer import Member, TrainConfig, train_alone
from decaylab.cli import main
from decaylab.maps.lr_map import lr_decay_map
from decaylab.optim import Lion, Muon
from decaylab.optim.options import APPLIES, OPTIMIZER_OPTIONS, OWN_DEFAULTS
from decaylab.optim.spec import OptimizerSpec


def moons(n=80):
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n, noise=0.25, random_state=1)


SWEEPS = {   # options and the λ grid (Lion: λ 3–10× AdamW's, as its paper advises)
    "muon": (dict(optimizer="muon", lr=0.05, adamw_lr_ratio=0.2, lr_schedule="cosine"), [1e-3, 3e-1]),
    "lion": (dict(optimizer="lion", lr=0.005, betas=(0.9, 0.95)), [1e-3, 3.0]),
}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_trains_muon_and_lion_in_every_engine_with_the_same_members(name):
    X, y = moons()
    options, lambdas = SWEEPS[name]
    kwargs = dict(folds=2, epochs=4, batch_size=16, hidden=(8, 8), dtype=torch.float64, **options)
    runs = {engine: decaylab.sweep("mlp", (X, y), lambdas, engine=engine, **kwargs)
            for engine in ("batched", "sequential", "auto")}
    assert runs["auto"].engine == "batched"                          # a plain MLP takes the batched fast path
    tables = [r.table for r in runs.values()]
    for rows in zip(*tables):
        assert len({row["key"] for row in rows}) == 1                # the engine is not part of the key
        for row in rows[1:]:
            assert row["val_loss"] == pytest.approx(rows[0]["val_loss"], abs=1e-9)
            assert row["weight_norm"] == pytest.approx(rows[0]["weight_norm"], rel=1e-9)
    norms = {row["lambda"]: row["weight_norm"] for row in runs["batched"].table if row["fold"] == 0}
    assert norms[lambdas[1]] < 0.95 * norms[lambdas[0]]             # λ decays the weights
    assert runs["batched"].config["train"]["optimizer"] == name


def test_the_optimizers_options_enter_the_store_key():
    X, y = moons(40)
    base = dict(folds=2, epochs=1, batch_size=16, hidden=(4,))
    key = {}
    for label, options in {"muon": dict(optimizer="muon"), "ns_steps": dict(optimizer="muon", ns_steps=3),
                           "companion": dict(optimizer="muon", adamw_weight_decay=0.1),
                           "lion": dict(optimizer="lion"), "betas": dict(optimizer="lion", betas=(0.9, 0.98))}.items():
        result = decaylab.sweep("mlp", (X, y), [1e-2], **base, **options)
        key[label] = result.table[0]["key"]
        train = result.config["train"]
        assert set(train) - {"epochs", "batch_size", "lr_schedule", "loss", "dtype", "decay_biases",
                             "no_decay_types", "no_decay_names", "decay_names", "decay_embeddings"} == \
            {"optimizer", *APPLIES[options["optimizer"]]}
    assert len(set(key.values())) == len(key)
    muon = decaylab.sweep("mlp", (X, y), [1e-2], **base, optimizer="muon").config["train"]
    assert (muon["momentum"], muon["nesterov"], muon["eps"], muon["ns_dtype"]) == (0.95, True, 1e-7, None)


@pytest.mark.parametrize("optimizer, options, says", [
    ("lion", dict(momentum=0.9), "momentum=0.9 does not apply to optimizer='lion', which takes decay_scaling, "
                                 "cautious, l1_decay, betas"),
    ("muon", dict(betas=(0.9, 0.95), amsgrad=False), "betas=(0.9, 0.95), amsgrad=False do not apply to "
                                                     "optimizer='muon'"),
    ("adamw", dict(ns_steps=3), "ns_steps=3 does not apply to optimizer='adamw'"),
    ("sgd", dict(adamw_weight_decay=None), "adamw_weight_decay=None does not apply to optimizer='sgd'"),
])
def test_an_option_the_optimizer_does_not_take_is_refused_in_one_line(optimizer, options, says):
    X, y = moons(40)
    calls = [lambda: decaylab.sweep("mlp", (X, y), [1e-2], folds=2, epochs=1, optimizer=optimizer, **options),
             lambda: lr_decay_map(lambda: models.MLP(2, 2, (4,)), (X, y), (X, y), optimizer=optimizer,
                                  lrs=[1e-3, 1e-2, 1e-1], decays=[1e-3, 1e-2, 1e-1], epochs=1, **options)]
    for call in calls:
        with pytest.raises(ValueError) as refused:
            call()
        assert str(refused.value).startswith(says) and "\n" not in str(refused.value)


def test_the_command_line_trains_muon_and_refuses_flags_it_does_not_take(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["sweep", "moons", "--optimizer", "muon", "--epochs", "1", "--hidden", "4,4", "--lambdas", "1e-3,1e-1",
                 "--folds", "2", "--ns-steps", "3", "--adamw-lr-ratio", "0.5", "--ns-dtype", "float32",
                 "--ns-coefficients", "3.4445,-4.775,2.0315", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    train = json.loads((out / "results.json").read_text())["config"]["train"]
    assert (train["optimizer"], train["ns_steps"], train["adamw_lr_ratio"], train["ns_dtype"]) == \
        ("muon", 3, 0.5, "torch.float32")
    assert train["ns_coefficients"] == [3.4445, -4.775, 2.0315]
    capsys.readouterr()
    code = main(["sweep", "moons", "--optimizer", "lion", "--momentum", "0.9", "--nesterov", "--out",
                 str(tmp_path / "refused")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--momentum, --nesterov do not apply to --optimizer lion" in err
    assert not (tmp_path / "refused").exists()


def test_the_evidence_method_refuses_muon_and_its_options():
    X, y = moons(40)
    with pytest.raises(ValueError, match="optimizer='muon' does not apply to method='marglik'"):
        decaylab.sweep("mlp", (X, y), None, method="marglik", optimizer="muon", epochs=1)
    with pytest.raises(ValueError, match="ns_steps=3 does not apply to method='marglik'"):
        decaylab.sweep("mlp", (X, y), None, method="marglik", ns_steps=3, epochs=1)


@pytest.mark.parametrize("optimizer, options", [("muon", dict(adamw_lr_ratio=0.5)), ("lion", {})])
def test_lr_decay_map_with_muon_and_lion_matches_runs_alone(optimizer, options):
    moons_data = data.load("moons", seed=0, n_train=40, n_test=60, label_noise=0.2, dtype=torch.float64)
    lrs = [0.01, 0.03, 0.1] if optimizer == "muon" else [1e-3, 3e-3, 1e-2]
    decays = [1e-3, 1e-2, 1e-1]

    def factory():
        return models.MLP(2, 2, (8, 8))

    m = lr_decay_map(factory, moons_data.train, moons_data.test, optimizer=optimizer, lrs=lrs, decays=decays,
                     seeds=(2,), epochs=4, batch_size=16, dtype=torch.float64, **options)
    assert m.decay_scaling == "schedule" and m.label.startswith({"muon": "Muon", "lion": "Lion"}[optimizer])
    assert m.predicted_slope == {"fixed-point": 1.0, "equilibrium": 0.0}[m.regime["regime"]]
    config = TrainConfig.from_options(optimizer=optimizer, epochs=4, batch_size=16, lr_schedule="cosine",
                                      decay_scaling="schedule", dtype=torch.float64, **options)
    for i, j in [(0, 2), (2, 0), (1, 1)]:
        (alone,) = train_alone(factory, moons_data.train.X, moons_data.train.y, [Member(decays[j], lrs[i], seed=2)],
                               config)
        assert m.train_loss[0, i, j] == pytest.approx(alone.train_loss, rel=1e-9)
    if optimizer == "muon":
        assert m.settings["momentum"] == 0.95 and m.settings["muon"]["adamw_lr_ratio"] == 0.5
    else:
        assert m.settings["betas"] == [0.9, 0.99] and m.settings["momentum"] is None


def test_muon_and_lion_take_their_own_defaults_which_are_the_classes():
    for optimizer, cls in (("muon", Muon), ("lion", Lion)):
        params = inspect.signature(cls.__init__).parameters
        for name, value in OWN_DEFAULTS[optimizer].items():
            assert params[name].default == value, (optimizer, name)
            assert getattr(OptimizerSpec(optimizer), name) == value
    # the declared defaults of the other options a class takes are the class's too
    muon = inspect.signature(Muon.__init__).parameters
    for name in ("ns_steps", "ns_coefficients", "adjust_lr_fn", "flatten", "decay_scaling", "cautious", "l1_decay"):
        declared = next(o.default for o in OPTIMIZER_OPTIONS if o.name == name)
        assert muon[name].default == declared, name


def test_a_spec_pickles_and_replaces_as_itself():
    import dataclasses
    import pickle

    for spec in (OptimizerSpec("muon", ns_dtype=torch.float32, muon_names="0.*"), OptimizerSpec("lion", cautious=True),
                 OptimizerSpec("sgd", momentum=0.9)):
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert dataclasses.replace(spec) == spec
    assert OptimizerSpec("muon", muon_names="0.*").muon_names == ("0.*",)
    with pytest.raises(ValueError, match=r"^momentum=0.95, nesterov=True, .* do not apply to optimizer='lion'"):
        dataclasses.replace(OptimizerSpec("muon"), name="lion")


def test_a_muon_sweep_on_a_model_without_hidden_matrices_is_all_adamw():
    # the built-in linear model is one Linear: the output head, the companion's
    X, y = moons(40)
    muon = decaylab.sweep("linear", (X, y), [1e-2, 1e-1], folds=2, epochs=3, optimizer="muon", lr=0.05,
                          dtype=torch.float64)
    adamw = decaylab.sweep("linear", (X, y), [1e-2, 1e-1], folds=2, epochs=3, optimizer="adamw", lr=0.05,
                           dtype=torch.float64)
    for a, b in zip(muon.table, adamw.table):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-12)
    assert np.isfinite([r["val_loss"] for r in muon.table]).all()
