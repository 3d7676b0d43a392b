"""The scaled loss model: the loss GP inside the observed costs, scaling transfer along
the front's trend beyond them (``search.loss_model``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.settings import SearchSettings
from search.surrogates import FittedModels, ObservationArrays, fit_models
from search.testing import SizedQuadratic

PROBLEM = SizedQuadratic()
SPACE = PROBLEM.space()
TOP_SIZE = 100.0  # the costliest observed trial; cost = size


def tuned(size: float, *, lr_factor: float = 1.0, shift: float | None = None) -> dict:
    return {
        "size": size,
        "learning_rate": PROBLEM.lr_opt(size) * lr_factor,
        "shift": PROBLEM.shift_opt if shift is None else shift,
    }


@pytest.fixture(scope="module")
def models() -> FittedModels:
    """Noiseless trials from size 3 to 100: some tuned, most a little off."""
    rng = np.random.default_rng(0)
    params = [tuned(s) for s in np.geomspace(3.0, TOP_SIZE, 6)]
    for size in np.exp(rng.uniform(math.log(3.0), math.log(TOP_SIZE), size=34)):
        params.append(
            tuned(size, lr_factor=math.exp(rng.normal(0, 0.8)), shift=rng.normal(0.6, 0.4))
        )
    data = ObservationArrays(
        x_internal=np.vstack([SPACE.to_internal(p) for p in params]),
        loss=np.array([PROBLEM.true_loss(p) for p in params]),
        log_cost=np.log([p["size"] for p in params]),
        failed=np.zeros(len(params), dtype=bool),
    )
    fitted = fit_models(data, settings=SearchSettings(), cache={})
    assert fitted.problem is None and fitted.scaled_loss is not None
    assert fitted.scaled_loss.trend is not None
    return fitted


def internal(*params: dict) -> np.ndarray:
    return np.vstack([SPACE.to_internal(p) for p in params])


def test_inside_the_observed_costs_it_is_the_loss_gp(models):
    x = internal(tuned(5.0), tuned(30.0, lr_factor=2.0), tuned(80.0, shift=0.0))
    assert np.all(models.cost_gp.predict_mean(x) <= models.scaled_loss.top_log_cost)
    mean, std = models.scaled_loss.predict(x)
    gp_mean, gp_std = models.loss_gp.predict(x)
    np.testing.assert_array_equal(mean, gp_mean)
    np.testing.assert_array_equal(std, gp_std)


def test_a_tuned_configuration_beyond_the_top_is_predicted_by_scaling_transfer(models):
    beyond = internal(tuned(10 * TOP_SIZE))
    truth = PROBLEM.true_loss(tuned(10 * TOP_SIZE))
    scaled = models.scaled_loss.predict(beyond)[0][0]
    plain = models.loss_gp.predict(beyond)[0][0]
    at_top = PROBLEM.true_loss(tuned(TOP_SIZE))
    # the plain GP sees no gain from scale beyond its data; the transfer sees most of it
    assert plain > at_top - 0.1 * (at_top - truth)
    assert scaled < at_top - 0.5 * (at_top - truth)
    assert abs(scaled - truth) < 0.5 * abs(plain - truth)


def test_scaling_up_without_the_trend_s_learning_rate_looks_worse(models):
    """10x the size at the top's learning rate is off the trend (the optimum shrinks
    with size): it maps back to a learning rate too high at the top's cost."""
    size = 10 * TOP_SIZE
    stale_lr = PROBLEM.lr_opt(TOP_SIZE) / PROBLEM.lr_opt(size)
    on_trend, stale = models.scaled_loss.predict(
        internal(tuned(size), tuned(size, lr_factor=stale_lr))
    )[0]
    assert PROBLEM.true_loss(tuned(size)) < PROBLEM.true_loss(tuned(size, lr_factor=stale_lr))
    assert on_trend < stale


def test_a_pending_fantasy_beyond_the_top_removes_its_uncertainty(models):
    x = internal(tuned(10 * TOP_SIZE, shift=0.3))
    mean, std = models.scaled_loss.predict(x)
    fantasised = models.scaled_loss.condition_on(x, mean)
    new_mean, new_std = fantasised.predict(x)
    np.testing.assert_allclose(new_mean, mean, atol=1e-6)
    assert new_std[0] < 0.5 * std[0]


def test_a_diverged_trial_s_partial_cost_does_not_make_its_neighbourhood_look_cheap():
    """A run that diverges stops early and costs a fraction of a full one. Fitted to
    those costs, the cost model called the diverging learning rates cheap, and a
    configuration there looked far below the front at its "cost": the engine proposed
    learning rates at the edge of divergence, a quarter of them failing (issue 18's
    engine studies, docs/notes/engine-experiments.md). The cost of a configuration is
    what a run that completes costs."""
    rng = np.random.default_rng(1)
    params, failed = [], []
    for size in np.exp(rng.uniform(math.log(3.0), math.log(TOP_SIZE), size=40)):
        params.append(tuned(size, lr_factor=math.exp(rng.normal(0, 0.5))))
        failed.append(False)
    for size in np.exp(rng.uniform(math.log(3.0), math.log(TOP_SIZE), size=20)):
        params.append(tuned(size, lr_factor=PROBLEM.diverge_factor * 1.5))
        failed.append(True)
    failed = np.array(failed)
    sizes = np.array([p["size"] for p in params])
    data = ObservationArrays(
        x_internal=internal(*params),
        loss=np.where(failed, np.nan, [PROBLEM.true_loss(p) for p in params]),
        log_cost=np.log(np.where(failed, 0.1 * sizes, sizes)),  # diverged at 10% of the run
        failed=failed,
    )
    fitted = fit_models(data, settings=SearchSettings(), cache={})
    assert fitted.cost_gp is not None
    probe = internal(*(tuned(s, lr_factor=PROBLEM.diverge_factor) for s in (5.0, 20.0, 60.0)))
    predicted = np.exp(fitted.cost_gp.predict_mean(probe))
    np.testing.assert_allclose(predicted, [5.0, 20.0, 60.0], rtol=0.3)


def test_a_failed_trial_that_paid_in_full_still_teaches_the_cost_model():
    """Runs that fail at the end cost what completed ones do: their costs stay in the cost
    model, which then knows the learning rate does not change the cost. The completed
    runs alone, each at its size's optimal learning rate, cannot tell size from learning
    rate, and fitted to them only the model priced these learning rates 30%+ off (through
    Optuna, with failures paying in full, it lost to random sampling on a seed,
    tests/integrations/test_optuna_sampler.py)."""
    rng = np.random.default_rng(2)
    params, failed = [], []
    for size in np.exp(rng.uniform(math.log(3.0), math.log(TOP_SIZE), size=12)):
        params.append(tuned(size))
        failed.append(False)
    for size in np.exp(rng.uniform(math.log(3.0), math.log(TOP_SIZE), size=30)):
        params.append(tuned(size, lr_factor=PROBLEM.diverge_factor * math.exp(rng.uniform(0, 1))))
        failed.append(True)
    failed = np.array(failed)
    data = ObservationArrays(
        x_internal=internal(*params),
        loss=np.where(failed, np.nan, [PROBLEM.true_loss(p) for p in params]),
        log_cost=np.log([p["size"] for p in params]),  # failed or not, a run costs its size
        failed=failed,
    )
    fitted = fit_models(data, settings=SearchSettings(), cache={})
    assert fitted.cost_gp is not None
    probe = internal(*(tuned(s, lr_factor=3 * PROBLEM.diverge_factor) for s in (5.0, 60.0)))
    np.testing.assert_allclose(np.exp(fitted.cost_gp.predict_mean(probe)), [5.0, 60.0], rtol=0.3)
