"""One optimizer specification: which decaylab optimizer, and every option it takes.

:class:`OptimizerSpec` is what the batched trainer, :func:`decaylab.sweep` and
:func:`decaylab.maps.lr_map.lr_decay_map` share with the optimizer classes: the same
names, the same defaults and the same checks — the declarations of :mod:`decaylab.optim.options`,
which the classes' constructors and param groups run too, so the spec refuses exactly what the
classes refuse, with the same error. ``spec.build(params, lr, weight_decay)`` makes the optimizer
the spec names.

- ``name`` ∈ {sgd, sgdw, adam, adamw}: coupled (sgd, adam) or decoupled (sgdw, adamw) decay;
- decoupled only: ``decay_scaling`` ∈ {lr, schedule, corrected}, ``cautious``, ``l1_decay``;
- SGDs: ``momentum``, ``dampening``, ``nesterov``; Adams: ``betas``, ``eps``, ``amsgrad``.

Values are kept as given (``momentum=0`` stays an int; store keys hash them as format 2 did), except
``betas`` (a tuple of floats) and ``l1_decay`` (a float).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from decaylab.optim.options import OPTIMIZER_NAMES, OPTIONS, check_decoupled_only, check_nesterov

__all__ = ["OptimizerSpec", "OPTIMIZER_NAMES"]


@dataclass(frozen=True)
class OptimizerSpec:
    """A decaylab optimizer by name with its options (see the module docstring)."""

    name: str = OPTIONS["optimizer"].default
    decay_scaling: str = OPTIONS["decay_scaling"].default
    cautious: bool = OPTIONS["cautious"].default
    l1_decay: float = OPTIONS["l1_decay"].default
    momentum: float = OPTIONS["momentum"].default
    dampening: float = OPTIONS["dampening"].default
    nesterov: bool = OPTIONS["nesterov"].default
    betas: tuple[float, float] = OPTIONS["betas"].default
    eps: float = OPTIONS["eps"].default
    amsgrad: bool = OPTIONS["amsgrad"].default

    def __post_init__(self):
        OPTIONS["optimizer"].check(self.name)
        for name in ("momentum", "dampening", "eps", "amsgrad"):
            OPTIONS[name].check(getattr(self, name))
        object.__setattr__(self, "betas", OPTIONS["betas"].check(self.betas))
        check_decoupled_only(self.decoupled, self.decay_scaling, self.cautious, self.l1_decay,
                             who=f"optimizer={self.name!r}")
        object.__setattr__(self, "l1_decay", float(self.l1_decay))
        check_nesterov(self.nesterov, self.momentum, self.dampening)

    @classmethod
    def from_options(cls, optimizer: str = OPTIONS["optimizer"].default, **options) -> OptimizerSpec:
        """The spec from the flat option names (``optimizer`` for ``name``), as ``decaylab.sweep`` takes them."""
        return cls(name=optimizer, **options)

    def as_dict(self) -> dict:
        """The options by their option names (``optimizer``: the name), as store keys hold them."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["optimizer"] = out.pop("name")
        return out

    @property
    def decoupled(self) -> bool:
        return self.name in ("sgdw", "adamw")

    @property
    def is_adam(self) -> bool:
        return self.name in ("adam", "adamw")

    def optimizer_class(self) -> type:
        from decaylab import optim

        return {"sgd": optim.SGD, "sgdw": optim.SGDW, "adam": optim.Adam, "adamw": optim.AdamW}[self.name]

    def kwargs(self) -> dict:
        """The constructor keyword arguments (besides params, lr, weight_decay) of the named class."""
        if self.is_adam:
            kwargs = dict(betas=self.betas, eps=self.eps, amsgrad=self.amsgrad)
        else:
            kwargs = dict(momentum=self.momentum, dampening=self.dampening, nesterov=self.nesterov)
        if self.decoupled:
            kwargs.update(decay_scaling=self.decay_scaling, cautious=self.cautious, l1_decay=self.l1_decay)
        return kwargs

    def build(self, params, lr, weight_decay=0.0):
        """The optimizer this spec names over ``params`` (a list of tensors or param groups)."""
        return self.optimizer_class()(params, lr=lr, weight_decay=weight_decay, **self.kwargs())
