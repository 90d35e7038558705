"""The decaylab optimizers behave as torch optimizers do: state dicts, copies, hooks, groups, schedulers.

Modelled on the ideas of torch's test/optim/test_optim.py: save/load mid-training
continues as if uninterrupted, deepcopy, hooks fire, per-group options, every LR
scheduler, state dicts exchanged with torch's optimizers, zero_grad, closures,
complex params, params without gradients, named parameters, NaN gradients.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from optim_training import record_hooks, regression_batches, resumed_run
from optim_training import train as _train
from optim_training import weights as _weights

from decaylab.optim import SGD, SGDW, Adam, AdamW

OPTIMIZERS = {
    "SGD": (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    "SGDW": (SGDW, None, dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)),
    "Adam": (Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
    "AdamW": (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "AdamW-schedule": (AdamW, None, dict(lr=0.01, weight_decay=1e-3, decay_scaling="schedule")),
}


def _batches(n, seed=0, dtype=torch.float64):
    return regression_batches(n, 4, 2, seed=seed, dtype=dtype)


def _model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 2)).to(dtype)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_save_load_mid_training_continues_as_uninterrupted(name):
    cls, _, kwargs = OPTIMIZERS[name]
    model, resumed, _ = resumed_run(lambda seed: _model(seed=seed),
                                    lambda model, **overrides: cls(model.parameters(), **{**kwargs, **overrides}),
                                    _batches(20))
    assert torch.equal(_weights(resumed), _weights(model))


def test_decay_reference_lr_survives_state_dict_round_trip():
    model = _model()
    opt = AdamW(model.parameters(), lr=0.1, weight_decay=1e-3, decay_scaling="schedule")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _train(model, opt, _batches(3), sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)
    other = AdamW(_model().parameters(), lr=0.7, decay_scaling="schedule")
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["decay_reference_lr"] == 0.1
    assert copy.deepcopy(other).param_groups[0]["decay_reference_lr"] == 0.1


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_torch_saved_state_dict_loads_into_decaylab_and_continues_identically(name):
    cls, torch_cls, kwargs = OPTIMIZERS[name]
    batches = _batches(16)
    model = _model()
    opt = torch_cls(model.parameters(), **kwargs)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
    _train(model, opt, batches[:8], sched)
    checkpoint = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(),
                                "sched": sched.state_dict()})
    _train(model, opt, batches[8:], sched)  # torch continues

    ours_model = _model(seed=5)
    ours_model.load_state_dict(checkpoint["model"])
    ours = cls(ours_model.parameters(), **kwargs)
    ours.load_state_dict(checkpoint["opt"])
    ours_sched = torch.optim.lr_scheduler.StepLR(ours, step_size=3, gamma=0.7)
    ours_sched.load_state_dict(checkpoint["sched"])
    _train(ours_model, ours, batches[8:], ours_sched)
    assert torch.equal(_weights(ours_model), _weights(model))
    # ...and ours saves a state dict torch loads back
    back = torch_cls(_model().parameters(), **kwargs)
    back.load_state_dict(ours.state_dict())
    assert back.state_dict()["state"].keys() == ours.state_dict()["state"].keys()


def test_torch_adamw_state_dict_keeps_our_schedule_reference_lr():
    model = _model()
    torch_opt = torch.optim.AdamW(model.parameters(), lr=0.02)
    _train(model, torch_opt, _batches(2))
    torch_opt.param_groups[0]["lr"] = 0.005  # as a scheduler would have left it
    ours = AdamW(_model().parameters(), lr=0.02, weight_decay=1e-3, decay_scaling="schedule")
    ours.load_state_dict(torch_opt.state_dict())
    group = ours.param_groups[0]
    assert group["decay_scaling"] == "schedule" and group["decay_reference_lr"] == 0.02
    assert group["lr"] == 0.005 and group["decoupled_weight_decay"] is True


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_deepcopy_trains_on_independently_and_identically(name):
    cls, _, kwargs = OPTIMIZERS[name]
    batches = _batches(10)
    model = _model()
    opt = cls(model.parameters(), **kwargs)
    _train(model, opt, batches[:5])
    twin = copy.deepcopy({"model": model, "opt": opt})  # the copy's state refers to its params
    _train(model, opt, batches[5:])
    assert not torch.equal(_weights(model), _weights(twin["model"]))
    _train(twin["model"], twin["opt"], batches[5:])
    assert torch.equal(_weights(model), _weights(twin["model"]))


def test_hooks_fire():
    model = _model()
    opt = AdamW(model.parameters(), lr=0.01)
    calls = record_hooks(opt)
    opt.register_state_dict_post_hook(lambda o, state_dict: state_dict.update(tag=7))
    _train(model, opt, _batches(1))
    state = opt.state_dict()
    assert state["tag"] == 7
    del state["tag"]
    opt.load_state_dict(state)
    assert calls == ["pre", "post", "sd-pre", "sd-post", "load-pre", "load-post"]


def test_param_groups_with_their_own_options():
    """Each group uses its own lr, λ, momentum and scaling; equal to one optimizer per group."""
    batches = _batches(12)
    model = _model()
    first, second = model[0], model[2]
    opt = SGDW([{"params": first.parameters(), "lr": 0.1, "momentum": 0.5},
                {"params": second.parameters(), "weight_decay": 0.2, "decay_scaling": "schedule"}],
               lr=0.05, momentum=0.9, weight_decay=0.01)
    twin = copy.deepcopy(model)
    opt_a = SGDW(twin[0].parameters(), lr=0.1, momentum=0.5, weight_decay=0.01)
    opt_b = SGDW(twin[2].parameters(), lr=0.05, momentum=0.9, weight_decay=0.2,
                 decay_scaling="schedule")
    for X, y in batches:
        for m, opts in ((model, [opt]), (twin, [opt_a, opt_b])):
            for o in opts:
                o.zero_grad()
            ((m(X) - y) ** 2).mean().backward()
            for o in opts:
                o.step()
    assert torch.equal(_weights(model), _weights(twin))
    opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": 0.3})
    assert opt.param_groups[-1]["decay_reference_lr"] == 0.3


SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20),
    "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0,
                                                                              factor=0.5),
}


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_lr_schedulers_drive_decaylab_as_torch(scheduler, name):
    """Every scheduler (OneCycleLR cycles momentum/betas too) gives torch's trajectory."""
    cls, torch_cls, kwargs = OPTIMIZERS[name]
    batches = _batches(20)
    runs = []
    for make in (cls, torch_cls):
        model = _model()
        opt = make(model.parameters(), **kwargs)
        sched = SCHEDULERS[scheduler](opt)
        for X, y in batches:
            opt.zero_grad()
            loss = ((model(X) - y) ** 2).mean()
            loss.backward()
            opt.step()
            sched.step(loss.item()) if scheduler == "ReduceLROnPlateau" else sched.step()
        runs.append((_weights(model), opt.param_groups[0]["lr"]))
    (ours, lr_ours), (theirs, lr_theirs) = runs
    assert lr_ours == lr_theirs
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none):
    model = _model()
    opt = Adam(model.parameters())
    _train(model, opt, _batches(1))
    model(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
    opt.zero_grad(set_to_none=set_to_none)
    for p in model.parameters():
        assert p.grad is None if set_to_none else torch.count_nonzero(p.grad) == 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_closure_is_evaluated_and_its_loss_returned(name):
    cls, _, kwargs = OPTIMIZERS[name]
    model = _model()
    opt = cls(model.parameters(), **kwargs)
    X, y = _batches(1)[0]
    before = _weights(model)

    with torch.no_grad():
        expected = ((model(X) - y) ** 2).mean()
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        return loss
    loss = opt.step(closure)
    assert calls == [1] and torch.equal(loss.detach(), expected)      # the loss at the weights before the step
    assert not torch.equal(before, _weights(model))


@pytest.mark.parametrize("path", [{}, {"foreach": True}])
@pytest.mark.parametrize("ours,theirs,kwargs", [
    (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    (Adam, torch.optim.Adam, dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    (AdamW, torch.optim.AdamW, dict(lr=0.05, weight_decay=0.1)),
])
def test_complex_params_match_torch(ours, theirs, kwargs, path):
    torch.manual_seed(0)
    target = torch.randn(5, dtype=torch.complex128)
    results = []
    for cls in (ours, theirs):
        w = torch.nn.Parameter(torch.zeros(5, dtype=torch.complex128))
        opt = cls([w], **kwargs, **path)
        for _ in range(20):
            opt.zero_grad()
            (w - target).abs().pow(2).sum().backward()
            opt.step()
        results.append(w.detach())
    assert torch.allclose(results[0], results[1], rtol=1e-12, atol=1e-14)
    assert (results[0] - target).abs().max() < (target.abs().max())  # it moved toward target


@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}])
@pytest.mark.parametrize("cls,kwargs", [
    (SGD, dict(momentum=0.9)),
    (SGDW, dict(momentum=0.9, weight_decay=0.1, cautious=True, l1_decay=0.1)),
    (Adam, dict(weight_decay=0.1)), (AdamW, dict(cautious=True, l1_decay=0.1)),
])
def test_group_without_any_gradient_is_a_no_op_on_every_path(cls, kwargs, path):
    frozen, used = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = cls([{"params": [frozen]}, {"params": [used]}], lr=0.1, **kwargs, **path)
    used.grad = torch.ones(2)
    opt.step()
    assert torch.equal(frozen.detach(), torch.ones(3)) and frozen not in opt.state
    assert not torch.equal(used.detach(), torch.ones(2))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_params_without_grad_are_skipped(name):
    cls, _, kwargs = OPTIMIZERS[name]
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = cls([used, unused], **kwargs)
    used.sum().backward()
    opt.step()
    assert torch.equal(unused.detach(), torch.ones(3)) and unused not in opt.state
    assert not torch.equal(used.detach(), torch.ones(3)) and used in opt.state


def test_named_parameters_match_torch_and_are_saved():
    runs = []
    for cls in (AdamW, torch.optim.AdamW):
        model = _model()
        opt = cls(model.named_parameters(), lr=0.01)
        _train(model, opt, _batches(5))
        runs.append((_weights(model), opt.state_dict()["param_groups"][0]["param_names"]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] == ["0.weight", "0.bias", "2.weight", "2.bias"]


@pytest.mark.parametrize("path", [{"foreach": False}, {"foreach": True}, {"fused": True}])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_nan_gradient_step_is_whole_and_local(name, path):
    """A NaN gradient coordinate is not skipped: it poisons exactly that coordinate's weight
    and state, while every step count advances and all other coordinates and params take
    the same step they would without the NaN (torch semantics, documented in the classes)."""
    cls, _, kwargs = OPTIMIZERS[name]
    torch.manual_seed(0)
    start = [torch.randn(4, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    grads = [torch.randn(4, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    runs = []
    for poison in (False, True):
        params = [torch.nn.Parameter(s.clone()) for s in start]
        opt = cls(params, **kwargs, **path)
        for step in range(3):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            if poison and step == 1:
                params[0].grad[2, 1] = float("nan")
            opt.step()
        runs.append((params, opt))
    (clean, clean_opt), (dirty, dirty_opt) = runs
    nan_mask = torch.zeros(4, 3, dtype=torch.bool)
    nan_mask[2, 1] = True
    assert torch.isnan(dirty[0].detach()).equal(nan_mask)
    assert torch.equal(dirty[0].detach()[~nan_mask], clean[0].detach()[~nan_mask])
    assert torch.equal(dirty[1].detach(), clean[1].detach())
    for p_dirty, p_clean in zip(dirty, clean):
        for key, value in clean_opt.state[p_clean].items():
            other = dirty_opt.state[p_dirty][key]
            if key == "step":
                assert other.item() == value.item() == 3
            else:
                finite = ~torch.isnan(other)
                assert torch.equal(other[finite], value[finite])
                assert finite.sum() >= value.numel() - 1


@pytest.mark.parametrize("ours,theirs", [(SGD, torch.optim.SGD), (Adam, torch.optim.Adam),
                                         (AdamW, torch.optim.AdamW)])
def test_constructor_signature_is_torchs(ours, theirs):
    """Every torch argument with torch's default and kind; decaylab only adds keywords."""
    mine = inspect.signature(ours.__init__).parameters
    for name, param in inspect.signature(theirs.__init__).parameters.items():
        assert name in mine, name
        assert (mine[name].default, mine[name].kind) == (param.default, param.kind), name
    extra = [name for name in mine if name not in inspect.signature(theirs.__init__).parameters]
    assert extra == ([] if ours is not AdamW else ["decay_scaling", "cautious", "l1_decay"])


@pytest.mark.parametrize("ours,theirs,kwargs", [
    (SGD, torch.optim.SGD, dict(momentum=0.9, nesterov=True, weight_decay=0.1)),
    (Adam, torch.optim.Adam, dict(weight_decay=0.1)),
    (AdamW, torch.optim.AdamW, dict(maximize=True)),
])
def test_differentiable_mode_gives_torchs_gradients_through_the_steps(ours, theirs, kwargs):
    """Gradients flow through the steps as in torch. (torch's differentiable Adam computes
    its bias corrections from the step tensor, float32 unless the default dtype is
    float64; with float32, 1 − β₂^t alone is off by ~1e-5 relative, hence float64 here.)"""
    runs = []
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    for cls in (ours, theirs):
        torch.manual_seed(0)
        start = torch.randn(4, requires_grad=True, dtype=torch.float64)
        grad = torch.randn(4, requires_grad=True, dtype=torch.float64)
        w = start.clone()
        opt = cls([w], lr=0.1, differentiable=True, **kwargs)
        for _ in range(3):
            w.grad = grad.clone()
            opt.step()
        (w ** 2).sum().backward()
        runs.append((w.detach(), start.grad, grad.grad))
    torch.set_default_dtype(default_dtype)
    for a, b in zip(*runs):  # weights, d/d(start), d/d(grad); all O(1) or cancelling to ~0
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("path", [{}, {"fused": True}])
@pytest.mark.parametrize("ours,theirs", [(SGD, torch.optim.SGD), (AdamW, torch.optim.AdamW)])
def test_tensor_lr_with_scheduler_as_torch(ours, theirs, path):
    runs = []
    for cls in (ours, theirs):
        w = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64))
        opt = cls([w], lr=torch.tensor(0.01, dtype=torch.float64), **path)
        sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
        for _ in range(3):
            w.grad = torch.ones_like(w)
            opt.step()
            sched.step()
        runs.append(w.detach())
    assert torch.allclose(runs[0], runs[1], rtol=1e-14, atol=0), (runs[0] - runs[1]).abs().max()


@pytest.mark.parametrize("poison", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_grad_scaler_unscales_and_skips_inf_steps_as_for_torch(fused, poison):
    """torch.amp.GradScaler drives decaylab's optimizers through its generic path:
    gradients unscaled before the step, a step with an inf gradient skipped."""
    runs = []
    for cls in (AdamW, torch.optim.AdamW):
        model = _model(dtype=torch.float32)
        opt = cls(model.parameters(), lr=0.01, fused=fused)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
        for t, (X, y) in enumerate(_batches(5, dtype=torch.float32)):
            opt.zero_grad()
            scaler.scale(((model(X) - y) ** 2).mean()).backward()
            if poison and t == 2:
                model[0].weight.grad[0, 0] = float("inf")
            scaler.step(opt)
            scaler.update()
        runs.append((_weights(model), scaler.get_scale()))
    (ours, scale_ours), (theirs, scale_theirs) = runs
    assert scale_ours == scale_theirs == (2.0 ** 9 if poison else 2.0 ** 10)
    assert torch.equal(ours, theirs)
