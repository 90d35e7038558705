"""decaylab.optim.Lion against an independent implementation of Chen et al. 2023's Algorithm 2,
the ``lion-pytorch`` package (``lion_pytorch.Lion``, a test dependency), and its own paths
against each other: for-loop, foreach and the single-pass native kernel.

lion-pytorch's decay conventions map to decaylab's as its docstring says: its default
``p·(1 − lr_t·λ)`` is decay_scaling ``"lr"``; its ``decoupled_weight_decay=True``,
``p·(1 − lr_t·λ/lr_0)``, is ``"schedule"`` with the same λ.
"""

from __future__ import annotations

import copy

import pytest
import torch
from lion_pytorch import Lion as ReferenceLion
from optim_training import regression_batches, resumed_run, train, weights

from decaylab.optim import Lion, _native

PATHS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def _model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


def _batches(n, seed=0, dtype=torch.float32):
    return regression_batches(n, 6, 3, seed=seed, dtype=dtype)


def _fixed_grad_run(make, steps, dtype=torch.float64, numel=5000, poison=None, schedule=None):
    """A long vector and a matrix trained on a gradient sequence that does not depend on the weights.
    Returns (all weights flattened, the optimizer)."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(numel, generator=gen, dtype=dtype)),
              torch.nn.Parameter(torch.randn(7, 5, generator=gen, dtype=dtype))]
    opt = make(params)
    sched = schedule(opt) if schedule else None
    for t in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype) * 0.1 + 0.02 * p.detach()
        if poison is not None:
            poison(t, params[0])
        opt.step()
        if sched is not None:
            sched.step()
    return torch.cat([p.detach().flatten() for p in params]), opt


@pytest.mark.parametrize("path", PATHS)
def test_equals_lion_pytorch_over_100_steps_with_decay_and_a_schedule(path):
    """decay_scaling="lr" is lion-pytorch's default convention: the same numbers, bit for bit."""
    batches = _batches(100)
    runs = []
    for make in (lambda p: Lion(p, lr=3e-3, weight_decay=0.5, **PATHS[path]),
                 lambda p: ReferenceLion(p, lr=3e-3, weight_decay=0.5)):
        model = _model()
        opt = make(model.parameters())
        train(model, opt, batches, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100))
        runs.append((weights(model), opt))
    (ours, ours_opt), (theirs, theirs_opt) = runs
    assert not torch.equal(ours, weights(_model()))
    assert torch.equal(ours, theirs)
    for p, q in zip(ours_opt.param_groups[0]["params"], theirs_opt.param_groups[0]["params"]):
        assert torch.equal(ours_opt.state[p]["exp_avg"], theirs_opt.state[q]["exp_avg"])


@pytest.mark.parametrize("path", PATHS)
def test_schedule_scaling_is_lion_pytorchs_decoupled_weight_decay(path):
    """lion-pytorch's decoupled_weight_decay=True decays by lr_t·(λ/lr_0): decaylab's "schedule", same λ
    (the two products round differently: float32, within 1e-6 of the largest weight)."""
    schedule = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)  # noqa: E731
    ours, _ = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, weight_decay=3.0, decay_scaling="schedule",
                                             **PATHS[path]), 100, dtype=torch.float32, schedule=schedule)
    theirs, _ = _fixed_grad_run(lambda p: ReferenceLion(p, lr=1e-2, weight_decay=3.0, decoupled_weight_decay=True),
                                100, dtype=torch.float32, schedule=schedule)
    as_lr, _ = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, weight_decay=3.0), 100, dtype=torch.float32,
                               schedule=schedule)
    scale = theirs.abs().max()
    assert ((ours - theirs).abs().max() / scale).item() <= 1e-6
    assert ((as_lr - theirs).abs().max() / scale).item() > 1e-2  # a different decay: the test can tell


def test_lion_pytorch_state_dict_loads_and_continues_identically():
    batches = _batches(30)
    model = _model()
    opt = ReferenceLion(model.parameters(), lr=1e-3, weight_decay=0.3)
    train(model, opt, batches[:15])
    checkpoint = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
    train(model, opt, batches[15:])
    ours_model = _model(seed=4)
    ours_model.load_state_dict(checkpoint["model"])
    ours = Lion(ours_model.parameters(), lr=0.1, weight_decay=0.0)
    ours.load_state_dict(checkpoint["opt"])
    train(ours_model, ours, batches[15:])
    assert torch.equal(weights(ours_model), weights(model))


OPTIONS = [
    dict(weight_decay=0.5),
    dict(weight_decay=0.2, maximize=True, l1_decay=0.05, betas=(0.95, 0.98)),
    dict(weight_decay=0.01, decay_scaling="corrected", l1_decay=0.01),
    dict(weight_decay=1e-3, decay_scaling="schedule"),
]
CAUTIOUS = [dict(weight_decay=0.5, cautious=True), dict(weight_decay=0.3, cautious=True, l1_decay=0.02)]


def _schedule(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kwargs", OPTIONS + CAUTIOUS)
def test_native_kernel_gives_the_for_loop_numbers(kwargs, dtype, spy_paths):
    """The kernel rounds as torch's ops do (fused multiply-adds where they use them): bit for bit."""
    assert _native.library() is not None, "a C compiler is part of the test machine"
    seen = spy_paths()
    native, native_opt = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, fused=True, **kwargs), 25, dtype=dtype,
                                         schedule=_schedule)
    assert set(seen) == {"native"}
    loop, loop_opt = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, foreach=False, **kwargs), 25, dtype=dtype,
                                     schedule=_schedule)
    assert torch.equal(native, loop)
    for p, q in zip(native_opt.param_groups[0]["params"], loop_opt.param_groups[0]["params"]):
        assert torch.equal(native_opt.state[p]["exp_avg"], loop_opt.state[q]["exp_avg"])


@pytest.mark.parametrize("kwargs", OPTIONS)
def test_foreach_gives_the_for_loop_numbers(kwargs):
    foreach, _ = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, foreach=True, **kwargs), 25, schedule=_schedule)
    loop, _ = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, foreach=False, **kwargs), 25, schedule=_schedule)
    assert torch.equal(foreach, loop)


@pytest.mark.parametrize("kwargs", CAUTIOUS)
def test_foreach_cautious_decay_agrees_with_the_for_loop_to_rounding(kwargs):
    """The multi-tensor cautious decay computes w − d·𝕀⊙w, the for-loop w·(1 − d·𝕀): the same to rounding."""
    foreach, _ = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, foreach=True, **kwargs), 25, schedule=_schedule)
    loop, _ = _fixed_grad_run(lambda p: Lion(p, lr=1e-2, foreach=False, **kwargs), 25, schedule=_schedule)
    assert ((foreach - loop).abs().max() / loop.abs().max()).item() <= 1e-14


def test_native_kernel_splits_work_over_threads_identically():
    runs = []
    threads = torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        runs.append(_fixed_grad_run(lambda p: Lion(p, lr=1e-2, weight_decay=0.1, cautious=True, fused=True), 3,
                                    dtype=torch.float32, numel=1 << 17)[0])
    torch.set_num_threads(threads)
    assert torch.equal(*runs)


def test_fused_falls_back_to_foreach_where_the_kernel_does_not_apply(spy_paths):
    seen = spy_paths()
    base = torch.randn(6, 4, dtype=torch.float64)
    runs = []
    for flags, start in (({"fused": True}, base.clone().t()), ({"foreach": False}, base.t().contiguous())):
        w = torch.nn.Parameter(start)
        opt = Lion([w], lr=0.1, weight_decay=0.2, l1_decay=0.01, **flags)
        for t in range(5):
            w.grad = torch.linspace(-1, 1, 24, dtype=torch.float64).reshape(4, 6) * (t - 2)
            opt.step()
        runs.append(w.detach().contiguous())
    assert seen[0] == "fused"  # not contiguous: torch's multi-tensor ops
    assert torch.equal(*runs)


def _first_steps(seed, **kwargs):
    """(w0, g, [w1 of each path]) of one Lion step with lr 0.1 from w0 with gradient g (then m = 0 and
    c = (1 − β₁)·g, so sign(c) = sign(g))."""
    gen = torch.Generator().manual_seed(seed)
    w0, g = torch.randn(300, generator=gen, dtype=torch.float64), torch.randn(300, generator=gen, dtype=torch.float64)
    after = []
    for flags in PATHS.values():
        w = torch.nn.Parameter(w0.clone())
        w.grad = g.clone()
        Lion([w], lr=0.1, **kwargs, **flags).step()
        after.append(w.detach())
    return w0, g, after


def test_cautious_decays_only_where_sign_of_c_agrees_with_the_weight():
    w0, g, after = _first_steps(1, weight_decay=0.5, cautious=True)
    agrees = torch.sign(g) * w0 >= 0
    assert 100 < agrees.sum() < 200
    expected = torch.where(agrees, w0 * (1 - 0.1 * 0.5), w0) - 0.1 * torch.sign(g)
    for w1 in after:
        torch.testing.assert_close(w1, expected, rtol=1e-15, atol=1e-16)


def test_l1_decay_soft_thresholds_after_the_step_into_exact_zeros():
    w0, g, after = _first_steps(2, weight_decay=0.2, l1_decay=3.0)
    before = w0 * (1 - 0.1 * 0.2) - 0.1 * torch.sign(g)
    expected = torch.sign(before) * torch.clamp(before.abs() - 0.1 * 3.0, min=0)
    for w1 in after:
        assert 0 < (w1 == 0).sum() < 300
        torch.testing.assert_close(w1, expected, rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("scaling,scale", [("lr", lambda lr, lr0: lr), ("schedule", lambda lr, lr0: lr / lr0),
                                           ("corrected", lambda lr, lr0: lr * lr / lr0)])
def test_decay_scalings_shrink_by_s_t_lambda_each_step(scaling, scale):
    """With zero gradients c = 0 and sign(c) = 0: only the decay acts, w_T = w_0·Π(1 − s_t·λ)."""
    lr0, lam = 0.2, 0.4
    for flags in PATHS.values():
        w = torch.nn.Parameter(torch.linspace(-2, 2, 9, dtype=torch.float64))
        opt = Lion([w], lr=lr0, weight_decay=lam, decay_scaling=scaling, **flags)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        factor = 1.0
        for _ in range(8):
            factor *= 1 - scale(opt.param_groups[0]["lr"], lr0) * lam
            w.grad = torch.zeros_like(w)
            opt.step()
            sched.step()
        torch.testing.assert_close(w.detach(), torch.linspace(-2, 2, 9, dtype=torch.float64) * factor,
                                   rtol=1e-14, atol=0)


@pytest.mark.parametrize("lam", [1.0, 3.0])
def test_weights_inside_the_sup_norm_bound_stay_inside(lam):
    """|w| ≤ 1/λ is kept by every step at constant lr: (1 − lr·λ)/λ + lr = 1/λ (module docstring)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter((torch.rand(1000, generator=gen, dtype=torch.float64) * 2 - 1) / lam)
    opt = Lion([w], lr=0.05, weight_decay=lam)
    for _ in range(200):
        w.grad = torch.randn(1000, generator=gen, dtype=torch.float64)
        opt.step()
        assert w.detach().abs().max() <= (1 / lam) * (1 + 1e-12)
    assert w.detach().abs().max() > 0.9 / lam


def test_nan_gradient_is_a_zero_sign_as_in_lion_pytorch():
    """torch's sign(NaN) = 0: the NaN coordinate's weight is only decayed, its moment turns NaN."""
    def poison(t, w):
        if t == 2:
            w.grad[5] = float("nan")
    runs = [_fixed_grad_run(lambda p, f=flags: Lion(p, lr=1e-2, weight_decay=0.5, **f), 5, numel=300, poison=poison)
            for flags in PATHS.values()]
    theirs, ref_opt = _fixed_grad_run(lambda p: ReferenceLion(p, lr=1e-2, weight_decay=0.5), 5, numel=300,
                                      poison=poison)
    for ours, opt in runs:
        assert torch.equal(ours, theirs) and ours.isfinite().all()
        assert torch.isnan(opt.state[opt.param_groups[0]["params"][0]]["exp_avg"]).nonzero().flatten().tolist() == [5]


def test_complex_params_are_pairs_of_reals():
    target = torch.tensor([1 + 2j, -3 + 0.5j], dtype=torch.complex128)
    runs = []
    for flags in PATHS.values():
        z = torch.nn.Parameter(torch.zeros(2, dtype=torch.complex128))
        opt = Lion([z], lr=0.05, weight_decay=0.1, **flags)
        for _ in range(5):
            opt.zero_grad()
            (z - target).abs().pow(2).sum().backward()
            opt.step()
        runs.append(z.detach())
    real = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    opt = Lion([real], lr=0.05, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        (real - torch.view_as_real(target)).pow(2).sum().backward()
        opt.step()
    for z in runs:
        assert torch.equal(torch.view_as_real(z), real.detach())


def test_differentiable_mode_gives_the_gradient_through_the_decay():
    """sign(c) has zero derivative, so d w_T / d w_0 = (1 − lr·λ)^T."""
    start = torch.randn(4, dtype=torch.float64, requires_grad=True)
    w = start.clone()
    opt = Lion([w], lr=0.1, weight_decay=0.5, differentiable=True)
    for _ in range(3):
        w.grad = torch.randn(4, dtype=torch.float64)
        opt.step()
    w.sum().backward()
    torch.testing.assert_close(start.grad, torch.full((4,), (1 - 0.05) ** 3, dtype=torch.float64),
                               rtol=1e-14, atol=0)


SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.01, total_steps=20),
    "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5),
}


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_lr_schedulers_drive_it_as_they_drive_lion_pytorch(scheduler):
    """Every scheduler (OneCycleLR cycles beta1 too) gives lion-pytorch's trajectory."""
    batches = _batches(20)
    runs = []
    for cls in (Lion, ReferenceLion):
        model = _model()
        opt = cls(model.parameters(), lr=1e-3, weight_decay=0.2)
        train(model, opt, batches, SCHEDULERS[scheduler](opt))
        runs.append((weights(model), opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
    assert runs[0][1:] == runs[1][1:]
    assert torch.equal(runs[0][0], runs[1][0])


@pytest.mark.parametrize("path", PATHS)
def test_state_dict_mid_training_continues_as_uninterrupted(path):
    kwargs = dict(lr=1e-3, weight_decay=1e-3, decay_scaling="schedule", cautious=True, **PATHS[path])
    model, resumed, _ = resumed_run(lambda seed: _model(seed=seed),
                                    lambda model, **overrides: Lion(model.parameters(), **{**kwargs, **overrides}),
                                    _batches(20))
    assert torch.equal(weights(resumed), weights(model))


def test_deepcopy_hooks_closure_and_params_without_grad():
    batches = _batches(6)
    model = _model()
    opt = Lion(model.parameters(), lr=1e-3, weight_decay=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kw: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kw: calls.append("post"))
    train(model, opt, batches[:3])
    twin = copy.deepcopy({"model": model, "opt": opt})
    train(model, opt, batches[3:])
    train(twin["model"], twin["opt"], batches[3:])
    assert torch.equal(weights(model), weights(twin["model"]))
    assert calls == ["pre", "post"] * 6

    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = Lion([used, unused], lr=0.1)
    loss = opt.step(lambda: (used * torch.tensor([1.0, -1.0, 2.0])).sum().backward() or torch.tensor(2.5))
    assert loss.item() == 2.5
    assert torch.equal(used.detach(), torch.tensor([0.9, 1.1, 0.9])) and unused not in opt.state


def _adamw_error(kwargs):
    with pytest.raises(Exception) as info:
        torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], **kwargs)
    return info


@pytest.mark.parametrize("kwargs", [dict(lr=-1.0), dict(betas=(1.0, 0.99)), dict(betas=(0.9, -0.1)),
                                    dict(weight_decay=-0.5), dict(lr=torch.tensor([1e-3, 1e-3]))])
def test_constructor_errors_start_with_torch_adamws_messages(kwargs):
    theirs = _adamw_error(kwargs)
    with pytest.raises(theirs.type) as ours:
        Lion([torch.nn.Parameter(torch.ones(2))], **kwargs)
    assert str(ours.value).startswith(str(theirs.value))


@pytest.mark.parametrize("kwargs,error,says", [
    (dict(fused=True, foreach=True), RuntimeError, "`fused` and `foreach` cannot be `True` together"),
    (dict(fused=True, differentiable=True), RuntimeError, "`fused` does not support `differentiable`"),
    (dict(decay_scaling="constant"), ValueError, "decay_scaling must be one of"),
    (dict(cautious=1), TypeError, "cautious must be a bool"),
    (dict(l1_decay=-1.0), ValueError, r"l1_decay must be in \[0.0, inf\)"),
    (dict(betas=0.9), TypeError, "betas must be a pair"),
])
def test_bad_options_are_refused(kwargs, error, says):
    with pytest.raises(error, match=says):
        Lion([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_sparse_gradients_are_refused():
    w = torch.nn.Parameter(torch.ones(4))
    w.grad = torch.ones(4).to_sparse()
    with pytest.raises(RuntimeError, match="Lion does not support sparse gradients"):
        Lion([w]).step()
