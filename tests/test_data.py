import numpy as np
import pytest
import torch

from decaylab import data


@pytest.mark.parametrize("name", ["moons", "poly", "digits", "breast_cancer"])
def test_shapes_types_and_reproducible(name):
    d = data.load(name, seed=3)
    again = data.load(name, seed=3)
    other = data.load(name, seed=4)
    assert d.name == name
    for split in ("train", "val", "test"):
        s, s2 = d.split(split), again.split(split)
        assert s.X.ndim == 2 and s.X.shape == (len(s), d.n_features) and s.y.shape == (len(s),)
        assert s.X.dtype == torch.float32
        assert torch.equal(s.X, s2.X) and torch.equal(s.y, s2.y)
        if d.task == "classification":
            assert s.y.dtype == torch.int64 and 0 <= int(s.y.min()) and int(s.y.max()) < d.n_classes
        else:
            assert s.y.dtype == torch.float32
    assert not torch.equal(d.train.X, other.train.X)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["moons", "poly", "digits", "breast_cancer", "mnist1d"])
def test_splits_are_disjoint(name):
    d = data.load(name, seed=1, dtype=torch.float64)
    rows = [set(map(tuple, d.split(s).X.numpy().round(9).tolist())) for s in ("train", "val", "test")]
    assert rows[0].isdisjoint(rows[1]) and rows[0].isdisjoint(rows[2]) and rows[1].isdisjoint(rows[2])


def test_sizes_and_known_counts():
    d = data.load("digits")
    assert (len(d.train), len(d.val), len(d.test)) == (1077, 360, 360) and d.n_classes == 10
    b = data.load("breast_cancer")
    assert len(b.train) + len(b.val) + len(b.test) == 569 and b.n_classes == 2
    m = data.load("mnist1d", seed=0)
    assert (len(m.train), len(m.val), len(m.test), m.n_features) == (3000, 1000, 1000, 40)
    # the test split is mnist1d's own, the same for every seed; the val split follows the seed
    m1 = data.load("mnist1d", seed=1)
    assert torch.equal(m.test.X, m1.test.X) and not torch.equal(m.val.X, m1.val.X)
    small = data.load("digits", n_train=100)
    assert len(small.train) == 100 and len(small.val) == 360


def test_standardized_with_training_statistics():
    d = data.load("breast_cancer", dtype=torch.float64)
    assert torch.allclose(d.train.X.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(d.train.X.std(0, unbiased=False), torch.ones(30, dtype=torch.float64), atol=1e-10)
    assert d.test.X.mean(0).abs().max() > 1e-3  # test rows are scaled with the train statistics, not their own


def test_moons_label_noise_fraction_and_clean_test():
    d = data.load("moons", seed=2, n_train=300, n_val=100, n_test=500, label_noise=0.2)
    assert int(d.meta["flipped_train"].sum()) == 60 and int(d.meta["flipped_val"].sum()) == 20
    clean = data.load("moons", seed=2, n_train=300, n_val=100, n_test=500, label_noise=0.0)
    assert torch.equal(d.train.X, clean.train.X)
    changed = d.train.y != clean.train.y
    assert torch.equal(changed, d.meta["flipped_train"])
    assert torch.equal(d.test.y, clean.test.y)


def test_poly_targets_follow_the_noise_model():
    d = data.load("poly", seed=0, n_train=2000, noise=0.3, dtype=torch.float64)
    x, y = d.train.X[:, 0].numpy(), d.train.y.numpy()
    assert x.min() >= -1 and x.max() <= 1
    resid = y - data.poly_target(x)
    assert abs(resid.std() - 0.3) < 0.02 and abs(resid.mean()) < 0.03


def test_mnist1d_leaves_global_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    data.load("mnist1d")
    assert np.random.rand() == expected


def test_bad_input():
    with pytest.raises(ValueError, match="name must be one of 'moons', 'poly', 'digits', 'breast_cancer', 'mnist1d'"):
        data.load("cifar")
    with pytest.raises(ValueError, match="seed"):
        data.load("moons", seed=-1)
    with pytest.raises(ValueError, match="label_noise must be in"):
        data.load("moons", label_noise=0.7)
    with pytest.raises(ValueError, match="unknown bogus"):
        data.load("digits", bogus=1)
    with pytest.raises(TypeError, match="dtype"):
        data.load("poly", dtype=torch.int64)
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("poly").split("dev")


def test_train_and_val_and_dtype_cast():
    d = data.load("poly", seed=0)
    both = d.train_and_val()
    assert len(both) == len(d.train) + len(d.val)
    assert torch.equal(both.X[:len(d.train)], d.train.X) and torch.equal(both.y[len(d.train):], d.val.y)
    d64 = d.to(torch.float64)
    assert d64.train.X.dtype == torch.float64 and d64.test.y.dtype == torch.float64
    c64 = data.load("digits").to(torch.float64)
    assert c64.train.X.dtype == torch.float64 and c64.train.y.dtype == torch.int64  # labels stay integer
