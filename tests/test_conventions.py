import itertools
import math
import re
import warnings

import numpy as np
import pytest
import torch

from decaylab.conventions import (
    CONVENTIONS,
    convert,
    formula,
    is_exact,
    mlp_alpha_batch_factor,
    normalized_weight_decay,
    required_context,
    timescale_epochs,
    timescale_iters,
)
from decaylab.diagnostics.optimizer_decay import group_decay

CTX = dict(lr=3e-3, batch_size=64, dataset_size=50_000, epochs=90, shape=(3072, 768), update_rms=0.3,
           adam_lr_ratio=0.5)
PAIRS = list(itertools.permutations(CONVENTIONS, 2))


@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_round_trips_and_needs_only_what_it_says(src, dst):
    value = 0.0123
    there = convert(value, src, dst, **CTX)
    assert math.isfinite(there) and there > 0
    assert convert(there, dst, src, **CTX) == pytest.approx(value, rel=1e-12)
    needs = required_context(src, dst)
    assert set(needs) == set(required_context(dst, src))
    # exactly the declared context is needed: with it alone (and, for mlp-alpha, the rows whose short last
    # batch it counts) the conversion works...
    optional = ("dataset_size",) if "mlp-alpha" in (src, dst) and "batch_size" in needs else ()
    assert convert(value, src, dst, **{k: CTX[k] for k in (*needs, *optional)}) == pytest.approx(there, rel=1e-12)
    # ...and without any one of it the conversion refuses, naming it
    for k in needs:
        with pytest.raises(ValueError, match=rf"converting '{src}' to '{dst}' needs .*{k}"):
            convert(value, src, dst, **{j: CTX[j] for j in needs if j != k})


@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_printed_formula_computes_the_converted_value(src, dst):
    # mlp-alpha with the rows (CTX's 50,000 in batches of 64: a short last batch) carries c
    lhs, rhs = formula(src, dst, batch_factor=True).split(" = ")
    assert lhs == CONVENTIONS[dst].symbol
    expr = rhs.replace(CONVENTIONS[src].symbol, "V").replace("·", "*").replace("^", "**")
    expr = re.sub(r"√(\w+)", r"sqrt(\1)", expr).replace("√(", "sqrt(")
    names = dict(V=0.0123, lr=CTX["lr"], b=CTX["batch_size"], N=CTX["dataset_size"], T=CTX["epochs"], sqrt=math.sqrt,
                 A=CTX["shape"][0], B=CTX["shape"][1], r=CTX["update_rms"], q=CTX["adam_lr_ratio"], max=max,
                 c=mlp_alpha_batch_factor(CTX["batch_size"], CTX["dataset_size"]))
    assert eval(expr, {"__builtins__": {}}, names) == pytest.approx(convert(0.0123, src, dst, **CTX), rel=1e-12)


def test_chains_agree_with_direct_conversion():
    v = convert(0.05, "torch-adamw", "tau-epoch", **CTX)
    via = convert(convert(0.05, "torch-adamw", "schedule", **CTX), "schedule", "tau-epoch", **CTX)
    assert v == pytest.approx(via, rel=1e-12)


def test_hand_checked_values():
    # tutorial penalty λΣw² = coupled weight_decay 2λ
    assert convert(0.01, "penalty", "coupled") == pytest.approx(0.02)
    assert convert(0.01, "half-penalty", "coupled") == pytest.approx(0.01)
    # torch AdamW(lr=1e-3, wd=0.05): per-step decay 5e-5 = the paper's schedule λ
    assert convert(0.05, "torch-adamw", "schedule", lr=1e-3) == pytest.approx(5e-5)
    # τ_iter = 1/(lr·λ) = 1/(1e-3·0.1) = 1e4 steps; τ_epoch = 1e4·b/N = 1e4·100/1e5 = 10 epochs
    assert timescale_iters(1e-3, 0.1) == pytest.approx(1e4)
    assert timescale_epochs(1e-3, 0.1, 100, 100_000) == pytest.approx(10.0)
    assert convert(10.0, "tau-epoch", "torch-adamw", lr=1e-3, batch_size=100,
                   dataset_size=100_000) == pytest.approx(0.1)
    # normalized: λ = 0.05·√(128/(50000·100)) = 0.05·0.0050596 = 2.5298e-4
    assert normalized_weight_decay(0.05, 128, 50_000, 100) == pytest.approx(0.05 * math.sqrt(128 / 5e6))
    # Ridge α on N examples = mean-loss penalty α/N = coupled 2α/N
    assert convert(5.0, "ridge-alpha", "coupled", dataset_size=1000) == pytest.approx(0.01)
    # MLP α with batch b: gradient α/b·W
    assert convert(1e-4, "mlp-alpha", "coupled", batch_size=200) == pytest.approx(5e-7)
    assert convert(0.0, "torch-adamw", "tau-iter", lr=1e-3) == math.inf
    assert convert(0.0, "penalty", "coupled") == 0.0


def test_aliases_and_exactness():
    assert convert(0.1, "lr", "paper", lr=0.01) == convert(0.1, "torch-adamw", "schedule", lr=0.01)
    assert is_exact("penalty", "ridge-alpha") and is_exact("schedule", "tau-epoch")
    assert not is_exact("coupled", "torch-adamw")


def test_formulas_read_as_the_math():
    assert formula("torch-adamw", "schedule") == "wd_sched = wd_adamw·lr"
    assert formula("penalty", "coupled") == "wd_coupled = 2·λ_pen"
    assert formula("torch-adamw", "tau-iter") == "τ_iter = 1 / (wd_adamw·lr)"
    assert formula("normalized", "schedule") == "wd_sched = λ_norm·√b / √(N·T)"
    assert formula("tau-iter", "tau-epoch") == "τ_epoch = τ_iter·b / N"


@pytest.mark.slow
def test_ridge_alpha_matches_sklearn_ridge_through_gradient_descent():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=50)
    alpha = 20.0
    ridge = Ridge(alpha=alpha, fit_intercept=False).fit(X, y)
    wd = convert(alpha, "ridge-alpha", "coupled", dataset_size=len(y))
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1, weight_decay=wd)
    for _ in range(500):
        opt.zero_grad()
        torch.nn.functional.mse_loss(Xt @ w, yt).backward()
        opt.step()
    assert np.allclose(w.detach().numpy(), ridge.coef_, rtol=1e-8, atol=1e-10)
    assert not np.allclose(ridge.coef_, np.linalg.lstsq(X, y, rcond=None)[0], rtol=1e-2)


@pytest.mark.parametrize("solver,batch_size", [("lbfgs", 40), ("adam", 10)])
def test_mlp_alpha_penalty_matches_sklearn_loss(solver, batch_size):
    """sklearn's MLP loss_ minus the data loss is the penalty α/(2b)·Σ‖W‖² on each batch."""
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    alpha = 0.7
    kw = dict(max_iter=30) if solver == "lbfgs" else dict(max_iter=1, batch_size=batch_size,
                                                           learning_rate_init=1e-12, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MLPRegressor(hidden_layer_sizes=(4,), alpha=alpha, solver=solver, random_state=0, **kw).fit(X, y)
    data_loss = 0.5 * np.mean((y - m.predict(X)) ** 2)
    sq = sum((W ** 2).sum() for W in m.coefs_)
    lam = convert(alpha, "mlp-alpha", "penalty", batch_size=batch_size)
    assert m.loss_ - data_loss == pytest.approx(lam * sq, rel=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="from_ must be one of penalty, .*got 'adam-w'"):
        convert(0.1, "adam-w", "schedule")
    with pytest.raises(ValueError, match="to must be one of"):
        convert(0.1, "schedule", 3)
    with pytest.raises(ValueError, match="value must be in"):
        convert(-0.1, "penalty", "coupled")
    with pytest.raises(ValueError, match=r"value must be in \(0.0, inf\)"):
        convert(0.0, "tau-iter", "schedule")
    with pytest.raises(ValueError, match="lr must be in"):
        convert(0.1, "torch-adamw", "schedule", lr=0.0)
    with pytest.raises(TypeError, match="batch_size must be a real number"):
        convert(0.1, "tau-epoch", "schedule", batch_size="64", dataset_size=10)
    with pytest.raises(ValueError, match=r"needs lr \(peak \(initial\) learning rate lr_0\)"):
        convert(0.1, "torch-adamw", "schedule")


def test_group_decay_reads_torch_optimizers():
    p = [torch.nn.Parameter(torch.ones(3))]
    adamw = torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    d = group_decay(adamw, adamw.param_groups[0])
    assert (d.kind, d.family) == ("decoupled", "adam")
    assert d.step_decay == pytest.approx(1e-4) and d.timescale_iters == pytest.approx(1e4)
    assert d.equilibrium_angle == pytest.approx(math.sqrt(2e-4 * 0.1 / 1.9))
    assert d.max_abs_bound == pytest.approx(10.0)
    adam = torch.optim.Adam(p, lr=1e-3, weight_decay=0.1)
    d = group_decay(adam, adam.param_groups[0])
    assert (d.kind, d.step_decay, d.equilibrium_angle, d.max_abs_bound) == ("coupled", None, None, None)
    sgd = torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4)
    d = group_decay(sgd, sgd.param_groups[0])
    assert (d.kind, d.family) == ("coupled", "sgd")
    assert d.step_decay == pytest.approx(0.1 * 5e-4 / 0.1)
    assert d.equilibrium_angle == pytest.approx(math.sqrt(2 * 0.1 * 5e-4 / 1.9))
    # a decaylab-style schedule-scaled group: s_t = lr_t / lr_0
    group = dict(adamw.param_groups[0], lr=5e-4, decay_scaling="schedule", decay_reference_lr=1e-3)
    d = group_decay(adamw, group)
    assert d.step_decay == pytest.approx(0.5 * 0.1) and d.max_abs_bound == pytest.approx(1e-3 / 0.1)


def _adamw_run(opt_factory, steps=40):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    X, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    opt = opt_factory(model.parameters())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), y).backward()
        opt.step()
        sched.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_schedule_and_normalized_values_are_exactly_torch_adamw_under_a_cosine_schedule():
    """The decoupled family converts exactly: same update at every step of an lr schedule."""
    import decaylab.optim

    lr, lam = 3e-3, 0.2
    ref = _adamw_run(lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=lam))
    sched_lam = convert(lam, "torch-adamw", "schedule", lr=lr)
    ours = _adamw_run(lambda ps: decaylab.optim.AdamW(ps, lr=lr, weight_decay=sched_lam, decay_scaling="schedule"))
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-12)
    norm = convert(lam, "torch-adamw", "normalized", lr=lr, batch_size=32, dataset_size=32, epochs=40)
    via_norm = normalized_weight_decay(norm, 32, 32, 40)
    assert via_norm == pytest.approx(sched_lam, rel=1e-12)
    # and the conversion mattered: the unconverted value is a different run
    wrong = _adamw_run(lambda ps: decaylab.optim.AdamW(ps, lr=lr, weight_decay=lam, decay_scaling="schedule"))
    assert not torch.allclose(wrong, ref, rtol=1e-3)


def test_timescale_is_the_e_folding_time_of_decoupled_decay():
    lr, lam = 0.01, 0.5
    tau = timescale_iters(lr, lam)  # 200 steps
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = torch.optim.AdamW([w], lr=lr, weight_decay=lam)
    for _ in range(int(tau)):
        w.grad = torch.zeros_like(w)  # only the decay acts
        opt.step()
    assert w.detach() == pytest.approx([math.exp(-1)] * 3, rel=5e-3)  # (1 − 1/τ)^τ ≈ e^{-1}


def test_coupled_equals_torch_adamw_value_for_plain_sgd_only():
    """Cross-family conversions hold for plain SGD: SGD(weight_decay=c) == SGDW(weight_decay=c)."""
    import decaylab.optim

    def run(cls, momentum):
        return _adamw_run(lambda ps: cls(ps, lr=0.05, momentum=momentum,
                                         weight_decay=convert(0.3, "torch-adamw", "coupled")))

    assert torch.allclose(run(torch.optim.SGD, 0.0), run(decaylab.optim.SGDW, 0.0), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(run(torch.optim.SGD, 0.9), run(decaylab.optim.SGDW, 0.9), rtol=1e-4)


def test_extreme_values_convert_exactly_or_are_refused():
    import pytest

    from decaylab._checks import InputError
    from decaylab.conventions import convert

    assert convert(1e-300, "torch-adamw", "schedule", lr=1e-3) == 1e-303          # no log round-off
    assert convert(1e-200, "torch-adamw", "coupled") == 1e-200                     # not printed as 0
    assert convert(0.1, "torch-adamw", "tau-iter", lr=1e-3) == 10000.0             # simple ratios exact
    assert convert(0.05, "torch-adamw", "schedule", lr=1e-3) == 5e-05
    with pytest.raises(InputError, match="outside the range of a float"):
        convert(1e-300, "torch-adamw", "tau-iter", lr=1e-10)                      # 1e310 overflows
    with pytest.raises(InputError, match="outside the range of a float"):
        convert(1e-200, "torch-adamw", "schedule", lr=1e-200)                      # 1e-400 underflows


def test_cli_table_marks_out_of_range_rows(capsys):
    from decaylab.cli import main

    assert main(["convert", "1e-300", "--from", "torch-adamw", "--lr", "1e-10"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "outside a float's range" in rows["tau-iter"] and "1e-300" in rows["coupled"]
    assert main(["convert", "1e-300", "--from", "torch-adamw", "--to", "tau-iter", "--lr", "1e-10"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "outside the range" in err


def test_keras_has_two_named_conventions_and_the_bare_name_is_refused():
    import pytest

    from decaylab._checks import InputError
    from decaylab.conventions import convert, get_convention

    assert get_convention("keras-optimizer").name == "torch-adamw"
    assert get_convention("keras-l2").name == "penalty"
    assert convert(0.01, "keras-l2", "keras-optimizer", lr=0.1) == 0.02      # ×2, exact
    with pytest.raises(InputError, match="'keras' is ambiguous.*keras-optimizer.*keras-l2"):
        get_convention("keras")


def test_mlp_alpha_with_the_rows_counts_sklearns_short_last_batch():
    """One epoch of sklearn's own SGD over 1437 rows in batches of 200 (X = 0: the first layer's weights get
    only the penalty's gradient, α·W/n with n each batch's own rows): its decay is that of the converted
    coupled λ over the epoch's 8 steps when the rows are given, 1.55× that of the full-batch α/b."""
    from sklearn.neural_network import MLPRegressor

    from decaylab.conventions import is_exact, mlp_alpha_batch_factor

    N, b, lr, alpha = 1437, 200, 0.01, 0.5
    X, y = np.zeros((N, 3)), np.random.default_rng(0).normal(size=N)

    def first_layer(a):
        m = MLPRegressor(hidden_layer_sizes=(4,), alpha=a, solver="sgd", learning_rate_init=lr, momentum=0.0,
                         batch_size=b, shuffle=False, random_state=0)
        return m.partial_fit(X, y).coefs_[0]

    sklearn_decay = 1 - float(np.mean(first_layer(alpha) / first_layer(0.0)))
    steps = -(-N // b)
    lam = convert(alpha, "mlp-alpha", "coupled", batch_size=b, dataset_size=N)
    assert sklearn_decay == pytest.approx(1 - (1 - lr * lam) ** steps, rel=1e-4)
    full_batches = convert(alpha, "mlp-alpha", "coupled", batch_size=b)
    assert sklearn_decay / (1 - (1 - lr * full_batches) ** steps) == pytest.approx(1.5507, rel=1e-3)
    assert mlp_alpha_batch_factor(b, N) == pytest.approx((7 / 200 + 1 / 37) / 8 * 200)
    assert convert(lam, "coupled", "mlp-alpha", batch_size=b, dataset_size=N) == pytest.approx(alpha)
    assert not is_exact("mlp-alpha", "coupled", batch_size=b, dataset_size=N)
    assert is_exact("mlp-alpha", "coupled", batch_size=b, dataset_size=1400)
    assert convert(alpha, "mlp-alpha", "coupled", batch_size=b, dataset_size=1400) == full_batches
    # lbfgs, or a batch_size over N (sklearn clips it): one batch of N rows, α/N
    assert convert(alpha, "mlp-alpha", "coupled", batch_size=500, dataset_size=150) == pytest.approx(alpha / 150)
