"""Training helpers the optimizer test modules share: regression batches, an MSE training loop, the weights
as one vector, a recorder of torch's optimizer hooks, and a run saved and resumed mid-training next to the
same run uninterrupted."""

from __future__ import annotations

import io

import torch


def regression_batches(n, n_in, n_out, *, seed=0, dtype=torch.float64):
    """``n`` batches (X [8, n_in], y [8, n_out]) of standard normal noise from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, n_in, generator=gen, dtype=dtype), torch.randn(8, n_out, generator=gen, dtype=dtype))
            for _ in range(n)]


def train(model, opt, batches, scheduler=None):
    """One step of ``opt`` on the mean squared error per batch, then ``scheduler.step()`` (with the loss
    for ``ReduceLROnPlateau``); returns the last loss."""
    for X, y in batches:
        opt.zero_grad()
        loss = ((model(X) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss.item())
        elif scheduler is not None:
            scheduler.step()
    return loss.item()


def weights(model):
    """All parameters of ``model`` as one flat tensor."""
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def record_hooks(opt):
    """Register one of each of torch's optimizer hooks on ``opt`` (step pre/post, state_dict pre/post,
    load_state_dict pre/post); returns the list their calls append "pre", "post", "sd-pre", "sd-post",
    "load-pre", "load-post" to."""
    calls = []
    opt.register_step_pre_hook(lambda o, args, kw: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kw: calls.append("post"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd-pre"))
    opt.register_state_dict_post_hook(lambda o, state_dict: calls.append("sd-post"))
    opt.register_load_state_dict_pre_hook(lambda o, state_dict: calls.append("load-pre"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load-post"))
    return calls


def resumed_run(make_model, make_optimizer, batches, train=train):
    """Train ``make_model(0)`` with ``make_optimizer(model)`` and a cosine schedule over the first half of
    ``batches`` (``train(model, opt, batches, scheduler)``), save model, optimizer and scheduler to bytes,
    train on over the second half; then resume a model of another seed and an optimizer built by
    ``make_optimizer(model, lr=0.5)`` (everything must come from the checkpoint) and train it over the
    second half. Returns (the uninterrupted model, the resumed model, its optimizer)."""
    half = len(batches) // 2
    model = make_model(0)
    opt = make_optimizer(model)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(batches))
    train(model, opt, batches[:half], sched)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    train(model, opt, batches[half:], sched)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = make_model(123)
    resumed.load_state_dict(saved["model"])
    resumed_opt = make_optimizer(resumed, lr=0.5)
    resumed_opt.load_state_dict(saved["opt"])
    resumed_sched = torch.optim.lr_scheduler.CosineAnnealingLR(resumed_opt, T_max=len(batches))
    resumed_sched.load_state_dict(saved["sched"])
    train(resumed, resumed_opt, batches[half:], resumed_sched)
    return model, resumed, resumed_opt
