"""Cosine annealing with warm restarts: hand-computed values at and around restarts, torch parity,
torch's scheduler interface (state_dict, get_last_lr, chaining) and decay_scaling="schedule"."""

import copy
import math
import warnings

import pytest
import torch

from decaylab.schedules import CosineWarmRestarts, period_of_step


def make_optimizer(lr=1.0, groups=1):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    return torch.optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)], lr=lr)


def run(scheduler, steps):
    """lr of group 0 at steps 0..steps-1 (optimizer.step() before scheduler.step(), as torch asks)."""
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def half_cosine(t, T):
    return (1 + math.cos(math.pi * t / T)) / 2


def test_hand_computed_values_T0_2_Tmult_2():
    # periods of 2, 4, 8 steps: restarts at steps 2 and 6, where the lr is back to lr_0 = 1
    lrs = run(CosineWarmRestarts(make_optimizer(), T_0=2, T_mult=2), 8)
    expected = [1.0, 0.5,                                           # period 0: T_i = 2
                1.0, (2 + math.sqrt(2)) / 4, 0.5, (2 - math.sqrt(2)) / 4,  # period 1: T_i = 4, cos(π/4) = √2/2
                1.0, (1 + math.sqrt((2 + math.sqrt(2)) / 4)) / 2]  # period 2: T_i = 8, cos(π/8) = √(2+√2)/2
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert [lrs[0], lrs[2], lrs[6]] == [1.0, 1.0, 1.0]              # exactly lr_0 at each restart


def test_hand_computed_values_with_eta_min_and_steps_per_epoch():
    # T_0 = 1 epoch of 4 steps, eta_min = 0.1, lr_0 = 0.5: lr = 0.1 + 0.4·(1+cos(πt/4))/2
    sched = CosineWarmRestarts(make_optimizer(lr=0.5), T_0=1, T_mult=1, eta_min=0.1, steps_per_epoch=4)
    lrs = run(sched, 9)
    one_period = [0.1 + 0.4 * half_cosine(t, 4) for t in range(4)]
    assert lrs == pytest.approx(one_period * 2 + [0.5], rel=1e-12)
    assert lrs[3] == pytest.approx(0.1 + 0.4 * (1 - math.sqrt(0.5)) / 2)   # just before the restart
    assert lrs[4] == 0.5 and lrs[8] == 0.5                               # exactly lr_0 at restarts


@pytest.mark.parametrize("T_0, T_mult, eta_min", [(3, 1, 0.0), (2, 2, 0.0), (1, 3, 0.05), (5, 2, 0.2)])
def test_matches_torch_cosine_annealing_warm_restarts(T_0, T_mult, eta_min):
    ours = CosineWarmRestarts(make_optimizer(groups=2), T_0, T_mult, eta_min)
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(make_optimizer(groups=2), T_0, T_mult, eta_min)
    for _ in range(40):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        for s in (ours, theirs):
            s.optimizer.step()
            s.step()


def test_period_bookkeeping_gives_epochs_of_current_restart():
    sched = CosineWarmRestarts(make_optimizer(), T_0=2, T_mult=2, steps_per_epoch=3)
    seen = []
    for _ in range(6 * 3 + 1):   # epochs 0..6 stepped per batch
        seen.append((sched.restart, sched.period_epochs, sched.epochs_into_period))
        sched.optimizer.step()
        sched.step()
    assert seen[0] == (0, 2, 0.0)
    assert seen[5] == (0, 2, 5 / 3)
    assert seen[6] == (1, 4, 0.0)            # restart after 2 epochs = 6 steps
    assert seen[17] == (1, 4, 11 / 3)
    assert seen[18] == (2, 8, 0.0)           # second restart after 2 + 4 epochs
    assert period_of_step(13, 4, 3) == (1, 9, 12)
    assert period_of_step(16, 4, 3) == (2, 0, 36)


def test_state_dict_round_trip_resumes_identically():
    sched = CosineWarmRestarts(make_optimizer(), T_0=3, T_mult=2)
    run(sched, 5)
    saved_opt, saved_sched = copy.deepcopy(sched.optimizer.state_dict()), sched.state_dict()
    rest = run(sched, 12)

    fresh_opt = make_optimizer()
    fresh = CosineWarmRestarts(fresh_opt, T_0=1)          # different settings, overwritten by the load
    fresh_opt.load_state_dict(saved_opt)
    fresh.load_state_dict(saved_sched)
    assert (fresh.T_0, fresh.T_mult) == (3, 2)
    assert run(fresh, 12) == pytest.approx(rest, rel=1e-12)


def test_chains_with_a_warmup_scheduler_multiplicatively():
    # LinearLR warm-up (factor 0.25 → 1 over 4 steps) chained with restarts: the product of both.
    opt = make_optimizer()
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=4)
    restarts = CosineWarmRestarts(opt, T_0=3, T_mult=1)
    chained = torch.optim.lr_scheduler.ChainedScheduler([warmup, restarts])
    lrs = []
    for _t in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        chained.step()
    warm = [min(1.0, 0.25 + 0.75 * t / 4) for t in range(10)]
    cosine = [half_cosine(t % 3, 3) for t in range(10)]
    assert lrs == pytest.approx([w * c for w, c in zip(warm, cosine)], rel=1e-12)


def test_multipliers_are_lr_over_initial_lr_per_group():
    sched = CosineWarmRestarts(make_optimizer(lr=0.2, groups=2), T_0=4, eta_min=0.02)
    run(sched, 3)
    lrs = sched.get_last_lr()
    assert sched.multipliers() == pytest.approx([lrs[0] / 0.2, lrs[1] / 0.4], rel=1e-12)
    assert sched.multipliers(4) == [1.0, 1.0]


def test_no_warning_in_the_normal_step_order():
    opt = make_optimizer()
    sched = CosineWarmRestarts(opt, T_0=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
        sched.step()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(T_0=0), ValueError, r"T_0 must be an integer in \[1, inf\], got 0"),
    (dict(T_0=2.5), TypeError, r"T_0 must be an integer, got 2.5"),
    (dict(T_0=2, T_mult=0), ValueError, r"T_mult must be an integer in \[1, inf\], got 0"),
    (dict(T_0=2, eta_min=-1.0), ValueError, r"eta_min must be in \[0.0, inf\)"),
    (dict(T_0=2, steps_per_epoch=0), ValueError, r"steps_per_epoch must be an integer in \[1, inf\]"),
    (dict(T_0=2, weight_decay_norm=0.05), ValueError, r"weight_decay_norm needs batch_size and train_size"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CosineWarmRestarts(make_optimizer(), **kwargs)


@pytest.mark.parametrize("make", ["sgdwr", "adamwr"])
def test_schedule_scaled_decay_follows_the_multiplier_and_returns_to_one_at_restarts(make):
    # Zero gradients isolate the decoupled decay: w_{k+1} = w_k·(1 − (lr_k/lr_0)·λ).
    from decaylab import schedules

    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    lam = 0.05
    opt, sched = getattr(schedules, make)([w], lr=0.3, T_0=2, T_mult=2, weight_decay=lam)
    assert opt.param_groups[0]["decay_scaling"] == "schedule"
    expected, factors = 1.0, []
    for _k in range(14):
        s_k = opt.param_groups[0]["lr"] / 0.3
        factors.append(s_k)
        w.grad = torch.zeros_like(w)
        before = w.detach().clone()
        opt.step()
        sched.step()
        expected *= 1 - s_k * lam
        torch.testing.assert_close(w.detach(), before * (1 - s_k * lam), rtol=1e-14, atol=0)
    torch.testing.assert_close(w.detach(), torch.full((3,), expected, dtype=torch.float64), rtol=1e-12, atol=0)
    assert [factors[k] for k in (0, 2, 6)] == [1.0, 1.0, 1.0]          # restarts: s_t = 1 exactly
    assert factors[1] == pytest.approx(0.5) and factors[4] == pytest.approx(0.5)


def test_normalized_decay_is_renormalized_to_each_period():
    # λ = λ_norm·√(b/(B·T_i)) with λ_norm = 0.05, b = 10, B = 1000, T_i = 2, 4, 8 epochs.
    from decaylab.schedules import adamwr

    w = torch.nn.Parameter(torch.ones(2))
    opt, sched = adamwr([w], lr=1e-3, T_0=2, T_mult=2, steps_per_epoch=100, weight_decay_norm=0.05,
                        batch_size=10, train_size=1000)
    seen = {}
    for _k in range(14 * 100):
        seen.setdefault(sched.period_epochs, opt.param_groups[0]["weight_decay"])
        w.grad = torch.zeros_like(w)
        opt.step()
        sched.step()
    assert seen == pytest.approx({2: 0.05 * math.sqrt(10 / 2000), 4: 0.0025, 8: 0.05 * math.sqrt(10 / 8000)},
                                 rel=1e-12)
    assert sched.normalized_weight_decay(0.1) == pytest.approx(0.1 * math.sqrt(10 / (1000 * 16)))


def test_deprecated_step_with_epoch_uses_the_closed_form():
    sched = CosineWarmRestarts(make_optimizer(lr=0.4), T_0=2, T_mult=2, eta_min=0.04)
    with pytest.warns(UserWarning):
        sched.step(4)                        # period 1 (steps 2..5), T_cur = 2 of 4
    assert sched.get_last_lr()[0] == pytest.approx(0.04 + 0.36 * half_cosine(2, 4), rel=1e-12)
    sched.optimizer.step()
    sched.step()                             # step 5, continuing multiplicatively from there
    assert sched.get_last_lr()[0] == pytest.approx(0.04 + 0.36 * half_cosine(3, 4), rel=1e-12)


def _norm_decay(period_epochs):
    return 0.05 * math.sqrt(10 / (1000 * period_epochs))     # λ_norm = 0.05, b = 10, B = 1000


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))


def test_normalized_decay_leaves_the_no_decay_groups_at_zero():
    # param_groups → [decayed weights at λ, biases and norms at 0]: only the first gets the normalized λ,
    # at construction and at every restart (periods of 2, 4, 8 epochs), and the biases really do not decay.
    from decaylab.groups import param_groups
    from decaylab.optim import AdamW

    model = _net()
    opt = AdamW(param_groups(model, 1.0), lr=1e-3, decay_scaling="schedule")
    sched = CosineWarmRestarts(opt, T_0=2, T_mult=2, weight_decay_norm=0.05, batch_size=10, train_size=1000)
    assert sched.decaying_groups == (0,)
    biases = [p.detach().clone() for p in opt.param_groups[1]["params"]]
    seen = []
    for _k in range(14):
        seen.append([g["weight_decay"] for g in opt.param_groups])
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    periods = [2] * 2 + [4] * 4 + [8] * 8
    assert seen == [[pytest.approx(_norm_decay(t), rel=1e-12), 0.0] for t in periods]
    assert all(torch.equal(p.detach(), b) for p, b in zip(opt.param_groups[1]["params"], biases))
    assert not torch.equal(model[0].weight.detach(), _net()[0].weight.detach())       # the weights did decay
    with pytest.warns(UserWarning):
        sched.step(14)                               # the closed form (deprecated step(epoch)) too: period 3
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(_norm_decay(16), rel=1e-12), 0.0]
    resumed = CosineWarmRestarts(AdamW(param_groups(_net(), 1.0), lr=1e-3), T_0=2, T_mult=2, weight_decay_norm=0.05,
                                 batch_size=10, train_size=1000)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.decaying_groups == (0,)


@pytest.mark.parametrize("make", ["sgdwr", "adamwr"])
def test_sgdwr_adamwr_normalized_decay_goes_to_the_groups_that_decay(make):
    from decaylab import schedules
    from decaylab.groups import param_groups

    build = getattr(schedules, make)
    options = dict(lr=0.1, T_0=2, weight_decay_norm=0.05, batch_size=10, train_size=1000)
    opt, _ = build(param_groups(_net(), 1.0), **options)
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(_norm_decay(2), rel=1e-12), 0.0]
    opt, _ = build(_net().parameters(), **options)                # one group without a weight_decay of its own
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(_norm_decay(2), rel=1e-12)]
    with pytest.raises(ValueError, match=r"weight_decay must be 0 when weight_decay_norm is given"):
        build(_net().parameters(), weight_decay=0.01, **options)


def test_normalized_decay_without_a_decaying_group_is_refused():
    opt = torch.optim.SGD(_net().parameters(), lr=0.1)           # weight_decay 0: nothing to normalize
    with pytest.raises(ValueError, match=r"weight_decay_norm needs a decaying parameter group .* got weight_decay "
                                         r"\[0\]"):
        CosineWarmRestarts(opt, T_0=2, weight_decay_norm=0.05, batch_size=10, train_size=1000)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got list"):
        CosineWarmRestarts([], T_0=2)
