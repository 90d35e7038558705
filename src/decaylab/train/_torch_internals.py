"""The only place the trainer calls semi-internal torch ops (not part of torch's documented API).

Tested with torch 2.13.0 (the version constraints.txt pins); on another torch these signatures
may change. Each wrapper says what it computes, so a replacement can be written from the docstring:

- :func:`fused_adam_`: ``torch._fused_adam_`` — Adam (λ = 0) on lists of tensors, one kernel;
- :func:`fused_sgd_`: ``torch._fused_sgd_`` — SGD with momentum/dampening/nesterov (λ = 0);
- :func:`relu_backward_`: ``aten.threshold_backward.grad_input`` — ReLU's backward in place.

(decaylab.optim's own uses of private ``torch.optim.optimizer`` helpers — ``_default_to_fused_or_foreach``,
``_use_grad_for_differentiable``, ``_get_scalar_dtype``, ``_to_scalar`` — are the optimizer classes'
torch-compatibility layer and sit with them.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["fused_adam_", "fused_sgd_", "relu_backward_"]


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
