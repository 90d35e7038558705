"""Which path a model takes through the batched trainer, and the layers with per-member state or batch statistics.

Paths (:func:`batch_path`), fastest first:

- ``fast``: a plain MLP (``nn.Sequential``/:class:`decaylab.models.MLP` of ``Linear`` and elementwise
  activations) — every ``Linear`` is one ``torch.baddbmm`` over members, backward by hand;
- ``folded``: a model whose layers with parameters have folded forms (conv, BatchNorm, Linear, LayerNorm/
  RMSNorm, embedding, attention; :mod:`decaylab.batched.folded`) — members folded into the batch dimension,
  the user's forward run once on it, as grouped convolutions, batched matmuls and one BatchNorm over
  members × channels; taken when it reproduces every member alone on sample rows;
- ``vmap``: any other model of supported layers — ``vmap(functional_call(base, (params, buffers), x))``
  over members, whose batching rules run ``Conv{1,2,3}d`` as one grouped convolution (members folded
  into channel groups), ``Linear``/attention products as batched matmuls, ``Embedding`` as one gather,
  ``LayerNorm``/``RMSNorm``/``BatchNorm`` per member. Attention: ``scaled_dot_product_attention`` has no
  vmap batching rule (vmap would loop over members), so inside the stacked forward it is computed as
  ``softmax(q·kᵀ/√d + mask)·v`` by batched matmuls (:func:`stacked_attention`);
- ``sequential``: a model with random layers (dropout: a member's masks would differ from its run
  alone) or recurrent layers (flat cuDNN weights) — the reason names the layer.

BatchNorm (``_BatchNorm``): its running statistics are buffers, stacked ``[G, C]`` like the parameters
and updated in place by each member's own batch statistics (vmap's batch-norm rule); evaluation switches
the base module to eval mode so each member normalizes with its own running statistics. A model that may
mix the rows of a batch (any but a plain MLP: BatchNorm, a user's ``x − x.mean(0)``) must see only a
member's real rows: at a step where members' batches differ in length (the last batch of an epoch over
folds of different sizes) or some members are idle, :func:`grouped_losses` runs the members in groups of
equal batch length on their real rows only, so every member equals its run alone.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

PATHS = ("fast", "folded", "vmap", "sequential")

_VMAP_LAYERS = "conv, BatchNorm, embedding, LayerNorm/RMSNorm, attention"


@dataclass(frozen=True)
class BatchPath:
    """The path a model takes (one of :data:`PATHS`) and why, in one line."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def unbatchable_reason(model: nn.Module) -> str | None:
    """Why ``model`` must train one member at a time (``None`` if the batched trainer takes it)."""
    for name, module in model.named_modules():
        where = name or "model"
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"{where} is {type(module).__name__}(p={module.p}) (random masks differ from a run alone)"
        if isinstance(module, nn.MultiheadAttention) and module.dropout > 0:
            return f"{where} is MultiheadAttention(dropout={module.dropout}) (random masks differ from a run alone)"
        if isinstance(module, nn.RNNBase):
            return f"{where} is {type(module).__name__} (recurrent layers are not stacked)"
    return None


def batch_path(model: nn.Module, is_plain_mlp: bool, folded=None, not_folded: str | None = None) -> BatchPath:
    """The path ``model`` takes; ``is_plain_mlp``: the trainer found a fast-path plan for it; ``folded``: its
    :class:`~decaylab.batched.folded.FoldedModel` (``None``: not folded, because ``not_folded``)."""
    reason = unbatchable_reason(model)
    if reason is not None:
        return BatchPath("sequential", reason)
    if is_plain_mlp:
        return BatchPath("fast", "plain MLP: one batched matmul per Linear over members, backward by hand")
    if folded is not None:
        return BatchPath("folded", f"{', '.join(folded.layers)}: members folded into the batch "
                                   f"({', '.join(folded.how)})")
    kinds = sorted({type(m).__name__ for m in model.modules() if _is_notable(m)})
    what = ", ".join(kinds) if kinds else "layers without a hand-written stacked form"
    why = f"; not folded: {not_folded}" if not_folded else ""
    return BatchPath("vmap", f"{what}: vmap over members (grouped convolutions, batched matmuls, "
                             f"per-member norm statistics){why}")


def _is_notable(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.Embedding,
                               nn.LayerNorm, nn.MultiheadAttention, nn.TransformerEncoderLayer,
                               getattr(nn, "RMSNorm", nn.LayerNorm)))


# -- attention by batched matmuls inside the stacked forward --------------------------------------

def stacked_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                      enable_gqa=False):
    """``scaled_dot_product_attention`` as ``softmax(q·kᵀ·s + mask)·v`` (``s = scale or 1/√d``), by ops
    that vmap batches over members (``torch.matmul``, ``softmax``); dropout is never on here."""
    if dropout_p:
        raise ValueError("stacked attention runs without dropout (the batched trainer refuses dropout)")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        L, S = query.shape[-2], key.shape[-2]
        keep = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask
    return torch.matmul(scores.softmax(-1), value)


@contextlib.contextmanager
def stacked_forward_context(model: nn.Module):
    """Around a vmapped forward of a model with attention: ``F.scaled_dot_product_attention`` (looked up
    by ``multi_head_attention_forward`` and user code at call time) is :func:`stacked_attention`, and the
    fused fast path of ``nn.TransformerEncoderLayer``/``MultiheadAttention`` (no vmap rule either) is off.
    Both are process-wide settings, restored on exit: do not run other attention in other threads meanwhile."""
    uses_attention = any(isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer,
                                        nn.TransformerDecoderLayer)) for m in model.modules())
    if not uses_attention:
        yield
        return
    fastpath = torch.backends.mha.get_fastpath_enabled()
    original = F.scaled_dot_product_attention
    torch.backends.mha.set_fastpath_enabled(False)
    F.scaled_dot_product_attention = stacked_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        torch.backends.mha.set_fastpath_enabled(fastpath)


# -- members of different batch lengths under batch statistics -----------------------------------

def batch_lengths(weight: torch.Tensor) -> torch.Tensor:
    """Each member's real rows at this step (``[G]``; padding rows have weight 0)."""
    return (weight > 0).sum(1)


def groups_by_length(lengths: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``(L, members)`` for each distinct length ``L > 0`` of ``lengths`` ``[G]``, shortest first."""
    return [(length, torch.nonzero(lengths == length).squeeze(1)) for length in sorted(set(lengths.tolist()))
            if length > 0]


def grouped_losses(forward_group, losses_of, lengths: torch.Tensor, G: int, dtype, device) -> torch.Tensor:
    """Each member's batch loss ``[G]`` when members' batch lengths differ: every group of members with the
    same length ``L > 0`` runs ``forward_group(members, L)`` on its first ``L`` rows (its real rows) and
    ``losses_of`` turns that into the group's losses; idle members (``L = 0``) get 0 and no forward pass, so
    no padding row ever enters a batch statistic."""
    losses = torch.zeros(G, dtype=dtype, device=device)
    for length, group in groups_by_length(lengths):
        losses = losses.index_put((group.to(device),), losses_of(forward_group(group, length), group, length))
    return losses
