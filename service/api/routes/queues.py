"""Queues: waiting and running trials per queue, workers online and what they run."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from service.api.auth import AdminOnly
from service.api.deps import HeartbeatsDep, SessionDep
from service.api.refusals import ADMIN_ONLY
from service.api.schemas import QueuesPublic
from service.reads.queues import read_queues

# Workers and queues are shared by all tenants (the view names their trials): admins only.
router = APIRouter(
    prefix="/queues", tags=["queues"], dependencies=[AdminOnly], responses=ADMIN_ONLY
)


@router.get("")
def list_queues(session: SessionDep, heartbeats: HeartbeatsDep) -> QueuesPublic:
    """Per queue (with trials, or consumed by a worker): trials waiting for a worker and
    running, and the live workers consuming it; each worker's heartbeat."""
    return QueuesPublic.model_validate(asdict(read_queues(session, heartbeats)))
