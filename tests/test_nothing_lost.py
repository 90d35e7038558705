"""Nothing lost, nothing silently wrong: atomic sweep outputs, refused inputs that would skew the
statistics, runaway losses, stores that are not ours, and data files that are not what they claim."""

import errno
import gzip
import os
import sqlite3

import numpy as np
import pytest
import torch

import decaylab
import decaylab._files
from decaylab._checks import InputError
from decaylab.batched.trainer import Member, TrainConfig, train_alone, train_batched
from decaylab.cli import main
from decaylab.cli.sweep import write_outputs
from decaylab.sweeps.store import ResultStore
from decaylab.train.divergence import RUNAWAY_FACTOR, diverging, runaway_limit

FAST = dict(folds=2, epochs=2, batch_size=16, hidden=(8,), lr=0.01)
CLI_FAST = ["--epochs", "2", "--batch-size", "16", "--hidden", "8", "--folds", "2", "--lambdas", "1e-4,1e-2",
            "--no-progress"]


def moons(n=120):
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=0.2, random_state=0)
    return X.astype(np.float32), y


def run_cli(capsys, *argv):
    code = main(["sweep", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- outputs: written all together or not at all -------------------------------------------------

def fail_third_fsync(monkeypatch) -> list:
    """``os.fsync`` that fails on its third call (the third file hits a full disk); returns the calls seen."""
    calls = []
    real_fsync = os.fsync

    def full_disk(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(decaylab._files.os, "fsync", full_disk)
    return calls


def test_failed_write_keeps_the_previous_outputs_whole(tmp_path, monkeypatch):
    first = decaylab.sweep("mlp", moons(), [1e-4, 1e-2], **FAST)
    write_outputs(first, tmp_path, "moons")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"results.json", "results.csv", "validation_curve.png", "index.html", "summary.json"}

    second = decaylab.sweep("mlp", moons(), [1e-3, 1e-1, 1.0], **FAST)
    fail_third_fsync(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        write_outputs(second, tmp_path, "moons")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before                   # the previous set, byte for byte, and no temporary files


def test_cli_full_disk_is_one_line_and_keeps_the_store(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(decaylab._files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "writing the results failed", "unchanged", "sweep.sqlite")
    assert not (tmp_path / "o" / "results.json").exists()
    with ResultStore(tmp_path / "o" / "sweep.sqlite") as store:
        assert len(store) == 4                # every member kept: the rerun trains nothing
    monkeypatch.undo()
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--out", tmp_path / "o")
    assert code == 0 and "0 trained, 4 from the store" in out


MARGLIK_FAST = ["--method", "marglik", "--epochs", "2", "--batch-size", "16", "--hidden", "8", "--no-progress"]


@pytest.mark.slow
def test_marglik_failed_write_keeps_the_previous_outputs_whole_and_the_runs_stored(tmp_path, capsys, monkeypatch):
    out_dir, store = tmp_path / "o", tmp_path / "runs.sqlite"
    code, out, err = run_cli(capsys, "moons", *MARGLIK_FAST, "--out", out_dir, "--store", store)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert set(before) == {"results.json", "results.csv", "evidence_curve.png", "index.html", "summary.json"}

    calls = fail_third_fsync(monkeypatch)
    code, out, err = run_cli(capsys, "moons", *MARGLIK_FAST, "--seeds", "0,1", "--out", out_dir, "--store", store)
    assert_one_line_error(code, err, "writing the results failed", "unchanged", "runs.sqlite")
    assert len(calls) == 3
    after = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert after == before                   # the previous set, byte for byte, and no temporary files
    monkeypatch.undo()
    code, out, err = run_cli(capsys, "moons", *MARGLIK_FAST, "--seeds", "0,1", "--out", out_dir, "--store", store)
    assert code == 0 and "0 trained, 2 from the store" in out


def test_results_json_as_a_directory_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "results.json").mkdir()
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--out", tmp_path)
    assert_one_line_error(code, err, "results.json")
    assert not (tmp_path / "sweep.sqlite").exists()


def test_marglik_evidence_curve_png_as_a_directory_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "evidence_curve.png").mkdir()
    code, out, err = run_cli(capsys, "moons", *MARGLIK_FAST, "--out", tmp_path)
    assert_one_line_error(code, err, "evidence_curve.png")
    assert not (tmp_path / "sweep.sqlite").exists()


def test_unusable_out_dir(capsys):
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--out", "/proc/decaylab-out")
    assert_one_line_error(code, err, "--out", "/proc/decaylab-out")


# --- statistics that would be silently wrong ---------------------------------------------------

def test_repeated_seeds_are_refused(capsys, tmp_path):
    with pytest.raises(InputError, match="seed must not repeat"):
        decaylab.sweep("mlp", moons(), [1e-3], seed=[0, 0], **FAST)
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--seeds", "0,0", "--out", tmp_path)
    assert_one_line_error(code, err, "seed must not repeat")


@pytest.mark.parametrize("seed", [2**63, -1])
def test_seed_out_of_range(capsys, tmp_path, seed):
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--seeds", seed, "--out", tmp_path)
    assert_one_line_error(code, err, "seed")


def test_split_seed_and_holdout_fail_before_sklearn(capsys, tmp_path):
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--split-seed", 2**33, "--out", tmp_path)
    assert_one_line_error(code, err, "split_seed")
    code, out, err = run_cli(capsys, "digits", "--epochs", "1", "--holdout", "0.999", "--no-progress",
                             "--out", tmp_path)
    assert_one_line_error(code, err, "holdout")


def test_factory_without_a_stable_name_is_refused_with_a_store(tmp_path):
    def make_a():
        return torch.nn.Linear(2, 2)

    with pytest.raises(InputError, match="model_key="):
        decaylab.sweep(lambda: torch.nn.Linear(2, 2), moons(), [1e-3], store=str(tmp_path / "s.sqlite"), **FAST)
    with pytest.raises(InputError, match="model_key="):
        decaylab.sweep(make_a, moons(), [1e-3], store=str(tmp_path / "s.sqlite"), **FAST)
    # two different lambdas keyed apart share nothing; without a store a lambda is fine
    a = decaylab.sweep(lambda: torch.nn.Linear(2, 2), moons(), [1e-3], store=str(tmp_path / "s.sqlite"),
                       model_key="linear", **FAST)
    b = decaylab.sweep(lambda: torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
                       moons(), [1e-3], store=str(tmp_path / "s.sqlite"), model_key="mlp8", **FAST)
    assert a.trained == 2 and b.trained == 2
    assert decaylab.sweep(lambda: torch.nn.Linear(2, 2), moons(), [1e-3], **FAST).trained == 2


def test_single_class_target_is_refused():
    X, _ = moons()
    with pytest.raises(InputError, match="single class"):
        decaylab.sweep("mlp", (X, np.zeros(len(X), dtype=np.int64)), [1e-3], **FAST)


def test_folds_above_a_class_count_warn_that_folds_are_not_stratified():
    X, y = moons(60)
    y = y.copy()
    y[:] = 0
    y[:2] = 1                                   # class 1 has 2 rows, fewer than 3 folds
    with pytest.warns(UserWarning, match="not stratified"):
        decaylab.sweep("mlp", (X, y), [1e-3], **{**FAST, "folds": 3})


def test_oversize_grid_is_refused_at_once(capsys, tmp_path):
    code, out, err = run_cli(capsys, "moons", "--lambdas", "1e-6:1:2000000", "--out", tmp_path)
    assert_one_line_error(code, err, "2,000,000", "at most")
    with pytest.raises(InputError, match="members"):
        decaylab.sweep("mlp", moons(), list(np.linspace(0, 1, 60_000)), **{**FAST, "lr": [1e-3, 1e-2]})


def test_values_that_overflow_the_training_dtype_are_refused():
    X, y = moons()
    with pytest.raises(InputError, match="beyond torch.float32"):
        decaylab.sweep("mlp", (X.astype(np.float64) * 1e300, y), [1e-3], **FAST)
    with pytest.raises(InputError, match="data y holds values up to 1e"):
        decaylab.sweep("mlp", (X, np.full(len(X), 1e300)), [1e-3], **FAST)


# --- runaway losses ---------------------------------------------------------------------------

def test_runaway_limit_and_check():
    y = torch.tensor([0, 1, 2, 3])
    assert runaway_limit("cross_entropy", y) == pytest.approx(RUNAWAY_FACTOR * np.log(4))
    assert runaway_limit("mse", torch.tensor([100.0, -100.0])) == pytest.approx(RUNAWAY_FACTOR * 1e4)
    limit = runaway_limit("cross_entropy", y)
    flags = diverging(torch.tensor([1.0, 1e35, float("nan"), float("inf"), limit * 0.99]), limit)
    assert flags.tolist() == [False, True, True, True, False]


@pytest.mark.parametrize("trainer", [train_alone, train_batched])
def test_runaway_loss_is_diverged(trainer):
    X, y = moons()
    config = TrainConfig.from_options(optimizer="sgd", epochs=5, batch_size=16)
    members = [Member(0.0, 1000.0, 0), Member(0.0, 0.01, 0)]
    factory = lambda: torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))  # noqa: E731
    runaway, fine = trainer(factory, X, y, members, config)
    assert runaway.diverged and np.isnan(runaway.train_loss)
    assert not fine.diverged and np.isfinite(fine.train_loss)


# --- stores that are not a decaylab store -------------------------------------------------------

@pytest.mark.parametrize("content", [b"random bytes, not a database at all" * 40,
                                     b"SQLite format 3\x00" + b"\x07" * 50])
def test_corrupt_store_is_one_line_and_left_untouched(tmp_path, capsys, content):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.sqlite"):
        ResultStore(path)
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--store", path, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "bad.sqlite", "--store")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bad")) == ["bad.sqlite"]


def test_truncated_store(tmp_path):
    path = tmp_path / "s.sqlite"
    decaylab.sweep("mlp", moons(), [1e-4, 1e-3, 1e-2], store=str(path), **FAST)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(InputError, match="cannot be used"):
        ResultStore(path)


def test_another_apps_database_is_left_untouched(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(InputError, match="not a decaylab results store"):
        ResultStore(path)
    assert path.read_bytes() == before


def test_store_paths_that_cannot_work(tmp_path, capsys):
    with pytest.raises(InputError, match="is a directory"):
        ResultStore(tmp_path)
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--store", tmp_path, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "is a directory")
    code, out, err = run_cli(capsys, "moons", *CLI_FAST, "--store", "/proc/decaylab.sqlite", "--out", tmp_path / "o")
    assert_one_line_error(code, err, "/proc/decaylab.sqlite")


# --- data files that are not what they claim ------------------------------------------------------

def npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_npz_problems_name_the_file(tmp_path, capsys):
    X, y = moons()
    cases = {
        "npy.npz": lambda p: p.write_bytes(npy_bytes(X)),
        "empty.npz": lambda p: write_npz(p, X=np.zeros((0, 2)), y=np.zeros(0)),
        "scalar.npz": lambda p: write_npz(p, X=np.float64(1.0), y=np.float64(1.0)),
        "bytes.npz": lambda p: p.write_bytes(os.urandom(500)),
        "objects.npz": lambda p: write_npz(p, X=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3)),
        "nan.npz": lambda p: write_npz(p, X=np.where(np.arange(len(X))[:, None] == 7, np.nan, X), y=y),
    }
    for name, make in cases.items():
        path = tmp_path / name
        make(path)
        code, out, err = run_cli(capsys, path, *CLI_FAST, "--out", tmp_path / "o")
        assert_one_line_error(code, err, name)
    assert "row 7" in run_cli(capsys, tmp_path / "nan.npz", *CLI_FAST, "--out", tmp_path / "o")[2]


def csv_text(X, y, header="a,b,label"):
    return header + "\n" + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(X, y))


def test_csv_problems(tmp_path, capsys):
    X, y = moons()
    gz = tmp_path / "gz.csv"
    gz.write_bytes(gzip.compress(csv_text(X, y).encode()))
    code, out, err = run_cli(capsys, gz, "--target", "label", *CLI_FAST, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "gzip")

    dup = tmp_path / "dup.csv"
    dup.write_text(csv_text(X, y, header="a,a,label"))
    code, out, err = run_cli(capsys, dup, "--target", "label", *CLI_FAST, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "repeats", "'a'")

    nan = tmp_path / "nan.csv"
    rows = csv_text(X, y).splitlines()
    rows[5] = "0.1,inf,1"
    nan.write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, nan, "--target", "label", *CLI_FAST, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "column 'b'", "line 6")

    code, out, err = run_cli(capsys, tmp_path, "--target", "label", *CLI_FAST, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "is a directory")


def test_csv_with_a_byte_order_mark_reads_like_without(tmp_path, capsys):
    X, y = moons()
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_text(csv_text(X, y), encoding="utf-8")
    bom.write_text(csv_text(X, y, header="label_first_is_not_needed,b,label").replace(
        "label_first_is_not_needed", "a"), encoding="utf-8-sig")
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")
    results = []
    for path in (plain, bom):
        code, out, err = run_cli(capsys, path, "--target", "label", *CLI_FAST, "--out", tmp_path / path.stem)
        assert code == 0, err
        results.append((tmp_path / path.stem / "results.csv").read_text().splitlines()[1].split(",")[4:8])
    assert results[0] == results[1]


def test_huge_feature_column_is_standardized_not_zeroed():
    import torch

    from decaylab.batched.standardization import Standardization

    def standardize(X):
        X = torch.as_tensor(X)
        return Standardization.fit(X).apply(X).numpy()

    rng = np.random.default_rng(0)
    small = rng.normal(size=(50, 2))
    huge = small.copy()
    huge[:, 1] *= 1e307                          # squares overflow float64
    np.testing.assert_allclose(standardize(huge), standardize(small), rtol=1e-5, atol=1e-6)
    assert float(np.abs(standardize(huge)[:, 1]).max()) > 1


def test_huge_regression_target_is_one_line(tmp_path, capsys):
    X, _ = moons()
    path = write_npz(tmp_path / "big.npz", X=X, y=np.linspace(-1e300, 1e300, len(X)))
    code, out, err = run_cli(capsys, path, *CLI_FAST, "--out", tmp_path / "o")
    assert_one_line_error(code, err, "float32", "rescale")
