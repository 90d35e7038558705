"""``decaylab demo``: run the built-in weight-decay studies and write their HTML report.

    decaylab demo [--out DIR] [--quick] [--seed N] [--study KEY ...] [--no-progress]

Runs the studies of :func:`decaylab.experiments.demo.run_demo` (progress bars on stderr),
prints a short results table on stdout, and writes ``DIR/index.html`` and
``DIR/summary.json``. The report is written only once every study has finished, and
atomically, so a failed or interrupted run leaves a previous report in ``DIR`` intact;
the studies that did finish are written to ``DIR/partial/`` instead (removed again by the
next complete run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from decaylab.cli import UsageError
from decaylab.report.write import REPORT_FILES

SEED_MAX = 2**32 - 1  # numpy's seed range
TITLE = "What weight decay does: the decaylab demo"


def seed_argument(text: str) -> int:
    """An argparse type: an integer seed in [0, 2**32 - 1]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {value}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the weight-decay studies and write an HTML report",
        description="Train small models with and without weight decay (decision boundaries vs λ, ridge "
                    "overlay, coupled vs decoupled decay, L1 vs L2, dropout vs decay, λ by cross-validation and "
                    "by the evidence, convergence, overfitting, Muon's and Lion's norm bounds) and write "
                    "DIR/index.html (opens offline in a browser) and DIR/summary.json.")
    parser.add_argument("--out", metavar="DIR", default="decaylab-report",
                        help="directory for index.html and summary.json (default: %(default)s); other files "
                             "in it are left alone")
    parser.add_argument("--quick", action="store_true", help="smaller studies (under 40 s instead of ~3 min)")
    parser.add_argument("--seed", metavar="N", type=seed_argument, default=0,
                        help="random seed for data splits and initialisation (default: %(default)s)")
    parser.add_argument("--study", metavar="KEY", dest="studies", action="append",
                        help="run only this study (repeatable): boundaries, ridge, coupling, sparsity, dropout, "
                             "cross_validation, evidence, convergence, overfitting, muon_lion (default: all)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="do not draw progress bars on stderr")
    parser.set_defaults(func=run)


def intro_text(quick: bool, seed: int, seconds: float) -> str:
    mode = "quick mode (smaller grids and fewer epochs)" if quick else "full mode"
    return (f"Weight decay adds λ·Σw² to the loss, or shrinks every weight a little at each step. Each section "
            f"below trains small models on real data with and without it and shows what changes: the numbers in "
            f"the text are measured, not assumed. Run in {mode} with seed {seed} in {seconds:.0f} s; all numbers "
            f"are also in summary.json beside this page.")


def run(args: argparse.Namespace) -> int:
    from decaylab.experiments.demo import STUDIES, run_demo
    from decaylab.report import text_table, write_report
    from decaylab.report.write import check_out_dir

    try:
        out_dir = check_out_dir(args.out, name="--out")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    studies = list(dict.fromkeys(args.studies)) if args.studies else list(STUDIES)  # in order, once each
    finished = {}  # study key -> StudyResult, filled as studies finish
    start = time.perf_counter()
    try:
        result = run_demo(quick=args.quick, seed=args.seed, progress=args.progress, studies=studies,
                          on_study=finished.__setitem__)
    except BaseException as exc:
        if finished:
            partial = write_partial_report(out_dir, finished, studies, exc, args)
            print(f"decaylab demo: {type(exc).__name__} after {len(finished)} of {len(studies)} studies; "
                  f"the finished ones are in {partial}", file=sys.stderr)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise
    seconds = time.perf_counter() - start
    summary = dict(result.summary)
    summary.setdefault("run", {"quick": args.quick, "seed": args.seed, "seconds": round(seconds, 2)})
    if result.rows:
        print(text_table(result.rows))
    print(checks_line(summary.get("checks", {})))
    try:
        index = write_report(out_dir, TITLE, result.sections, summary, intro=intro_text(args.quick, args.seed, seconds))
        remove_partial_report(out_dir)
    except OSError as exc:
        raise UsageError(f"--out {str(args.out)!r}: cannot write the report: {exc}") from None
    print(f"\nreport: {index}  (and {index.parent / 'summary.json'}) in {seconds:.0f} s")
    return 0


def checks_line(checks: dict) -> str:
    """One line on the expected directions (the boolean entries of the demo's ``checks``)."""
    verdicts = {name: value for name, value in checks.items() if isinstance(value, bool)}
    failed = [name for name, value in verdicts.items() if not value]
    line = f"\nchecks: {len(verdicts) - len(failed)} of {len(verdicts)} expected directions hold"
    return line + (f"; NOT: {', '.join(failed)}" if failed else "")


def write_partial_report(out_dir: Path, finished: dict, studies, exc: BaseException, args) -> Path:
    """Write the finished studies to ``out_dir/partial/`` and return its index.html."""
    from decaylab.report import write_report

    missing = [key for key in studies if key not in finished]
    summary = {"studies": {key: r.summary for key, r in finished.items()},
               "incomplete": {"finished": list(finished), "missing": missing,
                              "error": f"{type(exc).__name__}: {exc}"},
               "run": {"quick": args.quick, "seed": args.seed}}
    intro = (f"Incomplete run: {type(exc).__name__} ({exc}) stopped the demo before {', '.join(missing)}. "
             f"These are the {len(finished)} studies that finished.")
    return write_report(out_dir / "partial", TITLE + " (incomplete)", [r.section for r in finished.values()],
                        summary, intro=intro)


def remove_partial_report(out_dir: Path) -> None:
    """After a complete run, remove what an earlier failed run left in ``out_dir/partial/``."""
    partial = out_dir / "partial"
    for name in REPORT_FILES:
        (partial / name).unlink(missing_ok=True)
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
