"""The τ_epoch range the scaling rules have been checked on here, for the doctor's ``tau-unsupported`` finding.

:data:`MEASURED_TAU_EPOCH` is the range of the best τ_epoch = τ_iter·B/N (:mod:`decaylab.conventions`) over every
rung of every ladder of ``decaylab repro scaling`` (MNIST-1D, MLP 40-w-10, torch AdamW lr 3e-3, 100 epochs; the
run and date in :data:`MEASURED_BY`). The rules carry λ by holding τ (Wang & Aitchison: τ_epoch; Power Lines:
τ_iter/S) but have been measured against a held-out rung only inside that range; :func:`unsupported` says when a
run's τ_epoch lies more than :data:`FAR` times beyond either end of it.
"""

from __future__ import annotations

__all__ = ["MEASURED_TAU_EPOCH", "MEASURED_BY", "FAR", "unsupported"]

#: (lowest, highest) best τ_epoch measured on the ladders, epochs
MEASURED_TAU_EPOCH = (4.0, 39.0)
MEASURED_BY = "decaylab repro scaling (full), 2026-12-08"
#: how many times beyond the measured range a τ_epoch is "far outside"
FAR = 10.0


def unsupported(tau_epoch: float) -> bool:
    """Whether ``tau_epoch`` is more than :data:`FAR` × beyond :data:`MEASURED_TAU_EPOCH` on either side."""
    lo, hi = MEASURED_TAU_EPOCH
    return tau_epoch < lo / FAR or tau_epoch > hi * FAR
