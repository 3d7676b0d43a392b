"""Past runs as a finished study: ``POST /studies/import`` (see ``service.interop.imports``)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, status

from service.api.auth import Authenticated, PrincipalDep
from service.api.deps import FrontsDep, ProposalsDep, SessionDep
from service.api.refusals import AUTHENTICATED, refusals
from service.api.routes.studies import study_detail
from service.api.schemas import StudyDetail
from service.interop.imports import ImportRefusedError, StudyImport, create_imported_study
from service.storage import repository as repo

router = APIRouter(
    prefix="/studies", tags=["studies"], dependencies=[Authenticated], responses=AUTHENTICATED
)


@router.post("/import", status_code=status.HTTP_201_CREATED, responses=refusals(403, 413))
def import_study(
    body: StudyImport,
    session: SessionDep,
    proposals: ProposalsDep,
    principal: PrincipalDep,
    fronts: FrontsDep,
) -> StudyDetail:
    """Store past runs as a study of the token's tenant, all or nothing: one trial per
    run (diverged or failed runs as FAILED), its space given or inferred. The control
    worker then fits its scaling rules and marks it COMPLETE (GET the study to see it).
    A run that does not fit the space is refused (422) naming the run; nothing is stored."""
    if principal.tenant_id is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "a study belongs to a tenant: import with a tenant's token, not an admin token",
        )
    try:
        study, _ = create_imported_study(
            session, body=body, now=time.time(), tenant_id=principal.tenant_id
        )
    except ImportRefusedError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    session.commit()
    proposals.kick(study.id)  # an inline scheduler completes it here, in another session
    session.expire_all()
    return study_detail(session, study=repo.get_study(session, study_id=study.id), fronts=fronts)
