"""decaylab's single-pass CPU kernels (the ``native`` path of ``fused=True``) against the reference path.

The native path runs SGDW with momentum, cautious decay and proximal L1, where
torch's fused kernels cannot express the update. Here: which path each
configuration takes, agreement with the readable reference update for every
option in float32 and float64 (tensors large enough to be split over threads),
the fallbacks (non-contiguous params, no compiler), and NaN semantics.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from decaylab.optim import SGDW, AdamW, _native

NUMEL = 5000
REFERENCE = {"foreach": False, "fused": False}


@pytest.mark.parametrize("cls,kwargs,path", [
    (SGDW, dict(momentum=0.9, weight_decay=0.1), "native"),
    (SGDW, dict(weight_decay=0.1, cautious=True), "native"),
    (SGDW, dict(weight_decay=0.1, l1_decay=0.01), "native"),
    (SGDW, dict(weight_decay=0.1), "fused"),  # = torch SGD with λ' = s_t·λ/lr_t
    (AdamW, dict(cautious=True), "native"),
    (AdamW, dict(l1_decay=0.01, amsgrad=True), "native"),
    (AdamW, dict(decay_scaling="corrected"), "fused"),  # = torch AdamW with λ' per step
])
def test_fused_flag_picks_native_only_where_torch_kernels_cannot(cls, kwargs, path, spy_paths):
    assert _native.library() is not None, "a C compiler is part of the test machine"
    seen = spy_paths()
    w = torch.nn.Parameter(torch.ones(8))
    w.grad = torch.ones(8)
    cls([w], lr=0.1, fused=True, **kwargs).step()
    assert seen == [path]


SGDW_OPTIONS = [
    dict(momentum=0.9, dampening=0.1, weight_decay=0.2),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01, decay_scaling="schedule", maximize=True),
    dict(momentum=0.5, weight_decay=0.3, cautious=True, l1_decay=0.05),
    dict(weight_decay=0.3, cautious=True, decay_scaling="corrected"),
]
ADAMW_OPTIONS = [
    dict(weight_decay=0.2, cautious=True),
    dict(weight_decay=0.1, amsgrad=True, maximize=True, l1_decay=0.5),
    dict(weight_decay=1e-3, decay_scaling="schedule", cautious=True, amsgrad=True),
]


def _run(cls, kwargs, flags, dtype, steps=25, numel=NUMEL, grads=None):
    gen = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(numel, generator=gen, dtype=dtype))
    bias = torch.nn.Parameter(torch.randn(7, generator=gen, dtype=dtype))
    opt = cls([w, bias], lr=0.05, **kwargs, **flags)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for t in range(steps):
        for p in (w, bias):
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype) * 0.1 + 0.05 * p.detach()
        if grads is not None:
            grads(t, w)
        opt.step()
        sched.step()
    return torch.cat([w.detach(), bias.detach()]), opt


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("cls,kwargs", [(SGDW, o) for o in SGDW_OPTIONS]
                         + [(AdamW, o) for o in ADAMW_OPTIONS])
def test_native_kernel_matches_reference_path(cls, kwargs, dtype, tol):
    native, opt = _run(cls, kwargs, {"fused": True}, dtype)
    reference, ref_opt = _run(cls, kwargs, REFERENCE, dtype)
    scale = reference.abs().max()
    assert ((native - reference).abs().max() / scale).item() <= tol
    for p_native, p_ref in zip(opt.param_groups[0]["params"], ref_opt.param_groups[0]["params"]):
        for key, value in ref_opt.state[p_ref].items():  # the state agrees too
            assert torch.allclose(opt.state[p_native][key].to(value.dtype), value,
                                  rtol=10 * tol, atol=10 * tol * value.abs().max().item())


def test_native_kernel_splits_work_over_threads_identically():
    """With 2 threads a 2^17-element tensor runs as 2 OpenMP slices in parallel: same result."""
    runs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        runs.append(_run(AdamW, ADAMW_OPTIONS[1], {"fused": True}, torch.float32, steps=3,
                         numel=1 << 17)[0])
    assert torch.equal(runs[0], runs[1])


@pytest.mark.slow  # a fresh interpreter, or a kernel build
def test_kernels_share_torchs_openmp_runtime():
    """Loading the kernels binds them to the libgomp torch loaded (one thread team): no new copy."""
    script = (
        "import torch\n"
        "def runtimes():\n"
        "    with open('/proc/self/maps') as maps:\n"
        "        return {line.split()[-1] for line in maps if 'gomp' in line}\n"
        "before = runtimes()\n"
        "from decaylab.optim import _native\n"
        "assert _native.library() is not None\n"
        "print(len(before), runtimes() == before)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "True"]


@pytest.mark.slow  # a fresh interpreter, or a kernel build
def test_a_build_without_openmp_gives_the_same_updates(monkeypatch, tmp_path, spy_paths):
    with_openmp, _ = _run(AdamW, ADAMW_OPTIONS[0], {"fused": True}, torch.float32, steps=3,
                          numel=1 << 17)
    monkeypatch.setenv("DECAYLAB_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(_native, "_THREADING", ([],))
    monkeypatch.setattr(_native, "_library", False)
    seen = spy_paths()
    single, _ = _run(AdamW, ADAMW_OPTIONS[0], {"fused": True}, torch.float32, steps=3,
                     numel=1 << 17)
    assert set(seen) == {"native"} and len(list(tmp_path.glob("decay_kernels_*.so"))) == 1
    assert torch.equal(with_openmp, single)


def test_non_contiguous_params_fall_back_and_stay_correct(spy_paths):
    seen = spy_paths()
    base = torch.randn(6, 4, dtype=torch.float64)
    runs = []
    for flags, start in (({"fused": True}, base.clone().t()), (REFERENCE, base.t().contiguous())):
        assert start.is_contiguous() == (flags is REFERENCE)
        w = torch.nn.Parameter(start)
        opt = SGDW([w], lr=0.1, momentum=0.9, weight_decay=0.2, l1_decay=0.01, **flags)
        for _ in range(5):
            w.grad = torch.ones_like(w)
            opt.step()
        runs.append(w.detach().contiguous())
    assert not torch.equal(runs[1], base.t())
    assert seen[0] == "fused"  # torch's kernel + decay/prox passes, not the native kernel
    assert torch.allclose(runs[0], runs[1], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cls,kwargs", [(SGDW, SGDW_OPTIONS[2]), (AdamW, ADAMW_OPTIONS[0])])
def test_without_a_compiler_fused_falls_back_to_equal_results(cls, kwargs, monkeypatch, spy_paths):
    with_native, _ = _run(cls, kwargs, {"fused": True}, torch.float64, steps=5, numel=500)
    monkeypatch.setattr(_native, "_library", None)
    seen = spy_paths()
    without, _ = _run(cls, kwargs, {"fused": True}, torch.float64, steps=5, numel=500)
    assert "native" not in seen
    assert torch.allclose(with_native, without, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("flags", [{"fused": True}, {"foreach": True}, REFERENCE])
@pytest.mark.parametrize("cls,kwargs", [(SGDW, SGDW_OPTIONS[2]), (AdamW, ADAMW_OPTIONS[1])])
def test_nan_gradient_stays_nan_through_decay_variants(cls, kwargs, flags):
    """The soft threshold does not zero a NaN away: NaN stays where the gradient had it."""
    def poison(t, w):
        if t == 2:
            w.grad[5] = float("nan")
    clean, _ = _run(cls, kwargs, flags, torch.float64, steps=4, numel=300)
    dirty, _ = _run(cls, kwargs, flags, torch.float64, steps=4, numel=300, grads=poison)
    nan = torch.isnan(dirty)
    assert nan.nonzero().flatten().tolist() == [5]
    assert torch.equal(dirty[~nan], clean[~nan])
    assert clean.isfinite().all()


def test_native_step_bumps_autograd_versions_like_torch_in_place_ops():
    """A graph that saved a weight before a native step refuses to backprop, as with torch."""
    w = torch.nn.Parameter(torch.ones(3))
    loss = (w * w).sum()
    w.grad = torch.ones(3)
    opt = AdamW([w], lr=0.1, cautious=True, fused=True)
    versions = w._version
    opt.step()
    assert w._version > versions and opt.state[w]["exp_avg"]._version > 0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
