"""Muon, Keras Muon and Lion conventions: hand-derived values, the update factors against torch's own lr
adjustment, exact pairs that give the same run, and the per-step decay the optimizers actually apply."""

import math

import pytest
import torch
from torch import nn
from torch.optim._muon import _adjust_lr

import decaylab.optim as dopt
from decaylab.cli import main
from decaylab.conventions import CONVENTIONS, convert, formula, is_exact, required_context, update_matched_lr

SHAPES = [(1024, 4096), (4096, 1024), (768, 768), (3, 5)]


def test_hand_derived_values():
    # AdamW → Muon "original" keeps λ/k: k_adamw = 0.2, k_original = √max(1, A/B)/√max(A, B) = 1/√B
    assert convert(0.1, "torch-adamw", "muon-original", shape=(1024, 4096)) == pytest.approx(0.1 / (0.2 * 64))
    assert convert(0.1, "torch-adamw", "muon-original", shape=(4096, 1024)) == pytest.approx(0.1 / (0.2 * 32))
    assert update_matched_lr(3e-4, "torch-adamw", "muon-original", shape=(1024, 4096)) == pytest.approx(3e-4 * 12.8)
    # Moonlight: with match_rms_adamw AdamW's λ and lr carry over unchanged (no shape needed)
    assert required_context("torch-adamw", "moonlight") == ()
    assert convert(0.1, "adamw", "moonlight") == pytest.approx(0.1)
    assert update_matched_lr(1e-3, "adamw", "match_rms_adamw") == pytest.approx(1e-3)
    # Keller Jordan's recipe, lr 0.02 and λ 0.01 under "original" on 768×768: per step 2e-4 (τ = 5000 steps),
    # and relative to its update an AdamW λ of 0.01·0.2·√768
    assert convert(0.01, "kellerjordan", "tau-iter", lr=0.02) == pytest.approx(5000)
    assert convert(0.01, "muon", "torch-adamw", shape=(768, 768)) == pytest.approx(0.01 * 0.2 * math.sqrt(768))
    # decaylab Muon(update_rms=r) / Keras Muon(rms_rate=r): k = r; r = 0.2 is match_rms_adamw exactly
    assert convert(0.1, "keras-muon", "muon-match-rms", update_rms=0.2) == pytest.approx(0.1)
    assert convert(0.1, "muon-update-rms", "muon-match-rms", update_rms=0.4) == pytest.approx(0.05)
    # Keras Muon rms_rate=None: update lr·O, k = 1/√max(A, B)
    assert convert(0.1, "muon-unscaled", "torch-adamw", shape=(1024, 4096)) == pytest.approx(0.1 * 0.2 * 64)
    # Keras Muon's adam_weight_decay decays at the main lr while its AdamW steps at lr·q: torch AdamW(lr·q, λ/q)
    assert convert(0.004, "keras-muon-adam", "torch-adamw", adam_lr_ratio=0.1) == pytest.approx(0.04)
    assert update_matched_lr(1e-3, "keras-muon-adam", "torch-adamw", adam_lr_ratio=0.1) == pytest.approx(1e-4)
    # Lion: k = 1 against AdamW's 0.2, i.e. λ ×5 and lr /5, inside the Lion paper's 3–10×, lr·λ kept
    lam, lr = convert(0.01, "torch-adamw", "lion"), update_matched_lr(1e-3, "torch-adamw", "lion")
    assert (lam, lr) == (pytest.approx(0.05), pytest.approx(2e-4)) and lam * lr == pytest.approx(0.01 * 1e-3)
    # with the non-update conventions each is its per-step decay lr·λ, at its own (unadjusted) lr
    assert convert(0.1, "muon-original", "schedule", lr=0.02) == pytest.approx(0.002)
    assert convert(1.0, "lion", "tau-iter", lr=1e-4) == pytest.approx(1e4)


@pytest.mark.parametrize("shape", SHAPES)
def test_update_factors_are_torchs_lr_adjustment_over_the_orthogonal_rms(shape):
    # k = ρ/√max(A, B), ρ from torch.optim.Muon's own _adjust_lr; Lion's k is 1, so λ_lion/λ_muon = 1/k
    a, b = shape
    for name, fn in (("muon-original", "original"), ("muon-match-rms", "match_rms_adamw")):
        k = _adjust_lr(1.0, fn, torch.Size(shape)) / math.sqrt(max(a, b))
        assert convert(1.0, name, "lion", shape=shape) == pytest.approx(1 / k, rel=1e-12)
    assert convert(1.0, "muon-unscaled", "lion", shape=shape) == pytest.approx(math.sqrt(max(a, b)), rel=1e-12)


def test_exact_and_approximate_pairs():
    assert is_exact("muon-original", "muon-match-rms") and is_exact("muon-update-rms", "muon-unscaled")
    assert is_exact("keras-muon-adam", "torch-adamw")
    assert not is_exact("torch-adamw", "muon-match-rms")     # AdamW's 0.2·lr update RMS is a typical value
    assert not is_exact("lion", "torch-adamw") and not is_exact("lion", "muon-original")
    assert is_exact("muon-original", "schedule") and not is_exact("lion", "coupled")     # by family, as before


def _muon_run(opt_factory, steps=12):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(48, 16, dtype=torch.float32))
    targets = torch.randn(steps, 48, 16)
    opt = opt_factory([w])
    for t in range(steps):
        opt.zero_grad()
        ((w - targets[t]) ** 2).sum().backward()
        opt.step()
    return w.detach()


def test_an_exact_muon_pair_converted_with_its_lr_is_the_same_run():
    """muon-original → muon-match-rms: the λ from convert and the lr from update_matched_lr give torch's Muon the
    same updates (the same O, lr·ρ equal) and the same per-step decay lr·λ; the unconverted λ does not."""
    shape, lr, lam = (48, 16), 0.02, 0.3
    lam2 = convert(lam, "muon-original", "muon-match-rms", shape=shape)
    lr2 = update_matched_lr(lr, "muon-original", "muon-match-rms", shape=shape)
    original = _muon_run(lambda ps: torch.optim.Muon(ps, lr=lr, weight_decay=lam))
    matched = _muon_run(lambda ps: torch.optim.Muon(ps, lr=lr2, weight_decay=lam2, adjust_lr_fn="match_rms_adamw"))
    assert torch.allclose(matched, original, rtol=1e-5, atol=1e-6)
    unconverted = _muon_run(lambda ps: torch.optim.Muon(ps, lr=lr2, weight_decay=lam, adjust_lr_fn="match_rms_adamw"))
    assert not torch.allclose(unconverted, original, rtol=1e-3, atol=1e-4)


def _decay_of_one_step(opt, w):
    before = w.detach().clone()
    w.grad = torch.zeros_like(w)
    opt.step()
    return 1 - float((w.detach() / before).mean())


@pytest.mark.parametrize("name, make, context", [
    ("muon-original", lambda ps, lr, lam: torch.optim.Muon(ps, lr=lr, weight_decay=lam), {}),
    ("muon-match-rms", lambda ps, lr, lam: torch.optim.Muon(ps, lr=lr, weight_decay=lam,
                                                            adjust_lr_fn="match_rms_adamw"), {}),
    ("muon-update-rms", lambda ps, lr, lam: dopt.Muon(ps, lr=lr, weight_decay=lam, update_rms=0.3), {}),
    ("lion", lambda ps, lr, lam: dopt.Lion(ps, lr=lr, weight_decay=lam), {}),
])
def test_the_conventions_per_step_decay_is_what_the_optimizer_does(name, make, context):
    """One step with a zero gradient (the update is 0, only the decay acts) removes lr·λ — the unadjusted
    lr for Muon — which is the tau-iter / schedule conversion of the value."""
    lr, lam = 0.02, 0.05
    w = nn.Parameter(torch.full((12, 6), 2.0, dtype=torch.float64))
    measured = _decay_of_one_step(make([w], lr, lam), w)
    assert measured == pytest.approx(1 / convert(lam, name, "tau-iter", lr=lr), rel=1e-9)
    assert measured == pytest.approx(convert(lam, name, "schedule", lr=lr), rel=1e-9)


def test_lions_update_rms_is_lr_exactly_and_muons_follows_k():
    """The update factors k that update-matched conversions divide by, measured. Lion moves every coordinate by
    ±lr (k = 1). torch's Muon moves a matrix by lr·ρ·O: between its two adjustments the ratio of the update RMS is
    exactly k_original/k_match (the same O), and against an orthogonal matrix's RMS 1/√max(A, B) Newton–Schulz's O
    falls a little short (≈ 0.85–0.9 for a Gaussian gradient): why Muon ↔ Lion/AdamW pairs are approximate."""
    torch.manual_seed(1)
    w = nn.Parameter(torch.randn(32, 8, dtype=torch.float64))
    opt = dopt.Lion([w], lr=1e-3, weight_decay=0.0)
    before = w.detach().clone()
    w.grad = torch.randn_like(w)
    opt.step()
    rms = float((w.detach() - before).pow(2).mean().sqrt())
    assert rms == pytest.approx(1e-3, rel=1e-9)
    assert 1 / convert(1.0, "lion", "torch-adamw") == pytest.approx(5.0)   # k_lion / k_adamw
    grad = torch.randn(64, 16)
    measured = {}
    for fn, name in ((None, "muon-original"), ("match_rms_adamw", "muon-match-rms")):
        w = nn.Parameter(torch.zeros(64, 16))
        opt = torch.optim.Muon([w], lr=1e-2, weight_decay=0.0, momentum=0.0, nesterov=False, adjust_lr_fn=fn)
        w.grad = grad.clone()
        opt.step()
        measured[name] = float(w.detach().pow(2).mean().sqrt()) / 1e-2
    k = {name: 1 / convert(1.0, name, "lion", shape=(64, 16)) for name in measured}
    assert measured["muon-original"] / measured["muon-match-rms"] == pytest.approx(
        k["muon-original"] / k["muon-match-rms"], rel=1e-6)
    assert 0.8 * k["muon-original"] < measured["muon-original"] < k["muon-original"]


def test_cli_takes_the_new_conventions(capsys):
    assert main(["convert", "0.1", "--from", "torch-adamw", "--to", "muon-original", "--shape", "1024,4096",
                 "--lr", "3e-4"]) == 0
    value, formula_line, lr_line = capsys.readouterr().out.splitlines()
    assert float(value) == pytest.approx(0.0078125)
    assert formula_line.startswith(formula("torch-adamw", "muon-original")) and "approximate" not in formula_line
    assert "0.2·lr" in formula_line                              # says why it is not exact
    assert "with lr 0.00384 (= lr × 12.8)" in lr_line
    assert main(["convert", "0.1", "--from", "muon", "--to", "match_rms_adamw", "--shape", "4096x1024"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert float(out[0]) == pytest.approx(0.64) and "exact" in out[1] and "pass --lr" in out[2]
    assert main(["convert", "0.01", "--from", "adamw", "--to", "lion"]) == 0
    assert float(capsys.readouterr().out.splitlines()[0]) == pytest.approx(0.05)
    # without --to, every convention has a row, Muon's asking for --shape where it needs one
    assert main(["convert", "0.1", "--from", "adamw", "--lr", "1e-3"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == set(CONVENTIONS) - {"torch-adamw"}
    assert "needs --shape" in rows["muon-original"] and float(rows["lion"].split()[1]) == pytest.approx(0.5)


@pytest.mark.parametrize("argv, message", [
    (["0.1", "--from", "adamw", "--to", "muon-original"], "needs --shape"),
    (["0.1", "--from", "adamw", "--to", "muon-original", "--shape", "12"], "--shape must be two integers"),
    (["0.1", "--from", "adamw", "--to", "muon-original", "--shape", "0,4"], "shape[0] must be an integer in"),
    (["0.1", "--from", "adamw", "--to", "keras-muon"], "needs --update-rms"),
    (["0.1", "--from", "adamw", "--to", "keras-muon-adam"], "needs --adam-lr-ratio"),
    (["0.1", "--from", "adamw", "--to", "keras-muon", "--update-rms", "-1"], "update_rms must be in"),
])
def test_cli_bad_context_exits_2_with_one_line(capsys, argv, message):
    assert main(["convert", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_library_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"needs shape \(rows A and columns B of the Muon matrix\)"):
        convert(0.1, "torch-adamw", "muon-original")
    with pytest.raises(TypeError, match="shape must be a pair"):
        convert(0.1, "torch-adamw", "muon-original", shape=1024)
    with pytest.raises(ValueError, match="not an update-matched pair"):
        update_matched_lr(1e-3, "torch-adamw", "schedule")
