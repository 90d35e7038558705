"""The machine's reference speed for the benchmarks' GFLOP/s figures: a 2048² float32 matmul."""

from __future__ import annotations

import time

import torch


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of ``n × n`` float32 matmuls on the current torch threads (one warm-up, then ``repeats`` timed)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9
