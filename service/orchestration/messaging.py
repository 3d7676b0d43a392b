"""Sending by task name over the broker; light enough for the API process (no engine).

The control worker (``service.orchestration.control``) serves ``STEP_TASK``, ``TICK_TASK`` and
``RECORD_RESULT_TASK`` on the control queue; trial workers serve ``RUN_TRIAL_TASK``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from kombu import Producer

from service.config import Settings
from workers.contracts import RUN_TRIAL_TASK, TrialRequest, trial_send_options

STEP_TASK = "scaletune.step_study"
TICK_TASK = "scaletune.tick"


def control_queue(settings: Settings) -> str:
    """The control worker's queue, as the workers name it (``BrokerSettings``)."""
    return settings.control_queue_name


def create_sender(settings: Settings, *, name: str = "scaletune-service") -> Celery:
    """A JSON-only Celery app on the broker; the control worker registers tasks on it."""
    app = Celery(name, broker=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=True,
        task_default_queue=control_queue(settings),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if settings.broker_key_prefix:  # the keys the workers use (workers.celery_app)
        app.conf.broker_transport_options = {"global_keyprefix": settings.broker_key_prefix}
    app.scaletune_settings = settings
    return app


def request_step(app: Celery, *, settings: Settings, study_id: int) -> None:
    """Ask the control worker to step ``study_id`` soon (after create, resume, tell...)."""
    app.send_task(STEP_TASK, args=[study_id], queue=control_queue(settings))


class CeleryDispatcher:
    """Sends trial attempts by task name: the service never imports the trainer."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._batching = threading.local()  # the producer of this thread's open batch

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Trials this thread sends inside go to the broker together when it closes (one
        pipelined round trip instead of one per trial); an error inside sends none."""
        with self.app.producer_or_acquire() as producer, producer.batch():
            self._batching.producer = producer
            try:
                yield
            finally:
                self._batching.producer = None

    def send(self, request: TrialRequest, *, queue: str) -> None:
        producer: Producer | None = getattr(self._batching, "producer", None)
        self.app.send_task(
            RUN_TRIAL_TASK,
            args=[request.model_dump(mode="json")],
            producer=producer,
            **trial_send_options(request, queue=queue),
        )
