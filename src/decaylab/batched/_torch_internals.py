"""The only place the trainer calls semi-internal torch ops (not part of torch's documented API).

Tested with torch 2.13.0 (the version constraints.txt pins); on another torch these signatures
may change. Each wrapper says what it computes, so a replacement can be written from the docstring:

- :func:`fused_adam_`: ``torch._fused_adam_`` — Adam (λ = 0) on lists of tensors, one kernel;
- :func:`fused_sgd_`: ``torch._fused_sgd_`` — SGD with momentum/dampening/nesterov (λ = 0);
- :func:`relu_backward_`: ``aten.threshold_backward.grad_input`` — ReLU's backward in place;
- :func:`attention`: ``torch._C._nn.scaled_dot_product_attention`` — softmax(q·kᵀ/√d + mask)·v, the C op
  behind ``F.scaled_dot_product_attention`` (the folded path's attention);
- :func:`canonical_mask`, :func:`none_or_dtype`: ``F._canonical_mask``, ``F._none_or_dtype`` — the mask
  handling of ``F.multi_head_attention_forward``, so the folded attention reads masks exactly as torch's.

(decaylab.optim's own uses of private ``torch.optim.optimizer`` helpers — ``_default_to_fused_or_foreach``,
``_use_grad_for_differentiable``, ``_get_scalar_dtype``, ``_to_scalar`` — are the optimizer classes'
torch-compatibility layer and sit with them.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

__all__ = ["attention", "canonical_mask", "fused_adam_", "fused_sgd_", "none_or_dtype", "relu_backward_"]


def fused_adam_(params: Sequence[torch.Tensor], grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *,
                lr: float, betas: tuple[float, float], eps: float, amsgrad: bool) -> None:
    """One Adam step (no weight decay) on every tensor; ``steps`` already hold this step's 1-based count."""
    torch._fused_adam_(list(params), list(grads), exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr=lr,
                       beta1=betas[0], beta2=betas[1], weight_decay=0.0, eps=eps, amsgrad=amsgrad,
                       maximize=False)


def fused_sgd_(params: Sequence[torch.Tensor], grads, momentum_buffers, *, lr: float, momentum: float,
               dampening: float, nesterov: bool, first_step: bool) -> None:
    """One SGD step (no weight decay) on every tensor; ``momentum_buffers`` is ``[]`` without momentum."""
    torch._fused_sgd_(list(params), list(grads), momentum_buffers, weight_decay=0.0, momentum=momentum, lr=lr,
                      dampening=dampening, nesterov=nesterov, maximize=False, is_first_step=first_step)


def relu_backward_(grad: torch.Tensor, relu_input_or_output: torch.Tensor) -> torch.Tensor:
    """``grad ← grad·𝕀(h > 0)`` in place (ReLU's own backward op; ~30× faster than ``masked_fill_``)."""
    return torch.ops.aten.threshold_backward.grad_input(grad, relu_input_or_output, 0, grad_input=grad)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
              is_causal: bool) -> torch.Tensor:
    """softmax(q·kᵀ/√d + mask)·v over the last two dimensions (no dropout; causal when ``is_causal``)."""
    return torch._C._nn.scaled_dot_product_attention(q, k, v, mask, 0.0, is_causal)


def canonical_mask(mask: torch.Tensor | None, mask_name: str, other_type, other_name: str, target_type: torch.dtype,
                   check_other: bool = True) -> torch.Tensor | None:
    """``mask`` as ``F.multi_head_attention_forward`` uses it: a boolean mask as an additive float mask of
    ``target_type`` (−inf where True), a float mask checked against ``other_type`` (the other mask's dtype)."""
    return F._canonical_mask(mask=mask, mask_name=mask_name, other_type=other_type, other_name=other_name,
                             target_type=target_type, check_other=check_other)


def none_or_dtype(mask: torch.Tensor | None):
    """``mask``'s dtype, or ``None`` without a mask (what :func:`canonical_mask` takes as ``other_type``)."""
    return F._none_or_dtype(mask)
