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
cells together show a hyperparameter's bowl skewed (``sweep_skew``: a pooled test of a
cubic term), one skew, cubic and quartic about the optimum, is estimated from the cells
together (``sweep_shape``) and every cell's optimum is the bottom of its own quadratic
plus that skew.

The laws are then fitted through the cell optima, weighted by their precision
(``search.scaling.laws.fit_law_to_estimates``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from search.scaling.surface import BOWL_SCALE, REWEIGHT_PASSES

MIN_CELLS = 3
# A hyperparameter is swept in a cell when the cell tried at least this many values.
MIN_VALUES = 3
# Runs per local-quadratic coefficient a cell needs.
MIN_RUNS_PER_COEF = 1.5
# Values a column needs for the cell's bowl to take cubic and quartic terms in it.
MIN_SKEW_VALUES = 5
# Confidence at which the sweep's bowls take their skew (``sweep_skew``).
SKEW_LEVEL = 0.99
_NEWTON_STEPS = 50  # to a skewed bowl's bottom from its quadratic's vertex
_SHAPE_PASSES = 2  # refits of a cell's quadratic under the sweep's skew, about its optimum
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
    """A cell's fitted log-loss in standardised ``h``:
    ``c + b'h + h'Q h / 2 + sum_i (skew_i h_i^3 + flat_i h_i^4)``."""

    c: float
    b: np.ndarray
    q: np.ndarray
    skew: np.ndarray
    flat: np.ndarray

    def value(self, h: np.ndarray) -> np.ndarray:
        quadratic = self.c + h @ self.b + 0.5 * np.einsum("ni,ij,nj->n", h, self.q, h)
        return quadratic + h**3 @ self.skew + h**4 @ self.flat

    def minimum(self, h: np.ndarray) -> np.ndarray | None:
        """The bowl's bottom: the quadratic's vertex, moved by Newton's method to where the
        skewed bowl's gradient vanishes; None where it has no bottom inside the runs ``h``
        (the quadratic part not convex, or the skewed one's Hessian there not positive)."""
        if np.linalg.eigvalsh(self.q).min() <= 0:
            return None
        x = -np.linalg.solve(self.q, self.b)
        if not (self.skew.any() or self.flat.any()):
            return x
        reach = np.abs(h).max(axis=0)
        return _newton_bottom(self.b, self.q, self.skew, self.flat, np.zeros_like(x), x, reach)


def _newton_bottom(
    b: np.ndarray,
    q: np.ndarray,
    cubic: np.ndarray,
    quartic: np.ndarray,
    centre: np.ndarray,
    start: np.ndarray,
    reach: np.ndarray | tuple[np.ndarray, np.ndarray],
) -> np.ndarray | None:
    """The bottom of ``b'x + x'Q x / 2 + sum_i cubic_i d_i^3 + quartic_i d_i^4`` with
    ``d = x - centre``, by Newton's method from ``start``; None where the Hessian on the
    way is not positive or ``x`` leaves ``reach`` (``|x| <= reach``, or ``(low, high)``)."""
    low, high = reach if isinstance(reach, tuple) else (-reach, reach)
    x = start.copy()
    for _ in range(_NEWTON_STEPS):
        d = x - centre
        hessian = q + np.diag(6.0 * cubic * d + 12.0 * quartic * d**2)
        if np.linalg.eigvalsh(hessian).min() <= 0:
            return None
        gradient = b + q @ x + 3.0 * cubic * d**2 + 4.0 * quartic * d**3
        step = np.linalg.solve(hessian, gradient)
        x = x - step
        if np.any(x < low) or np.any(x > high):
            return None
        if np.abs(step).max() < 1e-10:
            return x
    return None


def _fit_bowl(h: np.ndarray, y: np.ndarray, weights: np.ndarray, *, skewed: np.ndarray):
    """Weighted least squares of ``_Bowl`` in standardised ``h``, with cubic and quartic
    terms in the columns ``skewed`` (m,) marks: (optimum, bowl), or None without a
    bottom."""
    m = h.shape[1]
    root = np.sqrt(weights)
    design = np.column_stack([_quadratic_design(h), h[:, skewed] ** 3, h[:, skewed] ** 4])
    coef, *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
    n_quadratic = _n_coef(m)
    q = np.zeros((m, m))
    for (i, j), c in zip(_pairs(m), coef[1 + m : n_quadratic], strict=True):
        q[i, j] = q[j, i] = 2.0 * c if i == j else c
    skew, flat = np.zeros(m), np.zeros(m)
    skew[skewed], flat[skewed] = coef[n_quadratic:].reshape(2, -1)
    bowl = _Bowl(float(coef[0]), coef[1 : 1 + m], q, skew, flat)
    optimum = bowl.minimum(h[weights > 0])
    return None if optimum is None else (optimum, bowl)


@dataclass(frozen=True)
class SkewShape:
    """The sweep's shared skew: per column, the cubic and quartic coefficients of the
    log-loss about a cell's optimum, in natural units (0 for a symmetric column)."""

    cubic: np.ndarray
    quartic: np.ndarray

    def offset(self, h: np.ndarray, at: np.ndarray) -> np.ndarray:
        d = h - at
        return d**3 @ self.cubic + d**4 @ self.quartic


def cell_optimum(h: np.ndarray, y: np.ndarray, shape: SkewShape | None = None):
    """One cell's optimum ``h*`` (m,) and each run's excess log-loss (n,; NaN for runs
    the bowl gives no weight), or None (see the module docstring for the weighting).
    With the sweep's ``shape`` (``sweep_shape``), the bowl is this cell's quadratic plus
    that skew about its optimum: the quadratic is fitted to the log-loss less the skew
    about the current optimum, the optimum moved to the bottom of both, twice; where that
    has no bottom among the runs, the symmetric bowl's."""
    z, mean, scale = _standardised(h)
    symmetric = np.zeros(h.shape[1], dtype=bool)
    fit = _reweighted_bowl(z, y, skewed=symmetric)
    if fit is None:
        return None
    optimum, excess, weights = fit
    if shape is not None:
        at = optimum * scale + mean
        for _ in range(_SHAPE_PASSES):
            offset = shape.offset(h, at)
            shaped = _reweighted_bowl(z, y - offset, skewed=symmetric)
            if shaped is None:
                break
            bowl = _fit_bowl(z, y - offset, shaped[2], skewed=symmetric)
            if bowl is None:
                break
            start, used = (at - mean) / scale, z[shaped[2] > 0]
            bottom = _newton_bottom(
                bowl[1].b,
                bowl[1].q,
                shape.cubic * scale**3,  # the shape in standardised units
                shape.quartic * scale**4,
                start,
                start,
                (used.min(axis=0), used.max(axis=0)),
            )
            if bottom is None:
                break
            lowest = bowl[1].value(bottom[None, :]) + shape.offset(
                (bottom * scale + mean)[None, :], at
            )
            excess = bowl[1].value(z) + offset - float(lowest[0])
            optimum, weights, at = bottom, shaped[2], bottom * scale + mean
    # Runs the bowl gave no weight (far above its bottom) have no trustworthy excess.
    return optimum * scale + mean, np.where(weights > 0, excess, np.nan)


def _standardised(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, scale = h.mean(axis=0), h.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (h - mean) / scale, mean, scale


def _reweighted_bowl(z: np.ndarray, y: np.ndarray, *, skewed: np.ndarray):
    """The bowl fitted in ``1 + REWEIGHT_PASSES`` weighted fits: (optimum, each run's
    excess log-loss, the last weights), or None without a bottom."""
    weights = _bowl_weights(y - y.min(), y - y.min(), z.shape[1])
    for _ in range(1 + REWEIGHT_PASSES):
        fit = _fit_bowl(z, y, weights, skewed=skewed)
        if fit is None:
            return None
        optimum, bowl = fit
        bottom = float(bowl.value(optimum[None, :])[0])
        excess = bowl.value(z) - bottom
        weights = _bowl_weights(excess, y - bottom, z.shape[1])
    return optimum, excess, weights


def _weighted_rss(design: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    root = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
    return float(np.sum(weights * (y - design @ coef) ** 2))


def _skew_evidence(
    z: np.ndarray, y: np.ndarray, optimum: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per column (m,), how much a cubic term in it improves the symmetric bowl's
    weighted fit (``(RSS_sym - RSS_cubic) / s^2``, about chi-squared with 1 degree of
    freedom when the bowl is symmetric: the test asks for asymmetry, which moves the
    optimum, not for a bowl flatter or sharper than a parabola on both sides, which does
    not), and whether this cell can identify the skewed bowl's terms: the
    runs the bowl weights try ``MIN_SKEW_VALUES`` values of it or more, bracket the
    symmetric optimum (beyond them a cubic only extrapolates) and number
    ``MIN_RUNS_PER_COEF`` per coefficient."""
    m = z.shape[1]
    used = weights > 0
    n = int(used.sum())
    zu, yu, wu = z[used], y[used], weights[used]
    quadratic = _quadratic_design(zu)
    evidence, identified = np.zeros(m), np.zeros(m, dtype=bool)
    if n < MIN_RUNS_PER_COEF * (quadratic.shape[1] + 2):
        return evidence, identified
    rss_symmetric = _weighted_rss(quadratic, yu, wu)
    for j in range(m):
        values = np.unique(zu[:, j])
        if len(values) < MIN_SKEW_VALUES or not values[1] <= optimum[j] <= values[-2]:
            continue
        rss = _weighted_rss(np.column_stack([quadratic, zu[:, j] ** 3]), yu, wu)
        s2 = max(rss / (n - quadratic.shape[1] - 1), 1e-300)
        evidence[j], identified[j] = (rss_symmetric - rss) / s2, True
    return evidence, identified


# Per cell: rows, standardised h, scale, skew evidence (m,), columns identified (m,).
_CellEvidence = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _cells_evidence(
    hp: np.ndarray, log_loss: np.ndarray, cells: list[np.ndarray]
) -> list[_CellEvidence]:
    """``_CellEvidence`` of every cell whose symmetric bowl has a bottom
    (``_skew_evidence``)."""
    m = hp.shape[1]
    out: list[_CellEvidence] = []
    for rows in cells:
        z, _, scale = _standardised(hp[rows])
        fit = _reweighted_bowl(z, log_loss[rows], skewed=np.zeros(m, dtype=bool))
        if fit is not None:
            out.append((rows, z, scale, *_skew_evidence(z, log_loss[rows], fit[0], fit[2])))
    return out


def _skewed_columns(evidence: list[_CellEvidence], m: int) -> np.ndarray:
    total, count = np.zeros(m), np.zeros(m)
    for _, _, _, cell_evidence, identified in evidence:
        total += np.where(identified, cell_evidence, 0.0)
        count += identified
    p_values = np.where(count > 0, stats.chi2.sf(total, np.maximum(count, 1)), 1.0)
    return p_values < 1.0 - SKEW_LEVEL


def sweep_skew(hp: np.ndarray, log_loss: np.ndarray, cells: list[np.ndarray]) -> np.ndarray:
    """The columns (m,) whose bowls are skewed across the sweep: a chi-squared test at
    ``SKEW_LEVEL`` of the cells' summed evidence (``_skew_evidence``, one degree of
    freedom per cell that can identify it). One bowl shape for the whole sweep, since a
    learning rate's loss rises faster towards divergence than below its optimum at every
    scale; pooled, the test has the power no single noisy cell has, and a symmetric
    sweep keeps the fewer coefficients (less variance) in every cell."""
    return _skewed_columns(_cells_evidence(hp, log_loss, cells), hp.shape[1])


def sweep_shape(hp: np.ndarray, log_loss: np.ndarray, cells: list[np.ndarray]) -> SkewShape | None:
    """The skew every cell's bowl shares, where ``sweep_skew`` finds one: each cell that
    can identify it fits cubic and quartic terms in the skewed columns, its coefficients
    re-expanded about its own optimum in natural units, and the cells' coefficients
    averaged, weighted by the runs each bowl weights. One shape for every cell, as the
    test is one for the sweep: a noisy cell then fits only its own quadratic, and ten
    small cells at 3% noise pool their estimate of the skew, not only its test (each
    fitting its own cost more accuracy than the skew's bias it removed)."""
    evidence = _cells_evidence(hp, log_loss, cells)
    skew = _skewed_columns(evidence, hp.shape[1])
    if not skew.any():
        return None
    cubic, quartic, weights = [], [], []
    for rows, z, scale, _, identified in evidence:
        y, columns = log_loss[rows], skew & identified
        skewed = _reweighted_bowl(z, y, skewed=columns) if columns.any() else None
        bowl = None if skewed is None else _fit_bowl(z, y, skewed[2], skewed=columns)
        if skewed is None or bowl is None:
            continue
        bottom, fitted = bowl
        # Taylor coefficients about the bottom: the quartic's shifts the cubic's.
        cubic.append((fitted.skew + 4.0 * fitted.flat * bottom) / scale**3)
        quartic.append(fitted.flat / scale**4)
        weights.append(float((skewed[2] > 0).sum()))
    if not weights:
        return None
    return SkewShape(
        cubic=np.where(skew, np.average(cubic, axis=0, weights=weights), 0.0),
        quartic=np.where(skew, np.average(quartic, axis=0, weights=weights), 0.0),
    )


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
    shape = sweep_shape(hp[:, columns], log_loss, cells)
    kept, optima, variances = [], [], []
    excess = np.full(len(log_loss), np.nan)
    dropped = 0
    for rows in cells:
        h, y = hp[np.ix_(rows, np.asarray(columns))], log_loss[rows]
        point = cell_optimum(h, y, shape)
        draws = []
        for _ in range(n_bootstrap):
            pick = rng.integers(0, len(rows), size=len(rows))
            if all(_swept(h[pick, j]) for j in range(h.shape[1])):
                fit = cell_optimum(h[pick], y[pick], shape)
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
