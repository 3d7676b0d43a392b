"""Queues: trials waiting for a worker and running, per queue, and the workers online.

Read by GET /queues and by the Prometheus collector (``api.observability``), which must
not load the API's routes: the control worker serves metrics too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.domain import TrialState
from service.storage.tables import TrialRow
from workers.heartbeat import HeartbeatStore, WorkerBeat


@dataclass(frozen=True)
class QueueDepth:
    """A queue's trials waiting for a worker and running; ``consumers`` are the live
    workers consuming it (None: heartbeats unreadable)."""

    name: str
    waiting: int
    running: int
    consumers: int | None


@dataclass(frozen=True)
class WorkerState:
    """A worker's last heartbeat and the trial it runs, if any."""

    worker: str
    device: str
    age_s: float
    study_id: int | None
    trial_id: int | None


@dataclass(frozen=True)
class Queues:
    queues: list[QueueDepth]
    workers: list[WorkerState]
    heartbeats_available: bool


def read_queues(session: Session, heartbeats: HeartbeatStore | None) -> Queues:
    """Per queue (with trials, or consumed by a worker): trials waiting for a worker and
    running (a dispatched trial whose heartbeat no worker sends yet is waiting), and the
    live workers consuming it; each worker's heartbeat. Without heartbeats (None, or
    Redis unreadable) every dispatched trial counts as waiting."""
    rows = session.execute(
        select(TrialRow.id, TrialRow.study_id, TrialRow.queue).where(
            TrialRow.state == TrialState.RUNNING, TrialRow.external.is_(False)
        )
    ).all()
    beating: set[int] = set()
    workers: list[WorkerState] = []
    consumers: dict[str, int] = {}
    available = heartbeats is not None
    if heartbeats is not None:
        try:
            beats = heartbeats.trials([(r.study_id, r.id) for r in rows])
            beating = {trial_id for (_, trial_id), beat in beats.items() if beat is not None}
            workers = [_worker(w) for w in heartbeats.workers()]
            consumers = {name: c.live for name, c in heartbeats.consumers().items()}
        except redis.RedisError:
            available = False
    running: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for row in rows:
        (running if row.id in beating else waiting)[row.queue or "-"] += 1
    names = sorted(set(running) | set(waiting) | set(consumers))
    queues = [
        QueueDepth(
            name=n,
            waiting=waiting[n],
            running=running[n],
            consumers=consumers.get(n, 0) if available else None,
        )
        for n in names
    ]
    return Queues(queues=queues, workers=workers, heartbeats_available=available)


def _worker(beat: WorkerBeat) -> WorkerState:
    return WorkerState(
        worker=beat.worker,
        device=beat.device,
        age_s=beat.age_s,
        study_id=None if beat.trial is None else beat.trial.study_id,
        trial_id=None if beat.trial is None else beat.trial.trial_id,
    )
