"""The ``decaylab`` command line: a thin dispatcher over one module per sub-command.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit code). Bad arguments exit with
code 2 and one line on stderr; so do ``ValueError``/``TypeError`` raised by the library while
validating user input (``UsageError`` for errors found by the command itself).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order ``decaylab --help`` lists them.
COMMANDS = (
    "demo",
    "convert",
    "sweep",
    "repro",
)


class UsageError(Exception):
    """Bad user input found after parsing (a missing file, a malformed grid): exit code 2."""


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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, TypeError) as exc:
        print(f"decaylab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
