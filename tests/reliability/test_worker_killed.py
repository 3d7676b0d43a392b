"""A trial worker killed with SIGKILL mid-trial: its trial is reclaimed after the heartbeat
grace and run again by another worker; the study completes, and no observation is lost or
counted twice (database rows, engine observations and results agree one to one)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis

from bench.processes import stop_process_group
from service.api.app import create_app
from tests.auth import authorize
from tests.e2e.conftest import _start, wait_for
from tests.reliability.faults import (
    TestClient,
    cluster_settings,
    engine_observations,
    study_state,
    trial_rows,
)

pytestmark = pytest.mark.integration

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "workers" / "plugin"
ROOT = Path(__file__).resolve().parents[2]
STUDY = {
    "name": "sigkill",
    "objective": "t_sleep",  # the test plugin's objective: sleeps `seconds`, heartbeating
    "space": {
        "params": [
            {"kind": "linear", "name": "seconds", "center": 4.0, "min": 3.0, "max": 5.0},
        ]
    },
    "budget": {"max_trials": 3},
    "in_flight": 1,
    "queue": "slow",
    "seed": 2,
    "search": {"n_startup": 4},
}


@pytest.fixture
def plugin_cluster(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The e2e cluster with the test objectives installed and a 3 s heartbeat grace."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGIN_DIR), str(ROOT)]))
    monkeypatch.setenv("SCALETUNE_HEARTBEAT_GRACE_SECONDS", "3")
    return request.getfixturevalue("cluster")


def _slow_worker(cluster, name: str, log: Path):  # type: ignore[no-untyped-def]
    args = ["-A", "workers.celery_app", "worker", "-Q", f"{cluster.prefix}slow", "-c", "1"]
    args += ["-n", f"{name}-{cluster.prefix}@%h", "--loglevel", "WARNING"]
    return _start(args, cluster.env, log)


def test_a_killed_worker_loses_and_doubles_nothing(plugin_cluster, tmp_path: Path) -> None:
    cluster = plugin_cluster
    url = cluster.database_url
    with TestClient(create_app(cluster_settings(cluster))) as client:
        authorize(client)
        created = client.post("/studies", json=STUDY)
        assert created.status_code == 201, created.text
        study_id = created.json()["id"]
    doomed = _slow_worker(cluster, "doomed", tmp_path / "doomed.log")
    survivor = None
    beats = redis.Redis.from_url(cluster.broker_url)
    try:
        wait_for(
            lambda: list(beats.scan_iter(f"{cluster.prefix}hb:trial:{study_id}:*")),
            timeout_s=45,
            what="the first trial's heartbeat (it is running)",
        )
        os.killpg(doomed.pid, signal.SIGKILL)  # mid-trial: it sleeps 3 to 5 s
        doomed.wait(timeout=10)
        survivor = _slow_worker(cluster, "survivor", tmp_path / "survivor.log")
        wait_for(
            lambda: study_state(url, study_id) == "COMPLETE",
            timeout_s=60,
            what=lambda: f"the study to complete; trials: {trial_rows(url, study_id)}",
        )
    finally:
        beats.close()
        for process in (doomed, survivor):
            if process is not None:
                stop_process_group(process)
    trials = trial_rows(url, study_id)
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    assert trials[0]["attempt"] >= 1  # the killed attempt was reclaimed and run again
    observed = sorted(o["loss"] for o in engine_observations(url, study_id))
    assert observed == sorted(t["loss"] for t in trials)  # each once, none lost
