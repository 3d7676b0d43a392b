"""Warm start: centre a new, larger study where the rules point."""

from __future__ import annotations

from typing import Any

from search.scaling.rules import ScalingRules
from search.space import SearchSpace


def _clip(param: Any, value: Any) -> Any:
    """Keep the new centre inside the parameter's own bounds (the space stays valid)."""
    if param.kind == "choice" or isinstance(value, bool):
        return value if value in getattr(param, "choices", [value]) else param.center
    low = param.min if param.min is not None else value
    high = param.max if param.max is not None else value
    return type(value)(min(max(value, low), high))


def warm_start_space(rules: ScalingRules, space: SearchSpace, *, compute: float) -> SearchSpace:
    """``space`` re-centred on the rules' recommendation at ``compute``.

    Parameters the rules say nothing about keep their centre; a recommendation outside
    a parameter's bounds is clipped to them (widen the bounds to follow the rules
    further). Scales and bounds are unchanged.
    """
    prediction = rules.predict(compute=compute)
    centre = {
        param.name: _clip(param, prediction.params[param.name])
        for param in space.params
        if param.name in prediction.params
    }
    return space.with_center(centre)
