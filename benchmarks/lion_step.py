"""Time one step of decaylab's Lion against torch's fused AdamW on 25M parameters, in the same run.

25M float32 parameters in 10 tensors (``--quick``: 2.5M), with gradients. Lion's update reads
w, g, m and writes w, m: 5 streams of 4 bytes per parameter, against fused AdamW's 7 (reads w,
g, m, v; writes w, m, v), so the byte count predicts Lion/AdamW = 5/7 ≈ 0.71 for two kernels at
the same memory bandwidth. Every row and the peer are timed in interleaved rounds (median
reported). Printed per row: ms per step, AdamW's ms, the ratio (target for ``fused=True``, the
single-pass kernel: <= 0.85), the effective bandwidth (update bytes / time) and that bandwidth
as a fraction of a plain in-place ``p.add_(g)`` (3 streams) measured in the same rounds.

Run: ``python benchmarks/lion_step.py [--quick] [--rounds N] [--threads T] [--device cpu|cuda]``.
On a machine whose cores are busy with other work, ``--threads 1`` (see benchmarks/optim_step.py).
"""

from __future__ import annotations

import _bench
import torch

from decaylab.optim import Lion

LR, LAMBDA = 1e-4, 0.1
ADAMW_LR, ADAMW_LAMBDA = 1e-3, 1e-2
STREAMS = {"lion": 5, "adamw": 7, "add": 3}  # tensors each update reads + writes per parameter
TARGET = 0.85


def _configs():
    """(label, factory, target ratio or None)."""
    base = dict(lr=LR, weight_decay=LAMBDA)
    return [
        ("Lion fused (native)", lambda p: Lion(p, **base, fused=True), TARGET),
        ("Lion fused cautious", lambda p: Lion(p, **base, fused=True, cautious=True), None),
        ("Lion fused schedule + L1", lambda p: Lion(p, **base, fused=True, decay_scaling="schedule",
                                                    l1_decay=1e-6), None),
        ("Lion foreach", lambda p: Lion(p, **base, foreach=True), None),
        ("Lion default (for-loop)", lambda p: Lion(p, **base), None),
    ]


def main(argv=None) -> None:
    args = _bench.parse(_bench.parser(__doc__, "2.5M params, 3 rounds", 15), argv)
    numel = 250_000 if args.quick else 2_500_000
    rounds = args.rounds or (3 if args.quick else 15)
    device = args.device
    params = _bench.flat_params(numel, 10, device)
    add_targets = [torch.zeros(numel, device=device) for _ in range(10)]

    adamw = torch.optim.AdamW(params, lr=ADAMW_LR, weight_decay=ADAMW_LAMBDA, fused=True)
    steps = {"in-place add_": lambda: [a.add_(p.grad) for a, p in zip(add_targets, params)],
             "torch AdamW fused": adamw.step}
    configs = _configs()
    for label, make, _ in configs:
        steps[label] = make(params).step
    median = _bench.median_seconds(steps, rounds, device)

    total = 10 * numel
    nbytes = {kind: streams * 4 * total for kind, streams in STREAMS.items()}
    add_gbs = nbytes["add"] / median["in-place add_"] / 1e9
    peer = median["torch AdamW fused"]
    print(f"one step on {total / 1e6:.1f}M float32 params in 10 tensors, device={device}, "
          f"threads={torch.get_num_threads()}, median of {rounds} interleaved rounds")
    print(f"in-place add_: {median['in-place add_'] * 1e3:.2f} ms, {add_gbs:.1f} GB/s")
    print(f"torch AdamW fused: {peer * 1e3:.2f} ms, {nbytes['adamw'] / peer / 1e9:.1f} GB/s "
          f"({nbytes['adamw'] / 1e6:.0f} MB per step)")
    print(f"bytes predict Lion/AdamW = {STREAMS['lion']}/{STREAMS['adamw']} = "
          f"{STREAMS['lion'] / STREAMS['adamw']:.2f} ({nbytes['lion'] / 1e6:.0f} MB per Lion step)")
    header = f"{'decaylab':26s} {'ms':>8s} {'AdamW ms':>9s} {'ratio':>6s} {'target':>6s} {'GB/s':>6s} {'of add_':>7s}"
    print(header)
    print("-" * len(header))
    for label, _, target in configs:
        ratio = median[label] / peer
        gbs = nbytes["lion"] / median[label] / 1e9
        flag = "" if target is None or ratio <= target else "  over target"
        print(f"{label:26s} {median[label] * 1e3:8.2f} {peer * 1e3:9.2f} {ratio:6.2f} "
              f"{'-' if target is None else f'{target:.2f}':>6s} {gbs:6.1f} {gbs / add_gbs:7.0%}{flag}")


if __name__ == "__main__":
    main()
