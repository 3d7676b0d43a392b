"""The backtest of L(N, D) inside a study's compute range, and the loss interval it widens."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.errors import NotEnoughDataError
from search.scaling import ScalingRules
from search.scaling.backtest import Backtest, backtest_frontier, backtest_parametric


def _runs(seed: int, *, step: float = 0.0, noise: float = 0.003):
    """Runs of L = 1.7 + 400 / N^0.34 + 410 / D^0.28 over 3 decades of compute, times
    exp(-step x^2) with x the decades of compute above 1e15 FLOPs: with ``step`` > 0
    the loss falls ever faster with scale, so the larger runs do better than a smooth
    law through the smaller ones says (as on real training, run 7 and run 8)."""
    rng = np.random.default_rng(seed)
    compute = 10 ** rng.uniform(14, 17, 150)
    n = 10 ** rng.uniform(-0.6, 0.6, 150) * 0.1 * (compute / 6) ** 0.5
    d = compute / (6 * n)
    loss = 1.7 + 400 / n**0.34 + 410 / d**0.28
    loss *= np.exp(-step * np.maximum(np.log10(compute / 1e15), 0.0) ** 2)
    return n, d, loss * np.exp(noise * rng.standard_normal(150))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_smooth_law_backtests_without_bias(seed):
    n, d, loss = _runs(seed)
    backtest = backtest_parametric(n, d, loss)
    assert abs(backtest.bias_per_decade) < 3 * backtest.bias_se
    assert backtest.compute_max == pytest.approx(float(np.max(6 * n * d)))
    assert backtest.cut_compute == pytest.approx(backtest.compute_max / 10**0.5)
    assert backtest.n_held_out == int(np.sum(6 * n * d > backtest.cut_compute))
    assert backtest.n_fit + backtest.n_held_out == 150


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_runs_that_beat_the_law_at_scale_show_as_a_positive_bias(seed):
    """A loss that falls faster with scale than any L(N, D) can: the law refitted below
    the top half decade predicts the runs above it too high."""
    backtest = backtest_parametric(*_runs(seed, step=0.02))
    assert 0.015 < backtest.bias_per_decade < 0.08
    assert backtest.bias_per_decade > 3 * backtest.bias_se
    assert backtest.stray(2.0, level=1e-12) == pytest.approx((2 * backtest.bias_per_decade,) * 2)
    least, most = backtest.stray(2.0, level=0.9)
    assert most - least == pytest.approx(2 * 2 * 1.6449 * backtest.bias_se, rel=1e-4)
    assert (least + most) / 2 == pytest.approx(2 * backtest.bias_per_decade)
    assert backtest.stray(-1.0, level=0.9) == (0.0, 0.0)  # inside the data: no stray


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_frontier_backtests_on_the_front(seed):
    """A front on a floored power law backtests without bias; one that falls ever faster
    (as run 8's did) backtests high."""
    rng = np.random.default_rng(seed)
    compute = np.geomspace(1e9, 1e12, 40)
    smooth = (1.2 + 40.0 * compute**-0.15) * np.exp(0.003 * rng.standard_normal(40))
    flat = backtest_frontier(compute, smooth)
    assert abs(flat.bias_per_decade) < 3 * flat.bias_se
    assert flat.n_held_out == int(np.sum(compute > 1e12 / 10**0.5))
    steeper = smooth * np.exp(-0.03 * np.log10(compute / 1e9) ** 2)
    assert backtest_frontier(compute, steeper).bias_per_decade > 0.03


def test_too_few_runs_above_the_cut_refuse_with_the_numbers():
    n, d, loss = _runs(0)
    compute = 6 * n * d
    top = np.argsort(compute)[::-1]
    top = top[compute[top] > compute.max() / 10**0.5]
    keep = np.setdiff1d(np.arange(len(loss)), top[3:])  # the top half decade's 3 largest
    with pytest.raises(NotEnoughDataError, match=r"^3 runs in the top 0.5 decades"):
        backtest_parametric(n[keep], d[keep], loss[keep])


def test_the_loss_interval_beyond_the_data_reaches_as_far_as_the_bias_may_carry(study_rules):
    """At the interval's level: the bias's estimate plus or minus z standard errors."""
    rules = study_rules
    target = 100.0 * rules.observed.compute_max
    plain = rules.model_copy(update={"parametric_backtest": None}).predict(compute=target)
    backtest = Backtest(
        cut_compute=rules.observed.compute_max / 3,
        compute_max=rules.observed.compute_max,
        n_fit=100,
        n_held_out=20,
        bias_per_decade=0.05,
        bias_se=0.01,
    )
    biased = rules.model_copy(update={"parametric_backtest": backtest})
    prediction = biased.predict(compute=target)
    z = 1.6449  # rules.level 0.9, two-sided
    estimate = plain.loss.estimate
    assert prediction.loss.estimate == pytest.approx(estimate)
    assert prediction.loss.low == pytest.approx(
        min(plain.loss.low, estimate * math.exp(-(0.05 + z * 0.01) * 2.0)), rel=1e-4
    )
    assert prediction.loss.low < plain.loss.low  # the bias reaches below the bootstrap's
    assert prediction.loss.high == pytest.approx(
        max(plain.loss.high, estimate * math.exp(-(0.05 - z * 0.01) * 2.0)), rel=1e-4
    )
    assert any("ran +5.0% (se 1.0%) per decade" in w for w in prediction.warnings)
    assert not any(w.startswith("loss:") for w in plain.warnings)
    # Inside the observed range the backtest has nothing to say.
    inside = biased.predict(compute=rules.observed.compute_max)
    assert (
        inside.loss
        == rules.model_copy(update={"parametric_backtest": None})
        .predict(compute=rules.observed.compute_max)
        .loss
    )
    # It travels with the rules file.
    loaded = ScalingRules.model_validate_json(biased.to_json())
    assert loaded.parametric_backtest == biased.parametric_backtest


@pytest.fixture(scope="module")
def study_rules():
    from search.scaling import fit_scaling_rules
    from tests.search.near_front_study import AXES, sample_study
    from workers.objectives.testbed_truth import TestbedConfig

    objective, observations = sample_study(TestbedConfig(), seed=4)
    return fit_scaling_rules(observations, objective.default_space(), AXES, n_bootstrap=30)


def test_a_study_s_rules_carry_the_backtest_of_their_law(study_rules):
    assert study_rules.parametric is not None
    backtest = study_rules.parametric_backtest
    assert backtest is not None and study_rules.parametric_backtest_reason is None
    # The testbed's loss is a smooth Chinchilla law: no bias beyond the noise.
    assert abs(backtest.bias_per_decade) < max(3 * backtest.bias_se, 0.01)
