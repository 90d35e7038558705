"""The optimizers' options, declared once: the classes' argument checks and ``OptimizerSpec``'s.

``SGD``/``SGDW`` and ``Adam``/``AdamW`` check their arguments with these declarations (keeping torch's
exception types and the start of its messages, ``torch_message``), and ``OptimizerSpec`` checks its fields
with the same ones, so a value one refuses the other refuses with the same error (``Muon``, ``Lion`` and
``MuonAdamW`` keep torch's own checks; the spec runs those classes' constructors):

- ``optimizer`` ∈ {sgd, sgdw, adam, adamw, muon, lion} (the spec's ``name``); ``weight_decay`` (λ) ≥ 0;
- SGDs: ``momentum`` ≥ 0, ``dampening`` any finite real (as torch), ``nesterov`` a bool needing
  ``momentum > 0`` and ``dampening == 0`` (:func:`check_nesterov`);
- Adams: ``betas`` two reals in [0, 1), ``eps`` ≥ 0, ``amsgrad`` a bool;
- decoupled only (SGDW, AdamW, Muon, Lion): ``decay_scaling`` ∈ {lr, schedule, corrected}, ``cautious`` a
  bool, ``l1_decay`` ≥ 0 (:func:`check_decoupled_only`);
- Muon (with the AdamW companion for every parameter that is not Muon's, :class:`decaylab.optim.MuonAdamW`):
  ``momentum``, ``nesterov``, ``eps`` (the Newton–Schulz ε), ``ns_steps``, ``ns_coefficients``,
  ``adjust_lr_fn``, ``ns_dtype``; which parameters are Muon's, :class:`decaylab.optim.MuonRule`'s
  ``muon_names``, ``adamw_names``, ``head_names``, ``flatten``; the companion's ``adamw_lr_ratio``,
  ``adamw_betas``, ``adamw_eps`` and ``adamw_weight_decay``;
- Lion: ``betas``.

Which optimizer takes which option is :data:`APPLIES`; an option that does not apply is refused in one
line (:func:`refuse_inapplicable`), except the options of format 2 (``momentum`` … ``amsgrad``), which
sgd, sgdw, adam and adamw all hold as they always did (store keys hash them). Where Muon's or Lion's own
default differs from the declared one (Muon's ``momentum`` 0.95, ``nesterov`` True, ``eps`` 1e-7; Lion's
``betas`` (0.9, 0.99): the classes' defaults, torch's for Muon) it is :data:`OWN_DEFAULTS`, used when the
option is left out.

λ of a Muon run: the member's λ decays the Muon matrices that decay (``W ← W − s_t·λ·W``, s_t of the
unadjusted lr, as torch); the AdamW companion's decayed parameters get ``adamw_weight_decay`` when it is
set (one fixed λ for every member) and otherwise the same λ, at their own lr = ``adamw_lr_ratio`` × the
member's lr (so with the default ratio 1 both halves shrink by the same s_t·λ per step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from decaylab._checks import InputError
from decaylab._options import Interval, Option, comma_list, declared

__all__ = ["OPTIMIZER_NAMES", "FORMAT_2_OPTIMIZERS", "DECOUPLED", "DECAY_SCALINGS", "OPTIMIZER_OPTIONS", "OPTIONS",
           "APPLIES", "OWN_DEFAULTS", "check_nesterov", "check_decoupled_only", "inapplicable", "refuse_inapplicable"]

FORMAT_2_OPTIMIZERS = ("sgd", "sgdw", "adam", "adamw")
OPTIMIZER_NAMES = FORMAT_2_OPTIMIZERS + ("muon", "lion")
DECOUPLED = ("sgdw", "adamw", "muon", "lion")
DECAY_SCALINGS = ("lr", "schedule", "corrected")
NS_DTYPES = (torch.bfloat16, torch.float32, torch.float64)
AT_LEAST_0 = Interval(0.0, None)
UNIT = Interval(0.0, 1.0, high_open=True)

#: What an OptimizerSpec holds, in its field order (``optimizer`` is its ``name``).
OPTIMIZER_OPTIONS = (
    Option("optimizer", "adamw", "sgd/adam: coupled decay (g + λw); sgdw/adamw: decoupled (w − s_t·λ·w); muon: "
           "Muon for the hidden matrices, AdamW for the rest; lion: Lion", kind="choice", choices=OPTIMIZER_NAMES),
    Option("decay_scaling", "lr", "decoupled decay scale s_t: lr_t (torch AdamW), lr_t/lr_0 (schedule) or "
           "lr_t²/lr_0 (corrected, AdamC)", kind="choice", choices=DECAY_SCALINGS),
    Option("cautious", False, "decoupled decay only where the update and the weight agree in sign", kind="bool"),
    Option("l1_decay", 0.0, "decoupled L1 soft threshold s_t·l1_decay besides the L2 decay", kind="real",
           interval=AT_LEAST_0),
    Option("momentum", 0.0, "SGD momentum; Muon's (its default 0.95)", kind="real", interval=AT_LEAST_0,
           torch_message="Invalid momentum value: {value}"),
    Option("dampening", 0.0, "SGD dampening of the momentum", kind="real"),
    Option("nesterov", False, "SGD Nesterov momentum (needs momentum > 0 and dampening 0); Muon's (its default "
           "True)", kind="bool"),
    Option("betas", (0.9, 0.999), "Adam's β1,β2; Lion's (its default 0.9,0.99)", kind="pair", interval=UNIT,
           torch_message="Invalid beta parameter at index {index}: {value}", parse=comma_list(float)),
    Option("eps", 1e-8, "Adam's ε; Muon's Newton–Schulz ε (its default 1e-07)", kind="real", interval=AT_LEAST_0,
           torch_message="Invalid epsilon value: {value}"),
    Option("amsgrad", False, "Adam's AMSGrad variant", kind="bool"),
    Option("ns_steps", 5, "Muon: Newton–Schulz iterations", kind="int", interval=Interval(0, 99)),
    Option("ns_coefficients", (3.4445, -4.7750, 2.0315), "Muon: the quintic Newton–Schulz coefficients a,b,c",
           parse=comma_list(float)),
    Option("adjust_lr_fn", None, "Muon: the update's scale ρ, original √max(1, A/B) (None: the same) or "
           "match_rms_adamw 0.2·√max(A, B)", kind="choice", choices=("original", "match_rms_adamw"), none=True),
    Option("ns_dtype", None, "Muon: the dtype Newton–Schulz runs in (None: the parameters', so the batched engine "
           "equals the sequential one; bfloat16: torch's Muon)", kind="choice", choices=NS_DTYPES, none=True),
    Option("flatten", False, "Muon: conv kernels are Muon's too, orthogonalized as [out, in·k…] matrices",
           kind="bool"),
    Option("muon_names", (), "Muon: name patterns that are Muon's whatever else says", kind="names",
           parse=comma_list(str)),
    Option("adamw_names", (), "Muon: name patterns the AdamW companion takes", kind="names", parse=comma_list(str)),
    Option("head_names", None, "Muon: the output head's name patterns, the companion's (None: the last Linear)",
           kind="names", none=True, parse=comma_list(str)),
    Option("adamw_lr_ratio", 1.0, "Muon: the AdamW companion's lr as a multiple of the member's lr", kind="real",
           interval=Interval(0.0, None, low_open=True)),
    Option("adamw_betas", (0.9, 0.999), "Muon: the AdamW companion's β1,β2", kind="pair", interval=UNIT,
           parse=comma_list(float)),
    Option("adamw_eps", 1e-8, "Muon: the AdamW companion's ε", kind="real", interval=AT_LEAST_0),
    Option("adamw_weight_decay", None, "Muon: the AdamW companion's λ, the same for every member (None: each "
           "member's λ)", kind="real", interval=AT_LEAST_0, none=True),
)

#: Every option of the optimizer classes by name: the spec's and λ (``weight_decay``).
OPTIONS = declared(OPTIMIZER_OPTIONS + (
    Option("weight_decay", 0.0, "λ", kind="real", interval=AT_LEAST_0,
           torch_message="Invalid weight_decay value: {value}"),
))


#: The options of format 2's optimizer specification: sgd, sgdw, adam and adamw hold them all.
FORMAT_2_OPTIONS = ("decay_scaling", "cautious", "l1_decay", "momentum", "dampening", "nesterov", "betas", "eps",
                    "amsgrad")
MUON_OPTIONS = ("decay_scaling", "cautious", "l1_decay", "momentum", "nesterov", "eps", "ns_steps",
                "ns_coefficients", "adjust_lr_fn", "ns_dtype", "flatten", "muon_names", "adamw_names", "head_names",
                "adamw_lr_ratio", "adamw_betas", "adamw_eps", "adamw_weight_decay")

#: Which options each optimizer takes (besides ``optimizer`` and λ).
APPLIES = {**{name: FORMAT_2_OPTIONS for name in FORMAT_2_OPTIMIZERS}, "muon": MUON_OPTIONS,
           "lion": ("decay_scaling", "cautious", "l1_decay", "betas")}

#: Muon's and Lion's own defaults where they differ from the declared ones (the classes' defaults).
OWN_DEFAULTS = {"muon": {"momentum": 0.95, "nesterov": True, "eps": 1e-7}, "lion": {"betas": (0.9, 0.99)}}

_WHAT_ELSE = {"muon": " (the adamw_* options are its AdamW companion's)"}


def inapplicable(optimizer: str, names: Iterable[str]) -> list[str]:
    """The optimizer options among ``names`` (others are ignored) that ``optimizer`` does not take."""
    names = set(names)
    return [o.name for o in OPTIMIZER_OPTIONS
            if o.name != "optimizer" and o.name in names and o.name not in APPLIES[optimizer]]


def refuse_inapplicable(optimizer: str, values: Mapping, given: Iterable[str],
                        spell: Callable[[str, object], str] | None = None) -> None:
    """Refuse, in one line, the options in ``given`` that ``optimizer`` does not take (:data:`APPLIES`);
    ``spell(name, value)`` writes one (default ``name=value``; the command line writes its flags)."""
    OPTIONS["optimizer"].check(optimizer)
    unused = inapplicable(optimizer, given)
    if not unused:
        return
    spell = spell or (lambda name, value: f"{name}={value!r}")
    names = ", ".join(spell(name, values[name]) for name in unused)
    verb = "does" if len(unused) == 1 else "do"
    raise InputError(f"{names} {verb} not apply to {spell('optimizer', optimizer)}, which takes "
                     f"{', '.join(APPLIES[optimizer])}{_WHAT_ELSE.get(optimizer, '')}")


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
