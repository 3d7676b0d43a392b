"""Request dependencies: settings, a database session, the proposal source, heartbeats."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.config import Settings
from service.proposals import Proposals
from workers.heartbeat import HeartbeatStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request: committed if the route returns, else rolled back."""
    session: Session = request.app.state.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_proposals(request: Request) -> Proposals:
    return request.app.state.proposals


def get_heartbeats(request: Request) -> HeartbeatStore | None:
    return request.app.state.heartbeats


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ProposalsDep = Annotated[Proposals, Depends(get_proposals)]
HeartbeatsDep = Annotated[HeartbeatStore | None, Depends(get_heartbeats)]
