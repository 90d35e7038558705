"""The ``decaylab`` command line: a thin dispatcher over one module per sub-command.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit code).

Error policy:

- bad input exits with code 2 and one line on stderr: argparse's errors, :class:`UsageError` (found by
  the command itself: a missing file, a malformed grid) and the library's
  :class:`decaylab._checks.InputError` / :class:`~decaylab._checks.InputTypeError` (its argument and
  data checks at the public edge);
- a run that could not finish for a reason outside decaylab (:class:`RunFailed`: a worker process killed
  for memory) exits with code 1 and one line saying what was kept and what to do;
- anything else is a bug in decaylab: exit code 1, the traceback, and a line asking to report it
  (a plain ``ValueError`` from deep inside the library is *not* taken for bad input).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from decaylab._checks import InputError, InputTypeError
from decaylab._extras import MissingExtra

#: Where ``decaylab`` asks users to report a bug (the traceback above it says where it happened).
REPORT_BUG = ("decaylab: this is a bug in decaylab, not a problem with your input; please report it with the "
              "command line and the traceback above")

# Sub-command modules, in the order ``decaylab --help`` lists them.
COMMANDS = (
    "demo",
    "convert",
    "sweep",
    "scale",
    "repro",
)


class UsageError(Exception):
    """Bad user input found after parsing (a missing file, a malformed grid): exit code 2."""


class RunFailed(Exception):
    """A run that could not finish for a reason outside decaylab (e.g. a worker killed for memory): exit code 1
    and the message, one line."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="decaylab", description="Weight decay for PyTorch: correct, fast and visible.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"decaylab.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:                        # --help (0), or argparse's one-line usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, InputError, InputTypeError, MissingExtra) as exc:
        print(f"decaylab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"decaylab {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"decaylab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:                                          # noqa: BLE001 - anything else is a bug
        traceback.print_exc()
        print(REPORT_BUG, file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
