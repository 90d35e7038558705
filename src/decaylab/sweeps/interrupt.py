"""Ctrl-C during a sweep of either method: :class:`SweepInterrupted`, raised once every finished run is stored."""

from __future__ import annotations

__all__ = ["SweepInterrupted"]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep, raised after every finished member (or evidence run: ``unit="runs"``) was stored
    (``stored`` of ``pending``)."""

    def __init__(self, stored: int, pending: int, store: str | None, unit: str = "members"):
        self.stored, self.pending, self.store = stored, pending, store
        where = f"stored in {store}; run the same sweep again to resume" if store else "not stored (no store)"
        super().__init__(f"interrupted: {stored} of {pending} {unit} finished, {where}")
