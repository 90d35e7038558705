"""Feature standardization fitted on a member's own training rows (``TrainConfig.standardize``).

Statistics, in float64, of the training rows ``T`` of one member, per feature (every position of a
row's shape): ``peak = max_T |x|`` (1 where 0), then the mean ``μ`` and the standard deviation ``σ``
(ddof 0; 1 where 0) of ``x / peak`` over ``T``. Any row — training, validation, an evaluation set —
becomes ``((x / peak) − μ) / σ``, cast to the training dtype. On the training rows every feature has
mean 0 and standard deviation 1 (a feature constant there becomes 0); no validation or evaluation row
takes part in the statistics, so nothing leaks from the rows a member is scored on. Dividing by the peak
first keeps features near ±1e308 (whose squares overflow) on the same numbers as small ones.

:class:`MemberFeatures` gives the trainers the rows each member sees. Without standardization that is
``X`` itself, shared by all members. With it, members with the same training rows (a fold) share one
standardized copy: ``X`` holds the K copies one after another (K distinct training-row sets, ``K·N`` rows)
and member g reads rows ``offsets[g] + i`` — so the batched trainer indexes one tensor for all members
(its memory is K copies of the features).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from decaylab._checks import InputError
from decaylab.batched.epochs import _train_rows
from decaylab.batched.members import Member, TrainConfig, _as_tensors

__all__ = ["Standardization", "MemberFeatures"]


@dataclass(frozen=True)
class Standardization:
    """``((x / peak) − mean) / scale`` with float64 statistics of one set of training rows (module docstring)."""

    peak: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, rows: torch.Tensor) -> Standardization:
        """The statistics of the training ``rows`` (``[n, …]``, floating point)."""
        if not torch.is_floating_point(rows):
            raise InputError(f"standardize=True needs floating-point features X, got {rows.dtype}: integer features "
                             "(token ids, indices) are not standardized; pass standardize=False")
        rows = rows.detach().to(torch.float64)
        peak = rows.abs().amax(0)
        peak = torch.where(peak > 0, peak, torch.ones_like(peak))
        scaled = rows / peak
        scale = scaled.std(0, correction=0)
        return cls(peak, scaled.mean(0), torch.where(scale > 0, scale, torch.ones_like(scale)))

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` standardized with these statistics (float64)."""
        X = X.detach().to(device=self.peak.device, dtype=torch.float64)
        return (X / self.peak - self.mean) / self.scale


class MemberFeatures:
    """The feature rows each of ``members`` sees (module docstring): ``X`` (K blocks of ``n`` rows, in
    ``config.dtype`` on ``device``) and ``offsets`` (``None``: every member reads ``X`` itself)."""

    def __init__(self, X, members: Sequence[Member], config: TrainConfig, device=None):
        X = torch.as_tensor(X)
        self.n, self.config, self.dtype, self.device = len(X), config, config.dtype, device
        self.scalers, self.block, self.blocks = None, None, 1
        if config.standardize:
            keys = list(dict.fromkeys(m.train_index for m in members))     # distinct training-row sets, in order
            number = {rows: k for k, rows in enumerate(keys)}
            first = {m.train_index: m for m in reversed(members)}
            self.scalers = [Standardization.fit(X[_train_rows(first[rows], self.n)]) for rows in keys]
            self.blocks = len(keys)
            self.block = torch.tensor([number[m.train_index] for m in members], dtype=torch.long)
        self.X = self.transform(X)
        self.offsets = self.block_offsets(self.X)

    def transform(self, X) -> torch.Tensor:
        """Rows of a set (``X``, an evaluation set) as the members see them, in the training dtype on the
        device: one standardized block per distinct training-row set (the rows themselves without
        standardization; integer rows — token ids — stay integers)."""
        X = torch.as_tensor(X)
        if self.scalers is None:
            X = X.to(self.dtype) if X.is_floating_point() else X.long()
        else:
            blocks = [s.apply(X).to(self.dtype) for s in self.scalers]
            X = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
        return X if self.device is None else X.to(self.device)

    def evaluation_sets(self, eval_sets: Mapping[str, tuple] | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{name: (rows as the members see them (:meth:`transform`), targets)}`` of ``{name: (X, y)}``."""
        return {name: (self.transform(ex), _as_tensors(ex, ey, self.config, self.device)[1])
                for name, (ex, ey) in (eval_sets or {}).items()}

    def block_offsets(self, rows: torch.Tensor) -> torch.Tensor | None:
        """First row of each member's block in ``rows`` (an output of :meth:`transform`) ``[G]``; ``None``
        without standardization (every member reads all of ``rows``)."""
        return None if self.block is None else self.block * (len(rows) // self.blocks)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Row indices into ``X`` for the members' rows ``index`` ``[G, …]`` of the data."""
        if self.offsets is None:
            return index
        return index + self.offsets.to(index.device).view(-1, *([1] * (index.dim() - 1)))

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` repeated once per block, so that :meth:`rows` index it as they index ``X``."""
        return y if self.blocks == 1 else y.repeat(self.blocks, *([1] * (y.dim() - 1)))

    def member_block(self, rows: torch.Tensor, g: int) -> torch.Tensor:
        """Member ``g``'s own block of ``rows`` (an output of :meth:`transform`)."""
        if self.block is None:
            return rows
        n = len(rows) // self.blocks
        start = int(self.block[g]) * n
        return rows[start:start + n]
