"""Every optimizer option works in the batched trainer, sweep and lr_decay_map, and batched == alone for each;
what decays follows param_groups' rule everywhere (an embedding is not decayed by a default sweep)."""

import pytest
import torch
from torch import nn

import decaylab
from decaylab import data, models
from decaylab.batched.trainer import Member, TrainConfig, train_alone, train_batched
from decaylab.maps.lr_map import lr_decay_map
from decaylab.optim.spec import OptimizerSpec

OPTION_SETUPS = [
    dict(optimizer="adamw", decay_scaling="corrected", lr_schedule="cosine"),
    dict(optimizer="sgdw", decay_scaling="corrected", momentum=0.9, lr_schedule="cosine"),
    dict(optimizer="adamw", cautious=True),
    dict(optimizer="sgdw", cautious=True, momentum=0.9, decay_scaling="schedule", lr_schedule="cosine"),
    dict(optimizer="adamw", l1_decay=3e-2, lr_schedule="cosine"),
    dict(optimizer="sgdw", l1_decay=1e-2, momentum=0.5, decay_scaling="corrected"),
]


def _data(n=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    return X, ((X[:, 0] + 0.5 * X[:, 1] ** 2) > 0.3).long()


def _mlp():
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 2))


def _gap(alone, batched):
    return max(float((a.state_dict[k] - b.state_dict[k]).abs().max()) for a, b in zip(alone, batched)
               for k in a.state_dict)


@pytest.mark.parametrize("setup", OPTION_SETUPS, ids=lambda s: "-".join(map(str, s.values())))
def test_every_decoupled_option_batched_equals_alone(setup):
    X, y = _data()
    members = [Member(1e-2, 0.05, seed=1, train_index=range(0, 48)), Member(0.2, 0.05, seed=2),
               Member(3e-2, 0.02, seed=3, train_index=range(0, 60, 2))]
    config = TrainConfig.from_options(epochs=20, batch_size=10, dtype=torch.float64, **setup)
    alone = train_alone(_mlp, X, y, members, config, keep_weights=True)
    batched = train_batched(_mlp, X, y, members, config, keep_weights=True)
    assert _gap(alone, batched) < 1e-8
    # the option changes the run (not a vacuous equality): compare with plain decay_scaling="lr"
    plain = {k: v for k, v in setup.items() if k not in ("cautious", "l1_decay", "decay_scaling")}
    base = train_batched(_mlp, X, y, members,
                         TrainConfig.from_options(epochs=20, batch_size=10, dtype=torch.float64, **plain),
                         keep_weights=True)
    assert _gap(base, batched) > 1e-4


def test_l1_decay_makes_exact_zeros_only_in_decayed_tensors():
    X, y = _data()
    config = TrainConfig.from_options(optimizer="adamw", l1_decay=0.5, epochs=10, batch_size=10, dtype=torch.float64)
    (result,) = train_batched(_mlp, X, y, [Member(0.0, 0.05, seed=0)], config, keep_weights=True)
    weights = result.state_dict
    assert (weights["0.weight"] == 0).float().mean() > 0.5
    assert (weights["0.bias"] != 0).all()                  # biases are not decayed, so not L1-thresholded either


@pytest.mark.parametrize("options", [dict(decay_scaling="corrected"), dict(cautious=True), dict(l1_decay=1e-2)],
                         ids=["corrected", "cautious", "l1"])
def test_sweep_accepts_every_option_and_batched_equals_sequential(options):
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=80, noise=0.25, random_state=1)
    kwargs = dict(folds=2, epochs=4, batch_size=16, hidden=(8,), lr=0.05, optimizer="adamw", dtype=torch.float64,
                  lr_schedule="cosine", **options)
    batched = decaylab.sweep("mlp", (X, y), [1e-3, 1e-1], engine="batched", **kwargs)
    sequential = decaylab.sweep("mlp", (X, y), [1e-3, 1e-1], engine="sequential", **kwargs)
    plain = decaylab.sweep("mlp", (X, y), [1e-3, 1e-1], engine="batched",
                           **{**kwargs, "decay_scaling": "lr", "cautious": False, "l1_decay": 0.0})
    for a, b, c in zip(batched.table, sequential.table, plain.table):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-9)
        assert a["weight_norm"] == pytest.approx(b["weight_norm"], rel=1e-9)
        assert a["key"] != c["key"]                                   # the option is part of a member's identity
    assert max(abs(a["weight_norm"] - c["weight_norm"]) for a, c in zip(batched.table, plain.table)) > 1e-6


@pytest.mark.parametrize("options", [dict(decay_scaling="corrected"), dict(cautious=True), dict(l1_decay=1e-2)],
                         ids=["corrected", "cautious", "l1"])
def test_lr_decay_map_accepts_every_option_and_matches_runs_alone(options):
    moons = data.load("moons", seed=0, n_train=40, n_test=60, label_noise=0.2, dtype=torch.float64)
    lrs, decays = [0.01, 0.05, 0.2], [1e-3, 1e-2, 1e-1]
    m = lr_decay_map(lambda: models.MLP(2, 2, (8,)), moons.train, moons.test, optimizer="adamw", lrs=lrs,
                     decays=decays, seeds=(2,), epochs=4, batch_size=16, dtype=torch.float64, **options)
    config = TrainConfig.from_options(optimizer="adamw", epochs=4, batch_size=16, lr_schedule="cosine",
                                      dtype=torch.float64,
                                      decay_scaling=options.get("decay_scaling", "schedule"),
                                      **{k: v for k, v in options.items() if k != "decay_scaling"})
    for i, j in [(0, 2), (2, 0), (1, 1)]:
        (alone,) = train_alone(lambda: models.MLP(2, 2, (8,)), moons.train.X, moons.train.y,
                               [Member(decays[j], lrs[i], seed=2)], config)
        assert m.train_loss[0, i, j] == pytest.approx(alone.train_loss, rel=1e-9)


class _Embedder(nn.Module):
    """A bag-of-embeddings classifier over two integer features (0..9)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.emb(x.long().clamp(0, 9)).flatten(1))


def _token_data(n=64):
    gen = torch.Generator().manual_seed(0)
    X = torch.randint(0, 10, (n, 2), generator=gen)
    return X.double(), ((X[:, 0] + X[:, 1]) > 9).long()


def test_a_default_sweep_does_not_decay_an_embedding_and_the_param_groups_override_does():
    X, y = _token_data()
    kwargs = dict(folds=2, epochs=3, batch_size=16, lr=0.05, optimizer="adamw", dtype=torch.float64,
                  engine="batched", model_key="embedder")
    # λ so large that any decayed tensor shrinks visibly; weight_norm covers only the decayed tensors
    default = decaylab.sweep(_Embedder, (X, y), [0.0, 5.0], **kwargs)
    assert default.table[0]["weight_norm"] == pytest.approx(
        float(_head_norm(_Embedder)), rel=0.5)                          # only head.weight counts
    overridden = decaylab.sweep(_Embedder, (X, y), [0.0, 5.0], decay_embeddings=True, **kwargs)
    named = decaylab.sweep(_Embedder, (X, y), [0.0, 5.0], decay_names=["emb.*"], **kwargs)
    assert overridden.table[0]["weight_norm"] > 1.5 * default.table[0]["weight_norm"]   # emb.weight now counts
    assert named.table[0]["weight_norm"] == pytest.approx(overridden.table[0]["weight_norm"], rel=1e-12)
    # the embedding itself: trained alone with the same config, emb.weight keeps its scale by default
    for config_kwargs, shrinks in ((dict(), False), (dict(decay_embeddings=True), True)):
        config = TrainConfig.from_options(optimizer="adamw", epochs=3, batch_size=16, dtype=torch.float64,
                                          **config_kwargs)
        members = [Member(0.0, 0.05, seed=0), Member(5.0, 0.05, seed=0)]
        alone = train_alone(_Embedder, X, y, members, config, keep_weights=True)
        batched = train_batched(_Embedder, X, y, members, config, keep_weights=True)
        assert _gap(alone, batched) < 1e-10
        ratio = float(batched[1].state_dict["emb.weight"].norm() / batched[0].state_dict["emb.weight"].norm())
        assert (ratio < 0.9) == shrinks


def _head_norm(factory):
    torch.manual_seed(0)
    return factory().head.weight.detach().double().norm()


def test_optimizer_spec_checks_and_builds_the_named_class():
    spec = OptimizerSpec("sgdw", decay_scaling="corrected", cautious=True, l1_decay=1e-3, momentum=0.9)
    opt = spec.build([nn.Parameter(torch.zeros(3))], lr=0.1, weight_decay=0.01)
    assert type(opt) is decaylab.optim.SGDW
    group = opt.param_groups[0]
    assert (group["decay_scaling"], group["cautious"], group["l1_decay"], group["momentum"]) == \
        ("corrected", True, 1e-3, 0.9)
    with pytest.raises(ValueError, match="need decoupled weight decay"):
        OptimizerSpec("adam", l1_decay=0.1)
    with pytest.raises(ValueError, match="decay_scaling must be one of"):
        OptimizerSpec("adamw", decay_scaling="cubic")
    with pytest.raises(TypeError, match="cautious must be a bool"):
        OptimizerSpec("adamw", cautious="yes")
