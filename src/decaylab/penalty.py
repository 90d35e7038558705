"""Explicit penalty terms to add to a loss: L2 (λ·Σw², the tutorial's form) and L1 (λ·Σ|w|).

Conventions (say which one you use; :mod:`decaylab.conventions` converts between them):

- :func:`l2_penalty` returns ``λ·Σ w²`` — the tutorial's ``L' = L + λ Σ w²``, whose gradient adds
  ``2λw``. Adding it to a loss is *exactly* the same update as an optimizer's coupled
  ``weight_decay = 2λ`` (``torch.optim.SGD``/``Adam``: ``g ← g + weight_decay·w``), for every
  optimizer, because both change the gradient by the same ``2λw`` before the optimizer sees it.
  Many libraries instead write ``(λ/2)·Σ w²`` (gradient ``λw``, coupled ``weight_decay = λ``);
  for that form pass ``lam/2`` here.
- :func:`l1_penalty` returns ``λ·Σ |w|`` (subgradient ``λ·sign(w)``, ``0`` at ``w = 0``). Adding
  it to the loss never produces exact zeros with a gradient method; it only pushes weights
  towards zero by a constant ``lr·λ`` per plain-SGD step.

Neither is a decoupled decay: with momentum or Adam, ``w ← w − lr·λ·w`` applied outside the
gradient (SGDW/AdamW) is a different update from any penalty added to the loss.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from decaylab._checks import InputError, InputTypeError, check_real

__all__ = ["l2_penalty", "l1_penalty"]


def _tensors(params: torch.nn.Module | torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors a penalty is taken over: the parameters of a module that ``DecayRule()`` decays (the rule
    of :func:`decaylab.param_groups`, each tensor once: weights, not biases, norms, embeddings or 0-/1-D free
    parameters), one tensor, or an iterable of tensors (all of them)."""
    if isinstance(params, torch.nn.Module):
        from decaylab.groups import DecayRule

        return [d.param for d in DecayRule().classify(params) if d.decay]
    if isinstance(params, torch.Tensor):
        return [params]
    try:
        tensors = list(params)
    except TypeError:
        raise InputTypeError(f"params must be a torch.nn.Module, a tensor or an iterable of tensors, "
                        f"got {type(params).__name__}") from None
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(f"params must contain only tensors, got {type(t).__name__} at position {i}")
    if not tensors:
        raise InputError("params must contain at least one tensor, got an empty iterable")
    return tensors


def l2_penalty(params: torch.nn.Module | torch.Tensor | Iterable[torch.Tensor], lam: float) -> torch.Tensor:
    """Return ``lam · Σ_i w_i²`` over all tensors in ``params`` (a 0-d tensor you can add to a loss).

    Gradient: ``2·lam·w``. Adding this to the loss is exactly the update of coupled
    ``weight_decay = 2·lam`` in ``torch.optim.SGD``/``torch.optim.Adam`` (and decaylab's
    ``SGD``/``Adam``); for plain SGD without momentum it is also decoupled ``lr``-scaled decay
    (SGDW/AdamW convention ``decay_scaling="lr"``) with ``weight_decay = 2·lam``.

    ``params`` is a module — the parameters :func:`decaylab.param_groups` decays, each shared tensor
    once (weights; not biases, norms, embeddings: the one rule of what decays, see :mod:`decaylab.groups`)
    — or a tensor, or an iterable of tensors (all of them: ``model.parameters()`` penalizes everything);
    ``lam`` must be a finite number ``≥ 0``.
    """
    lam = check_real("lam", lam, low=0.0)
    tensors = _tensors(params)
    return lam * sum(t.pow(2).sum() for t in tensors)


def l1_penalty(params: torch.nn.Module | torch.Tensor | Iterable[torch.Tensor], lam: float) -> torch.Tensor:
    """Return ``lam · Σ_i |w_i|`` over all tensors in ``params`` (a 0-d tensor you can add to a loss).

    Subgradient: ``lam·sign(w)`` (torch takes ``sign(0) = 0``). There is no optimizer
    ``weight_decay`` equivalent: L1 is not a multiplicative decay. Arguments as :func:`l2_penalty`.
    """
    lam = check_real("lam", lam, low=0.0)
    tensors = _tensors(params)
    return lam * sum(t.abs().sum() for t in tensors)
