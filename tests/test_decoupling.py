"""lr_decay_map (cells in the right place, same numbers as runs alone), the lr-vs-schedule
reparametrization the report relies on, and `decaylab repro decoupling --quick` end to end."""

import json

import numpy as np
import pytest
import torch

from decaylab import data, models
from decaylab.batched.trainer import Member, TrainConfig, train_alone, train_batched
from decaylab.cli import main
from decaylab.maps.lr_map import lr_decay_map


@pytest.fixture(scope="module")
def moons():
    return data.load("moons", seed=0, n_train=40, n_test=100, label_noise=0.2, dtype=torch.float64)


def small_mlp():
    return models.MLP(2, 2, (8,))


def test_cells_sit_at_their_lr_and_decay_and_match_runs_alone(moons):
    lrs, decays = [0.01, 0.1, 0.5], [1e-4, 1e-2, 1e-1]
    m = lr_decay_map(small_mlp, moons.train, moons.test, optimizer="sgd", lrs=lrs, decays=decays, seeds=(3,),
                     epochs=5, batch_size=16, dtype=torch.float64)
    assert m.test_error.shape == m.train_loss.shape == (1, 3, 3)
    config = TrainConfig.from_options(optimizer="sgd", epochs=5, batch_size=16, momentum=0.9, lr_schedule="cosine",
                                      dtype=torch.float64)
    for i, j in [(0, 2), (2, 0), (1, 1)]:
        alone = train_alone(small_mlp, moons.train.X, moons.train.y, [Member(decays[j], lrs[i], seed=3)], config,
                            eval_sets={"test": (moons.test.X, moons.test.y)})[0]
        assert m.train_loss[0, i, j] == pytest.approx(alone.train_loss, rel=1e-9)
        assert m.test_error[0, i, j] == pytest.approx(1 - alone.eval["test"]["accuracy"], abs=1e-12)
    assert len(set(np.round(m.train_loss.ravel(), 9))) == 9          # nine different runs
    cells = m.cells()
    assert len(cells) == 9 and cells[5]["lr"] == 0.1 and cells[5]["weight_decay"] == 0.1
    fig = m.plot()
    assert len(fig.axes) == 4   # two maps and their colour bars


def test_schedule_scaling_is_lr_scaling_with_decay_divided_by_initial_lr(moons):
    # The report's claim: AdamW-schedule at (lr_0, λ) is the same run as AdamW-lr at (lr_0, λ/lr_0),
    # so the two maps' basin slopes differ by exactly 1.
    cells = [(1e-3, 1e-4), (1e-2, 1e-3), (1e-1, 3e-3)]
    runs = {}
    for scaling, to_lambda in (("schedule", lambda lr, lam: lam), ("lr", lambda lr, lam: lam / lr)):
        config = TrainConfig.from_options(optimizer="adamw", epochs=6, batch_size=16, decay_scaling=scaling,
                                          lr_schedule="cosine", dtype=torch.float64)
        members = [Member(to_lambda(lr, lam), lr, seed=1) for lr, lam in cells]
        runs[scaling] = train_batched(small_mlp, moons.train.X, moons.train.y, members, config, keep_weights=True)
    for a, b in zip(runs["schedule"], runs["lr"]):
        for name in a.state_dict:
            torch.testing.assert_close(a.state_dict[name], b.state_dict[name], rtol=1e-10, atol=1e-12)
    # ...and the decay matters at these values (not a vacuous equality)
    no_decay = TrainConfig.from_options(optimizer="adamw", epochs=6, batch_size=16, lr_schedule="cosine",
                                        dtype=torch.float64)
    undecayed = train_batched(small_mlp, moons.train.X, moons.train.y, [Member(0.0, 1e-1, seed=1)], no_decay)[0]
    assert runs["schedule"][2].weight_norm < 0.99 * undecayed.weight_norm


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(optimizer="rmsprop"), ValueError,
     r"optimizer must be one of 'sgd', 'sgdw', 'adam', 'adamw', 'muon', 'lion', got 'rmsprop'"),
    (dict(lrs=[0.1, 0.01, 0.001]), ValueError, r"lrs must be strictly increasing"),
    (dict(decays=[0.0, 1e-3, 1e-2]), ValueError, r"decays must be at least 3 positive finite values"),
    (dict(seeds=(1, 1)), ValueError, r"seeds must be distinct"),
    (dict(train=[1, 2, 3]), TypeError, r"train and test must be \(X, y\) pairs"),
])
def test_bad_arguments_name_the_argument(moons, kwargs, exc, match):
    args = dict(train=moons.train, test=moons.test, lrs=[1e-3, 1e-2, 1e-1], decays=[1e-4, 1e-3, 1e-2], epochs=1)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        lr_decay_map(small_mlp, args.pop("train"), args.pop("test"), **args)


@pytest.mark.slow  # ten lr × λ maps, ≥ 12 s
def test_repro_decoupling_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["repro", "decoupling", "--quick", "--seeds", "2", "--epochs", "3", "--out", str(out),
               "--no-progress", "--workers", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "slope [95% CI]" in printed and "AdamW (decay_scaling=\"lr\")" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["regimes"]) == {"fixed-point", "equilibrium"}
    assert summary["setup"]["grid_size"] == {"fixed-point": 5, "equilibrium": 5}
    cells = summary["cells"]
    assert len(cells) == 2 * 5 * 5 * 5 * 2
    finite = [c["test_error"] for c in cells if c["test_error"] is not None]
    assert finite and all(0.0 <= e <= 1.0 for e in finite)
    assert all((c["test_error"] is None) == c["diverged"] for c in cells)
    expected = {"fixed-point": {"sgd": 0.0, "sgdw": 1.0, "adam": 0.0, "adamw": 1.0, "adamw-lr": 0.0},
                "equilibrium": {"sgd": -1.0, "sgdw": 0.0, "adam": None, "adamw": 0.0, "adamw-lr": -1.0}}
    for regime, block in summary["regimes"].items():
        assert block["setup"]["epochs"] == 3
        assert set(block["arms"]) == {"sgd", "sgdw", "adam", "adamw", "adamw-lr"}
        for key, arm in block["arms"].items():
            assert arm["predicted_slope"] == expected[regime][key]
            assert arm["detected_regime"]["regime"] == regime
            assert len(arm["lrs"]) == len(arm["decays"]) == 5
            assert arm["basin"]["n_seeds"] == 2 and len(arm["basin"]["seed_slopes"]) == 2
            check = arm["equilibrium_check"]
            if regime == "fixed-point":
                assert check is None
            else:
                assert check["angle"] > 0 and (check["predicted_angle"] is None) == (key == "adam")
    html = (out / "index.html").read_text()
    assert "Equilibrium regime" in html and "Fixed-point regime" in html and html.count("<img") >= 11
    assert "Both regimes side by side" in html and summary["report"]["sections"][0]["key"] == "decoupling-both-regimes"


@pytest.mark.slow  # ten lr × λ maps, ≥ 12 s
def test_maps_do_not_depend_on_the_worker_count():
    from decaylab.experiments.decoupling import ARMS, _run_jobs

    options = dict(size=3, n_epochs=2, seeds=1, n_boot=10)
    jobs = [("fixed-point", ARMS[0], options), ("equilibrium", ARMS[3], options)]
    alone, shared = _run_jobs(jobs, 1, False), _run_jobs(jobs, 2, False)
    for (m1, _, check1, png1), (m2, _, check2, png2) in zip(alone, shared):
        np.testing.assert_array_equal(m1.train_loss, m2.train_loss)
        np.testing.assert_array_equal(m1.test_error, m2.test_error)
        assert check1 == check2 and (check1 is None) == (m1.regime["regime"] == "fixed-point")
        assert png1.startswith(b"\x89PNG") and png2.startswith(b"\x89PNG")
    assert [m.optimizer for m, *_ in shared] == ["sgd", "adamw"]   # results in job order


def exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:   # argparse's own errors
        return exc.code


@pytest.mark.parametrize("argv, message", [
    (["repro", "decoupling", "--seeds", "0"], "--seeds must be an integer in [1, 100], got 0"),
    (["repro", "decoupling", "--epochs", "-3"], "--epochs must be an integer in [1, 100000], got -3"),
    (["repro", "decoupling", "--workers", "0"], "--workers must be an integer in [1, 64], got 0"),
    (["repro", "figure9"], "invalid choice: 'figure9'"),
])
def test_repro_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    assert exit_code(argv + ["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def _fit(slope, low, high):
    from decaylab.maps.basin import BasinFit

    return BasinFit(slope, 0.0, low, high, 0.95, np.ones(4), np.ones(4, bool), np.full(3, slope), 100, 3)


def test_the_verdict_is_decided_by_which_slopes_the_interval_holds():
    # brute force over intervals: against expected e, "agrees" iff the interval holds e and neither other
    # slope of {−1, 0, +1}, "inconclusive" iff it holds e and another, "disagrees" iff it misses e
    from decaylab.experiments import decoupling_text

    ends = np.round(np.arange(-1.6, 1.61, 0.2), 2)
    checked = set()
    for low in ends:
        for high in ends[ends >= low]:
            for expected in (-1.0, 0.0, 1.0):
                inside = [v for v in (-1.0, 0.0, 1.0) if low <= v <= high]
                want = ("disagrees" if expected not in inside else "agrees" if inside == [expected]
                        else "inconclusive")
                verdict = decoupling_text.verdict_text(_fit((low + high) / 2, low, high), expected)
                assert verdict.startswith(want), (low, high, expected, verdict)
                checked.add(want)
    assert checked == {"agrees", "disagrees", "inconclusive"}


def _named_arms(text):
    """{arm: quoted slope} for every "(arm, arm: slopes s, s)" the paragraph explains, and the groups."""
    import re

    groups = [(who.split(", "), slopes.split(", ")) for who, slopes in re.findall(r"\(([\w, -]+): slopes ([^)]*)\)",
                                                                                    text)]
    return {k: v for who, slopes in groups for k, v in zip(who, slopes)}, [who for who, _ in groups]


@pytest.mark.parametrize("regime", ["paper-like", "equilibrium-like"])
def test_the_explanation_names_each_arm_under_the_picture_its_interval_holds(regime):
    from decaylab.experiments import decoupling, decoupling_text

    paper_like = {"sgd": _fit(-0.9, -1.3, -0.6), "adam": _fit(-1.1, -1.4, -0.8), "sgdw": _fit(0.1, -0.2, 0.3),
                  "adamw": _fit(0.05, -0.3, 0.3), "adamw-lr": _fit(-0.95, -1.3, -0.7)}
    # equilibrium-like: sgd flat, adam's interval holds 0 and −1, sgdw's none of the three, adamw rising
    fits = paper_like if regime == "paper-like" else dict(
        paper_like, sgd=_fit(0.1, -0.2, 0.4), adam=_fit(-0.5, -1.2, 0.2), sgdw=_fit(-0.6, -0.8, -0.4),
        adamw=_fit(0.9, 0.7, 1.2))
    text = decoupling_text.scaling_explanation(decoupling.ARMS, fits)
    named, groups = _named_arms(text)
    # an arm is explained when its interval holds exactly one of the pictures its family has a sentence for
    # (coupled: 0 or −1; schedule-scaled decoupled: +1 or 0), and each sentence groups arms of one picture
    pictures = {"sgd": (0.0, -1.0), "adam": (0.0, -1.0), "sgdw": (1.0, 0.0), "adamw": (1.0, 0.0)}
    expected = {k for k, values in pictures.items()
                if [v for v in (-1.0, 0.0, 1.0) if fits[k].ci_low <= v <= fits[k].ci_high] in ([p] for p in values)}
    assert set(named) == expected and expected == ({"sgd", "adam", "sgdw", "adamw"} if regime == "paper-like"
                                                   else {"sgd", "adamw"})
    assert all(named[k] == f"{fits[k].slope:+.2f}" for k in named)            # the measured slopes are quoted
    assert all(len({decoupling_text.picture_of(fits[k]) for k in who}) == 1 for who in groups)
    assert f"difference {fits['adamw'].slope - fits['adamw-lr'].slope:+.2f}" in text   # schedule vs lr: exactly 1
    # the BatchNorm hypothesis is offered exactly when no coupled arm shows the paper's diagonal
    diagonal = [k for k in ("sgd", "adam") if fits[k].ci_low <= -1.0 <= fits[k].ci_high and fits[k].ci_high < 0]
    assert ("hypothesis" in text) == (not diagonal)


def test_regression_maps_report_test_loss():
    poly = data.load("poly", seed=0, dtype=torch.float64)
    factory = lambda: models.MLP(1, 1, (8,))  # noqa: E731
    m = lr_decay_map(factory, poly.train, poly.test, optimizer="adam", lrs=[1e-3, 1e-2, 1e-1],
                     decays=[1e-4, 1e-3, 1e-2], seeds=(0,), epochs=4, batch_size=8, loss="mse", dtype=torch.float64)
    assert m.metric == "test loss"
    config = TrainConfig.from_options(optimizer="adam", epochs=4, batch_size=8, loss="mse", lr_schedule="cosine",
                                      dtype=torch.float64)
    alone = train_alone(factory, poly.train.X, poly.train.y, [Member(1e-3, 1e-1, seed=0)], config,
                        eval_sets={"test": (poly.test.X, poly.test.y)})[0]
    assert m.test_error[0, 2, 1] == pytest.approx(alone.eval["test"]["loss"], rel=1e-9)


def test_repro_with_a_dead_worker_exits_1_with_one_line(monkeypatch, capsys, tmp_path):
    from decaylab._workers import WorkerDied
    from decaylab.experiments import decoupling

    def dies(**kwargs):
        raise WorkerDied(2, 3, 10)

    monkeypatch.setattr(decoupling, "run_decoupling", dies)
    assert main(["repro", "decoupling", "--workers", "2", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("decaylab repro: error: --workers 2: a worker process died") and "3 of 10 maps" in err
