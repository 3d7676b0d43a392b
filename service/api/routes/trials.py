"""Trials: list and get; ask/tell and heartbeats for runners outside scaletune."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from service.api.auth import Authenticated, OwnedStudy, OwnedTrial
from service.api.deps import (
    HeartbeatsDep,
    Offset,
    ProposalsDep,
    SessionDep,
    SettingsDep,
    StudyId,
    TrialId,
)
from service.api.refusals import AUTHENTICATED, OWNED, refusals
from service.api.schemas import (
    AskRequest,
    AskResponse,
    Assignment,
    HeartbeatResponse,
    TellRequest,
    TellResponse,
    TrialDetail,
    TrialPublic,
    TrialsPublic,
)
from service.domain import StudyState, TrialState
from service.orchestration import studies
from service.orchestration.verification import waiting_verifications
from service.reads import views
from service.storage import repository as repo
from service.storage.tables import TrialRow

router = APIRouter(tags=["trials"], dependencies=[Authenticated], responses=AUTHENTICATED)


@router.get("/studies/{study_id}/trials", dependencies=[OwnedStudy], responses=OWNED)
def list_trials(
    study_id: StudyId,
    session: SessionDep,
    heartbeats: HeartbeatsDep,
    state: Annotated[list[TrialState] | None, Query()] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TrialsPublic:
    """A study's trials by number, filtered by state, paged."""
    repo.get_study(session, study_id=study_id)
    rows, total = repo.list_trials(
        session, study_id=study_id, states=state, offset=offset, limit=limit
    )
    workers = views.running_workers(heartbeats, rows)
    data = [_public(r, workers.get(r.id)) for r in rows]
    return TrialsPublic(data=data, count=total)


def _public(trial: TrialRow, worker: str | None) -> TrialPublic:
    """The trial; a running one's worker (recorded with its result) from its heartbeat."""
    public = TrialPublic.model_validate(trial)
    return public if worker is None else public.model_copy(update={"worker": worker})


@router.get("/trials/{trial_id}", dependencies=[OwnedTrial], responses=OWNED)
def get_trial(trial_id: TrialId, session: SessionDep) -> TrialDetail:
    """One trial with its learning curve and metrics."""
    return TrialDetail.model_validate(repo.get_trial(session, trial_id=trial_id))


@router.post(
    "/studies/{study_id}/ask", dependencies=[OwnedStudy], responses=OWNED | refusals(409, 413)
)
def ask(
    study_id: StudyId, body: AskRequest, session: SessionDep, proposals: ProposalsDep
) -> AskResponse:
    """Hand out up to ``count`` trials to run outside scaletune; each holds a lease."""
    study = repo.get_study(session, study_id=study_id)
    # a COMPLETE study hands out only its verification trial (service.orchestration.verification)
    verifying = study.state == StudyState.COMPLETE and waiting_verifications(
        session, study_id=study_id
    )
    if study.state != StudyState.RUNNING and not verifying:
        raise HTTPException(status.HTTP_409_CONFLICT, f"study {study_id} is {study.state}")
    session.rollback()
    trials = proposals.ask(study_id, count=body.count)
    data = [
        Assignment(
            trial_id=t.id,
            number=t.number,
            params=t.params,
            lease_expires_at=t.lease_expires_at or 0.0,
        )
        for t in trials
    ]
    return AskResponse(data=data, count=len(data))


@router.post(
    "/trials/{trial_id}/tell", dependencies=[OwnedTrial], responses=OWNED | refusals(409, 413)
)
def tell(
    trial_id: TrialId,
    body: TellRequest,
    session: SessionDep,
    settings: SettingsDep,
    proposals: ProposalsDep,
) -> TellResponse:
    """Report an externally run trial's result; a repeated tell changes nothing."""
    try:
        outcome = studies.tell(
            session,
            trial_id=trial_id,
            loss=body.loss,
            cost=body.cost,
            failed=body.failed,
            failure_reason=body.failure_reason,
            metrics=body.metrics,
            curve=body.curve,
            now=time.time(),
            max_attempts=settings.max_attempts,
        )
    except studies.NotExternalTrialError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    trial = repo.get_trial(session, trial_id=trial_id)
    session.commit()
    proposals.kick(trial.study_id)
    return TellResponse(trial_id=trial_id, outcome=str(outcome), state=trial.state)


@router.post(
    "/trials/{trial_id}/heartbeat", dependencies=[OwnedTrial], responses=OWNED | refusals(409)
)
def heartbeat(trial_id: TrialId, session: SessionDep, settings: SettingsDep) -> HeartbeatResponse:
    """Renew an externally run trial's lease (call more often than ``lease_seconds``)."""
    try:
        trial = studies.heartbeat(
            session, trial_id=trial_id, now=time.time(), lease_seconds=settings.lease_seconds
        )
    except studies.NotExternalTrialError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return HeartbeatResponse(
        trial_id=trial.id, state=trial.state, lease_expires_at=trial.lease_expires_at
    )
