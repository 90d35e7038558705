"""A sweep method accepts exactly the options it uses and refuses any other the caller gave, in one line (API:
an InputError naming it; command line: exit 2, one line naming the flag)."""

import numpy as np
import pytest

import decaylab
from decaylab._checks import InputError
from decaylab.cli import main

X = np.stack([np.linspace(-1.0, 1.0, 30), np.cos(np.arange(30.0))], 1).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64)
FAST = dict(epochs=1, batch_size=10)

# a value each grid-only option may take (defaults included: giving an option is what is refused)
GRID_ONLY = {"folds": 5, "holdout": 0.2, "split_seed": 1, "metric": "loss", "engine": "auto", "chunk_size": 2,
             "workers": 1, "lr_schedule": "cosine", "decay_scaling": "lr", "cautious": False, "l1_decay": 0.0,
             "dampening": 0.1, "nesterov": False, "betas": (0.8, 0.9), "eps": 1e-6, "amsgrad": True,
             # Muon's and its AdamW companion's
             "ns_steps": 5, "ns_coefficients": (3.4445, -4.775, 2.0315), "adjust_lr_fn": None, "ns_dtype": None,
             "flatten": False, "muon_names": (), "adamw_names": ("emb*",), "head_names": None, "adamw_lr_ratio": 1.0,
             "adamw_betas": (0.9, 0.999), "adamw_eps": 1e-8, "adamw_weight_decay": 0.1}
FLAGS = {"folds": ["--folds", "3"], "holdout": ["--holdout", "0.2"], "split_seed": ["--split-seed", "1"],
         "metric": ["--metric", "loss"], "engine": ["--engine", "batched"], "chunk_size": ["--chunk-size", "2"],
         "workers": ["--workers", "2"], "lr_schedule": ["--lr-schedule", "cosine"],
         "decay_scaling": ["--decay-scaling", "corrected"], "cautious": ["--cautious"],
         "l1_decay": ["--l1-decay", "0.1"], "dampening": ["--dampening", "0.1"], "nesterov": ["--nesterov"],
         "betas": ["--betas", "0.8,0.9"], "eps": ["--eps", "1e-6"], "amsgrad": ["--amsgrad"],
         "ns_steps": ["--ns-steps", "3"], "ns_coefficients": ["--ns-coefficients", "3.4,-4.7,2.0"],
         "adjust_lr_fn": ["--adjust-lr-fn", "original"], "ns_dtype": ["--ns-dtype", "float32"],
         "flatten": ["--flatten"], "muon_names": ["--muon-names", "layers.*"], "adamw_names": ["--adamw-names", "emb"],
         "head_names": ["--head-names", "out"], "adamw_lr_ratio": ["--adamw-lr-ratio", "0.1"],
         "adamw_betas": ["--adamw-betas", "0.8,0.9"], "adamw_eps": ["--adamw-eps", "1e-10"],
         "adamw_weight_decay": ["--adamw-weight-decay", "0.1"]}


def test_the_lists_above_are_every_grid_only_option():
    from decaylab.sweeps.options import USES

    assert set(GRID_ONLY) == set(FLAGS) == USES["grid"] - USES["marglik"]


@pytest.mark.parametrize("name", sorted(GRID_ONLY))
def test_marglik_refuses_every_grid_only_option_in_one_line(name):
    with pytest.raises(InputError) as refused:
        decaylab.sweep("linear", (X, Y), None, method="marglik", **FAST, **{name: GRID_ONLY[name]})
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{name}={GRID_ONLY[name]!r} does not apply to "
                                                      "method='marglik'"), message


def test_several_refused_options_are_named_together():
    with pytest.raises(InputError, match=r"^folds=3, engine='batched' do not apply to method='marglik'"):
        decaylab.sweep("linear", (X, Y), None, method="marglik", folds=3, engine="batched")


@pytest.mark.parametrize("name, value", [("hessian", "diag"), ("per_layer", False), ("marglik_frequency", 2)])
def test_the_grid_refuses_the_evidence_options(name, value):
    with pytest.raises(InputError, match=rf"^{name}={value!r} does not apply to method='grid'"):
        decaylab.sweep("linear", (X, Y), [1e-3], folds=2, **FAST, **{name: value})


def test_marglik_trains_adam_by_default_and_refuses_a_decoupled_optimizer():
    result = decaylab.sweep("linear", (X, Y), None, method="marglik", **FAST)
    assert result.config["train"]["optimizer"] == "adam"
    sgd = decaylab.sweep("linear", (X, Y), None, method="marglik", optimizer="sgd", momentum=0.5, **FAST)
    assert sgd.config["train"]["optimizer"] == "sgd" and sgd.config["train"]["momentum"] == 0.5
    for decoupled in ("adamw", "sgdw"):
        with pytest.raises(InputError, match=f"^optimizer='{decoupled}' does not apply to method='marglik': "
                                             "the evidence's λ is a coupled prior precision"):
            decaylab.sweep("linear", (X, Y), None, method="marglik", optimizer=decoupled, **FAST)


def test_marglik_runs_on_the_cpu_and_refuses_another_device():
    assert decaylab.sweep("linear", (X, Y), None, method="marglik", device="cpu", **FAST).trained == 1
    with pytest.raises(InputError, match="^device='meta' does not apply to method='marglik'"):
        decaylab.sweep("linear", (X, Y), None, method="marglik", device="meta", **FAST)


def test_marglik_priors_follow_what_decays():
    """The evidence's prior groups — and so the tensors the trainer decays — follow the same DecayRule as the grid."""
    def layers(**what):
        result = decaylab.sweep("mlp", (X, Y), None, method="marglik", hidden=(4,), **FAST, **what)
        return set(result.layer_weight_decay[0]["weight_decay"]), result.config["train"]

    default, train = layers()
    assert default == {"layers.0.weight", "layers.2.weight"} and "decay_biases" not in train
    everything, train = layers(decay_biases=True)
    assert everything == default | {"layers.0.bias", "layers.2.bias"} and train["decay_biases"] is True
    named, train = layers(decay_names=("layers.2.bias",), no_decay_names=("*bias", "layers.0.*"))
    assert named == {"layers.2.weight", "layers.2.bias"}
    assert train["decay_names"] == ["layers.2.bias"] and train["no_decay_names"] == ["*bias", "layers.0.*"]


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_the_command_line_refuses_a_grid_only_flag_with_marglik(name, capsys, tmp_path):
    code = main(["sweep", "moons", "--method", "marglik", *FLAGS[name], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    flag = FLAGS[name][0]
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"decaylab sweep: error: {flag} does not apply to --method marglik: "), err
    assert not (tmp_path / "o").exists()                     # refused before anything was made


def test_the_command_line_refuses_a_lambda_grid_with_marglik(capsys, tmp_path):
    code = main(["sweep", "digits", "--method", "marglik", "--lambdas", "1e-4,1e-3", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "lambdas must be one starting λ (or None) for method='marglik'" in err


def test_the_command_line_refuses_an_evidence_flag_with_the_grid(capsys, tmp_path):
    code = main(["sweep", "moons", "--hessian", "diag", "--global-prior", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("decaylab sweep: error: --hessian, --per-layer do not apply to --method grid"), err
