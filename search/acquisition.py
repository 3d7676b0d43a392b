"""The cost-aware Pareto acquisition, on arrays.

Notation: ``mean``/``std`` (q,) are the loss GP's posterior at q candidates,
``threshold`` (q,) the Pareto surface's loss at each candidate's predicted log cost.
Scores are logs, so products of small factors never underflow to ties.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx, log_ndtr

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


def log_cost_window(log_cost: np.ndarray, *, target_log_cost: float, width: float) -> np.ndarray:
    """Log of a Gaussian weight that keeps a candidate near the target cost."""
    return -0.5 * ((np.asarray(log_cost, dtype=float) - target_log_cost) / width) ** 2


def pareto_score(
    *,
    mean: np.ndarray,
    std: np.ndarray,
    threshold: np.ndarray,
    probability_of_success: np.ndarray,
    predicted_log_cost: np.ndarray,
    target_log_cost: float,
    cost_width: float,
) -> np.ndarray:
    """log(EI below the Pareto surface) + log P(success) + log(cost-target weight)."""
    return (
        log_expected_improvement(mean, std, threshold)
        + np.log(np.maximum(probability_of_success, 1e-300))
        + log_cost_window(predicted_log_cost, target_log_cost=target_log_cost, width=cost_width)
    )
