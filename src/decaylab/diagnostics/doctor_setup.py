"""What every check of the doctor reads about one optimizer: the model's parameter names, each group's
decay (:func:`decaylab.diagnostics.optimizer_decay.group_decay`), the what-decays rule's verdict per
parameter, the run's length and peak lr, and the AdamW-like companions of a Muon group."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from decaylab.diagnostics.optimizer_decay import GroupDecay

__all__ = ["Setup", "rms"]


@dataclass
class Setup:
    """What every check reads: names, groups, their decay, the run's length."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    names: dict[int, str]
    decays: list[GroupDecay]
    should_decay: dict[int, tuple[bool, str]]  # id -> (decay?, rule) for trainable params
    total_steps: int | None
    steps_per_epoch: int | None
    scheduler: object | None = None
    loss: torch.Tensor | None = None
    held: frozenset = frozenset()      # ids of the parameters every optimizer given to doctor holds
    report_missing: bool = True        # with several optimizers, the first one's pass reports missing-params
    companions: tuple = ()             # (label, GroupDecay) of every AdamW-like group of every optimizer given
    _rms_cache: dict = dataclasses.field(default_factory=dict)

    def schedule_peak(self, gi: int) -> float:
        """The peak lr of group ``gi``'s schedule: the largest of its current lr, ``initial_lr`` and
        ``max_lr`` (set by torch's schedulers; OneCycleLR's peak) and the scheduler's ``base_lrs``."""
        g = self.optimizer.param_groups[gi]
        lrs = [g.get(k) for k in ("lr", "initial_lr", "max_lr")]
        base = getattr(self.scheduler, "base_lrs", None)
        if base is not None and gi < len(base):
            lrs.append(base[gi])
        return max(float(v) for v in lrs if v is not None)

    def largest_rms(self, gi: int) -> tuple[float, str] | None:
        """(RMS, name) of group ``gi``'s tensor with the largest RMS (of those with more than one element)."""
        if gi not in self._rms_cache:
            sized = [(rms(p), self.name(p, gi, pi)) for pi, p in enumerate(self.optimizer.param_groups[gi]["params"])
                     if p.numel() > 1]
            self._rms_cache[gi] = max(sized) if sized else None
        return self._rms_cache[gi]

    def name(self, p: torch.Tensor, gi: int, pi: int) -> str:
        return self.names.get(id(p), f"group{gi}.param{pi} (not in model)")

    def decayed_groups(self):
        """(index, group, decay) of the groups with weight_decay > 0 whose decay the table knows."""
        return [(gi, g, d) for gi, (g, d) in enumerate(zip(self.optimizer.param_groups, self.decays))
                if d.known and d.weight_decay > 0]

    def group_names(self, gi: int) -> tuple[str, ...]:
        return tuple(self.name(p, gi, pi) for pi, p in enumerate(self.optimizer.param_groups[gi]["params"]))


def rms(p: torch.Tensor) -> float:
    """Root mean square of ``p``'s entries (no float copy of the tensor)."""
    return float(torch.linalg.vector_norm(p.detach(), dtype=torch.float32)) / math.sqrt(p.numel()) if p.numel() else 0.0
