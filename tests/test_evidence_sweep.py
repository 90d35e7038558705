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
    assert 0.0 <= res.table[0]["test_accuracy"] <= 1.0
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
