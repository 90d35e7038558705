"""The basin statistic on synthetic lr × λ maps whose best-λ line is known."""

import numpy as np
import pytest

from decaylab.maps.basin import best_log_decay, fit_basin

LRS = np.logspace(-3, -1, 8)
DECAYS = np.logspace(-6, 0, 13)


def synthetic_map(slope, *, seeds=1, noise=0.0, rng_seed=0, center=-3.0):
    """Errors 0.1 + 0.05·(log10 λ − log10 λ*)² with log10 λ* = center + slope·(log10 lr + 2)."""
    rng = np.random.default_rng(rng_seed)
    best = center + slope * (np.log10(LRS) + 2.0)
    dist = np.log10(DECAYS)[None, :] - best[:, None]
    clean = 0.1 + 0.05 * dist ** 2
    return clean[None] + noise * rng.standard_normal((seeds, *clean.shape))


@pytest.mark.parametrize("slope", [-1.0, 0.0, 0.5])
def test_noise_free_quadratic_basin_gives_exact_slope(slope):
    # The parabola refinement is exact on a quadratic in log λ, so the slope is exact too.
    fit = fit_basin(synthetic_map(slope), LRS, DECAYS)
    assert fit.slope == pytest.approx(slope, abs=1e-9)
    assert fit.kept.all()
    expected_best = 10 ** (-3.0 + slope * (np.log10(LRS) + 2.0))
    np.testing.assert_allclose(fit.best_decay, expected_best, rtol=1e-9)
    assert np.isnan(fit.ci_low) and fit.n_seeds == 1


@pytest.mark.parametrize("slope", [-1.0, 0.0])
def test_noisy_seeds_ci_covers_true_slope_and_separates_minus_one_from_zero(slope):
    errors = synthetic_map(slope, seeds=5, noise=0.01, rng_seed=3)
    fit = fit_basin(errors, LRS, DECAYS, n_boot=500)
    assert fit.ci_low <= slope <= fit.ci_high
    assert abs(fit.slope - slope) < 0.2
    other = 0.0 if slope == -1.0 else -1.0
    assert not (fit.ci_low <= other <= fit.ci_high)
    assert fit.seed_slopes.shape == (5,)
    assert fit.n_boot == 500


def test_bootstrap_is_deterministic_given_seed_and_widens_with_noise():
    quiet = fit_basin(synthetic_map(-1.0, seeds=4, noise=0.002, rng_seed=1), LRS, DECAYS, n_boot=300, seed=7)
    again = fit_basin(synthetic_map(-1.0, seeds=4, noise=0.002, rng_seed=1), LRS, DECAYS, n_boot=300, seed=7)
    loud = fit_basin(synthetic_map(-1.0, seeds=4, noise=0.03, rng_seed=1), LRS, DECAYS, n_boot=300, seed=7)
    assert (quiet.ci_low, quiet.ci_high) == (again.ci_low, again.ci_high)
    assert loud.ci_high - loud.ci_low > quiet.ci_high - quiet.ci_low


def test_rows_with_best_at_grid_edge_or_flat_are_censored():
    errors = synthetic_map(-1.0)[0]
    errors[0] = np.linspace(0.5, 0.1, DECAYS.size)      # best at the largest λ: may lie outside the grid
    errors[1] = 0.3 + 0.001 * np.sin(np.arange(DECAYS.size))  # flat: contrast 0.002 < min_contrast
    fit = fit_basin(errors, LRS, DECAYS)
    assert list(fit.kept) == [False, False] + [True] * 6
    assert np.isnan(fit.best_decay[:2]).all()
    assert fit.slope == pytest.approx(-1.0, abs=1e-9)
    # with min_contrast=0 the flat row's wiggle counts as a minimum
    assert fit_basin(errors, LRS, DECAYS, min_contrast=0.0).kept[1]


def test_plateau_takes_mean_log_decay_and_nan_counts_as_worst():
    log_decays = np.log(DECAYS)
    row = np.full(DECAYS.size, 0.4)
    row[4:7] = 0.1                     # three tied columns
    row[9] = np.nan                    # a diverged member is not a minimum
    best = best_log_decay(row[None], log_decays)
    assert best[0] == pytest.approx(log_decays[4:7].mean())
    only_nan_low = np.full(DECAYS.size, 0.4)
    only_nan_low[5] = np.nan
    only_nan_low[6] = 0.2
    assert best_log_decay(only_nan_low[None], log_decays)[0] == pytest.approx(
        log_decays[6], abs=np.log(10) / 4)  # refined between the half-way points around column 6


def test_a_diverged_seed_makes_the_cell_worst_in_the_mean_map():
    # true best log10 λ = -3.2: the grid's best column is -3.0; when one seed diverges there,
    # the next best column, -3.5, wins (refinement cannot cross an infinite neighbour).
    errors = synthetic_map(0.0, seeds=3, center=-3.2)
    i = 2
    j_best = int(np.argmin(errors[0, i]))
    assert np.log10(DECAYS[j_best]) == pytest.approx(-3.0)
    assert fit_basin(errors, LRS, DECAYS, n_boot=50).best_decay[i] != pytest.approx(10 ** -3.5)
    errors[1, i, j_best] = np.nan
    fit = fit_basin(errors, LRS, DECAYS, n_boot=50)
    assert fit.kept[i]
    assert fit.best_decay[i] == pytest.approx(10 ** -3.5)


def test_too_few_rows_gives_nan_slope_with_a_note():
    errors = np.tile(np.linspace(0.5, 0.1, DECAYS.size), (LRS.size, 1))  # every row censored
    fit = fit_basin(errors, LRS, DECAYS)
    assert np.isnan(fit.slope) and not fit.kept.any()
    assert any("no slope" in note for note in fit.notes)
    assert fit.to_dict()["slope"] is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(errors=np.zeros((8, 5))), r"errors must have shape"),
    (dict(lrs=-LRS), r"lrs must be a 1-D grid of at least 3 positive"),
    (dict(decays=DECAYS[::-1]), r"decays must be strictly increasing"),
    (dict(confidence=1.0), r"confidence must be in \(0.0, 1.0\)"),
    (dict(n_boot=0), r"n_boot must be an integer in \[1, inf\]"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    args = dict(errors=synthetic_map(0.0), lrs=LRS, decays=DECAYS)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_basin(args.pop("errors"), args.pop("lrs"), args.pop("decays"), **args)


def test_a_row_without_a_wall_on_one_side_is_censored():
    log_decays = np.log(DECAYS)
    row = np.concatenate([np.linspace(0.103, 0.100, 6), np.linspace(0.12, 0.5, DECAYS.size - 6)])
    # the minimum (column 5) is interior, but the smallest λ is only 0.003 worse: no left wall
    assert np.isnan(best_log_decay(row[None], log_decays, min_contrast=0.01)[0])
    assert np.isfinite(best_log_decay(row[None], log_decays, min_contrast=0.001)[0])


def test_tie_tol_turns_near_ties_into_a_good_run_averaged_in_log_decay():
    log_decays = np.log(DECAYS)
    row = np.full(DECAYS.size, 0.5)
    row[3:8] = [0.30, 0.108, 0.100, 0.104, 0.30]
    exact = best_log_decay(row[None], log_decays)[0]
    merged = best_log_decay(row[None], log_decays, tie_tol=0.01)[0]
    assert merged == pytest.approx(log_decays[4:7].mean())
    assert exact != pytest.approx(merged) and abs(exact - log_decays[5]) <= np.log(10) / 4


def test_rows_far_worse_than_the_map_best_are_left_out_with_row_gap():
    errors = synthetic_map(0.0)[0]
    errors[-1] = errors[-1] + 0.3                    # an lr where training fails at every λ
    errors[-1, 2] = 0.35                             # ...with an off-basin minimum of its own
    assert fit_basin(errors, LRS, DECAYS).kept[-1]
    fit = fit_basin(errors, LRS, DECAYS, row_gap=0.05)
    assert not fit.kept[-1] and fit.kept[:-1].all()
    assert fit.slope == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"row_gap must be in \[0.0, inf\)"):
        fit_basin(errors, LRS, DECAYS, row_gap=-1.0)


def test_per_seed_t_interval_and_the_union_interval():
    errors = synthetic_map(-1.0, seeds=4, noise=0.01, rng_seed=5)
    fit = fit_basin(errors, LRS, DECAYS, n_boot=200)
    k = fit.seed_slopes.size
    half = 3.182446305284263 * fit.seed_slopes.std(ddof=1) / np.sqrt(k)     # t_{0.975, 3}
    assert (fit.seed_t_low, fit.seed_t_high) == pytest.approx(
        (fit.seed_slopes.mean() - half, fit.seed_slopes.mean() + half), rel=1e-9)
    low, high = fit.interval()
    assert low == min(fit.ci_low, fit.seed_t_low) and high == max(fit.ci_high, fit.seed_t_high)
    assert fit.seed_t_low <= -1.0 <= fit.seed_t_high
    assert fit.to_dict()["interval"] == [low, high]
    single = fit_basin(errors[:1], LRS, DECAYS)
    assert all(np.isnan(v) for v in single.interval())
