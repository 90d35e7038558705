"""``decaylab sweep``: cross-validate a λ grid on a built-in dataset or your CSV/NPZ file.

    decaylab sweep DATA [--target COL] [--lambdas 1e-6:1e1:16] [--folds K | --holdout F]
                        [--model mlp|linear|MODULE:NAME] [--hidden 64] [--optimizer adamw] [--lr 1e-3] ...
                        [--out DIR] [--store FILE]
    decaylab sweep DATA --method marglik [--hessian kron|diag|full] [--no-per-layer] ...

Every keyword option of :func:`decaylab.sweep` is a flag with the same name (dashes), range and default, built
from its declaration (:mod:`decaylab.sweeps.options`, :mod:`decaylab.cli.options`); a flag left out is not
passed on, so the API's default applies. The differences: a progress bar is on (``--no-progress``), the
store is ``DIR/sweep.sqlite`` (``--store``), ``--seeds`` also spells ``--seed`` and ``--global-prior``
``--no-per-layer``; the classes of ``no_decay_types`` and the arrays of ``test_data`` have no flag. A flag
the method does not use (``--folds``, ``--engine``, … with ``--method marglik``), or an optimizer flag the
optimizer does not take (``--momentum`` with ``--optimizer lion``, ``--ns-steps`` with ``--optimizer adamw``),
exits 2 with one line naming it. ``--optimizer muon`` trains Muon for the hidden matrices with the AdamW
companion for the rest (``--adamw-lr-ratio``, ``--adamw-weight-decay``, …), ``--optimizer lion`` Lion.

``DATA`` is a built-in dataset name (moons, poly, digits, breast_cancer, mnist1d: its train and
validation rows are cross-validated, its test split evaluated) or a file: a CSV with a header
row (every column numeric; ``--target`` names the target column) or an NPZ with arrays ``X``
and ``y`` (``--target`` names another target array). Features of a file are standardized for the
built-in models, per member with its own training rows' mean and standard deviation (``sweep(…,
standardize=True)``: no validation row takes part; ``--no-standardize`` keeps them as stored);
``--model MODULE:NAME`` (your own model, :mod:`decaylab.cli.user_model`) gets X as stored: an NPZ's shape
(images, token sequences) and integer ids are kept, nothing is standardized. Grids are
``START:STOP:COUNT`` (log-spaced) or comma lists. Writes ``DIR/results.json``, ``DIR/results.csv``,
``DIR/validation_curve.png`` and ``DIR/index.html`` (+ ``summary.json``); members are stored in ``DIR/sweep.sqlite`` (or
``--store``) as they finish, so running the same command again resumes. ``--method marglik``
learns λ (per layer) from the Laplace evidence in one run per seed instead (finished runs go to the
same store) and writes results.json, results.csv, evidence_curve.png and index.html
(:mod:`decaylab.cli.sweep_marglik`).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile

import numpy as np

from decaylab.cli import UsageError

BUILTIN_DATASETS = ("moons", "poly", "digits", "breast_cancer", "mnist1d")
TITLE = "Choosing λ by cross-validation"


#: Declared options whose command-line default differs from the API's, and why.
CLI_DEFAULTS = {
    "progress": True,                 # a terminal shows progress; --no-progress turns it off
}
#: The command line's own flags (the API takes these as positional arguments or has no such input).
CLI_ONLY = ("data", "target", "task", "model", "lambdas", "out")
GRID_LAMBDAS = "1e-6:1e1:16"


def register(subparsers) -> None:
    from decaylab.cli.options import add_option, on_command_line
    from decaylab.sweeps.options import SWEEP_OPTIONS, USES

    parser = subparsers.add_parser(
        "sweep", help="cross-validate a grid of weight decay λ and choose one",
        description="Train every (λ, lr, seed, fold) member — all at once with the batched engine — and report "
                    "the validation curve, the best λ and the one-standard-error λ; or, with --method marglik, "
                    "learn λ from the Laplace evidence. Every option of decaylab.sweep is here, with its name, "
                    "range and default.")
    parser.add_argument("data", metavar="DATA", help=f"a built-in dataset ({', '.join(BUILTIN_DATASETS)}) or a "
                                                      ".csv / .npz file")
    parser.add_argument("--target", metavar="COL", help="target column of a CSV (required for CSV) or target "
                                                        "array of an NPZ (default: y)")
    parser.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                        help="auto: classification if every target value is an integer (class labels), else "
                             "regression (or as --loss says); pass --task regression for integer-valued "
                             "quantities to predict")
    parser.add_argument("--lambdas", default=None, help=f"λ grid (default: {GRID_LAMBDAS}); with --method marglik "
                                                        "one starting λ (default: 1/N)")
    parser.add_argument("--model", default="mlp", metavar="{mlp,linear,MODULE:NAME}",
                        help="a built-in model, or your own: a class or function in MODULE (imported from the "
                             "current directory or PYTHONPATH; or a path to a .py file) returning a fresh nn.Module, "
                             "which then gets DATA as stored — an NPZ's X keeps its shape and integer ids, nothing "
                             "is standardized (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", default="decaylab-sweep",
                        help="output directory (default: %(default)s)")
    split = parser.add_mutually_exclusive_group()
    for option in SWEEP_OPTIONS.values():
        if not on_command_line(option):
            continue
        where = split if option.name in ("folds", "holdout") else parser
        aliases = {"seed": ("--seeds",)}.get(option.name, ())
        method = ("--method marglik only: " if option.name not in USES["grid"] else
                  "--method grid only: " if option.name not in USES["marglik"] else "")
        extra = dict(default=CLI_DEFAULTS[option.name]) if option.name in CLI_DEFAULTS else {}
        if option.name == "store":
            extra = dict(default_text="DIR/sweep.sqlite")
        add_option(where, option, *aliases, help_prefix=method, **extra)
    parser.add_argument("--global-prior", dest="per_layer", action="store_false", default=argparse.SUPPRESS,
                        help="--method marglik: one λ for all layers (the same as --no-per-layer)")
    parser.set_defaults(func=run)


def _check_readable_text(path: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(4)
    for magic, kind in ((b"\x1f\x8b", "gzip-compressed"), (b"PK\x03\x04", "a zip archive"),
                        (b"\x93NUMPY", "a .npy array")):
        if head.startswith(magic):
            raise UsageError(f"DATA {path!r} is named .csv but is {kind}: decompress it or give it its real "
                             "extension (.csv text or .npz)")


def load_csv(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Features and target of a CSV with a header row; every cell must be a finite number.

    A UTF-8 byte-order mark is ignored; header names must be distinct.
    """
    if target is None:
        raise UsageError(f"DATA {path!r} is a CSV: name its target column with --target")
    _check_readable_text(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise UsageError(f"DATA {path!r} is not UTF-8 text (byte {exc.start}): a CSV must be plain text") from None
    except csv.Error as exc:
        raise UsageError(f"DATA {path!r} is not a readable CSV: {exc}") from None
    if not rows or not rows[0]:
        raise UsageError(f"DATA {path!r} is empty: a CSV needs a header row and data rows")
    header, body = [h.strip() for h in rows[0]], [(n, r) for n, r in enumerate(rows[1:], start=2)
                                                  if any(c.strip() for c in r)]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise UsageError(f"DATA {path!r} repeats the column name(s) {', '.join(map(repr, repeated))} in its header")
    if target not in header:
        raise UsageError(f"--target {target!r} is not a column of {path!r}; columns are {', '.join(header)}")
    if len(header) < 2:
        raise UsageError(f"DATA {path!r} needs at least one feature column besides the target")
    table = np.empty((len(body), len(header)))
    for i, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise UsageError(f"DATA {path!r} line {line} has {len(row)} cells, the header has {len(header)}")
        for col, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise UsageError(f"DATA {path!r} column {header[col]!r} is not numeric: line {line} holds "
                                 f"{cell!r}") from None
            if not np.isfinite(value):
                raise UsageError(f"DATA {path!r} column {header[col]!r} line {line} holds {cell.strip()!r}: "
                                 "every value must be a finite number (drop or fill that row)")
            table[i, col] = value
    t = header.index(target)
    return np.delete(table, t, axis=1), table[:, t]


def load_npz(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``X`` (rows × features…, its shape and dtype as stored) and ``y`` (or ``target``, as float) of an
    NPZ archive; numeric, no pickles."""
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises OSError, ValueError, zipfile.BadZipFile, EOFError … for bad bytes
        raise UsageError(f"DATA {path!r} is not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UsageError(f"DATA {path!r} holds a single .npy array, not an .npz archive: save X and y with "
                         "numpy.savez(path, X=X, y=y)")
    y_key = target or "y"
    with archive:
        missing = [k for k in ("X", y_key) if k not in archive.files]
        if missing:
            raise UsageError(f"DATA {path!r} has no array {missing[0]!r}; it holds {', '.join(archive.files)}")
        try:
            X, y = archive["X"], archive[y_key]
        except Exception as exc:  # object arrays (pickles) are refused here, as is a damaged member
            raise UsageError(f"DATA {path!r}: X and {y_key!r} cannot be read as plain numeric arrays ({exc})") from None
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise UsageError(f"DATA {path!r}: X and {y_key} must be numeric arrays, got {X.dtype} and {y.dtype}")
    if X.ndim == 0 or y.ndim == 0:
        raise UsageError(f"DATA {path!r}: X and {y_key} must be arrays of rows, got shapes {X.shape} and {y.shape}")
    if len(X) != len(y):
        raise UsageError(f"DATA {path!r}: X has {len(X)} rows but {y_key} has {len(y)}")
    if len(X) < 2 or X[0].size == 0:
        raise UsageError(f"DATA {path!r} needs at least 2 rows and 1 feature, got X of shape {X.shape}")
    for name, values in (("X", X), (y_key, y)):
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise UsageError(f"DATA {path!r}: {name} row {int(np.argmax(bad))} holds NaN or infinity "
                             f"({int(bad.sum())} such rows); every value must be finite")
    return X, y.astype(float)


def standardize(X: np.ndarray) -> np.ndarray:
    """Columns to mean 0, standard deviation 1 over all rows of ``X`` (constant columns to 0), as float32:
    :class:`decaylab.batched.standardization.Standardization` fitted on ``X`` itself (its columns are first
    divided by their largest magnitude, so values near ±1e308 standardize like small ones). The sweep no
    longer uses it (it standardizes per member, on the training rows only)."""
    import torch

    from decaylab.batched.standardization import Standardization

    X = torch.as_tensor(np.asarray(X, dtype=float))
    return Standardization.fit(X).apply(X).numpy().astype(np.float32)


def prepare_file_data(path: str, target: str | None, task: str, as_stored: bool = False):
    """``((X, y), task)`` from a CSV/NPZ: float64 feature rows, flattened, for the built-in models (the sweep
    standardizes them per member, ``standardize=True``; ``as_stored``: X as the file holds it, for the user's own
    model — shape kept, integers as int64, floats as float32), integer classes or float targets. ``task``
    ``"auto"`` is classification when every target value is an integer (of at most 2**53, float64's exact
    integers), as ``decaylab.sweep`` takes integer targets for classes, else regression."""
    if os.path.isdir(path):
        raise UsageError(f"DATA {path!r} is a directory: give a .csv or .npz file, or a built-in dataset "
                         f"({', '.join(BUILTIN_DATASETS)})")
    if not os.path.isfile(path):
        raise UsageError(f"DATA {path!r}: no such built-in dataset or file (built-ins: {', '.join(BUILTIN_DATASETS)})")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".csv":
            X, y = load_csv(path, target)
        elif ext == ".npz":
            X, y = load_npz(path, target)
        else:
            raise UsageError(f"DATA {path!r}: files must end in .csv or .npz, got {ext or 'no extension'!r}")
    except OSError as exc:
        raise UsageError(f"DATA {path!r} cannot be read: {exc.strerror or exc}") from None
    if len(X) < 2:
        raise UsageError(f"DATA {path!r} needs at least 2 rows, got {len(X)}")
    values = np.unique(y)
    if task == "auto":                               # integers are class labels, as in decaylab.sweep
        integers = np.all(values == np.round(values)) and np.abs(values).max() <= 2.0 ** 53
        task = "classification" if integers else "regression"
    if as_stored:
        X = X.astype(np.int64) if X.dtype.kind in "biu" else X.astype(np.float32)
    else:
        X = X.reshape(len(X), -1).astype(float)
    if task == "classification":
        if not np.all(values == np.round(values)):
            raise UsageError(f"--task classification needs integer class labels in the target, got {values[:5]}")
        return (X, np.searchsorted(values, y).astype(np.int64)), task
    peak = float(np.abs(y).max())
    if peak > float(np.finfo(np.float32).max):
        raise UsageError(f"DATA {path!r}: the target --target reaches {peak:.3g}, beyond float32's range "
                         f"(±{np.finfo(np.float32).max:.3g}) that training uses: rescale the target")
    return (X, y.astype(np.float32)), task


def run(args: argparse.Namespace) -> int:
    """Train with the options given (the rest take the API's declared defaults) and write the files."""
    from decaylab.cli.options import given_options, spelled
    from decaylab.optim.options import refuse_inapplicable
    from decaylab.sweeps.options import SWEEP_OPTIONS, refuse_unused

    options = given_options(args, SWEEP_OPTIONS)
    method = options.get("method", "grid")
    refuse_unused(method, options, set(options) - set(CLI_DEFAULTS), spell=spelled(SWEEP_OPTIONS))
    if method == "grid":
        refuse_inapplicable(options.get("optimizer", SWEEP_OPTIONS["optimizer"].default), options, options,
                            spell=spelled(SWEEP_OPTIONS))
    if method == "marglik":
        from decaylab.cli.sweep_marglik import OUTPUT_FILES as outputs
    else:
        outputs = OUTPUT_FILES
    model = model_for(args)
    out_dir = prepare_out_dir(args.out, outputs)
    standardize = args.data not in BUILTIN_DATASETS and isinstance(model, str)   # a file, for a built-in model
    if args.data in BUILTIN_DATASETS:
        data = args.data
    else:
        task = task_for(args.task, options.get("loss"))
        data, task = prepare_file_data(args.data, args.target, task, as_stored=not standardize)
        options["loss"] = "cross_entropy" if task == "classification" else "mse"
    if standardize:                                  # per member, on its own training rows
        options.setdefault("standardize", True)
    options["store"] = options.get("store") or str(out_dir / "sweep.sqlite")
    from decaylab.sweeps.inputs import ModelOutputError

    try:
        return _train_and_report(args, method, model, data, options, out_dir)
    except ModelOutputError as exc:
        if isinstance(data, str):                    # a built-in dataset: its task is fixed
            raise
        raise UsageError(with_task_hint(exc, data[1])) from None


def with_task_hint(exc, y: np.ndarray) -> str:
    """The model-output error's message, with the ``--task`` that fixes it when the other task's loss takes the
    model's output shape (one output per target value for regression; at least one logit per distinct integer
    of the target for classification)."""
    other = "regression" if exc.task == "classification" else "classification"
    shape, rows = exc.shape, exc.rows
    if other == "regression":
        fits = shape == (rows, int(np.prod(y.shape[1:])))
    else:
        values = np.unique(y)
        fits = (bool(np.all(values == np.round(values))) and len(shape) == 2 and shape[0] == rows
                and shape[1] >= len(values))
    if not fits:
        return str(exc)
    return f"{exc}; if the target is {'class labels' if other == 'classification' else 'values to predict'}, " \
           f"pass --task {other}"


def _train_and_report(args, method: str, model, data, options: dict, out_dir) -> int:
    """Train (grid or marglik), write the files and print the summary; the exit code."""
    if method == "marglik":
        from decaylab.cli.sweep_marglik import run_marglik

        return run_marglik(args, model, data, options, out_dir)
    import decaylab
    from decaylab.cli.sweep_common import train_and_write

    def train():
        return decaylab.sweep(model, data, args.lambdas or GRID_LAMBDAS, **options)

    result = train_and_write(train, lambda r: write_outputs(r, out_dir, args.data), out_dir, options["store"],
                             "member")
    if result is None:
        return 130
    print_summary(result, out_dir)
    if result.best_lambda is None:
        print(f"decaylab sweep: no usable member: all {len(result.table)} diverged (NaN or runaway loss); try a "
              "smaller --lr or a smaller λ range", file=sys.stderr)
        return 1
    return 0


def task_for(task: str, loss: str | None) -> str:
    """``--task``, or for ``auto`` with ``--loss`` given the task that loss trains (cross_entropy: classification;
    mse: regression); a ``--task`` the ``--loss`` contradicts is refused."""
    if loss is None:
        return task
    implied = "classification" if loss == "cross_entropy" else "regression"
    if task not in ("auto", implied):
        raise UsageError(f"--loss {loss} trains a {implied} task, got --task {task}: leave one of them out")
    return implied


OUTPUT_FILES = ("results.json", "results.csv", "validation_curve.png", "index.html", "summary.json")


def model_for(args: argparse.Namespace):
    """``--model`` resolved (:mod:`decaylab.cli.user_model`); ``--hidden`` is for ``--model mlp`` only."""
    from decaylab.cli.user_model import resolve_model

    model = resolve_model(args.model)
    if model != "mlp" and hasattr(args, "hidden"):
        raise UsageError(f"--hidden applies to --model mlp only, got --model {args.model!r} with --hidden "
                         f"{','.join(map(str, args.hidden))!r}")
    return model


def prepare_out_dir(out: str, outputs: tuple[str, ...] = OUTPUT_FILES):
    """The output directory, created and checked writable (and free of directories named like ``outputs``)
    before anything is trained."""
    from decaylab.report.write import check_out_dir

    try:
        out_dir = check_out_dir(out, name="--out")
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=out_dir)
        probe.close()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out {out!r} cannot be used as an output directory: {exc.strerror or exc}") from None
    for name in outputs:
        if (out_dir / name).is_dir():
            raise UsageError(f"--out {out!r} holds a directory named {name!r} where the sweep writes that file: "
                             "move it away or choose another --out")
    return out_dir


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
    """results.json, results.csv, validation_curve.png and the HTML report in ``out_dir``: all five
    rendered in memory, then written together (a failed write leaves the previous set whole)."""
    from decaylab._files import replace_atomically
    from decaylab.report import Figure, Section, Table, render_report

    png = result.plot_png()
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
               "engine": result.engine, "path": result.path, "seconds": round(result.wall_time, 2)}
    files = {"results.json": result.to_json(), "results.csv": result.to_csv(), "validation_curve.png": png,
             **render_report(TITLE, [section], summary)}
    replace_atomically(out_dir, files)


def print_summary(result, out_dir) -> None:
    from decaylab.report import text_table

    print(text_table(summary_rows(result)))
    print(f"\nbest λ = {result.best_lambda}  (lr {result.best_lr}),  λ_1se = {result.lambda_1se},  "
          f"{result.trained} trained, {len(result.table) - result.trained} from the store, "
          f"{result.n_diverged} diverged", file=sys.stdout)
    if result.path:
        print(f"engine: {result.path}", file=sys.stdout)
    print(f"wrote {out_dir / 'results.json'}, results.csv, validation_curve.png, index.html", file=sys.stdout)
