"""decaylab: weight decay (L2 regularization) for PyTorch — correct in every convention, fast, and visible."""

__version__ = "0.1.0"

from decaylab.ridge import ridge_path  # numpy only: cheap

# Public names whose modules import torch: loaded on first use so `import decaylab` stays light.
_LAZY = {
    "sweep": "decaylab.sweeps",
    "l2_penalty": "decaylab.penalty",
    "l1_penalty": "decaylab.penalty",
    "param_groups": "decaylab.groups",
    "DecayRule": "decaylab.groups",
    "convert": "decaylab.conventions",
    "normalized_weight_decay": "decaylab.conventions",
    "DecayMonitor": "decaylab.diagnostics.monitor",
    "doctor": "decaylab.diagnostics.doctor",
    "fit": "decaylab.train",
    "run_demo": "decaylab.experiments.demo",
    "SGD": "decaylab.optim",
    "SGDW": "decaylab.optim",
    "Adam": "decaylab.optim",
    "AdamW": "decaylab.optim",
    "CosineWarmRestarts": "decaylab.schedules",
    "sgdwr": "decaylab.schedules",
    "adamwr": "decaylab.schedules",
    "lr_decay_map": "decaylab.maps.lr_map",
    "marglik": "decaylab.evidence.api",
}


# Subpackages and modules reachable as attributes (``decaylab.optim.AdamW``), imported on first use.
_SUBMODULES = ("optim", "sweeps", "train", "experiments", "report", "conventions", "groups", "penalty",
               "diagnostics", "batched", "maps", "schedules", "data", "models", "ridge", "cli", "integrations")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"decaylab.{name}")
    raise AttributeError(f"module 'decaylab' has no attribute {name!r}")


__all__ = ["__version__", "ridge_path", *_LAZY]


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
