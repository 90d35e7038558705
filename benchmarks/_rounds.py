"""Interleaved timing rounds: every step timed once per round, the median over rounds reported, so machine
noise hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(steps: dict[str, Callable[[], object]], rounds: int, device: str = "cpu",
                   warmup: int = 2) -> dict[str, float]:
    """Median seconds of each callable over ``rounds`` interleaved rounds, after ``warmup`` untimed calls
    each (lazy state, first-step paths); on CUDA each call is bracketed by synchronizations."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
