"""``decaylab repro``: reproduce a published weight-decay result at small scale and write its report.

    decaylab repro decoupling [--out DIR] [--quick] [--seeds N] [--epochs N] [--workers N] [--no-progress]
    decaylab repro scaling [--out DIR] [--quick] [--seeds N] [--epochs N] [--no-progress]

``decoupling`` is Loshchilov & Hutter 2019, Figure 2: lr × λ maps for SGD, SGDW, Adam and
AdamW (plus AdamW with torch's lr-scaled decay), the basin slope of each with a confidence
interval over seeds, in two regimes (an un-normalized and a LayerNorm MLP) against the slope
the theory predicts for each (:mod:`decaylab.experiments.decoupling`). Prints the slopes table on
stdout and writes ``DIR/index.html`` and ``DIR/summary.json`` (every cell of every map).

``scaling`` checks the λ scaling rules (:mod:`decaylab.scaling`) on ladders of MNIST-1D sweeps (rows, width,
batch): fitted on every rung but the largest, each rule predicts the largest, which is then swept; the table of
|Δlog10 λ| and regrets per ladder and rule is printed, the curves with the predicted λ marked are in the report
(:mod:`decaylab.experiments.scaling`).
"""

from __future__ import annotations

import argparse

from decaylab._checks import check_int
from decaylab.cli import RunFailed, UsageError

STUDIES = ("decoupling", "scaling")
TITLE = "Decoupled weight decay: learning rate × λ maps (Loshchilov & Hutter 2019, Fig. 2)"
SCALING_TITLE = "λ across scale: the scaling rules fitted on small runs and checked on a larger one"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "repro",
        help="reproduce a published weight-decay result (decoupling: lr × λ maps; scaling: λ scaling rules)",
        description="Reproduce a published weight-decay result at small scale and write DIR/index.html "
                    "and DIR/summary.json. decoupling: lr × λ maps for SGD, SGDW, Adam, AdamW "
                    "(Loshchilov & Hutter 2019, Figure 2) with the slope of log(best λ) vs log(lr). scaling: the λ "
                    "scaling rules fitted on ladders of small runs, each predicting a held-out larger run.")
    parser.add_argument("study", choices=STUDIES, help="which result to reproduce")
    parser.add_argument("--out", metavar="DIR", default="decaylab-repro",
                        help="directory for index.html and summary.json (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="decoupling: 5×5 grids and shorter training (fixed-point 200 steps instead of 1000, "
                             "equilibrium 300 instead of 1500); scaling: three rungs a ladder, 9 λ, 2 seeds: "
                             "a smoke run, well under 2 minutes")
    parser.add_argument("--seeds", metavar="N", type=int, default=None,
                        help="seeds per cell, for the confidence intervals (decoupling default: 5, or 3 with "
                             "--quick; scaling: 4, or 2 with --quick)")
    parser.add_argument("--epochs", metavar="N", type=int, default=None,
                        help="training epochs per member in both regimes (default: 1000 full-batch steps "
                             "fixed-point and 300 epochs of 5 mini-batches equilibrium; 200 and 60 with --quick)")
    parser.add_argument("--workers", metavar="N", type=int, default=None,
                        help="processes the maps are shared out over, one thread each (default: 2, or 1 on a "
                             "one-core machine); the numbers do not depend on it")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="do not draw progress bars on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from decaylab.report import text_table, write_report
    from decaylab.report.write import check_out_dir

    try:
        out_dir = check_out_dir(args.out, name="--out")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.seeds is not None:
        check_int("--seeds", args.seeds, low=2 if args.study == "scaling" else 1, high=100)
    if args.epochs is not None:
        check_int("--epochs", args.epochs, low=1, high=100_000)
    if args.workers is not None:
        check_int("--workers", args.workers, low=1, high=64)
    if args.study == "scaling":
        return _run_scaling(args, out_dir)
    from decaylab._workers import WorkerDied
    from decaylab.experiments.decoupling import run_decoupling

    try:
        result = run_decoupling(quick=args.quick, seeds=args.seeds, epochs=args.epochs, progress=args.progress,
                                workers=args.workers)
    except WorkerDied as died:
        raise RunFailed(f"--workers {died.workers}: a worker process died before finishing its maps, most likely "
                        f"out of memory ({died.finished} of {died.chunks} maps finished); run the same command "
                        f"again with --workers 1") from None
    seeds = result.summary["setup"]["seeds"]
    summary = dict(result.summary, run={"quick": args.quick, "seeds": seeds, "epochs": args.epochs,
                                        "seconds": round(result.seconds, 2)})
    print(text_table(result.rows))
    intro = (f"Measured in {result.seconds:.0f} s ({'quick' if args.quick else 'full'} mode, {seeds} seeds). "
             f"Every cell of every map is in summary.json beside this page (key \"cells\")."
             + (" Quick mode is a smoke run: 5×5 grids and short training are too coarse to judge the slopes; "
                "run without --quick for the study." if args.quick else ""))
    try:
        index = write_report(out_dir, TITLE, result.sections, summary, intro=intro)
    except OSError as exc:
        raise UsageError(f"--out {str(args.out)!r}: cannot write the report: {exc}") from None
    print(f"\nreport: {index}  (and {index.parent / 'summary.json'}) in {result.seconds:.0f} s")
    return 0


def _run_scaling(args: argparse.Namespace, out_dir) -> int:
    """``decaylab repro scaling``: the ladders, the table on stdout, the report in ``out_dir``."""
    from decaylab.experiments.scaling import run_scaling
    from decaylab.report import text_table, write_report

    if args.workers is not None:
        raise UsageError("--workers applies to decoupling only (scaling's sweeps train each rung as one batched model)")
    result = run_scaling(quick=args.quick, seeds=args.seeds, epochs=args.epochs, progress=args.progress)
    setup = result.summary["setup"]
    summary = dict(result.summary, run={"quick": args.quick, "seeds": setup["seeds"], "epochs": setup["epochs"],
                                        "seconds": round(result.seconds, 2)})
    print(text_table(result.rows))
    intro = (f"Measured in {result.seconds:.0f} s ({'quick' if args.quick else 'full'} mode, {setup['seeds']} seeds, "
             f"{setup['epochs']} epochs). Per ladder, every rule and the power law fitted to the smaller rungs predict "
             "the largest rung's λ; |Δlog10 λ| ≤ 0.3 is within a factor of 2, and the regret (validation loss at the "
             "predicted λ minus the curve's minimum) is set against the standard error over seeds.")
    try:
        index = write_report(out_dir, SCALING_TITLE, result.sections, summary, intro=intro)
    except OSError as exc:
        raise UsageError(f"--out {str(args.out)!r}: cannot write the report: {exc}") from None
    print(f"\nreport: {index}  (and {index.parent / 'summary.json'}) in {result.seconds:.0f} s")
    return 0
