"""The Celery task that runs a trial: validate, run (``workers.runner``), report, return.

Thin on purpose: delivery concerns live here, the trial itself in ``workers.runner``.
The result goes back to the service as a ``RECORD_RESULT_TASK`` message on the control
queue (sent by name; the service implements that task) and is also the return value.

Delivery semantics (see ``workers.celery_app`` for the settings behind them):
- an ``InfrastructureError`` is retried with exponential backoff up to ``max_retries``,
  then reported as ``failure_kind="infrastructure"``;
- a worker lost mid-trial puts the message back (``reject_on_worker_lost``); each
  delivery is counted in Redis and, past ``max_deliveries``, the attempt is reported as
  an infrastructure failure instead of being run again (a trial that kills its worker
  every time must not loop forever);
- a hard time limit kills the pool process; the worker's main process then reports the
  trial as a configuration failure (it ran too long for its budget);
- an attempt the service has retired (reclaimed after its worker went silent, and sent
  again as a new attempt) is dropped unrun: with ``acks_late`` its old message comes back
  once the visibility timeout expires, and running it would repeat a trial that another
  attempt ran. Each attempt a worker takes is marked started, which tells the service
  whether a silent trial ever reached a worker.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import TimeLimitExceeded

from workers.config import WorkerSettings
from workers.contracts import RECORD_RESULT_TASK, RUN_TRIAL_TASK, TrialRequest, TrialResult
from workers.heartbeat import HeartbeatPublisher, HeartbeatStore, default_worker_name
from workers.objectives.base import InfrastructureError
from workers.runner import failed_result, run_trial_request

logger = logging.getLogger(__name__)

# One heartbeat publisher per process (pool children are forked: a thread never survives
# a fork, so each process starts its own).
_publishers: dict[int, HeartbeatPublisher] = {}


def process_publisher(settings: WorkerSettings, queues: tuple[str, ...] = ()) -> HeartbeatPublisher:
    """This process's running heartbeat publisher, started on first use; ``queues``: the
    broker queues this worker consumes (announced in its heartbeat)."""
    publisher = _publishers.get(os.getpid())
    if publisher is None:
        store = HeartbeatStore.from_url(
            settings.heartbeat_url, prefix=settings.heartbeat_prefix, ttl_s=settings.heartbeat_ttl_s
        )
        publisher = HeartbeatPublisher(
            store,
            worker=settings.worker_name or default_worker_name(),
            device=settings.device,
            interval_s=settings.heartbeat_interval_s,
            queues=queues,
        )
        _publishers.clear()
        _publishers[os.getpid()] = publisher.start()
    return publisher


def consumed_queues(app: Celery) -> tuple[str, ...]:
    """The queues this worker consumes (chosen with -Q), announced in its heartbeat so the
    service can tell a queue that no live worker consumes."""
    return tuple(sorted(app.amqp.queues.consume_from or {}))


def stop_process_publisher() -> None:
    publisher = _publishers.pop(os.getpid(), None)
    if publisher is not None:
        publisher.stop()


def settings_of(app: Celery) -> WorkerSettings:
    return app.scaletune_settings  # set by workers.celery_app.create_celery


def report_result(app: Celery, result: TrialResult) -> None:
    """Send ``result`` to the service's ``record_result`` task on the control queue."""
    app.send_task(
        RECORD_RESULT_TASK,
        args=[result.model_dump(mode="json")],
        queue=settings_of(app).control_queue_name,
    )


class TrialTask(Task):
    """Base class of ``run_trial``: reports trials killed by their hard time limit."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Celery calls this in the worker's main process after killing the pool child.
        if isinstance(exc, TimeLimitExceeded) and args:
            request = TrialRequest.model_validate(args[0])
            limit_s = request.time_limit_s or 0.0
            reason = f"hard time limit of {limit_s} s exceeded"
            report_result(
                self.app,
                failed_result(request, failure_kind="config", reason=reason, cost_seconds=limit_s),
            )


def run_trial(task: Task, request_data: dict[str, Any]) -> dict[str, Any]:
    """Body of the ``run_trial`` task; ``task`` is the bound Celery task."""
    settings = settings_of(task.app)
    request = TrialRequest.model_validate(request_data)
    publisher = process_publisher(settings, consumed_queues(task.app))
    if not _claim_attempt(publisher, task.request.id, settings):
        logger.warning(
            "trial %s/%s attempt %s: retired by the service (reclaimed and sent again); "
            "this delivery is dropped unrun",
            request.study_id,
            request.trial_id,
            request.attempt,
        )
        return {"study_id": request.study_id, "trial_id": request.trial_id, "retired": True}
    _warn_if_redelivered_while_running(request, settings)
    deliveries = _count_delivery(publisher, f"{task.request.id}:{task.request.retries}", settings)
    if deliveries > settings.max_deliveries:
        reason = f"its worker was lost {deliveries - 1} time(s) while running this trial"
        result = failed_result(
            request, failure_kind="infrastructure", reason=reason, worker=publisher.worker
        )
    else:
        result = _run_or_retry(task, request, settings=settings, publisher=publisher)
    result.metrics.setdefault("deliveries", deliveries)
    result.metrics.setdefault("retries", task.request.retries)
    report_result(task.app, result)
    return result.model_dump(mode="json")


def _run_or_retry(
    task: Task, request: TrialRequest, *, settings: WorkerSettings, publisher: HeartbeatPublisher
) -> TrialResult:
    """The trial's result; an infrastructure error retries the task (exponential backoff)
    until ``max_retries``, after which it becomes the reported failure."""
    retries = task.request.retries
    try:
        return run_trial_request(
            request,
            device=settings.device,
            worker=publisher.worker,
            heartbeat=publisher,
            task_id=task.request.id,
        )
    except InfrastructureError as exc:
        if retries < settings.max_retries:
            delay_s = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2**retries)
            logger.warning(
                "trial %s/%s: %s; retry %d in %.1f s",
                request.study_id,
                request.trial_id,
                exc,
                retries + 1,
                delay_s,
            )
            raise task.retry(exc=exc, countdown=delay_s, max_retries=settings.max_retries) from exc
        reason = f"{exc} (gave up after {retries} retries)"
        return failed_result(
            request, failure_kind="infrastructure", reason=reason, worker=publisher.worker
        )


def _warn_if_redelivered_while_running(request: TrialRequest, settings: WorkerSettings) -> None:
    if (request.time_limit_s or 0.0) > settings.visibility_timeout_s:
        logger.warning(
            "trial %s/%s: time limit %.0f s exceeds the visibility timeout %.0f s; the broker "
            "may hand it to a second worker while it runs",
            request.study_id,
            request.trial_id,
            request.time_limit_s,
            settings.visibility_timeout_s,
        )


def _claim_attempt(publisher: HeartbeatPublisher, task_id: str, settings: WorkerSettings) -> bool:
    """Whether to run this attempt (not retired); True when Redis cannot say (run it
    rather than drop it: a stale result is recognised and ignored by the service)."""
    try:
        return publisher.store.claim_attempt(task_id, keep_s=2 * settings.visibility_timeout_s)
    except redis.RedisError as exc:
        logger.warning("could not check whether %s is retired: %s", task_id, exc)
        return True


def _count_delivery(publisher: HeartbeatPublisher, key: str, settings: WorkerSettings) -> int:
    """This delivery's number; 1 when Redis cannot count (run it rather than drop it)."""
    try:
        return publisher.store.count_delivery(key, keep_s=2 * settings.visibility_timeout_s)
    except redis.RedisError as exc:
        logger.warning("could not count deliveries of %s: %s", key, exc)
        return 1


def register_tasks(app: Celery) -> None:
    """Register ``run_trial`` on ``app`` under ``RUN_TRIAL_TASK``."""

    # shared=False: the task belongs to this app only (tests and the service build several).
    @app.task(
        bind=True,
        name=RUN_TRIAL_TASK,
        base=TrialTask,
        shared=False,
        acks_late=True,
        reject_on_worker_lost=True,
    )
    def run_trial_task(self: Task, request_data: dict[str, Any]) -> dict[str, Any]:
        return run_trial(self, request_data)
