"""Run one ``TrialRequest`` to one ``TrialResult``: the whole trial, without Celery.

The Celery task (``workers.tasks``) and the service's embedded in-process pool both call
``run_trial_request``; only delivery, retries and result reporting differ between them.

Outcomes are sorted into the two failure classes of ``workers.objectives.base``:
- the configuration's fault (out of memory, NaN/inf loss, divergence, the trial's own
  soft time limit, parameters the objective refuses): a ``TrialResult`` with
  ``status="failed"``, ``failure_kind="config"`` and the cost spent;
- anything else (``InfrastructureError``, a missing objective, an unexpected exception):
  ``InfrastructureError`` is raised for the caller to retry; after the last retry the
  caller reports ``failed_result(..., failure_kind="infrastructure")``.
This module imports no torch: it recognises torch's out-of-memory error only if torch is
already loaded (by the objective that raised it).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from search.errors import InvalidParamsError
from workers.contracts import TrialRequest, TrialResult
from workers.heartbeat import HeartbeatPublisher, TrialRef
from workers.objectives.base import InfrastructureError, ObjectiveOutcome
from workers.objectives.registry import InvalidObjectiveOptionsError, create_objective

logger = logging.getLogger(__name__)


class RunnerContext:
    """The ``TrialContext`` a runner hands to an objective.

    ``should_stop()`` turns true when the caller cancels (``cancelled``) or the request's
    soft time limit passes; ``stop_reason`` then says which ("cancelled" or "time_limit").
    ``report()`` keeps the learning curve and forwards progress to the heartbeat.
    """

    def __init__(
        self,
        *,
        device: str,
        soft_time_limit_s: float | None = None,
        cancelled: Callable[[], bool] | None = None,
        heartbeat: HeartbeatPublisher | None = None,
    ) -> None:
        self.device = device
        self.curve: list[dict[str, float]] = []
        self.stop_reason: str | None = None
        self._started = time.monotonic()
        self._soft_time_limit_s = soft_time_limit_s
        self._cancelled = cancelled
        self._heartbeat = heartbeat

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def report(self, *, step: int, loss: float, **metrics: float) -> None:
        self.curve.append({"step": float(step), "loss": float(loss), **metrics})
        if self._heartbeat is not None:
            self._heartbeat.progress(step=step, loss=loss)

    def should_stop(self) -> bool:
        if self.stop_reason is None:
            if self._cancelled is not None and self._cancelled():
                self.stop_reason = "cancelled"
            elif self._soft_time_limit_s is not None and self.elapsed_s > self._soft_time_limit_s:
                self.stop_reason = "time_limit"
        return self.stop_reason is not None


def run_trial_request(
    request: TrialRequest,
    *,
    device: str = "cpu",
    worker: str | None = None,
    heartbeat: HeartbeatPublisher | None = None,
    cancelled: Callable[[], bool] | None = None,
    task_id: str | None = None,
) -> TrialResult:
    """Run ``request`` on ``device`` and return its result; raises ``InfrastructureError``.

    ``cancelled`` is polled through the objective's ``should_stop()``; ``heartbeat`` (when
    given) announces the trial, carries its progress and is cleared at the end.
    """
    ref = TrialRef(request.study_id, request.trial_id, request.attempt, task_id)
    context = RunnerContext(
        device=device,
        soft_time_limit_s=request.soft_time_limit_s,
        cancelled=cancelled,
        heartbeat=heartbeat,
    )
    if heartbeat is not None:
        heartbeat.begin_trial(ref)
    try:
        outcome = _run_objective(request, context)
    finally:
        if heartbeat is not None:
            heartbeat.end_trial()
    return _to_result(request, outcome, context, worker=worker)


def _run_objective(request: TrialRequest, context: RunnerContext) -> ObjectiveOutcome:
    try:
        objective = create_objective(request.objective, request.objective_options)
        return objective.run(dict(request.params), seed=request.seed, context=context)
    except InfrastructureError:
        raise
    except Exception as exc:
        reason = config_failure_reason(exc)
        if reason is None:
            logger.exception("trial %s/%s: unexpected error", request.study_id, request.trial_id)
            raise InfrastructureError(f"{type(exc).__name__}: {exc}") from exc
        return ObjectiveOutcome(
            loss=None,
            cost_seconds=context.elapsed_s,
            failed=True,
            failure_reason=reason,
            curve=list(context.curve),
        )


def config_failure_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is the configuration's fault, or None when it is not."""
    if _is_out_of_memory(exc):
        return f"out of memory: {_first_line(exc)}"
    if type(exc).__name__ == "SoftTimeLimitExceeded":  # celery.exceptions, raised in the task
        return "soft time limit exceeded"
    if isinstance(exc, FloatingPointError):
        return f"non-finite value: {exc}"
    if isinstance(exc, InvalidParamsError | InvalidObjectiveOptionsError):
        return f"invalid configuration: {exc}"
    return None


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    # MPS and some CUDA paths raise a plain RuntimeError with this text.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _to_result(
    request: TrialRequest, outcome: ObjectiveOutcome, context: RunnerContext, *, worker: str | None
) -> TrialResult:
    failed, kind, reason = outcome.failed, "config" if outcome.failed else None, None
    if outcome.failed:
        reason = outcome.failure_reason or "failed"
    elif context.stop_reason == "cancelled":
        failed, kind, reason = True, "infrastructure", "cancelled"
    elif context.stop_reason == "time_limit":
        failed, kind = True, "config"
        reason = f"soft time limit of {request.soft_time_limit_s} s reached"
    elif outcome.loss is None or not math.isfinite(outcome.loss):
        failed, kind, reason = True, "config", f"non-finite loss ({outcome.loss})"
    return TrialResult(
        study_id=request.study_id,
        trial_id=request.trial_id,
        attempt=request.attempt,
        status="failed" if failed else "completed",
        loss=None if failed else outcome.loss,
        cost_seconds=max(0.0, outcome.cost_seconds),
        flops=outcome.flops,
        failure_kind=kind,
        failure_reason=reason,
        curve=_json_curve(outcome.curve or context.curve),
        metrics=_json_metrics(outcome.metrics),
        worker=worker,
    )


def _json_curve(curve: list[dict[str, float]]) -> list[dict[str, float]]:
    """Curve points as strict JSON: non-finite values are left out, and so is a point
    whose loss is not finite."""
    return [
        {k: v for k, v in point.items() if math.isfinite(v)}
        for point in curve
        if math.isfinite(point.get("loss", math.nan))
    ]


def _json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as strict JSON: non-finite floats become None."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()
    }


def failed_result(
    request: TrialRequest,
    *,
    failure_kind: str,
    reason: str,
    cost_seconds: float = 0.0,
    worker: str | None = None,
) -> TrialResult:
    """A failed result decided outside the objective (given-up retries, time limits)."""
    return TrialResult(
        study_id=request.study_id,
        trial_id=request.trial_id,
        attempt=request.attempt,
        status="failed",
        cost_seconds=cost_seconds,
        failure_kind=failure_kind,
        failure_reason=reason,
        worker=worker,
    )
