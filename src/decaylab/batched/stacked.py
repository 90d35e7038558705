"""The stacked model: G members' parameters as ``[G, *shape]`` tensors and their forward/backward.

How members are stacked. ``model_factory()`` is called once per member on the global generator
seeded with ``member.seed`` (:func:`decaylab._isolation.isolated`: the caller's generator is left as
it was), so member g starts from exactly the weights it would have alone; a build whose parameter shapes
differ from the first member's is refused (:func:`~decaylab.batched.members.check_same_architecture`).
The G parameter sets are stacked (``torch.func.stack_module_state``) and the forward pass is
``vmap(functional_call(base, params, x))`` over members — for ``Linear`` layers this runs as batched
matmuls, for ``Conv2d`` as grouped convolutions. One backward pass of ``Σ_g loss_g`` gives every member
its own gradient (members share no parameters). Plain MLPs — an ``nn.Sequential`` or
:class:`decaylab.models.MLP` of ``Linear`` layers and elementwise activations — skip vmap: each
``Linear`` is one ``torch.baddbmm`` over members (``StackedLinear``, whose weight gradient ``∂yᵀ·x``
comes out in the weight's layout), and the cross-entropy uses its closed-form gradient
``w·(softmax(z) − onehot(y))`` (``_WeightedCrossEntropy``); a ReLU MLP with the cross-entropy is
differentiated entirely by hand (no autograd graph, ``_relu_mlp_losses_and_grads``).

Which stacked tensors decay: ``config.decayed_names`` (:func:`decaylab.param_groups`' rule) on member
0's model; with ``optimizer="muon"``, which are Muon's: the spec's :class:`~decaylab.optim.MuonRule` on it.
Supported: any model without dropout or recurrent layers (:func:`check_batchable` says why not), BatchNorm
included — its running statistics are buffers stacked ``[G, …]`` per member and updated in place, and each
member's batch statistics come from its own real rows. Any model but a plain MLP may mix the rows of a batch
(BatchNorm, a user's ``x − x.mean(0)``): padding rows never enter its training passes, and its evaluation
passes (:meth:`_StackedModel.predict_rows`) hold one member's rows of one set; which of the paths
(fast, folded, vmap) a model takes: :func:`decaylab.batched.stacked_layers.batch_path`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from decaylab._checks import InputError
from decaylab._isolation import isolated
from decaylab.batched._torch_internals import relu_backward_
from decaylab.batched.members import (
    Member,
    TrainConfig,
    _per_sample_loss,
    check_same_architecture,
    parameter_shapes,
)
from decaylab.batched.stacked_layers import batch_lengths, grouped_losses, groups_by_length
from decaylab.batched.stacked_linear import StackedLinear

__all__ = ["check_batchable"]


def check_batchable(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained by :func:`train_batched` (``None`` if it can)."""
    from decaylab.batched.stacked_layers import (
        unbatchable_reason,  # layers with state (BatchNorm, …)
    )

    return unbatchable_reason(model)


class _StackedModel:
    """G members' parameters stacked as ``[G, *shape]`` leaves, and their vmapped forward pass."""

    def __init__(self, model_factory, members: Sequence[Member], config: TrainConfig, device=None,
                 sample: torch.Tensor | None = None):
        """``sample``: a few input rows the folded path is checked on (:meth:`FoldedModel.check`); without
        them a model that is not a plain MLP takes the vmap path."""
        from decaylab.batched import stacked_layers
        from decaylab.batched.folded import FoldedModel

        models = []
        for member in members:
            with isolated(member.seed):
                models.append(model_factory().to(config.dtype))
            check_same_architecture(model_factory, parameter_shapes(models[0]), models[-1])
        reason = check_batchable(models[0])
        if reason is not None:
            raise InputError(f"model cannot be trained batched: {reason}; use engine='sequential'")
        params, buffers = torch.func.stack_module_state(models)
        self.names = list(params)
        # stack_module_state's tensors are fresh copies: no clone (one copy of the members' weights less)
        self.params = [params[n].detach().to(device).requires_grad_(True) for n in self.names]
        # buffers (BatchNorm running statistics) stacked [G, …] per member, updated in place
        self.buffer_names = list(buffers)
        self.buffers = [buffers[n].detach().clone().to(device) for n in self.buffer_names]
        self.base = copy.deepcopy(models[0]).to("meta")
        decays = config.decayed_names(models[0])
        self.decayed = [decays.get(n, False) for n in self.names]
        self.use_muon = None                       # muon: which stacked tensors are Muon's (MuonRule's split)
        if config.optimizer.name == "muon":
            halves = {d.name: d.use_muon for d in config.optimizer.muon_rule().classify(models[0])}
            self.use_muon = [halves.get(n, False) for n in self.names]
        self.linear_stack = None if self.buffers else _linear_stack_plan(self.base, self.names)
        # any model but a plain MLP (Linear and elementwise layers) may mix the rows of a batch (BatchNorm,
        # a user's x − x.mean(0)): it only ever sees one member's real rows of one set in a pass
        self.rows_independent = self.linear_stack is not None
        self.folded, not_folded = None, "no sample rows to check the folded path on"
        if self.linear_stack is None and sample is not None:
            folded = FoldedModel(self.base, self.names, self.buffer_names)
            not_folded = folded.check(self.base, self.params, self.buffers, sample.to(device)) \
                if folded.layers else "no layer with a folded form"
            self.folded = folded if not_folded is None else None
        self.path = stacked_layers.batch_path(self.base, self.linear_stack is not None,
                                              self.folded, not_folded)
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
        if self.folded is not None:
            out = self.folded.forward(params, buffers, x, shared_input)
        else:
            with self._context():
                out = torch.func.vmap(self._call_one, in_dims=(0, 0, None if shared_input else 0))(params, buffers, x)
        if members is not None:
            with torch.no_grad():
                for full, part in zip(self.buffers, buffers):
                    full[members] = part
        return out

    def predict(self, x: torch.Tensor, rows_per_pass: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Every member's outputs ``[G, N, …]`` on the shared rows ``x`` (eval mode), ``rows_per_pass`` rows
        at a time. ``offsets`` ``[G]``: member g reads its own ``N`` rows ``x[offsets[g]:offsets[g] + N]`` instead
        (``x`` holds one block of ``N`` rows per distinct offset: the members' standardized copies)."""
        n = len(x) if offsets is None else len(x) // len(torch.unique(offsets))
        self._train(False)
        try:
            with torch.no_grad():
                if offsets is None:
                    passes = [self.forward(x[i:i + rows_per_pass], shared_input=True)
                              for i in range(0, n, rows_per_pass)]
                else:
                    offsets = offsets.to(x.device).unsqueeze(1)
                    passes = [self.forward(x[offsets + torch.arange(i, min(i + rows_per_pass, n), device=x.device)])
                              for i in range(0, n, rows_per_pass)]
                return torch.cat(passes, dim=1)
        finally:
            self._train(True)

    def predict_rows(self, x: torch.Tensor, rows: Sequence[torch.Tensor], rows_per_pass: int) -> torch.Tensor:
        """Every member's outputs ``[G, L, …]`` on its own rows ``rows[g]`` of ``x`` (eval mode; ``L`` the longest;
        member g's first ``len(rows[g])`` outputs are its rows', the rest zeros), in passes of ``rows_per_pass``
        consecutive rows of each member's list. A pass holds member g's rows only: members whose pass is
        shorter (their last) run apart, grouped by length, so no padding row and no other member's row enters
        a forward pass of a model that may mix rows (a plain MLP, whose rows are independent, takes the
        padded pass at once)."""
        G, lengths = len(rows), torch.tensor([len(r) for r in rows])
        index = torch.zeros(G, max(1, int(lengths.max())), dtype=torch.long)
        for g, r in enumerate(rows):
            index[g, :len(r)] = r.cpu()
        index = index.to(x.device)
        out = None
        self._train(False)
        try:
            with torch.no_grad():
                for start in range(0, int(lengths.max()), rows_per_pass):
                    pass_lengths = torch.clamp(lengths - start, 0, rows_per_pass)
                    stop = start + int(pass_lengths.max())
                    if self.rows_independent or bool((pass_lengths == pass_lengths[0]).all()):
                        parts = [(None, self.forward(x[index[:, start:stop]]))]
                    else:
                        parts = [(group, self.forward(x[index[group.to(x.device), start:start + length]],
                                                      members=group.to(x.device)))
                                 for length, group in groups_by_length(pass_lengths)]
                    for group, part in parts:
                        if out is None:
                            out = torch.zeros((G, index.shape[1]) + part.shape[2:], dtype=part.dtype,
                                              device=part.device)
                        where = slice(None) if group is None else group.to(part.device)
                        out[where, start:start + part.shape[1]] = part
        finally:
            self._train(True)
        return out

    def _train(self, mode: bool) -> None:
        self.base.train(mode)
        if self.folded is not None:
            self.folded.train(mode)

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
    from decaylab.models import sequential_layers

    plain = sequential_layers(model)
    if plain is None:
        return None
    layers, prefix = plain
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
            h = StackedLinear.apply(h, weight, bias)
    return h


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
            relu_backward_(delta, inputs[k])
    return losses, grads


def _member_losses(stacked: _StackedModel, X, y, idx: torch.Tensor, weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Each member's batch loss ``[G]``: the weighted sum of its rows' losses (weights 1/batch length, 0 on padding)."""
    if not stacked.rows_independent:                   # a model that may mix rows sees only real rows
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

