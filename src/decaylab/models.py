"""Small reference models: a multilayer perceptron and a polynomial-feature linear model.

- :class:`MLP`: ``Linear → [LayerNorm] → activation → [Dropout]`` per hidden width, then a
  ``Linear`` output layer (logits, or one output for regression). ``hidden=()`` gives a
  linear (logistic/softmax regression) model.
- :class:`PolynomialRegression`: ``f(x) = Σ_{k=0..d} w_k φ_k(x)`` for a scalar input ``x`` with
  features ``φ_k`` either monomials ``x^k`` or Legendre polynomials ``P_k(x)`` (orthogonal on
  ``[-1, 1]``, hence far better conditioned for gradient training at degree 15). The constant
  feature ``φ_0 = 1`` is part of the weight vector (no separate bias), so coupled weight decay
  on ``w`` is exactly the ridge penalty ``λ‖w‖²`` of the closed form.

:func:`build` makes either by name; its ``seed`` fixes the initial weights without touching
the caller's global random state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from decaylab._checks import InputTypeError

from ._checks import check_choice, check_int, check_real
from ._isolation import isolated

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid}
BASES = ("legendre", "monomial")
MODELS = ("mlp", "poly")


class MLP(nn.Module):
    """A multilayer perceptron: hidden blocks ``Linear → [LayerNorm] → activation → [Dropout]``."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (64, 64), *,
                 activation: str = "relu", dropout: float = 0.0, layer_norm: bool = False,
                 bias: bool = True):
        super().__init__()
        in_features = check_int("in_features", in_features, low=1)
        out_features = check_int("out_features", out_features, low=1)
        if isinstance(hidden, (int, str)) or not isinstance(hidden, Sequence):
            raise InputTypeError(f"hidden must be a sequence of layer widths, got {hidden!r}")
        hidden = [check_int(f"hidden[{i}]", h, low=1) for i, h in enumerate(hidden)]
        check_choice("activation", activation, ACTIVATIONS)
        dropout = check_real("dropout", dropout, low=0.0, high=1.0, high_open=True)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h, bias=bias))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features, bias=bias))
        self.layers = nn.Sequential(*layers)
        self.config = dict(in_features=in_features, out_features=out_features, hidden=tuple(hidden),
                           activation=activation, dropout=dropout, layer_norm=layer_norm, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def sequential_layers(model: nn.Module) -> tuple[nn.Sequential, str] | None:
    """The layer list of a plain stacked model — an ``nn.Sequential`` itself, or an :class:`MLP`'s ``layers`` —
    and the prefix of its parameter names (``""`` or ``"layers."``); ``None`` for any other model."""
    if type(model) is nn.Sequential:
        return model, ""
    if type(model) is MLP:
        return model.layers, "layers."
    return None


def polynomial_features(x: torch.Tensor, degree: int, basis: str = "legendre") -> torch.Tensor:
    """Features ``[φ_0(x), …, φ_degree(x)]`` of a column ``x`` (shape ``[n]`` or ``[n, 1]``) → ``[n, degree+1]``.

    Monomials ``φ_k = x^k``, or Legendre polynomials by Bonnet's recursion
    ``(k+1)·P_{k+1} = (2k+1)·x·P_k − k·P_{k−1}`` with ``P_0 = 1``, ``P_1 = x``.
    """
    check_choice("basis", basis, BASES)
    x = x.reshape(-1)
    feats = [torch.ones_like(x)]
    if degree >= 1:
        feats.append(x)
    for k in range(1, degree):
        if basis == "monomial":
            feats.append(feats[-1] * x)
        else:
            feats.append(((2 * k + 1) * x * feats[k] - k * feats[k - 1]) / (k + 1))
    return torch.stack(feats, dim=1)


class PolynomialRegression(nn.Module):
    """``f(x) = Σ_k w_k φ_k(x)``: a linear model on polynomial features of a scalar input."""

    def __init__(self, degree: int = 15, *, basis: str = "legendre"):
        super().__init__()
        self.degree = check_int("degree", degree, low=0)
        self.basis = check_choice("basis", basis, BASES)
        self.linear = nn.Linear(self.degree + 1, 1, bias=False)
        self.config = dict(degree=self.degree, basis=self.basis)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return polynomial_features(x, self.degree, self.basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def build(name: str, *, seed: int | None = 0, dtype: torch.dtype | None = None, **kwargs) -> nn.Module:
    """Build the model called ``name`` ("mlp" → :class:`MLP`, "poly" → :class:`PolynomialRegression`).

    ``kwargs`` go to the model's constructor. ``seed`` fixes the initial weights (``None``: use
    the global generator); the caller's global random state is left as it was either way.
    """
    check_choice("name", name, MODELS)
    cls = {"mlp": MLP, "poly": PolynomialRegression}[name]
    if seed is None:
        model = cls(**kwargs)
    else:
        seed = check_int("seed", seed, low=0)
        with isolated(seed):
            model = cls(**kwargs)
    return model if dtype is None else model.to(dtype)


def weight_norm(model: nn.Module) -> float:
    """The Euclidean norm of all trainable parameters of ``model`` taken together, ``‖θ‖₂``."""
    with torch.no_grad():
        squares = [p.detach().double().pow(2).sum() for p in model.parameters() if p.requires_grad]
        return float(torch.stack(squares).sum().sqrt()) if squares else 0.0
