"""One member alone, one after another: the reference :func:`train_batched` must equal (any ``nn.Module``).
A factory whose builds differ in parameter shapes is refused
(:func:`~decaylab.batched.members.check_same_architecture`), as the batched engine refuses it.

Member g, on the global generator seeded with ``member.seed`` (:func:`decaylab._isolation.isolated`: the
caller's generator is left as it was; dropout draws from it too): ``model_factory()``, the decaylab
optimizer of ``config.optimizer`` over the split of ``config.decay`` (``config.decayed_names``; muon: and of
its :class:`~decaylab.optim.MuonRule`, :func:`member_optimizer`), a ``LambdaLR`` of ``lr_multiplier`` (on
every param group, each from its own initial lr), and the epochs of :mod:`decaylab.batched.epochs`, on its
features (standardized with its own training rows' statistics with ``config.standardize``,
:mod:`decaylab.batched.standardization`). A member whose loss or parameters become non-finite, or whose
loss runs away (:mod:`decaylab.train.divergence`), or whose final train, validation or evaluation loss is
non-finite or runaway (:func:`~decaylab.batched.members.judged`), is marked ``diverged`` and reported with NaN
losses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from decaylab._isolation import isolated
from decaylab.batched.epochs import (
    _epoch_order,
    _shuffle_generator,
    _steps_per_epoch,
    _train_rows,
    evaluation_passes,
)
from decaylab.batched.members import (
    Member,
    MemberResult,
    TrainConfig,
    _accuracy,
    _as_tensors,
    _check_members,
    _per_sample_loss,
    check_same_architecture,
    diverged_result,
    judged,
    lr_multiplier,
    parameter_shapes,
)
from decaylab.batched.standardization import MemberFeatures
from decaylab.train.divergence import all_finite, diverging, overflowing_step, runaway_limit

__all__ = ["train_alone", "alone_step", "member_optimizer"]


def member_optimizer(model: nn.Module, member: Member, config: TrainConfig) -> tuple[torch.optim.Optimizer, list]:
    """``config``'s optimizer over ``model`` with ``member``'s λ and lr (λ and ``l1_decay`` on the decayed
    parameters only), and the decayed parameters. muon: :class:`decaylab.optim.MuonAdamW` over the groups of
    :func:`decaylab.optim.muon_param_groups` (the spec's :class:`~decaylab.optim.MuonRule`, the config's
    what-decays rule), the Muon groups at the member's lr and λ, the AdamW groups at ``adamw_lr_ratio`` × lr
    and the companion's λ (:meth:`~decaylab.optim.spec.OptimizerSpec.build`)."""
    from decaylab.optim.muon_groups import muon_param_groups

    spec = config.optimizer
    decays = config.decayed_names(model)
    decay = [p for n, p in model.named_parameters() if decays.get(n, False)]
    if spec.name == "muon":
        groups = muon_param_groups(model, muon_rule=spec.muon_rule(), decay_rule=config.decay)
        for group in groups:                 # a group that does not decay has weight_decay 0.0 set
            if "weight_decay" in group:
                group["l1_decay"] = 0.0
        return spec.build(groups, lr=member.lr, weight_decay=member.weight_decay), decay
    plain = [p for n, p in model.named_parameters() if n in decays and not decays[n]]
    groups = [{"params": decay, "weight_decay": member.weight_decay},
              {"params": plain, "weight_decay": 0.0, "l1_decay": 0.0}]
    return spec.build([g for g in groups if g["params"]], lr=member.lr), decay


def _evaluate_alone(model: nn.Module, X, y, rows, kind: str, rows_per_pass: int) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``X[rows]``, in passes of ``rows_per_pass`` consecutive rows of
    ``rows`` (:func:`~decaylab.batched.epochs.evaluation_passes`, as the batched engine evaluates)."""
    if rows is None or len(rows) == 0:
        return float("nan"), float("nan")
    with torch.no_grad():
        out = torch.cat([model(X[part]) for part in evaluation_passes(rows, rows_per_pass)])
        target = y[rows]
        return (float(_per_sample_loss(kind, out, target).mean()),
                float(_accuracy(kind, out.unsqueeze(0), target.unsqueeze(0))[0]))


def alone_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
               kind: str, limit: float) -> bool:
    """One training step on the batch ``(x, target)``: the mean loss, backward, the optimizer's step;
    ``False`` (and no step) if the loss diverges (:func:`~decaylab.train.divergence.diverging` at ``limit``) or
    the step's size overflows the dtype (:func:`~decaylab.train.divergence.overflowing_step`; the parameters may
    be partly updated: the member is diverged)."""
    per_sample = _per_sample_loss(kind, model(x), target)
    loss = (per_sample * torch.full_like(per_sample, 1.0 / len(x))).sum()      # as batched
    if bool(diverging(loss.detach(), limit)):
        return False
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    try:
        optimizer.step()
    except RuntimeError as error:                 # the step's size overflows the dtype: divergence
        if not overflowing_step(error):
            raise
        return False
    return True


def train_alone(model_factory: Callable[[], nn.Module], X, y, members: Sequence[Member], config: TrainConfig, *,
                eval_sets: Mapping[str, tuple] | None = None, keep_weights: bool = False,
                on_member_end: Callable[[int, MemberResult], None] | None = None,
                device=None) -> list[MemberResult]:
    """Train each member by itself, one after another (any ``nn.Module``); see the module docstring.
    ``device``: where it trains (``None``: CUDA when available, else the CPU)."""
    from decaylab.train.devices import resolve_device

    device = resolve_device(device)
    _, y = _as_tensors(X, y, config, device)
    members = _check_members(members)
    features = MemberFeatures(X, members, config, device)
    evals = features.evaluation_sets(eval_sets)
    results, first = [], {}
    for index, member in enumerate(members):
        start = time.perf_counter()
        X_member = features.member_block(features.X, index)
        evals_member = {name: (features.member_block(ex, index), ey) for name, (ex, ey) in evals.items()}
        with isolated(member.seed, device=device):
            result = _train_member(model_factory, X_member, y, member, config, evals_member, keep_weights, device,
                                   first)
        result.wall_time = time.perf_counter() - start
        results.append(result)
        if on_member_end is not None:
            on_member_end(index, result)
    return results


def _train_member(model_factory, X, y, member: Member, config: TrainConfig, evals, keep_weights: bool,
                  device, first: dict) -> MemberResult:
    """One member from its factory to its result (on the generator :func:`train_alone` seeded). ``first``: the
    parameter shapes of the first member's build (filled by the first member), each later build must match."""
    model = model_factory().to(config.dtype).to(device)
    if not first:
        first.update(parameter_shapes(model))
    check_same_architecture(model_factory, first, model)
    optimizer, decay = member_optimizer(model, member, config)
    rows = _train_rows(member, len(X))
    per_epoch = _steps_per_epoch(len(rows), config.batch_size)
    total = per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t, total=total: lr_multiplier(config.lr_schedule, t, total))
    generator = _shuffle_generator(member.seed)
    diverged, epochs_run, steps = False, 0, 0
    limit = runaway_limit(config.loss, y)
    for epoch in range(config.epochs):
        order = _epoch_order(rows, generator)
        for start_row in range(0, len(order), config.batch_size):
            batch = order[start_row:start_row + config.batch_size]
            if not alone_step(model, optimizer, X[batch], y[batch], config.loss, limit):
                diverged = True
                break
            scheduler.step()
            steps += 1
        diverged = diverged or not all_finite(model.parameters())
        epochs_run = epoch + 1
        if diverged:
            break
    result = _summarize_alone(model, X, y, rows, member, config, evals, diverged, epochs_run, steps, decay)
    if keep_weights:
        result.state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return result


def _summarize_alone(model, X, y, rows, member, config, evals, diverged, epochs_run, steps, decay) -> MemberResult:
    if diverged:
        return diverged_result(epochs_run, steps, evals)
    model.eval()                              # BatchNorm: evaluate with the running statistics
    train_loss, _ = _evaluate_alone(model, X, y, rows, config.loss, config.batch_size)
    val_rows = None if member.val_index is None else torch.tensor(member.val_index, dtype=torch.long)
    val_loss, val_acc = _evaluate_alone(model, X, y, val_rows, config.loss, config.batch_size)
    evaluated = {}
    for name, (ex, ey) in evals.items():
        loss, acc = _evaluate_alone(model, ex, ey, torch.arange(len(ex)), config.loss, config.batch_size)
        evaluated[name] = {"loss": loss, "accuracy": acc}
    norm = math.sqrt(sum(float((p.detach().double() ** 2).sum()) for p in decay))
    result = MemberResult(train_loss, val_loss, val_acc, norm, epochs_run, steps, False, 0.0, evaluated)
    return judged(result, member, config.loss, y, evals)

