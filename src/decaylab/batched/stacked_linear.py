"""One ``Linear`` per member as a single batched matmul, with the weight gradient in the weight's layout."""

from __future__ import annotations

import torch


class StackedLinear(torch.autograd.Function):
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
