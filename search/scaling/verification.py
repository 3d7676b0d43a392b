"""Check rules before the big run: one trial beyond the observed budget, then compare.

``verification_trial`` proposes the configuration the rules recommend at
``scale_factor`` times the largest compute observed; the study runs it like any
trial; ``verify`` reports the predicted loss (with its interval) against the loss
actually observed, so a user sees whether the rules held before spending 100x.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from search.errors import InvalidParamsError, NotEnoughDataError
from search.scaling.rules import Interval, ScalingRules
from search.space import SearchSpace
from search.types import Observation, Params


class VerificationReport(BaseModel):
    """Predicted vs observed loss of one trial run at a scale the rules had not seen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    compute: float | None
    extrapolation_decades: float
    predicted: Interval | None
    loss_source: str | None
    observed_loss: float | None
    within_interval: bool
    relative_error: float | None
    message: str


def verification_trial(
    rules: ScalingRules, space: SearchSpace, *, scale_factor: float = 4.0
) -> Params:
    """The recommended configuration at ``scale_factor`` x the largest observed compute.

    Values follow the rules even beyond the space's bounds (the point is to go beyond
    what was searched); ints and powers of two are on their grids. Raises
    NotEnoughDataError when an axis that is a parameter of the space cannot be set
    (no supported allocation for N and D).
    """
    if not (math.isfinite(scale_factor) and scale_factor > 1.0):
        raise InvalidParamsError(f"scale_factor must be > 1, got {scale_factor!r}")
    prediction = rules.predict(compute=scale_factor * rules.observed.compute_max)
    missing = [name for name in space.names if name not in prediction.params]
    if missing:
        raise NotEnoughDataError(
            f"the rules cannot set {missing} at this compute: {'; '.join(prediction.warnings)}"
        )
    return {name: _on_grid(space, name, prediction.params[name]) for name in space.names}


def _on_grid(space: SearchSpace, name: str, value):
    param = next(p for p in space.params if p.name == name)
    if param.kind == "pow2":
        return int(2 ** round(math.log2(max(float(value), 1.0))))
    if param.kind == "int":
        return int(round(float(value) / param.multiple_of) * param.multiple_of)
    return value


def _axis_value(name: str | None, observation: Observation) -> float | None:
    if name is None:
        return None
    for source in (observation.params, observation.metrics):
        if name in source:
            return float(source[name])
    if name == "cost":
        return float(observation.cost)
    raise InvalidParamsError(f"the observation has no {name!r} (a scaling axis of the rules)")


def verify(rules: ScalingRules, observation: Observation) -> VerificationReport:
    """Compare the rules' predicted loss at the observation's scale with its loss."""
    axes = rules.axes
    n_params, tokens = (
        _axis_value(axes.n_params, observation),
        _axis_value(axes.tokens, observation),
    )
    compute = _axis_value(axes.compute, observation)
    if n_params is not None:
        prediction = rules.predict(compute=compute, n_params=n_params, tokens=tokens)
    else:
        prediction = rules.predict(compute=compute)
    common = {
        "compute": prediction.compute,
        "extrapolation_decades": prediction.extrapolation_decades,
        "predicted": prediction.loss,
        "loss_source": prediction.loss_source,
    }
    if observation.failed or not math.isfinite(observation.loss):
        return VerificationReport(
            **common, observed_loss=None, within_interval=False, relative_error=None,
            message="the verification trial failed; the rules were not confirmed",
        )  # fmt: skip
    if prediction.loss is None:
        return VerificationReport(
            **common, observed_loss=observation.loss, within_interval=False,
            relative_error=None, message="the rules have no supported loss law to check",
        )  # fmt: skip
    return _compare(common, prediction.loss, observation.loss)


def _compare(common: dict, predicted: Interval, observed: float) -> VerificationReport:
    within = predicted.low <= observed <= predicted.high
    error = (observed - predicted.estimate) / predicted.estimate
    verdict = "within" if within else "OUTSIDE"
    message = (
        f"observed loss {observed:.4g} is {verdict} the predicted interval "
        f"[{predicted.low:.4g}, {predicted.high:.4g}] (estimate {predicted.estimate:.4g}, "
        f"error {error:+.1%})"
    )
    return VerificationReport(
        **common,
        observed_loss=observed,
        within_interval=within,
        relative_error=error,
        message=message,
    )
