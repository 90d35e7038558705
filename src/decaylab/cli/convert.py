"""``decaylab convert``: say what a weight-decay number means in another convention.

    decaylab convert VALUE --from NAME [--to NAME] [--lr LR] [--batch-size B] [--dataset-size N] [--epochs T]
                     [--shape A,B] [--update-rms R] [--adam-lr-ratio Q]
    decaylab convert --list

With ``--to`` prints the converted value on the first line and the formula (and whether the two
conventions give the same update for every optimizer or only for plain SGD; for sklearn's ``mlp-alpha``,
what it assumes of the batches: full ones, or with ``--dataset-size`` the epoch average over sklearn's
short last batch) on the second; between
two update-normalized optimizers (Muon, Lion, AdamW: the value keeps the decay relative to the
update) a third line gives the lr that makes it the same run (with ``--lr``: its value).
Without ``--to`` prints one line per convention: the value where the given context suffices, else
what is missing. ``--list`` lists the conventions, their aliases and the context each carries.
The math is :mod:`decaylab.conventions`.
"""

from __future__ import annotations

import argparse

from decaylab.cli import UsageError

CONTEXT_FLAGS = ("lr", "batch_size", "dataset_size", "epochs", "shape", "update_rms", "adam_lr_ratio")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a weight-decay strength between conventions",
        description="Convert a weight-decay strength between conventions (penalty λΣw², (λ/2)Σw², coupled "
                    "weight_decay, torch AdamW, the AdamW paper's schedule scaling, sklearn Ridge/MLP alpha, "
                    "normalized decay, EMA timescales, Muon's lr adjustments, Keras' Muon, Lion). Example: decaylab "
                    "convert 0.05 --from torch-adamw --to schedule --lr 1e-3; decaylab convert 0.1 --from "
                    "torch-adamw --to muon-original --shape 1024,4096")
    parser.add_argument("value", nargs="?", type=float, help="the decay strength (or timescale) to convert")
    parser.add_argument("--from", dest="from_", metavar="NAME", help="convention of VALUE (see --list)")
    parser.add_argument("--to", metavar="NAME", help="convention to convert to (default: all of them)")
    parser.add_argument("--lr", type=float, help="peak (initial) learning rate lr_0")
    parser.add_argument("--batch-size", type=float, help="batch size b")
    parser.add_argument("--dataset-size", type=float, help="number of training examples N")
    parser.add_argument("--epochs", type=float, help="training epochs T (of the current restart)")
    parser.add_argument("--shape", metavar="A,B", help="a Muon matrix's rows A and columns B, e.g. 1024,4096")
    parser.add_argument("--update-rms", type=float, help="a Muon update's RMS per unit lr r (decaylab Muon's "
                                                         "update_rms, Keras Muon's rms_rate)")
    parser.add_argument("--adam-lr-ratio", type=float, help="Keras Muon's adam_lr_ratio q")
    parser.add_argument("--list", action="store_true", help="list the conventions and exit")
    parser.set_defaults(func=run)


def _list_lines() -> list[str]:
    from decaylab.conventions import CONTEXT, CONVENTIONS

    rows = [("name", "family", "carries", "meaning (aliases)")]
    for c in CONVENTIONS.values():
        carries = ", ".join(CONTEXT[k][0] for k in c.needs) or "-"
        if c.update_needs:
            carries += "; k: " + ", ".join("A×B" if k == "shape" else CONTEXT[k][0] for k in c.update_needs)
        aliases = f" (aliases: {', '.join(c.aliases)})" if c.aliases else ""
        rows.append((c.name, c.family, carries, c.summary + aliases))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.append("A conversion needs the context (lr, b = batch size, N = dataset size, T = epochs; between Muon, "
                 "Lion and AdamW, what their update RMS k·lr depends on: A×B = --shape, r, q) that does not "
                 "cancel between the two conventions.")
    return lines


def _exactness(src, dst, context: dict) -> str:
    from decaylab.conventions import get_convention, is_exact, mlp_alpha_assumption, update_matched

    src, dst = get_convention(src), get_convention(dst)
    rows = {k: context[k] for k in ("batch_size", "dataset_size") if k in context}
    assumption = mlp_alpha_assumption(src, dst, **rows)
    if assumption is not None:
        exact = ("exact only with full batches" if "dataset_size" not in rows
                 else "exact" if is_exact(src, dst, **rows) else "not exact")
        return f"{exact}: {assumption}"
    if update_matched(src, dst):
        if is_exact(src, dst):
            return f"exact: the same decay relative to the update, both normalize it alike ({src.basis})"
        caveats = [_APPROXIMATE[b] for b in dict.fromkeys((src.basis, dst.basis)) if b in _APPROXIMATE]
        return f"the same decay relative to the update size as far as {' and '.join(caveats)}"
    if is_exact(src, dst):
        return f"exact: both are {src.family} decay"
    return "same update for plain SGD without momentum only (coupled vs decoupled differ with momentum or Adam)"


#: why an update-matched pair across normalizations is approximate, per basis
_APPROXIMATE = {"adam": "AdamW's update RMS is 0.2·lr (a typical measured value)",
                "orthogonal": "Newton–Schulz's O is orthogonal (it is nearly so, RMS ≈ 0.85–0.9 of it)"}


def _lr_line(src, dst, context: dict) -> str:
    """For an update-matched pair: the lr on the ``dst`` side that makes the converted value the same run."""
    from decaylab.conventions import update_matched_lr

    shape_context = {k: v for k, v in context.items() if k != "lr"}
    ratio = update_matched_lr(1.0, src, dst, **shape_context)
    same = "the same update RMS and per-step decay lr·λ"
    if "lr" in context:
        return f"with lr {update_matched_lr(context['lr'], src, dst, **shape_context):.6g} (= lr × {ratio:.6g}): {same}"
    return f"with lr × {ratio:.6g} on the {dst.name} side: {same} (pass --lr for its value)"


def _formula(src, dst, context: dict) -> str:
    """The conversion's formula; with sklearn's short last batch counted, ``c`` and its value."""
    from decaylab.conventions import counts_short_last_batch, formula, mlp_alpha_batch_factor

    b, n = context.get("batch_size"), context.get("dataset_size")
    if not counts_short_last_batch(src, dst, b, n):
        return formula(src, dst)
    return f"{formula(src, dst, batch_factor=True)}, c = {mlp_alpha_batch_factor(b, n):.6g}"


def _shape(text: str | None) -> tuple[int, int] | None:
    """``--shape A,B`` (or AxB) as a pair of integers."""
    if text is None:
        return None
    parts = text.replace("x", ",").replace("×", ",").split(",")
    try:
        rows, cols = (int(part) for part in parts)
    except ValueError:
        raise UsageError(f"--shape must be two integers A,B (a Muon matrix's rows and columns), got {text!r}") from None
    return rows, cols


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
    from decaylab.conventions import CONVENTIONS, convert, get_convention, update_matched

    if args.list:
        print("\n".join(_list_lines()))
        return 0
    if args.value is None:
        raise UsageError("VALUE is required (or pass --list to list the conventions)")
    if args.from_ is None:
        raise UsageError(f"--from is required; one of {', '.join(CONVENTIONS)}")
    args.shape = _shape(args.shape)
    context = {k: getattr(args, k) for k in CONTEXT_FLAGS if getattr(args, k) is not None}
    src = get_convention(args.from_, "--from")
    if args.to is not None:
        dst = get_convention(args.to, "--to")
        missing = _missing_flags(src, dst, context)
        if missing:
            raise UsageError(f"converting {src.name!r} to {dst.name!r} needs {missing}")
        value = convert(args.value, src, dst, **context)
        print(f"{value:.6g}")
        print(f"{_formula(src, dst, context)}   [{_exactness(src, dst, context)}]")
        if update_matched(src, dst):
            print(_lr_line(src, dst, context))
        return 0
    convert(args.value, src, src, **context)  # checks VALUE and the context once
    width = max(len(name) for name in CONVENTIONS)
    for dst in CONVENTIONS.values():
        if dst is src:
            continue
        missing = _missing_flags(src, dst, context)
        shown = f"needs {missing}" if missing else _converted(args.value, src, dst, context)
        print(f"{dst.name:<{width}} {shown:<34} {_formula(src, dst, context)}")
    return 0
