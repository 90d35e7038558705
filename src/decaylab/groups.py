"""Which parameters decay: split a model into decay / no-decay parameter groups for any torch optimizer.

By default weight decay is applied to the weight matrices and kernels of a model and *not* to

- biases: any parameter whose name matches the pattern ``*bias`` (``fc.bias``, ``in_proj_bias``);
- normalization layers' parameters: every parameter owned directly by a
  ``BatchNorm*``/``SyncBatchNorm``/``InstanceNorm*``/``LayerNorm``/``GroupNorm``/``RMSNorm``/
  ``LocalResponseNorm`` module, or by any module whose class name ends in ``Norm`` or
  ``Norm1d/2d/3d`` (custom ``LlamaRMSNorm``-style layers);
- embeddings: parameters owned by ``nn.Embedding`` / ``nn.EmbeddingBag``.

Decaying these shrinks scales and offsets that carry no overfitting capacity (a norm layer's
gain, a bias) or rows that are seen only rarely (embeddings), which is why most training recipes
exclude them.

Embeddings: decaylab does not decay them by default (their rows are seen rarely, and a rarely seen row
is shrunk on every step it is not used by torch's decoupled decay); Hugging Face transformers' Trainer
*does* decay them. ``decay_embeddings=True`` decays embeddings but not norms.

Rules, applied to every *occurrence* of a parameter (a shared tensor has several names/owners):

1. ``decay_names`` patterns force decay (they win over everything else);
2. otherwise a parameter is not decayed if any of its owners is a normalization layer, an embedding
   (unless ``decay_embeddings``) or an instance of ``no_decay_types`` (these *add* to the defaults);
   if any of its names matches ``no_decay_names``; if it is named by its model's ``no_weight_decay()``
   (timm's convention: a set of full names, e.g. ``{"pos_embed", "cls_token"}``); or if it is a 0-/1-D
   *free* parameter — a scalar or vector whose attribute name is neither ``*weight`` nor ``*bias``
   (layer-scale ``gamma``, a ``logit_scale``, a temperature);
3. otherwise it is decayed.

This is the one rule of what decays in decaylab, :class:`DecayRule`; everything that needs to know
which parameters decay calls ``DecayRule.classify``.

A tied (shared) tensor is listed once, and is not decayed if *any* of its names or owners says
so (e.g. an embedding tied to an output ``Linear`` follows the embedding). Frozen parameters
(``requires_grad=False``) are in no group. Name patterns are matched against the full dotted name
from ``model.named_parameters()`` (``encoder.layers.0.norm1.weight``): with
``pattern_syntax="glob"`` (default) by :func:`fnmatch.fnmatchcase` against the whole name
(``*`` also crosses dots), with ``pattern_syntax="regex"`` by :func:`re.search` (anchor with
``^``/``$`` yourself).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from decaylab._checks import InputError, InputTypeError, check_choice, check_real

__all__ = ["DecayRule", "as_decay_rule", "param_groups", "classify_parameters", "ParamDecision", "NORM_TYPES",
           "EMBEDDING_TYPES", "DEFAULT_NO_DECAY_NAMES"]

NORM_TYPES: tuple[type, ...] = tuple(t for t in (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*, lazy variants
    nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None), nn.LocalResponseNorm, nn.CrossMapLRN2d,
) if t is not None)
EMBEDDING_TYPES: tuple[type, ...] = (nn.Embedding, nn.EmbeddingBag)
DEFAULT_NO_DECAY_NAMES: tuple[str, ...] = ("*bias",)

_NORM_CLASS_NAME = re.compile(r"Norm(\dd)?$")


@dataclass(frozen=True)
class ParamDecision:
    """Whether one trainable parameter decays, and why: ``rule`` is the rule that decided
    (``"decay_names"``, ``"normalization"``, ``"embedding"``, ``"no_decay_types"``,
    ``"no_decay_names"``, ``"no_weight_decay"``, ``"free_low_dim"`` or ``"default"``), ``reason`` says it in words."""

    name: str
    param: torch.Tensor
    decay: bool
    reason: str
    rule: str


def _owner_rule(module: nn.Module, no_decay_types: tuple[type, ...], decay_embeddings: bool) -> str | None:
    """The rule by which ``module``'s own parameters are not decayed, or ``None``."""
    if isinstance(module, NORM_TYPES) or _NORM_CLASS_NAME.search(type(module).__name__):
        return "normalization"
    if isinstance(module, EMBEDDING_TYPES) and not decay_embeddings:
        return "embedding"
    return "no_decay_types" if no_decay_types and isinstance(module, no_decay_types) else None


def _is_free_low_dim(name: str, p: torch.Tensor) -> bool:
    """A 0-/1-D parameter that is not a layer's ``weight``/``bias`` (layer-scale gamma, a temperature)."""
    leaf = name.rsplit(".", 1)[-1]
    return p.dim() <= 1 and not (leaf.endswith("weight") or leaf.endswith("bias"))


def _model_no_weight_decay(model: nn.Module) -> set[str]:
    """Full names from every submodule's ``no_weight_decay()`` (timm), prefixed by the submodule's name."""
    names: set[str] = set()
    for mod_name, module in model.named_modules():
        method = getattr(module, "no_weight_decay", None)
        if callable(method):
            prefix = f"{mod_name}." if mod_name else ""
            names.update(prefix + n for n in method())
    return names


def _matcher(patterns: Iterable[str], syntax: str, arg: str):
    """A function name -> first matching pattern (or None) for glob or regex ``patterns``."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    patterns = tuple(patterns)
    for p in patterns:
        if not isinstance(p, str):
            raise InputTypeError(f"{arg} must be strings, got {p!r} ({type(p).__name__})")
    if syntax == "glob":
        return lambda name: next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)
    compiled = []
    for p in patterns:
        try:
            compiled.append((p, re.compile(p)))
        except re.error as exc:
            raise InputError(f"{arg} must be valid regular expressions, got {p!r} ({exc})") from None
    return lambda name: next((p for p, rx in compiled if rx.search(name)), None)


@dataclass(frozen=True)
class DecayRule:
    """What decays, declared once: the rules of the module docstring with their overrides.

    ``DecayRule(...).classify(model)`` is the only way anything in decaylab decides which parameters
    decay (:func:`param_groups`, :func:`classify_parameters`, both trainers, every sweep method, the maps
    and their predicted slopes, the regime detector, the equilibrium check, :class:`CosineWarmRestarts`,
    the penalties, the doctor and the monitor).

    - ``no_decay_types``: module classes excluded *besides* the defaults (normalization layers and,
      unless ``decay_embeddings``, embeddings);
    - ``no_decay_names``: name patterns that do not decay (default ``("*bias",)``);
    - ``decay_names``: name patterns that decay whatever else says (``("*",)``: every parameter);
    - ``decay_embeddings``: embeddings decay (norms still do not);
    - ``pattern_syntax``: ``"glob"`` (:func:`fnmatch.fnmatchcase` on the whole dotted name) or ``"regex"``
      (:func:`re.search`).

    Frozen and checked at construction (a bad pattern, type or flag is refused with its argument's name).
    """

    no_decay_types: tuple[type, ...] = ()
    no_decay_names: tuple[str, ...] = DEFAULT_NO_DECAY_NAMES
    decay_names: tuple[str, ...] = ()
    decay_embeddings: bool = False
    pattern_syntax: str = "glob"

    def __post_init__(self):
        check_choice("pattern_syntax", self.pattern_syntax, ("glob", "regex"))
        if not isinstance(self.decay_embeddings, bool):
            raise InputTypeError(f"decay_embeddings must be a bool, got {self.decay_embeddings!r}")
        types = () if self.no_decay_types is None else self.no_decay_types
        if isinstance(types, type):
            types = (types,)
        types = tuple(types)
        for t in types:
            if not (isinstance(t, type) and issubclass(t, nn.Module)):
                raise InputTypeError(f"no_decay_types must be torch.nn.Module subclasses, got {t!r}")
        object.__setattr__(self, "no_decay_types", types)
        for arg in ("no_decay_names", "decay_names"):
            patterns = getattr(self, arg)
            patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
            object.__setattr__(self, arg, patterns)
            _matcher(patterns, self.pattern_syntax, arg)          # refuse a non-string or a bad regex now

    @classmethod
    def everything(cls) -> DecayRule:
        """Every trainable parameter decays (a sweep's ``decay_biases=True``)."""
        return cls(decay_names=("*",))

    def as_dict(self) -> dict:
        """A JSON-able description (store keys): types by their qualified names."""
        return {"no_decay_types": [f"{t.__module__}.{t.__qualname__}" for t in self.no_decay_types],
                "no_decay_names": list(self.no_decay_names), "decay_names": list(self.decay_names),
                "decay_embeddings": self.decay_embeddings, "pattern_syntax": self.pattern_syntax}

    def classify(self, model: nn.Module) -> list[ParamDecision]:
        """Decide, for each trainable parameter of ``model`` (each shared tensor once, in
        ``model.named_parameters()`` order), whether it decays; see the module docstring for the rules."""
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        no_decay_match = _matcher(self.no_decay_names, self.pattern_syntax, "no_decay_names")
        decay_match = _matcher(self.decay_names, self.pattern_syntax, "decay_names")
        model_names = _model_no_weight_decay(model)

        # every (name, owner) occurrence of each tensor, shared ones included
        occurrences: dict[int, list[tuple[str, nn.Module]]] = {}
        for mod_name, module in model.named_modules(remove_duplicate=False):
            for p_name, p in module.named_parameters(recurse=False):
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                occurrences.setdefault(id(p), []).append((full, module))

        decisions = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            occ = occurrences[id(p)]
            forced = next((f"decay_names ({pat!r} matches {n})" for n, _ in occ if (pat := decay_match(n))), None)
            if forced:
                decisions.append(ParamDecision(name, p, True, forced, "decay_names"))
                continue
            owner = next(((rule, f"{rule} ({type(m).__name__} owns {n})") for n, m in occ
                          if (rule := _owner_rule(m, self.no_decay_types, self.decay_embeddings))), None)
            if owner is None:
                owner = next((("no_decay_names", f"no_decay_names ({pat!r} matches {n})") for n, _ in occ
                              if (pat := no_decay_match(n))), None)
            if owner is None:
                owner = next((("no_weight_decay", f"no_weight_decay (the model's no_weight_decay() names {n})")
                              for n, _ in occ if n in model_names), None)
            if owner is None and any(_is_free_low_dim(n, p) for n, _ in occ):
                owner = ("free_low_dim", f"free_low_dim ({name} is a {p.dim()}-D parameter, not a weight or bias)")
            rule, reason = owner or ("default", "decayed by default")
            decisions.append(ParamDecision(name, p, owner is None, reason, rule))
        return decisions

    def decays(self, model: nn.Module) -> dict[str, bool]:
        """Parameter name → whether it decays (trainable parameters, each shared tensor once)."""
        return {d.name: d.decay for d in self.classify(model)}

    def groups(self, model: nn.Module, weight_decay: float, *, with_names: bool = False) -> list[dict]:
        """``[{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]``
        (an empty group left out); see :func:`param_groups`."""
        weight_decay = check_real("weight_decay", weight_decay, low=0.0)
        if not isinstance(with_names, bool):
            raise InputTypeError(f"with_names must be a bool, got {with_names!r}")
        decisions = self.classify(model)
        if not decisions:
            raise InputError("model must have at least one trainable parameter, got none "
                             "(all parameters are frozen or the model has none)")
        groups = []
        for decay, wd in ((True, weight_decay), (False, 0.0)):
            params = [(d.name, d.param) if with_names else d.param for d in decisions if d.decay == decay]
            if params:
                groups.append({"params": params, "weight_decay": wd})
        return groups


def as_decay_rule(decay_rule: DecayRule | None, arg: str = "decay_rule") -> DecayRule:
    """``decay_rule`` checked at a public edge: a :class:`DecayRule`, or ``None`` for ``DecayRule()``
    (the default of every trainer)."""
    if decay_rule is None:
        return DecayRule()
    if not isinstance(decay_rule, DecayRule):
        raise InputTypeError(f"{arg} must be a decaylab.groups.DecayRule or None, got {type(decay_rule).__name__}")
    return decay_rule


def classify_parameters(model: nn.Module, *, no_decay_types: Iterable[type] | None = None,
                        no_decay_names: Iterable[str] = DEFAULT_NO_DECAY_NAMES,
                        decay_names: Iterable[str] = (), pattern_syntax: str = "glob",
                        decay_embeddings: bool = False) -> list[ParamDecision]:
    """``DecayRule(...).classify(model)``: for each trainable parameter of ``model``, whether it decays
    and why (see the module docstring for the rules and :class:`DecayRule` for the arguments)."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return DecayRule(no_decay_types=no_decay_types, no_decay_names=no_decay_names, decay_names=decay_names,
                     pattern_syntax=pattern_syntax, decay_embeddings=decay_embeddings).classify(model)


def param_groups(model: nn.Module, weight_decay: float, *, no_decay_types: Iterable[type] | None = None,
                 no_decay_names: Iterable[str] = DEFAULT_NO_DECAY_NAMES, decay_names: Iterable[str] = (),
                 pattern_syntax: str = "glob", with_names: bool = False,
                 decay_embeddings: bool = False) -> list[dict]:
    """Return parameter groups ``[{"params": decayed, "weight_decay": weight_decay},
    {"params": not_decayed, "weight_decay": 0.0}]`` for any ``torch.optim.Optimizer``.

    Every trainable parameter of ``model`` is in exactly one group (a shared tensor once), frozen
    ones in none; an empty group is left out. ``with_names=True`` gives ``(name, tensor)`` pairs,
    which torch ≥ 2.6 optimizers store as the group's ``param_names``. Which parameters decay: see
    the module docstring and :func:`classify_parameters` (same keyword arguments).

    Example: ``torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)``.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return DecayRule(no_decay_types=no_decay_types, no_decay_names=no_decay_names, decay_names=decay_names,
                     pattern_syntax=pattern_syntax, decay_embeddings=decay_embeddings).groups(
        model, weight_decay, with_names=with_names)
