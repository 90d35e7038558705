"""``--model MODULE:NAME``: the user's own model for ``decaylab sweep``, imported by name.

``NAME`` (dotted for a nested attribute) in ``MODULE`` must be a zero-argument callable — a class or a
function — returning a fresh ``nn.Module``; ``MODULE`` is imported with the current directory first on
``sys.path`` (then ``PYTHONPATH``), so a ``models.py`` beside the data works, and spawned ``--workers``
import it the same way. ``MODULE`` may also be a path to a ``.py`` file (``nets/conv.py:ConvNet``): its
directory goes first on ``sys.path`` and the file is imported by its name. Every way this can fail — a module
that raises or calls ``sys.exit()`` while it is imported included — is a :class:`~decaylab.cli.UsageError`
(exit 2) naming ``--model``, the value and what was expected.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from decaylab._checks import error_line
from decaylab.cli import UsageError

BUILTIN = ("mlp", "linear")


def resolve_model(spec: str) -> str | Callable:
    """``mlp``/``linear`` as they are, or the callable ``MODULE:NAME`` names."""
    if spec in BUILTIN:
        return spec
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model must be mlp, linear or MODULE:NAME (a class or function in an importable "
                         f"module, e.g. mymodels:ConvNet), got {spec!r}")
    if module_name.endswith(".py"):
        if not os.path.isfile(module_name):
            raise UsageError(f"--model {spec!r}: no such file {module_name!r}")
        path = os.path.abspath(module_name)
        folder, module_name = os.path.split(path[:-3])
        loaded = getattr(sys.modules.get(module_name), "__file__", None)
        if loaded is not None and os.path.abspath(loaded) != path:
            raise UsageError(f"--model {spec!r}: a module named {module_name!r} is already imported from "
                             f"{loaded!r}: rename the file")
    else:
        folder = os.getcwd()
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        target = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"--model {spec!r}: no module named {exc.name!r} in the current directory or on "
                         "PYTHONPATH") from None
    except SystemExit as exc:                # sys.exit() at import: the module is a script, not a library
        raise UsageError(f"--model {spec!r}: importing {module_name!r} called sys.exit({exc.code!r}): guard the "
                         "script part with `if __name__ == \"__main__\":`") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise UsageError(f"--model {spec!r}: importing {module_name!r} failed: {error_line(exc)}") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--model {spec!r}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"--model {spec!r} is a {type(target).__name__}, not a class or function returning an "
                         "nn.Module")
    return target
