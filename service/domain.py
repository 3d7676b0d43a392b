"""The service's domain: study specs, trial and study lifecycles, row <-> engine conversion.

Trial lifecycle (``TrialState``), every change goes through ``check_transition``::

    WAITING ──dispatch/ask──> RUNNING ──result──> COMPLETE | FAILED
       │   └──late result of an earlier attempt──> COMPLETE | FAILED
       └──cancel──> CANCELLED   RUNNING ──reclaim (infrastructure, attempts left)──> WAITING

WAITING trials are proposals asked ahead of need (the buffer) or retries waiting for a
worker; RUNNING trials hold a lease (``lease_expires_at``) renewed by heartbeats.
COMPLETE, FAILED and CANCELLED are final: a late or duplicate result changes nothing.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search.settings import SearchSettings
from search.space import SearchSpace
from search.types import Observation


class TrialState(enum.StrEnum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class StudyState(enum.StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    COMPLETE = "COMPLETE"


FINAL_TRIAL_STATES = frozenset({TrialState.COMPLETE, TrialState.FAILED, TrialState.CANCELLED})
FINAL_STUDY_STATES = frozenset({StudyState.STOPPED, StudyState.COMPLETE})

_TRIAL_TRANSITIONS: dict[TrialState, frozenset[TrialState]] = {
    # WAITING -> COMPLETE/FAILED: a late result of an earlier attempt of a requeued
    # trial; the first valid result wins.
    TrialState.WAITING: frozenset(
        {TrialState.RUNNING, TrialState.CANCELLED, TrialState.COMPLETE, TrialState.FAILED}
    ),
    TrialState.RUNNING: frozenset({TrialState.COMPLETE, TrialState.FAILED, TrialState.WAITING}),
    TrialState.COMPLETE: frozenset(),
    TrialState.FAILED: frozenset(),
    TrialState.CANCELLED: frozenset(),
}

_STUDY_TRANSITIONS: dict[StudyState, frozenset[StudyState]] = {
    StudyState.RUNNING: frozenset({StudyState.PAUSED, StudyState.STOPPED, StudyState.COMPLETE}),
    StudyState.PAUSED: frozenset({StudyState.RUNNING, StudyState.STOPPED}),
    StudyState.STOPPED: frozenset(),
    StudyState.COMPLETE: frozenset(),
}


class InvalidTransitionError(ValueError):
    """A trial or study was asked to move to a state its lifecycle forbids."""


class StudyNotFoundError(LookupError):
    """No study has this id."""


class TrialNotFoundError(LookupError):
    """No trial has this id."""


def check_trial_transition(current: TrialState, target: TrialState) -> None:
    if target not in _TRIAL_TRANSITIONS[current]:
        raise InvalidTransitionError(f"a {current} trial cannot become {target}")


def check_study_transition(current: StudyState, target: StudyState) -> None:
    if target not in _STUDY_TRANSITIONS[current]:
        raise InvalidTransitionError(f"a {current} study cannot become {target}")


class Budget(BaseModel):
    """When a study stops asking for trials: a trial count, a total cost, or both."""

    model_config = ConfigDict(extra="forbid")

    max_trials: int | None = Field(None, ge=1, description="trials dispatched, at most")
    max_cost: float | None = Field(
        None, gt=0, description="total cost (cost unit: GPU-seconds) spent, at most"
    )

    @model_validator(mode="after")
    def _needs_a_limit(self) -> Self:
        if self.max_trials is None and self.max_cost is None:
            raise ValueError("budget needs max_trials, max_cost or both")
        return self


class ScalingAxesSpec(BaseModel):
    """Names (of parameters or metrics) that measure model size, tokens and compute."""

    model_config = ConfigDict(extra="forbid")

    n_params: str | None = None
    tokens: str | None = None
    compute: str | None = None


class WarmStartSpec(BaseModel):
    """Seed a study from a finished one's rules: its space centred where they point."""

    model_config = ConfigDict(extra="forbid")

    study_id: int = Field(ge=1, description="a finished study with scaling rules")
    compute: float | None = Field(
        None, gt=0, description="centre at this compute; None: 10x the source's largest"
    )


class StudySpec(BaseModel):
    """Everything a study is created from: the API body and the CLI's study file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    objective: str = Field(min_length=1, description="registered objective name")
    space: SearchSpace | None = Field(None, description="None: the objective's default")
    scaling: ScalingAxesSpec = Field(default_factory=ScalingAxesSpec)
    budget: Budget
    in_flight: int = Field(4, ge=1, le=10_000, description="trials running at once, at most")
    executor: Literal["workers", "external"] = Field(
        "workers", description="workers: dispatched to Celery; external: ask/tell only"
    )
    queue: str = Field("trials", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    seed: int = Field(0, ge=0)
    max_trial_cost: float | None = Field(None, gt=0, description="per-trial cost ceiling")
    soft_time_limit_s: float | None = Field(None, gt=0)
    time_limit_s: float | None = Field(None, gt=0)
    objective_options: dict[str, Any] = Field(default_factory=dict)
    allow_negative_loss: bool = Field(
        False,
        description="the loss is a signed metric (a log-likelihood, a negated reward): a "
        "negative loss is data, not an error; no scaling rules are fitted to such losses",
    )
    search: dict[str, Any] = Field(
        default_factory=dict, description="extra SearchSettings fields (n_startup, ...)"
    )
    warm_start: WarmStartSpec | None = Field(
        None, description="re-centre the space on a finished study's rules (recorded here)"
    )

    @field_validator("search")
    @classmethod
    def _search_settings_that_build(cls, search: dict[str, Any]) -> dict[str, Any]:
        """Checked here, not first by the scheduler's first step (which would then fail
        on every tick): each field must be one of ``SearchSettings`` with a valid value,
        except those the study itself sets."""
        owned = {"seed": "the study's seed", "max_suggestion_cost": "the study's max_trial_cost"}
        owned["lease_seconds"] = "the service"
        taken = sorted(owned.keys() & search.keys())
        if taken:
            raise ValueError(f"search.{taken[0]} cannot be given here: {owned[taken[0]]} sets it")
        try:
            SearchSettings.model_validate(search)
        except ValidationError as exc:
            raise ValueError(
                "; ".join(
                    f"search.{'.'.join(str(part) for part in error['loc']) or '*'}: {error['msg']}"
                    for error in exc.errors(include_url=False)
                )
            ) from exc
        return search


def trial_observation(
    *,
    params: dict[str, Any],
    loss: float | None,
    cost: float,
    failed: bool,
    suggestion_id: str | None,
    metrics: dict[str, Any] | None,
) -> Observation:
    """An engine observation from a finished trial's stored values."""
    numeric = {k: float(v) for k, v in (metrics or {}).items() if _is_number(v)}
    return Observation(
        params=dict(params),
        loss=math.nan if failed or loss is None else float(loss),
        cost=float(cost),
        failed=failed,
        suggestion_id=suggestion_id,
        metrics=numeric,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
