"""The laws of a designed sweep: through the cells' own optima (``search.scaling.cells``).

1. Each cell's optimum of every swept hyperparameter, with its bootstrap variance.
2. Per hyperparameter, ``T(x*) = a + p ln N + q ln D`` by precision-weighted least
   squares through the cells that bracket its optimum (``fit_law_to_estimates``). A law
   is refused only when the cells cannot identify a slope, with the numbers.
3. ``L(N, D)`` through the runs within ``CORRECTION_LIMIT`` of their cell's optimum
   (at most ``MAX_CORRECTED_PER_CELL`` per cell, the least corrected), each loss
   corrected by what it loses there; the allocation ``N*(C)``, ``D*(C)`` follows
   from it in closed form, with the bootstrap of ``L(N, D)`` as its uncertainty (the
   design kept fixed, each cell's level redrawn: a cell's runs share one local fit's
   correction; ``search.scaling.lse.cell_effect_draws``).
4. The law against compute is the ``(N, D)`` law read along that allocation:
   ``T = a + p ln N*(C) + q ln D*(C)``, its covariance propagated from both laws.

All runs count, not only the compute-efficient ones: in a sweep the compute-efficient
runs are a handful of cells along one ridge of (N, D), which cannot tell a trend in N
from one in D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.errors import NotEnoughDataError
from search.scaling.allocation import growing
from search.scaling.cells import CellOptima, estimate_cells, sweep_layout
from search.scaling.chinchilla import ChinchillaFit, derived_quantities, fit_chinchilla
from search.scaling.estimates import CORRECTION_LIMIT, surface_data
from search.scaling.laws import LinearLaw, fit_law_to_estimates, t_quantile
from search.scaling.optima import LN6

SIZE_TOKENS = ["ln_n_params", "ln_tokens"]
_PROPAGATION_DRAWS = 4000
MAX_CORRECTED_PER_CELL = 30


@dataclass(frozen=True)
class SweepFit:
    """What a sweep supports: per continuous hyperparameter (by name) its law in
    ``ln N, ln D`` and along the allocation, or the reason it has none; ``L(N, D)`` and
    the allocation laws (or reasons); ``near_best`` the runs within 1% of their cell's
    best loss (the range reported for parameters without a law)."""

    cells: CellOptima
    size_laws: dict[str, LinearLaw]
    compute_laws: dict[str, LinearLaw]
    reasons: dict[str, str]
    parametric: ChinchillaFit | None
    parametric_reason: str | None
    n_params_law: LinearLaw | None
    tokens_law: LinearLaw | None
    allocation_reason: str | None
    near_best: np.ndarray


def fit_sweep(table: Any, params: list[Any], *, level: float, n_bootstrap: int, seed: int):
    """The sweep's laws, or None when the runs are not laid out as cells of a sweep."""
    data, hp_params, _ = surface_data(table, params)
    layout, columns = sweep_layout(data.log_axes, data.hp)
    if not layout:
        return None
    cells = estimate_cells(
        data.log_axes, data.hp, data.log_loss, layout, columns, n_bootstrap=n_bootstrap, seed=seed
    )
    if len(cells.runs) < 3:
        return None
    size_laws, reasons = {}, {}
    for param in hp_params:
        column = hp_params.index(param)
        if column not in columns:
            reasons[param.name] = (
                f"not swept: {param.name} takes fewer than 3 values within most cells, so "
                "its optimum is not identified"
            )
            continue
        try:
            size_laws[param.name] = _size_law(cells, columns.index(column), level)
        except NotEnoughDataError as exc:
            reasons[param.name] = str(exc)
    parametric, parametric_reason = _parametric(table, cells, level, n_bootstrap, seed)
    n_law = tokens_law = None
    allocation_reason = parametric_reason
    if parametric is not None:
        log_c = np.log(table.compute[np.concatenate(cells.runs)])
        try:
            n_law, tokens_law = allocation_laws(parametric, log_c, level)
            allocation_reason = None
        except NotEnoughDataError as exc:
            allocation_reason = str(exc)
    compute_laws = {}
    if n_law is not None:
        compute_laws = {name: along_allocation(law, n_law) for name, law in size_laws.items()}
    return SweepFit(
        cells=cells,
        size_laws=size_laws,
        compute_laws=compute_laws,
        reasons=reasons,
        parametric=parametric,
        parametric_reason=parametric_reason,
        n_params_law=n_law,
        tokens_law=tokens_law,
        allocation_reason=allocation_reason,
        near_best=_near_best(table, cells),
    )


def _size_law(cells: CellOptima, j: int, level: float) -> LinearLaw:
    bracketed = np.isfinite(cells.optimum[:, j])
    try:
        return fit_law_to_estimates(
            cells.log_axes[bracketed],
            cells.optimum[bracketed, j],
            cells.variance[bracketed, j],
            names=SIZE_TOKENS,
            level=level,
        )
    except NotEnoughDataError as exc:
        share = f"{bracketed.sum()} of {len(bracketed)} cells bracket the optimum"
        raise NotEnoughDataError(f"{exc} ({share})") from exc


def _parametric(table: Any, cells: CellOptima, level: float, n_bootstrap: int, seed: int):
    rows = np.concatenate([_nearest(runs, cells.excess[runs]) for runs in cells.runs])
    loss = np.exp(np.log(table.loss[rows]) - cells.excess[rows])
    cell_of = np.full(len(table.loss), -1)
    for c, runs in enumerate(cells.runs):
        cell_of[runs] = c
    try:
        fit = fit_chinchilla(
            table.n_params[rows],
            table.tokens[rows],
            loss,
            seed=seed,
            n_bootstrap=n_bootstrap,
            level=level,
            groups=cell_of[rows],
        )
    except NotEnoughDataError as exc:
        return None, str(exc)
    return fit, None


def _nearest(runs: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """A cell's runs within ``CORRECTION_LIMIT`` of its optimum, at most
    ``MAX_CORRECTED_PER_CELL`` of them (the least corrected): more runs of one cell add
    little (they share its correction) and cost fitting time."""
    order = np.argsort(excess)[:MAX_CORRECTED_PER_CELL]
    return runs[order[excess[order] < CORRECTION_LIMIT]]


def allocation_laws(fit: ChinchillaFit, log_compute: np.ndarray, level: float):
    """``ln N*(C)`` and ``ln D*(C)`` as laws in ``ln C``, from ``L(N, D)`` in closed
    form; their covariance is that of the bootstrap draws of ``(ln G - a ln 6, a)``."""
    draws = derived_quantities(np.asarray(fit.bootstrap))
    finite = np.isfinite(draws["G"]) & (draws["G"] > 0) & np.isfinite(draws["a"])
    rows = np.column_stack(
        [np.log(draws["G"][finite]) - draws["a"][finite] * LN6, draws["a"][finite]]
    )
    cov = np.cov(rows, rowvar=False)
    n_coef = [math.log(fit.G) - fit.a * LN6, fit.a]
    tokens_coef = [-LN6 - n_coef[0], 1.0 - fit.a]
    span = [float(log_compute.min())], [float(log_compute.max())]
    laws = [
        growing(_law(["ln_compute"], coef, cov, fit.n_points, span, level), name, level)
        for name, coef in (("n_params", n_coef), ("tokens", tokens_coef))
    ]
    return laws[0], laws[1]


def along_allocation(law: LinearLaw, n_law: LinearLaw) -> LinearLaw:
    """``T = c0 + p ln N*(C) + q ln D*(C)`` as a law in ``ln C`` (``ln D* = ln C - ln 6 -
    ln N*``); covariance by propagating draws of both laws' coefficients."""
    rng = np.random.default_rng(0)
    size = rng.multivariate_normal(law.coef, law.coef_cov, _PROPAGATION_DRAWS)
    alloc = rng.multivariate_normal(n_law.coef, n_law.coef_cov, _PROPAGATION_DRAWS)

    def compose(c: np.ndarray, g: np.ndarray) -> np.ndarray:
        intercept = c[..., 0] + (c[..., 1] - c[..., 2]) * g[..., 0] - c[..., 2] * LN6
        slope = c[..., 1] * g[..., 1] + c[..., 2] * (1.0 - g[..., 1])
        return np.stack([intercept, slope], axis=-1)

    coef = compose(np.asarray(law.coef), np.asarray(n_law.coef))
    cov = np.cov(compose(size, alloc), rowvar=False)
    span = n_law.feature_min, n_law.feature_max
    out = _law(["ln_compute"], coef.tolist(), cov, law.n_points - 1, span, law.level)
    return out.model_copy(
        update={
            "r2": law.r2,
            "residual_sd": law.residual_sd,
            "extra_variance": law.extra_variance,
        }
    )


def _law(names, coef, cov, n_points: int, span, level: float) -> LinearLaw:
    cov = np.atleast_2d(cov)
    half = t_quantile(level, max(n_points - len(coef), 1)) * np.sqrt(np.diag(cov))
    return LinearLaw(
        features=names,
        coef=[float(c) for c in coef],
        coef_cov=cov.tolist(),
        coef_low=(np.asarray(coef) - half).tolist(),
        coef_high=(np.asarray(coef) + half).tolist(),
        level=level,
        r2=1.0,
        residual_sd=0.0,
        n_points=n_points,
        feature_min=list(span[0]),
        feature_max=list(span[1]),
    )


def _near_best(table: Any, cells: CellOptima) -> np.ndarray:
    """Runs within 1% of their cell's best loss."""
    rows = [r[table.loss[r] <= 1.01 * table.loss[r].min()] for r in cells.runs]
    return np.concatenate(rows)
