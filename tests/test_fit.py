import json
import math

import pytest
import torch

from decaylab import data, models
from decaylab.train import Callback, EarlyStopping, fit


def _moons_mlp(seed=0, **kw):
    d = data.load("moons", seed=0, n_train=64, n_val=32, n_test=32)
    return d, models.build("mlp", in_features=2, out_features=2, hidden=(16,), seed=seed, **kw)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, state):
        self.events.append(("begin", state.epoch, state.step))

    def on_step_end(self, state):
        assert isinstance(state.loss, float)
        self.events.append(("step", state.epoch, state.step))

    def on_epoch_end(self, state):
        assert state.history.epoch[-1] == state.epoch  # the epoch's metrics are in before the hook
        self.events.append(("epoch", state.epoch, state.step))

    def on_train_end(self, state):
        self.events.append(("end", state.epoch, state.step))


def test_history_contents():
    d, m = _moons_mlp()
    h = fit(m, torch.optim.SGD(m.parameters(), lr=0.1), d, epochs=3, batch_size=16)
    assert h.epoch == [1, 2, 3] and h.step == [4, 8, 12] and h.lr == [0.1] * 3
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        values = getattr(h, key)
        assert len(values) == 3 and all(isinstance(v, float) and math.isfinite(v) for v in values)
    # the last epoch's numbers are those of the trained model on each whole split
    with torch.no_grad():
        for split, loss, acc in (("train", h.train_loss[-1], h.train_acc[-1]), ("val", h.val_loss[-1], h.val_acc[-1])):
            X, y = d.split(split).X, d.split(split).y
            out = m(X)
            assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-6)
            assert acc == pytest.approx(float((out.argmax(1) == y).double().mean()), abs=1e-12)
    assert set(h.weight_norms) == {n for n, _ in m.named_parameters()}
    assert h.weight_norms["layers.0.weight"][-1] == pytest.approx(float(m.layers[0].weight.detach().norm()), rel=1e-6)
    assert h.total_weight_norm() == pytest.approx(models.weight_norm(m), rel=1e-6)
    assert json.loads(json.dumps(h.to_dict()))["epoch"] == [1, 2, 3]
    assert h.train_loss[-1] < h.train_loss[0]  # it learns


def test_regression_history_has_no_accuracy_and_no_val():
    d = data.load("poly")
    m = models.build("poly", degree=3)
    h = fit(m, torch.optim.SGD(m.parameters(), lr=0.1), (d.train.X, d.train.y), epochs=2, batch_size=None)
    assert h.train_acc == [None, None] and h.val_loss == [None, None] and h.step == [1, 2]


def test_callbacks_fire_in_order():
    d, m = _moons_mlp()
    rec = Recorder()
    fit(m, torch.optim.SGD(m.parameters(), lr=0.1), d, epochs=2, batch_size=32, callbacks=[rec])
    assert rec.events == [("begin", 0, 0), ("step", 1, 1), ("step", 1, 2), ("epoch", 1, 2),
                          ("step", 2, 3), ("step", 2, 4), ("epoch", 2, 4), ("end", 2, 4)]


def test_stop_from_a_callback_ends_after_the_current_step():
    class StopAtStep3(Callback):
        def on_step_end(self, state):
            state.stop = state.step == 3

    d, m = _moons_mlp()
    rec = Recorder()
    h = fit(m, torch.optim.SGD(m.parameters(), lr=0.1), d, epochs=5, batch_size=16, callbacks=[StopAtStep3(), rec])
    assert h.step == [3] and rec.events[-2:] == [("epoch", 1, 3), ("end", 1, 3)]


def test_early_stopping_stops_and_restores_the_best_epoch():
    # validation labels are the opposite of the training labels: val loss gets worse every epoch
    d, m = _moons_mlp()
    X_val, y_val = d.train.X, 1 - d.train.y
    h = fit(m, torch.optim.SGD(m.parameters(), lr=0.5), (d.train.X, d.train.y, X_val, y_val),
            epochs=50, batch_size=None, early_stopping=3)
    assert h.epoch == [1, 2, 3, 4] and h.best_epoch == 1 and h.stopped_epoch == 4
    assert h.val_loss[1] > h.val_loss[0]
    assert float(m.layers[0].weight.detach().norm()) == pytest.approx(h.weight_norms["layers.0.weight"][0], rel=1e-6)
    # off by default: all epochs run
    d, m = _moons_mlp()
    h = fit(m, torch.optim.SGD(m.parameters(), lr=0.5), (d.train.X, d.train.y, X_val, y_val), epochs=6,
            batch_size=None)
    assert len(h) == 6 and h.stopped_epoch is None


def test_early_stopping_on_accuracy_with_patience():
    d, m = _moons_mlp()
    stopper = EarlyStopping(patience=2, monitor="val_acc", restore_best=False)
    h = fit(m, torch.optim.SGD(m.parameters(), lr=0.0), d, epochs=10, batch_size=None, early_stopping=stopper)
    assert len(h) == 3 and h.best_epoch == 1  # lr=0: nothing ever improves


def test_deterministic_given_seed_including_dropout():
    runs = []
    for seed in (7, 7, 8):
        d, m = _moons_mlp(seed=0, dropout=0.3)
        runs.append(fit(m, torch.optim.Adam(m.parameters(), lr=1e-2), d, epochs=3, batch_size=16, seed=seed))
    assert runs[0].to_dict() == runs[1].to_dict()
    assert runs[0].train_loss != runs[2].train_loss


def test_scheduler_per_epoch_and_per_step():
    d, m = _moons_mlp()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    h = fit(m, opt, d, epochs=3, batch_size=None, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))
    assert h.lr == [1.0, 0.5, 0.25]
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    h = fit(m, opt, d, epochs=2, batch_size=32, scheduler=torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
            scheduler_interval="step")
    assert h.lr == [1.0, 0.25]


def test_full_batch_gradient_descent_reaches_ridge():
    """GD on mean((Xw − y)²) with coupled weight_decay = 2λ converges to (XᵀX/n + λI)⁻¹ Xᵀy/n."""
    d = data.load("poly", dtype=torch.float64)
    m = models.build("poly", degree=4, dtype=torch.float64)
    lam = 0.05
    opt = torch.optim.SGD(m.parameters(), lr=0.5, weight_decay=2 * lam)
    fit(m, opt, d, epochs=600, batch_size=None)
    Phi, y = m.features(d.train.X), d.train.y
    n = len(y)
    ridge = torch.linalg.solve(Phi.T @ Phi / n + lam * torch.eye(5, dtype=torch.float64), Phi.T @ y / n)
    torch.testing.assert_close(m.linear.weight[0].detach(), ridge, atol=1e-9, rtol=0)


def test_lbfgs_closure_works():
    d = data.load("poly", dtype=torch.float64)
    m = models.build("poly", degree=3, dtype=torch.float64)
    opt = torch.optim.LBFGS(m.parameters(), lr=1, max_iter=100, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-14, tolerance_change=1e-16, history_size=10)
    h = fit(m, opt, d, epochs=2, batch_size=None)
    Phi = m.features(d.train.X)
    lstsq = torch.linalg.lstsq(Phi, d.train.y[:, None]).solution[:, 0]
    torch.testing.assert_close(m.linear.weight[0].detach(), lstsq, atol=1e-7, rtol=0)
    assert h.train_loss[-1] <= h.train_loss[0]


def test_bad_input():
    d, m = _moons_mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"epochs must be an integer in \[1, inf\], got 0"):
        fit(m, opt, d, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        fit(m, opt, d, epochs=1, batch_size=0)
    with pytest.raises(TypeError, match="data must be a decaylab.data.Dataset"):
        fit(m, opt, [[1.0, 2.0]], epochs=1)
    with pytest.raises(ValueError, match="loss must be one of 'cross_entropy', 'mse'"):
        fit(m, opt, d, epochs=1, loss="hinge")
    with pytest.raises(ValueError, match="as many rows"):
        fit(m, opt, (d.train.X, d.train.y[:3]), epochs=1)
    with pytest.raises(ValueError, match="scheduler_interval"):
        fit(m, opt, d, epochs=1, scheduler_interval="batch")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


def test_eval_every_records_every_kth_and_the_last_epoch():
    d, m = _moons_mlp()
    rec = Recorder()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    h = fit(m, opt, d, epochs=5, batch_size=None, eval_every=2, callbacks=[rec],
            scheduler=torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))
    assert h.epoch == [2, 4, 5] and h.step == [2, 4, 5] and h.lr == [0.5, 0.125, 0.0625]
    assert [e for e in rec.events if e[0] == "epoch"] == [("epoch", 2, 2), ("epoch", 4, 4), ("epoch", 5, 5)]
    assert all(len(v) == 3 for v in h.weight_norms.values())
    with pytest.raises(ValueError, match="eval_every"):
        fit(m, opt, d, epochs=1, eval_every=0)


def test_progress_bar_goes_to_stderr(capsys):
    d, m = _moons_mlp()
    fit(m, torch.optim.SGD(m.parameters(), lr=0.1), d, epochs=3, batch_size=None, progress="moons")
    out, err = capsys.readouterr()
    assert out == "" and "moons" in err and "/3" in err
