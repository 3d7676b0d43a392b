"""Duplicate, late and out-of-order result deliveries through the real broker to the real
control worker: idempotent, the first valid result wins, the engine learns each trial once.

The study's trials go to a queue no worker serves, so the only results are the ones this
test sends by hand, exactly as a trial worker would (RECORD_RESULT_TASK on the control
queue).
"""

from __future__ import annotations

import pytest

from service.api.app import create_app
from tests.auth import authorize
from tests.e2e.conftest import wait_for
from tests.reliability.faults import (
    TestClient,
    cluster_settings,
    engine_observations,
    send_results,
    trial_rows,
)

pytestmark = pytest.mark.integration

STUDY = {
    "name": "deliveries",
    "objective": "testbed",
    "budget": {"max_trials": 3},
    "in_flight": 2,
    "queue": "idle",
    "seed": 5,
    "search": {"n_startup": 4},
}


def _result(trial: dict, study_id: int, **fields) -> dict:
    return {
        "study_id": study_id,
        "trial_id": trial["id"],
        "attempt": trial["attempt"],
        "status": "completed",
        "cost_seconds": 1.0,
        **fields,
    }


def _running(url: str, study_id: int, n: int):  # type: ignore[no-untyped-def]
    rows = [t for t in trial_rows(url, study_id) if t["state"] == "RUNNING"]
    return rows if len(rows) == n else None


def test_first_valid_result_wins_and_nothing_counts_twice(cluster) -> None:
    settings = cluster_settings(cluster)
    url = cluster.database_url
    with TestClient(create_app(settings)) as client:
        authorize(client)
        study_id = client.post("/studies", json=STUDY).json()["id"]
    first, second = wait_for(
        lambda: _running(url, study_id, 2), timeout_s=30, what="two dispatched trials"
    )
    send_results(
        settings,
        [
            _result(second, study_id, loss=2.0),  # out of order: the later trial first
            _result(first, study_id, loss=1.0),
            _result(first, study_id, loss=9.0),  # duplicate with another value
            _result(second, study_id, status="failed", failure_kind="config"),  # late
            _result(first, study_id, status="failed", failure_kind="infrastructure"),
        ],
    )
    (third,) = wait_for(
        lambda: _running(url, study_id, 1), timeout_s=30, what="the freed slot to be refilled"
    )
    send_results(settings, [_result(third, study_id, loss=3.0)] * 2)
    wait_for(
        lambda: len(engine_observations(url, study_id)) == 3,
        timeout_s=30,
        what=lambda: f"3 engine observations, have {engine_observations(url, study_id)}",
    )
    trials = trial_rows(url, study_id)
    assert [(t["number"], t["state"], t["loss"]) for t in trials] == [
        (0, "COMPLETE", 1.0),
        (1, "COMPLETE", 2.0),
        (2, "COMPLETE", 3.0),
    ]
    observed = sorted(o["loss"] for o in engine_observations(url, study_id))
    assert observed == [1.0, 2.0, 3.0]  # each trial learned from once, first value
