"""The engine's array-level parts: GP posterior, fantasies, acquisition, surface, failures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linear_operator.utils.errors import NotPSDError
from scipy.stats import norm

from search import models
from search.acquisition import (
    log_expected_front_improvement,
    log_expected_improvement,
    pareto_score,
)
from search.errors import ModelFittingError, NotEnoughDataError
from search.failure import FailureModel
from search.front_model import ParetoSurface
from search.models import GPHyperparameters, GPPredictor, _build_model, _initialise, fit_gp
from search.training_set import select_training_indices


def noisy_sine(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 2))
    return x, np.sin(2 * x[:, 0]) + 0.3 * x[:, 1] + 0.05 * rng.normal(size=n)


@pytest.fixture(scope="module")
def fitted() -> GPPredictor:
    x, y = noisy_sine(40)
    return fit_gp(x, y, warm_start=None, max_iter=200, retries=1)


def test_numpy_posterior_matches_gpytorch(fitted):
    gp = fitted
    z = (gp.y_train - gp.y_mean) / gp.y_std
    model = _build_model(
        torch.as_tensor(gp.x_train), torch.as_tensor(z).unsqueeze(-1), linear_mean=False
    )
    _initialise(model, gp.hyper)
    model.eval()
    query = np.random.default_rng(1).uniform(-3, 3, size=(25, 2))
    posterior = model.posterior(torch.as_tensor(query))
    mean, std = gp.predict(query)
    expected_mean = posterior.mean.detach().numpy().ravel() * gp.y_std + gp.y_mean
    expected_std = posterior.variance.detach().numpy().ravel() ** 0.5 * gp.y_std
    np.testing.assert_allclose(mean, expected_mean, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, atol=1e-6)


def test_fit_learns_the_function_and_the_noise(fitted):
    query = np.random.default_rng(2).uniform(-1.5, 1.5, size=(200, 2))
    truth = np.sin(2 * query[:, 0]) + 0.3 * query[:, 1]
    mean, _ = fitted.predict(query)
    assert np.sqrt(np.mean((mean - truth) ** 2)) < 0.15
    assert 0.01 < fitted.noise_std < 0.2


def test_warm_started_fit_reaches_the_same_optimum(fitted):
    x, y = noisy_sine(40)
    again = fit_gp(x, y, warm_start=fitted.hyper, max_iter=200, retries=1)
    np.testing.assert_allclose(again.hyper.lengthscales, fitted.hyper.lengthscales, rtol=0.05)


def test_condition_on_equals_a_posterior_with_the_points_added(fitted):
    x_new = np.array([[0.3, -0.2], [1.1, 0.9]])
    y_new = np.array([0.4, 1.2])
    updated = fitted.condition_on(x_new, y_new)
    direct = GPPredictor(
        np.vstack([fitted.x_train, x_new]),
        np.concatenate([fitted.y_train, y_new]),
        fitted.hyper,
        y_mean=fitted.y_mean,
        y_std=fitted.y_std,
    )
    query = np.random.default_rng(3).uniform(-2, 2, size=(30, 2))
    for a, b in zip(updated.predict(query), direct.predict(query), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_kriging_believer_keeps_the_mean_and_shrinks_the_variance(fitted):
    x_new = np.array([[2.5, 2.5]])
    believed = fitted.condition_on(x_new, fitted.predict(x_new)[0])
    mean_before, std_before = fitted.predict(x_new)
    mean_after, std_after = believed.predict(x_new)
    np.testing.assert_allclose(mean_after, mean_before, atol=1e-9)
    assert std_after[0] < 0.8 * std_before[0]


def test_leave_one_out_flags_an_outlier():
    x, y = noisy_sine(40, seed=4)
    y[7] -= 1.0
    gp = fit_gp(x, y, warm_start=None, max_iter=200, retries=1)
    loo_mean, loo_std = gp.leave_one_out()
    z = (loo_mean - y) / loo_std
    assert int(np.argmax(z)) == 7 and z[7] > 3


def test_linear_mean_extrapolates_a_linear_trend():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, size=(30, 2))
    y = 2.0 * x[:, 0] - x[:, 1] + 0.01 * rng.normal(size=30)
    gp = fit_gp(x, y, warm_start=None, max_iter=300, retries=1, linear_mean=True)
    far = np.array([[4.0, 0.0], [-4.0, 2.0]])
    np.testing.assert_allclose(gp.predict(far)[0], [8.0, -10.0], atol=0.5)
    restored = GPHyperparameters.from_dict(gp.hyper.to_dict())
    assert restored == gp.hyper


def test_fit_errors_are_typed(monkeypatch):
    with pytest.raises(NotEnoughDataError):
        fit_gp(np.zeros((1, 2)), np.zeros(1), warm_start=None, max_iter=10, retries=0)
    x, y = noisy_sine(10)
    with pytest.raises(ValueError, match="finite"):
        fit_gp(x, np.where(np.arange(10) == 3, np.nan, y), warm_start=None, max_iter=10, retries=0)
    starts = []

    def not_psd(x_train, z, *, start, max_iter):
        starts.append(start)
        raise NotPSDError("matrix not positive definite")

    monkeypatch.setattr(models, "_fit_hyperparameters", not_psd)
    with pytest.raises(ModelFittingError, match=r"after 3 attempts.*NotPSDError"):
        fit_gp(x, y, warm_start=None, max_iter=10, retries=2)
    assert len(starts) == 3 and starts[1].noise < starts[2].noise


def test_constant_and_duplicate_data_fit():
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 3, axis=0)
    gp = fit_gp(x, np.full(6, 2.0), warm_start=None, max_iter=50, retries=1)
    mean, std = gp.predict(np.array([[0.5, 0.5]]))
    assert mean[0] == pytest.approx(2.0) and np.isfinite(std).all()


def test_log_expected_improvement_matches_closed_form_and_is_finite_in_tails():
    mean = np.zeros(7)
    std = np.full(7, 2.0)
    threshold = np.array([-80.0, -10.0, -3.0, -0.5, 0.0, 1.0, 6.0])
    z = threshold[1:] / std[1:]
    expected = np.log(std[1:] * (z * norm.cdf(z) + norm.pdf(z)))
    got = log_expected_improvement(mean, std, threshold)
    np.testing.assert_allclose(got[1:], expected, rtol=1e-9)
    assert np.isfinite(got[0]) and got[0] < got[1]
    assert np.all(np.diff(got) > 0)


def test_pareto_score_prefers_success_and_the_target_cost():
    score = pareto_score(
        log_gain=np.zeros(3),
        probability_of_success=np.array([0.9, 0.1, 0.9]),
        predicted_log_cost=np.array([1.0, 1.0, 3.0]),
        target_log_cost=1.0,
        cost_width=0.5,
    )
    assert score[0] > score[1] and score[0] > score[2]


def _front_area(mean, std, log_cost, *, horizon=0.5, beyond=None):
    stair_log_cost = np.array([0.0, 1.0, 1.2])
    stair_loss = np.array([3.0, 2.0, 1.9])
    beyond = np.full(len(mean), 1.8) if beyond is None else beyond
    return log_expected_front_improvement(
        mean=np.asarray(mean, float),
        std=np.asarray(std, float),
        log_cost=np.asarray(log_cost, float),
        stair_log_cost=stair_log_cost,
        stair_loss=stair_loss,
        horizon=horizon,
        beyond_threshold=beyond,
    )


def test_front_area_matches_a_monte_carlo_estimate_of_the_area_cut():
    rng = np.random.default_rng(0)
    mean, std, c = 2.1, 0.3, 0.4
    y = rng.normal(mean, std, size=400_000)
    # Steps from c on: [0.4, 1.0) at 3.0, [1.0, 1.2) at 2.0, [1.2, 1.7) at 1.9.
    area = 0.6 * np.maximum(3.0 - y, 0) + 0.2 * np.maximum(2.0 - y, 0)
    area += 0.5 * np.maximum(1.9 - y, 0)
    got = _front_area([mean], [std], [c])
    assert math.exp(got[0]) == pytest.approx(area.mean(), rel=5e-3)


def test_front_area_values_a_gap_in_the_front_over_a_point_beside_a_front_point():
    # Same predicted loss: in the long gap after the cheapest point, or just after the
    # point at 1.0, where the next step (at 1.2) soon lies below it.
    gap, beside = _front_area([2.5, 2.5], [0.05, 0.05], [0.1, 1.05])
    assert gap > beside + 1.0


def test_front_area_beyond_the_front_is_the_horizon_times_ei_below_the_surface():
    got = _front_area([1.7], [0.1], [1.5], horizon=0.5, beyond=np.array([1.8]))
    expected = math.log(0.5) + log_expected_improvement(
        np.array([1.7]), np.array([0.1]), np.array([1.8])
    )
    assert got[0] == pytest.approx(expected[0])
    assert np.all(np.isfinite(_front_area([9.0, 0.0], [0.01, 0.01], [5.0, -3.0])))


def test_surface_is_monotone_passes_near_the_front_and_extrapolates_down():
    log_cost = np.log([1.0, 3.0, 10.0, 30.0, 100.0])
    loss = 1.0 + 4.0 * np.exp(log_cost) ** -0.3
    surface = ParetoSurface(log_cost, loss)
    np.testing.assert_allclose(surface.loss_at(log_cost), loss, atol=0.02)
    beyond = surface.loss_at(np.log([300.0, 1000.0, 1e5]))
    assert np.all(np.diff(beyond) < 0) and beyond[-1] > 0.9
    assert surface.exponent == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("n", [1, 2])
def test_surface_from_one_or_two_points(n):
    surface = ParetoSurface(np.log([2.0, 20.0])[:n], np.array([3.0, 2.0])[:n])
    values = surface.loss_at(np.log([2.0, 20.0, 200.0]))
    assert np.all(np.isfinite(values)) and values[0] == pytest.approx(3.0, abs=1e-6)
    assert np.all(np.diff(values) <= 1e-12)


def test_failure_model_trend_far_away_and_high_near_failures():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 3.0]])
    model = FailureModel(x, np.array([True, True, False]), prior=0.1, bandwidth=0.5)
    queries = np.array([[0.05, 0.0], [3.0, 3.0], [20.0, -20.0]])
    p = model.probability_of_failure(queries)
    assert p[0] > 0.6 and p[1] < 0.3
    assert p[2] == pytest.approx(model.prior_at(queries[2:])[0], abs=1e-9)
    empty = FailureModel(np.zeros((0, 2)), np.zeros(0, dtype=bool), prior=0.2, bandwidth=1.0)
    assert empty.probability_of_failure(np.zeros((2, 2))).tolist() == [0.2, 0.2]
    no_failure = FailureModel(x, np.zeros(3, dtype=bool), prior=0.2, bandwidth=0.5)
    assert no_failure.probability_of_failure(queries)[2] == pytest.approx(0.2)


def test_failure_model_carries_a_learnt_boundary_to_where_no_trial_was():
    """Runs fail beyond a plane (a learning rate above a limit that falls with size, as
    divergence does): far from every trial along the other axes, the side of the plane
    still decides, where a kernel alone would return the prior."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.5, 1.5, size=(120, 5))
    failed = x[:, 0] + 0.7 * x[:, 1] > 0.5
    model = FailureModel(x, failed, prior=0.1, bandwidth=0.5)
    far = np.array([[2.5, 0.0, 6.0, -6.0, 6.0], [-2.0, 0.0, 6.0, -6.0, 6.0]])
    p = model.probability_of_failure(far)
    assert p[0] > 0.9 and p[1] < 0.05


def test_training_set_is_bounded_and_keeps_the_anchors_and_recent_points():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1000, 3))
    anchors = np.array([5, 50, 500])
    rows = select_training_indices(
        x, anchor_indices=anchors, best_indices=np.arange(1000), max_points=100
    )
    assert rows.size == 100 and len(set(rows.tolist())) == 100
    assert set(anchors) <= set(rows.tolist()) and 999 in rows and 0 in rows
    near_anchor = np.argsort(((x - x[50]) ** 2).sum(1))[1:4]
    assert set(near_anchor) <= set(rows.tolist())
    small = select_training_indices(
        x[:20], anchor_indices=anchors[:1], best_indices=[], max_points=100
    )
    assert small.tolist() == list(range(20))
