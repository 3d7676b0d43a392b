"""Redis restarted mid-study (a private redis-server without persistence, so every queued
message and heartbeat is lost): no recorded observation is lost, and dispatch resumes by
itself (the control worker's beat reclaims the trials whose messages vanished)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.api.app import create_app
from tests.auth import authorize
from tests.e2e.conftest import wait_for
from tests.reliability.conftest import free_port
from tests.reliability.faults import (
    TestClient,
    cluster_settings,
    engine_observations,
    study_state,
    trial_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "workers" / "plugin"
ROOT = Path(__file__).resolve().parents[2]
STUDY = {
    "name": "redis-restart",
    "objective": "t_sleep",
    "space": {
        "params": [{"kind": "linear", "name": "seconds", "center": 1.5, "min": 1.0, "max": 2.0}]
    },
    "budget": {"max_trials": 6},
    "in_flight": 2,
    "queue": "trials",
    "seed": 4,
    "search": {"n_startup": 4},
}


class PrivateRedis:
    """A redis-server of this test only (never the machine's shared one on 6379)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH; install redis (apt-get install redis)")
        args = [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [*args, "--daemonize", "no"], stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(self._ping, timeout_s=10, what="the private redis-server to answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def _ping(self) -> bool:
        client = redis.Redis.from_url(self.url)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    """Overrides the shared Redis for this module: the cluster runs on the private one."""
    return private_redis.url


@pytest.fixture
def restartable_cluster(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGIN_DIR), str(ROOT)]))
    monkeypatch.setenv("SCALETUNE_HEARTBEAT_GRACE_SECONDS", "3")
    return request.getfixturevalue("cluster")


def _finished(url: str, study_id: int) -> list[dict]:
    return [t for t in trial_rows(url, study_id) if t["state"] in ("COMPLETE", "FAILED")]


def test_a_redis_restart_loses_no_observation_and_dispatch_resumes(
    restartable_cluster, private_redis: PrivateRedis
) -> None:
    cluster = restartable_cluster
    url = cluster.database_url
    with TestClient(create_app(cluster_settings(cluster))) as client:
        authorize(client)
        study_id = client.post("/studies", json=STUDY).json()["id"]
    wait_for(
        lambda: len(_finished(url, study_id)) >= 2,
        timeout_s=45,
        what="two trials to finish before the restart",
    )
    before = {t["id"]: t["loss"] for t in _finished(url, study_id)}
    private_redis.stop()  # queued trial messages and heartbeats vanish with it
    private_redis.start()
    wait_for(
        lambda: study_state(url, study_id) == "COMPLETE",
        timeout_s=60,
        what=lambda: f"the study to complete; trials: {trial_rows(url, study_id)}",
    )
    after = _finished(url, study_id)
    assert len(after) == 6
    assert {t["id"]: t["loss"] for t in after if t["id"] in before} == before
    observations = engine_observations(url, study_id)
    assert len(observations) == len(after)  # each finished trial learned from once
    observed = sorted(o["loss"] for o in observations if not o["failed"])
    assert observed == sorted(t["loss"] for t in after if t["state"] == "COMPLETE")
