"""``scaletune admin``: server-side administration of tenants and API tokens, written
straight into the store named by the settings (``SCALETUNE_DATABASE_URL``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from service.cli.common import console, fail
from service.config import Settings
from service.reads.reports.terminal import show_table

if TYPE_CHECKING:  # the store's modules load when a command runs, not at start-up
    from sqlalchemy.orm import Session, sessionmaker

    from service.storage.tables import ApiTokenRow
    from service.storage.tokens import IssuedToken

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True,
    help="Tenants and API tokens, written straight into the store of the settings "
    "(SCALETUNE_DATABASE_URL); run where the API runs.",
)


def _admin_store() -> sessionmaker[Session]:
    """A sessionmaker on the settings' store (migrated), or a CLI error without the URL's
    password."""
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from service.storage.db import make_engine, make_sessionmaker, migrate

    try:
        settings = Settings()
    except ValidationError as exc:
        fail(f"invalid settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
    try:
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        engine = make_engine(settings.database_url)
        migrate(engine)
    except (SQLAlchemyError, ValueError, OSError) as exc:
        fail(f"cannot open the store: {type(exc).__name__} (SCALETUNE_DATABASE_URL)")
    console.print(f"store: {where}", highlight=False)
    return make_sessionmaker(engine)


def _admin_write(action: Callable[[Session], T]) -> T:
    """Run ``action(session)`` in one transaction; a lookup or name error is a CLI error."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.storage.db import transaction
    from service.storage.tenants import TenantExistsError, TenantNotFoundError, TokenNotFoundError

    try:
        with transaction(_admin_store()) as session:
            return action(session)
    except (TenantExistsError, TenantNotFoundError, TokenNotFoundError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"the store refused the change: {type(exc).__name__}")


@app.command("create-tenant")
def create_tenant(name: Annotated[str, typer.Argument(metavar="NAME", hidden=True)]) -> None:
    """Create the tenant NAME (its studies are reachable with its tokens only)."""
    import re
    import time

    from service.api.schemas import TENANT_NAME_PATTERN
    from service.storage import tenants

    if not re.match(TENANT_NAME_PATTERN, name):
        fail("a tenant name is 1-100 letters, digits, '_', '.' or '-', starting alphanumeric")
    tenant = _admin_write(lambda s: tenants.create_tenant(s, name=name, now=time.time()))
    console.print(f"tenant {tenant.name} (id {tenant.id}) created", highlight=False)


@app.command("issue-token")
def issue_token(
    tenant: Annotated[str | None, typer.Argument(metavar="TENANT", hidden=True)] = None,
    name: Annotated[str, typer.Option(metavar="NAME", help="what the token is for")] = "cli",
    admin_token: Annotated[
        bool, typer.Option("--admin", help="an admin token (no tenant) instead")
    ] = False,
) -> None:
    """Issue an API token of the tenant TENANT (or, with --admin, an admin token); it is
    printed once and only its hash is stored."""
    import time

    from service.storage import tenants, tokens

    if (tenant is None) == (not admin_token):
        fail("name a TENANT, or pass --admin for an admin token (not both)")

    def issue(session: Session) -> IssuedToken:
        tenant_id = None
        if tenant is not None:
            row = tenants.find_tenant(session, name=tenant)
            if row is None:
                raise tenants.TenantNotFoundError(
                    f"no tenant named {tenant!r}; create it with: scaletune admin create-tenant"
                )
            tenant_id = row.id
        return tokens.issue_token(session, tenant_id=tenant_id, name=name, now=time.time())

    issued = _admin_write(issue)
    owner = "admin" if tenant is None else f"tenant {tenant}"
    console.print(f"token {issued.row.prefix} (id {issued.row.id}) for {owner}; shown once:")
    print(issued.token)  # plain stdout, so it can be captured: TOKEN=$(scaletune admin ...)


@app.command("revoke")
def revoke(ref: Annotated[str, typer.Argument(metavar="TOKEN", hidden=True)]) -> None:
    """Revoke the API token TOKEN, named by its id or prefix (st_...): refused from the
    next request on."""
    import time

    from service.storage.tokens import revoke_token

    row = _admin_write(lambda s: revoke_token(s, ref=ref, now=time.time()))
    console.print(f"token {row.prefix} (id {row.id}) revoked", highlight=False)


@app.command("tokens")
def list_tokens() -> None:
    """Tenants and their tokens (prefix, name, revoked or not); never the secrets."""
    from service.storage import tenants

    def read(session: Session) -> tuple[dict[int, str], list[ApiTokenRow]]:
        names = {t.id: t.name for t in tenants.list_tenants(session)}
        return names, tenants.list_tokens(session)

    names, tokens = _admin_write(read)
    rows = [
        [
            str(row.id),
            row.prefix,
            escape(row.name),
            escape("(admin)" if row.tenant_id is None else names.get(row.tenant_id, "?")),
            "yes" if row.revoked_at else "",
        ]
        for row in tokens
    ]
    console.print(f"tenants: {', '.join(names.values())}", highlight=False)
    show_table(
        console,
        title="API tokens",
        headers=["id", "prefix", "name", "tenant", "revoked"],
        rows=rows,
    )
