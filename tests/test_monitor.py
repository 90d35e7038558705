import math

import numpy as np
import pytest
import torch

import decaylab.optim
from decaylab.diagnostics.monitor import DecayMonitor


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
    assert r["predicted_angle"] == 0.0            # no decay: no rotation at equilibrium
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


def _tiny_regression(steps, opt, model, monitor_hook=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)
    for step in range(1, steps + 1):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
        if monitor_hook is not None:
            monitor_hook(step)


@pytest.mark.slow  # 10,000 optimizer steps
def test_history_stays_bounded_over_10000_steps_and_spans_the_run():
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 2)  # gradients of a quadratic pull towards a random target, set by hand
    target = [torch.randn_like(p) for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    mon = DecayMonitor(model, opt, every=1, max_records=32)
    bytes_at_start = mon._store.nbytes()
    largest = dict.fromkeys(("weight", "bias"), 0.0)
    kept = []
    g = torch.Generator().manual_seed(0)
    for step in range(1, 10_001):
        for p, t in zip(model.parameters(), target):
            p.grad = 2 * (p.detach() - t) + torch.randn(p.shape, generator=g)  # noisy quadratic
        opt.step()
        for name, p in model.named_parameters():
            largest[name] = max(largest[name], float(p.detach().abs().max()))
        if step % 1000 == 0:
            kept.append(len(mon.history))
    assert max(kept) <= 33 * 2  # at most max_records + 1 records per tensor, at every point of the run
    assert mon._store.nbytes() == bytes_at_start  # memory fixed at construction
    steps, _ = mon.series("weight", "angle")
    assert steps[0] == 1 and steps[-1] == 10_000  # the kept series spans the whole run
    assert len(set(np.diff(steps[1:-1]))) == 1  # evenly thinned in between
    for s in mon.summary(last=1.0):  # the aggregates saw every step, not just the kept ones
        assert s["steps"] == 10_000
        assert s["max_abs"] == pytest.approx(largest[s["param"]], rel=1e-6)


def test_thinned_history_keeps_exact_aggregates_and_a_subset_of_the_full_records():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    small = DecayMonitor(model, opt, every=1, max_records=8)
    full = DecayMonitor(model, opt, every=1, max_records=1000)
    _tiny_regression(300, opt, model)
    assert len(full.history) == 300 * 4 and len(small.history) <= 9 * 4
    by_key = {(r["step"], r["param"]): r for r in full.history}
    assert all(by_key[r["step"], r["param"]] == r for r in small.history)
    for a, b in zip(small.summary(last=1.0), full.summary(last=1.0)):
        assert a["steps"] == b["steps"] == 300
        assert a["angle"] == pytest.approx(b["angle"], rel=1e-12, nan_ok=True)
        assert a["max_abs"] == b["max_abs"]
    for a, b in zip(small.summary(last=0.25), full.summary(last=0.25)):
        assert 75 <= a["steps"] <= 75 + 64 and b["steps"] == 75  # whole blocks: at most one block more
    rows = [r for r in full.history if r["param"] == "0.weight" and r["step"] > 300 - small.summary(0.25)[0]["steps"]]
    assert small.summary(0.25)[0]["angle"] == pytest.approx(sum(r["angle"] for r in rows) / len(rows), rel=1e-12)


def test_default_records_the_first_50_steps_then_every_10th():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = DecayMonitor(model, opt)
    _tiny_regression(125, opt, model)
    steps, _ = mon.series("2.bias", "weight_norm")
    assert steps == [*range(1, 51), *range(60, 121, 10)]
    # the summary covers the last fraction of the run, not of the (denser early) records
    assert [s["steps"] for s in mon.summary(last=0.2)] == [3] * 4  # steps 100, 110, 120 (after 0.8·120)
    with pytest.raises(ValueError, match="max_records must be an integer in"):
        DecayMonitor(model, opt, max_records=1)


@pytest.mark.parametrize("rotation, shrink, tolerance", [(1e-2, 0.0, 1e-6), (1e-3, 0.0, 1e-5), (1e-3, 1e-3, 1e-3)])
def test_angle_is_accurate_for_small_rotations(rotation, shrink, tolerance):
    g = torch.Generator().manual_seed(0)
    b = torch.randn(10_000, dtype=torch.float64, generator=g)
    t = torch.randn(10_000, dtype=torch.float64, generator=g)
    t -= (t @ b) / (b @ b) * b
    a = ((b + t * (rotation * b.norm() / t.norm())) * (1 - shrink)).float()
    w = torch.nn.Parameter(b.float())
    model = torch.nn.Module()
    model.w = w
    mon = DecayMonitor(model, torch.optim.SGD([w], lr=0.1), attach=False, every=1)
    w.grad = torch.zeros_like(w)
    with torch.no_grad():
        w.copy_(a)
    mon.step()
    before, after = b.float().double(), a.double()  # the exact angle between the two float32 vectors
    u, v = before / before.norm(), after / after.norm()
    exact = 2 * math.atan2(float((u - v).norm()), float((u + v).norm()))
    assert mon.history[0]["angle"] == pytest.approx(exact, rel=tolerance)


def test_plot_of_a_100_tensor_model_draws_the_top_tensors_and_one_band_for_the_rest():
    from matplotlib.collections import PolyCollection

    torch.manual_seed(0)
    widths = [4 + k for k in range(51)]  # 50 Linear layers of growing size: 100 tensors
    model = torch.nn.Sequential(*(torch.nn.Linear(a, b) for a, b in zip(widths, widths[1:])))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    mon = DecayMonitor(model, opt)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        opt.step()
    assert len(mon.params) == 100
    fig = mon.plot()
    largest = [f"{k}.weight" for k in range(42, 50)]  # the 8 largest tensors, in optimizer order
    for ax in fig.axes:
        assert len(ax.lines) <= 2 * 8 + 1
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # the band of the other 92
        assert ax.lines[-1].get_color() == "0.45"  # their median
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == [*largest, "other 92 tensors (min–max, median)"]
    band = fig.axes[1].collections[0].get_paths()[0].vertices[:, 1]  # weight_norm panel
    rest_norms = [v for name in mon.params if name not in largest for v in mon.series(name, "weight_norm")[1]]
    assert band.max() == pytest.approx(max(rest_norms)) and band.min() == pytest.approx(min(rest_norms))
    assert len(mon.plot(params=mon.params[:5], top=None).axes[0].lines) == 5 * 2  # few tensors: all lines
    with pytest.raises(ValueError, match="top must be an integer in"):
        mon.plot(top=0)


def test_log_writes_per_tensor_scalars_that_tensorboard_reads_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    mon = DecayMonitor(model, opt)
    writer = SummaryWriter(log_dir=str(tmp_path))
    _tiny_regression(3, opt, model)
    first = mon.log(writer)
    _tiny_regression(2, opt, model)
    second = mon.log(writer, step=50)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == set(first) == set(second)
    assert {"decay_angle/0.weight", "decay_weight_norm/2.bias", "decay_predicted_angle/0.weight"} <= tags
    assert "decay_angle/2.bias" not in tags  # a one-element tensor has no angle
    norm = [e for e in events.Scalars("decay_weight_norm/0.weight")]
    assert [e.step for e in norm] == [3, 50]
    assert norm[1].value == pytest.approx(float(model[0].weight.detach().norm()), rel=1e-6)
    assert norm[0].value == pytest.approx(first["decay_weight_norm/0.weight"], rel=1e-6)
    angle = events.Scalars("decay_angle/0.weight")[1].value
    assert angle == pytest.approx(mon.series("0.weight", "angle")[1][-1], rel=1e-6) and angle > 0

    class Collect:  # anything with add_scalar(tag, value, step)
        def __init__(self):
            self.rows = []

        def add_scalar(self, tag, value, step):
            self.rows.append((tag, value, step))

    sink = Collect()
    mon.log(sink, metrics=("update_ratio",))
    assert sorted(tag for tag, _, _ in sink.rows) == sorted(f"decay_update_ratio/{n}" for n in mon.params)
    assert {step for _, _, step in sink.rows} == {5}
    with pytest.raises(TypeError, match="writer must have an add_scalar"):
        mon.log(object())


def test_a_group_added_during_training_is_monitored_from_the_next_step():
    """The head, frozen at first, joins the optimizer with add_param_group after step 3: the attached monitors watch
    it from step 4 with its own group's settings (a monitor built after the addition records the same numbers), the
    manual one from step 5; the first layer's records continue; include filters the newcomers; a thinned history
    keeps exact counts for them; a group taken out again is no longer measured."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model[2].requires_grad_(False)
    opt = torch.optim.AdamW(model[0].parameters(), lr=0.05, weight_decay=0.1)
    hooked, manual = DecayMonitor(model, opt, every=1), DecayMonitor(model, opt, every=1, attach=False)
    weights_only = DecayMonitor(model, opt, every=1, include="*.weight")
    thinned = DecayMonitor(model, opt, max_records=4)
    X, y = torch.randn(32, 4), torch.randn(32, 1)
    built_after = None
    for step in range(1, 21):
        if step == 4:
            model[2].requires_grad_(True)
            opt.add_param_group({"params": list(model[2].parameters()), "lr": 0.01, "weight_decay": 0.5})
            built_after = DecayMonitor(model, opt, every=1)
        if step == 16:
            sizes_before_pop = hooked.group_sizes
            opt.param_groups.pop()
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
        manual.step()
    assert sizes_before_pop == (2, 2) and hooked.group_sizes == built_after.group_sizes == (2,)
    assert hooked.series("2.weight", "lr") == (list(range(4, 16)), [0.01] * 12)
    assert hooked.series("2.bias", "weight_decay") == (list(range(4, 16)), [0.5] * 12)
    assert hooked.series("0.weight", "weight_decay") == (list(range(1, 21)), [0.1] * 20)
    # built_after counts its steps from its own start (our step 4 is its step 1)
    assert [{**r, "step": r["step"] - 3} for r in hooked.history if 4 <= r["step"] < 16] == [
        r for r in built_after.history if r["step"] < 13]
    assert manual.series("2.weight", "weight_norm")[0] == list(range(5, 16))
    assert manual.series("2.weight", "weight_norm")[1] == hooked.series("2.weight", "weight_norm")[1][1:]
    assert weights_only.params == ["0.weight", "2.weight"]
    assert {s["param"]: s["steps"] for s in thinned.summary(last=1.0)} == {"0.weight": 20, "0.bias": 20,
                                                                             "2.weight": 12, "2.bias": 12}
    assert "2.weight" in str(hooked) and hooked.latest()["2.weight"]["step"] == 15
