"""Cosine annealing with warm restarts (SGDR) as a chainable torch LR scheduler, plus SGDWR/AdamWR.

The schedule (Loshchilov & Hutter, "SGDR", ICLR 2017, eq. 5), for a parameter group whose
initial learning rate is ``lr_0``::

    lr_t = eta_min + (lr_0 - eta_min) · (1 + cos(π · T_cur / T_i)) / 2

``T_i`` is the length of the current period (restart ``i``) and ``T_cur`` the number of steps
since that period began. Periods grow geometrically: ``T_i = T_0 · T_mult**i``, so restarts
happen after ``T_0, T_0(1+T_mult), T_0(1+T_mult+T_mult²), …`` steps. At every restart
``T_cur = 0`` and ``lr_t = lr_0`` exactly, so with ``decay_scaling="schedule"`` (decoupled decay
scaled by ``s_t = lr_t/lr_0``, Loshchilov & Hutter 2019, Algorithms 1–2) the decay multiplier also
returns to 1 at each restart.

Units: ``T_0`` counts *epochs* and the scheduler is stepped ``steps_per_epoch`` times per epoch
(``steps_per_epoch=1``, the default, is torch's per-epoch stepping; pass the number of batches
to step after every batch, as the paper does). A period is then ``T_0 · T_mult**i ·
steps_per_epoch`` calls of :meth:`step`.

Chaining: :class:`CosineWarmRestarts` is *multiplicative*. Each step it multiplies the group's
current ``lr`` by ``m(k)/m(k−1)``, where ``m(k) = lr_k/lr_0`` is the multiplier above, never
reading ``lr_0`` back into the group. So it composes with torch's other chainable schedulers
(``LinearLR`` warm-up, ``ExponentialLR``, ``ChainedScheduler``) the way they compose with each
other, and alone it gives the closed form to rounding (``m(k) > 0`` always, because ``T_cur < T_i``).
At a restart an lr within 1e-12 (relative) of ``lr_0`` is set to exactly ``lr_0``, so that
``lr_t/lr_0 = 1`` exactly there when nothing else is chained.

Normalized weight decay (Loshchilov & Hutter 2019, Appendix B.1): with ``weight_decay_norm``
set, the scheduler also writes ``weight_decay = λ_norm · √(b / (B · T_i))`` into every *decaying*
group at the start of each period, ``b`` the batch size, ``B`` the training-set size and ``T_i`` the
epochs of the *current* restart period (:attr:`CosineWarmRestarts.period_epochs`). The
arithmetic is :func:`decaylab.conventions.normalized_weight_decay`'s.

A decaying group is one whose ``weight_decay`` is > 0 when the scheduler is constructed
(:attr:`CosineWarmRestarts.decaying_groups`); the others — the ``weight_decay=0`` group of
:func:`decaylab.param_groups` (biases, norms, embeddings: :class:`decaylab.groups.DecayRule`'s
no-decay set) — stay at their own value through every restart. So build the optimizer from
``param_groups(model, λ)`` with any λ > 0 (the normalized value replaces it); with no decaying group
``weight_decay_norm`` is refused. :func:`sgdwr`/:func:`adamwr` also count every group that sets no
``weight_decay`` of its own as decaying.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from decaylab._checks import InputError, InputTypeError, check_int, check_real

__all__ = ["CosineWarmRestarts", "period_of_step", "sgdwr", "adamwr"]

_SNAP = 1e-12   # relative distance within which a restart's lr is set to exactly lr_0


def period_of_step(step: int, period_0: int, period_mult: int) -> tuple[int, int, int]:
    """Where step ``step`` (0-based) falls: ``(restart index i, steps into the period, period length)``.

    Periods have lengths ``period_0 · period_mult**i``; the first starts at step 0.
    """
    if period_mult == 1:
        return step // period_0, step % period_0, period_0
    index, start, length = 0, 0, period_0
    while step >= start + length:
        start += length
        length *= period_mult
        index += 1
    return index, step - start, length


def _cosine_multiplier(steps_in_period: int, period_length: int, base_lr: float, eta_min: float) -> float:
    """``lr_t / lr_0`` at ``T_cur = steps_in_period`` of a period of ``period_length`` steps."""
    if base_lr == 0:
        return 1.0
    cosine = (1.0 + math.cos(math.pi * steps_in_period / period_length)) / 2.0
    return (eta_min + (base_lr - eta_min) * cosine) / base_lr


class CosineWarmRestarts(LRScheduler):
    """Cosine annealing with warm restarts (SGDR), chainable, with optional normalized decay.

    Args:
        optimizer: the wrapped optimizer (any ``torch.optim.Optimizer``).
        T_0: epochs of the first period (integer ≥ 1).
        T_mult: period growth factor (integer ≥ 1; the paper uses 1 or 2).
        eta_min: the lowest learning rate (absolute, ≥ 0, same for every group, as in torch's
            ``CosineAnnealingWarmRestarts``).
        steps_per_epoch: calls of :meth:`step` per epoch (1 = step once per epoch).
        weight_decay_norm: λ_norm; when given, each decaying group's ``weight_decay`` (a group whose
            ``weight_decay`` is > 0 at construction, :attr:`decaying_groups`) is set to
            ``λ_norm·√(batch_size/(train_size·T_i))`` at the start of every period; the others keep theirs.
        batch_size, train_size: ``b`` and ``B`` of the normalized decay (required with it).
        last_epoch: torch's resume index (-1 for a fresh start).

    Without ``weight_decay_norm`` and with ``steps_per_epoch=1`` the learning rates equal
    ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0, T_mult, eta_min)``
    when stepped without arguments; unlike it, this one also chains.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0, *,
                 steps_per_epoch: int = 1, weight_decay_norm: float | None = None,
                 batch_size: int | None = None, train_size: int | None = None, last_epoch: int = -1) -> None:
        self.T_0 = check_int("T_0", T_0, low=1)
        self.T_mult = check_int("T_mult", T_mult, low=1)
        self.eta_min = check_real("eta_min", eta_min, low=0.0)
        self.steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, low=1)
        if weight_decay_norm is not None:
            check_real("weight_decay_norm", weight_decay_norm, low=0.0)
            if batch_size is None or train_size is None:
                raise InputError("weight_decay_norm needs batch_size and train_size (b and B of "
                                 "λ = λ_norm·√(b/(B·T_i))), "
                                 f"got batch_size={batch_size!r}, train_size={train_size!r}")
            check_int("batch_size", batch_size, low=1)
            check_int("train_size", train_size, low=1)
        self.weight_decay_norm = weight_decay_norm
        self.batch_size = batch_size
        self.train_size = train_size
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InputTypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        #: indices of the groups that get the normalized λ (weight_decay > 0 at construction)
        self.decaying_groups = tuple(i for i, g in enumerate(optimizer.param_groups)
                                     if float(g.get("weight_decay", 0.0)) > 0)
        if weight_decay_norm is not None and not self.decaying_groups:
            raise InputError("weight_decay_norm needs a decaying parameter group (a weight_decay > 0 at "
                             "construction, replaced by the normalized λ), got weight_decay "
                             f"{[g.get('weight_decay', 0.0) for g in optimizer.param_groups]}: build the optimizer "
                             "from decaylab.param_groups(model, 1.0) or give it weight_decay > 0")
        super().__init__(optimizer, last_epoch)

    # -- where the schedule is --------------------------------------------------------------
    def _position(self, step: int) -> tuple[int, int, int]:
        return period_of_step(step, self.T_0 * self.steps_per_epoch, self.T_mult)

    @property
    def restart(self) -> int:
        """Index of the current period (0 before the first restart)."""
        return self._position(max(self.last_epoch, 0))[0]

    @property
    def period_epochs(self) -> int:
        """``T_i``: epochs of the current restart period (``T_0 · T_mult**restart``)."""
        return self._position(max(self.last_epoch, 0))[2] // self.steps_per_epoch

    @property
    def epochs_into_period(self) -> float:
        """``T_cur`` in epochs (fractional when stepping per batch)."""
        return self._position(max(self.last_epoch, 0))[1] / self.steps_per_epoch

    def multipliers(self, step: int | None = None) -> list[float]:
        """``lr_t / lr_0`` of each group at ``step`` (default: the current step) — the factor
        ``s_t`` that ``decay_scaling="schedule"`` applies to λ when nothing else is chained."""
        step = self.last_epoch if step is None else check_int("step", step, low=0)
        _, t_cur, t_i = self._position(step)
        return [_cosine_multiplier(t_cur, t_i, float(base), self.eta_min) for base in self.base_lrs]

    # -- torch's scheduler interface --------------------------------------------------------
    def get_lr(self) -> list[Any]:
        """Chainable form: ``lr ← lr · m(k)/m(k−1)`` per group (``m`` from :meth:`multipliers`)."""
        step = self.last_epoch
        self._apply_normalized_decay(step)
        if step == 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        now, before = self.multipliers(step), self.multipliers(step - 1)
        lrs = [group["lr"] * (m_now / m_before)
               for group, m_now, m_before in zip(self.optimizer.param_groups, now, before)]
        if self._position(step)[1] == 0:   # a restart: undo the product's rounding (≤ a few ulp)
            lrs = [base if abs(float(lr) - float(base)) <= _SNAP * abs(float(base)) else lr
                   for lr, base in zip(lrs, self.base_lrs)]
        return lrs

    def _get_closed_form_lr(self) -> list[float]:
        """Closed form ``lr_0 · m(k)``, used by torch for the deprecated ``step(epoch)``."""
        self._apply_normalized_decay(self.last_epoch, force=True)
        return [float(base) * m for base, m in zip(self.base_lrs, self.multipliers(self.last_epoch))]

    def _apply_normalized_decay(self, step: int, force: bool = False) -> None:
        if self.weight_decay_norm is None:
            return
        if not force and step > 0 and self._position(step)[1] != 0:
            return
        decay = self.normalized_weight_decay()
        for i in self.decaying_groups:
            self.optimizer.param_groups[i]["weight_decay"] = decay

    def normalized_weight_decay(self, weight_decay_norm: float | None = None) -> float:
        """``λ_norm·√(b/(B·T_i))`` for the current period (λ_norm defaults to the constructor's)."""
        from decaylab.conventions import normalized_weight_decay

        lam = self.weight_decay_norm if weight_decay_norm is None else weight_decay_norm
        if lam is None or self.batch_size is None or self.train_size is None:
            raise InputError("normalized_weight_decay needs weight_decay_norm, batch_size and train_size; got "
                             f"{lam!r}, {self.batch_size!r}, {self.train_size!r}")
        return normalized_weight_decay(lam, batch_size=self.batch_size, dataset_size=self.train_size,
                                       epochs=self.period_epochs)


def _default_decay(weight_decay: float, weight_decay_norm: float | None) -> float:
    """The optimizer's default ``weight_decay``: ``weight_decay``, or with ``weight_decay_norm`` a placeholder 1.0
    that marks every group without a ``weight_decay`` of its own as decaying (the scheduler replaces it)."""
    if weight_decay_norm is None:
        return weight_decay
    if weight_decay != 0:
        raise InputError(f"weight_decay must be 0 when weight_decay_norm is given (the normalized λ replaces it), "
                         f"got weight_decay={weight_decay!r} and weight_decay_norm={weight_decay_norm!r}")
    return 1.0


def _with_restarts(optimizer: torch.optim.Optimizer, T_0: int, T_mult: int, eta_min: float, steps_per_epoch: int,
                   weight_decay_norm: float | None, batch_size: int | None,
                   train_size: int | None) -> tuple[torch.optim.Optimizer, CosineWarmRestarts]:
    scheduler = CosineWarmRestarts(optimizer, T_0, T_mult, eta_min, steps_per_epoch=steps_per_epoch,
                                   weight_decay_norm=weight_decay_norm, batch_size=batch_size,
                                   train_size=train_size)
    return optimizer, scheduler


def sgdwr(params: Iterable, lr: float, *, T_0: int, T_mult: int = 2, steps_per_epoch: int = 1,
          momentum: float = 0.9, weight_decay: float = 0.0, weight_decay_norm: float | None = None,
          batch_size: int | None = None, train_size: int | None = None, eta_min: float = 0.0,
          **sgd_kwargs: Any) -> tuple[torch.optim.Optimizer, CosineWarmRestarts]:
    """SGDWR (Loshchilov & Hutter 2019): SGDW with ``decay_scaling="schedule"`` + warm restarts.

    Returns ``(optimizer, scheduler)``; call ``scheduler.step()`` ``steps_per_epoch`` times per
    epoch, after ``optimizer.step()``. The decoupled update each step is
    ``w ← w − (lr_t/lr_0)·λ·w`` then the momentum-SGD step with ``lr_t``. Give either a fixed
    ``weight_decay`` λ or ``weight_decay_norm`` λ_norm (with ``batch_size``, ``train_size``),
    which is renormalized to each period's length and goes to every decaying group: a group with a
    ``weight_decay`` > 0 of its own or none (``params=param_groups(model, 1.0)``: the decayed ones, its
    ``weight_decay=0`` group stays 0; ``model.parameters()``: all of them).
    """
    from decaylab.optim import SGDW

    optimizer = SGDW(params, lr=lr, momentum=momentum, weight_decay=_default_decay(weight_decay, weight_decay_norm),
                     decay_scaling="schedule", **sgd_kwargs)
    return _with_restarts(optimizer, T_0, T_mult, eta_min, steps_per_epoch, weight_decay_norm, batch_size, train_size)


def adamwr(params: Iterable, lr: float, *, T_0: int, T_mult: int = 2, steps_per_epoch: int = 1,
           weight_decay: float = 0.0, weight_decay_norm: float | None = None, batch_size: int | None = None,
           train_size: int | None = None, eta_min: float = 0.0,
           **adam_kwargs: Any) -> tuple[torch.optim.Optimizer, CosineWarmRestarts]:
    """AdamWR (Loshchilov & Hutter 2019): AdamW with ``decay_scaling="schedule"`` + warm restarts.

    Returns ``(optimizer, scheduler)`` as :func:`sgdwr`. Each step:
    ``w ← w − (lr_t/lr_0)·λ·w`` then the Adam step with ``lr_t``.
    """
    from decaylab.optim import AdamW

    optimizer = AdamW(params, lr=lr, weight_decay=_default_decay(weight_decay, weight_decay_norm),
                      decay_scaling="schedule", **adam_kwargs)
    return _with_restarts(optimizer, T_0, T_mult, eta_min, steps_per_epoch, weight_decay_norm, batch_size, train_size)
