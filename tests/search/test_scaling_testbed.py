"""The fitting math on ideal data: a sampler that knows the testbed's optimum.

NOT issue 3's proof (that is tests/search/test_scaling_engine_study.py, from real engine
studies). The data come from ``tests.search.near_front_study.sample_study``: at eight
budgets log-spaced over three decades, 50 configurations each, placed around the true
optimum, which isolates the fitting (surface, laws, allocation, intervals) from the search.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.scaling import fit_scaling_rules
from search.scaling.chinchilla import derived_quantities
from tests.search.near_front_study import AXES, sample_study
from workers.objectives.base import NullContext
from workers.objectives.testbed import TestbedObjective
from workers.objectives.testbed_truth import TestbedConfig

# Ground truths: the default testbed (Chinchilla + step law) and two others whose loss
# exponents, learning-rate and batch-size laws all differ. The budgets keep the optimal
# batch above one sequence (the space's floor), where the truth is a pure power law.
GROUND_TRUTHS = {
    "chinchilla-steplaw": ({}, 1e15, 1e18),
    "flatter-lr": (
        {"lr_n_exp": -0.5, "lr_d_exp": 0.2, "batch_d_exp": 0.45, "alpha": 0.30, "beta": 0.33},
        1e16,
        1e19,
    ),
    "steeper-lr": (
        {"lr_n_exp": -0.8, "lr_d_exp": 0.4, "batch_d_exp": 0.65, "batch_n_exp": -0.1,
         "alpha": 0.38, "beta": 0.26},
        1e15,
        1e18,
    ),
}  # fmt: skip


@pytest.mark.parametrize("truth", sorted(GROUND_TRUTHS))
def test_fitting_on_ideal_near_optimum_data_extrapolates_100x(truth):
    overrides, compute_min, compute_max = GROUND_TRUTHS[truth]
    config = TestbedConfig(**overrides)
    objective, observations = sample_study(
        config, compute_min=compute_min, compute_max=compute_max, seed=1
    )
    rules = fit_scaling_rules(
        observations, objective.default_space(), AXES, seed=1, n_bootstrap=100
    )
    largest = rules.observed.compute_max
    prediction = rules.predict(compute=100.0 * largest)
    n_star, d_star, _ = objective.testbed.compute_optimal(100.0 * largest)
    optimum = objective.testbed.optimal_hparams(n_star, d_star)
    for name in ("learning_rate", "batch_size"):
        ratio = prediction.values[name].estimate / float(optimum[name])
        assert 1 / 1.25 <= ratio <= 1.25, (name, ratio)
    true_exponent = config.beta / (config.alpha + config.beta)
    assert abs(rules.allocation.n_params.coef[1] - true_exponent) <= 0.03
    assert prediction.extrapolation_decades == pytest.approx(2.0)


def test_noisy_testbed_with_chinchilla_coefficients_recovers_alpha_and_beta():
    """L(N, D) fitted to testbed runs at optimal hyperparameters (Chinchilla's published
    E, A, B, alpha, beta are the testbed's defaults) with the testbed's loss noise."""
    from search.scaling import fit_chinchilla

    objective = TestbedObjective(TestbedConfig())
    tb, rng = objective.testbed, np.random.default_rng(2)
    rows = []
    for _ in range(150):
        n_params, tokens = 10 ** rng.uniform(7.0, 10.0), 10 ** rng.uniform(9.0, 11.0)
        best = tb.optimal_hparams(n_params, tokens)
        params = {k: float(best[k]) for k in ("learning_rate", "warmup_fraction", "weight_decay")}
        params |= {"n_params": n_params, "tokens": tokens, "schedule": best["schedule"]}
        params["batch_size"] = int(2 ** round(math.log2(float(best["batch_size"]))))
        out = objective.run(params, seed=3, context=NullContext())
        if not out.failed:  # the largest models run out of memory at their optimal batch
            rows.append((n_params, tokens, out.loss))
    n_params, tokens, loss = (np.array(column) for column in zip(*rows, strict=True))
    fit = fit_chinchilla(n_params, tokens, loss, n_bootstrap=30)
    assert abs(fit.alpha - 0.34) <= 0.03
    assert abs(fit.beta - 0.28) <= 0.03


def test_the_allocation_interval_carries_the_correction_s_uncertainty():
    """N* follows L(N, D)'s allocation, and L(N, D) is fitted to the runs' losses
    corrected to their optimal hyperparameters. Its own bootstrap holds each correction
    fixed; N*'s interval redraws the correction with every resample (from the surface's
    coefficient covariance), so at 100x it is at least as wide as the fixed-correction
    one, around the same estimate, and wider the less the runs pin the surface (20 runs
    per budget against 50, noise at 3% of the reducible loss). The interval is the draws'
    percentiles, skewed as they are (N* = G C^a)."""
    config = TestbedConfig(loss_noise_std=0.0, loss_noise_share=0.03)
    widening = []
    for per_budget in (50, 20):
        objective, observations = sample_study(
            config, per_budget=per_budget, spread=1.0, compute_min=1e15, compute_max=1e18, seed=1
        )
        rules = fit_scaling_rules(
            observations, objective.default_space(), AXES, seed=1, n_bootstrap=100
        )
        target = 100.0 * rules.observed.compute_max
        interval = rules.predict(compute=target).n_params
        assert rules.parametric is not None and rules.allocation.note is None
        assert interval is not None and interval.low is not None and interval.high is not None
        fixed = derived_quantities(np.asarray(rules.parametric.bootstrap))
        log_n = np.log(fixed["G"] * (target / 6.0) ** fixed["a"])
        low, high = np.percentile(log_n[np.isfinite(log_n)], [5.0, 95.0])
        assert math.log(interval.estimate) == pytest.approx(
            math.log(rules.parametric.compute_optimal(np.array([target]))[0][0]), abs=1e-9
        )
        widening.append(math.log(interval.high / interval.low) / (high - low))
        above = math.log(interval.high / interval.estimate)
        below = math.log(interval.estimate / interval.low)
        assert abs(above - below) > 0.01 * (above + below)
    # With 50 runs a budget the widening is slight and machine-dependent (1.01 on an
    # AMD EPYC without AVX-512, over 1.05 with it); with 20 it is over 2.
    assert widening[0] > 0.98 and 1.5 * widening[0] < widening[1]


def test_a_correction_draw_without_a_convex_bowl_keeps_the_fitted_corrections(monkeypatch):
    """``correction_resampler`` redraws the surface's coefficients; when no draw in its
    tries gives a convex bowl (here: a covariance so wide that none does), the resample
    keeps the fitted surface's corrections rather than correcting with a saddle."""
    from search.scaling import estimates
    from search.scaling.fit_inputs import read_table

    objective, observations = sample_study(TestbedConfig(), seed=2)
    space = objective.default_space()
    table = read_table(observations, space, AXES)
    stage = estimates.fit_stage(
        table, [p for p in space.params if p.name not in AXES.names], level=0.9
    )
    assert stage.surface is not None and len(stage.kept) >= 2
    keep, loss = estimates.corrected_runs(stage)
    log_axes = np.column_stack([np.log(table.n_params), np.log(table.tokens)])
    n_coef = len(stage.surface.coef)
    monkeypatch.setattr(estimates, "coefficient_covariance", lambda *_: 1e6 * np.eye(n_coef))
    draw = estimates.correction_resampler(stage, log_axes)
    drawn_x, drawn_loss = draw(np.random.default_rng(0))
    by_run = dict(zip(map(tuple, log_axes[keep]), loss, strict=True))
    assert len(drawn_loss) == len(keep)
    assert all(by_run[tuple(x)] == value for x, value in zip(drawn_x, drawn_loss, strict=True))
