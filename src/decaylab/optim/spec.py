"""One optimizer specification: which decaylab optimizer, and every option it takes.

:class:`OptimizerSpec` is what the batched trainer, :func:`decaylab.sweep` and
:func:`decaylab.maps.lr_map.lr_decay_map` share with the optimizer classes: the same
names, the same defaults and the same checks — the declarations of :mod:`decaylab.optim.options`,
which the classes' constructors and param groups run too (Muon, Lion and the AdamW companion:
the spec runs those classes' constructors on a placeholder parameter), so the spec refuses exactly
what the classes refuse, with the same error. ``spec.build(params, lr, weight_decay)`` makes the
optimizer the spec names.

- ``name`` ∈ {sgd, sgdw, adam, adamw, muon, lion}: coupled (sgd, adam) or decoupled (the others) decay;
- decoupled only: ``decay_scaling`` ∈ {lr, schedule, corrected}, ``cautious``, ``l1_decay``;
- SGDs: ``momentum``, ``dampening``, ``nesterov``; Adams: ``betas``, ``eps``, ``amsgrad``;
- muon (:class:`decaylab.optim.MuonAdamW`: Muon for the parameters :meth:`muon_rule` gives it, AdamW for
  the rest): ``momentum``, ``nesterov``, ``eps``, ``ns_steps``, ``ns_coefficients``, ``adjust_lr_fn``,
  ``ns_dtype``; ``muon_names``, ``adamw_names``, ``head_names``, ``flatten`` (:class:`decaylab.optim.MuonRule`);
  the companion's ``adamw_lr_ratio``, ``adamw_betas``, ``adamw_eps``, ``adamw_weight_decay`` (λ: see
  :mod:`decaylab.optim.options`);
- lion (:class:`decaylab.optim.Lion`): ``betas``.

An option left out takes its declared default, or the optimizer's own (:data:`~decaylab.optim.options.OWN_DEFAULTS`:
Muon's momentum 0.95, …); an option the optimizer does not take is refused in one line
(:func:`~decaylab.optim.options.refuse_inapplicable`) — sgd, sgdw, adam and adamw hold every option of format 2
as they always did — and is ``None`` on the spec. Values are kept as given (``momentum=0`` stays an int; store
keys hash them as format 2 did), except ``betas``/``adamw_betas``/``ns_coefficients`` (tuples of floats), the
name patterns (tuples) and ``l1_decay`` (a float).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from decaylab.optim.options import (
    APPLIES,
    DECOUPLED,
    OPTIMIZER_NAMES,
    OPTIONS,
    OWN_DEFAULTS,
    check_decoupled_only,
    check_nesterov,
    refuse_inapplicable,
)

__all__ = ["OptimizerSpec", "OPTIMIZER_NAMES"]


class _Unset:
    """An option left out of a spec: the optimizer's default applies."""

    def __repr__(self) -> str:
        return "<the optimizer's default>"


UNSET = _Unset()

#: The options checked by their declarations (not by an optimizer class): the AdamW companion's and MuonRule's.
_DECLARED_MUON = ("adamw_lr_ratio", "adamw_betas", "adamw_eps", "adamw_weight_decay", "muon_names", "adamw_names",
                  "head_names")


@dataclass(frozen=True)
class OptimizerSpec:
    """A decaylab optimizer by name with its options (see the module docstring)."""

    name: str = OPTIONS["optimizer"].default
    decay_scaling: str = UNSET
    cautious: bool = UNSET
    l1_decay: float = UNSET
    momentum: float = UNSET
    dampening: float = UNSET
    nesterov: bool = UNSET
    betas: tuple[float, float] = UNSET
    eps: float = UNSET
    amsgrad: bool = UNSET
    ns_steps: int = UNSET
    ns_coefficients: tuple[float, float, float] = UNSET
    adjust_lr_fn: str | None = UNSET
    ns_dtype: torch.dtype = UNSET
    flatten: bool = UNSET
    muon_names: tuple[str, ...] = UNSET
    adamw_names: tuple[str, ...] = UNSET
    head_names: tuple[str, ...] | None = UNSET
    adamw_lr_ratio: float = UNSET
    adamw_betas: tuple[float, float] = UNSET
    adamw_eps: float = UNSET
    adamw_weight_decay: float | None = UNSET

    def __post_init__(self):
        OPTIONS["optimizer"].check(self.name)
        applies = APPLIES[self.name]
        names = [f.name for f in fields(self) if f.name != "name"]
        # None on an option that does not apply is how a spec holds it (dataclasses.replace passes it back)
        given = [n for n in names if getattr(self, n) is not UNSET and not (getattr(self, n) is None
                                                                           and n not in applies)]
        refuse_inapplicable(self.name, {n: getattr(self, n) for n in given}, given)
        own = OWN_DEFAULTS.get(self.name, {})
        for n in names:
            value = getattr(self, n)
            if n not in applies:
                value = None
            elif value is UNSET:
                value = own.get(n, OPTIONS[n].default)
            object.__setattr__(self, n, value)
        {"muon": self._check_muon, "lion": self._check_lion}.get(self.name, self._check_format_2)()
        object.__setattr__(self, "l1_decay", float(self.l1_decay))

    def _check_format_2(self) -> None:
        for name in ("momentum", "dampening", "eps", "amsgrad"):
            OPTIONS[name].check(getattr(self, name))
        object.__setattr__(self, "betas", OPTIONS["betas"].check(self.betas))
        check_decoupled_only(self.decoupled, self.decay_scaling, self.cautious, self.l1_decay,
                             who=f"optimizer={self.name!r}")
        check_nesterov(self.nesterov, self.momentum, self.dampening)

    def _check_muon(self) -> None:
        from decaylab.optim.adam import AdamW
        from decaylab.optim.combined import _kind_defaults
        from decaylab.optim.muon import Muon

        for name in _DECLARED_MUON:
            object.__setattr__(self, name, OPTIONS[name].check(getattr(self, name)))
        kwargs = self.kwargs()
        _kind_defaults(Muon, "muon", kwargs["muon"])            # Muon's own checks and messages
        _kind_defaults(AdamW, "adamw", kwargs["adamw"])
        self.muon_rule()                                         # refuses a bad pattern now
        object.__setattr__(self, "ns_coefficients", tuple(float(c) for c in self.ns_coefficients))

    def _check_lion(self) -> None:
        from decaylab.optim.lion import Lion

        Lion([torch.zeros(1)], **self.kwargs())                 # Lion's own checks and messages
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def from_options(cls, optimizer: str = OPTIONS["optimizer"].default, **options) -> OptimizerSpec:
        """The spec from the flat option names (``optimizer`` for ``name``), as ``decaylab.sweep`` takes them."""
        return cls(name=optimizer, **options)

    def as_dict(self) -> dict:
        """The options the optimizer takes by their option names (``optimizer``: the name), as store keys hold
        them (``ns_dtype`` by its name); sgd, sgdw, adam and adamw: format 2's options, as format 2 did."""
        out = {n: getattr(self, n) for n in APPLIES[self.name]}
        if out.get("ns_dtype") is not None:
            out["ns_dtype"] = str(out["ns_dtype"])
        return {**out, "optimizer": self.name}

    @property
    def decoupled(self) -> bool:
        return self.name in DECOUPLED

    @property
    def is_adam(self) -> bool:
        return self.name in ("adam", "adamw")

    def optimizer_class(self) -> type:
        from decaylab import optim

        return {"sgd": optim.SGD, "sgdw": optim.SGDW, "adam": optim.Adam, "adamw": optim.AdamW,
                "muon": optim.MuonAdamW, "lion": optim.Lion}[self.name]

    def kwargs(self) -> dict:
        """The constructor keyword arguments (besides params, lr, weight_decay) of the named class; for muon
        :class:`~decaylab.optim.MuonAdamW`'s ``muon`` and ``adamw`` (each half's options, lr and λ aside)."""
        decay = dict(decay_scaling=self.decay_scaling, cautious=self.cautious, l1_decay=self.l1_decay)
        if self.name == "muon":
            muon = dict(momentum=self.momentum, nesterov=self.nesterov, ns_coefficients=self.ns_coefficients,
                        eps=self.eps, ns_steps=self.ns_steps, adjust_lr_fn=self.adjust_lr_fn, flatten=self.flatten,
                        ns_dtype=self.ns_dtype, **decay)
            return {"muon": muon, "adamw": dict(betas=self.adamw_betas, eps=self.adamw_eps, **decay)}
        if self.name == "lion":
            return dict(betas=self.betas, **decay)
        if self.is_adam:
            kwargs = dict(betas=self.betas, eps=self.eps, amsgrad=self.amsgrad)
        else:
            kwargs = dict(momentum=self.momentum, dampening=self.dampening, nesterov=self.nesterov)
        if self.decoupled:
            kwargs.update(decay)
        return kwargs

    def companion_weight_decay(self, weight_decay: float) -> float:
        """Muon: the AdamW companion's λ when the Muon matrices' is ``weight_decay`` (``adamw_weight_decay``,
        or the same λ where it is ``None``)."""
        return weight_decay if self.adamw_weight_decay is None else self.adamw_weight_decay

    def muon_rule(self):
        """Muon: which parameters are Muon's, the :class:`~decaylab.optim.MuonRule` of the spec's options."""
        from decaylab.optim.muon_groups import MuonRule

        return MuonRule(muon_names=self.muon_names, adamw_names=self.adamw_names, head_names=self.head_names,
                        flatten=self.flatten)

    def build(self, params, lr, weight_decay=0.0):
        """The optimizer this spec names over ``params`` (a list of tensors or param groups; muon: the param
        groups of :class:`~decaylab.optim.MuonAdamW`, each with ``use_muon``, e.g. from
        :func:`~decaylab.optim.muon_param_groups` with :meth:`muon_rule`). muon: the Muon groups take ``lr`` and
        ``weight_decay``, the AdamW groups ``adamw_lr_ratio·lr`` and :meth:`companion_weight_decay`, unless a
        group sets its own."""
        if self.name == "muon":
            halves = self.kwargs()
            return self.optimizer_class()(
                params, muon={**halves["muon"], "lr": lr, "weight_decay": weight_decay},
                adamw={**halves["adamw"], "lr": lr * self.adamw_lr_ratio,
                       "weight_decay": self.companion_weight_decay(weight_decay)})
        return self.optimizer_class()(params, lr=lr, weight_decay=weight_decay, **self.kwargs())
