"""Robust fit of sums of power laws in log space, as the Chinchilla paper and Epoch AI do.

The model is ``L = E + sum_j A_j / X_j^alpha_j`` (``X_j`` positive axes such as model
size and tokens). Written in log space with ``E = exp(e)``, ``A_j = exp(a_j)`` it reads

    ln L_hat = LSE(e, a_1 - alpha_1 ln X_1, ..., a_k - alpha_k ln X_k)

(LSE = log-sum-exp). The fit minimises the Huber loss (``delta = 1e-3``) of the
residuals ``ln L_hat - ln L`` with a quasi-Newton method (BFGS), started from the best
points of a grid of initialisations (Hoffmann et al. 2022, Appendix D.2; Besiroglu et
al. 2024, "Chinchilla Scaling: A replication attempt"). Parameter vectors ``theta`` are
``(e, a_1..a_k, alpha_1..alpha_k)``.

Internally the log-axes are centred (``ln X_j - mean``), which leaves the optimum
unchanged but makes the problem far better conditioned for the optimiser; results are
returned in the raw parametrisation above.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

from search.errors import ModelFittingError, NotEnoughDataError

HUBER_DELTA = 1e-3
# Grid of initialisations (centred parametrisation): e and a_j relative to ln(min loss),
# exponents over the range seen in published language-model laws.
_E_FRACTIONS = (0.05, 0.3, 0.6, 0.85, 0.97)
_TERM_OFFSETS = (-4.0, -2.5, -1.2, -0.4, 0.2)
_EXPONENTS = (0.05, 0.2, 0.4, 0.8, 1.5)


def _terms(theta: np.ndarray, log_x: np.ndarray) -> np.ndarray:
    """``(..., n, k + 1)`` log-terms for ``theta`` of shape ``(..., p)``, ``log_x`` (n, k)."""
    k = log_x.shape[1]
    terms = np.empty((*theta.shape[:-1], log_x.shape[0], k + 1))
    terms[..., 0] = theta[..., :1]
    terms[..., 1:] = theta[..., None, 1 : 1 + k] - theta[..., None, 1 + k :] * log_x
    return terms


def _huber(residual: np.ndarray, delta: float) -> np.ndarray:
    absolute = np.abs(residual)
    return np.where(absolute <= delta, 0.5 * residual**2, delta * (absolute - 0.5 * delta))


def _objective(
    theta: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Mean Huber loss (divided by delta, so it reads as a mean |residual|) and gradient."""
    terms = _terms(theta, log_x)  # (n, k + 1)
    shifted = np.exp(terms - terms.max(axis=-1, keepdims=True))
    total = shifted.sum(axis=-1)
    log_pred = np.log(total) + terms.max(axis=-1)
    weights = shifted / total[:, None]  # d log_pred / d term
    residual = log_pred - log_loss
    psi = np.clip(residual, -delta, delta) / delta  # d huber / d residual, scaled
    n = len(log_loss)
    grad_terms = (psi[:, None] * weights) / n  # (n, k + 1)
    grad = np.concatenate(
        [
            grad_terms.sum(axis=0),  # e, a_1..a_k
            -(grad_terms[:, 1:] * log_x).sum(axis=0),  # alpha_1..alpha_k
        ]
    )
    return float(_huber(residual, delta).mean() / delta), grad


def _grid(k: int, log_loss_min: float) -> np.ndarray:
    """``(g, 1 + 2k)`` initial thetas in the centred parametrisation."""
    es = [log_loss_min + math.log(f) for f in _E_FRACTIONS]
    terms = [log_loss_min + o for o in _TERM_OFFSETS]
    rows = [
        (e, *a, *alpha)
        for e in es
        for a in itertools.product(terms, repeat=k)
        for alpha in itertools.product(_EXPONENTS, repeat=k)
    ]
    return np.array(rows)


def _grid_objective(grid: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float):
    residual = logsumexp(_terms(grid, log_x), axis=-1) - log_loss  # (g, n)
    return _huber(residual, delta).mean(axis=-1)


def _quasi_newton(theta0: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float):
    """One local fit from ``theta0``: (theta, objective).

    NOTE: BFGS rather than the papers' L-BFGS. With at most five parameters the limited
    memory of L-BFGS buys nothing, and scipy's L-BFGS-B calls threaded BLAS on every
    iteration, which made each fit 10x slower on a busy 2-core machine.
    """
    result = minimize(
        _objective,
        theta0,
        args=(log_x, log_loss, delta),
        jac=True,
        method="BFGS",
        options={"maxiter": 2000, "gtol": 1e-8},
    )
    return result.x, float(result.fun)


def _to_raw(theta_centred: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``a_j = a_j_centred + alpha_j * mean(ln X_j)``; e and alpha unchanged."""
    k = len(centre)
    theta = np.array(theta_centred, dtype=float)
    theta[..., 1 : 1 + k] += theta[..., 1 + k :] * centre
    return theta


def check_lse_inputs(log_x: np.ndarray, loss: np.ndarray, *, points_per_param: int = 3) -> None:
    n, k = log_x.shape
    if loss.shape != (n,):
        raise ValueError(f"loss must have shape ({n},), got {loss.shape}")
    if not (np.all(np.isfinite(log_x)) and np.all(np.isfinite(loss)) and np.all(loss > 0)):
        raise NotEnoughDataError("axes and losses must be finite and positive")
    needed = points_per_param * (2 * k + 1)
    if n < needed:
        raise NotEnoughDataError(
            f"{n} point{'' if n == 1 else 's'} cannot support a {2 * k + 1}-parameter law; "
            f"need at least {needed}"
        )


def fit_lse(
    log_x: np.ndarray,
    loss: np.ndarray,
    *,
    seed: int = 0,
    n_bootstrap: int = 200,
    n_starts: int = 20,
    delta: float = HUBER_DELTA,
    points_per_param: int = 3,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``ln L = LSE(e, a_j - alpha_j ln X_j)``: the best theta ``(p,)`` and the
    bootstrap thetas ``(n_bootstrap, p)``, both in the raw parametrisation.

    ``groups`` (n,), when given, labels points whose errors are shared (the runs of
    one sweep cell, corrected by one local fit): the bootstrap then redraws each
    group's effect on a fixed design (``cell_effect_draws``) instead of resampling
    points.

    ``log_x`` is ``(n, k)`` natural logs of the axes, ``loss`` ``(n,)`` positive.
    The point fit runs BFGS from the ``n_starts`` best grid points; each bootstrap
    resample refits from the point fit (the resample's optimum lies close to it).
    """
    log_x = np.asarray(log_x, dtype=float)
    loss = np.asarray(loss, dtype=float)
    check_lse_inputs(log_x, loss, points_per_param=points_per_param)
    centre = log_x.mean(axis=0)
    log_x_centred = log_x - centre
    log_loss = np.log(loss)
    grid = _grid(log_x.shape[1], float(log_loss.min()))
    best_grid = grid[np.argsort(_grid_objective(grid, log_x_centred, log_loss, delta))]
    fits = [_quasi_newton(t, log_x_centred, log_loss, delta) for t in best_grid[:n_starts]]
    theta_hat, objective = min(fits, key=lambda fit: fit[1])
    if not (np.all(np.isfinite(theta_hat)) and math.isfinite(objective)):
        raise ModelFittingError("the power-law fit did not converge from any start")
    rng = np.random.default_rng(seed)
    if groups is not None:
        draws = cell_effect_draws(theta_hat, log_x_centred, log_loss, groups)
        boot = [
            _quasi_newton(theta_hat, log_x_centred, draws(rng), delta)[0]
            for _ in range(n_bootstrap)
        ]
        return _to_raw(theta_hat, centre), _to_raw(_rows(boot, theta_hat), centre)
    boot = []
    for _ in range(n_bootstrap):
        rows = rng.integers(0, len(loss), size=len(loss))
        boot.append(_quasi_newton(theta_hat, log_x_centred[rows], log_loss[rows], delta)[0])
    return _to_raw(theta_hat, centre), _to_raw(_rows(boot, theta_hat), centre)


def refit_lse(
    theta: np.ndarray,
    centre: np.ndarray,
    draw: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    n_draws: int,
    delta: float = HUBER_DELTA,
) -> np.ndarray:
    """``n_draws`` refits (raw thetas, (b, p)) of a fitted ``theta`` (raw) to points that
    ``draw(rng)`` gives as ``(log_x, loss)``, each from ``theta`` as ``fit_lse``'s
    bootstrap does; ``centre`` (k,) is where the log-axes are centred for the optimiser
    (any value near the points' mean)."""
    rng = np.random.default_rng(seed)
    start = np.array(theta, dtype=float)
    k = len(centre)
    start[1 : 1 + k] -= start[1 + k :] * centre  # raw -> centred (inverse of _to_raw)
    refits = []
    for _ in range(n_draws):
        log_x, loss = draw(rng)
        refits.append(_quasi_newton(start, log_x - centre, np.log(loss), delta)[0])
    return _to_raw(_rows(refits, start), centre)


def _rows(boot: list[np.ndarray], theta: np.ndarray) -> np.ndarray:
    """The bootstrap thetas as a ``(b, p)`` array, ``(0, p)`` when there are none."""
    return np.array(boot, dtype=float).reshape(-1, len(theta))


def cell_effect_draws(theta: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, groups):
    """A sampler of bootstrap log-losses (n,) for runs in ``groups`` (cells of a sweep),
    the design kept fixed: the fit's ``ln L`` at every run plus one fresh effect per
    cell, ``N(0, lam * s_k^2)``.

    ``s_k^2`` is the variance of cell k's level from its own runs (the variance of a
    median, ``pi / 2 * MAD^2 / n_k``: with a small ``delta`` the Huber fit reads a
    cell's level as its runs' median). ``lam`` (at least 1) is how much more the cells
    scatter around the law than that: ``sum(m_k^2 / s_k^2) / (K - p)`` over the cells'
    median residuals ``m_k``, with ``K - p`` degrees of freedom for the ``p`` fitted
    parameters (a Birge ratio; the cells' levels share the corrections of their local
    fits, which the runs' spread does not show).

    Why not resample whole cells: a sweep's cells are a fixed design of (N, D), and a
    resample that repeats some cells and drops others changes it; with ten cells and
    five parameters many resamples lose the cells that identify an exponent, and their
    wild fits made the intervals several times wider than the errors. Why not flip each
    cell's residual (a wild bootstrap): it came out too narrow on 17-cell sweeps; the
    Huber fit can pass through the cells that carry most weight, whose residuals are
    then near 0 and flip to nothing (docs/scaling-rules.md, "Intervals of a sweep").
    """
    fitted = np.log(predict_lse(theta, log_x))
    residual = log_loss - fitted
    _, cell = np.unique(groups, return_inverse=True)
    n_cells = int(cell.max()) + 1
    level = np.array([np.median(residual[cell == k]) for k in range(n_cells)])
    spread = np.array(
        [1.4826 * np.median(np.abs(residual[cell == k] - level[k])) for k in range(n_cells)]
    )
    variance = np.maximum(0.5 * np.pi * spread**2 / np.bincount(cell), 1e-12)
    dof = max(n_cells - theta.shape[-1], 1)
    scale = np.sqrt(max(1.0, float(np.sum(level**2 / variance)) / dof) * variance)

    def draw(rng: np.random.Generator) -> np.ndarray:
        return fitted + (scale * rng.standard_normal(n_cells))[cell]

    return draw


def predict_lse(theta: np.ndarray, log_x: np.ndarray) -> np.ndarray:
    """Loss at ``log_x`` (m, k) for ``theta`` (p,) or (b, p): ``(m,)`` or ``(b, m)``."""
    return np.exp(logsumexp(_terms(np.asarray(theta), np.asarray(log_x, dtype=float)), axis=-1))
