"""OptimizerSpec and the optimizer classes apply one set of rules: for each option, both accept and refuse the
same values, with the same exception and message (the declarations of ``decaylab.optim.options``)."""

import math

import pytest
import torch

from decaylab._checks import InputError
from decaylab.optim import SGD, SGDW, Adam, AdamW, Lion, Muon
from decaylab.optim.options import OPTIONS
from decaylab.optim.spec import OptimizerSpec

NAN, INF = math.nan, math.inf
NAMES = {SGD: "sgd", SGDW: "sgdw", Adam: "adam", AdamW: "adamw", Muon: "muon", Lion: "lion"}

# option → (class that takes it, options it needs besides, values to try: allowed and refused)
CASES = {
    "momentum": (SGD, {}, [0.0, 0.9, 1.0, 1.5, 3, -0.5, NAN, INF, "0.9", True]),
    "dampening": (SGD, {"momentum": 0.9}, [0.0, 0.5, 1.5, -0.2, INF, None]),
    "nesterov": (SGD, {"momentum": 0.9}, [True, False, 1, "yes"]),
    "betas": (Adam, {}, [(0.9, 0.999), (0.0, 0.5), [0.5, 0.5], (1.0, 0.9), (0.9, -0.1), (0.9, NAN), (0.9,), 0.9,
                         "ab"]),
    "eps": (Adam, {}, [1e-8, 0.0, 1.0, -1e-8, INF, "1e-8"]),
    "amsgrad": (Adam, {}, [True, False, 1, None]),
    "decay_scaling": (AdamW, {}, ["lr", "schedule", "corrected", "cosine", None]),
    "cautious": (SGDW, {}, [True, False, 1, "yes"]),
    "l1_decay": (AdamW, {}, [0.0, 1e-3, 2, -1.0, NAN]),
    "ns_steps": (Muon, {}, [0, 5, 99, 100, -1, 2.5, True]),
    "ns_coefficients": (Muon, {}, [(3.0, -4.0, 2.0), [1, 2, 3], (1.0, 2.0), (1.0, NAN, 2.0), "abc"]),
    "adjust_lr_fn": (Muon, {}, [None, "original", "match_rms_adamw", "moonlight"]),
    "ns_dtype": (Muon, {}, [torch.bfloat16, torch.float64, None, torch.float16, "float32"]),
    "flatten": (Muon, {}, [True, False, 1]),
}
#: options of a class besides the one CASES tries them on
ALSO = {"momentum": (Muon, {}, [0.0, 0.95, 2.0, -0.1, NAN]), "nesterov": (Muon, {}, [True, False, "no"]),
        "eps": (Muon, {}, [1e-7, 0.0, -1.0]),
        "betas": (Lion, {}, [(0.9, 0.99), (0.0, 0.0), (1.0, 0.9), (0.9,), (0.9, NAN)]),
        "cautious": (Lion, {}, [True, False, 1]), "decay_scaling": (Muon, {}, ["lr", "schedule", "cubic"])}
#: options no optimizer class takes by that name (the AdamW companion's, MuonRule's): the spec refuses what
#: their declaration refuses, with its message
DECLARED = {"adamw_lr_ratio": [1.0, 0.02, 0.0, -1.0, NAN], "adamw_betas": [(0.9, 0.95), (1.0, 0.9), (0.9,)],
            "adamw_eps": [1e-10, 0.0, -1e-8], "adamw_weight_decay": [None, 0.1, -0.1, INF],
            "muon_names": [(), "blocks.*", ("a", "b"), 3, ("a", 1)], "adamw_names": [(), "emb*", [None]],
            "head_names": [None, (), "lm_head", 2.0]}


def outcome(make, *args, **kwargs):
    """``None`` if ``make(*args, **kwargs)`` succeeds, else the exception's type and message."""
    try:
        make(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any refusal is compared
        return type(exc), str(exc)
    return None


def test_every_option_of_the_spec_is_tried():
    from decaylab.optim.options import OPTIMIZER_OPTIONS

    assert set(CASES) | set(DECLARED) == {o.name for o in OPTIMIZER_OPTIONS} - {"optimizer"}
    assert not set(CASES) & set(DECLARED)


@pytest.mark.parametrize("option, case", [(o, CASES[o]) for o in sorted(CASES)] +
                         [pytest.param(o, ALSO[o], id=f"{o}-{ALSO[o][0].__name__}") for o in sorted(ALSO)])
def test_the_spec_and_the_class_accept_and_refuse_the_same_values(option, case):
    cls, needs, values = case
    param = torch.nn.Parameter(torch.ones(2, 2) if cls is Muon else torch.ones(2))     # Muon takes matrices
    refused = 0
    for value in values:
        kwargs = {**needs, option: value}
        by_class = outcome(cls, [param], lr=0.1, **kwargs)
        by_spec = outcome(OptimizerSpec, NAMES[cls], **kwargs)
        assert by_spec == by_class, (option, value)
        refused += by_spec is not None
    assert 0 < refused < len(values)                       # each option has values of both kinds


@pytest.mark.parametrize("option", sorted(DECLARED))
def test_the_spec_refuses_what_the_declaration_refuses(option):
    refused = 0
    for value in DECLARED[option]:
        by_spec = outcome(OptimizerSpec, "muon", **{option: value})
        assert by_spec == outcome(OPTIONS[option].check, value), (option, value)
        refused += by_spec is not None
    assert 0 < refused < len(DECLARED[option])


def test_momentum_above_one_is_allowed_as_by_torch():
    """Format 2's spec allowed momentum only in [0, 1) while SGD (as torch.optim.SGD) allows any momentum ≥ 0."""
    torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1, momentum=1.5)
    assert OptimizerSpec("sgd", momentum=1.5).build([torch.nn.Parameter(torch.ones(2))], lr=0.1).defaults[
        "momentum"] == 1.5
    with pytest.raises(ValueError, match=r"^Invalid momentum value: -0.5 \(momentum must be in \[0.0, inf\)"):
        OptimizerSpec("sgd", momentum=-0.5)


def test_decoupled_only_options_follow_one_rule_in_the_spec_and_the_param_groups():
    with pytest.raises(InputError, match="need decoupled weight decay: use SGDW or AdamW") as spec:
        OptimizerSpec("adam", cautious=True)
    with pytest.raises(InputError, match="need decoupled weight decay: use SGDW or AdamW") as group:
        Adam([{"params": [torch.nn.Parameter(torch.ones(2))], "cautious": True}], lr=0.1)
    assert "optimizer='adam'" in str(spec.value) and "param group" in str(group.value)
