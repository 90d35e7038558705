"""decaylab.optim.Muon against torch.optim.Muon: the same numbers, state dicts, errors and behaviour,
and decaylab's options (decay scalings, cautious, L1, the Moonlight rule, flattened conv kernels).

The torch-style checks follow torch's own Muon tests (the ``OptimizerInfo`` of Muon in
``torch/testing/_internal/common_optimizers.py``: its inputs, its error inputs, and the
``TestOptimRenewed`` checks that apply to an optimizer of 2-D parameters only).
"""

from __future__ import annotations

import copy
import inspect
import math
import re

import pytest
import torch
from optim_training import record_hooks, regression_batches, resumed_run, train, weights
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz

from decaylab.optim import Muon
from decaylab.optim.muon import zeropower_via_newtonschulz

ADJUST = [None, "original", "match_rms_adamw"]
SHAPES = [(16, 8), (24, 16), (4, 24), (12, 12)]


def _mlp(seed=0, dtype=torch.float32):
    """Bias-free layers of tall, wide and square weight matrices (all 2-D, as Muon needs)."""
    torch.manual_seed(seed)
    layers = []
    for out, inp in [(16, 8), (24, 16), (12, 24), (12, 12), (4, 12)]:
        layers += [torch.nn.Linear(inp, out, bias=False), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1]).to(dtype)


def _batches(n, seed=0, dtype=torch.float32):
    return regression_batches(n, 8, 4, seed=seed, dtype=dtype)


def _fixed_grad_run(make, steps, shapes=SHAPES, dtype=torch.float64, before_step=None, seed=0):
    """Train params of ``shapes`` on a gradient sequence that does not depend on the weights (so the
    Newton–Schulz inputs are the same whatever the decay did); returns the params."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=dtype) for s in shapes] for _ in range(steps)]
    opt = make(params)
    for t in range(steps):
        for p, g in zip(params, grads[t]):
            p.grad = g.clone()
        if before_step is not None:
            before_step(opt, t)
        opt.step()
    return params


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr_fn", ADJUST)
def test_equals_torch_muon_bit_for_bit_over_100_steps(adjust_lr_fn, nesterov):
    batches = _batches(100)
    runs = []
    for cls in (Muon, torch.optim.Muon):
        model = _mlp()
        opt = cls(model.parameters(), lr=0.02, weight_decay=0.1, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn)
        train(model, opt, batches)
        runs.append((model, opt))
    (ours, ours_opt), (theirs, theirs_opt) = runs
    assert not torch.equal(weights(ours), weights(_mlp()))
    assert torch.equal(weights(ours), weights(theirs))
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(ours_opt.state[p]["momentum_buffer"], theirs_opt.state[q]["momentum_buffer"])


@pytest.mark.parametrize("lr", [0.03, "tensor"])
def test_tensor_lr_and_lr_scheduler_as_torch(lr):
    batches = _batches(30)
    runs = []
    for cls in (Muon, torch.optim.Muon):
        model = _mlp()
        opt = cls(model.parameters(), lr=torch.tensor(0.03) if lr == "tensor" else lr, weight_decay=0.2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30)
        train(model, opt, batches, sched)
        runs.append(weights(model))
    assert torch.equal(*runs)


def test_newton_schulz_is_torchs_bit_for_bit_and_leaves_a_bfloat16_input_alone():
    gen = torch.Generator().manual_seed(0)
    for shape in [(5, 9), (9, 5), (7, 7)]:
        g = torch.randn(shape, generator=gen)
        ours = zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7)
        assert torch.equal(ours, torch_newton_schulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7))
        singular = torch.linalg.svdvals(ours.float())
        assert singular.min() > 0.5 and singular.max() < 1.5  # ~orthogonal: S' ~ U(0.5, 1.5)
    b = torch.randn(6, 4, generator=gen).bfloat16()
    before = b.clone()
    zeropower_via_newtonschulz(b, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert torch.equal(b, before)


def test_a_bfloat16_momentum_buffer_without_nesterov_is_not_overwritten():
    """torch's ``grad.bfloat16()`` is the buffer itself there, and its normalization overwrites it (documented)."""
    runs = []
    for cls in (Muon, torch.optim.Muon):
        w = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.bfloat16))
        w.grad = torch.full((4, 3), 2.0, dtype=torch.bfloat16)
        opt = cls([w], nesterov=False)
        opt.step()
        runs.append(opt.state[w]["momentum_buffer"])
    ours, theirs = runs
    assert torch.equal(ours, torch.full((4, 3), 2.0 * (1 - 0.95), dtype=torch.bfloat16))
    assert not torch.equal(theirs, ours)


def test_update_rms_0_2_is_moonlights_rule_and_equals_match_rms_adamw():
    """Moonlight: W ← W − η(0.2·√max(A,B)·O + λW) = torch's match_rms_adamw (unadjusted lr in the decay)."""
    batches = _batches(40)
    runs = []
    for kwargs in (dict(update_rms=0.2), dict(adjust_lr_fn="match_rms_adamw")):
        model = _mlp()
        train(model, Muon(model.parameters(), lr=0.01, weight_decay=0.1, **kwargs), batches)
        runs.append(weights(model))
    assert torch.equal(*runs)


@pytest.mark.parametrize("update_rms", [0.2, 0.4])
def test_one_step_is_the_moonlight_formula(update_rms):
    lr, lam, mu = 0.05, 0.3, 0.9
    gen = torch.Generator().manual_seed(0)
    w0, g = torch.randn(6, 10, generator=gen, dtype=torch.float64), torch.randn(6, 10, generator=gen,
                                                                                 dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    w.grad = g.clone()
    Muon([w], lr=lr, weight_decay=lam, momentum=mu, update_rms=update_rms).step()
    nesterov_update = g.lerp((1 - mu) * g, mu)  # buffer after one step: (1 − μ)·g
    ortho = torch_newton_schulz(nesterov_update, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    expected = w0 - lr * (update_rms * math.sqrt(10) * ortho.double() + lam * w0)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-14, atol=1e-15)


def test_schedule_scaling_equals_torch_with_lambda_over_the_peak_lr():
    """s_t = lr_t/lr_0: torch's decay lr_t·λ' with λ' = λ/lr_0, under a cosine schedule."""
    lr0, lam = 0.04, 2e-3
    lrs = [lr0 * 0.5 * (1 + math.cos(math.pi * t / 30)) for t in range(30)]

    def set_lr(opt, t):
        opt.param_groups[0]["lr"] = lrs[t]
    ours = _fixed_grad_run(lambda p: Muon(p, lr=lr0, weight_decay=lam, decay_scaling="schedule"), 30,
                           before_step=set_lr)
    theirs = _fixed_grad_run(lambda p: torch.optim.Muon(p, lr=lr0, weight_decay=lam / lr0), 30, before_step=set_lr)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    as_lr = _fixed_grad_run(lambda p: Muon(p, lr=lr0, weight_decay=lam), 30, before_step=set_lr)
    assert not torch.allclose(as_lr[0], ours[0], rtol=1e-6, atol=0)


def test_corrected_scaling_equals_torch_with_lambda_times_the_lr_ratio():
    """s_t = lr_t²/lr_0: torch's decay lr_t·λ' with λ' = λ·lr_t/lr_0 at each step."""
    lr0, lam = 0.05, 0.5
    lrs = [lr0 * 0.9 ** t for t in range(20)]

    def ours_lr(opt, t):
        opt.param_groups[0]["lr"] = lrs[t]

    def torchs_lr(opt, t):
        opt.param_groups[0].update(lr=lrs[t], weight_decay=lam * lrs[t] / lr0)
    ours = _fixed_grad_run(lambda p: Muon(p, lr=lr0, weight_decay=lam, decay_scaling="corrected"), 20,
                           before_step=ours_lr)
    theirs = _fixed_grad_run(lambda p: torch.optim.Muon(p, lr=lr0, weight_decay=lam), 20, before_step=torchs_lr)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def _one_step(**kwargs):
    """(w0, w1, lr·ρ·O) of one Muon step from a known state; O from torch's Newton–Schulz."""
    gen = torch.Generator().manual_seed(3)
    w0, g = torch.randn(8, 5, generator=gen, dtype=torch.float64), torch.randn(8, 5, generator=gen,
                                                                                dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    w.grad = g.clone()
    Muon([w], lr=0.1, momentum=0.9, nesterov=False, **kwargs).step()
    ortho = torch_newton_schulz(0.1 * g, (3.4445, -4.7750, 2.0315), 5, 1e-7).double()
    return w0, w.detach(), 0.1 * math.sqrt(8 / 5) * ortho


def test_cautious_decays_only_where_the_update_agrees_with_the_weight():
    w0, w1, step = _one_step(weight_decay=0.5, cautious=True)
    agrees = step * w0 >= 0
    assert 0 < agrees.sum() < agrees.numel()
    expected = torch.where(agrees, w0 * (1 - 0.1 * 0.5), w0) - step
    torch.testing.assert_close(w1, expected, rtol=1e-14, atol=1e-15)


def test_l1_decay_soft_thresholds_after_the_step():
    w0, w1, step = _one_step(weight_decay=0.0, l1_decay=2.0)
    before = w0 - step
    expected = torch.sign(before) * torch.clamp(before.abs() - 0.1 * 2.0, min=0)
    assert (w1 == 0).sum() > 0
    torch.testing.assert_close(w1, expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("adjust_lr_fn", ADJUST)
def test_flatten_runs_a_conv_kernel_as_torch_runs_its_flattened_matrix(adjust_lr_fn):
    """flatten=True: [out, in, kh, kw] orthogonalized as [out, in·kh·kw], ρ from that shape (Keller Jordan)."""
    kernels = [(6, 3, 3, 3), (40, 2, 2, 2)]  # wide (6 × 27) and tall (40 × 8)
    ours = _fixed_grad_run(lambda p: Muon(p, lr=0.02, adjust_lr_fn=adjust_lr_fn, flatten=True), 20,
                           shapes=kernels, dtype=torch.float32)

    def flat(params):  # the same values, as 2-D parameters
        flat_params = [torch.nn.Parameter(p.detach().reshape(len(p), -1).clone()) for p in params]
        return torch.optim.Muon(flat_params, lr=0.02, adjust_lr_fn=adjust_lr_fn), flat_params
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in kernels]
    grads = [[torch.randn(s, generator=gen) for s in kernels] for _ in range(20)]
    opt, theirs = flat(start)
    for step_grads in grads:
        for p, g in zip(theirs, step_grads):
            p.grad = g.reshape(len(g), -1).clone()
        opt.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a.detach().reshape(len(a), -1), b.detach())
    with pytest.raises(ValueError, match=re.escape("Muon only supports 2D parameters whereas we found a parameter "
                                                   "with size: torch.Size([6, 3, 3, 3])")):
        Muon([torch.nn.Parameter(torch.ones(6, 3, 3, 3))])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        Muon([torch.nn.Parameter(torch.ones(6))], flatten=True)


def test_torch_saved_state_dict_loads_and_continues_identically():
    batches = _batches(40)
    model = _mlp()
    opt = torch.optim.Muon(model.parameters(), lr=0.02, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.7)
    train(model, opt, batches[:20], sched)
    checkpoint = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()})
    train(model, opt, batches[20:], sched)  # torch continues

    ours_model = _mlp(seed=5)
    ours_model.load_state_dict(checkpoint["model"])
    ours = Muon(ours_model.parameters(), lr=0.5, weight_decay=0.0)  # both from the checkpoint
    ours.load_state_dict(checkpoint["opt"])
    ours_sched = torch.optim.lr_scheduler.StepLR(ours, step_size=5, gamma=0.7)
    ours_sched.load_state_dict(checkpoint["sched"])
    train(ours_model, ours, batches[20:], ours_sched)
    assert torch.equal(weights(ours_model), weights(model))

    back = torch.optim.Muon(_mlp().parameters())  # and torch loads ours back
    back.load_state_dict(ours.state_dict())
    assert back.param_groups[0]["weight_decay"] == 0.1
    assert back.state_dict()["state"][0]["momentum_buffer"].equal(ours.state_dict()["state"][0]["momentum_buffer"])


def test_own_state_dict_mid_training_continues_as_uninterrupted_with_decay_options():
    kwargs = dict(lr=0.02, weight_decay=1e-3, decay_scaling="schedule", cautious=True, update_rms=0.3)
    model, resumed, opt = resumed_run(lambda seed: _mlp(seed=seed),
                                      lambda model, **overrides: Muon(model.parameters(), **{**kwargs, **overrides}),
                                      _batches(20))
    assert opt.param_groups[0]["decay_reference_lr"] == 0.02
    assert torch.equal(weights(resumed), weights(model))


def test_deepcopy_trains_on_independently_and_identically():
    batches = _batches(10)
    model = _mlp()
    opt = Muon(model.parameters(), lr=0.02, flatten=True)
    train(model, opt, batches[:5])
    twin = copy.deepcopy({"model": model, "opt": opt})
    train(model, opt, batches[5:])
    assert not torch.equal(weights(model), weights(twin["model"]))
    train(twin["model"], twin["opt"], batches[5:])
    assert torch.equal(weights(model), weights(twin["model"]))
    assert twin["opt"].param_groups[0]["flatten"] is True


# --- torch's own Muon checks (common_optimizers.py: optim_inputs_func_muon, optim_error_inputs_func_muon) ---

TORCH_INPUTS = {
    "default": {}, "non-default lr": {"lr": 0.01}, "Tensor lr": {"lr": torch.tensor(0.001)},
    "non-default weight_decay": {"weight_decay": 0.2}, "non-default momentum": {"momentum": 0.8},
    "passing alternative ns_steps": {"ns_steps": 6},
    "passing alternative ns_coefficients": {"ns_coefficients": (3.4, -4.7, 2.0)},
}


@pytest.mark.parametrize("desc", TORCH_INPUTS)
def test_torchs_optimizer_inputs_give_torchs_numbers(desc):
    batches = _batches(15)
    runs = []
    for cls in (Muon, torch.optim.Muon):
        model = _mlp()
        train(model, cls(model.parameters(), **copy.deepcopy(TORCH_INPUTS[desc])), batches)
        runs.append(weights(model))
    assert torch.equal(*runs)


def _error_inputs():
    """torch's Muon error inputs (and the ones it shares with every optimizer): (params, kwargs, at step)."""
    p1, p2 = torch.nn.Parameter(torch.randn(1, 1)), torch.nn.Parameter(torch.randn(1, 1))
    complex_param = torch.rand(2, 3, dtype=torch.complex64)
    complex_param.grad = torch.rand_like(complex_param)
    sparse = torch.nn.Parameter(torch.rand(2, 3))
    sparse.grad = torch.rand(2, 3).to_sparse()
    return {
        "invalid param type": (p1, {}, False),
        "duplicate params across groups": ([{"params": p1}, {"params": p1}], {}, False),
        "Tensor lr must be 1-element": ([p1], {"lr": torch.tensor([0.001, 0.001])}, False),
        "names with and without": ([("weight", p1), p2], {}, False),
        "groups with and without names": ([{"params": [p1], "lr": 1e-2}, {"params": [("weight", p2)]}], {}, False),
        "only 2D": ([torch.rand(2, 3, 4)], {}, False),
        "adjust_lr_fn": ([torch.rand(2, 3)], {"adjust_lr_fn": "arbitrary"}, False),
        "negative lr": ([p1], {"lr": -1.0}, False),
        "negative momentum": ([p1], {"momentum": -0.5}, False),
        "negative weight decay": ([p1], {"weight_decay": -0.1}, False),
        "complex": ([complex_param], {}, True),
        "sparse gradient": ([sparse], {}, True),
    }


@pytest.mark.parametrize("desc", list(_error_inputs()))
def test_errors_have_torchs_types_and_messages(desc):
    outcomes = []
    for cls in (Muon, torch.optim.Muon):
        params, kwargs, at_step = _error_inputs()[desc]
        with pytest.raises(Exception) as info:
            opt = cls(params, **kwargs)
            if at_step:
                opt.step()
        outcomes.append(info)
    ours, theirs = outcomes
    assert isinstance(ours.value, theirs.type)
    assert str(ours.value).startswith(str(theirs.value)), (str(ours.value), str(theirs.value))


def test_duplicate_params_warn_as_in_torch():
    p = torch.nn.Parameter(torch.randn(2, 2))
    with pytest.warns(UserWarning, match="a parameter group with duplicate parameters"):
        Muon([p, p])


@pytest.mark.parametrize("kwargs,torch_message", [
    ({"ns_steps": 100}, "Number of steps must be less than 100 for computational efficiency"),
    ({"ns_coefficients": (1.0, 2.0)}, "Coefficients must be a tuple of exactly 3 values"),
])
def test_errors_torch_raises_at_step_are_raised_at_construction_with_its_message(kwargs, torch_message):
    w = torch.nn.Parameter(torch.randn(3, 2))
    w.grad = torch.ones(3, 2)
    theirs = torch.optim.Muon([w], **kwargs)
    with pytest.raises(ValueError, match=torch_message):
        theirs.step()
    with pytest.raises(ValueError, match=f"^{torch_message} \\("):
        Muon([w], **kwargs)


@pytest.mark.parametrize("kwargs,says", [
    ({"update_rms": 0.2, "adjust_lr_fn": "original"}, "pass adjust_lr_fn=None with it"),
    ({"update_rms": 0.0}, r"update_rms must be in \(0.0, inf\)"),
    ({"ns_steps": -1}, r"ns_steps must be an integer in \[0, 99\]"),
    ({"decay_scaling": "cosine"}, "decay_scaling must be one of"),
    ({"eps": -1.0}, r"eps must be in \[0.0, inf\)"),
])
def test_decaylab_options_are_checked(kwargs, says):
    with pytest.raises(ValueError, match=says):
        Muon([torch.nn.Parameter(torch.randn(3, 2))], **kwargs)
    with pytest.raises(TypeError, match="flatten must be a bool"):
        Muon([torch.nn.Parameter(torch.randn(3, 2))], flatten="yes")


def test_a_bad_group_added_later_is_refused_and_not_kept():
    opt = Muon([torch.nn.Parameter(torch.randn(3, 2))])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(4))]})
    assert len(opt.param_groups) == 1


def test_constructor_signature_is_torchs():
    mine = inspect.signature(Muon.__init__).parameters
    theirs = inspect.signature(torch.optim.Muon.__init__).parameters
    for name, param in theirs.items():
        assert (mine[name].default, mine[name].kind) == (param.default, param.kind), name
    extra = [name for name in mine if name not in theirs]
    assert extra == ["decay_scaling", "cautious", "l1_decay", "update_rms", "flatten", "ns_dtype"]
    assert all(mine[name].kind is inspect.Parameter.KEYWORD_ONLY for name in extra)


def _right_direction(make_opt, contiguous=True, schedulers=()):
    """torch's test_forloop_goes_right_direction for a 2-D-only optimizer: W·x + B, with B a [10, 1] matrix."""
    torch.manual_seed(0)
    if contiguous:
        weight, bias = torch.nn.Parameter(torch.randn(10, 5)), torch.nn.Parameter(torch.randn(10, 1))
    else:
        weight = torch.nn.Parameter(torch.randn(10, 5, 2)[..., 0])
        bias = torch.nn.Parameter(torch.randn(10, 1, 2)[..., 0])
    x = torch.randn(5, 1)
    opt = make_opt([weight, bias])
    scheds = [make(opt) for make in schedulers]

    def closure():
        opt.zero_grad()
        loss = (weight @ x + bias).pow(2).sum()
        loss.backward()
        return loss
    initial = closure().item()
    for _ in range(20):
        loss = closure()
        opt.step()
        for s in scheds:
            s.step(loss.item()) if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau) else s.step()
    return initial, closure().item()


TORCH_SCHEDULERS = [lambda o: torch.optim.lr_scheduler.StepLR(o, gamma=0.9, step_size=10),
                    lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o)]


@pytest.mark.parametrize("with_lrsched", [False, True])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("desc", TORCH_INPUTS)
def test_goes_right_direction(desc, contiguous, with_lrsched):
    initial, final = _right_direction(lambda p: Muon(p, **copy.deepcopy(TORCH_INPUTS[desc])), contiguous,
                                      TORCH_SCHEDULERS if with_lrsched else ())
    assert final < initial


def test_param_group_with_lr_scheduler_goes_right_direction():
    def make(params):
        return Muon([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.01}])
    initial, final = _right_direction(make, schedulers=TORCH_SCHEDULERS)
    assert final < initial


def test_param_groups_with_their_own_options_equal_one_optimizer_per_group():
    batches = _batches(12)
    model = _mlp()
    layers = [m for m in model if isinstance(m, torch.nn.Linear)]
    opt = Muon([{"params": layers[0].parameters(), "lr": 0.05, "adjust_lr_fn": "match_rms_adamw"},
                {"params": [p for m in layers[1:] for p in m.parameters()], "weight_decay": 0.3,
                 "nesterov": False}], lr=0.02, weight_decay=0.1)
    twin = copy.deepcopy(model)
    twin_layers = [m for m in twin if isinstance(m, torch.nn.Linear)]
    opts = [torch.optim.Muon(twin_layers[0].parameters(), lr=0.05, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"),
            torch.optim.Muon([p for m in twin_layers[1:] for p in m.parameters()], lr=0.02, weight_decay=0.3,
                             nesterov=False)]
    for X, y in batches:
        for m, group_opts in ((model, [opt]), (twin, opts)):
            for o in group_opts:
                o.zero_grad()
            ((m(X) - y) ** 2).mean().backward()
            for o in group_opts:
                o.step()
    assert torch.equal(weights(model), weights(twin))


def test_params_without_grad_are_skipped_and_closure_loss_returned():
    used, unused = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(3, 2))
    opt = Muon([used, unused])
    loss = opt.step(lambda: (used * torch.arange(6.0).reshape(3, 2)).sum().backward() or torch.tensor(1.5))
    assert loss.item() == 1.5
    assert torch.equal(unused.detach(), torch.ones(3, 2)) and unused not in opt.state
    assert not torch.equal(used.detach(), torch.ones(3, 2)) and "momentum_buffer" in opt.state[used]


def test_hooks_fire_and_optimizer_prints():
    model = _mlp()
    opt = Muon(model.parameters(), lr=0.01)
    calls = record_hooks(opt)
    train(model, opt, _batches(1))
    opt.load_state_dict(opt.state_dict())
    assert calls == ["pre", "post", "sd-pre", "sd-post", "load-pre", "load-post"]
    assert "Muon (" in repr(opt) and "adjust_lr_fn: None" in repr(opt)


def test_state_dict_is_deterministic():
    """torch's test_state_dict_deterministic: a loaded copy takes the same steps."""
    batches = _batches(10)
    model = _mlp()
    opt = Muon(model.parameters(), lr=0.02)
    train(model, opt, batches[:3])
    twin = copy.deepcopy(model)
    twin_opt = Muon(twin.parameters(), lr=0.02)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(model, opt, batches[3:])
    train(twin, twin_opt, batches[3:])
    assert torch.equal(weights(model), weights(twin))
    assert opt.state_dict()["param_groups"] == twin_opt.state_dict()["param_groups"]
