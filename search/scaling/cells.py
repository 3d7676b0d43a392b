"""Optima of a designed sweep: one local bowl per (N, D) cell.

Most teams tune, and published sweeps are laid out, as cells: a few (N, D) pairs, each
with a grid of learning rates, batch sizes and so on. There the natural estimate of a
cell's optimum is the bottom of that cell's own loss surface, which knows nothing of
how loss or bowl width change from cell to cell:

    ln L = c + h'b + h'Q h / 2        (over the runs of one cell)

with ``h`` the hyperparameters swept in the cell, in their natural spaces (``ln lr``,
``log2 batch``, ...). As in the study-wide surface (``search.scaling.surface``), runs
far up the bowl's walls are down-weighted ``1 / (1 + (excess / BOWL_SCALE)^2)`` by the
log-loss they lose to the cell's optimum (starting from their loss above the cell's
best run), in ``1 + REWEIGHT_PASSES`` fits; a run whose loss lies more than
``WALL_CUTOFF`` (10%) above the bowl's bottom gets no weight. The optimum's
uncertainty comes from resampling the cell's runs. A cell whose optimum of a
hyperparameter lies beyond the second-lowest or second-highest value its successful
runs tried does not bracket it and gives that hyperparameter no point: failed
(diverged) runs are no observations of the loss, so they cannot pull the optimum, and
since they lie beyond the last successful learning rate they bound it.

A learning rate's loss climbs faster towards divergence than below its optimum, and a
quadratic fitted to such a bowl puts its vertex on the gentle side. When the sweep's
cells together fit better with a hyperparameter warped (``sweep_warp``; a power of the
learning rate, one for the sweep: ``search.scaling.warp``), every cell's bowl is a
quadratic in the warped values, and its optimum maps back.

The laws are then fitted through the cell optima, weighted by their precision
(``search.scaling.laws.fit_law_to_estimates``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.scaling.surface import BOWL_SCALE, REWEIGHT_PASSES
from search.scaling.warp import Warp, choose_warp

MIN_CELLS = 3
# A hyperparameter is swept in a cell when the cell tried at least this many values.
MIN_VALUES = 3
# Runs per local-quadratic coefficient a cell needs.
MIN_RUNS_PER_COEF = 1.5
# A sweep: qualifying cells hold at least this share of the successful runs.
MIN_SHARE_IN_CELLS = 0.5
# Bootstrap draws of a cell that may fail (bowl not convex) before the cell is dropped.
MAX_FAILED_DRAWS = 0.5
# Runs losing more log-loss than this to the cell's optimum get no weight (see
# _bowl_weights): 10% of the loss, a learning rate about a decade off on the testbed.
WALL_CUTOFF = 0.1
_KEY_DECIMALS = 4  # ln N and ln D equal to 1e-4 (0.01%) are one cell


@dataclass(frozen=True)
class CellOptima:
    """Per-cell optima of the swept hyperparameters.

    ``columns``: the columns of the caller's ``hp`` that are swept (and estimated);
    ``log_axes`` (K, 2) each cell's ``ln N, ln D``; ``optimum`` (K, m) in transformed
    units, NaN where the cell does not bracket it; ``variance`` (K, m) from the
    bootstrap; ``runs`` the row indices of each cell; ``excess`` (n,) the log-loss each
    run loses to its cell's optimum (NaN outside the cells and for runs the cell's bowl
    gives no weight); ``dropped`` the number of
    cells whose bowl was not convex.
    """

    columns: list[int]
    log_axes: np.ndarray
    optimum: np.ndarray
    variance: np.ndarray
    runs: list[np.ndarray]
    excess: np.ndarray
    dropped: int


def _n_coef(m: int) -> int:
    return 1 + m + m * (m + 1) // 2


def group_cells(log_axes: np.ndarray) -> list[np.ndarray]:
    """Row indices (n,) grouped by equal ``(ln N, ln D)``."""
    keys = np.round(log_axes, _KEY_DECIMALS)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    return [np.flatnonzero(inverse.ravel() == c) for c in range(inverse.max() + 1)]


def _swept(values: np.ndarray) -> bool:
    return len(np.unique(np.round(values, 9))) >= MIN_VALUES


def sweep_layout(log_axes: np.ndarray, hp: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
    """The cells of a designed sweep and the swept columns of ``hp``, or ``([], [])``
    when the runs are not laid out as one (too few cells with enough runs)."""
    groups = [g for g in group_cells(log_axes) if len(g) >= MIN_VALUES]
    if len(groups) < MIN_CELLS:
        return [], []
    m = hp.shape[1]
    swept_in = np.array([[_swept(hp[g, j]) for j in range(m)] for g in groups]).reshape(-1, m)
    columns = [j for j in range(m) if swept_in[:, j].mean() >= 0.5]
    if not columns:
        return [], []
    needed = MIN_RUNS_PER_COEF * _n_coef(len(columns))
    cells = [
        g
        for g, row in zip(groups, swept_in, strict=True)
        if len(g) >= needed and row[columns].all()
    ]
    if len(cells) < MIN_CELLS or sum(map(len, cells)) < MIN_SHARE_IN_CELLS * len(hp):
        return [], []
    return cells, columns


def _pairs(m: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(m) for j in range(i, m)]


def _quadratic_design(h: np.ndarray) -> np.ndarray:
    m = h.shape[1]
    return np.column_stack([np.ones(len(h)), h, *[h[:, i] * h[:, j] for i, j in _pairs(m)]])


@dataclass(frozen=True)
class _Bowl:
    """A cell's fitted log-loss in standardised ``h``: ``c + b'h + h'Q h / 2``."""

    c: float
    b: np.ndarray
    q: np.ndarray

    def value(self, h: np.ndarray) -> np.ndarray:
        return self.c + h @ self.b + 0.5 * np.einsum("ni,ij,nj->n", h, self.q, h)

    def minimum(self) -> np.ndarray | None:
        """The bowl's vertex, or None where it is not convex."""
        if np.linalg.eigvalsh(self.q).min() <= 0:
            return None
        return -np.linalg.solve(self.q, self.b)


def _fit_bowl(h: np.ndarray, y: np.ndarray, weights: np.ndarray):
    """Weighted least squares of ``_Bowl`` in standardised ``h``: (optimum, bowl), or
    None without a bottom."""
    m = h.shape[1]
    root = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(_quadratic_design(h) * root[:, None], y * root, rcond=None)
    q = np.zeros((m, m))
    for (i, j), c in zip(_pairs(m), coef[1 + m :], strict=True):
        q[i, j] = q[j, i] = 2.0 * c if i == j else c
    bowl = _Bowl(float(coef[0]), coef[1 : 1 + m], q)
    optimum = bowl.minimum()
    return None if optimum is None else (optimum, bowl)


def cell_optimum(h: np.ndarray, y: np.ndarray):
    """One cell's optimum ``h*`` (m,) and each run's excess log-loss (n,; NaN for runs
    the bowl gives no weight), or None (see the module docstring for the weighting)."""
    z, mean, scale = _standardised(h)
    fit = _reweighted_bowl(z, y)
    if fit is None:
        return None
    optimum, excess, weights = fit
    # Runs the bowl gave no weight (far above its bottom) have no trustworthy excess.
    return optimum * scale + mean, np.where(weights > 0, excess, np.nan)


def _standardised(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, scale = h.mean(axis=0), h.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (h - mean) / scale, mean, scale


def _reweighted_bowl(z: np.ndarray, y: np.ndarray):
    """The bowl fitted in ``1 + REWEIGHT_PASSES`` weighted fits: (optimum, each run's
    excess log-loss, the last weights), or None without a bottom."""
    weights = _bowl_weights(y - y.min(), y - y.min(), z.shape[1])
    for _ in range(1 + REWEIGHT_PASSES):
        fit = _fit_bowl(z, y, weights)
        if fit is None:
            return None
        optimum, bowl = fit
        bottom = float(bowl.value(optimum[None, :])[0])
        excess = bowl.value(z) - bottom
        weights = _bowl_weights(excess, y - bottom, z.shape[1])
    return optimum, excess, weights


def _weighted_residuals(z: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, int]:
    """Weighted residual sum of squares of a quadratic in ``z`` and its residual degrees
    of freedom."""
    used = weights > 0
    design, y, weights = _quadratic_design(z[used]), y[used], weights[used]
    root = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
    rss = float(np.sum(weights * (y - design @ coef) ** 2))
    return rss, int(used.sum()) - design.shape[1]


def sweep_warp(hp: np.ndarray, log_loss: np.ndarray, cells: list[np.ndarray]) -> Warp | None:
    """The sweep's warp (``search.scaling.warp.choose_warp``) from the cells' pooled
    residuals, each cell keeping the weights of its unwarped bowl so that every power is
    judged on the same runs; None where no column takes one."""
    fits = []
    for rows in cells:
        z, _, _ = _standardised(hp[rows])
        fit = _reweighted_bowl(z, log_loss[rows])
        if fit is not None:
            fits.append((rows, fit[2]))
    if not fits:
        return None

    def pooled(warp: Warp) -> tuple[float, int]:
        total, dof = 0.0, 0
        for rows, weights in fits:
            z, _, _ = _standardised(warp.apply(hp[rows]))
            rss, n = _weighted_residuals(z, log_loss[rows], weights)
            total, dof = total + rss, dof + n
        return total, dof

    return choose_warp(hp, pooled)


def _bowl_weights(excess: np.ndarray, above: np.ndarray, m: int) -> np.ndarray:
    """``1 / (1 + (excess / BOWL_SCALE)^2)`` by the fitted ``excess``, and 0 for runs
    whose observed log-loss lies more than ``WALL_CUTOFF`` ``above`` the bowl's bottom
    (or beyond the ``2 x coefficients`` lowest, when fewer lie within it): a grid's far
    corners (a learning rate a decade off, a diverging run reported with a huge loss)
    each keep a bounded but non-zero pull under the smooth weight alone, and a grid has
    many of them."""
    nearest = min(len(above), 2 * _n_coef(m))
    cutoff = max(WALL_CUTOFF, float(np.sort(above)[nearest - 1]))
    return np.where(above <= cutoff, 1.0 / (1.0 + (excess / BOWL_SCALE) ** 2), 0.0)


def _inner_range(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``h`` (n, m), the second-lowest and second-highest value tried: an
    optimum beyond them has at most one tried value on its far side, where the bowl's
    quadratic extrapolates (a grid whose smallest batch is already too large puts the
    fitted optimum just inside its edge)."""
    values = [np.unique(h[:, j]) for j in range(h.shape[1])]
    return np.array([v[1] for v in values]), np.array([v[-2] for v in values])


def _robust_variance(draws: np.ndarray) -> np.ndarray:
    """Variance (m,) of bootstrap draws (b, m) from their interquartile range: a few
    resamples with a nearly flat bowl would otherwise dominate it."""
    q25, q75 = np.percentile(draws, [25, 75], axis=0)
    return ((q75 - q25) / 1.349) ** 2


def estimate_cells(
    log_axes: np.ndarray,
    hp: np.ndarray,
    log_loss: np.ndarray,
    cells: list[np.ndarray],
    columns: list[int],
    *,
    n_bootstrap: int,
    seed: int,
) -> CellOptima:
    """Each cell's optimum of the ``columns`` of ``hp`` (transformed units) with its
    bootstrap variance; rows of ``log_axes``, ``hp``, ``log_loss`` are successful runs."""
    rng = np.random.default_rng(seed)
    swept = hp[:, columns]
    warp = sweep_warp(swept, log_loss, cells)
    if warp is not None:
        swept = warp.apply(swept)

    def optimum_of(rows: np.ndarray):
        fit = cell_optimum(swept[rows], log_loss[rows])
        return fit if fit is None or warp is None else (warp.invert(fit[0]), fit[1])

    kept, optima, variances = [], [], []
    excess = np.full(len(log_loss), np.nan)
    dropped = 0
    for rows in cells:
        h = hp[np.ix_(rows, np.asarray(columns))]
        point = optimum_of(rows)
        draws = []
        for _ in range(n_bootstrap):
            pick = rng.integers(0, len(rows), size=len(rows))
            if all(_swept(h[pick, j]) for j in range(h.shape[1])):
                fit = optimum_of(rows[pick])
                if fit is not None:
                    draws.append(fit[0])
        if point is None or len(draws) < (1.0 - MAX_FAILED_DRAWS) * n_bootstrap:
            dropped += 1
            continue
        optimum, lost = point
        low, high = _inner_range(h)
        inside = (optimum >= low) & (optimum <= high)
        kept.append(rows)
        optima.append(np.where(inside, optimum, np.nan))
        variances.append(_robust_variance(np.array(draws)))
        excess[rows] = lost
    m = len(columns)
    return CellOptima(
        columns=columns,
        log_axes=np.array([log_axes[rows[0]] for rows in kept]).reshape(-1, 2),
        optimum=np.array(optima).reshape(-1, m),
        variance=np.array(variances).reshape(-1, m),
        runs=kept,
        excess=excess,
        dropped=dropped,
    )
