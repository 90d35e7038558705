"""``decaylab scale``: the λ of a run too large to sweep, from measured sweeps, under each scaling rule.

    decaylab scale RUN_DIR… --to rows=16000[,width=…,batch=…,lr=…,epochs=…,steps=…] [--vary rows] [--json]

Each ``RUN_DIR`` is what ``decaylab sweep --out`` wrote (its ``results.json``; or a directory, or a store file,
whose ``sweep.sqlite`` holds one or more sweeps: each is a rung), optionally followed by ``@KEY=VALUE,…`` for the
settings the run does not record (``runs/a@rows=1000``: rows are otherwise estimated from steps per epoch × batch;
width and parameter count are recorded for the built-in MLP only). The runs must differ in one variable (``--vary``
declares it); the target (``--to``) must set it, and takes every other setting from the nearest run. Prints the
prediction of every rule (:mod:`decaylab.scaling.rules`) and of the power law fitted to the runs, each with its
interval, τ_iter and τ_epoch, whether the runs are consistent with it, and how far the target lies beyond the
measured runs; ``--json`` prints the same as JSON. Bad input — one run only, runs that differ in more than one
variable, a target that does not set the ladder's variable or names an unknown key — exits 2 with one line.
"""

from __future__ import annotations

import argparse
import json

from decaylab.cli import UsageError

__all__ = ["register", "run", "split_run"]


def register(subparsers) -> None:
    from decaylab.scaling.settings import KEYS, VARIABLES

    parser = subparsers.add_parser(
        "scale", help="predict λ for a larger run from measured sweeps, under each scaling rule",
        description="Fit the scaling rules (Wang & Aitchison's constant τ_epoch, Power Lines, the width rules, AdamC) "
                    "and a power law to measured sweeps that differ in one variable, and predict the λ of a larger "
                    "target run with an interval, in the runs' convention and as τ_iter and τ_epoch.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR[@KEY=V,…]",
                        help="decaylab sweep --out directories, results.json files or results stores; @KEY=V,… "
                             f"gives settings a run does not record ({', '.join(KEYS)})")
    parser.add_argument("--to", required=True, metavar="KEY=V,…",
                        help=f"the target run's settings ({', '.join(KEYS)}); it must set the variable the runs "
                             "differ in")
    parser.add_argument("--vary", choices=VARIABLES, default=None,
                        help="the variable the runs differ in (default: found; runs that differ in more are refused)")
    parser.add_argument("--boot", type=int, default=1000, metavar="N", help="bootstrap draws (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the prediction as JSON")
    parser.set_defaults(func=run)


def split_run(text: str) -> tuple[str, str | None]:
    """``"runs/a@rows=1000"`` → ``("runs/a", "rows=1000")``; a path without ``@KEY=…`` → ``(text, None)``."""
    path, at, settings = text.rpartition("@")
    if at and "=" in settings and path:
        return path, settings
    return text, None


def run(args: argparse.Namespace) -> int:
    from decaylab.scaling import predict, rungs_from_path
    from decaylab.scaling.settings import parse_settings

    rungs = []
    for text in args.runs:
        path, given = split_run(text)
        rungs += rungs_from_path(path, **(parse_settings(given, name=f"{path}@…") if given else {}))
    if len(rungs) < 2:
        raise UsageError(f"a scaling fit needs measured runs at two or more values of what changes, got {len(rungs)} "
                         f"run ({args.runs[0]})")
    prediction = predict(rungs, args.to, vary=args.vary, n_boot=args.boot)
    if args.json:
        print(json.dumps(prediction.to_dict(), indent=2, allow_nan=False))
    else:
        print(prediction)
        estimated = sorted({e for r in rungs for e in r.estimated})
        if estimated:
            print(f"\nestimated, not recorded: {', '.join(estimated)} (rows = steps per epoch × batch); give "
                  "RUN_DIR@rows=… to be exact")
    return 0
