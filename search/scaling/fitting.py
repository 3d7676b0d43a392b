"""fit_scaling_rules: from a study's observations to ScalingRules.

A designed sweep (runs repeating (N, D) cells, each a grid of the other
hyperparameters; ``search.scaling.cells``) is fitted through each cell's own optimum
(``search.scaling.sweep``, ``_sweep_rules`` here). Any other study takes the steps
below.

Steps: read the axes (N, D, C) of every successful observation; take the
compute-efficient set (``search.scaling.efficient_set``) and the loss frontier L*(C);
fit the response surface over every run and estimate the optima at the efficient runs
(``search.scaling.estimates``); fit the parametric L(N, D) to the HP-corrected losses,
the allocation N*(C), D*(C), and one rule per remaining hyperparameter through the
estimated optima. A part the data cannot support is kept with its reason; the whole
fit is refused (NotEnoughDataError) only when nothing could be supported: too few front
points, or an efficient set spanning under a decade of compute.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.errors import InvalidParamsError, NotEnoughDataError
from search.scaling.allocation import (
    allocation_law_from_optima,
    fit_allocation_law,
    fit_loss_frontier,
)
from search.scaling.chinchilla import fit_chinchilla
from search.scaling.efficient_set import (
    EfficientSet,
    efficient_set,
    estimate_front_noise,
    tolerant_front,
)
from search.scaling.estimates import (
    Estimates,
    SurfaceStage,
    corrected_runs,
    estimate,
    fit_stage,
    transform_of,
)
from search.scaling.laws import MAX_SLOPE_SE, MIN_DECADES, curved_inside, fit_law_to_optima
from search.scaling.optima import LN6, Optima
from search.scaling.rules import (
    AllocationRules,
    ChoiceSummary,
    HyperparameterRule,
    ObservedRange,
    ScalingAxes,
    ScalingRules,
)
from search.scaling.size_map import fit_size_map
from search.scaling.sweep import SweepFit, fit_sweep
from search.scaling.transforms import compute_of
from search.space import SearchSpace
from search.types import Observation

# N and D correlated beyond this along the efficient set cannot be told apart: the
# separate exponents of ln N and ln D would be fitted to noise.
MAX_SIZE_TOKENS_CORRELATION = 0.98
# More efficient runs than this share with N* on the edge of the sizes tried near their
# budget, and the allocation is refused: the runs do not bracket the optimum.
MAX_EDGE_FRACTION = 0.2
# A hyperparameter whose estimated optimum lies outside the values tried within a decade
# of the budget at most of the efficient runs is refused: the surface would be
# extrapolating its bowl rather than locating a bottom the runs bracket.
MAX_OUTSIDE_FRACTION = 0.5
SHAPE_REASON = (
    "sets the model size N with the other shape parameters (the size map): a prediction "
    "at N* sizes it from N*(C), not from an optimum of its own"
)
SWEEP_FRONTIER_REASON = (
    "a designed sweep's front is a few cells: the loss at a compute comes from L(N, D) "
    "at the compute-optimal allocation"
)


@dataclass(frozen=True)
class _Table:
    """The successful observations as arrays: ``loss``, ``compute`` and, when the axes
    have them, ``n_params`` and ``tokens``, all ``(n,)``; ``params`` one dict per row."""

    loss: np.ndarray
    compute: np.ndarray
    n_params: np.ndarray | None
    tokens: np.ndarray | None
    params: list[dict[str, Any]]


@dataclass(frozen=True)
class _Options:
    seed: int
    n_bootstrap: int
    level: float


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
    Raises InvalidParamsError for axes that name nothing the observations carry, and
    NotEnoughDataError when the data cannot support any rule.
    """
    from threadpoolctl import threadpool_limits  # BoTorch's dependency; lazy: load stays light

    # Hundreds of small least-squares fits: BLAS threads only add synchronisation, which
    # on a busy machine costs many times the arithmetic.
    options = _Options(seed=seed, n_bootstrap=n_bootstrap, level=level)
    band = {"band_sigmas": band_sigmas, "min_band_fraction": min_band_fraction}
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(observations, space, axes, options, band)


def _fit(observations, space: SearchSpace, axes: ScalingAxes, options: _Options, band: dict):
    table = _read_table(observations, space, axes)
    size_map, size_map_reason = None, None
    if table.n_params is not None and axes.n_params not in space.names:
        candidates = [
            p.name for p in space.params if p.kind != "choice" and p.name not in axes.names
        ]
        size_map, size_map_reason = fit_size_map(table.params, table.n_params, candidates)
    shape = () if size_map is None else tuple(size_map.slopes)
    rules = _fit_table(table, space, axes, options, band, shape)
    return rules.model_copy(update={"size_map": size_map, "size_map_reason": size_map_reason})


def _hyperparameters(space: SearchSpace, axes: ScalingAxes, shape: tuple[str, ...]) -> list:
    """The parameters whose optimum the surface or the cells estimate: not the axes, and
    not the shape parameters of a size map. Those set N, which the surface already has as
    an axis; as free hyperparameters beside it the surface would seek an optimum along
    directions the runs barely vary (the aspect ratio at a given N), extrapolate it, and
    count every run as far from its optimum."""
    return [p for p in space.params if p.name not in axes.names and p.name not in shape]


def _shape_rule(common: dict[str, Any]) -> HyperparameterRule:
    return HyperparameterRule(**common, supported=False, reason=SHAPE_REASON)


def _fit_table(
    table: _Table, space: SearchSpace, axes: ScalingAxes, options: _Options, band, shape
):
    front = tolerant_front(table.loss, table.compute)
    if axes.has_size_and_tokens and axes.compute is None:
        sweep = fit_sweep(
            table,
            _hyperparameters(space, axes, shape),
            level=options.level,
            n_bootstrap=options.n_bootstrap,
            seed=options.seed,
        )
        if sweep is not None:
            return _sweep_rules(table, front, space, axes, sweep, options, shape)
    frontier, frontier_reason = _fit_frontier(table, front, options)
    eff = efficient_set(
        table.loss,
        table.compute,
        reference_loss=None if frontier is None else frontier.predict(table.compute)[0],
        **band,
    )
    members = eff.members
    decades = np.ptp(np.log10(table.compute[members]))
    if decades < MIN_DECADES:
        raise NotEnoughDataError(
            f"the compute-efficient runs span {decades:.2f} decades of compute; scaling "
            f"rules need at least {MIN_DECADES:g} (run the study over a wider budget range)"
        )
    stage = fit_stage(table, _hyperparameters(space, axes, shape), level=options.level)
    parametric, parametric_reason = _fit_parametric(table, stage, axes, options)
    est = estimate(
        stage,
        table,
        members,
        with_allocation=axes.has_size_and_tokens and axes.compute is None,
        parametric=parametric,
        n_bootstrap=options.n_bootstrap,
        seed=options.seed,
    )
    hyperparameters = _fit_rules(table, members, space, axes, stage, est, options, shape)
    return ScalingRules(
        axes=axes,
        level=options.level,
        observed=_observed(table, eff, axes),
        hyperparameters=hyperparameters,
        allocation=_fit_allocation(table, members, est, options)
        if axes.has_size_and_tokens
        else None,
        loss_frontier=frontier,
        loss_frontier_reason=frontier_reason,
        parametric=parametric,
        parametric_reason=parametric_reason,
    )


def _sweep_rules(table, front, space, axes, sweep: SweepFit, options, shape):
    """ScalingRules of a designed sweep (``search.scaling.sweep``). No loss frontier:
    a sweep's front is a few cells, and the loss at a compute comes from ``L(N, D)`` at
    the compute-optimal allocation."""
    members = sweep.near_best
    rules = []
    for param in space.params:
        if param.name in axes.names:
            continue
        common = _rule_fields(param, table, members)
        if param.name in shape:
            rules.append(_shape_rule(common))
            continue
        if param.kind == "choice":
            rules.append(_choice_rule(param, table, members, None, common))
            continue
        size_law = sweep.size_laws.get(param.name)
        if size_law is None:
            rules.append(
                HyperparameterRule(**common, supported=False, reason=sweep.reasons[param.name])
            )
            continue
        vs_compute = sweep.compute_laws.get(param.name)
        note = None
        if vs_compute is not None:
            low, high = vs_compute.slope_interval()
            note = "no significant trend with compute" if low <= 0 <= high else None
        rules.append(
            HyperparameterRule(
                **common,
                supported=True,
                note=note,
                vs_compute=vs_compute,
                vs_size_tokens=size_law,
                size_tokens_reason=None,
            )
        )
    reason = sweep.allocation_reason
    eff_noise = estimate_front_noise(table.loss[front], None)
    observed = _observed(
        table, EfficientSet(front, members, eff_noise, np.zeros(len(members))), axes
    )
    return ScalingRules(
        axes=axes,
        level=options.level,
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


# -- reading the observations -------------------------------------------------------------


def _axis_values(name: str, observations: Sequence[Observation], space_names: list[str]):
    if name in space_names:
        values = [obs.params[name] for obs in observations]
    elif all(name in obs.metrics for obs in observations):
        values = [obs.metrics[name] for obs in observations]
    elif name == "cost":
        values = [obs.cost for obs in observations]
    else:
        raise InvalidParamsError(
            f"scaling axis {name!r} is neither a parameter of the space ({space_names}) "
            "nor a metric every successful observation reports"
        )
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array) & (array > 0)):
        raise InvalidParamsError(f"scaling axis {name!r} must be finite and > 0 in every run")
    return array


def observation_compute(axes: ScalingAxes, observation: Observation) -> float:
    """One observation's compute: the compute axis, else ``6 N D`` FLOPs."""
    names = list(observation.params)
    if axes.compute is not None:
        return float(_axis_values(axes.compute, [observation], names)[0])
    assert axes.n_params is not None and axes.tokens is not None  # no compute axis: N and D
    n_params = _axis_values(axes.n_params, [observation], names)[0]
    return compute_of(float(n_params), float(_axis_values(axes.tokens, [observation], names)[0]))


def _read_table(observations, space: SearchSpace, axes: ScalingAxes) -> _Table:
    ok = [o for o in observations if not o.failed and math.isfinite(o.loss) and o.loss > 0]
    if len(ok) < 2:
        raise NotEnoughDataError(f"{len(ok)} successful observations; scaling rules need more")
    names = space.names
    n_params = tokens = None
    if axes.has_size_and_tokens:
        assert axes.n_params is not None and axes.tokens is not None
        n_params = _axis_values(axes.n_params, ok, names)
        tokens = _axis_values(axes.tokens, ok, names)
    if axes.compute is not None:
        compute = _axis_values(axes.compute, ok, names)
    else:
        assert n_params is not None and tokens is not None  # no compute axis: N and D
        compute = compute_of(n_params, tokens)
    loss = np.array([o.loss for o in ok])
    return _Table(loss, compute, n_params, tokens, [dict(o.params) for o in ok])


def _observed(table: _Table, eff: EfficientSet, axes: ScalingAxes) -> ObservedRange:
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
        compute_unit=axes.compute or "FLOPs (6 N D)",
        compute_min=float(table.compute.min()),
        compute_max=float(table.compute.max()),
        **extra,
    )


# -- hyperparameter rules -----------------------------------------------------------------


def _best_value(param: Any, table: _Table, members: np.ndarray) -> Any:
    """The parameter's value in the lowest-loss run at the largest efficient compute."""
    top = members[np.argsort(table.compute[members])[-max(3, len(members) // 10) :]]
    return table.params[int(top[np.argmin(table.loss[top])])][param.name]


def _rule_fields(param: Any, table: _Table, members: np.ndarray) -> dict[str, Any]:
    """The rule fields every parameter gets, law or not: its name, kind and fallback
    (``_best_value``); a continuous one also its transform, its declared limits (a logit
    parameter's are inside (0, 1) anyway) and the range of its values over the near-best
    runs ``members``, reported when it has no law."""
    fields = {
        "name": param.name,
        "kind": param.kind,
        "fallback": _best_value(param, table, members),
    }
    if param.kind == "choice":
        return fields | {"transform": "none"}
    values = [float(table.params[i][param.name]) for i in members]
    return fields | {
        "transform": transform_of(param),
        "multiple_of": getattr(param, "multiple_of", 1),
        "limit_min": None if param.min is None else float(param.min),
        "limit_max": None if param.max is None else float(param.max),
        "observed_low": min(values),
        "observed_high": max(values),
    }


def _fit_rules(table, members, space, axes, stage: SurfaceStage, est: Estimates, options, shape):
    rules = []
    for param in space.params:
        if param.name in axes.names:
            continue
        common = _rule_fields(param, table, members)
        if param.name in shape:
            rules.append(_shape_rule(common))
        elif param.kind == "choice":
            rules.append(_choice_rule(param, table, members, stage, common))
        else:
            rules.append(_hp_rule(param, table, members, stage, est, common, options))
    return rules


def _hp_rule(param, table, members, stage, est: Estimates, common: dict, options):
    log_c = np.log(table.compute[members])
    reason = _unsupported(param, stage, est, log_c, options.level)
    if reason is not None:
        return HyperparameterRule(**common, supported=False, reason=reason)
    j = stage.kept.index(stage.hp_params.index(param))
    optima = est.optima
    assert optima is not None  # else _unsupported gave a reason
    try:
        vs_compute = fit_law_to_optima(
            log_c[:, None],
            optima.hp_path[:, j],
            optima.hp_path_draws[:, :, j],
            names=["ln_compute"],
            level=options.level,
        )
    except NotEnoughDataError as exc:
        return HyperparameterRule(**common, supported=False, reason=str(exc))
    slope_se = math.sqrt(vs_compute.coef_cov[1][1])
    if slope_se > MAX_SLOPE_SE:
        decades = np.ptp(log_c) / math.log(10.0)
        reason = (
            f"the slope in ln_compute is not identified: standard error {slope_se:.2f} (at "
            f"most {MAX_SLOPE_SE:g}) with compute spanning {decades:.2f} decades over "
            f"{len(log_c)} efficient runs"
        )
        return HyperparameterRule(**common, supported=False, reason=reason)
    low, high = vs_compute.slope_interval()
    size_law, size_reason = _fit_size_tokens(table, members, optima, j, options)
    return HyperparameterRule(
        **common,
        supported=True,
        note="no significant trend with compute" if low <= 0 <= high else None,
        vs_compute=vs_compute,
        vs_size_tokens=size_law,
        size_tokens_reason=size_reason,
    )


def _unsupported(param, stage: SurfaceStage, est: Estimates, log_c, level: float):
    """Why the surface cannot give ``param`` a rule (None when it can)."""
    if est.optima is None:
        return stage.reason
    assert est.outside is not None  # estimated with the optima
    column = stage.hp_params.index(param)
    if column in stage.flat:
        return (
            f"flat: the loss shows no significant curvature in {param.name} over the runs, "
            "so its optimum is not identified (explore a wider range, or fix it)"
        )
    j = stage.kept.index(column)
    if est.outside[j] > MAX_OUTSIDE_FRACTION:
        return (
            f"not bracketed: at {est.outside[j]:.0%} of the efficient runs' budgets the "
            f"estimated optimum of {param.name} lies outside the values tried there"
        )
    if est.bent is None:
        return None
    bent = est.bent
    # Along the compute-optimal path, the curve the rule against compute describes. The
    # optima at the runs' own (N, D) mix in how the runs' N/D ratios change with compute,
    # and showed turning points that a power law in N and D does not have.
    turn = curved_inside(log_c, bent.hp_path[:, j], bent.hp_path_draws[:, :, j], level=level)
    if turn is None:
        return None
    return (
        f"non-monotone: the optimum of {param.name} turns at compute ~{math.exp(turn):.3g} "
        "inside the data, so no single power law describes it"
    )


def _fit_size_tokens(table: _Table, members: np.ndarray, optima: Optima, j: int, options):
    """``T(x*) = a + b ln N + c ln D``, or None with the reason it cannot be fitted."""
    if table.n_params is None:
        return None, "the study has no n_params/tokens axes"
    assert table.tokens is not None  # read together
    runs = np.column_stack([np.log(table.n_params), np.log(table.tokens)])
    spread = np.all(np.ptp(runs, 0) > 0)
    correlation = float(np.corrcoef(runs.T)[0, 1]) if spread else 1.0
    if abs(correlation) > MAX_SIZE_TOKENS_CORRELATION:
        return None, (
            f"ln N and ln D move together over the runs (correlation {correlation:.3f}); "
            "their separate effects cannot be told apart"
        )
    try:
        law = fit_law_to_optima(
            runs[members],
            optima.hp_own[:, j],
            optima.hp_own_draws[:, :, j],
            names=["ln_n_params", "ln_tokens"],
            level=options.level,
        )
    except NotEnoughDataError as exc:
        return None, str(exc)
    return law, None


def _choice_rule(param, table: _Table, members, stage: SurfaceStage | None, common: dict):
    """The level the surface finds best (lowest loss offset); the counts are those of
    ``members``. Without a surface (a sweep has none), the most frequent level there."""
    counts = Counter(table.params[i][param.name] for i in members).most_common()
    value = counts[0][0]
    if stage is not None and stage.surface is not None:
        offsets = dict(zip(stage.choice_levels, stage.surface.choice_offsets(), strict=True))
        observed = sorted({row[param.name] for row in table.params}, key=str)
        value = min(observed, key=lambda level: offsets.get((param.name, level), 0.0))
    count = dict(counts).get(value, 0)
    return HyperparameterRule(
        **common,
        supported=True,
        choice=ChoiceSummary(value=value, frequency=count / len(members), counts=counts),
    )


# -- allocation, frontier, parametric ------------------------------------------------------


def _fit_allocation(table: _Table, members: np.ndarray, est: Estimates, options: _Options):
    """N*(C), D*(C): through the surface's iso-FLOP minima at the efficient runs' compute
    when compute is ``6 N D``; through the efficient runs themselves when compute is a
    separate axis (no iso-compute curve is known then)."""
    optima = est.optima
    if optima is None or optima.log_n_path is None:
        return _allocation_through_runs(table, members, options)
    assert optima.log_n_path_draws is not None  # drawn with the path
    if optima.edge_fraction > MAX_EDGE_FRACTION:
        reason = (
            f"N*(C) lies at the edge of the model sizes tried at {optima.edge_fraction:.0%} "
            "of the efficient runs' budgets: the runs do not bracket the compute-optimal size"
        )
        return _allocation_through_runs(table, members, options, surface_reason=reason)
    log_c = np.log(table.compute[members])
    log_d = log_c - LN6
    parts: dict[str, Any] = {}
    for name, values, draws in (
        ("n_params", optima.log_n_path, optima.log_n_path_draws),
        ("tokens", log_d - optima.log_n_path, log_d[None, :] - optima.log_n_path_draws),
    ):
        try:
            parts[name] = allocation_law_from_optima(
                log_c, values, draws, name=name, level=options.level
            )
        except NotEnoughDataError as exc:
            parts[f"{name}_reason"] = str(exc)
    return AllocationRules(**parts)


def _allocation_through_runs(
    table: _Table, members: np.ndarray, options: _Options, *, surface_reason: str | None = None
):
    """N*(C), D*(C) through the compute-efficient runs' own N and D (CARBS's way). The
    only way with a separate compute axis; with ``surface_reason`` the fallback when the
    surface's iso-FLOP minima are not bracketed by the runs: the runs that came out
    efficient still say where the search found the good sizes, and the reason is kept
    as the allocation's note (a law refused here keeps both reasons)."""
    assert table.n_params is not None and table.tokens is not None  # size and token axes
    parts: dict[str, Any] = {}
    for name, values in (("n_params", table.n_params), ("tokens", table.tokens)):
        try:
            parts[name] = fit_allocation_law(
                table.compute[members], values[members], name=name, **vars(options)
            )
        except NotEnoughDataError as exc:
            prefix = "" if surface_reason is None else f"{surface_reason}; through the runs: "
            parts[f"{name}_reason"] = prefix + str(exc)
    if surface_reason is not None and (parts.get("n_params") or parts.get("tokens")):
        parts["note"] = f"through the compute-efficient runs, not the surface: {surface_reason}"
    return AllocationRules(**parts)


def _fit_frontier(table: _Table, front: np.ndarray, options: _Options):
    if len(front) < 2:
        return None, f"the front has {len(front)} point{'' if len(front) == 1 else 's'}"
    try:
        return fit_loss_frontier(table.compute[front], table.loss[front], **vars(options)), None
    except NotEnoughDataError as exc:
        return None, str(exc)


def _fit_parametric(table: _Table, stage: SurfaceStage, axes: ScalingAxes, options: _Options):
    """L(N, D) through the HP-corrected losses (``search.scaling.estimates``); through
    the raw losses of every run when there is no surface to correct them with."""
    if not axes.has_size_and_tokens:
        return None, "the study has no n_params/tokens axes"
    assert table.n_params is not None and table.tokens is not None
    if stage.surface is None:
        rows, loss = np.arange(len(table.loss)), table.loss
    else:
        rows, loss = corrected_runs(stage)
    try:
        fit = fit_chinchilla(table.n_params[rows], table.tokens[rows], loss, **vars(options))
    except NotEnoughDataError as exc:
        return None, str(exc)
    return fit, None
