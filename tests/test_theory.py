"""The regime theory: predicted slopes, the scale-invariance detector, the equilibrium angle."""

import numpy as np
import pytest
import torch
from torch import nn

import decaylab.optim
from decaylab.diagnostics.monitor import DecayMonitor
from decaylab.diagnostics.optimizer_decay import group_decay
from decaylab.maps.theory import detect_regime, predicted_line, predicted_slope, scale_invariant_params


@pytest.mark.parametrize("optimizer, scaling, regime, slope", [
    ("sgd", None, "fixed-point", 0.0), ("adam", None, "fixed-point", 0.0),
    ("sgdw", "schedule", "fixed-point", 1.0), ("adamw", "schedule", "fixed-point", 1.0),
    ("adamw", "lr", "fixed-point", 0.0),
    ("sgd", None, "equilibrium", -1.0), ("adam", None, "equilibrium", None),
    ("sgdw", "schedule", "equilibrium", 0.0), ("adamw", "schedule", "equilibrium", 0.0),
    ("adamw", "lr", "equilibrium", -1.0),
    ("lion", "lr", "fixed-point", 0.0), ("lion", "schedule", "fixed-point", 1.0),
    ("lion", "lr", "equilibrium", -1.0), ("lion", "schedule", "equilibrium", 0.0),
    ("muon", "lr", "fixed-point", 0.0), ("muon", "schedule", "fixed-point", 1.0),
    ("muon", "lr", "equilibrium", -1.0), ("muon", "schedule", "equilibrium", 0.0),
])
def test_predicted_slopes(optimizer, scaling, regime, slope):
    assert predicted_slope(optimizer, scaling, regime) == slope


@pytest.mark.parametrize("optimizer", ["sgdw", "adamw", "lion", "muon"])
def test_schedule_and_lr_scalings_differ_by_one_in_both_regimes(optimizer):
    # λ_lr = λ_schedule / lr_0 is the same run, so the slopes differ by exactly one.
    for regime in ("fixed-point", "equilibrium"):
        assert predicted_slope(optimizer, "schedule", regime) - predicted_slope(optimizer, "lr", regime) == 1.0


@pytest.mark.parametrize("optimizer", ["lion", "muon"])
def test_the_fixed_point_bound_of_lr_scaled_decay_does_not_move_with_lr(optimizer):
    # Fixed-point slope 0 for decay_scaling "lr": the set the runs settle in (Lion: ‖w‖∞ ≤ 1/λ; Muon: ‖W‖₂ ≤
    # ρ·σ_max(O)/λ, with ρ = 1 for a square matrix) is fixed by λ alone. A constant gradient pushes the weights
    # onto its edge, at every lr.
    g = torch.randn(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lam, edges = 2.0, []
    for lr in (1e-2, 3e-2):
        w = torch.nn.Parameter(torch.zeros(8, 8, dtype=torch.float64))
        opt = (decaylab.optim.Lion([w], lr=lr, weight_decay=lam) if optimizer == "lion" else
               decaylab.optim.Muon([w], lr=lr, weight_decay=lam, ns_dtype=torch.float64))
        for _ in range(int(20 / (lr * lam))):                       # 20 decay timescales
            w.grad = g.clone()
            opt.step()
        edges.append(float(w.detach().abs().max() if optimizer == "lion" else torch.linalg.matrix_norm(w.detach(), 2)))
    if optimizer == "lion":
        assert edges == pytest.approx([1 / lam] * 2, rel=1e-6)
    else:   # the Newton–Schulz output's singular values lie near 1: its largest sets the edge
        assert edges[0] == pytest.approx(edges[1], rel=1e-3) and 0.5 / lam < edges[0] < 1.5 / lam


@pytest.mark.parametrize("make, scaling", [
    (lambda ps, lr, lam: torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=lam), None),
    (lambda ps, lr, lam: torch.optim.AdamW(ps, lr=lr, weight_decay=lam), "lr"),
    (lambda ps, lr, lam: decaylab.optim.AdamW(ps, lr=lr, weight_decay=lam, decay_scaling="schedule"), "schedule"),
    (lambda ps, lr, lam: decaylab.optim.SGDW(ps, lr=lr, momentum=0.9, weight_decay=lam, decay_scaling="schedule"),
     "schedule"),
], ids=["sgd", "torch-adamw", "adamw-schedule", "sgdw-schedule"])
def test_the_monitors_equilibrium_angle_is_constant_along_the_predicted_equilibrium_line(make, scaling):
    # The equilibrium slope says along which line λ(lr) = c·lr^slope the rotational equilibrium, and so the
    # best λ, stays put. The equilibrium angle the monitor predicts for a group (from the optimizer alone)
    # must then be the same at every lr on that line, and change off it.
    name = {"SGD": "sgd", "AdamW": "adamw", "SGDW": "sgdw"}
    probe = make([torch.nn.Parameter(torch.ones(2))], 0.1, 1e-3)
    slope = predicted_slope(name[type(probe).__name__], scaling, "equilibrium")

    def angle(lr, lam):
        opt = make([torch.nn.Parameter(torch.ones(2))], lr, lam)
        return group_decay(opt, opt.param_groups[0]).equilibrium_angle

    on_line = [angle(lr, 1e-3 * (lr / 0.1) ** slope) for lr in (1e-3, 1e-2, 1e-1)]
    assert on_line == pytest.approx([on_line[0]] * 3, rel=1e-12) and on_line[0] > 0
    off_line = [angle(lr, 1e-3 * (lr / 0.1) ** (slope + 1)) for lr in (1e-3, 1e-2, 1e-1)]
    assert off_line[0] < 0.5 * off_line[-1]


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="regime"):
        predicted_slope("sgd", None, "steady")
    with pytest.raises(ValueError, match="decay_scaling"):
        predicted_slope("adamw", None, "equilibrium")
    with pytest.raises(TypeError, match="example"):
        scale_invariant_params(nn.Linear(2, 2), [[1.0, 2.0]])


def _example():
    return torch.randn(16, 5, generator=torch.Generator().manual_seed(0))


def test_detector_batchnorm_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    inv = scale_invariant_params(net, _example())
    assert inv["0.weight"] is True
    assert inv["1.weight"] is False and inv["3.weight"] is False and inv["3.bias"] is False
    # BatchNorm's running buffers on the model itself are untouched by the probe
    assert torch.equal(net[1].running_mean, torch.zeros(8))


def test_detector_layernorm_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 32, bias=False), nn.LayerNorm(32, elementwise_affine=False), nn.ReLU(),
                        nn.Linear(32, 32, bias=False), nn.LayerNorm(32, elementwise_affine=False), nn.ReLU(),
                        nn.Linear(32, 3))
    inv = scale_invariant_params(net, _example())
    assert inv == {"0.weight": True, "3.weight": True, "6.weight": False, "6.bias": False}
    regime = detect_regime(net, _example())
    assert regime["regime"] == "equilibrium"
    assert regime["invariant_fraction"] == pytest.approx((5 * 32 + 32 * 32) / (5 * 32 + 32 * 32 + 32 * 3))
    # a Linear with a bias before the LayerNorm: the weight alone is no longer scale-invariant
    biased = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 3))
    assert scale_invariant_params(biased, _example())["0.weight"] is False


def test_detector_plain_mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    assert not any(scale_invariant_params(net, _example()).values())
    assert detect_regime(net, _example())["regime"] == "fixed-point"


def test_predicted_line_passes_through_the_mean_point_with_the_slope():
    lrs = np.array([1e-3, 1e-2, 1e-1])
    best = np.array([1e-1, 1e-2, 5.0])
    line = predicted_line(-1.0, lrs, best, [True, True, False])
    assert np.exp(np.log(line[:2]).mean()) == pytest.approx(np.exp(np.log(best[:2]).mean()))
    assert np.log(line[2] / line[0]) / np.log(lrs[2] / lrs[0]) == pytest.approx(-1.0)
    assert predicted_line(None, lrs, best, [True] * 3) is None


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_equilibrium_angle_of_a_normalized_layer_matches_the_prediction(optimizer):
    # Scale-invariant first layer, mini-batches of digits; after ~5 decay timescales (1/(ηλ) steps) the
    # rotation per step must be within 20 % of DecayMonitor's predicted equilibrium angle.
    from decaylab import data

    ds = data.load("digits", seed=0)
    X, y = ds.train.X, ds.train.y
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32, bias=False), nn.LayerNorm(32, elementwise_affine=False), nn.ReLU(),
                        nn.Linear(32, 10))
    if optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1.0)     # ηλ = 1e-2
    else:
        opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=0.1, momentum=0.9)   # ηλ/(1−μ) = 0.1
    mon = DecayMonitor(net, opt)
    gen = torch.Generator().manual_seed(0)
    for _ in range(500):
        idx = torch.randint(len(X), (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
        opt.step()
    first = next(r for r in mon.summary(last=0.4) if r["param"] == "0.weight")
    assert first["angle_ratio"] == pytest.approx(1.0, abs=0.2)
    assert scale_invariant_params(net, X[:32])["0.weight"]
