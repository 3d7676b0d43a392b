"""The service's domain: study specs, trial and study lifecycles, row -> engine conversion.

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
import functools
import json
import logging
import math
from collections.abc import Iterable
from typing import Any, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search.errors import InvalidObservationError
from search.history import make_observation
from search.settings import SearchSettings
from search.space import SearchSpace
from search.types import MAX_ABS_LOSS, MAX_COST, MIN_COST, Observation, Suggestion
from service.storable import StorableBody
from service.storage.tables import MAX_ROW_ID, TrialRow

logger = logging.getLogger(__name__)


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


# Upper limits of a study's values (docs/reliability.md, "Limits"). Each keeps a value
# the service must act on finite and storable: a trial's lease is its time limit, so an
# unbounded one could never be reclaimed; a seed is a 64-bit integer; a budget of 1e23
# trials or 10 000 in flight is a typo, not a plan.
MAX_TRIALS = 1_000_000
MAX_IN_FLIGHT = 1024
MAX_SEED = 2**63 - 1
MAX_TIME_LIMIT_S = 30 * 24 * 3600.0  # 30 days
MAX_NAME_LENGTH = 200  # the width of the name, objective and queue columns


class Budget(BaseModel):
    """When a study stops asking for trials: a trial count, a total cost, or both."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_trials: int | None = Field(
        None, ge=1, le=MAX_TRIALS, description="trials dispatched, at most"
    )
    max_cost: float | None = Field(
        None,
        gt=0,
        le=MAX_COST,
        description="total cost (cost unit: GPU-seconds) spent, at most",
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

    @property
    def declared(self) -> bool:
        """Whether any axis is named: the study's scaling rules will be fitted."""
        return any(name is not None for name in (self.n_params, self.tokens, self.compute))


class WarmStartSpec(BaseModel):
    """Seed a study from a finished one's rules: its space centred where they point."""

    model_config = ConfigDict(extra="forbid")

    study_id: int = Field(ge=1, le=MAX_ROW_ID, description="a finished study with scaling rules")
    compute: float | None = Field(
        None, gt=0, description="centre at this compute; None: 10x the source's largest"
    )


class StudySpec(StorableBody):
    """Everything a study is created from: the API body and the CLI's study file."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    objective: str = Field(
        min_length=1, max_length=MAX_NAME_LENGTH, description="registered objective name"
    )
    space: SearchSpace | None = Field(None, description="None: the objective's default")
    scaling: ScalingAxesSpec = Field(default_factory=ScalingAxesSpec)
    budget: Budget
    in_flight: int = Field(4, ge=1, le=MAX_IN_FLIGHT, description="trials running at once, at most")
    executor: Literal["workers", "external"] = Field(
        "workers", description="workers: dispatched to Celery; external: ask/tell only"
    )
    queue: str = Field(
        "trials", min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[A-Za-z0-9_.\-]+$"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED)
    max_trial_cost: float | None = Field(
        None, gt=0, le=MAX_COST, description="per-trial cost ceiling"
    )
    soft_time_limit_s: float | None = Field(None, gt=0, le=MAX_TIME_LIMIT_S)
    time_limit_s: float | None = Field(
        None, gt=0, le=MAX_TIME_LIMIT_S, description="a trial's hard limit, and its lease"
    )
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


def spec_error(raw: dict[str, Any]) -> str | None:
    """Why a stored spec no longer loads as a ``StudySpec`` (a rule added since the study
    was stored, or a row written by hand), or None. Such a study cannot run (the
    scheduler stops it); the read routes still show it, with this as its ``error``.

    Memoised on the spec's JSON text: a list of hundreds of studies, polled by
    dashboards, would otherwise validate every spec on every poll (~0.5 ms each)."""
    return _spec_error(json.dumps(raw, sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _spec_error(text: str) -> str | None:
    try:
        StudySpec.model_validate(json.loads(text))
    except ValidationError as exc:
        return "the stored spec no longer loads: " + describe_errors(exc)
    return None


def describe_errors(exc: ValidationError) -> str:
    """A validation error in one line: ``field.path: message; ...``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(spec)'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def result_problem(
    *, failed: bool, loss: float | None, cost: float, signed: bool = True
) -> str | None:
    """Why a trial's reported result cannot be recorded as it stands, or None.

    The one rule for results, wherever they come from: ``tell`` refuses such a result
    (422) and a worker's is recorded as a FAILED trial with this reason
    (``service.orchestration.results``). A completed trial needs a finite loss within
    +-``MAX_ABS_LOSS`` (and >= 0 unless the study's loss is ``signed``) and a cost within
    [``MIN_COST``, ``MAX_COST``]: the engine refuses anything else, so a trial recorded
    COMPLETE with it would sit on the front without ever being learned from. A failed
    trial's cost may be 0 (it crashed at once) but not negative or past ``MAX_COST``.
    """
    if not math.isfinite(cost) or cost < 0:
        return f"cost {cost} is not a finite cost >= 0"
    if cost > MAX_COST:
        return f"a cost beyond {MAX_COST:g} cannot be modelled: report it in a larger unit"
    if failed:
        return None
    if loss is None or not math.isfinite(loss):
        return f"a completed trial needs a finite loss, got {loss}; send failed=true otherwise"
    if abs(loss) > MAX_ABS_LOSS:
        return f"a loss beyond +-{MAX_ABS_LOSS:g} cannot be modelled: rescale it"
    if cost < MIN_COST:
        return (
            f"cost {cost:g} of a completed trial is below {MIN_COST:g}: the engine needs what "
            "it cost; report it in a smaller unit"
        )
    if loss < 0 and not signed:
        return (
            f"negative loss reported: {loss}; a loss is minimised and, unless the study "
            "declares it signed, >= 0 (a log-likelihood is sent negated); if this metric is "
            "signed (a negated reward), create the study with allow_negative_loss: true"
        )
    return None


# Reasons of trials the engine did not suggest. An imported run is learned from as an
# observation of its own (no suggestion id); a verification trial, an extra run after the
# study completed, is never learned from (the engine stays as it was at completion).
IMPORTED_REASON = "imported"
VERIFICATION_REASON = "verification"
# A failed trial still cost something; the engine needs a positive cost to learn from it.
MIN_FAILED_COST = 1e-6


def trial_observation(
    *,
    params: dict[str, Any],
    loss: float | None,
    cost: float,
    failed: bool,
    suggestion_id: str | None,
    metrics: dict[str, Any] | None,
    reason: str | None = None,
) -> Observation:
    """The engine's observation of a finished trial's stored values (a row, or the API's
    view of one), or ``InvalidObservationError`` if the engine cannot learn from them.

    Deterministic in the stored values: an engine checks that the history it is rebuilt
    from starts with the losses and costs it took in (``search.history.digest``). A
    failed trial's cost is at least ``MIN_FAILED_COST`` (it may have crashed at once);
    only numeric metrics are kept.
    """
    numeric = {k: float(v) for k, v in (metrics or {}).items() if _is_number(v)}
    return make_observation(
        params,
        None if failed else loss,
        max(cost, MIN_FAILED_COST) if failed else cost,
        failed=failed,
        suggestion_id=suggestion_id,
        reason=reason,
        metrics=numeric,
    )


class FinishedTrial(Protocol):
    """A finished trial's stored values: a ``TrialRow``, or the columns of one
    (``repository.finished_results``)."""

    @property
    def id(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def failure_kind(self) -> str | None: ...
    @property
    def suggestion_id(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def loss(self) -> float | None: ...
    @property
    def cost_seconds(self) -> float | None: ...
    @property
    def metrics(self) -> dict[str, Any]: ...


def row_observation(trial: FinishedTrial) -> Observation:
    """``trial_observation`` of a finished trial row; an imported run carries no
    suggestion id (the engine did not suggest it)."""
    return trial_observation(
        params=trial.params,
        loss=trial.loss,
        cost=trial.cost_seconds or 0.0,
        failed=trial.state == TrialState.FAILED,
        suggestion_id=None if trial.reason == IMPORTED_REASON else trial.suggestion_id,
        reason=trial.reason,
        metrics=trial.metrics,
    )


def learns_from(trial: FinishedTrial) -> bool:
    """Whether the engine learns from ``trial``: COMPLETE, or FAILED through its
    configuration's fault (an infrastructure failure says nothing about it); never a
    verification trial."""
    if trial.reason == VERIFICATION_REASON:
        return False
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAILED and trial.failure_kind != "infrastructure"
    )


def learned_observations(trials: Iterable[FinishedTrial]) -> list[Observation]:
    """The observations the engine learns from among ``trials``, in their order: the
    one row-to-observation conversion of the service. A row whose values the engine
    refuses is left out (and logged once)."""
    out = []
    for trial in trials:
        if not learns_from(trial):
            continue
        try:
            out.append(row_observation(trial))
        except InvalidObservationError as exc:
            _log_unlearnable(trial.id, str(exc))
    return out


def pending_suggestion(trial: TrialRow) -> Suggestion:
    """The engine suggestion an unfinished (WAITING or RUNNING) trial holds; its lease is
    the trial's, kept by the service (``expires_at`` None)."""
    return Suggestion(
        suggestion_id=trial.suggestion_id,
        params=dict(trial.params),
        reason=trial.reason,
        predicted_loss=trial.predicted_loss,
        predicted_cost=trial.predicted_cost,
    )


def holds_engine_suggestion(trial: TrialRow) -> bool:
    return trial.reason not in (IMPORTED_REASON, VERIFICATION_REASON)


@functools.lru_cache(maxsize=1024)
def _log_unlearnable(trial_id: int, why: str) -> None:
    """Log a trial the engine cannot learn from, once per process (steps rebuild the
    history every time)."""
    logger.warning("trial %s is left out of what the engine learns from: %s", trial_id, why)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
