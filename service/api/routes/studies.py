"""Studies: create, list, get, pause, resume, stop."""

from __future__ import annotations

import time
from typing import Annotated

import redis
from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy.orm import Session

from service.api.auth import Authenticated, OwnedStudy, PrincipalDep
from service.api.deps import (
    FrontsDep,
    HeartbeatsDep,
    Offset,
    ProposalsDep,
    SessionDep,
    SettingsDep,
    StudyId,
)
from service.api.refusals import AUTHENTICATED, OWNED, refusals
from service.api.schemas import (
    CostBand,
    FrontPointPublic,
    Progress,
    StudiesPublic,
    StudyCreate,
    StudyDetail,
    StudyPublic,
)
from service.config import Settings
from service.domain import (
    InvalidTransitionError,
    StudySpec,
    StudyState,
    TrialState,
    spec_error,
)
from service.orchestration.studies import (
    UnknownObjectiveNameError,
    change_state,
    create_study_row,
)
from service.orchestration.verification import NoRulesError
from service.reads import views
from service.reads.views import FrontCache
from service.storage import repository as repo
from service.storage.tables import StudyRow
from workers.heartbeat import HeartbeatStore
from workers.objectives.registry import (
    InvalidObjectiveOptionsError,
    InvalidParameterNamesError,
    InvalidScalingAxesError,
)

router = APIRouter(
    prefix="/studies", tags=["studies"], dependencies=[Authenticated], responses=AUTHENTICATED
)


@router.post("", status_code=status.HTTP_201_CREATED, responses=refusals(400, 403, 404, 413))
def create_study(
    body: StudyCreate,
    session: SessionDep,
    proposals: ProposalsDep,
    principal: PrincipalDep,
    fronts: FrontsDep,
    heartbeats: HeartbeatsDep,
    settings: SettingsDep,
) -> StudyDetail:
    """Create a study of the token's tenant; trials start as soon as the scheduler steps it."""
    if principal.tenant_id is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "a study belongs to a tenant: create it with a tenant's token, not an admin token",
        )
    try:
        study = create_study_row(session, spec=body, now=time.time(), tenant_id=principal.tenant_id)
    except (
        UnknownObjectiveNameError,
        InvalidObjectiveOptionsError,
        InvalidParameterNamesError,
        InvalidScalingAxesError,
    ) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except NoRulesError as exc:  # a warm start from a study without rules
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    # The answer is built before the commit: if building it fails, nothing was stored.
    workers = live_queue_workers(body, heartbeats, settings)
    detail = study_detail(session, study=study, fronts=fronts, queue_workers=workers)
    session.commit()
    proposals.kick(study.id)
    return detail


@router.get("")
def list_studies(
    session: SessionDep,
    principal: PrincipalDep,
    state: StudyState | None = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> StudiesPublic:
    """List the tenant's studies (an admin: all studies), oldest first."""
    rows, total = repo.list_studies(
        session,
        states=None if state is None else [state],
        offset=offset,
        limit=limit,
        tenant_id=principal.tenant_id,
    )
    return StudiesPublic(data=[study_public(r) for r in rows], count=total)


@router.get("/{study_id}", dependencies=[OwnedStudy], responses=OWNED)
def get_study(
    study_id: StudyId,
    session: SessionDep,
    fronts: FrontsDep,
    heartbeats: HeartbeatsDep,
    settings: SettingsDep,
) -> StudyDetail:
    """A study with its progress, trials by state, front and best loss per cost band, and
    how many live workers consume its queue."""
    study = repo.get_study(session, study_id=study_id)
    spec = None if spec_error(study.spec) else StudySpec.model_validate(study.spec)
    workers = live_queue_workers(spec, heartbeats, settings)
    return study_detail(session, study=study, fronts=fronts, queue_workers=workers)


@router.post("/{study_id}/pause", dependencies=[OwnedStudy], responses=OWNED | refusals(409))
def pause_study(study_id: StudyId, session: SessionDep) -> StudyPublic:
    """Stop dispatching new trials; running ones finish and are recorded."""
    return _move(session, study_id, StudyState.PAUSED)


@router.post("/{study_id}/resume", dependencies=[OwnedStudy], responses=OWNED | refusals(409))
def resume_study(study_id: StudyId, session: SessionDep, proposals: ProposalsDep) -> StudyPublic:
    """Dispatch again after a pause."""
    public = _move(session, study_id, StudyState.RUNNING)
    session.commit()
    proposals.kick(study_id)
    return public


@router.post("/{study_id}/stop", dependencies=[OwnedStudy], responses=OWNED | refusals(409))
def stop_study(study_id: StudyId, session: SessionDep) -> StudyPublic:
    """Stop for good: no new trials, buffered proposals cancelled."""
    return _move(session, study_id, StudyState.STOPPED)


def _move(session: Session, study_id: int, state: StudyState) -> StudyPublic:
    """The scheduler's state change (``orchestration.studies.change_state``); a move the
    study's state does not allow is a 409."""
    study = repo.get_study(session, study_id=study_id, lock=True)
    try:
        change_state(session, study=study, state=state, now=time.time())
    except InvalidTransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return study_public(study)


def live_queue_workers(
    spec: StudySpec | None, heartbeats: HeartbeatStore | None, settings: Settings
) -> int | None:
    """Live workers consuming the study's queue; None for an external study, a study
    whose stored spec no longer loads (``spec`` None) or when heartbeats are unreadable."""
    if spec is None or spec.executor != "workers" or heartbeats is None:
        return None
    try:
        consumers = heartbeats.consumers()
    except redis.RedisError:
        return None
    serving = consumers.get(settings.queue_name(spec.queue))
    return 0 if serving is None else serving.live


def study_public(study: StudyRow) -> StudyPublic:
    """The study's row, with ``error`` saying why its stored spec no longer loads."""
    public = StudyPublic.model_validate(study)
    return public.model_copy(update={"error": spec_error(study.spec)})


def study_detail(
    session: Session, *, study: StudyRow, fronts: FrontCache, queue_workers: int | None = None
) -> StudyDetail:
    """The detail of a study; one whose stored spec no longer loads is shown as stored,
    with its ``error``, never a 500 (it must not break a list or a dashboard)."""
    public = study_public(study)
    spec = study.spec if public.error else StudySpec.model_validate(study.spec)
    progress = views.progress(session, study=study)
    complete = progress.by_state[TrialState.COMPLETE]
    summary = fronts.summary(session, study=study, n_complete=complete)
    return StudyDetail(
        **public.model_dump(),
        spec=spec if isinstance(spec, dict) else spec.model_dump(mode="json"),
        progress=Progress(
            spent_cost=progress.spent_cost,
            max_cost=progress.max_cost,
            dispatched=progress.dispatched,
            max_trials=progress.max_trials,
            fraction=progress.fraction,
        ),
        trials_by_state=progress.by_state,
        front=[
            FrontPointPublic.of(t, p)
            for t, p in zip(views.front_trials(session, summary), summary.points, strict=True)
        ],
        front_source=summary.source,
        best_per_cost_band=[CostBand(**b) for b in summary.bands],
        has_rules=study.rules is not None,
        queue_workers=queue_workers,
    )
