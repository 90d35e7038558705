"""Train G copies of one architecture at once — each with its own λ, lr, seed and training rows.

This is the engine under :func:`decaylab.sweep` (λ × fold grids) and the optimizer reproductions
(lr × λ grids). :func:`train_batched` and :func:`train_alone` (:mod:`decaylab.batched.alone`, the plain
one-model-at-a-time reference) take the same arguments and give the same results.

The pieces, one idea per module: :mod:`~decaylab.batched.members` (Member, TrainConfig, MemberResult, the
losses), :mod:`~decaylab.batched.epochs` (which rows, in which order), :mod:`~decaylab.batched.stacked`
(the stacked model and its kernels), :mod:`~decaylab.batched._torch_internals` (the semi-internal torch
ops); this module holds the loop and the batched update.

The update of each member is the optimizer ``config.optimizer`` names, written once in
:mod:`decaylab.optim.functional` (the functions the ``decaylab.optim`` classes use), with per-member
``lr``/``weight_decay``/``s_t`` tensors of shape ``[G, 1, …]``: coupled ``g ← ∇L + λ·w`` (sgd, adam);
decoupled ``w ← w − s_t·λ·w`` (sgdw, adamw, muon, lion; ``s_t`` by ``decay_scaling`` from
:func:`decaylab.optim._decay.scale_for`), with ``cautious`` masking and the ``l1_decay`` soft threshold;
``lr_t = lr·m(t)`` with ``m`` of :func:`~decaylab.batched.members.lr_multiplier`. Lion is
:func:`decaylab.optim.lion.lion_update_` (elementwise) on the stacked tensors. Muon is
:class:`decaylab.optim.MuonAdamW`'s update: the stacked tensors the spec's :class:`~decaylab.optim.MuonRule`
gives Muon take :func:`decaylab.batched.stacked_muon.stacked_muon_update_` (Newton–Schulz as batched matmuls
over the members), the others the AdamW companion's :func:`~decaylab.optim.functional.adam_update_` at
``adamw_lr_ratio·lr_t`` with the companion's λ, betas and ε.

Fast path (sgd, sgdw, adam, adamw): while all members share ``lr`` (and, with a schedule, their total
steps), have taken the same number of steps, and neither ``cautious`` nor ``l1_decay`` is on, λ_g enters
with one op per stacked tensor and torch's fused Adam/SGD kernel (``weight_decay=0``) does the rest;
otherwise the per-member functional update runs (the reference the tests compare the fast path against).

Divergence. A member whose batch loss is non-finite or runaway (:mod:`decaylab.train.divergence`) or
whose parameters become non-finite, or whose step overflows the dtype
(:func:`~decaylab.train.divergence.overflowing_step`: ``lr = 1e40`` in float32), is marked ``diverged``
at that epoch, frozen (its parameters are zeroed so NaN cannot spread) and reported with NaN losses; the
other members are unaffected. A member whose final train, validation or evaluation loss is non-finite or
runaway is reported diverged too (:func:`~decaylab.batched.members.judged`, as :func:`train_alone`). The
step is not recomputed: members share no parameters, so the others' gradients (and BatchNorm statistics, updated
once) are exactly those of the step as computed, and the idle diverged member's update is discarded.

Evaluation runs every member on each set it is scored on (its training rows, its validation rows, each
evaluation set) in passes of ``batch_size`` rows of that set per member (:mod:`decaylab.batched.epochs`), as
:func:`train_alone` does: it never needs more memory than a training step (which the chunk's memory budget
covers), and no pass mixes a member's rows with another set's or another member's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from decaylab.batched._torch_internals import fused_adam_, fused_sgd_
from decaylab.batched.alone import train_alone
from decaylab.batched.epochs import (
    _epoch_order,
    _padded_epoch,
    _shuffle_generator,
    _steps_per_epoch,
    _train_rows,
)
from decaylab.batched.members import (
    DECAY_SCALINGS,
    LOSSES,
    LR_SCHEDULES,
    OPTIMIZERS,
    Member,
    MemberResult,
    TrainConfig,
    _accuracy,
    _as_tensors,
    _check_members,
    _per_sample_loss,
    diverged_result,
    judged,
    lr_multiplier,
)
from decaylab.batched.stacked import _losses_and_grads, _StackedModel, check_batchable
from decaylab.batched.standardization import MemberFeatures
from decaylab.optim._decay import scale_for
from decaylab.optim.options import FORMAT_2_OPTIMIZERS
from decaylab.train.divergence import diverging, overflowing_step, runaway_limit

CHECK_ROWS = 16      # input rows the folded path is checked on before training (decaylab.batched.folded)

__all__ = ["Member", "TrainConfig", "MemberResult", "train_batched", "train_alone", "check_batchable",
           "lr_multiplier", "OPTIMIZERS", "DECAY_SCALINGS", "LR_SCHEDULES", "LOSSES"]


def _per_member(values: torch.Tensor, param: torch.Tensor):
    """A per-member hyperparameter for ``param`` ``[G, …]``: a Python number when all members share it
    (the functional update then takes its scalar path, as a lone optimizer does), else a tensor
    ``[G, 1, …]`` in ``param``'s dtype that broadcasts over each member's slice."""
    if bool((values == values[0]).all()):
        return values[0].item()
    return values.to(param.dtype).to(param.device).view((-1,) + (1,) * (param.dim() - 1))


class _BatchedOptimizer:
    """Per-member optimizer state and one update step via ``decaylab.optim.functional`` (muon: and
    :mod:`decaylab.batched.stacked_muon`; lion: :func:`decaylab.optim.lion.lion_update_`)."""

    def __init__(self, stacked: _StackedModel, members: Sequence[Member], config: TrainConfig,
                 totals: torch.Tensor):
        opt = config.optimizer
        self.config = config
        self.params = stacked.params
        self.lr0 = torch.tensor([m.lr for m in members], dtype=torch.float64)
        self.wd = torch.tensor([m.weight_decay for m in members], dtype=torch.float64)
        self.decayed = stacked.decayed
        self.totals = totals
        self.step_count = torch.zeros(len(members), dtype=torch.long)
        n = len(self.params)
        # which stacked tensors Muon updates (muon: MuonRule's split; the others take the AdamW companion)
        self.use_muon = stacked.use_muon if opt.name == "muon" else [False] * n
        adam_like = [opt.is_adam or (opt.name == "muon" and not m) for m in self.use_muon]
        self.exp_avg = [torch.zeros_like(p) if a or opt.name == "lion" else None
                        for p, a in zip(self.params, adam_like)]
        self.exp_avg_sq = [torch.zeros_like(p) if a else None for p, a in zip(self.params, adam_like)]
        self.max_exp_avg_sq = [torch.zeros_like(p) if a and opt.amsgrad else None
                               for p, a in zip(self.params, adam_like)]
        self.momentum_buffer = [torch.zeros_like(p) if m else None for p, m in zip(self.params, self.use_muon)]
        if opt.name == "muon":   # the AdamW companion: its own lr (a multiple of the member's) and λ
            self.lr0_companion = self.lr0 * opt.adamw_lr_ratio
            self.wd_companion = self.wd if opt.adamw_weight_decay is None else \
                torch.full_like(self.wd, opt.adamw_weight_decay)
        # torch's fused kernel takes one lr and one step count: usable while members share lr (and, for a
        # schedule, their total steps) and have all taken the same number of steps
        shared = bool((self.lr0 == self.lr0[0]).all()) and (config.lr_schedule == "constant"
                                                             or bool((totals == totals[0]).all()))
        shared = shared and not opt.cautious and opt.l1_decay == 0 and opt.name in FORMAT_2_OPTIMIZERS
        self.uniform_steps = 0 if shared else None
        self.wd_stacked = [self.wd.to(p.dtype).to(p.device).view((-1,) + (1,) * (p.dim() - 1)) if d else None
                           for p, d in zip(self.params, self.decayed)]
        self.fused_steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self.tensor_wd: list[float] | None = None

    def set_tensor_weight_decay(self, values: Sequence[float]) -> None:
        """From the next step on, one λ per stacked tensor (shared by all members; 0: no decay) instead of
        each member's λ on the decayed tensors."""
        self.tensor_wd = [float(v) for v in values]
        self.wd_stacked = [None if v == 0 else torch.full((1,) * p.dim(), v, dtype=p.dtype, device=p.device)
                           for p, v in zip(self.params, self.tensor_wd)]

    def _state(self) -> list[torch.Tensor | None]:
        return self.params + self.momentum_buffer + self.exp_avg + self.exp_avg_sq + self.max_exp_avg_sq

    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor) -> None:
        """Update every active member; idle members (``active[g]`` False) are left exactly as they were."""
        config, opt = self.config, self.config.optimizer
        all_active = bool(active.all())
        if self.uniform_steps is not None and all_active:
            self._fused_step(grads)
            self.uniform_steps += 1
            self.step_count += 1
            return
        self.uniform_steps = None                   # members' step counts may differ from here on
        saved = None if all_active else [None if t is None else t.detach().clone() for t in self._state()]
        mult = lr_multiplier(config.lr_schedule, self.step_count, self.totals)     # float64 [G]
        lr_t = self.lr0 * mult
        scale = scale_for(opt.decay_scaling, lr_t, self.lr0)                   # s_t per member [G]
        companion = None
        if opt.name == "muon":
            lr_c = self.lr0_companion * mult
            companion = (lr_c, scale_for(opt.decay_scaling, lr_c, self.lr0_companion))
        step = self.step_count + 1
        first_step = bool((self.step_count == 0).all())
        with torch.no_grad():
            for i, (param, grad) in enumerate(zip(self.params, grads)):
                if self.tensor_wd is not None:
                    wd = self.tensor_wd[i]
                else:
                    wd = _per_member(self.wd, param) if self.decayed[i] else 0.0
                l1 = opt.l1_decay if self.decayed[i] else 0.0
                if companion is not None and not self.use_muon[i]:
                    if self.tensor_wd is None and self.decayed[i]:
                        wd = _per_member(self.wd_companion, param)
                    self._companion_step(i, param, grad, _per_member(step, param), wd, l1, *companion)
                else:
                    self._member_step(i, param, grad, _per_member(lr_t, param), wd, l1, _per_member(scale, param),
                                      _per_member(step, param), first_step)
            if saved is not None:
                self._restore_idle(saved, active)
        self.step_count += active.long()

    def _member_step(self, i: int, param, grad, lr, wd, l1, decay_scale, step, first_step: bool) -> None:
        """The reference update of stacked tensor ``i`` by the optimizer the config names (lr, λ, s_t, the step
        count: numbers or ``[G, 1, …]`` tensors)."""
        from decaylab.batched.stacked_muon import stacked_muon_update_
        from decaylab.optim import functional as Fo
        from decaylab.optim.lion import lion_update_

        opt = self.config.optimizer
        if opt.name == "muon":
            stacked_muon_update_(param, grad, self.momentum_buffer[i], lr=lr, weight_decay=wd, momentum=opt.momentum,
                                 nesterov=opt.nesterov, ns_coefficients=opt.ns_coefficients, ns_steps=opt.ns_steps,
                                 eps=opt.eps, adjust_lr_fn=opt.adjust_lr_fn, ns_dtype=opt.ns_dtype,
                                 decay_scale=decay_scale, cautious=opt.cautious, l1_decay=l1)
        elif opt.name == "lion":
            lion_update_(param, grad, self.exp_avg[i], lr=lr, beta1=opt.betas[0], beta2=opt.betas[1], weight_decay=wd,
                         decay_scale=decay_scale, cautious=opt.cautious, l1_decay=l1)
        elif opt.is_adam:
            Fo.adam_update_(param, grad, self.exp_avg[i], self.exp_avg_sq[i], self.max_exp_avg_sq[i], step, lr=lr,
                            beta1=opt.betas[0], beta2=opt.betas[1], eps=opt.eps, weight_decay=wd, amsgrad=opt.amsgrad,
                            decoupled=opt.decoupled, decay_scale=decay_scale, cautious=opt.cautious, l1_decay=l1)
        else:
            self.momentum_buffer[i] = Fo.sgd_update_(
                param, grad, self.momentum_buffer[i], lr=lr, weight_decay=wd, momentum=opt.momentum,
                dampening=opt.dampening, nesterov=opt.nesterov, decoupled=opt.decoupled,
                decay_scale=decay_scale, first_step=first_step, cautious=opt.cautious, l1_decay=l1)

    def _companion_step(self, i: int, param, grad, step, wd, l1, lr_c: torch.Tensor, scale_c: torch.Tensor) -> None:
        """muon: the AdamW companion's update of stacked tensor ``i``, at its lr ``lr_c`` and s_t ``scale_c``
        (per member ``[G]``), λ ``wd`` and the companion's betas and ε."""
        from decaylab.optim import functional as Fo

        opt = self.config.optimizer
        Fo.adam_update_(param, grad, self.exp_avg[i], self.exp_avg_sq[i], None, step, lr=_per_member(lr_c, param),
                        beta1=opt.adamw_betas[0], beta2=opt.adamw_betas[1], eps=opt.adamw_eps, weight_decay=wd,
                        decoupled=True, decay_scale=_per_member(scale_c, param), cautious=opt.cautious, l1_decay=l1)

    def _fused_step(self, grads: Sequence[torch.Tensor]) -> None:
        """The same update as the reference path when members share lr and step count: each member's λ
        enters with one op per tensor — coupled ``g ← g + λ_g·w``, decoupled
        :func:`decaylab.optim.functional.decoupled_decay_` with ``s_t·λ_g`` — then torch's fused Adam/SGD
        kernel (``weight_decay=0``) updates all stacked tensors at once. Not used with ``cautious`` or
        ``l1_decay`` (they need the update direction / act after it)."""
        from decaylab.optim.functional import decoupled_decay_

        config, opt = self.config, self.config.optimizer
        mult = float(lr_multiplier(config.lr_schedule, self.uniform_steps, int(self.totals[0])))
        lr0 = float(self.lr0[0])
        scale = scale_for(opt.decay_scaling, lr0 * mult, lr0)
        with torch.no_grad():
            grads = [g.contiguous() for g in grads]            # the fused kernels read memory in order
            for param, grad, wd in zip(self.params, grads, self.wd_stacked):
                if wd is None:
                    continue
                if opt.decoupled:
                    decoupled_decay_(param, scale * wd)
                else:
                    grad.addcmul_(param, wd)
            if opt.is_adam:
                for step in self.fused_steps:
                    step.add_(1)
                fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq,
                            self.max_exp_avg_sq if opt.amsgrad else [], self.fused_steps, lr=lr0 * mult,
                            betas=opt.betas, eps=opt.eps, amsgrad=opt.amsgrad)
            else:
                if opt.momentum != 0 and self.momentum_buffer[0] is None:
                    self.momentum_buffer = [torch.zeros_like(p) for p in self.params]
                fused_sgd_(self.params, grads, self.momentum_buffer if opt.momentum != 0 else [],
                           lr=lr0 * mult, momentum=opt.momentum, dampening=opt.dampening,
                           nesterov=opt.nesterov, first_step=self.uniform_steps == 0)

    def _restore_idle(self, saved, active: torch.Tensor) -> None:
        for now, before in zip(self._state(), saved):
            if now is None or before is None:
                continue
            keep = active.to(now.device).view((-1,) + (1,) * (now.dim() - 1))
            now.copy_(torch.where(keep, now, before))

    def freeze(self, members: torch.Tensor) -> None:
        """Zero the parameters and state of diverged members so their NaNs cannot spread."""
        with torch.no_grad():
            for t in self._state():
                if t is not None:
                    t[members.to(t.device)] = 0.0


def train_batched(model_factory: Callable[[], nn.Module], X, y, members: Sequence[Member], config: TrainConfig, *,
                  eval_sets: Mapping[str, tuple] | None = None, keep_weights: bool = False,
                  device=None) -> list[MemberResult]:
    """Train all ``members`` as one stacked model; member g equals ``train_alone`` of member g.

    Args:
        model_factory: builds one member's ``nn.Module`` (on the global generator seeded with its seed).
        X, y: all rows (arrays or tensors); members pick theirs with ``train_index``/``val_index``.
        members: the runs (:class:`Member`: λ, lr, seed, rows).
        config: what they share (:class:`TrainConfig`).
        eval_sets: extra ``{name: (X, y)}`` every member is evaluated on at the end (e.g. a test set).
        keep_weights: also return each member's final ``state_dict``.
        device: where it trains (``None``: CUDA when available, else the CPU).
    Returns:
        one :class:`MemberResult` per member, in order.
    """
    from decaylab.train.devices import resolve_device

    start = time.perf_counter()
    device = resolve_device(device)
    _, y = _as_tensors(X, y, config, device)
    members = _check_members(members)
    features = MemberFeatures(X, members, config, device)
    X, y_rows = features.X, features.targets(y)          # each member's rows: features.rows(its row indices)
    evals = features.evaluation_sets(eval_sets)
    G = len(members)
    stacked = _StackedModel(model_factory, members, config, device, sample=X[:CHECK_ROWS])
    rows = [_train_rows(m, len(y)) for m in members]
    per_epoch = torch.tensor([_steps_per_epoch(len(r), config.batch_size) for r in rows])
    steps_per_epoch = int(per_epoch.max())
    optimizer = _BatchedOptimizer(stacked, members, config, per_epoch * config.epochs)
    generators = [_shuffle_generator(m.seed) for m in members]
    alive = torch.ones(G, dtype=torch.bool)
    epochs_run = torch.zeros(G, dtype=torch.long)
    limit = runaway_limit(config.loss, y)
    for epoch in range(config.epochs):
        orders = [_epoch_order(r, gen) for r, gen in zip(rows, generators)]
        index, weight = _padded_epoch(orders, config.batch_size, steps_per_epoch)
        index, weight = features.rows(index).to(device), weight.to(config.dtype).to(device)
        for s in range(steps_per_epoch):
            idx, w = index[:, s], weight[:, s]
            losses, grads = _losses_and_grads(stacked, X, y_rows, idx, w, config.loss)
            newly = alive & (s < per_epoch) & diverging(losses, limit).cpu()
            if bool(newly.any()):                 # diverged on this batch: frozen, idle from this step on
                _drop(newly, alive, epochs_run, epoch, optimizer)
            try:
                optimizer.step(grads, alive & (s < per_epoch))
            except RuntimeError as error:          # the step's size overflows the dtype: its members diverge
                if not overflowing_step(error):
                    raise
                _drop(alive & (s < per_epoch), alive, epochs_run, epoch, optimizer)
            del grads                              # before the next step's: one set of gradients at a time
        epochs_run[alive] = epoch + 1
        finite = torch.stack([torch.isfinite(p.detach()).view(G, -1).all(1) for p in stacked.params]).all(0).cpu()
        _drop(alive & ~finite, alive, epochs_run, epoch, optimizer)
        if not bool(alive.any()):
            break
    results = _summarize_batched(stacked, features, y, rows, members, config, evals, alive, epochs_run,
                                 optimizer.step_count, keep_weights)
    per_member = (time.perf_counter() - start) / G
    for r in results:
        r.wall_time = per_member
    return results


def _drop(newly: torch.Tensor, alive: torch.Tensor, epochs_run: torch.Tensor, epoch: int,
          optimizer: _BatchedOptimizer) -> None:
    """Mark ``newly`` diverged members as dead at ``epoch`` and freeze them."""
    if bool(newly.any()):
        alive &= ~newly
        epochs_run[newly] = epoch + 1
        optimizer.freeze(newly)


def _member_scores(stacked, features, y, rows: Sequence[torch.Tensor], config) -> list[tuple[float, float]]:
    """Each member's mean loss and accuracy on its own rows ``rows[g]`` of the data (NaN where it has none),
    evaluated in passes of ``batch_size`` of its rows only (:meth:`_StackedModel.predict_rows`)."""
    nan = float("nan")
    if not any(len(r) for r in rows):
        return [(nan, nan)] * len(rows)
    offsets = [0] * len(rows) if features.offsets is None else features.offsets.tolist()
    index = [r + offset for r, offset in zip(rows, offsets)]              # into features.X: the member's block
    out = stacked.predict_rows(features.X, index, config.batch_size)       # [G, L, outputs]
    scores = []
    for g, r in enumerate(rows):
        if len(r) == 0:
            scores.append((nan, nan))
            continue
        o, t = out[g, :len(r)], y[r.to(y.device)]
        acc = float(_accuracy(config.loss, o.unsqueeze(0), t.unsqueeze(0))[0])
        scores.append((float(_per_sample_loss(config.loss, o, t).double().mean()), acc))
    return scores


def _summarize_batched(stacked, features, y, rows, members, config, evals, alive, epochs_run, steps,
                       keep_weights) -> list[MemberResult]:
    val_rows = [torch.tensor(m.val_index or (), dtype=torch.long) for m in members]
    with torch.no_grad():
        train_scores = _member_scores(stacked, features, y, rows, config)
        val_scores = _member_scores(stacked, features, y, val_rows, config)
        eval_out = {}
        for name, (ex, ey) in evals.items():
            o = stacked.predict(ex, config.batch_size, features.block_offsets(ex))
            t = ey.expand(len(members), *ey.shape)
            eval_out[name] = (_per_sample_loss(config.loss, o, t).double().mean(1), _accuracy(config.loss, o, t))
        sq = sum((p.detach().double() ** 2).view(len(members), -1).sum(1)
                 for p, d in zip(stacked.params, stacked.decayed) if d)
    results = []
    for g, member in enumerate(members):
        evaluated = {name: {"loss": float(loss[g]), "accuracy": float(acc[g])}
                     for name, (loss, acc) in eval_out.items()}
        if not bool(alive[g]):
            results.append(diverged_result(int(epochs_run[g]), int(steps[g]), evals))
            continue
        val_loss, val_acc = val_scores[g]          # NaN accuracy for regression, as _accuracy gives
        result = MemberResult(train_scores[g][0], val_loss, val_acc,
                              math.sqrt(float(sq[g])) if torch.is_tensor(sq) else 0.0,
                              int(epochs_run[g]), int(steps[g]), False, 0.0, evaluated)
        result = judged(result, member, config.loss, y, evals)
        if keep_weights and not result.diverged:
            result.state_dict = stacked.state_dict(g)
        results.append(result)
    return results
