"""The math of the decay conventions: exact oracles, hand-written updates, scalings, variants, timescales."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.linear_model import Lasso

from decaylab.optim import SGD, SGDW, Adam, AdamW, functional
from decaylab.optim._decay import timescale_weight_decay

F64 = torch.float64
PATHS = [{"foreach": False, "fused": False}, {"foreach": True}, {"fused": True}]


def _least_squares(n=50, d=5, seed=0, sparse=False):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=F64)
    w_true = torch.randn(d, generator=gen, dtype=F64)
    if sparse:
        w_true[::2] = 0.0
    y = X @ w_true + 0.1 * torch.randn(n, generator=gen, dtype=F64)
    return X, y


def _half_mse(X, y, w):
    """(1/2n)·‖Xw − y‖²"""
    return 0.5 * ((X @ w - y) ** 2).mean()


def _ridge_solution(X, y, lam):
    """argmin (1/2n)‖Xw − y‖² + (λ/2)‖w‖² = (XᵀX/n + λI)⁻¹ Xᵀy/n"""
    n, d = X.shape
    return torch.linalg.solve(X.T @ X / n + lam * torch.eye(d, dtype=F64), X.T @ y / n)


# --- the tutorial's facts -------------------------------------------------------------

def _paired_steps(make_a, make_b, steps=30):
    """Run two optimizers from the same start on the same gradients; yield both weights."""
    X, y = _least_squares()
    wa, wb = (torch.nn.Parameter(torch.ones(5, dtype=F64)) for _ in range(2))
    oa, ob = make_a([wa]), make_b([wb])
    for _ in range(steps):
        for w, o in ((wa, oa), (wb, ob)):
            o.zero_grad()
            _half_mse(X, y, w).backward()
            o.step()
        yield wa.detach(), wb.detach()


def test_sgd_coupled_equals_sgdw_lr_scaling_step_for_step_without_momentum():
    for wa, wb in _paired_steps(lambda p: SGD(p, lr=0.1, weight_decay=0.3),
                                lambda p: SGDW(p, lr=0.1, weight_decay=0.3)):
        assert torch.allclose(wa, wb, rtol=0, atol=1e-14)


def test_sgd_coupled_and_sgdw_differ_with_momentum():
    *_, (wa, wb) = _paired_steps(lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.3),
                                 lambda p: SGDW(p, lr=0.1, momentum=0.9, weight_decay=0.3))
    assert (wa - wb).abs().max() > 1e-3


def test_adam_coupled_and_adamw_differ():
    *_, (wa, wb) = _paired_steps(lambda p: Adam(p, lr=0.05, weight_decay=0.3),
                                 lambda p: AdamW(p, lr=0.05, weight_decay=0.3))
    assert (wa - wb).abs().max() > 1e-3


# --- exactness: the ridge oracle --------------------------------------------------------

def test_full_batch_gd_with_coupled_decay_converges_to_closed_form_ridge():
    X, y = _least_squares()
    lam = 0.1
    w = torch.nn.Parameter(torch.zeros(5, dtype=F64))
    opt = SGD([w], lr=0.5, weight_decay=lam)
    for _ in range(500):
        opt.zero_grad()
        _half_mse(X, y, w).backward()
        opt.step()
    assert torch.allclose(w.detach(), _ridge_solution(X, y, lam), rtol=0, atol=1e-12)


def test_adam_with_coupled_decay_and_decaying_lr_converges_to_ridge():
    X, y = _least_squares(seed=1)
    lam = 0.1
    w = torch.nn.Parameter(torch.zeros(5, dtype=F64))
    opt = Adam([w], lr=0.05, weight_decay=lam)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 / (1 + t / 50))
    for _ in range(2500):
        opt.zero_grad()
        _half_mse(X, y, w).backward()
        opt.step()
        sched.step()
    assert torch.allclose(w.detach(), _ridge_solution(X, y, lam), rtol=0, atol=1e-8)


# --- decay scalings in isolation (zero gradients leave only the decay) ----------------------

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls,extra", [(AdamW, {}), (SGDW, {"momentum": 0.9}), (SGDW, {})])
@pytest.mark.parametrize("scaling", ["schedule", "corrected", "lr"])
def test_decay_scaling_shrinks_by_exact_factor_each_step_under_cosine(cls, extra, scaling, path):
    lr0, lam, steps = 0.2, 0.05, 12
    w = torch.nn.Parameter(torch.linspace(-1, 2, 7, dtype=F64))
    opt = cls([w], lr=lr0, weight_decay=lam, decay_scaling=scaling, **extra, **path)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for t in range(steps):
        lr_t = lr0 * (1 + math.cos(math.pi * t / steps)) / 2
        s_t = {"lr": lr_t, "schedule": lr_t / lr0, "corrected": lr_t ** 2 / lr0}[scaling]
        before = w.detach().clone()
        w.grad = torch.zeros_like(w)
        opt.step()
        sched.step()
        assert torch.allclose(w.detach(), before * (1 - s_t * lam), rtol=1e-14, atol=0)


# --- variants against hand-written updates --------------------------------------------------

def _adam_direction(m, v, t, beta1=0.9, beta2=0.999, eps=1e-8):
    return (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps)


@pytest.mark.parametrize("path", PATHS)
def test_cautious_adamw_matches_hand_written_update(path):
    """Chen et al. 2025, Alg. 1: w ← w − lr·(u + λ·𝕀(u⊙w ≥ 0)⊙w)."""
    gen = torch.Generator().manual_seed(0)
    lr, lam = 0.1, 0.5
    w = torch.nn.Parameter(torch.randn(40, generator=gen, dtype=F64))
    opt = AdamW([w], lr=lr, weight_decay=lam, cautious=True, **path)
    expect = w.detach().clone()
    m, v = torch.zeros_like(expect), torch.zeros_like(expect)
    masked_some = False
    for t in range(1, 5):
        g = torch.randn(40, generator=gen, dtype=F64)
        w.grad = g.clone()
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        u = _adam_direction(m, v, t)
        mask = (u * expect >= 0).to(F64)
        masked_some |= bool((mask == 0).any() and (mask == 1).any())
        expect = expect - lr * (u + lam * mask * expect)
        assert torch.allclose(w.detach(), expect, rtol=1e-13, atol=1e-15)
    assert masked_some


@pytest.mark.parametrize("path", PATHS)
def test_cautious_sgdw_with_momentum_matches_hand_written_update(path):
    gen = torch.Generator().manual_seed(1)
    lr, lam, mu = 0.1, 0.5, 0.9
    w = torch.nn.Parameter(torch.randn(40, generator=gen, dtype=F64))
    opt = SGDW([w], lr=lr, momentum=mu, weight_decay=lam, cautious=True, **path)
    expect, buf = w.detach().clone(), None
    for _ in range(4):
        g = torch.randn(40, generator=gen, dtype=F64)
        w.grad = g.clone()
        opt.step()
        buf = g if buf is None else mu * buf + g
        mask = (buf * expect >= 0).to(F64)
        expect = expect - lr * (buf + lam * mask * expect)
        assert torch.allclose(w.detach(), expect, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("path", PATHS)
def test_l1_proximal_adamw_matches_hand_written_update_and_makes_exact_zeros(path):
    """w ← soft_threshold(w − lr·u, lr·λ₁) (decoupled L1, proximal step)."""
    gen = torch.Generator().manual_seed(2)
    lr, l1 = 0.05, 2.0
    w = torch.nn.Parameter(torch.randn(40, generator=gen, dtype=F64))
    opt = AdamW([w], lr=lr, weight_decay=0.0, l1_decay=l1, **path)
    expect = w.detach().clone()
    m, v = torch.zeros_like(expect), torch.zeros_like(expect)
    for t in range(1, 5):
        g = 0.1 * torch.randn(40, generator=gen, dtype=F64)
        w.grad = g.clone()
        opt.step()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        half = expect - lr * _adam_direction(m, v, t)
        expect = torch.sign(half) * torch.clamp(half.abs() - lr * l1, min=0)
        assert torch.allclose(w.detach(), expect, rtol=1e-13, atol=1e-15)
    assert (w.detach() == 0).sum() >= 5


def test_sgdw_l1_is_ista_and_reaches_sklearn_lasso_with_exact_zeros():
    """Full-batch SGDW with l1_decay=α is proximal gradient descent on sklearn's Lasso
    objective (1/2n)‖y − Xw‖² + α‖w‖₁; it lands on Lasso's solution, zeros included."""
    X, y = _least_squares(n=80, d=8, seed=3, sparse=True)
    alpha = 0.05
    w = torch.nn.Parameter(torch.zeros(8, dtype=F64))
    opt = SGDW([w], lr=0.3, weight_decay=0.0, l1_decay=alpha)
    for _ in range(3000):
        opt.zero_grad()
        _half_mse(X, y, w).backward()
        opt.step()
    lasso = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100000)
    coef = torch.from_numpy(lasso.fit(X.numpy(), y.numpy()).coef_)
    assert torch.equal(w.detach() == 0, coef == 0) and (coef == 0).sum() >= 2
    assert torch.allclose(w.detach(), coef, rtol=0, atol=1e-9)


# --- from_timescale ---------------------------------------------------------------------------

def test_from_timescale_arithmetic():
    p = [torch.nn.Parameter(torch.ones(2))]
    # τ_iter = 10 epochs · 100 steps = 1000; λ = 1/(lr·τ_iter) = 1/(1e-3·1000) = 1
    assert AdamW.from_timescale(p, lr=1e-3, tau_epochs=10, steps_per_epoch=100) \
        .param_groups[0]["weight_decay"] == pytest.approx(1.0)
    sched = AdamW.from_timescale(p, lr=1e-3, tau_epochs=10, steps_per_epoch=100,
                                 decay_scaling="schedule")
    assert sched.param_groups[0]["weight_decay"] == pytest.approx(1e-3)  # 1/τ_iter
    sgdw = SGDW.from_timescale(p, lr=0.1, tau_epochs=2, steps_per_epoch=50, momentum=0.9)
    assert sgdw.param_groups[0]["weight_decay"] == pytest.approx(0.1)  # 1/(0.1·100)
    assert sgdw.param_groups[0]["momentum"] == 0.9
    assert timescale_weight_decay(0.5, 4, 25, "corrected") == pytest.approx(0.02)


def test_from_timescale_keeps_no_decay_groups_and_sets_the_others():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    from decaylab import param_groups

    opt = AdamW.from_timescale(param_groups(model, weight_decay=0.5), lr=1e-3, tau_epochs=10,
                               steps_per_epoch=100)
    decays = sorted(group["weight_decay"] for group in opt.param_groups)
    assert decays == [0.0, pytest.approx(1.0)]  # no-decay group untouched; the other gets 1/(lr·τ)
    custom = AdamW.from_timescale([{"params": [model[0].weight]}, {"params": [model[0].bias], "weight_decay": 0}],
                                  lr=1e-3, tau_epochs=10, steps_per_epoch=100)
    assert [g["weight_decay"] for g in custom.param_groups] == [pytest.approx(1.0), 0]


def test_from_timescale_gives_the_promised_ema_timescale():
    """With zero gradients, weights shrink by e^-1 after about τ_iter steps."""
    w = torch.nn.Parameter(torch.ones(3, dtype=F64))
    opt = AdamW.from_timescale([w], lr=0.01, tau_epochs=4, steps_per_epoch=50)
    for _ in range(200):
        w.grad = torch.zeros_like(w)
        opt.step()
    assert w[0].item() == pytest.approx(math.exp(-1), rel=5e-3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=0.0, tau_epochs=1, steps_per_epoch=1), "lr"),
    (dict(lr=1e-3, tau_epochs=-1, steps_per_epoch=1), "tau_epochs"),
    (dict(lr=1e-3, tau_epochs=float("nan"), steps_per_epoch=1), "tau_epochs"),
    (dict(lr=1e-3, tau_epochs=1, steps_per_epoch=0), "steps_per_epoch"),
    (dict(lr=1e-3, tau_epochs=1, steps_per_epoch=2.5), "steps_per_epoch"),
    (dict(lr=1e-3, tau_epochs=1, steps_per_epoch=3, weight_decay=0.1), "weight_decay"),
])
def test_from_timescale_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AdamW.from_timescale([torch.nn.Parameter(torch.ones(2))], **kwargs)


# --- the functional form on stacked members --------------------------------------------------

def _members(G=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = torch.randn(G, 4, 5, generator=gen, dtype=F64)
    grads = [torch.randn(G, 4, 5, generator=gen, dtype=F64) for _ in range(4)]
    lrs = torch.tensor([0.1, 0.03, 0.2], dtype=F64)
    lams = torch.tensor([0.0, 0.5, 0.1], dtype=F64)
    return params, grads, lrs, lams


def _torch_run(make, start, grads):
    """One member run alone by a torch optimizer over the given gradients."""
    w = torch.nn.Parameter(start.clone())
    opt = make([w])
    for g in grads:
        w.grad = g.clone()
        opt.step()
    return w.detach()


def _sgdw_by_hand(start, grads, lr, lam, scale, momentum, cautious):
    """SGDW written out: b ← μ·b + g (b = g first), w ← w − s·λ·𝕀(b⊙w ≥ 0)⊙w − lr·b (mask all ones if not cautious)."""
    w, buf = start.clone(), None
    for g in grads:
        buf = g.clone() if buf is None or momentum == 0 else momentum * buf + g
        mask = (buf * w >= 0).to(F64) if cautious else torch.ones_like(w)
        w = w - scale * lam * mask * w - lr * buf
    return w


# per kwargs: the member run alone by an independent oracle (torch's own SGD, or SGDW written out)
SGD_ORACLES = {
    "coupled-nesterov": (dict(decoupled=False, momentum=0.9, nesterov=True),
                         lambda p, gs, lr, lam, s: _torch_run(lambda ps: torch.optim.SGD(
                             ps, lr=lr, momentum=0.9, nesterov=True, weight_decay=lam), p, gs)),
    "decoupled-cautious": (dict(decoupled=True, momentum=0.9, cautious=True),
                           lambda p, gs, lr, lam, s: _sgdw_by_hand(p, gs, lr, lam, s, 0.9, True)),
    "decoupled-plain": (dict(decoupled=True, momentum=0.0),
                        lambda p, gs, lr, lam, s: _sgdw_by_hand(p, gs, lr, lam, s, 0.0, False)),
}


@pytest.mark.parametrize("case", SGD_ORACLES)
def test_functional_sgd_on_stacked_members_equals_each_member_run_by_an_oracle(case):
    kwargs, oracle = SGD_ORACLES[case]
    params, grads, lrs, lams = _members()
    shape = (-1, 1, 1)
    stacked, buf = params.clone(), None
    scales = lrs / 0.2  # a "schedule" decay scale per member
    for g in grads:
        buf = functional.sgd_update_(stacked, g, buf, lr=lrs.view(shape),
                                     weight_decay=lams.view(shape),
                                     decay_scale=scales.view(shape), **kwargs)
    for i in range(3):
        alone = oracle(params[i], [g[i] for g in grads], lrs[i].item(), lams[i].item(), scales[i].item())
        assert torch.allclose(stacked[i], alone, rtol=1e-12, atol=1e-14)
        assert not torch.allclose(stacked[i], params[i], rtol=1e-3)          # the steps moved the member


def _soft_threshold(w, t):
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0)


def _adamw_by_hand(start, grads, lr, lam, *, cautious=False, maximize=False, first_step=1, l1=0.0):
    """AdamW written out (β = 0.9, 0.99, ε = 1e-8): the decay (masked by 𝕀(m⊙w ≥ 0) if cautious) on the weights
    before the step, then the bias-corrected step, then the L1 soft threshold lr·λ₁."""
    w = start.clone()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(grads, start=first_step):
        g = -g if maximize else g
        m, v = 0.9 * m + 0.1 * g, 0.99 * v + 0.01 * g * g
        mask = (m * w >= 0).to(F64) if cautious else torch.ones_like(w)
        w = w - lr * lam * mask * w
        w = w - lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.99 ** t)).sqrt() + 1e-8)
        w = _soft_threshold(w, lr * l1) if l1 else w
    return w


ADAM_ORACLES = {
    "coupled-amsgrad": (dict(decoupled=False, amsgrad=True),
                        lambda p, gs, lr, lam: _torch_run(lambda ps: torch.optim.Adam(
                            ps, lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=lam, amsgrad=True), p, gs)),
    "decoupled-l1": (dict(decoupled=True, l1_decay=0.05),
                     lambda p, gs, lr, lam: _adamw_by_hand(p, gs, lr, lam, l1=0.05)),
    "decoupled-cautious-maximize": (dict(decoupled=True, cautious=True, maximize=True),
                                    lambda p, gs, lr, lam: _adamw_by_hand(p, gs, lr, lam, cautious=True,
                                                                          maximize=True)),
}


@pytest.mark.parametrize("case", ADAM_ORACLES)
def test_functional_adam_on_stacked_members_equals_each_member_run_by_an_oracle(case):
    kwargs, oracle = ADAM_ORACLES[case]
    params, grads, lrs, lams = _members(seed=1)
    shape = (-1, 1, 1)
    stacked = params.clone()
    m, v, vmax = torch.zeros_like(stacked), torch.zeros_like(stacked), torch.zeros_like(stacked)
    for t, g in enumerate(grads, start=1):
        functional.adam_update_(stacked, g, m, v, vmax, t, lr=lrs.view(shape), beta1=0.9, beta2=0.99,
                                eps=1e-8, weight_decay=lams.view(shape), **kwargs)
    for i in range(3):
        alone = oracle(params[i], [g[i] for g in grads], lrs[i].item(), lams[i].item())
        assert torch.allclose(stacked[i], alone, rtol=1e-12, atol=1e-14)
        assert not torch.allclose(stacked[i], params[i], rtol=1e-3)


def test_adam_with_decoupled_flag_is_torch_adamw():
    """torch's Adam(decoupled_weight_decay=True) is AdamW; decaylab's Adam accepts it too."""
    for wa, wb in _paired_steps(lambda p: Adam(p, lr=0.05, weight_decay=0.3,
                                               decoupled_weight_decay=True),
                                lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.3)):
        assert torch.equal(wa, wb)


def test_from_timescale_is_only_for_decoupled_decay():
    with pytest.raises(TypeError, match="use SGDW or AdamW"):
        Adam.from_timescale([torch.nn.Parameter(torch.ones(2))], lr=1e-3, tau_epochs=1,
                            steps_per_epoch=10)


@pytest.mark.parametrize("cls,kwargs", [
    (SGDW, dict(lr=0.1, momentum=0.9, weight_decay=0.5, cautious=True, l1_decay=3.0)),
    (AdamW, dict(lr=0.1, weight_decay=0.5, cautious=True, l1_decay=3.0)),
])
def test_variants_on_complex_params_act_on_real_and_imaginary_parts(cls, kwargs):
    """A complex weight is optimized as the pair of its real and imaginary parts."""
    gen = torch.Generator().manual_seed(4)
    start = torch.randn(6, 2, generator=gen, dtype=F64)
    grads = [torch.randn(6, 2, generator=gen, dtype=F64) for _ in range(4)]
    z = torch.nn.Parameter(torch.view_as_complex(start.clone()))
    pair = torch.nn.Parameter(start.clone())
    opt_z, opt_pair = cls([z], **kwargs), cls([pair], **kwargs)
    for g in grads:
        z.grad, pair.grad = torch.view_as_complex(g.clone()), g.clone()
        opt_z.step()
        opt_pair.step()
    assert torch.allclose(torch.view_as_real(z.detach()), pair.detach(), rtol=1e-14, atol=0)
    assert (pair.detach() == 0).any()  # the prox made exact zeros here too


def test_functional_adam_takes_per_member_step_counts():
    """``step`` may be a tensor broadcastable to param: members at different step counts, each bias-corrected
    with its own count (checked against AdamW written out from that count)."""
    params, grads, lrs, lams = _members(seed=2)
    offsets = torch.tensor([0, 3, 10], dtype=F64).view(-1, 1, 1)  # member g is offsets[g] ahead
    stacked = params.clone()
    m, v = torch.zeros_like(stacked), torch.zeros_like(stacked)
    for t, g in enumerate(grads, start=1):
        functional.adam_update_(stacked, g, m, v, None, offsets + t, lr=lrs.view(-1, 1, 1),
                                beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=lams.view(-1, 1, 1),
                                decoupled=True)
    for i in range(3):
        alone = _adamw_by_hand(params[i], [g[i] for g in grads], lrs[i].item(), lams[i].item(),
                               first_step=int(offsets[i]) + 1)
        assert torch.allclose(stacked[i], alone, rtol=1e-12, atol=1e-14)
    # the count matters: the member 10 steps ahead is not where it would be from step 1
    from_one = _adamw_by_hand(params[2], [g[2] for g in grads], lrs[2].item(), lams[2].item())
    assert not torch.allclose(stacked[2], from_one, rtol=1e-6)
