"""The admin commands (tenants and tokens, written into the store of the settings) and the
client commands' token (``--token`` / ``SCALETUNE_TOKEN``), against the real app."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from service import cli
from service.api.app import create_app
from service.cli import common
from service.config import Settings
from service.interop.client import ScaletuneClient
from tests.auth import bearer
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
    token = _issued("acme", "--name", "ci")
    admin = _issued("--admin")
    assert api.get("/studies", headers=bearer(token)).json() == {"data": [], "count": 0}
    assert api.get("/queues", headers=bearer(token)).status_code == 403
    assert api.get("/queues", headers=bearer(admin)).status_code == 200

    listed = _admin("tokens")
    prefix = "_".join(token.split("_")[:2])  # st_<8 hex>
    assert listed.exit_code == 0 and prefix in listed.output and "acme" in listed.output
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
