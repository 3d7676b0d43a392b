"""PostgreSQL briefly unreachable: requests fail with 503 (Retry-After), not 500; they
succeed once it returns; a request that failed wrote nothing."""

from __future__ import annotations

import warnings

import pytest

from service.api.app import create_app
from service.config import Settings
from tests.auth import authorize

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

STUDY = {
    "name": "outage",
    "objective": "testbed",
    "budget": {"max_trials": 4},
    "in_flight": 2,
    "executor": "external",
    "seed": 3,
    "search": {"n_startup": 4},
}


def test_requests_get_503_while_postgres_is_cut_and_succeed_after(
    proxied_pg_url, redis_url: str
) -> None:
    database_url, proxy = proxied_pg_url
    settings = Settings(
        database_url=database_url, broker_url=redis_url, proposals="inline", lease_seconds=60.0
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        authorize(client)
        study_id = client.post("/studies", json=STUDY).json()["id"]
        (item,) = client.post(f"/studies/{study_id}/ask", json={"count": 1}).json()["data"]
        trial_url = f"/trials/{item['trial_id']}"

        proxy.cut()
        refused = [
            client.post("/studies", json={**STUDY, "name": "during-outage"}),
            client.post(f"{trial_url}/tell", json={"loss": 1.5, "cost": 2.0}),
            client.get(f"/studies/{study_id}"),
            client.get(f"/studies/{study_id}/trials"),
        ]
        proxy.restore()

        for response in refused:
            assert response.status_code == 503, response.text
            assert "database is unavailable" in response.json()["detail"]
            assert int(response.headers["retry-after"]) > 0
        names = [s["name"] for s in client.get("/studies").json()["data"]]
        assert names == ["outage"]  # the create refused during the outage wrote nothing
        assert client.get(trial_url).json()["state"] == "RUNNING"  # nor did the tell
        told = client.post(f"{trial_url}/tell", json={"loss": 1.5, "cost": 2.0})
        assert told.status_code == 200 and told.json()["outcome"] == "recorded"
        assert client.get(trial_url).json()["loss"] == 1.5
