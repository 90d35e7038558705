"""``decaylab convert``: say what a weight-decay number means in another convention.

    decaylab convert VALUE --from NAME [--to NAME] [--lr LR] [--batch-size B] [--dataset-size N] [--epochs T]
    decaylab convert --list

With ``--to`` prints the converted value on the first line and the formula (and whether the two
conventions give the same update for every optimizer or only for plain SGD) on the second.
Without ``--to`` prints one line per convention: the value where the given context suffices, else
what is missing. ``--list`` lists the conventions, their aliases and the context each carries.
The math is :mod:`decaylab.conventions`.
"""

from __future__ import annotations

import argparse

from decaylab.cli import UsageError

CONTEXT_FLAGS = ("lr", "batch_size", "dataset_size", "epochs")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a weight-decay strength between conventions",
        description="Convert a weight-decay strength between conventions (penalty λΣw², (λ/2)Σw², coupled "
                    "weight_decay, torch AdamW, the AdamW paper's schedule scaling, sklearn Ridge/MLP alpha, "
                    "normalized decay, EMA timescales). Example: decaylab convert 0.05 --from torch-adamw "
                    "--to schedule --lr 1e-3")
    parser.add_argument("value", nargs="?", type=float, help="the decay strength (or timescale) to convert")
    parser.add_argument("--from", dest="from_", metavar="NAME", help="convention of VALUE (see --list)")
    parser.add_argument("--to", metavar="NAME", help="convention to convert to (default: all of them)")
    parser.add_argument("--lr", type=float, help="peak (initial) learning rate lr_0")
    parser.add_argument("--batch-size", type=float, help="batch size b")
    parser.add_argument("--dataset-size", type=float, help="number of training examples N")
    parser.add_argument("--epochs", type=float, help="training epochs T (of the current restart)")
    parser.add_argument("--list", action="store_true", help="list the conventions and exit")
    parser.set_defaults(func=run)


def _list_lines() -> list[str]:
    from decaylab.conventions import CONTEXT, CONVENTIONS

    rows = [("name", "family", "carries", "meaning (aliases)")]
    for c in CONVENTIONS.values():
        carries = ", ".join(CONTEXT[k][0] for k in c.needs) or "-"
        aliases = f" (aliases: {', '.join(c.aliases)})" if c.aliases else ""
        rows.append((c.name, c.family, carries, c.summary + aliases))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.append("A conversion needs the context (lr, b = batch size, N = dataset size, T = epochs) that "
                 "does not cancel between the two conventions.")
    return lines


def _exactness(src, dst) -> str:
    from decaylab.conventions import get_convention, is_exact

    if is_exact(src, dst):
        return f"exact: both are {get_convention(src).family} decay"
    return "same update for plain SGD without momentum only (coupled vs decoupled differ with momentum or Adam)"


def _missing_flags(src, dst, context: dict) -> str:
    """The command-line flags a src → dst conversion needs and did not get, e.g. ``'--lr, --epochs'``."""
    from decaylab.conventions import required_context

    return ", ".join("--" + k.replace("_", "-") for k in required_context(src, dst) if k not in context)


def _converted(value: float, src, dst, context: dict) -> str:
    """The converted value for the table, or why it has none (outside a float's range)."""
    from decaylab._checks import InputError
    from decaylab.conventions import convert

    try:
        return f"{convert(value, src, dst, **context):.6g}"
    except InputError:
        return "outside a float's range"


def run(args: argparse.Namespace) -> int:
    from decaylab.conventions import CONVENTIONS, convert, formula, get_convention

    if args.list:
        print("\n".join(_list_lines()))
        return 0
    if args.value is None:
        raise UsageError("VALUE is required (or pass --list to list the conventions)")
    if args.from_ is None:
        raise UsageError(f"--from is required; one of {', '.join(CONVENTIONS)}")
    context = {k: getattr(args, k) for k in CONTEXT_FLAGS if getattr(args, k) is not None}
    src = get_convention(args.from_, "--from")
    if args.to is not None:
        dst = get_convention(args.to, "--to")
        missing = _missing_flags(src, dst, context)
        if missing:
            raise UsageError(f"converting {src.name!r} to {dst.name!r} needs {missing}")
        value = convert(args.value, src, dst, **context)
        print(f"{value:.6g}")
        print(f"{formula(src, dst)}   [{_exactness(src, dst)}]")
        return 0
    convert(args.value, src, src, **context)  # checks VALUE and the context once
    for dst in CONVENTIONS.values():
        if dst is src:
            continue
        missing = _missing_flags(src, dst, context)
        shown = f"needs {missing}" if missing else _converted(args.value, src, dst, context)
        print(f"{dst.name:<13} {shown:<34} {formula(src, dst)}")
    return 0
