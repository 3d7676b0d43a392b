"""ScalingRules.predict: from rules and a target scale to a full configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from search.errors import InvalidParamsError
from search.scaling.chinchilla import FLOPS_PER_PARAM_TOKEN, derived_quantities
from search.scaling.failure_boundary import SAFE_PROBABILITY, FailureBoundary
from search.scaling.laws import LinearLaw, percentile_interval
from search.scaling.prediction import Interval, ParamPrediction, Prediction
from search.scaling.size_map import SizeMap, resize, snap_to_size
from search.scaling.transforms import compute_of, inverse, snap

if TYPE_CHECKING:  # the rules model calls this module; only its types are needed here
    from search.scaling.backtest import Backtest
    from search.scaling.rules import HyperparameterRule, ScalingRules


@dataclass
class _Target:
    """Where to predict: compute C and, when known, N and D; ``explicit_size`` when the
    caller gave N and D (rather than taking them from the allocation)."""

    compute: float | None
    n_params: Interval | None = None
    tokens: Interval | None = None
    explicit_size: bool = False
    warnings: list[str] = field(default_factory=list)


def predict_rules(
    rules: ScalingRules,
    *,
    compute: float | None,
    n_params: float | None,
    tokens: float | None,
) -> Prediction:
    target = _resolve_target(rules, compute=compute, n_params=n_params, tokens=tokens)
    values = {rule.name: _predict_param(rule, target) for rule in rules.hyperparameters}
    if rules.size_map is not None and target.n_params is not None:
        values |= _sized(rules, rules.size_map, values, target.n_params)
    loss, loss_source = _predict_loss(rules, target)
    params = {name: value.value for name, value in values.items()}
    axes = rules.axes
    if axes.n_params is not None and target.n_params is not None:
        assert axes.tokens is not None and target.tokens is not None  # declared together
        params[axes.n_params] = target.n_params.estimate
        params[axes.tokens] = target.tokens.estimate
    if axes.compute is not None and target.compute is not None:
        params[axes.compute] = target.compute
    warnings = list(target.warnings)
    warnings += [f"{name}: {v.source}" for name, v in values.items() if not v.supported]
    failure = None
    boundary = rules.failure_boundary
    if boundary is not None and boundary.covers(params):
        failure, held = _inside_failure_boundary(rules, boundary, values, params)
        if held is not None:
            warnings.append(held)
    return Prediction(
        compute=target.compute,
        n_params=target.n_params,
        tokens=target.tokens,
        params=params,
        values=values,
        loss=loss,
        loss_source=loss_source,
        extrapolation_decades=_extrapolation(rules, target),
        warnings=warnings,
        failure_probability=failure,
    )


def _inside_failure_boundary(
    rules: ScalingRules,
    boundary: FailureBoundary,
    values: dict[str, ParamPrediction],
    params: dict[str, Any],
) -> tuple[float, str | None]:
    """P(fail) of ``params`` and, when it is over one half, the hyperparameter that
    moves the boundary most set to where it is ``SAFE_PROBABILITY`` (inside its declared
    limits), in ``values`` and ``params`` both; the warning that says so, else None."""
    probability = boundary.probability(params)
    if probability <= 0.5:
        return probability, None
    shape = set(rules.size_map.slopes) if rules.size_map is not None else set()
    movable = [r.name for r in rules.hyperparameters if r.kind != "choice" and r.name not in shape]
    name = boundary.strongest(movable)
    past = (
        f"the study's failed runs ({boundary.n_failed} of {boundary.n_runs}) put this "
        f"configuration past their boundary (P(fail) {probability:.2f})"
    )
    if name is None:
        return probability, f"{past}; no hyperparameter of the rules moves it"
    rule, old = rules.rule(name), values[name]
    before = float(params[name])
    raw = boundary.value_at(params, name, SAFE_PROBABILITY)
    moved = _within_limits(rule, raw)
    safe = {**params, name: snap(rule.kind, rule.multiple_of, moved)}
    after = boundary.probability(safe)
    if after > 0.5:  # even at its limit: the boundary is not this parameter's to move
        return probability, f"{past}; {name} cannot move it within its limits"
    params[name] = safe[name]
    values[name] = old.model_copy(
        update={
            "value": params[name],
            "estimate": None if old.estimate is None else moved,
            **_safe_side(old, moved, down=moved < before),
            "clipped": old.clipped or moved != raw,
            "source": f"{old.source}; held inside the study's failure boundary",
        }
    )
    return after, (
        f"{name} {before:.4g} -> {params[name]:.4g}: {past}; at {params[name]:.4g} "
        f"P(fail) is {after:.2f}"
    )


def _positive(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InvalidParamsError(f"{name} must be a finite positive number, got {value!r}")


def _resolve_target(rules, *, compute, n_params, tokens) -> _Target:
    for name, value in (("compute", compute), ("n_params", n_params), ("tokens", tokens)):
        _positive(name, value)
    if (n_params is None) != (tokens is None):
        raise InvalidParamsError("give n_params and tokens together, or compute alone")
    if n_params is not None:
        if not rules.axes.has_size_and_tokens:
            raise InvalidParamsError(
                "these rules were learned on a compute axis only; predict(compute=...)"
            )
        if compute is None and rules.axes.compute is None:
            compute = compute_of(n_params, tokens)
        exact = [Interval(estimate=v, low=v, high=v) for v in (n_params, tokens)]
        return _Target(compute, exact[0], exact[1], explicit_size=True)
    if compute is None:
        raise InvalidParamsError("give compute=..., or n_params=... and tokens=...")
    target = _Target(compute)
    if rules.axes.has_size_and_tokens:
        _allocate(rules, target)
    return target


def _law_interval(law: LinearLaw, features: list[float]) -> Interval:
    """A log-space law's estimate and interval, mapped back with exp."""
    estimate, low, high = law.predict(np.array([features]))
    return Interval(
        estimate=float(np.exp(estimate[0])), low=float(np.exp(low[0])), high=float(np.exp(high[0]))
    )


def _allocate(rules: ScalingRules, target: _Target) -> None:
    """N* and D* at the target compute: the fitted allocation, else the parametric law."""
    allocation = rules.allocation
    assert target.compute is not None  # _resolve_target gives it before allocating
    log_c = math.log(target.compute)
    if allocation is not None and allocation.note is not None:
        target.warnings.append(f"N* and D*: {allocation.note}")
    if allocation is not None and allocation.n_params is not None and allocation.tokens:
        target.n_params = _law_interval(allocation.n_params, [log_c])
        target.tokens = _law_interval(allocation.tokens, [log_c])
        return
    if rules.parametric is not None and rules.axes.compute is None:
        target.n_params, target.tokens = _parametric_allocation(rules, target.compute)
        target.warnings.append("N* and D* come from the parametric L(N, D) law")
        return
    if allocation is not None and rules.axes.compute is None:
        one = _one_law_allocation(allocation, target.compute)
        if one is not None:
            target.n_params, target.tokens, note = one
            target.warnings.append(note)
            return
    target.warnings.append("no supported allocation: N* and D* are not predicted")


def _one_law_allocation(allocation, compute: float) -> tuple[Interval, Interval, str] | None:
    """N* and D* from the one of their laws that is supported, the other from
    ``C = 6 N D`` (its interval the mirror of the supported one's); None when neither is."""
    scaled = compute / FLOPS_PER_PARAM_TOKEN
    log_c = [math.log(compute)]

    def mirror(interval: Interval) -> Interval:
        return Interval(
            estimate=scaled / interval.estimate,
            low=scaled / interval.high,
            high=scaled / interval.low,
        )

    if allocation.tokens is not None:
        tokens = _law_interval(allocation.tokens, log_c)
        why = allocation.n_params_reason
        return mirror(tokens), tokens, f"N* is C / 6 D*(C) (its own law: {why})"
    if allocation.n_params is not None:
        n_params = _law_interval(allocation.n_params, log_c)
        why = allocation.tokens_reason
        return n_params, mirror(n_params), f"D* is C / 6 N*(C) (its own law: {why})"
    return None


def _parametric_allocation(rules: ScalingRules, compute: float) -> tuple[Interval, Interval]:
    fit = rules.parametric
    assert fit is not None
    draws = derived_quantities(np.asarray(fit.bootstrap))
    scaled = compute / FLOPS_PER_PARAM_TOKEN
    n_draws = draws["G"] * scaled ** draws["a"]
    n_low, n_high = percentile_interval(n_draws[np.isfinite(n_draws)], rules.level)
    n_star, d_star = fit.compute_optimal(np.array([compute]))
    return (
        Interval(estimate=float(n_star[0]), low=float(n_low), high=float(n_high)),
        Interval(estimate=float(d_star[0]), low=float(scaled / n_high), high=float(scaled / n_low)),
    )


def _predict_param(rule: HyperparameterRule, target: _Target) -> ParamPrediction:
    if not rule.supported:
        return _best_observed(rule, f"unsupported ({rule.reason}); best observed value used")
    if rule.choice is not None:
        share = f"{rule.choice.frequency:.0%}"
        return ParamPrediction(
            value=rule.choice.value, source=f"most frequent on the efficient set ({share})"
        )
    law, features, source = _pick_law(rule, target)
    if law is None:
        return _best_observed(rule, source)
    raw = [float(inverse(rule.transform, v[0])) for v in law.predict([features])]
    estimate, low, high = (_within_limits(rule, v) for v in raw)
    clipped = [a != b for a, b in zip(raw, (estimate, low, high), strict=True)]
    if clipped[0]:
        source += f" (clipped to the declared limit {estimate:.4g}; the law says {raw[0]:.4g})"
    elif any(clipped):
        source += " (interval clipped to the declared limits)"
    return ParamPrediction(
        value=snap(rule.kind, rule.multiple_of, estimate),
        estimate=estimate,
        low=low,
        high=high,
        clipped=any(clipped),
        source=source,
    )


def _sized(
    rules: ScalingRules, size_map: SizeMap, values: dict[str, ParamPrediction], size: Interval
) -> dict[str, ParamPrediction]:
    """The shape parameters moved from their own predictions to the model size N*
    (``search.scaling.size_map``): N is a metric, so only they can set it."""
    shape = {name: rules.rule(name) for name in size_map.slopes}
    start = {name: _numeric(values[name]) for name in shape}
    spread = {
        name: math.log(rule.observed_high / rule.observed_low)
        for name, rule in shape.items()
        if rule.observed_low and rule.observed_high
    }
    limits = {name: (rule.limit_min, rule.limit_max) for name, rule in shape.items()}

    def at(n_params: float) -> dict[str, float]:
        return resize(size_map, start, math.log(n_params), spread=spread, limits=limits)

    estimate, low, high = at(size.estimate), at(size.low), at(size.high)
    grid = {name: (str(rule.kind), rule.multiple_of) for name, rule in shape.items()}
    snapped = snap_to_size(size_map, estimate, math.log(size.estimate), grid=grid, limits=limits)
    reached = math.exp(size_map.log_size(snapped))
    source = (
        f"sized to N* {size.estimate:.3g} by the size map (R^2 {size_map.r_squared:.3f}; "
        f"N {reached:.3g} on the grid)"
    )
    return {
        name: ParamPrediction(
            value=snap(rule.kind, rule.multiple_of, snapped[name]),
            estimate=estimate[name],
            low=min(low[name], high[name]),
            high=max(low[name], high[name]),
            clipped=any(
                limit is not None and math.isclose(estimate[name], limit) for limit in limits[name]
            ),
            source=source,
        )
        for name, rule in shape.items()
    }


def _safe_side(old: ParamPrediction, moved: float, *, down: bool) -> dict[str, float | None]:
    """``old``'s interval cut at ``moved`` to the side the failure boundary allows. Where
    the whole of it lay past the boundary, a law's interval shrinks to ``moved`` (the
    law is contradicted by the failures; a supported value always has an interval) and
    a best observed value's range is dropped."""
    if old.low is None or old.high is None:
        return {"low": None, "high": None}
    low, high = old.low, old.high
    if down and low < moved:
        return {"low": low, "high": min(high, moved)}
    if not down and high > moved:
        return {"low": max(low, moved), "high": high}
    if old.estimate is not None:
        return {"low": moved, "high": moved}
    return {"low": None, "high": None}


def _numeric(value: ParamPrediction) -> float:
    """A numeric parameter's continuous prediction, else its value (no law)."""
    if value.estimate is not None:
        return value.estimate
    assert isinstance(value.value, int | float)  # the size map holds numeric parameters only
    return float(value.value)


def _best_observed(rule: HyperparameterRule, source: str) -> ParamPrediction:
    """No law: the best observed value, with the near-best runs' range as its interval."""
    return ParamPrediction(
        value=rule.fallback,
        low=rule.observed_low,
        high=rule.observed_high,
        supported=False,
        source=source,
    )


def _within_limits(rule: HyperparameterRule, value: float) -> float:
    """``value`` inside the parameter's declared limits (and (0, 1) for a logit one)."""
    low, high = rule.limit_min, rule.limit_max
    if low is not None and value < low:
        return float(low)
    if high is not None and value > high:
        return float(high)
    return float(value)


def _pick_law(rule: HyperparameterRule, target: _Target):
    """The (N, D) law when the caller gave N and D and it is supported, else C's law."""
    if target.explicit_size and rule.vs_size_tokens is not None:
        assert target.n_params is not None and target.tokens is not None  # the caller's
        features = [math.log(target.n_params.estimate), math.log(target.tokens.estimate)]
        return rule.vs_size_tokens, features, "law in ln N and ln D"
    if target.compute is not None and rule.vs_compute is not None:
        return rule.vs_compute, [math.log(target.compute)], "law in ln C"
    return None, [], "no law applies at this target (give compute=...)"


def _predict_loss(rules: ScalingRules, target: _Target) -> tuple[Interval | None, str | None]:
    """The loss at the target, and where it comes from.

    Wherever the target has a model size and ``L(N, D)`` was fitted, the loss is
    ``L(N, D)`` there: it corrects each run to its optimal hyperparameters and uses every
    well-tuned run. Its interval is its bootstrap's, reaching as far as its backtest on
    the study's own top half decade carries it beyond the data (``_stray``). The loss
    frontier ``L*(C)`` through the front is not used beside it: the front holds the runs
    the search happened to tune best, so it sits above the optimum by what they miss
    (on engine studies of the testbed a median 8% high at 100x), and an interval
    stretched to span it was twice as wide for coverage past the 90% asked
    (docs/scaling-rules.md, "The loss at a target"). Without ``L(N, D)``, the frontier.
    """
    if target.n_params is not None and rules.parametric is not None:
        return _parametric_loss(rules, target), "parametric L(N, D)"
    if target.compute is not None and rules.loss_frontier is not None:
        return _frontier_loss(rules, target), "loss frontier L*(C)"
    return None, None


def _parametric_loss(rules: ScalingRules, target: _Target) -> Interval:
    """``L(N, D)`` at the target with its bootstrap interval, reaching as far as its
    backtest carries it beyond the data (``_stray``)."""
    assert rules.parametric is not None
    assert target.n_params is not None and target.tokens is not None
    n_params, tokens = target.n_params.estimate, target.tokens.estimate
    estimate, low, high = rules.parametric.predict_loss(np.array([n_params]), np.array([tokens]))
    interval = Interval(estimate=float(estimate[0]), low=float(low[0]), high=float(high[0]))
    compute = compute_of(n_params, tokens)
    return _stray(rules, interval, rules.parametric_backtest, "L(N, D)", compute, target)


def _frontier_loss(rules: ScalingRules, target: _Target) -> Interval:
    """``L*(C)``'s estimate and interval at the target's compute; where the front shows
    no floor (E not identified) and that compute lies beyond the front, the interval
    reaches up to the frontier at the front's largest compute: a pure power law keeps
    falling at the rate it had, the truth with a floor falls ever slower, and no more
    than "no gain from more compute" can be said. It reaches as far as its backtest
    carries it too."""
    frontier, compute = rules.loss_frontier, target.compute
    assert frontier is not None and compute is not None
    estimate, low, high = frontier.predict(np.array([compute]))
    upper = float(high[0])
    if frontier.E_reason is not None and compute > frontier.compute_max:
        upper = max(upper, float(frontier.predict(np.array([frontier.compute_max]))[0][0]))
    interval = Interval(estimate=float(estimate[0]), low=float(low[0]), high=upper)
    return _stray(rules, interval, rules.loss_frontier_backtest, "L*(C)", compute, target)


def _stray(
    rules: ScalingRules,
    interval: Interval,
    backtest: Backtest | None,
    law: str,
    compute: float,
    target: _Target,
) -> Interval:
    """``interval`` of ``law``'s loss at ``compute``, reaching as far as the law's
    backtest bias may carry its estimate beyond the law's largest compute; a warning
    says so where that moves it by 1% or more (``search.scaling.backtest``)."""
    if backtest is None:
        return interval
    # From the law's own points, in their unit of compute (6ND for L(N, D), the
    # compute axis for L*(C)).
    beyond = math.log10(compute / backtest.compute_max)
    if beyond <= 0:
        return interval
    least, most = backtest.stray(beyond, level=rules.level)
    # The loss the law's stray could reach at the interval's level: lower where the
    # law ran high (most > 0), higher where it ran low (least < 0).
    reach_low = interval.estimate * math.exp(-most)
    reach_high = interval.estimate * math.exp(-least)
    if max(abs(least), abs(most)) >= 0.01:
        target.warnings.append(
            f"loss: {law} refitted to its points below {backtest.cut_compute:.3g} ran "
            f"{backtest.bias_per_decade:+.1%} (se {backtest.bias_se:.1%}) per decade on "
            f"the {backtest.n_held_out} above (positive: too high); {beyond:.2f} decades "
            f"out, the interval reaches [{reach_low:.4g}, {reach_high:.4g}]"
        )
    return Interval(
        estimate=interval.estimate,
        low=min(interval.low, reach_low),
        high=max(interval.high, reach_high),
    )


def _extrapolation(rules: ScalingRules, target: _Target) -> float:
    """Decades beyond the observed range (0 inside it), the largest over the axes."""
    observed = rules.observed
    pairs: list[tuple[float | None, float | None, float | None]] = [
        (target.compute, observed.compute_min, observed.compute_max)
    ]
    if target.n_params is not None and target.tokens is not None:
        pairs.append((target.n_params.estimate, observed.n_params_min, observed.n_params_max))
        pairs.append((target.tokens.estimate, observed.tokens_min, observed.tokens_max))
    decades = [
        max(math.log10(value / high), math.log10(low / value), 0.0)
        for value, low, high in pairs
        if value is not None and low is not None and high is not None
    ]
    return max(decades, default=0.0)
