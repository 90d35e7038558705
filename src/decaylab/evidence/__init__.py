"""Choosing weight decay by the Laplace evidence (MacKay 1992; Immer et al. 2021), one idea per module.

- :mod:`.likelihood` — the cross-entropy and Gaussian likelihoods, their output Hessians;
- :mod:`.curvature` — the GGN, full / Kronecker-factored / diagonal, with ``torch.func``;
- :mod:`.prior` — which parameters get a learned prior precision, and the broad prior of the rest;
- :mod:`.laplace` — the Laplace log evidence and its log-determinants;
- :mod:`.optimize` — maximizing it over the prior precisions (and the noise σ);
- :mod:`.api` — :func:`marglik`, the public function (``decaylab.marglik``), and the conventions;
- :mod:`.online` — Immer et al.'s training loop: one run that learns λ (per layer) as it trains.
"""

_LAZY = {
    "marglik": "decaylab.evidence.api",
    "MarglikResult": "decaylab.evidence.api",
    "precision_to_weight_decay": "decaylab.evidence.api",
    "weight_decay_to_precision": "decaylab.evidence.api",
    "train_marglik": "decaylab.evidence.online",
    "OnlineResult": "decaylab.evidence.online",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decaylab.evidence' has no attribute {name!r}")
