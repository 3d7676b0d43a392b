"""Probability that a configuration fails (out of memory, divergence, NaN loss).

A kernel classifier (Nadaraya-Watson with a Beta-like prior) on the failed indicators
in internal space: the prior failure rate carries ``prior_weight`` pseudo-observations,
and every trial adds its Gaussian-kernel weight at the query point. Far from any trial
the prediction returns to the prior; next to a cluster of failures it approaches 1.
It needs no fit, so it costs one kernel matrix per query batch.
"""

from __future__ import annotations

import numpy as np


class FailureModel:
    """``probability_of_failure(x_query)`` from the trials seen so far."""

    def __init__(
        self,
        x_internal: np.ndarray,
        failed: np.ndarray,
        *,
        prior: float,
        bandwidth: float,
        prior_weight: float = 1.0,
    ) -> None:
        self.x_internal = np.asarray(x_internal, dtype=float)
        self.failed = np.asarray(failed, dtype=float)
        self.prior = prior
        self.bandwidth = bandwidth
        self.prior_weight = prior_weight

    def probability_of_failure(self, x_query: np.ndarray) -> np.ndarray:
        """(q,) probabilities in (0, 1)."""
        x_query = np.atleast_2d(x_query)
        if self.x_internal.shape[0] == 0:
            return np.full(x_query.shape[0], self.prior)
        a = self.x_internal / self.bandwidth
        b = x_query / self.bandwidth
        sq = (b * b).sum(1)[:, None] + (a * a).sum(1)[None, :] - 2.0 * b @ a.T  # (q, n)
        weights = np.exp(-0.5 * np.maximum(sq, 0.0))
        numerator = self.prior_weight * self.prior + weights @ self.failed
        return numerator / (self.prior_weight + weights.sum(1))
