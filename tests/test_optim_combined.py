"""MuonAdamW, one optimizer for a whole model, and muon_param_groups, the split that feeds it.

The oracle is torch itself: the Muon groups must equal ``torch.optim.Muon`` and the AdamW
groups ``torch.optim.AdamW``, run as two separate optimizers on the same model, with and
without LR schedulers; the state dict round trip continues as if uninterrupted.
"""

from __future__ import annotations

import copy

import pytest
import torch
from optim_training import resumed_run, weights
from torch import nn

from decaylab.groups import DecayRule
from decaylab.optim import Muon, MuonAdamW, MuonRule, muon_param_groups

VOCAB = 13


class TinyLM(nn.Module):
    """Embedding, a norm, a residual MLP block (biases), an output head (tied to the embedding or not)."""

    def __init__(self, tied=False):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 8)
        self.norm = nn.LayerNorm(8)
        self.up = nn.Linear(8, 24)
        self.down = nn.Linear(24, 8)
        self.head = nn.Linear(8, VOCAB, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.down(torch.tanh(self.up(self.norm(h))))
        return self.head(h)


def _lm(seed=0, tied=False):
    torch.manual_seed(seed)
    return TinyLM(tied)


def _token_batches(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, VOCAB, (4, 6), generator=gen), torch.randint(0, VOCAB, (4, 6), generator=gen))
            for _ in range(n)]


def _train_lm(model, optimizers, batches, schedulers=()):
    for tokens, targets in batches:
        for opt in optimizers:
            opt.zero_grad()
        nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten()).backward()
        for opt in optimizers:
            opt.step()
        for sched in schedulers:
            sched.step()


MUON = dict(lr=0.02, weight_decay=0.05)
ADAMW = dict(lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95))


def _torch_pair(model, **adamw_flags):
    """torch.optim.Muon on the Muon groups and torch.optim.AdamW on the others, from the same split."""
    groups = muon_param_groups(model)
    halves = [[{k: v for k, v in g.items() if k != "use_muon"} for g in groups if g["use_muon"] == use_muon]
              for use_muon in (True, False)]
    return torch.optim.Muon(halves[0], **MUON), torch.optim.AdamW(halves[1], **ADAMW, **adamw_flags)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("adamw_path", [{}, {"foreach": True}, {"fused": True}])
def test_each_half_equals_torchs_optimizer_run_separately(adamw_path, tied):
    batches = _token_batches(60)
    ours_model, torch_model = _lm(tied=tied), _lm(tied=tied)
    ours = MuonAdamW(muon_param_groups(ours_model), muon=MUON, adamw={**ADAMW, **adamw_path})
    _train_lm(ours_model, [ours], batches)
    _train_lm(torch_model, list(_torch_pair(torch_model, **adamw_path)), batches)
    assert not torch.equal(weights(ours_model), weights(_lm(tied=tied)))
    assert torch.equal(weights(ours_model), weights(torch_model))
    keys = {tuple(sorted(ours.state[p])) for p in ours_model.parameters()}
    assert keys == {("momentum_buffer",), ("exp_avg", "exp_avg_sq", "step")}


@pytest.mark.parametrize("scheduler", [
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30, eta_min=1e-5),
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + 0.3 * t))], ids=["cosine", "lambda"])
def test_a_scheduler_scales_both_halves_as_it_scales_two_optimizers(scheduler):
    batches = _token_batches(30)
    ours_model, torch_model = _lm(), _lm()
    ours = MuonAdamW(muon_param_groups(ours_model), muon=MUON, adamw=ADAMW)
    muon, adamw = _torch_pair(torch_model)
    _train_lm(ours_model, [ours], batches[:17], [scheduler(ours)])
    _train_lm(torch_model, [muon, adamw], batches[:17], [scheduler(muon), scheduler(adamw)])
    assert [g["initial_lr"] for g in ours.param_groups] == [0.02, 3e-3, 3e-3]  # each half its own base lr
    assert [g["lr"] for g in ours.param_groups] == [g["lr"] for o in (muon, adamw) for g in o.param_groups]
    assert ours.param_groups[0]["lr"] < 0.02 and ours.param_groups[1]["lr"] < 3e-3
    assert torch.equal(weights(ours_model), weights(torch_model))


def test_state_dict_round_trip_continues_as_uninterrupted():
    def make(model, **overrides):
        return MuonAdamW(muon_param_groups(model), muon={**MUON, "decay_scaling": "schedule", "weight_decay": 1e-3,
                                                          **overrides}, adamw={**ADAMW, **overrides})

    def train(model, opt, batches, scheduler):
        _train_lm(model, [opt], batches, [scheduler])
    model, resumed, opt = resumed_run(_lm, make, _token_batches(20), train)
    assert torch.equal(weights(resumed), weights(model))
    assert [g["decay_reference_lr"] for g in opt.param_groups] == [0.02, 3e-3, 3e-3]
    twin = copy.deepcopy({"model": model, "opt": opt})
    assert twin["opt"].state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    assert twin["opt"]._kind_defaults[True]["decay_scaling"] == "schedule"


def test_a_state_dict_of_the_other_half_is_refused():
    model = _lm()
    opt = MuonAdamW(muon_param_groups(model))
    state = opt.state_dict()
    state["param_groups"][0]["use_muon"] = False
    with pytest.raises(ValueError, match="param group 0 is a Muon group here"):
        MuonAdamW(muon_param_groups(_lm())).load_state_dict(state)


def test_it_is_one_torch_optimizer_with_hooks_closures_and_zero_grad():
    model = _lm()
    opt = MuonAdamW(muon_param_groups(model), muon=MUON, adamw=ADAMW)
    assert isinstance(opt, torch.optim.Optimizer)
    calls = []
    opt.register_step_post_hook(lambda o, args, kw: calls.append("post"))
    tokens, targets = _token_batches(1)[0]

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten())
        loss.backward()
        return loss
    loss = opt.step(closure)
    assert loss.item() > 0 and calls == ["post"]
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_groups_name_their_half_and_refuse_the_other_halfs_options():
    w, b = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(4))
    with pytest.raises(ValueError, match="needs use_muon=True .Muon. or False .AdamW., got use_muon=None"):
        MuonAdamW([w])
    with pytest.raises(ValueError, match="'betas' is an option of AdamW"):
        MuonAdamW([{"params": [w], "use_muon": True, "betas": (0.9, 0.95)}])
    with pytest.raises(ValueError, match="'momentum' is an option of Muon"):
        MuonAdamW([{"params": [b], "use_muon": False, "momentum": 0.9}])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        MuonAdamW([{"params": [b], "use_muon": True}])
    with pytest.raises(ValueError, match="muon must hold Muon's options .* got 'betas'"):
        MuonAdamW([{"params": [w], "use_muon": True}], muon={"betas": (0.9, 0.9)})
    with pytest.raises(ValueError, match="Learning rate should be >= 0"):
        MuonAdamW([{"params": [w], "use_muon": True}], muon={"lr": -1.0})
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        MuonAdamW([{"params": [b], "use_muon": False}], adamw={"differentiable": True})
    opt = MuonAdamW([{"params": [w], "use_muon": True}, {"params": [b], "use_muon": False, "lr": 0.1}])
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.01
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["decay_reference_lr"] == 0.1


# --- muon_param_groups / MuonRule -----------------------------------------------------------------------


def _rules(model, **kwargs):
    return {d.name: (d.use_muon, d.rule) for d in MuonRule(**kwargs).classify(model)}


def test_hidden_matrices_are_muons_and_embeddings_head_and_vectors_adamws():
    assert _rules(_lm()) == {
        "embed.weight": (False, "embedding"), "norm.weight": (False, "not_a_matrix"),
        "norm.bias": (False, "not_a_matrix"), "up.weight": (True, "hidden_matrix"),
        "up.bias": (False, "not_a_matrix"), "down.weight": (True, "hidden_matrix"),
        "down.bias": (False, "not_a_matrix"), "head.weight": (False, "head")}
    tied = _rules(_lm(tied=True))
    assert tied["embed.weight"] == (False, "embedding") and "head.weight" not in tied  # one tensor, listed once


def test_name_overrides_and_regex_syntax():
    assert _rules(_lm(), head_names=())["head.weight"] == (True, "hidden_matrix")
    assert _rules(_lm(), head_names=("down.*",))["down.weight"] == (False, "head")
    assert _rules(_lm(), head_names=("down.*",))["head.weight"] == (True, "hidden_matrix")
    assert _rules(_lm(), adamw_names=("up.weight",))["up.weight"] == (False, "adamw_names")
    assert _rules(_lm(), muon_names=("head.*",))["head.weight"] == (True, "muon_names")
    assert _rules(_lm(), muon_names=(r"^embed\.",), pattern_syntax="regex")["embed.weight"] == (True, "muon_names")
    with pytest.raises(ValueError, match="names up.bias, a 1-D parameter"):
        MuonRule(muon_names=("up.*",)).classify(_lm())
    with pytest.raises(ValueError, match="adamw_names must be valid regular expressions"):
        MuonRule(adamw_names=("(",), pattern_syntax="regex")
    with pytest.raises(TypeError, match="flatten must be a bool"):
        MuonRule(flatten=1)


def test_groups_follow_the_decay_rule_and_carry_each_halfs_lr_and_lambda():
    model = _lm()
    groups = muon_param_groups(model, decay_rule=DecayRule(no_decay_names=("*bias", "down.weight")),
                               muon_lr=0.02, muon_weight_decay=0.01, adamw_weight_decay=0.1, with_names=True)
    summary = [([n for n, _ in g["params"]], {k: v for k, v in g.items() if k != "params"}) for g in groups]
    assert summary == [
        (["up.weight"], {"use_muon": True, "lr": 0.02, "weight_decay": 0.01}),
        (["down.weight"], {"use_muon": True, "lr": 0.02, "weight_decay": 0.0}),
        (["head.weight"], {"use_muon": False, "weight_decay": 0.1}),
        (["embed.weight", "norm.weight", "norm.bias", "up.bias", "down.bias"],
         {"use_muon": False, "weight_decay": 0.0})]
    opt = MuonAdamW(groups)
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["up.weight"]
    with pytest.raises(ValueError, match=r"muon_lr must be in \[0.0, inf\)"):
        muon_param_groups(model, muon_lr=-1.0)
    with pytest.raises(ValueError, match="at least one trainable parameter"):
        muon_param_groups(nn.Linear(2, 2).requires_grad_(False))


def test_conv_kernels_join_muon_flattened_with_flatten():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    assert _rules(model)["0.weight"] == (False, "not_a_matrix")
    assert _rules(model, flatten=True)["2.weight"] == (True, "conv_kernel")
    groups = muon_param_groups(model, muon_rule=MuonRule(flatten=True))
    assert groups[0]["use_muon"] and groups[0]["flatten"] is True and len(groups[0]["params"]) == 2
    opt = MuonAdamW(groups)
    x = torch.randn(2, 3, 8, 8)
    before = model[0].weight.detach().clone()
    model(x).sum().backward()
    opt.step()
    twin = nn.Parameter(before.clone())
    twin.grad = model[0].weight.grad.clone()
    Muon([twin], flatten=True).step()
    assert torch.equal(model[0].weight.detach(), twin.detach())


def test_grad_scaler_unscales_both_halves_and_skips_the_whole_step_on_an_inf():
    """One optimizer to GradScaler: the torch pair's numbers on finite steps; an inf in a Muon gradient
    skips the AdamW half too (two torch optimizers would step the AdamW one)."""
    runs = []
    for pair in (False, True):
        model = _lm()
        opts = list(_torch_pair(model)) if pair else [MuonAdamW(muon_param_groups(model), muon=MUON, adamw=ADAMW)]
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
        for tokens, targets in _token_batches(4):
            for opt in opts:
                opt.zero_grad()
            scaler.scale(nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten())).backward()
            for opt in opts:
                scaler.step(opt)
            scaler.update()
        runs.append(weights(model))
    assert torch.equal(*runs)
    model = _lm()
    opt = MuonAdamW(muon_param_groups(model), muon=MUON, adamw=ADAMW)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    tokens, targets = _token_batches(1)[0]
    scaler.scale(nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten())).backward()
    model.up.weight.grad[0, 0] = float("inf")
    before = weights(model)
    scaler.step(opt)
    scaler.update()
    assert torch.equal(weights(model), before) and scaler.get_scale() == 2.0 ** 7
