"""Find weight-decay misconfigurations in a (model, optimizer) pair before training, with the fix.

``decaylab.doctor(model, optimizer, total_steps=..., steps_per_epoch=..., scheduler=..., loss=...)`` returns
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
``decay-dominates``         warning   decay too strong: τ_iter < 100 steps (> 1% per step), shorter than
                                      an epoch, shorter than 0.1% of the run, or AdamW's ℓ∞ bound 1/λ
                                      below half a decayed tensor's RMS
``lambda-convention``       warning   the same, with ``decay_scaling="schedule"`` and λ ≥ 0.01: a
                                      torch-AdamW value in the schedule-scaled convention
``decay-inert``             warning   at most 1e-7 of a weight per step (τ ≥ 10⁷ steps): decay does
                                      nothing (a paper value in torch's AdamW is one way to get there)
``decay-weak``              info      τ longer than the run with a usual value: a light pull, normal for
                                      short fine-tunes; no advice to raise it
``decay-reference-lr``      warning   schedule-scaled decay whose lr_0 (``decay_reference_lr``) is below
                                      the schedule's peak lr: decay peak/lr_0 times too strong
``decay-off``               info      no group decays at all
``double-decay``            warning   the ``loss`` has an explicit L2 term (found in its autograd graph,
                                      :mod:`decaylab.diagnostics.penalty_graph`) on parameters the optimizer decays
``frozen-decayed``          warning   frozen parameters in a group with weight_decay > 0
``params-not-in-model``     info      optimizer parameters that are not the model's
``unknown-convention``      info      an optimizer decaylab's table does not know: how its weight_decay
                                      acts is unknown, so no decay check runs on it and no advice is given
``muon-decay``              info      what λ a Muon group gets: per-step decay, the update's RMS, the
                                      AdamW λ it equals relative to its update, and its AdamW companion's
``muon-adamw-lambda``       warning   AdamW's lr and λ copied into Muon under ``"original"`` scaling:
                                      the same per-step decay, 0.2·√B× stronger relative to the update
``muon-recipe-mix``         warning   ``"match_rms_adamw"`` (Moonlight) with an lr ≥ 10× the AdamW half's
                                      (Keller Jordan's lr 0.02 is for ``"original"`` scaling)
``muon-no-decay``           info      Muon groups without decay beside a decaying AdamW half (Moonlight
                                      found decay essential for Muon at scale)
``lion-adamw-values``       warning   Lion with lr ≥ 1e-3 and λ ≤ 0.1, AdamW's usual values (the Lion
                                      paper: lr 3–10× smaller, λ 3–10× larger, the same lr·λ)
``run-length-unknown``      info      a ``scheduler`` was given without ``total_steps`` and its length cannot
                                      be read from it (a ``LambdaLR`` over a closure, ``StepLR``, …): the
                                      checks that compare τ with the run were skipped
``tau-unsupported``         info      with ``steps_per_epoch``: τ_epoch over 10× outside the range where the
                                      scaling rules were checked on measured ladders (:mod:`decaylab.scaling.support`)
==========================  ========  ==================================================================

The strength findings (``decay-dominates``, ``lambda-convention``, ``decay-inert``, ``decay-weak``) are one
verdict per group, so they cannot contradict each other, and a fix's value does not trip the opposite one.
Timescales are per parameter group at its peak lr: lr-scaled decay at the schedule's peak (the largest of
the group's ``lr``, ``initial_lr``/``max_lr`` set by torch's schedulers, and the ``scheduler``'s
``base_lrs``), schedule-scaled decay at ``decay_reference_lr``. τ_iter = 1/(s_0·λ) for decoupled decay
(Wang & Aitchison 2024), (1−μ)/(lr·λ·(1−dampening)) for SGD with coupled decay; coupled Adam has no
fixed rate and is reported by ``coupled-adaptive`` instead. The run's length is ``total_steps``, else
read from the ``scheduler`` (:func:`decaylab.diagnostics.scheduler_length.run_length`).

How each group decays is read from one table, :mod:`decaylab.diagnostics.optimizer_decay`: torch 2.13's
optimizers (each coupled optimizer with its own fix: Adam/NAdam/RAdam take ``decoupled_weight_decay=True``,
Adamax/Adagrad/RMSprop/Adadelta have no decoupled option), decaylab's (``SGD``, ``SGDW``, ``Adam``,
``AdamW``, ``Muon``, ``Lion``, ``MuonAdamW`` per group, with their ``decay_scaling``) and the schedule-free
ones. An optimizer outside it gets ``unknown-convention`` and nothing else about its decay.

Muon groups and their AdamW companion (the AdamW groups of the same optimizer, or of the other optimizers
given to the doctor) are compared through the size of their updates: one step moves a Muon matrix A×B by
RMS k·lr, k = ρ/√max(A, B) (1/√B under ``"original"``, 0.2 under ``"match_rms_adamw"``), and an AdamW
tensor by ≈ 0.2·lr (Moonlight's measurement), so a Muon λ acts, relative to its update, like the AdamW λ
0.2·(s_0·λ)/(k·lr) (:mod:`decaylab.conventions`, "Update-matched conversions").

Length: just over 400 lines, a fifth of them this docstring's table of every finding; the findings, the
setup every check reads and the Muon/Lion checks are modules of their own (:mod:`.findings`,
:mod:`.doctor_setup`, :mod:`.doctor_muon`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence

import torch

from decaylab._checks import InputError, InputTypeError, check_int
from decaylab.conventions import convert
from decaylab.diagnostics.doctor_muon import check_lion, check_muon
from decaylab.diagnostics.doctor_setup import Setup
from decaylab.diagnostics.findings import SEVERITIES, Finding, Findings, if_any
from decaylab.diagnostics.optimizer_decay import GroupDecay, group_decay
from decaylab.diagnostics.penalty_graph import l2_penalized_parameters
from decaylab.diagnostics.scheduler_length import run_length
from decaylab.groups import DEFAULT_NO_DECAY_NAMES, DecayRule

__all__ = ["doctor", "Finding", "Findings", "SEVERITIES"]

_RULE_WORDS = {"normalization": "normalization layers", "embedding": "embeddings",
               "no_decay_names": "biases (names matching no_decay_names)",
               "no_decay_types": "modules of no_decay_types",
               "no_weight_decay": "parameters the model's no_weight_decay() names",
               "free_low_dim": "0-/1-D free parameters such as layer-scale gammas"}


def _lam_for_timescale(d: GroupDecay, tau_iter: float) -> float:
    """The group's weight_decay (in its own convention) that gives a timescale of ``tau_iter`` steps."""
    return d.weight_decay * (d.timescale_iters / tau_iter)


def _check_missing(s: Setup) -> list[Finding]:
    if not s.report_missing:
        return []
    missing = tuple(n for n, p in s.model.named_parameters() if p.requires_grad and id(p) not in s.held)
    return if_any(missing, "error", "missing-params",
                   f"{len(missing)} trainable parameter tensor(s) are in no optimizer group: they are never "
                   "updated (nor decayed)",
                   "build the optimizer from all of model.parameters() or decaylab.param_groups(model, λ); "
                   "freeze on purpose with requires_grad_(False)")


def _check_unknown(s: Setup) -> list[Finding]:
    """An optimizer the table does not know: say so, and give no advice on its decay."""
    unknown = [gi for gi, d in enumerate(s.decays) if not d.known]
    if not unknown:
        return []
    name = type(s.optimizer).__name__
    return [Finding("info", "unknown-convention", tuple(n for gi in unknown for n in s.group_names(gi)),
                    f"unknown convention: decaylab does not know how {name} applies weight_decay (it is not in "
                    "decaylab.diagnostics.optimizer_decay.OPTIMIZER_DECAY, or it defines its own step), so the "
                    "doctor checks nothing about its decay",
                    "no advice: decaylab cannot tell what this optimizer's weight_decay does")]


def _check_coupled(s: Setup) -> list[Finding]:
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
        row = d.entry
        out.append(Finding("warning", "coupled-adaptive", s.group_names(gi),
                           f"{d.optimizer} with coupled weight_decay {d.weight_decay:g}: the λ·w term is added to "
                           f"the gradient and then divided by {row.normalizer} like the gradient, so weights with "
                           "large gradients are barely decayed and λ's effect changes with lr; decoupled decay "
                           "was probably meant", row.fix))
    return out


def _check_no_decay_params(s: Setup) -> list[Finding]:
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
    return if_any(flagged, "warning", "decay-on-no-decay",
                   f"weight decay is applied to {len(flagged)} parameter tensor(s) that are usually not decayed "
                   f"({', '.join(sorted(reasons))}): shrinking biases and normalization gains fights the "
                   "normalization instead of limiting capacity",
                   "build the optimizer from decaylab.param_groups(model, weight_decay), which puts these in a "
                   "weight_decay=0 group") + \
        if_any(embeddings, "info", "decay-on-embeddings",
                f"weight decay is applied to {len(embeddings)} embedding tensor(s): Hugging Face transformers' "
                "Trainer does this by default, decaylab.param_groups does not (rarely seen rows shrink towards 0 "
                "on every step); fine if intended",
                "decaylab.param_groups(model, λ) leaves embeddings out; decay_embeddings=True keeps them in")


# Thresholds of the decay-strength check (one finding per group at most, see _check_strength).
MIN_TIMESCALE = 100          # steps: a shorter τ removes more than 1% of every weight per step
MIN_RUN_FRACTION = 1e-3      # τ shorter than 0.1% of the run
INERT_STEP_DECAY = 1e-7      # per-step decay at or below this does nothing in any practical run (τ ≥ 10⁷ steps)
BOUND_FRACTION = 0.5         # AdamW's ℓ∞ bound 1/λ below half a decayed tensor's initial RMS
TYPICAL = {"adam": "torch-AdamW values are typically 0.01–0.1", "sgd": "SGD values are typically 1e-5–1e-3"}


def _too_strong(s: Setup, gi: int, d: GroupDecay) -> tuple[list[str], float]:
    """Why the decay of group ``gi`` is too strong (empty when it is not), and the largest weight_decay that
    clears every reason with a margin: τ ≥ max(1000, one epoch, a tenth of the run), AdamW's bound ≥ 2·RMS."""
    tau, reasons = d.timescale_iters, []
    if tau < MIN_TIMESCALE:
        reasons.append(f"it removes {100 / tau:.3g}% of every weight per step")
    if s.steps_per_epoch is not None and tau < s.steps_per_epoch:
        reasons.append(f"τ is shorter than one epoch ({s.steps_per_epoch} steps): the weights forget most of "
                       "each epoch")
    if s.total_steps is not None and tau < MIN_RUN_FRACTION * s.total_steps:
        reasons.append(f"τ is {s.total_steps / tau:.3g}× shorter than the run ({s.total_steps} steps)")
    target = min(max(1000.0, s.steps_per_epoch or 0, (s.total_steps or 0) / 10), 0.1 / INERT_STEP_DECAY)
    fix = _lam_for_timescale(d, target)
    bound = d.max_abs_bound
    if bound is not None and (largest := s.largest_rms(gi)) is not None:
        rms, name = largest
        if bound < BOUND_FRACTION * rms:
            reasons.append(f"AdamW's bound max|w| ≤ 1/λ = {bound:.3g} (Xie & Li 2024) is below the weights' "
                           f"own scale (RMS {rms:.3g} of {name}): decay will crush them")
            fix = min(fix, d.weight_decay * bound / (2 * rms))
    return reasons, fix


def _acceptable(s: Setup, gi: int, d: GroupDecay, lam: float) -> bool:
    """Whether weight_decay ``lam`` in group ``gi`` would be neither too strong nor inert."""
    other = dataclasses.replace(d, weight_decay=lam)
    return not _too_strong(s, gi, other)[0] and other.step_decay > INERT_STEP_DECAY


def _strength_finding(s: Setup, gi: int, d: GroupDecay) -> Finding | None:
    """At most one finding on how strong group ``gi``'s decay is: too strong (``decay-dominates``, or
    ``lambda-convention`` when a torch-AdamW value sits in a schedule-scaled optimizer), doing nothing
    (``decay-inert``: at most 1e-7 per step), or light over a short run (``decay-weak``, an info: usual for
    fine-tunes, so no advice to raise it). Judged at the peak lr."""
    tau, lam, names = d.timescale_iters, d.weight_decay, s.group_names(gi)
    head = f"{d.optimizer} group {gi} (weight_decay {lam:g}, τ_iter = {tau:.3g} steps)"
    reasons, fix = _too_strong(s, gi, d)
    if reasons:
        if d.decay_scaling == "schedule" and lam >= 1e-2:
            torch_meaning = convert(lam, "torch-adamw", "schedule", lr=d.peak_lr)
            fix_text = (f"for the same decay as torch AdamW(weight_decay={lam:g}) use {torch_meaning:.3g} (λ·lr_0, "
                        f"`decaylab convert {lam:g} --from torch-adamw --to schedule --lr {d.peak_lr:g}`)"
                        if _acceptable(s, gi, d, torch_meaning) else f"lower weight_decay to at most {fix:.3g}")
            return Finding(
                "warning", "lambda-convention", names,
                f"{head}: decay_scaling='schedule' removes λ = {100 * lam:.2g}% of every weight per step; "
                "it looks like a torch-AdamW value (lr-scaled, typically 0.01–0.1); schedule-scaled values "
                "are ~1e-5…1e-3; " + "; ".join(reasons), fix_text)
        return Finding("warning", "decay-dominates", names,
                       f"{head}: decay is too strong: " + "; ".join(reasons),
                       f"lower weight_decay to at most {fix:.3g}")
    step = d.step_decay
    run = s.total_steps
    if step <= INERT_STEP_DECAY:
        over = (f"over the {run}-step run it removes at most {100 * -math.expm1(-run / tau):.2g}% of a weight"
                if run is not None else "longer than any practical run")
        fix = "it does nothing: set weight_decay=0 if no decay is meant"
        if d.kind == "decoupled" and d.family == "adam" and d.decay_scaling == "lr" and lam <= 1e-3:
            meant = convert(lam, "schedule", "torch-adamw", lr=d.peak_lr)
            if _acceptable(s, gi, d, meant):
                fix += (f"; if {lam:g} was a schedule-scaled (paper) value, {d.optimizer} multiplies it by lr: "
                        f"the same per-step decay is weight_decay={meant:.3g} (λ/lr), or use "
                        "decaylab.AdamW(..., decay_scaling='schedule')")
        return Finding("warning", "decay-inert", names,
                       f"{head}: {step:.2g} of a weight per step, {over}", fix)
    if run is not None and tau > run:
        return Finding("info", "decay-weak", names,
                       f"{head}: τ is longer than the {run}-step run, so decay removes at most "
                       f"{100 * -math.expm1(-run / tau):.2g}% of a weight over training: a light pull, as usual "
                       "on short fine-tunes of pre-trained weights",
                       "nothing to change if that is intended; decay acts as a regularizer only when τ is "
                       "shorter than the run")
    return None


def _run_length_unknown(scheduler: object, setups: Sequence[Setup]) -> list[Finding]:
    """``run-length-unknown`` when the strength checks of decaying groups ran without the run's length because
    the ``scheduler`` given does not say it (:func:`run_length` is ``None``) and no ``total_steps`` was given."""
    if not any(d.step_decay is not None for s in setups for _, _, d in s.decayed_groups()):
        return []
    return [Finding("info", "run-length-unknown", (),
                    f"the run's length could not be read from the {type(scheduler).__name__} scheduler (a LambdaLR "
                    "over a closure or an endless schedule carries none) and total_steps was not given, so the "
                    "strength checks that compare the decay timescale τ with the run were skipped: decay-dominates' "
                    "'τ shorter than 0.1% of the run' and decay-weak ('τ longer than the run')",
                    "give the run's length: doctor(model, optimizer, total_steps=<optimizer steps in the run>, "
                    "scheduler=...)")]


def _check_strength(s: Setup) -> list[Finding]:
    found = (_strength_finding(s, gi, d) for gi, _, d in s.decayed_groups() if d.step_decay is not None)
    return [f for f in found if f is not None]


def _check_tau_support(s: Setup) -> list[Finding]:
    """``tau-unsupported`` for a decaying group with no strength finding whose τ_epoch = τ_iter/steps_per_epoch lies
    far outside the τ_epoch range :mod:`decaylab.scaling.support` says the scaling rules were measured on."""
    from decaylab.scaling.support import MEASURED_BY, MEASURED_TAU_EPOCH, unsupported

    out = []
    for gi, _, d in s.decayed_groups() if s.steps_per_epoch is not None else ():
        tau = d.timescale_iters
        if tau is None or not math.isfinite(tau) or not unsupported(tau / s.steps_per_epoch) or \
                _strength_finding(s, gi, d) is not None:
            continue
        lo, hi = MEASURED_TAU_EPOCH
        out.append(Finding(
            "info", "tau-unsupported", s.group_names(gi),
            f"{d.optimizer} group {gi}: τ_epoch = {tau / s.steps_per_epoch:.3g} epochs (τ_iter {tau:.3g} steps at "
            f"{s.steps_per_epoch} steps per epoch) is far outside the {lo:g}–{hi:g} epochs where the scaling rules "
            f"were checked on measured ladders ({MEASURED_BY}): a λ carried there from smaller runs by a rule "
            "is unchecked",
            "nothing to change if this τ was measured on runs like this one; else sweep λ on smaller runs (decaylab "
            "sweep) and carry it to this one with decaylab scale, which says how far it extrapolates"))
    return out


def _check_reference_lr(s: Setup) -> list[Finding]:
    """Schedule-scaled decay divides by lr_0 (``decay_reference_lr``); an optimizer re-created mid-run takes
    its current, lower lr as lr_0 and then decays peak/lr_0 times too strongly."""
    out = []
    for gi, g, d in s.decayed_groups():
        if d.kind != "decoupled" or d.decay_scaling == "lr" or "decay_reference_lr" not in g:
            continue
        ref, peak = float(g["decay_reference_lr"]), s.schedule_peak(gi)
        if ref > 0 and peak > ref * 1.01:
            out.append(Finding(
                "warning", "decay-reference-lr", s.group_names(gi),
                f"{d.optimizer} group {gi}: decay_reference_lr (lr_0) = {ref:g} is below the schedule's peak lr "
                f"{peak:g}: decay_scaling='{d.decay_scaling}' scales λ by lr_t/lr_0, so decay is "
                f"{peak / ref:.3g}× stronger than λ says (an optimizer re-created mid-run takes its current lr "
                "as lr_0)",
                f"give the group its peak: {{'params': ..., 'decay_reference_lr': {peak:g}}}, or load the "
                "previous optimizer's state_dict (it carries lr_0)"))
    return out


def _check_decay_off(s: Setup) -> list[Finding]:
    if (not s.optimizer.param_groups or s.decayed_groups() or not all(d.known for d in s.decays)
            or any(d.implicit_decay > 0 for d in s.decays)):
        return []
    name = type(s.optimizer).__name__
    if all(d.kind == "none" for d in s.decays):
        return [Finding("info", "decay-off", (),
                        f"{name} has no weight_decay option: the run has no weight decay at all",
                        f"nothing to change if intended; with {name}, decay can only be a penalty in the loss "
                        "(decaylab.penalty.l2_penalty)")]
    return [Finding("info", "decay-off", (),
                    f"no parameter group of {type(s.optimizer).__name__} decays (weight_decay=0 everywhere; "
                    "transformers' TrainingArguments default): the run has no weight decay at all",
                    "nothing to change if intended; decaylab.param_groups(model, weight_decay) decays the "
                    "weights and spares biases, norms and embeddings")]


def _check_double_decay(s: Setup) -> list[Finding]:
    if s.loss is None:
        return []
    decayed = [p for _, g, _ in s.decayed_groups() for p in g["params"]]
    twice = l2_penalized_parameters(s.loss, decayed)
    names = tuple(s.names.get(id(p), "(not in model)") for p in twice)
    return if_any(names, "warning", "double-decay",
                   f"the loss has an explicit L2 term on {len(names)} parameter tensor(s) that the optimizer "
                   "also decays (weight_decay > 0): they are decayed twice, and the strength is neither value",
                   "keep one: drop the penalty from the loss (the optimizer's decay remains), or put these tensors "
                   "in a weight_decay=0 group")


def _check_frozen(s: Setup) -> list[Finding]:
    frozen = tuple(s.name(p, gi, pi) for gi, g, _ in s.decayed_groups()
                   for pi, p in enumerate(g["params"]) if not p.requires_grad)
    return if_any(frozen, "warning", "frozen-decayed",
                   f"{len(frozen)} frozen parameter tensor(s) are in a group with weight_decay > 0: torch's "
                   "optimizers skip tensors without a gradient, so nothing happens now, but as soon as they get "
                   "gradients (unfrozen later, or requires_grad toggled) decay pulls them away from their "
                   "pre-trained values",
                   "leave frozen parameters out of the optimizer (decaylab.param_groups does), or put them in a "
                   "weight_decay=0 group")


def _check_foreign(s: Setup) -> list[Finding]:
    foreign = tuple(f"group{gi}.param{pi}" for gi, g in enumerate(s.optimizer.param_groups)
                    for pi, p in enumerate(g["params"]) if id(p) not in s.names)
    return if_any(foreign, "info", "params-not-in-model",
                   f"{len(foreign)} optimizer parameter tensor(s) are not parameters of this model (another model's, "
                   "or copies made before the optimizer was built)",
                   "build the optimizer from this model's parameters")


# Thresholds of the Muon and Lion recipe checks.
CHECKS: tuple[Callable[[Setup], list[Finding]], ...] = (
    _check_missing, _check_unknown, _check_coupled, _check_no_decay_params, _check_strength, _check_tau_support,
    _check_reference_lr,
    _check_decay_off, _check_double_decay, _check_frozen, _check_foreign, check_muon, check_lion)


def doctor(model: torch.nn.Module, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
           total_steps: int | None = None,
           steps_per_epoch: int | None = None, *, scheduler: object | None = None, loss: torch.Tensor | None = None,
           no_decay_types: Iterable[type] | None = None, no_decay_names: Iterable[str] = DEFAULT_NO_DECAY_NAMES,
           pattern_syntax: str = "glob", decay_names: Iterable[str] = (), decay_embeddings: bool = False) -> Findings:
    """Check how ``optimizer`` decays ``model``'s parameters; return the :class:`Findings`.

    ``optimizer`` may be a list of optimizers that together train the model (a GAN's generator and
    discriminator): each is checked, and ``missing-params`` names only what none of them holds.
    ``total_steps`` (optimizer steps in the run; read from ``scheduler`` when not given, see
    :func:`decaylab.diagnostics.scheduler_length.run_length`) and ``steps_per_epoch`` sharpen the strength check;
    ``scheduler`` (the run's LR scheduler: torch's or transformers'; of one of the optimizers) also gives
    each group's peak lr; ``loss`` (one training step's loss tensor, before or after ``backward``) enables
    ``double-decay``. ``no_decay_types``/``no_decay_names``/``decay_names``/``decay_embeddings``/
    ``pattern_syntax`` say which parameters should not decay, exactly as in :func:`decaylab.param_groups`
    (the one rule, :class:`decaylab.groups.DecayRule`). See the module docstring for every check.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else \
        list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
    if not optimizers or not all(isinstance(o, torch.optim.Optimizer) for o in optimizers):
        bad = next((o for o in optimizers if not isinstance(o, torch.optim.Optimizer)), optimizer)
        raise InputTypeError(f"optimizer must be a torch.optim.Optimizer or a non-empty list of them, got "
                        f"{type(bad).__name__}")
    if total_steps is not None:
        total_steps = check_int("total_steps", total_steps, low=1)
    if steps_per_epoch is not None:
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, low=1)
    scheduled = getattr(scheduler, "optimizer", optimizers[0])
    owner = next((o for o in optimizers if o in (scheduled, getattr(scheduled, "optimizer", None))), None)
    if scheduler is not None and owner is None:
        raise InputError("scheduler must schedule the optimizer given to doctor (scheduler.optimizer is another "
                         f"{type(scheduled).__name__})")
    if loss is not None and not isinstance(loss, torch.Tensor):
        raise InputTypeError(f"loss must be a torch.Tensor (one training step's loss), got {type(loss).__name__}")
    length_unknown = total_steps is None and scheduler is not None and run_length(scheduler) is None
    if total_steps is None:
        total_steps = run_length(scheduler)
    decisions = DecayRule(no_decay_types=no_decay_types, no_decay_names=no_decay_names, pattern_syntax=pattern_syntax,
                          decay_names=decay_names, decay_embeddings=decay_embeddings).classify(model)
    held = frozenset(id(p) for o in optimizers for g in o.param_groups for p in g["params"])
    setups = []
    for k, opt in enumerate(optimizers):
        setup = Setup(model=model, optimizer=opt, names={id(p): n for n, p in model.named_parameters()}, decays=[],
                       should_decay={id(d.param): (d.decay, d.rule) for d in decisions},
                       total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                       scheduler=scheduler if opt is owner else None, loss=loss, held=held, report_missing=k == 0)
        for gi, g in enumerate(opt.param_groups):
            d = group_decay(opt, g)
            if d.decay_scaling == "lr":   # lr-scaled decay peaks with the schedule (schedule-scaled: at lr_0)
                d = dataclasses.replace(d, peak_lr=setup.schedule_peak(gi))
            setup.decays.append(d.at_peak())
        setups.append(setup)
    companions = tuple((f"{type(s.optimizer).__name__} group {gi}", d) for s in setups
                       for gi, d in enumerate(s.decays) if d.family == "adam" and d.kind == "decoupled")
    findings = []
    for setup in setups:
        setup.companions = companions
        findings += [f for check in CHECKS for f in check(setup)]
    off = [f for f in findings if f.code == "decay-off"]
    if len(optimizers) > 1 and off:     # the run has no decay only if no optimizer decays: then say it once
        findings = [f for f in findings if f.code != "decay-off"] + (off[:1] if len(off) == len(optimizers) else [])
    if length_unknown:
        findings += _run_length_unknown(scheduler, setups)
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    return Findings(findings)
