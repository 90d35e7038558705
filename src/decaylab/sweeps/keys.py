"""What identifies a stored run: the store format and the specifications' part of the store key.

A grid member's key hashes its (λ, lr, seed, fold) with the sweep's configuration, whose ``"train"``
part is :func:`train_key`: the :class:`~decaylab.optim.spec.OptimizerSpec`'s options by their option
names, the run's fields of the :class:`~decaylab.batched.members.TrainConfig` (``dtype`` as its name), and
what decays as the sweep's what-decays options (:data:`decaylab.runspec.DECAY_OPTIONS`, from which the
config's :class:`~decaylab.groups.DecayRule` is built) — the layout and values of format 2, so every
store written since format 2 resumes. An option added later enters a key only when it is not at its
default (:func:`changed`), so the keys of every configuration that could be written before stay the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from decaylab._options import Option
from decaylab.sweeps.options import SWEEP_OPTIONS

__all__ = ["STORE_FORMAT", "ADDED_AFTER_FORMAT_2", "train_key", "decay_key", "changed"]

STORE_FORMAT = 2          # part of every key: bump when the meaning of a stored row changes
#                           (2: what decays follows param_groups' rule; optimizer options cautious/l1_decay/…)

#: Options of ``decaylab.sweep`` a grid member's ``"train"`` key takes only where they are not at their default
#: (:func:`changed`): those added after format 2, so that no store written before them retrains.
ADDED_AFTER_FORMAT_2: tuple[str, ...] = ("standardize",)


def decay_key(values: Mapping) -> dict:
    """What decays, as format 2's keys hold it: ``decay_biases`` and the overrides (types by qualified name,
    ``None`` for none given; patterns as lists)."""
    types = values["no_decay_types"]
    if types is not None:
        types = [f"{t.__module__}.{t.__qualname__}" for t in ((types,) if isinstance(types, type) else types)]
    names = {k: [values[k]] if isinstance(values[k], str) else list(values[k])
             for k in ("no_decay_names", "decay_names")}
    return {"decay_biases": values["decay_biases"], "no_decay_types": types, **names,
            "decay_embeddings": values["decay_embeddings"]}


def train_key(config, values: Mapping) -> dict:
    """The ``"train"`` part of a grid member's key for a :class:`~decaylab.batched.members.TrainConfig` and the
    checked option values it was built from (module docstring): its what-decays options, and those of
    :data:`ADDED_AFTER_FORMAT_2` that are not at their default."""
    added = changed([SWEEP_OPTIONS[name] for name in ADDED_AFTER_FORMAT_2], values)
    return {**config.optimizer.as_dict(), "epochs": config.epochs, "batch_size": config.batch_size,
            "lr_schedule": config.lr_schedule, "loss": config.loss, "dtype": str(config.dtype),
            **decay_key(values), **{name: values[name] for name in added}}


def changed(options: Iterable[Option], values: Mapping) -> list[str]:
    """The names of the options whose (checked) value is not their default: how an option added after format 2
    enters a key."""
    return [o.name for o in options if values[o.name] != o.default]
