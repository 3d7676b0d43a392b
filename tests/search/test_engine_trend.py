"""The front-trend candidates: a linear fit of the front's coordinates against log cost,
extrapolated to costlier targets."""

from __future__ import annotations

import math

import numpy as np

from search.candidates import (
    TREND_MIN_POINTS,
    TREND_MIN_SPAN,
    FrontTrend,
    SpaceLayout,
    trend_points,
)
from search.engine import ParetoSearch
from search.proposals import CLIMB_WIDTH
from search.settings import SearchSettings
from search.testing import SizedQuadratic
from tests.search.engine_helpers import run_rounds

PROBLEM = SizedQuadratic(loss_noise_std=0.01, cost_noise_sigma=0.05)


def linear_front(n: int, *, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A front of ``n`` points whose coordinates follow a known line in log cost."""
    rng = np.random.default_rng(seed)
    log_cost = np.sort(rng.uniform(0.0, 4.0, size=n))
    slope = np.array([0.5, -0.3, 0.0, 0.2])
    x = 0.1 + np.outer(log_cost, slope) + noise * rng.normal(size=(n, slope.size))
    return x, log_cost, slope


def test_trend_extrapolates_a_known_linear_front():
    x, log_cost, slope = linear_front(20, noise=0.0, seed=0)
    trend = FrontTrend.fit(x, log_cost)
    assert trend is not None
    beyond = np.array([5.0, 6.0])  # past the top of the front (log cost 4)
    expected = 0.1 + np.outer(beyond, slope)
    # the ridge shrinks a long, wide front's slopes by a few percent at most
    np.testing.assert_allclose(trend.at(beyond), expected, atol=0.1)
    np.testing.assert_allclose(trend.slope, slope, atol=0.03)


def test_trend_is_robust_to_noise_and_favours_the_upper_front():
    x, log_cost, slope = linear_front(16, noise=0.05, seed=1)
    x[:4] += 1.0  # the cheap end bends away from the line
    trend = FrontTrend.fit(x, log_cost)
    assert trend is not None
    unweighted = np.polyfit(log_cost, x, 1)[0]
    assert np.abs(trend.slope - slope).sum() < np.abs(unweighted - slope).sum()


def test_no_trend_on_a_short_or_narrow_front():
    x, log_cost, _ = linear_front(TREND_MIN_POINTS - 1, noise=0.0, seed=2)
    assert FrontTrend.fit(x, log_cost) is None
    x, _, _ = linear_front(10, noise=0.0, seed=3)
    assert FrontTrend.fit(x, np.linspace(0.0, 0.5, 10)) is None


def test_trend_points_scatter_around_the_line_within_the_jitter():
    x, log_cost, _ = linear_front(12, noise=0.0, seed=4)
    trend = FrontTrend.fit(x, log_cost)
    assert trend is not None
    layout = SpaceLayout(
        lower=np.full(4, -10.0),
        upper=np.full(4, 10.0),
        continuous_mask=np.ones(4, dtype=bool),
        choice_blocks=(),
    )
    targets = np.full(200, 5.0)
    points = trend_points(trend, targets, layout=layout, radius=0.8, rng=np.random.default_rng(0))
    offsets = points - trend.at(targets)
    assert offsets.std() > 0.01  # scattered, not all on the line
    assert np.abs(offsets).max() < 0.25 * 0.8 * 5.0  # a fraction of the radius (5 sigma)
    assert np.abs(offsets.mean(axis=0)).max() < 0.05  # centred on the line


def test_model_phase_with_a_trend_keeps_its_reasons_and_determinism():
    def study(seed: int) -> tuple[list[str], list[dict]]:
        engine = ParetoSearch(PROBLEM.space(), SearchSettings(n_startup=8, seed=seed))
        reasons = run_rounds(engine, PROBLEM, rounds=5, batch=8, seed=seed)
        front = engine.front()
        log_costs = np.log([o.cost for o in front])
        assert len(front) >= TREND_MIN_POINTS
        assert log_costs.max() - log_costs.min() >= TREND_MIN_SPAN  # the trend is in play
        return reasons, [s.params for s in engine.ask(4)]

    reasons, params = study(3)
    assert set(reasons[8:]) <= {"model", "remeasure"}
    assert study(3)[1] == params


def test_the_search_climbs_one_overshoot_at_a_time():
    """No model suggestion is predicted to cost more than ``cost_overshoot`` (in log
    cost) beyond the costliest trial so far, plus the climb's window when the pace
    calls for a climb, however good scaling up looks."""
    settings = SearchSettings(n_startup=8, seed=5, cost_overshoot=0.4)
    engine = ParetoSearch(PROBLEM.space(), settings)
    rng = np.random.default_rng(5)
    tops = []
    for _ in range(10):
        top = max((o.cost for o in engine.observations if not o.failed), default=None)
        tops.append(top)
        for suggestion in engine.ask(8):
            if suggestion.reason == "model":
                assert top is not None
                climb = CLIMB_WIDTH if suggestion.extra["climb"] else 0.0
                step = settings.cost_overshoot + climb
                assert math.log(suggestion.predicted_cost / top) <= step + 1e-9
            outcome = PROBLEM.evaluate(suggestion.params, rng=rng)
            engine.tell(suggestion.suggestion_id, outcome.loss, outcome.cost, failed=outcome.failed)
    assert tops[-1] > 2.0 * tops[1]  # it still climbs, step by step
