"""What the step benchmarks share: their command-line options, the flat parameters they step, and
interleaved timing rounds (every step timed once per round, the median over rounds reported, so machine
noise hits all of them alike)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def parser(doc: str, quick: str, rounds: int) -> argparse.ArgumentParser:
    """The options every step benchmark takes: ``--quick`` (``quick`` says what it shrinks), ``--rounds``
    (default ``rounds``), ``--device``, ``--threads``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--rounds", type=int, default=None, help=f"timed rounds (default {rounds})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    return p


def parse(p: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--threads``."""
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def flat_params(numel: int, count: int, device: str) -> list[torch.nn.Parameter]:
    """``count`` float32 vectors of ``numel`` standard normal values (seed 0), each with a gradient of
    1e-3 × standard normal noise."""
    gen = torch.Generator(device=device).manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(numel, generator=gen, device=device)) for _ in range(count)]
    for p in params:
        p.grad = 1e-3 * torch.randn(numel, generator=gen, device=device)
    return params


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
