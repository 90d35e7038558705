"""The bounds and predictions of decaylab.diagnostics.bounds, measured: Lion's ‖w‖∞ ≤ 1/λ, Muon's spectral-norm
ball, Muon's equilibrium angle and norm on a scale-invariant matrix, and the monitor's flags on them."""

import math

import numpy as np
import pytest
import torch

import decaylab.optim
from decaylab.diagnostics import bounds
from decaylab.diagnostics.monitor import DecayMonitor
from decaylab.diagnostics.monitor_views import flags
from decaylab.diagnostics.tensor_measures import spectral_norms
from decaylab.optim.muon import zeropower_via_newtonschulz

nn = torch.nn
KELLER = (3.4445, -4.7750, 2.0315)


def _rows(monitor):
    """``{param: flags text}`` from the monitor's printed table."""
    lines = str(monitor).splitlines()
    start = lines[1].index("flags")
    return {line.split()[0]: line[start:].strip() if len(line) > start else "" for line in lines[2:]}


# --- the Newton–Schulz output's range, and K ---------------------------------------------------------------
def test_ns_output_sup_bounds_the_measured_largest_singular_value():
    assert bounds.ns_output_sup(KELLER, 0) == 1.0                            # O = U/‖U‖_F
    assert bounds.ns_output_sup((1.875, -1.25, 0.375), 5) == pytest.approx(1.0, abs=1e-9)  # monotone to 1
    s_max = bounds.ns_output_sup(KELLER, 5)
    assert s_max == pytest.approx(1.2024, abs=1e-4)
    torch.manual_seed(0)
    largest = []
    for shape in [(16, 32), (32, 16), (64, 64), (128, 128)]:
        rms = []
        for _ in range(8):
            sv = torch.linalg.svdvals(zeropower_via_newtonschulz(torch.randn(*shape), KELLER, 5, 1e-7).float())
            largest.append(float(sv.max()))
            rms.append(float(sv.square().mean().sqrt()))
        assert np.mean(rms) == pytest.approx(bounds.ns_output_rms(*shape), abs=0.01)   # measured: within 0.005
    assert max(largest) <= s_max * (1 + bounds.ABOVE_RTOL)      # bfloat16 rounding stays inside the tolerance
    assert max(largest) > 0.93 * s_max                          # and the bound is nearly reached


def test_momentum_correlation_is_the_arcsine_law_on_the_buffers_own_correlation():
    def from_weights(w):
        w = np.asarray(w)
        rho = np.array([(w[:-k] * w[k:]).sum() for k in range(1, 2000)]) / (w * w).sum()
        return 1 + 4 / math.pi * np.arcsin(rho).sum()

    lags = np.arange(4000)
    for mu in (0.5, 0.9, 0.95):
        plain = (1 - mu) * mu ** lags
        nesterov = np.where(lags == 0, 1 - mu * mu, (1 - mu) * mu ** (lags + 1.0))
        assert nesterov.sum() == pytest.approx(1.0) and plain.sum() == pytest.approx(1.0)
        assert bounds.momentum_correlation(mu, False) == pytest.approx(from_weights(plain), rel=1e-9)
        assert bounds.momentum_correlation(mu, True) == pytest.approx(from_weights(nesterov), rel=1e-9)
    assert bounds.momentum_correlation(0.0, True) == 1.0 and bounds.momentum_correlation(1.0, False) == math.inf


# --- Lion: ‖w‖∞ ≤ 1/λ ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam, decay_scaling", [(0.1, "lr"), (1.0, "lr"), (3.0, "lr"), (0.05, "schedule")])
def test_lion_keeps_every_weight_inside_its_linf_bound_and_reaches_it(lam, decay_scaling):
    """Started outside (every |w| = 2B), d = s_t·λ = 0.05 per step: after 300 steps the excess is
    (1 − d)^300·B = 2e-7·B; the tolerance 1e-5 relative is that plus float32 rounding (a few ulps)."""
    torch.manual_seed(0)
    X = torch.randn(128, 8)
    lr = 0.05 / lam if decay_scaling == "lr" else 0.02               # "schedule": s_t = 1, d = λ = 0.05
    bound = 1 / lam if decay_scaling == "lr" else lr / lam            # "schedule": lr_0/λ
    target = torch.randn(4, 8) * 2 * bound                           # about a third of it beyond the bound
    model = nn.Linear(8, 4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.sign(torch.randn_like(p)) * 2 * bound)
    opt = decaylab.optim.Lion(model.parameters(), lr=lr, weight_decay=lam, decay_scaling=decay_scaling)
    group_bound = bounds.group_bounds(opt, opt.param_groups[0]).max_abs_bound
    assert group_bound == pytest.approx(bound, rel=1e-12)
    for _ in range(300):
        opt.zero_grad()
        (model(X) - X @ target.T).square().mean().backward()
        opt.step()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).abs()
    assert float(weights.max()) <= bound * (1 + 1e-5)
    assert int((weights >= bound * (1 - 1e-5)).sum()) >= 3             # the ball is attained, not just respected


# --- Muon: ‖W‖₂ ≤ (lr_t/s_t)·ρ·s_max/λ -----------------------------------------------------------------------
def _make_muon(kind, params, lam):
    lr = 0.05
    if kind == "torch":
        return torch.optim.Muon(params, lr=lr, weight_decay=lam)
    if kind == "muon-adamw":
        return decaylab.optim.MuonAdamW([dict(params=params, use_muon=True)], muon=dict(lr=lr, weight_decay=lam))
    options = {"original": {}, "match_rms_adamw": dict(adjust_lr_fn="match_rms_adamw"),
               "update_rms": dict(update_rms=0.3), "schedule": dict(decay_scaling="schedule")}[kind]
    if kind == "schedule":
        lam = lr * lam                                               # the same d = s_t·λ as the others
    return decaylab.optim.Muon(params, lr=lr, weight_decay=lam, **options)


def _expected_ratio(kind, shape):
    rows, cols = shape
    if kind == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if kind == "update_rms":
        return 0.3 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))                            # None/"original" (torch's default)


@pytest.mark.parametrize("kind", ["original", "match_rms_adamw", "update_rms", "schedule", "torch", "muon-adamw"])
def test_muon_keeps_each_matrix_inside_its_spectral_bound_and_saturates_it(kind):
    """Two matrices (16×32, 32×16) regressed onto targets of spectral norm 20, started at 3× their bound,
    λ = 1 (d = 0.05): after 200 steps ‖W‖₂ ≤ bound·(1 + ABOVE_RTOL) (bfloat16 NS; the start's excess is
    (1 − d)^200·2 = 7e-5 of the bound), and ≥ 0.85 of it: the consistent gradient drives the top
    singular value to the NS output's ≈ 1.13 of s_max = 1.2024."""
    torch.manual_seed(0)
    lam = 1.0
    layers = nn.ModuleDict({"a": nn.Linear(32, 16, bias=False), "b": nn.Linear(16, 32, bias=False)})
    targets = {}
    for name, layer in layers.items():
        t = torch.randn_like(layer.weight)
        targets[name] = t * 20 / torch.linalg.matrix_norm(t, ord=2)
    opt = _make_muon(kind, [layers["a"].weight, layers["b"].weight], lam)
    expected = {name: _expected_ratio(kind, layer.weight.shape) * bounds.ns_output_sup(KELLER, 5) / lam
                for name, layer in layers.items()}
    with torch.no_grad():
        for name, layer in layers.items():
            layer.weight.mul_(3 * expected[name] / torch.linalg.matrix_norm(layer.weight, ord=2))
    mon = DecayMonitor(layers, opt)
    for _ in range(200):
        opt.zero_grad()
        loss = 0
        for name, layer in layers.items():
            X = torch.randn(64, layer.in_features)
            loss = loss + (layer(X) - X @ targets[name].T).square().mean()
        loss.backward()
        opt.step()
    latest = mon.latest()
    for name, layer in layers.items():
        record = latest[f"{name}.weight"]
        assert record["spectral_bound"] == pytest.approx(expected[name], rel=1e-12)
        measured = float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2))
        assert 0.85 * expected[name] <= measured <= expected[name] * (1 + bounds.ABOVE_RTOL)
        assert 0.97 * measured <= record["spectral_norm"] <= measured * (1 + 1e-5)  # power iteration: from below
        assert mon.history[0]["spectral_norm"] > 2 * expected[name]                 # it did start outside
    assert all(row.endswith("at spectral bound") for row in _rows(mon).values())


# --- Muon: the equilibrium of a scale-invariant matrix -------------------------------------------------------
@pytest.mark.parametrize("make_opt", [
    lambda ps: decaylab.optim.Muon(ps, lr=0.05, weight_decay=0.2),                                     # Nesterov 0.95
    lambda ps: torch.optim.Muon(ps, lr=0.05, weight_decay=0.2, momentum=0.9, nesterov=False),
    lambda ps: decaylab.optim.MuonAdamW([dict(params=ps, use_muon=True)],
                                        muon=dict(lr=0.05, weight_decay=0.2, adjust_lr_fn="match_rms_adamw")),
], ids=["decaylab-muon", "torch-muon-heavy-ball", "muon-adamw-match-rms"])
def test_scale_invariant_muon_matrix_reaches_the_predicted_angle_and_norm(make_opt):
    """A bias-free Linear before a LayerNorm without affine (scale-invariant), a fixed readout to 32
    random classes (noise-dominated gradients), batch 16, d = lr·λ = 0.01; started at 3× the predicted
    norm. Over the last third of 450 steps, angle and ‖W‖ within 20 % of the prediction."""
    torch.manual_seed(0)
    X, y = torch.randn(512, 32), torch.randint(0, 32, (512,))
    model = nn.Sequential(nn.Linear(32, 32, bias=False), nn.LayerNorm(32, elementwise_affine=False), nn.Linear(32, 32))
    model[2].requires_grad_(False)
    opt = make_opt([model[0].weight])
    mon = DecayMonitor(model, opt)
    g = torch.Generator().manual_seed(0)
    for step in range(450):
        idx = torch.randint(0, 512, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
        if step == 0:
            with torch.no_grad():
                model[0].weight.mul_(3 * mon.latest()["0.weight"]["predicted_norm"] / model[0].weight.norm())
    (s,) = mon.summary(last=1 / 3)
    assert 0.8 < s["angle_ratio"] < 1.2, s
    assert 0.8 < s["weight_norm"] / s["predicted_norm"] < 1.2, s
    _, angles = mon.series("0.weight", "angle")
    assert sum(angles[10:30]) / 20 < 0.5 * s["predicted_angle"]   # reached from far away, not started at


# --- the monitor's flags --------------------------------------------------------------------------------------
def _regress(model, opt, X, target, steps):
    for _ in range(steps):
        opt.zero_grad()
        sum((m(X) - X @ target.T).square().mean() for m in model.values()).backward()
        opt.step()


def test_monitor_flags_layers_above_and_at_their_bounds():
    torch.manual_seed(0)
    lam = 1.0
    model = nn.ModuleDict({"outside": nn.Linear(8, 4), "saturated": nn.Linear(8, 4), "inside": nn.Linear(8, 4)})
    with torch.no_grad():
        model["outside"].weight.fill_(3.0)   # 3/λ: 6 steps of d = 0.05 leave it near 2.3/λ
        model["inside"].weight.mul_(0.01)
    opt = decaylab.optim.Lion([dict(params=list(model[name].parameters()), lr=lr) for name, lr in
                               (("outside", 0.05), ("saturated", 0.05), ("inside", 1e-4))], weight_decay=lam)
    X, target = torch.randn(64, 8), torch.randn(4, 8) * 10               # far beyond 1/λ: pushes to the bound
    early = DecayMonitor(model, opt, every=1)
    _regress(model, opt, X, target, 6)
    early.detach()
    assert _rows(early)["outside.weight"] == "above 1/λ bound"
    _regress(model, opt, X, target, 100)
    late = DecayMonitor(model, opt, every=1)
    _regress(model, opt, X, target, 20)
    rows = _rows(late)
    assert rows["saturated.weight"] == "at 1/λ bound" and rows["outside.weight"] == "at 1/λ bound"
    assert rows["inside.weight"] == "" and rows["inside.bias"] == ""
    assert "bound₂" not in str(late).splitlines()[1]                     # no Muon matrix: no spectral columns

    matrix = nn.Linear(16, 16, bias=False)
    with torch.no_grad():  # 5× its spectral bound ρ·s_max/λ (ρ = 1): 6 steps of d = 0.01 leave it far above
        matrix.weight.mul_(5 * bounds.ns_output_sup() / lam / torch.linalg.matrix_norm(matrix.weight, ord=2))
    muon = decaylab.optim.Muon(matrix.parameters(), lr=0.01, weight_decay=lam)
    monitor = DecayMonitor(nn.Sequential(matrix), muon, every=1)
    for _ in range(6):
        muon.zero_grad()
        matrix(torch.randn(8, 16)).square().mean().backward()
        muon.step()
    assert _rows(monitor)["0.weight"].endswith("above spectral bound")
    assert str(monitor).splitlines()[1].split()[7:10] == ["‖w‖₂", "bound₂", "‖w‖"]


def test_bound_status_and_flags_rules():
    assert bounds.bound_status(1.02, 1.0) == "above" and bounds.bound_status(1.005, 1.0) == "at"
    assert bounds.bound_status(0.91, 1.0) == "at" and bounds.bound_status(0.89, 1.0) is None
    assert bounds.bound_status(None, 1.0) is None and bounds.bound_status(1.0, None) is None
    assert bounds.bound_status(math.nan, 1.0) is None
    row = dict(angle_ratio=3.0, max_abs=2.0, max_abs_bound=1.0, spectral_norm=1.0, spectral_bound=1.05)
    assert flags(row, {"weight_norm": 1.0}) == ["angle ×3 of equilibrium", "above 1/λ bound", "at spectral bound"]


# --- reading the optimizer -------------------------------------------------------------------------------------
def test_optimizer_kind_and_the_predictions_of_each_kind():
    w, v = nn.Parameter(torch.randn(8, 4)), nn.Parameter(torch.randn(4))
    muon_adamw = decaylab.optim.MuonAdamW([dict(params=[w], use_muon=True), dict(params=[v], use_muon=False)])
    assert [bounds.optimizer_kind(muon_adamw, g) for g in muon_adamw.param_groups] == ["muon", None]
    for opt, kind in ((decaylab.optim.Muon([w]), "muon"), (torch.optim.Muon([w]), "muon"),
                      (decaylab.optim.Lion([w, v]), "lion"), (torch.optim.AdamW([w]), None)):
        assert bounds.optimizer_kind(opt, opt.param_groups[0]) == kind

    muon = decaylab.optim.Muon([w], lr=0.02, weight_decay=0.1)              # torch's defaults otherwise
    (angle, max_abs, norm, spectral), = bounds.tensor_predictions(muon, muon.param_groups[0], [(8, 4)])
    k = bounds.momentum_correlation(0.95, True)
    assert angle == pytest.approx(math.sqrt(2 * 0.02 * 0.1 / k)) and math.isnan(max_abs)
    assert spectral == pytest.approx(math.sqrt(2) * bounds.ns_output_sup() / 0.1)       # ρ = √(8/4)
    assert norm == pytest.approx(0.02 * math.sqrt(2) * bounds.ns_output_rms(8, 4) * math.sqrt(4 * k / (2 * 0.002)))
    for options in (dict(cautious=True), dict(l1_decay=1e-3)):
        other = decaylab.optim.Muon([w], lr=0.02, weight_decay=0.1, **options)
        assert np.isnan(bounds.tensor_predictions(other, other.param_groups[0], [(8, 4)])).all()

    lion = decaylab.optim.Lion([v], lr=1e-3, weight_decay=2.0, l1_decay=0.5)
    (angle, max_abs, norm, spectral), = bounds.tensor_predictions(lion, lion.param_groups[0], [(4,)])
    assert max_abs == pytest.approx((1 - 0.5) / 2.0) and math.isnan(angle) and math.isnan(norm + spectral)
    cautious = decaylab.optim.Lion([v], lr=1e-3, weight_decay=2.0, cautious=True)
    assert bounds.group_bounds(cautious, cautious.param_groups[0]).max_abs_bound is None

    adamw = torch.optim.AdamW([w], lr=1e-3, weight_decay=0.5)                # the GroupDecay reading, unchanged
    (angle, max_abs, norm, spectral), = bounds.tensor_predictions(adamw, adamw.param_groups[0], [(8, 4)])
    assert angle == pytest.approx(math.sqrt(2 * 1e-3 * 0.5 * 0.1 / 1.9)) and max_abs == pytest.approx(2.0)
    assert math.isnan(norm) and math.isnan(spectral)


def test_spectral_norms_from_below_with_persistent_vectors():
    torch.manual_seed(0)
    matrices = [torch.randn(16, 8), torch.randn(4, 2, 3), torch.zeros(5, 5, dtype=torch.float64)]
    estimates, vectors = spectral_norms(matrices, [None] * 3, iterations=30)
    exact = [float(torch.linalg.matrix_norm(m.reshape(len(m), -1), ord=2)) for m in matrices]
    assert [v.dtype for v in vectors] == [torch.float32, torch.float32, torch.float64]
    assert spectral_norms(matrices[:1], [None], 1)[0].dtype == torch.float32
    assert estimates[:2].tolist() == pytest.approx(exact[:2], rel=1e-4) and float(estimates[2]) == 0.0
    assert all(e <= x * (1 + 1e-6) for e, x in zip(estimates.tolist(), exact))
    assert float(vectors[2].norm()) == pytest.approx(1.0)                 # a zero matrix keeps its start vector
    again, _ = spectral_norms(matrices[:1], vectors[:1], iterations=1)     # the vector carries the iterations over
    assert float(again[0]) == pytest.approx(exact[0], rel=1e-4)
