"""What travels on the queue: task names and the JSON payloads of a trial.

Imports neither torch nor Celery, so the service can send and receive trials by name
without loading the training stack. Payloads are plain JSON (Celery's serializer is JSON).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
