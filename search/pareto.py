"""The Pareto front of (loss, cost): both minimised.

Pure numpy. ``loss`` and ``cost`` are 1-D arrays of equal length ``n``; failed trials
are the caller's to exclude (their loss is NaN and is never on a front).

``group_repeats`` and ``estimated_front`` are the one definition of the front a user
sees (the engine's ``front()``, the API, CLI, dashboard, reports and export): repeated
measurements of a configuration count once, and the front is taken on an estimate of
each configuration's loss (the loss model's, where a caller has one; else the mean of
its measurements), so a lucky draw alone does not put a point on it.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def config_key(params: Mapping[str, Any]) -> str:
    """The key under which measurements of one configuration are grouped: its params as
    sorted JSON, integers written as floats (a stored ``10`` and an engine's ``10.0``
    are the same configuration)."""
    canonical = {
        name: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for name, v in params.items()
    }
    return json.dumps(canonical, sort_keys=True)


@dataclass(frozen=True)
class RepeatGroup:
    """The measurements of one configuration: ``members`` index the caller's arrays (in
    their order), ``cost`` and ``observed_loss`` are the means over them."""

    members: tuple[int, ...]
    cost: float
    observed_loss: float

    @property
    def n_measurements(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class FrontPoint(RepeatGroup):
    """A group on the front, with the loss estimate the front was taken on."""

    estimated_loss: float


def group_repeats(
    keys: Sequence[Hashable], loss: np.ndarray, cost: np.ndarray
) -> list[RepeatGroup]:
    """The successful measurements grouped by configuration (equal ``keys``, e.g. the
    parameters as sorted JSON), in order of first sight. A measurement whose loss or
    cost is not finite (a failed trial) belongs to no group."""
    loss = np.asarray(loss, dtype=float)
    cost = np.asarray(cost, dtype=float)
    if loss.shape != cost.shape or loss.ndim != 1 or len(keys) != loss.shape[0]:
        raise ValueError(
            f"keys, loss and cost must be 1-D of equal length, got {len(keys)}, "
            f"{loss.shape}, {cost.shape}"
        )
    members: dict[Hashable, list[int]] = {}
    for i in np.flatnonzero(np.isfinite(loss) & np.isfinite(cost)).tolist():
        members.setdefault(keys[i], []).append(i)
    return [
        RepeatGroup(
            members=tuple(idx),
            cost=float(np.mean(cost[idx])),
            observed_loss=float(np.mean(loss[idx])),
        )
        for idx in members.values()
    ]


def estimated_front(
    groups: Sequence[RepeatGroup], estimated_loss: np.ndarray | None = None
) -> list[FrontPoint]:
    """The groups no other group beats in both estimated loss and mean cost, by
    increasing cost. ``estimated_loss`` (one per group) defaults to the observed means;
    a group whose estimate is not finite is never on the front."""
    observed = np.array([g.observed_loss for g in groups], dtype=float)
    estimate = observed if estimated_loss is None else np.asarray(estimated_loss, dtype=float)
    if estimate.shape != observed.shape:
        raise ValueError(
            f"estimated_loss needs one value per group ({len(groups)}), got {estimate.shape}"
        )
    cost = np.array([g.cost for g in groups], dtype=float)
    return [
        FrontPoint(
            members=groups[i].members,
            cost=groups[i].cost,
            observed_loss=groups[i].observed_loss,
            estimated_loss=float(estimate[i]),
        )
        for i in front_indices(estimate, cost).tolist()
    ]
