"""The parametric law L(N, D) = E + A/N^alpha + B/D^beta: synthetic and real data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from search.errors import NotEnoughDataError
from search.scaling.chinchilla import ChinchillaFit, fit_chinchilla, redrawn_bootstrap

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _law(n_params, tokens, *, E, A, B, alpha, beta):
    return E + A / n_params**alpha + B / tokens**beta


def _grid_runs(rng: np.random.Generator, n: int = 150):
    """Runs spread over 3 decades of N and 3.5 of D, log-uniformly."""
    n_params = 10.0 ** rng.uniform(7.0, 10.0, size=n)
    tokens = 10.0 ** rng.uniform(8.5, 12.0, size=n)
    return n_params, tokens


def test_exact_data_recovers_every_coefficient():
    n_params, tokens = _grid_runs(np.random.default_rng(0), 60)
    loss = _law(n_params, tokens, **CHINCHILLA)
    fit = fit_chinchilla(n_params, tokens, loss, n_bootstrap=5)
    for name, truth in CHINCHILLA.items():
        assert getattr(fit, name) == pytest.approx(truth, rel=1e-3), name
    assert fit.a == pytest.approx(0.28 / 0.62, abs=1e-3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noisy_chinchilla_data_recovers_exponents_within_003(seed):
    rng = np.random.default_rng(seed)
    n_params, tokens = _grid_runs(rng)
    loss = _law(n_params, tokens, **CHINCHILLA) * np.exp(rng.normal(0.0, 0.01, size=len(tokens)))
    fit = fit_chinchilla(n_params, tokens, loss, seed=seed, n_bootstrap=30)
    assert abs(fit.alpha - 0.34) <= 0.03
    assert abs(fit.beta - 0.28) <= 0.03


def _epoch_runs():
    path = DATA_DIR / "chinchilla_epoch_extracted.csv"
    if not path.exists():
        pytest.fail(f"{path} is missing: the shared data folder must sit beside the repository")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    n_params = np.array([float(r["Model Size"]) for r in rows])
    flops = np.array([float(r["Training FLOP"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    return n_params, flops / (6.0 * n_params), loss


def test_real_chinchilla_runs_recover_epoch_ai_refit():
    """Besiroglu et al. 2024 (Epoch AI) refit these 245 runs after dropping the five
    with the highest loss (their notebook's ``nr_of_models_excluded = 5``):
    alpha = 0.348 (se 0.015), beta = 0.366 (se 0.021), a = 0.513 (se 0.020)."""
    n_params, tokens, loss = _epoch_runs()
    assert len(loss) == 245
    keep = loss < np.sort(loss)[-5]
    fit = fit_chinchilla(n_params[keep], tokens[keep], loss[keep], seed=0, n_bootstrap=100)
    published = {"alpha": (0.348, 0.015), "beta": (0.366, 0.021), "a": (0.513, 0.020)}
    for name, (value, se) in published.items():
        assert abs(getattr(fit, name) - value) <= se, name
        assert 0.5 * se <= fit.se[name] <= 2.0 * se, name
    assert pytest.approx(1.817, abs=0.05) == fit.E
    tokens_per_param = fit.compute_optimal(np.array([1e23]))
    assert 10.0 < tokens_per_param[1][0] / tokens_per_param[0][0] < 40.0


def test_refuses_a_narrow_range_of_model_sizes():
    rng = np.random.default_rng(5)
    n_params = 10.0 ** rng.uniform(8.0, 8.5, size=60)
    tokens = 10.0 ** rng.uniform(9.0, 12.0, size=60)
    with pytest.raises(NotEnoughDataError, match=r"n_params spans 0\.5"):
        fit_chinchilla(n_params, tokens, _law(n_params, tokens, **CHINCHILLA))


def test_one_run_is_refused_in_the_singular():
    with pytest.raises(NotEnoughDataError, match=r"^1 run cannot support"):
        fit_chinchilla(np.array([1e8]), np.array([1e10]), np.array([3.0]))


def test_a_fit_without_bootstrap_draws_is_refused_not_a_crash():
    n_params, tokens = _grid_runs(np.random.default_rng(0), 60)
    loss = _law(n_params, tokens, **CHINCHILLA)
    with pytest.raises(NotEnoughDataError, match="could not re-estimate L"):
        fit_chinchilla(n_params, tokens, loss, n_bootstrap=0)


def test_resampled_fits_that_run_off_to_infinity_are_left_out():
    """A loss that barely depends on N and D: some bootstrap refits send B past
    floating point. Kept, they were written as null and the fit (and any rules file
    holding it) could not be loaded again."""
    rng = np.random.default_rng(9)
    n = int(rng.integers(15, 25))
    n_params, tokens = 10 ** rng.uniform(7, 8.2, n), 10 ** rng.uniform(9, 10.2, n)
    loss = 2.0 + 0.05 * rng.standard_normal(n) ** 2
    fit = fit_chinchilla(n_params, tokens, loss, n_bootstrap=20)
    assert 2 <= len(fit.bootstrap) < 20
    assert np.isfinite(fit.bootstrap).all()
    assert ChinchillaFit.model_validate_json(fit.model_dump_json()) == fit


def test_refuses_loss_that_grows_with_model_size():
    n_params, tokens = _grid_runs(np.random.default_rng(6), 60)
    loss = 1.7 + 1e-3 * n_params**0.3 + 410.7 / tokens**0.28
    with pytest.raises(NotEnoughDataError, match="not both positive"):
        fit_chinchilla(n_params, tokens, loss, n_bootstrap=5)


def test_prediction_intervals_contain_the_estimate_and_widen_beyond_the_data():
    rng = np.random.default_rng(7)
    n_params, tokens = _grid_runs(rng, 80)
    loss = _law(n_params, tokens, **CHINCHILLA) * np.exp(rng.normal(0.0, 0.01, size=80))
    fit = fit_chinchilla(n_params, tokens, loss, n_bootstrap=40)
    estimate, low, high = fit.predict_loss(np.array([1e8, 1e12]), np.array([1e10, 1e14]))
    assert np.all(low <= estimate) and np.all(estimate <= high)
    assert high[1] - low[1] > high[0] - low[0]


def test_refits_to_redrawn_points_follow_what_the_draws_change():
    """``redrawn_bootstrap`` refits the law to whatever each draw gives: the same
    noiseless points give back the fit itself; losses shifted by a factor that grows
    with N (a correction off by a trend in N, as a misfitted surface's is), by a
    different amount in each draw, move alpha in every draw and spread it."""
    n_params, tokens = _grid_runs(np.random.default_rng(4), 80)
    loss = _law(n_params, tokens, **CHINCHILLA)
    fit = fit_chinchilla(n_params, tokens, loss, n_bootstrap=5)
    log_x = np.column_stack([np.log(n_params), np.log(tokens)])
    centre = log_x.mean(axis=0)

    def exact(rng: np.random.Generator):
        return log_x, loss

    same = redrawn_bootstrap(fit, exact, centre=centre, seed=0, n_draws=3)
    np.testing.assert_allclose(same, np.tile(fit.params(), (3, 1)), rtol=1e-4)

    def tilted(rng: np.random.Generator):
        tilt = rng.uniform(0.01, 0.02)
        return log_x, loss * np.exp(tilt * (log_x[:, 0] - centre[0]))

    draws = redrawn_bootstrap(fit, tilted, centre=centre, seed=0, n_draws=20)
    assert np.all(np.abs(draws[:, 3] - fit.alpha) > 1e-3)
    assert np.std(draws[:, 3]) > 1e-3
