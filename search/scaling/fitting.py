"""fit_scaling_rules: from a study's observations to ScalingRules.

The observations are read into a table of runs and, when model size N is a metric, a
size map over the shape parameters is fitted (``search.scaling.size_map``); the two,
with the space, axes and settings, are the fit's inputs
(``search.scaling.fit_inputs.FitInputs``) that every step below reads.

A designed sweep (runs repeating (N, D) cells, each a grid of the other
hyperparameters; ``search.scaling.cells``) is fitted through each cell's own optimum
(``search.scaling.sweep``, ``_sweep_rules`` here). Any other study takes the steps
below (``_surface_rules``).

Steps: read the axes (N, D, C) of every successful observation; take the
compute-efficient set (``search.scaling.efficient_set``) and the loss frontier L*(C);
fit the response surface over every run and estimate the optima at the efficient runs
(``search.scaling.estimates``); fit the parametric L(N, D) to the HP-corrected losses,
the allocation N*(C), D*(C), and one rule per remaining hyperparameter through the
estimated optima (``search.scaling.hyperparameter_rules``). Every observation, failed
ones included, gives the failure boundary predictions are held inside
(``search.scaling.failure_boundary``). A part the data cannot
support is kept with its reason; the whole fit is refused (NotEnoughDataError) only
when nothing could be supported: too few front points, or an efficient set spanning
under a decade of compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from search.errors import NotEnoughDataError
from search.scaling.allocation import (
    LossFrontier,
    allocation_law_from_optima,
    fit_allocation_law,
    fit_loss_frontier,
)
from search.scaling.backtest import Backtest, backtest_frontier, backtest_parametric
from search.scaling.chinchilla import ChinchillaFit, fit_chinchilla
from search.scaling.efficient_set import (
    EfficientSet,
    efficient_set,
    estimate_front_noise,
    tolerant_front,
)
from search.scaling.estimates import (
    Estimates,
    SurfaceStage,
    allocation_bootstrap,
    corrected_runs,
    estimate,
    fit_stage,
    path_draws,
)
from search.scaling.failure_boundary import fit_failure_boundary
from search.scaling.fit_inputs import FitInputs, RunTable, read_table
from search.scaling.hyperparameter_rules import (
    given_values,
    held_columns,
    hyperparameter_rules,
    kept_names,
    surface_rule,
    sweep_rule,
)
from search.scaling.laws import MIN_DECADES
from search.scaling.optima import LN6, Optima
from search.scaling.rules import (
    AllocationRules,
    HyperparameterRule,
    ObservedRange,
    ScalingAxes,
    ScalingRules,
)
from search.scaling.size_map import SizeMap, fit_size_map
from search.scaling.sweep import SweepFit, fit_sweep
from search.space import SearchSpace
from search.types import Observation

# More efficient runs than this share with N* on the edge of the sizes tried near their
# budget, and the allocation is refused: the runs do not bracket the optimum.
MAX_EDGE_FRACTION = 0.2
SWEEP_FRONTIER_REASON = (
    "a designed sweep's front is a few cells: the loss at a compute comes from L(N, D) "
    "at the compute-optimal allocation"
)


# Bootstrap refits per law: fewer cannot give a covariance (``fit_law_to_optima``).
MIN_BOOTSTRAP = 2


def fit_scaling_rules(
    observations: Sequence[Observation],
    space: SearchSpace,
    axes: ScalingAxes,
    *,
    seed: int = 0,
    n_bootstrap: int = 200,
    level: float = 0.9,
    band_sigmas: float = 2.0,
    min_band_fraction: float = 0.01,
) -> ScalingRules:
    """Learn scaling rules from a study's observations (failed ones are skipped).

    ``band_sigmas`` and ``min_band_fraction`` set how far above the front a run may
    lie and still count as compute-efficient (see ``search.scaling.efficient_set``).
    Raises InvalidParamsError for axes that name nothing the observations carry,
    NotEnoughDataError when the data cannot support any rule, and ValueError for fewer
    than ``MIN_BOOTSTRAP`` bootstrap refits.
    """
    from threadpoolctl import threadpool_limits  # BoTorch's dependency; lazy: load stays light

    if n_bootstrap < MIN_BOOTSTRAP:
        raise ValueError(
            f"n_bootstrap must be at least {MIN_BOOTSTRAP}: every interval comes from the "
            f"bootstrap (got {n_bootstrap})"
        )

    # Hundreds of small least-squares fits: BLAS threads only add synchronisation, which
    # on a busy machine costs many times the arithmetic.
    with threadpool_limits(limits=1, user_api="blas"):
        table = read_table(observations, space, axes)
        size_map, size_map_reason = _size_map(table, space, axes)
        fit = FitInputs(
            table=table,
            space=space,
            axes=axes,
            shape=() if size_map is None else tuple(size_map.slopes),
            seed=seed,
            n_bootstrap=n_bootstrap,
            level=level,
            band_sigmas=band_sigmas,
            min_band_fraction=min_band_fraction,
        )
        rules = _rules(fit)
        boundary, boundary_reason = fit_failure_boundary(observations, space)
        return rules.model_copy(
            update={
                "size_map": size_map,
                "size_map_reason": size_map_reason,
                "failure_boundary": boundary,
                "failure_boundary_reason": boundary_reason,
            }
        )


def _size_map(
    table: RunTable, space: SearchSpace, axes: ScalingAxes
) -> tuple[SizeMap | None, str | None]:
    """The size map over the numeric non-axis parameters when N is a metric (not a
    parameter of the space); None with no reason when N is a parameter or no axis."""
    if table.n_params is None or axes.n_params in space.names:
        return None, None
    candidates = [p.name for p in space.params if p.kind != "choice" and p.name not in axes.names]
    return fit_size_map(table.params, table.n_params, candidates)


def _rules(fit: FitInputs) -> ScalingRules:
    """Through a designed sweep's cells when the runs are laid out as one; else through
    the surface."""
    front = tolerant_front(fit.table.loss, fit.table.compute)
    if fit.compute_is_6nd:
        sweep = fit_sweep(
            fit.table,
            fit.hyperparameters,
            level=fit.level,
            n_bootstrap=fit.n_bootstrap,
            seed=fit.seed,
        )
        if sweep is not None:
            return _sweep_rules(fit, front, sweep)
    return _surface_rules(fit, front)


def _surface_rules(fit: FitInputs, front: np.ndarray) -> ScalingRules:
    """ScalingRules through the response surface (the module docstring's steps)."""
    table = fit.table
    frontier, frontier_reason = _fit_frontier(fit, front)
    frontier_backtest, frontier_backtest_reason = (
        _backtest_frontier(fit, front) if frontier is not None else (None, None)
    )
    eff = efficient_set(
        table.loss,
        table.compute,
        reference_loss=None if frontier is None else frontier.predict(table.compute)[0],
        **fit.band,
    )
    members = eff.members
    decades = np.ptp(np.log10(table.compute[members]))
    if decades < MIN_DECADES:
        raise NotEnoughDataError(
            f"the compute-efficient runs span {decades:.2f} decades of compute; scaling "
            f"rules need at least {MIN_DECADES:g} (run the study over a wider budget range)"
        )
    stage = fit_stage(table, fit.hyperparameters, level=fit.level)
    parametric, parametric_reason, backtest, backtest_reason = _fit_parametric(fit, stage)
    estimate_here = partial(
        estimate,
        stage,
        table,
        members,
        with_allocation=fit.compute_is_6nd,
        parametric=parametric,
        n_bootstrap=fit.n_bootstrap,
        seed=fit.seed,
    )
    est = estimate_here()
    allocation = None
    if fit.axes.has_size_and_tokens:
        redrawn = None
        if parametric is not None and stage.surface is not None:
            redrawn = allocation_bootstrap(
                stage, table, parametric, seed=fit.seed, n_bootstrap=fit.n_bootstrap
            )
        allocation = _fit_allocation(fit, members, est, redrawn)
        follow = _allocation_through_runs_path(fit, members, est, allocation, parametric)
        if follow is not None:
            estimate_here = partial(estimate_here, follow=follow)
            est = estimate_here(again=est)
    rule = partial(surface_rule, fit, members, stage, est)
    hyperparameters = _given_the_fallbacks(
        fit,
        members,
        stage,
        hyperparameter_rules(fit, members, stage, rule),
        lambda held: estimate_here(fixed=held, again=est),
    )
    return ScalingRules(
        axes=fit.axes,
        level=fit.level,
        observed=_observed(fit, eff),
        hyperparameters=hyperparameters,
        allocation=allocation,
        loss_frontier=frontier,
        loss_frontier_reason=frontier_reason,
        loss_frontier_backtest=frontier_backtest,
        loss_frontier_backtest_reason=frontier_backtest_reason,
        parametric=parametric,
        parametric_reason=parametric_reason,
        parametric_backtest=backtest,
        parametric_backtest_reason=backtest_reason,
    )


def _given_the_fallbacks(
    fit: FitInputs,
    members: np.ndarray,
    stage: SurfaceStage,
    rules: list[HyperparameterRule],
    estimate_given: Callable[[dict[int, float]], Estimates],
) -> list[HyperparameterRule]:
    """``rules`` with the laws read given the values a prediction uses for the surface's
    hyperparameters that have no law (their best observed values).

    A law is read through the joint optimum, where every hyperparameter is at its own
    best. A hyperparameter without a law is set to its best observed value instead,
    and where the others' optima move with it the joint optimum is the wrong one to
    follow: the learning rate's optimum moves with the batch size, so a learning rate
    for the optimal batch, paired with a smaller best observed batch, is too high (at
    100x it diverged in 6 of 60 engine studies, docs/notes/engine-experiments.md); and
    where the runs never reached the optimal batch, the joint learning rate lies beyond
    the values they tried and its law is refused as not bracketed, while the learning
    rate for the batch they used is bracketed. So the hyperparameters without a law are
    held at their values one at a time, each time the one whose holding leaves the most
    laws (the first in the space's order on a tie), and every other law is read again
    given the held values (``ResponseSurface.optimum``), until each hyperparameter
    without a law is held."""
    kept = kept_names(stage)
    held: list[str] = []
    while True:
        refused = [r.name for r in rules if r.name in kept and not r.supported]
        refused = [name for name in refused if name not in held]
        if not refused:
            return rules
        options = [
            (_read_given(fit, members, stage, estimate_given, rules, [*held, name]), name)
            for name in refused
        ]
        rules, name = max(options, key=lambda option: sum(r.supported for r in option[0]))
        held.append(name)


def _read_given(
    fit: FitInputs,
    members: np.ndarray,
    stage: SurfaceStage,
    estimate_given: Callable[[dict[int, float]], Estimates],
    rules: list[HyperparameterRule],
    held: list[str],
) -> list[HyperparameterRule]:
    """The surface's laws read again (``estimate_given``: off the same resampled
    surfaces) with the hyperparameters ``held`` (whose rules in ``rules`` have no law)
    at their fallback values; other rules as in ``rules``."""
    given_est = estimate_given(held_columns(rules, stage, held))
    rule = partial(surface_rule, fit, members, stage, given_est)
    given = hyperparameter_rules(fit, members, stage, rule)
    kept = kept_names(stage)
    without = [r for r in rules if r.name in held]
    return [
        given_values(new, without) if old.name in kept and old.name not in held else old
        for new, old in zip(given, rules, strict=True)
    ]


def _sweep_rules(fit: FitInputs, front: np.ndarray, sweep: SweepFit) -> ScalingRules:
    """ScalingRules of a designed sweep (``search.scaling.sweep``). No loss frontier:
    a sweep's front is a few cells, and the loss at a compute comes from ``L(N, D)`` at
    the compute-optimal allocation."""
    members = sweep.near_best
    rules = hyperparameter_rules(fit, members, None, partial(sweep_rule, sweep))
    reason = sweep.allocation_reason
    eff_noise = estimate_front_noise(fit.table.loss[front], None)
    observed = _observed(fit, EfficientSet(front, members, eff_noise, np.zeros(len(members))))
    return ScalingRules(
        axes=fit.axes,
        level=fit.level,
        optima_from="cells",
        observed=observed.model_copy(update={"n_cells": len(sweep.cells.runs)}),
        hyperparameters=rules,
        allocation=AllocationRules(
            n_params=sweep.n_params_law,
            n_params_reason=reason,
            tokens=sweep.tokens_law,
            tokens_reason=reason,
        ),
        loss_frontier=None,
        loss_frontier_reason=SWEEP_FRONTIER_REASON,
        parametric=sweep.parametric,
        parametric_reason=sweep.parametric_reason,
    )


def _observed(fit: FitInputs, eff: EfficientSet) -> ObservedRange:
    table = fit.table
    extra = {}
    if table.n_params is not None:
        assert table.tokens is not None  # read together
        extra = {
            "n_params_min": float(table.n_params.min()),
            "n_params_max": float(table.n_params.max()),
            "tokens_min": float(table.tokens.min()),
            "tokens_max": float(table.tokens.max()),
        }
    return ObservedRange(
        n_observations=len(table.loss),
        n_front=len(eff.front),
        n_efficient=len(eff.members),
        noise_sd=eff.noise_sd,
        compute_unit=fit.axes.compute or "FLOPs (6 N D)",
        compute_min=float(table.compute.min()),
        compute_max=float(table.compute.max()),
        **extra,
    )


# -- allocation, frontier, parametric ------------------------------------------------------


def _fit_allocation(
    fit: FitInputs, members: np.ndarray, est: Estimates, redrawn: np.ndarray | None
) -> AllocationRules:
    """N*(C), D*(C): through the surface's iso-FLOP minima at the efficient runs' compute
    when compute is ``6 N D`` (along ``L(N, D)``'s allocation when there is one, its
    draws then ``redrawn``, ``allocation_bootstrap``); through the efficient runs
    themselves when compute is a separate axis (no iso-compute curve is known then)."""
    optima = est.optima
    if optima is None or optima.log_n_path is None:
        return _allocation_through_runs(fit, members)
    assert optima.log_n_path_draws is not None  # drawn with the path
    if _minima_on_the_edge(optima):
        reason = (
            f"N*(C) lies at the edge of the model sizes tried at {optima.edge_fraction:.0%} "
            "of the efficient runs' budgets: the runs do not bracket the compute-optimal size"
        )
        return _allocation_through_runs(fit, members, surface_reason=reason)
    log_c = np.log(fit.table.compute[members])
    log_d = log_c - LN6
    log_n_draws = optima.log_n_path_draws if redrawn is None else path_draws(redrawn, log_c)
    parts: dict[str, Any] = {}
    for name, values, draws in (
        ("n_params", optima.log_n_path, log_n_draws),
        ("tokens", log_d - optima.log_n_path, log_d[None, :] - log_n_draws),
    ):
        try:
            parts[name] = allocation_law_from_optima(
                log_c, values, draws, name=name, level=fit.level
            )
        except NotEnoughDataError as exc:
            parts[f"{name}_reason"] = str(exc)
    return AllocationRules(**parts)


def _minima_on_the_edge(optima: Optima) -> bool:
    """Whether the surface's iso-FLOP minima sit on the edge of the sizes tried at too
    many of the efficient runs' budgets for its allocation (``MAX_EDGE_FRACTION``)."""
    return optima.edge_fraction > MAX_EDGE_FRACTION


def _allocation_through_runs_path(
    fit: FitInputs,
    members: np.ndarray,
    est: Estimates,
    allocation: AllocationRules,
    parametric: ChinchillaFit | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """``ln N*`` at the efficient runs (P,) and its draws (``n_bootstrap``, P) from an
    allocation fitted through the runs because the surface's iso-FLOP minima sat on the
    edge of the sizes tried (``_fit_allocation``); None when the allocation is the one
    the optima were read along, or when no law of it is supported.

    Why: the hyperparameters' laws against compute are read along an allocation, and a
    prediction at a compute pairs them with the allocation's N* and D*. Read along the
    edge, they described a model several times larger than the one predicted: on run 10
    of the real study the learning rate at the largest compute came out at 0.0015, where
    the law in ln N and ln D gives 0.0039 at that N* and D* and the runs there did best
    at 0.004-0.005 (docs/case-study-real-scaling.md, run 10).

    With N*(C) refused and D*(C) supported, a prediction takes N* = C / 6 D*(C)
    (``predict``, where no ``L(N, D)`` gives the allocation instead), so the path does
    too."""
    optima = est.optima
    if optima is None or optima.log_n_path is None or not _minima_on_the_edge(optima):
        return None
    log_c = np.log(fit.table.compute[members])
    design = np.column_stack([np.ones(len(members)), log_c])
    rng = np.random.default_rng(fit.seed)
    if allocation.n_params is not None:
        law, sign, offset = allocation.n_params, 1.0, np.zeros_like(log_c)
    elif allocation.tokens is not None and parametric is None:
        law, sign, offset = allocation.tokens, -1.0, log_c - LN6
    else:
        return None
    coefs = rng.multivariate_normal(law.coef, law.coef_cov, size=fit.n_bootstrap)
    return offset + sign * (design @ np.asarray(law.coef)), offset + sign * (coefs @ design.T)


def _allocation_through_runs(
    fit: FitInputs, members: np.ndarray, *, surface_reason: str | None = None
) -> AllocationRules:
    """N*(C), D*(C) through the compute-efficient runs' own N and D (CARBS's way). The
    only way with a separate compute axis; with ``surface_reason`` the fallback when the
    surface's iso-FLOP minima are not bracketed by the runs: the runs that came out
    efficient still say where the search found the good sizes, and the reason is kept
    as the allocation's note (a law refused here keeps both reasons)."""
    table = fit.table
    assert table.n_params is not None and table.tokens is not None  # size and token axes
    parts: dict[str, Any] = {}
    for name, values in (("n_params", table.n_params), ("tokens", table.tokens)):
        try:
            parts[name] = fit_allocation_law(
                table.compute[members], values[members], name=name, **fit.bootstrap
            )
        except NotEnoughDataError as exc:
            prefix = "" if surface_reason is None else f"{surface_reason}; through the runs: "
            parts[f"{name}_reason"] = prefix + str(exc)
    if surface_reason is not None and (parts.get("n_params") or parts.get("tokens")):
        parts["note"] = f"through the compute-efficient runs, not the surface: {surface_reason}"
    return AllocationRules(**parts)


def _fit_frontier(fit: FitInputs, front: np.ndarray) -> tuple[LossFrontier | None, str | None]:
    if len(front) < 2:
        return None, f"the front has {len(front)} point{'' if len(front) == 1 else 's'}"
    table = fit.table
    try:
        return fit_loss_frontier(table.compute[front], table.loss[front], **fit.bootstrap), None
    except NotEnoughDataError as exc:
        return None, str(exc)


def _backtest_frontier(fit: FitInputs, front: np.ndarray) -> tuple[Backtest | None, str | None]:
    """The frontier's backtest on the front (``search.scaling.backtest``), or why none."""
    table = fit.table
    try:
        return backtest_frontier(table.compute[front], table.loss[front], seed=fit.seed), None
    except NotEnoughDataError as exc:
        return None, str(exc)


def _fit_parametric(
    fit: FitInputs, stage: SurfaceStage
) -> tuple[ChinchillaFit | None, str | None, Backtest | None, str | None]:
    """L(N, D) through the HP-corrected losses (``search.scaling.estimates``); through
    the raw losses of every run when there is no surface to correct them with. With the
    law, its backtest on the same runs (``search.scaling.backtest``), or why there is
    none."""
    if not fit.axes.has_size_and_tokens:
        return None, "the study has no n_params/tokens axes", None, None
    table = fit.table
    assert table.n_params is not None and table.tokens is not None
    if stage.surface is None:
        rows, loss = np.arange(len(table.loss)), table.loss
    else:
        rows, loss = corrected_runs(stage)
    n_params, tokens = table.n_params[rows], table.tokens[rows]
    try:
        parametric = fit_chinchilla(n_params, tokens, loss, **fit.bootstrap)
    except NotEnoughDataError as exc:
        return None, str(exc), None, None
    try:
        return parametric, None, backtest_parametric(n_params, tokens, loss, seed=fit.seed), None
    except NotEnoughDataError as exc:
        return parametric, None, None, str(exc)
