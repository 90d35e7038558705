"""A bounded history of per-tensor records: thinned samples over the whole run plus exact block aggregates.

:class:`ThinnedHistory` keeps, for ``n`` tensors and ``F`` fields, at most ``capacity + 1`` rows
however many records are added. Each row holds

- the *sample*: the record of one step (``NaN`` where a field is undefined or the tensor absent);
- its *block*: the sum, count, maximum and minimum of every record added since the previous row
  (the sample's own step included), NaNs left out.

Algorithm. Rows sit at steps that are multiples of the *resolution* ``r`` (initially the spacing
of the first two records' steps is irrelevant: ``r`` starts at ``stride``), plus two exceptions:
row 0, the first record, is kept forever, and the last row may be a *provisional* one at a step
that is not a multiple of ``r`` — the newest record. A new record either replaces a provisional
last row (whose block it absorbs) or is appended. When the rows exceed ``capacity + 1``, ``r``
doubles and every row whose step is no longer a multiple of ``r`` (except row 0 and the last
row) is dropped and its block merged into the next kept row. So the samples always start at the
first record and end at the newest, spaced evenly over the whole run at a resolution that halves
each time the capacity fills, while the block sums, counts, maxima and minima stay exact over every
record ever added (a mean over the last part of the run is exact up to one block's granularity).

Tensors can join later (:meth:`ThinnedHistory.add_tensors`): they get columns with no records
before the step they join at, so every row keeps its step and every other tensor its records.

Memory: ``(capacity + 2)·n·(F·(8 + 8 + 4) + 8·(#maxima + #minima) + 1)`` bytes, fixed until tensors join.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ThinnedHistory"]


class ThinnedHistory:
    """At most ``capacity + 1`` rows of ``(n, F)`` records; see the module docstring."""

    def __init__(self, n: int, fields: tuple[str, ...], *, capacity: int, stride: int = 1,
                 maxima: tuple[str, ...] = (), minima: tuple[str, ...] = ()):
        self.fields, self.capacity, self.resolution = fields, capacity, stride
        self._max_cols = [fields.index(f) for f in maxima]
        self._min_cols = [fields.index(f) for f in minima]
        self.maxima, self.minima = maxima, minima
        rows, f = capacity + 2, len(fields)
        self._step = np.zeros(rows, dtype=np.int64)
        self._sample = np.full((rows, n, f), np.nan)
        self._present = np.zeros((rows, n), dtype=bool)
        self._sum = np.zeros((rows, n, f))
        self._count = np.zeros((rows, n, f), dtype=np.int32)
        self._max = np.full((rows, n, len(maxima)), np.nan)
        self._min = np.full((rows, n, len(minima)), np.nan)
        self.rows = 0

    # --- adding -------------------------------------------------------------------------------
    def add(self, step: int, values: np.ndarray, present: np.ndarray) -> None:
        """Add the record of ``step`` (after every earlier one): ``values`` ``(n, F)``, NaN where
        undefined; ``present[i]`` False for a tensor without a record at this step."""
        values = np.where(present[:, None], values, np.nan)
        last = self.rows - 1
        if last >= 1 and self._step[last] % self.resolution != 0:  # a provisional row: absorb its block
            i = last
        else:
            i = self.rows
            self.rows += 1
            self._sum[i], self._count[i] = 0.0, 0
            self._max[i], self._min[i] = np.nan, np.nan
        finite = ~np.isnan(values)
        self._step[i], self._sample[i], self._present[i] = step, values, present
        self._sum[i] += np.where(finite, values, 0.0)
        self._count[i] += finite
        self._max[i] = np.fmax(self._max[i], values[:, self._max_cols])
        self._min[i] = np.fmin(self._min[i], values[:, self._min_cols])
        if self.rows > self.capacity + 1:
            self._thin()

    def add_tensors(self, k: int) -> None:
        """Make room for ``k`` more tensors, after the ``n`` there are: columns with no record in any
        row so far (absent, NaN samples, empty blocks); they take part from the next :meth:`add`."""
        for name, fill in (("_sample", np.nan), ("_present", False), ("_sum", 0.0), ("_count", 0),
                           ("_max", np.nan), ("_min", np.nan)):
            arr = getattr(self, name)
            extra = np.full((arr.shape[0], k, *arr.shape[2:]), fill, dtype=arr.dtype)
            setattr(self, name, np.concatenate([arr, extra], axis=1))

    def _thin(self) -> None:
        """Double the resolution: drop rows off the new grid (not the first or the last), merging
        each dropped row's block into the next kept row."""
        self.resolution *= 2
        m = self.rows
        steps = self._step[:m]
        keep = steps % self.resolution == 0
        keep[0] = keep[-1] = True
        kept = np.flatnonzero(keep)
        # each row's block goes to the first kept row at or after it
        starts = np.concatenate(([0], kept[:-1] + 1))
        for name, reduce in (("_sum", np.add), ("_count", np.add), ("_max", np.fmax), ("_min", np.fmin)):
            arr = getattr(self, name)
            merged = reduce.reduceat(arr[:m], starts, axis=0)
            arr[:len(kept)] = merged
        for name in ("_step", "_sample", "_present"):
            arr = getattr(self, name)
            arr[:len(kept)] = arr[kept]
        self.rows = len(kept)

    # --- reading ------------------------------------------------------------------------------
    @property
    def steps(self) -> np.ndarray:
        """Steps of the kept rows, oldest first."""
        return self._step[:self.rows]

    @property
    def samples(self) -> np.ndarray:
        """``(rows, n, F)`` sampled records (NaN where undefined or absent)."""
        return self._sample[:self.rows]

    @property
    def present(self) -> np.ndarray:
        """``(rows, n)``: whether tensor ``i`` has a record at that row's step."""
        return self._present[:self.rows]

    def counts(self) -> np.ndarray:
        """``(n,)``: how many records each tensor ever had."""
        return self._count[:self.rows, :, 0].sum(axis=0) if self.rows else np.zeros(self._sum.shape[1], np.int64)

    def since(self, step: float) -> dict:
        """Exact aggregates, per tensor, over the blocks of the rows after ``step`` (a block may reach
        back before ``step`` by less than one row spacing; a tensor with no record there gets its
        newest block): ``count`` ``(n,)``, ``mean`` ``(n, F)`` (NaN where a field was never
        defined), ``max`` / ``min`` ``(n, #maxima / #minima)``."""
        m = self.rows
        per_row = self._count[:m, :, 0]  # records of each tensor in each block
        has = per_row > 0
        take = has & (self._step[:m] > step)[:, None]
        newest = m - 1 - np.argmax(has[::-1], axis=0)  # each tensor's newest block with a record
        fallback = ~take.any(axis=0) & has.any(axis=0)
        take[newest[fallback], np.flatnonzero(fallback)] = True
        counts = np.where(take[:, :, None], self._count[:m], 0).sum(axis=0)
        sums = np.where(take[:, :, None], self._sum[:m], 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        masked = take[:, :, None]
        return {"count": np.where(take, per_row, 0).sum(axis=0), "mean": mean,
                "max": np.fmax.reduce(np.where(masked, self._max[:m], np.nan), axis=0),
                "min": np.fmin.reduce(np.where(masked, self._min[:m], np.nan), axis=0)}

    def nbytes(self) -> int:
        """Bytes held by the arrays (fixed at construction)."""
        return sum(a.nbytes for a in (self._step, self._sample, self._present, self._sum, self._count,
                                      self._max, self._min))
