"""The response surface behind the scaling rules: exact recovery, flat parameters,
one-sided data, refusal."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from search.errors import NotEnoughDataError
from search.scaling.optima import (
    Anchors,
    estimate_optima,
    optimal_log_n,
    outside_fraction,
    resample_surfaces,
)
from search.scaling.surface import (
    Structure,
    SurfaceData,
    choose_structure,
    coefficient_covariance,
    dropped_hyperparameters,
    excess,
    fit_surface,
)

# Two hyperparameters whose optima are linear in (ln N, ln D), with a ridge between them.
W_TRUE = np.array([[-0.7, 0.3], [0.0, 0.8]])
B_TRUE = np.array([-1.0, 2.0])
Q_TRUE = np.array([[0.04, 0.01], [0.01, 0.03]])


def _optimum(log_axes: np.ndarray) -> np.ndarray:
    centred = log_axes - np.array([18.0, 21.0])
    return B_TRUE + centred @ W_TRUE.T


def _g(log_axes: np.ndarray) -> np.ndarray:
    """A smooth main effect of size and tokens (log of a Chinchilla-like law)."""
    n, d = np.exp(log_axes[:, 0]), np.exp(log_axes[:, 1])
    return np.log(1.7 + 400.0 / n**0.34 + 410.0 / d**0.28)


def _data(n: int, *, seed: int, noise: float = 0.0, one_sided: bool = False, flat=False):
    rng = np.random.default_rng(seed)
    log_axes = np.column_stack([rng.uniform(15.0, 21.0, n), rng.uniform(18.0, 24.0, n)])
    offset = rng.normal(0.0, 1.5, size=(n, 2))
    if one_sided:  # every run above the optimum in the first hyperparameter
        offset[:, 0] = np.abs(offset[:, 0]) + 0.2
    hp = _optimum(log_axes) + offset
    loss = _g(log_axes) + np.einsum("ni,ij,nj->n", offset, Q_TRUE, offset)
    loss = loss + rng.normal(0.0, noise, n)
    if flat:  # a third hyperparameter the loss ignores
        hp = np.column_stack([hp, rng.normal(0.0, 1.0, n)])
    return SurfaceData(log_axes, hp, np.zeros((n, 0)), loss)


def test_noiseless_bowls_are_recovered_to_high_precision():
    data = _data(300, seed=0)
    surface = fit_surface(data, Structure(degree=3, bend=False))
    grid = np.column_stack([np.linspace(15.5, 20.5, 7), np.linspace(18.5, 23.5, 7)])
    np.testing.assert_allclose(surface.optimum(grid), _optimum(grid), atol=0.02)
    assert np.all(excess(surface, data) > -1e-3)


def test_optimum_given_a_held_value_follows_the_ridge():
    """Holding the second hyperparameter at a value, the first's optimum is the bowl's
    bottom along that line: the joint optimum moved by -Q01/Q00 per unit held off it
    (the learning rate for the batch actually used), and the held column is the value."""
    surface = fit_surface(_data(300, seed=0), Structure(degree=3, bend=False))
    grid = np.column_stack([np.linspace(15.5, 20.5, 7), np.linspace(18.5, 23.5, 7)])
    joint = _optimum(grid)
    held = 3.0
    given = surface.optimum(grid, {1: held})
    expected = joint[:, 0] - Q_TRUE[0, 1] / Q_TRUE[0, 0] * (held - joint[:, 1])
    np.testing.assert_allclose(given[:, 0], expected, atol=0.02)
    np.testing.assert_allclose(given[:, 1], held)
    np.testing.assert_allclose(surface.optimum(grid, {}), surface.optimum(grid))


def test_optima_are_found_from_runs_on_one_side_of_the_bowl():
    data = _data(300, seed=1, noise=0.003, one_sided=True)
    structure, _ = choose_structure(data, level=0.9)
    surface = fit_surface(data, structure)
    grid = np.column_stack([np.linspace(16.0, 20.0, 5), np.linspace(19.0, 23.0, 5)])
    assert np.abs(surface.optimum(grid) - _optimum(grid)).max() < 0.3


def test_a_hyperparameter_the_loss_ignores_is_dropped_as_having_no_effect():
    data = _data(300, seed=2, noise=0.003, flat=True)
    structure, _ = choose_structure(data, level=0.9)
    (dropped,) = dropped_hyperparameters(data, structure, level=0.9)
    assert (dropped.column, dropped.kind, dropped.partners) == (2, "no effect", ())


def test_a_hyperparameter_the_loss_falls_along_has_no_bowl_not_no_effect():
    """The loss falls steadily with a third hyperparameter (no optimum inside the runs):
    it matters, so it is "no bowl", not "flat"; the bowls of the other two are kept."""
    data = _data(300, seed=5, noise=0.003, flat=True)
    sloped = replace(data, log_loss=data.log_loss - 0.05 * data.hp[:, 2])
    structure, _ = choose_structure(sloped, level=0.9)
    (dropped,) = dropped_hyperparameters(sloped, structure, level=0.9)
    assert (dropped.column, dropped.kind) == (2, "no bowl")
    assert dropped.t < 1.29


def test_a_saddle_drops_the_weaker_curvature_and_names_its_partner():
    """Two hyperparameters, each curved on its own, whose cross term makes the joint bowl a
    saddle (the loss falls along a ridge through both), beside a third with a proper bowl."""
    rng = np.random.default_rng(6)
    n = 400
    log_axes = np.column_stack([rng.uniform(15.0, 21.0, n), rng.uniform(18.0, 24.0, n)])
    hp = rng.normal(0.0, 1.0, size=(n, 3))
    saddle = np.array([[0.04, 0.0, 0.05], [0.0, 0.03, 0.0], [0.05, 0.0, 0.05]])
    assert np.linalg.eigvalsh(saddle).min() < 0 < 0.04
    loss = _g(log_axes) + np.einsum("ni,ij,nj->n", hp, saddle, hp) + rng.normal(0, 0.002, n)
    data = SurfaceData(log_axes, hp, np.zeros((n, 0)), loss)
    structure, _ = choose_structure(data, level=0.9)
    (dropped,) = dropped_hyperparameters(data, structure, level=0.9)
    assert (dropped.column, dropped.kind, dropped.partners) == (0, "saddle", (2,))
    assert dropped.t > 1.29


def test_too_few_runs_for_a_surface_are_refused():
    with pytest.raises(NotEnoughDataError, match="cannot support a response surface"):
        choose_structure(_data(20, seed=3), level=0.9)


def test_iso_flop_minimum_of_the_profile():
    """On ``6 N D = C`` the surface's profile is minimised where d g / d ln N = 0."""
    data = _data(400, seed=4)
    surface = fit_surface(data, Structure(degree=3, bend=False))
    log_c = np.array([np.log(6.0) + 18.0 + 21.0])
    log_n, edge = optimal_log_n(surface, log_c, np.array([15.5]), np.array([20.5]))
    grid = np.linspace(15.5, 20.5, 2001)
    truth = grid[np.argmin(_g(np.column_stack([grid, log_c[0] - np.log(6.0) - grid])))]
    assert not edge[0]
    assert log_n[0] == pytest.approx(truth, abs=0.05)


@pytest.mark.parametrize("n_bootstrap", [0, 3])
@pytest.mark.parametrize("n_hp", [2, 0])
def test_optima_draws_keep_their_shape_with_no_resample_or_no_hyperparameter(n_bootstrap, n_hp):
    """No accepted resample (here none asked for) gives draws shaped (0, anchors, m)
    and (0, anchors), from which every law refuses (test_scaling_laws), not a crash;
    a surface whose every hyperparameter is flat (m = 0) still gives its N* draws."""
    data = _data(300, seed=0).columns(list(range(n_hp)))
    log_axes = np.column_stack([np.linspace(16.0, 20.0, 6), np.linspace(19.0, 23.0, 6)])
    anchors = Anchors(
        log_compute=log_axes.sum(axis=1) + np.log(6.0),
        log_axes=log_axes,
        log_n_low=log_axes[:, 0] - 1.0,
        log_n_high=log_axes[:, 0] + 1.0,
    )
    structure = Structure(degree=3, bend=False)
    surfaces = resample_surfaces(data, structure, n_bootstrap=n_bootstrap, seed=0)
    optima = estimate_optima(surfaces, anchors, with_allocation=True)
    assert optima.hp_path_draws.shape == (n_bootstrap, 6, n_hp)
    assert optima.hp_own_draws.shape == (n_bootstrap, 6, n_hp)
    assert optima.log_n_path_draws is not None
    assert optima.log_n_path_draws.shape == (n_bootstrap, 6)


def test_the_coefficient_covariance_matches_the_spread_over_fresh_noise():
    """What the correction's redraws (``estimates.correction_resampler``) take the
    surface's uncertainty from: the covariance fitted to one noisy study is the spread
    of the coefficients over fresh noise on the same runs (within sampling error)."""
    structure = Structure(degree=2, bend=False)
    clean = _data(200, seed=11)
    rng = np.random.default_rng(12)
    fits = [
        fit_surface(replace(clean, log_loss=clean.log_loss + rng.normal(0.0, 0.01, 200)), structure)
        for _ in range(200)
    ]
    spread = np.std([f.coef for f in fits], axis=0)
    noisy = replace(clean, log_loss=clean.log_loss + rng.normal(0.0, 0.01, 200))
    stated = np.sqrt(np.diag(coefficient_covariance(fit_surface(noisy, structure), noisy)))
    np.testing.assert_allclose(stated, spread, rtol=0.35)
    # and it scales with the noise, as a covariance must
    louder = replace(clean, log_loss=noisy.log_loss + rng.normal(0.0, 0.03, 200))
    wider = np.sqrt(np.diag(coefficient_covariance(fit_surface(louder, structure), louder)))
    assert np.median(wider / stated) > 2.0


def test_an_optimum_past_a_limit_the_runs_reached_is_not_unbracketed():
    """Batch sizes (log2) tried near each budget: at the small budgets every run sits at
    the space's floor (one sequence, log2 = 0) and the estimated optimum lies below it;
    the runs could go no lower, so the optimum there does not count as outside what was
    tried. The same runs with no floor declared, or a floor the runs did not reach,
    leave it outside."""
    log_compute = np.repeat(np.log([1e15, 1e16, 1e17, 1e18]), 6)
    batch = np.concatenate([np.zeros(6), np.zeros(6), np.linspace(1, 4, 6), np.linspace(2, 6, 6)])
    anchors = np.log([1e15, 1e16, 1e17, 1e18])
    optimum = np.array([[-0.8], [-0.3], [2.0], [4.0]])
    at_floor = outside_fraction(
        log_compute, batch[:, None], anchors, optimum, (np.array([0.0]), np.array([np.inf]))
    )
    no_floor = outside_fraction(
        log_compute, batch[:, None], anchors, optimum, (np.array([-np.inf]), np.array([np.inf]))
    )
    floor_below = outside_fraction(
        log_compute, batch[:, None], anchors, optimum, (np.array([-3.0]), np.array([np.inf]))
    )
    assert at_floor.shape == (1,) and at_floor[0] == 0.0
    assert no_floor[0] == floor_below[0] == 0.5
    # One hyperparameter alone is scored as each of several is (it broadcast to (P, P)).
    both = outside_fraction(
        log_compute,
        np.column_stack([batch, batch]),
        anchors,
        np.hstack([optimum, optimum]),
        (np.array([0.0, -np.inf]), np.array([np.inf, np.inf])),
    )
    np.testing.assert_array_equal(both, [at_floor[0], no_floor[0]])


def test_an_optimum_past_a_ceiling_the_runs_reached_is_not_unbracketed():
    log_compute = np.repeat(np.log([1e15, 1e16]), 5)
    value = np.concatenate([np.linspace(-2, 1, 5), np.full(5, 1.0)])
    anchors = np.log([1e15, 1e16])
    optimum = np.array([[0.0], [1.5]])
    capped = outside_fraction(
        log_compute, value[:, None], anchors, optimum, (np.array([-np.inf]), np.array([1.0]))
    )
    open_top = outside_fraction(
        log_compute, value[:, None], anchors, optimum, (np.array([-np.inf]), np.array([np.inf]))
    )
    assert capped[0] == 0.0 and open_top[0] == 0.5
