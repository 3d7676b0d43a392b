"""The admin commands (tenants and tokens, written into the store of the settings) and the
client commands' token (``--token`` / ``SCALETUNE_TOKEN``), against the real app; and the
client commands over HTTP to the API named by ``--api`` / ``SCALETUNE_API_URL``."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from service import cli
from service.api.app import create_app
from service.cli import common
from service.config import Settings
from service.interop.client import ScaletuneClient
from tests.auth import ADMIN_TOKEN, bearer
from tests.reliability.faults import TestClient

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture
def store(sqlite_url: str, monkeypatch) -> str:
    monkeypatch.setenv("SCALETUNE_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("SCALETUNE_TOKEN", raising=False)
    monkeypatch.delenv("SCALETUNE_ADMIN_TOKEN", raising=False)
    return sqlite_url


@pytest.fixture
def api(store: str, redis_url: str):
    with TestClient(create_app(Settings(database_url=store, broker_url=redis_url))) as client:
        yield client


def _admin(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(cli.app, ["admin", *args])


def _issued(*args: str) -> str:
    result = _admin("issue-token", *args)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]  # the token, alone on the last line


def test_admin_commands_create_tenants_and_issue_and_revoke_tokens(api) -> None:
    assert _admin("create-tenant", "acme").exit_code == 0
    token = _issued("acme", "--name", "ci-runner")
    admin = _issued("--admin")
    assert api.get("/studies", headers=bearer(token)).json() == {"data": [], "count": 0}
    assert api.get("/queues", headers=bearer(token)).status_code == 403
    assert api.get("/queues", headers=bearer(admin)).status_code == 200

    listed = _admin("tokens")
    prefix = "_".join(token.split("_")[:2])  # st_<8 hex>
    assert listed.exit_code == 0 and prefix in listed.output and "acme" in listed.output
    assert "ci-runner" in listed.output  # --name names the token in the listing
    assert token not in listed.output and admin not in listed.output
    revoked = _admin("revoke", prefix)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert api.get("/studies", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["create-tenant", "has space"], "a tenant name is"),
        (["issue-token", "nobody"], "no tenant named 'nobody'"),
        (["issue-token"], "pass --admin"),
        (["issue-token", "default", "--admin"], "not both"),
        (["revoke", "st_00000000"], "no API token with id or prefix"),
        (["revoke", "12345"], "no API token with id or prefix"),
        (["revoke", "9" * 30], "no API token with id or prefix"),
        (["revoke", "²"], "no API token with id or prefix"),
    ],
)
def test_bad_admin_input_is_a_cli_error_without_a_traceback(store, args, fragment) -> None:
    result = _admin(*args)
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert "Traceback" not in result.output


def test_a_taken_tenant_name_is_refused(store) -> None:
    assert _admin("create-tenant", "acme").exit_code == 0
    again = _admin("create-tenant", "acme")
    assert again.exit_code == 2 and "exists" in again.output


def test_an_unreachable_store_is_named_without_its_password(monkeypatch) -> None:
    monkeypatch.setenv("SCALETUNE_DATABASE_URL", "postgresql+psycopg://u:hunter2-pw@127.0.0.1:9/x")
    result = _admin("create-tenant", "acme")
    assert result.exit_code == 2 and "cannot open the store" in result.output
    assert "hunter2-pw" not in result.output and "Traceback" not in result.output


def test_client_commands_send_the_token_from_the_option_or_the_environment(
    api, monkeypatch
) -> None:
    monkeypatch.setattr(common, "api_client", _client_on(api))
    assert _admin("create-tenant", "acme").exit_code == 0
    token = _issued("acme")
    api.post(
        "/studies",
        json={"name": "mine", "objective": "testbed", "budget": {"max_trials": 2}},
        headers=bearer(token),
    )

    by_option = runner.invoke(cli.app, ["list", "--token", token])
    assert by_option.exit_code == 0 and "mine" in by_option.output
    monkeypatch.setenv("SCALETUNE_TOKEN", token)
    assert "mine" in runner.invoke(cli.app, ["status", "1"]).output
    refused = runner.invoke(cli.app, ["list", "--token", "st_00000000_nope"])
    assert refused.exit_code == 2 and "HTTP 401" in refused.output


def test_a_client_command_without_a_token_says_how_to_give_one(api, monkeypatch) -> None:
    monkeypatch.setattr(common, "api_client", _client_on(api))
    result = runner.invoke(cli.app, ["list"])
    assert result.exit_code == 2 and "SCALETUNE_TOKEN" in result.output


def _client_on(api: TestClient):  # type: ignore[no-untyped-def]
    """``common.api_client`` with the real app as transport: the CLI's own token check and
    header, the app's authentication."""
    build = common.api_client

    def client(url: str, token: str | None) -> ScaletuneClient:
        build(url, token)  # refuses a missing token as the CLI does
        return ScaletuneClient(http=api, token=token)

    return client


def test_watch_with_a_tenants_token_shows_the_study_and_says_queues_are_for_admins(
    api, monkeypatch
) -> None:
    monkeypatch.setattr(common, "api_client", _client_on(api))
    assert _admin("create-tenant", "acme").exit_code == 0
    token = _issued("acme")
    study = {"name": "mine", "objective": "testbed", "budget": {"max_trials": 2}}
    study_id = api.post("/studies", json=study, headers=bearer(token)).json()["id"]
    api.post(f"/studies/{study_id}/stop", headers=bearer(token))
    result = runner.invoke(cli.app, ["watch", str(study_id), "--token", token])
    assert result.exit_code == 0, result.output
    assert "STOPPED" in result.output and "shown to an admin token only" in result.output


# -- over HTTP: --api ------------------------------------------------------------------------

EXTERNAL_STUDY = (
    "name: over-http\nobjective: testbed\nexecutor: external\nbudget: {max_trials: 2}\n"
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_commands_talk_to_the_api_named_by_the_option_or_the_environment(
    store, live_api, tmp_path, monkeypatch
) -> None:
    """No stand-in client: each command builds its own from ``--api`` (or
    ``SCALETUNE_API_URL``) and ``--token``, and talks HTTP to the API served there."""
    assert _admin("create-tenant", "acme").exit_code == 0
    token = _issued("acme")
    study = tmp_path / "study.yaml"
    study.write_text(EXTERNAL_STUDY)
    over_http = ["--api", live_api, "--token", token]

    submitted = runner.invoke(cli.app, ["submit", str(study), *over_http])
    assert submitted.exit_code == 0, submitted.output
    assert "submitted study 1 (over-http)" in submitted.output
    status = runner.invoke(cli.app, ["status", "1", *over_http])
    assert status.exit_code == 0, status.output
    assert "study 1 over-http: RUNNING" in status.output
    stopped = runner.invoke(cli.app, ["stop", "1", *over_http])
    assert stopped.exit_code == 0 and "study 1: STOPPED" in stopped.output, stopped.output
    watched = runner.invoke(cli.app, ["watch", "1", *over_http])
    assert watched.exit_code == 0 and "over-http: STOPPED" in watched.output, watched.output

    monkeypatch.setenv("SCALETUNE_API_URL", live_api)
    listed = runner.invoke(cli.app, ["list", "--token", token])
    assert listed.exit_code == 0, listed.output
    assert ["1", "over-http", "testbed", "STOPPED"] in [
        r.split() for r in listed.stdout.splitlines()
    ]
    # The option wins over the environment: nothing listens where it points.
    elsewhere = f"http://127.0.0.1:{_closed_port()}"
    unreachable = runner.invoke(cli.app, ["list", "--api", elsewhere, "--token", token])
    assert unreachable.exit_code == 2 and "cannot reach the API" in unreachable.output
    assert "Traceback" not in unreachable.output
    submitted_elsewhere = runner.invoke(cli.app, ["submit", str(study), "--api", elsewhere])
    assert submitted_elsewhere.exit_code == 2, submitted_elsewhere.output
    assert "SCALETUNE_TOKEN" in submitted_elsewhere.output  # no token given: says how
    assert httpx.get(f"{live_api}/studies", headers=bearer(token)).json()["count"] == 1


def _study_gets(api: str) -> float:
    """``GET /studies/{study_id}`` requests the API has answered, from its /metrics."""
    text = httpx.get(f"{api}/metrics", headers=bearer(ADMIN_TOKEN)).text
    labels = ('method="GET"', 'route="/studies/{study_id}"', 'status="200"')
    for line in text.splitlines():
        if line.startswith("scaletune_http_requests_total{") and all(x in line for x in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_watch_polls_every_interval_until_the_study_stops(store, live_api) -> None:
    assert _admin("create-tenant", "acme").exit_code == 0
    token = _issued("acme")
    spec = {
        "name": "watched",
        "objective": "testbed",
        "executor": "external",
        "budget": {"max_trials": 2},
    }
    created = httpx.post(f"{live_api}/studies", json=spec, headers=bearer(token))
    assert created.status_code == 201, created.text

    def stop_soon() -> None:  # 1.2 s after watch's first look: 2 looks at the default 2 s
        deadline = time.monotonic() + 30.0
        while _study_gets(live_api) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.2)
        httpx.post(f"{live_api}/studies/1/stop", headers=bearer(token))

    stopper = threading.Thread(target=stop_soon)
    stopper.start()
    args = ["watch", "1", "--api", live_api, "--token", token, "--interval", "0.2"]
    try:
        result = runner.invoke(cli.app, args)
    finally:
        stopper.join(timeout=60.0)
    assert result.exit_code == 0, result.output
    assert "watched: RUNNING" in result.output and "watched: STOPPED" in result.output
    assert _study_gets(live_api) >= 4  # about 1.2 s / 0.2 s looks; the default makes 2


def test_watch_refuses_an_interval_below_its_floor(store) -> None:
    result = runner.invoke(cli.app, ["watch", "1", "--token", "t", "--interval", "0.1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value for '--interval'" in result.output and "0.2" in result.output
