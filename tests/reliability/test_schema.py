"""Schemathesis against the OpenAPI spec, in process (ASGI), on SQLite and on PostgreSQL
(which refuses values SQLite stores: non-finite JSON numbers, NUL characters, ids past
32 bits): for a bounded number of generated requests per operation, no 5xx, and every
response's status is one the schema documents for that operation and its body matches
that status's schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.config import Settings
from tests.auth import ADMIN_TOKEN, authorize, bearer
from tests.reliability.faults import TestClient

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 8


ADMIN_PATHS = ("/admin", "/queues", "/metrics")


def _app(database_url: str, redis_url: str, report_dir: Path):  # type: ignore[no-untyped-def]
    """The app with one real study, and its tenant's token (so generated ids can hit it)."""
    app = create_app(
        Settings(
            database_url=database_url,
            broker_url=redis_url,
            proposals="inline",
            report_dir=report_dir,
            admin_token=ADMIN_TOKEN,
        )
    )
    with TestClient(app) as client:
        token = authorize(client)
        study = {"name": "s", "objective": "testbed", "budget": {"max_trials": 4}}
        assert client.post("/studies", json={**study, "executor": "external"}).status_code == 201
    return app, token


def test_no_5xx_and_responses_match_the_schema(database_url, redis_url, tmp_path) -> None:
    app, token = _app(database_url, redis_url, tmp_path / "reports")
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        for operation in operations:
            admin = operation.path.startswith(ADMIN_PATHS)
            _fuzz(operation, bearer(ADMIN_TOKEN if admin else token))
    finally:
        app.state.sessions.kw["bind"].dispose()  # before its database is dropped


def _fuzz(operation, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
        )

    run()
