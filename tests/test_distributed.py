"""The decaylab optimizers under DistributedDataParallel (gloo, 2 CPU processes) train as one process does.

Each rank sees half of every global batch; DDP averages the gradients, so each
optimizer must end with the weights of single-process training on the full
global batches (float64, up to the rounding of the gradient all-reduce).
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from decaylab.optim import SGD, SGDW, Adam, AdamW

pytestmark = pytest.mark.slow  # two spawned DDP processes (~6 s)

WORLD = 2
STEPS = 15
OPTIMIZERS = {
    "SGD": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "SGDW": (SGDW, dict(lr=0.05, momentum=0.9, weight_decay=0.1, decay_scaling="schedule",
                        foreach=True)),
    "Adam": (Adam, dict(lr=0.01, weight_decay=0.01, amsgrad=True, fused=True)),
    "AdamW": (AdamW, dict(lr=0.01, weight_decay=0.1, cautious=True)),
}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 1)).double()


def _global_batches():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(STEPS, 2 * 8, 5, generator=gen, dtype=torch.float64)
    return X, X.sum(-1, keepdim=True).sin()


def _train(model, opt, batches, rank=None):
    X, y = batches
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS)
    for t in range(STEPS):
        xb, yb = X[t], y[t]
        if rank is not None:  # this rank's half of the global batch
            xb, yb = xb[rank::WORLD], yb[rank::WORLD]
        opt.zero_grad()
        ((model(xb) - yb) ** 2).mean().backward()
        opt.step()
        sched.step()
    return [p.detach().clone() for p in model.parameters()]


def _worker(rank, port, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    try:
        results = {}
        for name, (cls, kwargs) in OPTIMIZERS.items():
            ddp = torch.nn.parallel.DistributedDataParallel(_model())
            results[name] = _train(ddp, cls(ddp.parameters(), **kwargs), _global_batches(), rank)
        if rank == 0:
            torch.save(results, out_path)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_training_equals_single_process_training(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    ddp_results = torch.load(out, weights_only=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, (cls, kwargs) in OPTIMIZERS.items():
            model = _model()
            initial = [p.detach().clone() for p in model.parameters()]
            alone = _train(model, cls(model.parameters(), **kwargs), _global_batches())
            assert any(not torch.equal(a, b) for a, b in zip(alone, initial)), name
            for a, b in zip(ddp_results[name], alone):
                assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), name
    finally:
        torch.set_num_threads(threads)
