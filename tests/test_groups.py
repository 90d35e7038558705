import pytest
import torch
from torch import nn

from decaylab.groups import classify_parameters, param_groups


class TinyLM(nn.Module):
    """A transformer-like model: tied embedding/output, learned positions, LayerNorm, attention."""

    def __init__(self, vocab=11, d=8, tie=True):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(5, d))
        self.block = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=16, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.head.weight = self.wte.weight

    def forward(self, idx):
        return self.head(self.norm(self.block(self.wte(idx) + self.pos[: idx.shape[1]])))


def _names(groups, model):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [sorted(by_id[id(p)] for p in g["params"]) for g in groups]


def _assert_partition(groups, model):
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(ids) == trainable


def test_transformer_defaults():
    model = TinyLM(tie=False)
    groups = param_groups(model, 0.1)
    _assert_partition(groups, model)
    decay, no_decay = _names(groups, model)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert decay == sorted(["block.self_attn.in_proj_weight", "block.self_attn.out_proj.weight",
                            "block.linear1.weight", "block.linear2.weight", "head.weight", "pos"])
    assert "wte.weight" in no_decay and "norm.weight" in no_decay and "block.norm1.weight" in no_decay
    assert "block.self_attn.in_proj_bias" in no_decay and "block.linear1.bias" in no_decay


def test_tied_embedding_listed_once_and_follows_embedding():
    model = TinyLM(tie=True)
    groups = param_groups(model, 0.1)
    _assert_partition(groups, model)
    decay, no_decay = _names(groups, model)
    assert "wte.weight" in no_decay and "head.weight" not in decay + no_decay
    decisions = {d.name: d for d in classify_parameters(model)}
    assert decisions["wte.weight"].rule == "embedding" and "Embedding owns wte.weight" in decisions["wte.weight"].reason
    assert decisions["block.linear1.bias"].rule == "no_decay_names"
    assert decisions["norm.weight"].rule == "normalization" and decisions["pos"].rule == "default"
    # forcing decay by one of the tied names decays the shared tensor once
    decay, no_decay = _names(param_groups(model, 0.1, decay_names=["head.weight"]), model)
    assert "wte.weight" in decay and "wte.weight" not in no_decay


def test_frozen_parameters_are_in_no_group():
    model = TinyLM(tie=False)
    model.block.requires_grad_(False)
    groups = param_groups(model, 0.1)
    _assert_partition(groups, model)
    assert not any(n.startswith("block.") for g in _names(groups, model) for n in g)


def test_custom_glob_and_regex_patterns_and_types():
    model = TinyLM(tie=False)
    decay, no_decay = _names(param_groups(model, 0.1, no_decay_names=["*bias", "pos"]), model)
    assert "pos" in no_decay
    decay, no_decay = _names(param_groups(model, 0.1, no_decay_names=[r"^pos$", r"\.bias$"],
                                          pattern_syntax="regex"), model)
    assert "pos" in no_decay and "block.linear1.bias" in no_decay
    assert "block.self_attn.in_proj_bias" in decay  # regex anchored on '.bias' only
    # decay_embeddings: embeddings decayed, norms still excluded; no_decay_names=(): biases decayed
    decay, no_decay = _names(param_groups(model, 0.1, decay_embeddings=True, no_decay_names=()), model)
    assert "wte.weight" in decay and "block.linear1.bias" in decay
    assert no_decay == sorted(["norm.weight", "norm.bias", "block.norm1.weight", "block.norm1.bias",
                               "block.norm2.weight", "block.norm2.bias"])


def test_no_decay_types_add_to_the_defaults():
    """Passing types keeps the norm/embedding defaults, including norms found by class name (RMSNorm)."""
    class LlamaRMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

    model = nn.Sequential(nn.Embedding(5, 4), LlamaRMSNorm(4), nn.Linear(4, 4), nn.Linear(4, 2))
    decisions = {d.name: d for d in classify_parameters(model, no_decay_types=[nn.LayerNorm])}
    assert not decisions["1.weight"].decay and decisions["1.weight"].rule == "normalization"
    assert not decisions["0.weight"].decay and decisions["0.weight"].rule == "embedding"
    decisions = {d.name: d for d in classify_parameters(model, no_decay_types=[nn.Linear])}
    assert not decisions["2.weight"].decay and decisions["2.weight"].rule == "no_decay_types"


def test_no_weight_decay_method_and_free_low_dim_parameters_are_spared():
    class ViTish(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
            self.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
            self.gamma = nn.Parameter(torch.ones(4))          # layer scale
            self.logit_scale = nn.Parameter(torch.tensor(1.0))
            self.proj = nn.Linear(4, 4)

        def no_weight_decay(self):
            return {"cls_token", "pos_embed"}

    model = nn.Sequential(ViTish())
    decisions = {d.name: d for d in classify_parameters(model)}
    assert decisions["0.cls_token"].rule == "no_weight_decay" and not decisions["0.cls_token"].decay
    assert decisions["0.pos_embed"].rule == "no_weight_decay"
    assert decisions["0.gamma"].rule == "free_low_dim" and decisions["0.logit_scale"].rule == "free_low_dim"
    assert decisions["0.proj.weight"].decay and not decisions["0.proj.bias"].decay
    # decay_names still wins over every exclusion
    forced = {d.name: d.decay for d in classify_parameters(model, decay_names=["*gamma", "*cls_token"])}
    assert forced["0.gamma"] and forced["0.cls_token"] and not forced["0.pos_embed"]


def test_custom_norm_class_found_by_name_and_groups_build_an_optimizer():
    class MyRMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x * self.scale / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()

    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(8, 3), MyRMSNorm(3))
    groups = param_groups(model, 0.05, with_names=True)
    decay_names = [n for n, _ in groups[0]["params"]]
    assert decay_names == ["0.weight", "3.weight"]
    opt = torch.optim.AdamW(groups, lr=1e-2)
    assert opt.param_groups[0]["param_names"] == decay_names
    assert opt.param_groups[1]["weight_decay"] == 0.0
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(5, 2, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_bad_input():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="weight_decay must be in"):
        param_groups(model, -0.1)
    with pytest.raises(ValueError, match="pattern_syntax must be one of 'glob', 'regex', got 're'"):
        param_groups(model, 0.1, pattern_syntax="re")
    with pytest.raises(ValueError, match=r"no_decay_names must be valid regular expressions, got '\('"):
        param_groups(model, 0.1, no_decay_names=["("], pattern_syntax="regex")
    with pytest.raises(TypeError, match="no_decay_types must be torch.nn.Module subclasses"):
        param_groups(model, 0.1, no_decay_types=[int])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        param_groups([torch.ones(2)], 0.1)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="model must have at least one trainable parameter"):
        param_groups(model, 0.1)


def test_decay_rule_is_frozen_checked_and_the_one_classifier():
    import dataclasses

    from decaylab import DecayRule

    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    rule = DecayRule(decay_embeddings=True)
    assert rule.decays(model) == {"0.weight": True, "1.weight": True, "1.bias": False, "2.weight": False,
                                  "2.bias": False}
    assert [d.decay for d in rule.classify(model)] == [
        d.decay for d in classify_parameters(model, decay_embeddings=True)]
    assert all(DecayRule.everything().decays(model).values())
    assert rule.as_dict()["decay_embeddings"] is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.decay_names = ("*",)
    with pytest.raises(TypeError, match="no_decay_types"):
        DecayRule(no_decay_types=(int,))
    with pytest.raises(ValueError, match="decay_names must be valid regular expressions"):
        DecayRule(decay_names=("(",), pattern_syntax="regex")
    with pytest.raises(ValueError, match="pattern_syntax"):
        DecayRule(pattern_syntax="sql")
