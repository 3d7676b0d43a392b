"""Tenants and API tokens: every read and write of them, as keyword-only functions.

Same contract as ``service.storage.repository``: functions take an open ``Session`` and
never commit. Ownership lookups (``study_tenant``, ``trial_tenant``) are one primary-key
read each, so the API can check every request against its token's tenant cheaply.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.domain import StudyNotFoundError, TrialNotFoundError
from service.storage.tables import MAX_ROW_ID, ApiTokenRow, StudyRow, TenantRow, TrialRow

# The tenant the migration creates: studies from before tenants, and embedded mode's.
DEFAULT_TENANT = "default"


class TenantNotFoundError(LookupError):
    """No tenant with that name or id."""


class TenantExistsError(ValueError):
    """A tenant with that name exists."""


class TokenNotFoundError(LookupError):
    """No API token with that id or prefix."""


def create_tenant(session: Session, *, name: str, now: float) -> TenantRow:
    if find_tenant(session, name=name) is not None:
        raise TenantExistsError(f"a tenant named {name!r} exists")
    tenant = TenantRow(name=name, created_at=now)
    session.add(tenant)
    session.flush()
    return tenant


def find_tenant(session: Session, *, name: str) -> TenantRow | None:
    return session.scalars(select(TenantRow).where(TenantRow.name == name)).one_or_none()


def get_tenant(session: Session, *, tenant_id: int) -> TenantRow:
    tenant = session.get(TenantRow, tenant_id)
    if tenant is None:
        raise TenantNotFoundError(f"no tenant with id {tenant_id}")
    return tenant


def list_tenants(session: Session) -> list[TenantRow]:
    return list(session.scalars(select(TenantRow).order_by(TenantRow.id)).all())


def default_tenant_id(session: Session) -> int:
    """The id of the tenant ``default`` (created by migration 0003)."""
    tenant = find_tenant(session, name=DEFAULT_TENANT)
    if tenant is None:
        raise TenantNotFoundError(f"the tenant {DEFAULT_TENANT!r} is missing; migrate the store")
    return tenant.id


def add_token(
    session: Session, *, tenant_id: int | None, name: str, prefix: str, token_hash: str, now: float
) -> ApiTokenRow:
    row = ApiTokenRow(
        tenant_id=tenant_id, name=name, prefix=prefix, token_hash=token_hash, created_at=now
    )
    session.add(row)
    session.flush()
    return row


def find_token(session: Session, *, token_hash: str) -> ApiTokenRow | None:
    """The token with this hash (one lookup in its unique index), revoked or not."""
    return session.scalars(
        select(ApiTokenRow).where(ApiTokenRow.token_hash == token_hash)
    ).one_or_none()


def get_token(session: Session, *, ref: str) -> ApiTokenRow:
    """A token by id (digits) or by its public prefix (``st_...``)."""
    by_id = ref.isascii() and ref.isdigit()
    if by_id and int(ref) > MAX_ROW_ID:  # no such row; the driver would overflow
        raise TokenNotFoundError(f"no API token with id or prefix {ref!r}")
    column = ApiTokenRow.id if by_id else ApiTokenRow.prefix
    value: int | str = int(ref) if by_id else ref
    row = session.scalars(select(ApiTokenRow).where(column == value)).one_or_none()
    if row is None:
        raise TokenNotFoundError(f"no API token with id or prefix {ref!r}")
    return row


def list_tokens(session: Session, *, tenant_id: int | None = None) -> list[ApiTokenRow]:
    query = select(ApiTokenRow).order_by(ApiTokenRow.id)
    if tenant_id is not None:
        query = query.where(ApiTokenRow.tenant_id == tenant_id)
    return list(session.scalars(query).all())


def study_tenant(session: Session, *, study_id: int) -> int | None:
    """The tenant owning ``study_id``; None when there is no such study."""
    return session.scalar(select(StudyRow.tenant_id).where(StudyRow.id == study_id))


def trial_tenant(session: Session, *, trial_id: int) -> int | None:
    """The tenant owning the study of ``trial_id``; None when there is no such trial."""
    return session.scalar(
        select(StudyRow.tenant_id)
        .join(TrialRow, TrialRow.study_id == StudyRow.id)
        .where(TrialRow.id == trial_id)
    )


class Owners:
    """The tenants of the studies and trials a process has looked up.

    A study never changes tenant and no study or trial row is ever deleted (so no id is
    reused): a remembered owner cannot go stale, and the API checks ownership on every
    request without reading it again. An id that was not found is not remembered (it may be
    created next). Bounded: when full, it starts over.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self.maxsize = maxsize
        self._owners: dict[tuple[str, int], int] = {}

    def of(self, kind: str, row_id: int, lookup: Callable[[], int | None]) -> int | None:
        """The owner of ``kind`` ("study" or "trial") ``row_id``; ``lookup()`` reads it."""
        key = (kind, row_id)
        tenant = self._owners.get(key)
        if tenant is None:
            tenant = lookup()
            if tenant is not None:
                if len(self._owners) >= self.maxsize:
                    self._owners.clear()
                self._owners[key] = tenant
        return tenant


def check_study_owner(
    session: Session, *, study_id: int, tenant_id: int, owners: Owners | None = None
) -> None:
    """StudyNotFoundError, worded as for a missing study, unless ``tenant_id`` owns it:
    another tenant's study must be indistinguishable from one that does not exist."""
    owners = owners or Owners()
    owner = owners.of("study", study_id, lambda: study_tenant(session, study_id=study_id))
    if owner != tenant_id:
        raise StudyNotFoundError(f"no study with id {study_id}")


def check_trial_owner(
    session: Session, *, trial_id: int, tenant_id: int, owners: Owners | None = None
) -> None:
    """TrialNotFoundError, worded as for a missing trial, unless ``tenant_id`` owns it."""
    owners = owners or Owners()
    owner = owners.of("trial", trial_id, lambda: trial_tenant(session, trial_id=trial_id))
    if owner != tenant_id:
        raise TrialNotFoundError(f"no trial with id {trial_id}")
