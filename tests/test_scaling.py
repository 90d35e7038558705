"""decaylab.scaling: each rule's formula on hand cases (through convert), the fitted power law and its interval, the
extrapolation distance, and bad input refused in one line (API and CLI)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from decaylab._checks import InputError
from decaylab.cli import main
from decaylab.conventions import convert
from decaylab.scaling import RULES, Rung, RunSettings, extrapolation, fit_power_law, predict
from decaylab.scaling.prediction import carry_lambda
from decaylab.scaling.rungs import best_lambda
from decaylab.scaling.settings import parse_settings

S = RunSettings(rows=1000, width=64, batch=32, epochs=10, lr=1e-3, params=5000)


def _tau_epoch(lam, s):
    return convert(lam, s.convention, "tau-epoch", lr=s.lr, batch_size=s.batch, dataset_size=s.rows)


@pytest.mark.parametrize("change, factor", [
    (dict(rows=8000), 1 / 8),                 # λ ∝ 1/N at fixed η, B
    (dict(batch=128), 4.0),                   # λ ∝ B
    (dict(lr=2e-3), 0.5),                     # λ ∝ 1/η
    (dict(width=256, lr=2.5e-4), 4.0),        # μP η ∝ 1/width: λ ∝ width
])
def test_wang_aitchison_holds_tau_epoch(change, factor):
    t = S.replace(**change)
    lam = carry_lambda("wang-aitchison", 0.1, S, t)
    assert lam == pytest.approx(0.1 * factor)
    assert _tau_epoch(lam, t) == pytest.approx(_tau_epoch(0.1, S))      # τ_epoch = B/(η·λ·N) through convert


def test_wang_aitchison_in_the_schedule_convention():
    # schedule-scaled λ is the per-step decay η·λ_torch: at fixed N and B, a new lr leaves it unchanged
    s = S.replace(convention="schedule")
    assert carry_lambda("wang-aitchison", 1e-4, s, s.replace(lr=4e-3)) == pytest.approx(1e-4)
    assert carry_lambda("wang-aitchison", 1e-4, s, s.replace(rows=4000)) == pytest.approx(2.5e-5)


def test_power_lines_lambda_proportional_to_batch_and_the_fitted_exponent():
    assert carry_lambda("power-lines", 0.1, S, S.replace(batch=256)) == pytest.approx(0.8)
    # τ = B/(η·λ·D): D/P ×4 with m = −0.5 halves τ_PL; S ×4 makes τ_iter ×2, so λ/2
    assert carry_lambda("power-lines-fit", 0.1, S, S.replace(rows=4000), m=-0.5) == pytest.approx(0.05)
    assert carry_lambda("power-lines-fit", 0.1, S, S.replace(rows=4000), m=0.0) == pytest.approx(0.025)


def test_width_rules():
    wide = S.replace(width=256)
    assert carry_lambda("qiu-width", 0.1, S, wide) == pytest.approx(0.025)            # η·λ ∝ 1/width
    assert carry_lambda("fan-width", 0.1, S, wide) == pytest.approx(0.8)              # λ ∝ η·d^1.5
    mup = wide.replace(lr=S.lr / 4)
    assert carry_lambda("fan-width", 0.1, S, mup) == pytest.approx(0.2)               # their λ ∝ √d under η ∝ 1/d
    assert carry_lambda("qiu-width", 0.1, S, mup) == pytest.approx(0.1)               # constant under μP


def test_adamc_and_keep():
    fast = S.replace(lr=3e-3)
    assert carry_lambda("adamc", 0.1, S, fast) == pytest.approx(0.3)                  # λ ∝ η: per-step decay ∝ η²
    tau_s = convert(0.1, "torch-adamw", "tau-iter", lr=S.lr)
    assert convert(0.3, "torch-adamw", "tau-iter", lr=fast.lr) == pytest.approx(tau_s / 9)
    assert carry_lambda("keep", 0.1, S, fast) == 0.1


def test_a_rule_without_what_it_needs_is_refused():
    with pytest.raises(InputError, match="needs rows"):
        carry_lambda("wang-aitchison", 0.1, S.replace(rows=None), S)
    with pytest.raises(InputError, match="rule must be one of"):
        carry_lambda("nope", 0.1, S, S)


def test_every_rule_names_its_source_and_formula():
    for rule in RULES.values():
        assert rule.source and rule.formula and rule.covers


LAMBDAS = np.logspace(-3, 2, 11)


def _rung(x: float, best: float, *, key="rows", noise=0.01, reps=4, rng=None, **settings) -> Rung:
    rng = rng or np.random.default_rng(int(x))
    curve = 0.2 * (np.log(LAMBDAS) - math.log(best)) ** 2 + 1.0
    values = curve[:, None] + rng.normal(0, noise, (len(LAMBDAS), reps))
    return Rung(S.replace(**{key: x}, **settings), LAMBDAS, values, source=f"{key}={x}")


def test_best_lambda_is_the_parabola_vertex():
    curve = (np.log(LAMBDAS) - math.log(0.37)) ** 2
    assert best_lambda(LAMBDAS, curve[None, :])[0] == pytest.approx(0.37)
    edge = (np.log(LAMBDAS) - math.log(1e-5)) ** 2
    assert best_lambda(LAMBDAS, edge[None, :])[0] == pytest.approx(LAMBDAS[0])


def test_fit_recovers_a_planted_power_law_with_its_interval():
    planted = lambda n: 0.3 * (n / 100) ** -0.7                                   # noqa: E731
    rungs = [_rung(n, planted(n), noise=0.02) for n in (100, 200, 400, 800)]
    p = predict(rungs, "rows=6400", n_boot=400)
    lo, hi = p.exponent_interval
    assert lo <= -0.7 <= hi and hi - lo < 0.2
    assert p.exponent == pytest.approx(-0.7, abs=0.05)
    fitted = p.rule("power-law")
    assert fitted.low <= planted(6400) <= fitted.high
    assert fitted.lam == pytest.approx(planted(6400), rel=0.15)
    assert p.distance == 8 and p.distance_text.startswith("8× the largest measured rows (800)")
    # the planted exponent is not −1: Wang & Aitchison's λ ∝ 1/N is not consistent with these runs, the fit is
    assert p.rule("wang-aitchison").consistent is False and p.rule("power-law").consistent is True
    assert p.rule("keep").lam == pytest.approx(rungs[-1].best)
    assert "does not cover rows" in p.rule("qiu-width").note
    wa = p.rule("wang-aitchison")
    assert wa.tau_epoch == pytest.approx(_tau_epoch(wa.lam, p.target))


def test_a_planted_inverse_law_is_consistent_with_wang_aitchison():
    rungs = [_rung(n, 2.0 * 100 / n) for n in (100, 200, 400)]
    p = predict(rungs, {"rows": 1600}, n_boot=300)
    assert p.rule("wang-aitchison").consistent is True and p.rule("keep").consistent is False
    assert p.rule("wang-aitchison").lam == pytest.approx(2.0 * 100 / 1600, rel=0.05)


def test_fit_power_law_exact_points():
    x = np.array([1.0, 2.0, 4.0])
    law = fit_power_law(x, 3 * x ** 0.5, np.tile(3 * x ** 0.5, (5, 1)))
    assert law.exponent == pytest.approx(0.5) and law.coef == pytest.approx(3.0)
    assert law.exponent_interval == pytest.approx((0.5, 0.5))


def test_extrapolation_distance_in_words():
    assert extrapolation(3200, [100, 400], "rows") == (8.0, "8× the largest measured rows (400)")
    assert extrapolation(25, [100, 400], "rows")[1] == "1/4 of the smallest measured rows (100)"
    assert extrapolation(200, [100, 400], "rows") == (1.0, "inside the measured rows (100 … 400): interpolation")


@pytest.mark.parametrize("rungs, target, vary, message", [
    ("one", "rows=800", None, "two or more values of what changes, got 1 run"),
    ("two-vars", "rows=800", None, "differ in rows, width"),
    ("two-vars", "rows=800", "rows", "differ in width besides the declared rows"),
    ("ok", "widht=64", None, "unknown key 'widht'"),
    ("ok", "width=64", None, "the target must set rows"),
    ("ok", "rows=abc", None, "rows='abc' is not a number"),
    ("ok", "rows=1.5", None, "rows must be a whole number"),
    ("ok", "rows=800", "batch", "differ in rows besides the declared batch"),
    ("same", "batch=64", "batch", "every run has the same batch"),
    ("same", "rows=800", None, "do not differ in any of"),
])
def test_bad_input_is_refused_in_one_line(rungs, target, vary, message):
    made = {"one": [_rung(100, 1.0)], "ok": [_rung(100, 1.0), _rung(200, 0.5)],
            "two-vars": [_rung(100, 1.0), _rung(200, 0.5, width=128)],
            "same": [_rung(100, 1.0), _rung(100, 1.0)]}[rungs]
    with pytest.raises(InputError, match=message) as err:
        predict(made, target, vary=vary)
    assert "\n" not in str(err.value)


def test_parse_settings_steps_and_duplicates():
    assert parse_settings("rows=16000,lr=1e-3") == {"rows": 16000, "lr": 1e-3}
    with pytest.raises(InputError, match="given twice"):
        parse_settings("rows=1,rows=2")


def _results_json(tmp_path, name, rung: Rung) -> str:
    """A results.json as decaylab sweep writes it, from a synthetic rung (no training)."""
    table = [{"lambda": float(lam), "lr": 1e-3, "seed": r, "fold": 0, "val_metric": float(rung.values[i, r]),
              "val_loss": float(rung.values[i, r]), "steps": 10 * math.ceil(rung.settings.rows / 32),
              "epochs_run": 10, "diverged": False}
             for i, lam in enumerate(rung.lambdas) for r in range(rung.values.shape[1])]
    config = {"model": {"builtin": "mlp", "in": 40, "out": 10, "hidden": [rung.settings.width]},
              "train": {"optimizer": "adamw", "decay_scaling": "lr", "batch_size": 32, "epochs": 10}}
    d = tmp_path / name
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"best_lr": 1e-3, "metric": "loss", "table": table, "config": config}))
    return str(d)


def test_cli_scale_prints_every_rule_and_json(tmp_path, capsys):
    a = _results_json(tmp_path, "a", _rung(128, 1.0))
    b = _results_json(tmp_path, "b", _rung(256, 0.5))
    assert main(["scale", f"{a}@rows=128", f"{b}@rows=256", "--to", "rows=2048", "--boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "8× the largest measured rows (256)" in out and "wang-aitchison" in out and "fan-width" in out
    assert main(["scale", a, b, "--to", "rows=2048", "--json", "--boot", "50"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["vary"] == "rows" and data["target"]["width"] == 64 and data["target"]["params"] == 40 * 64 + 64 + 650
    assert {r["rule"] for r in data["rules"]} >= {"power-law", "keep", "wang-aitchison", "adamc"}


@pytest.mark.parametrize("extra, message", [
    ([], "two or more values of what changes"),
    (["B", "--to", "widht=3"], "unknown key 'widht'"),
    (["C", "--to", "rows=2048"], "differ in rows, width"),
    (["B", "--to", "width=128"], "the target must set rows"),
])
def test_cli_scale_bad_input_exit_2_one_line(tmp_path, capsys, extra, message):
    runs = {"A": _results_json(tmp_path, "a", _rung(128, 1.0)),
            "B": _results_json(tmp_path, "b", _rung(256, 0.5)),
            "C": _results_json(tmp_path, "c", _rung(256, 0.5, width=32))}
    argv = ["scale", runs["A"], *[runs.get(e, e) for e in extra]]
    if "--to" not in argv:
        argv += ["--to", "rows=2048"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _doctor_codes(wd: float, **kw) -> list[str]:
    import torch

    import decaylab
    from decaylab.optim import AdamW

    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    return decaylab.doctor(model, AdamW(decaylab.param_groups(model, wd), lr=1e-3), **kw).codes


def test_doctor_tau_outside_the_measured_ladders_is_an_info():
    from decaylab.scaling.support import FAR, MEASURED_TAU_EPOCH

    # λ 0.05 at lr 1e-3: τ_iter 20000 steps, 2000 epochs at 10 steps an epoch: beyond 10× the measured range
    assert 2000 > MEASURED_TAU_EPOCH[1] * FAR
    assert "tau-unsupported" in _doctor_codes(0.05, total_steps=100_000, steps_per_epoch=10)
    assert "tau-unsupported" not in _doctor_codes(0.05, total_steps=100_000)              # τ_epoch unknown
    assert "tau-unsupported" not in _doctor_codes(5.0, total_steps=100_000, steps_per_epoch=10)   # τ_epoch 20
    # a strength finding (decay-weak here) is the one verdict on the group: no second finding about it
    assert _doctor_codes(1e-4, total_steps=100_000, steps_per_epoch=10) == ["decay-weak"]


@pytest.mark.slow
def test_repro_scaling_on_a_tiny_ladder_and_reading_a_store(tmp_path):
    import decaylab
    from decaylab.experiments.scaling import Ladder, run_scaling
    from decaylab.scaling import rungs_from_path

    tiny = Ladder("rows", "rows", (40, 80, 160), (40, 80, 160), dict(rows=40, width=16, batch=32, lr=3e-3))
    study = run_scaling(ladders=(tiny,), seeds=2, epochs=3, lambdas=[0.1, 1.0, 10.0, 100.0])
    scores = study.scores["rows"]
    assert {s["rule"] for s in scores} == {"power-law", "keep", "wang-aitchison", "power-lines-fit"}
    for s in scores:
        assert s["dlog10"] == pytest.approx(abs(math.log10(s["predicted"]) - math.log10(s["best"])))
        assert math.isfinite(s["regret"]) and s["se"] >= 0
    assert study.predictions["rows"].distance == 2.0
    assert any("next-token sweeps" in sec.text for sec in study.sections)
    assert study.sections[0].figures[0].png.startswith(b"\x89PNG")
    # a store decaylab ran, read back: one rung per sweep configuration, rows estimated from steps per epoch × B
    store = str(tmp_path / "sweep.sqlite")
    from decaylab.experiments.scaling import _pool

    X, y = _pool()
    for n in (64, 128):
        decaylab.sweep("mlp", (X[:n + 64], y[:n + 64]), [0.1, 1.0, 10.0], holdout=64 / (n + 64), seed=[0, 1],
                       epochs=2, batch_size=32, hidden=(8,), metric="loss", store=store)
    rungs = rungs_from_path(tmp_path)
    assert sorted(r.settings.rows for r in rungs) == [64, 128] and all(r.estimated == ("rows",) for r in rungs)
    assert predict(rungs, "rows=512", n_boot=50).distance == 4.0
