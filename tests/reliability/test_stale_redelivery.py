"""A reclaimed attempt is never run again (the real stack, with a 15 s visibility
timeout instead of 12 h): a worker killed mid-trial leaves its message unacknowledged;
the trial is reclaimed and finished by another attempt; when the broker hands the old
message out again, the worker drops it unrun, because the service retired that attempt."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis

from bench.processes import stop_process_group
from service.api.app import create_app
from tests.auth import authorize
from tests.e2e.conftest import wait_for
from tests.reliability.faults import TestClient, cluster_settings, study_state, trial_rows
from tests.reliability.test_worker_killed import STUDY, _slow_worker, plugin_cluster  # noqa: F401
from workers.contracts import attempt_task_id

pytestmark = pytest.mark.integration


@pytest.fixture
def short_visibility_cluster(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The plugin cluster whose broker hands an unacknowledged message out again after
    15 s (longer than a trial here, 3 to 5 s), swept every second."""
    monkeypatch.setenv("SCALETUNE_VISIBILITY_TIMEOUT_S", "15")
    monkeypatch.setenv("SCALETUNE_RESTORE_INTERVAL_S", "1")
    return request.getfixturevalue("plugin_cluster")


def _in_broker(client: redis.Redis, task_id: str, queue: str) -> bool:
    """Whether a message of ``task_id`` is queued or held unacknowledged (kombu's keys)."""
    held = client.hvals("unacked") + client.lrange(queue, 0, -1)
    return any(task_id.encode() in raw for raw in held)


def test_a_reclaimed_attempt_redelivered_later_is_not_run(
    short_visibility_cluster, tmp_path: Path
) -> None:
    cluster = short_visibility_cluster
    url = cluster.database_url
    with TestClient(create_app(cluster_settings(cluster))) as client:
        authorize(client)
        study_id = client.post("/studies", json=STUDY | {"budget": {"max_trials": 1}}).json()["id"]
    broker = redis.Redis.from_url(cluster.broker_url)
    doomed = _slow_worker(cluster, "doomed", tmp_path / "doomed.log")
    survivor = None
    try:
        wait_for(
            lambda: list(broker.scan_iter(f"{cluster.prefix}hb:trial:{study_id}:*")),
            timeout_s=45,
            what="the first attempt's heartbeat (it is running)",
        )
        os.killpg(doomed.pid, signal.SIGKILL)  # its message stays unacknowledged
        doomed.wait(timeout=10)
        survivor = _slow_worker(cluster, "survivor", tmp_path / "survivor.log")
        wait_for(
            lambda: study_state(url, study_id) == "COMPLETE",
            timeout_s=60,
            what=lambda: f"the study to complete; trials: {trial_rows(url, study_id)}",
        )
        (trial,) = trial_rows(url, study_id)
        # The killed attempt 0 was reclaimed and a later one finished it: 1, or 2 when the
        # survivor, online but still starting its consumer on a loaded machine, looked idle
        # past the 3 s grace, so attempt 1 was resent as 2 (no attempt spent).
        assert trial["attempt"] >= 1
        stale = attempt_task_id(study_id, trial["id"], 0)
        wait_for(
            lambda: not _in_broker(broker, stale, f"{cluster.prefix}slow"),
            timeout_s=60,
            what=f"the broker to hand {stale} out again and the survivor to take it",
        )
        deliveries = broker.get(f"{cluster.prefix}hb:deliveries:{stale}:0")
    finally:
        broker.close()
        for process in (doomed, survivor):
            if process is not None:
                stop_process_group(process)
    assert int(deliveries) == 1  # run once, by the killed worker; never again
    assert "retired by the service" in (tmp_path / "survivor.log").read_text()
    assert trial_rows(url, study_id) == [trial]  # nothing changed after the finish
