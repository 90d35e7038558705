import pytest
import torch

from decaylab.groups import param_groups
from decaylab.penalty import l1_penalty, l2_penalty


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


def test_l2_value_and_gradient_is_2_lambda_w():
    model = _mlp()
    lam = 0.3
    weights = [model[0].weight, model[2].weight]             # a module: param_groups' rule, biases are spared
    expected = lam * sum((p.detach() ** 2).sum() for p in weights)
    pen = l2_penalty(model, lam)
    assert torch.allclose(pen, expected)
    pen.backward()
    for p in weights:
        assert torch.allclose(p.grad, 2 * lam * p.detach())
    assert model[0].bias.grad is None and model[2].bias.grad is None
    everything = l2_penalty(model.parameters(), lam)         # all tensors when given them explicitly
    assert torch.allclose(everything, lam * sum((p.detach() ** 2).sum() for p in model.parameters()))


def test_module_penalty_spares_what_param_groups_spares():
    model = torch.nn.Sequential(torch.nn.Embedding(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    pen = l2_penalty(model, 1.0)
    assert pen.item() == pytest.approx((model[2].weight.detach() ** 2).sum().item())
    decayed = param_groups(model, 0.1)[0]["params"]
    assert len(decayed) == 1 and decayed[0] is model[2].weight


def test_l1_value_and_subgradient():
    w = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    pen = l1_penalty([w], 0.5)
    assert pen.item() == pytest.approx(2.5)
    pen.backward()
    assert w.grad.tolist() == [-0.5, 0.0, 0.5]


@pytest.mark.parametrize("make_opt", [
    lambda ps, wd: torch.optim.SGD(ps, lr=0.05, weight_decay=wd),
    lambda ps, wd: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=wd),
    lambda ps, wd: torch.optim.Adam(ps, lr=0.01, weight_decay=wd),
])
def test_penalty_equals_coupled_weight_decay_2_lambda(make_opt):
    lam = 0.05
    torch.manual_seed(1)
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    a, b = _mlp(), _mlp()
    opt_a, opt_b = make_opt(a.parameters(), 0.0), make_opt(param_groups(b, 2 * lam), 2 * lam)
    for _ in range(20):
        for model, opt, pen in ((a, opt_a, lambda m: l2_penalty(m, lam)), (b, opt_b, lambda m: 0.0)):
            opt.zero_grad()
            (torch.nn.functional.mse_loss(model(x), y) + pen(model)).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=1e-10, atol=1e-12)
    # and the penalty did act: the decayed model differs from an undecayed one
    c = _mlp()
    opt_c = make_opt(c.parameters(), 0.0)
    for _ in range(20):
        opt_c.zero_grad()
        torch.nn.functional.mse_loss(c(x), y).backward()
        opt_c.step()
    assert not torch.allclose(next(a.parameters()), next(c.parameters()), rtol=1e-6)


def test_shared_tensor_counted_once():
    lin = torch.nn.Linear(3, 3, bias=False)
    model = torch.nn.Sequential(lin, lin)
    assert l2_penalty(model, 1.0).item() == pytest.approx((lin.weight.detach() ** 2).sum().item())


@pytest.mark.parametrize("lam,exc", [(-1.0, ValueError), (float("nan"), ValueError), ("0.1", TypeError)])
def test_bad_lambda(lam, exc):
    with pytest.raises(exc, match="lam"):
        l2_penalty(torch.ones(2), lam)


def test_bad_params():
    with pytest.raises(TypeError, match="params must contain only tensors"):
        l1_penalty([torch.ones(2), 3.0], 0.1)
    with pytest.raises(TypeError, match="params must be"):
        l2_penalty(3.0, 0.1)
    with pytest.raises(ValueError, match="params must contain at least one tensor"):
        l2_penalty([], 0.1)
