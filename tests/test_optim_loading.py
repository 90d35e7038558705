"""Loading state dicts across decay conventions (one rule: this optimizer's decay_scaling is kept,
the saved λ converted into it), and a Tensor weight_decay as torch accepts it."""

import copy

import pytest
import torch

from decaylab.optim import SGDW, Adam, AdamW


def model_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    X, y = torch.randn(32, 4), torch.randn(32, 1)
    return model, X, y


def train(model, opt, sched, X, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
        sched.step()


def cosine(opt):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)


def continue_from(saved_model, saved_opt, saved_sched, make_opt, X, y, steps=5):
    model = copy.deepcopy(saved_model)
    opt = make_opt(model.parameters())
    sched = cosine(opt)
    opt.load_state_dict(copy.deepcopy(saved_opt.state_dict()))   # torch shares saved tensors
    sched.load_state_dict(saved_sched.state_dict())
    train(model, opt, sched, X, y, steps)
    return model, opt


@pytest.mark.parametrize("saver", ["torch", "decaylab-lr"])
def test_lr_convention_state_into_schedule_optimizer_continues_identically(saver):
    model, X, y = model_and_data()
    make = ((lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)) if saver == "torch"
            else (lambda p: AdamW(p, lr=0.01, weight_decay=0.1)))
    opt = make(model.parameters())
    sched = cosine(opt)
    train(model, opt, sched, X, y, 7)                        # mid-schedule: lr ≠ initial_lr

    reference, _ = continue_from(model, opt, sched, make, X, y)
    ours, loaded = continue_from(model, opt, sched, lambda p: AdamW(p, lr=0.01, decay_scaling="schedule"), X, y)
    group = loaded.param_groups[0]
    assert group["decay_scaling"] == "schedule"
    assert group["decay_reference_lr"] == pytest.approx(0.01)        # the saved initial_lr, not lr_t
    assert group["weight_decay"] == pytest.approx(0.1 * 0.01)        # λ_schedule = lr_0 · λ_lr
    for a, b in zip(reference.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_schedule_state_into_lr_optimizer_continues_identically():
    model, X, y = model_and_data(1)
    opt = SGDW(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.5, decay_scaling="schedule")
    sched = cosine(opt)
    train(model, opt, sched, X, y, 6)
    reference, _ = continue_from(model, opt, sched, lambda p: SGDW(p, lr=0.05, momentum=0.9,
                                                                  decay_scaling="schedule"), X, y)
    ours, loaded = continue_from(model, opt, sched, lambda p: SGDW(p, lr=0.05, momentum=0.9), X, y)
    assert loaded.param_groups[0]["decay_scaling"] == "lr"
    assert loaded.param_groups[0]["weight_decay"] == pytest.approx(0.5 / 0.05)
    for a, b in zip(reference.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_corrected_is_not_converted_and_nothing_is_loaded():
    model, X, y = model_and_data()
    saved = AdamW(model.parameters(), lr=0.01, weight_decay=0.1, decay_scaling="corrected")
    target = AdamW(model.parameters(), lr=0.02, weight_decay=0.3)
    with pytest.raises(ValueError, match="corrected"):
        target.load_state_dict(saved.state_dict())
    assert target.param_groups[0]["lr"] == 0.02 and target.param_groups[0]["weight_decay"] == 0.3


@pytest.mark.parametrize("cls, peer", [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)])
@pytest.mark.parametrize("flags", [{}, {"foreach": True}, {"foreach": False}, {"fused": True}])
def test_tensor_weight_decay_as_in_torch(cls, peer, flags):
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(2)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a = cls(ours, lr=0.1, weight_decay=torch.tensor(0.1), **flags)
    b = peer(theirs, lr=0.1, weight_decay=torch.tensor(0.1), **flags)
    for step in range(4):
        for p, q in zip(ours, theirs):
            p.grad = q.grad = torch.full_like(p, 0.5 + step)
        a.step()
        b.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="weight_decay"):
        cls(ours, lr=0.1, weight_decay=torch.tensor(-0.1))
