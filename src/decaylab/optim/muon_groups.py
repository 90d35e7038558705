"""Which parameters are Muon's: split a model into the param groups of :class:`decaylab.optim.MuonAdamW`.

Muon is for the hidden weight matrices; everything else (biases, norm gains, embeddings, the
output head, other vectors and tensors) goes to AdamW (Keller Jordan's and Moonlight's
recipes). :class:`MuonRule` decides, for every trainable parameter (each shared tensor once,
looking at all of its names and owners), in this order:

1. ``muon_names`` patterns: Muon (it must be 2-D, or ≥3-D and owned by a conv layer with
   ``flatten=True``);
2. ``adamw_names`` patterns: AdamW;
3. owned by an embedding (``nn.Embedding``/``nn.EmbeddingBag``; an output head *tied* to an
   embedding is one): AdamW;
4. the output head: AdamW. ``head_names=None`` (default) takes the parameters of the last
   ``nn.Linear`` of the model (in ``model.modules()`` order) as the head; patterns name it
   instead (``()``: no head);
5. a 2-D parameter: Muon; with ``flatten=True`` also a ≥3-D weight owned by a conv layer
   (its kernel, orthogonalized as ``[out, in·k…]``);
6. anything else: AdamW.

Patterns match the full dotted names as in :class:`decaylab.groups.DecayRule`
(``pattern_syntax="glob"``: :func:`fnmatch.fnmatchcase`; ``"regex"``: :func:`re.search`).
What decays is the one rule, ``DecayRule.classify``, applied to both halves alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from decaylab._checks import InputError, InputTypeError, check_choice, check_real
from decaylab.groups import EMBEDDING_TYPES, DecayRule, _matcher, as_decay_rule

__all__ = ["MuonRule", "MuonDecision", "muon_param_groups"]

_CONV_TYPES = (nn.modules.conv._ConvNd,)


@dataclass(frozen=True)
class MuonDecision:
    """Whether one trainable parameter is Muon's, and why: ``rule`` is the rule that decided
    (``"muon_names"``, ``"adamw_names"``, ``"embedding"``, ``"head"``, ``"hidden_matrix"``,
    ``"conv_kernel"`` or ``"not_a_matrix"``), ``reason`` says it in words."""

    name: str
    param: torch.Tensor
    use_muon: bool
    reason: str
    rule: str


@dataclass(frozen=True)
class MuonRule:
    """Which parameters Muon optimizes (the rules of the module docstring) with their overrides.

    - ``muon_names``: name patterns that are Muon's whatever else says;
    - ``adamw_names``: name patterns that are AdamW's;
    - ``head_names``: the output head's name patterns; ``None``: the last ``nn.Linear``;
    - ``flatten``: conv kernels (≥3-D) are Muon's too (give Muon ``flatten=True`` then);
    - ``pattern_syntax``: ``"glob"`` or ``"regex"``, as :class:`decaylab.groups.DecayRule`.
    """

    muon_names: tuple[str, ...] = ()
    adamw_names: tuple[str, ...] = ()
    head_names: tuple[str, ...] | None = None
    flatten: bool = False
    pattern_syntax: str = "glob"

    def __post_init__(self):
        check_choice("pattern_syntax", self.pattern_syntax, ("glob", "regex"))
        if not isinstance(self.flatten, bool):
            raise InputTypeError(f"flatten must be a bool, got {self.flatten!r}")
        for arg in ("muon_names", "adamw_names", "head_names"):
            patterns = getattr(self, arg)
            if patterns is None and arg == "head_names":
                continue
            patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
            object.__setattr__(self, arg, patterns)
            _matcher(patterns, self.pattern_syntax, arg)  # refuse a non-string or a bad regex now

    def classify(self, model: nn.Module) -> list[MuonDecision]:
        """Decide, for each trainable parameter of ``model`` (each shared tensor once, in
        ``model.named_parameters()`` order), whether Muon optimizes it."""
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        muon_match = _matcher(self.muon_names, self.pattern_syntax, "muon_names")
        adamw_match = _matcher(self.adamw_names, self.pattern_syntax, "adamw_names")
        occurrences: dict[int, list[tuple[str, nn.Module]]] = {}
        for mod_name, module in model.named_modules(remove_duplicate=False):
            for p_name, p in module.named_parameters(recurse=False):
                occurrences.setdefault(id(p), []).append((f"{mod_name}.{p_name}" if mod_name else p_name, module))
        if self.head_names is None:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            head = {id(p) for p in linears[-1].parameters()} if linears else set()
        else:
            head_match = _matcher(self.head_names, self.pattern_syntax, "head_names")
            head = {key for key, occ in occurrences.items() if any(head_match(n) for n, _ in occ)}

        decisions = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            occ = occurrences[id(p)]
            names = [n for n, _ in occ]
            conv = any(isinstance(m, _CONV_TYPES) for _, m in occ)
            matrix = p.dim() == 2 or (self.flatten and conv and p.dim() > 2)
            if pattern := next((pat for n in names if (pat := muon_match(n))), None):
                if p.dim() < 2 or (p.dim() > 2 and not (self.flatten and conv)):
                    raise InputError(f"muon_names pattern {pattern!r} names {name}, a {p.dim()}-D parameter of "
                                     f"shape {tuple(p.shape)}: Muon takes 2-D matrices (and conv kernels with "
                                     "flatten=True)")
                decision = (True, f"muon_names ({pattern!r} matches {name})", "muon_names")
            elif pattern := next((pat for n in names if (pat := adamw_match(n))), None):
                decision = (False, f"adamw_names ({pattern!r} matches {name})", "adamw_names")
            elif owner := next((m for _, m in occ if isinstance(m, EMBEDDING_TYPES)), None):
                decision = (False, f"embedding ({type(owner).__name__} owns {name})", "embedding")
            elif id(p) in head:
                decision = (False, f"head ({name} is the output head's)", "head")
            elif matrix:
                rule = "hidden_matrix" if p.dim() == 2 else "conv_kernel"
                decision = (True, f"{rule} ({name} has shape {tuple(p.shape)})", rule)
            else:
                decision = (False, f"not_a_matrix ({name} is {p.dim()}-D)", "not_a_matrix")
            decisions.append(MuonDecision(name, p, *decision))
        return decisions


def muon_param_groups(model: nn.Module, *, muon_rule: MuonRule | None = None, decay_rule: DecayRule | None = None,
                      muon_lr: float | None = None, muon_weight_decay: float | None = None,
                      adamw_lr: float | None = None, adamw_weight_decay: float | None = None,
                      with_names: bool = False) -> list[dict]:
    """The param groups of :class:`decaylab.optim.MuonAdamW` for ``model``: up to four,
    ``{"params": …, "use_muon": True/False}`` for Muon/AdamW × decayed/not decayed (an empty one
    left out), the parameters in ``model.named_parameters()`` order.

    Which half: ``muon_rule`` (default ``MuonRule()``); what decays: ``decay_rule`` (default
    ``DecayRule()``: no decay for biases, norms, embeddings). A group that does not decay has
    ``weight_decay=0.0``; the others get ``muon_weight_decay``/``adamw_weight_decay`` and
    ``muon_lr``/``adamw_lr`` where given (else the optimizer's ``muon``/``adamw`` defaults apply).
    A Muon group holding a conv kernel gets ``flatten=True``. ``with_names=True`` gives
    ``(name, tensor)`` pairs (torch stores them as ``param_names``).

    Example::

        opt = MuonAdamW(muon_param_groups(model), muon=dict(lr=0.02, weight_decay=0.01),
                        adamw=dict(lr=3e-4, weight_decay=0.1))
    """
    if muon_rule is None:
        muon_rule = MuonRule()
    if not isinstance(muon_rule, MuonRule):
        raise InputTypeError(f"muon_rule must be a decaylab.optim.MuonRule or None, got {type(muon_rule).__name__}")
    decay_rule = as_decay_rule(decay_rule)
    if not isinstance(with_names, bool):
        raise InputTypeError(f"with_names must be a bool, got {with_names!r}")
    options = {}
    for use_muon, key, value in ((True, "lr", muon_lr), (True, "weight_decay", muon_weight_decay),
                                 (False, "lr", adamw_lr), (False, "weight_decay", adamw_weight_decay)):
        if value is not None:
            arg = f"{'muon' if use_muon else 'adamw'}_{key}"
            options.setdefault(use_muon, {})[key] = check_real(arg, value, low=0.0)
    decays = {d.name: d.decay for d in decay_rule.classify(model)}
    halves = muon_rule.classify(model)
    if not halves:
        raise InputError("model must have at least one trainable parameter, got none "
                         "(all parameters are frozen or the model has none)")
    groups = []
    for use_muon in (True, False):
        for decay in (True, False):
            members = [d for d in halves if d.use_muon == use_muon and decays[d.name] == decay]
            if not members:
                continue
            group = {"params": [(d.name, d.param) if with_names else d.param for d in members],
                     "use_muon": use_muon, **options.get(use_muon, {})}
            if not decay:
                group["weight_decay"] = 0.0
            if use_muon and any(d.param.dim() > 2 for d in members):
                group["flatten"] = True
            groups.append(group)
    return groups
