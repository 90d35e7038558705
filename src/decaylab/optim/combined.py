"""One optimizer for a whole model: Muon for the hidden weight matrices, AdamW for every other parameter.

Modelled on Keller Jordan's ``MuonWithAuxAdam``: each param group says which half it is in
with ``use_muon`` (True: :class:`decaylab.optim.Muon`'s update; False:
:class:`decaylab.optim.AdamW`'s), and has its own lr, λ and options. Both halves live in one
``param_groups`` list and one ``state`` (Muon: ``momentum_buffer``; AdamW: ``step``,
``exp_avg``, ``exp_avg_sq``), so there is one ``state_dict``, and an LR scheduler drives both:
torch's schedulers act per group, from each group's own ``initial_lr``, so each half keeps its
own base lr (a cosine schedule scales 0.02 → 0 in the Muon half and 3e-4 → 0 in the AdamW half).
Schedulers that set one value for all groups (``OneCycleLR``'s ``max_lr`` as a number, its
``cycle_momentum``, which needs one of ``momentum``/``betas`` in every group) need lists or
``cycle_momentum=False``.

:func:`decaylab.optim.muon_param_groups` makes the groups from a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch.optim.optimizer import Optimizer, ParamsT

from decaylab._checks import InputError, InputTypeError
from decaylab.optim._decay import DecayGroupsMixin
from decaylab.optim.adam import AdamW
from decaylab.optim.muon import Muon, check_added_muon_group, closure_loss, step_muon_group

__all__ = ["MuonAdamW"]


class _AdamWGroups:
    """decaylab's AdamW group step (every path: for-loop, foreach, fused, native) on the per-param
    state of another optimizer: the AdamW half of :class:`MuonAdamW`."""

    _init_group = AdamW._init_group
    _step_group = AdamW._step_group

    def __init__(self, state: dict) -> None:
        self.state = state


def _kind_defaults(cls: type, arg: str, options: Mapping | None) -> dict:
    """The param-group defaults ``cls(params, **options)`` would have: checked by ``cls``'s own
    constructor (on a placeholder parameter), so each half takes exactly that class's options."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise InputTypeError(f"{arg} must be a dict of {cls.__name__}'s options or None, got {type(options).__name__}")
    allowed = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "params")]
    unknown = [name for name in options if name not in allowed]
    if unknown:
        raise InputError(f"{arg} must hold {cls.__name__}'s options ({', '.join(allowed)}), got {unknown[0]!r}")
    for flag in ("differentiable", "capturable"):
        if options.get(flag):
            raise InputError(f"{arg}: {flag}=True is not supported in MuonAdamW (Muon has no {flag} mode)")
    return cls([torch.zeros(1, 1)], **options).defaults


class MuonAdamW(DecayGroupsMixin, Optimizer):
    r"""Muon for the groups with ``use_muon=True``, AdamW for those with ``use_muon=False``: one optimizer.

    ``params``: param-group dicts, each with ``use_muon`` (required) and any option of its half;
    :func:`decaylab.optim.muon_param_groups` makes them from a model. ``muon`` and ``adamw`` are
    the two halves' defaults, the keyword arguments of :class:`decaylab.optim.Muon` and
    :class:`decaylab.optim.AdamW` (checked by those classes; their defaults are torch's: Muon
    lr 1e-3, λ 0.1; AdamW lr 1e-3, λ 0.01). Keller Jordan's recipe is
    ``muon=dict(lr=0.02, weight_decay=0.01), adamw=dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-10,
    weight_decay=0.01)``.

    Each group's update is exactly its half's (a Muon group equals ``torch.optim.Muon`` on those
    params, an AdamW group ``torch.optim.AdamW``); see the module docstring for the state dict and
    LR schedulers. A group with an option of the other half (``betas`` in a Muon group) is refused.
    ``differentiable``/``capturable`` are not supported.
    """

    _forced_decoupled = True

    def __init__(self, params: ParamsT, *, muon: Mapping | None = None, adamw: Mapping | None = None) -> None:
        self._kind_defaults = {True: _kind_defaults(Muon, "muon", muon),
                               False: _kind_defaults(AdamW, "adamw", adamw)}
        Optimizer.__init__(self, params, {})

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        use_muon = param_group.get("use_muon")
        if not isinstance(use_muon, bool):
            raise InputError("each param group of MuonAdamW needs use_muon=True (Muon) or False (AdamW), got "
                             f"use_muon={use_muon!r}; decaylab.optim.muon_param_groups(model) makes the groups")
        mine, theirs = self._kind_defaults[use_muon], self._kind_defaults[not use_muon]
        foreign = [key for key in param_group if key in theirs and key not in mine]
        if foreign:
            half, other = ("Muon", "AdamW") if use_muon else ("AdamW", "Muon")
            raise InputError(f"a param group with use_muon={use_muon} is a {half} group: {foreign[0]!r} is an "
                             f"option of {other} (the {half} options are {', '.join(mine)})")
        for key, value in mine.items():
            param_group.setdefault(key, value)
        super().add_param_group(param_group)
        if use_muon:
            check_added_muon_group(self.param_groups)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_kind_defaults": self._kind_defaults}

    def __setstate__(self, state: dict) -> None:
        Optimizer.__setstate__(self, state)
        for group in self.param_groups:
            for key, value in self._kind_defaults[group["use_muon"]].items():
                group.setdefault(key, value)
            group.setdefault("decay_reference_lr", float(group.get("initial_lr", group["lr"])))
            group["decoupled_weight_decay"] = True

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict`` (and the λ conversion of decaylab's optimizers); every saved
        group must be of the same half as this optimizer's group in its place."""
        saved_groups = state_dict["param_groups"]
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if saved.get("use_muon", group["use_muon"]) != group["use_muon"]:
                raise ValueError(f"param group {i} is a {'Muon' if group['use_muon'] else 'AdamW'} group here, "
                                 f"but the state dict saved it with use_muon={saved['use_muon']}")
        patched = [{**saved, "use_muon": group["use_muon"]} for group, saved in zip(self.param_groups, saved_groups)]
        super().load_state_dict({**state_dict, "param_groups": patched + list(saved_groups[len(patched):])})

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = closure_loss(closure)
        adamw = _AdamWGroups(self.state)
        for group in self.param_groups:
            if group["use_muon"]:
                step_muon_group(self.state, group)
            else:
                adamw._step_group(group)
        return loss

    @classmethod
    def from_timescale(cls, *args, **kwargs):
        """Not for MuonAdamW: its halves have their own lr; set each half's λ with
        :func:`decaylab.optim.timescale_weight_decay`."""
        raise TypeError("MuonAdamW.from_timescale: the two halves have their own lr; give each its λ from "
                        "decaylab.optim.timescale_weight_decay(lr, tau_epochs, steps_per_epoch)")
