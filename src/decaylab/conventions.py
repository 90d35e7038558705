"""What a weight-decay number means: convert a decay strength between the conventions people use.

Every convention maps to and from one canonical quantity, the **step decay**

    d = the fraction of each weight that one plain-SGD step at the peak (initial) learning rate
        removes, i.e. the multiplicative decay ``w ← (1 − d)·w`` per step,

as ``d = coef · value^power · lr^a · batch_size^b · dataset_size^c · epochs^e``. Converting from A
to B solves ``d_A = d_B`` for B's value; the context a conversion needs is what does not cancel
(``penalty`` → ``coupled`` needs nothing, ``torch-adamw`` → ``schedule`` needs ``lr``), and a
conversion refuses with a ``ValueError`` naming what is missing. Context: ``lr`` is the peak
(initial) learning rate lr_0; ``batch_size`` b; ``dataset_size`` N (training examples);
``epochs`` T. "Mean loss" below means the per-example mean (``reduction="mean"``).

========================  =================================================================  =====================
name                      the number is                                                       d =
========================  =================================================================  =====================
``penalty``               λ in L + λ·Σw² (the tutorial's form; gradient adds 2λw)             2·lr·λ
``half-penalty``          λ in L + (λ/2)·Σw² (gradient adds λw)                                lr·λ
``coupled``               ``weight_decay`` of torch.optim.SGD / Adam: g ← g + λw               lr·λ
``torch-adamw``           decoupled ``decay_scaling="lr"``: w ← w − lr_t·λ·w (torch AdamW,     lr·λ
                          optax, Keras, the tutorial's AdamW)
``schedule``              decoupled ``decay_scaling="schedule"``: w ← w − (lr_t/lr_0)·λ·w     λ
                          (Loshchilov & Hutter 2019, Alg. 1–2; Composer DecoupledAdamW)
``ridge-alpha``           sklearn ``Ridge(alpha)``: ‖y − Xw‖² + α‖w‖² (a *sum* of squares;    2·lr·α/N
                          against a mean-squared-error loss, MSELoss)
``mlp-alpha``             sklearn ``MLPClassifier/MLPRegressor(alpha)``: (α/(2b))·‖W‖² added  lr·α/b
                          to each batch's mean loss
``prior-precision``       δ of a Gaussian prior N(0, 1/δ) on the weights, the loss being the     lr·δ/N
                          mean negative log-likelihood (cross-entropy; the Laplace evidence,
                          decaylab.marglik): coupled λ = δ/N
``normalized``            λ_norm with λ_schedule = λ_norm·√(b/(N·T)) (Loshchilov & Hutter     λ_norm·√(b/(N·T))
                          2019, §B.1; T = epochs, or epochs of the current restart)
``tau-iter``              EMA timescale in steps, τ_iter = 1/(lr·λ_adamw)                    1/τ_iter
                          (Wang & Aitchison 2024)
``tau-epoch``             EMA timescale in epochs, τ_epoch = τ_iter·b/N                        b/(N·τ_epoch)
========================  =================================================================  =====================

Exact or not. Conventions come in two families. In the *penalty* family (``penalty``,
``half-penalty``, ``coupled``, ``ridge-alpha``, ``mlp-alpha``, ``prior-precision``) the decay is a term of the loss's
gradient: conversions inside it give the *same update for every optimizer*. In the *decoupled*
family (``torch-adamw``, ``schedule``, ``normalized``, ``tau-iter``, ``tau-epoch``) the decay
shrinks the weights outside the gradient: conversions inside it are exact too (``schedule`` ↔
``torch-adamw`` at every step of any lr schedule, because lr_t·λ = (lr_t/lr_0)·(lr_0·λ)). Across
the families the numbers give the same update **only for plain SGD without momentum**: with
momentum the coupled term is accumulated (×1/(1−μ) at equilibrium) and with Adam it is divided
by √v̂, so no single number makes coupled and decoupled decay equal; the conversion then gives
the value with the same per-step decay of the weights themselves, and says so.

sklearn details (``sklearn/neural_network/_multilayer_perceptron.py``): the MLP's penalty is
``0.5·alpha·Σ‖W‖² / n_samples`` with ``n_samples`` the size of the batch the gradient is taken
on — ``batch_size`` (default ``min(200, N)``) for the ``sgd``/``adam`` solvers, N for
``lbfgs`` — and only the weight matrices decay, not the intercepts. ``MLPRegressor``'s data loss
is ``½``·MSE; against torch's ``MSELoss`` (no ½) the equivalent coefficient is twice as large.
``Ridge`` does not penalize the intercept.
"""

from __future__ import annotations

import decimal
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from decaylab._checks import InputError, check_real

__all__ = ["Convention", "CONVENTIONS", "CONTEXT", "get_convention", "convert", "required_context",
           "formula", "is_exact", "normalized_weight_decay", "timescale_iters", "timescale_epochs"]

#: The context a conversion may need: argument name -> (symbol in formulas, meaning).
CONTEXT: dict[str, tuple[str, str]] = {
    "lr": ("lr", "peak (initial) learning rate lr_0"),
    "batch_size": ("b", "batch size"),
    "dataset_size": ("N", "number of training examples"),
    "epochs": ("T", "number of training epochs (of the current restart)"),
}


@dataclass(frozen=True)
class Convention:
    """One way of writing a decay strength; ``step_decay = coef · value^power · Π context^exponent``."""

    name: str
    symbol: str
    family: str  # "penalty": a gradient term; "decoupled": applied to the weights directly
    summary: str
    coef: float = 1.0
    power: int = 1  # +1 for strengths, -1 for timescales
    exponents: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def needs(self) -> tuple[str, ...]:
        """Context arguments needed to reach the canonical step decay."""
        return tuple(k for k in CONTEXT if self.exponents.get(k, 0))

    def log_step_decay(self, value: float, ctx: dict[str, float]) -> float:
        """log d for ``value`` in this convention (context only for exponents given)."""
        return math.log(self.coef) + self.power * math.log(value) + sum(
            e * math.log(ctx[k]) for k, e in self.exponents.items())


_LR = {"lr": 1}
CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention("penalty", "λ_pen", "penalty", "λ in L + λ·Σw² (tutorial form; gradient adds 2λw)",
               2.0, 1, _LR, ("l2-penalty", "tutorial", "keras-l2", "keras-regularizer")),
    Convention("half-penalty", "λ_half", "penalty", "λ in L + (λ/2)·Σw² (gradient adds λw)", 1.0, 1, _LR),
    Convention("coupled", "wd_coupled", "penalty",
               "weight_decay of torch.optim.SGD/Adam, decaylab SGD/Adam: g ← g + λ·w", 1.0, 1, _LR,
               ("l2", "torch-sgd", "torch-adam")),
    Convention("torch-adamw", "wd_adamw", "decoupled",
               "decoupled weight_decay, decay_scaling='lr' (torch AdamW, optax, Keras optimizers' weight_decay): "
               "w ← w − lr_t·λ·w", 1.0, 1, _LR, ("lr", "decoupled-lr", "adamw", "optax", "keras-optimizer",
                                                "keras-weight-decay")),
    Convention("schedule", "wd_sched", "decoupled",
               "decoupled weight_decay, decay_scaling='schedule' (AdamW paper, Composer): "
               "w ← w − (lr_t/lr_0)·λ·w", 1.0, 1, {}, ("paper", "composer", "decoupled-schedule", "independent")),
    Convention("ridge-alpha", "α_ridge", "penalty",
               "sklearn Ridge alpha: ‖y − Xw‖² + α‖w‖² (vs a mean-squared-error loss)", 2.0, 1,
               {"lr": 1, "dataset_size": -1}, ("ridge", "sklearn-ridge")),
    Convention("mlp-alpha", "α_mlp", "penalty",
               "sklearn MLPClassifier/MLPRegressor alpha: α/(2b)·‖W‖² added to the batch mean loss "
               "(b = batch_size; N for lbfgs)", 1.0, 1, {"lr": 1, "batch_size": -1}, ("mlp", "sklearn-mlp")),
    Convention("prior-precision", "δ", "penalty",
               "Gaussian prior precision δ (θ ~ N(0, 1/δ)) with a mean negative-log-likelihood loss over N rows "
               "(cross-entropy): coupled λ = δ/N (decaylab.marglik)", 1.0, 1, {"lr": 1, "dataset_size": -1},
               ("precision", "laplace", "evidence")),
    Convention("normalized", "λ_norm", "decoupled",
               "normalized decay: λ_schedule = λ_norm·√(b/(N·T)) (Loshchilov & Hutter 2019)", 1.0, 1,
               {"batch_size": 0.5, "dataset_size": -0.5, "epochs": -0.5}, ("lambda-norm",)),
    Convention("tau-iter", "τ_iter", "decoupled", "EMA timescale in steps: τ_iter = 1/(lr·λ_adamw)",
               1.0, -1, {}, ("tau", "timescale")),
    Convention("tau-epoch", "τ_epoch", "decoupled", "EMA timescale in epochs: τ_epoch = τ_iter·b/N",
               1.0, -1, {"batch_size": 1, "dataset_size": -1}, ("tau-epochs",)),
)}
_BY_ALIAS = {alias: c for c in CONVENTIONS.values() for alias in (c.name, *c.aliases)}


#: names that mean two conventions: refused with both choices named
AMBIGUOUS = {"keras": "Keras has two: 'keras-optimizer' (an optimizer's weight_decay, decoupled: "
                      "w ← w − lr·λ·w, = torch-adamw) and 'keras-l2' (the L2 regularizer l2·Σw² added to "
                      "the loss, = penalty; for plain SGD, l2 = weight_decay/2 gives the same update)"}


def get_convention(name: Any, arg: str = "convention") -> Convention:
    """The :class:`Convention` called ``name`` (or one of its aliases)."""
    if isinstance(name, Convention):
        return name
    if isinstance(name, str) and name.lower() in AMBIGUOUS:
        raise InputError(f"{arg} {name!r} is ambiguous: {AMBIGUOUS[name.lower()]}")
    if not isinstance(name, str) or name.lower() not in _BY_ALIAS:
        raise InputError(f"{arg} must be one of {', '.join(CONVENTIONS)} (or an alias), got {name!r}")
    return _BY_ALIAS[name.lower()]


def _net_exponents(src: Convention, dst: Convention) -> dict[str, float]:
    """Exponents of the context in d_src / d_dst: what a src → dst conversion depends on."""
    return {k: src.exponents.get(k, 0) - dst.exponents.get(k, 0) for k in CONTEXT
            if src.exponents.get(k, 0) != dst.exponents.get(k, 0)}


def required_context(from_: Any, to: Any) -> tuple[str, ...]:
    """The context arguments converting ``from_`` → ``to`` needs (those that do not cancel)."""
    return tuple(_net_exponents(get_convention(from_, "from_"), get_convention(to, "to")))


def is_exact(from_: Any, to: Any) -> bool:
    """True when both conventions are in the same family, so equal numbers give the same update for
    every optimizer; False when one is a gradient term and the other a decoupled decay (then they
    agree for plain SGD without momentum only)."""
    return get_convention(from_, "from_").family == get_convention(to, "to").family


def convert(value: float, from_: Any, to: Any, *, lr: float | None = None, batch_size: float | None = None,
            dataset_size: float | None = None, epochs: float | None = None) -> float:
    """Convert the decay strength ``value`` from convention ``from_`` to ``to`` (names in
    :data:`CONVENTIONS`; see the module docstring for each formula and for which pairs are exact).

    ``value`` must be finite and ``≥ 0`` (``> 0`` for the timescales); 0 converted to a timescale
    is ``inf`` (no decay). Context arguments must be ``> 0``; only those :func:`required_context`
    names are needed, a missing one raises ``ValueError``. Example: a torch ``AdamW(lr=1e-3,
    weight_decay=0.05)`` is ``convert(0.05, "torch-adamw", "schedule", lr=1e-3) == 5e-5``.
    """
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    value = check_real("value", value, low=0.0, low_open=src.power < 0)
    given = {"lr": lr, "batch_size": batch_size, "dataset_size": dataset_size, "epochs": epochs}
    ctx = {k: check_real(k, v, low=0.0, low_open=True) for k, v in given.items() if v is not None}
    missing = [k for k in _net_exponents(src, dst) if k not in ctx]
    if missing:
        raise InputError(f"converting {src.name!r} to {dst.name!r} needs {', '.join(missing)} "
                         f"({'; '.join(CONTEXT[k][1] for k in missing)}), got none for "
                         f"{'it' if len(missing) == 1 else 'them'}")
    if value == 0.0:
        return math.inf if dst.power < 0 else 0.0
    net = _net_exponents(src, dst)
    with decimal.localcontext() as exact:       # decimal: 1e-300 stays 1e-300, 1/(0.1·1e-3) is 10000
        exact.prec = 40
        d = _decimal(src.coef) / _decimal(dst.coef) * _decimal_power(_decimal(value), src.power)
        for k, e in net.items():
            d *= _decimal_power(_decimal(ctx[k]), e)
        result = _decimal_power(d, 1 / dst.power)
        if not _FLOAT_MIN <= result <= _FLOAT_MAX:
            raise InputError(f"converting {value!r} from {src.name!r} to {dst.name!r} gives {float(result):.3g}"
                             f"{'' if result == 0 else f' ({result:.3e})'}, outside the range of a float "
                             f"({sys.float_info.min:.3g} … {sys.float_info.max:.3g}): check the value and the context")
    return float(result)


def _decimal(x: float) -> decimal.Decimal:
    return decimal.Decimal(repr(float(x)))


def _decimal_power(x: decimal.Decimal, e: float) -> decimal.Decimal:
    """x^e for the exponents conventions use (±1, ±½, others through Decimal's power)."""
    if e == 1:
        return x
    if e == -1:
        return 1 / x
    if abs(e) == 0.5:
        root = x.sqrt()
        return root if e > 0 else 1 / root
    return x ** decimal.Decimal(repr(e))


_FLOAT_MIN, _FLOAT_MAX = decimal.Decimal(sys.float_info.min), decimal.Decimal(sys.float_info.max)


def _product(factors: list[tuple[str, float]]) -> str:
    """Render a product of ``symbol^exponent`` with exponents > 0 (halves as one square root)."""
    whole = [s if e == 1 else f"{s}^{e:g}" for s, e in factors if e != 0.5]
    halves = [s for s, e in factors if e == 0.5]
    if halves:
        whole.append(f"√{halves[0]}" if len(halves) == 1 else f"√({'·'.join(halves)})")
    return "·".join(whole)


def formula(from_: Any, to: Any) -> str:
    """The one-line formula of a conversion, e.g. ``'wd_sched = wd_adamw·lr'``."""
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    coef = src.coef / dst.coef
    num, den = [], []
    (num if src.power > 0 else den).append((src.symbol, 1))
    for k, e in _net_exponents(src, dst).items():
        (num if e > 0 else den).append((CONTEXT[k][0], abs(e)))
    if dst.power < 0:
        num, den = den, num
        coef = 1 / coef
    top = _product(num) or "1"
    if coef > 1:
        top = f"{coef:g}" if top == "1" else f"{coef:g}·{top}"
    elif coef < 1:
        den.insert(0, (f"{1 / coef:g}", 1))
    if not den:
        return f"{dst.symbol} = {top}"
    bottom = _product(den)
    if len(den) > 1 and not bottom.startswith("√("):
        bottom = f"({bottom})"
    return f"{dst.symbol} = {top} / {bottom}"


def normalized_weight_decay(lambda_norm: float, batch_size: float, dataset_size: float, epochs: float) -> float:
    """λ = λ_norm·√(b/(B·T)) (Loshchilov & Hutter 2019, normalized weight decay): b the batch size,
    B the number of training examples, T the epochs of the run (or of the current warm restart).
    The result is in the ``schedule`` convention (decaylab ``decay_scaling="schedule"``)."""
    return convert(lambda_norm, "normalized", "schedule", batch_size=batch_size,
                   dataset_size=dataset_size, epochs=epochs)


def timescale_iters(lr: float, weight_decay: float) -> float:
    """τ_iter = 1/(lr·λ) steps: the EMA timescale of decoupled (``torch-adamw``) decay
    (Wang & Aitchison 2024); ``inf`` for λ = 0."""
    return convert(weight_decay, "torch-adamw", "tau-iter", lr=lr)


def timescale_epochs(lr: float, weight_decay: float, batch_size: float, dataset_size: float) -> float:
    """τ_epoch = τ_iter·b/N = 1/(lr·λ·N/b): the timescale of :func:`timescale_iters` in epochs."""
    return convert(weight_decay, "torch-adamw", "tau-epoch", lr=lr, batch_size=batch_size,
                   dataset_size=dataset_size)
