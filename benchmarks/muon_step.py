"""Time one step of decaylab's Muon against ``torch.optim.Muon`` on the same matrices, in the same run.

The matrices of one transformer block of width d (``--quick``: d = 128, else 512): q, k, v, o
(d × d), the MLP's up (4d × d) and down (d × 4d), as 2-D float32 parameters with gradients.
Both optimizers step the same tensors in interleaved rounds (median reported). Printed per
row: ms per step, torch's ms and the ratio (target: <= 1.05 for decaylab's default path, the
same ops as torch's); the decay-option rows (``decay_scaling="schedule"``, ``cautious``,
``update_rms``) show what each option costs on top, for information.

Run: ``python benchmarks/muon_step.py [--quick] [--rounds N] [--threads T] [--width D] [--device cpu|cuda]``.
"""

from __future__ import annotations

import _bench
import torch

from decaylab.optim import Muon

LR, LAMBDA = 0.02, 0.1
TARGET = 1.05


def _configs():
    """(label, factory, target ratio or None)."""
    base = dict(lr=LR, weight_decay=LAMBDA)
    return [
        ("Muon (torch's options)", lambda p: Muon(p, **base), TARGET),
        ("Muon match_rms_adamw", lambda p: Muon(p, **base, adjust_lr_fn="match_rms_adamw"), TARGET),
        ("Muon schedule scaling", lambda p: Muon(p, **base, decay_scaling="schedule"), None),
        ("Muon cautious", lambda p: Muon(p, **base, cautious=True), None),
        ("Muon update_rms=0.2", lambda p: Muon(p, **base, update_rms=0.2), None),
    ]


def main(argv=None) -> None:
    parser = _bench.parser(__doc__, "width 128, 3 rounds", 9)
    parser.add_argument("--width", type=int, default=None, help="block width d (default 512; --quick 128)")
    args = _bench.parse(parser, argv)
    width = args.width or (128 if args.quick else 512)
    rounds = args.rounds or (3 if args.quick else 9)
    shapes = [(width, width)] * 4 + [(4 * width, width), (width, 4 * width)]

    gen = torch.Generator(device=args.device).manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, device=args.device) * width ** -0.5) for s in shapes]
    for p in params:
        p.grad = 1e-3 * torch.randn(p.shape, generator=gen, device=args.device)

    steps = {"torch Muon": torch.optim.Muon(params, lr=LR, weight_decay=LAMBDA).step}
    configs = _configs()
    for label, make, _ in configs:
        steps[label] = make(params).step
    median = _bench.median_seconds(steps, rounds, args.device)

    numel = sum(a * b for a, b in shapes)
    print(f"one Muon step on {len(shapes)} matrices of a width-{width} block ({numel / 1e6:.2f}M params), "
          f"device={args.device}, threads={torch.get_num_threads()}, median of {rounds} interleaved rounds")
    print(f"torch Muon: {median['torch Muon'] * 1e3:.2f} ms")
    header = f"{'decaylab':26s} {'ms':>9s} {'torch ms':>9s} {'ratio':>6s} {'target':>6s}"
    print(header)
    print("-" * len(header))
    for label, _, target in configs:
        ratio = median[label] / median["torch Muon"]
        flag = "" if target is None or ratio <= target else "  over target"
        print(f"{label:26s} {median[label] * 1e3:9.2f} {median['torch Muon'] * 1e3:9.2f} {ratio:6.2f} "
              f"{'-' if target is None else f'{target:.2f}':>6s}{flag}")


if __name__ == "__main__":
    main()
