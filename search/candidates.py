"""Candidate configurations, as rows of internal coordinates.

Two samplers: ``startup_points`` (uniform in the box of half-width ``radius`` around
the center, for the random phase) and ``perturb`` (moves around given base points, for
the model phase). Both draw from the caller's ``numpy.random.Generator`` only, clip to
the space's internal bounds and leave the snapping onto ints / powers of two / choices
to ``SearchSpace.project_internal``.
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
    n = base_x.shape[0]
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
