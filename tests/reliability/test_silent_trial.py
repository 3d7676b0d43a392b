"""A trial that never reports (a worker took it and vanished before any heartbeat):
reclaimed after the heartbeat grace, retried up to max_attempts, then failed as an
infrastructure fault, and its slot goes to the next trial; a result arriving after that
changes nothing.

The vanishing worker is played by the test: it marks each attempt taken in Redis, as a
worker does before it runs one (a trial no worker took is not silent but waiting, see
test_unserved_queue.py), and never runs it."""

from __future__ import annotations

import pytest

from service.api.app import create_app
from tests.auth import authorize
from tests.e2e.conftest import wait_for
from tests.reliability.faults import TestClient, cluster_settings, send_results, trial_rows
from workers.contracts import attempt_task_id
from workers.heartbeat import HeartbeatStore

pytestmark = pytest.mark.integration

STUDY = {
    "name": "silent",
    "objective": "testbed",
    "budget": {"max_trials": 2},
    "in_flight": 1,
    "queue": "idle",  # no worker serves it: nothing ever reports
    "seed": 9,
    "search": {"n_startup": 4},
}


def test_a_silent_trial_is_reclaimed_failed_and_its_slot_reused(fast_reclaim_cluster) -> None:
    cluster = fast_reclaim_cluster
    settings = cluster_settings(cluster)
    url = cluster.database_url
    with TestClient(create_app(settings)) as client:
        authorize(client)
        study_id = client.post("/studies", json=STUDY).json()["id"]
    store = HeartbeatStore.from_url(cluster.broker_url, prefix=settings.heartbeat_prefix)

    def taken_and_abandoned():  # type: ignore[no-untyped-def]
        rows = trial_rows(url, study_id)
        for row in rows:
            if row["state"] == "RUNNING":
                store.claim_attempt(attempt_task_id(study_id, row["id"], row["attempt"]), keep_s=60)
        return rows

    trials = wait_for(
        lambda: (
            (rows := taken_and_abandoned())
            and len(rows) == 2
            and rows[1]["state"] == "RUNNING"
            and rows
        ),
        timeout_s=45,
        what=lambda: f"the slot to be reused; trials: {trial_rows(url, study_id)}",
    )
    silent, successor = trials
    assert (silent["state"], silent["attempt"]) == ("FAILED", 1)  # two attempts, both reclaimed
    send_results(
        settings,
        [
            {
                "study_id": study_id,
                "trial_id": silent["id"],
                "attempt": 0,
                "status": "completed",
                "loss": 1.0,
                "cost_seconds": 1.0,
            },  # the vanished worker's result, far too late
            {
                "study_id": study_id,
                "trial_id": successor["id"],
                "attempt": successor["attempt"],
                "status": "completed",
                "loss": 2.0,
                "cost_seconds": 1.0,
            },
        ],
    )
    wait_for(
        lambda: trial_rows(url, study_id)[1]["state"] == "COMPLETE",
        timeout_s=30,
        what="the successor's result to be recorded",
    )
    after = trial_rows(url, study_id)
    assert [(t["state"], t["loss"]) for t in after] == [("FAILED", None), ("COMPLETE", 2.0)]
