"""Results: the Pareto front and the scaling rules (JSON, YAML)."""

from __future__ import annotations

import yaml
from fastapi import APIRouter, HTTPException, Response, status

from service import views
from service.api.deps import SessionDep
from service.schemas import FrontPublic, TrialPublic
from service.storage import repository as repo

router = APIRouter(prefix="/studies/{study_id}", tags=["results"])


@router.get("/front")
def get_front(study_id: int, session: SessionDep) -> FrontPublic:
    """The completed trials no other trial beats in both loss and cost, by cost."""
    repo.get_study(session, study_id=study_id)
    front = views.front(views.completed_trials(session, study_id=study_id))
    return FrontPublic(
        study_id=study_id, data=[TrialPublic.model_validate(t) for t in front], count=len(front)
    )


@router.get("/rules")
def get_rules(study_id: int, session: SessionDep) -> dict:
    """The fitted scaling rules as JSON (404 until the study has them)."""
    return _rules(session, study_id)


@router.get("/rules.yaml", response_class=Response)
def get_rules_yaml(study_id: int, session: SessionDep) -> Response:
    """The fitted scaling rules as YAML."""
    text = yaml.safe_dump(_rules(session, study_id), sort_keys=False)
    return Response(content=text, media_type="application/yaml")


def _rules(session, study_id: int) -> dict:  # type: ignore[no-untyped-def]
    study = repo.get_study(session, study_id=study_id)
    if study.rules is None:
        why = study.message or "the study has not finished"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scaling rules yet: {why}")
    return study.rules
