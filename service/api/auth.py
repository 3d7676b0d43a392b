"""Who is calling: the API token of every request, and what it may reach.

Every route outside ``/health``, ``/ready``, the OpenAPI pages and the dashboard's static
files needs ``Authorization: Bearer <token>``:

- a missing, unknown or revoked token is refused with 401;
- a tenant's token reaches its tenant's studies and their trials only; another tenant's
  study or trial answers 404 exactly as one that does not exist (``check_*_owner``), so
  the answer reveals nothing of it;
- an admin token (``SCALETUNE_ADMIN_TOKEN``, or a token row without a tenant) reaches
  every study and the admin-only routes (queue view, tenants and tokens, and
  ``/metrics`` unless ``metrics_public``); a tenant token there gets 403. Studies belong
  to tenants, so an admin token cannot create one.

Checking a token is one indexed lookup by its hash (``service.storage.tokens``), on every request,
so a revoked token is refused at once; checking that a study or trial belongs to the
tenant is one primary-key read the first time, then remembered by the process
(``tenants.Owners``: owners never change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.deps import SessionDep, StudyId, TrialId
from service.storage import tenants
from service.storage.tokens import hash_token, same_hash


@dataclass(frozen=True)
class Principal:
    """The caller: a tenant (``tenant_id``) or an admin (``tenant_id`` None)."""

    tenant_id: int | None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None


ADMIN = Principal(tenant_id=None)

bearer = HTTPBearer(
    auto_error=False,
    description="An API token: `scaletune admin issue-token TENANT` prints one.",
)
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def authenticate(request: Request, session: SessionDep, credentials: CredentialsDep) -> Principal:
    """The caller of this request (401 without a valid token)."""
    if credentials is None:
        raise _unauthorized(
            "missing API token: send the header 'Authorization: Bearer <token>' "
            "(an admin issues one with: scaletune admin issue-token TENANT)"
        )
    digest = hash_token(credentials.credentials)
    admin_hash: str | None = request.app.state.admin_token_hash
    if admin_hash is not None and same_hash(digest, admin_hash):
        return ADMIN
    row = tenants.find_token(session, token_hash=digest)
    if row is None or row.revoked_at is not None:
        raise _unauthorized("unknown or revoked API token")
    return Principal(tenant_id=row.tenant_id)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_admin(principal: PrincipalDep) -> Principal:
    """403 for a tenant's token."""
    if not principal.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this endpoint needs an admin token (SCALETUNE_ADMIN_TOKEN, or one issued "
            "with: scaletune admin issue-token --admin)",
        )
    return principal


def owned_study(
    request: Request, study_id: StudyId, principal: PrincipalDep, session: SessionDep
) -> None:
    """404 unless the caller's tenant owns the study in the path (admins reach all)."""
    if principal.tenant_id is not None:
        tenants.check_study_owner(
            session,
            study_id=study_id,
            tenant_id=principal.tenant_id,
            owners=request.app.state.owners,
        )


def owned_trial(
    request: Request, trial_id: TrialId, principal: PrincipalDep, session: SessionDep
) -> None:
    """404 unless the caller's tenant owns the trial in the path (admins reach all)."""
    if principal.tenant_id is not None:
        tenants.check_trial_owner(
            session,
            trial_id=trial_id,
            tenant_id=principal.tenant_id,
            owners=request.app.state.owners,
        )


def metrics_access(request: Request, session: SessionDep, credentials: CredentialsDep) -> None:
    """``/metrics`` needs an admin token unless the settings make it public."""
    if not request.app.state.settings.metrics_public:
        require_admin(authenticate(request, session, credentials))


Authenticated = Depends(authenticate)
AdminOnly = Depends(require_admin)
OwnedStudy = Depends(owned_study)
OwnedTrial = Depends(owned_trial)
