"""Benchmark: λ sweeps of a conv net with BatchNorm and of a small attention model, batched vs sequential vs the floor.

Task (issue 11): digits (1797 images 8×8, 10 classes), 8 λ log-spaced × 4 stratified folds = 32 members,
AdamW lr 3e-3, batch 64, ``--epochs`` epochs (default 3), float32, on the CPU (or ``--device``).

- ``conv``: Conv(1→16, 3×3) · BatchNorm · ReLU · MaxPool · Conv(16→32) · BatchNorm · ReLU · MaxPool · Linear(128→10),
  pixels scaled to [0, 1];
- ``attention``: each image as 64 integer tokens (its pixel values 0…16, kept as integer ids), Embedding(17, 32) +
  a learned position embedding · TransformerEncoderLayer(d=32, 4 heads, 64 hidden, no dropout) · LayerNorm ·
  Linear(64·32→10) over all tokens (the first version, a mean over tokens with a 0.02-scale position embedding,
  reached only 26% CV accuracy in 3 epochs: position was drowned and the pixel values alone hardly say the digit).

Runs, in one process, for each model: ``decaylab.sweep(engine="batched")``, ``engine="sequential"``,
``engine="auto"`` (its choice and path line), a plain torch loop per member (``torch.optim.AdamW``,
``F.cross_entropy``, the same folds), skorch's ``NeuralNetClassifier`` in ``GridSearchCV(n_jobs=2)`` (CPU only;
two processes where every other run has one thread, so decaylab's batched engine is also run with ``workers=2``
beside it), and the stacked-work floor: one copy trained on the 32 members' combined
batch (32 × 64 rows) for the same number of steps — the same FLOPs as the stacked members with no per-member
overhead at all (and no evaluation). Prints wall times, ratios, GFLOP/s (training FLOPs counted by
``FlopCounterMode`` on one member's step) next to a 2048² float32 matmul measured in the same run, one training
step batched vs floor, and mean CV accuracy per λ, batched vs sequential.

    python benchmarks/sweep_models.py [--epochs 3] [--models conv,attention] [--device cpu] [--threads 1]
                                      [--profile | --profile-only]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _peak import matmul_gflops  # benchmarks/ is on sys.path when a script runs
from torch import nn
from torch.nn import functional as F

LAMBDAS = list(np.logspace(-4, 0, 8))
FOLDS, BATCH, LR = 4, 64, 3e-3


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.as_tensor(X, dtype=torch.long), torch.as_tensor(y, dtype=torch.long)


class ConvBN(nn.Module):
    """Two conv · BatchNorm · ReLU · pool blocks and a linear head (digits 8×8)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class TokenAttention(nn.Module):
    """Embedding of 64 pixel tokens, one Transformer encoder layer, LayerNorm, linear head over all tokens."""

    def __init__(self, d: int = 32):
        super().__init__()
        self.embed = nn.Embedding(17, d)
        self.position = nn.Parameter(torch.randn(64, d))  # the token table's scale, so position is not drowned
        self.block = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(64 * d, 10)

    def forward(self, x):
        return self.head(self.norm(self.block(self.embed(x) + self.position)).flatten(1))


MODELS = {"conv": (ConvBN, lambda X: (X.float() / 16).view(-1, 1, 8, 8)),
          "attention": (TokenAttention, lambda X: X)}


def step_flops(factory, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one member's forward + backward on a batch (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = factory()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return float(counter.get_total_flops())


def run_sweep(factory, X, y, epochs, engine, device, workers=1):
    import decaylab

    start = time.perf_counter()
    result = decaylab.sweep(factory, (X, y), LAMBDAS, lr=LR, folds=FOLDS, optimizer="adamw", epochs=epochs,
                            batch_size=BATCH, engine=engine, device=device, split_seed=0, workers=workers)
    return time.perf_counter() - start, result


def per_lambda_accuracy(result) -> dict[float, float]:
    return {s["lambda"]: s["mean"] for s in result.summary}


def plain_torch_loop(factory, X, y, epochs, device) -> tuple[float, dict[float, float]]:
    """What a user writes by hand: one model, optimizer and shuffled batches per member, members one after another."""
    from decaylab.sweeps.grid import fold_splits

    splits = fold_splits(y.numpy(), folds=FOLDS, holdout=None, classification=True, split_seed=0)
    X, y = X.to(device), y.to(device)
    accuracy = {}
    start = time.perf_counter()
    for lam in LAMBDAS:
        scores = []
        for train, val in splits:
            torch.manual_seed(0)
            model = factory().to(device)
            decay = [p for p in model.parameters() if p.dim() >= 2]
            plain = [p for p in model.parameters() if p.dim() < 2]
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": lam}, {"params": plain, "weight_decay": 0.0}],
                                    lr=LR)
            train = torch.as_tensor(train)
            generator = torch.Generator().manual_seed(0)
            for _ in range(epochs):
                order = train[torch.randperm(len(train), generator=generator)]
                for i in range(0, len(order), BATCH):
                    batch = order[i:i + BATCH]
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(X[batch]), y[batch]).backward()
                    opt.step()
            model.eval()
            with torch.no_grad():
                scores.append(float((model(X[val]).argmax(1) == y[val]).float().mean()))
        accuracy[lam] = float(np.mean(scores))
    return time.perf_counter() - start, accuracy


def skorch_grid_search(factory, X, y, epochs) -> tuple[float, dict[float, float]] | None:
    """The tool a torch user picks for a cross-validated grid: ``GridSearchCV(skorch.NeuralNetClassifier(model),
    n_jobs=2)`` over AdamW's ``weight_decay`` (1-D parameters not decayed), the same folds; None without skorch."""
    try:
        from skorch import NeuralNetClassifier
    except ImportError:
        print("   skorch is not installed (pip install 'decaylab[dev]'): its row is skipped")
        return None
    from sklearn.model_selection import GridSearchCV

    from decaylab.sweeps.grid import fold_splits

    plain = [(name, {"weight_decay": 0.0}) for name, p in factory().named_parameters() if p.dim() < 2]
    net = NeuralNetClassifier(factory, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.AdamW, lr=LR,
                              max_epochs=epochs, batch_size=BATCH, train_split=None, iterator_train__shuffle=True,
                              optimizer__param_groups=plain, verbose=0)
    splits = fold_splits(y.numpy(), folds=FOLDS, holdout=None, classification=True, split_seed=0)
    search = GridSearchCV(net, {"optimizer__weight_decay": LAMBDAS}, cv=list(splits), n_jobs=2)
    start = time.perf_counter()
    search.fit(X, y)
    seconds = time.perf_counter() - start
    scores = search.cv_results_["mean_test_score"]
    return seconds, {lam: float(score) for lam, score in zip(LAMBDAS, scores)}


def floor_step(factory, X, y, device):
    """One training step of the floor — one copy (seed 0) on a random combined batch of the 32 members'
    32 × 64 rows (``X``, ``y`` on ``device``) — as a closure."""
    members = len(LAMBDAS) * FOLDS
    torch.manual_seed(0)
    model = factory().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(0)

    def step():
        batch = torch.randint(0, len(X), (members * BATCH,), generator=generator).to(device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(X[batch]), y[batch]).backward()
        opt.step()

    return step


def stacked_work_floor(factory, X, y, epochs, device) -> float:
    """One copy trained on the 32 members' combined batch (32 × 64 rows) for the members' number of steps."""
    steps = -(-int(len(X) * (FOLDS - 1) / FOLDS) // BATCH) * epochs
    step = floor_step(factory, X.to(device), y.to(device), device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def step_times(factory, X, y, device) -> tuple[float, float]:
    """Seconds per training step, median of 3 after a warm-up: the 32 members stacked (the batched engine's own
    step, as ``engine="auto"`` probes it) and the floor's one copy on the combined 32 × 64 rows — the engine's
    cost beyond the floor with evaluation, set-up and last short batches left out."""
    from decaylab.batched.planning import _step_timings, probe_times
    from decaylab.batched.trainer import Member, TrainConfig

    members = [Member(lam, LR, seed=0) for lam in LAMBDAS for _ in range(FOLDS)]
    batched = probe_times(factory, X, y, TrainConfig.from_options(optimizer="adamw", batch_size=BATCH), members, device)
    floor = _step_timings(floor_step(factory, X.to(device), y.to(device), device))
    return float(np.median(batched.batched)) * len(members), float(np.median(floor))


def profile_steps(factory, X, y, device, rows: int = 8) -> None:
    """``torch.profiler``'s top operators (self CPU time) of two training steps: the 32 members stacked by the
    batched engine, and the floor's one copy on the combined 32 × 64 rows."""
    from torch.profiler import profile

    from decaylab.batched.planning import stacked_step
    from decaylab.batched.trainer import Member, TrainConfig

    members = [Member(lam, LR, seed=0) for lam in LAMBDAS for _ in range(FOLDS)]
    X, y = X.to(device), y.to(device)
    batched_step = stacked_step(factory, X, y, TrainConfig.from_options(optimizer="adamw", batch_size=BATCH), members,
                                device)

    for label, step in [("batched (32 members stacked)", batched_step),
                        ("floor (1 copy × 2048 rows)", floor_step(factory, X, y, device))]:
        step()
        with profile() as prof:
            step()
            step()
        print(f"   profile of two steps, {label}:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=64))


def bench(name: str, epochs: int, device: str, profile: bool = False) -> None:
    factory, prepare = MODELS[name]
    X_all, y = digits()
    X = prepare(X_all)
    members = len(LAMBDAS) * FOLDS
    steps = -(-int(len(X) * (FOLDS - 1) / FOLDS) // BATCH) * epochs
    flops = step_flops(factory, X[:BATCH], y[:BATCH]) * steps * members
    print(f"\n== {name}: {factory.__doc__.splitlines()[0]}")
    print(f"   {members} members ({len(LAMBDAS)} λ × {FOLDS} folds), {epochs} epochs, batch {BATCH}, "
          f"X {tuple(X.shape)} {X.dtype}; {flops / 1e9:.1f} GFLOP of training")
    t_batched, batched = run_sweep(factory, X, y, epochs, "batched", device)
    print(f"   path: {batched.path}")
    t_seq, seq = run_sweep(factory, X, y, epochs, "sequential", device)
    t_auto, auto = run_sweep(factory, X, y, epochs, "auto", device)
    t_loop, loop_acc = plain_torch_loop(factory, X, y, epochs, device)
    skorch = skorch_grid_search(factory, X, y, epochs) if device == "cpu" else None
    t_two = run_sweep(factory, X, y, epochs, "batched", device, workers=2)[0] if skorch is not None else None
    t_floor = stacked_work_floor(factory, X, y, epochs, device)
    peak = matmul_gflops()
    rows = [("batched", t_batched), ("sequential", t_seq), (f"auto (→ {auto.engine}, probe included)", t_auto),
            ("plain torch loop per member", t_loop), ("floor: 1 copy × combined batch", t_floor)]
    if skorch is not None:
        rows[4:4] = [("skorch + GridSearchCV (n_jobs=2)", skorch[0]), ("batched, 2 workers (skorch's 2 CPUs)", t_two)]
    print(f"   {'run':38s} {'wall s':>8s} {'GFLOP/s':>8s} {'% matmul':>9s} {'÷ batched':>10s}")
    for label, secs in rows:
        rate = flops / secs / 1e9
        print(f"   {label:38s} {secs:8.1f} {rate:8.2f} {100 * rate / peak:8.1f}% {secs / t_batched:10.2f}")
    print(f"   same-run matmul 2048² float32: {peak:.1f} GFLOP/s")
    print(f"   auto: {auto.path}")
    print(f"   targets: batched/sequential = {t_batched / t_seq:.2f} (≤ 1.05), batched/floor = "
          f"{t_batched / t_floor:.2f} (≤ 1.3)")
    step_batched, step_floor = step_times(factory, X, y, device)
    print(f"   one training step (median of 3 after a warm-up): batched {1000 * step_batched:.0f} ms, floor "
          f"{1000 * step_floor:.0f} ms → {step_batched / step_floor:.2f}× (the sweep's ratio adds evaluation of "
          f"every member on all {len(X)} rows and set-up, which the floor does not do)")
    acc_b, acc_s = per_lambda_accuracy(batched), per_lambda_accuracy(seq)
    skorch_acc = skorch[1] if skorch is not None else dict.fromkeys(LAMBDAS, float("nan"))
    print(f"   {'λ':>10s} {'batched':>8s} {'sequential':>10s} {'Δ points':>9s} {'torch loop':>10s} {'skorch':>8s}")
    for lam in LAMBDAS:
        print(f"   {lam:10.2e} {acc_b[lam]:8.4f} {acc_s[lam]:10.4f} {100 * (acc_b[lam] - acc_s[lam]):+9.2f} "
              f"{loop_acc[lam]:10.4f} {skorch_acc[lam]:8.4f}")
    worst = max(abs(acc_b[lam] - acc_s[lam]) for lam in LAMBDAS)
    print(f"   largest |Δ| CV accuracy batched vs sequential: {100 * worst:.2f} points (target ≤ 1)")
    if profile:
        profile_steps(factory, X, y, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", default="conv,attention")
    parser.add_argument("--device", default=None, help="default: CUDA when available, else cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every run (default 1: on a "
                        "shared 2-core machine a second thread mostly waits)")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators of a "
                        "batched step and a floor step")
    parser.add_argument("--profile-only", action="store_true", help="only the profiles (no sweeps)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from decaylab.train.devices import resolve_device

    device = str(resolve_device(args.device))
    print(f"device {device}; {torch.get_num_threads()} torch threads")
    for name in args.models.split(","):
        if args.profile_only:
            factory, prepare = MODELS[name]
            X, y = digits()
            print(f"\n== {name}")
            profile_steps(factory, prepare(X), y, device)
        else:
            bench(name, args.epochs, device, args.profile)


if __name__ == "__main__":
    main()
