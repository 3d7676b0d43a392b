"""Tenants are isolated on every route: the real app on SQLite and PostgreSQL.

The routes are enumerated from the app itself, and each must be classified: public,
admin-only, a tenant's collection, or a route about one study or trial (a path with
``{study_id}`` or ``{trial_id}``). A route added later without a class fails
``test_every_route_is_classified``; one about a study or trial is checked by
``test_another_tenants_study_or_trial_is_404_like_a_missing_one`` without being listed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from service.api.app import create_app
from service.config import Settings
from service.storage.tenants import Owners
from tests.auth import ADMIN_TOKEN, app_routes, bearer, issue_tenant_token
from tests.reliability.faults import TestClient
from tests.service.conftest import throwaway_pg_database

pytestmark = pytest.mark.integration

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/"),  # a redirect to the dashboard
    ("GET", "/favicon.ico"),  # a redirect to the dashboard's icon
    ("MOUNT", "/ui"),  # the dashboard's static files (they read the API with a token)
}
ADMIN_ONLY = {
    ("GET", "/queues"),
    ("GET", "/metrics"),
    ("GET", "/admin/tenants"),
    ("POST", "/admin/tenants"),
    ("POST", "/admin/tenants/{tenant_id}/tokens"),
    ("GET", "/admin/tokens"),
    ("POST", "/admin/tokens/{token_id}/revoke"),
}
TENANT_COLLECTIONS = {("GET", "/studies"), ("POST", "/studies"), ("POST", "/studies/import")}
OBJECT_PARAMS = ("{study_id}", "{trial_id}")

# Bodies for routes that need one to reach their work (absent: no body).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/studies/{study_id}/ask"): {"count": 1},
    ("POST", "/trials/{trial_id}/tell"): {"loss": 1.0, "cost": 1.0},
    ("POST", "/studies/{study_id}/verify"): {"scale_factor": 10},
    ("POST", "/studies"): {"name": "s", "objective": "testbed", "budget": {"max_trials": 2}},
    ("POST", "/admin/tenants"): {"name": "x"},
    ("POST", "/studies/import"): {
        "name": "i",
        "runs": [{"params": {"x": 1.0}, "loss": 1.0, "cost": 1.0}],
    },
}
MISSING_ID = 10**9

STUDY = {
    "name": "iso",
    "objective": "testbed",
    "budget": {"max_trials": 6},
    "in_flight": 2,
    "executor": "external",
    "seed": 2,
    "search": {"n_startup": 4},
}


def _is_object_route(route: tuple[str, str]) -> bool:
    return any(param in route[1] for param in OBJECT_PARAMS)


OBJECT_ROUTES = [r for r in app_routes() if _is_object_route(r)]
GUARDED_ROUTES = [r for r in app_routes() if r not in PUBLIC]


def test_every_route_is_classified() -> None:
    routes = set(app_routes())
    listed = PUBLIC | ADMIN_ONLY | TENANT_COLLECTIONS
    unclassified = sorted(r for r in routes if r not in listed and not _is_object_route(r))
    assert unclassified == [], "classify these routes (and give them a tenant or admin check)"
    assert sorted(listed - routes) == [], "these classified routes no longer exist"
    assert len(OBJECT_ROUTES) >= 15


# -- a world of two tenants ---------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory, redis_url: str, postgres_url: str) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("tenants")
    with _database(request.param, folder, postgres_url) as database_url:
        settings = Settings(
            database_url=database_url,
            broker_url=redis_url,
            heartbeat_prefix=f"iso-{uuid.uuid4().hex[:8]}",
            proposals="inline",
            admin_token=ADMIN_TOKEN,
            report_dir=folder / "reports",
        )
        app = create_app(settings)
        with TestClient(app) as client:
            a = issue_tenant_token(app.state.sessions, tenant="tenant-a")
            b = issue_tenant_token(app.state.sessions, tenant="tenant-b")
            a_study = _created(client, a)
            (asked,) = client.post(
                f"/studies/{a_study}/ask", json={"count": 1}, headers=bearer(a)
            ).json()["data"]
            yield {
                "client": client,
                "a": a,
                "b": b,
                "a_studies": [a_study, _created(client, a)],
                "b_studies": [_created(client, b)],
                "study_id": a_study,
                "trial_id": asked["trial_id"],
            }
        app.state.sessions.kw["bind"].dispose()


def _database(kind: str, folder, postgres_url: str):  # type: ignore[no-untyped-def]
    if kind == "postgresql":
        return throwaway_pg_database(postgres_url)
    from contextlib import nullcontext

    return nullcontext(f"sqlite:///{folder / 'scaletune.db'}")


def _created(client: TestClient, token: str) -> int:
    response = client.post("/studies", json=STUDY, headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _call(
    world: dict,
    route: tuple[str, str],
    token: str | None,
    *,
    headers: dict[str, str] | None = None,
    **ids: int,
):
    """Send ``route`` with ``token`` (or exactly ``headers``), path ids filled in."""
    method, template = route
    values: dict[str, Any] = {"study_id": world["study_id"], "trial_id": world["trial_id"]}
    values.update(tenant_id=1, token_id=1, name="scaling-report.md", **ids)

    def fill(match: re.Match) -> str:
        key = match.group(1)
        assert key in values, f"the test has no value for the path parameter {key!r}"
        return str(values[key])

    path = re.sub(r"\{(\w+)\}", fill, template)
    if headers is None:
        headers = {} if token is None else bearer(token)
    return world["client"].request(method, path, json=BODIES.get(route), headers=headers)


def _state_of_a(world: dict) -> list[Any]:
    """Tenant A's study, its trials and its trial, as the admin reads them."""
    client, admin = world["client"], bearer(ADMIN_TOKEN)
    study, trial = world["study_id"], world["trial_id"]
    return [
        client.get(f"/studies/{study}", headers=admin).json(),
        client.get(f"/studies/{study}/trials", headers=admin).json(),
        client.get(f"/trials/{trial}", headers=admin).json(),
    ]


def _normalised(response, the_id: int) -> tuple[int, str]:
    return response.status_code, response.text.replace(str(the_id), "<id>")


# -- the checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=" ".join)
def test_another_tenants_study_or_trial_is_404_like_a_missing_one(world, route) -> None:
    before = _state_of_a(world)
    foreign = _call(world, route, world["b"])
    missing = _call(world, route, world["b"], study_id=MISSING_ID, trial_id=MISSING_ID)
    assert foreign.status_code == 404, foreign.text
    target = world["trial_id"] if "{trial_id}" in route[1] else world["study_id"]
    assert _normalised(foreign, target) == _normalised(missing, MISSING_ID)
    assert _state_of_a(world) == before  # nothing of A's changed
    own = _call(world, route, world["a"])  # the owner reaches it: the 404 was the tenant check
    assert _normalised(own, target) != _normalised(foreign, target)


@pytest.mark.parametrize("route", GUARDED_ROUTES, ids=" ".join)
@pytest.mark.parametrize("credential", ["none", "unknown", "revoked", "basic"])
def test_every_route_but_the_public_ones_needs_a_valid_token(world, route, credential) -> None:
    if credential == "none":
        response = _call(world, route, None)
    elif credential == "unknown":
        response = _call(world, route, "st_00000000_" + "x" * 43)
    elif credential == "revoked":
        response = _call(world, route, _revoked_token(world))
    else:  # a valid token in another scheme is no token
        response = _call(world, route, None, headers={"Authorization": f"Basic {world['a']}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in response.json()["detail"]


def _revoked_token(world: dict) -> str:
    if "revoked" not in world:
        client, admin = world["client"], bearer(ADMIN_TOKEN)
        tenant = client.get("/admin/tenants", headers=admin).json()["data"][-1]["id"]
        issued = client.post(f"/admin/tenants/{tenant}/tokens", headers=admin).json()
        assert client.get("/studies", headers=bearer(issued["token"])).status_code == 200
        revoked = client.post(f"/admin/tokens/{issued['id']}/revoke", headers=admin)
        assert revoked.json()["revoked_at"] is not None
        world["revoked"] = issued["token"]
    return world["revoked"]


@pytest.mark.parametrize("route", sorted(ADMIN_ONLY), ids=" ".join)
def test_admin_only_routes_refuse_a_tenants_token(world, route) -> None:
    response = _call(world, route, world["a"])
    assert response.status_code == 403, response.text
    assert "admin token" in response.json()["detail"]


def test_the_admin_token_reaches_the_admin_routes(world) -> None:
    client, admin = world["client"], bearer(ADMIN_TOKEN)
    assert client.get("/queues", headers=admin).status_code == 200
    assert client.get("/metrics", headers=admin).status_code == 200
    name = f"t-{uuid.uuid4().hex[:6]}"
    tenant = client.post("/admin/tenants", json={"name": name}, headers=admin)
    assert tenant.status_code == 201
    again = client.post("/admin/tenants", json={"name": name}, headers=admin)
    assert again.status_code == 409 and "exists" in again.json()["detail"]
    issued = client.post(f"/admin/tenants/{tenant.json()['id']}/tokens", headers=admin).json()
    listed = client.get("/admin/tokens", headers=admin).json()["data"]
    assert issued["prefix"] in {t["prefix"] for t in listed}
    assert all("token" not in t and issued["token"] not in str(t) for t in listed)
    assert client.get("/studies", headers=bearer(issued["token"])).json()["count"] == 0


def test_lists_show_a_tenant_its_own_studies_only(world) -> None:
    client = world["client"]

    def ids(token: str, **params: str) -> list[int]:
        response = client.get("/studies", params=params, headers=bearer(token)).json()
        return [s["id"] for s in response["data"]]

    assert ids(world["a"]) == world["a_studies"]
    assert ids(world["b"]) == world["b_studies"]
    assert ids(world["b"], state="RUNNING") == world["b_studies"]
    assert client.get("/studies", headers=bearer(world["b"])).json()["count"] == 1
    assert set(world["a_studies"] + world["b_studies"]) <= set(ids(ADMIN_TOKEN))


def test_a_study_belongs_to_the_tokens_tenant_and_an_admin_cannot_create_one(world) -> None:
    client = world["client"]
    refused = client.post("/studies", json=STUDY, headers=bearer(ADMIN_TOKEN))
    assert refused.status_code == 403 and "tenant" in refused.json()["detail"]
    study = _created(client, world["b"])
    assert client.get(f"/studies/{study}", headers=bearer(world["a"])).status_code == 404
    world["b_studies"].append(study)


def test_a_warm_start_from_another_tenants_study_is_404_like_a_missing_one(world) -> None:
    client, b = world["client"], bearer(world["b"])
    count = client.get("/studies", headers=b).json()["count"]

    def warm(source: int):  # type: ignore[no-untyped-def]
        return client.post(
            "/studies", json={**STUDY, "warm_start": {"study_id": source}}, headers=b
        )

    foreign, missing = warm(world["study_id"]), warm(MISSING_ID)
    assert foreign.status_code == 404
    assert _normalised(foreign, world["study_id"]) == _normalised(missing, MISSING_ID)
    assert client.get("/studies", headers=b).json()["count"] == count


@pytest.mark.parametrize("route", sorted(PUBLIC), ids=" ".join)
def test_public_routes_answer_without_a_token(world, route) -> None:
    method, path = route
    if method == "MOUNT":
        method, path = "GET", f"{path}/"
    response = world["client"].request(method, path)
    assert response.status_code == 200, response.text


def test_owners_are_remembered_once_found_and_missing_ids_are_not() -> None:
    owners, reads = Owners(maxsize=2), []

    def lookup(value: int | None):  # type: ignore[no-untyped-def]
        return lambda: reads.append(value) or value

    assert owners.of("study", 1, lookup(7)) == 7
    assert owners.of("study", 1, lookup(99)) == 7  # remembered: not read again
    assert owners.of("trial", 1, lookup(8)) == 8  # studies and trials apart
    assert owners.of("study", 2, lookup(None)) is None
    assert owners.of("study", 2, lookup(9)) == 9  # a missing id was not remembered
    assert reads == [7, 8, None, 9]
    assert owners.of("study", 1, lookup(7)) == 7 and reads[-1] == 7  # full: started over
