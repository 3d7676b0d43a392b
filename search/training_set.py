"""Which observations a GP trains on: a bounded, informative subset.

An exact GP costs O(n^3) to fit, so past ``max_points`` observations the engine keeps
the ones that matter for the acquisition: the Pareto front and its neighbourhood in
internal space (where candidates are drawn), the best losses, the most recent trials
(the trust region's latest moves), and evenly spread others so the model still knows
the rough landscape. Deterministic: the same data gives the same subset.
"""

from __future__ import annotations

import numpy as np

_NEIGHBOURS = 64  # per anchor, at most


def select_training_indices(
    x_internal: np.ndarray,
    *,
    anchor_indices: np.ndarray,
    best_indices: np.ndarray,
    max_points: int,
) -> np.ndarray:
    """Sorted indices (at most ``max_points``) of the rows of ``x_internal`` to train on.

    ``anchor_indices`` are the points whose neighbourhoods matter most (the front);
    ``best_indices`` the points ranked best first (lowest loss, for instance). Rows are
    in arrival order, so the last rows are the most recent trials.
    """
    n = x_internal.shape[0]
    if n <= max_points:
        return np.arange(n)
    chosen: dict[int, None] = {}  # insertion-ordered set

    def take(indices: np.ndarray, quota: int) -> None:
        limit = len(chosen) + quota
        for i in indices:
            if len(chosen) >= min(limit, max_points):
                return
            chosen.setdefault(int(i), None)

    anchors = _evenly(np.asarray(anchor_indices, dtype=int), max_points // 4)
    take(anchors, max_points // 4)
    take(_neighbours_round_robin(x_internal, anchors), max_points // 4)
    take(np.asarray(best_indices, dtype=int), max_points // 8)
    take(np.arange(n - 1, -1, -1), max_points // 8)
    rest = np.setdiff1d(np.arange(n), np.fromiter(chosen, dtype=int))
    take(_evenly(rest, max_points - len(chosen)), max_points - len(chosen))
    return np.sort(np.fromiter(chosen, dtype=int))


def _evenly(indices: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` of ``indices``, evenly spaced along the array."""
    if indices.size <= k:
        return indices
    positions = np.linspace(0, indices.size - 1, k).round().astype(int)
    return indices[np.unique(positions)]


def _neighbours_round_robin(x_internal: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Every anchor's nearest neighbours interleaved: 1st of each, then 2nd of each..."""
    if anchors.size == 0:
        return anchors
    diff = x_internal[None, :, :] - x_internal[anchors][:, None, :]  # (a, n, d)
    sq = (diff * diff).sum(-1)  # (a, n)
    k = min(_NEIGHBOURS + 1, sq.shape[1])
    nearest = np.argpartition(sq, k - 1, axis=1)[:, :k]  # (a, k), unordered
    order = np.take_along_axis(
        nearest, np.argsort(np.take_along_axis(sq, nearest, 1), axis=1, kind="stable"), 1
    )
    return order[:, 1:].T.reshape(-1)
