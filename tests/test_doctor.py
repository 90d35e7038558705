import json

import pytest
import torch
from torch import nn

import decaylab.optim as dopt
from decaylab.diagnostics.doctor import Findings, doctor
from decaylab.groups import param_groups

RUN = dict(total_steps=50_000, steps_per_epoch=500)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.lin = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)


def healthy(model, opt_class=torch.optim.AdamW, **kw):
    """AdamW(lr=1e-3, λ=0.1) on the decay/no-decay split: τ_iter = 1e4 steps, inside a 5e4-step run."""
    kw = {"lr": 1e-3, **kw}
    return opt_class(param_groups(model, kw.pop("weight_decay", 0.1)), **kw)


def with_warmup(opt):
    torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=100)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    return opt


def codes(findings):
    return sorted(set(findings.codes))


@pytest.mark.parametrize("make", [
    lambda m: healthy(m),
    lambda m: healthy(m, dopt.AdamW),
    lambda m: healthy(m, dopt.AdamW, weight_decay=1e-4, decay_scaling="schedule"),
    lambda m: healthy(m, torch.optim.SGD, lr=0.1, weight_decay=1e-3),
    lambda m: healthy(m, dopt.SGDW, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda m: with_warmup(healthy(m)),  # judged at the peak lr, not the warm-up's first 1e-5
], ids=["torch-adamw", "decaylab-adamw", "decaylab-adamw-schedule", "torch-sgd", "decaylab-sgdw",
        "torch-adamw-warmup"])
def test_healthy_setups_have_no_findings(make):
    model = Net()
    findings = doctor(model, make(model), **RUN)
    assert findings == [], str(findings)
    assert str(findings) == "decaylab doctor: no weight-decay problems found."


def test_missing_params():
    model = Net()
    groups = param_groups(model, 0.1)
    groups[0]["params"] = [p for p in groups[0]["params"] if p is not model.head.weight]
    findings = doctor(model, torch.optim.AdamW(groups, lr=1e-3), **RUN)
    assert codes(findings) == ["missing-params"]
    assert findings[0].severity == "error" and findings[0].params == ("head.weight",)


@pytest.mark.parametrize("opt_class", [torch.optim.Adam, dopt.Adam])
def test_coupled_adaptive(opt_class):
    model = Net()
    findings = doctor(model, healthy(model, opt_class, weight_decay=1e-2), **RUN)
    assert codes(findings) == ["coupled-adaptive"]
    assert set(findings[0].params) == {"lin.weight", "head.weight"} and "AdamW" in findings[0].fix
    # torch's Adam with decoupled_weight_decay=True is AdamW: no finding
    assert doctor(model, healthy(model, torch.optim.Adam, decoupled_weight_decay=True), **RUN) == []


def test_coupled_sgd_momentum_is_info():
    model = Net()
    findings = doctor(model, healthy(model, torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4), **RUN)
    assert codes(findings) == ["coupled-sgd-momentum"] and findings[0].severity == "info"


def test_decay_on_biases_norms_embeddings():
    model = Net()
    findings = doctor(model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1), **RUN)
    assert codes(findings) == ["decay-on-embeddings", "decay-on-no-decay"]
    by_code = {f.code: f for f in findings}
    warning, info = by_code["decay-on-no-decay"], by_code["decay-on-embeddings"]
    assert set(warning.params) == {"lin.bias", "norm.weight", "norm.bias", "head.bias"}
    assert "normalization layers" in warning.why and warning.severity == "warning"
    assert "param_groups" in warning.fix
    # embeddings: transformers' Trainer decays them; information, not a warning
    assert info.params == ("emb.weight",) and info.severity == "info" and "Trainer" in info.why
    # the same overrides as param_groups: decay_embeddings=True means decayed embeddings are intended
    intended = doctor(model, torch.optim.AdamW(param_groups(model, 0.1, decay_embeddings=True), lr=1e-3),
                      decay_embeddings=True, **RUN)
    assert "decay-on-embeddings" not in codes(intended) and "decay-on-no-decay" not in codes(intended)


def test_decay_weak_over_a_short_run_is_an_info_without_advice_to_raise():
    model = Net()
    # torch AdamW λ=0.01, lr=1e-3: τ = 1e5 steps > a 5e4-step run: a light pull, not a mistake
    weak = doctor(model, healthy(model, weight_decay=0.01), **RUN)
    assert codes(weak) == ["decay-weak"] and weak[0].severity == "info"
    assert "39%" in weak[0].why  # 1 − e^(−0.5): the most decay can remove over the run
    assert "raise" not in str(weak).lower()
    assert doctor(model, healthy(model, weight_decay=0.01), total_steps=200_000) == []


def test_decay_dominates_with_and_without_the_run_length():
    model = Net()
    # SGD lr=0.1, λ=0.05: τ = 200 steps < a 500-step epoch
    dominated = doctor(model, healthy(model, torch.optim.SGD, lr=0.1, weight_decay=0.05), **RUN)
    assert codes(dominated) == ["decay-dominates"] and "shorter than one epoch" in dominated[0].why
    assert "0.002" in dominated[0].fix  # τ = max(1000, an epoch, a tenth of the run) = 5000 steps: 0.05·200/5000
    # lr·λ = 0.1 per step: caught with a run of 100 or 10,000 steps, or no length at all
    for run in (100, 10_000, None):
        for opt in (healthy(model, lr=1e-3, weight_decay=100.0), healthy(model, torch.optim.SGD, lr=0.1,
                                                                          weight_decay=1.0)):
            found = doctor(model, opt, total_steps=run)
            assert codes(found) == ["decay-dominates"], (run, str(found))
            assert "10% of every weight per step" in found[0].why
    # a small fraction of a long run: τ = 500 steps in a 10⁶-step run
    long_run = doctor(model, healthy(model, lr=1e-3, weight_decay=2.0), total_steps=1_000_000)
    assert codes(long_run) == ["decay-dominates"] and "2e+03× shorter than the run" in long_run[0].why


def test_adamw_bound_below_the_weights_scale():
    """Xie & Li: AdamW ends inside max|w| ≤ 1/λ; λ=20 bounds the weights by 0.05, a quarter of the RMS of
    Linear(8, 8)'s init, although τ = 5000 steps is unremarkable."""
    model = Net()
    rms = float(model.lin.weight.detach().pow(2).mean().sqrt())
    assert 1 / 20 < 0.5 * rms
    found = doctor(model, healthy(model, lr=1e-5, weight_decay=20.0))
    assert codes(found) == ["decay-dominates"] and "1/λ = 0.05" in found[0].why
    assert "lin.weight" in found[0].why or "head.weight" in found[0].why
    fixed = float(found[0].fix.split()[-1])
    assert doctor(model, healthy(model, lr=1e-5, weight_decay=fixed)) == []


def test_decay_inert_is_one_finding_with_one_fix():
    model = Net()
    # λ=1e-8 in torch AdamW at lr 1e-3: 1e-11 per step. One verdict, not "raise to 10" next to "use 1e-5".
    found = doctor(model, healthy(model, weight_decay=1e-8), total_steps=1000)
    assert codes(found) == ["decay-inert"] and len(found) == 1
    assert "set weight_decay=0" in found[0].fix and "schedule-scaled" not in found[0].fix  # 1e-8/step: inert too
    # a paper value (1e-5 per step) in torch's lr-scaled AdamW: the fix names λ/lr
    paper = doctor(model, healthy(model, weight_decay=1e-5))
    assert codes(paper) == ["decay-inert"] and "weight_decay=0.01 (λ/lr)" in paper[0].fix
    assert doctor(model, healthy(model, dopt.AdamW, weight_decay=1e-5, decay_scaling="schedule")) == []


def test_lambda_copied_across_conventions():
    model = Net()
    # a torch-AdamW value with the paper's schedule scaling: 10% of every weight per step
    sched = doctor(model, healthy(model, dopt.AdamW, weight_decay=0.1, decay_scaling="schedule"))
    assert codes(sched) == ["lambda-convention"]
    assert "0.0001" in sched[0].fix  # 0.1·lr_0
    assert doctor(model, healthy(model, dopt.AdamW, weight_decay=1e-4, decay_scaling="schedule")) == []


STRENGTH = {"decay-dominates", "lambda-convention", "decay-inert", "decay-weak"}


@pytest.mark.parametrize("family", ["adamw", "adamw-schedule", "sgd", "sgdw"])
def test_strength_verdicts_never_contradict(family):
    """Over a grid of λ, lr and run lengths: at most one strength finding per group, and the value a
    too-strong finding proposes is itself neither too strong nor inert."""
    model = Net()
    make = {"adamw": lambda lr, lam: healthy(model, lr=lr, weight_decay=lam),
            "adamw-schedule": lambda lr, lam: healthy(model, dopt.AdamW, lr=lr, weight_decay=lam,
                                                      decay_scaling="schedule"),
            "sgd": lambda lr, lam: healthy(model, torch.optim.SGD, lr=lr, momentum=0.9, weight_decay=lam),
            "sgdw": lambda lr, lam: healthy(model, dopt.SGDW, lr=lr, momentum=0.9, weight_decay=lam)}[family]
    checked = 0
    for lr in (1e-5, 1e-3, 0.1):
        for lam in (1e-9, 1e-6, 1e-4, 1e-2, 0.1, 1.0, 100.0):
            for run in (None, 100, 10_000, 1_000_000):
                for spe in (None, 50):
                    found = doctor(model, make(lr, lam), total_steps=run, steps_per_epoch=spe)
                    verdicts = [f for f in found if f.code in STRENGTH]
                    assert len(verdicts) <= 1, str(found)
                    if verdicts and verdicts[0].code in ("decay-dominates", "lambda-convention"):
                        fix = float(verdicts[0].fix.split("use ")[1].split()[0] if "use " in verdicts[0].fix
                                    else verdicts[0].fix.split()[-1])
                        again = doctor(model, make(lr, fix), total_steps=run, steps_per_epoch=spe)
                        assert not {f.code for f in again if f.severity == "warning"} & STRENGTH, (lr, lam, str(again))
                        checked += 1
                    if verdicts and "(λ/lr)" in verdicts[0].fix:   # the paper-value reading of an inert λ
                        meant = float(verdicts[0].fix.split("weight_decay=")[1].split()[0])
                        again = doctor(model, make(lr, meant), total_steps=run, steps_per_epoch=spe)
                        assert not {f.code for f in again if f.severity == "warning"} & STRENGTH, (lr, lam, str(again))
                        checked += 1
    assert checked > 5


def test_decay_off_is_an_info():
    model = Net()
    found = doctor(model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0), **RUN)
    assert codes(found) == ["decay-off"] and found[0].severity == "info"
    assert doctor(model, torch.optim.Adam(param_groups(model, 0.0), lr=1e-3)).codes == ["decay-off"]


def test_frozen_parameters_in_a_decayed_group():
    model = Net()
    model.lin.requires_grad_(False)
    groups = param_groups(model, 0.1)
    groups[0]["params"].append(model.lin.weight)
    findings = doctor(model, torch.optim.AdamW(groups, lr=1e-3), **RUN)
    assert codes(findings) == ["frozen-decayed"] and findings[0].params == ("lin.weight",)
    assert doctor(model, torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3), **RUN) == []


def test_params_not_in_model_and_report_text():
    model = Net()
    stray = nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([*model.parameters(), stray], lr=1e-3, weight_decay=0.1)
    findings = doctor(model, opt, **RUN)
    assert findings.codes[0] == "coupled-adaptive" and findings[-1].code == "params-not-in-model"
    assert [f.severity for f in findings] == sorted((f.severity for f in findings),
                                                    key=("error", "warning", "info").index)
    text = str(findings)
    assert text.startswith("decaylab doctor: 2 warnings, 2 infos")     # decayed embeddings are an info
    assert "[warning] coupled-adaptive:" in text and "    fix: " in text and "(+" in text
    rows = json.loads(json.dumps(findings.to_dicts()))
    assert [r["code"] for r in rows] == findings.codes and rows[-1]["params"] == ["group0.param7"]


def test_decaylab_doctor_is_the_function():
    import decaylab.diagnostics.doctor  # (the module has its own name, so nothing rebinds decaylab.doctor)

    assert decaylab.doctor is decaylab.diagnostics.doctor.doctor
    model = Net()
    result = decaylab.doctor(model, healthy(model), **RUN)
    assert isinstance(result, Findings) and result == []
    assert decaylab.doctor(model, healthy(model, torch.optim.Adam, weight_decay=1e-2), **RUN).codes == [
        "coupled-adaptive"]

def test_bad_input():
    model = Net()
    opt = healthy(model)
    with pytest.raises(ValueError, match="total_steps must be an integer in"):
        doctor(model, opt, total_steps=0)
    with pytest.raises(TypeError, match="steps_per_epoch must be an integer"):
        doctor(model, opt, steps_per_epoch=1.5)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        doctor(model, "adamw")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        doctor(opt, opt)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer or a non-empty list of them, "
                                        "got str"):
        doctor(model, [opt, "sgd"])
    with pytest.raises(TypeError, match="non-empty list"):
        doctor(model, [])
    other = healthy(Net())
    with pytest.raises(ValueError, match="scheduler must schedule the optimizer given to doctor"):
        doctor(model, [opt], scheduler=torch.optim.lr_scheduler.StepLR(other, 10))


class GAN(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
        self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.temperature = nn.Parameter(torch.ones(()))


def test_several_optimizers_are_checked_together():
    gan = GAN()
    gen = torch.optim.AdamW(param_groups(gan.generator, 0.1), lr=1e-3)
    dis = torch.optim.AdamW(param_groups(gan.discriminator, 0.1), lr=1e-3)
    alone = doctor(gan, gen, **RUN)                  # the discriminator looks missing to one optimizer
    assert "missing-params" in alone.codes and any("discriminator.0.weight" in f.params for f in alone)
    both = doctor(gan, [gen, dis], **RUN)
    missing = [f for f in both if f.code == "missing-params"]
    assert len(missing) == 1 and missing[0].params == ("temperature",)     # held by neither, named once
    gan.temperature.requires_grad_(False)
    assert doctor(gan, [gen, dis], **RUN).codes == []
    # a finding about one optimizer's groups still comes through, and the scheduler may be either one's
    strong = torch.optim.AdamW(param_groups(gan.discriminator, 0.5), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(strong, T_max=1000)
    assert "decay-dominates" in doctor(gan, [gen, strong], scheduler=sched).codes
    # decay-off only when no optimizer decays
    plain = torch.optim.AdamW(gan.discriminator.parameters(), lr=1e-3, weight_decay=0.0)
    assert "decay-off" not in doctor(gan, [gen, plain], **RUN).codes
    plain_gen = torch.optim.AdamW(gan.generator.parameters(), lr=1e-3, weight_decay=0.0)
    assert doctor(gan, [plain_gen, plain], **RUN).codes.count("decay-off") == 1
