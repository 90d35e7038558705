"""The batched trainer with BatchNorm, conv, embeddings over integer inputs, norms and attention equals
members trained alone."""

import pytest
import torch
from torch import nn

from decaylab.batched.folded import FoldedModel
from decaylab.batched.stacked_layers import batch_path, stacked_attention
from decaylab.batched.trainer import Member, TrainConfig, _StackedModel, check_batchable, train_alone, train_batched

VOCAB, TOKENS = 11, 6


def members_of_different_folds(n):
    # different λ, lr, seed and training sets of different sizes: last batches differ in length, some members idle
    return [Member(1e-3, 0.05, seed=1, train_index=range(0, 46), val_index=range(46, n)),
            Member(3e-2, 0.02, seed=2, train_index=range(12, n), val_index=range(0, 12)),
            Member(0.0, 0.08, seed=3, train_index=range(0, n, 2), val_index=range(1, n, 2))]


def images(n=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = (X[:, 0, :3].sum((1, 2)) > X[:, 0, 3:].sum((1, 2))).long()
    return X, y


def tokens(n=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randint(0, VOCAB, (n, TOKENS), generator=gen)
    y = (X[:, :3].sum(1) > X[:, 3:].sum(1)).long()
    return X, y


def conv_bn():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(27, 2))


def mlp_bn():
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


class EmbeddingBag(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 5)
        self.norm = nn.LayerNorm(5)
        self.out = nn.Linear(5 * TOKENS, 2)

    def forward(self, x):
        return self.out(self.norm(self.embed(x)).flatten(1))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.position = nn.Parameter(torch.randn(TOKENS, 8) * 0.1)
        self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.block(self.embed(x) + self.position).mean(1))


class RMSAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.RMSNorm(8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = self.embed(x)
        return self.out(self.norm(h + self.attn(h, h, h, need_weights=False)[0]).mean(1))


def max_state_gap(alone, batched):
    return max(float((a.state_dict[k].double() - b.state_dict[k].double()).abs().max())
               for a, b in zip(alone, batched) for k in a.state_dict)


# Adam only where no parameter has a zero gradient: a bias right before BatchNorm has ∂L/∂b = 0 up to
# rounding, which Adam's normalization turns into ±lr steps (equal in exact arithmetic, ~1e-9 apart in float64)
CASES = [(conv_bn, images, "sgd"), (mlp_bn, images, "sgd"), (EmbeddingBag, tokens, "adamw"),
         (Attention, tokens, "adamw"), (RMSAttention, tokens, "adamw"), (Attention, tokens, "sgd")]


CASES = [pytest.param(*case, "folded", id=f"{case[0].__name__}-{case[2]}") for case in CASES] + \
    [pytest.param(*case, "vmap", id=f"{case[0].__name__}-{case[2]}-vmap") for case in CASES[::3]]


@pytest.mark.parametrize("factory, data, optimizer, path", CASES)
def test_float64_batched_equals_alone(factory, data, optimizer, path, monkeypatch):
    if path == "vmap":
        monkeypatch.setattr(FoldedModel, "check", lambda *args, **kwargs: "switched off by the test")
    X, y = data()
    members = members_of_different_folds(len(X))
    config = TrainConfig.from_options(optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0, epochs=8,
                                      batch_size=10, dtype=torch.float64)
    alone = train_alone(factory, X, y, members, config, keep_weights=True)
    batched = train_batched(factory, X, y, members, config, keep_weights=True)
    assert [r.steps for r in batched] == [r.steps for r in alone] == [40, 40, 24]
    assert set(batched[0].state_dict) == set(alone[0].state_dict)     # BatchNorm: running stats compared too
    assert max_state_gap(alone, batched) < 1e-9
    for a, b in zip(alone, batched):
        assert b.val_accuracy == a.val_accuracy                          # eval mode: each member's own statistics
        assert b.val_loss == pytest.approx(a.val_loss, abs=1e-9)
    assert _StackedModel(factory, members, config, sample=X[:16]).path.path == path


class RowMixing(nn.Module):
    """Subtracts the batch mean: the folded batch would mix members' rows."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(36, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.inner(x.flatten(1))
        return self.out(h - h.mean(0))


class ClassToken(nn.Module):
    """A parameter expanded to the batch size: its per-row copy cannot be expanded again."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.inner = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = torch.cat([self.cls.expand(len(x), -1, -1), x.view(len(x), 6, 6)], 1)
        return self.out(self.inner(h)[:, 0])


@pytest.mark.parametrize("factory, why", [(RowMixing, "not folded: differed from member"),
                                          (ClassToken, "not folded: raised RuntimeError")])
def test_a_model_the_folded_forward_does_not_reproduce_takes_vmap_and_says_why(factory, why):
    X, y = images()
    # 40 rows each at batch 10: no padding rows, which a row-mixing forward would see
    members = [Member(1e-3, 0.05, seed=1, train_index=range(0, 40)),
               Member(0.0, 0.08, seed=2, train_index=range(20, 60))]
    config = TrainConfig.from_options(optimizer="sgd", epochs=2, batch_size=10, dtype=torch.float64)
    path = _StackedModel(factory, members, config, sample=X[:16]).path
    assert path.path == "vmap" and why in str(path) and "\n" not in str(path)
    alone = train_alone(factory, X, y, members, config, keep_weights=True)
    assert max_state_gap(alone, train_batched(factory, X, y, members, config, keep_weights=True)) < 1e-12


def test_a_diverging_member_leaves_the_others_batchnorm_statistics_as_alone():
    X, y = images()
    good = members_of_different_folds(len(X))[:2]
    exploding = Member(0.0, 1e60, seed=4, train_index=range(0, 40))
    config = TrainConfig.from_options(optimizer="sgd", epochs=3, batch_size=10, dtype=torch.float64)
    batched = train_batched(mlp_bn, X, y, [good[0], exploding, good[1]], config, keep_weights=True)
    assert batched[1].diverged and not batched[0].diverged and not batched[2].diverged
    alone = train_alone(mlp_bn, X, y, good, config, keep_weights=True)
    assert max_state_gap(alone, [batched[0], batched[2]]) < 1e-12      # running statistics updated once per step


def test_evaluation_passes_hold_at_most_a_training_batch_per_member():
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(36, 2)

        def forward(self, x):
            if not self.training:
                seen.append(len(x))
            return self.layer(x.flatten(1))

    X, y = images(200)
    members = [Member(0.0, 0.1, seed=s) for s in range(3)]
    train_batched(Recorder, X, y, members, TrainConfig(epochs=1, batch_size=16, dtype=torch.float64))
    assert max(seen) <= 3 * 16 and sum(seen) >= 3 * 200


def test_batchnorm_running_statistics_are_per_member_and_used_in_eval():
    X, y = images()
    members = members_of_different_folds(len(X))
    config = TrainConfig.from_options(optimizer="sgd", momentum=0.9, epochs=3, batch_size=7, dtype=torch.float64)
    batched = train_batched(conv_bn, X, y, members, config, keep_weights=True)
    means = [r.state_dict["1.running_mean"] for r in batched]
    assert not torch.allclose(means[0], means[1])
    # 46 rows at batch 7: 7 batches per epoch, each one counted
    assert [int(r.state_dict["1.num_batches_tracked"]) for r in batched] == [21, 21, 15]
    # eval mode: a member's outputs on the validation rows come from its running statistics
    model = conv_bn().double()
    model.load_state_dict(batched[0].state_dict)
    model.eval()
    rows = torch.tensor(members[0].val_index)
    with torch.no_grad():
        accuracy = float((model(X[rows]).argmax(1) == y[rows]).double().mean())
    assert batched[0].val_accuracy == accuracy


def test_integer_inputs_stay_integers_in_both_trainers():
    X, y = tokens()
    seen = []

    class Recorder(EmbeddingBag):
        def forward(self, x):
            seen.append(x.dtype)
            return super().forward(x)

    config = TrainConfig(epochs=1, batch_size=20, dtype=torch.float32)
    for train in (train_alone, train_batched):
        results = train(Recorder, X.numpy(), y.numpy(), [Member(0.01, 0.01)], config)
        assert results[0].steps == 3
    assert set(seen) == {torch.long}


def test_stacked_attention_equals_scaled_dot_product_attention():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(5, 5, generator=gen) > 0.3
    mask.fill_diagonal_(True)
    additive = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for kwargs in ({}, {"is_causal": True}, {"attn_mask": mask}, {"attn_mask": additive}, {"scale": 0.3}):
        torch.testing.assert_close(stacked_attention(q, k, v, **kwargs), sdpa(q, k, v, **kwargs))


def test_path_report_names_the_path_and_why():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert batch_path(mlp, is_plain_mlp=True).path == "fast"
    report = str(batch_path(conv_bn(), is_plain_mlp=False))
    assert report.startswith("vmap: ") and "BatchNorm2d" in report and "Conv2d" in report
    dropout = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 2))
    report = str(batch_path(dropout, is_plain_mlp=False))
    assert report.startswith("sequential: ") and "Dropout(p=0.2)" in report and "\n" not in report


@pytest.mark.parametrize("model, layer", [
    (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), "Dropout(p=0.5)"),
    (nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), "MultiheadAttention(dropout=0.1)"),
    (nn.LSTM(4, 4), "LSTM"),
])
def test_model_the_batched_trainer_cannot_take_gets_one_line_reason(model, layer):
    reason = check_batchable(model)
    assert layer in reason and "\n" not in reason
    X, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="engine='sequential'"):
        train_batched(lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), X, y, [Member(0.0, 0.1)],
                      TrainConfig(epochs=1))


def test_device_argument_is_checked():
    X, y = images()
    config = TrainConfig(epochs=1, dtype=torch.float64)
    with pytest.raises(ValueError, match="device"):
        train_batched(conv_bn, X, y, [Member(0.0, 0.1)], config, device="warp-drive")
    with pytest.raises(TypeError, match="device"):
        train_alone(conv_bn, X, y, [Member(0.0, 0.1)], config, device=3)
    cpu = train_batched(conv_bn, X, y, [Member(0.0, 0.1)], config, device="cpu", keep_weights=True)
    default = train_batched(conv_bn, X, y, [Member(0.0, 0.1)], config, keep_weights=True)
    if not torch.cuda.is_available():
        assert max_state_gap(cpu, default) == 0.0


def test_batchnorm_short_last_batch_of_equal_length_sees_only_real_rows():
    # 20 rows at batch 6: every member's last batch has 2 real rows and 4 padding rows
    X, y = images(40)
    members = [Member(0.0, 0.05, seed=s, train_index=range(s, 40, 2)) for s in (0, 1)]
    config = TrainConfig.from_options(optimizer="sgd", momentum=0.9, epochs=3, batch_size=6, dtype=torch.float64)
    alone = train_alone(conv_bn, X, y, members, config, keep_weights=True)
    batched = train_batched(conv_bn, X, y, members, config, keep_weights=True)
    assert max_state_gap(alone, batched) < 1e-12
