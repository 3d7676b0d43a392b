"""Results: the Pareto front, the scaling rules (JSON, YAML) and the report (Markdown, PNG)."""

from __future__ import annotations

import time
from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from search.errors import SearchError
from service.api.auth import OwnedStudy
from service.api.deps import FrontsDep, SessionDep, SettingsDep, StudyId
from service.api.refusals import AUTHENTICATED, OWNED, refusals
from service.api.schemas import FrontPointPublic, FrontPublic, VerifyRequest
from service.domain import TrialState
from service.orchestration.verification import (
    NoRulesError,
    VerificationPendingError,
    request_verification,
    verification_status,
)
from service.reads import views
from service.storage import repository as repo

# Every route here is about the study in the path: the owner check covers the router.
router = APIRouter(
    prefix="/studies/{study_id}",
    tags=["results"],
    dependencies=[OwnedStudy],
    responses=AUTHENTICATED | OWNED,
)


@router.get("/front")
def get_front(study_id: StudyId, session: SessionDep, fronts: FrontsDep) -> FrontPublic:
    """The configurations no other beats in both estimated loss and mean cost, by cost:
    repeats merged, losses as the engine estimates them (``source``) when it has seen
    every completed trial, else as measured (``docs/architecture.md``, "The front")."""
    study = repo.get_study(session, study_id=study_id)
    complete = repo.count_by_state(session, study_id=study_id)[TrialState.COMPLETE]
    summary = fronts.summary(session, study=study, n_complete=complete)
    rows = views.front_trials(session, summary)
    return FrontPublic(
        study_id=study_id,
        data=[FrontPointPublic.of(t, p) for t, p in zip(rows, summary.points, strict=True)],
        count=len(rows),
        source=summary.source,
    )


@router.get("/rules")
def get_rules(study_id: StudyId, session: SessionDep) -> dict:
    """The fitted scaling rules as JSON (404 until the study has them)."""
    return _rules(session, study_id)


@router.get("/rules.yaml", response_class=Response)
def get_rules_yaml(study_id: StudyId, session: SessionDep) -> Response:
    """The fitted scaling rules as YAML."""
    text = yaml.safe_dump(_rules(session, study_id), sort_keys=False)
    return Response(content=text, media_type="application/yaml")


def _rules(session: Session, study_id: int) -> dict[str, Any]:
    study = repo.get_study(session, study_id=study_id)
    if study.rules is None:
        why = study.message or "the study has not finished"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scaling rules yet: {why}")
    return study.rules


@router.get("/report/{name}", response_class=FileResponse)
def get_report_file(
    study_id: StudyId, name: str, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The scaling report (``scaling-report.md``) and its plots (``*.png``)."""
    from service.reads.reports.files import NoReportError, report_dir, report_file

    study = repo.get_study(session, study_id=study_id)
    trials = repo.trials_in_state(
        session, study_id=study_id, states=[TrialState.COMPLETE, TrialState.FAILED]
    )
    try:
        path = report_file(report_dir(study=study, trials=trials, base=settings.report_dir), name)
    except NoReportError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    media = "text/markdown" if path.suffix == ".md" else "image/png"
    return FileResponse(path, media_type=media)


@router.post("/verify", status_code=status.HTTP_201_CREATED, responses=refusals(409, 413))
def post_verify(study_id: StudyId, session: SessionDep, body: VerifyRequest | None = None) -> dict:
    """Add one trial the rules recommend at ``scale_factor`` x the largest observed
    compute; it runs like any trial, outside the (spent) budget."""
    try:
        request_verification(
            session,
            study_id=study_id,
            scale_factor=(body or VerifyRequest()).scale_factor,
            now=time.time(),
        )
    except NoRulesError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except VerificationPendingError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except SearchError as exc:  # the rules cannot set a parameter at this compute
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    answer = verification_status(session, study_id=study_id)  # built before the commit
    session.commit()
    return answer


@router.get("/verification")
def get_verification(study_id: StudyId, session: SessionDep) -> dict:
    """The latest verification trial's state; predicted vs observed loss once it finished."""
    try:
        return verification_status(session, study_id=study_id)
    except LookupError as exc:  # no rules, or no verification requested yet
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
