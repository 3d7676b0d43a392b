"""Test helpers for the API's tokens: issue one straight in a store, send it on a client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from starlette.routing import Mount

from service.api.app import create_app
from service.config import Settings
from service.storage import tenants
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.storage.tokens import issue_token

# A valid admin token for tests' Settings(admin_token=...): 32+ characters.
ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"


def issue_tenant_token(sessions: Any, *, tenant: str = "tenant-a", name: str = "test") -> str:
    """A new token of ``tenant`` (created if missing) in the store behind ``sessions``."""
    with transaction(sessions) as session:
        row = tenants.find_tenant(session, name=tenant) or tenants.create_tenant(
            session, name=tenant, now=time.time()
        )
        return issue_token(session, tenant_id=row.id, name=name, now=time.time()).token


def issue_tenant_token_at(database_url: str, *, tenant: str = "tenant-a") -> str:
    """The same for a store known by URL (a uvicorn process's); migrates it first."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        return issue_tenant_token(make_sessionmaker(engine), tenant=tenant)
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def authorize(client: Any, *, tenant: str = "tenant-a") -> str:
    """Issue a token of ``tenant`` in the store of ``client``'s app (a TestClient) and
    send it on every request of ``client``; the token."""
    token = issue_tenant_token(client.app.state.sessions, tenant=tenant)
    client.headers.update(bearer(token))
    return token


@lru_cache(maxsize=1)
def app_routes() -> tuple[tuple[str, str], ...]:
    """(method, path) of every route of the app; ``("MOUNT", path)`` for a mount."""
    app = create_app(Settings(database_url="sqlite://"), run_migrations=False)
    routes = set()
    for route in _flat(app.routes):
        if isinstance(route, Mount):
            routes.add(("MOUNT", route.path))
        else:
            routes.update((m, route.path) for m in route.methods or () if m != "HEAD")
    return tuple(sorted(routes))


def _flat(routes: list[Any]) -> Iterator[Any]:
    """Every route, the included routers' too (FastAPI >= 0.165 keeps those as one entry
    per router, expanded by ``effective_route_contexts``)."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()
        else:
            yield route
