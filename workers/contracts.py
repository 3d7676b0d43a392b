"""What travels on the queue: task names and the JSON payloads of a trial.

Imports neither torch nor Celery, so the service can send and receive trials by name
without loading the training stack. Payloads are plain JSON (Celery's serializer is JSON).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RUN_TRIAL_TASK = "scaletune.run_trial"
RECORD_RESULT_TASK = "scaletune.record_result"
CONTROL_QUEUE = "control"
# Where a study's trials go unless it names a queue, and what a trial worker consumes
# unless started with -Q: one name, so the defaults always meet (see workers.celery_app).
DEFAULT_TRIAL_QUEUE = "trials"


class TrialRequest(BaseModel):
    """One trial to run: ids, the registered objective's name, and the configuration."""

    model_config = ConfigDict(extra="forbid")

    study_id: int
    trial_id: int
    attempt: int = Field(0, ge=0, description="0 for the first dispatch, +1 per retry")
    objective: str = Field(min_length=1)
    params: dict[str, Any]
    seed: int = 0
    objective_options: dict[str, Any] = Field(default_factory=dict)
    soft_time_limit_s: float | None = Field(None, gt=0)
    time_limit_s: float | None = Field(None, gt=0)


class TrialResult(BaseModel):
    """The outcome of one attempt at a trial, as reported back to the service.

    ``failure_kind`` separates a configuration's fault ("config": OOM, NaN, divergence;
    learned from) from the infrastructure's ("infrastructure": retried, never blamed on
    the configuration). ``cost_seconds`` is device wall time; it is kept for failures too.
    """

    model_config = ConfigDict(extra="forbid")

    study_id: int
    trial_id: int
    attempt: int = 0
    status: Literal["completed", "failed"]
    loss: float | None = None
    cost_seconds: float = Field(ge=0)
    flops: float | None = None
    failure_kind: Literal["config", "infrastructure"] | None = None
    failure_reason: str | None = None
    curve: list[dict[str, float]] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    worker: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Make a result storable on every backend instead of refusing it: a result
        carries a finished trial's work, so it is cleaned, never dropped. PostgreSQL
        refuses NUL characters in text and non-finite numbers in JSON, which an
        objective's exception text or metrics can hold."""
        return storable_result(data) if isinstance(data, dict) else data


def storable_result(value: Any) -> Any:
    """``value`` with NUL characters replaced (U+FFFD) in every string and key, curve
    points with a non-finite value dropped, and other non-finite numbers turned into
    None. Top-level ``loss`` is left alone: the service judges it (a completed trial
    with a non-finite loss is refused by the result rule, not silently nulled)."""
    cleaned = {
        _clean_text(key): (val if key == "loss" else _clean(val)) for key, val in value.items()
    }
    if isinstance(cleaned.get("curve"), list):
        cleaned["curve"] = [point for point in cleaned["curve"] if _finite_point(point)]
    return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_clean_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _clean_text(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _finite_point(point: Any) -> bool:
    return not isinstance(point, dict) or all(
        v is not None and (not isinstance(v, float) or math.isfinite(v)) for v in point.values()
    )


def trial_task_id(request: TrialRequest) -> str:
    """The Celery task id of one attempt: deterministic, so the sender can revoke it by id."""
    return attempt_task_id(request.study_id, request.trial_id, request.attempt)


def attempt_task_id(study_id: int, trial_id: int, attempt: int) -> str:
    """``trial_task_id`` from the ids alone (the service names attempts it retires)."""
    return f"trial-{study_id}-{trial_id}-{attempt}"


def trial_send_options(request: TrialRequest, *, queue: str) -> dict[str, Any]:
    """Keyword arguments for ``send_task(RUN_TRIAL_TASK, args=[request_json], **options)``.

    Puts the trial on ``queue`` ("trials", or a device pool: "gpu") under its deterministic
    task id, with the request's soft and hard time limits as Celery's per-task limits.
    """
    options: dict[str, Any] = {"task_id": trial_task_id(request), "queue": queue}
    if request.soft_time_limit_s is not None:
        options["soft_time_limit"] = request.soft_time_limit_s
    if request.time_limit_s is not None:
        options["time_limit"] = request.time_limit_s
    return options
