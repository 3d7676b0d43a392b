"""The HTTP API on a real SQLite store, with the scheduler inline (ask/tell studies)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

with warnings.catch_warnings():
    # starlette asks for its "httpx2" fork; the httpx we depend on works for TestClient.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from tests.auth import ADMIN_TOKEN, authorize, bearer

pytestmark = pytest.mark.integration

STUDY = {
    "name": "api",
    "objective": "testbed",
    "budget": {"max_trials": 4},
    "in_flight": 2,
    "executor": "external",
    "seed": 1,
    "search": {"n_startup": 4},
}


@pytest.fixture
def client(sqlite_url: str, redis_url: str):
    settings = Settings(
        database_url=sqlite_url,
        broker_url=redis_url,
        proposals="inline",
        lease_seconds=30.0,
        max_body_bytes=50_000,
        admin_token=ADMIN_TOKEN,
    )
    with TestClient(create_app(settings)) as client:
        authorize(client)
        yield client


def _create(client: TestClient, **overrides) -> dict:
    response = client.post("/studies", json={**STUDY, **overrides})
    assert response.status_code == 201, response.text
    return response.json()


def test_ask_tell_runs_a_study_to_its_budget(client: TestClient) -> None:
    study = _create(client)
    assert study["state"] == "RUNNING" and study["progress"]["max_trials"] == 4
    told = 0
    while client.get(f"/studies/{study['id']}").json()["state"] == "RUNNING":
        asked = client.post(f"/studies/{study['id']}/ask", json={"count": 2}).json()
        assert 1 <= asked["count"] <= 2
        for item in asked["data"]:
            assert set(item["params"]) >= {"learning_rate", "n_params"}
            loss = 3.0 + told * 0.1
            r = client.post(
                f"/trials/{item['trial_id']}/tell",
                json={"loss": loss, "cost": 10.0 + told, "metrics": {"tokens": 1e6}},
            )
            assert r.json()["outcome"] == "recorded"
            told += 1
    detail = client.get(f"/studies/{study['id']}").json()
    assert client.post(f"/studies/{study['id']}/ask", json={}).status_code == 409
    assert told == 4 and detail["state"] == "COMPLETE"
    assert detail["trials_by_state"]["COMPLETE"] == 4
    assert detail["progress"]["fraction"] == 1.0
    front = client.get(f"/studies/{study['id']}/front").json()
    assert front["count"] >= 1 and front["data"][0]["loss"] == pytest.approx(3.0)


def test_every_read_after_a_tell_shows_it_in_the_front(client: TestClient) -> None:
    """The front and cost bands are cached per process; each tell must still show up in
    the next GET of the front and of the study (the cache is keyed by the study's count
    of complete trials)."""
    study = _create(client)
    url = f"/studies/{study['id']}"
    told = [(3.0, 10.0), (2.0, 5.0), (1.0, 20.0)]  # the 2nd beats the 1st, the 3rd joins
    expected_fronts = [[(3.0, 10.0)], [(2.0, 5.0)], [(2.0, 5.0), (1.0, 20.0)]]
    for (loss, cost), expected in zip(told, expected_fronts, strict=True):
        (item,) = client.post(f"{url}/ask", json={"count": 1}).json()["data"]
        client.get(f"{url}/front").raise_for_status()  # warm the cache before the tell
        client.get(url).raise_for_status()
        tell = client.post(f"/trials/{item['trial_id']}/tell", json={"loss": loss, "cost": cost})
        assert tell.json()["outcome"] == "recorded"
        front = client.get(f"{url}/front").json()["data"]
        detail = client.get(url).json()
        assert [(t["loss"], t["cost_seconds"]) for t in front] == expected
        assert [(t["loss"], t["cost_seconds"]) for t in detail["front"]] == expected
        best_estimate = min(t["estimated_loss"] for t in detail["front"])
        assert detail["best_per_cost_band"][-1]["best_loss"] == best_estimate


def test_a_repeated_tell_changes_nothing(client: TestClient) -> None:
    study = _create(client)
    (item,) = client.post(f"/studies/{study['id']}/ask", json={"count": 1}).json()["data"]
    first = client.post(f"/trials/{item['trial_id']}/tell", json={"loss": 2.0, "cost": 1.0})
    again = client.post(f"/trials/{item['trial_id']}/tell", json={"loss": 9.0, "cost": 1.0})
    assert (first.json()["outcome"], again.json()["outcome"]) == ("recorded", "duplicate")
    trial = client.get(f"/trials/{item['trial_id']}").json()
    assert (trial["loss"], trial["state"]) == (2.0, "COMPLETE")


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"loss": "nan", "cost": 1.0}, "finite"),
        ({"loss": 1.0, "cost": -1.0}, "greater than or equal to 0"),
        ({"cost": 1.0}, "finite loss"),
        ({"loss": 1.0, "cost": 1.0, "bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_tells_are_refused_and_change_nothing(client: TestClient, body, fragment) -> None:
    study = _create(client)
    (item,) = client.post(f"/studies/{study['id']}/ask", json={"count": 1}).json()["data"]
    response = client.post(f"/trials/{item['trial_id']}/tell", json=body)
    assert response.status_code == 422 and fragment in response.text
    assert client.get(f"/trials/{item['trial_id']}").json()["state"] == "RUNNING"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"objective": "nope"}, "unknown objective 'nope'"),
        ({"budget": {}}, "budget needs max_trials, max_cost or both"),
        ({"in_flight": 0}, "greater than or equal to 1"),
        ({"space": {"params": [{"kind": "log", "name": "lr", "center": -1}]}}, "lr"),
    ],
)
def test_bad_studies_are_refused(client: TestClient, overrides, fragment) -> None:
    response = client.post("/studies", json={**STUDY, **overrides})
    assert response.status_code == 422 and fragment in response.text
    assert client.get("/studies").json()["count"] == 0


def test_pause_resume_stop_and_conflicts(client: TestClient) -> None:
    study_id = _create(client)["id"]
    assert client.post(f"/studies/{study_id}/pause").json()["state"] == "PAUSED"
    assert client.post(f"/studies/{study_id}/ask", json={}).status_code == 409
    assert client.post(f"/studies/{study_id}/resume").json()["state"] == "RUNNING"
    buffered = client.get(f"/studies/{study_id}/trials", params={"state": "WAITING"}).json()
    assert buffered["count"] > 0  # the inline scheduler filled the proposal buffer
    assert client.post(f"/studies/{study_id}/stop").json()["state"] == "STOPPED"
    conflict = client.post(f"/studies/{study_id}/resume")
    assert conflict.status_code == 409 and "STOPPED study cannot become RUNNING" in conflict.text
    trials = client.get(f"/studies/{study_id}/trials", params={"state": "WAITING"}).json()
    cancelled = client.get(f"/studies/{study_id}/trials", params={"state": "CANCELLED"}).json()
    assert (trials["count"], cancelled["count"]) == (0, buffered["count"])


def test_lists_page_and_unknown_ids_are_404(client: TestClient) -> None:
    for i in range(3):
        _create(client, name=f"s{i}")
    page = client.get("/studies", params={"offset": 1, "limit": 1}).json()
    assert page["count"] == 3 and [s["name"] for s in page["data"]] == ["s1"]
    assert client.get("/studies/999").status_code == 404
    assert client.get("/trials/999").json() == {"detail": "no trial with id 999"}
    assert client.get("/studies/1/rules").status_code == 404


def test_heartbeat_extends_an_external_lease(client: TestClient) -> None:
    study = _create(client)
    (item,) = client.post(f"/studies/{study['id']}/ask", json={"count": 1}).json()["data"]
    beat = client.post(f"/trials/{item['trial_id']}/heartbeat").json()
    assert beat["state"] == "RUNNING" and beat["lease_expires_at"] >= item["lease_expires_at"]


def test_oversized_bodies_are_refused(client: TestClient) -> None:
    response = client.post(
        "/studies", content=b"x" * 60_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_health_ready_queues_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["detail"] == {"database": "ok"}
    queues = client.get("/queues", headers=bearer(ADMIN_TOKEN)).json()
    assert queues["heartbeats_available"] is True and queues["queues"] == []
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/studies/{study_id}/ask", "/trials/{trial_id}/tell", "/queues"} <= set(paths)


def test_the_root_and_a_browsers_favicon_request_lead_to_the_dashboard(client: TestClient) -> None:
    assert client.get("/").url.path == "/ui/"
    icon = client.get("/favicon.ico")  # Chrome asks for it; a 404 is a console error
    assert icon.status_code == 200 and icon.url.path == "/ui/favicon.svg"
    assert icon.headers["content-type"].startswith("image/svg+xml")


def test_the_api_process_never_imports_torch() -> None:
    code = (
        "import sys; from service.config import Settings; from service.api.app import create_app;"
        "create_app(Settings(database_url='sqlite://'));"
        "bad = [m for m in ('torch', 'search.engine', 'workers.training', 'botorch')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_a_stopped_api_holds_no_database_connection(pg_database_url: str, redis_url: str) -> None:
    """Shutting the app down disposes its pool: PostgreSQL sees no connection of it left
    (an open one would otherwise wait for the garbage collector)."""
    settings = Settings(database_url=pg_database_url, broker_url=redis_url, proposals="inline")
    with TestClient(create_app(settings)) as client:
        authorize(client)
        assert client.get("/studies").status_code == 200
        assert _connections_to(pg_database_url) >= 1  # the pool keeps what it opened
    assert _connections_to(pg_database_url) == 0


def _connections_to(database_url: str) -> int:
    """Connections to ``database_url``'s database, counted from another one."""
    url = make_url(database_url)
    checker = create_engine(url.set(database="postgres"), poolclass=NullPool)
    try:
        with checker.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
            return int(conn.execute(query, {"name": url.database}).scalar_one())
    finally:
        checker.dispose()
