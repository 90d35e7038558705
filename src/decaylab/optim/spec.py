"""One optimizer specification: which decaylab optimizer, and every option it takes.

:class:`OptimizerSpec` is what the batched trainer, :func:`decaylab.sweep` and
:func:`decaylab.experiments.lr_map.lr_decay_map` share with the optimizer classes: the
same names, the same defaults, the same checks (``check_decay_options`` and
``check_group_decay`` of :mod:`decaylab.optim._decay`, which the classes' param groups
also run). ``spec.build(params, lr, weight_decay)`` makes the optimizer the spec names.

- ``name`` ∈ {sgd, sgdw, adam, adamw}: coupled (sgd, adam) or decoupled (sgdw, adamw) decay;
- decoupled only: ``decay_scaling`` ∈ {lr, schedule, corrected}, ``cautious``, ``l1_decay``;
- SGDs: ``momentum``, ``dampening``, ``nesterov``; Adams: ``betas``, ``eps``, ``amsgrad``.
"""

from __future__ import annotations

from dataclasses import dataclass

from decaylab._checks import InputError, check_choice, check_real
from decaylab.optim._decay import check_decay_options

__all__ = ["OptimizerSpec", "OPTIMIZER_NAMES"]

OPTIMIZER_NAMES = ("sgd", "sgdw", "adam", "adamw")


@dataclass(frozen=True)
class OptimizerSpec:
    """A decaylab optimizer by name with its options (see the module docstring)."""

    name: str = "adamw"
    decay_scaling: str = "lr"
    cautious: bool = False
    l1_decay: float = 0.0
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False

    def __post_init__(self):
        check_choice("optimizer", self.name, OPTIMIZER_NAMES)
        check_decay_options(self.decay_scaling, self.cautious, self.l1_decay)
        if not self.decoupled and (self.cautious or self.l1_decay != 0 or self.decay_scaling != "lr"):
            raise InputError(f"decay_scaling other than 'lr', cautious and l1_decay need decoupled weight decay "
                             f"(optimizer 'sgdw' or 'adamw'), got optimizer={self.name!r}")
        check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_real("dampening", self.dampening, low=0.0, high=1.0)
        check_real("eps", self.eps, low=0.0)
        if len(tuple(self.betas)) != 2:
            raise InputError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            check_real(f"betas[{i}]", beta, low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "l1_decay", float(self.l1_decay))
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise InputError(f"nesterov=True needs momentum > 0 and dampening = 0, got momentum={self.momentum!r}, "
                             f"dampening={self.dampening!r}")

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
