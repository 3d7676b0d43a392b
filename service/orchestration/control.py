"""The control worker: records results and keeps studies dispatching (Celery, CPU).

Start it with::

    celery -A service.orchestration.control worker -Q control -c 1 -B

Tasks (all JSON, all idempotent):
- ``RECORD_RESULT_TASK`` (sent by trial workers): record the result and dispatch the
  next trial from the proposal buffer in one transaction (the engine is rebuilt with
  the new results and the buffer refilled once it is down to its low watermark); the
  messages already waiting behind it are taken along
  (``service.orchestration.control_batch``), so a burst of results costs one
  transaction per study;
- ``STEP_TASK`` (sent by the API after create/resume/tell/ask, and by the beat every
  ``tick_seconds`` for every running study): one scheduler step, which also reclaims
  trials whose heartbeat stopped.
GPU workers never connect to the database: only this worker and the API do.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.domain import StudyNotFoundError, StudyState
from service.logs import configure_logging, log_context
from service.orchestration.ask_latency import AskLatencyLog
from service.orchestration.control_batch import ControlQueueReader, TakenMessage
from service.orchestration.fleet import RedisFleet
from service.orchestration.messaging import (
    STEP_TASK,
    TICK_TASK,
    CeleryDispatcher,
    control_queue,
    create_sender,
)
from service.orchestration.scheduler import Scheduler
from service.orchestration.verification import studies_with_pending_verification
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, transaction
from workers.contracts import RECORD_RESULT_TASK, TrialResult
from workers.heartbeat import HeartbeatStore

logger = logging.getLogger(__name__)


def create_control_celery(settings: Settings) -> Celery:
    """The control worker's app: the sender's configuration plus its tasks and beat."""
    app = create_sender(settings, name="scaletune-control")
    _log_like_the_api(settings)
    app.conf.beat_schedule = {
        "tick": {
            "task": TICK_TASK,
            "schedule": settings.tick_seconds,
            "options": {"queue": control_queue(settings)},
        }
    }
    _register(app)
    return app


def _log_like_the_api(settings: Settings) -> None:
    """Celery sets up its own loggers at start; redo ours after it, so the control worker
    writes the same (JSON, with study and trial ids) lines as the API."""

    @after_setup_logger.connect(weak=False)
    def _configure(**_: Any) -> None:
        configure_logging(log_format=settings.log_format, level=settings.log_level)


class _ProcessState:
    """The database sessions, scheduler and control-queue reader of one worker process,
    built on first use."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.sessions: sessionmaker[Session] | None = None
        self.scheduler: Scheduler | None = None
        self.reader: ControlQueueReader | None = None

    def get(self, app: Celery) -> tuple[sessionmaker[Session], Scheduler]:
        if self.pid != os.getpid() or self.scheduler is None or self.sessions is None:
            settings: Settings = app.scaletune_settings
            self.sessions = make_sessionmaker(make_engine(settings.database_url))
            store = HeartbeatStore.from_url(
                settings.heartbeat_url, prefix=settings.heartbeat_prefix
            )
            fleet = RedisFleet(store)
            asks = AskLatencyLog.from_url(settings.broker_url, prefix=settings.heartbeat_prefix)
            self.scheduler = Scheduler(
                sessions=self.sessions,
                settings=settings,
                dispatcher=CeleryDispatcher(app),
                heartbeats=fleet,
                fleet=fleet,
                ask_timer=asks.record,
            )
            self.reader = ControlQueueReader(
                app,
                queue=control_queue(settings),
                known_tasks=frozenset({RECORD_RESULT_TASK, STEP_TASK, TICK_TASK}),
            )
            self.pid = os.getpid()
        return self.sessions, self.scheduler

    def take_waiting(self, app: Celery) -> list[TakenMessage]:
        """The control messages waiting behind the one being handled, up to a batch."""
        self.get(app)
        assert self.reader is not None
        return self.reader.take(app.scaletune_settings.result_batch - 1)


_process = _ProcessState()


def record_result(app: Celery, payload: dict[str, Any]) -> str:
    """Record this result and those waiting behind it on the control queue, each study's
    in one transaction under its lock that also fills the slots they freed (the engine is
    told in batches at the buffer's low watermark, ``Scheduler.step``); then step the
    studies whose step messages were taken along, and acknowledge what was taken.
    Returns this result's ingest outcome."""
    _, scheduler = _process.get(app)
    taken = _process.take_waiting(app)
    try:
        results = [m.args[0] if m.args else None for m in taken if m.task == RECORD_RESULT_TASK]
        outcomes = record_results(scheduler, [payload, *results])
        _run_steps_taken(app, taken)
    finally:
        for message in taken:
            message.ack()
    return outcomes[0]


def _run_steps_taken(app: Celery, taken: list[TakenMessage]) -> None:
    """The step and tick messages taken along with results (one tick at most); a failing
    one is logged, as Celery logs a failing task, and the others still run."""
    ticked = False
    for message in taken:
        if message.task == RECORD_RESULT_TASK or (message.task == TICK_TASK and ticked):
            continue
        try:
            if message.task == STEP_TASK:
                step_study(app, *message.args)
            else:
                ticked = True
                tick(app)
        except Exception:
            logger.exception("a %s message taken with a result batch failed", message.task)


def record_results(scheduler: Scheduler, payloads: list[Any]) -> list[str]:
    """Record result payloads idempotently, one ``Scheduler.step`` per study (its results
    in arrival order); a study whose batch fails is retried one result at a time, so
    only a bad result fails (logged, like a failing Celery task). Outcomes in order."""
    outcomes = ["invalid"] * len(payloads)
    by_study: dict[int, list[tuple[int, TrialResult]]] = {}
    for i, payload in enumerate(payloads):
        try:
            result = TrialResult.model_validate(payload)
        except ValidationError as exc:
            logger.error("invalid result message ignored: %s", exc)
            continue
        by_study.setdefault(result.study_id, []).append((i, result))
    for study_id, indexed in by_study.items():
        try:
            _record(scheduler, study_id, indexed, outcomes)
        except Exception:
            if len(indexed) == 1:
                logger.exception("recording a result of study %s failed", study_id)
                outcomes[indexed[0][0]] = "failed"
                continue
            for one in indexed:
                try:
                    _record(scheduler, study_id, [one], outcomes)
                except Exception:
                    logger.exception("recording a result of study %s failed", study_id)
                    outcomes[one[0]] = "failed"
    return outcomes


def _record(
    scheduler: Scheduler, study_id: int, indexed: list[tuple[int, TrialResult]], outcomes: list[str]
) -> None:
    with log_context(study_id=study_id):
        report = scheduler.step(study_id, reclaim=False, results=[r for _, r in indexed])
    for (i, result), outcome in zip(indexed, report.outcomes, strict=True):
        outcomes[i] = str(outcome)
        logger.info(
            "trial %s/%s attempt %s: %s", result.study_id, result.trial_id, result.attempt, outcome
        )


def step_study(app: Celery, study_id: int) -> None:
    _, scheduler = _process.get(app)
    try:
        scheduler.step(study_id)
    except StudyNotFoundError:
        logger.warning("step of unknown study %s ignored", study_id)


def tick(app: Celery) -> int:
    """Step every running study (reclaims silent trials); returns how many."""
    sessions, scheduler = _process.get(app)
    with transaction(sessions) as session:
        ids = repo.study_ids(session, states=[StudyState.RUNNING])
        ids += studies_with_pending_verification(session)
    scheduler.step_each(ids)
    return len(ids)


def _register(app: Celery) -> None:
    # shared=False: the tasks belong to this app only; a shared task would be added to
    # every app finalized later in the process (a second control app, a trial worker's
    # app), which then holds two functions under one name.
    @app.task(name=RECORD_RESULT_TASK, acks_late=True, shared=False)
    def record_result_task(payload: dict[str, Any]) -> str:
        return record_result(app, payload)

    @app.task(name=STEP_TASK, acks_late=True, shared=False)
    def step_study_task(study_id: int) -> None:
        step_study(app, study_id)

    @app.task(name=TICK_TASK, shared=False)
    def tick_task() -> int:
        return tick(app)


app = create_control_celery(Settings())
