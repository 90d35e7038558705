"""What the doctor says about Muon and its AdamW companion (and about Lion), from the recipes: torch's,
Moonlight's, Keller Jordan's, the Lion paper's; and the framework callbacks reading MuonAdamW's two halves."""

import math

import pytest
import torch
from torch import nn

import decaylab.optim as dopt
from decaylab.conventions import convert, update_matched_lr
from decaylab.diagnostics.doctor import doctor
from decaylab.groups import param_groups
from decaylab.integrations._callback import MonitorCallbackCore

RUN = dict(total_steps=400_000, steps_per_epoch=500)


class TinyGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 32)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 50)

    def forward(self, x):
        h = self.emb(x)
        return self.head(self.norm(h + self.down(torch.relu(self.up(h)))))


def hidden(model):
    return [model.up.weight, model.down.weight]


def rest(model, weight_decay):
    """AdamW's groups for everything but the hidden matrices (head decayed; biases, norm, embedding not)."""
    ids = {id(p) for p in hidden(model)}
    groups = param_groups(model, weight_decay)
    for g in groups:
        g["params"] = [p for p in g["params"] if id(p) not in ids]
    return [g for g in groups if g["params"]]


def by_code(findings, code):
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, str(findings)
    return found[0]


def test_keller_jordans_recipe_gets_the_numbers_and_no_warning():
    model = TinyGPT()
    opt = dopt.MuonAdamW(dopt.muon_param_groups(model), muon=dict(lr=0.02, weight_decay=0.01),
                         adamw=dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.01))
    findings = doctor(model, opt, **RUN)
    # no warning; besides muon-decay, the AdamW companion's τ_epoch (3.3e5 steps / 500 = 667 epochs) is far outside
    # the τ_epoch range the scaling ladders measured, an info (decaylab.scaling.support)
    assert findings.codes == ["tau-unsupported", "muon-decay"], str(findings)
    assert by_code(findings, "tau-unsupported").params == ("head.weight",)
    info = by_code(findings, "muon-decay")
    assert set(info.params) == {"up.weight", "down.weight"}
    # per step lr·λ = 2e-4; the update RMS lr/√B (B = 32 and 64); relative to it, AdamW λ's 0.01·0.2·√B
    assert "removes 0.0002 of each matrix per step" in info.why
    assert f"RMS {0.02 / 8:.3g}–{0.02 / math.sqrt(32):.3g}" in info.why
    assert f"AdamW λ of {0.01 * 0.2 * math.sqrt(32):.3g}–{0.01 * 0.2 * 8:.3g}" in info.why
    assert "weight_decay 0.01 at lr 0.0003: 3e-06 per step" in info.why       # the AdamW half
    assert "--from muon-original --to torch-adamw --shape 64,32" in info.fix


@pytest.mark.parametrize("two_optimizers", [True, False], ids=["Muon+AdamW", "MuonAdamW"])
def test_adamws_lambda_copied_into_muon_under_original_scaling_is_flagged(two_optimizers):
    model = TinyGPT()
    lr, lam = 1e-3, 0.1
    if two_optimizers:    # torch's Muon and AdamW, as torch's documentation pairs them
        opt = [torch.optim.Muon(hidden(model), lr=lr, weight_decay=lam),
               torch.optim.AdamW(rest(model, lam), lr=lr)]
    else:
        opt = dopt.MuonAdamW(dopt.muon_param_groups(model), muon=dict(lr=lr, weight_decay=lam),
                             adamw=dict(lr=lr, weight_decay=lam))
    findings = doctor(model, opt, **RUN)
    warning = by_code(findings, "muon-adamw-lambda")
    assert warning.severity == "warning" and set(warning.params) == {"up.weight", "down.weight"}
    # the same per-step decay, but 0.2·√B× stronger relative to the update (B = 32, 64)
    assert "lr·λ = 0.0001 is the same" in warning.why
    assert f"{0.2 * math.sqrt(32):.3g}–{0.2 * 8:.3g}× stronger" in warning.why
    # the fix's numbers are the conversions for the largest matrix (64×32, B = 32)
    matched_lam = convert(lam, "torch-adamw", "muon-original", shape=(64, 32))
    matched_lr = update_matched_lr(lr, "torch-adamw", "muon-original", shape=(64, 32))
    assert f"lr {matched_lr:.3g} and weight_decay {matched_lam:.3g}" in warning.fix
    assert "match_rms_adamw" in warning.fix
    # following the fix (Moonlight's scaling, the same lr and λ) clears it
    if two_optimizers:
        fixed = [torch.optim.Muon(hidden(model), lr=lr, weight_decay=lam, adjust_lr_fn="match_rms_adamw"),
                 torch.optim.AdamW(rest(model, lam), lr=lr)]
    else:
        fixed = dopt.MuonAdamW(dopt.muon_param_groups(model),
                               muon=dict(lr=lr, weight_decay=lam, adjust_lr_fn="match_rms_adamw"),
                               adamw=dict(lr=lr, weight_decay=lam))
    after = doctor(model, fixed, **RUN)
    assert "muon-adamw-lambda" not in after.codes and "muon-recipe-mix" not in after.codes
    info = by_code(after, "muon-decay")
    assert "an AdamW λ of 0.1 " in info.why            # Moonlight: AdamW's λ carries over exactly
    # and so does keeping 'original' with the suggested lr and λ (the λ is no longer the AdamW half's)
    kept = [torch.optim.Muon(hidden(model), lr=matched_lr, weight_decay=matched_lam),
            torch.optim.AdamW(rest(model, lam), lr=lr)]
    assert "muon-adamw-lambda" not in doctor(model, kept, **RUN).codes


def test_keller_jordans_lr_with_moonlights_scaling_is_a_recipe_mix():
    model = TinyGPT()
    mixed = [torch.optim.Muon(hidden(model), lr=0.02, weight_decay=0.01, adjust_lr_fn="match_rms_adamw"),
             torch.optim.AdamW(rest(model, 0.01), lr=3e-4, betas=(0.9, 0.95))]
    warning = by_code(doctor(model, mixed, **RUN), "muon-recipe-mix")
    assert "its lr is 66.7× that of its AdamW companion" in warning.why
    assert "decay 66.7× faster per step" in warning.why
    # the same with decaylab's Muon(update_rms=0.2), which is match_rms_adamw
    mixed[0] = dopt.Muon(hidden(model), lr=0.02, weight_decay=0.01, update_rms=0.2)
    assert "muon-recipe-mix" in doctor(model, mixed, **RUN).codes
    moonlight = [torch.optim.Muon(hidden(model), lr=3e-4, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"),
                 torch.optim.AdamW(rest(model, 0.1), lr=3e-4)]
    assert not {"muon-recipe-mix", "muon-adamw-lambda"} & set(doctor(model, moonlight, **RUN).codes)


def test_muon_without_decay_beside_a_decaying_adamw_is_an_info():
    model = TinyGPT()
    opt = [torch.optim.Muon(hidden(model), lr=0.02, weight_decay=0.0),
           torch.optim.AdamW(rest(model, 0.1), lr=1e-3)]
    info = by_code(doctor(model, opt, **RUN), "muon-no-decay")
    assert info.severity == "info" and "Moonlight" in info.why
    both_off = [torch.optim.Muon(hidden(model), lr=0.02, weight_decay=0.0),
                torch.optim.AdamW(rest(model, 0.0), lr=1e-3)]
    assert doctor(model, both_off, **RUN).codes == ["decay-off"]


def test_lion_with_adamws_values_is_flagged_with_the_papers_conversion():
    model = TinyGPT()
    opt = dopt.Lion(param_groups(model, 0.01), lr=1e-3)
    warning = by_code(doctor(model, opt, **RUN), "lion-adamw-values")
    assert "3–10× smaller" in warning.why
    lam, lr = convert(0.01, "torch-adamw", "lion"), update_matched_lr(1e-3, "torch-adamw", "lion")
    assert f"lr {lr:.3g} and weight_decay {lam:.3g}" in warning.fix
    # the paper's kind of setting (lr 1e-4, λ 1.0: lr·λ = 1e-4 per step) has nothing to flag
    assert doctor(model, dopt.Lion(param_groups(model, 1.0), lr=1e-4), **RUN) == []


def test_the_callbacks_read_both_halves_of_muon_adamw():
    model = TinyGPT()
    opt = dopt.MuonAdamW(dopt.muon_param_groups(model), muon=dict(lr=0.02, weight_decay=0.01),
                         adamw=dict(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1))
    core = MonitorCallbackCore(every=1)
    warnings = []
    core.start(model, opt, 400_000, warnings.append)
    assert "muon-decay" in [f.code for f in core.findings] and warnings == []
    x = torch.randint(0, 50, (4, 6))
    for _ in range(2):
        opt.zero_grad()
        model(x).logsumexp(-1).mean().backward()
        opt.step()
    records = {r["param"]: r for r in core.monitor.history if r["step"] == 2}
    assert (records["up.weight"]["lr"], records["up.weight"]["weight_decay"]) == (0.02, 0.01)
    head = records["head.weight"]
    assert (head["lr"], head["weight_decay"]) == (3e-4, 0.1)
    assert head["predicted_angle"] == pytest.approx(math.sqrt(2 * 3e-4 * 0.1 * 0.1 / 1.9))    # AdamW's
    assert head["max_abs_bound"] == pytest.approx(10.0)
    core.stop()
