"""One rule per parameter that is not an axis, in the space's order.

Every rule has the same fields whatever supports it (``_rule_fields``); a shape
parameter of the size map gets none of its own (N*(C) sizes it), and a choice
parameter the level the surface finds best. A continuous hyperparameter's law comes
from what the fit estimated its optima with: the surface's optima at the efficient runs
(``surface_rule``) or a designed sweep's cells (``sweep_rule``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from search.errors import NotEnoughDataError
from search.scaling.estimates import Estimates, SurfaceStage
from search.scaling.fit_inputs import FitInputs, RunTable
from search.scaling.laws import MAX_SLOPE_SE, LinearLaw, curved_inside, fit_law_to_optima
from search.scaling.optima import Optima
from search.scaling.rules import ChoiceSummary, HyperparameterRule
from search.scaling.surface import Dropped
from search.scaling.sweep import SweepFit
from search.scaling.transforms import forward, transform_of

# N and D correlated beyond this along the efficient set cannot be told apart: the
# separate exponents of ln N and ln D would be fitted to noise.
MAX_SIZE_TOKENS_CORRELATION = 0.98
# A turning point of an optimum inside the data refuses its law only when its curvature
# is significant at this level (or the rules' own, if higher): a false alarm discards a
# law the runs support, and at the rules' 90% the demo study refused the testbed's
# monotone learning-rate law in 2 of 9 runs (4 trial threads, so each run's path
# differs); at 99% none, and 1 of the 60 engine studies of the rules bench changed (a
# batch law let through).
TURN_LEVEL = 0.99
# A hyperparameter whose estimated optimum lies outside the values tried within a decade
# of the budget at most of the efficient runs is refused: the surface would be
# extrapolating its bowl rather than locating a bottom the runs bracket.
MAX_OUTSIDE_FRACTION = 0.5
SHAPE_REASON = (
    "sets the model size N with the other shape parameters (the size map): a prediction "
    "at N* sizes it from N*(C), not from an optimum of its own"
)

# A continuous hyperparameter's rule from the parameter and its ``_rule_fields``.
ContinuousRule = Callable[[Any, dict[str, Any]], HyperparameterRule]


def hyperparameter_rules(
    fit: FitInputs,
    members: np.ndarray,
    stage: SurfaceStage | None,
    continuous_rule: ContinuousRule,
) -> list[HyperparameterRule]:
    """The rules of the parameters that are not axes. ``members`` are the runs whose
    values give the fallback and observed range (and a choice's counts); ``stage`` the
    surface a choice's best level comes from (None for a sweep)."""
    rules = []
    for param in fit.space.params:
        if param.name in fit.axes.names:
            continue
        common = _rule_fields(param, fit.table, members)
        if param.name in fit.shape:
            rules.append(HyperparameterRule(**common, supported=False, reason=SHAPE_REASON))
        elif param.kind == "choice":
            rules.append(_choice_rule(param, fit.table, members, stage, common))
        else:
            rules.append(continuous_rule(param, common))
    return rules


def _best_value(param: Any, table: RunTable, members: np.ndarray) -> Any:
    """The parameter's value in the lowest-loss run at the largest efficient compute."""
    top = members[np.argsort(table.compute[members])[-max(3, len(members) // 10) :]]
    return table.params[int(top[np.argmin(table.loss[top])])][param.name]


def _rule_fields(param: Any, table: RunTable, members: np.ndarray) -> dict[str, Any]:
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


def _choice_rule(param, table: RunTable, members, stage: SurfaceStage | None, common: dict):
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


def _trend_note(vs_compute: LinearLaw) -> str | None:
    low, high = vs_compute.slope_interval()
    return "no significant trend with compute" if low <= 0 <= high else None


# -- through a designed sweep's cells ------------------------------------------------------


def sweep_rule(sweep: SweepFit, param: Any, common: dict[str, Any]) -> HyperparameterRule:
    """The sweep's law of ``param`` in ``ln N, ln D`` and along the allocation, or the
    sweep's reason it has none."""
    size_law = sweep.size_laws.get(param.name)
    if size_law is None:
        return HyperparameterRule(**common, supported=False, reason=sweep.reasons[param.name])
    vs_compute = sweep.compute_laws.get(param.name)
    return HyperparameterRule(
        **common,
        supported=True,
        note=None if vs_compute is None else _trend_note(vs_compute),
        vs_compute=vs_compute,
        vs_size_tokens=size_law,
        size_tokens_reason=None,
    )


# -- through the surface's optima at the efficient runs ------------------------------------


def surface_rule(
    fit: FitInputs,
    members: np.ndarray,
    stage: SurfaceStage,
    est: Estimates,
    param: Any,
    common: dict[str, Any],
) -> HyperparameterRule:
    """The law of ``param`` against compute through its estimated optima at the
    efficient runs ``members``, and in ``ln N, ln D`` when the runs can tell them
    apart; unsupported with the reason when the surface cannot give one."""
    log_c = np.log(fit.table.compute[members])
    reason = _unsupported(param, stage, est, log_c, fit.level)
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
            level=fit.level,
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
    size_law, size_reason = _size_tokens_law(fit, members, optima, j)
    return HyperparameterRule(
        **common,
        supported=True,
        note=_trend_note(vs_compute),
        vs_compute=vs_compute,
        vs_size_tokens=size_law,
        size_tokens_reason=size_reason,
    )


def kept_names(stage: SurfaceStage) -> set[str]:
    """The hyperparameters in the surface."""
    return {stage.hp_params[j].name for j in stage.kept}


def held_columns(
    rules: list[HyperparameterRule], stage: SurfaceStage, held: list[str]
) -> dict[int, float]:
    """The surface's columns (positions in ``stage.kept``) of the hyperparameters
    ``held``, at their rules' fallback values, in transformed units."""
    fallback = {r.name: r.fallback for r in rules}
    columns = {}
    for column, j in enumerate(stage.kept):
        param = stage.hp_params[j]
        if param.name in held:
            columns[column] = float(forward(transform_of(param), float(fallback[param.name])))
    return columns


def given_values(rule: HyperparameterRule, without: list[HyperparameterRule]) -> HyperparameterRule:
    """``rule`` (fitted given the values of the rules ``without`` a law) saying so."""
    if not rule.supported or not without:
        return rule
    values = ", ".join(f"{r.name} {float(r.fallback):.3g}" for r in without)
    given = f"the optimum given the values used where there is no law ({values})"
    return rule.model_copy(update={"note": given if rule.note is None else f"{rule.note}; {given}"})


def _unsupported(param, stage: SurfaceStage, est: Estimates, log_c, level: float):
    """Why the surface cannot give ``param`` a rule (None when it can)."""
    if est.optima is None:
        return stage.reason
    assert est.outside is not None  # estimated with the optima
    column = stage.hp_params.index(param)
    dropped = next((d for d in stage.dropped if d.column == column), None)
    if dropped is not None:
        return _dropped_reason(param.name, dropped, stage)
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
    turn_level = max(level, TURN_LEVEL)
    turn = curved_inside(log_c, bent.hp_path[:, j], bent.hp_path_draws[:, :, j], level=turn_level)
    if turn is None:
        return None
    return (
        f"non-monotone: the optimum of {param.name} turns at compute ~{math.exp(turn):.3g} "
        "inside the data, so no single power law describes it"
    )


def _dropped_reason(name: str, dropped: Dropped, stage: SurfaceStage) -> str:
    """Why a hyperparameter left out of the surface has no rule, in the user's words."""
    if dropped.kind == "no effect":
        return (
            f"flat: the loss shows no significant dependence on {name} over the runs, so "
            "its optimum is not identified (explore a wider range, or fix it)"
        )
    if dropped.kind == "no bowl":
        return (
            f"no bowl: the loss depends on {name} over the runs but shows no significant "
            f"positive curvature in it (t = {dropped.t:.2f}), so the runs do not locate its "
            "optimum (explore beyond the values tried)"
        )
    partners = ", ".join(stage.hp_params[j].name for j in dropped.partners)
    return (
        f"saddle: {name}'s bowl is significant (t = {dropped.t:.2f}), but together with "
        f"{partners} it is not convex (along a ridge through them the fitted loss keeps "
        "falling), and its curvature is the weakest there, so its optimum is not identified"
    )


def _size_tokens_law(fit: FitInputs, members: np.ndarray, optima: Optima, j: int):
    """``T(x*) = a + b ln N + c ln D`` through kept hyperparameter ``j``'s optima at the
    runs' own (N, D), or None with the reason it cannot be fitted."""
    table = fit.table
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
            level=fit.level,
        )
    except NotEnoughDataError as exc:
        return None, str(exc)
    return law, None
