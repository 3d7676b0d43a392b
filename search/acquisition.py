"""The cost-aware Pareto acquisition, on arrays.

Notation: ``mean``/``std`` (q,) are the loss posterior at q candidates, ``log_cost``
(q,) their predicted log costs. Two gains score a candidate (``search.proposals``
alternates them): the expected improvement below
the Pareto surface at its own cost (how much better than the front it may be, wherever
it lands), and the expected area it cuts from the front's staircase (how much of the
front it may improve: a candidate in a long gap between the front's costs improves every
cost up to the next point). Scores are logs, so products of small factors never
underflow to ties.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx, log_ndtr, logsumexp

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def log_expected_improvement(
    mean: np.ndarray, std: np.ndarray, threshold: np.ndarray
) -> np.ndarray:
    """log E[max(threshold - y, 0)] for y ~ N(mean, std^2) (a loss to minimise).

    ``EI = std * h(z)`` with ``z = (threshold - mean) / std`` and
    ``h(z) = phi(z) + z * Phi(z)``, evaluated stably in both tails.
    """
    std = np.maximum(np.asarray(std, dtype=float), 1e-12)
    z = (np.asarray(threshold, dtype=float) - np.asarray(mean, dtype=float)) / std
    return np.log(std) + _log_h(z)


def _log_h(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = np.log(np.exp(-0.5 * zu * zu - _LOG_SQRT_2PI) + zu * np.exp(log_ndtr(zu)))
    zl = z[~upper]
    # h(z) = phi(z) * (1 + z * Phi(z)/phi(z)), and Phi/phi = sqrt(pi/2) * erfcx(-z/sqrt2):
    # no cancellation for z <= -1 at this precision, and no underflow of phi itself.
    ratio = 1.0 + zl * math.sqrt(math.pi / 2.0) * erfcx(-zl / math.sqrt(2.0))
    out[~upper] = -0.5 * zl * zl - _LOG_SQRT_2PI + np.log(np.maximum(ratio, 1e-300))
    return out


def log_expected_front_improvement(
    *,
    mean: np.ndarray,
    std: np.ndarray,
    log_cost: np.ndarray,
    stair_log_cost: np.ndarray,
    stair_loss: np.ndarray,
    horizon: float,
    beyond_threshold: np.ndarray,
) -> np.ndarray:
    """log E[area of the front's staircase below which a candidate's loss would fall].

    The front (``stair_log_cost`` increasing, ``stair_loss`` decreasing, m >= 1 points)
    as a staircase in (log cost, loss): point k holds its loss from its log cost to the
    next point's, the costliest one for ``horizon`` beyond itself. A candidate at log
    cost c with loss y lowers every step at or after c that lies above y, so its
    expected gain is the sum over steps of the step's length from c on times EI(y below
    the step's loss). A candidate dearer than the costliest point gains ``horizon``
    times EI below ``beyond_threshold`` (q,) (the surface's extrapolation at its cost).
    """
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    log_cost = np.asarray(log_cost, dtype=float)
    starts = np.asarray(stair_log_cost, dtype=float)
    ends = np.append(starts[1:], starts[-1] + horizon)
    length = ends[None, :] - np.maximum(starts[None, :], log_cost[:, None])
    log_ei = log_expected_improvement(
        mean[:, None], std[:, None], np.broadcast_to(np.asarray(stair_loss, float), length.shape)
    )
    steps = np.where(length > 0, np.log(np.where(length > 0, length, 1.0)) + log_ei, -np.inf)
    beyond = log_cost > starts[-1]
    steps[beyond, 0] = 0.0  # every step lies below a dearer candidate; keep logsumexp finite
    inside = logsumexp(steps, axis=1)
    outside = math.log(horizon) + log_expected_improvement(mean, std, beyond_threshold)
    return np.where(beyond, outside, inside)


def log_cost_window(log_cost: np.ndarray, *, target_log_cost: float, width: float) -> np.ndarray:
    """Log of a Gaussian weight that keeps a candidate near the target cost."""
    return -0.5 * ((np.asarray(log_cost, dtype=float) - target_log_cost) / width) ** 2


def pareto_score(
    *,
    log_gain: np.ndarray,
    probability_of_success: np.ndarray,
    predicted_log_cost: np.ndarray,
    target_log_cost: float,
    cost_width: float,
) -> np.ndarray:
    """log(gain) + log P(success) + log(cost-target weight)."""
    return (
        np.asarray(log_gain, dtype=float)
        + np.log(np.maximum(probability_of_success, 1e-300))
        + log_cost_window(predicted_log_cost, target_log_cost=target_log_cost, width=cost_width)
    )
