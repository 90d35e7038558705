"""``decaylab repro``: reproduce a published weight-decay result at small scale and write its report.

    decaylab repro decoupling [--out DIR] [--quick] [--seeds N] [--epochs N] [--workers N] [--no-progress]

``decoupling`` is Loshchilov & Hutter 2019, Figure 2: lr × λ maps for SGD, SGDW, Adam and
AdamW (plus AdamW with torch's lr-scaled decay), the basin slope of each with a confidence
interval over seeds, in two regimes (an un-normalized and a LayerNorm MLP) against the slope
the theory predicts for each (:mod:`decaylab.experiments.decoupling`). Prints the slopes table on
stdout and writes ``DIR/index.html`` and ``DIR/summary.json`` (every cell of every map).
"""

from __future__ import annotations

import argparse

from decaylab._checks import check_int
from decaylab.cli import RunFailed, UsageError

STUDIES = ("decoupling",)
TITLE = "Decoupled weight decay: learning rate × λ maps (Loshchilov & Hutter 2019, Fig. 2)"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "repro", help="reproduce a published weight-decay result (decoupling: lr × λ maps)",
        description="Reproduce a published weight-decay result at small scale and write DIR/index.html "
                    "and DIR/summary.json. decoupling: lr × λ maps for SGD, SGDW, Adam, AdamW "
                    "(Loshchilov & Hutter 2019, Figure 2) with the slope of log(best λ) vs log(lr).")
    parser.add_argument("study", choices=STUDIES, help="which result to reproduce")
    parser.add_argument("--out", metavar="DIR", default="decaylab-repro",
                        help="directory for index.html and summary.json (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="5×5 grids and shorter training (fixed-point 200 steps instead of 1000, "
                             "equilibrium 300 instead of 1500): a smoke run, well under 2 minutes")
    parser.add_argument("--seeds", metavar="N", type=int, default=None,
                        help="seeds per cell, for the confidence intervals (default: 5, or 3 with --quick)")
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
    from decaylab.experiments.decoupling import run_decoupling

    if args.seeds is not None:
        check_int("--seeds", args.seeds, low=1, high=100)
    if args.epochs is not None:
        check_int("--epochs", args.epochs, low=1, high=100_000)
    if args.workers is not None:
        check_int("--workers", args.workers, low=1, high=64)

    from decaylab._workers import WorkerDied

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
