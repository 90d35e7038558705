"""Find explicit L2 penalties on parameters in a loss's autograd graph (for the doctor's double-decay check).

An L2 term written into the loss — ``λ·Σ w²``, ``w.pow(2).sum()``, ``(w*w).sum()``, ``w.norm()**2``,
``torch.linalg.vector_norm(w)``, :func:`decaylab.l2_penalty`, or any of these over
``torch.cat([w.view(-1) …])`` — leaves a node in the graph whose input is the parameter itself, reached
from the parameter's ``AccumulateGrad`` leaf through shape-only operations (view, reshape, flatten,
transpose, cat, stack, clone, dtype casts). The data path never does that: parameters enter it through
matrix products, convolutions, lookups and elementwise ops with activations. So the walk is:

1. collect every node of the graph of ``loss`` (breadth first from ``loss.grad_fn``);
2. for each squaring node — ``PowBackward0`` with exponent 2, a 2-norm (``LinalgVectorNormBackward0``
   with ord 2, ``NormBackward*`` with p 2), ``MulBackward0``/``DotBackward0`` whose two inputs reach the
   same parameter — follow its inputs down through shape-only nodes to ``AccumulateGrad`` leaves;
3. the parameters found are explicitly penalized.

No forward or backward pass is run; the graph is only read (``loss`` must not have been freed by a
``backward()`` without ``retain_graph`` — the nodes are still there then, and so this still works).
"""

from __future__ import annotations

from collections import deque

import torch

from decaylab._checks import InputError, InputTypeError

__all__ = ["l2_penalized_parameters"]

_SHAPE_ONLY = ("ViewBackward", "ReshapeAlias", "UnsafeViewBackward", "TBackward", "TransposeBackward",
               "PermuteBackward", "CatBackward", "StackBackward", "CloneBackward", "ToCopyBackward",
               "SqueezeBackward", "UnsqueezeBackward", "ExpandBackward", "SelectBackward", "SliceBackward",
               "AliasBackward", "ContiguousBackward")


def _kind(node) -> str:
    return type(node).__name__


def _is_shape_only(node) -> bool:
    return _kind(node).startswith(_SHAPE_ONLY)


def _leaves_through_shape_ops(node) -> set[int]:
    """ids of the parameters reached from ``node`` (itself an input) through shape-only nodes."""
    found, todo, seen = set(), [node], set()
    while todo:
        n = todo.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        if _kind(n) == "AccumulateGrad":
            found.add(id(n.variable))
        elif _is_shape_only(n):
            todo.extend(child for child, _ in n.next_functions)
    return found


def _squares(node) -> bool:
    """Whether ``node`` squares (or takes the 2-norm of) its single input."""
    kind = _kind(node)
    if kind == "PowBackward0":
        return float(getattr(node, "_saved_exponent", 0)) == 2.0
    if kind == "LinalgVectorNormBackward0":
        return float(getattr(node, "_saved_ord", 0)) == 2.0
    if kind.startswith("NormBackward"):
        p = getattr(node, "_saved_p", 2)
        return p is None or float(p) == 2.0
    return False


def _penalized_by(node) -> set[int]:
    """Parameters ``node`` puts an L2 term on (empty for any other node)."""
    inputs = [child for child, _ in node.next_functions]
    if _squares(node):
        return set().union(*(_leaves_through_shape_ops(c) for c in inputs)) if inputs else set()
    if _kind(node) in ("MulBackward0", "DotBackward0") and len(inputs) == 2 and None not in inputs:
        return _leaves_through_shape_ops(inputs[0]) & _leaves_through_shape_ops(inputs[1])
    return set()


def l2_penalized_parameters(loss: torch.Tensor, params) -> list[torch.Tensor]:
    """The tensors of ``params`` on which ``loss`` has an explicit L2 term (see the module docstring),
    in ``params``' order. ``loss`` must be a tensor with a ``grad_fn``."""
    if not isinstance(loss, torch.Tensor):
        raise InputTypeError(f"loss must be a torch.Tensor (the loss of one training step, before backward), "
                        f"got {type(loss).__name__}")
    if loss.grad_fn is None:
        raise InputError("loss must come from a forward pass with autograd on (it has no grad_fn: computed "
                         "under torch.no_grad(), detached, or not from the model's parameters)")
    penalized: set[int] = set()
    todo, seen = deque([loss.grad_fn]), set()
    while todo:
        node = todo.popleft()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        penalized |= _penalized_by(node)
        todo.extend(child for child, _ in node.next_functions)
    return [p for p in params if id(p) in penalized]
