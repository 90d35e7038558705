"""The SQLite results store: contents, no duplicates, hostile keys, concurrent writers."""

import math
import multiprocessing
import sqlite3

import pytest

from decaylab.sweeps.store import ResultStore, canonical_json, config_key


def test_put_get_rows_and_no_duplicates(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        assert store.put("k1", "s", {"weight_decay": 1e-3, "fold": 0}, {"val_loss": 0.5, "diverged": False})
        assert not store.put("k1", "s", {"weight_decay": 9.0}, {"val_loss": 9.0})   # same key: ignored
        assert store.put_many([("k2", "s", {"fold": 1}, {"val_loss": float("nan")}),
                               ("k3", "other", {"fold": 2}, {"val_loss": 0.1})]) == 2
        assert len(store) == 3
        got = store.get(["k1", "k2", "missing"])
        assert set(got) == {"k1", "k2"}
        assert got["k1"]["config"] == {"weight_decay": 1e-3, "fold": 0}
        assert got["k1"]["result"] == {"val_loss": 0.5, "diverged": False}
        assert got["k2"]["result"]["val_loss"] is None          # NaN is stored as JSON null
        assert [r["key"] for r in store.rows("s")] == ["k1", "k2"]
        assert len(store.rows()) == 3
    # the file is a plain SQLite database in WAL mode
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 3
    conn.close()


def test_hostile_keys_are_parameters_not_sql(tmp_path):
    nasty = "x'); DROP TABLE members; --"
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.put(nasty, nasty, {"q": nasty}, {"r": 1})
        assert store.get([nasty])[nasty]["config"] == {"q": nasty}
        assert len(store) == 1
        many = [f"k{i}" for i in range(1200)]                    # more keys than one IN (...) may hold
        store.put_many([(k, "s", {}, {"i": i}) for i, k in enumerate(many)])
        assert len(store.get(many)) == 1200


def test_config_key_is_canonical():
    a = config_key({"b": 1, "a": (1.0, 2)}, {"fold": 0})
    assert a == config_key({"a": [1.0, 2], "b": 1}, {"fold": 0})     # key order, tuple vs list
    assert a != config_key({"a": [1.0, 2], "b": 1}, {"fold": 1})
    assert canonical_json({"x": math.inf}) == '{"x":null}'


def test_bad_path(tmp_path):
    with pytest.raises(ValueError, match="store must be a file path in an existing directory"):
        ResultStore(tmp_path / "no" / "such" / "dir.sqlite")


def _writer(path, worker, n):
    with ResultStore(path, timeout=60) as store:
        for i in range(n):
            # overlapping keys across workers: each key must end up stored exactly once
            store.put(f"k{(worker * n // 2) + i}", "s", {"worker": worker}, {"i": i})


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResultStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with ResultStore(path) as store:
        assert len(store) == len({f"k{w * 20 + i}" for w in range(4) for i in range(40)}) == 100
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """``tmp_path/"ro"`` made read-only (file 0o444, directory 0o555); as root, where chmod does not stop writes,
    the store's writability check is also monkeypatched to see the location as read-only."""
    import os

    from decaylab.sweeps import store as store_module

    folder = tmp_path / "ro"
    folder.mkdir()

    def lock():
        for path in folder.iterdir():
            path.chmod(0o444)
        folder.chmod(0o555)
        if os.geteuid() == 0:                       # root writes through chmod: see the location as a user would
            monkeypatch.setattr(store_module, "_writable", lambda path: False)

    yield folder, lock
    folder.chmod(0o755)


def test_a_read_only_finished_store_is_read(read_only):
    from sklearn.datasets import make_moons

    import decaylab

    folder, lock = read_only
    data = make_moons(n_samples=60, noise=0.2, random_state=0)
    path = folder / "sweep.sqlite"
    kwargs = dict(folds=2, epochs=2, batch_size=16, hidden=(4,), lr=0.01, store=path)
    first = decaylab.sweep("mlp", data, [1e-4, 1e-2], **kwargs)
    lock()
    names, content = sorted(p.name for p in folder.iterdir()), path.read_bytes()
    again = decaylab.sweep("mlp", data, [1e-4, 1e-2], **kwargs)
    assert all(r["from_store"] for r in again.table) and len(again.table) == 4
    assert [r["val_loss"] for r in again.table] == [r["val_loss"] for r in first.table]
    with pytest.raises(ValueError, match=r"is read-only and 2 of 6 members are not in it: copy it to a writable "
                                         r"place \(e.g. cp .*sweep.sqlite ./sweep.sqlite\) and pass the copy"):
        decaylab.sweep("mlp", data, [1e-4, 1e-2, 1.0], **kwargs)
    with pytest.raises(ValueError, match="is read-only and 1 of 1 runs are not in it"):
        decaylab.sweep("mlp", data, None, method="marglik", epochs=1, hidden=(4,), store=path)
    with ResultStore(path) as store:
        assert store.read_only and len(store) == 4
        with pytest.raises(ValueError, match="is read-only and 1 of 1 members are not in it"):
            store.put("k", "s", {}, {})
    assert sorted(p.name for p in folder.iterdir()) == names and path.read_bytes() == content   # nothing written
