"""The two regimes of the decoupling study: their tasks, grids, and the equilibrium-angle check.

- ``"fixed-point"``: the un-normalized 2-64-64-2 MLP on two moons with 20 % flipped labels,
  trained full-batch with a cosine schedule (Loshchilov & Hutter's protocol at toy scale).
- ``"equilibrium"``: the same two moons, the same 20 % flipped labels, but a normalized MLP:
  a plain ``Linear(2, 64) → ReLU`` front (two input coordinates need a bias to be told apart by
  magnitude), then two hidden layers that are a bias-free Linear followed by an affine-free
  LayerNorm (each hidden weight scale-invariant, as behind the paper's BatchNorm: 97 % of the
  decayed elements), mini-batches of 20 at a constant learning rate for 1500 steps, so the
  weight norms can settle where the gradient's growth balances the decay (see
  :mod:`decaylab.maps.theory`). Only the network differs between the two regimes.

  Tried first, with no interior best λ (decay only hurt or did nothing): the digits images with a
  64-64 LayerNorm MLP (batch 64, 960 steps; best cells far from equilibrium, measured/predicted
  angle ×0.11–×0.41), and MNIST-1D (3000 training rows, 128-128 LayerNorm MLP, 1880 steps; and
  1000 rows, 64-64, 960 steps): there the runs do not overfit in a way the angular update can
  cure, so the test error is flat or rises with λ at every lr. With flipped labels to memorize,
  a larger equilibrium angle (more decay) keeps the network from fitting them.

:func:`equilibrium_check` retrains one cell of a map alone, with decaylab's optimizer and a
:class:`decaylab.diagnostics.monitor.DecayMonitor`, and compares the measured per-step rotation of the first
scale-invariant weight over the last quarter of training with the monitor's predicted equilibrium angle;
λ goes to the parameters the map's :class:`~decaylab.groups.DecayRule` decays, as in the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from decaylab._checks import InputError
from decaylab._isolation import isolated, seeded_generator
from decaylab.groups import DecayRule, as_decay_rule

__all__ = ["REGIME_SETUPS", "RegimeSetup", "equilibrium_check", "normalized_mlp"]


def normalized_mlp(in_features: int, out_features: int, hidden: tuple[int, ...], *,
                   front: int | None = None) -> nn.Sequential:
    """``[Linear(in, front) → ReLU] → [Linear(bias=False) → LayerNorm(no affine) → ReLU] × hidden →
    Linear``: every hidden weight scale-invariant; the optional plain ``front`` layer (with a bias,
    so the input's magnitude survives the first normalization) and the output layer are not."""
    layers: list[nn.Module] = []
    width = in_features
    if front is not None:
        layers += [nn.Linear(in_features, front), nn.ReLU()]
        width = front
    for h in hidden:
        layers += [nn.Linear(width, h, bias=False), nn.LayerNorm(h, elementwise_affine=False), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class RegimeSetup:
    """One regime: the task (dataset, model, training), and per arm key its (log10 lr, log10 λ) ranges."""

    key: str
    title: str
    task: dict
    ranges: dict

    def dataset(self):
        from decaylab import data

        t = self.task
        options = {k: t[k] for k in ("n_train", "n_test", "noise", "label_noise") if k in t}
        return data.load(t["dataset"], seed=0, **options)

    def model_factory(self, dataset):
        from decaylab import models

        if self.task["normalized"]:
            return lambda: normalized_mlp(dataset.n_features, dataset.n_classes, self.task["hidden"],
                                          front=self.task["front"])
        return lambda: models.MLP(dataset.n_features, dataset.n_classes, self.task["hidden"])

    def describe(self, setup: dict) -> str:
        t = self.task
        data = (f"two moons with {100 * t['label_noise']:.0f} % flipped training labels ({t['n_train']} training "
                f"points, {t['n_test']} clean test points)")
        if t["normalized"]:
            return (f"{data}, a normalized MLP 2-{t['front']}-{'-'.join(map(str, t['hidden']))}-2 (a plain Linear → "
                    f"ReLU front, then hidden layers that are bias-free Linear → LayerNorm without affine parameters "
                    f"→ ReLU), mini-batches of {t['batch_size']}, {setup['epochs']} epochs ({setup['steps']} steps) "
                    f"at a constant learning rate")
        return (f"{data}, a 2-{'-'.join(map(str, t['hidden']))}-2 ReLU MLP, full-batch, {setup['epochs']} steps of "
                f"a cosine schedule")


# Ranges: the fixed-point ones were chosen in trial runs of the original study; the equilibrium
# ones span lr from too slow to unstable and λ from no effect to too much (one- and two-seed
# trial runs, to put each basin inside its grid, not to move a slope). Grid sizes: the
# equilibrium maps train 1.5× the steps, so their grid is one size smaller to hold the budget.
_MOONS = dict(dataset="moons", n_train=100, noise=0.2, label_noise=0.2, n_test=1000)
REGIME_SETUPS = (
    RegimeSetup("fixed-point", "Fixed-point regime: un-normalized MLP",
                dict(_MOONS, hidden=(64, 64), batch_size=100, epochs=1000, quick_epochs=200, grid_size=8,
                     quick_grid_size=5, lr_schedule="cosine", momentum=0.9, normalized=False),
                {"sgd": ((-2.0, 0.5), (-4.5, -1.0)), "sgdw": ((-2.0, 0.5), (-4.0, -0.5)),
                 "adam": ((-4.0, -0.5), (-4.5, -1.0)), "adamw": ((-4.0, -0.5), (-3.5, 0.0)),
                 "adamw-lr": ((-4.0, -0.5), (-1.5, 2.0))}),
    RegimeSetup("equilibrium", "Equilibrium regime: LayerNorm MLP (scale-invariant hidden weights)",
                dict(_MOONS, front=64, hidden=(64, 64), batch_size=20, epochs=300, quick_epochs=60, grid_size=7,
                     quick_grid_size=5, lr_schedule="constant", momentum=0.9, normalized=True),
                {"sgd": ((-2.5, 0.0), (-4.0, 0.0)), "sgdw": ((-2.5, 0.0), (-4.5, -0.5)),
                 "adam": ((-4.0, -1.0), (-4.0, 0.0)), "adamw": ((-4.0, -1.0), (-4.0, -0.5)),
                 "adamw-lr": ((-4.0, -1.0), (-2.0, 1.5))}),
)


def _optimizer(params, optimizer: str, decay_scaling: str | None, lr: float, decay: float, momentum: float):
    from decaylab import optim

    if optimizer == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay)
    if optimizer == "sgdw":
        return optim.SGDW(params, lr=lr, momentum=momentum, weight_decay=decay, decay_scaling=decay_scaling)
    if optimizer == "adam":
        return optim.Adam(params, lr=lr, weight_decay=decay)
    if optimizer == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=decay, decay_scaling=decay_scaling)
    raise InputError(f"optimizer must be one of 'sgd', 'sgdw', 'adam', 'adamw' for the equilibrium check (the "
                     f"study's arms), got {optimizer!r}")


def equilibrium_check(model_factory, train, *, optimizer: str, decay_scaling: str | None, lr: float, decay: float,
                      epochs: int, batch_size: int, momentum: float, param: str | None = None, seed: int = 0,
                      decay_rule: DecayRule | None = None) -> dict:
    """Train one (lr, λ) cell alone at a constant lr with a :class:`~decaylab.diagnostics.monitor.DecayMonitor`;
    return the weight ``param``'s (default: the first decayed parameter) mean rotation per step over the last
    quarter of training, the predicted equilibrium angle (``None`` for coupled Adam), and their ratio.

    λ goes to the parameters ``decay_rule`` decays (:class:`decaylab.groups.DecayRule`; default
    ``DecayRule()``, the trainers' default), the others get 0: pass the map's rule
    (:attr:`decaylab.maps.lr_map.LrDecayMap.decay_rule`) so the cell is retrained as the map trained it."""
    from decaylab.diagnostics.monitor import DecayMonitor

    rule = as_decay_rule(decay_rule)
    with isolated(seed):                   # the model's initial weights, and the caller's generator kept
        model = model_factory()
        decayed = [name for name, decays in rule.decays(model).items() if decays]
        if not decayed:
            raise InputError("decay_rule must decay at least one parameter of the model for the equilibrium "
                             f"check, got none ({rule})")
        opt = _optimizer(rule.groups(model, decay), optimizer, decay_scaling, lr, decay, momentum)
        first = param if param is not None else decayed[0]
        X, y = train.X, train.y
        steps = epochs * -(-len(X) // batch_size)
        # every step, all kept (one tensor): the last quarter's mean is over exactly its steps
        monitor = DecayMonitor(model, opt, include=first, every=1, max_records=max(2, steps))
        gen = seeded_generator(seed)
        for _ in range(epochs):
            order = torch.randperm(len(X), generator=gen)
            for start in range(0, len(X), batch_size):
                idx = order[start:start + batch_size]
                opt.zero_grad()
                nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
                opt.step()
        monitor.detach()
    row = monitor.summary(last=0.25)[0]
    return {"param": first, "lr": lr, "weight_decay": decay, "angle": row["angle"],
            "predicted_angle": row["predicted_angle"], "ratio": row["angle_ratio"]}
