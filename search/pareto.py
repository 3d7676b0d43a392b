"""The Pareto front of (loss, cost): both minimised.

Pure numpy. ``loss`` and ``cost`` are 1-D arrays of equal length ``n``; failed trials
are the caller's to exclude (their loss is NaN and is never on a front).
"""

from __future__ import annotations

import numpy as np


def pareto_mask(loss: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Boolean mask (n,) of the points no other point dominates.

    A point dominates another when it is no worse in both loss and cost and strictly
    better in one. Of exact duplicates only the first is kept, so the front has no ties.
    NaN losses are never on the front.
    """
    loss = np.asarray(loss, dtype=float)
    cost = np.asarray(cost, dtype=float)
    if loss.shape != cost.shape or loss.ndim != 1:
        raise ValueError(
            f"loss and cost must be 1-D of equal length, got {loss.shape}, {cost.shape}"
        )
    mask = np.zeros(loss.shape[0], dtype=bool)
    valid = np.flatnonzero(np.isfinite(loss) & np.isfinite(cost))
    # Sort by cost, then loss (stable): a point is on the front iff its loss is strictly
    # below every loss seen at lower-or-equal cost.
    order = valid[np.lexsort((loss[valid], cost[valid]))]
    best = np.inf
    for i in order:
        if loss[i] < best:
            mask[i] = True
            best = loss[i]
    return mask


def front_indices(loss: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the front, ordered by increasing cost (hence decreasing loss)."""
    idx = np.flatnonzero(pareto_mask(loss, cost))
    return idx[np.argsort(np.asarray(cost, dtype=float)[idx], kind="stable")]


def best_loss_within_cost(
    loss: np.ndarray, cost: np.ndarray, cost_limits: np.ndarray
) -> np.ndarray:
    """For each limit c, the lowest loss among points costing at most c (inf if none)."""
    loss = np.asarray(loss, dtype=float)
    cost = np.asarray(cost, dtype=float)
    limits = np.asarray(cost_limits, dtype=float)
    idx = front_indices(loss, cost)
    if idx.size == 0:
        return np.full(limits.shape, np.inf)
    front_cost, front_loss = cost[idx], loss[idx]
    # Number of front points affordable at each limit; the last affordable one is the best.
    n_affordable = np.searchsorted(front_cost, limits, side="right")
    padded = np.concatenate([[np.inf], front_loss])
    return padded[n_affordable]
