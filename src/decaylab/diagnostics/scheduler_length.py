"""How many optimizer steps a learning-rate schedule is built for, read from the scheduler object.

``run_length(scheduler)`` returns that number, or ``None`` when the schedule has no end. The doctor
uses it when it is not told ``total_steps``. Read from (torch 2.x and Hugging Face transformers):

=======================================  ==================================================================
scheduler                                run length
=======================================  ==================================================================
``OneCycleLR``                           ``total_steps``
``CosineAnnealingLR``                    ``T_max`` (the half period: the lr reaches ``eta_min`` there)
``PolynomialLR``                         ``total_iters`` (the lr reaches 0 there)
``LinearLR`` decaying (end < start)      ``total_iters``; a warm-up (end ≥ start) has no end: ``None``
``LambdaLR``/``MultiplicativeLR``        the keywords of a ``functools.partial`` lr function, as
                                         transformers' ``get_*_schedule*`` build them:
                                         ``num_training_steps``, or warm-up + stable + decay steps (WSD)
``SequentialLR``                         the last milestone + the last scheduler's length
``ChainedScheduler``                     the longest length among its schedulers
anything else                            ``None`` (``StepLR``, ``ExponentialLR``, warm restarts, …)
=======================================  ==================================================================
"""

from __future__ import annotations

import functools

from torch.optim import lr_scheduler as torch_schedulers

__all__ = ["run_length"]


def _lambda_length(fn) -> int | None:
    """The run length a transformers-style ``functools.partial`` lr lambda carries in its keywords."""
    if not isinstance(fn, functools.partial):
        return None
    kw = fn.keywords
    if kw.get("num_training_steps") is not None:
        return int(kw["num_training_steps"])
    parts = ("num_warmup_steps", "num_stable_steps", "num_decay_steps")
    if all(kw.get(k) is not None for k in parts):
        return sum(int(kw[k]) for k in parts)
    return None


def _known(lengths) -> int | None:
    lengths = [n for n in lengths if n is not None]
    return max(lengths) if lengths else None


def run_length(scheduler) -> int | None:
    """The number of ``scheduler.step()`` calls (optimizer steps) its schedule is built for; see the
    module docstring for what is read from each kind. ``None`` for ``None`` or an endless schedule."""
    if scheduler is None:
        return None
    s = torch_schedulers
    if isinstance(scheduler, s.OneCycleLR):
        return int(scheduler.total_steps)
    if isinstance(scheduler, s.CosineAnnealingLR):
        return int(scheduler.T_max)
    if isinstance(scheduler, s.PolynomialLR):
        return int(scheduler.total_iters)
    if isinstance(scheduler, s.LinearLR):
        return int(scheduler.total_iters) if scheduler.end_factor < scheduler.start_factor else None
    if isinstance(scheduler, (s.LambdaLR, s.MultiplicativeLR)):
        return _known(_lambda_length(fn) for fn in scheduler.lr_lambdas)
    if isinstance(scheduler, s.SequentialLR):
        last = run_length(scheduler._schedulers[-1])
        return None if last is None else int(scheduler._milestones[-1]) + last
    if isinstance(scheduler, s.ChainedScheduler):
        return _known(run_length(child) for child in scheduler._schedulers)
    return None
