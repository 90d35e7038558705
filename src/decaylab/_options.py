"""Options declared once: name, default, what is allowed and one line of help, checked at the public edge.

scikit-learn's ``_parameter_constraints`` is the model: an :class:`Option` says what a parameter may
hold, and :meth:`Option.check` refuses anything else with an :class:`~decaylab._checks.InputError` /
:class:`~decaylab._checks.InputTypeError` naming the parameter, the value and what is allowed. Each
option is declared where its owner lives — the optimizer's in :mod:`decaylab.optim.options`, a
training run's in :mod:`decaylab.runspec`, a sweep's own in :mod:`decaylab.sweeps.options` — and every
reader uses that one declaration: the owner's checks, ``decaylab.sweep``'s signature (its defaults are
:class:`Default` objects holding the declared values) and the command line
(:mod:`decaylab.cli.options`); tests compare them.

Kinds, and what :meth:`Option.check` accepts:

- ``"real"``: a finite real number (not a bool) in ``interval``;
- ``"int"``: an integer (not a bool) in ``interval`` (its ends are closed);
- ``"bool"``: ``True`` or ``False``;
- ``"choice"``: one of ``choices``;
- ``"pair"``: two reals, each in ``interval`` (``betas``); returned as a tuple of floats;
- ``"names"``: a string or a sequence of strings (name patterns); returned as a tuple;
- ``"value"``: anything here — it is checked where it is used (a grid, a device, a path, data).

``none=True`` also allows ``None`` (the help says what it means). ``torch_message``: the start of the
``ValueError`` torch's optimizers raise for the same bad value (``"Invalid momentum value: {value}"``), which
decaylab's optimizers keep so that code matching torch's errors matches theirs; the detail follows in
parentheses. ``parse``: how the command line reads a ``"value"`` option's text (``None``: not on the command
line; the other kinds are read from their kind).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from decaylab._checks import InputError, InputTypeError, check_choice, check_int, check_real

__all__ = ["Interval", "Option", "Default", "declared", "given_values", "comma_list"]

KINDS = ("real", "int", "bool", "choice", "pair", "names", "value")


@dataclass(frozen=True)
class Interval:
    """``[low, high]``, an end open where ``low_open``/``high_open``; ``None``: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def bounds(self) -> dict:
        """The keyword arguments of :func:`decaylab._checks.check_real` for this interval."""
        return dict(low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open)

    def __str__(self) -> str:
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}" \
               f"{')' if self.high_open or self.high is None else ']'}"


ANY_REAL = Interval()


@dataclass(frozen=True)
class Option:
    """One declared parameter (module docstring)."""

    name: str
    default: Any
    help: str
    kind: str = "value"
    choices: tuple = ()
    interval: Interval = ANY_REAL
    none: bool = False
    torch_message: str | None = None
    parse: Callable[[str], Any] | None = None

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        if (self.kind == "choice") != bool(self.choices):
            raise InputError(f"option {self.name!r}: choices go with kind 'choice' (and it needs them)")

    def check(self, value: Any, name: str | None = None) -> Any:
        """``value`` if this option allows it (``"pair"``/``"names"``: as a tuple), else an
        :class:`InputError`/:class:`InputTypeError` naming ``name`` (default: the option's), the value and
        what is allowed."""
        name = name or self.name
        if value is None and self.none:
            return None
        if self.kind == "pair":
            return self._check_pair(value, name)
        try:
            return self._check_one(value, name)
        except InputError as exc:
            if self.torch_message is None:
                raise
            raise InputError(f"{self.torch_message.format(value=value)} ({exc})") from None

    def _check_one(self, value: Any, name: str) -> Any:
        if self.kind == "real":
            check_real(name, _scalar(value), **self.interval.bounds())
        elif self.kind == "int":
            check_int(name, value, low=_int_end(self.interval.low, self.interval.low_open, +1),
                      high=_int_end(self.interval.high, self.interval.high_open, -1))
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise InputTypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
        elif self.kind == "choice":
            check_choice(name, value, self.choices)
        elif self.kind == "names":
            value = (value,) if isinstance(value, str) else value
            if not isinstance(value, Iterable):
                raise InputTypeError(f"{name} must be a string or a sequence of strings, got {value!r}")
            value = tuple(value)
            for item in value:
                if not isinstance(item, str):
                    raise InputTypeError(f"{name} must be strings, got {item!r} ({type(item).__name__})")
        return value

    def _check_pair(self, value: Any, name: str) -> tuple[float, float]:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
            raise InputTypeError(f"{name} must be a pair ({name}[0], {name}[1]), got {value!r}")
        element = Option(self.name, None, self.help, kind="real", interval=self.interval)
        pair = []
        for i, item in enumerate(value):
            try:
                pair.append(float(_scalar(element.check(item, f"{name}[{i}]"))))
            except InputError as exc:
                if self.torch_message is None:
                    raise
                raise InputError(f"{self.torch_message.format(index=i, value=value[i])} ({exc})") from None
        return tuple(pair)

    @property
    def flag(self) -> str:
        """The command-line flag: ``--`` and the name with dashes (``--batch-size``)."""
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """What the option allows, in words (for help texts)."""
        text = {"real": f"a real number in {self.interval}", "int": f"an integer in {self.interval}",
                "bool": "True or False", "choice": "one of " + ", ".join(map(repr, self.choices)),
                "pair": f"two reals in {self.interval}", "names": "name patterns",
                "value": "see the help"}[self.kind]
        return text + (" or None" if self.none else "")


def _scalar(value: Any) -> Any:
    """A 0-d tensor or array as its Python number (torch's optimizers take tensor hyperparameters); else ``value``."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", None) == 0 else value


def _int_end(end: float | None, is_open: bool, step: int) -> int | None:
    """The closed integer end of an interval end (an open end ``(0`` is ``[1``)."""
    if end is None:
        return None
    closed = math.ceil(end) if step > 0 else math.floor(end)
    return closed + step if is_open and closed == end else closed


def declared(options: Iterable[Option]) -> dict[str, Option]:
    """Options by name (a name declared twice is refused: a declaration is made once)."""
    table: dict[str, Option] = {}
    for option in options:
        if option.name in table:
            raise InputError(f"option {option.name!r} is declared twice")
        table[option.name] = option
    return table


class Default:
    """A declared default standing in a signature: shown as the value (``help(decaylab.sweep)`` reads
    ``lr=0.001``), and telling the function that the caller left the option out."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def given_values(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """``(values, given)``: each argument's value (a :class:`Default` replaced by its value) and the names
    the caller gave."""
    values = {k: v.value if isinstance(v, Default) else v for k, v in arguments.items()}
    return values, frozenset(k for k, v in arguments.items() if not isinstance(v, Default))


def comma_list(item: Callable[[str], Any]) -> Callable[[str], list]:
    """A command-line reader of comma-separated items (``"0,1,2"`` → ``[0, 1, 2]`` with ``item=int``)."""

    def read(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        try:
            return [item(p) for p in parts if p or item is str]
        except ValueError:
            raise InputError(f"must be comma-separated {what}, got {text!r}") from None

    what = {int: "integers", float: "numbers"}.get(item, "names")
    read.__name__ = f"comma-separated {what}"
    return read
