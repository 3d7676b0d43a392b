"""What ``ScalingRules.predict`` returns: a full configuration with an interval per value."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Interval(BaseModel):
    """An estimate with its interval (at the rules' level)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    estimate: float
    low: float
    high: float


class ParamPrediction(BaseModel):
    """One recommended value: ``value`` is ready to use (ints and powers of two snapped,
    a choice's value); ``estimate``/``low``/``high`` are the continuous optimum and its
    interval, inside the parameter's declared limits (``clipped`` says a limit cut them).
    For a rule without a law (unsupported) ``estimate`` is None, ``value`` the best
    observed value and ``low``/``high`` the range of the near-best runs; for choices all
    three are None. ``source`` says where the value came from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: str | int | float | bool
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    supported: bool = True
    clipped: bool = False
    source: str


class Prediction(BaseModel):
    """A full recommended configuration at a target scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    compute: float | None
    n_params: Interval | None = None
    tokens: Interval | None = None
    params: dict[str, Any]
    values: dict[str, ParamPrediction]
    loss: Interval | None = None
    loss_source: str | None = None
    extrapolation_decades: float
    warnings: list[str] = Field(default_factory=list)
    # P(fail) of ``params`` by the study's failure boundary (None without one, or
    # without N and D to read it at): search.scaling.failure_boundary.
    failure_probability: float | None = None
