"""Queues: waiting and running trials per queue, workers online and what they run."""

from __future__ import annotations

from collections import Counter

import redis
from fastapi import APIRouter
from sqlalchemy import select

from service.api.auth import AdminOnly
from service.api.deps import HeartbeatsDep, SessionDep
from service.api.refusals import ADMIN_ONLY
from service.api.schemas import QueuePublic, QueuesPublic, WorkerPublic
from service.domain import TrialState
from service.storage.tables import TrialRow

# Workers and queues are shared by all tenants (the view names their trials): admins only.
router = APIRouter(
    prefix="/queues", tags=["queues"], dependencies=[AdminOnly], responses=ADMIN_ONLY
)


@router.get("")
def list_queues(session: SessionDep, heartbeats: HeartbeatsDep) -> QueuesPublic:
    """Per queue (with trials, or consumed by a worker): trials waiting for a worker and
    running, and the live workers consuming it; each worker's heartbeat."""
    rows = session.execute(
        select(TrialRow.id, TrialRow.study_id, TrialRow.queue).where(
            TrialRow.state == TrialState.RUNNING, TrialRow.external.is_(False)
        )
    ).all()
    beating: set[int] = set()
    workers: list[WorkerPublic] = []
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
    running, waiting = Counter(), Counter()
    for row in rows:
        (running if row.id in beating else waiting)[row.queue or "-"] += 1
    names = sorted(set(running) | set(waiting) | set(consumers))
    queues = [
        QueuePublic(
            name=n,
            waiting=waiting[n],
            running=running[n],
            consumers=consumers.get(n, 0) if available else None,
        )
        for n in names
    ]
    return QueuesPublic(queues=queues, workers=workers, heartbeats_available=available)


def _worker(beat) -> WorkerPublic:  # type: ignore[no-untyped-def]
    return WorkerPublic(
        worker=beat.worker,
        device=beat.device,
        age_s=beat.age_s,
        study_id=None if beat.trial is None else beat.trial.study_id,
        trial_id=None if beat.trial is None else beat.trial.trial_id,
    )
