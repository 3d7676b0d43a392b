"""A model of the Pareto surface: the best reachable loss as a function of log cost.

Mean: a saturating power law in cost, ``L(c) = E + A * c**-a`` written in log cost as
``E + A * exp(-a * (log_cost - log_cost_ref))`` with ``A, a > 0``, so it decreases
monotonically and extrapolates to larger costs the way scaling laws do (towards an
irreducible loss ``E``). A small 1-D GP on the residuals lets the surface pass through
the (smoothed) front inside the observed range and fall back to the power law beyond it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cho_solve, cholesky
from scipy.optimize import least_squares

# Exponent of the power law when the front has too few points to fit one; Chinchilla-
# style loss-vs-compute exponents are of this order.
_DEFAULT_EXPONENT = 0.3
_EXPONENT_BOUNDS = (0.02, 3.0)


class ParetoSurface:
    """``loss_at(log_cost)``: the loss a new trial must beat at that cost."""

    def __init__(self, front_log_cost: np.ndarray, front_loss: np.ndarray) -> None:
        order = np.argsort(front_log_cost, kind="stable")
        self.log_cost = np.asarray(front_log_cost, dtype=float)[order]
        self.loss = np.asarray(front_loss, dtype=float)[order]
        if self.log_cost.size == 0:
            raise ValueError("a Pareto surface needs at least one front point")
        self.log_cost_ref = float(self.log_cost[0])
        self.floor, self.amplitude, self.exponent = _fit_power_law(
            self.log_cost - self.log_cost_ref, self.loss
        )
        self._fit_residuals()

    def power_law(self, log_cost: np.ndarray) -> np.ndarray:
        shifted = np.asarray(log_cost, dtype=float) - self.log_cost_ref
        return self.floor + self.amplitude * np.exp(-self.exponent * shifted)

    def loss_at(self, log_cost: np.ndarray) -> np.ndarray:
        """Surface loss at each log cost (same shape)."""
        log_cost = np.asarray(log_cost, dtype=float)
        return self.power_law(log_cost) + self._residual_mean(log_cost.reshape(-1)).reshape(
            log_cost.shape
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "floor": self.floor,
            "amplitude": self.amplitude,
            "exponent": self.exponent,
            "log_cost_ref": self.log_cost_ref,
        }

    def _fit_residuals(self) -> None:
        residual = self.loss - self.power_law(self.log_cost)
        span = float(self.log_cost[-1] - self.log_cost[0])
        self._lengthscale = max(0.5, span / 6.0)
        self._variance = max(float(np.mean(residual**2)), 1e-12)
        gram = self._kernel(self.log_cost, self.log_cost)
        gram[np.diag_indices_from(gram)] += 0.05 * self._variance
        self._alpha = cho_solve((cholesky(gram, lower=True), True), residual)

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._variance * np.exp(-0.5 * ((a[:, None] - b[None, :]) / self._lengthscale) ** 2)

    def _residual_mean(self, log_cost: np.ndarray) -> np.ndarray:
        return self._kernel(log_cost, self.log_cost) @ self._alpha


def _fit_power_law(shifted: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """(floor E, amplitude A, exponent a) by least squares; robust to 1 or 2 points."""
    spread = float(loss.max() - loss.min())
    if shifted.size == 1 or spread <= 0:
        return float(loss.min()), 0.0, _DEFAULT_EXPONENT
    if shifted.size == 2:
        decay = 1.0 - math.exp(-_DEFAULT_EXPONENT * float(shifted[1]))
        amplitude = spread / max(decay, 1e-9)
        return float(loss[0] - amplitude), amplitude, _DEFAULT_EXPONENT

    def residuals(theta: np.ndarray) -> np.ndarray:
        floor, log_amplitude, exponent = theta
        return floor + np.exp(log_amplitude - exponent * shifted) - loss

    start = np.array([loss.min() - 0.5 * spread, math.log(1.5 * spread), _DEFAULT_EXPONENT])
    lower = [-np.inf, -np.inf, _EXPONENT_BOUNDS[0]]
    upper = [float(loss.min()), np.inf, _EXPONENT_BOUNDS[1]]
    start[0] = min(start[0], upper[0] - 1e-9)
    fit = least_squares(residuals, start, bounds=(lower, upper), method="trf")
    floor, log_amplitude, exponent = fit.x
    return float(floor), float(math.exp(log_amplitude)), float(exponent)
