"""The intervals of a sweep's L(N, D) and allocation: a fixed design, one effect per cell.

Synthetic sweeps of a known ``L(N, D)`` (Chinchilla's): 10 (N, D) cells laid out like
the smallest cells of ``bench.designed_sweeps`` (N from 1e7 to 1e8), each cell's runs
sharing one cell effect (what a cell's local correction adds) on top of their own noise.
"""

from __future__ import annotations

import math

import numpy as np

from search.scaling.chinchilla import fit_chinchilla
from search.scaling.lse import cell_effect_draws
from search.scaling.sweep import allocation_laws

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
SIZES = (1e7, 2.15e7, 4.6e7, 1e8)
CELLS = sorted(((n, n * r) for n in SIZES for r in (5.0, 20.0, 80.0)), key=lambda c: c[0] * c[1])
CELLS = CELLS[:10]
RUN_SD, CELL_SD = 0.01, 0.004  # in ln L


def _sweep(seed: int, runs: int = 8, cell_sd: float = CELL_SD):
    rng = np.random.default_rng(seed)
    n_params = np.repeat([c[0] for c in CELLS], runs)
    tokens = np.repeat([c[1] for c in CELLS], runs)
    cell = np.repeat(np.arange(len(CELLS)), runs)
    log_loss = np.log(E + A / n_params**ALPHA + B / tokens**BETA)
    log_loss += cell_sd * rng.standard_normal(len(CELLS))[cell]
    log_loss += RUN_SD * rng.standard_normal(len(cell))
    return n_params, tokens, log_loss, cell


def test_cell_effects_are_drawn_at_the_scatter_the_cells_show():
    """Each draw redraws every cell's level, the design fixed: without a cell effect at
    the precision of a median of the cell's runs (lam stays near 1), with one at the
    cells' total scatter around the fit."""
    rng = np.random.default_rng(0)
    runs = 24
    median_sd = math.sqrt(math.pi / 2) * RUN_SD / math.sqrt(runs)
    for cell_sd in (0.0, 0.006):
        ratios = []
        for seed in range(5):
            n_params, tokens, log_loss, cell = _sweep(seed, runs=runs, cell_sd=cell_sd)
            fit = fit_chinchilla(n_params, tokens, np.exp(log_loss), n_bootstrap=2, groups=cell)
            theta = np.array(
                [math.log(fit.E), math.log(fit.A), math.log(fit.B), fit.alpha, fit.beta]
            )
            log_x = np.column_stack([np.log(n_params), np.log(tokens)])
            draw = cell_effect_draws(theta, log_x, log_loss, cell)
            draws = np.array([draw(rng) for _ in range(400)])
            assert draws.shape == (400, len(cell))
            assert np.ptp(draws[:, cell == 0], axis=1).max() < 1e-12  # one effect per cell
            spread = float(np.median(np.std(draws[:, ::runs], axis=0)))
            ratios.append(spread / math.hypot(cell_sd, median_sd))
        assert 0.75 < float(np.median(ratios)) < 1.4, (cell_sd, ratios)


def test_n_star_interval_at_100x_covers_the_truth_at_about_its_level():
    """Over 16 fixed seeds the 90% interval of N* at 100x the largest cell covers the
    true N* in at least 13 (a calibrated interval does so with probability 0.93), and is
    not several times wider than the errors: the median |error| / (half-width / 1.645),
    0.67 for a calibrated normal interval, is at least 0.4."""
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    target = math.log(100 * 6 * max(n * d for n, d in CELLS))
    truth = math.log(g) + BETA / (ALPHA + BETA) * (target - math.log(6))
    covered, scaled = 0, []
    for seed in range(16):
        n_params, tokens, log_loss, cell = _sweep(seed)
        fit = fit_chinchilla(
            n_params, tokens, np.exp(log_loss), seed=seed, n_bootstrap=20, groups=cell
        )
        law, _ = allocation_laws(fit, np.log(6 * n_params * tokens), 0.9)
        estimate, low, high = (float(v[0]) for v in law.predict([[target]]))
        covered += low <= truth <= high
        scaled.append(abs(estimate - truth) / ((high - low) / 2 / 1.645))
    assert covered >= 13, (covered, scaled)
    assert float(np.median(scaled)) >= 0.4, scaled
