"""Which rows each member trains on, in which order: identical in both trainers.

Member g trains on the rows ``train_index`` of ``X`` (all rows if ``None``). Each epoch it draws
``perm = randperm(len(train_index))`` from its own generator seeded with ``member.seed`` and cuts it
into batches of ``batch_size`` (the last one smaller): exactly a shuffled ``DataLoader`` over its own
training rows. A member's batch loss is the mean over its batch. In the batched trainer, members whose
epoch has fewer batches are idle on the extra steps (padding rows get weight 0, and a model that may mix
the rows of a batch never sees them: :mod:`decaylab.batched.stacked`).

Evaluation, both trainers: each set a member is scored on (its training rows, its validation rows, each
evaluation set) in passes of ``batch_size`` consecutive rows of that set, in its order
(:func:`evaluation_passes`); a pass holds only that set's rows of that member, so a model whose forward
mixes the rows of its input (BatchNorm without running statistics, a user's ``x − x.mean(0)``) gives the
same numbers on both engines.
"""

from __future__ import annotations

import torch

from decaylab._checks import InputError
from decaylab._isolation import seeded_generator
from decaylab.batched.members import Member

__all__ = []


def _train_rows(member: Member, n_rows: int) -> torch.Tensor:
    if member.train_index is None:
        return torch.arange(n_rows)
    rows = torch.tensor(member.train_index, dtype=torch.long)
    if rows.min() < 0 or rows.max() >= n_rows:
        raise InputError(f"train_index must name rows in [0, {n_rows - 1}], got values from "
                         f"{int(rows.min())} to {int(rows.max())}")
    return rows


def _steps_per_epoch(n_train: int, batch_size: int) -> int:
    return -(-n_train // batch_size)


def evaluation_passes(rows: torch.Tensor, rows_per_pass: int) -> list[torch.Tensor]:
    """The row indices ``rows`` of one evaluated set cut into passes of ``rows_per_pass`` (the last shorter)."""
    return [rows[i:i + rows_per_pass] for i in range(0, len(rows), rows_per_pass)]


def _epoch_order(rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """This epoch's shuffled training rows of one member."""
    return rows[torch.randperm(len(rows), generator=generator)]


def _shuffle_generator(seed: int) -> torch.Generator:
    return seeded_generator(seed)


def _padded_epoch(orders: list[torch.Tensor], batch_size: int, steps: int):
    """Per step ``[G, b]`` row indices and ``[G, b]`` weights (1/batch length, 0 on padding)."""
    G = len(orders)
    index = torch.zeros(G, steps * batch_size, dtype=torch.long)
    for g, order in enumerate(orders):
        index[g, :len(order)] = order
        index[g, len(order):] = order[0]               # padding reuses the member's own row, weight 0
    n = torch.tensor([len(order) for order in orders]).unsqueeze(1)           # [G, 1]
    position = torch.arange(steps * batch_size)                                # [S·b]
    batch_start = position // batch_size * batch_size
    batch_length = torch.clamp(n - batch_start, max=batch_size).double()
    weight = torch.where(position < n, 1.0 / batch_length, torch.zeros((), dtype=torch.float64))
    return index.view(G, steps, batch_size), weight.view(G, steps, batch_size)

