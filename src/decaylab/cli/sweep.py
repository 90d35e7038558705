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
(:mod:`decaylab.cli.sweep_marglik`). A best λ on the grid's edge or a flat curve
(:func:`decaylab.sweeps.select.choice_warnings`) is one ``decaylab sweep: warning: …`` line each on stderr and
a Warnings section at the top of index.html; the exit code does not change.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from decaylab.cli import UsageError
from decaylab.cli.sweep_data import BUILTIN_DATASETS, prepare_file_data

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
        print(f"decaylab sweep: no usable member: all {len(result.table)} diverged (NaN or runaway loss: "
              f"{result.diverged_members(3)}); try a smaller --lr or a smaller λ range", file=sys.stderr)
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
    sections = [section]
    if result.warnings:        # first, so a reader sees them before the answer they qualify
        sections.insert(0, Section(key="warnings", title="Warnings", text=" ".join(
            f"Warning: {w[0].upper()}{w[1:]}." for w in result.warnings)))
    summary = {"best_lambda": result.best_lambda, "best_lr": result.best_lr, "lambda_1se": result.lambda_1se,
               "metric": result.metric, "members": len(result.table), "diverged": result.n_diverged,
               "engine": result.engine, "path": result.path, "seconds": round(result.wall_time, 2),
               "warnings": result.warnings}
    files = {"results.json": result.to_json(), "results.csv": result.to_csv(), "validation_curve.png": png,
             **render_report(TITLE, sections, summary)}
    replace_atomically(out_dir, files)


def print_summary(result, out_dir) -> None:
    from decaylab.report import text_table

    print(text_table(summary_rows(result)))
    print(f"\nbest λ = {result.best_lambda}  (lr {result.best_lr}),  λ_1se = {result.lambda_1se},  "
          f"{result.trained} trained, {len(result.table) - result.trained} from the store, "
          f"{result.n_diverged} diverged", file=sys.stdout)
    if result.n_diverged:
        print(f"diverged (NaN or runaway loss): {result.diverged_members()}", file=sys.stdout)
    if result.path:
        print(f"engine: {result.path}", file=sys.stdout)
    print(f"wrote {out_dir / 'results.json'}, results.csv, validation_curve.png, index.html", file=sys.stdout)
    for warning in result.warnings:       # the best λ on the grid's edge, a flat curve: the exit code stays
        print(f"decaylab sweep: warning: {warning}", file=sys.stderr)
