"""Linear laws with bootstrap intervals: exact recovery, coverage, refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.errors import NotEnoughDataError
from search.scaling.laws import fit_linear_law, turning_point_inside


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


def test_turning_point_is_found_inside_a_non_monotone_relationship():
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 6.0, 30)
    bowl = (x - 3.0) ** 2 + rng.normal(0.0, 0.1, size=30)
    assert turning_point_inside(x, bowl) == pytest.approx(3.0, abs=0.2)
    line = 0.5 * x + rng.normal(0.0, 0.1, size=30)
    assert turning_point_inside(x, line) is None
