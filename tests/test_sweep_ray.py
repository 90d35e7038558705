"""The Ray engine on a local Ray instance started here: same results as batched, rows written by workers."""

import sqlite3

import numpy as np
import pytest
import ray  # the optional extra decaylab[ray]; part of the dev extra, so CI has it

import decaylab

pytestmark = pytest.mark.slow  # starts a local Ray instance (~40 s)


def test_ray_engine_matches_batched_and_fills_the_store(tmp_path):
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=120, noise=0.2, random_state=0)
    data = (X.astype(np.float32), y)
    kwargs = dict(folds=2, epochs=4, batch_size=16, hidden=(8,), lr=0.01)
    store = tmp_path / "ray.sqlite"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = decaylab.sweep("mlp", data, [0.0, 1e-3, 1e-1], engine="ray", store=str(store), **kwargs)
        # Muon (with its AdamW companion) and Lion take the Ray engine too, with the batched engine's numbers
        others = {name: decaylab.sweep("mlp", data, [1e-3, 1e-1], engine="ray", optimizer=name, **kwargs)
                  for name in ("muon", "lion")}
    finally:
        ray.shutdown()
    for name, result in others.items():
        alone = decaylab.sweep("mlp", data, [1e-3, 1e-1], engine="batched", optimizer=name, **kwargs)
        assert result.engine == "ray" and result.trained == 4, name
        for a, b in zip(result.table, alone.table):
            assert a["key"] == b["key"], name
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5), name
    batched = decaylab.sweep("mlp", data, [0.0, 1e-3, 1e-1], engine="batched", **kwargs)
    assert on_ray.engine == "ray" and on_ray.trained == 6
    assert on_ray.path == "ray: one Ray Tune trial per chunk of members trained batched"
    for a, b in zip(on_ray.table, batched.table):
        assert a["key"] == b["key"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert on_ray.best_lambda == batched.best_lambda
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM members").fetchone() == (6, 6)
    conn.close()
    # the store the workers wrote is the one a later sweep resumes from
    again = decaylab.sweep("mlp", data, [0.0, 1e-3, 1e-1], engine="batched", store=str(store), **kwargs)
    assert again.trained == 0
