"""Muon (with its AdamW companion) and Lion in the batched trainer: each member equals its run alone (with
decaylab.optim.MuonAdamW / Lion), on an MLP and a conv model on the folded path; Newton–Schulz runs as batched
matmuls over the stacked members."""

import pytest
import torch
from torch import nn
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz
from torch.utils._python_dispatch import TorchDispatchMode

from decaylab.batched.alone import member_optimizer
from decaylab.batched.stacked_muon import stacked_zeropower
from decaylab.batched.trainer import Member, TrainConfig, _StackedModel, train_alone, train_batched
from decaylab.optim import Lion, MuonAdamW
from decaylab.optim.muon import zeropower_via_newtonschulz

COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def make_data(n=60, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return X, ((X[:, 0] + 0.5 * X[:, 1] ** 2) > 0.3).long()


def mlp():
    # two hidden matrices for Muon: 12×5 (tall: orthogonalized transposed) and 9×12; the head is the companion's
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 2))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, 6), nn.Tanh(), nn.Linear(6, 2))


def members(n):
    # different λ, lr, seeds and training rows of different sizes (some members idle at epoch ends); the last
    # differs from the first only in λ, so λ must change the run
    return [Member(1e-3, 0.05, seed=1, train_index=range(0, 48), val_index=range(48, n)),
            Member(3e-2, 0.02, seed=2, train_index=range(12, n), val_index=range(0, 12)),
            Member(0.0, 0.08, seed=3, train_index=range(0, n, 2), val_index=range(1, n, 2)),
            Member(0.5, 0.05, seed=1, train_index=range(0, 48), val_index=range(48, n))]


def gap(alone, batched):
    return max(float((a.state_dict[k] - b.state_dict[k]).abs().max()) for a, b in zip(alone, batched)
               for k in a.state_dict)


def weight_gap(a, b):
    return max(float((a.state_dict[k] - b.state_dict[k]).abs().max()) for k in a.state_dict)


SETUPS = [
    dict(optimizer="muon"),
    dict(optimizer="muon", lr_schedule="cosine", decay_scaling="schedule", nesterov=False, ns_steps=3),
    dict(optimizer="muon", adjust_lr_fn="match_rms_adamw", adamw_lr_ratio=0.3, adamw_weight_decay=0.05,
         adamw_betas=(0.8, 0.95), adamw_eps=1e-10, momentum=0.9),
    dict(optimizer="muon", cautious=True, l1_decay=1e-4, decay_scaling="corrected", lr_schedule="cosine"),
    dict(optimizer="lion"),
    dict(optimizer="lion", lr_schedule="cosine", decay_scaling="schedule", betas=(0.95, 0.98)),
    dict(optimizer="lion", cautious=True, l1_decay=1e-4),
]


# 200-step parity runs: the plain Muon and Lion runs in the fast subset, the option variants marked slow
@pytest.mark.parametrize("setup", [pytest.param(s, id="-".join(f"{k}={v}" for k, v in s.items()),
                                                marks=() if len(s) == 1 else pytest.mark.slow) for s in SETUPS])
def test_float64_mlp_batched_equals_alone(setup):
    X, y = make_data()
    group = members(len(X))
    lr_scale = 0.1 if setup["optimizer"] == "lion" else 1.0          # Lion's ±lr steps: a smaller lr
    group = [Member(m.weight_decay, m.lr * lr_scale, m.seed, m.train_index, m.val_index) for m in group]
    config = TrainConfig.from_options(epochs=40, batch_size=10, dtype=torch.float64, **setup)
    alone = train_alone(mlp, X, y, group, config, keep_weights=True)
    batched = train_batched(mlp, X, y, group, config, keep_weights=True)
    assert [r.steps for r in batched] == [r.steps for r in alone] == [200, 200, 120, 200]
    assert not any(r.diverged for r in batched)
    assert gap(alone, batched) < 1e-8
    assert weight_gap(alone[0], alone[3]) > 1e-3                       # λ changed the run
    for a, b in zip(alone, batched):
        assert b.val_accuracy == a.val_accuracy
        assert b.weight_norm == pytest.approx(a.weight_norm, rel=1e-9)


@pytest.mark.parametrize("optimizer", ["muon", "lion"])
def test_float64_conv_model_on_the_folded_path_equals_alone(optimizer):
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(40, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = (X[:, 0, :3].mean((1, 2)) > 0).long()
    group = [Member(1e-2, 0.05, seed=5, train_index=range(0, 28), val_index=range(28, 40)),
             Member(0.3, 0.02, seed=6, train_index=range(8, 40), val_index=range(0, 8)),
             Member(0.0, 0.05, seed=5, train_index=range(0, 28), val_index=range(28, 40))]
    options = dict(flatten=True) if optimizer == "muon" else {}
    if optimizer == "lion":
        group = [Member(m.weight_decay, m.lr / 10, m.seed, m.train_index, m.val_index) for m in group]
    config = TrainConfig.from_options(optimizer=optimizer, epochs=15, batch_size=4, dtype=torch.float64, **options)
    stacked = _StackedModel(cnn, group, config, sample=X[:16])
    assert stacked.path.path == "folded"
    if optimizer == "muon":   # the conv kernel and the hidden Linear are Muon's; biases and the head the companion's
        assert dict(zip(stacked.names, stacked.use_muon)) == {"0.weight": True, "0.bias": False, "4.weight": True,
                                                               "4.bias": False, "6.weight": False, "6.bias": False}
    alone = train_alone(cnn, X, y, group, config, keep_weights=True)
    batched = train_batched(cnn, X, y, group, config, keep_weights=True)
    assert [r.steps for r in batched] == [r.steps for r in alone] == [105, 120, 105]
    assert gap(alone, batched) < 1e-8
    assert weight_gap(alone[0], alone[2]) > 1e-3


def test_the_alone_optimizers_are_muonadamw_with_the_companion_rule_and_lion():
    model = mlp()
    member = Member(0.2, 0.04)
    config = TrainConfig.from_options(optimizer="muon", adamw_lr_ratio=0.25, adamw_weight_decay=0.01,
                                      l1_decay=1e-3)
    opt, decayed = member_optimizer(model, member, config)
    assert isinstance(opt, MuonAdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {(g["use_muon"], tuple(names[id(p)] for p in g["params"])): g for g in opt.param_groups}
    muon = groups[(True, ("0.weight", "2.weight"))]
    head = groups[(False, ("4.weight",))]
    biases = groups[(False, ("0.bias", "2.bias", "4.bias"))]
    assert (muon["lr"], muon["weight_decay"], muon["l1_decay"]) == (0.04, 0.2, 1e-3)
    assert (head["lr"], head["weight_decay"], head["l1_decay"]) == (0.04 * 0.25, 0.01, 1e-3)
    assert (biases["weight_decay"], biases["l1_decay"]) == (0.0, 0.0)           # biases do not decay
    assert {names[id(p)] for p in decayed} == {"0.weight", "2.weight", "4.weight"}
    same_lambda = member_optimizer(model, member, TrainConfig.from_options(optimizer="muon"))[0]
    assert {g["weight_decay"] for g in same_lambda.param_groups if len(g["params"]) < 3} == {0.2}
    lion, _ = member_optimizer(model, member, TrainConfig.from_options(optimizer="lion", betas=(0.8, 0.9)))
    assert isinstance(lion, Lion) and lion.defaults["betas"] == (0.8, 0.9)


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("members_count", [1, 7])
def test_newton_schulz_is_one_bmm_and_two_baddbmm_per_iteration_over_all_members(members_count):
    update = torch.randn(members_count, 6, 10, dtype=torch.float64)
    with _CountOps() as counted:
        stacked_zeropower(update, COEFFICIENTS, 4, 1e-7, torch.float64)
    matmuls = [op for op in counted.ops if "mm" in op]
    assert matmuls == ["bmm", "baddbmm", "baddbmm"] * 4


@pytest.mark.parametrize("shape", [(12, 5), (9, 12), (7, 7)])
def test_batched_newton_schulz_is_torchs_applied_per_member(shape):
    gen = torch.Generator().manual_seed(0)
    update = torch.randn(5, *shape, generator=gen, dtype=torch.float64) * torch.logspace(-3, 2, 5).view(5, 1, 1)
    # in float64 the iteration is decaylab's 2-D one (torch's ops) on each member, to float64 rounding
    got = stacked_zeropower(update, COEFFICIENTS, 5, 1e-7, torch.float64)
    want = torch.stack([zeropower_via_newtonschulz(u, COEFFICIENTS, 5, 1e-7, torch.float64) for u in update])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # in bfloat16 it is torch's _zeropower_via_newtonschulz per member, up to the bfloat16 rounding of a
    # differently ordered sum: at most one bfloat16 step (2⁻⁷ relative) in an element
    got = stacked_zeropower(update, COEFFICIENTS, 5, 1e-7, torch.bfloat16)
    want = torch.stack([torch_newton_schulz(u, COEFFICIENTS, 5, 1e-7) for u in update])
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), want.double(), rtol=2 ** -7, atol=2 ** -9)


def test_a_zero_update_stays_zero_and_the_input_is_left_alone():
    update = torch.zeros(3, 4, 6, dtype=torch.float64)
    update[1] = torch.randn(4, 6, dtype=torch.float64)
    before = update.clone()
    out = stacked_zeropower(update, COEFFICIENTS, 5, 1e-7, None)
    assert torch.equal(update, before) and torch.equal(out[0], torch.zeros(4, 6, dtype=torch.float64))
    singular = torch.linalg.svdvals(out[1])
    assert singular.min() > 0.5 and singular.max() < 1.5


@pytest.mark.parametrize("optimizer", ["muon", "lion"])
def test_float32_mlp_matches_alone_after_20_steps(optimizer):
    # the sweeps' default ns_dtype (None): Newton–Schulz in the parameters' float32, batched and alone alike
    X, y = make_data()
    X = X.float()
    group = members(len(X))[:3]
    if optimizer == "lion":
        group = [Member(m.weight_decay, m.lr / 10, m.seed, m.train_index, m.val_index) for m in group]
    config = TrainConfig.from_options(optimizer=optimizer, epochs=4, batch_size=10, dtype=torch.float32)
    alone = train_alone(mlp, X, y, group, config, keep_weights=True)
    batched = train_batched(mlp, X, y, group, config, keep_weights=True)
    assert [r.steps for r in batched] == [20, 20, 12]
    assert gap(alone, batched) < 1e-5
