"""``decaylab sweep``: cross-validate a λ grid on a built-in dataset or your CSV/NPZ file.

    decaylab sweep DATA [--target COL] [--lambdas 1e-6:1e1:16] [--folds K | --holdout F]
                        [--model mlp|linear] [--hidden 64] [--optimizer adamw] [--lr 1e-3] ...
                        [--out DIR] [--store FILE]
    decaylab sweep DATA --method marglik [--hessian kron|diag|full] [--global-prior] ...

``DATA`` is a built-in dataset name (moons, poly, digits, breast_cancer, mnist1d: its train and
validation rows are cross-validated, its test split evaluated) or a file: a CSV with a header
row (every column numeric; ``--target`` names the target column) or an NPZ with arrays ``X``
and ``y`` (``--target`` names another target array). Features of a file are standardized
(mean 0, standard deviation 1 over all rows). Grids are ``START:STOP:COUNT`` (log-spaced) or
comma lists. Writes ``DIR/results.json``, ``DIR/results.csv``, ``DIR/validation_curve.png`` and
``DIR/index.html`` (+ ``summary.json``); members are stored in ``DIR/sweep.sqlite`` (or
``--store``) as they finish, so running the same command again resumes. ``--method marglik``
learns λ (per layer) from the Laplace evidence in one run per seed instead (``--folds``,
``--engine`` and the store do not apply) and writes results.json, results.csv,
evidence_curve.png and index.html (:mod:`decaylab.cli.sweep_marglik`).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from decaylab.cli import UsageError

BUILTIN_DATASETS = ("moons", "poly", "digits", "breast_cancer", "mnist1d")
TITLE = "Choosing λ by cross-validation"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="cross-validate a grid of weight decay λ and choose one",
        description="Train every (λ, lr, seed, fold) member — all at once with the batched engine — and report "
                    "the validation curve, the best λ and the one-standard-error λ.")
    parser.add_argument("data", metavar="DATA", help=f"a built-in dataset ({', '.join(BUILTIN_DATASETS)}) or a "
                                                      ".csv / .npz file")
    parser.add_argument("--target", metavar="COL", help="target column of a CSV (required for CSV) or target "
                                                        "array of an NPZ (default: y)")
    parser.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                        help="auto: classification if the target holds at most 50 distinct integers")
    parser.add_argument("--lambdas", default=None, help="λ grid (default: 1e-6:1e1:16); with --method marglik one "
                                                        "starting λ (default: 1/N)")
    parser.add_argument("--method", choices=("grid", "marglik"), default="grid",
                        help="grid: cross-validate the λ grid; marglik: one run per seed that learns λ per layer "
                             "from the Laplace evidence (Immer et al. 2021) (default: %(default)s)")
    parser.add_argument("--hessian", choices=("kron", "diag", "full"), default="kron",
                        help="--method marglik: GGN approximation of the evidence (default: %(default)s)")
    parser.add_argument("--global-prior", action="store_true",
                        help="--method marglik: one λ for all layers instead of one per layer")
    parser.add_argument("--marglik-frequency", type=int, default=1,
                        help="--method marglik: epochs between evidence updates (default: %(default)s)")
    parser.add_argument("--metric", choices=("accuracy", "loss"), default=None,
                        help="what chooses λ (default: accuracy for classification, loss for regression)")
    parser.add_argument("--lr", default="1e-3", help="learning rate(s): a value or a grid (default: %(default)s)")
    parser.add_argument("--seeds", default="0", help="seeds, comma separated (default: %(default)s)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--folds", type=int, default=5, help="K of K-fold cross-validation (default: %(default)s)")
    split.add_argument("--holdout", type=float, help="instead of folds: one random validation split of this fraction")
    parser.add_argument("--model", default="mlp", choices=("mlp", "linear"), help="default: %(default)s")
    parser.add_argument("--hidden", default="64", help="hidden widths of the MLP, comma separated (default: 64)")
    parser.add_argument("--optimizer", default="adamw", choices=("sgd", "sgdw", "adam", "adamw"),
                        help="sgd/adam: coupled decay (g + λw); sgdw/adamw: decoupled (w − s_t·λ·w) (default: adamw)")
    parser.add_argument("--decay-scaling", default="lr", choices=("lr", "schedule"),
                        help="decoupled decay scale s_t: lr_t (torch AdamW) or lr_t/lr_0 (default: lr)")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default: 0)")
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    parser.add_argument("--epochs", type=int, default=20, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--engine", default="auto", choices=("auto", "batched", "sequential", "ray"))
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="members stacked per batched chunk; the store is written after each chunk "
                             "(default: all members at once)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes for the batched/sequential engines (default: 1)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the fold split (default: 0)")
    parser.add_argument("--out", metavar="DIR", default="decaylab-sweep", help="output directory (default: %(default)s)")
    parser.add_argument("--store", metavar="FILE", help="SQLite results store (default: DIR/sweep.sqlite)")
    parser.set_defaults(func=run)


def _int_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got {text!r}") from None
    return values


def load_csv(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Features and target of a CSV with a header row; every cell must be a number."""
    if target is None:
        raise UsageError(f"DATA {path!r} is a CSV: name its target column with --target")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0]:
        raise UsageError(f"DATA {path!r} is empty: a CSV needs a header row and data rows")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    if target not in header:
        raise UsageError(f"--target {target!r} is not a column of {path!r}; columns are {', '.join(header)}")
    if len(header) < 2:
        raise UsageError(f"DATA {path!r} needs at least one feature column besides the target")
    table = np.empty((len(body), len(header)))
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UsageError(f"DATA {path!r} line {line} has {len(row)} cells, the header has {len(header)}")
        for col, cell in enumerate(row):
            try:
                table[line - 2, col] = float(cell)
            except ValueError:
                raise UsageError(f"DATA {path!r} column {header[col]!r} is not numeric: line {line} holds "
                                 f"{cell!r}") from None
    t = header.index(target)
    return np.delete(table, t, axis=1), table[:, t]


def load_npz(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"DATA {path!r} is not a readable .npz file: {exc}") from None
    y_key = target or "y"
    missing = [k for k in ("X", y_key) if k not in archive.files]
    if missing:
        raise UsageError(f"DATA {path!r} has no array {missing[0]!r}; it holds {', '.join(archive.files)}")
    X, y = archive["X"], archive[y_key]
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise UsageError(f"DATA {path!r}: X and {y_key} must be numeric arrays, got {X.dtype} and {y.dtype}")
    return X.reshape(len(X), -1).astype(float), y.astype(float)


def prepare_file_data(path: str, target: str | None, task: str):
    """``((X, y), task)`` from a CSV/NPZ: standardized float32 features, integer classes or float targets."""
    if not os.path.isfile(path):
        raise UsageError(f"DATA {path!r}: no such built-in dataset or file (built-ins: {', '.join(BUILTIN_DATASETS)})")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        X, y = load_csv(path, target)
    elif ext == ".npz":
        X, y = load_npz(path, target)
    else:
        raise UsageError(f"DATA {path!r}: files must end in .csv or .npz, got {ext or 'no extension'!r}")
    if len(X) < 2 or not np.all(np.isfinite(X)) or not np.all(np.isfinite(y)):
        raise UsageError(f"DATA {path!r} needs at least 2 rows of finite numbers, got {len(X)} rows")
    values = np.unique(y)
    if task == "auto":
        task = "classification" if np.all(values == np.round(values)) and len(values) <= 50 else "regression"
    scale = X.std(axis=0)
    X = ((X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)).astype(np.float32)
    if task == "classification":
        if not np.all(values == np.round(values)):
            raise UsageError(f"--task classification needs integer class labels in the target, got {values[:5]}")
        return (X, np.searchsorted(values, y).astype(np.int64)), task
    return (X, y.astype(np.float32)), task


def run(args: argparse.Namespace) -> int:
    from decaylab.report.write import check_out_dir

    try:
        out_dir = check_out_dir(args.out, name="--out")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.data in BUILTIN_DATASETS:
        data, loss = args.data, None
    else:
        data, task = prepare_file_data(args.data, args.target, args.task)
        loss = "cross_entropy" if task == "classification" else "mse"
    import decaylab

    out_dir.mkdir(parents=True, exist_ok=True)
    store = args.store or str(out_dir / "sweep.sqlite")
    if args.method == "marglik":
        from decaylab.cli.sweep_marglik import run_marglik

        return run_marglik(args, data, loss, out_dir)
    result = decaylab.sweep(
        args.model, data, args.lambdas or "1e-6:1e1:16", lr=args.lr, seed=_int_list("--seeds", args.seeds),
        folds=args.folds, holdout=args.holdout, optimizer=args.optimizer, decay_scaling=args.decay_scaling,
        momentum=args.momentum, lr_schedule=args.lr_schedule, epochs=args.epochs, batch_size=args.batch_size,
        loss=loss, metric=args.metric, engine=args.engine, store=store, split_seed=args.split_seed, workers=args.workers,
        chunk_size=args.chunk_size,
        hidden=_int_list("--hidden", args.hidden) if args.model == "mlp" else ())
    write_outputs(result, out_dir, args.data)
    print_summary(result, out_dir)
    return 0


def summary_rows(result) -> list[dict]:
    rows = []
    for s in result.summary:
        marks = ("best " if s["lambda"] == result.best_lambda and s["lr"] == result.best_lr else "") + \
                ("1se" if s["lambda"] == result.lambda_1se and s["lr"] == result.best_lr else "")
        rows.append({"lr": f"{s['lr']:.3g}", "lambda": f"{s['lambda']:.3g}",
                     f"val {result.metric}": f"{s['mean']:.4f} ± {s['std']:.4f}",
                     "diverged": s["n_diverged"], "choice": marks.strip()})
    return rows


def write_outputs(result, out_dir, data_name: str) -> None:
    """results.json, results.csv, validation_curve.png and the HTML report in ``out_dir``."""
    from decaylab.report import Figure, Section, Table, write_report

    result.to_json(out_dir / "results.json")
    result.to_csv(out_dir / "results.csv")
    png = result.plot_png()
    (out_dir / "validation_curve.png").write_bytes(png)
    rows = summary_rows(result)
    columns = list(rows[0]) if rows else []
    best = "no λ (every member diverged)" if result.best_lambda is None else f"λ = {result.best_lambda:.3g}"
    text = (f"{len(result.table)} members ({len(result.summary)} (lr, λ) settings × folds × seeds) were trained "
            f"on {os.path.basename(str(data_name))} with the {result.engine} engine in {result.wall_time:.1f} s "
            f"({result.trained} trained now, the rest read from the store). The best mean validation "
            f"{result.metric} is at {best}"
            + ("" if result.lambda_1se is None else
               f"; the largest λ within one standard error of it is λ_1se = {result.lambda_1se:.3g}, the more "
               f"regularized choice that is statistically as good")
            + f". {result.n_diverged} members diverged.")
    section = Section(key="validation_curve", title="Validation curve", text=text,
                      figures=[Figure(name="validation_curve", png=png,
                                      caption=f"Validation {result.metric} (mean ± std over folds) against λ")],
                      tables=[Table(columns=columns, rows=[[r[c] for c in columns] for r in rows],
                                    caption="Per (lr, λ): mean ± std over folds and seeds")])
    summary = {"best_lambda": result.best_lambda, "best_lr": result.best_lr, "lambda_1se": result.lambda_1se,
               "metric": result.metric, "members": len(result.table), "diverged": result.n_diverged,
               "engine": result.engine, "seconds": round(result.wall_time, 2)}
    write_report(out_dir, TITLE, [section], summary)


def print_summary(result, out_dir) -> None:
    from decaylab.report import text_table

    print(text_table(summary_rows(result)))
    print(f"\nbest λ = {result.best_lambda}  (lr {result.best_lr}),  λ_1se = {result.lambda_1se},  "
          f"{result.trained} trained, {len(result.table) - result.trained} from the store, "
          f"{result.n_diverged} diverged", file=sys.stdout)
    print(f"wrote {out_dir / 'results.json'}, results.csv, validation_curve.png, index.html", file=sys.stdout)
