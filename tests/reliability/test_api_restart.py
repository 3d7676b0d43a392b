"""The API/scheduler process (uvicorn, scheduler inline) SIGKILLed mid-study and started
again: the state is rebuilt from PostgreSQL, and the suggestions that follow are identical
to those of an uninterrupted process given the same observations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.auth import bearer, issue_tenant_token_at
from tests.e2e.conftest import wait_for
from tests.reliability.conftest import free_port
from tests.service.conftest import pg_database_url as second_pg_database_url  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
N_TRIALS = 6
RESTART_AFTER = 3  # tells before the kill: the engine has seen some, not all, startup data
STUDY = {
    "name": "restart",
    "objective": "testbed",
    "budget": {"max_trials": N_TRIALS},
    "in_flight": 1,
    "executor": "external",
    "seed": 17,
    "search": {"n_startup": 4},
}


def _loss(params: dict) -> float:
    """A deterministic loss of the configuration, so both runs observe the same data."""
    numbers = [float(v) for v in params.values() if isinstance(v, int | float)]
    return 1.0 + sum(abs(v) % 3.0 for v in numbers)


class ApiProcess:
    def __init__(self, *, database_url: str, broker_url: str, log: Path, token: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "SCALETUNE_DATABASE_URL": database_url,
            "SCALETUNE_BROKER_URL": broker_url,
            "SCALETUNE_PROPOSALS": "inline",
        }
        args = ["-m", "uvicorn", "--factory", "service.api.app:create_app"]
        args += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        with log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", timeout=60, headers=bearer(token)
        )
        wait_for(self._up, timeout_s=45, what=lambda: f"uvicorn up; log: {log.read_text()}")

    def _up(self) -> bool:
        try:
            return self.client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as when a machine dies."""
        self.client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _ask_tell(api: ApiProcess, study_id: int, n: int) -> list[dict]:
    asked = []
    for _ in range(n):
        response = api.client.post(f"/studies/{study_id}/ask", json={"count": 1})
        (item,) = response.json()["data"]
        told = api.client.post(
            f"/trials/{item['trial_id']}/tell", json={"loss": _loss(item["params"]), "cost": 1.0}
        )
        assert told.json()["outcome"] == "recorded", told.text
        asked.append(item["params"])
    return asked


def _run(database_url: str, broker_url: str, log: Path, *, restart: bool) -> list[dict]:
    token = issue_tenant_token_at(database_url)  # kept in the store: valid after the restart
    api = ApiProcess(database_url=database_url, broker_url=broker_url, log=log, token=token)
    try:
        study_id = api.client.post("/studies", json=STUDY).json()["id"]
        params = _ask_tell(api, study_id, RESTART_AFTER if restart else N_TRIALS)
        if restart:
            api.kill()
            api = ApiProcess(database_url=database_url, broker_url=broker_url, log=log, token=token)
            params += _ask_tell(api, study_id, N_TRIALS - RESTART_AFTER)
        assert api.client.get(f"/studies/{study_id}").json()["state"] == "COMPLETE"
        return params
    finally:
        api.kill()


def test_a_restarted_api_suggests_what_an_uninterrupted_one_would(
    pg_database_url: str,
    second_pg_database_url: str,  # noqa: F811 (the fixture imported above)
    redis_url: str,
    tmp_path: Path,
) -> None:
    interrupted = _run(pg_database_url, redis_url, tmp_path / "api.log", restart=True)
    straight = _run(second_pg_database_url, redis_url, tmp_path / "api.log", restart=False)
    assert len(interrupted) == N_TRIALS
    assert interrupted == straight
