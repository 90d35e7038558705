"""Time one optimizer step of each decaylab optimizer against the fastest torch equivalent.

One step on 25M float32 parameters in 10 tensors (``--quick``: 2.5M). Every
configuration and its torch peer are timed in the same interleaved rounds (each
round times one step of every configuration), and the median over rounds is
reported, so machine noise hits all of them alike. Printed per row:

- ms per step, the peer's ms, and the ratio ours/peer (target: <= 1.15 for the
  four optimizers in both scalings, <= 1.3 for the decay variants);
- effective memory bandwidth (bytes the update must read and write / time) and
  that bandwidth as a fraction of a plain in-place ``p.add_(g)`` measured in the
  same rounds.

Run: ``python benchmarks/optim_step.py [--quick] [--rounds N] [--threads T] [--device cpu|cuda]
[--paths fused|default|all]``. ``default`` rows run the optimizers with no foreach/fused flag
against torch's default path for the same class and arguments.
On a machine whose cores are busy with other work, ``--threads 1``: torch's OpenMP
kernels with more threads than free cores stall in their barriers (one step of
torch's fused SGD went from ~15 ms to ~156 ms that way here), which says nothing
about the optimizers.
"""

from __future__ import annotations

import _bench
import torch

from decaylab.optim import SGD, SGDW, Adam, AdamW

LR, LAMBDA, MOMENTUM = 1e-3, 1e-2, 0.9
# tensors each update reads + writes per parameter (bytes = streams · 4 · N for float32)
STREAMS = {"sgd": 5, "adam": 7, "add": 3}


def _configs():
    """(label, decaylab factory, peer label, update kind, target ratio)."""
    sgd = dict(lr=LR, momentum=MOMENTUM, weight_decay=LAMBDA, fused=True)
    adam = dict(lr=LR, weight_decay=LAMBDA, fused=True)
    return [
        ("SGD (coupled)", lambda p: SGD(p, **sgd), "torch SGD fused", "sgd", 1.15),
        ("SGDW lr", lambda p: SGDW(p, **sgd), "torch SGD fused", "sgd", 1.15),
        ("SGDW schedule", lambda p: SGDW(p, **{**sgd, "decay_scaling": "schedule"}),
         "torch SGD fused", "sgd", 1.15),
        ("Adam (coupled)", lambda p: Adam(p, **adam), "torch Adam fused", "adam", 1.15),
        ("AdamW lr", lambda p: AdamW(p, **adam), "torch AdamW fused", "adam", 1.15),
        ("AdamW schedule", lambda p: AdamW(p, **{**adam, "decay_scaling": "schedule"}),
         "torch AdamW fused", "adam", 1.15),
        ("AdamW corrected (AdamC)", lambda p: AdamW(p, **{**adam, "decay_scaling": "corrected"}),
         "torch AdamW fused", "adam", 1.3),
        ("AdamW cautious", lambda p: AdamW(p, **adam, cautious=True), "torch AdamW fused",
         "adam", 1.3),
        ("AdamW + L1 prox", lambda p: AdamW(p, **adam, l1_decay=1e-4), "torch AdamW fused",
         "adam", 1.3),
        ("SGDW cautious", lambda p: SGDW(p, **sgd, cautious=True), "torch SGD fused", "sgd", 1.3),
        ("SGDW + L1 prox", lambda p: SGDW(p, **sgd, l1_decay=1e-4), "torch SGD fused", "sgd",
         1.3),
    ]


def _default_configs():
    """The same optimizers with no foreach/fused flag, against torch's default path for the same class."""
    sgd = dict(lr=LR, momentum=MOMENTUM, weight_decay=LAMBDA)
    adam = dict(lr=LR, weight_decay=LAMBDA)
    return [
        ("SGD default", lambda p: SGD(p, **sgd), "torch SGD default", "sgd", 1.15),
        ("SGDW lr default", lambda p: SGDW(p, **sgd), "torch SGD default", "sgd", 1.15),
        ("Adam default", lambda p: Adam(p, **adam), "torch Adam default", "adam", 1.15),
        ("AdamW lr default", lambda p: AdamW(p, **adam), "torch AdamW default", "adam", 1.15),
        ("AdamW schedule default", lambda p: AdamW(p, **{**adam, "decay_scaling": "schedule"}),
         "torch AdamW default", "adam", 1.15),
    ]


def _peers():
    """The torch equivalents: torch's fused kernels, and torch's default path for each class."""
    return {
        "torch SGD default": lambda p: torch.optim.SGD(p, lr=LR, momentum=MOMENTUM, weight_decay=LAMBDA),
        "torch Adam default": lambda p: torch.optim.Adam(p, lr=LR, weight_decay=LAMBDA),
        "torch AdamW default": lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=LAMBDA),
        "torch SGD fused": lambda p: torch.optim.SGD(p, lr=LR, momentum=MOMENTUM,
                                                     weight_decay=LAMBDA, fused=True),
        "torch Adam fused": lambda p: torch.optim.Adam(p, lr=LR, weight_decay=LAMBDA, fused=True),
        "torch AdamW fused": lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=LAMBDA,
                                                         fused=True),
    }


def main(argv=None) -> None:
    parser = _bench.parser(__doc__, "2.5M params, 5 rounds", 15)
    parser.add_argument("--paths", choices=("fused", "default", "all"), default="all",
                        help="fused: fused=True against torch fused; default: no flags against torch's default")
    args = _bench.parse(parser, argv)
    numel = 250_000 if args.quick else 2_500_000
    rounds = args.rounds or (5 if args.quick else 15)
    device = args.device
    params = _bench.flat_params(numel, 10, device)
    add_targets = [torch.zeros(numel, device=device) for _ in range(10)]
    add_sources = [p.grad for p in params]

    steps = {"in-place add_": lambda: [a.add_(b) for a, b in zip(add_targets, add_sources)]}
    for name, make in _peers().items():
        steps[name] = make(params).step
    configs = ((_configs() if args.paths in ("fused", "all") else [])
               + (_default_configs() if args.paths in ("default", "all") else []))
    for label, make, *_ in configs:
        steps[label] = make(params).step

    median = _bench.median_seconds(steps, rounds, device)

    total = 10 * numel
    bandwidth = {kind: streams * 4 * total for kind, streams in STREAMS.items()}
    add_gbs = bandwidth["add"] / median["in-place add_"] / 1e9
    print(f"one step on {total / 1e6:.1f}M float32 params in 10 tensors, device={device}, "
          f"threads={torch.get_num_threads()}, median of {rounds} interleaved rounds")
    print(f"in-place add_: {median['in-place add_'] * 1e3:.2f} ms, {add_gbs:.1f} GB/s")
    for name in _peers():
        print(f"{name}: {median[name] * 1e3:.2f} ms")
    header = (f"{'decaylab optimizer':26s} {'ms':>8s}  {'peer':18s} {'peer ms':>8s} "
              f"{'ratio':>6s} {'target':>6s} {'GB/s':>6s} {'of add_':>7s}")
    print(header)
    print("-" * len(header))
    for label, _, peer, kind, target in configs:
        ms, peer_ms = median[label] * 1e3, median[peer] * 1e3
        gbs = bandwidth[kind] / median[label] / 1e9
        ratio = ms / peer_ms
        flag = "" if ratio <= target else "  over target"
        print(f"{label:26s} {ms:8.2f}  {peer:18s} {peer_ms:8.2f} {ratio:6.2f} {target:6.2f} "
              f"{gbs:6.1f} {gbs / add_gbs:7.0%}{flag}")


if __name__ == "__main__":
    main()
