"""Admin only: tenants and their API tokens (a token's secret is returned once, at issue)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from service.api.auth import AdminOnly
from service.api.deps import MAX_ROW_ID, SessionDep
from service.api.refusals import ADMIN_ONLY, refusals
from service.api.schemas import (
    IssuedTokenPublic,
    TenantCreate,
    TenantPublic,
    TenantsPublic,
    TokenCreate,
    TokenPublic,
    TokensPublic,
)
from service.storage import tenants
from service.storage.tokens import issue_token, revoke_token

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminOnly], responses=ADMIN_ONLY)

TenantId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a tenant's id")]
TokenId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="an API token's id")]


@router.post("/tenants", status_code=status.HTTP_201_CREATED, responses=refusals(409, 413))
def create_tenant(body: TenantCreate, session: SessionDep) -> TenantPublic:
    """A new tenant (409 if the name is taken)."""
    try:
        tenant = tenants.create_tenant(session, name=body.name, now=time.time())
    except tenants.TenantExistsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return TenantPublic.model_validate(tenant)


@router.get("/tenants")
def list_tenants(session: SessionDep) -> TenantsPublic:
    rows = tenants.list_tenants(session)
    return TenantsPublic(data=[TenantPublic.model_validate(r) for r in rows], count=len(rows))


@router.post(
    "/tenants/{tenant_id}/tokens",
    status_code=status.HTTP_201_CREATED,
    responses=refusals(404, 413),
)
def create_token(
    tenant_id: TenantId, session: SessionDep, body: TokenCreate | None = None
) -> IssuedTokenPublic:
    """Issue a token of the tenant; the response holds the token, which is not kept."""
    try:
        tenants.get_tenant(session, tenant_id=tenant_id)
    except tenants.TenantNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    issued = issue_token(
        session, tenant_id=tenant_id, name=(body or TokenCreate()).name, now=time.time()
    )
    return IssuedTokenPublic(
        **TokenPublic.model_validate(issued.row).model_dump(), token=issued.token
    )


@router.get("/tokens")
def list_tokens(
    session: SessionDep,
    tenant_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> TokensPublic:
    """Tokens (prefix, name, tenant, revoked or not), never their secrets."""
    rows = tenants.list_tokens(session, tenant_id=tenant_id)
    return TokensPublic(data=[TokenPublic.model_validate(r) for r in rows], count=len(rows))


@router.post("/tokens/{token_id}/revoke", responses=refusals(404))
def revoke(token_id: TokenId, session: SessionDep) -> TokenPublic:
    """Revoke a token: it is refused (401) from the next request on."""
    try:
        row = revoke_token(session, ref=str(token_id), now=time.time())
    except tenants.TokenNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return TokenPublic.model_validate(row)
