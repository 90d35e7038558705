"""Single-pass CPU kernels for the decoupled updates that no torch kernel expresses.

torch's fused SGD and Adam kernels cannot shrink the weights outside the momentum
(SGDW with momentum), mask the decay by the update's sign (cautious decay) or
soft-threshold after the step (proximal L1); doing that with extra tensor passes
costs 30%..1700% over torch's fused step. These kernels do the whole update in
one pass over the tensors, reading and writing each element once, like torch's
fused kernels, and split each tensor over torch's own OpenMP thread team (a second
thread pool would fight torch's spinning OpenMP workers for the cores right after
backward). They are C, compiled with the system C compiler on first use and
cached (``$DECAYLAB_KERNEL_CACHE`` or ``~/.cache/decaylab``); without a compiler,
or for tensors that are not contiguous float32/float64 on the CPU, callers fall
back to the other paths. Each kernel is the update of
:mod:`decaylab.optim.functional`, element by element::

    sgdw_step:  g ← ±g;  b ← g (first step) or μ·b + (1−τ)·g;  u ← g + μ·b (nesterov) or b
                w ← w·(1 − decay) where (not cautious or u·w ≥ 0);  w ← w − lr·u;  prox_L1(w)
    adamw_step: g ← ±g;  m ← m + (1−β₁)·(g − m);  v ← β₂·v + (1−β₂)·g²;  v̂ ← max(v̂, v)
                w ← w·(1 − decay) where (not cautious or m·w ≥ 0)
                w ← w − step_size·m / (√v̂ / √(1−β₂^t) + ε);  prox_L1(w)
    lion_step:  g ← ±g;  u ← sign(β₁·m + (1−β₁)·g);  w ← w·shrink where (not cautious or u·w ≥ 0)
                w ← w − lr·u;  prox_L1(w);  m ← β₂·m + (1−β₂)·g
                (the products and sums rounded as torch's mul/add-with-alpha ops round them, with
                fused multiply-adds, so the kernel gives the reference path's numbers)

with prox_L1(w) = sign(w)·max(|w| − threshold, 0); a NaN stays NaN throughout (Lion: sign(NaN) = 0, as
torch's ``sign``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.graph import increment_version

_SOURCE = r"""
#include <stdint.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#else  /* built without OpenMP: one slice */
#define omp_get_num_threads() 1
#define omp_get_thread_num() 0
#endif

/* prox of thr*|w|: 0 inside [-thr, thr], else shrink by thr toward 0; NaN stays NaN */
#define PROX_L1(w, thr) ((thr) > 0 ? (FABS(w) <= (thr) ? 0 : (w) - COPYSIGN((thr), (w))) : (w))
#define INLINE static inline __attribute__((always_inline))
/* Run BODY over [0, n) split into one contiguous slice [lo, lo + len) per OpenMP thread
   (torch's own team); below PARALLEL_MIN elements one thread beats waking the team. */
#define PARALLEL_MIN 65536
#define FOR_SLICES(n, BODY) do {                                                        \
    _Pragma("omp parallel if((n) >= PARALLEL_MIN)")                                      \
    {                                                                                    \
        int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();                    \
        int64_t per = ((n) + nt - 1) / nt, lo = t * per;                                 \
        int64_t len = lo < (n) ? ((n) - lo < per ? (n) - lo : per) : 0;                  \
        if (len > 0) { BODY; }                                                           \
    }                                                                                    \
} while (0)

/* Each loop body is instantiated with HAS_* and CAUTIOUS as constants so that every version vectorizes
   (a runtime `cautious` left a per-element branch: ~10x slower on random signs). The bodies are inlined
   into a noinline function per kernel that takes its scalars by value: inlined straight into OpenMP's
   outlined region, they would read them through the shared-data pointer and not vectorize. */
#define DEFINE_KERNELS(T, SUFFIX, SQRT)   /* FABS, COPYSIGN, FMA: #defined per type below */ \
INLINE void sgdw_body_##SUFFIX(T *restrict w, const T *restrict g, T *restrict b,        \
        int64_t n, T neg_lr, T mu, T keep, T shrink, T thr, int nesterov, int maximize,  \
        int first_step, const int CAUTIOUS, const int HAS_BUFFER) {                      \
    for (int64_t i = 0; i < n; ++i) {                                                     \
        T gi = maximize ? -g[i] : g[i];                                                   \
        T u = gi;                                                                         \
        if (HAS_BUFFER) {                                                                 \
            T bi = first_step ? gi : b[i] * mu + keep * gi;                               \
            b[i] = bi;                                                                    \
            u = nesterov ? gi + mu * bi : bi;                                             \
        }                                                                                 \
        T wi = w[i];                                                                      \
        wi = (CAUTIOUS && !(u * wi >= 0)) ? wi : wi * shrink;                             \
        wi = wi + neg_lr * u;                                                             \
        w[i] = PROX_L1(wi, thr);                                                          \
    }                                                                                     \
}                                                                                         \
static __attribute__((noinline)) void sgdw_loop_##SUFFIX(T *restrict w,                  \
        const T *restrict g, T *restrict b, int64_t n, T neg_lr, T mu, T keep, T shrink,  \
        T thr, int nesterov, int maximize, int first_step, int cautious) {                \
    if (b) {                                                                              \
        if (cautious) sgdw_body_##SUFFIX(w, g, b, n, neg_lr, mu, keep, shrink, thr,       \
                                         nesterov, maximize, first_step, 1, 1);           \
        else sgdw_body_##SUFFIX(w, g, b, n, neg_lr, mu, keep, shrink, thr, nesterov,      \
                                maximize, first_step, 0, 1);                              \
    } else {                                                                              \
        if (cautious) sgdw_body_##SUFFIX(w, g, b, n, neg_lr, mu, keep, shrink, thr,       \
                                         nesterov, maximize, first_step, 1, 0);           \
        else sgdw_body_##SUFFIX(w, g, b, n, neg_lr, mu, keep, shrink, thr, nesterov,      \
                                maximize, first_step, 0, 0);                              \
    }                                                                                     \
}                                                                                         \
void sgdw_step_##SUFFIX(T *w, const T *g, T *b, int64_t n, double lr, double momentum,   \
                        double dampening, double decay, double threshold, int nesterov,   \
                        int maximize, int first_step, int cautious) {                     \
    FOR_SLICES(n, sgdw_loop_##SUFFIX(w + lo, g + lo, b ? b + lo : b, len, (T)(-lr),       \
                              (T)momentum, (T)(1 - dampening), (T)(1 - decay),            \
                              (T)threshold, nesterov, maximize, first_step, cautious));   \
}                                                                                         \
INLINE void adamw_body_##SUFFIX(T *restrict w, const T *restrict g, T *restrict m,       \
        T *restrict v, T *restrict vmax, int64_t n, T one_minus_beta1, T beta2,           \
        T one_minus_beta2, T neg_step, T bc2, T eps, T shrink, T thr, int maximize,       \
        const int CAUTIOUS, const int HAS_VMAX) {                                         \
    for (int64_t i = 0; i < n; ++i) {                                                     \
        T gi = maximize ? -g[i] : g[i];                                                   \
        T mi = m[i] + one_minus_beta1 * (gi - m[i]);                                      \
        T vi = v[i] * beta2 + one_minus_beta2 * gi * gi;                                  \
        m[i] = mi;                                                                        \
        v[i] = vi;                                                                        \
        if (HAS_VMAX) {                                                                   \
            T old = vmax[i];                                                              \
            vi = (vi != vi || old != old) ? (vi + old) : (vi > old ? vi : old);           \
            vmax[i] = vi;                                                                 \
        }                                                                                 \
        T wi = w[i];                                                                      \
        wi = (CAUTIOUS && !(mi * wi >= 0)) ? wi : wi * shrink;                            \
        T denom = SQRT(vi) / bc2 + eps;                                                   \
        wi = wi + neg_step * (mi / denom);                                                \
        w[i] = PROX_L1(wi, thr);                                                          \
    }                                                                                     \
}                                                                                         \
static __attribute__((noinline)) void adamw_loop_##SUFFIX(T *restrict w,                 \
        const T *restrict g, T *restrict m, T *restrict v, T *restrict vmax, int64_t n,   \
        T one_minus_beta1, T beta2, T one_minus_beta2, T neg_step, T bc2, T eps,          \
        T shrink, T thr, int maximize, int cautious) {                                    \
    if (vmax) {                                                                           \
        if (cautious) adamw_body_##SUFFIX(w, g, m, v, vmax, n, one_minus_beta1, beta2,    \
                          one_minus_beta2, neg_step, bc2, eps, shrink, thr, maximize, 1, 1); \
        else adamw_body_##SUFFIX(w, g, m, v, vmax, n, one_minus_beta1, beta2,             \
                          one_minus_beta2, neg_step, bc2, eps, shrink, thr, maximize, 0, 1); \
    } else {                                                                              \
        if (cautious) adamw_body_##SUFFIX(w, g, m, v, vmax, n, one_minus_beta1, beta2,    \
                          one_minus_beta2, neg_step, bc2, eps, shrink, thr, maximize, 1, 0); \
        else adamw_body_##SUFFIX(w, g, m, v, vmax, n, one_minus_beta1, beta2,             \
                          one_minus_beta2, neg_step, bc2, eps, shrink, thr, maximize, 0, 0); \
    }                                                                                     \
}                                                                                         \
void adamw_step_##SUFFIX(T *w, const T *g, T *m, T *v, T *vmax, int64_t n,              \
                         double beta1, double beta2, double step_size,                    \
                         double bias_correction2_sqrt, double eps, double decay,          \
                         double threshold, int maximize, int cautious) {                  \
    FOR_SLICES(n, adamw_loop_##SUFFIX(w + lo, g + lo, m + lo, v + lo,                      \
                              vmax ? vmax + lo : vmax, len, (T)(1 - beta1), (T)beta2,     \
                              (T)(1 - beta2), (T)(-step_size), (T)bias_correction2_sqrt,  \
                              (T)eps, (T)(1 - decay), (T)threshold, maximize, cautious));  \
}                                                                                         \
INLINE void lion_body_##SUFFIX(T *restrict w, const T *restrict g, T *restrict m,        \
        int64_t n, T neg_lr, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2,      \
        T shrink, T thr, int maximize, const int CAUTIOUS) {                              \
    for (int64_t i = 0; i < n; ++i) {                                                     \
        T gi = maximize ? -g[i] : g[i];                                                   \
        T mi = m[i];                                                                      \
        T c = FMA(gi, one_minus_beta1, mi * beta1);                                       \
        T u = (T)((c > 0) - (c < 0));                                                     \
        T wi = w[i];                                                                      \
        wi = (CAUTIOUS && !(u * wi >= 0)) ? wi : wi * shrink;                             \
        wi = FMA(u, neg_lr, wi);                                                          \
        w[i] = PROX_L1(wi, thr);                                                          \
        m[i] = FMA(gi, one_minus_beta2, mi * beta2);                                      \
    }                                                                                     \
}                                                                                         \
static __attribute__((noinline)) void lion_loop_##SUFFIX(T *restrict w,                  \
        const T *restrict g, T *restrict m, int64_t n, T neg_lr, T beta1,                 \
        T one_minus_beta1, T beta2, T one_minus_beta2, T shrink, T thr, int maximize,     \
        int cautious) {                                                                   \
    if (cautious) lion_body_##SUFFIX(w, g, m, n, neg_lr, beta1, one_minus_beta1, beta2,   \
                                     one_minus_beta2, shrink, thr, maximize, 1);          \
    else lion_body_##SUFFIX(w, g, m, n, neg_lr, beta1, one_minus_beta1, beta2,            \
                            one_minus_beta2, shrink, thr, maximize, 0);                   \
}                                                                                         \
void lion_step_##SUFFIX(T *w, const T *g, T *m, int64_t n, double lr, double beta1,      \
                        double beta2, double shrink, double threshold, int maximize,      \
                        int cautious) {                                                   \
    FOR_SLICES(n, lion_loop_##SUFFIX(w + lo, g + lo, m + lo, len, (T)(-lr), (T)beta1,     \
                              (T)(1 - beta1), (T)beta2, (T)(1 - beta2), (T)shrink,        \
                              (T)threshold, maximize, cautious));                         \
}

#define FABS fabsf
#define COPYSIGN copysignf
#define FMA fmaf
DEFINE_KERNELS(float, f32, sqrtf)
#undef FABS
#undef COPYSIGN
#undef FMA
#define FABS fabs
#define COPYSIGN copysign
#define FMA fma
DEFINE_KERNELS(double, f64, sqrt)
"""

# -fno-math-errno lets sqrt vectorize (errno is never read); -fno-trapping-math lets the cautious mask's
# compare be if-converted (floating-point exception flags are never read either); no -ffast-math: the
# values, NaN and inf included, are IEEE's
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"]
# First choice: OpenMP, bound at load time to the libgomp.so.1 torch has loaded (one thread team);
# a compiler without OpenMP builds the same kernels single-threaded.
_THREADING = (["-fopenmp"], [])
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_library: ctypes.CDLL | None | bool = False  # False: not tried yet; None: unavailable


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _build() -> ctypes.CDLL | None:
    """Compile (once per source, flags and CPU) and load the kernels; None if impossible."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    user = os.getuid() if hasattr(os, "getuid") else 0
    caches = [Path(os.environ.get("DECAYLAB_KERNEL_CACHE", Path.home() / ".cache" / "decaylab")),
              Path(tempfile.gettempdir()) / f"decaylab-kernels-{user}"]
    library = None
    for flags in (_FLAGS + extra for extra in _THREADING):
        key = hashlib.sha256("\n".join([_SOURCE, " ".join(flags), platform.machine(),
                                        _cpu_signature()]).encode()).hexdigest()[:16]
        for cache in caches:  # the user cache, else a private temp dir (read-only home)
            try:
                target = _compiled(compiler, flags, cache / f"decay_kernels_{key}.so")
                library = ctypes.CDLL(str(target))
                break
            except (OSError, subprocess.SubprocessError):
                continue
        if library is not None:
            break
    if library is None:
        return None
    i64, f64, i32, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_int, ctypes.c_void_p
    for suffix in _SUFFIX.values():
        getattr(library, f"sgdw_step_{suffix}").argtypes = (
            [ptr, ptr, ptr, i64] + [f64] * 5 + [i32] * 4)
        getattr(library, f"adamw_step_{suffix}").argtypes = (
            [ptr] * 5 + [i64] + [f64] * 7 + [i32] * 2)
        getattr(library, f"lion_step_{suffix}").argtypes = [ptr] * 3 + [i64] + [f64] * 5 + [i32] * 2
    return library


def _compiled(compiler: str, flags: list[str], target: Path) -> Path:
    """Build the shared library at ``target`` unless it is there (atomic rename: concurrent
    builders agree); raises OSError/SubprocessError when that is impossible."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            source = Path(tmp) / "decay_kernels.c"
            source.write_text(_SOURCE)
            built = Path(tmp) / "decay_kernels.so"
            subprocess.run([compiler, *flags, "-o", str(built), str(source), "-lm"],
                           check=True, capture_output=True, timeout=120)
            os.replace(built, target)
    return target


def library() -> ctypes.CDLL | None:
    """The loaded kernels (built on first call), or None where they cannot be built."""
    global _library
    if _library is False:
        _library = _build()
    return _library


def eligible(tensors: list[Tensor]) -> bool:
    """True if the kernels can run on all of these: contiguous CPU tensors of one float dtype."""
    dtype = tensors[0].dtype if tensors else None
    return (dtype in _SUFFIX and library() is not None
            and all(t.device.type == "cpu" and t.is_contiguous() and t.dtype == dtype
                    for t in tensors))


def _pointer(t: Tensor | None, start: int) -> int | None:
    return None if t is None else t.data_ptr() + start * t.element_size()


def _run(kernel_name: str, tensors: list[list[Tensor | None]], scalars: list[tuple]) -> None:
    """Call the kernel once per parameter (:func:`_launch`; OpenMP inside splits the loop over torch's
    own threads). The kernels write through raw pointers, so the tensors' autograd version counters are
    bumped here, as any in-place torch op would (a graph that saved a param then notices).
    """
    _launch(kernel_name, tensors, scalars)
    for group in tensors:
        for t in group:
            if t is not None:
                increment_version(t)


def _launch(kernel_name: str, tensors: list[list[Tensor | None]], scalars: list[tuple]) -> None:
    """One kernel call per parameter; inside, OpenMP splits the loop over torch's own threads.

    The kernels are built with ``-fopenmp`` and torch has already loaded its ``libgomp.so.1``,
    so the dynamic loader binds them to that same runtime and thread team: no second pool
    competing for the cores while torch's idle OpenMP workers spin after the previous op.
    """
    lib = library()
    for group, args in zip(tensors, scalars):
        kernel = getattr(lib, f"{kernel_name}_{_SUFFIX[group[0].dtype]}")
        kernel(*[_pointer(t, 0) for t in group], group[0].numel(), *args)


def sgdw_step(params: list[Tensor], grads: list[Tensor], buffers: list[Tensor | None], *,
              lr: float, momentum: float, dampening: float, decay: float, threshold: float,
              nesterov: bool, maximize: bool, cautious: bool) -> list[Tensor | None]:
    """One SGDW step on all params; returns the momentum buffers (created on the first step)."""
    tensors, scalars = [], []
    for i, p in enumerate(params):
        first_step = False
        if momentum != 0 and buffers[i] is None:
            buffers[i] = torch.empty_like(p)
            first_step = True
        tensors.append([p, grads[i], buffers[i] if momentum != 0 else None])
        scalars.append((lr, momentum, dampening, decay, threshold, int(nesterov), int(maximize),
                        int(first_step), int(cautious)))
    _run("sgdw_step", tensors, scalars)
    return buffers


def lion_step(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *, lr: float, beta1: float,
              beta2: float, shrink: float, threshold: float, maximize: bool, cautious: bool) -> None:
    """One Lion step on all params; ``shrink`` is the decay factor 1 − s_t·λ."""
    _run("lion_step", [[p, g, m] for p, g, m in zip(params, grads, exp_avgs)],
         [(lr, beta1, beta2, shrink, threshold, int(maximize), int(cautious))] * len(params))


def adamw_step(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
               exp_avg_sqs: list[Tensor], max_exp_avg_sqs: list[Tensor] | None,
               state_steps: list[Tensor], *, lr: float, beta1: float, beta2: float, eps: float,
               decay: float, threshold: float, maximize: bool, cautious: bool) -> None:
    """One AdamW step on all params (step counts advance by one, as in torch's fused path)."""
    torch._foreach_add_(state_steps, 1)
    tensors, scalars = [], []
    for i, p in enumerate(params):
        step = state_steps[i].item()
        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        tensors.append([p, grads[i], exp_avgs[i], exp_avg_sqs[i],
                        max_exp_avg_sqs[i] if max_exp_avg_sqs else None])
        scalars.append((beta1, beta2, step_size, bias_correction2_sqrt, eps, decay, threshold,
                        int(maximize), int(cautious)))
    _run("adamw_step", tensors, scalars)
