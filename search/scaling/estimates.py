"""From a study's runs to estimated optima: the surface stage of ``fit_scaling_rules``.

1. The response surface (``search.scaling.surface``) over every successful run, with
   the hyperparameters without a usable bowl set aside (``dropped``, each with why).
2. HP-corrected losses: each run's loss with the log-loss it loses to its optimal
   hyperparameters removed (runs losing more than ``CORRECTION_LIMIT`` are left out,
   their correction being the least certain). ``L(N, D)`` is fitted to these, so the
   parametric law, and the allocation derived from it, describe well-tuned runs. The
   allocation's uncertainty redraws the corrections too (``allocation_bootstrap``).
3. Optima at the compute-efficient runs (``search.scaling.optima``), along the
   allocation of the parametric law when there is one, else along the surface's own
   iso-FLOP minima.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from search.errors import NotEnoughDataError
from search.scaling.chinchilla import ChinchillaFit, derived_quantities, redrawn_bootstrap
from search.scaling.optima import (
    LN6,
    Anchors,
    Optima,
    Resampled,
    estimate_optima,
    outside_fraction,
    resample_surfaces,
    size_bounds,
)
from search.scaling.surface import (
    Dropped,
    ResponseSurface,
    Structure,
    SurfaceData,
    choose_structure,
    coefficient_covariance,
    dropped_hyperparameters,
    excess,
    fit_surface,
)
from search.scaling.transforms import forward, transform_of

# Runs losing more than this log-loss to their optimal hyperparameters stay out of the
# L(N, D) fit: far up a bowl's wall the surface's correction is least accurate.
CORRECTION_LIMIT = 0.05
# Draws of the surface's coefficients per bootstrap resample of L(N, D) before the
# fitted surface's correction is used (``correction_resampler``).
_CONVEX_TRIES = 20


@dataclass(frozen=True)
class SurfaceStage:
    """The fitted surface and the parameter behind each column: ``hp_params`` for
    ``data.hp`` (all continuous hyperparameters), ``choice_levels`` ``(name, value)``
    for ``data.choice``; ``kept`` columns are in ``surface``, ``dropped`` ones are not.
    ``surface`` is None (with ``reason``) when the runs cannot support one."""

    data: SurfaceData
    hp_params: list[Any]
    choice_levels: list[tuple[str, Any]]
    structure: Structure | None
    bends: bool
    kept: list[int]
    dropped: list[Dropped]
    surface: ResponseSurface | None
    reason: str | None

    @property
    def kept_data(self) -> SurfaceData:
        return self.data.columns(self.kept)


@dataclass(frozen=True)
class Estimates:
    """Optima at the efficient runs (None with the stage's reason); when the bowls'
    centres bend with scale, the bent surface's optima at the same anchors (on the same
    allocation when there is one, as the rule against compute is); and, per
    kept hyperparameter, the share of efficient runs whose optimum (on the allocation)
    lies outside the range the runs near their compute explored."""

    optima: Optima | None
    bent: Optima | None
    outside: np.ndarray | None = None
    # The resampled surfaces behind ``optima`` and ``bent``, for reading them again.
    surfaces: tuple[Resampled, Resampled | None] | None = None


def log_axes(table: Any) -> np.ndarray:
    """``(n, 2)`` ``ln N, ln D`` when the table has them, else ``(n, 1)`` ``ln C``."""
    if table.n_params is not None:
        return np.column_stack([np.log(table.n_params), np.log(table.tokens)])
    return np.log(table.compute)[:, None]


def surface_data(table: Any, params: list[Any]) -> tuple[SurfaceData, list, list]:
    hp_params = [p for p in params if p.kind != "choice"]
    n = len(table.loss)
    columns = [forward(transform_of(p), [row[p.name] for row in table.params]) for p in hp_params]
    hp = np.column_stack(columns) if columns else np.zeros((n, 0))
    levels = [
        (p.name, value)
        for p in params
        if p.kind == "choice"
        for value in sorted({row[p.name] for row in table.params}, key=str)[1:]
    ]
    choice = np.array(
        [[float(row[name] == value) for name, value in levels] for row in table.params]
    ).reshape(n, len(levels))
    return SurfaceData(log_axes(table), hp, choice, np.log(table.loss)), hp_params, levels


def fit_stage(table: Any, params: list[Any], *, level: float) -> SurfaceStage:
    """The surface over ``table``'s runs for hyperparameters ``params`` (space order)."""
    data, hp_params, levels = surface_data(table, params)
    try:
        structure, bends = choose_structure(data, level=level)
    except NotEnoughDataError as exc:
        return SurfaceStage(data, hp_params, levels, None, False, [], [], None, str(exc))
    dropped = dropped_hyperparameters(data, structure, level=level)
    gone = {d.column for d in dropped}
    kept = [j for j in range(data.hp.shape[1]) if j not in gone]
    surface = fit_surface(data.columns(kept), structure)
    return SurfaceStage(data, hp_params, levels, structure, bends, kept, dropped, surface, None)


def corrected_runs(stage: SurfaceStage) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the runs within ``CORRECTION_LIMIT`` of their optimal hyperparameters,
    and their losses with that shortfall (continuous and choice) removed."""
    assert stage.surface is not None
    data = stage.kept_data
    lost = excess(stage.surface, data) + _choice_shortfall(stage)
    keep = np.flatnonzero(lost < CORRECTION_LIMIT)
    return keep, np.exp(data.log_loss[keep] - lost[keep])


def correction_resampler(
    stage: SurfaceStage, log_axes: np.ndarray
) -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]:
    """One bootstrap draw of the corrected runs for ``L(N, D)``: the surface's
    coefficients drawn from their sampling distribution (``coefficient_covariance``;
    redrawn while the bowl is not convex, at most ``_CONVEX_TRIES`` times, then the
    fitted surface's corrections, as when the drawn one leaves no run within the limit),
    every run corrected by that surface (``corrected_runs``), and the runs within the
    limit resampled with replacement. Returns ``(log_axes[rows],
    corrected loss)`` for the draw; ``log_axes`` (n, 2) are all runs' ``ln N, ln D``.

    Why: a correction that is off is off for every run at once, and by an amount that
    moves with N and D (the bowls' centres are fitted as lines in ``ln N, ln D``). Runs
    resampled with fixed corrections cannot show that: on the 48 engine studies of
    docs/notes/benchmark-history.md N*'s interval at 100x missed in 10 (a refit below the
    top half decade of compute missing the same way), with the correction redrawn in 2. A
    parametric draw, not a surface refitted to resampled runs: such a surface is, a few
    times in 100, nearly flat along a ridge and corrects the runs wildly (held-out N*
    intervals 1.3x wider than these for the same coverage;
    docs/notes/engine-experiments.md)."""
    surface = stage.surface
    assert surface is not None
    covariance = coefficient_covariance(surface, stage.kept_data)
    fitted = corrected_runs(stage)

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        keep, loss = fitted
        for _ in range(_CONVEX_TRIES):
            candidate = replace(surface, coef=rng.multivariate_normal(surface.coef, covariance))
            if candidate.is_convex():
                drawn = corrected_runs(replace(stage, surface=candidate))
                keep, loss = drawn if len(drawn[0]) else fitted
                break
        rows = rng.integers(0, len(keep), size=len(keep))
        return log_axes[keep[rows]], loss[rows]

    return draw


def _choice_shortfall(stage: SurfaceStage) -> np.ndarray:
    """Log-loss (n,) each run loses to the best level of every choice parameter."""
    assert stage.surface is not None
    offsets = stage.surface.choice_offsets()
    shortfall = np.zeros(len(stage.data.log_loss))
    for name in {name for name, _ in stage.choice_levels}:
        columns = [j for j, (n, _) in enumerate(stage.choice_levels) if n == name]
        own = stage.data.choice[:, columns] @ offsets[columns]
        shortfall += own - min(0.0, float(offsets[columns].min()))
    return shortfall


def parametric_path(fit: ChinchillaFit, log_compute: np.ndarray):
    """``ln N*`` (P,) at ``log_compute`` from ``L(N, D)``, and its bootstrap draws (b, P)."""
    point = np.log(fit.G) + fit.a * (log_compute - LN6)
    return point, path_draws(np.asarray(fit.bootstrap), log_compute)


def path_draws(rows: np.ndarray, log_compute: np.ndarray) -> np.ndarray:
    """``ln N*`` (b, P) at ``log_compute`` of each ``(E, A, B, alpha, beta)`` row of
    ``rows`` (b, 5) whose allocation is finite."""
    draws = derived_quantities(rows)
    finite = np.isfinite(draws["G"]) & np.isfinite(draws["a"]) & (draws["G"] > 0)
    log_s = log_compute - LN6
    return np.log(draws["G"][finite])[:, None] + draws["a"][finite][:, None] * log_s


def allocation_bootstrap(
    stage: SurfaceStage, table: Any, parametric: ChinchillaFit, *, seed: int, n_bootstrap: int
) -> np.ndarray:
    """``L(N, D)``'s bootstrap rows ``(E, A, B, alpha, beta)`` with the surface's
    correction redrawn for every resample (``correction_resampler``), for N*(C) and
    D*(C). The law's own bootstrap keeps each run's correction fixed, and the loss at a
    target and the optima along the allocation keep using it: the optima come from
    resampled surfaces already, and the loss interval held the truth at 100x in 47 of
    48 engine studies. The allocation has no other source of the correction's
    uncertainty."""
    assert stage.surface is not None  # the runs were corrected
    rows, _ = corrected_runs(stage)
    log_axes = np.column_stack([np.log(table.n_params), np.log(table.tokens)])
    return redrawn_bootstrap(
        parametric,
        correction_resampler(stage, log_axes),
        centre=log_axes[rows].mean(axis=0),
        seed=seed,
        n_draws=n_bootstrap,
    )


def estimate(
    stage: SurfaceStage,
    table: Any,
    members: np.ndarray,
    *,
    with_allocation: bool,
    parametric: ChinchillaFit | None,
    n_bootstrap: int,
    seed: int,
    fixed: Mapping[int, float] | None = None,
    again: Estimates | None = None,
    follow: tuple[np.ndarray, np.ndarray] | None = None,
) -> Estimates:
    """Optima at the efficient runs ``members``; see the module docstring. ``fixed``
    holds kept columns at given values (transformed units): the optima of the others
    given those (``ResponseSurface.optimum``). ``again``, an earlier estimate on the
    same stage, lends its resampled surfaces (the same draws, no refitting).
    ``follow``, ``ln N*`` at the members (P,) and its draws (b, P), is the allocation to
    read the optima along when the rules' allocation is neither ``L(N, D)``'s nor the
    surface's own (``fitting``: through the runs)."""
    if stage.surface is None:
        return Estimates(None, None)
    assert stage.structure is not None  # a surface has one
    log_compute = np.log(table.compute[members])
    low = high = path = None
    if with_allocation and follow is not None:
        path = follow
    elif with_allocation and parametric is not None:
        path = parametric_path(parametric, log_compute)
    elif with_allocation:
        low, high = size_bounds(np.log(table.compute), np.log(table.n_params), log_compute)
    anchors = Anchors(log_compute, log_axes(table)[members], low, high)
    data = stage.kept_data
    if again is not None and again.surfaces is not None:
        surfaces, bent_surfaces = again.surfaces
    else:
        surfaces = resample_surfaces(data, stage.structure, n_bootstrap=n_bootstrap, seed=seed)
        bent_surfaces = None
        bent_structure = replace(stage.structure, bend=True)
        if stage.bends and stage.kept and fit_surface(data, bent_structure).is_convex():
            bent_surfaces = resample_surfaces(
                data, bent_structure, n_bootstrap=n_bootstrap, seed=seed
            )
    optima = estimate_optima(
        surfaces, anchors, with_allocation=with_allocation, path=path, fixed=fixed
    )
    bent = None
    if bent_surfaces is not None:
        # Along the same allocation as ``optima`` (no iso-FLOP search of its own).
        follow = None
        if optima.log_n_path is not None and optima.log_n_path_draws is not None:
            follow = (optima.log_n_path, optima.log_n_path_draws)
        bent = estimate_optima(
            bent_surfaces, anchors, with_allocation=with_allocation, path=follow, fixed=fixed
        )
    limits = _transformed_limits([stage.hp_params[j] for j in stage.kept])
    outside = outside_fraction(np.log(table.compute), data.hp, log_compute, optima.hp_path, limits)
    return Estimates(optima, bent, outside, (surfaces, bent_surfaces))


def _transformed_limits(params: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each parameter's min and max (m,) in its law's transformed space; -inf and inf
    where it has none."""
    low = [-np.inf if p.min is None else float(forward(transform_of(p), p.min)) for p in params]
    high = [np.inf if p.max is None else float(forward(transform_of(p), p.max)) for p in params]
    return np.array(low), np.array(high)
