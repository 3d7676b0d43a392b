"""The Python client against the real app (TestClient as its httpx transport)."""

from __future__ import annotations

import warnings

import pytest

from service.api.app import create_app
from service.config import Settings
from service.interop.client import ApiError, ScaletuneClient
from tests.auth import authorize

with warnings.catch_warnings():
    # starlette asks for its "httpx2" fork; the httpx we depend on works for TestClient.
    warnings.filterwarnings("ignore", message=".*install `httpx2`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def test_client_mirrors_the_api(sqlite_url: str, redis_url: str) -> None:
    settings = Settings(database_url=sqlite_url, broker_url=redis_url, proposals="inline")
    with TestClient(create_app(settings)) as http:
        authorize(http)
        client = ScaletuneClient(http=http)
        study = client.create_study(
            {
                "name": "c",
                "objective": "testbed",
                "executor": "external",
                "budget": {"max_trials": 2},
                "search": {"n_startup": 2},
            }
        )
        for item in client.ask(study["id"], count=2)["data"]:
            assert client.heartbeat(item["trial_id"])["state"] == "RUNNING"
            client.tell(item["trial_id"], loss=2.0 + item["number"], cost=1.0 + item["number"])
        assert client.get_study(study["id"])["state"] == "COMPLETE"
        assert client.front(study["id"])["data"][0]["loss"] == 2.0
        assert client.list_trials(study["id"], states=["COMPLETE"])["count"] == 2
        assert client.list_studies()["count"] == 1
        with pytest.raises(ApiError, match="HTTP 404: no study with id 99") as info:
            client.get_study(99)
        assert info.value.status == 404
