"""Estimated optima along the compute-efficient set, with bootstrap draws.

A response surface (``search.scaling.surface``) fitted to every successful run gives
each hyperparameter's optimum ``h*(N, D)`` and the compute-optimal model size
``N*(C)`` (the minimum of the surface's profile along ``6 N D = C``, the iso-FLOP
curve, as in Hoffmann et al. 2022's approach 2, but read off one surface rather than
off separate parabolas). These are evaluated at *anchors*: the compute-efficient runs.
Each anchor contributes

- ``hp_path``: the optima at the anchor's compute, on the estimated compute-optimal
  allocation (what ``predict(compute=...)`` recommends);
- ``hp_own``: the optima at the anchor's own ``(N, D)`` (the law in ``ln N, ln D``);
- ``log_n_path``: ``ln N*`` at the anchor's compute.

The bootstrap resamples the runs, refits the surface (same structure, same
hyperparameters) and re-evaluates all three at the same anchors, so the laws fitted
through the optima inherit the uncertainty of the whole surface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from search.scaling.surface import ResponseSurface, Structure, SurfaceData, fit_surface

LN6 = float(np.log(6.0))
_GRID = 65
# Runs within this many decades of an anchor's compute bound the model sizes searched
# for its N*: the surface is trusted only where runs were made.
_NEIGHBOUR_DECADES = 0.5
_MIN_NEIGHBOURS = 5


@dataclass(frozen=True)
class Anchors:
    """Where optima are read: ``log_compute`` (P,) and, with N and D axes, ``log_axes``
    (P, 2); ``log_n_low``/``log_n_high`` (P,) bound the model sizes searched at each."""

    log_compute: np.ndarray
    log_axes: np.ndarray
    log_n_low: np.ndarray | None = None
    log_n_high: np.ndarray | None = None


@dataclass(frozen=True)
class Optima:
    """Optima at the anchors; every array has a leading bootstrap axis in ``*_draws``.

    ``hp_path`` and ``hp_own`` are (P, m) in transformed units; ``log_n_path`` (P,) or
    None without an allocation; ``choice_offsets`` (q,) the surface's log-loss change of
    each non-reference choice level; ``edge_fraction`` is the share of anchors whose ``N*``
    fell on the edge of the sizes searched (the data do not bracket the optimum).
    """

    hp_path: np.ndarray
    hp_own: np.ndarray
    log_n_path: np.ndarray | None
    hp_path_draws: np.ndarray
    hp_own_draws: np.ndarray
    log_n_path_draws: np.ndarray | None
    choice_offsets: np.ndarray
    edge_fraction: float
    n_rejected: int


def size_bounds(
    log_compute_runs: np.ndarray, log_n_runs: np.ndarray, log_compute: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Range of ``ln N`` over the runs near each compute in ``log_compute`` (P,)."""
    return local_range(log_compute_runs, log_n_runs[:, None], log_compute)


def outside_fraction(
    log_compute_runs: np.ndarray,
    hp_runs: np.ndarray,
    log_compute: np.ndarray,
    hp: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Share (m,) of the anchors (P,) whose optima ``hp`` (P, m) lie outside the range
    the runs near their compute explored (``hp_runs`` (n, m)): there the bottom of the
    bowl is extrapolated, not bracketed by runs.

    An optimum beyond one of the space's ``limits`` (low, high (m,) in the transformed
    space; infinite where there is none) does not count where the runs reached that
    limit: no run could go further, and the best feasible value is the limit itself.
    Where a small budget's optimal batch is under one sequence, the engine's runs there
    sit at the floor, and counting them refused batch laws that were within 1.2x at
    100x (docs/notes/engine-experiments.md)."""
    low, high = local_range(log_compute_runs, hp_runs, log_compute, decades=1.0)
    # local_range squeezes one column to (P,), which would broadcast against (P, 1).
    low, high = low.reshape(hp.shape), high.reshape(hp.shape)
    space_low, space_high = limits
    low = np.where(low <= space_low, -np.inf, low)
    high = np.where(high >= space_high, np.inf, high)
    return np.mean((hp < low) | (hp > high), axis=0)


def local_range(
    log_compute_runs: np.ndarray,
    values: np.ndarray,
    log_compute: np.ndarray,
    *,
    decades: float = _NEIGHBOUR_DECADES,
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``values`` (n, m) over the runs within ``decades`` of each compute
    in ``log_compute`` (P,) (at least ``_MIN_NEIGHBOURS`` runs): (P, m) each, squeezed to
    (P,) when m is 1."""
    lows: list[np.ndarray] = []
    highs: list[np.ndarray] = []
    width = decades * np.log(10.0)
    for log_c in log_compute:
        distance = np.abs(log_compute_runs - log_c)
        near = distance <= width
        if near.sum() < _MIN_NEIGHBOURS:
            near = distance <= np.sort(distance)[_MIN_NEIGHBOURS - 1]
        lows.append(values[near].min(axis=0))
        highs.append(values[near].max(axis=0))
    low, high = np.array(lows), np.array(highs)
    if values.shape[1] == 1:
        return low[:, 0], high[:, 0]
    return low, high


def optimal_log_n(
    surface: ResponseSurface, log_compute: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``ln N*`` (P,) minimising the surface's profile on ``6 N D = C`` within
    ``[low, high]``, refined by a parabola through the best grid point; also whether
    each minimum sits on the edge of its range (P,) bool."""
    t = np.linspace(0.0, 1.0, _GRID)
    grid = low[:, None] + (high - low)[:, None] * t  # (P, G)
    log_d = (log_compute - LN6)[:, None] - grid
    values = surface.profile(np.column_stack([grid.ravel(), log_d.ravel()])).reshape(grid.shape)
    best = np.argmin(values, axis=1)
    edge = (best == 0) | (best == _GRID - 1)
    inner = np.clip(best, 1, _GRID - 2)
    rows = np.arange(len(best))
    left, mid, right = (values[rows, inner + s] for s in (-1, 0, 1))
    denominator = left - 2.0 * mid + right
    curved = denominator > 0
    step = np.where(curved, 0.5 * (left - right) / np.where(curved, denominator, 1.0), 0.0)
    spacing = (high - low) / (_GRID - 1)
    refined = grid[rows, inner] + np.clip(step, -1.0, 1.0) * spacing
    return np.where(edge, grid[rows, best], refined), edge


def _evaluate(
    surface: ResponseSurface,
    anchors: Anchors,
    with_allocation: bool,
    log_n=None,
    fixed: Mapping[int, float] | None = None,
):
    """Optima at the anchors (given ``fixed``, ``ResponseSurface.optimum``); ``log_n``
    (P,), when given, is the allocation to follow."""
    hp_own = surface.optimum(anchors.log_axes, fixed)
    if not with_allocation:
        return hp_own, hp_own, None, np.zeros(len(hp_own), dtype=bool)
    edge = np.zeros(len(hp_own), dtype=bool)
    if log_n is None:
        assert anchors.log_n_low is not None and anchors.log_n_high is not None
        log_n, edge = optimal_log_n(
            surface, anchors.log_compute, anchors.log_n_low, anchors.log_n_high
        )
    path = np.column_stack([log_n, anchors.log_compute - LN6 - log_n])
    return surface.optimum(path, fixed), hp_own, log_n, edge


@dataclass(frozen=True)
class Resampled:
    """A surface fitted to the runs and its bootstrap refits (convex ones only;
    ``n_rejected`` were redrawn): the optima read off them, given any held values,
    share the same resamples."""

    surface: ResponseSurface
    draws: list[ResponseSurface]
    n_rejected: int


def resample_surfaces(
    data: SurfaceData, structure: Structure, *, n_bootstrap: int, seed: int
) -> Resampled:
    """The surface on ``data`` and ``n_bootstrap`` refits to resampled runs (resamples
    whose bowl is not convex are redrawn, at most ``10 n_bootstrap`` tries)."""
    rng = np.random.default_rng(seed)
    draws: list[ResponseSurface] = []
    rejected = 0
    n = len(data.log_loss)
    while len(draws) < n_bootstrap and rejected < 10 * n_bootstrap:
        resampled = fit_surface(data.rows(rng.integers(0, n, size=n)), structure)
        if not resampled.is_convex():
            rejected += 1
            continue
        draws.append(resampled)
    return Resampled(fit_surface(data, structure), draws, rejected)


def estimate_optima(
    surfaces: Resampled,
    anchors: Anchors,
    *,
    with_allocation: bool,
    path: tuple[np.ndarray, np.ndarray] | None = None,
    fixed: Mapping[int, float] | None = None,
) -> Optima:
    """Optima at ``anchors`` from ``surfaces`` (``resample_surfaces``): the point
    estimate from the surface on the runs, the draws from its resampled refits.

    ``path``, when given, is the allocation ``ln N*`` at the anchors (P,) with its own
    bootstrap draws (b, P) (from ``L(N, D)``); resample ``i`` follows draw ``i mod b``.
    Without it, each surface's own iso-FLOP minima are followed. ``fixed`` holds
    columns at given values (transformed units): the optima of the others given those.
    """
    surface = surfaces.surface
    point_path = None if path is None else path[0]
    hp_path, hp_own, log_n, edge = _evaluate(surface, anchors, with_allocation, point_path, fixed)
    draws = []
    for i, resampled in enumerate(surfaces.draws):
        draw_path = None if path is None else path[1][i % len(path[1])]
        draws.append(_evaluate(resampled, anchors, with_allocation, draw_path, fixed))
    # Every resample rejected leaves no draws: shaped (0, ...), so each law refuses.
    b = len(draws)
    return Optima(
        hp_path=hp_path,
        hp_own=hp_own,
        log_n_path=log_n,
        hp_path_draws=np.array([d[0] for d in draws]).reshape(b, *hp_path.shape),
        hp_own_draws=np.array([d[1] for d in draws]).reshape(b, *hp_own.shape),
        log_n_path_draws=None
        if log_n is None
        else np.array([d[2] for d in draws]).reshape(b, *log_n.shape),
        choice_offsets=surface.choice_offsets(),
        edge_fraction=float(edge.mean()),
        n_rejected=surfaces.n_rejected,
    )
