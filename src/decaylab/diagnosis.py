"""Find weight-decay misconfigurations in a (model, optimizer) pair before training, with the fix.

``decaylab.doctor(model, optimizer, total_steps=..., steps_per_epoch=...)`` returns
:class:`Findings` (a list of :class:`Finding`, most severe first; ``print`` it for a report). Each
check is a small function below; together they look for:

==========================  ========  ==================================================================
code                        severity  what
==========================  ========  ==================================================================
``missing-params``          error     trainable parameters of the model that no optimizer group holds
``coupled-adaptive``        warning   Adam-like optimizer with coupled ``weight_decay`` > 0 (L2 inside
                                      Adam is divided by √v̂; AdamW was probably meant)
``coupled-sgd-momentum``    info      SGD with momentum and coupled decay: effective rate lr·λ/(1−μ),
                                      best λ moves with lr
``decay-on-no-decay``       warning   decay on biases, normalization or 0-/1-D free parameters
``decay-on-embeddings``     info      decay on embeddings (transformers' Trainer's choice, not decaylab's)
``decay-inert``             warning   τ_iter = 1/(per-step decay) longer than the whole run
``decay-dominates``         warning   τ_iter shorter than one epoch
``lambda-convention``       warning   λ in the wrong convention's range: ≥ 0.01 with
                                      ``decay_scaling="schedule"`` (a torch-AdamW value), or ≤ 1e-3
                                      with lr-scaled AdamW and lr·λ < 1e-5 (a paper value)
``frozen-decayed``          warning   frozen parameters in a group with weight_decay > 0
``params-not-in-model``     info      optimizer parameters that are not the model's
==========================  ========  ==================================================================

Timescales are per parameter group at its peak (initial) lr — ``decay_reference_lr`` of decaylab's
optimizers, ``initial_lr`` set by torch's LR schedulers, else the current lr: τ_iter = 1/(s_0·λ) for decoupled decay
(Wang & Aitchison 2024), (1−μ)/(lr·λ·(1−dampening)) for SGD with coupled decay; coupled Adam has no
fixed rate and is reported by ``coupled-adaptive`` instead. Works with torch's optimizers and
decaylab's (``SGD``, ``SGDW``, ``Adam``, ``AdamW`` and their ``decay_scaling`` group key).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from decaylab._checks import check_int
from decaylab.conventions import GroupDecay, convert, group_decay
from decaylab.groups import DEFAULT_NO_DECAY_NAMES, classify_parameters

__all__ = ["doctor", "Finding", "Findings", "SEVERITIES"]

SEVERITIES = ("error", "warning", "info")
_SHOWN_PARAMS = 6


@dataclass(frozen=True)
class Finding:
    """One problem: how bad (``severity``), which (``code``), where (``params``), why it matters
    (``why``) and what to do (``fix``)."""

    severity: str
    code: str
    params: tuple[str, ...]
    why: str
    fix: str

    def __str__(self) -> str:
        shown = ", ".join(self.params[:_SHOWN_PARAMS])
        if len(self.params) > _SHOWN_PARAMS:
            shown += f", … (+{len(self.params) - _SHOWN_PARAMS} more)"
        lines = [f"[{self.severity}] {self.code}: {self.why}"]
        if shown:
            lines.append(f"    params: {shown}")
        lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


class Findings(list):
    """The doctor's findings, most severe first; ``str()`` is the readable report."""

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self]

    def to_dicts(self) -> list[dict]:
        """Plain dicts (``severity``, ``code``, ``params`` as a list, ``why``, ``fix``), ready for JSON."""
        return [{**dataclasses.asdict(f), "params": list(f.params)} for f in self]

    def __str__(self) -> str:
        if not self:
            return "decaylab doctor: no weight-decay problems found."
        counts = ", ".join(f"{n} {s}{'s' if n > 1 else ''}" for s in SEVERITIES
                           if (n := sum(f.severity == s for f in self)))
        return "\n".join([f"decaylab doctor: {counts}"] + [str(f) for f in self])


@dataclass
class _Setup:
    """What every check reads: names, groups, their decay, the run's length."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    names: dict[int, str]
    decays: list[GroupDecay]
    should_decay: dict[int, tuple[bool, str]]  # id -> (decay?, rule) for trainable params
    total_steps: int | None
    steps_per_epoch: int | None

    def name(self, p: torch.Tensor, gi: int, pi: int) -> str:
        return self.names.get(id(p), f"group{gi}.param{pi} (not in model)")

    def decayed_groups(self):
        """(index, group, decay) of groups with weight_decay > 0."""
        return [(gi, g, d) for gi, (g, d) in enumerate(zip(self.optimizer.param_groups, self.decays))
                if d.weight_decay > 0]

    def group_names(self, gi: int) -> tuple[str, ...]:
        return tuple(self.name(p, gi, pi) for pi, p in enumerate(self.optimizer.param_groups[gi]["params"]))


_RULE_WORDS = {"normalization": "normalization layers", "embedding": "embeddings",
               "no_decay_names": "biases (names matching no_decay_names)",
               "no_decay_types": "modules of no_decay_types",
               "no_weight_decay": "parameters the model's no_weight_decay() names",
               "free_low_dim": "0-/1-D free parameters such as layer-scale gammas"}


def _lam_for_timescale(d: GroupDecay, tau_iter: float) -> float:
    """The group's weight_decay (in its own convention) that gives a timescale of ``tau_iter`` steps."""
    return d.weight_decay * (d.timescale_iters / tau_iter)


def _if_any(params: Iterable[str], severity: str, code: str, why: str, fix: str) -> list[Finding]:
    """One finding about ``params``, or none when there are none."""
    params = tuple(params)
    return [Finding(severity, code, params, why, fix)] if params else []


def _check_missing(s: _Setup) -> list[Finding]:
    held = {id(p) for g in s.optimizer.param_groups for p in g["params"]}
    missing = tuple(n for n, p in s.model.named_parameters() if p.requires_grad and id(p) not in held)
    return _if_any(missing, "error", "missing-params",
                   f"{len(missing)} trainable parameter tensor(s) are in no optimizer group: they are never "
                   "updated (nor decayed)",
                   "build the optimizer from all of model.parameters() or decaylab.param_groups(model, λ); "
                   "freeze on purpose with requires_grad_(False)")


def _check_coupled(s: _Setup) -> list[Finding]:
    out = []
    for gi, _, d in s.decayed_groups():
        if d.kind != "coupled":
            continue
        if d.family == "sgd":
            if d.beta > 0:
                out.append(Finding("info", "coupled-sgd-momentum", s.group_names(gi),
                                   f"{d.optimizer} with momentum {d.beta:g} and coupled weight_decay "
                                   f"{d.weight_decay:g}: "
                                   f"the L2 term goes through the momentum buffer (effective rate lr·λ/(1−μ)) and the "
                                   "best λ moves whenever lr does (Loshchilov & Hutter 2019); fine if intended",
                                   "decaylab.SGDW decouples the decay, so λ can be tuned apart from lr"))
            continue
        out.append(Finding("warning", "coupled-adaptive", s.group_names(gi),
                           f"{d.optimizer} with coupled weight_decay {d.weight_decay:g}: the λ·w term is added to "
                           "the gradient and then divided by √v̂ like the gradient, so weights with large gradients "
                           "are barely decayed and λ's effect changes with lr; decoupled decay (AdamW) was "
                           "probably meant",
                           "use torch.optim.AdamW or decaylab.AdamW (the value does not carry over exactly; "
                           "torch-AdamW values are typically 0.01–0.1, or set it from a timescale with "
                           "`decaylab convert TAU --from tau-epoch --to torch-adamw ...`)"))
    return out


def _check_no_decay_params(s: _Setup) -> list[Finding]:
    """Decay on parameters param_groups' rule spares: a warning for biases, norms and the like; embeddings
    only as information (a choice: transformers' Trainer decays them, decaylab does not by default)."""
    flagged, reasons, embeddings = [], set(), []
    for gi, g, _ in s.decayed_groups():
        for pi, p in enumerate(g["params"]):
            decide = s.should_decay.get(id(p))
            if decide is not None and not decide[0]:
                if decide[1] == "embedding":
                    embeddings.append(s.name(p, gi, pi))
                    continue
                flagged.append(s.name(p, gi, pi))
                reasons.add(_RULE_WORDS.get(decide[1], decide[1]))
    return _if_any(flagged, "warning", "decay-on-no-decay",
                   f"weight decay is applied to {len(flagged)} parameter tensor(s) that are usually not decayed "
                   f"({', '.join(sorted(reasons))}): shrinking biases and normalization gains fights the "
                   "normalization instead of limiting capacity",
                   "build the optimizer from decaylab.param_groups(model, weight_decay), which puts these in a "
                   "weight_decay=0 group") + \
        _if_any(embeddings, "info", "decay-on-embeddings",
                f"weight decay is applied to {len(embeddings)} embedding tensor(s): Hugging Face transformers' "
                "Trainer does this by default, decaylab.param_groups does not (rarely seen rows shrink towards 0 "
                "on every step); fine if intended",
                "decaylab.param_groups(model, λ) leaves embeddings out; decay_embeddings=True keeps them in")


def _check_timescale(s: _Setup) -> list[Finding]:
    out = []
    for gi, _, d in s.decayed_groups():
        tau = d.timescale_iters
        if tau is None:
            continue
        if s.total_steps is not None and tau > s.total_steps:
            shrink = 1 - math.exp(-s.total_steps / tau)
            out.append(Finding(
                "warning", "decay-inert", s.group_names(gi),
                f"{d.optimizer} group {gi}: timescale τ_iter = {tau:.3g} steps is longer than the whole run "
                f"({s.total_steps} steps): decay removes at most {100 * shrink:.2g}% of a weight over training, "
                "so it barely regularizes",
                f"raise weight_decay to at least {_lam_for_timescale(d, s.total_steps):.3g} (τ = the run); "
                "τ of a fraction of the run is typical (Wang & Aitchison 2024)"))
        if s.steps_per_epoch is not None and tau < s.steps_per_epoch:
            out.append(Finding(
                "warning", "decay-dominates", s.group_names(gi),
                f"{d.optimizer} group {gi}: timescale τ_iter = {tau:.3g} steps is shorter than one epoch "
                f"({s.steps_per_epoch} steps): the weights forget what they learned from most of each epoch and "
                "decay dominates the gradient",
                f"lower weight_decay to at most {_lam_for_timescale(d, s.steps_per_epoch):.3g} (τ = one epoch)"))
    return out


def _check_convention(s: _Setup) -> list[Finding]:
    out = []
    for gi, _, d in s.decayed_groups():
        if d.kind != "decoupled":
            continue
        if d.decay_scaling == "schedule" and d.weight_decay >= 1e-2:
            out.append(Finding(
                "warning", "lambda-convention", s.group_names(gi),
                f"weight_decay {d.weight_decay:g} with decay_scaling='schedule' removes {100 * d.weight_decay:.2g}% of "
                f"every weight per step (τ = {1 / d.weight_decay:.3g} steps): it looks like a torch-AdamW value "
                "(lr-scaled, typically 0.01–0.1); schedule-scaled values are ~1e-5…1e-3",
                f"for the same decay as torch AdamW(weight_decay={d.weight_decay:g}) use "
                f"{convert(d.weight_decay, 'torch-adamw', 'schedule', lr=d.peak_lr):.3g} "
                f"(λ·lr_0, `decaylab convert {d.weight_decay:g} --from torch-adamw --to schedule --lr {d.peak_lr:g}`)"))
        elif (d.decay_scaling in ("lr", "corrected") and d.family == "adam" and d.weight_decay <= 1e-3
              and d.peak_lr * d.weight_decay < 1e-5):
            out.append(Finding(
                "warning", "lambda-convention", s.group_names(gi),
                f"weight_decay {d.weight_decay:g} in the lr-scaled (torch AdamW) convention with lr {d.peak_lr:g} "
                f"decays {d.peak_lr * d.weight_decay:.2g} of a weight per step "
                f"(τ = {1 / (d.peak_lr * d.weight_decay):.3g} "
                "steps): it looks like a paper/schedule-scaled value (~1e-4), which torch's AdamW multiplies by lr",
                "for the paper's meaning use weight_decay="
                f"{convert(d.weight_decay, 'schedule', 'torch-adamw', lr=d.peak_lr):.3g} "
                "(λ/lr), or decaylab.AdamW(..., decay_scaling='schedule')"))
    return out


def _check_frozen(s: _Setup) -> list[Finding]:
    frozen = tuple(s.name(p, gi, pi) for gi, g, _ in s.decayed_groups()
                   for pi, p in enumerate(g["params"]) if not p.requires_grad)
    return _if_any(frozen, "warning", "frozen-decayed",
                   f"{len(frozen)} frozen parameter tensor(s) are in a group with weight_decay > 0: torch's "
                   "optimizers skip tensors without a gradient, so nothing happens now, but as soon as they get "
                   "gradients (unfrozen later, or requires_grad toggled) decay pulls them away from their "
                   "pre-trained values",
                   "leave frozen parameters out of the optimizer (decaylab.param_groups does), or put them in a "
                   "weight_decay=0 group")


def _check_foreign(s: _Setup) -> list[Finding]:
    foreign = tuple(f"group{gi}.param{pi}" for gi, g in enumerate(s.optimizer.param_groups)
                    for pi, p in enumerate(g["params"]) if id(p) not in s.names)
    return _if_any(foreign, "info", "params-not-in-model",
                   f"{len(foreign)} optimizer parameter tensor(s) are not parameters of this model (another model's, "
                   "or copies made before the optimizer was built)",
                   "build the optimizer from this model's parameters")


CHECKS: tuple[Callable[[_Setup], list[Finding]], ...] = (
    _check_missing, _check_coupled, _check_no_decay_params, _check_timescale, _check_convention,
    _check_frozen, _check_foreign)


def doctor(model: torch.nn.Module, optimizer: torch.optim.Optimizer, total_steps: int | None = None,
           steps_per_epoch: int | None = None, *, no_decay_types: Iterable[type] | None = None,
           no_decay_names: Iterable[str] = DEFAULT_NO_DECAY_NAMES, pattern_syntax: str = "glob",
           decay_names: Iterable[str] = (), decay_embeddings: bool = False) -> Findings:
    """Check how ``optimizer`` decays ``model``'s parameters; return the :class:`Findings`.

    ``total_steps`` (optimizer steps in the run) enables ``decay-inert``, ``steps_per_epoch``
    ``decay-dominates``. ``no_decay_types``/``no_decay_names``/``decay_names``/``decay_embeddings``/
    ``pattern_syntax`` say which parameters should not decay, exactly as in :func:`decaylab.param_groups`
    (the one rule, :func:`decaylab.groups.classify_parameters`). See the module docstring
    for every check.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if total_steps is not None:
        total_steps = check_int("total_steps", total_steps, low=1)
    if steps_per_epoch is not None:
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, low=1)
    decisions = classify_parameters(model, no_decay_types=no_decay_types, no_decay_names=no_decay_names,
                                    pattern_syntax=pattern_syntax, decay_names=decay_names,
                                    decay_embeddings=decay_embeddings)
    setup = _Setup(model=model, optimizer=optimizer,
                   names={id(p): n for n, p in model.named_parameters()},
                   decays=[group_decay(optimizer, g).at_peak() for g in optimizer.param_groups],
                   should_decay={id(d.param): (d.decay, d.rule) for d in decisions},
                   total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    findings = [f for check in CHECKS for f in check(setup)]
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    return Findings(findings)
