"""The Celery application: ``create_celery(settings)``, and ``app`` for the worker command.

Queues: a study sends its trials to its ``queue`` field, ``trials`` unless it names
another (``workers.contracts.DEFAULT_TRIAL_QUEUE``), and every trial worker consumes
``trials`` (a worker started without ``-Q`` consumes only it). A pool that must be
reachable on its own also consumes its own queue, which studies name to run only there.
Start one worker process per GPU, bound to its device, with one trial at a time::

    SCALETUNE_DEVICE=cuda:0 celery -A workers.celery_app worker -Q trials,gpu -c 1 -n gpu0@%h

CPU workers consume ``-Q trials,cpu``, also with ``-c 1``: torch already uses every core
for one trial, and several pool children would oversubscribe them. (A site whose CPU
workers should never take its default trials drops ``trials`` from their ``-Q``.) The
prefork pool (the default) is needed for per-trial time limits and for revoke-with-terminate
(cancellation); ``-P solo`` works but ignores both, and its heartbeat (with its queues)
starts only with its first trial, so until then the service reports its queue unserved.

Each worker process's heartbeat names the queues it consumes: the service reports a
study whose queue no live worker consumes (``scaletune status``, the dashboard,
``GET /queues``, a warning in the control worker's log) and leaves its trials waiting
instead of reclaiming them.

Delivery settings and why:
- JSON only (``accept_content=["json"]``): no pickle crosses the broker.
- ``task_acks_late`` + ``worker_prefetch_multiplier=1``: a message is acknowledged when
  its trial ends, and a worker holds one trial at a time, so a lost worker loses nothing.
- ``task_reject_on_worker_lost``: a pool child killed mid-trial (OOM killer, SIGKILL)
  puts its message back on the queue at once.
- ``visibility_timeout`` (Redis): an unacknowledged message is redelivered after this
  long even if its worker still runs it, so it must exceed the longest hard time limit;
  it is also what recovers the message of a worker whose whole process tree died.
- No result backend by default: results travel to the service as ``RECORD_RESULT_TASK``
  messages on the control queue.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, current_app
from celery.signals import worker_process_init, worker_process_shutdown

from workers.config import WorkerSettings
from workers.contracts import TrialRequest, trial_task_id


def create_celery(settings: WorkerSettings | None = None) -> Celery:
    """A configured Celery app with ``run_trial`` registered; connects to nothing yet."""
    from workers.tasks import register_tasks  # runner -> registry; still no torch

    settings = settings or WorkerSettings()
    app = Celery("scaletune", broker=settings.broker_url, backend=settings.result_backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=settings.result_backend is None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.default_queue,
        task_create_missing_queues=True,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        # A result (or a trial) is published through a broker blip of up to about a minute.
        task_publish_retry_policy={
            "max_retries": 12,
            "interval_start": 0.5,
            "interval_step": 1.0,
            "interval_max": 5.0,
        },
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
    )
    if settings.is_gpu:
        app.conf.worker_concurrency = 1  # one trial per GPU
    app.scaletune_settings = settings
    register_tasks(app)
    return app


def broker_transport_options(settings: WorkerSettings) -> dict[str, Any]:
    """Redis transport options; also what a plain kombu ``Connection`` needs to see our keys."""
    options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout_s,
        # kombu sweeps every interval * throttle seconds; make the interval the only knob.
        "unacked_restore_interval": settings.restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    if settings.broker_key_prefix:
        options["global_keyprefix"] = settings.broker_key_prefix
    return options


def cancel_trial(app: Celery, request: TrialRequest, *, signal: str = "SIGTERM") -> None:
    """Revoke the attempt and, if running, terminate its pool process (prefork only)."""
    app.control.revoke(trial_task_id(request), terminate=True, signal=signal)


# CPU trial workers often share their cores. OpenMP threads that spin while waiting for a
# descheduled sibling then slow torch down many times over (a 2-thread CPU run took 40 s
# instead of 5.8 s under load on a 2-core machine); passive waiting avoids that. It must be
# set before torch loads, which happens in the pool child, after this module's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = create_celery()


@worker_process_init.connect
def _start_heartbeat(**_: Any) -> None:
    # An idle worker beats too, so the service sees it online before its first trial.
    from workers.tasks import consumed_queues, process_publisher

    settings = getattr(current_app, "scaletune_settings", None)
    if settings is not None:  # a worker of an app built by create_celery
        process_publisher(settings, consumed_queues(current_app))
        if settings.warm_up:
            from workers.training.trainer import warm_up

            warm_up(device=settings.device)


@worker_process_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    from workers.tasks import stop_process_publisher

    stop_process_publisher()
