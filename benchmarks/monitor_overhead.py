"""What a DecayMonitor costs: a training step of a tiny GPT-2 with and without one, in the same run.

The model is transformers' ``GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2,
vocab_size=1024, n_positions=64))`` (28 parameter tensors, ~0.17M parameters) trained with
``torch.optim.AdamW`` on random tokens, batch 8 × 64. Three copies train side by side:

- ``none``: no monitor (the peer);
- ``default``: ``DecayMonitor(model, opt)`` with its default settings;
- ``every=1``: ``DecayMonitor(model, opt, every=1)``, a record at every step.

Each round runs ``--steps`` steps of every configuration in turn (so machine noise hits all three
alike) and the monitors stay attached across rounds, so a monitor's whole run (its dense start
included) is timed; the configurations take turns going first. Printed: ms per step (median over
rounds), each monitor's ratio to ``none`` (the median of the per-round ratios; target for
``default``: ≤ 1.05), the time spent inside the monitor itself (its hooks and host copies, timed
around them) as a share of ``none``'s step time — the same cost without the noise of comparing two
timings — and the steps each monitor recorded and the records it keeps per tensor.

Run: ``python benchmarks/monitor_overhead.py [--rounds N] [--steps S] [--threads T] [--device cpu|cuda]``. On a
machine whose cores are busy with other work use ``--threads 1`` and note the load (``uptime``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from decaylab.diagnostics.monitor import DecayMonitor


class TimedMonitor(DecayMonitor):
    """A DecayMonitor that adds up the seconds spent in its own hooks (host copies included: they
    happen inside the post-step hook)."""

    seconds = 0.0

    def _timed(self, method):
        start = time.perf_counter()
        method()
        self.seconds += time.perf_counter() - start

    def _before_step(self):
        self._timed(super()._before_step)

    def _after_step(self):
        self._timed(super()._after_step)


def _gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1024, n_positions=64, bos_token_id=0,
                        eos_token_id=0)
    return GPT2LMHeadModel(config)


def _setups(seed: int, device: str):
    """(label, model, optimizer, monitor settings or None), each on an identical model."""
    out = []
    for label, kwargs in (("none", None), ("default", {}), ("every=1", {"every": 1})):
        model = _gpt2(seed).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        out.append((label, model, opt, kwargs))
    return out


def _steps(model, opt, batches) -> float:
    """Seconds for ``len(batches)`` training steps (the device's queue drained at both ends)."""
    sync = torch.cuda.synchronize if batches[0].is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for tokens in batches:
        opt.zero_grad(set_to_none=True)
        model(input_ids=tokens, labels=tokens).loss.backward()
        opt.step()
    sync()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40, help="steps per configuration per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()

    g = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, 1024, (8, 64), generator=g).to(args.device) for _ in range(args.steps)]
    setups = _setups(args.seed, args.device)
    for _, model, opt, _ in setups:  # warm-up, untimed, before any monitor is attached
        _steps(model, opt, batches[:5])
    monitors = {label: (None if kwargs is None else TimedMonitor(model, opt, **kwargs))
                for label, model, opt, kwargs in setups}

    times = {label: [] for label, *_ in setups}
    for r in range(args.rounds):
        for label, model, opt, _ in setups[r % 3:] + setups[:r % 3]:  # each goes first in turn
            times[label].append(_steps(model, opt, batches) / args.steps)

    n_tensors = sum(1 for _ in setups[0][1].parameters())
    print(f"tiny GPT-2: {n_tensors} tensors, {sum(p.numel() for p in setups[0][1].parameters()):,} parameters; "
          f"{args.rounds} rounds × {args.steps} steps on {args.device}, {torch.get_num_threads()} thread(s)")
    print(f"{'monitor':10s} {'ms/step':>8s} {'ratio to none':>14s} {'in monitor':>11s}  steps recorded, kept")
    total_steps = args.rounds * args.steps
    for label, *_ in setups:
        ms = 1e3 * statistics.median(times[label])
        ratio = statistics.median(t / b for t, b in zip(times[label], times["none"]))
        mon = monitors[label]
        if mon is None:
            print(f"{label:10s} {ms:8.2f} {ratio:14.3f}")
            continue
        share = mon.seconds / sum(times["none"]) / args.steps  # the monitor's own time per step of the peer
        recorded = sum(mon.records_step(s) for s in range(1, total_steps + 1))
        print(f"{label:10s} {ms:8.2f} {ratio:14.3f} {share:10.1%}  {recorded} of {total_steps}, "
              f"{len(mon.history) // n_tensors} kept")


if __name__ == "__main__":
    main()
