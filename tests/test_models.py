import numpy as np
import pytest
import torch
from torch import nn

from decaylab import models


def test_mlp_structure_and_options():
    m = models.build("mlp", in_features=5, out_features=3, hidden=(8, 4), activation="tanh",
                     dropout=0.2, layer_norm=True)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Linear", "LayerNorm", "Tanh", "Dropout", "Linear", "LayerNorm", "Tanh", "Dropout", "Linear"]
    assert m(torch.randn(7, 5)).shape == (7, 3)
    linear = models.build("mlp", in_features=5, out_features=3, hidden=())
    assert [type(layer) for layer in linear.layers] == [nn.Linear]


def test_build_seed_fixes_init_and_leaves_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    a = models.build("mlp", in_features=2, out_features=2, seed=5)
    assert torch.equal(torch.rand(1), expected)
    b = models.build("mlp", in_features=2, out_features=2, seed=5)
    c = models.build("mlp", in_features=2, out_features=2, seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    assert models.build("poly", degree=3, dtype=torch.float64).linear.weight.dtype == torch.float64


@pytest.mark.parametrize("basis", ["legendre", "monomial"])
def test_polynomial_features_match_numpy(basis):
    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    feats = models.polynomial_features(x, 6, basis).numpy()
    vander = np.polynomial.legendre.legvander if basis == "legendre" else np.polynomial.polynomial.polyvander
    np.testing.assert_allclose(feats, vander(x.numpy(), 6), atol=1e-12)


def test_polynomial_regression_is_linear_in_its_features():
    m = models.build("poly", degree=15, dtype=torch.float64)
    x = torch.rand(9, 1, dtype=torch.float64) * 2 - 1
    # the default basis is Legendre's: numpy's Vandermonde matrix of it times the weights
    expected = torch.from_numpy(np.polynomial.legendre.legvander(x[:, 0].numpy(), 15)) @ m.linear.weight[0].detach()
    assert m(x).shape == (9, 1)
    torch.testing.assert_close(m(x)[:, 0], expected)
    assert m.linear.bias is None and m.linear.weight.shape == (1, 16)


def test_weight_norm():
    m = models.build("mlp", in_features=3, out_features=2, hidden=(4,))
    expected = torch.cat([p.detach().flatten() for p in m.parameters()]).norm()
    assert models.weight_norm(m) == pytest.approx(float(expected), rel=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="name must be one of 'mlp', 'poly'"):
        models.build("cnn")
    with pytest.raises(ValueError, match="activation must be one of"):
        models.MLP(2, 2, activation="swish2")
    with pytest.raises(ValueError, match=r"dropout must be in \[0.0, 1.0\)"):
        models.MLP(2, 2, dropout=1.0)
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        models.MLP(2, 2, hidden=64)
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        models.MLP(2, 2, hidden=(3, 0))
    with pytest.raises(ValueError, match="basis must be one of"):
        models.PolynomialRegression(3, basis="chebyshev")
