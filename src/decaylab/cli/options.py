"""Command-line flags built from declared options (:mod:`decaylab._options`), so a command has the API's options.

Each option becomes one flag, :attr:`~decaylab._options.Option.flag` (``--`` and the name with dashes),
whose ``dest`` is the option's name:

- a bool: ``--name`` / ``--no-name``;
- a choice: one of its choices (a dtype by its name: ``float32``, ``float64``);
- a real or an int: a number, checked by the declaration as it is read (argparse's one-line error, exit 2);
- a pair or names: comma-separated items (``--betas 0.9,0.99``), checked by the declaration;
- any other: read by the declaration's ``parse`` and checked by the function it goes to; an option
  without ``parse`` (Python objects: classes, arrays) has no flag (:func:`on_command_line`).

A flag's default is left unset (``argparse.SUPPRESS``) unless the command gives one: an option the
command line was not given is not passed on, so the API's declared default applies (the help shows it),
and the API knows what the caller gave (:func:`given_options`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping

from decaylab._checks import InputError, InputTypeError
from decaylab._options import Option, comma_list

__all__ = ["add_option", "on_command_line", "given_options", "shown", "Reader"]


def shown(value) -> str:
    """A value as the command line writes it: a dtype by its name, a sequence comma-separated."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(shown, value)) or "none"
    return str(value).removeprefix("torch.")


def on_command_line(option: Option) -> bool:
    """Whether ``option`` has a flag: every kind but a ``"value"`` without ``parse``."""
    return option.kind != "value" or option.parse is not None


class Reader:
    """argparse's ``type`` for one option: the text read by its kind (module docstring) and checked by its
    declaration; a refusal is an ``ArgumentTypeError`` (argparse's one line naming the flag)."""

    def __init__(self, option: Option):
        self.option = option
        self.choices = {shown(c): c for c in option.choices}
        self.__name__ = option.kind                     # argparse names the type in some errors

    def __call__(self, text: str):
        option = self.option
        try:
            if option.kind == "choice":
                if text not in self.choices:
                    raise InputError(f"invalid choice: {text!r} (choose from {', '.join(self.choices)})")
                return self.choices[text]
            read = {"real": float, "int": int, "pair": comma_list(float), "names": comma_list(str)}.get(
                option.kind, option.parse)
            value = read(text)
            return value if option.kind == "value" else option.check(value)
        except (InputError, InputTypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option.name} must be {option.allowed()}, got {text!r}") from None


def add_option(parser, option: Option, *aliases: str, default=argparse.SUPPRESS, help_prefix: str = "",
               default_text: str | None = None) -> argparse.Action:
    """Add ``option``'s flag (and ``aliases``) to ``parser`` (or an argument group); ``default`` replaces the
    unset default where the command has its own (``default_text`` then says it in the help)."""
    shown_default = default_text if default_text is not None else shown(option.default)
    kwargs = dict(dest=option.name, default=default, help=f"{help_prefix}{option.help} (default: {shown_default})")
    if option.kind == "bool":
        if default is not argparse.SUPPRESS:              # argparse adds "(default: …)" itself
            kwargs["help"] = f"{help_prefix}{option.help}"
        return parser.add_argument(option.flag, *aliases, action=argparse.BooleanOptionalAction, **kwargs)
    reader = Reader(option)
    metavar = "{" + ",".join(reader.choices) + "}" if option.kind == "choice" else option.name.upper()
    return parser.add_argument(option.flag, *aliases, type=reader, metavar=metavar, **kwargs)


def given_options(args: argparse.Namespace, options: Iterable[str]) -> dict:
    """The options among ``options`` that the command line set (flags left out are absent)."""
    return {name: getattr(args, name) for name in options if hasattr(args, name)}


def spelled(options: Mapping[str, Option]):
    """A ``spell(name, value)`` for :func:`decaylab.sweeps.options.refuse_unused` and
    :func:`decaylab.optim.options.refuse_inapplicable` that writes flags (with the value the refusal is about:
    ``--method marglik``, ``--optimizer lion``)."""
    return lambda name, value: f"{options[name].flag} {shown(value)}" if name in ("method", "optimizer") \
        else options[name].flag
