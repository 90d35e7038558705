"""Bad input to the optimizers raises ValueError/TypeError naming the argument, the value and what is allowed."""

from __future__ import annotations

import pytest
import torch

from decaylab.optim import SGD, SGDW, Adam, AdamW

NAN, INF = float("nan"), float("inf")


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


ALL = [SGD, SGDW, Adam, AdamW]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("arg", ["lr", "weight_decay"])
@pytest.mark.parametrize("value,error,says", [
    (-0.1, ValueError, r"must be in \[0.0, inf\), got -0.1"),
    (NAN, ValueError, "must be finite, got nan"),
    (INF, ValueError, "must be finite, got inf"),
    ("0.1", TypeError, "must be a real number, got '0.1'"),
])
def test_lr_and_weight_decay_must_be_finite_and_nonnegative(cls, arg, value, error, says):
    with pytest.raises(error, match=f"{arg} {says}"):
        cls(_params(), **{arg: value})


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("value,says", [(-1e-8, r"in \[0.0, inf\)"), (NAN, "finite"),
                                        (INF, "finite")])
def test_eps_must_be_finite_and_nonnegative(cls, value, says):
    with pytest.raises(ValueError, match=f"eps must be {says}"):
        cls(_params(), eps=value)


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("betas,name", [((1.0, 0.999), "betas\\[0\\]"),
                                        ((-0.1, 0.999), "betas\\[0\\]"),
                                        ((0.9, 1.0), "betas\\[1\\]"),
                                        ((0.9, NAN), "betas\\[1\\]")])
def test_betas_must_lie_in_unit_interval(cls, betas, name):
    with pytest.raises(ValueError, match=f"{name} must be .*got"):
        cls(_params(), betas=betas)
    with pytest.raises(TypeError, match="betas must be a pair"):
        cls(_params(), betas=0.9)


@pytest.mark.parametrize("cls", [SGD, SGDW])
@pytest.mark.parametrize("kwargs", [dict(nesterov=True), dict(nesterov=True, momentum=0.9,
                                                               dampening=0.1)])
def test_nesterov_needs_momentum_and_no_dampening(cls, kwargs):
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0 and dampening"):
        cls(_params(), lr=0.1, **kwargs)


@pytest.mark.parametrize("cls", [SGD, SGDW])
def test_momentum_must_be_nonnegative(cls):
    with pytest.raises(ValueError, match=r"momentum must be in \[0.0, inf\), got -0.5"):
        cls(_params(), momentum=-0.5)


@pytest.mark.parametrize("cls", [SGDW, AdamW])
def test_decay_options_are_checked(cls):
    with pytest.raises(ValueError, match="^decay_scaling must be one of 'lr', 'schedule', "
                                         "'corrected', got 'cosine'"):
        cls(_params(), decay_scaling="cosine")
    with pytest.raises(TypeError, match="^cautious must be a bool, got 1"):
        cls(_params(), cautious=1)
    with pytest.raises(ValueError, match=r"^l1_decay must be in \[0.0, inf\), got -1.0"):
        cls(_params(), l1_decay=-1.0)
    with pytest.raises(ValueError, match="decay_reference_lr"):
        cls(_params(), lr=0.0, weight_decay=0.1, decay_scaling="schedule")


@pytest.mark.parametrize("cls", ALL)
def test_non_tensor_in_params(cls):
    with pytest.raises(TypeError, match=r"^params must contain only torch.Tensor .*got 3 \(int\)"):
        cls([torch.nn.Parameter(torch.ones(2)), 3])
    with pytest.raises(TypeError, match="params must contain only torch.Tensor"):
        cls([{"params": [torch.nn.Parameter(torch.ones(2)), "w"]}])


def test_param_group_options_are_checked_like_constructor_arguments():
    opt = AdamW(_params(), lr=0.1)
    with pytest.raises(ValueError, match=r"lr must be in \[0.0, inf\), got -1.0"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": -1.0})
    with pytest.raises(ValueError, match="^decay_scaling must be one of"):
        AdamW([{"params": _params(), "decay_scaling": "linear"}])
    with pytest.raises(ValueError, match="need decoupled weight decay: use SGDW or AdamW"):
        SGD([{"params": _params(), "decay_scaling": "schedule"}], lr=0.1)


@pytest.mark.parametrize("cls", ALL)
def test_torch_errors_kept(cls):
    """Empty params, sets of params and conflicting kernel flags fail as in torch."""
    with pytest.raises(ValueError, match="empty parameter list"):
        cls([])
    with pytest.raises(TypeError, match="ordered collections"):
        cls([{"params": set(_params())}])
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        cls(_params(), fused=True, foreach=True)
    with pytest.raises(RuntimeError, match="`fused` does not support `differentiable`"):
        cls(_params(), fused=True, differentiable=True)


TORCH_REJECTS = [
    ("SGD", dict(lr=-1.0)), ("SGD", dict(lr=torch.tensor([0.1, 0.2]))), ("SGD", dict(lr=0.1, momentum=-1)),
    ("SGD", dict(lr=0.1, weight_decay=-1)), ("SGD", dict(lr=0.1, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)),
    ("SGD", dict(lr=0.1, fused=True, foreach=True)),
    ("Adam", dict(lr=-1.0)), ("Adam", dict(lr=0.1, eps=-1)), ("Adam", dict(lr=0.1, betas=(1.0, 0.9))),
    ("Adam", dict(lr=0.1, betas=(0.9, -0.1))), ("Adam", dict(lr=0.1, weight_decay=-1)),
    ("AdamW", dict(lr=torch.tensor([0.1, 0.2]))), ("AdamW", dict(lr=0.1, weight_decay=-0.5)),
    ("AdamW", dict(lr=-0.5, betas=(0.9, 0.999))),
]


@pytest.mark.parametrize("cls, kwargs", TORCH_REJECTS)
def test_torch_rejects_and_so_do_we_with_its_type_and_message(cls, kwargs):
    """Code written against torch (``except ValueError``, ``pytest.raises(match=torch's text)``) keeps
    working: the same exception type, and the message starts with torch's (decaylab's detail follows)."""
    import decaylab.optim as dl

    params = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(Exception) as theirs:
        getattr(torch.optim, cls)(params, **kwargs)
    with pytest.raises(Exception) as ours:
        getattr(dl, cls)(params, **kwargs)
    assert isinstance(ours.value, type(theirs.value))
    assert str(ours.value).startswith(str(theirs.value)), (str(ours.value), str(theirs.value))


@pytest.mark.parametrize("torch_cls, ours", [(torch.optim.Adam, "Adam"), (torch.optim.AdamW, "AdamW")])
@pytest.mark.parametrize("kwargs", [
    dict(lr=torch.tensor(1e-3), foreach=True),
    dict(betas=(0.9, torch.tensor(0.999))),
    dict(betas=(torch.tensor(0.9), 0.999)),
    dict(betas=(torch.tensor(0.9), torch.tensor(0.999)), foreach=True),
], ids=["tensor-lr-foreach", "float-tensor-betas", "tensor-float-betas", "tensor-betas-foreach"])
def test_tensor_lr_and_betas_are_refused_where_torch_refuses_them(torch_cls, ours, kwargs):
    import decaylab.optim

    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(Exception) as theirs:
        torch_cls(params, **kwargs)
    with pytest.raises(type(theirs.value)) as mine:
        getattr(decaylab.optim, ours)(params, **kwargs)
    assert str(mine.value) == str(theirs.value)
    if "foreach" in kwargs:                     # the same tensors without foreach: both accept them
        torch_cls(params, **dict(kwargs, foreach=None))
        getattr(decaylab.optim, ours)(params, **dict(kwargs, foreach=None))
