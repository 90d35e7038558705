"""The folded path: G members run as one model whose batch holds every member's rows.

Layout. A step's input ``[G, B, …]`` (member g's B rows) becomes one batch of ``N = G·B`` rows (members
folded into the batch dimension) and the user's own ``forward`` runs once on it, with every layer that has
parameters swapped for its folded form (a subclass with the same attributes whose parameters are the
stacked ``[G, *shape]`` tensors). Rows are member-minor (row ``b·G + g``) in a model with convolutions or
BatchNorm, whose folded forms need the members next to the channels, and member-major (row ``g·B + b``)
otherwise, where every per-member matmul then reads its rows as a view:

- ``Conv{1,2,3}d``: the ``[B·G, C, …]`` batch viewed as ``[B, G·C, …]`` is one grouped convolution with
  ``G·groups`` groups and weight ``[G·C_out, C_in/groups, k…]`` — no copy in or out;
- ``BatchNorm{1,2,3}d``: ``[B, G·C, …]`` is one ``F.batch_norm`` over ``G·C`` channels, so each member's
  statistics are over its own rows and its running statistics (the stacked ``[G, C]`` buffers, viewed
  flat) are updated in place, exactly as alone;
- ``Linear`` (and attention projections): rows as ``[G, B·…, in]`` (a view member-major, a copy
  member-minor) and one ``baddbmm`` over members (``StackedLinear``: the weight gradient in its layout);
- ``LayerNorm``/``RMSNorm``: normalization per row, then each member's affine ``y·w_g + b_g``;
- ``Embedding``: member g's ids offset by ``g·V`` into the ``[G·V, d]`` table, one gather;
- ``MultiheadAttention``: one fused QKV projection over members, then attention on the folded batch —
  ``scaled_dot_product_attention`` on ``[N, heads, T, d_head]`` (members × heads × rows as its batch,
  torch's fused kernel; the explicit softmax when the weights are asked for) — and the output projection.

Everything else in the model (activations, pooling, reshapes, ``TransformerEncoderLayer``'s own forward,
the user's code) already acts row by row and runs unchanged. A parameter of any other module (e.g. a
learned position embedding used directly in ``forward``) is passed as its per-row copy ``[N, *shape]``
(member g's value on its rows); a buffer of another module is passed as member 0's (the same constant in
every member). Whether that reproduces the model is not assumed: :meth:`FoldedModel.check` runs the folded
forward on a few rows per member — distinct rows and perturbed weights, so members differ — against each
member's own model (train mode, then eval mode) and the trainer falls back to vmap if it raises or differs.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from decaylab._checks import error_line
from decaylab.batched._torch_internals import attention, canonical_mask, none_or_dtype
from decaylab.batched.stacked_linear import StackedLinear


class _Fold:
    """How the current forward pass is folded (set by :class:`FoldedModel` per call): ``groups`` members,
    rows member-major (``g·B + b``) or member-minor (``b·G + g``). Process-wide: one folded forward at a time."""

    groups = 1
    member_major = False


def _by_member(x: torch.Tensor, G: int) -> torch.Tensor:
    """The folded rows ``[N, …]`` as ``[G, N/G, …]`` (a view member-major, a strided view member-minor)."""
    if _Fold.member_major:
        return x.reshape(G, -1, *x.shape[1:])
    return x.reshape(-1, G, *x.shape[1:]).transpose(0, 1)


def _folded(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_by_member`: ``[G, B, …]`` → folded rows ``[N, …]``."""
    if _Fold.member_major:
        return y.reshape(-1, *y.shape[2:])
    return y.transpose(0, 1).reshape(-1, *y.shape[2:])


def _members_first(x: torch.Tensor, G: int) -> torch.Tensor:
    """Folded ``[N, …, d]`` → ``[G, (N/G)·…, d]``: each member's rows together, for a batched matmul
    (a view member-major, a copy member-minor)."""
    return _by_member(x, G).reshape(G, -1, x.shape[-1])


def _rows_first(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_members_first` for an output ``[G, (N/G)·…, d_out]`` of rows shaped like ``like``."""
    return _folded(y.view(y.shape[0], -1, *like.shape[1:-1], y.shape[-1]))


def folded_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``y = x·W_gᵀ + b_g`` on each member's rows of the folded batch ``x`` (``W`` ``[G, out, in]``)."""
    return _rows_first(StackedLinear.apply(_members_first(x, weight.shape[0]), weight, bias), x)


def _per_member_affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                       G: int) -> torch.Tensor:
    """``y·w_g + b_g`` on member g's rows; ``w``, ``b`` ``[G, *normalized_shape]``."""
    affine = weight if weight is not None else bias
    if affine is None:
        return y
    rows = _by_member(y, G)                                              # [G, B, …, *normalized_shape]
    shape = (G, 1) + (1,) * (y.dim() - affine.dim()) + tuple(affine.shape[1:])
    if weight is None:
        return _folded(rows + bias.view(shape))
    if bias is None:
        return _folded(rows * weight.view(shape))
    return _folded(torch.addcmul(bias.view(shape), rows, weight.view(shape)))


class FoldedLinear(nn.Linear):
    def forward(self, x):
        return folded_linear(x, self.weight, self.bias)


class _FoldedConv:
    def forward(self, x):
        G = self.weight.shape[0]
        weight = self.weight.reshape(-1, *self.weight.shape[2:])                 # [G·C_out, C_in/groups, k…]
        bias = None if self.bias is None else self.bias.reshape(-1)
        rows = x.reshape(-1, G * x.shape[1], *x.shape[2:])                        # [B, G·C_in, …]
        padding = self.padding
        if self.padding_mode != "zeros":
            rows = F.pad(rows, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        conv = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
        out = conv(rows, weight, bias, self.stride, padding, self.dilation, G * self.groups)
        return out.reshape(x.shape[0], -1, *out.shape[2:])


class FoldedConv1d(_FoldedConv, nn.Conv1d):
    pass


class FoldedConv2d(_FoldedConv, nn.Conv2d):
    pass


class FoldedConv3d(_FoldedConv, nn.Conv3d):
    pass


class _FoldedBatchNorm:
    def forward(self, x):
        G = _Fold.groups
        self._check_input_dim(x)
        momentum = self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        rows = x.reshape(-1, G * x.shape[1], *x.shape[2:])                        # [B, G·C, …]
        out = F.batch_norm(rows, _flat(self.running_mean) if keep else None,
                           _flat(self.running_var) if keep else None, _flat(self.weight), _flat(self.bias),
                           use_batch, momentum, self.eps)
        return out.reshape(x.shape)


def _flat(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.reshape(-1)


class FoldedBatchNorm1d(_FoldedBatchNorm, nn.BatchNorm1d):
    pass


class FoldedBatchNorm2d(_FoldedBatchNorm, nn.BatchNorm2d):
    pass


class FoldedBatchNorm3d(_FoldedBatchNorm, nn.BatchNorm3d):
    pass


class FoldedLayerNorm(nn.LayerNorm):
    def forward(self, x):
        y = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        return _per_member_affine(y, self.weight, self.bias, _Fold.groups)


class FoldedEmbedding(nn.Embedding):
    def forward(self, x):
        G, V = self.weight.shape[0], self.weight.shape[1]
        row = torch.arange(x.shape[0], device=x.device)
        member = row // (x.shape[0] // G) if _Fold.member_major else row % G
        offset = (member * V).view(-1, *(1,) * (x.dim() - 1))
        return F.embedding(x + offset, self.weight.reshape(G * V, -1))


class FoldedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` on the folded batch; same arguments and results (see the module docstring)."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if query.dim() != 3:
            raise ValueError("the folded path takes batched attention inputs only")
        self_attention = query is key and key is value
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        N, T, E = query.shape
        H = self.num_heads
        W, b = self.in_proj_weight, self.in_proj_bias
        if self_attention:
            q, k, v = folded_linear(query, W, b).chunk(3, dim=-1)
        else:
            parts = [(W[:, i * E:(i + 1) * E], None if b is None else b[:, i * E:(i + 1) * E]) for i in range(3)]
            q, k, v = (folded_linear(t, w, bb) for t, (w, bb) in zip((query, key, value), parts))
        q, k, v = (t.reshape(N, -1, H, E // H).transpose(1, 2) for t in (q, k, v))   # [N, H, T or S, d_head]
        mask, is_causal = _attention_mask(key_padding_mask, attn_mask, is_causal, need_weights, query.dtype, N, H)
        if need_weights:
            scores = (q * math.sqrt(1.0 / (E // H))) @ k.transpose(-2, -1)
            weights = (scores if mask is None else scores + mask).softmax(-1)
            out = weights @ v
            weights = weights.mean(1) if average_attn_weights else weights
        else:
            out = attention(q, k, v, mask, is_causal)
            weights = None
        out = folded_linear(out.transpose(1, 2).reshape(N, T, E), self.out_proj.weight, self.out_proj.bias)
        return (out if self.batch_first else out.transpose(0, 1)), weights


def _attention_mask(key_padding_mask, attn_mask, is_causal, need_weights, dtype, N, H):
    """The additive mask ``[N or 1, H or 1, T, S]`` and causal flag ``F.multi_head_attention_forward`` would use."""
    key_padding_mask = canonical_mask(mask=key_padding_mask, mask_name="key_padding_mask",
                                      other_type=none_or_dtype(attn_mask), other_name="attn_mask", target_type=dtype)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint")
    if is_causal and key_padding_mask is None and not need_weights:
        return None, True
    attn_mask = canonical_mask(mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="",
                               target_type=dtype, check_other=False)
    if attn_mask is not None:
        attn_mask = attn_mask.view(1, 1, *attn_mask.shape) if attn_mask.dim() == 2 else \
            attn_mask.view(N, H, *attn_mask.shape[1:])
    if key_padding_mask is not None:
        padding = key_padding_mask.view(N, 1, 1, -1)
        attn_mask = padding if attn_mask is None else attn_mask + padding
    return attn_mask, False


FOLDED = {nn.Linear: FoldedLinear, nn.Conv1d: FoldedConv1d, nn.Conv2d: FoldedConv2d, nn.Conv3d: FoldedConv3d,
          nn.BatchNorm1d: FoldedBatchNorm1d, nn.BatchNorm2d: FoldedBatchNorm2d, nn.BatchNorm3d: FoldedBatchNorm3d,
          nn.LayerNorm: FoldedLayerNorm, nn.Embedding: FoldedEmbedding, nn.MultiheadAttention: FoldedMultiheadAttention}
if hasattr(nn, "RMSNorm"):
    class FoldedRMSNorm(nn.RMSNorm):
        def forward(self, x):
            y = F.rms_norm(x, self.normalized_shape, None, self.eps)
            return _per_member_affine(y, self.weight, None, _Fold.groups)

    FOLDED[nn.RMSNorm] = FoldedRMSNorm


def _foldable(module: nn.Module) -> bool:
    """Whether ``module`` is swapped for its folded form (exact type; the options the folded forms implement)."""
    kind = type(module)
    if kind not in FOLDED:
        return False
    if isinstance(module, nn.Embedding):
        return module.padding_idx is None and module.max_norm is None and not module.sparse
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.momentum is not None              # a cumulative average would need one count per member
    if isinstance(module, nn.MultiheadAttention):
        return module._qkv_same_embed_dim and module.bias_k is None and not module.add_zero_attn
    if isinstance(module, nn.modules.conv._ConvNd):
        return not module.transposed
    return True


class FoldedModel:
    """The base model with its layers swapped for their folded forms, run on stacked parameters and buffers."""

    def __init__(self, base: nn.Module, names, buffer_names):
        self.model = copy.deepcopy(base)
        self.owned = set()                      # names of tensors that belong to a folded layer
        for prefix, module in list(self.model.named_modules()):
            if not _foldable(module):
                continue
            folded = FOLDED[type(module)].__new__(FOLDED[type(module)])
            folded.__dict__ = module.__dict__.copy()
            if prefix:
                parent, _, child = prefix.rpartition(".")
                setattr(self.model.get_submodule(parent), child, folded)
            else:
                self.model = folded
            self.owned.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters())
            self.owned.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_buffers())
        self.names, self.buffer_names = list(names), list(buffer_names)
        self.layers = sorted({type(m).__name__ for m in base.modules() if _foldable(m)})
        how = {"Conv": "grouped convolutions", "BatchNorm": "one BatchNorm over members × channels",
               "Linear": "batched matmuls", "MultiheadAttention": "attention over members × heads",
               "Embedding": "one embedding gather", "LayerNorm": "per-member norm weights",
               "RMSNorm": "per-member norm weights"}
        self.how = list(dict.fromkeys(text for key, text in how.items() if any(key in n for n in self.layers)))
        # member-major rows make every per-member matmul a view; grouped convolutions and BatchNorm need member-minor
        self.member_major = not any(isinstance(m, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm))
                                    for m in base.modules())

    def forward(self, params, buffers, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        """Every member's output ``[G, B, …]``; ``x`` is ``[G, B, …]`` or ``[B, …]`` shared by all members."""
        G = params[0].shape[0] if params else buffers[0].shape[0]
        B = x.shape[0] if shared_input else x.shape[1]
        _Fold.groups, _Fold.member_major = G, self.member_major
        rows = _folded(x.unsqueeze(0).expand(G, *x.shape) if shared_input else x)
        tensors = {n: self._as_passed(n, t, B, is_buffer=False) for n, t in zip(self.names, params)}
        tensors.update({n: self._as_passed(n, t, B, is_buffer=True) for n, t in zip(self.buffer_names, buffers)})
        with _no_fused_attention():
            out = torch.func.functional_call(self.model, tensors, (rows,))
        return _by_member(out, G)

    def _as_passed(self, name: str, t: torch.Tensor, B: int, is_buffer: bool) -> torch.Tensor:
        """A folded layer's tensor as stacked; another module's buffer as member 0's; another module's
        parameter ``[G, *shape]`` as its per-row copy ``[N, *shape]``."""
        if name in self.owned:
            return t
        if is_buffer:
            return t[0]
        return _folded(t.unsqueeze(1).expand(t.shape[0], B, *t.shape[1:]))

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def check(self, base: nn.Module, params, buffers, sample: torch.Tensor, rows: int = 4) -> str | None:
        """Why the folded forward does not reproduce each member's own model on ``sample`` rows (``None``: it does).

        Member g gets ``rows`` rows drawn from ``sample`` and its weights scaled by ``1 + U(−½, ½)`` noise
        (members then differ even when they start equal); outputs are compared in train mode (batch
        statistics, running statistics updated) and then in eval mode, in float64 to 1e-9, else to 1e-4."""
        G = params[0].shape[0] if params else buffers[0].shape[0]
        gen = torch.Generator().manual_seed(0)
        pick = torch.randint(0, len(sample), (G, rows), generator=gen).to(sample.device)
        x = sample[pick]
        with torch.no_grad():
            params = [p * (1 + (torch.rand(p.shape, generator=gen, dtype=p.dtype) - 0.5).to(p.device))
                      for p in params]
        folded_buffers = [b.clone() for b in buffers]
        alone_buffers = [b.clone() for b in buffers]
        dtype = next((p.dtype for p in params), torch.float32)
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        try:
            with torch.no_grad():
                for training in (True, False):
                    base.train(training)
                    self.train(training)
                    got = self.forward(params, folded_buffers, x)
                    for g in range(G):
                        state = {**{n: p[g] for n, p in zip(self.names, params)},
                                 **{n: b[g] for n, b in zip(self.buffer_names, alone_buffers)}}
                        with _no_fused_attention():
                            want = torch.func.functional_call(base, state, (x[g],))
                        if got[g].shape != want.shape:
                            return f"gave outputs {tuple(got[g].shape)} instead of {tuple(want.shape)}"
                        if not torch.allclose(got[g], want, rtol=tol, atol=tol):
                            return f"differed from member {g} alone by {float((got[g] - want).abs().max()):.2g}"
        except Exception as exc:                          # noqa: BLE001 — any failure means: not this path
            return f"raised {error_line(exc)}"
        finally:
            base.train()
            self.train()
        return None


@contextlib.contextmanager
def _no_fused_attention():
    """``nn.TransformerEncoderLayer``/``MultiheadAttention``'s fused inference kernel reads the weights as one
    model's; it is off around a folded forward (a process-wide setting, restored on exit)."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)
