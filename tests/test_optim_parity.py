"""Parity: each decaylab optimizer, on every path, trains a small MLP exactly as its torch counterpart.

200 steps of minibatch training with an LR scheduler; final weights must agree to
1e-5 relative in float32 and 1e-10 in float64. The counterparts are torch's own
optimizers; for SGDW and the non-default AdamW scalings, torch's optimizer with
the decoupled decay written out by hand around it (the definition of the update).
"""

from __future__ import annotations

import copy

import pytest
import torch

from decaylab.optim import SGD, SGDW, Adam, AdamW

STEPS = 200
PATHS = {"reference": {"foreach": False, "fused": False}, "foreach": {"foreach": True},
         "fused": {"fused": True}}
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _schedule(opt, kind):
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=40, gamma=0.5)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS, eta_min=1e-4)


def _decoupled_sgd_by_hand(params, lr, weight_decay, decay_scaling="lr", **kw):
    """torch SGD with λ = 0 plus ``w ← w − s_t·λ·w`` before each step (SGDW by definition)."""
    opt = torch.optim.SGD(params, lr=lr, weight_decay=0, **kw)
    return opt, _decay_hook(opt, lr, weight_decay, decay_scaling)


def _decoupled_adamw_by_hand(params, lr, weight_decay, decay_scaling="lr", **kw):
    """torch Adam with λ = 0 plus ``w ← w − s_t·λ·w`` before each step (AdamW by definition)."""
    opt = torch.optim.Adam(params, lr=lr, weight_decay=0, **kw)
    return opt, _decay_hook(opt, lr, weight_decay, decay_scaling)


def _decay_hook(opt, lr0, weight_decay, decay_scaling):
    def decay():
        for group in opt.param_groups:
            lr = group["lr"]
            scale = {"lr": lr, "schedule": lr / lr0, "corrected": lr * lr / lr0}[decay_scaling]
            with torch.no_grad():
                for p in group["params"]:
                    p.mul_(1 - scale * weight_decay)
    return decay


def _torch_plain(cls):
    def make(params, **kw):
        return cls(params, **kw), None
    return make


# name -> (decaylab class, torch counterpart factory, kwargs, scheduler, objective sign)
CASES = {
    "sgd-plain": (SGD, _torch_plain(torch.optim.SGD), dict(lr=0.05, weight_decay=0.05), "step"),
    "sgd-momentum-dampening": (SGD, _torch_plain(torch.optim.SGD),
                               dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.05),
                               "cosine"),
    "sgd-nesterov-maximize": (SGD, _torch_plain(torch.optim.SGD),
                              dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02,
                                   maximize=True), "step"),
    "sgdw-momentum": (SGDW, _decoupled_sgd_by_hand,
                      dict(lr=0.05, momentum=0.9, weight_decay=0.1), "cosine"),
    "sgdw-nesterov-schedule": (SGDW, _decoupled_sgd_by_hand,
                               dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.005,
                                    decay_scaling="schedule"), "cosine"),
    "sgdw-plain-maximize": (SGDW, _decoupled_sgd_by_hand,
                            dict(lr=0.05, weight_decay=0.1, maximize=True), "step"),
    "adam-coupled": (Adam, _torch_plain(torch.optim.Adam),
                     dict(lr=0.01, weight_decay=0.05), "cosine"),
    "adam-amsgrad-maximize": (Adam, _torch_plain(torch.optim.Adam),
                              dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True,
                                   maximize=True), "step"),
    "adamw-default": (AdamW, _torch_plain(torch.optim.AdamW), dict(lr=0.01), "cosine"),
    "adamw-amsgrad": (AdamW, _torch_plain(torch.optim.AdamW),
                      dict(lr=0.01, weight_decay=0.1, amsgrad=True), "step"),
    "adamw-schedule": (AdamW, _decoupled_adamw_by_hand,
                       dict(lr=0.01, weight_decay=1e-3, decay_scaling="schedule"), "cosine"),
    "adamw-corrected-maximize": (AdamW, _decoupled_adamw_by_hand,
                                 dict(lr=0.01, weight_decay=0.1, decay_scaling="corrected",
                                      maximize=True), "cosine"),
}


def _train(model, opt, scheduler, before_step, sign, data):
    X, y = data
    for i in range(STEPS):
        batch = slice((i % 4) * 16, (i % 4 + 1) * 16)
        opt.zero_grad()
        loss = ((model(X[batch]) - y[batch]) ** 2).mean()
        (sign * loss).backward()
        if before_step is not None:
            before_step()
        opt.step()
        scheduler.step()
    return [p.detach() for p in model.parameters()]


def _relative_error(ours, theirs):
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, theirs))


def _data_and_model(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 6, generator=gen, dtype=dtype)
    y = torch.sin(X.sum(1, keepdim=True))
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 1)).to(dtype)
    return (X, y), model


@pytest.mark.slow  # 24 × 200 steps; the fast subset keeps the bit-for-bit and fast-path tests
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_path_matches_torch_counterpart(case, dtype):
    cls, counterpart, kwargs, sched = CASES[case]
    sign = -1.0 if kwargs.get("maximize") else 1.0  # maximize −loss: a bounded run
    data, model = _data_and_model(dtype)
    initial = [p.detach().clone() for p in model.parameters()]

    twin = copy.deepcopy(model)
    theirs, before_step = counterpart(twin.parameters(), **kwargs)
    w_theirs = _train(twin, theirs, _schedule(theirs, sched), before_step, sign, data)
    assert _relative_error(w_theirs, initial) > 1e-2  # training moved the weights

    for path, flags in PATHS.items():
        twin = copy.deepcopy(model)
        ours = cls(twin.parameters(), **kwargs, **flags)
        w_ours = _train(twin, ours, _schedule(ours, sched), None, sign, data)
        assert _relative_error(w_ours, w_theirs) <= TOL[dtype], path


@pytest.mark.parametrize("case", ["sgdw-momentum", "sgdw-plain-maximize", "adamw-schedule",
                                  "adamw-corrected-maximize", "adam-amsgrad-maximize"])
def test_fast_paths_match_reference_path(case):
    """The fast paths of each decoupled variant against the readable reference path (float64)."""
    cls, _, kwargs, sched = CASES[case]
    sign = -1.0 if kwargs.get("maximize") else 1.0
    data, model = _data_and_model(torch.float64, seed=1)
    results = {}
    for path in ("reference", "foreach", "fused"):
        twin = copy.deepcopy(model)
        opt = cls(twin.parameters(), **kwargs, **PATHS[path])
        results[path] = _train(twin, opt, _schedule(opt, sched), None, sign, data)
    for path in ("foreach", "fused"):
        assert _relative_error(results[path], results["reference"]) <= 1e-12, path


@pytest.mark.parametrize("ours, theirs, kwargs", [
    ("SGD", "SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", "Adam", dict(lr=0.01, weight_decay=0.01)),
    ("Adam", "Adam", dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
    ("AdamW", "AdamW", dict(lr=0.01)),
    ("AdamW", "AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
])
def test_default_path_is_torchs_default_bit_for_bit(ours, theirs, kwargs):
    """No foreach/fused flag: on the CPU decaylab runs torch's own for-loop kernel, so the numbers are
    torch's default path's exactly (and so is the speed: benchmarks/optim_step.py --paths default)."""
    import decaylab.optim as dl

    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_a, opt_b = getattr(dl, ours)(a, **kwargs), getattr(torch.optim, theirs)(b, **kwargs)
    for _ in range(20):
        g = [torch.randn_like(p) for p in a]
        for p, q, grad in zip(a, b, g):
            p.grad, q.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        assert torch.equal(p, q)
