"""Train G copies of one architecture at once — each with its own λ, lr, seed and training rows.

This is the engine under :func:`decaylab.sweep` (λ × fold grids) and the optimizer
reproductions (lr × λ grids). :func:`train_batched` and :func:`train_alone` take the same
arguments and give the same results; ``train_alone`` is the plain one-model-at-a-time
reference and works for any ``nn.Module``.

How members are stacked. ``model_factory()`` is called once per member right after
``torch.manual_seed(member.seed)``, so member g starts from exactly the weights it would
have alone. The G parameter sets are stacked (``torch.func.stack_module_state``) into
tensors of shape ``[G, *shape]`` and the forward pass is
``vmap(functional_call(base, params, x))`` over members — for ``Linear`` layers this runs
as batched matmuls, for ``Conv2d`` as grouped convolutions. One backward pass of
``Σ_g loss_g`` gives every member its own gradient (members share no parameters).
Plain MLPs — an ``nn.Sequential`` or :class:`decaylab.models.MLP` of ``Linear`` layers and
elementwise activations — skip vmap: each ``Linear`` is one ``torch.baddbmm`` over members
(``_StackedLinear``, whose weight gradient ``∂yᵀ·x`` comes out in the weight's layout), and the
cross-entropy uses its closed-form gradient ``w·(softmax(z) − onehot(y))``; a ReLU MLP with the
cross-entropy is differentiated entirely by hand (no autograd graph, ``_relu_mlp_losses_and_grads``).

Batches (identical in both trainers). Member g trains on the rows ``train_index`` of
``X`` (all rows if ``None``). Each epoch it draws ``perm = randperm(len(train_index))``
from its own generator seeded with ``member.seed`` and cuts it into batches of
``batch_size`` (the last one smaller): exactly a shuffled ``DataLoader`` over its own
training rows. A member's batch loss is the mean over its batch. Members whose epoch has
fewer batches are idle on the extra steps (their parameters and optimizer state are left
untouched), so validation rows never enter a member's loss or gradient, and folds of
different sizes still match their runs alone.

The update of each member (``decaylab.optim.functional``, the same functions the
``decaylab.optim`` optimizers use, with per-member ``lr``/``weight_decay`` tensors of shape
``[G, 1, …]``):

- ``sgd``/``adam``: coupled decay, ``g ← ∇L + λ·w`` before momentum / Adam moments;
- ``sgdw``/``adamw``: decoupled, ``w ← w − s_t·λ·w`` with ``s_t = lr_t``
  (``decay_scaling="lr"``, torch's AdamW) or ``s_t = lr_t/lr_0``
  (``decay_scaling="schedule"``, Loshchilov & Hutter);
- ``lr_t = lr·m(t)`` with ``m = 1`` (``lr_schedule="constant"``) or
  ``m(t) = (1 + cos(π t / T))/2`` (``"cosine"``; ``t`` the member's steps so far, ``T`` its
  total steps).

Fast path: while all members share ``lr`` (and, with a schedule, their total steps) and have
taken the same number of steps, λ_g enters with one op per stacked tensor (coupled
``g ← g + λ_g·w``, decoupled ``w ← (1 − s_t·λ_g)·w``) and torch's fused Adam/SGD kernel
(``weight_decay=0``) does the rest; otherwise the per-member ``decaylab.optim.functional`` update
above runs (the reference the tests compare the fast path against).

Only weights (parameters with ≥ 2 dimensions) are decayed unless ``decay_biases=True``.
λ is the optimizers' ``weight_decay``: coupled ``+λ·w`` is the gradient of the penalty
``(λ/2)·Σw²``, so decaylab's penalty form ``L + λ'·Σw²`` is ``weight_decay = 2λ'``. Values that
all members share are passed to the update as Python scalars (its lone-optimizer path).

Losses, per row: ``cross_entropy`` = ``logsumexp(z) − z_y`` (logits ``z``, class ``y``);
``mse`` = the mean over outputs of ``(f(x) − y)²``.

Divergence. A member whose batch loss or parameters become non-finite is marked
``diverged`` at that epoch, frozen (its parameters are zeroed so NaN cannot spread) and
reported with NaN losses; the other members are unaffected.

Supported by the batched trainer: models whose forward pass is a pure function of the
parameters (no BatchNorm statistics, no dropout); :func:`check_batchable` says why not.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from decaylab._checks import check_choice, check_int, check_real
from decaylab.train.stacked_layers import batch_lengths, grouped_losses

OPTIMIZERS = ("sgd", "sgdw", "adam", "adamw")
DECAY_SCALINGS = ("lr", "schedule")
LR_SCHEDULES = ("constant", "cosine")
LOSSES = ("cross_entropy", "mse")

__all__ = ["Member", "TrainConfig", "MemberResult", "train_batched", "train_alone", "check_batchable",
           "OPTIMIZERS", "DECAY_SCALINGS", "LR_SCHEDULES", "LOSSES"]


@dataclass(frozen=True)
class Member:
    """One training run: its decay λ, learning rate, seed, and which rows of X it trains / validates on."""

    weight_decay: float
    lr: float
    seed: int = 0
    train_index: tuple[int, ...] | None = None   # rows of X that train it (None: every row)
    val_index: tuple[int, ...] | None = None     # rows of X it is validated on (None: none)

    def __post_init__(self):
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_int("seed", self.seed, low=0)
        for name in ("train_index", "val_index"):
            rows = getattr(self, name)
            if rows is not None:
                object.__setattr__(self, name, tuple(int(i) for i in rows))
        if self.train_index is not None and len(self.train_index) == 0:
            raise ValueError("train_index must name at least one row, got an empty sequence")


@dataclass(frozen=True)
class TrainConfig:
    """What every member shares: optimizer, decay convention, schedule, epochs, batches, loss.

    ``optimizer`` ∈ {sgd, sgdw, adam, adamw}; ``momentum``/``dampening``/``nesterov`` for the
    SGDs, ``betas``/``eps``/``amsgrad`` for the Adams; ``decay_scaling`` ∈ {lr, schedule}
    (decoupled optimizers only); ``lr_schedule`` ∈ {constant, cosine}; ``loss`` ∈
    {cross_entropy, mse}; ``dtype`` of parameters and data.
    """

    optimizer: str = "adamw"
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    decay_scaling: str = "lr"
    lr_schedule: str = "constant"
    loss: str = "cross_entropy"
    decay_biases: bool = False
    dtype: torch.dtype = torch.float32

    def __post_init__(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("decay_scaling", self.decay_scaling, DECAY_SCALINGS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("loss", self.loss, LOSSES)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_real("dampening", self.dampening, low=0.0, high=1.0)
        check_real("eps", self.eps, low=0.0)
        if len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            check_real(f"betas[{i}]", beta, low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening = 0, got momentum={self.momentum!r}, "
                             f"dampening={self.dampening!r}")
        check_choice("dtype", self.dtype, (torch.float32, torch.float64))

    @property
    def decoupled(self) -> bool:
        return self.optimizer in ("sgdw", "adamw")

    @property
    def is_adam(self) -> bool:
        return self.optimizer in ("adam", "adamw")


@dataclass
class MemberResult:
    """What one member ended with. Losses are means over the rows named; NaN where diverged or absent."""

    train_loss: float
    val_loss: float
    val_accuracy: float
    weight_norm: float                 # ‖w‖₂ over the decayed parameters
    epochs_run: int
    steps: int
    diverged: bool
    wall_time: float                   # seconds; batched: the chunk's time divided by its members
    eval: dict[str, dict[str, float]] = field(default_factory=dict)   # name → {"loss", "accuracy"}
    state_dict: dict[str, torch.Tensor] | None = None                 # final weights if asked for


# -- batches and schedules: shared by both trainers -----------------------------------------

def _train_rows(member: Member, n_rows: int) -> torch.Tensor:
    if member.train_index is None:
        return torch.arange(n_rows)
    rows = torch.tensor(member.train_index, dtype=torch.long)
    if rows.min() < 0 or rows.max() >= n_rows:
        raise ValueError(f"train_index must name rows in [0, {n_rows - 1}], got values from "
                         f"{int(rows.min())} to {int(rows.max())}")
    return rows


def _steps_per_epoch(n_train: int, batch_size: int) -> int:
    return -(-n_train // batch_size)


def _epoch_order(rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """This epoch's shuffled training rows of one member."""
    return rows[torch.randperm(len(rows), generator=generator)]


def _shuffle_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lr_multiplier(schedule: str, step: int | torch.Tensor, total_steps: int | torch.Tensor):
    """``m(t)`` of ``lr_t = lr·m(t)``: 1 (constant) or ``(1 + cos(π t/T))/2`` (cosine); works on tensors."""
    if schedule == "constant":
        return torch.ones_like(step, dtype=torch.float64) if torch.is_tensor(step) else 1.0
    if torch.is_tensor(step):
        return (1.0 + torch.cos(math.pi * step.double() / total_steps)) / 2.0
    return (1.0 + math.cos(math.pi * step / total_steps)) / 2.0


def _per_sample_loss(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss of each sample, shape ``out.shape[:-1]`` (the last dim of ``out`` is the output); both trainers use it."""
    if kind == "cross_entropy":
        # −log softmax(out)[target] = logsumexp(out) − out[target]; ~3× faster than F.cross_entropy for
        # few classes on CPU, and the same (stable) value
        return out.logsumexp(-1) - out.gather(-1, target.reshape(*out.shape[:-1], 1)).squeeze(-1)
    return ((out - target.reshape(out.shape)) ** 2).mean(-1)


def _accuracy(kind: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of argmax hits per member, shape ``out.shape[:-2]`` (NaN for regression)."""
    if kind != "cross_entropy":
        return torch.full(out.shape[:-2], float("nan"), dtype=torch.float64)
    return (out.argmax(-1) == target).double().mean(-1)


def _is_decayed(tensor: torch.Tensor, config: TrainConfig, stacked: bool) -> bool:
    return config.decay_biases or tensor.dim() - (1 if stacked else 0) >= 2


def check_batchable(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained by :func:`train_batched` (``None`` if it can)."""
    from decaylab.train.stacked_layers import unbatchable_reason      # issue 11: layers with state

    return unbatchable_reason(model)


def _as_tensors(X, y, config: TrainConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.as_tensor(X)
    X = X.to(config.dtype) if X.is_floating_point() else X.long()    # token ids / indices stay integers
    y = torch.as_tensor(y)
    if device is not None:                                           # issue 11: device=
        X, y = X.to(device), y.to(device)
    y = y.long() if config.loss == "cross_entropy" else y.to(config.dtype)
    if len(X) != len(y):
        raise ValueError(f"y must have one entry per row of X ({len(X)}), got {len(y)}")
    return X, y


def _check_members(members: Sequence[Member]) -> list[Member]:
    members = list(members)
    if not members:
        raise ValueError("members must contain at least one Member, got none")
    for m in members:
        if not isinstance(m, Member):
            raise TypeError(f"members must be Member objects, got {type(m).__name__}")
    return members


# -- one member alone: the reference ----------------------------------------------------------

def _make_optimizer(params_decay, params_plain, member: Member, config: TrainConfig) -> torch.optim.Optimizer:
    from decaylab import optim

    groups = [{"params": params_decay, "weight_decay": member.weight_decay},
              {"params": params_plain, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if config.is_adam:
        cls = optim.AdamW if config.decoupled else optim.Adam
        kwargs = dict(betas=config.betas, eps=config.eps, amsgrad=config.amsgrad)
    else:
        cls = optim.SGDW if config.decoupled else optim.SGD
        kwargs = dict(momentum=config.momentum, dampening=config.dampening, nesterov=config.nesterov)
    if config.decoupled:
        kwargs["decay_scaling"] = config.decay_scaling
    return cls(groups, lr=member.lr, **kwargs)


def _evaluate_alone(model: nn.Module, X, y, rows, kind: str) -> tuple[float, float]:
    if rows is None or len(rows) == 0:
        return float("nan"), float("nan")
    with torch.no_grad():
        out = model(X[rows])
        target = y[rows]
        return (float(_per_sample_loss(kind, out, target).mean()),
                float(_accuracy(kind, out.unsqueeze(0), target.unsqueeze(0))[0]))


def train_alone(model_factory: Callable[[], nn.Module], X, y, members: Sequence[Member], config: TrainConfig, *,
                eval_sets: Mapping[str, tuple] | None = None, keep_weights: bool = False,
                on_member_end: Callable[[int, MemberResult], None] | None = None, device=None) -> list[MemberResult]:
    """Train each member by itself, one after another (any ``nn.Module``); see the module docstring.
    ``device``: where it trains (``None``: CUDA when available, else the CPU)."""
    from decaylab.train.devices import resolve_device

    device = resolve_device(device)
    X, y = _as_tensors(X, y, config, device)
    members = _check_members(members)
    evals = {name: _as_tensors(ex, ey, config, device) for name, (ex, ey) in (eval_sets or {}).items()}
    results = []
    for index, member in enumerate(members):
        start = time.perf_counter()
        torch.manual_seed(member.seed)
        model = model_factory().to(config.dtype).to(device)
        decay = [p for n, p in model.named_parameters() if _is_decayed(p, config, stacked=False)]
        plain = [p for n, p in model.named_parameters() if not _is_decayed(p, config, stacked=False)]
        optimizer = _make_optimizer(decay, plain, member, config)
        rows = _train_rows(member, len(X))
        per_epoch = _steps_per_epoch(len(rows), config.batch_size)
        total = per_epoch * config.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: lr_multiplier(config.lr_schedule, t, total))
        generator = _shuffle_generator(member.seed)
        diverged, epochs_run, steps = False, 0, 0
        for epoch in range(config.epochs):
            order = _epoch_order(rows, generator)
            for start_row in range(0, len(order), config.batch_size):
                batch = order[start_row:start_row + config.batch_size]
                per_sample = _per_sample_loss(config.loss, model(X[batch]), y[batch])
                loss = (per_sample * torch.full_like(per_sample, 1.0 / len(batch))).sum()   # as batched
                if not torch.isfinite(loss):
                    diverged = True
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                steps += 1
            diverged = diverged or not all(torch.isfinite(p).all() for p in model.parameters())
            epochs_run = epoch + 1
            if diverged:
                break
        result = _summarize_alone(model, X, y, rows, member, config, evals, diverged, epochs_run, steps, decay)
        result.wall_time = time.perf_counter() - start
        if keep_weights:
            result.state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
        results.append(result)
        if on_member_end is not None:
            on_member_end(index, result)
    return results


def _summarize_alone(model, X, y, rows, member, config, evals, diverged, epochs_run, steps, decay) -> MemberResult:
    nan = float("nan")
    if diverged:
        return MemberResult(nan, nan, nan, nan, epochs_run, steps, True, 0.0,
                            {name: {"loss": nan, "accuracy": nan} for name in evals})
    model.eval()                              # BatchNorm: evaluate with the running statistics
    train_loss, _ = _evaluate_alone(model, X, y, rows, config.loss)
    val_rows = None if member.val_index is None else torch.tensor(member.val_index, dtype=torch.long)
    val_loss, val_acc = _evaluate_alone(model, X, y, val_rows, config.loss)
    evaluated = {}
    for name, (ex, ey) in evals.items():
        loss, acc = _evaluate_alone(model, ex, ey, torch.arange(len(ex)), config.loss)
        evaluated[name] = {"loss": loss, "accuracy": acc}
    norm = math.sqrt(sum(float((p.detach().double() ** 2).sum()) for p in decay))
    return MemberResult(train_loss, val_loss, val_acc, norm, epochs_run, steps, False, 0.0, evaluated)


# -- all members at once ------------------------------------------------------------------------

class _StackedModel:
    """G members' parameters stacked as ``[G, *shape]`` leaves, and their vmapped forward pass."""

    def __init__(self, model_factory, members: Sequence[Member], config: TrainConfig, device=None):
        from decaylab.train import stacked_layers

        models = []
        for member in members:
            torch.manual_seed(member.seed)
            models.append(model_factory().to(config.dtype))
        reason = check_batchable(models[0])
        if reason is not None:
            raise ValueError(f"model cannot be trained batched: {reason}; use engine='sequential'")
        params, buffers = torch.func.stack_module_state(models)
        self.names = list(params)
        self.params = [params[n].detach().clone().to(device).requires_grad_(True) for n in self.names]
        # issue 11: buffers (BatchNorm running statistics) stacked [G, …] per member, updated in place
        self.buffer_names = list(buffers)
        self.buffers = [buffers[n].detach().clone().to(device) for n in self.buffer_names]
        self.base = copy.deepcopy(models[0]).to("meta")
        self.decayed = [_is_decayed(p, config, stacked=True) for n, p in zip(self.names, self.params)]
        self.linear_stack = None if self.buffers else _linear_stack_plan(self.base, self.names)
        self.batch_statistics = stacked_layers.has_batch_statistics(self.base)
        self.path = stacked_layers.batch_path(self.base, self.linear_stack is not None)
        self._context = lambda: stacked_layers.stacked_forward_context(self.base)

    def _call_one(self, flat_params, flat_buffers, x):
        return torch.func.functional_call(self.base, (dict(zip(self.names, flat_params)),
                                                      dict(zip(self.buffer_names, flat_buffers))), (x,))

    def forward(self, x: torch.Tensor, shared_input: bool = False, members: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is ``[G, B, …]`` (one batch per member) or ``[B, …]`` shared by all (``shared_input``);
        ``members``: only these members (their buffers' updates are written back)."""
        if self.linear_stack is not None and members is None and x.dim() == (2 if shared_input else 3):
            return _linear_stack_forward(self.linear_stack, self.params, x)
        params = self.params if members is None else [p[members] for p in self.params]
        buffers = self.buffers if members is None else [b[members] for b in self.buffers]
        with self._context():
            out = torch.func.vmap(self._call_one, in_dims=(0, 0, None if shared_input else 0))(params, buffers, x)
        if members is not None:
            with torch.no_grad():
                for full, part in zip(self.buffers, buffers):
                    full[members] = part
        return out

    def predict(self, x: torch.Tensor, rows_per_pass: int = 1024) -> torch.Tensor:
        """Every member's outputs ``[G, N, …]`` on the shared rows ``x`` (eval mode), a slice of rows at a time."""
        self.base.eval()
        try:
            with torch.no_grad():
                return torch.cat([self.forward(x[i:i + rows_per_pass], shared_input=True)
                                  for i in range(0, len(x), rows_per_pass)], dim=1)
        finally:
            self.base.train()

    def state_dict(self, g: int) -> dict[str, torch.Tensor]:
        state = {n: p[g].detach().clone() for n, p in zip(self.names, self.params)}
        state.update({n: b[g].clone() for n, b in zip(self.buffer_names, self.buffers)})
        return state


_IN_PLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_}
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Identity)


def _linear_stack_plan(model: nn.Module, names: Sequence[str]) -> list | None:
    """The layers of a plain MLP — an ``nn.Sequential`` (or :class:`decaylab.models.MLP`) of ``Linear``
    and elementwise activations — as ``(weight index, bias index or None)`` pairs and activation
    modules; ``None`` for any other model (it keeps the vmap forward pass)."""
    from decaylab.models import MLP

    if type(model) is nn.Sequential:
        layers, prefix = model, ""
    elif type(model) is MLP:
        layers, prefix = model.layers, "layers."
    else:
        return None
    position = {name: i for i, name in enumerate(names)}
    plan = []
    for i, layer in enumerate(layers):
        if type(layer) is nn.Linear:
            weight, bias = f"{prefix}{i}.weight", f"{prefix}{i}.bias"
            if weight not in position or (layer.bias is not None) != (bias in position):
                return None
            plan.append((position[weight], position.get(bias)))
        elif type(layer) in _ELEMENTWISE or (type(layer) is nn.Dropout and layer.p == 0):
            plan.append(layer)
        else:
            return None
    if len(position) != sum(1 + (b is not None) for b in (op[1] for op in plan if isinstance(op, tuple))) \
            or not any(isinstance(op, tuple) for op in plan):
        return None
    return plan


def _linear_stack_forward(plan: list, params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Every member's MLP output ``[G, B, out]`` by batched matmuls: ``h ← b_g + h·W_gᵀ`` per Linear
    (``torch.baddbmm`` over members; ``x`` is ``[G, B, in]``, or ``[B, in]`` shared by all), then the
    activations elementwise. The same function as the vmapped ``functional_call``, minus its overhead."""
    h = x
    for op in plan:
        if not isinstance(op, tuple):
            in_place = _IN_PLACE.get(type(op)) if h is not x else None      # a fresh matmul output: one buffer less
            h = op(h) if in_place is None else in_place(h)
            continue
        weight, bias = params[op[0]], (None if op[1] is None else params[op[1]])
        if h.dim() == 2:                                   # input shared by all members
            h = torch.matmul(h, weight.transpose(1, 2))
            h = h if bias is None else h + bias.unsqueeze(1)
        else:
            h = _StackedLinear.apply(h, weight, bias)
    return h


class _StackedLinear(torch.autograd.Function):
    """``y_g = x_g·W_gᵀ + b_g`` for every member g (``x`` ``[G, B, in]``, ``W`` ``[G, out, in]``, ``b`` ``[G, out]``).

    Backward: ``∂W_g = ∂y_gᵀ·x_g`` (computed in ``W``'s own layout, so the optimizer's fused kernel gets
    contiguous gradients), ``∂b_g = Σ_rows ∂y_g``, ``∂x_g = ∂y_g·W_g`` (only when ``x`` needs it)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad_out, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad_out.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_bias = grad_out.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def _padded_epoch(orders: list[torch.Tensor], batch_size: int, steps: int):
    """Per step ``[G, b]`` row indices and ``[G, b]`` weights (1/batch length, 0 on padding)."""
    G = len(orders)
    index = torch.zeros(G, steps * batch_size, dtype=torch.long)
    for g, order in enumerate(orders):
        index[g, :len(order)] = order
        index[g, len(order):] = order[0]               # padding reuses the member's own row, weight 0
    n = torch.tensor([len(order) for order in orders]).unsqueeze(1)           # [G, 1]
    position = torch.arange(steps * batch_size)                                # [S·b]
    batch_start = position // batch_size * batch_size
    batch_length = torch.clamp(n - batch_start, max=batch_size).double()
    weight = torch.where(position < n, 1.0 / batch_length, torch.zeros((), dtype=torch.float64))
    return index.view(G, steps, batch_size), weight.view(G, steps, batch_size)


def _per_member(values: torch.Tensor, param: torch.Tensor):
    """A per-member hyperparameter for ``param`` ``[G, …]``: a Python number when all members share it
    (the functional update then takes its scalar path, as a lone optimizer does), else a tensor
    ``[G, 1, …]`` in ``param``'s dtype that broadcasts over each member's slice."""
    if bool((values == values[0]).all()):
        return values[0].item()
    return values.to(param.dtype).to(param.device).view((-1,) + (1,) * (param.dim() - 1))


class _BatchedOptimizer:
    """Per-member optimizer state and one update step via ``decaylab.optim.functional``."""

    def __init__(self, stacked: _StackedModel, members: Sequence[Member], config: TrainConfig,
                 totals: torch.Tensor):
        self.config = config
        self.params = stacked.params
        self.lr0 = torch.tensor([m.lr for m in members], dtype=torch.float64)
        self.wd = torch.tensor([m.weight_decay for m in members], dtype=torch.float64)
        self.decayed = stacked.decayed
        self.totals = totals
        self.step_count = torch.zeros(len(members), dtype=torch.long)
        if config.is_adam:
            self.exp_avg = [torch.zeros_like(p) for p in self.params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
            self.max_exp_avg_sq = [torch.zeros_like(p) if config.amsgrad else None for p in self.params]
        else:
            self.momentum_buffer = [None for _ in self.params]
        # torch's fused kernel takes one lr and one step count: usable while members share lr (and, for a
        # schedule, their total steps) and have all taken the same number of steps
        shared = bool((self.lr0 == self.lr0[0]).all()) and (config.lr_schedule == "constant"
                                                             or bool((totals == totals[0]).all()))
        self.uniform_steps = 0 if shared else None
        self.wd_stacked = [self.wd.to(p.dtype).to(p.device).view((-1,) + (1,) * (p.dim() - 1)) if d else None
                           for p, d in zip(self.params, self.decayed)]
        self.fused_steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def _state(self) -> list[torch.Tensor | None]:
        if self.config.is_adam:
            return self.params + self.exp_avg + self.exp_avg_sq + self.max_exp_avg_sq
        return self.params + self.momentum_buffer

    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor) -> None:
        """Update every active member; idle members (``active[g]`` False) are left exactly as they were."""
        from decaylab.optim import functional as Fo

        config = self.config
        all_active = bool(active.all())
        if self.uniform_steps is not None and all_active:
            self._fused_step(grads)
            self.uniform_steps += 1
            self.step_count += 1
            return
        self.uniform_steps = None                   # members' step counts may differ from here on
        saved = None if all_active else [None if t is None else t.detach().clone() for t in self._state()]
        mult = lr_multiplier(config.lr_schedule, self.step_count, self.totals)     # float64 [G]
        scale = mult if config.decoupled and config.decay_scaling == "schedule" else None
        step = self.step_count + 1
        first_step = bool((self.step_count == 0).all())
        with torch.no_grad():
            for i, (param, grad) in enumerate(zip(self.params, grads)):
                lr = _per_member(self.lr0 * mult, param)
                wd = _per_member(self.wd, param) if self.decayed[i] else 0.0
                decay_scale = None if scale is None else _per_member(scale, param)
                if config.is_adam:
                    Fo.adam_update_(param, grad, self.exp_avg[i], self.exp_avg_sq[i], self.max_exp_avg_sq[i],
                                    _per_member(step, param), lr=lr, beta1=config.betas[0], beta2=config.betas[1],
                                    eps=config.eps, weight_decay=wd, amsgrad=config.amsgrad,
                                    decoupled=config.decoupled, decay_scale=decay_scale)
                else:
                    self.momentum_buffer[i] = Fo.sgd_update_(
                        param, grad, self.momentum_buffer[i], lr=lr, weight_decay=wd, momentum=config.momentum,
                        dampening=config.dampening, nesterov=config.nesterov, decoupled=config.decoupled,
                        decay_scale=decay_scale, first_step=first_step)
            if saved is not None:
                self._restore_idle(saved, active)
        self.step_count += active.long()

    def _fused_step(self, grads: Sequence[torch.Tensor]) -> None:
        """The same update as the reference path when members share lr and step count: each member's λ
        enters with one op per tensor — coupled ``g ← g + λ_g·w``, decoupled ``w ← (1 − s_t·λ_g)·w`` —
        then torch's fused Adam/SGD kernel (``weight_decay=0``) updates all stacked tensors at once."""
        config = self.config
        mult = float(lr_multiplier(config.lr_schedule, self.uniform_steps, int(self.totals[0])))
        lr = float(self.lr0[0]) * mult
        scale = mult if config.decay_scaling == "schedule" else lr
        with torch.no_grad():
            grads = [g.contiguous() for g in grads]            # the fused kernels read memory in order
            for param, grad, wd in zip(self.params, grads, self.wd_stacked):
                if wd is None:
                    continue
                if config.decoupled:
                    param.mul_(1 - scale * wd)
                else:
                    grad.addcmul_(param, wd)
            if config.is_adam:
                for step in self.fused_steps:
                    step.add_(1)
                torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq,
                                   self.max_exp_avg_sq if config.amsgrad else [], self.fused_steps, lr=lr,
                                   beta1=config.betas[0], beta2=config.betas[1], weight_decay=0.0, eps=config.eps,
                                   amsgrad=config.amsgrad, maximize=False)
            else:
                if config.momentum != 0 and self.momentum_buffer[0] is None:
                    self.momentum_buffer = [torch.zeros_like(p) for p in self.params]
                torch._fused_sgd_(self.params, grads, self.momentum_buffer if config.momentum != 0 else [],
                                  weight_decay=0.0, momentum=config.momentum, lr=lr, dampening=config.dampening,
                                  nesterov=config.nesterov, maximize=False, is_first_step=self.uniform_steps == 0)

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
        model_factory: builds one member's ``nn.Module`` (called after ``torch.manual_seed(seed)``).
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
    X, y = _as_tensors(X, y, config, device)
    members = _check_members(members)
    evals = {name: _as_tensors(ex, ey, config, device) for name, (ex, ey) in (eval_sets or {}).items()}
    G = len(members)
    stacked = _StackedModel(model_factory, members, config, device)
    rows = [_train_rows(m, len(X)) for m in members]
    per_epoch = torch.tensor([_steps_per_epoch(len(r), config.batch_size) for r in rows])
    steps_per_epoch = int(per_epoch.max())
    optimizer = _BatchedOptimizer(stacked, members, config, per_epoch * config.epochs)
    generators = [_shuffle_generator(m.seed) for m in members]
    alive = torch.ones(G, dtype=torch.bool)
    epochs_run = torch.zeros(G, dtype=torch.long)
    for epoch in range(config.epochs):
        orders = [_epoch_order(r, gen) for r, gen in zip(rows, generators)]
        index, weight = _padded_epoch(orders, config.batch_size, steps_per_epoch)
        index, weight = index.to(device), weight.to(config.dtype).to(device)
        for s in range(steps_per_epoch):
            idx, w = index[:, s], weight[:, s]
            losses, grads = _losses_and_grads(stacked, X, y, idx, w, config.loss)
            newly = alive & (s < per_epoch) & ~torch.isfinite(losses).cpu()
            if bool(newly.any()):                 # diverged on this batch: freeze, recompute without them
                _drop(newly, alive, epochs_run, epoch, optimizer)
                losses, grads = _losses_and_grads(stacked, X, y, idx, w, config.loss)
            optimizer.step(grads, alive & (s < per_epoch))
        epochs_run[alive] = epoch + 1
        finite = torch.stack([torch.isfinite(p.detach()).view(G, -1).all(1) for p in stacked.params]).all(0).cpu()
        _drop(alive & ~finite, alive, epochs_run, epoch, optimizer)
        if not bool(alive.any()):
            break
    results = _summarize_batched(stacked, X, y, rows, members, config, evals, alive, epochs_run,
                                 optimizer.step_count, keep_weights)
    per_member = (time.perf_counter() - start) / G
    for r in results:
        r.wall_time = per_member
    return results


def _losses_and_grads(stacked: _StackedModel, X, y, idx: torch.Tensor, weight: torch.Tensor,
                      kind: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each member's batch loss ``[G]`` (detached) and the gradients of their sum w.r.t. the stacked parameters."""
    plan = stacked.linear_stack
    if kind == "cross_entropy" and plan is not None and _is_relu_mlp(plan):
        with torch.no_grad():
            return _relu_mlp_losses_and_grads(plan, stacked.params, X[idx], y[idx], weight)
    losses = _member_losses(stacked, X, y, idx, weight, kind)
    return losses.detach(), list(torch.autograd.grad(losses.sum(), stacked.params))


def _is_relu_mlp(plan: list) -> bool:
    """``Linear (→ ReLU → Linear)*``: the layers :func:`_relu_mlp_losses_and_grads` differentiates by hand."""
    return (len(plan) % 2 == 1 and all(isinstance(op, tuple) for op in plan[::2])
            and all(type(op) is nn.ReLU for op in plan[1::2]))


def _relu_mlp_losses_and_grads(plan: list, params: Sequence[torch.Tensor], x: torch.Tensor, target: torch.Tensor,
                               weight: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Forward and backward of a ReLU MLP with the weighted cross-entropy, by hand (no autograd graph).

    Forward ``h_0 = x``, ``h_k = relu(h_{k−1}·W_kᵀ + b_k)`` (no relu on the last layer, whose output is the
    logits ``z``); ``L_g = Σ_b w_gb·(logsumexp(z_gb) − z_gb[y_gb])``. Backward ``δ = w·(softmax(z) − onehot(y))``
    then per layer from the last: ``∂W_k = δᵀ·h_{k−1}``, ``∂b_k = Σ_rows δ``, ``δ ← (δ·W_k)·𝕀(h_{k−1} > 0)``.
    """
    linears = plan[::2]
    inputs = []
    h = x
    for k, (w_index, b_index) in enumerate(linears):
        inputs.append(h)
        W = params[w_index]
        h = torch.bmm(h, W.transpose(1, 2)) if b_index is None else \
            torch.baddbmm(params[b_index].unsqueeze(1), h, W.transpose(1, 2))
        if k + 1 < len(linears):
            h.relu_()
    lse = h.logsumexp(-1, keepdim=True)
    target = target.unsqueeze(-1)
    losses = ((lse - h.gather(-1, target)).squeeze(-1) * weight).sum(1)
    delta = h.sub_(lse).exp_()
    delta.scatter_add_(-1, target, torch.full_like(target, -1, dtype=delta.dtype))
    delta.mul_(weight.unsqueeze(-1))
    grads: list[torch.Tensor | None] = [None] * len(params)
    for k in range(len(linears) - 1, -1, -1):
        w_index, b_index = linears[k]
        grads[w_index] = torch.bmm(delta.transpose(1, 2), inputs[k])
        if b_index is not None:
            grads[b_index] = delta.sum(1)
        if k > 0:
            delta = torch.bmm(delta, params[w_index])
            # relu's own backward op (δ where h > 0, else 0), written in place: ~30× faster than masked_fill_
            torch.ops.aten.threshold_backward.grad_input(delta, inputs[k], 0, grad_input=delta)
    return losses, grads


def _member_losses(stacked: _StackedModel, X, y, idx: torch.Tensor, weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Each member's batch loss ``[G]``: the weighted sum of its rows' losses (weights 1/batch length, 0 on padding)."""
    if stacked.batch_statistics:                       # issue 11: BatchNorm sees only real rows
        lengths = batch_lengths(weight).cpu()
        if bool((lengths != idx.shape[1]).any()):     # padding rows at this step: real rows only, by length
            return grouped_losses(
                lambda group, L: stacked.forward(X[idx[group, :L]], members=group),
                lambda out, group, L: _weighted_losses(out, y[idx[group, :L]], weight[group, :L], kind),
                lengths, len(idx), weight.dtype, weight.device)
    return _weighted_losses(stacked.forward(X[idx]), y[idx], weight, kind)


def _weighted_losses(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str) -> torch.Tensor:
    """``Σ_b w_gb·loss(out_gb, target_gb)`` per member ``g``."""
    if kind == "cross_entropy":
        return _WeightedCrossEntropy.apply(out, target, weight)
    return (_per_sample_loss(kind, out, target) * weight).sum(1)


class _WeightedCrossEntropy(torch.autograd.Function):
    """``L_g = Σ_b w_gb·(logsumexp(z_gb) − z_gb[y_gb])`` for logits ``z`` ``[G, B, C]``, with the closed-form
    gradient ``∂L_g/∂z_gb = w_gb·(softmax(z_gb) − onehot(y_gb))`` instead of autograd's chain of ops."""

    @staticmethod
    def forward(ctx, logits, target, weight):
        lse = logits.logsumexp(-1, keepdim=True)
        target = target.unsqueeze(-1)
        ctx.save_for_backward(logits, lse, target, weight)
        return ((lse - logits.gather(-1, target)).squeeze(-1) * weight).sum(1)

    @staticmethod
    def backward(ctx, grad_losses):
        logits, lse, target, weight = ctx.saved_tensors
        grad = (logits - lse).exp_()
        grad.scatter_add_(-1, target, torch.full_like(target, -1, dtype=grad.dtype))
        return grad.mul_((weight * grad_losses.unsqueeze(1)).unsqueeze(-1)), None, None


def _drop(newly: torch.Tensor, alive: torch.Tensor, epochs_run: torch.Tensor, epoch: int,
          optimizer: _BatchedOptimizer) -> None:
    """Mark ``newly`` diverged members as dead at ``epoch`` and freeze them."""
    if bool(newly.any()):
        alive &= ~newly
        epochs_run[newly] = epoch + 1
        optimizer.freeze(newly)


def _rows_mean(per_row: torch.Tensor, rows: torch.Tensor | None) -> float:
    if rows is None or len(rows) == 0:
        return float("nan")
    return float(per_row[rows].double().mean())


def _summarize_batched(stacked, X, y, rows, members, config, evals, alive, epochs_run, steps,
                       keep_weights) -> list[MemberResult]:
    nan = float("nan")
    with torch.no_grad():
        out = stacked.predict(X)                                        # [G, N, outputs]
        target = y.expand(len(members), *y.shape)
        per_loss = _per_sample_loss(config.loss, out, target)           # [G, N]
        per_hit = (out.argmax(-1) == target).double() if config.loss == "cross_entropy" else None
        eval_out = {}
        for name, (ex, ey) in evals.items():
            o = stacked.predict(ex)
            t = ey.expand(len(members), *ey.shape)
            eval_out[name] = (_per_sample_loss(config.loss, o, t).double().mean(1), _accuracy(config.loss, o, t))
        sq = sum((p.detach().double() ** 2).view(len(members), -1).sum(1)
                 for p, d in zip(stacked.params, stacked.decayed) if d)
    results = []
    for g, member in enumerate(members):
        evaluated = {name: {"loss": float(l[g]), "accuracy": float(a[g])} for name, (l, a) in eval_out.items()}
        if not bool(alive[g]):
            results.append(MemberResult(nan, nan, nan, nan, int(epochs_run[g]), int(steps[g]), True, 0.0,
                                        {name: {"loss": nan, "accuracy": nan} for name in evals}))
            continue
        val_rows = None if member.val_index is None else torch.tensor(member.val_index, dtype=torch.long)
        val_acc = nan if per_hit is None else _rows_mean(per_hit[g], val_rows)
        result = MemberResult(_rows_mean(per_loss[g], rows[g]), _rows_mean(per_loss[g], val_rows), val_acc,
                              math.sqrt(float(sq[g])) if torch.is_tensor(sq) else 0.0,
                              int(epochs_run[g]), int(steps[g]), False, 0.0, evaluated)
        if keep_weights:
            result.state_dict = stacked.state_dict(g)
        results.append(result)
    return results
