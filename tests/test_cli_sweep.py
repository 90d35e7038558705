"""``decaylab sweep``: outputs for CSV and NPZ files, resume, and one-line errors for bad input."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from decaylab.cli import main

FAST = ["--epochs", "3", "--batch-size", "16", "--hidden", "8", "--lr", "0.01"]


@pytest.fixture
def csv_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    label = (X[:, 0] + X[:, 1] > 0).astype(int)
    lines = ["x1,x2,x3,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{t}" for (a, b, c), t in zip(X, label)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(capsys, *argv):
    code = main(["sweep", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_sweep_writes_results_and_resumes(tmp_path, capsys, csv_file):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, csv_file, "--target", "label", "--lambdas", "1e-4:1e-1:4", "--folds", "3",
                             "--chunk-size", "5", "--out", out_dir, *FAST)
    assert code == 0, err
    assert "best λ =" in out and "12 trained, 0 from the store" in out
    for name in ("results.json", "results.csv", "validation_curve.png", "index.html", "summary.json",
                 "sweep.sqlite"):
        assert (out_dir / name).is_file(), name
    results = json.loads((out_dir / "results.json").read_text())
    assert results["metric"] == "accuracy" and len(results["table"]) == 12
    assert results["best_lambda"] in [s["lambda"] for s in results["summary"]]
    assert len((out_dir / "results.csv").read_text().splitlines()) == 13
    assert "validation_curve" in (out_dir / "index.html").read_text()
    code, out, _ = run_cli(capsys, csv_file, "--target", "label", "--lambdas", "1e-4:1e-1:4", "--folds", "3",
                           "--out", out_dir, *FAST)
    assert code == 0 and "0 trained, 12 from the store" in out


def test_npz_regression_with_holdout(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    np.savez(tmp_path / "d.npz", X=X, target=X @ np.array([1.0, -1.0]) + 0.1 * rng.normal(size=50))
    code, out, err = run_cli(capsys, tmp_path / "d.npz", "--target", "target", "--model", "linear",
                             "--lambdas", "0,0.01,1", "--holdout", "0.3", "--out", tmp_path / "o",
                             *FAST[:4], *FAST[6:])          # FAST without --hidden, which only mlp takes
    assert code == 0, err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["metric"] == "loss" and len(results["table"]) == 3
    assert results["config"]["train"]["loss"] == "mse"
    code, _, err = run_cli(capsys, tmp_path / "d.npz", "--target", "target", "--metric", "accuracy",
                           "--out", tmp_path / "o2", *FAST)
    assert code == 2 and "metric='accuracy' needs a classification loss" in err


@pytest.mark.parametrize("make_args, message", [
    (lambda d, csv: [d / "missing.csv", "--target", "label"], "no such built-in dataset or file"),
    (lambda d, csv: [csv], "name its target column with --target"),
    (lambda d, csv: [csv, "--target", "nope"], "--target 'nope' is not a column"),
    (lambda d, csv: [csv, "--target", "label", "--lambdas", "1e-6:1e1"], "lambdas must be START:STOP:COUNT"),
    (lambda d, csv: [csv, "--target", "label", "--lambdas", "1e-6:x:3"], "lambdas must be START:STOP:COUNT"),
    (lambda d, csv: [csv, "--target", "label", "--folds", "500"],
     r"folds must be at most the number of samples \(60\), got 500"),
    (lambda d, csv: [csv, "--target", "label", "--lr", "0"], "lr must be in"),
    (lambda d, csv: [csv, "--target", "label", "--epochs", "0"], "epochs must be an integer"),
    (lambda d, csv: [csv, "--target", "label", "--seeds", "a"], "--seeds: must be comma-separated integers"),
    (lambda d, csv: [csv, "--target", "label", "--workers", "0"], r"workers must be an integer in \[1, inf\], got 0"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, csv_file, make_args, message):
    code, out, err = run_cli(capsys, *make_args(tmp_path, csv_file), "--out", tmp_path / "o")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_non_numeric_column(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("size,colour,label\n1.0,red,0\n2.0,blue,1\n3.0,red,0\n")
    code, _, err = run_cli(capsys, path, "--target", "label", "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "column 'colour' is not numeric: line 2 holds 'red'" in err


@pytest.mark.slow
def test_argparse_errors_and_help_from_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "decaylab.cli", "sweep", "moons", "--folds", "3", "--holdout",
                           "0.2"], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not allowed with argument" in proc.stderr


def test_a_dead_worker_exits_1_with_one_line_saying_what_to_do(tmp_path, capsys, csv_file, monkeypatch):
    import decaylab
    from decaylab.sweeps.engines import WorkerDied

    def dies(*args, **kwargs):
        raise WorkerDied(2, 1, 3)

    monkeypatch.setattr(decaylab, "sweep", dies)
    code, out, err = run_cli(capsys, csv_file, "--target", "label", "--lambdas", "1e-4:1e-1:4", "--folds", "3",
                             "--workers", "2", "--out", tmp_path / "out", *FAST)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("decaylab sweep: error: --workers 2: a worker process died") and "1 of 3 chunks" in err
    assert "smaller --chunk-size or --workers 1" in err


USER_MODELS = """
import torch
from torch import nn

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(64, 2))

    def forward(self, x):
        assert x.shape[1:] == (1, 4, 4) and x.dtype == torch.float32, (x.shape, x.dtype)
        return self.body(x)

class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.out = nn.Linear(4 * 5, 2)

    def forward(self, x):
        assert x.dtype == torch.int64, x.dtype
        return self.out(self.embed(x).flatten(1))

def wrong_width():
    return nn.Linear(3, 2)

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """A models file beside the data, the current directory, and an images NPZ and a tokens NPZ."""
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))            # the CLI puts the current directory first
    name = f"usermodels_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODELS)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(48, 1, 4, 4)) * 5 + 3               # not standardized: the model sees these values
    np.savez(tmp_path / "images.npz", X=images, y=(images.mean((1, 2, 3)) > 3).astype(int))
    tokens = rng.integers(0, 7, size=(48, 5))
    np.savez(tmp_path / "tokens.npz", X=tokens, y=(tokens[:, 0] > tokens[:, 1]).astype(int))
    return name


@pytest.mark.parametrize("data, factory, path", [("images.npz", "ConvNet", "folded"),
                                                 ("tokens.npz", "Tokens", "folded")])
def test_your_own_model_gets_the_data_as_stored(tmp_path, capsys, user_models, data, factory, path):
    code, out, err = run_cli(capsys, data, "--model", f"{user_models}:{factory}", "--lambdas", "1e-4,1e-1",
                             "--folds", "2", "--epochs", "2", "--batch-size", "8", "--out", tmp_path / factory)
    assert code == 0, err
    results = json.loads((tmp_path / factory / "results.json").read_text())
    assert len(results["table"]) == 4
    assert results["config"]["model"]["factory"] == f"{user_models}.{factory}"
    assert path in results["path"]


@pytest.mark.slow  # worker processes
def test_your_own_model_from_a_file_path_in_worker_processes(tmp_path, capsys, user_models, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, err = run_cli(capsys, "../images.npz", "--model", f"../{user_models}.py:ConvNet",
                             "--lambdas", "1e-4,1e-1",
                             "--folds", "2", "--epochs", "1", "--batch-size", "8", "--workers", "2",
                             "--engine", "batched", "--out", tmp_path / "w")    # not auto: its probe times the load
    assert code == 0, err
    assert "2 worker processes" in json.loads((tmp_path / "w" / "results.json").read_text())["path"]


@pytest.mark.parametrize("model, message", [
    ("resnet", "--model must be mlp, linear or MODULE:NAME (a class or function in an importable module"),
    ("nosuchmodule_xyz:Net", "--model 'nosuchmodule_xyz:Net': no module named 'nosuchmodule_xyz' in the current "
                             "directory or on PYTHONPATH"),
    ("{mod}:Nope", "has no attribute 'Nope'"),
    ("nets/missing.py:Net", "--model 'nets/missing.py:Net': no such file 'nets/missing.py'"),
    ("json.py:Net", "a module named 'json' is already imported from"),
    ("{mod}:NOT_CALLABLE", "is a int, not a class or function returning an nn.Module"),
    ("{mod}:wrong_width", "fails on 2 rows of the data (shape (2, 1, 4, 4), torch.float32): RuntimeError"),
])
def test_your_own_model_bad_input(tmp_path, capsys, user_models, model, message):
    (tmp_path / "json.py").write_text("Net = 1\n")         # shadows a module already imported
    code, out, err = run_cli(capsys, "images.npz", "--model", model.format(mod=user_models), "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("body, message", [
    ("import sys\nsys.exit(0)\n", "called sys.exit(0): guard the script part with `if __name__ == \"__main__\":`"),
    ("raise RuntimeError('no GPU here')\n", "failed: RuntimeError: no GPU here"),
])
def test_your_own_model_file_that_exits_or_raises_at_import(tmp_path, capsys, user_models, body, message):
    name = f"script_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(body)
    code, out, err = run_cli(capsys, "images.npz", "--model", f"{name}.py:Net", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and f"--model '{name}.py:Net': importing {name!r}" in err, err
    assert message in err, err
    assert not (tmp_path / "x").exists()                        # refused before anything was made


MANY_CLASSES = """
from torch import nn

def logits():
    return nn.Linear(3, 58)

def one_output():
    return nn.Linear(3, 1)
"""


@pytest.fixture
def many_classes(tmp_path, monkeypatch):
    """A 58-class integer target as an NPZ and a CSV, and a models file with a 58-logit and a 1-output model."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"manyclasses_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MANY_CLASSES)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(116, 3))
    y = np.arange(116) % 58
    np.savez(tmp_path / "many.npz", X=X, y=y)
    lines = ["a,b,c,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{t}" for (a, b, c), t in zip(X, y)]
    (tmp_path / "many.csv").write_text("\n".join(lines) + "\n")
    return name


@pytest.mark.parametrize("data", ["many.npz", "many.csv"])
def test_an_integer_target_with_many_classes_is_classification(tmp_path, capsys, many_classes, data):
    common = [data, "--target", "label"] if data.endswith(".csv") else [data]
    code, out, err = run_cli(capsys, *common, "--lambdas", "1e-4,1e-1", "--holdout", "0.5", "--out", tmp_path / "b",
                             *FAST)
    assert code == 0, err
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["metric"] == "accuracy" and results["config"]["train"]["loss"] == "cross_entropy"
    code, out, err = run_cli(capsys, *common, "--model", f"{many_classes}:logits", "--lambdas", "1e-4",
                             "--holdout", "0.5", "--epochs", "1", "--out", tmp_path / "u")
    assert code == 0, err
    code, out, err = run_cli(capsys, *common, "--model", f"{many_classes}:one_output", "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1, err
    assert "cross-entropy needs (2, classes) logits with at least 58 classes" in err, err
    assert err.rstrip().endswith("; if the target is values to predict, pass --task regression"), err
    code, out, err = run_cli(capsys, *common, "--model", f"{many_classes}:logits", "--task", "regression",
                             "--out", tmp_path / "c")
    assert code == 2 and err.count("\n") == 1, err
    assert err.rstrip().endswith("; if the target is class labels, pass --task classification"), err
    code, out, err = run_cli(capsys, *common, "--model", f"{many_classes}:one_output", "--task", "regression",
                             "--lambdas", "1e-4", "--holdout", "0.5", "--epochs", "1", "--out", tmp_path / "m")
    assert code == 0, err
    assert json.loads((tmp_path / "m" / "results.json").read_text())["config"]["train"]["loss"] == "mse"


def test_hidden_is_for_the_mlp_only(tmp_path, capsys, csv_file):
    code, _, err = run_cli(capsys, csv_file, "--target", "label", "--model", "linear", "--hidden", "8",
                           "--out", tmp_path / "h")
    assert code == 2 and "--hidden applies to --model mlp only, got --model 'linear' with --hidden '8'" in err
    assert not (tmp_path / "h").exists()                        # refused before anything was made


def test_your_own_model_with_the_evidence(tmp_path, capsys, user_models):
    code, out, err = run_cli(capsys, "tokens.npz", "--model", f"{user_models}:Tokens", "--method", "marglik",
                             "--epochs", "2", "--batch-size", "8", "--out", tmp_path / "m", "--no-progress")
    assert code == 0, err
    assert "evidence λ =" in out and (tmp_path / "m" / "evidence_curve.png").exists()
