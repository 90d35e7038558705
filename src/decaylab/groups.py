"""Which parameters decay: split a model into decay / no-decay parameter groups for any torch optimizer.

By default weight decay is applied to the weight matrices and kernels of a model and *not* to

- biases: any parameter whose name matches the pattern ``*bias`` (``fc.bias``, ``in_proj_bias``);
- normalization layers' parameters: every parameter owned directly by a
  ``BatchNorm*``/``SyncBatchNorm``/``InstanceNorm*``/``LayerNorm``/``GroupNorm``/``RMSNorm``/
  ``LocalResponseNorm`` module, or by any module whose class name ends in ``Norm`` or
  ``Norm1d/2d/3d`` (custom ``LlamaRMSNorm``-style layers);
- embeddings: parameters owned by ``nn.Embedding`` / ``nn.EmbeddingBag`` (``decay_embeddings=True``
  decays them: transformers' ``Trainer`` does, most GPT/ViT recipes do not — decaylab's default
  is not to, and the doctor reports a decayed embedding as information, not as a warning);
- what the model itself names: every name returned by a ``no_weight_decay()`` method of the model
  or of any submodule (timm's convention, e.g. a ViT's ``{"pos_embed", "cls_token"}``; names are
  relative to that module);
- other 0-D and 1-D parameters (free scalars and vectors such as layer-scale gammas or a gain):
  like biases and norm gains they scale or shift, and carry no capacity to overfit.

Decaying these shrinks scales and offsets that carry no overfitting capacity (a norm layer's
gain, a bias) or rows that are seen only rarely (embeddings), which is why most training recipes
exclude them.

This is the one rule of what decays in decaylab: :func:`param_groups`, the batched and
sequential trainers, :func:`decaylab.sweep`, :func:`decaylab.lr_decay_map`,
:func:`decaylab.l2_penalty` (given a module) and :func:`decaylab.doctor` all apply it through a
:class:`DecayRule` (same defaults, same overrides).

Rules, applied to every *occurrence* of a parameter (a shared tensor has several names/owners):

1. ``decay_names`` patterns force decay (they win over everything else);
2. otherwise a parameter is not decayed if a ``no_weight_decay()`` names it, if any of its owners
   is a normalization layer, an embedding (unless ``decay_embeddings``) or an instance of
   ``no_decay_types`` (which *adds* classes to the defaults), if any of its names matches
   ``no_decay_names``, or if it has fewer than 2 dimensions;
3. otherwise it is decayed.

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
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from decaylab._checks import check_choice, check_real

__all__ = ["param_groups", "classify_parameters", "DecayRule", "ParamDecision", "NORM_TYPES", "EMBEDDING_TYPES",
           "DEFAULT_NO_DECAY_NAMES"]

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
    (``"decay_names"``, ``"no_weight_decay"``, ``"normalization"``, ``"embedding"``,
    ``"no_decay_types"``, ``"no_decay_names"``, ``"low_dim"`` or ``"default"``), ``reason``
    says it in words."""

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


def _matcher(patterns: Iterable[str], syntax: str, arg: str):
    """A function name -> first matching pattern (or None) for glob or regex ``patterns``."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    patterns = tuple(patterns)
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"{arg} must be strings, got {p!r} ({type(p).__name__})")
    if syntax == "glob":
        return lambda name: next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)
    compiled = []
    for p in patterns:
        try:
            compiled.append((p, re.compile(p)))
        except re.error as exc:
            raise ValueError(f"{arg} must be valid regular expressions, got {p!r} ({exc})") from None
    return lambda name: next((p for p, rx in compiled if rx.search(name)), None)


def _model_named_no_decay(model: nn.Module) -> dict[str, str]:
    """Full parameter names that a ``no_weight_decay()`` method names → the module that named them."""
    named = {}
    for mod_name, module in model.named_modules():
        method = getattr(module, "no_weight_decay", None)
        if callable(method):
            for rel in method() or ():
                named[f"{mod_name}.{rel}" if mod_name else str(rel)] = mod_name or type(model).__name__
    return named


@dataclass(frozen=True)
class DecayRule:
    """Which parameters decay (see the module docstring): the defaults plus these overrides.

    ``no_decay_types`` module classes (added to normalization layers and embeddings),
    ``no_decay_names`` and ``decay_names`` patterns (glob or regex by ``pattern_syntax``), and
    ``decay_embeddings`` (decay ``nn.Embedding`` weights, as transformers' Trainer does).
    ``DecayRule.everything()`` decays every parameter.
    """

    no_decay_types: tuple[type, ...] = ()
    no_decay_names: tuple[str, ...] = DEFAULT_NO_DECAY_NAMES
    decay_names: tuple[str, ...] = ()
    pattern_syntax: str = "glob"
    decay_embeddings: bool = False

    def __post_init__(self):
        check_choice("pattern_syntax", self.pattern_syntax, ("glob", "regex"))
        types = () if self.no_decay_types is None else tuple(self.no_decay_types)
        for t in types:
            if not (isinstance(t, type) and issubclass(t, nn.Module)):
                raise TypeError(f"no_decay_types must be torch.nn.Module subclasses, got {t!r}")
        object.__setattr__(self, "no_decay_types", types)
        for field in ("no_decay_names", "decay_names"):
            value = getattr(self, field)
            object.__setattr__(self, field, (value,) if isinstance(value, str) else tuple(value))
            _matcher(getattr(self, field), self.pattern_syntax, field)          # checks the patterns
        if not isinstance(self.decay_embeddings, bool):
            raise TypeError(f"decay_embeddings must be a bool, got {self.decay_embeddings!r}")

    @classmethod
    def everything(cls) -> "DecayRule":
        """Decay every trainable parameter (biases, norms and embeddings too)."""
        return cls(decay_names=("*",))

    def spec(self) -> dict:
        """A plain-JSON description (for store keys and reports)."""
        return {"no_decay_types": [f"{t.__module__}.{t.__qualname__}" for t in self.no_decay_types],
                "no_decay_names": list(self.no_decay_names), "decay_names": list(self.decay_names),
                "pattern_syntax": self.pattern_syntax, "decay_embeddings": self.decay_embeddings}

    def classify(self, model: nn.Module) -> list["ParamDecision"]:
        """:func:`classify_parameters` of ``model`` under this rule."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        no_decay_match = _matcher(self.no_decay_names, self.pattern_syntax, "no_decay_names")
        decay_match = _matcher(self.decay_names, self.pattern_syntax, "decay_names")
        named_by_model = _model_named_no_decay(model)

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
            owner = next((("no_weight_decay", f"no_weight_decay() of {named_by_model[n]} names {n}")
                          for n, _ in occ if n in named_by_model), None)
            owner = owner or next(((rule, f"{rule} ({type(m).__name__} owns {n})") for n, m in occ
                                   if (rule := _owner_rule(m, self.no_decay_types, self.decay_embeddings))), None)
            owner = owner or next((("no_decay_names", f"no_decay_names ({pat!r} matches {n})") for n, _ in occ
                                   if (pat := no_decay_match(n))), None)
            if owner is None and p.dim() < 2:
                owner = ("low_dim", f"low_dim ({p.dim()}-D parameter {name}: a scale or offset)")
            rule, reason = owner or ("default", "decayed by default")
            decisions.append(ParamDecision(name, p, owner is None, reason, rule))
        return decisions

    def decays(self, model: nn.Module) -> dict[str, bool]:
        """``{parameter name: decays?}`` for every trainable parameter (shared tensors under each name)."""
        decided = {id(d.param): d.decay for d in self.classify(model)}
        return {n: decided[id(p)] for n, p in model.named_parameters() if id(p) in decided}


def classify_parameters(model: nn.Module, *, no_decay_types: Iterable[type] | None = None,
                        no_decay_names: Iterable[str] = DEFAULT_NO_DECAY_NAMES,
                        decay_names: Iterable[str] = (), pattern_syntax: str = "glob",
                        decay_embeddings: bool = False) -> list[ParamDecision]:
    """Decide, for each trainable parameter of ``model`` (each shared tensor once, in
    ``model.named_parameters()`` order), whether it decays; see the module docstring for the rules.

    ``no_decay_types`` module classes are *added* to the defaults (normalization layers, and
    embeddings unless ``decay_embeddings=True``).
    """
    return DecayRule(no_decay_types or (), no_decay_names, decay_names, pattern_syntax,
                     decay_embeddings).classify(model)


def param_groups(model: nn.Module, weight_decay: float, *, no_decay_types: Iterable[type] | None = None,
                 no_decay_names: Iterable[str] = DEFAULT_NO_DECAY_NAMES, decay_names: Iterable[str] = (),
                 pattern_syntax: str = "glob", decay_embeddings: bool = False, with_names: bool = False,
                 rule: DecayRule | None = None) -> list[dict]:
    """Return parameter groups ``[{"params": decayed, "weight_decay": weight_decay},
    {"params": not_decayed, "weight_decay": 0.0}]`` for any ``torch.optim.Optimizer``.

    Every trainable parameter of ``model`` is in exactly one group (a shared tensor once), frozen
    ones in none; an empty group is left out. ``with_names=True`` gives ``(name, tensor)`` pairs,
    which torch ≥ 2.6 optimizers store as the group's ``param_names``. Which parameters decay: see
    the module docstring and :func:`classify_parameters` (same keyword arguments), or pass a
    :class:`DecayRule` as ``rule`` (then the keyword overrides are not used).

    Example: ``torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)``.
    """
    weight_decay = check_real("weight_decay", weight_decay, low=0.0)
    if not isinstance(with_names, bool):
        raise TypeError(f"with_names must be a bool, got {with_names!r}")
    if rule is None:
        rule = DecayRule(no_decay_types or (), no_decay_names, decay_names, pattern_syntax, decay_embeddings)
    elif not isinstance(rule, DecayRule):
        raise TypeError(f"rule must be a decaylab.DecayRule, got {type(rule).__name__}")
    decisions = rule.classify(model)
    if not decisions:
        raise ValueError("model must have at least one trainable parameter, got none "
                         "(all parameters are frozen or the model has none)")
    groups = []
    for decay, wd in ((True, weight_decay), (False, 0.0)):
        params = [(d.name, d.param) if with_names else d.param for d in decisions if d.decay == decay]
        if params:
            groups.append({"params": params, "weight_decay": wd})
    return groups
