"""Which prior each parameter gets: a learned precision for decayed parameters, a broad fixed one for the rest.

Decayed parameters are those :func:`decaylab.param_groups` decays (:class:`decaylab.groups.DecayRule`
with the same keyword arguments: by default weight matrices and kernels, not biases, normalization layers
or embeddings). They get a Gaussian prior ``N(0, 1/δ_g)`` whose precision δ_g the evidence chooses: one δ
for all of them (``per_layer=False``) or one per decayed parameter tensor, i.e. per layer
(``per_layer=True``, Immer et al. 2021's layer-wise prior). Parameters that ``param_groups`` does
not decay get the **broad fixed prior** ``N(0, 1/δ₀)`` with ``δ₀ = no_decay_precision`` (default
``1e-4``: a prior standard deviation of 100, i.e. an effectively absent penalty
``δ₀/N`` in coupled weight_decay). It must be > 0 for the evidence to be finite (a flat prior
has no normalizer); it is not optimized, so it only shifts the evidence by a constant.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from decaylab._checks import InputError
from decaylab.groups import DecayRule


@dataclass(frozen=True)
class PriorStructure:
    """``names``: every trainable parameter (order of ``named_parameters``); ``group_of[name]``: the label of
    its learned precision, or ``None`` for the broad fixed prior; ``groups``: the labels, in order."""

    names: list[str]
    group_of: dict[str, str | None]
    groups: list[str]


GLOBAL = "decayed"


def prior_structure(model: nn.Module, per_layer: bool, **group_options) -> PriorStructure:
    """The prior groups of ``model`` (module docstring): ``DecayRule(**group_options)`` decides which parameters
    decay; an :class:`InputError` if nothing is decayed."""
    decisions = DecayRule(**group_options).classify(model)
    if not any(d.decay for d in decisions):
        shown = ", ".join(f"{d.name} ({d.reason})" for d in decisions[:6]) or "none"
        raise InputError(f"model must have at least one decayed parameter (as decaylab.param_groups decides) for "
                         f"the evidence to choose a weight decay, got none; its trainable parameters: {shown}")
    group_of = {d.name: ((d.name if per_layer else GLOBAL) if d.decay else None) for d in decisions}
    groups = list(dict.fromkeys(g for g in group_of.values() if g is not None))
    return PriorStructure([d.name for d in decisions], group_of, groups)
