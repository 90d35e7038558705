"""decaylab.sweep(method="marglik") and ``decaylab sweep --method marglik``: one run per seed, same files."""

import csv
import json

import numpy as np
import pytest

import decaylab
from decaylab.cli import main


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    return X, y


def test_sweep_marglik_returns_a_sweep_result_with_the_evidence_curve_and_layer_lambdas():
    X, y = _data()
    Xt, yt = _data(40, seed=1)
    res = decaylab.sweep("mlp", (X, y), None, method="marglik", hidden=(8,), epochs=4, batch_size=20, lr=0.01,
                         seed=[0, 1], marglik_frequency=2, test_data=(Xt, yt))
    assert res.metric == "evidence" and res.engine == "marglik" and res.lambda_1se is None
    assert [r["seed"] for r in res.table] == [0, 1]
    assert all(r["lambda"] > 0 and np.isfinite(r["log_evidence"]) for r in res.table)
    best = max(res.table, key=lambda r: r["val_metric"])
    assert res.best_lambda == best["lambda"]
    assert [c["epoch"] for c in res.evidence_curve] == [2, 4, 2, 4]
    assert [set(run["weight_decay"]) for run in res.layer_weight_decay] == [{"layers.0.weight", "layers.2.weight"}] * 2
    for row in res.table:                      # an accuracy on the 40 test rows: a whole number of them right
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["test_accuracy"] * len(yt) == pytest.approx(round(row["test_accuracy"] * len(yt)), abs=1e-4)
    assert res.config["train"]["optimizer"] == "adam"          # adamw's coupled counterpart: the prior is coupled
    data = json.loads(res.to_json())
    assert data["evidence_curve"][0]["weight_decay"] and data["layer_weight_decay"][1]["seed"] == 1


def test_sweep_marglik_takes_one_starting_lambda_only():
    X, y = _data()
    with pytest.raises(ValueError, match="one starting λ"):
        decaylab.sweep("mlp", (X, y), "1e-4:1e-1:4", method="marglik", hidden=(8,), epochs=1)
    with pytest.raises(ValueError, match="method must be one of"):
        decaylab.sweep("mlp", (X, y), [1e-3], method="bayes")


def test_cli_sweep_method_marglik_writes_the_grid_sweep_files_plus_the_evidence_curve(tmp_path, capsys):
    X, y = _data()
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    out_dir = tmp_path / "out"
    code = main(["sweep", str(path), "--method", "marglik", "--hidden", "8", "--epochs", "3", "--batch-size", "20",
                 "--lr", "0.01", "--out", str(out_dir), "--global-prior"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "evidence λ =" in out and "layers.0.weight" not in out.split("evidence λ")[0].split("\n")[2]
    for name in ("results.json", "results.csv", "evidence_curve.png", "index.html", "summary.json"):
        assert (out_dir / name).stat().st_size > 0
    rows = list(csv.DictReader(open(out_dir / "results.csv")))
    assert len(rows) == 1 and float(rows[0]["lambda"]) > 0
    saved = json.loads((out_dir / "results.json").read_text())
    assert saved["method"] == "marglik" and len(saved["evidence_curve"]) == 3
    assert list(saved["layer_weight_decay"][0]["weight_decay"]) == ["decayed"]
    assert "Evidence curve" in (out_dir / "index.html").read_text()


# --- the results store in marglik mode ------------------------------------------------------------

FAST = dict(method="marglik", hidden=(8,), epochs=2, batch_size=20, lr=0.01)


def test_marglik_store_keeps_finished_runs_and_a_rerun_trains_only_what_is_missing(tmp_path):
    X, y = _data()
    store = str(tmp_path / "runs.sqlite")
    first = decaylab.sweep("mlp", (X, y), None, seed=[0, 1], store=store, **FAST)
    assert first.trained == 2 and not any(r["from_store"] for r in first.table)
    again = decaylab.sweep("mlp", (X, y), None, seed=[0, 1], store=store, **FAST)
    assert again.trained == 0 and all(r["from_store"] for r in again.table)
    for a, b in zip(first.table, again.table):
        assert {k: v for k, v in a.items() if k != "from_store"} == pytest.approx(
            {k: v for k, v in b.items() if k != "from_store"}, nan_ok=True)
    assert again.evidence_curve == first.evidence_curve and again.layer_weight_decay == first.layer_weight_decay
    assert again.best_lambda == first.best_lambda
    more = decaylab.sweep("mlp", (X, y), None, seed=[0, 1, 2], store=store, **FAST)
    assert more.trained == 1 and [r["from_store"] for r in more.table] == [True, True, False]
    other = decaylab.sweep("mlp", (X, y), None, seed=[0], store=store, **{**FAST, "epochs": 3})
    assert other.trained == 1                       # another configuration is another run


def test_marglik_ctrl_c_keeps_finished_runs(tmp_path, monkeypatch):
    import decaylab.evidence.online as online
    from decaylab.sweeps.api import SweepInterrupted
    from decaylab.sweeps.store import ResultStore

    X, y = _data()
    store = str(tmp_path / "runs.sqlite")
    real, calls = online.train_marglik, []

    def interrupted_on_the_second_run(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(online, "train_marglik", interrupted_on_the_second_run)
    with pytest.raises(SweepInterrupted, match="1 of 2 runs finished, stored in"):
        decaylab.sweep("mlp", (X, y), None, seed=[0, 1], store=store, **FAST)
    with ResultStore(store) as db:
        assert len(db) == 1
    monkeypatch.undo()
    resumed = decaylab.sweep("mlp", (X, y), None, seed=[0, 1], store=store, **FAST)
    assert resumed.trained == 1 and [r["from_store"] for r in resumed.table] == [True, False]


def test_cli_marglik_ctrl_c_exits_130_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    import decaylab.evidence.online as online

    X, y = _data()
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    argv = ["sweep", str(path), "--method", "marglik", "--hidden", "8", "--epochs", "2", "--batch-size", "20",
            "--seeds", "0,1", "--out", str(tmp_path / "out"), "--no-progress"]
    real, calls = online.train_marglik, []

    def interrupted_on_the_second_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(online, "train_marglik", interrupted_on_the_second_run)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 130 and err.strip().splitlines() == [
        f"decaylab sweep: interrupted: 1 of 2 runs finished, stored in {tmp_path / 'out' / 'sweep.sqlite'}; run the "
        "same sweep again to resume"]
    assert not (tmp_path / "out" / "results.json").exists()
    monkeypatch.undo()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "1 trained, 1 from the store" in out
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["table"]) == 2


def test_marglik_store_refuses_a_factory_without_a_stable_name(tmp_path):
    from torch import nn

    X, y = _data()
    with pytest.raises(ValueError, match="model_key"):
        decaylab.sweep(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), (X, y), None,
                       store=str(tmp_path / "s.sqlite"), method="marglik", epochs=1)
