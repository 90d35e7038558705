"""The one table of how optimizers decay (decaylab.diagnostics.optimizer_decay) and what the doctor says from it:
torch 2.13's optimizers, each with and without weight decay, decaylab's, the schedule-free ones and unknown ones."""

import math

import pytest
import schedulefree
import torch
from torch import nn

import decaylab.optim as dopt
from decaylab.diagnostics.doctor import doctor
from decaylab.diagnostics.optimizer_decay import FORMS, OPTIMIZER_DECAY, class_decay, group_decay, table_row

RUN = dict(total_steps=50_000, steps_per_epoch=500)
T = torch.optim


def model():
    """Bias-free matrices only, so that every optimizer (Muon too) takes all of model.parameters()."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16, bias=False), nn.Tanh(), nn.Linear(16, 4, bias=False))


class Custom(torch.optim.Optimizer):
    """A user's own optimizer: decaylab cannot know what its weight_decay does."""

    def __init__(self, params, lr=1e-3, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    def step(self, closure=None):
        return None


class OwnStepAdamW(torch.optim.AdamW):
    """A subclass with its own step: it may decay differently from AdamW, so it is unknown too."""

    def step(self, closure=None):
        return super().step(closure)


class PlainSubclassAdamW(torch.optim.AdamW):
    """A subclass that keeps AdamW's step reads as AdamW."""


# (id, optimizer from (params, decays?), form read, doctor codes with decay, a phrase its fix must hold).
# Every decaying setting removes about 1e-4 of a weight per step (τ ≈ 1e4 steps inside the 5e4-step run),
# so the strength checks stay silent and only the convention's own finding shows.
ADAPTIVE_FIX = "has no decoupled option"
CASES = [
    ("SGD", lambda ps, wd: T.SGD(ps, lr=0.1, weight_decay=1e-3 * wd), "coupled", [], None),
    ("SGD-momentum", lambda ps, wd: T.SGD(ps, lr=0.01, momentum=0.9, weight_decay=1e-3 * wd), "coupled",
     ["coupled-sgd-momentum"], "SGDW"),
    ("Adam", lambda ps, wd: T.Adam(ps, lr=1e-3, weight_decay=0.1 * wd), "coupled", ["coupled-adaptive"],
     "decoupled_weight_decay=True"),
    ("Adam-decoupled", lambda ps, wd: T.Adam(ps, lr=1e-3, weight_decay=0.1 * wd, decoupled_weight_decay=True),
     "decoupled", [], None),
    ("AdamW", lambda ps, wd: T.AdamW(ps, lr=1e-3, weight_decay=0.1 * wd), "decoupled", [], None),
    ("Adamax", lambda ps, wd: T.Adamax(ps, lr=1e-3, weight_decay=0.1 * wd), "coupled", ["coupled-adaptive"],
     ADAPTIVE_FIX),
    ("NAdam", lambda ps, wd: T.NAdam(ps, lr=1e-3, weight_decay=0.1 * wd), "coupled", ["coupled-adaptive"],
     "decoupled_weight_decay=True"),
    ("NAdam-decoupled", lambda ps, wd: T.NAdam(ps, lr=1e-3, weight_decay=0.1 * wd, decoupled_weight_decay=True),
     "decoupled", [], None),
    ("RAdam", lambda ps, wd: T.RAdam(ps, lr=1e-3, weight_decay=0.1 * wd), "coupled", ["coupled-adaptive"],
     "decoupled_weight_decay=True"),
    ("RAdam-decoupled", lambda ps, wd: T.RAdam(ps, lr=1e-3, weight_decay=0.1 * wd, decoupled_weight_decay=True),
     "decoupled", [], None),
    ("Adagrad", lambda ps, wd: T.Adagrad(ps, lr=1e-2, weight_decay=0.01 * wd), "coupled", ["coupled-adaptive"],
     ADAPTIVE_FIX),
    ("RMSprop", lambda ps, wd: T.RMSprop(ps, lr=1e-3, weight_decay=0.1 * wd), "coupled", ["coupled-adaptive"],
     ADAPTIVE_FIX),
    ("Adadelta", lambda ps, wd: T.Adadelta(ps, lr=1.0, weight_decay=1e-4 * wd), "coupled", ["coupled-adaptive"],
     ADAPTIVE_FIX),
    ("ASGD", lambda ps, wd: T.ASGD(ps, lr=1e-2, weight_decay=0.01 * wd), "coupled", [], None),
    ("Adafactor", lambda ps, wd: T.Adafactor(ps, lr=1e-2, weight_decay=0.01 * wd), "decoupled-relative-step", [],
     None),
    ("Muon", lambda ps, wd: T.Muon(ps, lr=1e-3, weight_decay=0.1 * wd), "decoupled-unadjusted-lr", ["muon-decay"],
     "--from muon-original --to torch-adamw --shape"),
]
NO_DECAY = [("Rprop", lambda ps: T.Rprop(ps)), ("LBFGS", lambda ps: T.LBFGS(ps)),
            ("SparseAdam", lambda ps: T.SparseAdam(ps))]


@pytest.mark.parametrize("name, make, form, codes, fix", CASES, ids=[c[0] for c in CASES])
def test_the_doctors_reading_and_advice_for_torchs_optimizers(name, make, form, codes, fix):
    net = model()
    opt = make(net.parameters(), 1)
    d = group_decay(opt, opt.param_groups[0])
    assert (d.form, d.kind) == (form, FORMS[form].kind)
    findings = doctor(net, opt, **RUN)
    assert findings.codes == codes, str(findings)
    if fix is not None:
        assert fix in findings[0].fix
    if d.kind == "decoupled":       # never "use AdamW" for an optimizer that already decouples its decay
        assert "coupled-adaptive" not in findings.codes and "use torch.optim.AdamW" not in str(findings)
    # without weight decay: the same reading, and the only finding is that the run does not decay
    # (ASGD still decays through lambd, so it has none)
    plain = make(model().parameters(), 0)
    assert group_decay(plain, plain.param_groups[0]).form == form
    assert doctor(net, make(net.parameters(), 0), **RUN).codes == ([] if name == "ASGD" else ["decay-off"])


@pytest.mark.parametrize("name, make", NO_DECAY, ids=[c[0] for c in NO_DECAY])
def test_optimizers_without_decay_say_so(name, make):
    net = model()
    opt = make(net.parameters())
    d = group_decay(opt, opt.param_groups[0])
    assert (d.kind, d.form, d.step_decay, d.timescale_iters) == ("none", "none", 0.0, math.inf)
    findings = doctor(net, opt, **RUN)
    assert findings.codes == ["decay-off"]
    assert f"{name} has no weight_decay option" in findings[0].why and "l2_penalty" in findings[0].fix


@pytest.mark.parametrize("make", [
    lambda ps: Custom(ps, weight_decay=0.5),
    lambda ps: OwnStepAdamW(ps, lr=1e-3, weight_decay=0.5),
], ids=["optimizer-subclass", "adamw-with-its-own-step"])
def test_an_unknown_optimizer_gets_unknown_convention_and_no_advice(make):
    net = model()
    opt = make(net.parameters())
    d = group_decay(opt, opt.param_groups[0])
    assert (d.kind, d.form, d.entry) == ("unknown", "unknown", None)
    assert (d.step_decay, d.timescale_iters, d.equilibrium_angle, d.max_abs_bound) == (None, None, None, None)
    # λ = 0.5 at lr 1e-3 would be "too strong" for AdamW: for an unknown optimizer nothing is judged
    findings = doctor(net, opt, **RUN)
    assert findings.codes == ["unknown-convention"] and findings[0].severity == "info"
    assert "unknown convention" in findings[0].why and findings[0].fix.startswith("no advice")
    assert set(findings[0].params) == {"0.weight", "2.weight"}
    # the decay-independent checks still run: a missing parameter is still an error
    partial = make([net[0].weight])
    assert doctor(net, partial, **RUN).codes == ["missing-params", "unknown-convention"]


def test_a_subclass_that_keeps_the_step_reads_as_its_base():
    opt = PlainSubclassAdamW(model().parameters(), lr=1e-3, weight_decay=0.1)
    assert table_row(opt).cls is torch.optim.AdamW
    assert group_decay(opt, opt.param_groups[0]).form == "decoupled"


@pytest.mark.parametrize("make, family, scaling", [
    (lambda ps: dopt.SGD(ps, lr=0.1, weight_decay=1e-3), "sgd", "coupled"),
    (lambda ps: dopt.SGDW(ps, lr=0.1, momentum=0.9, weight_decay=1e-3, decay_scaling="schedule"), "sgd", "schedule"),
    (lambda ps: dopt.Adam(ps, lr=1e-3, weight_decay=1e-2), "adam", "coupled"),
    (lambda ps: dopt.Adam(ps, lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True), "adam", "lr"),
    (lambda ps: dopt.AdamW(ps, lr=1e-3, weight_decay=1e-4, decay_scaling="schedule"), "adam", "schedule"),
    (lambda ps: dopt.Muon(ps, lr=1e-3, weight_decay=0.1, decay_scaling="schedule"), "muon", "schedule"),
    (lambda ps: dopt.Lion(ps, lr=1e-4, weight_decay=1.0), "lion", "lr"),
], ids=["SGD", "SGDW-schedule", "Adam", "Adam-decoupled", "AdamW-schedule", "Muon-schedule", "Lion"])
def test_decaylabs_optimizers_are_read_from_their_groups(make, family, scaling):
    opt = make(model().parameters())
    d = group_decay(opt, opt.param_groups[0])
    assert d.family == family
    assert (d.kind == "coupled") == (scaling == "coupled")
    if scaling != "coupled":
        assert d.decay_scaling == scaling
    if family == "muon":
        assert d.form == "decoupled-unadjusted-lr"


def test_muon_adamw_is_read_per_group_as_its_two_halves():
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    opt = dopt.MuonAdamW([
        {"params": [net[0].weight], "use_muon": True, "lr": 0.02, "weight_decay": 0.01},
        {"params": [net[0].bias, net[2].weight, net[2].bias], "use_muon": False, "lr": 3e-4, "weight_decay": 0.01},
    ])
    muon, adamw = (group_decay(opt, g) for g in opt.param_groups)
    assert (muon.form, muon.family, muon.step_decay) == ("decoupled-unadjusted-lr", "muon", pytest.approx(2e-4))
    assert (adamw.form, adamw.family, adamw.step_decay) == ("decoupled", "adam", pytest.approx(3e-6))
    assert muon.update_rms_per_lr((16, 8)) == pytest.approx(1 / math.sqrt(8))    # original: lr/√B
    assert adamw.update_rms_per_lr((16, 8)) is None


@pytest.mark.parametrize("make, form", [
    (lambda ps: schedulefree.AdamWScheduleFree(ps, lr=1e-3, weight_decay=0.1), "decoupled-at-y"),
    (lambda ps: schedulefree.SGDScheduleFree(ps, lr=0.1, weight_decay=1e-3), "decoupled-at-y"),
    (lambda ps: schedulefree.RAdamScheduleFree(ps, lr=1e-3, weight_decay=0.1), "decoupled-at-y"),
    (lambda ps: schedulefree.AdamWScheduleFreeClosure(ps, lr=1e-3, weight_decay=0.1), "decoupled-at-y"),
    (lambda ps: schedulefree.AdamWScheduleFreeReference(ps, lr=1e-3, weight_decay=0.1, decay_at_z=True),
     "decoupled-at-z"),
], ids=["AdamW", "SGD", "RAdam", "AdamW-closure", "AdamW-reference-at-z"])
def test_schedule_free_optimizers_are_read_by_their_group_keys(make, form):
    net = model()
    opt = make(net.parameters())
    d = group_decay(opt, opt.param_groups[0])
    assert (d.kind, d.form, d.family, d.decay_scaling) == ("decoupled", form, "schedulefree", "lr")
    assert d.step_decay == pytest.approx(1e-4)
    assert d.equilibrium_angle is None and d.max_abs_bound is None       # no prediction for their dynamics
    assert doctor(net, opt, **RUN) == []


def _one_step_decay(opt, param):
    """1 − w₁/w₀ after one step with a zero gradient: the fraction the decay alone removes."""
    before = param.detach().clone()
    param.grad = torch.zeros_like(param)
    if hasattr(opt, "train"):        # schedule-free optimizers step in train mode
        opt.train()
    opt.step()
    ratio = param.detach() / before
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=0, atol=1e-14)  # a pure shrink
    return 1 - float(ratio.flatten()[0])


@pytest.mark.parametrize("make", [
    lambda ps: T.SGD(ps, lr=0.1, weight_decay=1e-3),
    lambda ps: T.AdamW(ps, lr=1e-3, weight_decay=0.1),
    lambda ps: T.Adam(ps, lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True),
    lambda ps: T.NAdam(ps, lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True),
    lambda ps: T.RAdam(ps, lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True),
    lambda ps: T.ASGD(ps, lr=2 ** -6, weight_decay=2 ** -7, lambd=2 ** -9),   # η is a float32 tensor: exact values
    lambda ps: T.Adafactor(ps, lr=1e-2, weight_decay=0.03),
    lambda ps: T.Muon(ps, lr=2e-2, weight_decay=0.01),
    lambda ps: dopt.Muon(ps, lr=2e-2, weight_decay=0.01, adjust_lr_fn="match_rms_adamw"),
    lambda ps: dopt.Lion(ps, lr=1e-4, weight_decay=3.0),
    lambda ps: schedulefree.AdamWScheduleFree(ps, lr=1e-3, weight_decay=0.1),
    lambda ps: schedulefree.SGDScheduleFree(ps, lr=0.1, weight_decay=1e-3),
], ids=["SGD", "AdamW", "Adam-decoupled", "NAdam-decoupled", "RAdam-decoupled", "ASGD-with-lambd", "Adafactor",
        "torch-Muon", "decaylab-Muon-match-rms", "Lion", "AdamW-schedule-free", "SGD-schedule-free"])
def test_the_read_step_decay_is_what_one_step_does(make):
    w = nn.Parameter(torch.full((6, 4), 0.5, dtype=torch.float64))
    opt = make([w])
    predicted = group_decay(opt, opt.param_groups[0]).step_decay
    assert _one_step_decay(opt, w) == pytest.approx(predicted, rel=1e-9)


def test_every_row_has_a_known_form_and_rows_for_the_required_optimizers():
    assert all(row.form in FORMS and row.flag_form in FORMS for row in OPTIMIZER_DECAY)
    names = {row.cls for row in OPTIMIZER_DECAY}
    assert {T.SGD, T.Adam, T.AdamW, T.Adamax, T.NAdam, T.RAdam, T.Adagrad, T.RMSprop, T.Adadelta, T.ASGD,
            T.Adafactor, T.Muon, T.Rprop, T.LBFGS, T.SparseAdam} <= names
    assert {dopt.SGD, dopt.SGDW, dopt.Adam, dopt.AdamW, dopt.Muon, dopt.Lion} <= names
    assert all(row.fix for row in OPTIMIZER_DECAY if row.form == "coupled" and row.family != "sgd")
    assert class_decay(dopt.SGDW) == ("decoupled", "sgd") and class_decay(dopt.Adam) == ("coupled", "adam")
    assert class_decay(T.AdamW) == ("decoupled", "adam") and class_decay(T.Muon) == ("decoupled", "muon")
    with pytest.raises(ValueError, match="Custom is not in decaylab's table"):
        class_decay(Custom)
