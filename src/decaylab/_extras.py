"""Optional dependencies: which extra brings each, and the one-line error when one is missing.

The core install is torch + numpy (the optimizers, penalties, groups, conventions, the monitor
and the doctor). Everything else is an extra, imported where it is used::

    with needs("sweep", "cross-validation folds"):
        from sklearn.model_selection import KFold

turns a missing scikit-learn into ``MissingExtra: cross-validation folds need scikit-learn:
pip install 'decaylab[sweep]'`` (an ``ImportError``; the command line prints it as one line).
"""

from __future__ import annotations

import contextlib

#: top-level module → (the package pip installs, the extra of decaylab that brings it)
PACKAGES = {"sklearn": "scikit-learn", "scipy": "scipy", "matplotlib": "matplotlib", "tqdm": "tqdm",
            "mnist1d": "mnist1d", "ray": "ray[tune]", "lightning": "lightning", "transformers": "transformers",
            "tensorboard": "tensorboard"}
EXTRAS = ("sweep", "report", "ray", "lightning", "transformers", "tensorboard", "all", "dev")


class MissingExtra(ImportError):
    """A feature needs an optional package that is not installed; the message names the extra."""


@contextlib.contextmanager
def needs(extra: str, feature: str):
    """Run the ``import`` statements inside; a missing optional package raises :class:`MissingExtra`."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in PACKAGES:
            raise
        raise MissingExtra(f"{feature} needs {PACKAGES[top]}, which is not installed: "
                           f"pip install 'decaylab[{extra}]'") from None
