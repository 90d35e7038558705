"""Small reference datasets with fixed seeds and train/validation/test splits, as torch tensors.

Every loader returns a :class:`Dataset`: three :class:`Split` objects (``train``, ``val``,
``test``) holding ``X`` (float, shape ``[n, features]``) and ``y`` (``int64`` class labels for
classification, float targets of shape ``[n]`` for regression), the task type and the number of
classes. The same ``seed`` always gives the same tensors.

Datasets, by the name :func:`load` takes:

- ``"moons"``: scikit-learn's two moons (Gaussian coordinate noise ``noise``) with a fraction
  ``label_noise`` of the *train and validation* labels flipped (exactly ``round(label_noise·n)``
  per split; which ones is in ``meta["flipped_train"]`` / ``meta["flipped_val"]``). Test labels
  are clean, so test accuracy measures how well the true boundary is recovered.
- ``"poly"``: noisy 1-D regression, ``x ~ U[-1, 1]``, ``y = sin(πx) + ε``, ``ε ~ N(0, noise²)``;
  ``X`` is the raw ``x`` column (a polynomial model makes its own features). Test targets are
  noisy too, so test error is what a new sample costs.
- ``"digits"`` (8×8 digit images, 10 classes) and ``"breast_cancer"`` (30 features, 2 classes):
  scikit-learn's bundled sets, stratified 60/20/20 split.
- ``"mnist1d"``: MNIST-1D generated locally with its canonical arguments
  (``mnist1d.data.make_dataset(get_dataset_args())``, dataset seed 42, 4000 train / 1000 test,
  never downloaded); ``seed`` chooses which ``n_val`` of the 4000 are validation.

Features are standardized with the training split's mean and standard deviation (constant
features get a scale of 1) for every set except ``"poly"``, whose ``x`` already lies in
``[-1, 1]``, and ``"mnist1d"``, which its generator already centres and scales.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from decaylab._checks import InputError, InputTypeError
from decaylab._extras import needs

from ._checks import check_choice, check_int, check_real

DATASETS = ("moons", "poly", "digits", "breast_cancer", "mnist1d")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Split:
    """One split of a dataset: inputs ``X`` and targets ``y``, both tensors with ``len(X)`` rows."""

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A dataset with train/val/test splits, its task type and (for classification) class count."""

    name: str
    task: str                   # "classification" or "regression"
    train: Split
    val: Split
    test: Split
    n_classes: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.train.X.shape[1])

    def split(self, name: str) -> Split:
        """The split called ``name`` (one of "train", "val", "test")."""
        check_choice("split", name, ("train", "val", "test"))
        return getattr(self, name)

    def train_and_val(self) -> Split:
        """Training and validation rows together (for cross-validation over both)."""
        return Split(torch.cat([self.train.X, self.val.X]), torch.cat([self.train.y, self.val.y]))

    def to(self, dtype: torch.dtype) -> Dataset:
        """The same dataset with float tensors (``X``, and ``y`` for regression) cast to ``dtype``."""
        def cast(s: Split) -> Split:
            y = s.y.to(dtype) if self.task == "regression" else s.y
            return Split(s.X.to(dtype), y)
        return replace(self, train=cast(self.train), val=cast(self.val), test=cast(self.test))


def load(name: str, *, seed: int = 0, dtype: torch.dtype = torch.float32, **options) -> Dataset:
    """Load the dataset called ``name`` (see the module docstring for each one and its options).

    ``seed`` fixes the sampling, the split and any label noise; ``dtype`` is the float type of
    the inputs (and of regression targets). Options per dataset (defaults in brackets):

    - moons: ``n_train`` [200], ``n_val`` [200], ``n_test`` [1000], ``noise`` [0.25],
      ``label_noise`` [0.1]
    - poly: ``n_train`` [20], ``n_val`` [20], ``n_test`` [200], ``noise`` [0.3]
    - digits, breast_cancer: ``n_train`` [all of the 60 % split] to subsample the training split
    - mnist1d: ``n_val`` [1000], ``n_train`` [the rest of the 4000] to subsample the training split
    """
    check_choice("name", name, DATASETS)
    seed = check_int("seed", seed, low=0)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise InputTypeError(f"dtype must be a torch floating dtype, got {dtype!r}")
    loader = _LOADERS[name]
    allowed = loader.options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"{name} takes options {', '.join(allowed) or '(none)'}, got unknown {', '.join(unknown)}")
    return loader(seed=seed, **options).to(dtype)


def _options(*names):
    def mark(fn):
        fn.options = names
        return fn
    return mark


@_options("n_train", "n_val", "n_test", "noise", "label_noise")
def _moons(*, seed, n_train=200, n_val=200, n_test=1000, noise=0.25, label_noise=0.1) -> Dataset:
    with needs("sweep", "the two-moons data"):
        from sklearn.datasets import make_moons

    sizes = [check_int(k, v, low=1) for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))]
    noise = check_real("noise", noise, low=0.0)
    label_noise = check_real("label_noise", label_noise, low=0.0, high=0.5)
    X, y = make_moons(n_samples=sum(sizes), noise=noise, random_state=seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    parts = np.split(np.arange(len(y)), np.cumsum(sizes)[:-1])
    meta = {"noise": noise, "label_noise": label_noise}
    for split_name, idx in zip(("train", "val"), parts[:2]):
        flipped = np.zeros(len(idx), dtype=bool)
        flipped[rng.choice(len(idx), size=int(round(label_noise * len(idx))), replace=False)] = True
        y[idx[flipped]] = 1 - y[idx[flipped]]
        meta[f"flipped_{split_name}"] = torch.from_numpy(flipped)
    splits = _standardized([(X[i], y[i]) for i in parts])
    return Dataset("moons", "classification", *splits, n_classes=2, meta=meta)


def poly_target(x):
    """The noise-free function behind the "poly" dataset: ``sin(πx)``."""
    return np.sin(np.pi * np.asarray(x))


@_options("n_train", "n_val", "n_test", "noise")
def _poly(*, seed, n_train=20, n_val=20, n_test=200, noise=0.3) -> Dataset:
    sizes = [check_int(k, v, low=1) for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))]
    noise = check_real("noise", noise, low=0.0)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=sum(sizes))
    y = poly_target(x) + noise * rng.standard_normal(len(x))
    parts = np.split(np.arange(len(x)), np.cumsum(sizes)[:-1])
    splits = [_to_split(x[i, None], y[i], regression=True) for i in parts]
    return Dataset("poly", "regression", *splits, meta={"noise": noise, "target": "sin(pi x)"})


def _sklearn_set(name: str, bunch_loader):
    @_options("n_train")
    def loader(*, seed, n_train=None) -> Dataset:
        with needs("sweep", "splitting a built-in dataset"):
            from sklearn.model_selection import train_test_split

        bunch = bunch_loader()
        X, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
        X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
        X_tr, X_val, y_tr, y_val = train_test_split(X_rest, y_rest, test_size=0.25, random_state=seed,
                                                    stratify=y_rest)
        X_tr, y_tr = _subsample(X_tr, y_tr, n_train, seed)
        splits = _standardized([(X_tr, y_tr), (X_val, y_val), (X_test, y_test)])
        return Dataset(name, "classification", *splits, n_classes=int(y.max()) + 1)
    return loader


def _digits():
    with needs("sweep", "the digits data"):
        from sklearn.datasets import load_digits
    return load_digits()


def _breast_cancer():
    with needs("sweep", "the breast-cancer data"):
        from sklearn.datasets import load_breast_cancer
    return load_breast_cancer()


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays():
    """MNIST-1D from its generator, leaving the global NumPy/random state as it was."""
    import random

    with needs("sweep", "the MNIST-1D data"):
        from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in arrays:
        a.setflags(write=False)
    return arrays


@_options("n_train", "n_val")
def _mnist1d(*, seed, n_train=None, n_val=1000) -> Dataset:
    X, y, X_test, y_test = _mnist1d_arrays()
    n_val = check_int("n_val", n_val, low=1, high=len(y) - 1)
    order = np.random.default_rng(seed).permutation(len(y))
    val, train = order[:n_val], order[n_val:]
    X_tr, y_tr = _subsample(X[train], y[train], n_train, seed)
    splits = [_to_split(a, b) for a, b in ((X_tr, y_tr), (X[val], y[val]), (X_test, y_test))]
    return Dataset("mnist1d", "classification", *splits, n_classes=10)


def _subsample(X, y, n, seed):
    if n is None:
        return X, y
    n = check_int("n_train", n, low=1, high=len(y))
    keep = np.sort(np.random.default_rng(seed + 1).permutation(len(y))[:n])
    return X[keep], y[keep]


def _standardized(parts) -> list[Split]:
    """Splits from (X, y) arrays, features scaled by the first (training) part's mean and std."""
    X_train = parts[0][0]
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0
    return [_to_split((X - mean) / std, y) for X, y in parts]


def _to_split(X, y, *, regression: bool = False) -> Split:
    X = torch.tensor(np.asarray(X), dtype=torch.float64)
    y = torch.tensor(np.asarray(y), dtype=torch.float64 if regression else torch.int64)
    return Split(X, y)


_LOADERS = {
    "moons": _moons,
    "poly": _poly,
    "digits": _sklearn_set("digits", _digits),
    "breast_cancer": _sklearn_set("breast_cancer", _breast_cancer),
    "mnist1d": _mnist1d,
}
