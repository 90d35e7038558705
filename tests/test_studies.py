"""The demo's studies on small sizes: each one's computation and the directions it must show."""

import pytest
import torch

from decaylab.experiments import demo
from decaylab.experiments._shared import intra_op_threads
from decaylab.experiments.demo import boundaries, coupling, cross_validation, dropout, ridge_fit, sparsity
from decaylab.report.model import Section

PNG = b"\x89PNG\r\n\x1a\n"


def _check_section(result, key):
    assert isinstance(result.section, Section) and result.section.key == key
    assert result.section.text and result.section.figures
    assert all(f.png.startswith(PNG) for f in result.section.figures)
    assert len(result.rows) == 1 and set(result.rows[0]) == {"study", "result"}


def test_boundary_flips_counts_neighbour_changes():
    labels = torch.zeros(4, 5, dtype=torch.bool)
    assert boundaries.boundary_flips(labels) == 0
    labels[:, 3:] = True          # a vertical boundary: one flip per row
    assert boundaries.boundary_flips(labels) == 4
    labels[2:, :] = True          # plus a horizontal one across the first three columns
    assert boundaries.boundary_flips(labels) == 2 + 3


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_boundaries_weights_shrink_and_boundary_simplifies():
    r = boundaries.run_boundaries(seed=0, lambdas=(0.0, 3.0, 100.0), epochs=150, hidden=(32, 32))
    s = r.summary
    _check_section(r, "boundaries")
    assert s["weights_shrink_monotonically"]
    assert s["weight_norm"][0] > 1.5 * s["weight_norm"][1] > 3 * s["weight_norm"][2]
    assert s["boundary_flips"][-1] < s["boundary_flips"][0]
    assert s["boundary_flips"][-1] == 0            # λ=100 collapses the model to one class
    assert s["test_acc"][1] > s["test_acc"][2] + 0.2
    slider = r.section.slider
    assert list(slider.values) == [0.0, 3.0, 100.0] and len(slider.frames) == 3 == len(slider.captions)
    assert all(f.png.startswith(PNG) for f in slider.frames)
    assert f"{s['best_test_acc']:.3f}" in r.section.text  # the paragraph quotes the measured numbers


def test_gradient_descent_with_coupled_decay_is_ridge():
    from sklearn.linear_model import Ridge

    from decaylab import data
    from decaylab.models import polynomial_features

    ds = data.load("poly", seed=1, dtype=torch.float64)
    Phi, y = polynomial_features(ds.train.X, 15), ds.train.y
    lambdas = (1e-3, 0.1)
    W, steps = ridge_fit.gradient_fit(Phi, y, lambdas)
    assert 0 < steps < ridge_fit.MAX_STEPS
    for w, lam in zip(W, lambdas):
        closed = ridge_fit.ridge_solution(Phi, y, lam)
        assert float((w - closed).abs().max()) < 1e-8
        sk = Ridge(alpha=len(y) * lam, fit_intercept=False, solver="cholesky").fit(Phi.numpy(), y.numpy())
        assert float((closed - torch.from_numpy(sk.coef_)).abs().max()) < 1e-8
    with pytest.raises(RuntimeError, match="max_steps=10"):
        ridge_fit.gradient_fit(Phi, y, (1e-6,), max_steps=10)


def test_ridge_study_overlay_and_u_shaped_test_error():
    r = ridge_fit.run_ridge_fit(quick=True, seed=0, fit_lambdas=(1e-3, 1.0))
    s = r.summary
    _check_section(r, "ridge")
    assert s["ridge_overlay_matches"] and s["ridge_overlay_max_diff"] <= 1e-4
    assert s["test_mse_u_shaped"] and s["test_mse"][0] > 10 * s["best_test_mse"] < 10 * s["test_mse"][-1]
    assert s["train_mse"] == sorted(s["train_mse"])  # training error only grows with λ
    assert s["weight_norm_fit"][0] > s["weight_norm_fit"][1]


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_coupling_sgd_equals_sgdw_only_without_momentum():
    r = coupling.run_coupling(seed=0, epochs=2)
    s = r.summary
    _check_section(r, "coupling")
    assert s["sgd_equals_sgdw_without_momentum"] and s["sgd_vs_sgdw_no_momentum"]["max_abs_weight_diff"] < 1e-12
    assert s["sgd_differs_from_sgdw_with_momentum"] and s["sgd_vs_sgdw_momentum"]["max_abs_weight_diff"] > 1e-3
    runs = s["runs"]
    # coupled decay rides the momentum buffer (≈ λ/(1−μ)): smaller weights than SGDW at the same λ
    sgd_m, sgdw_m = runs["SGD (coupled) + momentum"], runs["SGDW (decoupled) + momentum"]
    assert sgd_m["final_weight_norm"] < sgdw_m["final_weight_norm"]
    # Adam's L2 term is amplified by the adaptive step; AdamW's lr·λ shrink is mild at lr 1e-3
    assert runs["Adam + L2 (coupled)"]["final_weight_norm"] < runs["AdamW (decoupled)"]["final_weight_norm"]
    assert runs["AdamW (decoupled)"]["final_weight_norm"] < runs["Adam, no decay"]["final_weight_norm"]
    matched = s["adam_vs_adamw_matched_lambda"]
    for label in ("Adam + L2", "AdamW"):
        norms = matched[label]["weight_norm"]
        assert len(norms) == len(matched["lambdas"]) and norms == sorted(norms, reverse=True)
    # at every matched λ, L2 inside Adam shrinks the weights more than AdamW's decoupled decay
    assert all(a < b for a, b in zip(matched["Adam + L2"]["weight_norm"], matched["AdamW"]["weight_norm"]))


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_l1_gives_exact_zeros_and_l2_none():
    r = sparsity.run_sparsity(seed=0, lambdas=(1e-3, 3e-2), epochs=3)
    s = r.summary
    _check_section(r, "sparsity")
    assert s["l1_gives_zeros"] and s["l2_gives_no_zeros"]
    assert 0 < s["l1_zeros"][0] < s["l1_zeros"][1] < s["n_params"] and s["l2_zeros"] == [0, 0]


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_dropout_shrinks_weights_less_than_decay():
    r = dropout.run_dropout(seed=0, epochs=80, hidden=(32, 32))
    s = r.summary
    _check_section(r, "dropout")
    assert s["weight_norm_ratio_decay"] < 0.7 and s["decay_shrinks_more_than_dropout"]
    assert set(s["runs"]) == {"neither", "dropout only", "decay only", "dropout + decay"}
    assert all(len(run["layer_weight_norms"]) == 3 for run in s["runs"].values())


def test_cross_validation_curve_and_one_standard_error_rule():
    lambdas = (0.01, 1.0, 100.0)
    r = cross_validation.run_cross_validation(seed=0, lambdas=lambdas, epochs=60, hidden=(8, 8))
    s = r.summary
    _check_section(r, "cross_validation")
    assert s["lambdas"] == list(lambdas) and s["folds"] == 5
    assert len(s["cv_mean"]) == len(s["cv_std"]) == len(s["test_acc_mean"]) == 3
    assert s["best_lambda"] in lambdas and s["lambda_1se"] >= s["best_lambda"]
    assert s["cv_mean"][-1] < s["cv_acc_best"] - 0.2   # λ=100 collapses every fold model
    i = lambdas.index(s["lambda_1se"])
    assert s["cv_mean"][i] >= s["cv_acc_best"] - s["cv_se"][lambdas.index(s["best_lambda"])] - 1e-12


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_run_demo_collects_sections_summary_and_checks():
    with intra_op_threads(3):
        seen = []
        result = demo.run_demo(quick=True, seed=0, progress=False, studies=["ridge", "sparsity"],
                               on_study=lambda key, r: seen.append((key, r.section.key)))
        assert torch.get_num_threads() == 3  # the demo's one-thread setting is restored
    assert [sec.key for sec in result.sections] == ["ridge", "sparsity"]
    assert seen == [("ridge", "ridge"), ("sparsity", "sparsity")]  # each study reported as it finished
    assert set(result.summary["studies"]) == {"ridge", "sparsity"}
    checks = result.summary["checks"]
    assert checks["ridge_overlay_matches"] and checks["l1_gives_zeros"] and checks["l2_gives_no_zeros"]
    assert "weights_shrink_with_lambda" not in checks  # only the studies that ran
    assert len(result.rows) == 2 and set(result.summary["seconds"]) == {"ridge", "sparsity"}


def test_bad_input():
    with pytest.raises(ValueError, match="studies must be a subset of 'boundaries'"):
        demo.run_demo(studies=["nope"], progress=False)
    with pytest.raises(ValueError, match="seed must be an integer"):
        demo.run_demo(seed=-1, progress=False)
    with pytest.raises(ValueError, match="study must be one of"):
        demo.run_study("nope")


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_a_study_is_deterministic_given_its_seed():
    def run(seed):
        return sparsity.run_sparsity(seed=seed, lambdas=(1e-2,), epochs=1).summary

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first["l1_test_acc"] != other["l1_test_acc"] or first["l1_zeros"] != other["l1_zeros"]


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_too_much_decay_slows_convergence_end_to_end():
    from decaylab.experiments.demo import convergence

    r = convergence.run_convergence(quick=True, seed=0)
    s = r.summary
    _check_section(r, "convergence")
    assert s["lambdas"] == [0.0, 1.0, 10.0] and len(s["train_loss_curves"]) == 3
    assert all(len(curve) == s["epochs"] for curve in s["train_loss_curves"])
    # the measured numbers themselves: no decay reaches the target, the largest λ never does and ends far higher
    assert s["epochs_to_target"][0] is not None and s["epochs_to_target"][-1] is None
    assert s["final_train_loss"][-1] > 5 * s["final_train_loss"][0]
    assert s["slower_with_more_decay"] and s["final_loss_rises_with_lambda"]
    assert convergence.epochs_to_target([1, 2, 3], [0.5, 0.2, 0.1], target=0.2) == 2
    assert convergence.epochs_to_target([1, 2], [0.5, 0.3], target=0.2) is None


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_decay_helps_flipped_labels_but_not_class_imbalance_end_to_end():
    from decaylab.experiments.demo import overfitting

    r = overfitting.run_overfitting(quick=True, seed=0)
    s = r.summary
    _check_section(r, "overfitting")
    noisy, imbalanced = s["cases"]["flipped labels"], s["cases"]["class imbalance"]
    assert imbalanced["class_counts"] == [overfitting.N_MAJORITY, overfitting.N_MINORITY]
    assert noisy["n_train"] == imbalanced["n_train"] == 200
    # decay helps the flipped labels (some λ > 0 beats none) ...
    assert max(noisy["balanced_acc"][1:]) >= noisy["balanced_acc"][0] + overfitting.HELPS
    # ... and only hurts the minority class: its recall never rises, and the largest λ loses it
    assert max(imbalanced["recall_class_1"][1:]) <= imbalanced["recall_class_1"][0]
    assert imbalanced["recall_class_1"][-1] < imbalanced["recall_class_1"][0] - 0.2
    assert s["decay_helps_flipped_labels"] and s["decay_does_not_fix_imbalance"]
    assert f"{noisy['balanced_acc'][0]:.3f}" in r.section.text


def test_imbalanced_moons_keeps_the_stated_class_counts():
    from decaylab.experiments.demo import overfitting

    (X, y), test = overfitting.imbalanced_moons(seed=2)
    assert len(X) == len(y) == 200 and int((y == 1).sum()) == 10
    assert 0.45 < float((test.y == 1).double().mean()) < 0.55    # the test set stays (nearly) balanced


@pytest.mark.slow  # a whole study end to end (2–27 s)
def test_muon_and_lion_norms_stay_within_their_bounds_and_reach_them_end_to_end():
    from decaylab.experiments.demo import muon_lion

    r = muon_lion.run_muon_lion(seed=0, muon_lambdas=(0.1, 10.0), lion_lambdas=(0.3, 30.0), epochs=6)
    s = r.summary
    _check_section(r, "muon_lion")
    # the bounds hold (ρ = 1 for both 32×64 and 32×32: ρ·s_max/λ; 1/λ), checked on the measured numbers
    assert s["muon_spectral_bound"] == pytest.approx([1.2024 / 0.1, 1.2024 / 10.0], rel=1e-4)
    assert s["lion_max_abs_bound"] == pytest.approx([1 / 0.3, 1 / 30.0], rel=1e-5)  # 6 digits kept
    assert max(s["muon_bound_ratio"]) <= 1.01 and max(s["lion_bound_ratio"]) <= 1.01
    # a small λ leaves the weights far inside; the largest λ pins them to the bound
    assert s["muon_bound_ratio"][0] < 0.5 and s["muon_bound_ratio"][-1] >= 0.9
    assert s["lion_bound_ratio"][0] < 0.5 and s["lion_bound_ratio"][-1] >= 0.999
    assert s["lion_at_bound"][0] == 0 < s["lion_at_bound"][-1] and s["lion_flagged_at_bound"][-1] > 0
    assert s["muon_spectral_norm"][0] > 10 * s["muon_spectral_norm"][-1]
    assert s["muon_within_spectral_bound"] and s["lion_within_linf_bound"] and s["largest_lambda_saturates"]
    assert f"{s['muon_spectral_norm'][-1]:.3g}" in r.section.text  # the paragraph quotes the measured numbers
