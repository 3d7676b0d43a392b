"""Candidate configurations, as rows of internal coordinates.

Three samplers: ``startup_points`` (uniform in the box of half-width ``radius`` around
the center, for the random phase), ``perturb`` (moves around given base points, for
the model phase) and ``trend_points`` (the front's trend of each coordinate against log
cost, extrapolated to target costs: hyperparameters scale smoothly along the front, so
the next, costlier front point is most likely where the trend leads). All draw from
the caller's ``numpy.random.Generator`` only, clip to the space's internal bounds and
leave the snapping onto ints / powers of two / choices to
``SearchSpace.project_internal``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.space import SearchSpace

# A move changes each choice parameter with this probability.
_CHOICE_FLIP_PROBABILITY = 0.15
# Fraction of moves that change only one or two coordinates: axis moves find ridges
# (such as "more tokens, same model") that full-dimensional noise rarely hits.
_SPARSE_MOVE_FRACTION = 0.4
# The trend needs this many front points spanning this much log cost (a factor of e^1).
TREND_MIN_POINTS = 4
TREND_MIN_SPAN = 1.0
# Ridge on the trend's slopes (in log cost squared, divided by the number of front
# points): shrinks the slopes of a short front towards "the same configuration".
_TREND_RIDGE = 0.25
# Trend points scatter around the trend line by up to this fraction of the trust radius
# (0.12 measured a little better on the fair bench, 0.084 against 0.090 over 12 seeds,
# but moved the issue-3 engine study's learning-rate interval off the truth).
_TREND_JITTER = 0.25


@dataclass(frozen=True)
class SpaceLayout:
    """What the samplers need to know of a space, as arrays."""

    lower: np.ndarray  # (d,)
    upper: np.ndarray  # (d,)
    continuous_mask: np.ndarray  # (d,) bool
    choice_blocks: tuple[slice, ...]

    @classmethod
    def of(cls, space: SearchSpace) -> SpaceLayout:
        lower, upper = space.internal_bounds()
        return cls(lower, upper, space.continuous_mask, tuple(space.choice_blocks))

    @property
    def dim(self) -> int:
        return int(self.lower.shape[0])

    def clip(self, x_internal: np.ndarray) -> np.ndarray:
        return np.clip(x_internal, self.lower, self.upper)


def startup_points(
    n: int, *, layout: SpaceLayout, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """(n, d) points uniform within ``radius`` of the center per coordinate."""
    x = np.zeros((n, layout.dim))
    cont = layout.continuous_mask
    x[:, cont] = rng.uniform(-radius, radius, size=(n, int(cont.sum())))
    for block in layout.choice_blocks:
        width = block.stop - block.start
        x[np.arange(n), block.start + rng.integers(width, size=n)] = 1.0
    return layout.clip(x)


def perturb(
    base_x: np.ndarray, *, layout: SpaceLayout, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """One move per row of ``base_x`` (n, d): Gaussian steps of random length up to
    ``radius`` per coordinate (all coordinates, or one or two of them), plus occasional
    switches of a choice."""
    n = int(base_x.shape[0])
    cont = np.flatnonzero(layout.continuous_mask)
    step_scale = radius * np.exp(rng.uniform(np.log(0.05), 0.0, size=(n, 1)))
    steps = rng.normal(size=(n, cont.size)) * step_scale
    sparse = rng.random(n) < _SPARSE_MOVE_FRACTION
    if cont.size > 2 and sparse.any():
        keep = np.zeros((int(sparse.sum()), cont.size), dtype=bool)
        for row, n_moved in zip(keep, rng.integers(1, 3, size=keep.shape[0]), strict=True):
            row[rng.choice(cont.size, size=n_moved, replace=False)] = True
        steps[sparse] *= keep * 2.0  # sparse moves go further along their few axes
    x = np.array(base_x, dtype=float)
    x[:, cont] += steps
    for block in layout.choice_blocks:
        flip = rng.random(n) < _CHOICE_FLIP_PROBABILITY
        width = block.stop - block.start
        x[flip, block] = 0.0
        x[np.flatnonzero(flip), block.start + rng.integers(width, size=int(flip.sum()))] = 1.0
    return layout.clip(x)


@dataclass(frozen=True)
class FrontTrend:
    """Weighted linear fit ``x = intercept + slope * (log_cost - log_cost_mean)`` of each
    internal coordinate over the front (choice coordinates included; they are snapped
    later)."""

    log_cost_mean: float
    intercept: np.ndarray  # (d,)
    slope: np.ndarray  # (d,) internal units per unit of log cost

    @classmethod
    def fit(cls, front_x: np.ndarray, front_log_cost: np.ndarray) -> FrontTrend | None:
        """The trend of ``front_x`` (m, d) against ``front_log_cost`` (m,), or None if the
        front is too short. Weights grow with cost rank (the upper half counts most, as
        that is where the trend is extrapolated from); slopes are ridge-shrunk."""
        m = front_log_cost.size
        span = float(front_log_cost.max() - front_log_cost.min()) if m else 0.0
        if m < TREND_MIN_POINTS or span < TREND_MIN_SPAN:
            return None
        rank = np.argsort(np.argsort(front_log_cost, kind="stable"), kind="stable")
        weights = 0.25 + rank / (m - 1)
        weights = weights / weights.sum()
        center = float(weights @ front_log_cost)
        dev = front_log_cost - center
        spread = float(weights @ dev**2)
        x_mean = weights @ front_x
        slope = (weights * dev) @ (front_x - x_mean) / (spread + _TREND_RIDGE / m)
        return cls(center, x_mean, slope)

    def at(self, log_cost: np.ndarray) -> np.ndarray:
        """(n, d) points on the trend line at ``log_cost`` (n,)."""
        return self.intercept + np.outer(log_cost - self.log_cost_mean, self.slope)


def trend_points(
    trend: FrontTrend,
    target_log_cost: np.ndarray,
    *,
    layout: SpaceLayout,
    radius: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, d) points on the trend at ``target_log_cost`` (n,), scattered by Gaussian steps
    of up to ``_TREND_JITTER * radius`` on the continuous coordinates."""
    x = trend.at(target_log_cost)
    cont = np.flatnonzero(layout.continuous_mask)
    n = x.shape[0]
    step_scale = _TREND_JITTER * radius * rng.uniform(0.0, 1.0, size=(n, 1))
    x[:, cont] += rng.normal(size=(n, cont.size)) * step_scale
    return layout.clip(x)
