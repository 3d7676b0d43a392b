"""Secrets never leave the process: API tokens, the admin token and the database password
appear in no API response (errors and /ready included) and in no JSON log line; the
store keeps only tokens' hashes."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.config import Settings
from service.storage.db import transaction
from service.storage.tables import ApiTokenRow
from tests.auth import ADMIN_TOKEN, app_routes, bearer, issue_tenant_token
from tests.reliability.faults import TestClient
from tests.service.conftest import throwaway_pg_database
from tests.service.test_metrics import restore_root_logger  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

PASSWORD = f"pw-{uuid.uuid4().hex}"
STUDY = {"name": "s", "objective": "testbed", "budget": {"max_trials": 2}, "executor": "external"}


def _settings(database_url: str, redis_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(
        database_url=database_url,
        broker_url=redis_url,
        heartbeat_prefix=f"sec-{uuid.uuid4().hex[:8]}",
        proposals="inline",
        admin_token=ADMIN_TOKEN,
        log_format="json",
        log_level="DEBUG",
        report_dir=tmp_path / "reports",
    )


def _exercise(client: TestClient, tokens: dict[str, str | None]) -> list[str]:
    """Every route with every kind of caller, and bad input: each response's text and
    headers."""
    seen = []
    for method, path in app_routes():
        if method == "MOUNT":
            method, path = "GET", f"{path}/"
        path = path.replace("{name}", "scaling-report.md")
        for key in ("study_id", "trial_id", "tenant_id", "token_id"):
            path = path.replace(f"{{{key}}}", "1")
        for token in tokens.values():
            headers = {} if token is None else bearer(token)
            response = client.request(method, path, headers=headers, json={"bad": [1]})
            seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
    return seen


def test_no_secret_in_responses_logs_or_the_store(
    postgres_url,
    redis_url,
    tmp_path,
    capsys,
    restore_root_logger,  # noqa: F811
) -> None:
    with throwaway_pg_database(postgres_url) as url:  # trust auth: any password is accepted
        url = make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)
        app = create_app(_settings(url, redis_url, tmp_path))
        with TestClient(app, raise_server_exceptions=False) as client:
            token = issue_tenant_token(app.state.sessions)
            study = client.post("/studies", json=STUDY, headers=bearer(token))
            assert study.status_code == 201
            admin = bearer(ADMIN_TOKEN)
            issued = client.post("/admin/tenants/1/tokens", headers=admin).json()["token"]
            client.post("/admin/tokens/2/revoke", headers=admin)
            callers = {"tenant": token, "admin": ADMIN_TOKEN, "none": None, "bad": "st_x_y"}
            seen = _exercise(client, {**callers, "revoked": issued})
            with transaction(app.state.sessions) as session:
                stored = [
                    (r.prefix, r.name, r.token_hash) for r in session.scalars(select(ApiTokenRow))
                ]
        app.state.sessions.kw["bind"].dispose()

    logs = capsys.readouterr().err
    assert "scaletune.http" in logs and '"status": 401' in logs  # the JSON log was written
    for secret in (token, issued, ADMIN_TOKEN, PASSWORD):
        assert not [text for text in seen if secret in text]
        assert secret not in logs
    assert hashlib.sha256(token.encode()).hexdigest() in {h for _, _, h in stored}
    assert not [row for row in stored if any(t in str(row) for t in (token, issued))]
    assert ADMIN_TOKEN not in repr(app.state.settings)


def test_an_unreachable_database_is_reported_without_its_url(
    redis_url,
    tmp_path,
    capsys,
    restore_root_logger,  # noqa: F811
) -> None:
    url = f"postgresql+psycopg://scaletune:{PASSWORD}@127.0.0.1:9/scaletune"  # nothing listens
    app = create_app(_settings(url, redis_url, tmp_path), run_migrations=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        ready = client.get("/ready")
        studies = client.get("/studies", headers=bearer(ADMIN_TOKEN + "x"))
    assert ready.status_code == 503 and studies.status_code == 503
    logs = capsys.readouterr().err
    for text in (ready.text, str(ready.headers), studies.text, logs):
        assert PASSWORD not in text
