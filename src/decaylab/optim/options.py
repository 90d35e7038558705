"""The optimizers' options, declared once: the classes' argument checks and ``OptimizerSpec``'s.

``SGD``/``SGDW`` and ``Adam``/``AdamW`` check their arguments with these declarations (keeping torch's
exception types and the start of its messages, ``torch_message``), and ``OptimizerSpec`` checks its fields
with the same ones, so a value one refuses the other refuses with the same error:

- ``optimizer`` ∈ {sgd, sgdw, adam, adamw} (the spec's ``name``); ``weight_decay`` (λ) ≥ 0;
- SGDs: ``momentum`` ≥ 0, ``dampening`` any finite real (as torch), ``nesterov`` a bool needing
  ``momentum > 0`` and ``dampening == 0`` (:func:`check_nesterov`);
- Adams: ``betas`` two reals in [0, 1), ``eps`` ≥ 0, ``amsgrad`` a bool;
- decoupled only (SGDW, AdamW): ``decay_scaling`` ∈ {lr, schedule, corrected}, ``cautious`` a bool,
  ``l1_decay`` ≥ 0 (:func:`check_decoupled_only`).
"""

from __future__ import annotations

from decaylab._checks import InputError
from decaylab._options import Interval, Option, comma_list, declared

__all__ = ["OPTIMIZER_NAMES", "DECAY_SCALINGS", "OPTIMIZER_OPTIONS", "OPTIONS", "check_nesterov",
           "check_decoupled_only"]

OPTIMIZER_NAMES = ("sgd", "sgdw", "adam", "adamw")
DECAY_SCALINGS = ("lr", "schedule", "corrected")
AT_LEAST_0 = Interval(0.0, None)

#: What an OptimizerSpec holds, in its field order (``optimizer`` is its ``name``).
OPTIMIZER_OPTIONS = (
    Option("optimizer", "adamw", "sgd/adam: coupled decay (g + λw); sgdw/adamw: decoupled (w − s_t·λ·w)",
           kind="choice", choices=OPTIMIZER_NAMES),
    Option("decay_scaling", "lr", "decoupled decay scale s_t: lr_t (torch AdamW), lr_t/lr_0 (schedule) or "
           "lr_t²/lr_0 (corrected, AdamC)", kind="choice", choices=DECAY_SCALINGS),
    Option("cautious", False, "decoupled decay only where the update and the weight agree in sign", kind="bool"),
    Option("l1_decay", 0.0, "decoupled L1 soft threshold s_t·l1_decay besides the L2 decay", kind="real",
           interval=AT_LEAST_0),
    Option("momentum", 0.0, "SGD momentum", kind="real", interval=AT_LEAST_0,
           torch_message="Invalid momentum value: {value}"),
    Option("dampening", 0.0, "SGD dampening of the momentum", kind="real"),
    Option("nesterov", False, "SGD Nesterov momentum (needs momentum > 0 and dampening 0)", kind="bool"),
    Option("betas", (0.9, 0.999), "Adam's β1,β2", kind="pair", interval=Interval(0.0, 1.0, high_open=True),
           torch_message="Invalid beta parameter at index {index}: {value}", parse=comma_list(float)),
    Option("eps", 1e-8, "Adam's ε", kind="real", interval=AT_LEAST_0, torch_message="Invalid epsilon value: {value}"),
    Option("amsgrad", False, "Adam's AMSGrad variant", kind="bool"),
)

#: Every option of the optimizer classes by name: the spec's and λ (``weight_decay``).
OPTIONS = declared(OPTIMIZER_OPTIONS + (
    Option("weight_decay", 0.0, "λ", kind="real", interval=AT_LEAST_0,
           torch_message="Invalid weight_decay value: {value}"),
))


def check_nesterov(nesterov, momentum, dampening) -> None:
    """Nesterov momentum needs a momentum and no dampening (torch's rule and the start of its message)."""
    OPTIONS["nesterov"].check(nesterov)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise InputError("Nesterov momentum requires a momentum and zero dampening (nesterov=True requires "
                         f"momentum > 0 and dampening == 0, got momentum={momentum!r}, dampening={dampening!r})")


def check_decoupled_only(decoupled: bool, decay_scaling, cautious, l1_decay, *, who: str) -> None:
    """``decay_scaling`` other than ``'lr'``, ``cautious`` and ``l1_decay`` act on decoupled decay only;
    ``who`` says what was coupled (``"optimizer='adam'"``, a param group)."""
    for name, value in (("decay_scaling", decay_scaling), ("cautious", cautious), ("l1_decay", l1_decay)):
        OPTIONS[name].check(value)
    if not decoupled and (cautious or l1_decay != 0 or decay_scaling != "lr"):
        raise InputError("decay_scaling other than 'lr', cautious and l1_decay need decoupled weight decay: use "
                         f"SGDW or AdamW (optimizer 'sgdw' or 'adamw'), got {who} with decay_scaling="
                         f"{decay_scaling!r}, cautious={cautious!r}, l1_decay={l1_decay!r}")
