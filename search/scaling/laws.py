"""Linear laws in a transformed space, fitted by least squares with a bootstrap.

A law says ``y = coef[0] + sum_j coef[j] * f_j`` where the features ``f_j`` are logs of
the scaling axes (``ln_compute``, or ``ln_n_params`` and ``ln_tokens``) and ``y`` is a
hyperparameter's optimum in its natural transformed space (``ln lr``, ``logit beta``,
``log2 batch_size``, or ``ln N`` for the compute-optimal allocation).

Uncertainty comes from a case-resampling bootstrap of the fit. The law keeps the
bootstrap covariance of its coefficients; the interval at a target feature vector
``f`` is ``y_hat +/- t * sqrt(f' Cov f)`` (``t`` from Student's t with the fit's degrees
of freedom). Because ``f' Cov f`` grows with the distance of ``f`` from the data's
centre, intervals widen the further a prediction extrapolates.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from search.errors import NotEnoughDataError

# At least this many points per fitted coefficient; fewer cannot give a bootstrap
# worth reporting (with two points per coefficient the residual has almost no
# degrees of freedom and resamples are often rank-deficient).
MIN_POINTS_PER_COEF = 3
# A regressor must span at least this many decades (base-10) to support a slope:
# over less than a factor of 10 the slope is dominated by noise and an extrapolation
# of 100x would be more than twice the observed range away.
MIN_DECADES = 1.0
LN10 = math.log(10.0)


class LinearLaw(BaseModel):
    """A fitted linear law with bootstrap uncertainty; JSON-serialisable.

    ``coef`` holds the intercept first, then one slope per name in ``features``.
    ``feature_min``/``feature_max`` record the observed range of each feature, so a
    prediction can say how far it extrapolates.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: list[str]
    coef: list[float]
    coef_cov: list[list[float]]
    coef_low: list[float]
    coef_high: list[float]
    level: float
    r2: float
    residual_sd: float
    n_points: int
    feature_min: list[float]
    feature_max: list[float]
    # Scatter of the points around the law beyond their own uncertainty (variance, in
    # the law's units): a new point's optimum departs from the law by this much too.
    extra_variance: float = 0.0
    # The coefficients' bootstrap draws (rows like ``coef``), kept by a law whose
    # intervals are the draws' percentiles (``fit_law_to_optima(percentiles=True)``).
    draws: list[list[float]] | None = None

    @property
    def dof(self) -> int:
        return max(self.n_points - len(self.coef), 1)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Estimate and interval at ``features`` of shape ``(m, k)``; each result ``(m,)``."""
        design = _design(np.atleast_2d(np.asarray(features, dtype=float)))
        estimate = design @ np.asarray(self.coef)
        if self.draws is not None:
            low, high = percentile_interval(np.asarray(self.draws) @ design.T, self.level)
            return estimate, low, high
        cov = np.asarray(self.coef_cov)
        spread = np.einsum("mi,ij,mj->m", design, cov, design) + self.extra_variance
        se = np.sqrt(np.maximum(spread, 0.0))
        half = t_quantile(self.level, self.dof) * se
        return estimate, estimate - half, estimate + half

    def slope_interval(self, j: int = 0) -> tuple[float, float]:
        """The interval of the ``j``-th slope (0 = first feature)."""
        return self.coef_low[j + 1], self.coef_high[j + 1]


def _design(features: np.ndarray) -> np.ndarray:
    """Prepend the intercept column: ``(n, k) -> (n, k + 1)``."""
    return np.column_stack([np.ones(features.shape[0]), features])


def t_quantile(level: float, dof: int) -> float:
    return float(stats.t.ppf(0.5 + level / 2.0, dof))


def _least_squares(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef


def _bootstrap_coefs(
    design: np.ndarray, y: np.ndarray, *, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n_bootstrap, p)`` coefficients refitted on resampled rows.

    Resamples whose design is rank-deficient (all rows at one point, say) are drawn
    again, so every row is a genuine fit; the number of redraws is bounded.
    """
    n, p = design.shape
    coefs = []
    for _ in range(50 * n_bootstrap):
        rows = rng.integers(0, n, size=n)
        if np.linalg.matrix_rank(design[rows]) < p:
            continue
        coefs.append(_least_squares(design[rows], y[rows]))
        if len(coefs) == n_bootstrap:
            return np.array(coefs)
    raise NotEnoughDataError(
        f"only {len(coefs)} of {n_bootstrap} bootstrap resamples of {n} points could be "
        "fitted; the points are too few or too concentrated to support this law"
    )


def check_fit_inputs(features: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """Raise NotEnoughDataError when ``features`` cannot support a slope per column."""
    n, k = features.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if not (np.all(np.isfinite(features)) and np.all(np.isfinite(y))):
        raise NotEnoughDataError("features and targets must be finite (check for zeros in logs)")
    needed = MIN_POINTS_PER_COEF * (k + 1)
    if n < needed:
        raise NotEnoughDataError(
            f"{n} point{'' if n == 1 else 's'} cannot support a law with {k + 1} coefficients; "
            f"need at least {needed} ({MIN_POINTS_PER_COEF} per coefficient)"
        )
    for j, name in enumerate(names):
        decades = np.ptp(features[:, j]) / LN10 if name.startswith("ln_") else np.inf
        if decades < MIN_DECADES:
            raise NotEnoughDataError(
                f"{name.removeprefix('ln_')} spans only {decades:.2f} decades over the fitted "
                f"points; a slope needs at least {MIN_DECADES:g} decade (a factor of 10)"
            )


def fit_linear_law(
    features: np.ndarray,
    y: np.ndarray,
    *,
    names: list[str],
    seed: int = 0,
    n_bootstrap: int = 200,
    level: float = 0.9,
) -> LinearLaw:
    """Least-squares fit of ``y`` on ``features`` (n, k) with bootstrap covariance.

    ``names`` label the columns; a name starting with ``ln_`` is a natural log of a
    positive axis and must span at least ``MIN_DECADES``. Raises NotEnoughDataError
    when the data are too few or too narrow.
    """
    features = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=float)
    check_fit_inputs(features, y, names)
    design = _design(features)
    coef = _least_squares(design, y)
    boot = _bootstrap_coefs(design, y, n_bootstrap=n_bootstrap, rng=np.random.default_rng(seed))
    cov = np.atleast_2d(np.cov(boot, rowvar=False))
    return _law(features, y, design, coef, cov, names, level)


def fit_law_to_optima(
    features: np.ndarray,
    y: np.ndarray,
    y_draws: np.ndarray,
    *,
    names: list[str],
    level: float = 0.9,
    percentiles: bool = False,
) -> LinearLaw:
    """Least-squares law through estimated optima ``y`` (n,) at ``features`` (n, k).

    ``y_draws`` (b, n) are the same optima from ``b`` bootstrap refits of the model
    that estimated them (``search.scaling.optima``): the law is refitted to each, and
    the coefficients' covariance is taken over those refits, leaving out the few whose
    slopes are wild (``bulk_of_draws``). Same refusals as ``fit_linear_law``.

    With ``percentiles`` the law keeps every refit's coefficients, and its intervals
    (of the coefficients, and of a prediction) are their percentiles: a skewed or
    heavy-tailed spread shows as it is, where ``t`` times the bulk's standard deviation
    makes it symmetric and leaves the tail out. Used where the optima's draws are many
    and smooth in the features (the allocation, ``search.scaling.allocation``).
    """
    features = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=float)
    check_fit_inputs(features, y, names)
    design = _design(features)
    coef = _least_squares(design, y)
    y_draws = np.asarray(y_draws, dtype=float).reshape(-1, len(y))
    every = np.linalg.lstsq(design, y_draws.T, rcond=None)[0].T
    every = every[np.all(np.isfinite(every), axis=1)]
    draws = every[bulk_of_draws(every[:, 1:])] if len(every) >= 2 else every
    if len(draws) < 2:
        raise NotEnoughDataError("the optima could not be re-estimated on resampled runs")
    law = _law(features, y, design, coef, np.atleast_2d(np.cov(draws, rowvar=False)), names, level)
    if not percentiles:
        return law
    low, high = percentile_interval(every, level)
    return law.model_copy(
        update={"coef_low": low.tolist(), "coef_high": high.tolist(), "draws": every.tolist()}
    )


def percentile_interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided ``level`` interval of ``values`` (b, ...) over its first axis."""
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(values, [tail, 100.0 - tail], axis=0)
    return low, high


# A draw whose slope lies further than this many robust standard deviations from the
# draws' median is a wild refit (``bulk_of_draws``); 4 keeps all but 6e-5 of a normal.
WILD_DRAW_SIGMAS = 4.0


def bulk_of_draws(slopes: np.ndarray) -> np.ndarray:
    """Which bootstrap draws (b,) to take a covariance over, given their slopes (b, k):
    those within ``WILD_DRAW_SIGMAS`` robust standard deviations (interquartile range /
    1.349) of the median in every slope.

    Why: an optimum read off a quadratic surface is ``-Q^-1 (b + W z)``, a ratio, and a
    resample whose bowl is nearly flat along a ridge (learning rate against batch size)
    puts it decades away. A few such resamples in 100 set the plain standard deviation
    (0.3-7 on testbed studies, 61 on a real one, where the bulk's is 0.1-0.3;
    docs/notes/engine-experiments.md), so laws were refused as unidentified that the
    other resamples agree on, and the user got the best observed value instead (at 100x
    a batch size 5-10x too small in a fifth of the studies at 1% noise). Where the
    draws are normal nothing is left out; where the bulk itself is wide the law is still
    refused. A slope whose draws mostly coincide (zero spread in the bulk) is not used
    to leave any out.
    """
    slopes = np.atleast_2d(np.asarray(slopes, dtype=float).T).T
    median = np.median(slopes, axis=0)
    q1, q3 = np.percentile(slopes, [25.0, 75.0], axis=0)
    limit = WILD_DRAW_SIGMAS * (q3 - q1) / 1.349
    limit = np.where(limit > 0, limit, np.inf)
    return np.all(np.abs(slopes - median) <= limit, axis=1)


def _law(features, y, design, coef, cov, names, level) -> LinearLaw:
    residual = y - design @ coef
    total = float(np.sum((y - y.mean()) ** 2))
    dof = max(len(y) - design.shape[1], 1)
    half = t_quantile(level, dof) * np.sqrt(np.diag(cov))
    return LinearLaw(
        features=list(names),
        coef=coef.tolist(),
        coef_cov=cov.tolist(),
        coef_low=(coef - half).tolist(),
        coef_high=(coef + half).tolist(),
        level=level,
        r2=1.0 - float(np.sum(residual**2)) / total if total > 0 else 1.0,
        residual_sd=float(np.sqrt(np.sum(residual**2) / dof)),
        n_points=len(y),
        feature_min=features.min(axis=0).tolist(),
        feature_max=features.max(axis=0).tolist(),
    )


def curved_inside(x: np.ndarray, y: np.ndarray, y_draws: np.ndarray, *, level: float):
    """The ``x`` of a turning point of estimated optima ``y`` (n,) inside the data, or None.

    A quadratic in ``x`` is fitted to ``y`` and to each bootstrap draw (b, n); the
    turning point counts when the curvature's interval at ``level`` excludes 0 and the
    vertex lies between the 10th and 90th percentiles of ``x``.
    """
    x = np.asarray(x, dtype=float)
    centred = x - x.mean()
    design = np.column_stack([np.ones_like(x), centred, centred**2])
    coef = _least_squares(design, np.asarray(y, dtype=float))
    curvature = np.linalg.lstsq(design, np.asarray(y_draws, dtype=float).T, rcond=None)[0][2]
    low, high = percentile_interval(curvature, level)
    if low <= 0.0 <= high or coef[2] == 0.0:
        return None
    vertex = -coef[1] / (2.0 * coef[2]) + x.mean()
    q_low, q_high = np.quantile(x, [0.1, 0.9])
    return float(vertex) if q_low < vertex < q_high else None


# A slope whose standard error exceeds this is not identified by the points: its 90%
# interval would be wider than +/-0.4, more than the exponents of published laws.
MAX_SLOPE_SE = 0.25
# Degrees of freedom a law through estimated optima keeps for its scatter.
MIN_RESIDUAL_DOF = 2


def fit_law_to_estimates(
    features: np.ndarray,
    y: np.ndarray,
    variance: np.ndarray,
    *,
    names: list[str],
    level: float = 0.9,
) -> LinearLaw:
    """Precision-weighted least squares through optima ``y`` (n,) estimated with
    ``variance`` (n,) at ``features`` (n, k): a random-effects meta-regression.

    The points scatter around any law more than their own uncertainty says (a cell's
    grid, the law's form): the extra variance ``tau^2`` is the method-of-moments
    (DerSimonian-Laird) estimate, each point is weighted ``1 / (variance + tau^2)``, and
    the coefficients' covariance is scaled by the weighted residual variance when that
    exceeds 1 (Knapp-Hartung), with Student's t at ``n - k - 1`` degrees of freedom.
    ``tau^2`` is kept as ``extra_variance``, so a prediction's interval includes the
    scatter a new point has around the law.

    Raises NotEnoughDataError, with the numbers, when a slope is not identified: fewer
    than ``MIN_RESIDUAL_DOF`` residual degrees of freedom, a feature that does not vary,
    or a slope whose standard error exceeds ``MAX_SLOPE_SE``.
    """
    features = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=float)
    n, k = features.shape
    if n < k + 1 + MIN_RESIDUAL_DOF:
        raise NotEnoughDataError(
            f"{n} estimated optima cannot support a law with {k + 1} coefficients; "
            f"need at least {k + 1 + MIN_RESIDUAL_DOF}"
        )
    spans = np.ptp(features, axis=0) / LN10
    for j, name in enumerate(names):
        if spans[j] < 1e-6:
            raise NotEnoughDataError(
                f"{name.removeprefix('ln_')} does not vary over the {n} points "
                f"(spans {spans[j]:.2f} decades): its slope is not identified"
            )
    design = _design(features)
    variance = np.maximum(np.asarray(variance, dtype=float), 1e-12)
    weights = 1.0 / variance
    coef, _ = _weighted(design, y, weights)
    residual = y - design @ coef
    q = float(np.sum(weights * residual**2))
    wx = design * weights[:, None]
    hat = np.linalg.pinv(design.T @ wx) @ (wx.T @ wx)
    denominator = float(np.sum(weights) - np.trace(hat))
    tau2 = max(0.0, (q - (n - k - 1)) / denominator) if denominator > 0 else 0.0
    weights = 1.0 / (variance + tau2)
    coef, cov = _weighted(design, y, weights)
    residual = y - design @ coef
    scale = float(np.sum(weights * residual**2)) / (n - k - 1)
    cov = cov * max(1.0, scale)
    se = np.sqrt(np.diag(cov))
    for j, name in enumerate(names):
        if se[j + 1] > MAX_SLOPE_SE:
            raise NotEnoughDataError(
                f"the slope in {name} is not identified: standard error {se[j + 1]:.2f} "
                f"(at most {MAX_SLOPE_SE:g}) with {name.removeprefix('ln_')} spanning "
                f"{spans[j]:.2f} decades over {n} points"
            )
    law = _law(features, y, design, coef, cov, names, level)
    return law.model_copy(update={"extra_variance": tau2})


def _weighted(design: np.ndarray, y: np.ndarray, weights: np.ndarray):
    """Weighted least squares: coefficients and their covariance ``(X'WX)^-1``."""
    cov = np.linalg.pinv(design.T @ (design * weights[:, None]))
    return cov @ (design.T @ (weights * y)), cov
