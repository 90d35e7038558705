"""decaylab's plots never touch the user's matplotlib state: the backend stays whatever it was and no figure is
left open in pyplot (figures are ``Figure()`` objects from ``decaylab._figures``)."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import decaylab
from decaylab.cli import main
from decaylab.diagnostics.monitor import DecayMonitor


@pytest.fixture
def svg_backend():
    """A non-Agg backend, as a notebook's inline or widget backend would be; the previous one comes back after."""
    before = matplotlib.get_backend()
    plt.close("all")
    matplotlib.use("svg")
    yield "svg"
    plt.close("all")
    matplotlib.use(before)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


@pytest.mark.slow
def test_plots_and_reports_keep_the_users_backend_and_open_no_pyplot_figure(svg_backend, tmp_path, capsys):
    data = _data()
    grid = decaylab.sweep("mlp", data, [0.0, 1e-3, 1e-1], hidden=(8,), folds=2, epochs=2, batch_size=20)
    marglik = decaylab.sweep("mlp", data, None, method="marglik", hidden=(8,), epochs=2, batch_size=20, lr=0.01)
    for result in (grid, marglik):
        assert result.plot().axes and result.plot_png().startswith(b"\x89PNG")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    monitor = DecayMonitor(model, opt)
    model(torch.randn(8, 3)).square().mean().backward()
    opt.step()
    assert monitor.plot().axes
    path = tmp_path / "data.npz"
    np.savez(path, X=data[0], y=data[1])
    for extra in (["--lambdas", "0,1e-3,1e-1", "--folds", "2"], ["--method", "marglik"]):
        out = tmp_path / extra[1].replace(",", "_")
        assert main(["sweep", str(path), *extra, "--hidden", "8", "--epochs", "2", "--batch-size", "20",
                     "--no-progress", "--out", str(out)]) == 0, capsys.readouterr().err
        assert (out / "index.html").stat().st_size > 0
    assert matplotlib.get_backend() == svg_backend
    assert plt.get_fignums() == []
