"""Request dependencies: settings, a database session, the proposal source, heartbeats."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from service.config import Settings
from service.orchestration.proposals import Proposals
from service.reads.views import FrontCache
from service.storage.tables import MAX_ROW_ID
from workers.heartbeat import HeartbeatStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


READ_METHODS = frozenset({"GET", "HEAD"})


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: committed if the route returns, else rolled back.
    A GET reads in a read-only session (on SQLite it does not take the write lock, so
    dashboards polling never queue behind the scheduler's writes); GET routes must not
    write."""
    read = request.method in READ_METHODS
    factory = request.app.state.read_sessions if read else request.app.state.sessions
    session: Session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_fronts(request: Request) -> FrontCache:
    return request.app.state.fronts


def get_proposals(request: Request) -> Proposals:
    return request.app.state.proposals


def get_heartbeats(request: Request) -> HeartbeatStore | None:
    return request.app.state.heartbeats


# A larger id in a path is refused (422) before it reaches the driver.
StudyId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a study's id")]
TrialId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a trial's id")]
# OFFSET is a 64-bit integer on both backends; past it the driver fails (a 500), below
# it the page is just empty.
MAX_OFFSET = 2**63 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]

SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ProposalsDep = Annotated[Proposals, Depends(get_proposals)]
FrontsDep = Annotated[FrontCache, Depends(get_fronts)]
HeartbeatsDep = Annotated[HeartbeatStore | None, Depends(get_heartbeats)]
