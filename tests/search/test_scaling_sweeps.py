"""Scaling rules from designed sweeps: (N, D) cells, each a grid of lr x batch.

The sweeps are the benchmark's (``bench.designed_sweeps``) on a coarser grid, so each
fit takes well under a second.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bench.designed_sweeps import SWEEP_TRUTHS, baseline_laws, one_study, run_sweep
from search.scaling import ScalingAxes, cells, fit_scaling_rules
from search.scaling.warp import Warp
from search.space import LogParam
from search.types import Observation
from workers.objectives.testbed import TestbedObjective
from workers.objectives.testbed_truth import TestbedConfig

AXES = ScalingAxes(n_params="n_params", tokens="tokens")
LR_GRID = np.geomspace(1e-4, 0.2, 8)
BATCH_GRID = 2 ** np.arange(2, 12, 2)
SMALL_CELLS = [(n, n * r) for n in (1e7, 3e7, 1e8) for r in (5.0, 40.0)]


@pytest.fixture(autouse=True)
def _coarse_grid(monkeypatch):
    monkeypatch.setattr("bench.designed_sweeps.LR_GRID", LR_GRID)
    monkeypatch.setattr("bench.designed_sweeps.BATCH_GRID", BATCH_GRID)


def _fit(truth: str, cells, *, seed: int = 0, noise_share: float = 0.01, space=None):
    config = TestbedConfig(**SWEEP_TRUTHS[truth])
    observations = run_sweep(config, cells, noise_share=noise_share, seed=seed)
    space = space or TestbedObjective(config).default_space()
    rules = fit_scaling_rules(observations, space, AXES, seed=seed, n_bootstrap=20)
    return config, observations, rules


@pytest.fixture(scope="module")
def small_sweep():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bench.designed_sweeps.LR_GRID", LR_GRID)
        patch.setattr("bench.designed_sweeps.BATCH_GRID", BATCH_GRID)
        return _fit("chinchilla-steplaw", SMALL_CELLS)


def test_six_small_cells_give_supported_laws_in_n_and_d(small_sweep):
    config, _, rules = small_sweep
    assert rules.optima_from == "cells" and rules.observed.n_cells == 6
    for name in ("learning_rate", "batch_size"):
        rule = rules.rule(name)
        assert rule.supported, rule.reason
        assert rule.vs_size_tokens.features == ["ln_n_params", "ln_tokens"]
        assert rule.vs_compute is not None
    # the published step law: the optimal lr falls with N and rises with D
    lr = rules.rule("learning_rate").vs_size_tokens
    assert lr.coef_high[1] < 0 < lr.coef_low[2]
    assert lr.coef_low[1] <= config.lr_n_exp <= lr.coef_high[1]
    assert lr.coef_low[2] <= config.lr_d_exp <= lr.coef_high[2]


@pytest.mark.parametrize("truth", ["chinchilla-steplaw", "held-out"])
def test_exponents_beat_the_per_cell_optimum_baseline(truth):
    """Over fixed seeds, the lr exponents (p on ln N, q on ln D) are at least as close to
    the truth as least squares through each cell's grid-best run, by a margin."""
    ours, baseline = [], []
    for seed in range(2):
        config, observations, rules = _fit(truth, SMALL_CELLS, seed=seed)
        exact = np.array([config.lr_n_exp, config.lr_d_exp])
        ours.append(np.abs(np.array(rules.rule("learning_rate").vs_size_tokens.coef[1:]) - exact))
        baseline.append(np.abs(baseline_laws(observations)[0][1:] - exact))
    assert np.mean(ours) < 0.5 * np.mean(baseline), (np.mean(ours), np.mean(baseline))
    assert np.max(ours) < 0.1


def test_a_sweep_whose_model_size_does_not_vary_is_refused_with_the_numbers():
    cells = [(3e7, 3e7 * r) for r in (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)]
    _, _, rules = _fit("chinchilla-steplaw", cells)
    rule = rules.rule("learning_rate")
    assert not rule.supported
    assert "n_params does not vary over the 6 points (spans 0.00 decades)" in rule.reason
    prediction = rules.predict(n_params=1e8, tokens=2e9)
    assert not prediction.values["learning_rate"].supported
    assert prediction.values["learning_rate"].value == rule.fallback


def test_a_parameter_not_swept_gets_the_best_observed_value_and_its_range(small_sweep):
    _, _, rules = small_sweep
    rule = rules.rule("warmup_fraction")
    assert not rule.supported and rule.reason.startswith("not swept")
    value = rules.predict(compute=100 * rules.observed.compute_max).values["warmup_fraction"]
    assert value.value == pytest.approx(0.05) and value.estimate is None
    assert value.low == pytest.approx(0.05) and value.high == pytest.approx(0.05)


def test_predictions_stay_inside_the_declared_limits_and_say_so():
    config = TestbedConfig(**SWEEP_TRUTHS["chinchilla-steplaw"])
    space = TestbedObjective(config).default_space()
    params = [
        LogParam(name="learning_rate", center=1e-3, min=1e-4, max=2e-3)
        if p.name == "learning_rate"
        else p
        for p in space.params
    ]
    narrow = space.model_copy(update={"params": params})
    _, _, rules = _fit("chinchilla-steplaw", SMALL_CELLS, space=narrow)
    prediction = rules.predict(n_params=1e7, tokens=4e8)  # the optimum there is ~1e-2
    value = prediction.values["learning_rate"]
    assert value.clipped and value.estimate == pytest.approx(2e-3) and value.high <= 2e-3
    assert value.value == pytest.approx(2e-3) and "clipped" in value.source
    law = rules.rule("learning_rate").vs_size_tokens
    unclipped = math.exp(law.predict([[math.log(1e7), math.log(4e8)]])[0][0])
    assert unclipped > 4e-3


def test_diverged_runs_do_not_pull_the_optimum(small_sweep):
    """Reported as huge finite losses instead of failures, the diverged runs sit far up
    the bowl's wall, get no weight, and leave the lr law where it was. (They still take
    part in each cell's bootstrap resamples, which set the cells' precision weights: 100
    draws make those weights steady enough to compare the two laws.)"""
    config, observations, _ = small_sweep
    diverged = [o for o in observations if o.failed]
    assert len(diverged) > 20
    as_losses = [Observation(o.params, 10.0, o.cost) if o.failed else o for o in observations]
    space = TestbedObjective(config).default_space()
    quiet = fit_scaling_rules(observations, space, AXES, seed=0, n_bootstrap=100)
    loud = fit_scaling_rules(as_losses, space, AXES, seed=0, n_bootstrap=100)
    before = np.array(quiet.rule("learning_rate").vs_size_tokens.coef)
    after = np.array(loud.rule("learning_rate").vs_size_tokens.coef)
    assert np.max(np.abs(after[1:] - before[1:])) < 0.02, (before, after)


# -- a bowl steeper above its optimum than below ------------------------------------------


def _skewed_cell(rng: np.random.Generator, *, skew: float, noise: float):
    """One cell's grid of 12 learning rates x 6 batches: log-loss with a linex bowl in
    ln lr (``TestbedConfig.lr_skew``'s shape: exponential above the optimum, linear
    below) and a quadratic one in log2 batch, optimum at lr 3e-3 and batch 64."""
    ln_lr, log2_b = (
        g.ravel() for g in np.meshgrid(np.log(np.geomspace(1e-4, 0.1, 12)), np.arange(3, 9))
    )
    u = ln_lr - math.log(3e-3)
    square = u**2 if skew == 0 else 2 * (np.expm1(skew * u) - skew * u) / skew**2
    y = math.log(3.0) + 0.02 * square + 0.01 * (log2_b - 6.0) ** 2
    return np.column_stack([ln_lr, log2_b]), y + noise * rng.standard_normal(len(y))


def test_a_skewed_bowls_bottom_is_found_where_a_quadratic_misses_it():
    """Loss rising faster above the lr optimum than below (as in real runs) pulls a
    quadratic's vertex down (0.15-0.17 dex here); the sweep's warp of ln lr takes most of
    that off in every cell, and leaves the symmetric batch unwarped."""
    for seed in range(3):
        h, y, groups = _sweep_of_cells(seed, skew=1.5, noise=0.002)
        warp = cells.sweep_warp(h, y, groups)
        assert warp is not None and warp.power[0] > 0 and warp.power[1] == 0
        quadratic, warped = [], []
        for rows in groups:
            optimum, _ = cells.cell_optimum(h[rows], y[rows])
            quadratic.append((optimum[0] - math.log(3e-3)) / math.log(10))
            optimum, _ = cells.cell_optimum(warp.apply(h[rows]), y[rows])
            warped.append((warp.invert(optimum)[0] - math.log(3e-3)) / math.log(10))
        assert np.all(np.array(quadratic) < -0.1), quadratic  # the vertex sits low
        assert np.max(np.abs(warped)) < 0.35 * np.min(np.abs(quadratic)), (warped, quadratic)


def test_the_warp_maps_back_to_the_hyperparameter():
    """``invert`` undoes ``apply`` per column, an unwarped column is only centred, and a
    warped value beyond the warp's range maps far out on the squeezed side, where no
    cell's runs bracket it."""
    warp = Warp(power=np.array([0.7, 0.0]), centre=np.array([-6.0, 5.0]))
    h = np.array([[-9.0, 2.0], [-6.0, 5.0], [-2.5, 11.0]])
    w = warp.apply(h)
    assert np.allclose(warp.invert(w), h)
    assert np.allclose(w[:, 1], h[:, 1] - 5.0) and w[1, 0] == 0.0
    assert w[2, 0] - w[1, 0] > w[1, 0] - w[0, 0]  # stretched above the centre
    assert warp.invert(np.array([-1.0 / 0.7 - 0.1, 0.0]))[0] < -6.0 - 15.0


def _sweep_of_cells(seed: int, *, skew: float, noise: float, n_cells: int = 8):
    rng = np.random.default_rng(seed)
    parts = [_skewed_cell(rng, skew=skew, noise=noise) for _ in range(n_cells)]
    rows = np.cumsum([0] + [len(y) for _, y in parts])
    groups = [np.arange(a, b) for a, b in itertools.pairwise(rows)]
    return np.vstack([h for h, _ in parts]), np.concatenate([y for _, y in parts]), groups


def test_the_sweep_takes_a_warp_only_where_its_cells_show_skew():
    """Pooled over a sweep's cells, the test finds the learning rate's skew at a noise
    no single cell could see it through, and under noise alone fires about as often as
    its level allows (a symmetric sweep keeps its cells' plain quadratics)."""
    found = [cells.sweep_warp(*_sweep_of_cells(s, skew=1.5, noise=0.01)) for s in range(10)]
    assert sum(w is not None and w.power[0] > 0 for w in found) >= 9, found
    fired = sum(
        cells.sweep_warp(*_sweep_of_cells(s, skew=0.0, noise=0.01)) is not None for s in range(40)
    )
    assert fired <= 8, fired  # two columns at 1% each (and a grid's choice): P(> 8) tiny


def test_on_a_skewed_sweep_the_rules_lose_less_than_the_baseline_and_the_quadratic(
    monkeypatch,
):
    """The benchmark's sweep on its skewed truth (``bench.truths.SKEWED_LR``), fitted on
    the smallest cells (10% of the compute): the loss at the rules' configuration for the
    3 largest cells is closer to each cell's best than the per-cell-optimum baseline's and
    than the same fit's with quadratic bowls only (where the rules lost to the baseline)."""
    monkeypatch.setattr("bench.designed_sweeps.LR_GRID", np.geomspace(1e-4, 0.2, 12))
    monkeypatch.setattr("bench.designed_sweeps.BATCH_GRID", 2 ** np.arange(2, 12))

    def excess(who: str, seed: int) -> float:
        largest = one_study("skewed-lr", 0.01, seed)["largest"]
        return float(np.mean([cell[who]["loss_excess"] for cell in largest]))

    for seed in (0, 1):
        skewed, baseline = excess("rules", seed), excess("baseline", seed)
        with monkeypatch.context() as never:
            never.setattr(cells, "sweep_warp", lambda *_: None)
            quadratic = excess("rules", seed)
        assert skewed < min(baseline, quadratic), (seed, skewed, baseline, quadratic)


def test_on_a_bowl_almost_flat_below_its_optimum_the_warp_beats_the_baseline(monkeypatch):
    """``held-out-skewed-2``'s learning-rate bowl (lr_skew 2.5: 2.5% of loss at 20x under
    the optimum) is where the shared cubic and quartic lost to the grid-best baseline:
    with the warp the rules lose under a fifth of what quadratic cells lose at each seed
    (about a tenth when this was written), and over four seeds less than half of what
    the baseline loses (0.05% against 0.18%; the baseline's grid picks are lucky on
    some seeds)."""
    monkeypatch.setattr("bench.designed_sweeps.LR_GRID", np.geomspace(1e-4, 0.2, 12))
    monkeypatch.setattr("bench.designed_sweeps.BATCH_GRID", 2 ** np.arange(2, 12))

    def excess(study: dict, who: str) -> float:
        return float(np.mean([cell[who]["loss_excess"] for cell in study["largest"]]))

    studies = [one_study("held-out-skewed-2", 0.01, seed) for seed in range(4)]
    warped = [excess(study, "rules") for study in studies]
    baseline = [excess(study, "baseline") for study in studies]
    assert np.mean(warped) < 0.5 * np.mean(baseline), (warped, baseline)
    with monkeypatch.context() as never:
        never.setattr(cells, "sweep_warp", lambda *_: None)
        for seed in (0, 1):
            quadratic = excess(one_study("held-out-skewed-2", 0.01, seed), "rules")
            assert warped[seed] < 0.2 * quadratic, (seed, warped[seed], quadratic)
