import math

import pytest
import torch

import decaylab.optim
from decaylab.monitor import DecayMonitor


def _scale_invariant_mlp():
    """Two bias-free Linear layers each followed by LayerNorm without affine parameters: their
    weights are scale-invariant, the setting of the rotational-equilibrium prediction."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(16, 32, bias=False), nn.LayerNorm(32, elementwise_affine=False), nn.ReLU(),
                         nn.Linear(32, 32, bias=False), nn.LayerNorm(32, elementwise_affine=False), nn.ReLU(),
                         nn.Linear(32, 2))


def _train(model, opt, X, y, steps, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1.0),           # angle √(2·lr·λ·(1−β₁)/(1+β₁))
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),  # angle √(2·lr·λ/(1+μ))
    lambda ps: decaylab.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2, decay_scaling="schedule"),  # = the first
    lambda ps: decaylab.optim.SGDW(ps, lr=0.05, momentum=0.9, weight_decay=0.2),  # √(2·lr·λ·(1−μ)/(1+μ))
], ids=["torch-adamw", "sgd-momentum", "decaylab-adamw-schedule", "decaylab-sgdw"])
def test_scale_invariant_weights_reach_predicted_equilibrium_angle(make_opt):
    torch.manual_seed(0)
    X, y = torch.randn(512, 16), torch.randint(0, 2, (512,))  # random labels: noise-dominated gradients
    model = _scale_invariant_mlp()
    with torch.no_grad():  # start away from equilibrium: 4x the norm, so a quarter of the angle
        model[0].weight.mul_(4.0)
        model[3].weight.mul_(4.0)
    opt = make_opt(model.parameters())
    mon = DecayMonitor(model, opt, include=["0.weight", "3.weight"])
    _train(model, opt, X, y, steps=600)  # 6 timescales 1/(lr·λ_eff) = 100 steps
    summary = mon.summary(last=1 / 3)
    assert [s["param"] for s in summary] == ["0.weight", "3.weight"]
    for s in summary:
        assert s["predicted_angle"] > 0
        assert 0.8 < s["angle_ratio"] < 1.2, s
    # the equilibrium was reached, not started from: early angles are far below the prediction
    _, angles = mon.series("0.weight", "angle")
    assert sum(angles[10:30]) / 20 < 0.5 * summary[0]["predicted_angle"]


def test_adamw_keeps_max_abs_weight_within_about_one_over_lambda():
    torch.manual_seed(0)
    X = torch.randn(256, 8)
    y = (X @ torch.randn(8) > 0).long()  # separable: without decay the weights would keep growing
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    with torch.no_grad():  # start far outside the bound: every |w| = 5/λ
        for p in model.parameters():
            p.copy_(torch.sign(torch.randn_like(p)) * 5.0)
    lam = 1.0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=lam)
    mon = DecayMonitor(model, opt, every=10)
    _train(model, opt, X, y, steps=800, batch=32)
    final = {s["param"]: s for s in mon.summary(last=0.25)}
    assert all(s["max_abs_bound"] == pytest.approx(1 / lam) for s in final.values())
    assert max(s["max_abs"] for s in final.values()) < 1.5 / lam
    assert final["0.weight"]["max_abs"] > 0.5 / lam  # the weights press against the bound, not just decay to 0
    assert mon.history[0]["max_abs"] > 4.5 / lam


def test_records_hand_checked_and_manual_mode_matches_hooks():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    model = torch.nn.Module()
    model.w = w
    opt = torch.optim.SGD([w], lr=1.0)
    mon = DecayMonitor(model, opt)
    w.grad = torch.tensor([1.0, 0.0])
    opt.step()  # w: (3, 4) -> (2, 4)
    (r,) = mon.history
    assert r["step"] == 1 and r["param"] == "w"
    assert r["weight_norm"] == pytest.approx(math.sqrt(20)) and r["grad_norm"] == pytest.approx(1.0)
    assert r["update_ratio"] == pytest.approx(1 / 5) and r["max_abs"] == 4.0
    assert r["angle"] == pytest.approx(math.acos(22 / (5 * math.sqrt(20))), rel=1e-5)
    assert r["predicted_angle"] is None or r["predicted_angle"] == 0.0
    assert r["max_abs_bound"] is None
    mon.detach()
    opt.step()
    assert len(mon.history) == 1

    def run(attach, every):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
        mon = DecayMonitor(model, opt, attach=attach, every=every)
        X, y = torch.randn(16, 4), torch.randn(16, 1)
        for _ in range(6):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(X), y).backward()
            opt.step()
            mon.step()
        return mon.history

    hooked, manual = run(True, 2), run(False, 2)
    assert [r["step"] for r in hooked if r["param"] == "0.weight"] == [2, 4, 6]
    assert hooked == manual


def test_as_fit_callback_and_plot():
    from decaylab.train import fit

    torch.manual_seed(0)
    X, y = torch.randn(64, 16), torch.randint(0, 2, (64,))
    model = _scale_invariant_mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.5)
    mon = DecayMonitor(every=2)
    fit(model, opt, (X, y), epochs=2, batch_size=16, callbacks=[mon])
    assert sorted({r["step"] for r in mon.history}) == [2, 4, 6, 8]
    assert mon.params[0] == "0.weight"
    opt.step()  # after training the hooks are gone
    assert max(r["step"] for r in mon.history) == 8
    fig = mon.plot(metrics=("angle", "max_abs"), params=["0.weight", "6.weight"])
    angle_ax, max_ax = fig.axes
    assert len(angle_ax.lines) == 4  # measured + dashed prediction per parameter
    assert angle_ax.lines[1].get_linestyle() == "--"
    assert angle_ax.lines[1].get_ydata()[0] == pytest.approx(math.sqrt(2 * 1e-2 * 0.5 * 0.1 / 1.9))


def test_bad_input():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="every must be an integer in"):
        DecayMonitor(model, opt, every=0)
    with pytest.raises(TypeError, match="model and optimizer must be given together"):
        DecayMonitor(model)
    with pytest.raises(ValueError, match="include must match at least one parameter"):
        DecayMonitor(model, opt, include=["nothing*"])
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        DecayMonitor(model, "sgd")
    mon = DecayMonitor(model, opt)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    with pytest.raises(ValueError, match="metrics must be one of"):
        mon.plot(metrics=("angel",))
    with pytest.raises(ValueError, match="params must be among weight, bias, got 'x'"):
        mon.plot(params=["x"])
    with pytest.raises(ValueError, match="param must be one of weight, bias, got 'w'"):
        mon.series("w", "angle")


def test_sparse_gradients_and_parameters_outside_the_model():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    extra = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([*emb.parameters(), extra], lr=0.5)
    mon = DecayMonitor(emb, opt)
    emb(torch.tensor([1, 2])).sum().backward()
    extra.grad = torch.ones(2)
    opt.step()
    rows = {r["param"]: r for r in mon.history}
    assert set(rows) == {"weight", "group0.param1"}
    assert rows["weight"]["grad_norm"] == pytest.approx(math.sqrt(8))  # two rows of ones(4)
    assert rows["group0.param1"]["update_ratio"] == pytest.approx(0.5)


def test_meta_device_model_is_refused_at_construction():
    import pytest
    import torch

    from decaylab import DecayMonitor

    with torch.device("meta"):
        model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="meta"):
        DecayMonitor(model, opt)


def test_scalar_gain_has_no_angle_and_no_prediction():
    import math

    import torch

    from decaylab import DecayMonitor
    from decaylab.optim import AdamW

    class Gained(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)
            self.gain = torch.nn.Parameter(torch.tensor(1.5))

        def forward(self, x):
            return self.gain * self.linear(x)

    torch.manual_seed(0)
    model = Gained()
    opt = AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    monitor = DecayMonitor(model, opt)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        opt.step()
    gain = [r for r in monitor.history if r["param"] == "gain"]
    weight = [r for r in monitor.history if r["param"] == "linear.weight"]
    assert len(gain) == 3 and all(math.isnan(r["angle"]) and r["predicted_angle"] is None for r in gain)
    assert all(r["angle"] > 0 and r["predicted_angle"] > 0 for r in weight)


def test_print_monitor_is_a_per_layer_table():
    import torch

    from decaylab import DecayMonitor
    from decaylab.optim import AdamW

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    monitor = DecayMonitor(model, opt)
    assert "nothing recorded yet (4 tensors watched)" in str(monitor)
    for _ in range(8):
        opt.zero_grad()
        model(torch.randn(16, 4)).square().mean().backward()
        opt.step()
    lines = str(monitor).splitlines()
    assert lines[0].startswith("DecayMonitor: 4 tensors, step 8")
    assert lines[1].split()[:5] == ["param", "‖w‖", "Δw/w", "angle", "predicted"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    norm = float(torch.linalg.vector_norm(model[0].weight.detach()))
    assert float(rows["0.weight"][1]) == float(f"{norm:.3g}")
