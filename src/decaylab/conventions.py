"""What a weight-decay number means: convert a decay strength between the conventions people use.

Every convention maps to and from one canonical quantity, the **step decay**

    d = the fraction of each weight that one plain-SGD step at the peak (initial) learning rate
        removes, i.e. the multiplicative decay ``w ← (1 − d)·w`` per step,

as ``d = coef · value^power · lr^a · batch_size^b · dataset_size^c · epochs^e``. Converting from A
to B solves ``d_A = d_B`` for B's value; the context a conversion needs is what does not cancel
(``penalty`` → ``coupled`` needs nothing, ``torch-adamw`` → ``schedule`` needs ``lr``), and a
conversion refuses with a ``ValueError`` naming what is missing. Context: ``lr`` is the peak
(initial) learning rate lr_0; ``batch_size`` b; ``dataset_size`` N (training examples);
``epochs`` T. "Mean loss" below means the per-example mean (``reduction="mean"``). Between two
update-normalized optimizers (Muon, Lion, AdamW, Keras' Muon) the lr may differ on the two sides, and
a conversion keeps the decay relative to the update instead (see "Update-matched conversions" below).

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
``mlp-alpha``             sklearn ``MLPClassifier/MLPRegressor(alpha)``: (α/(2n))·‖W‖² added  lr·α/b (full batches;
                          to each batch's mean loss, n the batch's own rows                   with N: epoch average)
``prior-precision``       δ of a Gaussian prior N(0, 1/δ) on the weights, the loss being the     lr·δ/N
                          mean negative log-likelihood (cross-entropy; the Laplace evidence,
                          decaylab.marglik): coupled λ = δ/N
``normalized``            λ_norm with λ_schedule = λ_norm·√(b/(N·T)) (Loshchilov & Hutter     λ_norm·√(b/(N·T))
                          2019, §B.1; T = epochs, or epochs of the current restart)
``tau-iter``              EMA timescale in steps, τ_iter = 1/(lr·λ_adamw)                    1/τ_iter
                          (Wang & Aitchison 2024)
``tau-epoch``             EMA timescale in epochs, τ_epoch = τ_iter·b/N                        b/(N·τ_epoch)
``muon-original``         ``torch.optim.Muon`` weight_decay with ``adjust_lr_fn`` None or      lr·λ
                          ``"original"`` (Keller Jordan's Muon): w ← w − lr·λ·w at the
                          *unadjusted* lr, update lr·√max(1, A/B)·O
``muon-match-rms``        ``torch.optim.Muon`` with ``adjust_lr_fn="match_rms_adamw"``, which   lr·λ
                          is Moonlight's rule W ← W − η(0.2·√max(A,B)·O + λW): update
                          0.2·lr·√max(A, B)·O, decay at the unadjusted lr
``muon-update-rms``       decaylab ``Muon(update_rms=r)`` and Keras' ``Muon`` weight_decay     lr·λ
                          (``rms_rate`` = r): update r·lr·√max(A, B)·O, decay at lr
``muon-unscaled``         Muon without an lr adjustment (Keras ``rms_rate=None``): update      lr·λ
                          lr·O, decay at lr
``keras-muon-adam``       Keras ``Muon``'s ``adam_weight_decay``: its AdamW variables decay    lr·λ
                          w ← w − lr·λ·w at the main lr but step at lr·``adam_lr_ratio``
``lion``                  Lion's weight_decay (Chen et al. 2023; decaylab Lion):               lr·λ
                          w ← w − lr·λ·w, update lr·sign(·)
========================  =================================================================  =====================

Sources: torch 2.13 ``torch/optim/_muon.py`` (``param.mul_(1 - lr * weight_decay)`` then
``param.add_(update, alpha=-adjusted_lr)``, ``_adjust_lr``: √max(1, A/B) or 0.2·√max(A, B));
Keller Jordan's ``muon.py`` (``update *= max(1, A/B)**0.5``, ``p.mul_(1 - lr*wd)``); Liu et al.
2025, "Muon is Scalable for LLM Training" (Moonlight); Keras 3 ``keras/src/optimizers/muon.py``
(``lr_adjust``: ×√max(A, B)·``rms_rate``; ``_apply_weight_decay``: ``variable − variable·wd·lr`` with
the main learning rate, ``adam_weight_decay`` for the AdamW variables); Chen et al. 2023, "Symbolic
discovery of optimization algorithms" (Lion; its tuning advice: lr 3–10× smaller and λ 3–10× larger than AdamW's,
keeping lr·λ).

Update-matched conversions. Muon, Lion and AdamW normalize their updates, so a λ means something only
beside the update's size: the update of one step has RMS k·lr, with

- ``torch-adamw`` k = 0.2 (the RMS of AdamW's update that Moonlight measures and matches; empirical);
- ``muon-original`` k = √max(1, A/B)/√max(A, B) = 1/√B (O orthogonal: RMS 1/√max(A, B));
- ``muon-match-rms`` k = 0.2; ``muon-update-rms`` k = r; ``muon-unscaled`` k = 1/√max(A, B);
- ``keras-muon-adam`` k = 0.2·q (q = ``adam_lr_ratio``); ``lion`` k = 1 (every coordinate moves ±lr).

Between two of these a conversion keeps the decay *relative to the update*, (lr·λ)/(k·lr) = λ/k:
``λ_dst = λ_src·k_dst/k_src``, whatever lr each side uses; with ``lr_dst = lr_src·k_src/k_dst``
(:func:`update_matched_lr`) the updates also have the same RMS and the per-step decay lr·λ is the
same, the whole decay–update balance. Examples: AdamW → Muon ``"match_rms_adamw"``: the same λ and lr
(Moonlight's point); AdamW → Muon ``"original"`` on an A×B matrix: λ/(0.2·√B) with lr·0.2·√B;
AdamW → Lion: 5·λ with lr/5 (the Lion paper's 3–10×, at the RMS match). Context: ``shape`` (A, B)
for ``muon-original`` (B) and ``muon-unscaled`` (max(A, B)), ``update_rms`` r, ``adam_lr_ratio`` q.
Exact when both sides normalize alike: two Muon conventions (the same O), or ``keras-muon-adam`` and
``torch-adamw`` (the same Adam update); across kinds only as far as AdamW's update RMS is 0.2·lr and
Newton–Schulz's O is orthogonal (it is nearly so: its RMS is ≈ 0.85–0.9 × 1/√max(A, B) for a
Gaussian gradient). With any other convention, a Muon, Lion or Keras value converts through its
per-step decay lr·λ like ``torch-adamw``, ``lr`` being that optimizer's own (for Muon the unadjusted lr).

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
``lbfgs`` — and only the weight matrices decay, not the intercepts. The last batch of an epoch over N rows
has only ``r = N − ⌊N/b⌋·b`` rows (when N is not a multiple of b) and takes ``α/r``: with N = 1437 and b = 200
that batch decays 5.4× as hard as the others and the epoch's decay is 1.55× that of ``α/b`` per step.
Without ``dataset_size`` a conversion from or to ``mlp-alpha`` assumes every batch is full (``α/b`` per step:
exact when N is a multiple of b); with it, the value is the epoch-average decay per step,
``α·(⌊N/b⌋/b + 1/r)/⌈N/b⌉`` (b clipped to N, as sklearn does; :func:`mlp_alpha_batch_factor`), the same
decay over each epoch but not at each step, so such a conversion is not exact (:func:`is_exact`).
``MLPRegressor``'s data loss is ``½``·MSE; against torch's ``MSELoss`` (no ½) the equivalent coefficient
is twice as large.
``Ridge`` does not penalize the intercept.

Length: over 400 lines because this docstring's table of every convention, with its formula and source,
is the reference of ``decaylab convert``; the code below it is ~250 lines.
"""

from __future__ import annotations

import decimal
import fractions
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from decaylab._checks import InputError, InputTypeError, check_int, check_real

__all__ = ["Convention", "CONVENTIONS", "CONTEXT", "get_convention", "convert", "required_context",
           "formula", "is_exact", "counts_short_last_batch", "mlp_alpha_batch_factor", "mlp_alpha_assumption",
           "update_matched", "update_matched_lr", "normalized_weight_decay",
           "timescale_iters", "timescale_epochs"]

#: The context a conversion may need: argument name -> (symbol in formulas, meaning).
CONTEXT: dict[str, tuple[str, str]] = {
    "lr": ("lr", "peak (initial) learning rate lr_0"),
    "batch_size": ("b", "batch size"),
    "dataset_size": ("N", "number of training examples"),
    "epochs": ("T", "number of training epochs (of the current restart)"),
    "cols": ("B", "columns B of the A×B Muon matrix (its fan-in), from shape"),
    "max_dim": ("max(A,B)", "the larger side of the A×B Muon matrix, from shape"),
    "update_rms": ("r", "a Muon update's RMS per unit lr: decaylab Muon's update_rms, Keras Muon's rms_rate "
                        "(default 0.2)"),
    "adam_lr_ratio": ("q", "Keras Muon's adam_lr_ratio: its AdamW variables step at lr·adam_lr_ratio "
                           "(default 1)"),
}
#: the argument of :func:`convert` that gives each context symbol (``shape`` gives two)
ARGUMENT = {"cols": "shape", "max_dim": "shape"}
_MEANINGS = {"shape": "rows A and columns B of the Muon matrix"}


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
    #: an update-normalized optimizer's update RMS per unit lr, k = update_coef·Π context^update_exponents
    #: (``None``: not one; see "Update-matched conversions" in the module docstring)
    update_coef: float | None = None
    update_exponents: dict[str, float] = field(default_factory=dict)
    basis: str | None = None  # how its update is normalized: "adam", "orthogonal" or "sign"

    @property
    def needs(self) -> tuple[str, ...]:
        """Context arguments needed to reach the canonical step decay."""
        return _arguments(k for k in CONTEXT if self.exponents.get(k, 0))

    @property
    def update_needs(self) -> tuple[str, ...]:
        """Context arguments its update RMS factor k needs (for update-matched conversions)."""
        return _arguments(k for k in CONTEXT if self.update_exponents.get(k, 0))

    def log_step_decay(self, value: float, ctx: dict[str, float]) -> float:
        """log d for ``value`` in this convention (context only for exponents given)."""
        return math.log(self.coef) + self.power * math.log(value) + sum(
            e * math.log(ctx[k]) for k, e in self.exponents.items())


def _arguments(symbols) -> tuple[str, ...]:
    """The :func:`convert` arguments that give these context symbols, in order, each once."""
    return tuple(dict.fromkeys(ARGUMENT.get(k, k) for k in symbols))


_LR = {"lr": 1}
_MUON = dict(basis="orthogonal")
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
                                                "keras-weight-decay"), update_coef=0.2, basis="adam"),
    Convention("schedule", "wd_sched", "decoupled",
               "decoupled weight_decay, decay_scaling='schedule' (AdamW paper, Composer): "
               "w ← w − (lr_t/lr_0)·λ·w", 1.0, 1, {}, ("paper", "composer", "decoupled-schedule", "independent")),
    Convention("ridge-alpha", "α_ridge", "penalty",
               "sklearn Ridge alpha: ‖y − Xw‖² + α‖w‖² (vs a mean-squared-error loss)", 2.0, 1,
               {"lr": 1, "dataset_size": -1}, ("ridge", "sklearn-ridge")),
    Convention("mlp-alpha", "α_mlp", "penalty",
               "sklearn MLPClassifier/MLPRegressor alpha: α/(2n)·‖W‖² added to each batch's mean loss (n its rows: "
               "b if every batch is full, N for lbfgs; with dataset_size, sklearn's short last batch counted)",
               1.0, 1, {"lr": 1, "batch_size": -1}, ("mlp", "sklearn-mlp")),
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
    Convention("muon-original", "wd_muon", "decoupled",
               "torch.optim.Muon weight_decay, adjust_lr_fn None/'original' (Keller Jordan's Muon): w ← w − lr·λ·w "
               "at the unadjusted lr, update lr·√max(1, A/B)·O (RMS lr/√B)", 1.0, 1, _LR,
               ("muon", "torch-muon", "kellerjordan", "keller-jordan", "original"),
               update_coef=1.0, update_exponents={"cols": -0.5}, **_MUON),
    Convention("muon-match-rms", "wd_muon_rms", "decoupled",
               "torch.optim.Muon, adjust_lr_fn='match_rms_adamw' = Moonlight's W ← W − η(0.2·√max(A,B)·O + λW): "
               "update RMS 0.2·lr, decay at the unadjusted lr", 1.0, 1, _LR,
               ("match-rms-adamw", "match_rms_adamw", "moonlight"), update_coef=0.2, **_MUON),
    Convention("muon-update-rms", "wd_muon_r", "decoupled",
               "decaylab Muon(update_rms=r), Keras Muon weight_decay (rms_rate=r): update r·lr·√max(A,B)·O "
               "(RMS r·lr), decay lr·λ", 1.0, 1, _LR, ("keras-muon", "update-rms"),
               update_coef=1.0, update_exponents={"update_rms": 1}, **_MUON),
    Convention("muon-unscaled", "wd_muon_1", "decoupled",
               "Muon without an lr adjustment (Keras Muon rms_rate=None): update lr·O (RMS lr/√max(A,B)), decay "
               "lr·λ", 1.0, 1, _LR, ("keras-muon-unscaled",),
               update_coef=1.0, update_exponents={"max_dim": -0.5}, **_MUON),
    Convention("keras-muon-adam", "wd_keras_adam", "decoupled",
               "Keras Muon adam_weight_decay: its AdamW variables decay w ← w − lr·λ·w at the main lr and step at "
               "lr·adam_lr_ratio", 1.0, 1, _LR, ("adam-weight-decay", "keras-adam-weight-decay"),
               update_coef=0.2, update_exponents={"adam_lr_ratio": 1}, basis="adam"),
    Convention("lion", "wd_lion", "decoupled",
               "Lion weight_decay (Chen et al. 2023; decaylab Lion): w ← w − lr·λ·w, update lr·sign(·) (RMS lr)",
               1.0, 1, _LR, ("lion-paper",), update_coef=1.0, basis="sign"),
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


def update_matched(src: Convention, dst: Convention) -> bool:
    """Whether ``src`` → ``dst`` is an update-matched conversion (both are update-normalized optimizers'
    λ: Muon, Lion, AdamW, Keras' Muon), which keeps λ/k; see the module docstring."""
    return src.update_coef is not None and dst.update_coef is not None


def _difference(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0) - b.get(k, 0) for k in CONTEXT if a.get(k, 0) != b.get(k, 0)}


def _route(src: Convention, dst: Convention) -> tuple[float, dict[str, float]]:
    """(coefficient, context exponents) with value_dst^power_dst = coefficient·value_src^power_src·Π ctx^e:
    through the step decay d (d_src = d_dst), or, between two update-normalized conventions, through λ/k."""
    if update_matched(src, dst):
        return dst.update_coef / src.update_coef, _difference(dst.update_exponents, src.update_exponents)
    return src.coef / dst.coef, _difference(src.exponents, dst.exponents)


def _net_exponents(src: Convention, dst: Convention) -> dict[str, float]:
    """Exponents of the context in the src → dst conversion: what it depends on."""
    return _route(src, dst)[1]


def required_context(from_: Any, to: Any) -> tuple[str, ...]:
    """The context arguments converting ``from_`` → ``to`` needs (those that do not cancel)."""
    return _arguments(_net_exponents(get_convention(from_, "from_"), get_convention(to, "to")))


def is_exact(from_: Any, to: Any, *, batch_size: float | None = None, dataset_size: float | None = None) -> bool:
    """True when equal numbers give the same update: both conventions in the same family (penalty or
    decoupled), and, for an update-matched pair, normalized alike (``basis``: two Muon conventions, or
    AdamW and Keras' AdamW variables); False when one is a gradient term and the other a decoupled decay
    (then they agree for plain SGD without momentum only), or when the pair matches different update
    normalizations (AdamW's update RMS 0.2·lr is a measured typical value, Newton–Schulz's O is only
    nearly orthogonal). A pair with ``mlp-alpha`` on one side is exact only if every batch is full: False
    when ``dataset_size`` N is given and is not a multiple of ``batch_size`` (sklearn's short last batch
    decays harder, the conversion matches the epoch's average); without N it is exact under that assumption
    (:func:`mlp_alpha_assumption` says so)."""
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    if update_matched(src, dst):
        return src.basis == dst.basis
    if _one_side_mlp_alpha(src, dst) and batch_size is not None and dataset_size is not None:
        if _short_last_batch(batch_size, dataset_size):
            return False
    return src.family == dst.family


def _one_side_mlp_alpha(src: Convention, dst: Convention) -> bool:
    return (src.name == "mlp-alpha") != (dst.name == "mlp-alpha")


def _whole(name: str, value: Any) -> int:
    """A count of rows: an integer ≥ 1 (a float such as the CLI's 200.0 when it is whole)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_int(name, value, low=1)


def _short_last_batch(batch_size: float, dataset_size: float) -> int:
    """Rows of sklearn's short last batch of an epoch over ``dataset_size`` rows (0: every batch is full)."""
    b, n = _whole("batch_size", batch_size), _whole("dataset_size", dataset_size)
    return n % min(b, n)


def counts_short_last_batch(from_: Any, to: Any, batch_size: float | None, dataset_size: float | None) -> bool:
    """Whether :func:`convert` counts sklearn's short last batch: ``mlp-alpha`` on one side, its ``b`` not
    cancelled, and both ``batch_size`` and ``dataset_size`` given (then the value is scaled by
    :func:`mlp_alpha_batch_factor`, the ``c`` of :func:`formula`'s ``batch_factor``)."""
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    return (_one_side_mlp_alpha(src, dst) and "batch_size" in _net_exponents(src, dst)
            and batch_size is not None and dataset_size is not None)


def mlp_alpha_batch_factor(batch_size: float, dataset_size: float) -> float:
    """sklearn MLP's epoch-average penalty per step over N = ``dataset_size`` rows in batches of b =
    ``batch_size`` (clipped to N), as a multiple of the full-batch ``α/b``: ``b·(⌊N/b⌋/b + 1/r)/⌈N/b⌉`` with
    the last batch's ``r`` rows (the ``1/r`` term only when r > 0); 1 when N is a multiple of b. E.g. 1.55 for
    N = 1437, b = 200 (seven batches of 200 at α/200, one of 37 at α/37). Both must be integers ≥ 1."""
    b_given, n = _whole("batch_size", batch_size), _whole("dataset_size", dataset_size)
    b = min(b_given, n)
    full, rest = divmod(n, b)
    per_epoch = fractions.Fraction(full, b) + (fractions.Fraction(1, rest) if rest else 0)
    return float(b_given * per_epoch / (full + (1 if rest else 0)))       # exactly 1 when N is a multiple of b


def mlp_alpha_assumption(from_: Any, to: Any, *, batch_size: float | None = None,
                         dataset_size: float | None = None) -> str | None:
    """What a conversion from or to ``mlp-alpha`` assumes about sklearn's batches, in one line (``None`` for
    any other pair): every batch full (no ``dataset_size``), every batch full because N is a multiple of b,
    or the epoch-average of a short last batch (with its rows and the factor over ``α/b``)."""
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    if not _one_side_mlp_alpha(src, dst) or "batch_size" not in (*src.exponents, *dst.exponents):
        return None
    if batch_size is None:
        return None
    if dataset_size is None:
        return (f"assumes every sklearn batch has b = {batch_size:g} rows, true only when the training rows are a "
                "multiple of b; give the rows (dataset_size, --dataset-size) to count sklearn's short last batch")
    rest = _short_last_batch(batch_size, dataset_size)
    if rest == 0:
        return f"every batch is full ({dataset_size:g} rows in batches of {min(batch_size, dataset_size):g})"
    factor = mlp_alpha_batch_factor(batch_size, dataset_size)
    return (f"the epoch-average decay per step: sklearn's last batch has {rest} of {dataset_size:g} rows and takes "
            f"α/{rest}, so an epoch decays {factor:.3g}× what α/b per step gives; not the same decay at each step")


def update_matched_lr(lr: float, from_: Any, to: Any, **context: Any) -> float:
    """The lr that goes with :func:`convert`'s value on the ``to`` side, for an update-matched pair:
    lr·k_src/k_dst (the same update RMS, so the per-step decay lr·λ is the same too; e.g. AdamW → Lion
    lr/5). ``context`` as for :func:`convert` (``shape``, ``update_rms``, ``adam_lr_ratio``). Raises
    ``ValueError`` for a pair that is not update-matched (there the lr is the same on both sides)."""
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    if not update_matched(src, dst):
        raise InputError(f"update_matched_lr: {src.name!r} → {dst.name!r} is not an update-matched pair (both must "
                         f"be one of {', '.join(c.name for c in CONVENTIONS.values() if c.update_coef is not None)});"
                         " other conversions keep the lr")
    check_real("lr", lr, low=0.0, low_open=True)
    return convert(lr, dst, src, **context)      # lr·k_src/k_dst: the λ conversion the other way round


def _check_shape(shape: Any) -> tuple[int, int]:
    """A Muon matrix's (A, B): two integers ≥ 1."""
    if isinstance(shape, str) or not hasattr(shape, "__len__") or len(shape) != 2:
        raise InputTypeError(f"shape must be a pair (A, B) of a Muon matrix's rows and columns, got {shape!r}")
    return check_int("shape[0]", shape[0], low=1), check_int("shape[1]", shape[1], low=1)


def _context(lr, batch_size, dataset_size, epochs, shape, update_rms, adam_lr_ratio) -> dict[str, float]:
    """The given context by symbol key, checked (each > 0; ``shape`` gives ``cols`` and ``max_dim``)."""
    given = {"lr": lr, "batch_size": batch_size, "dataset_size": dataset_size, "epochs": epochs,
             "update_rms": update_rms, "adam_lr_ratio": adam_lr_ratio}
    ctx = {k: check_real(k, v, low=0.0, low_open=True) for k, v in given.items() if v is not None}
    if shape is not None:
        rows, cols = _check_shape(shape)
        ctx.update(cols=float(cols), max_dim=float(max(rows, cols)))
    return ctx


def convert(value: float, from_: Any, to: Any, *, lr: float | None = None, batch_size: float | None = None,
            dataset_size: float | None = None, epochs: float | None = None,
            shape: tuple[int, int] | None = None, update_rms: float | None = None,
            adam_lr_ratio: float | None = None) -> float:
    """Convert the decay strength ``value`` from convention ``from_`` to ``to`` (names in
    :data:`CONVENTIONS`; see the module docstring for each formula and for which pairs are exact).

    ``value`` must be finite and ``≥ 0`` (``> 0`` for the timescales); 0 converted to a timescale
    is ``inf`` (no decay). Context arguments must be ``> 0`` (``shape``: a Muon matrix's (A, B),
    integers ≥ 1); only those :func:`required_context` names are needed, a missing one raises
    ``ValueError``. Example: a torch ``AdamW(lr=1e-3, weight_decay=0.05)`` is
    ``convert(0.05, "torch-adamw", "schedule", lr=1e-3) == 5e-5``; AdamW's λ = 0.1 for torch's Muon
    with ``"original"`` scaling on 1024×1024 matrices is ``convert(0.1, "torch-adamw", "muon-original",
    shape=(1024, 1024)) == 0.015625`` (with :func:`update_matched_lr`'s lr, 6.4× AdamW's). ``mlp-alpha``
    assumes full batches of ``batch_size`` rows; given ``dataset_size`` too, it counts sklearn's short last
    batch and gives the epoch-average decay (:func:`mlp_alpha_batch_factor`: ``convert(1e-4, "mlp-alpha",
    "coupled", batch_size=200, dataset_size=1437)`` is 1.55 × 5e-7).
    """
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    value = check_real("value", value, low=0.0, low_open=src.power < 0)
    ctx = _context(lr, batch_size, dataset_size, epochs, shape, update_rms, adam_lr_ratio)
    coef, net = _route(src, dst)
    missing = _arguments(k for k in net if k not in ctx)
    if missing:
        meanings = "; ".join(_MEANINGS.get(k) or CONTEXT[k][1] for k in missing)
        raise InputError(f"converting {src.name!r} to {dst.name!r} needs {', '.join(missing)} "
                         f"({meanings}), got none for {'it' if len(missing) == 1 else 'them'}")
    if value == 0.0:
        return math.inf if dst.power < 0 else 0.0
    batches = 1.0                                # mlp-alpha with N: sklearn's short last batch, on the d level
    if counts_short_last_batch(src, dst, batch_size, dataset_size):
        factor = mlp_alpha_batch_factor(batch_size, dataset_size)
        batches = factor if src.name == "mlp-alpha" else 1 / factor
    with decimal.localcontext() as exact:       # decimal: 1e-300 stays 1e-300, 1/(0.1·1e-3) is 10000
        exact.prec = 40
        d = _decimal(coef) * _decimal(batches) * _decimal_power(_decimal(value), src.power)
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
        whole.append(f"√{halves[0]}" if len(halves) == 1 and "(" not in halves[0] else f"√({'·'.join(halves)})")
    return "·".join(whole)


def formula(from_: Any, to: Any, *, batch_factor: bool = False) -> str:
    """The one-line formula of a conversion, e.g. ``'wd_sched = wd_adamw·lr'``. ``batch_factor``: an
    ``mlp-alpha`` side carries ``c``, sklearn's epoch-average factor of :func:`mlp_alpha_batch_factor` (the
    conversion :func:`counts_short_last_batch`)."""
    src, dst = get_convention(from_, "from_"), get_convention(to, "to")
    coef, net = _route(src, dst)
    num, den = [], []
    (num if src.power > 0 else den).append((src.symbol, 1))
    if batch_factor and _one_side_mlp_alpha(src, dst):
        (num if src.name == "mlp-alpha" else den).append(("c", 1))
    for k, e in net.items():
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
