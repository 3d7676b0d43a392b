"""Linear laws with bootstrap intervals: exact recovery, coverage, refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.errors import NotEnoughDataError
from search.scaling.allocation import LossFrontier, fit_loss_frontier
from search.scaling.laws import (
    bulk_of_draws,
    curved_inside,
    fit_law_to_estimates,
    fit_law_to_optima,
    fit_linear_law,
)


def _log_axes(rng: np.random.Generator, n: int, decades: float = 3.0) -> np.ndarray:
    return np.log(10.0 ** rng.uniform(0.0, decades, size=(n, 2)))


def test_exact_power_law_is_recovered_to_high_precision():
    rng = np.random.default_rng(0)
    features = _log_axes(rng, 30)
    y = 0.3 + 0.5 * features[:, 0] - 0.2 * features[:, 1]
    law = fit_linear_law(features, y, names=["ln_n_params", "ln_tokens"], seed=1)
    np.testing.assert_allclose(law.coef, [0.3, 0.5, -0.2], atol=1e-10)
    assert law.r2 == pytest.approx(1.0, abs=1e-12)
    assert max(h - lo for lo, h in zip(law.coef_low, law.coef_high, strict=True)) < 1e-8


def _coverage(true_slope: float, n_seeds: int, level: float) -> tuple[float, float]:
    """Fraction of seeded fits whose slope interval, and whose interval at a target
    two decades beyond the data, contain the truth."""
    slope_hits = target_hits = 0
    target = math.log(1e4)
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        x = np.log(10.0 ** rng.uniform(0.0, 2.0, size=20))
        y = 1.0 + true_slope * x + rng.normal(0.0, 0.3, size=20)
        law = fit_linear_law(x[:, None], y, names=["ln_compute"], seed=seed, level=level)
        low, high = law.slope_interval()
        slope_hits += low <= true_slope <= high
        _, t_low, t_high = law.predict(np.array([[target]]))
        target_hits += t_low[0] <= 1.0 + true_slope * target <= t_high[0]
    return slope_hits / n_seeds, target_hits / n_seeds


def test_bootstrap_intervals_cover_the_truth_at_about_their_nominal_rate():
    slope_rate, target_rate = _coverage(-0.35, n_seeds=50, level=0.9)
    assert 0.80 <= slope_rate <= 0.97
    assert 0.80 <= target_rate <= 0.97


def test_intervals_widen_with_extrapolation_distance():
    rng = np.random.default_rng(3)
    x = np.log(10.0 ** rng.uniform(0.0, 2.0, size=25))
    y = 2.0 + 0.5 * x + rng.normal(0.0, 0.2, size=25)
    law = fit_linear_law(x[:, None], y, names=["ln_compute"])
    targets = np.log(np.array([[10.0], [1e3], [1e4], [1e6]]))
    _, low, high = law.predict(targets)
    widths = high - low
    assert np.all(np.diff(widths) > 0)


def test_refuses_too_few_points():
    x = np.log(np.array([[1.0], [10.0], [100.0], [1000.0], [1e4]]))
    with pytest.raises(NotEnoughDataError, match="need at least 6"):
        fit_linear_law(x, x[:, 0], names=["ln_compute"])


def test_refuses_a_range_narrower_than_a_decade():
    x = np.log(np.linspace(1.0, 5.0, 20))[:, None]
    with pytest.raises(NotEnoughDataError, match=r"spans only 0\.70 decades"):
        fit_linear_law(x, 2.0 * x[:, 0], names=["ln_compute"])


def _optima_with_draws(shape, *, seed: int, n_draws: int = 200, sd: float = 0.05):
    """Optima ``shape(x)`` at 30 points over two decades, and noisy bootstrap-like draws."""
    rng = np.random.default_rng(seed)
    x = np.log(np.geomspace(1.0, 100.0, 30))
    y = shape(x)
    return x, y, y + rng.normal(0.0, sd, size=(n_draws, 1)) + rng.normal(0.0, sd, (n_draws, 30))


def test_law_through_optima_takes_its_spread_from_the_draws():
    x, y, draws = _optima_with_draws(lambda x: 1.0 - 0.3 * x, seed=5)
    law = fit_law_to_optima(x[:, None], y, draws, names=["ln_compute"])
    np.testing.assert_allclose(law.coef, [1.0, -0.3], atol=1e-12)
    low, high = law.slope_interval()
    assert low < -0.3 < high and high - low > 0.005  # the draws' spread, not y's (exact)
    _, near_low, near_high = law.predict(np.array([[x.mean()]]))
    _, far_low, far_high = law.predict(np.array([[x.max() + 5.0]]))
    assert far_high[0] - far_low[0] > near_high[0] - near_low[0]


def test_a_few_wild_draws_do_not_set_the_law_s_spread():
    """Three resamples in 200 whose optima swing by decades (a nearly flat bowl) would
    make the plain covariance of the slopes hundreds of times the bulk's; they are left
    out, and draws that are all genuinely spread are all kept."""
    x, y, draws = _optima_with_draws(lambda x: 1.0 - 0.3 * x, seed=7)
    bulk = fit_law_to_optima(x[:, None], y, draws, names=["ln_compute"])
    wild = draws.copy()
    wild[:3] += np.array([[40.0], [-25.0], [60.0]]) * (x - x.mean())
    kept = fit_law_to_optima(x[:, None], y, wild, names=["ln_compute"])
    bulk_se, kept_se = math.sqrt(bulk.coef_cov[1][1]), math.sqrt(kept.coef_cov[1][1])
    assert kept_se == pytest.approx(bulk_se, rel=0.1)
    plain_se = float(np.std(np.polyfit(x, wild.T, 1)[0], ddof=1))
    assert plain_se > 100 * bulk_se
    assert bulk_of_draws(np.polyfit(x, draws.T, 1)[0]).all()


def test_a_law_with_percentile_intervals_follows_skewed_draws():
    """The allocation's draws (ln N* from L(N, D)'s bootstrap) are skewed: a symmetric
    interval of t bulk standard deviations misses the long side. With ``percentiles``
    the law keeps every draw, and its intervals, of the slope and of a prediction far
    out, are the draws' own percentiles; without, they stay symmetric."""
    x, y, _ = _optima_with_draws(lambda x: 1.0 + 0.5 * x, seed=9)
    rng = np.random.default_rng(9)
    slopes = 0.5 + rng.lognormal(-3.0, 0.8, size=200) - np.exp(-3.0)  # long upper tail
    draws = 1.0 + np.outer(slopes, x)
    law = fit_law_to_optima(x[:, None], y, draws, names=["ln_compute"], percentiles=True)
    assert law.draws is not None and len(law.draws) == 200
    low, high = law.slope_interval()
    np.testing.assert_allclose([low, high], np.percentile(slopes, [5.0, 95.0]), atol=1e-9)
    assert high - 0.5 > 2.0 * (0.5 - low)  # skewed as the draws are
    target = x.max() + 5.0
    estimate, p_low, p_high = law.predict(np.array([[target]]))
    np.testing.assert_allclose(
        [p_low[0], p_high[0]], np.percentile(1.0 + slopes * target, [5.0, 95.0]), atol=1e-9
    )
    symmetric = fit_law_to_optima(x[:, None], y, draws, names=["ln_compute"])
    assert symmetric.draws is None
    _, s_low, s_high = symmetric.predict(np.array([[target]]))
    assert s_high[0] - estimate[0] == pytest.approx(estimate[0] - s_low[0])
    assert type(law).model_validate_json(law.model_dump_json()) == law


def test_bulk_of_draws_leaves_out_draws_wild_in_any_slope():
    rng = np.random.default_rng(8)
    slopes = rng.normal(0.0, 1.0, size=(100, 2))
    slopes[0, 1] = 30.0
    slopes[1, 0] = -30.0
    keep = bulk_of_draws(slopes)
    assert not keep[0] and not keep[1] and keep[2:].all()
    # no spread in the bulk (most draws equal): nothing is judged wild by it
    assert bulk_of_draws(np.r_[np.zeros(90), np.ones(10)]).all()


def test_law_through_optima_without_draws_is_refused_not_a_crash():
    """Every resample of the surface rejected (none convex) leaves no draws."""
    x, y, _ = _optima_with_draws(lambda x: 0.5 * x, seed=6)
    for draws in (np.zeros((0, len(y))), y[None, :]):
        with pytest.raises(NotEnoughDataError, match="could not be re-estimated"):
            fit_law_to_optima(x[:, None], y, draws, names=["ln_compute"])


def test_law_through_optima_keeps_the_refusals():
    x, y, draws = _optima_with_draws(lambda x: 0.5 * x, seed=6)
    with pytest.raises(NotEnoughDataError, match="spans only"):
        fit_law_to_optima(x[:, None] / 10, y, draws, names=["ln_compute"])
    with pytest.raises(NotEnoughDataError, match="need at least 6"):
        fit_law_to_optima(x[:5, None], y[:5], draws[:, :5], names=["ln_compute"])


def test_a_turning_point_of_the_optima_inside_the_data_is_found():
    x, y, draws = _optima_with_draws(lambda x: 0.2 * (x - 2.3) ** 2, seed=7)
    assert curved_inside(x, y, draws, level=0.9) == pytest.approx(2.3, abs=0.05)
    x, y, draws = _optima_with_draws(lambda x: 0.4 * x, seed=8)
    assert curved_inside(x, y, draws, level=0.9) is None
    # curved, but turning outside the data: still one power law's worth of monotone
    x, y, draws = _optima_with_draws(lambda x: 0.05 * (x + 3.0) ** 2, seed=9)
    assert curved_inside(x, y, draws, level=0.9) is None


def test_precision_weighted_law_recovers_slopes_and_covers_them():
    """Through noisy estimates with known variances (and extra scatter), the 90%
    intervals of the slopes cover the truth at about their level over 60 seeds."""
    covered = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        features = _log_axes(rng, 8, decades=2.0)
        variance = rng.uniform(0.001, 0.02, size=8)
        truth = np.array([-3.0, -0.7, 0.3])
        y = truth[0] + features @ truth[1:] + rng.normal(0, np.sqrt(variance + 0.005))
        law = fit_law_to_estimates(features, y, variance, names=["ln_n", "ln_d"])
        covered += all(law.coef_low[j] <= truth[j] <= law.coef_high[j] for j in (1, 2))
    assert 0.8 * 60 <= covered <= 60


def test_precision_weighted_law_refuses_an_unidentified_slope_with_numbers():
    rng = np.random.default_rng(0)
    features = np.column_stack([np.full(6, math.log(1e8)), np.log(np.geomspace(1e9, 1e11, 6))])
    with pytest.raises(NotEnoughDataError, match=r"n does not vary over the 6 points"):
        fit_law_to_estimates(features, rng.normal(size=6), np.full(6, 0.01), names=["ln_n", "ln_d"])
    narrow = np.column_stack([np.log(np.geomspace(1e8, 1.1e8, 6)), features[:, 1]])
    with pytest.raises(NotEnoughDataError, match=r"standard error .* spanning 0\.04 decades"):
        fit_law_to_estimates(narrow, rng.normal(size=6), np.full(6, 0.01), names=["ln_n", "ln_d"])


def test_frontier_refits_that_run_off_to_infinity_are_left_out():
    """A short, noisy front: one bootstrap refit sends A past floating point. Kept, it
    was written as null and the frontier (and rules holding it) could not be loaded."""
    rng = np.random.default_rng(74)
    n = int(rng.integers(5, 12))
    compute = 10 ** np.sort(rng.uniform(0, rng.uniform(1.05, 3), n))
    scale, gamma, noise = rng.uniform(0, 3), rng.uniform(0.05, 2), rng.uniform(0, 0.2)
    loss = 2.0 + scale * compute**-gamma + noise * rng.standard_normal(n) ** 2
    frontier = fit_loss_frontier(compute, loss, n_bootstrap=20)
    assert 2 <= len(frontier.bootstrap) < 20
    assert np.isfinite(frontier.bootstrap).all()
    assert LossFrontier.model_validate_json(frontier.model_dump_json()) == frontier


def test_the_loss_frontier_says_when_its_floor_is_not_identified():
    compute = np.geomspace(1e15, 1e18, 10)
    pure = fit_loss_frontier(compute, 50.0 * compute**-0.08, n_bootstrap=10)
    assert pure.E_reason is not None and "not identified" in pure.E_reason
    floored = fit_loss_frontier(compute, 1.7 + 4e3 * compute**-0.2, n_bootstrap=10)
    assert floored.E_reason is None
    floor = floored.E
    assert floor == pytest.approx(1.7, rel=0.05)
