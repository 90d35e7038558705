"""Benchmark: a cross-validated λ sweep with decaylab (batched, sequential) against scikit-learn GridSearchCV.

The task (issue 4): digits (1797 images, 64 standardized features, 10 classes), an MLP
64-128-10 (ReLU), Adam with coupled L2 decay, lr 1e-3, 16 λ log-spaced × 5 stratified folds
(the same folds for everyone), 50 epochs, batch 64. Runs, in the same process:

- ``GridSearchCV(MLPClassifier(alpha=…), n_jobs=2)``, early stopping off (exactly 50 epochs);
- ``GridSearchCV(skorch.NeuralNetClassifier(the same torch MLP), n_jobs=2)`` over torch Adam's
  ``weight_decay`` = λ (coupled, biases not decayed, as decaylab), no internal validation split —
  the tool a torch user picks for a cross-validated grid (issue 11; skipped if skorch is missing);
- ``decaylab.sweep(engine="sequential")`` — the 80 members one at a time;
- ``decaylab.sweep(engine="batched")`` — the 80 members as one stacked model;

and prints wall times, ratios, the best λ and best CV accuracy of each, and the achieved
GFLOP/s of the batched run next to a large float32 matmul measured in the same run.

Convention: MLPClassifier's penalty is ``alpha/(2·b)·‖W‖²`` per batch of ``b`` rows (gradient
``(alpha/b)·W``), decaylab's coupled Adam adds ``λ·W`` to the gradient, so ``alpha = λ·b``
(b = 64; only the last, smaller batch of an epoch differs). Neither decays biases.

CPUs: scikit-learn runs 2 worker processes (1 BLAS thread each). decaylab's batched engine runs
as 1 process × 1 torch thread, 2 worker processes × 1 thread (``workers=2``, the same CPUs as
GridSearchCV) and 1 process × 2 threads; the sequential engine as 1 process × 1 thread (its
per-member tensors are tiny, and on a busy machine a second thread mostly waits).

    python benchmarks/sweep_vs_sklearn.py [--quick] [--skip-sklearn] [--skip-sequential] [--skip-skorch]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _peak import matmul_gflops  # benchmarks/ is on sys.path when a script runs

LAMBDAS = np.logspace(-7, -1, 16)
FOLDS, BATCH, HIDDEN, LR = 5, 64, 128, 1e-3


def digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def run_sklearn(X, y, epochs: int) -> tuple[float, float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier

    est = MLPClassifier(hidden_layer_sizes=(HIDDEN,), solver="adam", learning_rate_init=LR, batch_size=BATCH,
                        max_iter=epochs, n_iter_no_change=epochs + 1, tol=0.0, shuffle=True, random_state=0)
    search = GridSearchCV(est, {"alpha": list(LAMBDAS * BATCH)}, cv=StratifiedKFold(FOLDS, shuffle=True,
                                                                                     random_state=0), n_jobs=2)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    seconds = time.perf_counter() - start
    return seconds, search.best_params_["alpha"] / BATCH, float(search.best_score_)


class TorchMLP(torch.nn.Module):
    """64-128-10 ReLU MLP returning logits (skorch's module)."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))

    def forward(self, x):
        return self.layers(x)


def run_skorch(X, y, epochs: int) -> tuple[float, float, float]:
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from skorch import NeuralNetClassifier

    net = NeuralNetClassifier(TorchMLP, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=LR,
                              max_epochs=epochs, batch_size=BATCH, train_split=None, iterator_train__shuffle=True,
                              optimizer__param_groups=[("*bias", {"weight_decay": 0.0})], verbose=0)
    search = GridSearchCV(net, {"optimizer__weight_decay": list(LAMBDAS)},
                          cv=StratifiedKFold(FOLDS, shuffle=True, random_state=0), n_jobs=2)
    start = time.perf_counter()
    search.fit(X, y.astype(np.int64))
    seconds = time.perf_counter() - start
    return seconds, search.best_params_["optimizer__weight_decay"], float(search.best_score_)


def run_decaylab(X, y, epochs: int, engine: str, workers: int = 1):
    import decaylab

    start = time.perf_counter()
    result = decaylab.sweep("mlp", (X, y), list(LAMBDAS), lr=LR, folds=FOLDS, optimizer="adam", epochs=epochs,
                            batch_size=BATCH, hidden=(HIDDEN,), engine=engine, split_seed=0, workers=workers)
    seconds = time.perf_counter() - start
    best = max(result.summary, key=lambda s: s["mean"])
    return seconds, result.best_lambda, best["mean"], result


def training_flops(n_rows: int, n_features: int, n_classes: int, epochs: int) -> float:
    """Multiply-adds ×2 of forward + backward (≈ 3 × forward) of all members, training rows only."""
    per_row_forward = 2 * (n_features * HIDDEN + HIDDEN * n_classes)
    train_rows = n_rows * (FOLDS - 1) / FOLDS
    return 3 * per_row_forward * train_rows * epochs * len(LAMBDAS) * FOLDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 epochs instead of 50 (a smoke run)")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--skip-skorch", action="store_true")
    args = parser.parse_args()
    epochs = 5 if args.quick else 50
    X, y = digits()
    print(f"digits {X.shape}, MLP 64-{HIDDEN}-10, Adam (coupled) lr {LR}, {len(LAMBDAS)} λ × {FOLDS} folds, "
          f"{epochs} epochs, batch {BATCH}; {torch.get_num_threads()} CPU threads available to torch")
    rows = []
    if not args.skip_sklearn:
        seconds, lam, acc = run_sklearn(X, y, epochs)
        rows.append(("sklearn GridSearchCV(n_jobs=2)", seconds, lam, acc))
    skorch_row = None
    if not args.skip_skorch:
        try:
            seconds, lam, acc = run_skorch(X, y, epochs)
            skorch_row = ("skorch + GridSearchCV(n_jobs=2)", seconds, lam, acc)
            rows.append(skorch_row)
        except ImportError:
            print("skorch is not installed (pip install 'decaylab[dev]'): skipped")
    if not args.skip_sequential:
        torch.set_num_threads(1)
        seconds, lam, acc, _ = run_decaylab(X, y, epochs, "sequential")
        rows.append(("decaylab sequential, 1 thread", seconds, lam, acc))
    batched = []
    for workers, threads in ((1, 1), (2, 1), (1, 2)):
        torch.set_num_threads(threads)
        seconds, lam, acc, _ = run_decaylab(X, y, epochs, "batched", workers)
        rows.append((f"decaylab batched, {workers} proc × {threads} thr", seconds, lam, acc))
        batched.append(rows[-1])
    fastest = min(batched, key=lambda r: r[1])
    print(f"\n{'engine':32s} {'wall s':>8s} {'÷ fastest batched':>18s} {'best λ':>10s} {'best CV acc':>12s}")
    for name, secs, lam, acc in rows:
        print(f"{name:32s} {secs:8.1f} {secs / fastest[1]:18.2f} {lam:10.3g} {acc:12.4f}")
    flops = training_flops(len(X), X.shape[1], 10, epochs)
    torch.set_num_threads(2)
    peak = matmul_gflops()
    achieved = flops / fastest[1] / 1e9
    print(f"\n{fastest[0]}: {flops / 1e9:.0f} GFLOP of training in {fastest[1]:.1f} s = {achieved:.1f} GFLOP/s "
          f"({100 * achieved / peak:.0f}% of a 2048² float32 matmul on 2 threads at "
          f"{peak:.1f} GFLOP/s in this run)")
    if skorch_row is not None:
        for name, secs, _, acc in batched:
            print(f"{name} vs skorch + GridSearchCV: {skorch_row[1] / secs:.2f}× faster (target ≥ 12×), best CV "
                  f"accuracy {100 * (acc - skorch_row[3]):+.2f} points (target within ±0.5)")
    if rows[0][0].startswith("sklearn"):
        for name, secs, _, acc in batched:
            print(f"{name} vs GridSearchCV: {rows[0][1] / secs:.2f}× faster (target ≥ 4×), best CV accuracy "
                  f"{100 * (acc - rows[0][3]):+.2f} points (target within ±0.5)")


if __name__ == "__main__":
    main()
